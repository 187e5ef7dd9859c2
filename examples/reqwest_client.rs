//! A reqwest client in the mesh: `cargo run --example reqwest_client --features reqwest`.
//!
//! Code written against reqwest (through `reqwest-middleware`) joins the mesh by changing
//! how it builds its client, not its call sites: `MeshMiddleware` sends each request
//! through a `MeshClient` (VirtualService routing, subsets, load balancing, mTLS with the
//! server's SPIFFE identity checked, retries, Istio metrics). The example starts two
//! versions of a `ratings` mesh server, routes user jason to v2 and everyone else to v1,
//! calls them with reqwest, prints the answers and exits.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use inmesh::core::mesh::Mesh;
use inmesh::tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use inmesh::tower::inbound::MeshServer;
use inmesh::tower::outbound::reqwest::MeshMiddleware;
use inmesh::tower::outbound::{ClientWorkload, MeshClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: ratings, subset: v2}}]
  - route: [{destination: {host: ratings, subset: v1}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
"#;

async fn certificate(ca: &Arc<MeshCa>, sa: &str) -> Result<CertManager, BoxError> {
    let id = Identity::new("cluster.local", "default", sa)?;
    let source = Arc::new(CaSource::new(Arc::clone(ca)));
    Ok(CertManager::start(id, source, RotationOptions::default()).await?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mesh = Mesh::from_yaml(CONFIG)?;
    let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    let mut certs = Vec::new();

    // two versions of ratings, each a STRICT mTLS mesh server
    for version in ["v1", "v2"] {
        let cert = certificate(&ca, "bookinfo-ratings").await?;
        let labels: inmesh::core::model::Labels = [
            ("app".to_owned(), "ratings".to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]
        .into();
        let server = MeshServer::builder(
            mesh.clone(),
            "default",
            "bookinfo-ratings",
            labels.clone(),
            Arc::clone(cert.credentials()),
        )
        .build()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().route(
            "/ratings/{id}",
            get(move || async move { format!("ratings {version}") }),
        );
        tokio::spawn(async move { server.serve(listener, app).await });
        mesh.register(inmesh::core::registry::Workload {
            name: format!("ratings-{version}"),
            namespace: "default".into(),
            service_account: "bookinfo-ratings".into(),
            labels,
            address: addr.ip(),
            ports: [("http".to_owned(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
        certs.push(cert);
    }

    // --- the wrapping: a reqwest client whose requests go through the mesh --------------
    let cert = certificate(&ca, "bookinfo-reviews").await?;
    let me = ClientWorkload::new("reviews-v2", "default", "bookinfo-reviews")
        .with_label("app", "reviews");
    let mesh_client = MeshClient::builder(mesh.clone(), me)
        .credentials(Arc::clone(cert.credentials()))
        .build();
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(MeshMiddleware::new(mesh_client.clone()))
        .build();
    // -------------------------------------------------------------------------------------

    for user in ["jason", "alice"] {
        let resp = http
            .get("http://ratings:9080/ratings/0")
            .header("end-user", user)
            .send()
            .await?;
        println!(
            "GET http://ratings:9080/ratings/0 as end-user {user}: {} {}",
            resp.status(),
            resp.text().await?
        );
    }
    let resp = http.get("http://nowhere.example:8080/").send().await?;
    println!(
        "GET http://nowhere.example:8080/ (not in the mesh registry): {}",
        resp.status()
    );
    let series = mesh_client
        .metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .count();
    println!("client metrics: {series} istio_requests_total series (reporter=\"source\")");
    Ok(())
}
