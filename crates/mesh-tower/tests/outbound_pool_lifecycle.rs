//! The life of a mesh client's pooled connections, over real loopback sockets, HTTP/1.1
//! and HTTP/2 alike:
//! - they are closed on time, as Envoy's codec client closes an upstream connection idle
//!   for the DestinationRule's `connectionPool.http.idleTimeout` (1 h by default) and
//!   drains one past `tcp.maxConnectionDuration`, with no later request to the destination
//!   to look at them; a connection carrying a request is never closed for idleness;
//! - they go with their destination: a dropped client, or a DestinationRule change (Envoy's
//!   cluster update), closes them;
//! - an endpoint update keeps the connections of the endpoints that stay, as Envoy keeps its
//!   hosts' pools, and closes those of the endpoints gone.

mod egress_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};

use egress_support::get;

/// The connections a plaintext server accepted and those that ended (the client closed
/// them: `serve_connection` returned).
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

/// A plaintext server speaking HTTP/2 (`h2`) or HTTP/1.1, answering `ok`; `/slow` after
/// 800 ms.
async fn server(h2: bool) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, c) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_millis(800)).await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        "ok",
                    ))))
                });
                let io = TokioIo::new(tcp);
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await
                };
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Server {
        addr,
        accepted,
        closed,
    }
}

/// A client of `backend.example.internal:8080` (an HTTP/2 port when `h2`), served by the
/// server at `port`, under a DestinationRule with `traffic_policy`.
fn client(port: u16, h2: bool, traffic_policy: &str) -> MeshClient {
    client_of(&Mesh::from_yaml(&config(port, h2, traffic_policy)).unwrap())
}

/// The test workload's client of `mesh`.
fn client_of(mesh: &Mesh) -> MeshClient {
    MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build()
}

/// `GET path` of the backend, answered 200 (`what` says which case, when it is not).
async fn get_ok(c: &MeshClient, path: &str, what: &str) {
    let (status, _, failure) = get(c, &format!("http://backend.example.internal:8080{path}")).await;
    assert_eq!(status, 200, "{what}{failure}");
}

/// The config of [`client`].
fn config(port: u16, h2: bool, traffic_policy: &str) -> String {
    config_with(&[port], h2, traffic_policy)
}

/// The config of [`client`], the service's endpoints served at `ports`.
fn config_with(ports: &[u16], h2: bool, traffic_policy: &str) -> String {
    let protocol = if h2 { "HTTP2" } else { "HTTP" };
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("{{address: 127.0.0.1, ports: {{web: {p}}}}}"))
        .collect();
    let endpoints = endpoints.join(", ");
    format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 8080, name: web, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{endpoints}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend}}
spec:
  host: backend.example.internal
  trafficPolicy: {traffic_policy}
"
    )
}

