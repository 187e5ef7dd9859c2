//! What Envoy's router writes and reads on a sidecar's outbound requests, as istiod
//! configures it: `x-envoy-attempt-count` on every attempt, the debug headers
//! (`x-envoy-expected-rq-timeout-ms`, `x-envoy-original-path`,
//! `x-envoy-upstream-service-time`), a gRPC caller's `grpc-timeout` as the request's
//! deadline (capped at the route's `timeout`, passed on to the upstream), the
//! application's own Envoy control headers removed unread, and MeshConfig
//! `defaultConfig.proxyHeaders` turning them off. A real mesh client and gateway to a real
//! HTTP backend on loopback that records what it received.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::IntoResponse;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Empty};
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

/// What the backend received: `(path with query, headers)`, in order.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A backend recording every request. `/flaky` answers 503 on its first call, `/slow`
/// answers after 1.5 s, `/slow-once` after 1.5 s on its first call only; anything else at
/// once, 200 `ok`.
async fn backend() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let s = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |req: Request| {
        let (seen, calls) = (Arc::clone(&s), Arc::clone(&calls));
        async move {
            let path = req.uri().path().to_owned();
            let pq = req
                .uri()
                .path_and_query()
                .map_or(path.clone(), |p| p.to_string());
            seen.lock().unwrap().push((pq, req.headers().clone()));
            let n = {
                let mut c = calls.lock().unwrap();
                let n = c.entry(path.clone()).or_default();
                *n += 1;
                *n
            };
            match (path.as_str(), n) {
                ("/flaky", 1) => (http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
                ("/named", _) => ([(http::header::SERVER, "istio-envoy")], "named").into_response(),
                ("/dated", _) => ([(http::header::DATE, OLD_DATE)], "dated").into_response(),
                ("/slow", _) | ("/slow-once", 1) => {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "late".into_response()
                }
                _ => "ok".into_response(),
            }
        }
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, seen)
}

/// `api.example.internal` on the backend: `/rewrite` rewritten to `/v1`, `/timed` (to
/// `/slow`) with a 300 ms timeout, `/retry` (to `/slow-once`) with 2 retries on 5xx and a
/// 400 ms per-try timeout,
/// `/direct` answered by the route itself; the rest with no timeout.
fn config(backend: SocketAddr) -> String {
    api_with(
        backend,
        "
  - match: [{uri: {prefix: /rewrite}}]
    rewrite: {uri: /v1}
    route: [{destination: {host: api.example.internal}}]
  - match: [{uri: {prefix: /timed}}]
    rewrite: {uri: /slow}
    timeout: 300ms
    route: [{destination: {host: api.example.internal}}]
  - match: [{uri: {prefix: /retry}}]
    rewrite: {uri: /slow-once}
    retries: {attempts: 2, perTryTimeout: 400ms, retryOn: 5xx}
    route: [{destination: {host: api.example.internal}}]
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 200, body: {string: direct}}
  - retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: api.example.internal}}]
",
    )
}

/// `api.example.internal` (a ServiceEntry on the backend) with a VirtualService of these
/// `http` routes.
fn api_with(backend: SocketAddr, routes: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  http:{routes}",
        backend.port()
    )
}

fn client(mesh: Mesh) -> MeshClient {
    MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build()
}

async fn mesh_client(backend: SocketAddr, mesh_config: &str) -> MeshClient {
    let mesh = Mesh::with_mesh_config(&MeshConfig::from_yaml(mesh_config).unwrap());
    mesh.reload_loaded(mesh_core::load::load_str(&config(backend), "api.yaml"))
        .unwrap();
    client(mesh)
}

/// Sends a GET with `headers`; the answer's status, headers and body, and how long it
/// took.
async fn get(
    c: &MeshClient,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String, Duration) {
    let mut b = http::Request::get(format!("http://api.example.internal{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        c.request(b.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .expect("answered")
    .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
        started.elapsed(),
    )
}

/// The headers of the requests the backend received for `path` (with query).
fn received(seen: &Seen, path: &str) -> Vec<HeaderMap> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == path)
        .map(|(_, h)| h.clone())
        .collect()
}

