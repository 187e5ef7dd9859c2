//! Shared by the egress tests (`outbound_egress`, `outbound_egress_https`, a binary of its
//! own for `SSL_CERT_FILE`): a TLS server that records the SNI of every connection, and a
//! GET through the mesh client that returns what the tests look at.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use mesh_tls::WorkloadCert;
use mesh_tower::outbound::{MeshClient, UpstreamFailure};

/// A TLS server (HTTP/1.1) with `cert`; records the SNI of every connection (`<not TLS>`
/// for a plaintext one) and answers `tls <Host>`.
pub async fn tls_server(cert: &WorkloadCert) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    tagged_tls_server(cert, "").await
}

/// [`tls_server`] answering `tls<tag> <Host>`, to tell servers apart on pooled connections.
pub async fn tagged_tls_server(
    cert: &WorkloadCert,
    tag: &'static str,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
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
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(format!("tls{tag} {host}")),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, snis)
}

/// (status, body, failure message).
pub async fn get(client: &MeshClient, uri: &str) -> (u16, String, String) {
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