/// Waits (up to 10 s) until `n` reaches `want`; how long that took.
async fn until(n: &AtomicUsize, want: usize) -> Duration {
    let start = Instant::now();
    while n.load(Ordering::SeqCst) < want {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still {} of {want} after 10 s",
            n.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// One request, then none: the connection is closed once idle for the idle timeout.
async fn idle_connection_closed_on_time(h2: bool) {
    let s = server(h2).await;
    let c = client(
        s.addr.port(),
        h2,
        "{connectionPool: {http: {idleTimeout: 500ms}}}",
    );
    let (status, body, failure) = get(&c, "http://backend.example.internal:8080/").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{failure}");
    let answered = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.closed.load(Ordering::SeqCst),
        0,
        "open within the timeout"
    );
    until(&s.closed, 1).await;
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "closed {after:?} after the answer, for an idle timeout of 500 ms"
    );
    // the client is still usable: a new connection
    get_ok(&c, "/", "").await;
    assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_http1_connection_is_closed_at_the_idle_timeout_without_another_request() {
    idle_connection_closed_on_time(false).await;
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout_without_another_request() {
    idle_connection_closed_on_time(true).await;
}

#[tokio::test]
async fn a_connection_past_max_connection_duration_is_closed_without_another_request() {
    for h2 in [false, true] {
        let s = server(h2).await;
        // the idle timeout is the default, 1 h: the duration decides
        let c = client(
            s.addr.port(),
            h2,
            "{connectionPool: {tcp: {maxConnectionDuration: 600ms}}}",
        );
        get_ok(&c, "/", "").await;
        let took = until(&s.closed, 1).await;
        assert!(
            took < Duration::from_secs(3),
            "h2 {h2}: closed after {took:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_carrying_a_request_is_not_closed_for_idleness() {
    for h2 in [false, true] {
        let s = server(h2).await;
        let c = client(
            s.addr.port(),
            h2,
            "{connectionPool: {http: {idleTimeout: 200ms}}}",
        );
        // the answer takes 800 ms, four idle timeouts: the request is answered on its
        // connection, which is closed once idle after it
        let (status, body, failure) = get(&c, "http://backend.example.internal:8080/slow").await;
        assert_eq!((status, body.as_str()), (200, "ok"), "h2 {h2}: {failure}");
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1, "h2 {h2}");
        until(&s.closed, 1).await;
    }
}

#[tokio::test]
async fn connections_in_use_again_within_the_idle_timeout_stay_open() {
    // requests every 150 ms under an idle timeout of 400 ms: the connection is never idle
    // long enough to be closed
    let s = server(false).await;
    let c = client(
        s.addr.port(),
        false,
        "{connectionPool: {http: {idleTimeout: 400ms}}}",
    );
    for _ in 0..8 {
        get_ok(&c, "/", "").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        s.accepted.load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );
    assert_eq!(s.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_dropped_client_closes_its_pooled_connections_and_ends_its_sweepers() {
    // the default idle timeout (1 h): the sweeper would sleep that long, and the pooled
    // connection stay open; dropping the client (its destinations, their pools) closes the
    // connection and ends the sweeper at once
    let s = server(false).await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let c = client(
        s.addr.port(),
        false,
        "{connectionPool: {tcp: {maxConnections: 100}}}",
    );
    get_ok(&c, "/", "").await;
    // the server's connection task, the client's, and the destination's sweeper
    assert_eq!(tasks(), before + 3);
    drop(c);
    until(&s.closed, 1).await;
    let start = Instant::now();
    while tasks() != before {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} task(s) left",
            tasks() - before
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_destination_rebuilt_for_a_new_config_closes_its_old_connections() {
    // Envoy drains a cluster's connection pools when the cluster is updated: the pooled
    // connection of the old DestinationRule is closed, the next request opens a new one
    for h2 in [false, true] {
        let s = server(h2).await;
        let port = s.addr.port();
        let mesh = Mesh::from_yaml(&config(
            port,
            h2,
            "{connectionPool: {tcp: {maxConnections: 100}}}",
        ))
        .unwrap();
        let c = client_of(&mesh);
        get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1, "h2 {h2}: reused");

        mesh.reload_loaded(mesh_core::load::load_str(
            &config(port, h2, "{connectionPool: {tcp: {maxConnections: 50}}}"),
            "backend.yaml",
        ))
        .unwrap();
        get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2, "h2 {h2}: a new pool");
        until(&s.closed, 1).await;
        // the new pool's connection is reused
        get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2, "h2 {h2}");
        assert_eq!(s.closed.load(Ordering::SeqCst), 1, "h2 {h2}");
    }
}

#[tokio::test]
async fn an_endpoint_update_keeps_the_connections_of_the_endpoints_that_stay() {
    for h2 in [false, true] {
        let (s1, s2) = (server(h2).await, server(h2).await);
        let (p1, p2) = (s1.addr.port(), s2.addr.port());
        let policy = "{loadBalancer: {simple: ROUND_ROBIN}}";
        let mesh = Mesh::from_yaml(&config_with(&[p1], h2, policy)).unwrap();
        let c = client_of(&mesh);
        for _ in 0..2 {
            get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        }
        assert_eq!(s1.accepted.load(Ordering::SeqCst), 1, "h2 {h2}");

        // a second endpoint: the first keeps its connection, the second gets one
        let reload = |ports: &[u16]| {
            mesh.reload_loaded(mesh_core::load::load_str(
                &config_with(ports, h2, policy),
                "backend.yaml",
            ))
            .unwrap()
        };
        reload(&[p1, p2]);
        for _ in 0..4 {
            get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        }
        assert_eq!(s1.accepted.load(Ordering::SeqCst), 1, "h2 {h2}: kept");
        assert_eq!(
            s2.accepted.load(Ordering::SeqCst),
            1,
            "h2 {h2}: new endpoint"
        );
        assert_eq!(s1.closed.load(Ordering::SeqCst), 0, "h2 {h2}");

        // the first endpoint gone: its connection is closed, the second's kept
        reload(&[p2]);
        for _ in 0..2 {
            get_ok(&c, "/", &format!("h2 {h2}: ")).await;
        }
        until(&s1.closed, 1).await;
        assert_eq!(s2.accepted.load(Ordering::SeqCst), 1, "h2 {h2}: kept");
        assert_eq!(s2.closed.load(Ordering::SeqCst), 0, "h2 {h2}");

        // and dropping the client closes the rest
        drop(c);
        until(&s2.closed, 1).await;
    }
}

#[tokio::test]
async fn an_endpoint_whose_weight_changed_keeps_its_connections() {
    // Envoy updates such a host in place; a change of its locality (Envoy replaces the
    // host) or of its labels (what the metrics and the mesh TLS read) gives it a new pool
    let (s1, s2) = (server(false).await, server(false).await);
    let (p1, p2) = (s1.addr.port(), s2.addr.port());
    let policy = "{loadBalancer: {simple: ROUND_ROBIN}}";
    let first = format!("{{address: 127.0.0.1, ports: {{web: {p1}}}}}");
    let with_first =
        |endpoint: &str| config_with(&[p1, p2], false, policy).replace(&first, endpoint);
    let mesh = Mesh::from_yaml(&with_first(&first)).unwrap();
    let c = client_of(&mesh);
    for _ in 0..4 {
        get_ok(&c, "/", "").await;
    }
    assert_eq!(s1.accepted.load(Ordering::SeqCst), 1);
    let reload = |endpoint: &str| {
        mesh.reload_loaded(mesh_core::load::load_str(
            &with_first(endpoint),
            "backend.yaml",
        ))
        .unwrap()
    };
    reload(&format!(
        "{{address: 127.0.0.1, ports: {{web: {p1}}}, weight: 3}}"
    ));
    for _ in 0..8 {
        get_ok(&c, "/", "").await;
    }
    assert_eq!(s1.accepted.load(Ordering::SeqCst), 1, "weight: kept");
    assert_eq!(s1.closed.load(Ordering::SeqCst), 0);
    assert_eq!(
        s2.accepted.load(Ordering::SeqCst),
        1,
        "the other endpoint: kept"
    );

    let mut opened = 1;
    for (what, endpoint) in [
        ("locality", format!("{{address: 127.0.0.1, ports: {{web: {p1}}}, weight: 3, locality: us-east1/us-east1-b}}")),
        ("labels", format!("{{address: 127.0.0.1, ports: {{web: {p1}}}, weight: 3, locality: us-east1/us-east1-b, labels: {{version: v2}}}}")),
    ] {
        reload(&endpoint);
        for _ in 0..4 {
            get_ok(&c, "/", what).await;
        }
        until(&s1.closed, opened).await;
        opened += 1;
        assert_eq!(s1.accepted.load(Ordering::SeqCst), opened, "{what}: a new pool");
        assert_eq!(s2.accepted.load(Ordering::SeqCst), 1, "{what}: the other endpoint kept");
    }
}

/// A second service, `other.example.internal:8080`, served at `127.0.0.1:port` (to be
/// appended to [`config`]'s).
fn other_service(port: u16) -> String {
    format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: other}}
spec:
  hosts: [other.example.internal]
  ports: [{{number: 8080, name: web, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{web: {port}}}}}]
"
    )
}

