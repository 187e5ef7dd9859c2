//! An existing axum app served as a mesh workload: `cargo run --example axum_app`.
//!
//! The `Router` is unchanged; `MeshServer` adds what the sidecar would: mTLS per
//! PeerAuthentication (STRICT here), AuthorizationPolicy, Istio metrics, access log and
//! trace context. The example then calls it twice, as the mesh client of workload `sleep`
//! (allowed) and as `other` (denied by the policy), prints the answers and exits; with
//! `--serve` it keeps serving until Ctrl-C.

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use inmesh::core::mesh::Mesh;
use inmesh::tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use inmesh::tower::inbound::{ConnectionInfo, MeshServer};
use inmesh::tower::outbound::{ClientWorkload, MeshClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 8080}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: hello-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: hello}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
    to: [{operation: {methods: [GET]}}]
"#;

/// The existing application: nothing mesh-specific, except that it may read the caller's
/// identity from the request extensions.
fn app() -> Router {
    Router::new().route(
        "/hello",
        get(|Extension(c): Extension<ConnectionInfo>| async move {
            format!("hello, {}\n", c.principal().unwrap_or("stranger"))
        }),
    )
}

/// A SPIFFE certificate for `sa`, renewed at half life (istiod's job in a cluster).
async fn certificate(ca: &Arc<MeshCa>, sa: &str) -> Result<CertManager, BoxError> {
    let id = Identity::new("cluster.local", "default", sa)?;
    let source = Arc::new(CaSource::new(Arc::clone(ca)));
    Ok(CertManager::start(id, source, RotationOptions::default()).await?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mesh = Mesh::from_yaml(CONFIG)?;
    let ca = Arc::new(MeshCa::self_signed("cluster.local")?);

    // --- the wrapping: the Router becomes the workload `hello` ---------------------------
    let cert = certificate(&ca, "hello").await?;
    let labels = [("app".to_owned(), "hello".to_owned())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "default",
        "hello",
        labels,
        Arc::clone(cert.credentials()),
    )
    .service_host("hello.default.svc.cluster.local")
    .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener, app()).await }
    });
    // -------------------------------------------------------------------------------------
    // (in a cluster the registry comes from Kubernetes; here: this process's endpoint)
    use inmesh::core::registry::Workload;
    mesh.register(
        Workload::new("hello-1", "default", "hello", [("app", "hello")], addr.ip())
            .with_port("http", addr.port()),
    );
    // the callers too, so that the server's metrics name their workloads (Istio learns
    // them by peer metadata exchange; here from the registry, by service account)
    for sa in ["sleep", "other"] {
        mesh.register(Workload::new(sa, "default", sa, [("app", sa)], addr.ip()));
    }
    println!("hello: a mesh workload on {addr} (STRICT mTLS, AuthorizationPolicy hello-viewer)");

    for sa in ["sleep", "other"] {
        let cert = certificate(&ca, sa).await?;
        let client = MeshClient::builder(mesh.clone(), ClientWorkload::new(sa, "default", sa))
            .credentials(Arc::clone(cert.credentials()))
            .build();
        let req = http::Request::get("http://hello:8080/hello").body(Empty::<Bytes>::new())?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        println!(
            "GET http://hello:8080/hello as {sa}: {status} {}",
            String::from_utf8_lossy(&body).trim_end()
        );
    }
    // the server's istio_requests_total, a few of its labels (`/stats/prometheus` has all)
    let text = server.metrics().render();
    for line in text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
    {
        let label = |name: &str| {
            let at = line
                .find(&format!("{name}=\""))
                .map(|i| i + name.len() + 2)?;
            line[at..].split('"').next()
        };
        println!(
            "istio_requests_total source_workload={} response_code={} connection_security_policy={}: {}",
            label("source_workload").unwrap_or("?"),
            label("response_code").unwrap_or("?"),
            label("connection_security_policy").unwrap_or("?"),
            line.rsplit(' ').next().unwrap_or("?"),
        );
    }

    if std::env::args().any(|a| a == "--serve") {
        println!("serving on {addr} until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    serving.abort();
    Ok(())
}
