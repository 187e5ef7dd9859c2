//! gRPC-Web at the gateway: a server of protocol `GRPC-WEB` translates browsers' gRPC-Web
//! requests to gRPC for the upstream and the gRPC answers back, trailers in the body (as
//! Envoy's `grpc_web` filter, which istiod adds to such listeners only); an `HTTP` server
//! passes gRPC-Web as it is. A real gRPC (HTTP/2) backend and HTTP/1.1 clients on loopback.

mod frames;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use frames::Frames;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tower::gateway::GatewayServer;
use tokio::net::TcpListener;

/// A gRPC backend (HTTP/2 with prior knowledge) answering every call with its request's
/// message frames, the request's `content-type` and `te` in `x-seen-*` headers, and the
/// trailers `grpc-status: 0`, `grpc-message: done`.
async fn grpc_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let seen = |name: &str| {
                        req.headers()
                            .get(name)
                            .cloned()
                            .unwrap_or(HeaderValue::from_static("-"))
                    };
                    let (ct, te) = (seen("content-type"), seen("te"));
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("grpc-message", HeaderValue::from_static("done"));
                    let frames = Frames(VecDeque::from([
                        Frame::data(body),
                        Frame::trailers(trailers),
                    ]));
                    let mut resp = Response::new(frames);
                    let h = resp.headers_mut();
                    h.insert("content-type", HeaderValue::from_static("application/grpc"));
                    h.insert("x-seen-content-type", ct);
                    h.insert("x-seen-te", te);
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn config(backend: SocketAddr) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: grpc-web, protocol: GRPC-WEB}}
    hosts: ['*']
  - port: {{number: 8081, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: istio-system}}
spec:
  hosts: [grpc.example.com]
  gateways: [gw]
  http: [{{route: [{{destination: {{host: echo.default.svc.cluster.local}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 9000, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {}}}}}]
",
        backend.port()
    )
}

/// One gRPC message frame: uncompressed, big-endian length, the message.
fn message(m: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
    out.extend_from_slice(m);
    out
}

async fn call(
    addr: SocketAddr,
    content_type: &str,
    accept: Option<&str>,
    body: Vec<u8>,
) -> (HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::post(format!("http://{addr}/echo.Echo/Say"))
        .header("host", "grpc.example.com")
        .header("content-type", content_type)
        .header("x-grpc-web", "1");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    (
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn grpc_web_servers_translate_and_http_servers_pass() {
    let backend = grpc_backend().await;
    let mesh = Mesh::from_yaml(&config(backend)).unwrap();
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh, "istio-system", labels)
        .listener(8080, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .listener(8081, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let web = gw.local_addr(8080).unwrap();
    let msg = message(b"hello");
    let trailer_frame = b"\x80\0\0\0\x22grpc-status:0\r\ngrpc-message:done\r\n";

    // binary gRPC-Web: gRPC upstream, trailers back in the body
    let (h, body) = call(web, "application/grpc-web+proto", None, msg.clone()).await;
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["x-seen-te"], "trailers");
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    let mut want = msg.clone();
    want.extend_from_slice(trailer_frame);
    assert_eq!(&body[..], &want[..]);

    // text: base64 both ways
    let encoded = mesh_core::names::base64_encode(&msg, false);
    let (h, body) = call(
        web,
        "application/grpc-web-text",
        Some("application/grpc-web-text"),
        encoded.into_bytes(),
    )
    .await;
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["content-type"], "application/grpc-web-text+proto");
    let decoded = mesh_core::names::base64_decode(std::str::from_utf8(&body).unwrap(), false)
        .expect("a base64 answer");
    assert_eq!(&decoded[..], &want[..]);

    // an HTTP server has no grpc_web filter: the request goes as it came
    let plain = gw.local_addr(8081).unwrap();
    let (h, _) = call(plain, "application/grpc-web+proto", None, msg).await;
    assert_eq!(h["x-seen-content-type"], "application/grpc-web+proto");
    assert_eq!(h["content-type"], "application/grpc");
}
