//! Interoperability with tools nobody here wrote: openssl and curl. Each test is skipped,
//! with the reason printed, only when the tool is missing (scripts/test installs them).

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use mesh_tls::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;

const TD: &str = "cluster.local";

fn tool(name: &str) -> bool {
    let ok = std::process::Command::new(name)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || std::process::Command::new(name)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    if !ok {
        eprintln!("skipped: `{name}` is not installed (scripts/test installs it with apt-get)");
    }
    ok
}

async fn run(cmd: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(20), cmd.kill_on_drop(true).output())
        .await
        .expect("tool timed out")
        .expect("tool runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A one-shot HTTP/1.x responder behind `InboundTls`: answers 200 with the peer's principal
/// (or `plaintext`) and closes. Reports each accept result.
async fn http_server(
    inbound: InboundTls,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<AcceptResult>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (inbound, tx) = (inbound.clone(), tx.clone());
            tokio::spawn(async move {
                match inbound.accept(tcp).await {
                    Ok(mut acc) => {
                        let who = acc
                            .peer
                            .as_ref()
                            .map(|p| p.principal().to_owned())
                            .unwrap_or_else(|| "plaintext".into());
                        let _ = tx.send(Ok(acc.peer.clone()));
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match acc.stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body = format!("peer={who}\n");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = acc.stream.write_all(resp.as_bytes()).await;
                        let _ = acc.stream.shutdown().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<AcceptResult>) -> AcceptResult {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no connection")
        .expect("server gone")
}

/// Writes a workload's files and returns their directory.
fn write(dir: &Path, name: &str, wc: &WorkloadCert) -> std::path::PathBuf {
    let d = dir.join(name);
    wc.write_dir(&d).unwrap();
    d
}

#[tokio::test]
async fn openssl_verify_and_x509_text() {
    if !tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cas = vec![("self-signed", MeshCa::self_signed(TD).unwrap())];
    if let Some(samples) = samples() {
        cas.push((
            "istio sample plug-in",
            MeshCa::from_plugin_dir(samples, TD).unwrap(),
        ));
    }
    for (name, ca) in cas {
        let sid = id(TD, "default", "sleep");
        let wc = ca.issue(&sid, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
        let d = write(dir.path(), &name.replace(' ', "-"), &wc);
        // leaf alone, the rest of the chain as untrusted intermediates
        let chain = wc.chain_der().unwrap();
        std::fs::write(d.join("leaf.pem"), certs_pem(&chain[..1])).unwrap();
        std::fs::write(d.join("inter.pem"), certs_pem(&chain[1..])).unwrap();
        for purpose in ["sslclient", "sslserver"] {
            let o = run(Command::new("openssl")
                .arg("verify")
                .arg("-purpose")
                .arg(purpose)
                .arg("-CAfile")
                .arg(d.join("root-cert.pem"))
                .args(if chain.len() > 1 {
                    vec!["-untrusted".into(), d.join("inter.pem")]
                } else {
                    vec![]
                })
                .arg(d.join("leaf.pem")))
            .await;
            assert!(
                o.status.success() && text(&o).contains(": OK"),
                "{name} {purpose}: {}",
                text(&o)
            );
        }
        // and against another root: refused
        let other = MeshCa::self_signed(TD).unwrap();
        std::fs::write(d.join("other-root.pem"), other.trust_bundle().to_pem()).unwrap();
        let o = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(d.join("other-root.pem"))
            .arg(d.join("leaf.pem")))
        .await;
        assert!(!o.status.success(), "{name}: {}", text(&o));

        let o = run(Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(d.join("cert-chain.pem")))
        .await;
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("URI:spiffe://cluster.local/ns/default/sa/sleep"),
            "{name}: {t}"
        );
        assert!(
            t.contains("X509v3 Subject Alternative Name: critical"),
            "{name}: {t}"
        );
        assert!(
            t.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{name}: {t}"
        );
        assert!(t.contains("CA:FALSE"), "{name}: {t}");
        assert!(
            t.contains("Digital Signature, Key Encipherment"),
            "{name}: {t}"
        );
        assert!(
            t.contains("id-ecPublicKey") && t.contains("P-256"),
            "{name}: ECDSA P-256 leaf: {t}"
        );
        // the key file is a key openssl reads, and it matches the certificate
        let o1 = run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(d.join("key.pem")))
        .await;
        let o2 = run(Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(d.join("cert-chain.pem")))
        .await;
        assert!(o1.status.success(), "{}", text(&o1));
        assert_eq!(o1.stdout, o2.stdout, "{name}: key.pem matches the leaf");
    }
}

fn certs_pem(certs: &[rustls::pki_types::CertificateDer<'_>]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for c in certs {
        let b64 = base64(c);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            let _ = writeln!(out, "{}", std::str::from_utf8(line).unwrap());
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    client: std::path::PathBuf,
    server_creds: Arc<WorkloadCredentials>,
}

fn setup(ca: &MeshCa) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = ca
        .issue(
            &id(TD, "default", "httpbin"),
            DEFAULT_WORKLOAD_TTL,
            &["localhost"],
        )
        .unwrap();
    let client = ca
        .issue(
            &id(TD, "default", "curl"),
            DEFAULT_WORKLOAD_TTL,
            &["localhost"],
        )
        .unwrap();
    let client_dir = write(dir.path(), "client", &client);
    Setup {
        server_creds: WorkloadCredentials::new(server).unwrap(),
        client: client_dir,
        _dir: dir,
    }
}

fn curl(port: u16, s: &Setup, with_cert: bool) -> Command {
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--http1.1",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .arg("--cacert")
    .arg(s.client.join("root-cert.pem"))
    .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    if with_cert {
        c.arg("--cert")
            .arg(s.client.join("cert-chain.pem"))
            .arg("--key")
            .arg(s.client.join("key.pem"));
    }
    c.arg(format!("https://localhost:{port}/headers"));
    c
}

#[tokio::test]
async fn curl_through_strict_with_cert_and_refused_without() {
    if !tool("curl") {
        return;
    }
    let mut cas = vec![MeshCa::self_signed(TD).unwrap()];
    if let Some(samples) = samples() {
        cas.push(MeshCa::from_plugin_dir(samples, TD).unwrap());
    }
    for ca in cas {
        let s = setup(&ca);
        let (addr, mut rx) = http_server(strict(&s.server_creds)).await;
        let o = run(&mut curl(addr.port(), &s, true)).await;
        let t = text(&o);
        assert!(o.status.success(), "curl with a client cert: {t}");
        assert!(
            t.contains("peer=cluster.local/ns/default/sa/curl") && t.ends_with("200"),
            "{t}"
        );
        assert_eq!(
            next(&mut rx).await.unwrap().unwrap().principal(),
            "cluster.local/ns/default/sa/curl"
        );

        let o = run(&mut curl(addr.port(), &s, false)).await;
        let t = text(&o);
        assert!(
            !o.status.success(),
            "curl without a client cert must fail: {t}"
        );
        assert!(!t.contains("peer="), "{t}");
        let e = next(&mut rx).await.unwrap_err();
        assert_eq!(
            VerifyError::from_io(&e),
            Some(VerifyError::NoClientCertificate),
            "{e}"
        );

        // plaintext curl against STRICT: connection reset, no HTTP status (curl exit 56,
        // as Istio's mtls-migration task shows)
        let o = run(Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "-", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{}/", addr.port())))
        .await;
        let t = text(&o);
        assert_eq!(o.status.code(), Some(56), "{t}");
        assert!(t.contains("000") && t.contains("reset"), "{t}");
        assert!(next(&mut rx).await.is_err());
    }
}

#[tokio::test]
async fn curl_against_permissive_plaintext_and_mtls() {
    if !tool("curl") {
        return;
    }
    let ca = MeshCa::self_signed(TD).unwrap();
    let s = setup(&ca);
    let inbound =
        InboundTls::from_credentials(PeerAuthnMode::Permissive, &s.server_creds, None).unwrap();
    let (addr, mut rx) = http_server(inbound).await;
    let o = run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{}/", addr.port())))
    .await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "peer=plaintext\n",
        "{}",
        text(&o)
    );
    assert_eq!(next(&mut rx).await.unwrap(), None);
    let o = run(&mut curl(addr.port(), &s, true)).await;
    assert!(
        text(&o).contains("peer=cluster.local/ns/default/sa/curl"),
        "{}",
        text(&o)
    );
    assert!(next(&mut rx).await.unwrap().is_some());
    // a client certificate from another CA is refused on the TLS side
    let other = MeshCa::self_signed(TD).unwrap();
    let stranger = other
        .issue(
            &id(TD, "default", "curl"),
            DEFAULT_WORKLOAD_TTL,
            &["localhost"],
        )
        .unwrap();
    stranger.write_dir(s.client.join("stranger")).unwrap();
    let o = run(Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10"])
        .arg("--cacert")
        .arg(s.client.join("root-cert.pem"))
        .arg("--cert")
        .arg(s.client.join("stranger/cert-chain.pem"))
        .arg("--key")
        .arg(s.client.join("stranger/key.pem"))
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())])
        .arg(format!("https://localhost:{}/", addr.port())))
    .await;
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(
        VerifyError::from_io(&next(&mut rx).await.unwrap_err())
            .unwrap()
            .kind(),
        "unknown_issuer"
    );
}