#[tokio::test]
async fn a_reload_removing_a_service_closes_its_connections_at_the_next_request() {
    // Envoy drains a removed cluster's connections at once; here they go at the client's
    // next request, to any destination it already has
    let (s1, s2) = (server(false).await, server(false).await);
    let policy = "{connectionPool: {tcp: {maxConnections: 100}}}";
    let both = format!(
        "{}{}",
        config(s1.addr.port(), false, policy),
        other_service(s2.addr.port())
    );
    let mesh = Mesh::from_yaml(&both).unwrap();
    let c = client_of(&mesh);
    get_ok(&c, "/", "").await;
    let (status, _, failure) = get(&c, "http://other.example.internal:8080/").await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(s2.accepted.load(Ordering::SeqCst), 1);

    mesh.reload_loaded(mesh_core::load::load_str(
        &config(s1.addr.port(), false, policy),
        "backend.yaml",
    ))
    .unwrap();
    get_ok(&c, "/", "").await;
    until(&s2.closed, 1).await;
    assert_eq!(
        s1.closed.load(Ordering::SeqCst),
        0,
        "the service that stays keeps its connection"
    );
}

#[tokio::test]
async fn a_removed_service_busy_at_the_reload_goes_once_its_requests_are_done() {
    let (s1, s2) = (server(false).await, server(false).await);
    let other = other_service(s2.addr.port());
    let policy = "{connectionPool: {tcp: {maxConnections: 100}}}";
    let only_backend = config(s1.addr.port(), false, policy);
    let mesh = Mesh::from_yaml(&format!("{only_backend}{other}")).unwrap();
    let c = client_of(&mesh);
    get_ok(&c, "/", "").await;
    // a request to `other` in flight across the reload that removes it
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, "http://other.example.internal:8080/slow").await })
    };
    until(&s2.accepted, 1).await;
    mesh.reload_loaded(mesh_core::load::load_str(&only_backend, "backend.yaml"))
        .unwrap();
    get_ok(&c, "/", "").await;
    let (status, _, failure) = slow.await.unwrap();
    assert_eq!(status, 200, "the request in flight finishes: {failure}");
    // once it is done, the destination goes within a few hundred requests
    for _ in 0..600 {
        get_ok(&c, "/", "").await;
    }
    until(&s2.closed, 1).await;
    assert_eq!(s1.closed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_service_port_protocol_change_applies_to_an_existing_destination() {
    // the port is declared HTTP, the server speaks only HTTP/2 (h2c): the requests fail;
    // once the port is declared HTTP2, with the same endpoints and DestinationRule, the
    // destination is rebuilt and speaks HTTP/2
    let s = server(true).await;
    let port = s.addr.port();
    let policy = "{connectionPool: {tcp: {maxConnections: 100}}}";
    let mesh = Mesh::from_yaml(&config(port, false, policy)).unwrap();
    let c = client_of(&mesh);
    let (status, _, _) = get(&c, "http://backend.example.internal:8080/").await;
    assert_ne!(status, 200, "HTTP/1.1 to an HTTP/2-only server");
    mesh.reload_loaded(mesh_core::load::load_str(
        &config(port, true, policy),
        "backend.yaml",
    ))
    .unwrap();
    let (status, body, failure) = get(&c, "http://backend.example.internal:8080/").await;
    assert_eq!((status, body.as_str()), (200, "ok"), "{failure}");
}

#[tokio::test(start_paused = true)]
async fn a_paused_tokio_clock_does_not_make_the_sweeper_spin() {
    // tests that pause tokio's clock: it jumps to the sweeper's timer whenever the runtime
    // idles, while the pools' real clock stands still; the sweeper steps aside instead of
    // waking again and again (the clock would run days ahead in a second)
    let s = server(false).await;
    let c = client(
        s.addr.port(),
        false,
        "{connectionPool: {tcp: {maxConnections: 100}}}",
    );
    get_ok(&c, "/", "").await;
    let start = tokio::time::Instant::now();
    // the runtime idles on a socket for 300 ms of real time (a thread of its own connects)
    let idle = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = idle.local_addr().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::net::TcpStream::connect(at);
    });
    let _ = idle.accept().await.unwrap();
    let ran = start.elapsed();
    assert!(
        ran <= Duration::from_secs(2 * 3600),
        "tokio's clock ran {ran:?} ahead"
    );
}

