//! An ingress gateway with TLS: `cargo run --example ingress_gateway`.
//!
//! The config is `examples/config/ingress-gateway.yaml` (istio.io's "Secure Gateways"
//! task): a `Gateway` serving HTTPS for `httpbin.example.com` with TLS `SIMPLE` and the
//! certificate of `credentialName: httpbin-credential`, a `VirtualService` routing
//! `/headers` and `/status` to the `httpbin` service, and httpbin itself as a mesh
//! workload under STRICT mTLS that only the gateway's identity may call.
//!
//! The example prints a `curl` command to try and serves for a minute (or until Ctrl-C).
//! With `--once` (or `INMESH_EXAMPLE_ONCE=1`) it sends a few requests itself over TLS,
//! prints the answers and exits (non-zero if one is not what Istio would answer).

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use inmesh::core::mesh::Mesh;
use inmesh::core::names::MeshOptions;
use inmesh::core::registry::Workload;
use inmesh::tls::{
    CaSource, CertManager, Credential, CredentialLookup, Identity, MeshCa, RotationOptions,
    TlsError,
};
use inmesh::tower::gateway::GatewayServer;
use inmesh::tower::inbound::{ConnectionInfo, MeshServer};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn Error + Send + Sync>;

const HOST: &str = "httpbin.example.com";

/// The gateway's `credentialName`s, in memory (Kubernetes secrets in Istio).
#[derive(Debug)]
struct Secrets {
    httpbin: Credential,
}

impl CredentialLookup for Secrets {
    fn lookup(&self, name: &str) -> Result<Credential, TlsError> {
        match name {
            "httpbin-credential" => Ok(self.httpbin.clone()),
            _ => Err(TlsError::Config(format!("no secret {name:?}"))),
        }
    }
}

/// httpbin's `/headers` and `/status/{code}`, telling which peer identity called.
fn httpbin() -> Router {
    Router::new()
        .route(
            "/headers",
            get(
                |Extension(c): Extension<ConnectionInfo>, headers: HeaderMap| async move {
                    let h: serde_json::Map<String, serde_json::Value> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                        .collect();
                    Json(serde_json::json!({"headers": h, "peer": c.principal()}))
                },
            ),
        )
        .route(
            "/status/{code}",
            get(|Path(code): Path<u16>| async move {
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
            }),
        )
}

/// A running example: the gateway's HTTPS address and the CA file for clients.
pub struct Running {
    /// Where the gateway serves Gateway port 443.
    pub https: SocketAddr,
    /// The PEM file of the CA that signed `httpbin.example.com`'s certificate.
    pub ca_file: PathBuf,
    _gateway: GatewayServer,
    _certs: Vec<CertManager>,
    _httpbin: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self._httpbin.abort();
    }
}

