//! HTTP over `MeshStream`, as the inbound stack serves it: HTTP/2 when ALPN picks `h2`,
//! HTTP/1.1 otherwise and for plaintext, with the peer identity in request extensions.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_tls::*;
use tokio::net::{TcpListener, TcpStream};

const TD: &str = "cluster.local";

async fn serve(inbound: InboundTls) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let inbound = inbound.clone();
            tokio::spawn(async move {
                let Ok(acc) = inbound.accept(tcp).await else {
                    return;
                };
                let peer = acc.peer.clone();
                let alpn = acc
                    .stream
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let svc = hyper::service::service_fn(
                    move |mut req: Request<hyper::body::Incoming>| {
                        // what mesh-tower does: the connection's peer into each request
                        if let Some(p) = &peer {
                            req.extensions_mut().insert(p.clone());
                        }
                        let who = req
                            .extensions()
                            .get::<PeerIdentity>()
                            .map(|p| p.principal().to_owned())
                            .unwrap_or_else(|| "plaintext".into());
                        let body = format!("{who} {:?} alpn={alpn:?}", req.version());
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(acc.stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http2_over_mtls_and_http1_over_plaintext_on_one_permissive_port() {
    let ca = MeshCa::self_signed(TD).unwrap();
    let sid = id(TD, "default", "httpbin");
    let server_creds = creds(&ca, &sid, &[]);
    let addr = serve(
        InboundTls::from_credentials(PeerAuthnMode::Permissive, &server_creds, None).unwrap(),
    )
    .await;

    // HTTP/2 over ISTIO_MUTUAL
    let out = istio_mutual(
        &creds(&ca, &id(TD, "default", "sleep"), &[]),
        std::slice::from_ref(&sid),
    );
    let tls = out
        .connect(TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let resp = send
            .send_request(
                Request::get("http://httpbin/")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            "cluster.local/ns/default/sa/sleep HTTP/2.0 alpn=Some(\"h2\")"
        );
    }

    // HTTP/1.1 in plaintext on the same port
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/")
                .header("host", "httpbin")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "plaintext HTTP/1.1 alpn=None");
}
