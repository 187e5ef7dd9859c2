//! What Istio's gateway (Envoy's HTTP connection manager with `use_remote_address`) does to
//! a request at the edge, on loopback with raw HTTP/1 clients: `x-forwarded-proto` trusted
//! only behind `numTrustedProxies` (and the `httpsRedirect` and `scheme` matches following
//! it), HTTP/1.0 refused with 426, and MeshConfig's `gatewayTopology`
//! `forwardClientCertDetails` on plaintext connections.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::{ForwardClientCertDetails, MeshConfig};
use mesh_tower::gateway::GatewayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend answering with the request headers it received, one `name: value` a line.
async fn echo_backend() -> SocketAddr {
    let app = Router::new().fallback(|req: Request| async move {
        let mut out = String::new();
        for (k, v) in req.headers() {
            out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        out
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn labels() -> mesh_core::model::Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

/// Port 80: `a.example.com` redirects to https; `s.example.com` routes `scheme: https`
/// requests to the echo backend and answers others with a direct 418.
fn config(echo: SocketAddr) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http-redirect, protocol: HTTP}}
    hosts: [a.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [s.example.com, p.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: istio-system}}
spec:
  hosts: [a.example.com, p.example.com]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: echo.default.svc.cluster.local, port: {{number: 8000}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: by-scheme, namespace: istio-system}}
spec:
  hosts: [s.example.com]
  gateways: [gw]
  http:
  - match: [{{scheme: {{exact: https}}}}]
    route: [{{destination: {{host: echo.default.svc.cluster.local, port: {{number: 8000}}}}}}]
  - directResponse: {{status: 418, body: {{string: not-https}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        echo.port()
    )
}

async fn gateway(yaml: &str, trusted: Option<u32>) -> GatewayServer {
    let mesh = Mesh::from_yaml(yaml).unwrap();
    let mut b = GatewayServer::builder(mesh, "istio-system", labels())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap());
    if let Some(n) = trusted {
        b = b.num_trusted_proxies(n);
    }
    b.start().await.unwrap()
}

/// Sends `request` as is and reads the whole answer (the gateway or the client closes).
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answered and closed")
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

fn get(host: &str, extra: &[(&str, &str)]) -> String {
    let mut r = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

#[tokio::test]
async fn trusted_proxies_keep_the_forwarded_proto_for_redirects_and_scheme_matches() {
    let echo = echo_backend().await;
    let yaml = config(echo);
    // behind one TLS-terminating load balancer (ALB/NLB): its `X-Forwarded-Proto: https` is
    // trusted, so no redirect loop, and the upstream sees it
    let gw = gateway(&yaml, Some(1)).await;
    let addr = gw.local_addr(80).unwrap();
    let lb = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
    ];
    let a = raw(addr, &get("a.example.com", &lb)).await;
    assert_eq!(status(&a), 200, "{a}");
    assert!(a.contains("x-forwarded-proto: https\n"), "{a}");
    assert!(!a.contains("x-forwarded-proto: http\n"), "{a}");
    // the scheme VirtualService `scheme` matches read is the forwarded one
    let s = raw(addr, &get("s.example.com", &lb)).await;
    assert_eq!(status(&s), 200, "{s}");
    // what the balancer said was plain http: redirected, and not https for matching
    let plain = [("x-forwarded-proto", "http")];
    let a = raw(addr, &get("a.example.com", &plain)).await;
    assert_eq!(status(&a), 301, "{a}");
    assert!(a.contains("location: https://a.example.com/x"), "{a}");
    assert_eq!(status(&raw(addr, &get("s.example.com", &plain)).await), 418);
    // no header: the connection's own (plaintext)
    assert_eq!(status(&raw(addr, &get("a.example.com", &[])).await), 301);
    let p = raw(addr, &get("p.example.com", &[])).await;
    assert!(p.contains("x-forwarded-proto: http\n"), "{p}");
    // `https` twice is one `https,https` value for Envoy: not https
    let twice = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-proto", "https"),
    ];
    assert_eq!(status(&raw(addr, &get("a.example.com", &twice)).await), 301);
    drop(gw);

    // no trusted proxy (the default): a client's `X-Forwarded-Proto` is overwritten
    for trusted in [None, Some(0)] {
        let gw = gateway(&yaml, trusted).await;
        let addr = gw.local_addr(80).unwrap();
        let a = raw(addr, &get("a.example.com", &lb)).await;
        assert_eq!(status(&a), 301, "{trusted:?}: {a}");
        assert_eq!(status(&raw(addr, &get("s.example.com", &lb)).await), 418);
        let p = raw(addr, &get("p.example.com", &lb)).await;
        assert_eq!(status(&p), 200, "{p}");
        assert!(p.contains("x-forwarded-proto: http\n"), "{p}");
        assert!(!p.contains("x-forwarded-proto: https"), "{p}");
    }
}

