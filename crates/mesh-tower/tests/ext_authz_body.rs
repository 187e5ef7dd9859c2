//! `includeRequestBodyInCheck` end to end on loopback: a CUSTOM policy's HTTP authorizer
//! that decides on the request body (allows a body containing `"ok"`), a `MeshServer`
//! whose app echoes the body it read, and an ingress gateway forwarding to it. As Envoy's
//! ext_authz `with_request_body`: the check carries up to `maxRequestBytes` with
//! `x-envoy-auth-partial-body`, a larger body is 413 without `allowPartialMessage`, and the
//! application (or the upstream) still gets the whole body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::MeshServer;
use tokio::net::TcpListener;

/// What the authorizer got: (headers, body).
type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn authorizer() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().fallback(move |req: Request<axum::body::Body>| {
        let log = Arc::clone(&log);
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let ok = body.windows(4).any(|w| w == b"\"ok\"");
            log.lock().unwrap().push((parts.headers, body));
            http::Response::builder()
                .status(if ok { 200 } else { 403 })
                .body(axum::body::Body::from(if ok { "" } else { "body refused" }))
                .unwrap()
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn mesh(authz_port: u16, body: &str) -> Mesh {
    mesh_with(authz_port, body, "")
}

/// The mesh with the provider reading `body` (an `includeRequestBodyInCheck` value), the
/// authorizer's ServiceEntry, the CUSTOM policies on `/post`, and `extra` objects.
fn mesh_with(authz_port: u16, body: &str, extra: &str) -> Mesh {
    let config = MeshConfig::from_yaml(&format!(
        r#"
extensionProviders:
- name: body-authz
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    includeRequestHeadersInCheck: ["x-envoy-auth-partial-body"]
    includeRequestBodyInCheck: {body}
"#
    ))
    .unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    let yaml = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {authz_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: body-check, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: CUSTOM
  provider: {{name: body-authz}}
  rules: [{{to: [{{operation: {{paths: ["/post"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: body-check-ingress, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: body-authz}}
  rules: [{{to: [{{operation: {{paths: ["/post"]}}}}]}}]
{extra}"#
    );
    mesh.reload_loaded(mesh_core::load::load_str(&yaml, "p.yaml"))
        .unwrap();
    mesh
}

/// httpbin behind a MeshServer: answers with the body it read.
async fn httpbin(mesh: Mesh) -> SocketAddr {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let app = Router::new().fallback(|body: Bytes| async move { body });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

/// A request body sent as separate data frames.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// POST `body` as `chunks` data frames (no Content-Length when more than one).
async fn post(addr: SocketAddr, path: &str, body: &str, chunks: usize) -> (StatusCode, String) {
    post_with(addr, path, body, chunks, &[]).await
}

async fn post_with(
    addr: SocketAddr,
    path: &str,
    body: &str,
    chunks: usize,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Chunks>();
    let step = body.len().div_ceil(chunks.max(1)).max(1);
    let frames = body
        .as_bytes()
        .chunks(step)
        .map(Bytes::copy_from_slice)
        .collect();
    let mut req = Request::post(format!("http://{addr}{path}")).header("host", "httpbin.foo:8000");
    if chunks <= 1 {
        req = req.header("content-length", body.len());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Chunks(frames)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_check_carries_the_body_and_the_app_still_reads_it() {
    let (authz, seen) = authorizer().await;
    let addr = httpbin(mesh(authz.port(), "{maxRequestBytes: 64}")).await;
    let ok = r#"{"verdict": "ok", "items": [1, 2, 3]}"#;
    for chunks in [1, 5] {
        let (st, body) = post(addr, "/post", ok, chunks).await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, ok), "{chunks} chunks");
        let (h, got) = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got, ok, "{chunks} chunks");
        assert_eq!(h["content-length"], ok.len().to_string());
        assert_eq!(h["x-envoy-auth-partial-body"], "false");
    }
    // the authorizer refuses on the body's content
    let (st, body) = post(addr, "/post", r#"{"verdict": "no"}"#, 1).await;
    assert_eq!((st, body.as_str()), (StatusCode::FORBIDDEN, "body refused"));
    // beyond maxRequestBytes without allowPartialMessage: 413, the authorizer not asked
    let before = seen.lock().unwrap().len();
    let big = format!(r#"{{"verdict": "ok", "pad": "{}"}}"#, "x".repeat(100));
    for chunks in [1, 4] {
        let (st, body) = post(addr, "/post", &big, chunks).await;
        assert_eq!(
            (st, body.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"),
            "{chunks} chunks"
        );
    }
    assert_eq!(seen.lock().unwrap().len(), before);
    // a request without a body: no body, no partial-body header in the check
    let (st, _) = post(addr, "/post", "", 1).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (h, got) = seen.lock().unwrap().pop().unwrap();
    assert!(got.is_empty());
    assert!(h.get("x-envoy-auth-partial-body").is_none(), "{h:?}");
    // an upgrade offer other than WebSocket does not skip the body (Envoy buffers it)
    let (st, _) = post_with(
        addr,
        "/post",
        r#"{"verdict": "no"}"#,
        1,
        &[("connection", "upgrade"), ("upgrade", "h2c")],
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, got) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(got, r#"{"verdict": "no"}"#);
    // a path the CUSTOM policy does not match: not read ahead, not asked
    let before = seen.lock().unwrap().len();
    let (st, body) = post(addr, "/anything", &big, 3).await;
    assert_eq!((st, body), (StatusCode::OK, big.clone()));
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn a_partial_body_is_checked_and_the_whole_body_delivered() {
    let (authz, seen) = authorizer().await;
    let addr = httpbin(mesh(
        authz.port(),
        "{maxRequestBytes: 16, allowPartialMessage: true}",
    ))
    .await;
    let big = format!(r#"{{"a": "ok", "pad": "{}"}}"#, "y".repeat(200));
    for chunks in [1, 8] {
        let (st, body) = post(addr, "/post", &big, chunks).await;
        // the first 16 bytes hold `"ok"`: allowed; the app reads all of it
        assert_eq!((st, body), (StatusCode::OK, big.clone()), "{chunks} chunks");
        let (h, got) = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got, big.as_bytes()[..16], "{chunks} chunks");
        assert_eq!(h["x-envoy-auth-partial-body"], "true");
    }
    // a short body is whole
    let (st, _) = post(addr, "/post", r#"{"a": "ok"}"#, 1).await;
    assert_eq!(st, StatusCode::OK);
    let (h, _) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(h["x-envoy-auth-partial-body"], "false");
}

#[tokio::test]
async fn the_gateway_checks_the_body_and_forwards_all_of_it() {
    let (authz, seen) = authorizer().await;
    let mesh = mesh(authz.port(), "{maxRequestBytes: 64}");
    let backend = httpbin(mesh.clone()).await;
    let routes = format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: web, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend, namespace: istio-system}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [web]
  http: [{{route: [{{destination: {{host: backend.example.internal}}}}]}}]
"#,
        backend.port()
    );
    let gw_mesh = mesh_with(authz.port(), "{maxRequestBytes: 64}", &routes);
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gateway = GatewayServer::builder(gw_mesh, "istio-system", labels)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gateway.local_addr(80).unwrap();
    let ok = r#"{"verdict": "ok"}"#;
    let (st, body) = post(addr, "/post", ok, 3).await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, ok));
    // asked by the gateway, then by the backend's own server
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(seen.lock().unwrap().iter().all(|(_, b)| b == ok));
    let (st, _) = post(addr, "/post", r#"{"verdict": "no"}"#, 1).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// An `AuthorizationLayer` in a stack of the application's own: the body is not one a mesh
/// server received, so it cannot be read for the check; the request is refused with
/// `statusOnError`, never checked without the body the provider asks for.
#[tokio::test]
async fn a_body_the_mesh_did_not_receive_is_refused() {
    use tower::ServiceExt;
    let (authz, seen) = authorizer().await;
    let mesh = mesh(authz.port(), "{maxRequestBytes: 64}");
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let layer = mesh_tower::authz::AuthorizationLayer::new(mesh, "foo", labels).with_port(8000);
    let app = tower::service_fn(|_req: Request<http_body_util::Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
            Bytes::from_static(b"app"),
        )))
    });
    let svc = mesh_tower::authz::Authorization::new(app, layer);
    let req = Request::post("/post")
        .header("host", "httpbin.foo:8000")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"{\"verdict\": \"ok\"}",
        )))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the authorizer was not asked"
    );
}
