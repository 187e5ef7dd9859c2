//! Which filter chain a ClientHello reaches on a gateway's TLS ports, as istiod builds
//! them and Envoy picks one, on loopback with real TLS clients and backends:
//! - PASSTHROUGH: the `tls` routes of every VirtualService bound to the Gateway whose
//!   hosts overlap the server's, by `sniHosts` (a VirtualService for the same host with
//!   `http` routes only hides nothing);
//! - a terminating `TLS` server: one chain, the `tcp` route of the first overlapping
//!   VirtualService, whatever the SNI;
//! - `sniHosts: ['*']`: a catch-all chain, taking a client that sends no SNI.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_tls::{rustls, Credential, Identity, MeshCa, WorkloadCert};
use mesh_tower::gateway::GatewayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod secrets_support;
use secrets_support::Secrets;

fn cert(ca: &MeshCa, sa: &str, dns: &[&str]) -> WorkloadCert {
    let id = Identity::new("cluster.local", "default", sa).unwrap();
    ca.issue(&id, Duration::from_secs(3600), dns).unwrap()
}

/// A TLS backend that answers `<tag> sni=<SNI it saw>` and closes.
async fn tls_backend(cert: &WorkloadCert, tag: &'static str) -> SocketAddr {
    let cfg = rustls::ServerConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let cfg = Arc::clone(&cfg);
            tokio::spawn(async move {
                let acceptor =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = acceptor.await else { return };
                let sni = start.client_hello().server_name().unwrap_or("-").to_owned();
                let Ok(mut tls) = start.into_stream(cfg).await else {
                    return;
                };
                let _ = tls.write_all(format!("{tag} sni={sni}").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A plain TCP backend that writes `<tag>:` and echoes what it reads.
async fn tcp_backend(tag: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = tcp.write_all(format!("{tag}:").as_bytes()).await;
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn service_entry(name: &str, port: u16, protocol: &str, at: SocketAddr) -> String {
    format!(
        "
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: p, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{p: {}}}}}]
",
        at.port()
    )
}

const CONFIG: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
  - port: {number: 443, name: tls-pass, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
  - port: {number: 8443, name: tls-db, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE, credentialName: wildcard}
  - port: {number: 9443, name: tls-any, protocol: TLS}
    hosts: ['*']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-a, namespace: istio-system}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: web-a.default.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-all, namespace: istio-system}
spec:
  hosts: ['*.example.com']
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: ['*.example.com']}]
    route: [{destination: {host: tls-all.default.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-b, namespace: istio-system}
spec:
  hosts: [b.example.com]
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: [b.example.com]}]
    route: [{destination: {host: tls-b.default.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: istio-system}
spec:
  hosts: [db.example.com]
  gateways: [gw]
  tcp:
  - match: [{port: 8443}]
    route: [{destination: {host: db.default.svc.cluster.local, port: {number: 5432}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: istio-system}
spec:
  hosts: ['*']
  gateways: [gw]
  tls:
  - match: [{port: 9443, sniHosts: ['*']}]
    route: [{destination: {host: tls-any.default.svc.cluster.local, port: {number: 443}}}]
";

fn client_config(ca: &MeshCa, sni: bool) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.trust_bundle().root_store().clone())
        .with_no_client_auth();
    cfg.enable_sni = sni;
    Arc::new(cfg)
}

/// A TLS connection to `addr` verifying `name` (sent as SNI if `sni`); writes `send`,
/// half-closes and returns all it read, or the error.
async fn tls_exchange(
    addr: SocketAddr,
    ca: &MeshCa,
    name: &str,
    sni: bool,
    send: &[u8],
) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, sni));
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let work = async {
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(send).await.map_err(|e| e.to_string())?;
        if !send.is_empty() {
            tls.flush().await.map_err(|e| e.to_string())?;
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        // read until the backend closes, or until the echo came back
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if !send.is_empty() && out.ends_with(send) {
                        break;
                    }
                }
                Err(e) if out.is_empty() => return Err(e.to_string()),
                Err(_) => break,
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "timed out".to_owned())?
}

