//! An `https://` request to a ServiceEntry with no DestinationRule TLS: the mesh client
//! originates TLS as the application would (Istio passes the application's TLS through):
//! SNI and certificate name from the request's host, verified against the platform's roots
//! (here `SSL_CERT_FILE`, which the platform root loader honours, so this test has a binary
//! of its own). `http://` to the same host and port stays plaintext, on its own connections.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa, WorkloadCert};
use mesh_tower::outbound::{ClientWorkload, MeshClient, UpstreamFailure};

/// A TLS server (HTTP/1.1) with `cert`; records the SNI of every connection (`<not TLS>`
/// for a plaintext one) and answers `tls <Host>`.
async fn tls_server(cert: &WorkloadCert) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&snis);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (cfg, seen) = (Arc::clone(&cfg), Arc::clone(&seen));
            tokio::spawn(async move {
                let lazy =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = lazy.await else {
                    seen.lock().unwrap().push("<not TLS>".to_owned());
                    return;
                };
                let sni = start.client_hello().server_name().unwrap_or("").to_owned();
                seen.lock().unwrap().push(sni);
                let Ok(tls) = start.into_stream(cfg).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        format!("tls {host}"),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, snis)
}

/// (status, body, failure message).
async fn get(client: &MeshClient, uri: &str) -> (u16, String, String) {
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp = client.request(req).await.expect("request");
    let status = resp.status().as_u16();
    let failure = resp
        .extensions()
        .get::<UpstreamFailure>()
        .map(|f| f.message.clone())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), failure)
}

#[tokio::test]
async fn https_request_originates_tls_to_the_request_host() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["localhost"])
        .unwrap();
    // The platform's roots: this CA.
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, cert.root_pem()).unwrap();
    // SAFETY: the only test of this binary sets it before anything reads the environment
    // (the runtime's threads do not).
    unsafe { std::env::set_var("SSL_CERT_FILE", &roots) };

    let (addr, snis) = tls_server(&cert).await;
    let port = addr.port();
    // Istio's egress-control sample (`www.google.com`, port 443 HTTPS, DNS), on loopback.
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-https}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: https, protocol: HTTPS}}]
  resolution: DNS
"
    ))
    .unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build();

    let (status, body, failure) = get(&client, &format!("https://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls localhost:{port}"));
    let (status, _, _) = get(&client, &format!("https://localhost:{port}/")).await;
    assert_eq!(status, 200);
    let tls_conns = snis.lock().unwrap().len();
    assert!(
        snis.lock().unwrap().iter().all(|s| s == "localhost"),
        "{snis:?}"
    );

    // `http://` to the same host and port is the application's plaintext: never sent on
    // the TLS connections
    let (status, _, _) = get(&client, &format!("http://localhost:{port}/")).await;
    assert_ne!(status, 200);
    let seen = snis.lock().unwrap().clone();
    assert_eq!(seen.len(), tls_conns + 1, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("<not TLS>"));
}
