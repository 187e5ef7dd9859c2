//! The access log of a MeshServer flags what Envoy's does: `UAEX` on an ext_authz denial
//! or fail-closed error, response code 0 with `DC` for a caller gone before the response,
//! and the response's code with `DC` for one gone in the middle of the body (as the
//! metrics count it). Alone in its test binary: it installs a thread-local tracing subscriber, which
//! tests running beside it could make tracing's callsite cache miss.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::accesslog::TARGET;
use mesh_tower::inbound::MeshServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The sample authorizer: allows `x-ext-authz: allow`, fails with 500 for `broken`,
/// denies (403) the rest.
async fn authorizer() -> SocketAddr {
    let app = Router::new().fallback(|h: http::HeaderMap| async move {
        match h.get("x-ext-authz").and_then(|v| v.to_str().ok()) {
            Some("allow") => StatusCode::OK,
            Some("broken") => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// httpbin with a CUSTOM policy on `/headers` asking the authorizer; `/slow` answers late.
async fn start() -> SocketAddr {
    let authz = authorizer().await;
    let config = MeshConfig::from_yaml(
        r#"
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    timeout: 500ms
    includeRequestHeadersInCheck: ["x-ext-authz"]
"#,
    )
    .unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    let policies = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: CUSTOM
  provider: {{name: sample-ext-authz-http}}
  rules: [{{to: [{{operation: {{paths: ["/headers"]}}}}]}}]
"#,
        authz.port()
    );
    mesh.reload_loaded(mesh_core::load::load_str(&policies, "p.yaml"))
        .unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/stream",
            axum::routing::get(|| async { axum::body::Body::new(Stalled(true)) }),
        )
        .fallback(|| async { "ok" });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

/// A response body sending `first ` at once and nothing after.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, false) {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(
                bytes::Bytes::from_static(b"first "),
            ))));
        }
        std::task::Poll::Pending
    }
}

/// `GET path` with `x-ext-authz: verdict` as raw HTTP/1.1; the status.
async fn get(addr: SocketAddr, path: &str, verdict: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: httpbin.foo:8000\r\nx-ext-authz: {verdict}\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)[9..12].parse().unwrap()
}

#[tokio::test]
async fn the_access_log_flags_uaex_and_dc() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let addr = start().await;
    assert_eq!(get(addr, "/headers", "allow").await, 200);
    assert_eq!(get(addr, "/headers", "deny").await, 403);
    assert_eq!(get(addr, "/headers", "broken").await, 403);
    // gone before the response
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: httpbin.foo:8000\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    // gone in the middle of the response body: its code, DC (as the metrics count it)
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nhost: httpbin.foo:8000\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !String::from_utf8_lossy(&head).contains("first ") {
        let mut buf = [0u8; 512];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let mut entries = Vec::new();
    for _ in 0..200 {
        entries = capture.entries();
        if entries.len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|f| {
            (
                f["path"].as_str(),
                f["response_code"].as_str(),
                f["response_flags"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/headers", "200", "-"),
            ("/headers", "403", "UAEX"),
            ("/headers", "403", "UAEX"),
            ("/slow", "0", "DC"),
            ("/stream", "200", "DC"),
        ]
    );
}

/// Captures the access log's events as field maps.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl Capture {
    fn entries(&self) -> Vec<BTreeMap<String, String>> {
        self.0.lock().unwrap().clone()
    }
}

struct Visitor<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Visitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}
