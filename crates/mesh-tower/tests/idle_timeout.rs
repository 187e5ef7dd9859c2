//! The downstream idle timeout of Envoy's connection manager, over real loopback sockets:
//! mesh servers and gateways close an HTTP connection that has had no active request for
//! MeshConfig's `defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT` (one hour unless set),
//! count a request as active until its response body has been sent, and keep every
//! connection with `0s`. An idle HTTP/1.1 connection drains for Envoy's `drain_timeout`
//! (5 s) first, answering a request that comes then with `Connection: close`.

mod conn_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_core::load::load_str;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tower::gateway::GatewayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use conn_support::{answered_200, until_closed};

const IDLE: Duration = Duration::from_millis(400);

/// Envoy's `drain_timeout`: how long an idle HTTP/1.1 connection drains before it closes.
const DRAIN: Duration = Duration::from_secs(5);

/// A mesh whose MeshConfig sets the proxies' idle timeout to `idle`.
fn mesh(idle: &str) -> Mesh {
    let config = MeshConfig::from_yaml(&format!(
        "defaultConfig: {{proxyMetadata: {{ISTIO_META_IDLE_TIMEOUT: {idle}}}}}"
    ))
    .unwrap();
    Mesh::with_mesh_config(&config)
}

/// A PERMISSIVE mesh server of `mesh` (plaintext callers get in) serving an app that
/// answers `/` at once, `/slow` after 1 s and `/stream` with a body sent over 1.2 s; its
/// address.
async fn mesh_server(mesh: Mesh) -> SocketAddr {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "slow"
            }),
        )
        .route(
            "/stream",
            axum::routing::get(|| async {
                let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
                tokio::spawn(async move {
                    for part in ["one ", "two ", "three"] {
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        let _ = tx.send(bytes::Bytes::from(part)).await;
                    }
                });
                axum::body::Body::new(Parts(rx))
            }),
        );
    conn_support::serve_mesh(mesh, "httpbin", app).await
}

/// A response body of the parts sent to it, ended when the sender goes.
struct Parts(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for Parts {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|part| part.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Reads one whole answer of `Content-Length` or chunked framing: enough to see its end.
async fn read_answer(tcp: &mut TcpStream, ends_with: &str) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-answer: {}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&all).ends_with(ends_with) {
                return;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no whole answer: {}",
        String::from_utf8_lossy(&all)
    );
    String::from_utf8_lossy(&all).into_owned()
}

/// How long after `since` the server closed `tcp` (nothing more read).
async fn closed_after(tcp: &mut TcpStream, since: Instant) -> Duration {
    assert_eq!(until_closed(tcp).await, "", "closed without a word");
    since.elapsed()
}

fn within_the_timeout(elapsed: Duration) {
    assert!(
        elapsed >= IDLE - Duration::from_millis(20) && elapsed < IDLE * 3,
        "closed after {elapsed:?}, the idle timeout being {IDLE:?}"
    );
}

/// How long after `since` the server closed an HTTP/1.1 connection `tcp` that carried a
/// request and went idle (nothing more read): it drains first.
async fn drained_after(tcp: &mut TcpStream, since: Instant) -> Duration {
    let mut all = Vec::new();
    let read = tokio::time::timeout(IDLE * 3 + DRAIN * 2, tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "still open after {:?}", since.elapsed());
    assert_eq!(String::from_utf8_lossy(&all), "", "closed without a word");
    since.elapsed()
}

fn within_the_timeout_and_drain(elapsed: Duration) {
    assert!(
        elapsed >= IDLE + DRAIN - Duration::from_millis(20) && elapsed < IDLE * 3 + DRAIN,
        "closed after {elapsed:?}, the idle timeout being {IDLE:?} and the drain {DRAIN:?}"
    );
}

#[tokio::test]
async fn a_mesh_server_closes_a_keep_alive_connection_idle_for_the_timeout() {
    let addr = mesh_server(mesh("400ms")).await;
    let mut tcp = conn_support::send(addr, "httpbin", "/").await;
    answered_200(&mut tcp).await;
    let answered = Instant::now();
    within_the_timeout_and_drain(drained_after(&mut tcp, answered).await);
}