fn value<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn every_attempt_is_counted_and_the_answer_timed() {
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "{}").await;
    // the application's own count is replaced
    let (status, headers, body, _) = get(&c, "/flaky", &[("x-envoy-attempt-count", "7")]).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let tries = received(&seen, "/flaky");
    let counts: Vec<_> = tries
        .iter()
        .map(|h| value(h, "x-envoy-attempt-count"))
        .collect();
    assert_eq!(counts, [Some("1"), Some("2")]);
    for h in &tries {
        // no timeout on the route: nothing to expect
        assert_eq!(value(h, "x-envoy-expected-rq-timeout-ms"), None);
        assert_eq!(value(h, "x-envoy-is-timeout-retry"), None);
    }
    let service_time: u64 = value(&headers, "x-envoy-upstream-service-time")
        .expect("x-envoy-upstream-service-time")
        .parse()
        .unwrap();
    assert!(service_time < 5000, "{service_time}");
    // a local answer did not come from upstream: no service time
    let (status, headers, body, _) = get(&c, "/direct", &[]).await;
    assert_eq!((status, body.as_str()), (200, "direct"));
    assert_eq!(value(&headers, "x-envoy-upstream-service-time"), None);
}

#[tokio::test]
async fn a_grpc_callers_deadline_bounds_the_request_and_travels_on() {
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let grpc = |timeout| {
        [
            ("content-type", "application/grpc"),
            ("grpc-timeout", timeout),
        ]
    };

    // no VirtualService timeout: the caller's 300 ms
    let (status, headers, _, took) = get(&c, "/slow", &grpc("300m")).await;
    assert_eq!(status, 200);
    assert_eq!(value(&headers, "grpc-status"), Some("14"));
    assert_eq!(
        value(&headers, "grpc-message"),
        Some("upstream request timeout")
    );
    assert!(took < Duration::from_millis(1300), "{took:?}");
    let h = &received(&seen, "/slow")[0];
    assert_eq!(value(h, "grpc-timeout"), Some("300m"));
    assert_eq!(value(h, "x-envoy-expected-rq-timeout-ms"), Some("300"));

    // the route's 300 ms caps a longer deadline, and the upstream is told the shorter
    seen.lock().unwrap().clear();
    let (status, headers, _, took) = get(&c, "/timed", &grpc("20S")).await;
    assert_eq!((status, value(&headers, "grpc-status")), (200, Some("14")));
    assert!(took < Duration::from_millis(1300), "{took:?}");
    let h = &received(&seen, "/slow")[0];
    assert_eq!(value(h, "grpc-timeout"), Some("300m"));

    // a deadline shorter than the route's wins; in seconds it comes out in milliseconds
    seen.lock().unwrap().clear();
    let (status, headers, _, _) = get(&c, "/ok", &grpc("1S")).await;
    assert_eq!((status, value(&headers, "grpc-status")), (200, None));
    let h = &received(&seen, "/ok")[0];
    assert_eq!(value(h, "grpc-timeout"), Some("1000m"));

    // not gRPC: `grpc-timeout` means nothing to the router and goes on as it came
    seen.lock().unwrap().clear();
    let (status, _, body, took) = get(&c, "/slow", &[("grpc-timeout", "300m")]).await;
    assert_eq!((status, body.as_str()), (200, "late"));
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let h = &received(&seen, "/slow")[0];
    assert_eq!(value(h, "grpc-timeout"), Some("300m"));
    assert_eq!(value(h, "x-envoy-expected-rq-timeout-ms"), None);
}

#[tokio::test]
async fn the_applications_envoy_control_headers_are_removed_unread() {
    // a sidecar's outbound listener takes the application's request for external (no
    // `use_remote_address`, no X-Forwarded-For) and cleans Envoy's control headers
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let steer = [
        ("x-envoy-upstream-rq-timeout-ms", "250"),
        ("x-envoy-upstream-rq-per-try-timeout-ms", "100"),
        ("x-envoy-max-retries", "0"),
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-expected-rq-timeout-ms", "7"),
        ("x-envoy-force-trace", "true"),
        ("x-envoy-internal", "true"),
    ];
    let (status, _, body, took) = get(&c, "/slow", &steer).await;
    assert_eq!((status, body.as_str()), (200, "late"), "no timeout applied");
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    let h = &received(&seen, "/slow")[0];
    for (name, _) in steer {
        assert_eq!(value(h, name), None, "{name} forwarded");
    }
    // `x-envoy-max-retries: 0` did not stop the route's retries
    let (status, _, _, _) = get(&c, "/flaky", &steer).await;
    assert_eq!(status, 200);
    assert_eq!(received(&seen, "/flaky").len(), 2);
}