/// An HTTP/2 server that answers its first request `200` and then says nothing more (no
/// PING acknowledged): its address, and when the client closed the connection.
async fn silent_h2_server() -> (SocketAddr, tokio::sync::oneshot::Receiver<Instant>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // SETTINGS (empty) and the acknowledgement of the client's
        tcp.write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x04\x01\x00\x00\x00\x00")
            .await
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let mut answered = false;
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                let _ = closed_tx.send(Instant::now());
                return;
            }
            if !answered {
                // HEADERS on stream 1, END_STREAM | END_HEADERS, `:status: 200` (HPACK
                // static index 8)
                answered = true;
                tcp.write_all(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x88")
                    .await
                    .unwrap();
            }
        }
    });
    (addr, closed)
}

/// DestinationRule `http.http2KeepAlive`: the mesh client PINGs its HTTP/2 connections every
/// `interval`, and closes one whose PING has no answer within `timeout` (Envoy's
/// `connection_keepalive`), idle or not; without it, an idle connection stays pooled.
#[tokio::test]
async fn http2_keepalive_closes_a_connection_whose_pings_go_unanswered() {
    for keepalive in [true, false] {
        let (addr, closed) = silent_h2_server().await;
        let policy = if keepalive {
            "{connectionPool: {http: {http2KeepAlive: {interval: 200ms, timeout: 200ms}}}}"
        } else {
            "{connectionPool: {http: {maxRequestsPerConnection: 0}}}"
        };
        let c = client(addr.port(), true, policy);
        let sent = Instant::now();
        get_ok(&c, "/", &format!("keepalive {keepalive}: ")).await;
        let r = tokio::time::timeout(Duration::from_secs(3), closed).await;
        if keepalive {
            let at = r.expect("closed within 3 s").unwrap();
            let after = at.duration_since(sent);
            assert!(after >= Duration::from_millis(350), "{after:?}");
        } else {
            assert!(r.is_err(), "no keepalive: the connection stays: {r:?}");
        }
    }
}
