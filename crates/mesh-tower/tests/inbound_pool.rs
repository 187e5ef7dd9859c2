//! The inbound connection pool: the circuit breakers istiod puts on a sidecar's inbound
//! cluster (the Sidecar's `ingress` listener for the port, its `inboundConnectionPool`,
//! else the served service's DestinationRule `connectionPool`) applied by a mesh server to
//! its application. Real mesh servers over loopback (plaintext under PERMISSIVE, and mesh
//! mTLS), an application that holds its requests until told to answer.

mod httpbin_client;
mod outbound_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use httpbin_client::{mtls, plain, Resp, HTTPBIN_HOST};
use mesh_core::mesh::Mesh;
use mesh_tower::inbound::MeshServer;
use outbound_support::{reload, Pki};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The application: each request waits for a permit of `gate`, then answers `ok`;
/// `inside` counts the requests it holds.
struct App {
    gate: Arc<Semaphore>,
    inside: Arc<AtomicUsize>,
}

impl App {
    fn new() -> App {
        App {
            gate: Arc::new(Semaphore::new(0)),
            inside: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn router(&self) -> Router {
        let gate = Arc::clone(&self.gate);
        let inside = Arc::clone(&self.inside);
        Router::new().fallback(move || {
            let gate = Arc::clone(&gate);
            let inside = Arc::clone(&inside);
            async move {
                inside.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                inside.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        })
    }

    /// Waits until the application holds `n` requests.
    async fn holding(&self, n: usize) {
        for _ in 0..400 {
            if self.inside.load(Ordering::SeqCst) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "the application holds {} requests, not {n}",
            self.inside.load(Ordering::SeqCst)
        );
    }
}

/// A mesh server for httpbin (namespace `foo`) on workload port `port` (80: the target of
/// the service's port 8000), told its service when `service_host`.
fn server(pki: &Pki, mesh: &Mesh, port: u16, service_host: bool) -> MeshServer {
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let mut builder = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels,
        pki.creds("foo", "httpbin"),
    )
    .port(port);
    if service_host {
        builder = builder.service_host(HTTPBIN_HOST);
    }
    builder.build().unwrap()
}

/// Serves `router` with `server` on a loopback port.
async fn serve(server: &MeshServer, router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener, router).await });
    addr
}

/// The httpbin server on port 80 serving `app`.
async fn httpbin(
    pki: &Pki,
    mesh: &Mesh,
    app: &App,
    service_host: bool,
) -> (SocketAddr, MeshServer) {
    let server = server(pki, mesh, 80, service_host);
    (serve(&server, app.router()).await, server)
}

/// Loads `config`, then starts the httpbin server (told its service) with a new gated
/// application.
async fn start(pki: &Pki, mesh: &Mesh, config: &str) -> (App, SocketAddr, MeshServer) {
    reload(mesh, config);
    let app = App::new();
    let (addr, server) = httpbin(pki, mesh, &app, true).await;
    (app, addr, server)
}

type Call = tokio::task::JoinHandle<std::io::Result<Resp>>;

/// Starts `n` plain requests and waits until the application holds them all.
async fn hold(app: &App, addr: SocketAddr, n: usize) -> Vec<Call> {
    let held: Vec<_> = (0..n).map(|_| spawn_plain(addr)).collect();
    app.holding(n).await;
    held
}

/// Lets the held requests go; each is answered 200.
async fn release(app: &App, held: Vec<Call>) {
    app.gate.add_permits(held.len());
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().0, 200);
    }
}

/// With `active` requests held and one more waiting for them, the next is refused; then
/// all are answered.
async fn full_then_overflow(app: &App, addr: SocketAddr, active: usize) {
    let held = hold(app, addr, active).await;
    let waiting = spawn_plain(addr);
    tokio::time::sleep(Duration::from_millis(50)).await;
    app.holding(active).await; // the last one waits
    assert_overflow(&plain(addr, req()).await.unwrap());
    release(app, held).await;
    release(app, vec![waiting]).await;
}

fn req() -> Request<Full<Bytes>> {
    Request::get("/get")
        .header("host", "httpbin.foo:8000")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn spawn_plain(addr: SocketAddr) -> tokio::task::JoinHandle<std::io::Result<Resp>> {
    tokio::spawn(plain(addr, req()))
}

fn service(protocol: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: foo}}
spec:
  selector: {{app: httpbin}}
  ports: [{{name: {protocol}, port: 8000, targetPort: 80}}]
