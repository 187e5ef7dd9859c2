//! HTTP/2 with Envoy's limits, over real loopback sockets: mesh servers and gateways
//! advertise Envoy's `max_concurrent_streams` (2^31 - 1), so a client's streams past hyper's
//! default of 200 on one connection start at once instead of waiting for one of the first
//! 200 to end (for long-lived gRPC streams: for ever); and mesh servers and clients take
//! header lists up to Envoy's 60 KiB (`max_request_headers_kb`), not hyper's 16 KiB.

mod conn_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use mesh_core::mesh::Mesh;
use tokio::net::TcpListener;

/// More streams at once than hyper's default limit of 200.
const STREAMS: usize = 250;

/// An app that answers no request before `STREAMS` of them are in.
fn app() -> axum::Router {
    let all_in = Arc::new(tokio::sync::Barrier::new(STREAMS));
    axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let all_in = Arc::clone(&all_in);
            async move {
                all_in.wait().await;
                "ok"
            }
        }),
    )
}

/// Sends `STREAMS` requests at once for `authority` over one HTTP/2 (prior knowledge)
/// connection to `addr`, and checks every one is answered 200 within 10 s.
async fn all_streams_at_once(addr: SocketAddr, authority: &str) {
    let (send, _conn) = conn_support::h2_client(addr).await;
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        let mut send = send.clone();
        let req = conn_support::get(&format!("http://{authority}/"));
        requests.spawn(async move { send.send_request(req).await.map(|r| r.status()) });
    }
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut ok = 0;
        while let Some(r) = requests.join_next().await {
            assert_eq!(r.unwrap().unwrap(), 200);
            ok += 1;
        }
        ok
    })
    .await;
    assert_eq!(
        answered.ok(),
        Some(STREAMS),
        "streams past the first 200 did not start"
    );
}

#[tokio::test]
async fn a_mesh_server_takes_more_than_200_streams_on_one_connection() {
    let addr = conn_support::serve_mesh(Mesh::new(Default::default()), "grpc", app()).await;
    all_streams_at_once(addr, "grpc.foo").await;
}

#[tokio::test]
async fn a_gateway_takes_more_than_200_streams_on_one_connection() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(upstream, app()).await });
    let mesh = Mesh::from_yaml(&conn_support::gateway_config(upstream_port)).unwrap();
    let gateway = conn_support::start_gateway(mesh, None).await;
    all_streams_at_once(gateway.local_addr(80).unwrap(), "example.com").await;
}

/// A header value of `n` bytes (a large cookie or token).
fn big(n: usize) -> String {
    "a".repeat(n)
}

#[tokio::test]
async fn a_mesh_server_takes_http2_headers_up_to_envoys_60_kib() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|h: http::HeaderMap| async move {
            h.get("cookie").map_or(0, |v| v.len()).to_string()
        }),
    );
    let addr = conn_support::serve_mesh(Mesh::new(Default::default()), "grpc", app).await;
    let (mut send, _conn) = conn_support::h2_client(addr).await;
    let req = http::Request::get("http://grpc.foo/")
        .header("cookie", big(40 * 1024))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), (40 * 1024).to_string());
    // past Envoy's limit: refused (Envoy: the stream is reset or answered 431)
    let req = http::Request::get("http://grpc.foo/")
        .header("cookie", big(70 * 1024))
        .body(Empty::<Bytes>::new())
        .unwrap();
    match send.send_request(req).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => assert!(!e.is_canceled(), "{e}"),
    }
}

#[tokio::test]
async fn a_mesh_client_takes_http2_response_headers_up_to_envoys_60_kib() {
    // an h2c upstream (the port is declared HTTP2) answering with a 40 KiB header
    let port = conn_support::h2c_upstream(|_req| async {
        Ok(http::Response::builder()
            .header("set-cookie", big(40 * 1024))
            .body(http_body_util::Full::new(Bytes::from("ok")))
            .unwrap())
    })
    .await;
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 8080, name: grpc, protocol: HTTP2}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {port}}}}}]
"
    ))
    .unwrap();
    let client = mesh_tower::outbound::MeshClient::builder(
        mesh,
        mesh_tower::outbound::ClientWorkload::new("app", "default", "app"),
    )
    .build();
    let req = http::Request::get("http://backend.example.internal:8080/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["set-cookie"].len(), 40 * 1024);
}
