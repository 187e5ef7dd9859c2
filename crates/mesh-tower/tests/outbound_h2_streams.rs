//! HTTP/2 connections past their stream limit, over real loopback sockets: when every
//! stream of the endpoint's HTTP/2 connection is taken (the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, or DestinationRule `http.maxConcurrentStreams`), the
//! mesh client opens another connection, as Envoy's HTTP/2 pool does, instead of queueing
//! requests behind the busy streams. A connection that then carries no stream for the
//! destination's idle timeout is closed, as Envoy's codec client closes it.

mod egress_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::sync::Barrier;

use egress_support::get;

/// An h2c server announcing `max_streams` (`None`: hyper's default, 200). Requests to
/// `/gate` are held until `gate` requests are in the handler at once (or 5 s: then 504);
/// the others are answered at once. Counts the connections it accepted.
async fn h2_server(max_streams: Option<u32>, gate: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, accepted, _) = h2_server_closes(max_streams, gate).await;
    (addr, accepted)
}

/// [`h2_server`], also counting the connections that ended (the client closed them:
/// `serve_connection` returned).
async fn h2_server_closes(
    max_streams: Option<u32>,
    gate: usize,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conns, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (accepted, closed) = (Arc::clone(&conns), Arc::clone(&ended));
    let barrier = Arc::new(Barrier::new(gate));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let barrier = Arc::clone(&barrier);
            let closed = Arc::clone(&closed);
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let barrier = Arc::clone(&barrier);
                    async move {
                        let mut resp = http::Response::new(Full::new(Bytes::from("ok")));
                        if req.uri().path() == "/gate"
                            && tokio::time::timeout(Duration::from_secs(5), barrier.wait())
                                .await
                                .is_err()
                        {
                            *resp.status_mut() = http::StatusCode::GATEWAY_TIMEOUT;
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                if let Some(n) = max_streams {
                    server.max_concurrent_streams(n);
                }
                let _ = server.serve_connection(TokioIo::new(tcp), svc).await;
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, conns, ended)
}

fn mesh(port: u16, dr: &str) -> Mesh {
    Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: grpc-backend}}
spec:
  hosts: [grpc.example.internal]
  ports: [{{number: 50051, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {port}}}}}]
{dr}"
    ))
    .unwrap()
}

fn client(mesh: &Mesh) -> MeshClient {
    MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build()
}