"
    )
}

const ONE_CONNECTION_ONE_PENDING: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: foo}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
";

fn assert_overflow(resp: &Resp) {
    let (status, headers, body) = resp;
    assert_eq!(status.as_u16(), 503);
    assert_eq!(headers["x-envoy-overloaded"], "true");
    assert_eq!(
        &body[..],
        b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
}

/// Istio's circuit-breaking task, on the server side: one connection to the application,
/// one request waiting for it; a third is answered 503 `UO` at once, and the two others
/// are answered when the application lets them go, in turn.
#[tokio::test]
async fn the_destination_rule_pool_limits_what_reaches_the_application() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let (app, addr, server) = start(
        &pki,
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING),
    )
    .await;

    // the second waits for the connection, the third is refused
    full_then_overflow(&app, addr, 1).await;

    // free again; the refusal is counted as Envoy flags it
    app.gate.add_permits(1);
    assert_eq!(plain(addr, req()).await.unwrap().0, 200);
    let text = server.metrics().render();
    let uo = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"UO\""))
        .unwrap_or_else(|| panic!("no UO sample in\n{text}"));
    assert!(
        uo.contains("response_code=\"503\"") && uo.ends_with(" 1"),
        "{uo}"
    );
}

/// With MeshConfig `proxyHeaders.envoyDebugHeaders.disabled` istiod configures the inbound
/// router with `suppress_envoy_headers` too: the overflow answer has no
/// `x-envoy-overloaded`, and is otherwise Envoy's.
#[tokio::test]
async fn the_overflow_answer_has_no_envoy_header_when_they_are_suppressed() {
    let pki = Pki::new();
    let config = mesh_core::meshconfig::MeshConfig::from_yaml(
        "defaultConfig: {proxyHeaders: {envoyDebugHeaders: {disabled: true}}}",
    )
    .unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    let (app, addr, _server) = start(
        &pki,
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING),
    )
    .await;
    let held = hold(&app, addr, 1).await;
    let waiting = spawn_plain(addr);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, headers, body) = plain(addr, req()).await.unwrap();
    assert_eq!(status.as_u16(), 503);
    assert!(body.ends_with(b"reset reason: overflow"), "{body:?}");
    assert!(!headers.contains_key("x-envoy-overloaded"), "{headers:?}");
    release(&app, held).await;
    release(&app, vec![waiting]).await;
}

/// A gRPC caller gets Envoy's gRPC form of the overflow (a free connection, but
/// `http2MaxRequests` reached); an HTTP/2 caller of an `HTTP` port is counted too.
#[tokio::test]
async fn overflow_answers_grpc_callers_in_grpc_and_http2_callers_count_too() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let pool = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: foo}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 2}
      http: {http2MaxRequests: 1}
";
    let (app, addr, _server) = start(&pki, &mesh, &(service("http") + "---" + pool)).await;
    let sleep = pki.creds("foo", "sleep");
    let first = tokio::spawn({
        let sleep = Arc::clone(&sleep);
        async move { mtls(addr, &sleep, true, req()).await }
    });
    app.holding(1).await;
    let grpc = Request::post("/pkg.Svc/Method")
        .header("host", "httpbin.foo:8000")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = mtls(addr, &sleep, true, grpc).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(headers["grpc-status"], "14"); // UNAVAILABLE
    assert_eq!(headers["x-envoy-overloaded"], "true");
    app.gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().0, 200);
}

