//! HTTP/1.1 request heads with Envoy's limits, over real loopback sockets: mesh servers and
//! gateways take headers up to Envoy's 60 KiB (`max_request_headers_kb`) and 100 of them
//! (`max_headers_count`), and answer 431 past either, where hyper alone took about 400 KB.

mod conn_support;

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An app answering with the length of the request's `cookie`.
fn app() -> axum::Router {
    axum::Router::new().route(
        "/",
        axum::routing::get(|h: http::HeaderMap| async move {
            format!("{} bytes", h.get("cookie").map_or(0, |v| v.len()))
        }),
    )
}

/// Sends `GET /` for `host` with `extra` header lines on a new connection to `addr`, and
/// reads the answer until the server closes the connection or 5 s pass.
async fn answer(addr: SocketAddr, host: &str, extra: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET / HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n");
    // the server may answer (and close) before it has read everything
    let _ = tcp.write_all(head.as_bytes()).await;
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut all)).await;
    String::from_utf8_lossy(&all).into_owned()
}

fn cookie(n: usize) -> String {
    format!("cookie: {}\r\n", "a".repeat(n))
}

/// `n` headers `x-h<i>: v`.
fn many(n: usize) -> String {
    (0..n).map(|i| format!("x-h{i}: v\r\n")).collect()
}

#[tokio::test]
async fn a_mesh_server_takes_http1_headers_up_to_envoys_60_kib_and_answers_431_past_them() {
    let addr = conn_support::serve_mesh(Mesh::new(Default::default()), "web", app()).await;
    let ok = answer(addr, "web.foo", &cookie(58 * 1024)).await;
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{}",
        &ok[..ok.len().min(200)]
    );
    assert!(ok.contains(&format!("\r\n\r\n{} bytes", 58 * 1024)), "{ok}");
    let refused = answer(addr, "web.foo", &cookie(70 * 1024)).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
}

#[tokio::test]
async fn a_mesh_server_takes_up_to_100_http1_headers_as_envoy_and_answers_431_past_them() {
    let addr = conn_support::serve_mesh(Mesh::new(Default::default()), "web", app()).await;
    // host and connection are two of the hundred
    let ok = answer(addr, "web.foo", &many(98)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let refused = answer(addr, "web.foo", &many(99)).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
}

#[tokio::test]
async fn a_gateway_answers_431_to_http1_headers_past_envoys_60_kib() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(upstream, app()).await });
    let mesh = Mesh::from_yaml(&conn_support::gateway_config(upstream_port)).unwrap();
    let gateway = conn_support::start_gateway(mesh, None).await;
    let addr = gateway.local_addr(80).unwrap();
    let ok = answer(addr, "example.com", &cookie(40 * 1024)).await;
    assert!(
        ok.starts_with("HTTP/1.1 200"),
        "{}",
        &ok[..ok.len().min(200)]
    );
    assert!(ok.contains(&format!("\r\n\r\n{} bytes", 40 * 1024)), "{ok}");
    let refused = answer(addr, "example.com", &cookie(70 * 1024)).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
}