#[tokio::test]
async fn tls_chains_by_sni_hosts_server_and_catch_all() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let backend_cert = cert(
        &ca,
        "backend",
        &[
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "backend.example.com",
            "x.example.org",
        ],
    );
    let tls_all = tls_backend(&backend_cert, "tls-all").await;
    let tls_b = tls_backend(&backend_cert, "tls-b").await;
    let tls_any = tls_backend(&backend_cert, "tls-any").await;
    let db = tcp_backend("db").await;
    let web_a = tcp_backend("web-a").await;
    let yaml = format!(
        "{CONFIG}{}{}{}{}{}",
        service_entry("tls-all", 443, "TLS", tls_all),
        service_entry("tls-b", 443, "TLS", tls_b),
        service_entry("tls-any", 443, "TLS", tls_any),
        service_entry("db", 5432, "TCP", db),
        service_entry("web-a", 80, "HTTP", web_a),
    );
    let gw_cert = cert(
        &ca,
        "gateway",
        &["db-primary.example.com", "db.example.com", "a.example.com"],
    );
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "wildcard".into(),
        Credential {
            cert_chain_pem: Some(gw_cert.chain_pem().to_owned()),
            key_pem: Some(gw_cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: None,
        },
    );
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let mut builder =
        GatewayServer::builder(Mesh::from_yaml(&yaml).unwrap(), "istio-system", labels)
            .credentials(Arc::new(secrets));
    for port in [80, 443, 8443, 9443] {
        builder = builder.listener(port, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let gw = builder.start().await.unwrap();
    let at = |port| gw.local_addr(port).unwrap();

    // PASSTHROUGH: web-a (http routes only, host a.example.com) hides nothing: tls-all's
    // `*.example.com` chain takes a.example.com, and the exact chain of tls-b wins for b
    for (sni, want) in [
        ("a.example.com", "tls-all sni=a.example.com"),
        ("c.example.com", "tls-all sni=c.example.com"),
        ("b.example.com", "tls-b sni=b.example.com"),
    ] {
        let got = tls_exchange(at(443), &ca, sni, true, b"").await;
        assert_eq!(got.as_deref(), Ok(want), "{sni}");
    }
    // no chain names it: closed during the handshake
    assert!(tls_exchange(at(443), &ca, "x.example.org", true, b"")
        .await
        .is_err());

    // terminated TLS: the server's one chain goes to the first overlapping VirtualService
    // with a tcp route (db, for db.example.com), whatever SNI the server accepts
    for sni in ["db-primary.example.com", "db.example.com", "a.example.com"] {
        let got = tls_exchange(at(8443), &ca, sni, true, b"ping").await;
        assert_eq!(got.as_deref(), Ok("db:ping"), "{sni}");
    }

    // the terminating server offers Envoy's `h2, http/1.1` by ALPN, as istiod's
    // `BuildListenerTLSContext` gives every SIMPLE server, TCP ones too (a gRPC client
    // requiring ALPN gets `h2`); one offering neither still gets in, without ALPN
    for (offer, want) in [
        (&b"h2"[..], Some(&b"h2"[..])),
        (b"http/1.1", Some(b"http/1.1")),
        (b"postgresql", None),
    ] {
        let mut cfg = (*client_config(&ca, true)).clone();
        cfg.alpn_protocols = vec![offer.to_vec()];
        let tcp = TcpStream::connect(at(8443)).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from("db.example.com").unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), want, "{offer:?}");
        tls.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 7];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"db:ping");
    }

    // `sniHosts: ['*']`: a catch-all chain, for clients that send no SNI (by IP) too
    let got = tls_exchange(at(9443), &ca, "backend.example.com", false, b"").await;
    assert_eq!(got.as_deref(), Ok("tls-any sni=-"));
    let got = tls_exchange(at(9443), &ca, "backend.example.com", true, b"").await;
    assert_eq!(got.as_deref(), Ok("tls-any sni=backend.example.com"));
}