#[tokio::test]
async fn openssl_s_client_with_and_without_cert() {
    if !tool("openssl") {
        return;
    }
    let ca = MeshCa::self_signed(TD).unwrap();
    let s = setup(&ca);
    let (addr, mut rx) = http_server(strict(&s.server_creds)).await;
    let s_client = |with_cert: bool| {
        let mut c = Command::new("openssl");
        c.args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(s.client.join("root-cert.pem"));
        if with_cert {
            c.arg("-cert")
                .arg(s.client.join("cert-chain.pem"))
                .arg("-key")
                .arg(s.client.join("key.pem"));
        }
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    for with_cert in [true, false] {
        let mut child = s_client(with_cert).kill_on_drop(true).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        drop(stdin);
        let o = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let t = text(&o);
        if with_cert {
            assert!(
                t.contains("Verify return code: 0 (ok)"),
                "server cert verified by openssl: {t}"
            );
            assert!(t.contains("peer=cluster.local/ns/default/sa/curl"), "{t}");
            assert!(next(&mut rx).await.unwrap().is_some());
        } else {
            assert!(!t.contains("peer="), "{t}");
            assert!(t.contains("alert") || !o.status.success(), "{t}");
            assert_eq!(
                VerifyError::from_io(&next(&mut rx).await.unwrap_err()),
                Some(VerifyError::NoClientCertificate)
            );
        }
    }
}
