//! Test harness for the outbound tests: one in-process CA, real axum servers on loopback
//! behind STRICT mTLS (each with its own SPIFFE identity), registered in a real `Mesh`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request as AxumRequest;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
use mesh_tower::outbound::{ClientBody, ClientWorkload, MeshClient};

pub const TD: &str = "cluster.local";

/// What a test server does.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answers 200 with its name.
    Ok,
    /// Answers 503 to its first `n` requests, then 200.
    FailFirst(u32),
    /// Always 500.
    Always500,
    /// Waits this long, then 200.
    Slow(Duration),
}

pub struct Pki {
    pub ca: Arc<MeshCa>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            ca: Arc::new(MeshCa::self_signed(TD).unwrap()),
        }
    }

    pub fn creds(&self, ns: &str, sa: &str) -> Arc<WorkloadCredentials> {
        let id = Identity::new(TD, ns, sa).unwrap();
        let cert = self.ca.issue(&id, Duration::from_secs(3600), &[]).unwrap();
        WorkloadCredentials::new(cert).unwrap()
    }
}

/// A running server.
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU32>,
    /// The peer principals the server saw (mTLS client identities).
    pub peers: Arc<std::sync::Mutex<Vec<String>>>,
    /// TLS connections accepted.
    pub conns: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Starts a STRICT mTLS server presenting `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
pub async fn start(pki: &Pki, name: &str, ns: &str, sa: &str, behaviour: Behaviour) -> Server {
    let creds = pki.creds(ns, sa);
    let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &creds, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let conns = Arc::new(AtomicU32::new(0));
    let accepted = Arc::clone(&conns);
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let served_by = name.to_owned();
    let (h, p) = (hits.clone(), peers.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let inbound = inbound.clone();
            let accepted = Arc::clone(&accepted);
            let (h, p, name, behaviour) =
                (h.clone(), p.clone(), served_by.clone(), behaviour.clone());
            tokio::spawn(async move {
                let Ok(acc) = inbound.accept(tcp).await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let principal = acc
                    .peer
                    .map(|p| p.principal().to_owned())
                    .unwrap_or_default();
                let router = Router::new().fallback(move |req: AxumRequest| {
                    let (h, p, name, behaviour, principal) = (
                        h.clone(),
                        p.clone(),
                        name.clone(),
                        behaviour.clone(),
                        principal.clone(),
                    );
                    async move {
                        let n = h.fetch_add(1, Ordering::SeqCst);
                        p.lock().unwrap().push(principal);
                        let mut headers = HeaderMap::new();
                        headers.insert("x-served-by", name.parse().unwrap());
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        headers.insert("x-seen-host", host.parse().unwrap_or("-".parse().unwrap()));
                        headers.insert("x-seen-path", req.uri().path().parse().unwrap());
                        headers.insert(
                            "x-seen-version",
                            format!("{:?}", req.version()).parse().unwrap(),
                        );
                        for (k, v) in req.headers() {
                            if k.as_str().starts_with("x-test-")
                                || k == "traceparent"
                                || k == "x-b3-traceid"
                                || k == "x-request-id"
                            {
                                let echo = format!("x-echo-{}", k.as_str());
                                headers.insert(
                                    axum::http::HeaderName::from_bytes(echo.as_bytes()).unwrap(),
                                    v.clone(),
                                );
                            }
                        }
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let status = match behaviour {
                            Behaviour::Ok => StatusCode::OK,
                            Behaviour::FailFirst(k) if n < k => StatusCode::SERVICE_UNAVAILABLE,
                            Behaviour::FailFirst(_) => StatusCode::OK,
                            Behaviour::Always500 => StatusCode::INTERNAL_SERVER_ERROR,
                            Behaviour::Slow(d) => {
                                tokio::time::sleep(d).await;
                                StatusCode::OK
                            }
                        };
                        let text = if body.is_empty() {
                            name
                        } else {
                            format!("{name}:{}", String::from_utf8_lossy(&body))
                        };
                        (status, headers, text).into_response()
                    }
                });
                let svc = TowerToHyperService::new(router);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(acc.stream), svc)
                    .await;
            });
        }
    });
    Server {
        name: name.to_owned(),
        addr,
        hits,
        peers,
        conns,
        task,
    }
}

/// A loopback address where nothing listens.
pub async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// Registers a workload for `service` (labels `app`, `version`) listening at `addr`.
pub fn register(
    mesh: &Mesh,
    name: &str,
    ns: &str,
    sa: &str,
    app: &str,
    version: &str,
    addr: SocketAddr,
) {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_owned(), app.to_owned());
    labels.insert("version".to_owned(), version.to_owned());
    mesh.register(Workload {
        name: name.to_owned(),
        namespace: ns.to_owned(),
        service_account: sa.to_owned(),
        labels,
        address: addr.ip(),
        ports: [("http".to_owned(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
}

/// The usual upstream: `reviews-v1` (namespace `default`, service account `reviews`)
/// started with `behaviour` and registered for service `reviews`, version `v1`.
pub async fn start_reviews_v1(pki: &Pki, mesh: &Mesh, behaviour: Behaviour) -> Server {
    let s = start(pki, "reviews-v1", "default", "reviews", behaviour).await;
    register(
        mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        s.addr,
    );
    s
}

/// Like [`register`], in a locality (`region/zone/subzone`).
pub fn register_in(mesh: &Mesh, name: &str, sa: &str, app: &str, locality: &str, addr: SocketAddr) {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_owned(), app.to_owned());
    mesh.register(Workload {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        service_account: sa.to_owned(),
        labels,
        address: addr.ip(),
        ports: [("http".to_owned(), addr.port())].into(),
        locality: Some(locality.to_owned()),
        weight: 0,
    });
}

/// A root-namespace `Sidecar` making every client `REGISTRY_ONLY`: a destination outside
/// the registry is black-holed (502) instead of passed through (Istio's default,
/// `ALLOW_ANY`).
pub const REGISTRY_ONLY: &str = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\n---\n";

/// A Kubernetes Service `name` in `ns` selecting `app: name`, port 9080 `http`.
pub fn service_yaml(name: &str, ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 9080}}]\n---\n"
    )
}

/// Replaces the mesh's config with `yaml`, panicking on refusal.
pub fn reload(mesh: &Mesh, yaml: &str) {
    let loaded = mesh_core::load::load_str(yaml, "test.yaml");
    mesh.reload_loaded(loaded).unwrap();
}

/// A mesh with this config.
pub fn mesh(yaml: &str) -> Mesh {
    let m = Mesh::new(Default::default());
    reload(&m, yaml);
    m
}

pub fn client(mesh: &Mesh, pki: &Pki, ns: &str, sa: &str) -> MeshClient {
    let me = ClientWorkload::new(sa, ns, sa).with_label("app", sa);
    MeshClient::builder(mesh.clone(), me)
        .credentials(pki.creds(ns, sa))
        .build()
}

/// `productpage-v1` (namespace `default`) writing the client's access log.
pub fn logging_client(mesh: &Mesh, pki: &Pki) -> MeshClient {
    let me = ClientWorkload::new("productpage-v1", "default", "productpage");
    MeshClient::builder(mesh.clone(), me)
        .credentials(pki.creds("default", "productpage"))
        .access_log(true)
        .build()
}

pub fn get(uri: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(uri).body(Empty::new()).unwrap()
}

pub fn get_with(uri: &str, headers: &[(&str, &str)]) -> http::Request<Empty<Bytes>> {
    let mut b = http::Request::get(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

pub fn post(uri: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::post(uri)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// Sends and reads the whole answer: (status, x-served-by, body, headers).
pub async fn send<B>(
    client: &MeshClient,
    req: http::Request<B>,
) -> (u16, String, String, http::HeaderMap)
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp: http::Response<ClientBody> = client.request(req).await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let by = headers
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (
        status,
        by,
        String::from_utf8_lossy(&body).into_owned(),
        headers,
    )
}

/// What this thread's tracing writes (the access log among it), captured for assertions.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures this thread's tracing output (a `#[tokio::test]` runs its tasks on it)
    /// while the guard lives.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The first line holding `needle`, waiting up to two seconds for it.
    pub async fn line_with(&self, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(l) = self.text().lines().find(|l| l.contains(needle)) {
                return l.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {needle} in {}", self.text());
    }
}
