//! Shared helpers for the integration tests: a CA, workload credentials, a loopback echo
//! server behind `InboundTls`, and a client round trip.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mesh_tls::*;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub fn samples() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples/certs");
    if p.join("ca-cert.pem").exists() {
        Some(p)
    } else {
        eprintln!("skipped: Istio sample certs not found at {}", p.display());
        None
    }
}

pub fn id(td: &str, ns: &str, sa: &str) -> Identity {
    Identity::new(td, ns, sa).unwrap()
}

pub fn creds(ca: &MeshCa, id: &Identity, dns: &[&str]) -> Arc<WorkloadCredentials> {
    WorkloadCredentials::new(ca.issue(id, DEFAULT_WORKLOAD_TTL, dns).unwrap()).unwrap()
}

/// What the server saw for one connection.
pub type AcceptResult = Result<Option<PeerIdentity>, io::Error>;

pub struct EchoServer {
    pub addr: SocketAddr,
    pub results: mpsc::UnboundedReceiver<AcceptResult>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    /// The next accept result (waits up to 5 s).
    pub async fn next(&mut self) -> AcceptResult {
        tokio::time::timeout(Duration::from_secs(5), self.results.recv())
            .await
            .expect("server saw no connection")
            .expect("server stopped")
    }
}

/// Serves lines: for each line `x` replies `<principal|plaintext> <x>`.
pub async fn echo_server(inbound: InboundTls) -> EchoServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, results) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let inbound = inbound.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match inbound.accept(tcp).await {
                    Ok(acc) => {
                        let who = acc
                            .peer
                            .as_ref()
                            .map(|p| p.principal().to_owned())
                            .unwrap_or_else(|| "plaintext".to_owned());
                        let _ = tx.send(Ok(acc.peer.clone()));
                        let _ = serve_lines(acc.stream, &who).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    EchoServer {
        addr,
        results,
        task,
    }
}

async fn serve_lines<S: AsyncRead + AsyncWrite + Unpin>(s: S, who: &str) -> io::Result<()> {
    let mut s = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let reply = format!("{who} {}", line);
        s.get_mut().write_all(reply.as_bytes()).await?;
        s.get_mut().flush().await?;
    }
}

/// One line over a stream; returns the reply without the newline.
pub async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    msg: &str,
) -> io::Result<String> {
    s.get_mut().write_all(format!("{msg}\n").as_bytes()).await?;
    s.get_mut().flush().await?;
    let mut line = String::new();
    if s.read_line(&mut line).await? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(line.trim_end().to_owned())
}

/// Connect, handshake, one round trip.
pub async fn tls_roundtrip(out: &OutboundTls, addr: SocketAddr) -> io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = out.connect(tcp).await?;
    let mut s = BufReader::new(tls);
    ask(&mut s, "ping").await
}

pub async fn plain_roundtrip(addr: SocketAddr) -> io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let mut s = BufReader::new(tcp);
    ask(&mut s, "ping").await
}

pub fn istio_mutual(creds: &WorkloadCredentials, server_accounts: &[Identity]) -> OutboundTls {
    let settings = ClientTlsSettings {
        mode: ClientTlsMode::IstioMutual,
        ..Default::default()
    };
    let dest = Destination {
        host: "svc.default.svc.cluster.local",
        port: 8080,
        subset: None,
        service_accounts: server_accounts,
    };
    let ctx = ClientContext {
        workload: Some(creds),
        credentials: None,
        alpn: Alpn::Http2AndHttp1,
        opaque: false,
    };
    client_config(&settings, &dest, &ctx).unwrap().unwrap()
}

pub fn strict(creds: &WorkloadCredentials) -> InboundTls {
    InboundTls::from_credentials(PeerAuthnMode::Strict, creds, None).unwrap()
}
