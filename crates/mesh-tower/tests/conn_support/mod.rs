//! Raw HTTP/1.1 connections, HTTP/2 clients, and the mesh servers and gateways they reach,
//! for the tests of how servers keep and end their connections (`inbound_shutdown`,
//! `gateway_drain`, `idle_timeout`, `h2_downstream`, `http1_headers`), and h2c upstreams for
//! the mesh client's (`grpc_retry`, `upstream_resets`).

// each test file uses some of these
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::MeshServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The config of a gateway (`istio: ingressgateway`) with a plain HTTP server on port 80
/// routing every host to `backend.example.internal`, served at `127.0.0.1:port`.
pub fn gateway_config(port: u16) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: backend, namespace: istio-system}}
spec:
  hosts: ['*']
  gateways: [gw]
  http: [{{route: [{{destination: {{host: backend.example.internal}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: istio-system}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"
    )
}

/// The gateway of `mesh` (`istio: ingressgateway` in `istio-system`) on a new loopback
/// listener for its port 80, draining for `drain` (the default when `None`).
pub async fn start_gateway(mesh: Mesh, drain: Option<Duration>) -> GatewayServer {
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let mut builder = GatewayServer::builder(mesh, "istio-system", labels);
    if let Some(d) = drain {
        builder = builder.drain_timeout(d);
    }
    builder
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap()
}

/// A mesh server of `mesh` for workload `foo/<sa>`, with a certificate of its own CA.
pub fn mesh_server(mesh: Mesh, sa: &str) -> MeshServer {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", sa).unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    MeshServer::builder(mesh, "foo", sa, Default::default(), creds)
        .build()
        .unwrap()
}

/// A PERMISSIVE mesh server of `mesh` (no PeerAuthentication: plaintext callers get in)
/// for workload `foo/<sa>`, serving `app` on a new loopback listener: its address.
pub async fn serve_mesh(mesh: Mesh, sa: &str, app: axum::Router) -> SocketAddr {
    let server = mesh_server(mesh, sa);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

/// An HTTP/2 (prior knowledge, plaintext) connection to `addr`: its sender and the task
/// driving it.
pub async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (send, tokio::spawn(conn))
}

/// An h2c upstream (HTTP/2 with prior knowledge, plaintext) on a new loopback listener,
/// answering every request with `handler` (an error resets its stream): its port.
pub async fn h2c_upstream<H, Fut, B>(handler: H) -> u16
where
    H: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::io::Error>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(handler.clone());
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    port
}

/// `GET uri` with no body.
pub fn get(uri: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri).body(Empty::new()).unwrap()
}

/// Sends `GET path` with `host` on a new connection to `addr`.
pub async fn send(addr: SocketAddr, host: &str, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

/// Reads the first answer on `tcp` and checks it is a 200.
pub async fn answered_200(tcp: &mut TcpStream) {
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads until the server closes the connection (up to 5 s); what was read.
pub async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "still open after 5 s");
    String::from_utf8_lossy(&all).into_owned()
}

/// Waits (up to 5 s) until `n` reaches `want`.
pub async fn reaches(n: &AtomicUsize, want: usize) {
    let start = Instant::now();
    while n.load(Ordering::SeqCst) < want {
        assert!(start.elapsed() < Duration::from_secs(5), "not reached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