#[tokio::test]
async fn http_10_is_answered_426_and_closed() {
    let echo = echo_backend().await;
    let gw = gateway(&config(echo), None).await;
    let addr = gw.local_addr(80).unwrap();
    // Envoy's HTTP/1 codec with accept_http_10 off (Istio's default): `Upgrade Required`,
    // before routing (the host has a route) and before the httpsRedirect
    for host in ["p.example.com", "a.example.com", "nowhere.example.com"] {
        let answer = raw(addr, &format!("GET /x HTTP/1.0\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(status(&answer), 426, "{answer}");
        assert!(answer.ends_with("\r\n\r\nUpgrade Required"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: text/plain"),
            "{answer}"
        );
        assert!(answer.contains("server: istio-envoy"), "{answer}");
    }
    // the connection is closed even when the client asked to keep it
    let answer = raw(
        addr,
        "GET /x HTTP/1.0\r\nHost: p.example.com\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 426, "{answer}");
    // HTTP/1.1 is served
    assert_eq!(status(&raw(addr, &get("p.example.com", &[])).await), 200);
}

/// A gateway on a mesh whose MeshConfig is `mesh_config`, or with the builder's
/// `forward_client_cert_details`.
async fn gateway_with(
    yaml: &str,
    mesh_config: &str,
    mode: Option<ForwardClientCertDetails>,
) -> GatewayServer {
    let mesh = Mesh::with_mesh_config(&MeshConfig::from_yaml(mesh_config).unwrap());
    mesh.reload_loaded(mesh_core::load::load_str(yaml, "gw.yaml"))
        .unwrap();
    let mut b = GatewayServer::builder(mesh, "istio-system", labels())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap());
    if let Some(m) = mode {
        b = b.forward_client_cert_details(m);
    }
    b.start().await.unwrap()
}

/// MeshConfig `defaultConfig.proxyMetadata.ISTIO_META_HTTP10: "1"` (istiod's
/// `accept_http_10` for the proxy): HTTP/1.0 is routed and answered.
#[tokio::test]
async fn http_10_is_served_with_istio_meta_http10() {
    let echo = echo_backend().await;
    let gw = gateway_with(
        &config(echo),
        "defaultConfig: {proxyMetadata: {ISTIO_META_HTTP10: '1'}}",
        None,
    )
    .await;
    let addr = gw.local_addr(80).unwrap();
    let answer = raw(addr, "GET /x HTTP/1.0\r\nHost: p.example.com\r\n\r\n").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.contains("host: p.example.com\n"), "{answer}");
}

#[tokio::test]
async fn forward_client_cert_details_on_plaintext_connections() {
    let echo = echo_backend().await;
    let yaml = config(echo);
    let xfcc = [("x-forwarded-client-cert", "By=x;Hash=y")];
    let always =
        "defaultConfig: {gatewayTopology: {forwardClientCertDetails: ALWAYS_FORWARD_ONLY}}";
    // (MeshConfig, builder override, kept)
    let cases = [
        // Istio's gateway default, SANITIZE_SET: no client certificate, no header
        ("{}", None, false),
        (always, None, true),
        // every other mode removes it on a connection without a client certificate
        (
            "defaultConfig: {gatewayTopology: {forwardClientCertDetails: FORWARD_ONLY}}",
            None,
            false,
        ),
        (
            "defaultConfig: {gatewayTopology: {forwardClientCertDetails: APPEND_FORWARD}}",
            None,
            false,
        ),
        (
            "{}",
            Some(ForwardClientCertDetails::AlwaysForwardOnly),
            true,
        ),
        (always, Some(ForwardClientCertDetails::Sanitize), false),
    ];
    for (mesh_config, mode, kept) in cases {
        let gw = gateway_with(&yaml, mesh_config, mode).await;
        let addr = gw.local_addr(80).unwrap();
        let p = raw(addr, &get("p.example.com", &xfcc)).await;
        assert_eq!(status(&p), 200, "{p}");
        assert_eq!(
            p.contains("x-forwarded-client-cert: By=x;Hash=y\n"),
            kept,
            "{mesh_config} {mode:?}: {p}"
        );
        if !kept {
            assert!(!p.contains("x-forwarded-client-cert"), "{p}");
        }
    }
}

#[tokio::test]
async fn edge_requests_lose_envoys_internal_headers() {
    let echo = echo_backend().await;
    let yaml = config(echo);
    let steer = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-max-retries", "10"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-internal", "true"),
        ("x-envoy-external-address", "6.6.6.6"),
        ("x-envoy-force-trace", "true"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
    ];
    // (trusted proxies, the external address the upstream sees)
    for (trusted, want) in [(0, "127.0.0.1"), (1, "203.0.113.7"), (2, "198.51.100.1")] {
        let gw = gateway(&yaml, Some(trusted)).await;
        let p = raw(gw.local_addr(80).unwrap(), &get("p.example.com", &steer)).await;
        assert_eq!(status(&p), 200, "{p}");
        for gone in [
            "x-envoy-retry-on",
            "x-envoy-max-retries",
            "x-envoy-upstream-rq-timeout-ms",
            "x-envoy-internal",
            "x-envoy-force-trace",
        ] {
            assert!(!p.contains(gone), "{trusted}: {gone} forwarded: {p}");
        }
        assert!(
            p.contains(&format!("x-envoy-external-address: {want}\n")),
            "{trusted}: {p}"
        );
        assert!(!p.contains("6.6.6.6"), "{p}");
    }
}

#[tokio::test]
async fn the_gateway_counts_attempts_and_times_the_answer() {
    // Istio's gateway virtual hosts have `include_request_attempt_count`, and its router
    // writes `x-envoy-upstream-service-time` (MeshConfig `proxyHeaders` turns both off)
    let echo = echo_backend().await;
    let yaml = config(echo);
    let on = raw(
        gateway(&yaml, None).await.local_addr(80).unwrap(),
        &get("p.example.com", &[("x-envoy-attempt-count", "9")]),
    )
    .await;
    assert_eq!(status(&on), 200, "{on}");
    assert!(on.contains("x-envoy-attempt-count: 1\n"), "{on}");
    assert!(!on.contains("x-envoy-attempt-count: 9"), "{on}");
    assert!(on.contains("x-envoy-upstream-service-time: "), "{on}");
    let off = "defaultConfig: {proxyHeaders: {attemptCount: {disabled: true}, envoyDebugHeaders: {disabled: true}}}";
    let gw = gateway_with(&yaml, off, None).await;
    let p = raw(gw.local_addr(80).unwrap(), &get("p.example.com", &[])).await;
    assert_eq!(status(&p), 200, "{p}");
    assert!(!p.contains("x-envoy-attempt-count"), "{p}");
    assert!(!p.contains("x-envoy-upstream-service-time"), "{p}");
}

#[tokio::test]
async fn proxy_headers_server_names_the_gateway_or_nothing() {
    let echo = echo_backend().await;
    let yaml = config(echo);
    // (MeshConfig, the server header of a routed answer and of a local reply)
    let cases = [
        ("{}", Some("istio-envoy")),
        (
            "defaultConfig: {proxyHeaders: {server: {value: edge}}}",
            Some("edge"),
        ),
        (
            "defaultConfig: {proxyHeaders: {server: {disabled: true}}}",
            None,
        ),
    ];
    for (mesh_config, want) in cases {
        let gw = gateway_with(&yaml, mesh_config, None).await;
        let addr = gw.local_addr(80).unwrap();
        for host in ["p.example.com", "unknown.example.com"] {
            let answer = raw(addr, &get(host, &[])).await;
            let server = answer
                .lines()
                .find_map(|l| l.strip_prefix("server: "))
                .map(str::trim);
            assert_eq!(server, want, "{mesh_config} {host}: {answer}");
        }
    }
}

#[tokio::test]
async fn an_external_request_id_is_replaced() {
    // istiod leaves `preserve_external_request_id` off: Envoy gives every edge request a
    // new `x-request-id`, unless MeshConfig `proxyHeaders.requestId` turns generation off
    let echo = echo_backend().await;
    let yaml = config(echo);
    let id = [("x-request-id", "client-chosen-id")];
    let gw = gateway(&yaml, None).await;
    let p = raw(gw.local_addr(80).unwrap(), &get("p.example.com", &id)).await;
    assert_eq!(status(&p), 200, "{p}");
    assert!(!p.contains("client-chosen-id"), "{p}");
    let line = p
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an x-request-id upstream");
    assert_eq!(line.len(), 36, "{line}");
    let off = "defaultConfig: {proxyHeaders: {requestId: {disabled: true}}}";
    let gw = gateway_with(&yaml, off, None).await;
    let p = raw(gw.local_addr(80).unwrap(), &get("p.example.com", &id)).await;
    assert!(p.contains("x-request-id: client-chosen-id\n"), "{p}");
}

/// Envoy's `appendXff`: `x-forwarded-for` reaches the upstream as one value, the client's
/// lines joined with `,` and then the gateway's peer.
#[tokio::test]
async fn x_forwarded_for_is_one_list_with_the_peer_appended() {
    let echo = echo_backend().await;
    let gw = gateway(&config(echo), Some(1)).await;
    let addr = gw.local_addr(80).unwrap();
    let answer = raw(
        addr,
        &get(
            "p.example.com",
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-For", "198.51.100.1"),
            ],
        ),
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
    let xff: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("x-forwarded-for:"))
        .collect();
    assert_eq!(
        xff,
        ["x-forwarded-for: 203.0.113.7,198.51.100.1,127.0.0.1"],
        "{answer}"
    );
}