#[tokio::test]
async fn a_retry_after_a_per_try_timeout_is_counted() {
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let (status, _, body, took) = get(&c, "/retry", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(took < Duration::from_millis(1400), "{took:?}");
    let tries = received(&seen, "/slow-once");
    assert_eq!(tries.len(), 2);
    let of = |h: &HeaderMap| {
        [
            "x-envoy-attempt-count",
            "x-envoy-expected-rq-timeout-ms",
            "x-envoy-is-timeout-retry",
            "x-envoy-original-path",
        ]
        .map(|n| value(h, n).map(str::to_owned))
    };
    // (`x-envoy-is-timeout-retry` is not written: istiod's virtual hosts leave
    // `include_is_timeout_retry_header` off)
    let want = |n: &str| [Some(n), Some("400"), None, Some("/retry")].map(|v| v.map(str::to_owned));
    assert_eq!(of(&tries[0]), want("1"));
    assert_eq!(of(&tries[1]), want("2"));
}

#[tokio::test]
async fn the_routes_header_operations_come_after_envoys_headers() {
    // Envoy writes the attempt count and the deadline in `decodeHeaders`, then applies the
    // route's `headers.request` (`finalizeRequestHeaders`): a route may remove or set them,
    // and a `grpc-timeout` it sets is not the caller's deadline
    let (addr, seen) = backend().await;
    let yaml = api_with(
        addr,
        "
  - headers:
      request:
        remove: [x-envoy-attempt-count]
        set: {grpc-timeout: 20S}
    route: [{destination: {host: api.example.internal}}]
",
    );
    let c = client(Mesh::from_yaml(&yaml).unwrap());
    let grpc = [
        ("content-type", "application/grpc"),
        ("grpc-timeout", "300m"),
    ];
    let (status, headers, _, took) = get(&c, "/slow", &grpc).await;
    assert_eq!((status, value(&headers, "grpc-status")), (200, Some("14")));
    assert!(
        took < Duration::from_millis(1300),
        "the caller's deadline: {took:?}"
    );
    let h = &received(&seen, "/slow")[0];
    assert_eq!(value(h, "x-envoy-attempt-count"), None);
    assert_eq!(value(h, "grpc-timeout"), Some("20S"));
    assert_eq!(value(h, "x-envoy-expected-rq-timeout-ms"), Some("300"));
}

#[tokio::test]
async fn a_streamed_request_is_timed_once_received() {
    // a body of unknown size is streamed (not buffered for retries); the answer after it
    // has ended still says how long the upstream took
    let (addr, _) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let body = Unsized(Some(Bytes::from_static(b"ping")));
    let req = http::Request::post("http://api.example.internal/ok")
        .body(body)
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("x-envoy-upstream-service-time"),
        "{:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn a_rewrite_keeps_the_original_path_for_the_upstream() {
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let (status, _, _, _) = get(&c, "/rewrite/x?q=1", &[]).await;
    assert_eq!(status, 200);
    let h = &received(&seen, "/v1/x?q=1")[0];
    assert_eq!(value(h, "x-envoy-original-path"), Some("/rewrite/x?q=1"));
    // no rewrite, no header
    let (status, _, _, _) = get(&c, "/plain", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        value(&received(&seen, "/plain")[0], "x-envoy-original-path"),
        None
    );
}

#[tokio::test]
async fn request_ids_as_proxy_headers_say() {
    let (addr, seen) = backend().await;
    // Istio's default: a request without one gets a new id, one with one keeps it
    let c = mesh_client(addr, "{}").await;
    get(&c, "/ok", &[]).await;
    get(&c, "/ok", &[("x-request-id", "r-7")]).await;
    let ids: Vec<_> = received(&seen, "/ok")
        .iter()
        .map(|h| value(h, "x-request-id").map(str::len))
        .collect();
    assert_eq!(ids, [Some(36), Some(3)]);
    // `requestId.disabled`: none is made, a request's own still goes on; with a Zipkin
    // tracer, a request without an id starts no sampled trace (Envoy samples by the id)
    seen.lock().unwrap().clear();
    let c = mesh_client(
        addr,
        "
defaultConfig:
  proxyHeaders: {requestId: {disabled: true}}
  tracing: {sampling: 100, zipkin: {address: 'zipkin.istio-system:9411'}}
",
    )
    .await;
    get(&c, "/ok", &[]).await;
    get(&c, "/ok", &[("x-request-id", "r-7")]).await;
    let sent = received(&seen, "/ok");
    let of = |h: &HeaderMap| {
        (
            value(h, "x-request-id").map(str::to_owned),
            value(h, "x-b3-sampled").map(str::to_owned),
        )
    };
    assert_eq!(of(&sent[0]), (None, Some("0".to_owned())));
    assert_eq!(of(&sent[1]), (Some("r-7".to_owned()), Some("1".to_owned())));
}

#[tokio::test]
async fn mesh_config_proxy_headers_turn_them_off() {
    let (addr, seen) = backend().await;
    let c = mesh_client(
        addr,
        "defaultConfig: {proxyHeaders: {attemptCount: {disabled: true}, envoyDebugHeaders: {disabled: true}}}",
    )
    .await;
    let (status, headers, _, _) = get(&c, "/flaky", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(value(&headers, "x-envoy-upstream-service-time"), None);
    for h in received(&seen, "/flaky") {
        assert_eq!(value(&h, "x-envoy-attempt-count"), None);
    }
    let (_, _, _, _) = get(&c, "/rewrite/x", &[]).await;
    assert_eq!(
        value(&received(&seen, "/v1/x")[0], "x-envoy-original-path"),
        None
    );
    // the gRPC deadline is not a debug header: it still goes upstream
    let (_, _, _, _) = get(
        &c,
        "/ok",
        &[("content-type", "application/grpc"), ("grpc-timeout", "2S")],
    )
    .await;
    let h = &received(&seen, "/ok")[0];
    assert_eq!(value(h, "grpc-timeout"), Some("2000m"));
    assert_eq!(value(h, "x-envoy-expected-rq-timeout-ms"), None);
}

/// A sidecar's outbound listener writes `server: envoy` on every response the application
/// gets, over the upstream's (a server sidecar's `istio-envoy`), its own local replies too
/// (istiod leaves the outbound `server_name` unset: Envoy's default, with OVERWRITE);
/// `proxyHeaders.server` names another, or none (the upstream's passes).
#[tokio::test]
async fn the_server_header_is_the_outbound_listeners() {
    let (addr, _) = backend().await;
    for (mesh_config, upstream, local) in [
        ("{}", Some("envoy"), Some("envoy")),
        (
            "defaultConfig: {proxyHeaders: {server: {value: shop}}}",
            Some("shop"),
            Some("shop"),
        ),
        (
            "defaultConfig: {proxyHeaders: {server: {disabled: true}}}",
            Some("istio-envoy"),
            None,
        ),
    ] {
        let c = mesh_client(addr, mesh_config).await;
        let (status, headers, body, _) = get(&c, "/named", &[]).await;
        assert_eq!((status, body.as_str()), (200, "named"));
        assert_eq!(value(&headers, "server"), upstream, "{mesh_config}");
        assert_eq!(headers.get_all("server").iter().count(), 1);
        // the route's direct response
        let (status, headers, _, _) = get(&c, "/direct", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(
            value(&headers, "server"),
            local,
            "{mesh_config}: direct response"
        );
    }
}

/// A sidecar's virtual hosts match the `Host` header, whatever address the application
/// dialed (the listener being the dialed port's): a request to an address with an
/// explicit `Host` is routed to that host's service, its VirtualService included, and the
/// `Host` goes on unchanged.
#[tokio::test]
async fn an_explicit_host_header_routes_the_request() {
    let (addr, seen) = backend().await;
    let c = mesh_client(addr, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}").await;
    for uri in [
        "http://10.255.0.5/rewrite/x",
        "http://10.255.0.5:80/rewrite/y",
    ] {
        let req = http::Request::get(uri)
            .header("host", "api.example.internal")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{uri}");
    }
    // the VirtualService's rewrite applied; the Host as the application wrote it
    for path in ["/v1/x", "/v1/y"] {
        let sent = &received(&seen, path)[0];
        assert_eq!(value(sent, "host"), Some("api.example.internal"), "{path}");
    }
    // a passthrough still goes where the application dialed (Envoy's ORIGINAL_DST): the
    // Host routes, it never chooses the address
    let c2 = mesh_client(addr, "{}").await;
    let req = http::Request::get(format!("http://127.0.0.1:{}/named", addr.port()))
        .header("host", "nowhere.invalid")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = c2.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = received(&seen, "/named");
    assert_eq!(value(sent.last().unwrap(), "host"), Some("nowhere.invalid"));
    // the address alone names no service: REGISTRY_ONLY's 502
    let req = http::Request::get("http://10.255.0.5/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(c.request(req).await.unwrap().status(), 502);
}

/// The `date` the backend at `/dated` sends.
const OLD_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// Envoy's connection manager gives every response without a `date` one (its local
/// replies: here a direct response, and the 503 for a passthrough to a name that does not
/// resolve), and keeps the upstream's own.
#[tokio::test]
async fn every_response_has_a_date_the_upstreams_kept() {
    let (addr, _) = backend().await;
    let c = mesh_client(addr, "{}").await;
    let (status, headers, body, _) = get(&c, "/dated", &[]).await;
    assert_eq!((status, body.as_str()), (200, "dated"));
    assert_eq!(value(&headers, "date"), Some(OLD_DATE));
    assert_eq!(headers.get_all("date").iter().count(), 1);
    let direct = get(&c, "/direct", &[]).await;
    let unknown = c
        .request(
            http::Request::get("http://nowhere.invalid/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    for (what, status, headers) in [
        ("direct response", direct.0, direct.1),
        (
            "passthrough",
            unknown.status().as_u16(),
            unknown.headers().clone(),
        ),
    ] {
        let date = value(&headers, "date").unwrap_or_else(|| panic!("{what}: no date"));
        let when = httpdate::parse_http_date(date).expect("an IMF-fixdate");
        let age = std::time::SystemTime::now().duration_since(when).unwrap();
        assert!(age < Duration::from_secs(5), "{what} ({status}): {date}");
    }
    assert_eq!(unknown.status(), 503);
}

/// An HTTP request to a port its service declares TCP is a connection to a sidecar, whose
/// TCP proxy reads no HTTP: the `tcp` route takes it, the `http` routes (here an abort)
/// do not, and none of the router's or connection manager's headers are written, on the
/// request (`x-envoy-attempt-count`, a deadline) or on the answer (`server`,
/// `x-envoy-upstream-service-time`).
#[tokio::test]
async fn a_port_declared_tcp_is_a_connection() {
    let (addr, seen) = backend().await;
    let mesh = Mesh::new(Default::default());
    mesh.reload_loaded(mesh_core::load::load_str(
        &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.example.internal]
  ports: [{{number: 80, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.example.internal]
  http: [{{fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}, route: [{{destination: {{host: db.example.internal}}}}]}}]
  tcp: [{{route: [{{destination: {{host: db.example.internal, port: {{number: 80}}}}}}]}}]
",
            addr.port()
        ),
        "db.yaml",
    ))
    .unwrap();
    let c = client(mesh);
    let req = http::Request::get("http://db.example.internal/named")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "2S")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "named"
    );
    // the backend's own `server`, untouched; nothing of Envoy's
    assert_eq!(value(&headers, "server"), Some("istio-envoy"));
    assert_eq!(value(&headers, "x-envoy-upstream-service-time"), None);
    let sent = &received(&seen, "/named")[0];
    assert_eq!(value(sent, "x-envoy-attempt-count"), None);
    assert_eq!(value(sent, "grpc-timeout"), Some("2S"));
    assert_eq!(value(sent, "x-envoy-expected-rq-timeout-ms"), None);
}

/// A body of one chunk whose size it does not tell.
struct Unsized(Option<Bytes>);

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// A mesh client with `routes` and this MeshConfig.
fn client_with(backend: SocketAddr, mesh_config: &str, routes: &str) -> MeshClient {
    let mesh = Mesh::with_mesh_config(&MeshConfig::from_yaml(mesh_config).unwrap());
    mesh.reload_loaded(mesh_core::load::load_str(
        &api_with(backend, routes),
        "api.yaml",
    ))
    .unwrap();
    client(mesh)
}

#[tokio::test]
async fn the_path_is_normalized_before_routing() {
    // every connection manager istiod builds, the sidecar's outbound one included,
    // normalizes the path (MeshConfig `pathNormalization`, BASE by default) before the
    // route is chosen: `/%61pi` and `/x/../api` take the `/api` route, and the upstream
    // receives the normalized path
    let (addr, seen) = backend().await;
    let routes = "
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: api.example.internal}}]
  - route: [{destination: {host: api.example.internal}}]
