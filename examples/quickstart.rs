//! The README's quick start, runnable: an axum app served as the mesh workload `httpbin`
//! and a mesh client running as `sleep`, both with certificates from an in-process mesh CA,
//! configured by the Istio YAML in `examples/quickstart/`. It prints the answer sleep gets.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! The lines between the `quick start` markers are the README's, verbatim (a test checks).

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (status, body) = run().await?;
    println!("sleep -> httpbin: {status} {body}");
    Ok(())
}

/// Runs the quick start (from the repository's root, where `examples/quickstart/` is); the
/// status and body sleep got.
#[rustfmt::skip] // the README's layout
pub async fn run() -> Result<(http::StatusCode, String), BoxError> {
    use http_body_util::BodyExt;
    let app = axum::Router::new().route("/headers", axum::routing::get(|| async { "hello from httpbin" }));
    let body = http_body_util::Empty::<bytes::Bytes>::new();
    // quick start: begin
    use std::sync::Arc;
    use inmesh::core::{mesh::Mesh, names::MeshOptions, registry::Workload};
    use inmesh::tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
    use inmesh::tower::{inbound::MeshServer, outbound::{ClientWorkload, MeshClient}};

    let mesh = Mesh::from_paths(["examples/quickstart"], MeshOptions::default())?; // your Istio YAML
    let ca = Arc::new(MeshCa::self_signed("cluster.local")?); // or MeshCa::from_plugin_dir
    let cert = |sa: &str| CertManager::start(Identity::new("cluster.local", "default", sa).unwrap(),
        Arc::new(CaSource::new(ca.clone())), RotationOptions::default());

    // server: mTLS per PeerAuthentication, AuthorizationPolicy, Istio metrics, access log, traces
    let httpbin = cert("httpbin").await?;
    let server = MeshServer::builder(mesh.clone(), "default", "httpbin",
        [("app".into(), "httpbin".into())].into(), httpbin.credentials().clone()).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { server.serve(listener, app).await });
    // where the Service's workloads run (its selector picks them; Kubernetes would tell istiod)
    mesh.register(Workload::new("httpbin-1", "default", "httpbin", [("app", "httpbin")], addr.ip())
        .with_port("http", addr.port()));

    // client: VirtualService routing, DestinationRule subsets and LB, retries, mTLS origination
    let sleep = cert("sleep").await?;
    let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "default", "sleep"))
        .credentials(sleep.credentials().clone()).build();
    let resp = client.request(http::Request::get("http://httpbin:8000/headers").body(body)?).await?;

    // opaque TCP (databases, caches): client.connect("mongodb:27017") gives a MeshTcpStream
    // (`tcp` routes, mTLS, TCP authorization, istio_tcp_* metrics); servers: serve_tcp
    // quick start: end
    let status = resp.status();
    let text = resp.into_body().collect().await?.to_bytes();
    drop((httpbin, sleep));
    Ok((status, String::from_utf8_lossy(&text).into_owned()))
}