/// A request sent after the idle timeout, in the drain window, is still answered, as
/// Envoy's connection manager answers it while draining: with `Connection: close`, the
/// connection closing right after.
async fn a_request_in_the_drain_window_is_answered_with_connection_close(
    addr: SocketAddr,
    host: &str,
) {
    let mut tcp = conn_support::send(addr, host, "/").await;
    answered_200(&mut tcp).await;
    tokio::time::sleep(IDLE * 2).await;
    tcp.write_all(format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let sent = Instant::now();
    let answer = until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn a_mesh_server_answers_a_request_in_the_drain_window_and_closes() {
    let addr = mesh_server(mesh("400ms")).await;
    a_request_in_the_drain_window_is_answered_with_connection_close(addr, "httpbin").await;
}

#[tokio::test]
async fn a_gateway_answers_a_request_in_the_drain_window_and_closes() {
    let (addr, _gateway) = gateway(mesh("400ms")).await;
    a_request_in_the_drain_window_is_answered_with_connection_close(addr, "example.com").await;
}

#[tokio::test]
async fn requests_keep_their_connection_while_active() {
    let addr = mesh_server(mesh("400ms")).await;
    // a handler slower than the timeout
    let mut tcp = conn_support::send(addr, "httpbin", "/slow").await;
    let answer = read_answer(&mut tcp, "slow").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // a response body sent over three times the timeout, on the same connection
    tcp.write_all(b"GET /stream HTTP/1.1\r\nhost: httpbin\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut tcp, "0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("three"), "{answer}");
    // requests closer together than the timeout keep the connection too
    for _ in 0..4 {
        tokio::time::sleep(IDLE / 2).await;
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: httpbin\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut tcp, "ok").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // then idle: closed (after the drain window)
    let answered = Instant::now();
    within_the_timeout_and_drain(drained_after(&mut tcp, answered).await);
}

#[tokio::test]
async fn zero_keeps_idle_connections() {
    let addr = mesh_server(mesh("0s")).await;
    let mut tcp = conn_support::send(addr, "httpbin", "/").await;
    answered_200(&mut tcp).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: httpbin\r\n\r\n")
        .await
        .unwrap();
    answered_200(&mut tcp).await;
}

/// A gateway of `mesh` on port 80, forwarding every host to a plain HTTP/1.1 upstream
/// answering `ok`; its address (and the gateway, which stops when dropped).
async fn gateway(mesh: Mesh) -> (SocketAddr, GatewayServer) {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        axum::serve(upstream, app).await
    });
    let loaded = load_str(&conn_support::gateway_config(upstream_port), "gateway.yaml");
    assert!(!loaded.has_errors());
    mesh.reload_loaded(loaded).unwrap();
    let gateway = conn_support::start_gateway(mesh, None).await;
    (gateway.local_addr(80).unwrap(), gateway)
}

#[tokio::test]
async fn a_gateway_closes_an_idle_connection() {
    let (addr, _gateway) = gateway(mesh("400ms")).await;
    let mut tcp = conn_support::send(addr, "example.com", "/").await;
    answered_200(&mut tcp).await;
    let answered = Instant::now();
    within_the_timeout_and_drain(drained_after(&mut tcp, answered).await);
}

/// On a plaintext port the connection manager has the connection from its first moment
/// (on a mesh server's PERMISSIVE and STRICT ports the connection is first the TLS
/// inspector's, as in Envoy: MeshConfig `protocolDetectionTimeout` and the TLS handshake
/// timeout bound that wait).
#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_too() {
    let (addr, _gateway) = gateway(mesh("400ms")).await;
    let opened = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    within_the_timeout(closed_after(&mut tcp, opened).await);
}

#[tokio::test]
async fn an_idle_http2_connection_is_sent_goaway_and_closed() {
    let addr = mesh_server(mesh("400ms")).await;
    let (mut send, conn) = conn_support::h2_client(addr).await;
    let request = || conn_support::get("http://httpbin/");
    let resp = send.send_request(request()).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let answered = Instant::now();
    // the client keeps its side open: only the server's GOAWAY ends the connection
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    within_the_timeout(answered.elapsed());
    assert!(send.send_request(request()).await.is_err());
}

/// An HTTP/2 client that never answers the GOAWAY's ping (hyper waits for it before it
/// closes) is closed after Envoy's drain timeout, 5 s, not kept until TCP gives up.
#[tokio::test]
async fn a_silent_http2_client_is_closed_after_the_drain_timeout() {
    let addr = mesh_server(mesh("400ms")).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // the client preface and an empty SETTINGS frame; then nothing, read or written
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let opened = Instant::now();
    // (the server's SETTINGS, GOAWAY and PING arrive first: read until the close)
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "still open after 10 s");
    let closed = opened.elapsed();
    assert!(
        closed >= Duration::from_secs(5) && closed < Duration::from_secs(8),
        "closed after {closed:?}"
    );
}

/// A stream the client resets before its body ended is no longer active: the connection is
/// idle from then.
#[tokio::test]
async fn a_reset_stream_leaves_its_connection_idle() {
    let addr = mesh_server(mesh("400ms")).await;
    let (mut send, conn) = conn_support::h2_client(addr).await;
    let req = conn_support::get("http://httpbin/stream");
    // the body would take 1.2 s; dropped with its headers (hyper resets the stream)
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let reset = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    within_the_timeout(reset.elapsed());
    drop(send);
}

/// Stopping a server ends an idle HTTP/1.1 connection's drain window at once, as Envoy's
/// own drain does: the connection closes when the server stops, not at the window's end.
#[tokio::test]
async fn stopping_a_gateway_ends_the_drain_window() {
    let (addr, gateway) = gateway(mesh("400ms")).await;
    let mut tcp = conn_support::send(addr, "example.com", "/").await;
    answered_200(&mut tcp).await;
    tokio::time::sleep(IDLE * 2).await; // idle for the timeout: draining
    let stopped = Instant::now();
    drop(gateway);
    let elapsed = closed_after(&mut tcp, stopped).await;
    assert!(
        elapsed < Duration::from_secs(2),
        "closed {elapsed:?} after the stop"
    );
}

#[tokio::test]
async fn stopping_a_mesh_server_ends_the_drain_window() {
    let server = conn_support::mesh_server(mesh("400ms"), "httpbin");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let serving = tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });
    let mut tcp = conn_support::send(addr, "httpbin", "/").await;
    answered_200(&mut tcp).await;
    tokio::time::sleep(IDLE * 2).await; // idle for the timeout: draining
    let stopped_at = Instant::now();
    stop.send(()).unwrap();
    let elapsed = closed_after(&mut tcp, stopped_at).await;
    assert!(
        elapsed < Duration::from_secs(2),
        "closed {elapsed:?} after the stop"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
}
