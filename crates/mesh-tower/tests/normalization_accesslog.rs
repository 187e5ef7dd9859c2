//! The access log of a MeshServer shows the path the application received (Envoy's
//! `%REQ(:PATH)%`, read after the connection manager normalized the path), not the one
//! sent. Alone in its test binary: it installs a thread-local tracing subscriber, which
//! tests running beside it could make tracing's callsite cache miss.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use mesh_tower::accesslog::TARGET;
use mesh_tower::inbound::MeshServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// `DENY` on `/admin*` for httpbin, in a mesh whose MeshConfig says `MERGE_SLASHES`.
async fn start() -> (SocketAddr, CertManager) {
    let config =
        MeshConfig::from_yaml("pathNormalization: {normalization: MERGE_SLASHES}").unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    let policy = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
";
    mesh.reload_objects(mesh_core::load::load_str(policy, "policy.yaml").objects)
        .unwrap();
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let certs = CertManager::start(id, Arc::new(CaSource::new(ca)), RotationOptions::default())
        .await
        .unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, certs.credentials().clone())
        .port(8000)
        .build()
        .unwrap();
    let app = Router::new().fallback(|uri: http::Uri| async move { uri.to_string() });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    (addr, certs)
}

/// Sends `GET target` as raw HTTP/1.1 (so the client cannot tidy the path); the status.
async fn get(addr: SocketAddr, target: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {target} HTTP/1.1\r\nhost: httpbin.foo:8000\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out)[9..12].parse().unwrap()
}

/// The access log shows the path the application received (Envoy's `%REQ(:PATH)%` after
/// normalization), not the one sent.
#[tokio::test]
async fn the_access_log_shows_the_normalized_path() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let (addr, _certs) = start().await;
    for target in ["//public/./a?q=1", "//admin", "/plain"] {
        get(addr, target).await;
    }
    // the entry is written when the response body ends: wait for all three
    let mut paths = Vec::new();
    for _ in 0..100 {
        paths = capture.paths();
        if paths.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(paths, ["/public/a?q=1", "/admin", "/plain"]);
    let lines = capture
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|f| f["message"].clone())
        .collect::<Vec<_>>();
    assert!(
        lines[0].contains("\"GET /public/a?q=1 HTTP/1.1\" 200"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"GET /admin HTTP/1.1\" 403"),
        "{}",
        lines[1]
    );
}

/// Captures the access log's events as field maps.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

impl Capture {
    fn paths(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|f| f["path"].clone())
            .collect()
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