";
    let c = client_with(addr, "{}", routes);
    for path in ["/%61pi/foo?q=1", "/x/../api/foo?q=1", "/./api/foo?q=1"] {
        let (status, _, body, _) = get(&c, path, &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{path}");
    }
    assert_eq!(received(&seen, "/v2/foo?q=1").len(), 3);
    // not routed by a path that only looks like the prefix once decoded: an encoded `/`
    // stays as it is under BASE (Envoy's KEEP_UNCHANGED)
    let (status, _, _, _) = get(&c, "/api%2Ffoo", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(received(&seen, "/v2%2Ffoo").len(), 1);
    // a path Envoy cannot normalize is refused before routing
    let (status, _, body, _) = get(&c, "/api/%00", &[]).await;
    assert_eq!((status, body.as_str()), (400, ""));
    assert!(received(&seen, "/v2/%00").is_empty());

    // `pathNormalization: NONE`: the path as the application wrote it
    let (addr, seen) = backend().await;
    let c = client_with(addr, "pathNormalization: {normalization: NONE}", routes);
    let (status, _, _, _) = get(&c, "/%61pi/foo", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(received(&seen, "/%61pi/foo").len(), 1);
}

#[tokio::test]
async fn route_and_destination_header_operations_in_envoys_order() {
    // one destination: istiod appends its operations to the route's, and Envoy removes
    // first, then sets in order (the destination's `set` wins, its `remove` does not undo
    // the route's `set`); several: each destination's are its weighted cluster's, which
    // Envoy applies before the route's (the route's `set` wins)
    let (addr, seen) = backend().await;
    let mut yaml = api_with(
        addr,
        "
  - match: [{uri: {prefix: /weighted}}]
    headers: {request: {set: {x-a: route}}, response: {set: {x-r: route}}}
    route:
    - destination: {host: api.example.internal}
      weight: 50
      headers: {request: {set: {x-a: dest}}, response: {set: {x-r: dest}}}
    - destination: {host: api2.example.internal}
      weight: 50
      headers: {request: {set: {x-a: dest2}}, response: {set: {x-r: dest2}}}
  - match: [{uri: {prefix: /single}}]
    headers: {request: {set: {x-a: route, x-b: route}, add: {x-c: route}}, response: {set: {x-r: route}}}
    route:
    - destination: {host: api.example.internal}
      headers: {request: {set: {x-a: dest, x-c: dest}, remove: [x-b]}, response: {set: {x-r: dest}}}
  - match: [{uri: {prefix: /host}}]
    headers: {request: {set: {host: route.example}}}
    route:
    - destination: {host: api.example.internal}
      headers: {request: {set: {host: dest.example}}}
  - match: [{uri: {prefix: /zero}}]
    headers: {request: {set: {x-a: route}}}
    route:
    - destination: {host: api.example.internal}
      weight: 100
      headers: {request: {set: {x-a: dest}}}
    - destination: {host: api2.example.internal}
      weight: 0
  - match: [{uri: {prefix: /dest-host}}]
    route:
    - destination: {host: api.example.internal}
      headers: {request: {set: {host: dest.example}}}
",
    );
    yaml.push_str(&format!(
        "
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api2, namespace: default}}
spec:
  hosts: [api2.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        addr.port()
    ));
    let c = client(Mesh::from_yaml(&yaml).unwrap());
    for _ in 0..6 {
        let (status, headers, _, _) = get(&c, "/weighted", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(value(&headers, "x-r"), Some("route"));
    }
    for h in received(&seen, "/weighted") {
        assert_eq!(value(&h, "x-a"), Some("route"));
    }
    let (status, headers, _, _) = get(&c, "/single", &[]).await;
    assert_eq!((status, value(&headers, "x-r")), (200, Some("dest")));
    let h = &received(&seen, "/single")[0];
    assert_eq!(value(h, "x-a"), Some("dest"));
    assert_eq!(value(h, "x-b"), Some("route"));
    // every overwrite before every append: the route's `add` follows the destination's `set`
    let c_values: Vec<&str> = h
        .get_all("x-c")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(c_values, ["dest", "route"]);
    // a route naming two destinations is weighted clusters, a zero weight's too
    get(&c, "/zero", &[]).await;
    assert_eq!(value(&received(&seen, "/zero")[0], "x-a"), Some("route"));
    // the authority: a destination's only when the route rewrites none
    get(&c, "/host", &[]).await;
    assert_eq!(
        value(&received(&seen, "/host")[0], "host"),
        Some("route.example")
    );
    get(&c, "/dest-host", &[]).await;
    assert_eq!(
        value(&received(&seen, "/dest-host")[0], "host"),
        Some("dest.example")
    );
}