/// Precedence as istiod's: the Sidecar's ingress listener for the port over its
/// `inboundConnectionPool` over the DestinationRule; a pool on an `HTTP2` port limits
/// active requests only.
#[tokio::test]
async fn sidecar_pools_take_precedence_over_the_destination_rule() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let sidecar = &sidecar_yaml(
        "  inboundConnectionPool: {http: {http2MaxRequests: 2}}
",
    );
    let (app, addr, _server) = start(
        &pki,
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING + "---" + sidecar),
    )
    .await;
    // two at once reach the application (the DestinationRule's single connection is not
    // in force), the third is refused
    let held = hold(&app, addr, 2).await;
    assert_overflow(&plain(addr, req()).await.unwrap());
    release(&app, held).await;

    // an ingress listener for port 80 wins over inboundConnectionPool, and applies on the
    // next request after the reload
    let sidecar = &sidecar_yaml(
        "  ingress:
  - port: {number: 80, protocol: HTTP2, name: http2}
    connectionPool: {tcp: {maxConnections: 1}, http: {http2MaxRequests: 3, http1MaxPendingRequests: 1}}
  inboundConnectionPool: {http: {http2MaxRequests: 2}}
",
    );
    reload(
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING + "---" + sidecar),
    );
    // HTTP2 to the application: one connection carries them all, three at once
    let held = hold(&app, addr, 3).await;
    assert_overflow(&plain(addr, req()).await.unwrap());
    release(&app, held).await;
}

/// Without a service the server knows (`service_host`), no DestinationRule applies; and a
/// request the authorization denies takes no slot.
#[tokio::test]
async fn no_service_no_destination_rule_and_denials_take_no_slot() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    reload(
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING),
    );
    let app = App::new();
    let (addr, _server) = httpbin(&pki, &mesh, &app, false).await;
    let held = hold(&app, addr, 3).await;
    release(&app, held).await;

    let deny = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-post, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: [POST]}}]}]
";
    let (app, addr, _server) = start(
        &pki,
        &mesh,
        &(service("http") + "---" + ONE_CONNECTION_ONE_PENDING + "---" + deny),
    )
    .await;
    let first = hold(&app, addr, 1).await;
    for _ in 0..3 {
        let post = Request::post("/post")
            .header("host", "httpbin.foo:8000")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(plain(addr, post).await.unwrap().0, 403);
    }
    // the pending slot is still free
    let second = spawn_plain(addr);
    tokio::time::sleep(Duration::from_millis(50)).await;
    release(&app, first).await;
    release(&app, vec![second]).await;
}

/// On a TCP port a proxied connection holds one of `tcp.maxConnections`; past it the
/// connection is closed, as Envoy's TCP proxy closes it.
#[tokio::test]
async fn tcp_connections_past_max_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    reload(
        &mesh,
        &(service("tcp") + "---" + ONE_CONNECTION_ONE_PENDING),
    );
    let server = server(&pki, &mesh, 80, true);
    let metrics = std::sync::Arc::clone(server.metrics());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        server
            .serve_tcp(listener, |mut conn| async move {
                // echo until the caller closes
                let mut buf = [0u8; 64];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            })
            .await
    });
    let echo = |mut s: tokio::net::TcpStream| async move {
        s.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        (s, buf[..n].to_vec())
    };
    let (first, got) = echo(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(got, b"ping");
    let (_, got) = echo(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert!(got.is_empty(), "a second connection is closed: {got:?}");
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, got) = echo(tokio::net::TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(got, b"ping", "the slot is free again");
    // the refused one is counted as Envoy flags it
    let text = metrics.render();
    let uo = text
        .lines()
        .find(|l| {
            l.starts_with("istio_tcp_connections_opened_total{")
                && l.contains("response_flags=\"UO\"")
        })
        .unwrap_or_else(|| panic!("no UO connection in\n{text}"));
    assert!(uo.ends_with(" 1"), "{uo}");
}

/// Many callers at once, over HTTP/1.1 and HTTP/2, some going away while they wait: the
/// application never holds more than `maxConnections`, every answer is a 200 or the 503
/// overflow, and no slot leaks (the limits admit as many as before once all is done).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_respects_the_limits_and_leaks_no_slot() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let pool = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: foo}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 4}
      http: {http1MaxPendingRequests: 20}
";
    reload(&mesh, &(service("http") + "---" + pool));
    // the application answers after 2 ms (or, gated, when let go), noting the most it
    // ever held
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let gated = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::new(Semaphore::new(0));
    let app = {
        let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
        let (gated, gate) = (Arc::clone(&gated), Arc::clone(&gate));
        Router::new().fallback(move || {
            let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
            let (gated, gate) = (Arc::clone(&gated), Arc::clone(&gate));
            async move {
                // counted out when the handler ends or is dropped (its caller went away)
                struct Inside(Arc<AtomicUsize>);
                impl Drop for Inside {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                let _inside = Inside(inside);
                most.fetch_max(now, Ordering::SeqCst);
                if gated.load(Ordering::SeqCst) {
                    gate.acquire().await.unwrap().forget();
                } else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                "ok"
            }
        })
    };
    let addr = serve(&server(&pki, &mesh, 80, true), app).await;
    let sleep = pki.creds("foo", "sleep");

    let mut tasks = Vec::new();
    for i in 0..120 {
        let sleep = Arc::clone(&sleep);
        tasks.push(tokio::spawn(async move {
            let call = async {
                if i % 3 == 0 {
                    mtls(addr, &sleep, true, req()).await
                } else {
                    plain(addr, req()).await
                }
            };
            if i % 10 == 9 {
                // a caller that gives up early (maybe while pending)
                return tokio::time::timeout(Duration::from_millis(1), call)
                    .await
                    .ok();
            }
            Some(call.await)
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            None => {}
            Some(Ok((status, headers, _))) if status == 503 => {
                assert_eq!(headers["x-envoy-overloaded"], "true");
                refused += 1;
            }
            Some(Ok((status, _, body))) => {
                assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
                ok += 1;
            }
            Some(Err(e)) => panic!("transport error: {e}"),
        }
    }
    assert!(ok > 0, "{ok} answered, {refused} refused");
    assert!(
        most.load(Ordering::SeqCst) <= 4,
        "the application held {} at once",
        most.load(Ordering::SeqCst)
    );
    // nothing leaked: four at once still reach the application together
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(inside.load(Ordering::SeqCst), 0);
    gated.store(true, Ordering::SeqCst);
    let again: Vec<_> = (0..4).map(|_| spawn_plain(addr)).collect();
    for _ in 0..400 {
        if inside.load(Ordering::SeqCst) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(inside.load(Ordering::SeqCst), 4, "a slot leaked");
    gate.add_permits(4);
    for a in again {
        assert_eq!(a.await.unwrap().unwrap().0, 200);
    }
}

/// The namespace `foo`'s default Sidecar with this `spec` (YAML lines, two-space indent).
fn sidecar_yaml(spec: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: foo}}
spec:
{spec}"
    )
}

fn dr(policy: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin, namespace: foo}}
spec:
  host: httpbin
  trafficPolicy:
{policy}"
    )
}