/// Sends `n` requests to `path` at once; their statuses.
async fn concurrent(c: &MeshClient, path: &str, n: usize) -> Vec<u16> {
    let uri = format!("http://grpc.example.internal:50051{path}");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, uri) = (c.clone(), uri.clone());
            tokio::spawn(async move { get(&c, &uri).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn a_server_stream_limit_opens_another_connection() {
    // the server takes 2 streams per connection; 4 requests are held until all 4 are in
    let (addr, conns) = h2_server(Some(2), 4).await;
    let mesh = mesh(addr.port(), "");
    let c = client(&mesh);
    // one request first, so the connection (and the server's SETTINGS) is known
    let (status, body, failure) = get(&c, "http://grpc.example.internal:50051/").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{failure}");
    assert_eq!(conns.load(Ordering::SeqCst), 1);

    assert_eq!(concurrent(&c, "/gate", 4).await, [200; 4]);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "two streams per connection"
    );

    // the streams are free again: later requests reuse the pooled connections
    for _ in 0..5 {
        assert_eq!(concurrent(&c, "/", 2).await, [200; 2]);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn destination_rule_max_concurrent_streams_is_the_client_limit() {
    // the server would take 200 streams; the DestinationRule allows 1 per connection
    let (addr, conns) = h2_server(None, 3).await;
    let dr = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc-backend}
spec:
  host: grpc.example.internal
  trafficPolicy:
    connectionPool: {http: {maxConcurrentStreams: 1}}
";
    let mesh = mesh(addr.port(), dr);
    let c = client(&mesh);
    assert_eq!(concurrent(&c, "/", 1).await, [200]);
    assert_eq!(concurrent(&c, "/gate", 3).await, [200; 3]);
    assert_eq!(conns.load(Ordering::SeqCst), 3, "one stream per connection");
}

#[tokio::test]
async fn max_connections_caps_the_connections_and_requests_share_them() {
    // one stream per connection, at most two connections: the third request waits for a
    // stream on one of them instead of failing or opening a third
    let (addr, conns) = h2_server(Some(1), 2).await;
    let dr = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc-backend}
spec:
  host: grpc.example.internal
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 2}}
";
    let mesh = mesh(addr.port(), dr);
    let c = client(&mesh);
    assert_eq!(concurrent(&c, "/", 1).await, [200]);
    let gate = concurrent(&c, "/gate", 2);
    let (gated, plain) = tokio::join!(gate, async {
        // sent once the two gated requests are in (each on its own connection)
        tokio::time::sleep(Duration::from_millis(200)).await;
        concurrent(&c, "/", 1).await
    });
    assert_eq!(gated, [200; 2]);
    assert_eq!(plain, [200]);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn without_a_connection_slot_requests_wait_for_a_free_stream() {
    // the DestinationRule allows one stream and one connection: requests are pending until
    // the stream is free (the server, which would take 200, never sees two at once)
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (Arc::clone(&now), Arc::clone(&max));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (n, m) = (Arc::clone(&n), Arc::clone(&m));
            tokio::spawn(async move {
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let (n, m) = (Arc::clone(&n), Arc::clone(&m));
                    async move {
                        let in_flight = n.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(in_flight, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        n.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from("ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let dr = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: grpc-backend}
spec:
  host: grpc.example.internal
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {maxConcurrentStreams: 1}}
";
    let mesh = mesh(addr.port(), dr);
    let c = client(&mesh);
    assert_eq!(concurrent(&c, "/", 1).await, [200]);
    assert_eq!(concurrent(&c, "/", 3).await, [200; 3]);
    assert_eq!(max.load(Ordering::SeqCst), 1, "one stream at a time");
}

/// Waits (up to 10 s) until `n` reaches `want`; its last value.
async fn reaches(n: &AtomicUsize, want: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while n.load(Ordering::SeqCst) != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n.load(Ordering::SeqCst)
}

/// One stream per connection: two requests at once open two connections.
fn one_stream_dr(idle_timeout: Option<&str>) -> String {
    let http = match idle_timeout {
        Some(t) => format!("{{maxConcurrentStreams: 1, idleTimeout: {t}}}"),
        None => "{maxConcurrentStreams: 1}".to_owned(),
    };
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: grpc-backend}}
spec:
  host: grpc.example.internal
  trafficPolicy:
    connectionPool: {{http: {http}}}
"
    )
}

#[tokio::test]
async fn http2_connections_idle_for_the_idle_timeout_are_closed() {
    // Envoy closes an upstream HTTP/2 connection that has had no active stream for
    // `idleTimeout`: the connection opened at the peak does not stay open after it
    let (addr, accepted, closed) = h2_server_closes(None, 2).await;
    let mesh = mesh(addr.port(), &one_stream_dr(Some("1s")));
    let c = client(&mesh);
    assert_eq!(concurrent(&c, "/gate", 2).await, [200; 2]);
    let peak = accepted.load(Ordering::SeqCst);
    assert!(peak >= 2, "one stream per connection: {peak} connection(s)");

    // well past the idle timeout, the next request lets the idle connections go (hyper
    // closes them: no sender and no stream left) and goes out on a new one
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, body, failure) = get(&c, "http://grpc.example.internal:50051/").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{failure}");
    assert_eq!(
        reaches(&closed, peak).await,
        peak,
        "the server saw the idle connections closed"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        peak + 1,
        "a fresh connection"
    );

    // the fresh connection is pooled and reused while it is not idle
    let (status, _, failure) = get(&c, "http://grpc.example.internal:50051/").await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(accepted.load(Ordering::SeqCst), peak + 1);
    assert_eq!(closed.load(Ordering::SeqCst), peak);
}

#[tokio::test]
async fn http2_connections_stay_open_within_the_idle_timeout() {
    // the default idle timeout (1 h): after a short wait the peak's connections are all
    // still open, and the next request reuses one
    let (addr, accepted, closed) = h2_server_closes(None, 2).await;
    let mesh = mesh(addr.port(), &one_stream_dr(None));
    let c = client(&mesh);
    assert_eq!(concurrent(&c, "/gate", 2).await, [200; 2]);
    let peak = accepted.load(Ordering::SeqCst);
    assert!(peak >= 2, "one stream per connection: {peak} connection(s)");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        assert_eq!(concurrent(&c, "/", 1).await, [200]);
    }
    assert_eq!(concurrent(&c, "/gate", 2).await, [200; 2]);
    // give a closing connection the time to be seen closed
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(closed.load(Ordering::SeqCst), 0, "no connection closed");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        peak,
        "the pooled ones reused"
    );
}