/// Starts httpbin and the gateway.
pub async fn start() -> Result<Running, BoxError> {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/config");
    let mesh = Mesh::from_paths([config], MeshOptions::default())?;
    let mesh_ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    let cert = |ns: &str, sa: &str| {
        let id = Identity::new("cluster.local", ns, sa);
        let source = Arc::new(CaSource::new(Arc::clone(&mesh_ca)));
        async move { CertManager::start(id?, source, RotationOptions::default()).await }
    };

    // httpbin: a mesh workload (STRICT mTLS, AuthorizationPolicy httpbin-from-ingress)
    let httpbin_cert = cert("default", "httpbin").await?;
    let labels: inmesh::core::model::Labels = [
        ("app".to_owned(), "httpbin".to_owned()),
        ("version".to_owned(), "v1".to_owned()),
    ]
    .into();
    let server = MeshServer::builder(
        mesh.clone(),
        "default",
        "httpbin",
        labels.clone(),
        Arc::clone(httpbin_cert.credentials()),
    )
    .service_host("httpbin.default.svc.cluster.local")
    .port(8080)
    .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let httpbin_task = tokio::spawn(async move {
        if let Err(e) = server.serve(listener, httpbin()).await {
            eprintln!("httpbin stopped: {e}");
        }
    });
    mesh.register(Workload {
        name: "httpbin-v1".into(),
        namespace: "default".into(),
        service_account: "httpbin".into(),
        labels,
        address: addr.ip(),
        ports: [("http".to_owned(), addr.port())].into(),
        locality: None,
        weight: 0,
    });

    // the certificate the gateway shows browsers: from a CA of its own, for the DNS name
    let web_ca = MeshCa::self_signed("example.com")?;
    let web_id = Identity::new("example.com", "istio-system", "httpbin-credential")?;
    let web = web_ca.issue(&web_id, Duration::from_secs(24 * 3600), &[HOST])?;
    let dir = std::env::temp_dir().join(format!("inmesh-ingress-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ca_file = dir.join("example.com-ca.crt");
    std::fs::write(&ca_file, web.root_pem())?;
    let secrets = Secrets {
        httpbin: Credential {
            cert_chain_pem: Some(web.chain_pem().to_owned()),
            key_pem: Some(web.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: None,
        },
    };

    // the gateway: Gateway port 443 on a loopback port, mTLS to httpbin with its identity
    let gw_cert = cert("istio-system", "istio-ingressgateway-service-account").await?;
    let gateway = GatewayServer::builder(
        mesh,
        "istio-system",
        [("istio".to_owned(), "ingressgateway".to_owned())].into(),
    )
    .credentials(Arc::new(secrets))
    .workload_credentials(Arc::clone(gw_cert.credentials()))
    .listener(443, TcpListener::bind("127.0.0.1:0").await?)
    .start()
    .await?;
    let https = gateway
        .local_addr(443)
        .ok_or("the gateway does not serve port 443")?;
    Ok(Running {
        https,
        ca_file,
        _gateway: gateway,
        _certs: vec![httpbin_cert, gw_cert],
        _httpbin: httpbin_task,
    })
}

/// One HTTPS GET to the gateway as a browser would send it (SNI and Host
/// `httpbin.example.com`, the server's certificate checked against `ca_pem`).
pub async fn https_get(
    gateway: SocketAddr,
    ca_pem: &[u8],
    path: &str,
) -> Result<(u16, String), BoxError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c?)?;
    }
    // the provider explicitly: rustls's default panics when two are compiled in
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(gateway).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HOST)?, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, HOST)
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends the self-test requests; an error names the first unexpected answer.
pub async fn self_test(r: &Running) -> Result<(), BoxError> {
    let ca = std::fs::read(&r.ca_file)?;
    let (status, body) = https_get(r.https, &ca, "/headers").await?;
    println!("GET https://{HOST}/headers -> {status} {body}");
    let peer = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    if status != 200 || !body.contains(peer) {
        return Err(
            format!("expected 200 from httpbin seeing the gateway's identity {peer}").into(),
        );
    }
    let (status, _) = https_get(r.https, &ca, "/status/418").await?;
    println!("GET https://{HOST}/status/418 -> {status}");
    if status != 418 {
        return Err("expected httpbin's 418".into());
    }
    let (status, _) = https_get(r.https, &ca, "/ip").await?;
    println!("GET https://{HOST}/ip -> {status} (no route matches)");
    if status != 404 {
        return Err("expected 404 for a path no route matches".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let once = std::env::args().any(|a| a == "--once")
        || std::env::var_os("INMESH_EXAMPLE_ONCE").is_some_and(|v| v == "1");
    let r = start().await?;
    let port = r.https.port();
    println!("ingress gateway: HTTPS for {HOST} on {} (Gateway port 443), httpbin behind it under STRICT mTLS", r.https);
    println!("try:");
    println!(
        "  curl --cacert {} --resolve {HOST}:{port}:127.0.0.1 https://{HOST}:{port}/headers",
        r.ca_file.display()
    );
    if once {
        let result = self_test(&r).await;
        let _ = std::fs::remove_dir_all(r.ca_file.parent().unwrap_or(&r.ca_file));
        return result;
    }
    println!("serving for 60 s (Ctrl-C to stop)");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
    let _ = std::fs::remove_dir_all(r.ca_file.parent().unwrap_or(&r.ca_file));
    Ok(())
}