/// As Envoy's pools: a request waiting for a connection holds a pending slot only; it
/// counts against `http2MaxRequests` once it has one.
#[tokio::test]
async fn pending_requests_are_not_active_requests() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let pool = dr("    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 5, http2MaxRequests: 2}
");
    let (app, addr, _server) = start(&pki, &mesh, &(service("http") + "---" + &pool)).await;
    let first = hold(&app, addr, 1).await;
    // three wait for the one connection (1 active + 3 pending: within both limits)
    let waiting: Vec<_> = (0..3).map(|_| spawn_plain(addr)).collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for w in &waiting {
        assert!(!w.is_finished(), "a pending request was answered early");
    }
    app.gate.add_permits(4);
    assert_eq!(
        first.into_iter().next().unwrap().await.unwrap().unwrap().0,
        200
    );
    for w in waiting {
        assert_eq!(w.await.unwrap().unwrap().0, 200);
    }
}

/// istiod honours a DestinationRule's `workloadSelector` for outbound traffic only: such a
/// rule sets no inbound limits.
#[tokio::test]
async fn a_destination_rule_with_a_workload_selector_is_not_applied_inbound() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let selected = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-selected, namespace: foo}
spec:
  host: httpbin
  workloadSelector: {matchLabels: {app: httpbin}}
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
";
    let (app, addr, _server) = start(&pki, &mesh, &(service("http") + "---" + selected)).await;
    let held = hold(&app, addr, 3).await;
    release(&app, held).await;
}