/// Envoy appends the peer to `x-forwarded-for` before any filter: a gateway policy that
/// denies requests without the header never fires, and one on the appended address sees it.
#[tokio::test]
async fn authorization_sees_the_appended_x_forwarded_for() {
    let echo = echo_backend().await;
    let policy = "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: xff, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - when: [{key: 'request.headers[x-forwarded-for]', notValues: ['*']}]
  - when: [{key: 'request.headers[x-forwarded-for]', values: ['203.0.113.7,127.0.0.1']}]
";
    let gw = gateway(&format!("{}{policy}", config(echo)), None).await;
    let addr = gw.local_addr(80).unwrap();
    let answer = raw(addr, &get("p.example.com", &[])).await;
    assert_eq!(status(&answer), 200, "{answer}");
    let answer = raw(
        addr,
        &get("p.example.com", &[("X-Forwarded-For", "203.0.113.7")]),
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
}

/// An absolute-form request line names the host, as Envoy's HTTP/1 codec takes it
/// (`handlePath`): routed by it, and the upstream gets it as `Host`, whatever `Host` the
/// client sent.
#[tokio::test]
async fn an_absolute_form_request_line_names_the_host() {
    let echo = echo_backend().await;
    let gw = gateway(&config(echo), None).await;
    let p = raw(
        gw.local_addr(80).unwrap(),
        "GET http://p.example.com/x HTTP/1.1\r\nHost: s.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&p), 200, "{p}");
    assert!(p.contains("host: p.example.com\n"), "{p}");
    assert!(!p.contains("s.example.com"), "{p}");
}

/// The upstream's hop-by-hop response headers stop at the gateway (Envoy's
/// `mutateResponseHeaders`): its `connection: close` does not end the client's keep-alive
/// connection, which serves the next request.
#[tokio::test]
async fn upstream_hop_by_hop_response_headers_stop_at_the_gateway() {
    let app = Router::new().fallback(|| async {
        (
            [
                ("connection", "close"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("x-kept", "yes"),
            ],
            "hello",
        )
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let gw = gateway(&config(backend), None).await;
    let mut s = tokio::net::TcpStream::connect(gw.local_addr(80).unwrap())
        .await
        .unwrap();
    // two requests on one connection, the second closing it
    let first = "GET /x HTTP/1.1\r\nHost: p.example.com\r\n\r\n";
    s.write_all(first.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("hello") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed after the first answer: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(answer.contains("x-kept: yes"), "{answer}");
    for gone in ["connection:", "keep-alive:", "proxy-connection:"] {
        assert!(!answer.contains(gone), "{gone} passed on: {answer}");
    }
    s.write_all(get("p.example.com", &[]).as_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(&String::from_utf8_lossy(&rest)), 200);
}

/// A request without `Host` gets Envoy's 400 (`missing_host_header`) before any route.
#[tokio::test]
async fn a_request_without_host_is_refused_400() {
    let echo = echo_backend().await;
    let gw = gateway(&config(echo), None).await;
    let p = raw(
        gw.local_addr(80).unwrap(),
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&p), 400, "{p}");
    // an empty `Host` is a host (no route for it: 404)
    let p = raw(
        gw.local_addr(80).unwrap(),
        "GET /x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&p), 404, "{p}");
}