/// Ports outside istiod's inbound clusters go through its passthrough cluster, without
/// limits: a port the Sidecar's `ingress` listeners do not declare, and (without ingress
/// listeners) a port no port of the service targets.
#[tokio::test]
async fn passthrough_ports_have_no_limits() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let sidecar = &sidecar_yaml(
        "  ingress:
  - port: {number: 9999, protocol: HTTP, name: http-other}
  inboundConnectionPool: {http: {http2MaxRequests: 1}}
",
    );
    let (app, addr, _server) = start(&pki, &mesh, &(service("http") + "---" + sidecar)).await;
    let held = hold(&app, addr, 2).await;
    release(&app, held).await;

    // no ingress listeners; the server on 7777, which the service (-> 80) does not target
    let sidecar = &sidecar_yaml(
        "  inboundConnectionPool: {http: {http2MaxRequests: 1}}
",
    );
    reload(&mesh, &(service("http") + "---" + sidecar));
    let addr = serve(&server(&pki, &mesh, 7777, true), app.router()).await;
    let held = hold(&app, addr, 2).await;
    release(&app, held).await;
}

/// With an ingress listener, istiod reads the DestinationRule's port-level settings by
/// the listener's port, not the service port.
#[tokio::test]
async fn an_ingress_listener_reads_port_level_settings_by_its_own_port() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let sidecar = &sidecar_yaml(
        "  ingress:
  - port: {number: 80, protocol: HTTP, name: http}
",
    );
    let at = |port: u16| {
        dr(&format!(
            "    portLevelSettings:
    - port: {{number: {port}}}
      connectionPool: {{http: {{http2MaxRequests: 1}}}}
"
        ))
    };
    let (app, addr, _server) = start(
        &pki,
        &mesh,
        &(service("http") + "---" + &at(8000) + "---" + sidecar),
    )
    .await;
    let held = hold(&app, addr, 2).await;
    release(&app, held).await;
    // the listener's port: applied (on the next request after the reload)
    reload(
        &mesh,
        &(service("http") + "---" + &at(80) + "---" + sidecar),
    );
    let held = hold(&app, addr, 1).await;
    assert_overflow(&plain(addr, req()).await.unwrap());
    release(&app, held).await;
}

/// An `HTTP2` port: the application is reached over HTTP/2, `maxConnections` connections
/// of `maxConcurrentStreams` streams; `useClientProtocol` makes it the caller's protocol
/// (HTTP/1.1 here: one request per connection).
#[tokio::test]
async fn http2_ports_count_streams_and_use_client_protocol_counts_connections() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let streams = dr("    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxConcurrentStreams: 2}
");
    let (app, addr, _server) = start(&pki, &mesh, &(service("http2") + "---" + &streams)).await;
    full_then_overflow(&app, addr, 2).await;

    let client_protocol = dr("    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, useClientProtocol: true}
");
    reload(&mesh, &(service("http2") + "---" + &client_protocol));
    full_then_overflow(&app, addr, 1).await;
}

/// A service whose `targetPort` is a name: the port is the one the workload's endpoint
/// gives that name, as istiod resolves it.
#[tokio::test]
async fn a_named_target_port_is_resolved_through_the_workloads_endpoint() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let named = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: web}]
";
    reload(
        &mesh,
        &(named.to_owned() + "---" + ONE_CONNECTION_ONE_PENDING),
    );
    mesh.register(
        mesh_core::registry::Workload::new(
            "httpbin-1",
            "foo",
            "httpbin",
            [("app", "httpbin")],
            "127.0.0.1".parse().unwrap(),
        )
        .with_port("web", 80),
    );
    let app = App::new();
    let (addr, _server) = httpbin(&pki, &mesh, &app, true).await;
    full_then_overflow(&app, addr, 1).await;
}

/// An application whose own service is not always ready (a `tower` concurrency limit of
/// one, no mesh pool): a request on a second connection waits for the first one's answer,
/// then reaches the application and is answered. (A mesh server calls a connection's
/// stack in place; one not ready is driven with its request, so its place in the limit's
/// line is not left behind.)
#[tokio::test]
async fn an_application_limit_holds_a_second_connection_until_the_first_is_answered() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    reload(&mesh, &service("http"));
    let app = App::new();
    let server = server(&pki, &mesh, 80, true);
    let limited = tower::limit::ConcurrencyLimit::new(app.router(), 1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, limited).await });

    let first = hold(&app, addr, 1).await;
    let second = spawn_plain(addr);
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.holding(1).await; // the second waits at the limit, not in the application
    assert!(!second.is_finished());
    release(&app, first).await;
    app.holding(1).await; // the second is in now
    release(&app, vec![second]).await;
    // and the connections' stacks take requests as before
    let third = hold(&app, addr, 1).await;
    release(&app, third).await;
}
