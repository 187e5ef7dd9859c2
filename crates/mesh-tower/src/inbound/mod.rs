//! The inbound side: serve any Tower HTTP service as a mesh workload.
//!
//! [`MeshServer`] accepts connections on a `TcpListener` and, per connection:
//! 1. looks up the PeerAuthentication mode for this workload and port in the *current*
//!    snapshot (workload over namespace over root namespace, `portLevelMtls` over the
//!    workload's mode; UNSET at the top is PERMISSIVE), so a changed PeerAuthentication
//!    applies to the next connection;
//! 2. accepts it under that mode with mesh-tls ([`InboundTls`]): STRICT resets plaintext
//!    (the client sees a reset, as with Istio), PERMISSIVE tells TLS from plaintext by the
//!    first byte, DISABLE takes plaintext;
//! 3. serves HTTP/1.1 and HTTP/2 (gRPC) on it with hyper-util's auto server, through this
//!    stack (outermost first): [`ConnectionInfoLayer`] (peer identity, addresses, port and
//!    the client's SNI into the request extensions), `x-forwarded-client-cert` as an Istio
//!    sidecar's inbound listener sets it (APPEND_FORWARD: on mTLS `By=<our
//!    identity>;Hash=<sha256 of the client certificate>;Subject="..";URI=<client
//!    identity>;DNS=..` appended after what the caller sent; on plaintext the header is
//!    removed), the access log ([`AccessLogLayer`]), HTTP/1.0 refused with `426 Upgrade
//!    Required` (Envoy's codec, as Istio configures it), trace context
//!    ([`PropagateTraceLayer`]), Istio's standard metrics ([`MetricsLayer`],
//!    `reporter="destination"`), authorization ([`AuthorizationLayer`], evaluated per
//!    request on the current snapshot), on a port whose protocol is `GRPC-WEB` (the
//!    Sidecar `ingress` listener's, else the served service port's) gRPC-Web translated to
//!    gRPC and the answer back with its trailers in its body (Envoy's `grpc_web` filter,
//!    which istiod adds there: after RBAC, so a denial is a plain `403 RBAC: access
//!    denied`; the metrics report the call as `request_protocol="grpc"` with Istio's
//!    `grpc_response_status="2"`), the inbound connection pool (the circuit breakers
//!    istiod puts between a sidecar and its application: the Sidecar's `ingress` listener
//!    for the port, its `inboundConnectionPool`, else the DestinationRule `connectionPool`
//!    of the service named by [`MeshServerBuilder::service_host`]; past its connections
//!    or streams plus `http1MaxPendingRequests` waiting, or `http2MaxRequests` active,
//!    Envoy's 503 `UO` overflow answer), then the application.
//!
//! Every layer is usable on its own with `.layer(...)` (e.g. on an axum `Router` served
//! by `axum::serve`); the server only wires them together.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{routing::get, Router};
//! use mesh_core::mesh::Mesh;
//! use mesh_tower::inbound::MeshServer;
//! # async fn run(mesh: Mesh, creds: Arc<mesh_tls::WorkloadCredentials>) -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/headers", get(|| async { "ok" }));
//! let labels = [("app".to_string(), "httpbin".to_string())].into();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8000").await?;
//! MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
//!     .service_host("httpbin.foo.svc.cluster.local")
//!     .build()?
//!     .serve(listener, app)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! HTTP/1.1 upgrades (WebSocket) reach the application (`hyper::upgrade::on`). Dropping
//! the serve future, like [`MeshServer::serve_with_shutdown`]'s signal, drains the open
//! connections gracefully.
//!
//! The application receives `Request<`[`ServerBody`]`>` (the hyper body, counted by the
//! access log and the metrics layers; an axum `Router` accepts it as is).
//!
//! The mode is decided per connection. A plaintext connection accepted under PERMISSIVE is
//! drained (its requests in flight finish, then it closes) within a second of a snapshot
//! that makes its port STRICT, as Envoy drains the filter chain that accepted it; an mTLS
//! connection keeps its mode. (A TCP stream handed to the application by
//! [`MeshServer::serve_tcp`] is the application's to close: it is not drained.)

mod conn;
mod grpc_web;
pub(crate) mod hcm;
mod pool;

/// A workload port a mesh server serves, as its per-port layers (the inbound connection
/// pool, gRPC-Web) find their settings in a snapshot: the workload, the service it serves
/// (if known) and the port.
#[derive(Debug)]
pub(crate) struct ServedPort {
    mesh: Mesh,
    namespace: String,
    labels: Labels,
    service_host: Option<String>,
    port: u16,
}

impl ServedPort {
    /// The mesh whose snapshots the port's settings come from.
    pub(crate) fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// The port's inbound settings in `snap` ([`Snapshot::inbound_connection_pool`]).
    ///
    /// [`Snapshot::inbound_connection_pool`]: mesh_core::snapshot::Snapshot::inbound_connection_pool
    pub(crate) fn settings<'s>(
        &self,
        snap: &'s mesh_core::snapshot::Snapshot,
    ) -> mesh_core::snapshot::InboundPool<'s> {
        snap.inbound_connection_pool(
            &self.namespace,
            &self.labels,
            self.port,
            self.service_host.as_deref(),
        )
    }
}

/// How often a plaintext connection accepted under PERMISSIVE looks for a new snapshot
/// that makes its port STRICT.
const PLAINTEXT_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_core::model::{Labels, MtlsMode};
use mesh_tls::{InboundTls, PeerAuthnMode, TlsError, WorkloadCredentials};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceBuilder};

pub use conn::{ConnectionInfo, ConnectionInfoLayer, WithConnectionInfo};

use crate::accesslog::AccessLogLayer;
use crate::authz::AuthorizationLayer;
use crate::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
use crate::outbound::ClientWorkload;
use crate::trace::{PropagateTraceLayer, TraceConfig};

/// The request body the application behind a [`MeshServer`] receives.
///
/// # Examples
///
/// A plain `tower::Service` application (no framework) reading the body:
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
/// use mesh_tower::inbound::{MeshServer, ServerBody};
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let creds = |ns: &str, sa: &str| {
///     let id = Identity::new("cluster.local", ns, sa).unwrap();
///     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
/// };
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: httpbin, namespace: foo}
/// spec:
///   selector: {app: httpbin}
///   ports: [{name: http, port: 8000}]
/// ")?;
/// let app = tower::service_fn(|req: http::Request<ServerBody>| async move {
///     let body = req.into_body().collect().await?.to_bytes();
///     let answer = format!("{} bytes", body.len());
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http::Response::new(Full::new(Bytes::from(answer))))
/// });
/// let labels = [("app".to_string(), "httpbin".to_string())].into();
/// let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds("foo", "httpbin")).build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move { server.serve(listener, app).await });
/// mesh.register(Workload {
///     name: "httpbin".to_string(),
///     namespace: "foo".to_string(),
///     service_account: "httpbin".to_string(),
///     labels: [("app".to_string(), "httpbin".to_string())].into(),
///     address: addr.ip(),
///     ports: [("http".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
///
/// let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep"))
///     .credentials(creds("foo", "sleep"))
///     .build();
/// let req = http::Request::post("http://httpbin.foo:8000/post").body(Full::new(Bytes::from("hello")))?;
/// let resp = client.request(req).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "5 bytes");
/// # Ok(()) }
/// ```
pub type ServerBody =
    crate::metrics::RequestBody<crate::observe::CountingBody<crate::observe::ReplayBody>>;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Turns a resolved PeerAuthentication mode into the mesh-tls mode (UNSET at the top is
/// PERMISSIVE).
///
/// # Examples
///
/// ```
/// use mesh_core::model::MtlsMode;
/// use mesh_tls::PeerAuthnMode;
/// use mesh_tower::inbound::peer_authn_mode;
///
/// assert_eq!(peer_authn_mode(MtlsMode::Strict), PeerAuthnMode::Strict);
/// assert_eq!(peer_authn_mode(MtlsMode::Disable), PeerAuthnMode::Disable);
/// // No PeerAuthentication anywhere: Istio's default, PERMISSIVE.
/// assert_eq!(peer_authn_mode(MtlsMode::Unset), PeerAuthnMode::Permissive);
/// ```
pub fn peer_authn_mode(mode: MtlsMode) -> PeerAuthnMode {
    match mode {
        MtlsMode::Strict => PeerAuthnMode::Strict,
        MtlsMode::Disable => PeerAuthnMode::Disable,
        MtlsMode::Permissive | MtlsMode::Unset => PeerAuthnMode::Permissive,
    }
}

/// Builds a [`MeshServer`]. See [`MeshServer::builder`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mesh_core::mesh::Mesh;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
/// use mesh_tower::inbound::MeshServer;
/// use mesh_tower::metrics::IstioMetrics;
/// use mesh_tower::trace::TraceConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "foo", "httpbin")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
/// let metrics = Arc::new(IstioMetrics::new()); // shared with the workload's client, say
/// let labels = [("app", "httpbin"), ("version", "v1")]
///     .map(|(k, v)| (k.to_string(), v.to_string()))
///     .into();
///
/// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", labels, creds)
///     .workload_name("httpbin-v1")
///     .service_host("httpbin.foo.svc.cluster.local")
///     .metrics(Arc::clone(&metrics))
///     .port(8000)
///     .trace(TraceConfig { sampling_percent: 100.0, ..TraceConfig::default() })
///     .handshake_timeout(Some(Duration::from_secs(5)))
///     .drain_timeout(Duration::from_secs(2))
///     .build()?;
/// assert!(Arc::ptr_eq(server.metrics(), &metrics));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MeshServerBuilder {
    mesh: Mesh,
    namespace: String,
    service_account: String,
    labels: Labels,
    credentials: Arc<WorkloadCredentials>,
    workload_name: Option<String>,
    service_host: Option<String>,
    cluster_id: Option<String>,
    metrics: Option<Arc<IstioMetrics>>,
    port: Option<u16>,
    /// Set by [`MeshServerBuilder::trace`]; else the mesh's tracing.
    trace: Option<TraceConfig>,
    handshake_timeout: Option<Duration>,
    drain_timeout: Duration,
}

impl MeshServerBuilder {
    /// The workload name for metrics (`destination_workload`); default: the `app` label,
    /// else the service account.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # async fn get_once(server: &mesh_tower::inbound::MeshServer) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    /// #     use http_body_util::BodyExt;
    /// #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// #     let addr = listener.local_addr()?;
    /// #     let running = server.clone();
    /// #     let app = axum::Router::new().fallback(|| async { "ok" });
    /// #     tokio::spawn(async move { running.serve(listener, app).await });
    /// #     let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    /// #         .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// #     let resp = client.get(format!("http://{addr}/get").parse()?).await?;
    /// #     Ok(String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", labels, creds)
    ///     .workload_name("httpbin-v1")
    ///     .build()?;
    /// get_once(&server).await?; // one request, served (hidden: a plaintext GET on loopback)
    ///
    /// let text = server.metrics().render();
    /// assert!(text.contains(r#"destination_workload="httpbin-v1""#), "{text}"); // the default: "httpbin", the `app` label
    /// # Ok(()) }
    /// ```
    pub fn workload_name(mut self, name: impl Into<String>) -> Self {
        self.workload_name = Some(name.into());
        self
    }

    /// The service this workload serves (`destination_service` in metrics), an FQDN like
    /// `httpbin.foo.svc.cluster.local`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # async fn get_once(server: &mesh_tower::inbound::MeshServer) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    /// #     use http_body_util::BodyExt;
    /// #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// #     let addr = listener.local_addr()?;
    /// #     let running = server.clone();
    /// #     let app = axum::Router::new().fallback(|| async { "ok" });
    /// #     tokio::spawn(async move { running.serve(listener, app).await });
    /// #     let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    /// #         .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// #     let resp = client.get(format!("http://{addr}/get").parse()?).await?;
    /// #     Ok(String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?)
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", labels, creds)
    ///     .service_host("httpbin.foo.svc.cluster.local")
    ///     .build()?;
    /// get_once(&server).await?; // one request, served (hidden: a plaintext GET on loopback)
    ///
    /// let text = server.metrics().render();
    /// assert!(text.contains(r#"destination_service_name="httpbin""#), "{text}"); // and destination_service_namespace="foo"
    /// # Ok(()) }
    /// ```
    pub fn service_host(mut self, host: impl Into<String>) -> Self {
        self.service_host = Some(host.into());
        self
    }

    /// The cluster this workload runs in (Istio's `CLUSTER_ID`; default
    /// [`Kubernetes`](crate::metrics::DEFAULT_CLUSTER_ID)): `destination_cluster` in its
    /// metrics, and `source_cluster` of callers known in the mesh (by the registry or their
    /// certificate), which are taken to be in the same cluster.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds)
    ///     .cluster_id("east")
    ///     .build()?;
    /// # let _ = server;
    /// # Ok(()) }
    /// ```
    pub fn cluster_id(mut self, cluster: impl Into<String>) -> Self {
        self.cluster_id = Some(cluster.into());
        self
    }

    /// Record metrics into this registry (default: a new one, see [`MeshServer::metrics`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    /// use mesh_tower::metrics::IstioMetrics;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// // one registry for the whole process: the server's series and the client's side by side
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds)
    ///     .metrics(Arc::clone(&metrics))
    ///     .build()?;
    /// assert!(Arc::ptr_eq(server.metrics(), &metrics));
    /// # Ok(()) }
    /// ```
    pub fn metrics(mut self, metrics: Arc<IstioMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The workload (container) port this listener stands for, as PeerAuthentication
    /// `portLevelMtls` and AuthorizationPolicy `ports` name it. Default: the listener's
    /// local port.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::PeerAuthnMode;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// // STRICT on workload port 8000 only
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: httpbin, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   mtls: {mode: PERMISSIVE}
    ///   portLevelMtls:
    ///     8000: {mode: STRICT}
    /// ")?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// // the listener is on a random port, which stands for the workload's port 8000
    /// let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds).port(8000).build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// assert_eq!(server.peer_authn_mode(addr.port()), PeerAuthnMode::Permissive);
    /// tokio::spawn(async move { server.serve(listener, axum::Router::new().fallback(|| async { "ok" })).await });
    ///
    /// let plaintext = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// assert!(plaintext.get(format!("http://{addr}/get").parse()?).await.is_err(), "reset: STRICT");
    /// # Ok(()) }
    /// ```
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Trace propagation settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::http::HeaderMap;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    /// use mesh_tower::trace::TraceConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds)
    ///     .trace(TraceConfig { sampling_percent: 100.0, ..TraceConfig::default() })
    ///     .build()?;
    /// // the application answers with the sampling decision it was handed
    /// let app = axum::Router::new().fallback(|h: HeaderMap| async move { h["x-b3-sampled"].to_str().unwrap().to_string() });
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// tokio::spawn(async move { server.serve(listener, app).await });
    ///
    /// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<Empty<Bytes>>();
    /// let resp = client.get(format!("http://{addr}/").parse()?).await?;
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "1", "a new trace, sampled");
    /// # Ok(()) }
    /// ```
    pub fn trace(mut self, trace: TraceConfig) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Bound on the TLS handshake (default 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    /// use tokio::io::AsyncReadExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: foo}
    /// spec: {mtls: {mode: STRICT}}
    /// ")?;
    /// let server = MeshServer::builder(mesh, "foo", "httpbin", Default::default(), creds)
    ///     .handshake_timeout(Some(Duration::from_millis(100)))
    ///     .build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// tokio::spawn(async move { server.serve(listener, axum::Router::new()).await });
    ///
    /// // a client that connects and never starts the handshake is let go
    /// let start = Instant::now();
    /// let mut idle = tokio::net::TcpStream::connect(addr).await?;
    /// let mut buf = [0u8; 1];
    /// let read = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await?;
    /// assert!(matches!(read, Ok(0) | Err(_)), "closed by the server");
    /// assert!(start.elapsed() < Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for open connections (default 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds)
    ///     .drain_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// // an application whose request never ends
    /// let (started, is_started) = tokio::sync::oneshot::channel::<()>();
    /// let started = std::sync::Arc::new(std::sync::Mutex::new(Some(started)));
    /// let app = axum::Router::new().fallback(move || {
    ///     let started = started.lock().unwrap().take();
    ///     async move {
    ///         let _ = started.map(|s| s.send(()));
    ///         std::future::pending::<&str>().await
    ///     }
    /// });
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let serving = tokio::spawn(async move {
    ///     server.serve_with_shutdown(listener, app, async { let _ = stopped.await; }).await
    /// });
    /// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
    /// tokio::spawn(client.get(format!("http://{addr}/slow").parse()?));
    /// is_started.await?;
    ///
    /// let start = Instant::now();
    /// stop.send(()).unwrap();
    /// serving.await??; // gives up on the open request after the drain timeout
    /// assert!(start.elapsed() < Duration::from_secs(1));
    /// # Ok(()) }
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Builds the server: the rustls configs are built here, once.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::PeerAuthnMode;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds).build()?;
    /// // no PeerAuthentication: PERMISSIVE; nothing served yet
    /// assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Permissive);
    /// assert_eq!(server.metrics().series_count(), 0);
    /// // cheap to clone: one server may serve several listeners
    /// let _second = server.clone();
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<MeshServer, TlsError> {
        let creds = &self.credentials;
        // MeshConfig `meshMTLS.minProtocolVersion: TLSV1_3`, as the server is built
        let snap = self.mesh.snapshot();
        let options = snap.options();
        let tls13_only = options.mesh_mtls_tls13_only;
        let strict = InboundTls::new(
            PeerAuthnMode::Strict,
            Some(creds.server_config_versions(None, tls13_only)?),
        )?
        .with_handshake_timeout(self.handshake_timeout);
        // MeshConfig `protocolDetectionTimeout`: a client silent that long is plaintext
        let permissive = InboundTls::new(
            PeerAuthnMode::Permissive,
            strict.tls_acceptor().map(|a| Arc::clone(a.config())),
        )?
        .with_handshake_timeout(self.handshake_timeout)
        .with_detection_timeout(options.protocol_detection_timeout);
        let disable = InboundTls::new(PeerAuthnMode::Disable, None)?;
        let workload = self.workload_name.clone().unwrap_or_else(|| {
            self.labels
                .get("app")
                .cloned()
                .unwrap_or_else(|| self.service_account.clone())
        });
        let mut me = WorkloadInfo::from_labels(
            &workload,
            &self.namespace,
            creds.identity().as_uri(),
            &self.labels,
        );
        // its principal is reported only for mutual TLS connections (the metrics layer
        // decides per request), its cluster as set or `Kubernetes`
        if let Some(c) = &self.cluster_id {
            me.cluster.clone_from(c);
        }
        let metrics = self
            .metrics
            .clone()
            .unwrap_or_else(|| Arc::new(IstioMetrics::new()));
        let mut metrics_layer = MetricsLayer::inbound(Arc::clone(&metrics), me);
        let service = self
            .service_host
            .as_deref()
            .map(|h| Arc::new(ServiceInfo::from_host(h)));
        if let Some(s) = &service {
            metrics_layer = metrics_layer.with_default_service((**s).clone());
        }
        let mut authz = AuthorizationLayer::new(
            self.mesh.clone(),
            self.namespace.as_str(),
            self.labels.clone(),
        );
        if let Some(p) = self.port {
            authz = authz.with_port(p);
        }
        // CUSTOM policies' external authorizers are asked as this workload, over mTLS
        // when the authorizer is a mesh workload
        let mut client_workload = ClientWorkload::new(
            &workload,
            &self.namespace,
            creds.identity().service_account(),
        );
        client_workload.labels = self.labels.clone();
        authz = authz.with_ext_authz_identity(client_workload, Some(Arc::clone(creds)));
        // Envoy's `By`: the URI SANs of the server's own certificate (its SPIFFE identity;
        // a renewed certificate has the same)
        let mut xfcc_by = creds
            .current()
            .chain_der()
            .ok()
            .and_then(|c| c.first().map(|leaf| hcm::local_uri_sans(leaf.as_ref())))
            .unwrap_or_default();
        if xfcc_by.is_empty() {
            xfcc_by.push(creds.identity().as_uri().to_owned());
        }
        Ok(MeshServer {
            inner: Arc::new(ServerInner {
                xfcc_by,
                namespace: self.namespace,
                labels: self.labels,
                port: self.port,
                strict,
                permissive,
                disable,
                metrics,
                metrics_layer,
                service,
                authz,
                trace: PropagateTraceLayer::inbound(
                    self.trace
                        .unwrap_or_else(|| TraceConfig::from_options(self.mesh.options())),
                ),
                drain_timeout: self.drain_timeout,
                handshake_timeout: self.handshake_timeout,
                detection_timeout: options.protocol_detection_timeout,
                log_format: crate::accesslog::mesh_format(self.mesh.options()),
                mesh: self.mesh,
            }),
        })
    }

    /// Builds the server and serves `service` on `listener` until the listener fails.
    ///
    /// # Examples
    ///
    /// Without a PeerAuthentication the workload is PERMISSIVE: a client outside the mesh
    /// gets in over plaintext (and the application sees no principal).
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::Extension;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::{ConnectionInfo, MeshServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "bookinfo-productpage")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let app = axum::Router::new().route(
    ///     "/productpage",
    ///     axum::routing::get(|Extension(c): Extension<ConnectionInfo>| async move {
    ///         format!("tls={}", c.is_tls())
    ///     }),
    /// );
    /// let labels = [("app".to_string(), "productpage".to_string())].into();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?; // 9080 in a pod
    /// let addr = listener.local_addr()?;
    /// let builder = MeshServer::builder(Mesh::new(Default::default()), "default", "bookinfo-productpage", labels, creds)
    ///     .service_host("productpage.default.svc.cluster.local");
    /// tokio::spawn(builder.serve(listener, app));
    ///
    /// let browser = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    /// let resp = browser.get(format!("http://{addr}/productpage").parse()?).await?;
    /// assert_eq!(resp.status(), 200);
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "tls=false");
    /// # Ok(()) }
    /// ```
    pub async fn serve<S, B>(self, listener: TcpListener, service: S) -> io::Result<()>
    where
        S: Service<Request<ServerBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.build()
            .map_err(io::Error::other)?
            .serve(listener, service)
            .await
    }
}

#[derive(Debug)]
struct ServerInner {
    mesh: Mesh,
    namespace: String,
    labels: Labels,
    port: Option<u16>,
    strict: InboundTls,
    permissive: InboundTls,
    disable: InboundTls,
    metrics: Arc<IstioMetrics>,
    metrics_layer: MetricsLayer,
    service: Option<Arc<ServiceInfo>>,
    authz: AuthorizationLayer,
    trace: PropagateTraceLayer,
    drain_timeout: Duration,
    /// How long a TLS handshake (and a ClientHello) may take.
    handshake_timeout: Option<Duration>,
    /// MeshConfig `protocolDetectionTimeout`: how long PERMISSIVE waits for a first byte.
    detection_timeout: Option<Duration>,
    /// The MeshConfig's access-log format, if it sets one (for TCP connections).
    log_format: Option<Arc<crate::accesslog::LogFormat>>,
    /// The `By` keys of our x-forwarded-client-cert elements: our certificate's URI SANs.
    xfcc_by: Vec<String>,
}

/// The `server` header a sidecar's inbound listener writes on every response (MeshConfig
/// `proxyHeaders.server`: `istio-envoy` by default; none when disabled), read when the
/// server starts serving.
fn server_header(mesh: &Mesh) -> Option<http::HeaderValue> {
    let name = mesh.options().proxy_headers.server.as_deref()?;
    http::HeaderValue::from_str(name).ok()
}

/// The caller's workload for the `source_*` metric labels, as the registry knows the
/// workloads running as its SPIFFE identity's service account (Istio's sidecars learn it
/// by metadata exchange; in one process the registry already holds it). When several
/// workloads run as that account, only what they share is kept (the rest stays
/// `unknown`); when none is registered, `None` (the principal alone is known).
fn peer_workload(mesh: &Mesh, peer: &mesh_tls::PeerIdentity) -> Option<WorkloadInfo> {
    let id = peer.identity();
    let snap = mesh.snapshot();
    let info = |w: &mesh_core::registry::Workload| {
        WorkloadInfo::from_labels(&w.name, &w.namespace, id.as_uri(), &w.labels)
    };
    let mut found = snap
        .registry()
        .workloads_of(id.namespace(), id.service_account());
    let mut source = info(found.next()?);
    for w in found {
        let other = info(w);
        for (mine, theirs) in [
            (&mut source.workload, &other.workload),
            (&mut source.app, &other.app),
            (&mut source.version, &other.version),
            (&mut source.canonical_service, &other.canonical_service),
            (&mut source.canonical_revision, &other.canonical_revision),
        ] {
            if mine != theirs {
                mine.clear();
            }
        }
    }
    Some(source)
}

/// A mesh workload's HTTP server. See the [module docs](self).
///
/// # Examples
///
/// Under a STRICT PeerAuthentication, a mesh client gets through with mTLS (the application
/// sees its principal), a plaintext client is reset:
///
/// ```
/// use std::time::Duration;
/// use axum::Extension;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
/// use mesh_tower::inbound::{ConnectionInfo, MeshServer};
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let creds = |ns: &str, sa: &str| {
///     let id = Identity::new("cluster.local", ns, sa).unwrap();
///     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
/// };
/// let mesh = Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: foo}
/// spec: {mtls: {mode: STRICT}}
/// ---
/// apiVersion: v1
/// kind: Service
/// metadata: {name: httpbin, namespace: foo}
/// spec:
///   selector: {app: httpbin}
///   ports: [{name: http, port: 8000}]
/// ")?;
/// let app = axum::Router::new().route(
///     "/headers",
///     axum::routing::get(|Extension(c): Extension<ConnectionInfo>| async move {
///         format!("hello {}", c.principal().unwrap_or("stranger"))
///     }),
/// );
/// let labels = [("app".to_string(), "httpbin".to_string())].into();
/// let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds("foo", "httpbin"))
///     .service_host("httpbin.foo.svc.cluster.local")
///     .build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move { server.serve(listener, app).await });
/// mesh.register(Workload {
///     name: "httpbin".to_string(),
///     namespace: "foo".to_string(),
///     service_account: "httpbin".to_string(),
///     labels: [("app".to_string(), "httpbin".to_string())].into(),
///     address: addr.ip(),
///     ports: [("http".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
///
/// let sleep = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep"))
///     .credentials(creds("foo", "sleep"))
///     .build();
/// let req = http::Request::get("http://httpbin.foo:8000/headers").body(Empty::<Bytes>::new())?;
/// let resp = sleep.request(req).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "hello cluster.local/ns/foo/sa/sleep");
///
/// let plaintext = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// assert!(plaintext.get(format!("http://{addr}/headers").parse()?).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MeshServer {
    inner: Arc<ServerInner>,
}

impl MeshServer {
    /// A server for the workload `service_account` in `namespace` with pod-style `labels`,
    /// presenting `credentials` (its SPIFFE certificate, renewed by a `CertManager`) and
    /// following the config of `mesh`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::PeerAuthnMode;
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: foo}
    /// spec: {mtls: {mode: STRICT}}
    /// ")?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds).build()?;
    /// assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Strict); // foo's PeerAuthentication
    /// # Ok(()) }
    /// ```
    pub fn builder(
        mesh: Mesh,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
        labels: Labels,
        credentials: Arc<WorkloadCredentials>,
    ) -> MeshServerBuilder {
        MeshServerBuilder {
            mesh,
            namespace: namespace.into(),
            service_account: service_account.into(),
            labels,
            credentials,
            workload_name: None,
            service_host: None,
            cluster_id: None,
            metrics: None,
            port: None,
            trace: None,
            handshake_timeout: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// The metrics this server records (render them with [`IstioMetrics::render`] or serve
    /// them with [`crate::metrics::serve_metrics`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::MeshServer;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let creds = |ns: &str, sa: &str| {
    ///     let id = Identity::new("cluster.local", ns, sa).unwrap();
    ///     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
    /// };
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: httpbin, namespace: foo}
    /// spec:
    ///   selector: {app: httpbin}
    ///   ports: [{name: http, port: 8000}]
    /// ")?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds("foo", "httpbin"))
    ///     .service_host("httpbin.foo.svc.cluster.local")
    ///     .build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let app = axum::Router::new().fallback(|| async { "ok" });
    /// let running = server.clone();
    /// tokio::spawn(async move { running.serve(listener, app).await });
    /// mesh.register(Workload {
    ///     name: "httpbin".to_string(),
    ///     namespace: "foo".to_string(),
    ///     service_account: "httpbin".to_string(),
    ///     labels: [("app".to_string(), "httpbin".to_string())].into(),
    ///     address: addr.ip(),
    ///     ports: [("http".to_string(), addr.port())].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    /// let sleep = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep"))
    ///     .credentials(creds("foo", "sleep"))
    ///     .build();
    /// let req = http::Request::get("http://httpbin.foo:8000/get").body(Empty::<Bytes>::new())?;
    /// sleep.request(req).await?.into_body().collect().await?;
    ///
    /// let text = server.metrics().render();
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// for label in [
    ///     r#"reporter="destination""#,
    ///     r#"source_principal="spiffe://cluster.local/ns/foo/sa/sleep""#,
    ///     r#"destination_principal="spiffe://cluster.local/ns/foo/sa/httpbin""#,
    ///     r#"destination_service="httpbin.foo.svc.cluster.local""#,
    ///     r#"connection_security_policy="mutual_tls""#,
    /// ] {
    ///     assert!(line.contains(label), "{label} in {line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.inner.metrics
    }

    /// The authorization layer the server applies.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "foo", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: httpbin-viewer, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   rules:
    ///   - to: [{operation: {methods: [GET]}}]
    /// ")?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds).build()?;
    ///
    /// let authz = server.authorization();
    /// assert_eq!(authz.policies(), ["foo/httpbin-viewer"]);
    /// assert!(authz.decide(&http::Request::get("/headers").body(())?).allowed);
    /// assert!(!authz.decide(&http::Request::delete("/headers").body(())?).allowed);
    /// # Ok(()) }
    /// ```
    pub fn authorization(&self) -> &AuthorizationLayer {
        &self.inner.authz
    }

    /// The PeerAuthentication mode in force now for workload port `port`.
    ///
    /// # Examples
    ///
    /// Namespace-wide STRICT with a PERMISSIVE port for a legacy scraper, then a config
    /// change applying at once:
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa, PeerAuthnMode, WorkloadCredentials};
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "foo", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let strict = "
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: foo}
    /// spec: {mtls: {mode: STRICT}}
    /// ";
    /// let mesh = Mesh::from_yaml(&format!("{strict}---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {{name: httpbin, namespace: foo}}
    /// spec:
    ///   selector: {{matchLabels: {{app: httpbin}}}}
    ///   portLevelMtls:
    ///     9090: {{mode: PERMISSIVE}}
    /// "))?;
    /// let labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds).build()?;
    /// assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Strict);
    /// assert_eq!(server.peer_authn_mode(9090), PeerAuthnMode::Permissive);
    ///
    /// mesh.reload_loaded(mesh_core::load::load_str(&strict.replace("STRICT", "DISABLE"), "pa.yaml"))?;
    /// assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Disable);
    /// # Ok(()) }
    /// ```
    pub fn peer_authn_mode(&self, port: u16) -> PeerAuthnMode {
        let i = &self.inner;
        peer_authn_mode(
            i.mesh
                .load()
                .peer_authentication(&i.namespace, &i.labels, port),
        )
    }

    /// Serves `service` on `listener` until the listener fails: its open connections then
    /// drain as [`serve_with_shutdown`](Self::serve_with_shutdown)'s do, and the error is
    /// returned. Dropping the future closes every connection at once (but a connection the
    /// application has upgraded, a WebSocket, which is the application's own task's).
    ///
    /// A connection without an active request for the mesh's idle timeout (one hour, or
    /// MeshConfig `defaultConfig.proxyMetadata.ISTIO_META_IDLE_TIMEOUT`:
    /// [`MeshOptions::idle_timeout`](mesh_core::names::MeshOptions::idle_timeout), read as the
    /// connection is accepted) is closed, as Envoy's connection manager closes it; a request
    /// is active until its response body has been sent.
    ///
    /// # Examples
    ///
    /// ```
    /// use axum::Extension;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::inbound::{ConnectionInfo, MeshServer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let ca = mesh_tls::MeshCa::self_signed("cluster.local")?;
    /// # let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin")?;
    /// # let creds = mesh_tls::WorkloadCredentials::new(ca.issue(&id, std::time::Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds).build()?;
    /// let app = axum::Router::new().fallback(|Extension(c): Extension<ConnectionInfo>| async move {
    ///     format!("port {}", c.port())
    /// });
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let running = server.clone();
    /// tokio::spawn(async move { running.serve(listener, app).await });
    ///
    /// // PERMISSIVE (no PeerAuthentication): a plaintext client is served
    /// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
    ///     .build_http::<Empty<Bytes>>();
    /// let resp = client.get(format!("http://{addr}/").parse()?).await?;
    /// assert_eq!(resp.status(), 200);
    /// // without `MeshServerBuilder::port`, the workload port is the listener's
    /// let body = resp.into_body().collect().await?.to_bytes();
    /// assert_eq!(body, format!("port {}", addr.port()));
    /// # Ok(()) }
    /// ```
    pub async fn serve<S, B>(&self, listener: TcpListener, service: S) -> io::Result<()>
    where
        S: Service<Request<ServerBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(listener, service, std::future::pending())
            .await
    }

    /// Serves until `signal` completes, then stops accepting and lets open connections
    /// finish (HTTP/2 GOAWAY, HTTP/1.1 closes after the current response) for up to the
    /// drain timeout; the connections still open then are closed (their requests and
    /// streams cut). A listener that fails ends the serving the same way, then returns its
    /// error. Dropping the future closes every connection at once (but a connection the
    /// application has upgraded, a WebSocket, which is the application's own task's).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::MeshServer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "foo", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let server = MeshServer::builder(Mesh::new(Default::default()), "foo", "httpbin", Default::default(), creds)
    ///     .drain_timeout(Duration::from_millis(200))
    ///     .build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let app = axum::Router::new().fallback(|| async { "ok" });
    /// let serving = tokio::spawn(async move {
    ///     server.serve_with_shutdown(listener, app, async { let _ = stopped.await; }).await
    /// });
    ///
    /// stop.send(()).unwrap(); // e.g. on SIGTERM
    /// serving.await??; // returns once drained
    /// assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
    /// # Ok(()) }
    /// ```
    pub async fn serve_with_shutdown<S, B, F>(
        &self,
        listener: TcpListener,
        service: S,
        signal: F,
    ) -> io::Result<()>
    where
        S: Service<Request<ServerBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let i = &self.inner;
        let stack = ServiceBuilder::new()
            // hyper's body, readable ahead for a CUSTOM authorizer that wants it
            .map_request(|r: Request<Incoming>| r.map(crate::observe::ReplayBody::new))
            .layer(AccessLogLayer::inbound().with_mesh_format(&i.mesh))
            // Envoy's HTTP/1 codec (426 for HTTP/1.0) and connection manager (a request's
            // `grpc-timeout` bounds its stream), logged as Envoy logs them
            .layer(hcm::HcmLayer::new(
                server_header(&i.mesh),
                i.mesh.options().accept_http_10,
            ))
            .layer(i.trace)
            .layer(i.metrics_layer.clone())
            .layer(i.authz.clone())
            // Envoy's `grpc_web` filter on a GRPC-WEB port: after RBAC, before the router
            .layer(self.grpc_web(&listener))
            .layer(self.inbound_pool(&listener))
            .service(service);
        let builder = Arc::new(crate::envoy::downstream_server());
        // Graceful shutdown by hand: hyper-util's GracefulShutdown does not take
        // connections with upgrades (WebSocket), which we serve.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // the connections' tasks: drained on shutdown, aborted past the drain timeout or
        // when this future is dropped
        let mut conns = tokio::task::JoinSet::new();
        let mut failed = None;
        tokio::pin!(signal);
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) if is_transient(&e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                () = &mut signal => break,
            };
            // As Envoy's listeners: a response's frames go out as they are written, not
            // held back by Nagle until the caller's delayed ACK (40 ms on Linux).
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().ok();
            let port = i.port.or(local.map(|a| a.port())).unwrap_or_default();
            let mode = self.peer_authn_mode(port);
            let inbound = match mode {
                PeerAuthnMode::Strict => i.strict.clone(),
                PeerAuthnMode::Permissive => i.permissive.clone(),
                PeerAuthnMode::Disable => i.disable.clone(),
            };
            let ctx = MetricsContext {
                service: i.service.clone(),
                ..MetricsContext::default()
            };
            let stack = stack.clone();
            let builder = Arc::clone(&builder);
            let mesh = i.mesh.clone();
            let mut stop = stop_rx.clone();
            let server = self.clone();
            conns.spawn(async move {
                let accepted = match inbound.accept(tcp).await {
                    Ok(a) => a,
                    Err(e) => {
                        let why = mesh_tls::VerifyError::from_io(&e)
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| e.to_string());
                        tracing::debug!(%remote, port, ?mode, error = %why, "connection refused");
                        return;
                    }
                };
                let plaintext = accepted.peer.is_none();
                // x-forwarded-client-cert as MeshConfig `proxyHeaders.forwardedClientCert`
                // says (APPEND_FORWARD by default): this connection's element, built once
                // (plaintext: none, the caller's header is removed in every mode but
                // ALWAYS_FORWARD_ONLY)
                let xfcc_mode = mesh
                    .snapshot()
                    .options()
                    .proxy_headers
                    .forwarded_client_cert;
                let idle_timeout = mesh.options().idle_timeout;
                let xfcc = match &accepted.stream {
                    mesh_tls::MeshStream::Tls(t) => {
                        let details = t
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| hcm::client_cert_details(&server.inner.xfcc_by, leaf));
                        if details.is_none() {
                            tracing::debug!(%remote, "peer certificate unreadable for x-forwarded-client-cert: removing the header");
                        }
                        details
                    }
                    mesh_tls::MeshStream::Plain(_) => None,
                };
                // connection.sni: the server name of the client's ClientHello
                let info = ConnectionInfo::new(accepted.peer, port)
                    .with_addrs(Some(remote), local)
                    .with_tls(!plaintext, accepted.stream.server_name())
                    .with_mode(mode);
                let mut mctx = info.metrics_context();
                if let Some(source) = info.peer().and_then(|p| peer_workload(&mesh, p)) {
                    mctx.peer = Some(Arc::new(source));
                }
                mctx.service = ctx.service;
                let svc = ConnectionInfoLayer::new(info)
                    .with_metrics_context(mctx)
                    .layer(hcm::ForwardClientCert::new(
                        stack, xfcc_mode, xfcc, !plaintext,
                    ));
                // Envoy's connection manager `idle_timeout`: closed after that long without
                // an active request
                let activity = crate::idle::Activity::new();
                let conn = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(accepted.stream),
                        crate::idle::Tracked::new(
                            crate::in_place::InPlace::new(svc),
                            Arc::clone(&activity),
                        ),
                    )
                    .into_owned();
                tokio::pin!(conn);
                // A plaintext connection accepted under PERMISSIVE is drained once the
                // port's mode becomes STRICT (Envoy drains the filter chain that accepted
                // it): checked on each new snapshot, once a second
                let strict_now = async {
                    if !plaintext || mode != PeerAuthnMode::Permissive {
                        return std::future::pending().await;
                    }
                    let mut seen = mesh.load().generation();
                    loop {
                        tokio::time::sleep(PLAINTEXT_RECHECK).await;
                        let g = mesh.load().generation();
                        if g != seen {
                            seen = g;
                            if server.peer_authn_mode(port) == PeerAuthnMode::Strict {
                                return;
                            }
                        }
                    }
                };
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                tokio::pin!(stopped);
                let r = tokio::select! {
                    r = conn.as_mut() => r,
                    () = &mut stopped => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                    () = strict_now => {
                        tracing::debug!(%remote, port, "STRICT now applies: draining the plaintext connection");
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                    () = activity.idle_for(idle_timeout) => {
                        tracing::debug!(%remote, port, ?idle_timeout, "idle timeout: closing the connection");
                        crate::idle::end_idle(&activity, conn, |c| c.graceful_shutdown(), stopped).await
                    }
                };
                if let Err(e) = r {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(i.drain_timeout, drained)
            .await
            .is_err()
        {
            tracing::info!("drain timeout: closing the remaining connections");
            conns.shutdown().await;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Accept errors that concern one connection, not the listener.
impl MeshServer {
    /// Serves opaque TCP (not HTTP) on `listener` until the future is dropped: each
    /// connection is accepted under the PeerAuthentication mode for its port, as
    /// [`serve`](Self::serve) accepts HTTP, then authorized by the AuthorizationPolicies'
    /// network-level rules ([`AuthorizationLayer::decide_connection`]: principals,
    /// namespaces, IP blocks, ports; a rule with HTTP-only fields never allows a TCP
    /// connection, as in Istio; a CUSTOM policy with an `envoyExtAuthzGrpc` provider asks
    /// it, one with an `envoyExtAuthzHttp` provider does not apply to TCP) and, when
    /// allowed, handed to `handler` as a
    /// [`MeshTcpStream`](crate::tcp::MeshTcpStream) counted in `istio_tcp_*`
    /// (`reporter="destination"`). A denied connection is closed before `handler` sees it
    /// (Envoy's RBAC network filter). See [`crate::tcp`] for an example.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(server: mesh_tower::inbound::MeshServer) -> std::io::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:6379").await?;
    /// server.serve_tcp(listener, |mut conn| async move {
    ///     let _ = conn.write_all(b"+PONG\r\n").await;
    /// }).await
    /// # }
    /// ```
    pub async fn serve_tcp<H, F>(&self, listener: TcpListener, handler: H) -> io::Result<()>
    where
        H: Fn(crate::tcp::MeshTcpStream) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        self.serve_tcp_with_shutdown(listener, handler, std::future::pending())
            .await
    }

    /// [`serve_tcp`](Self::serve_tcp) until `signal` completes: then no connection is
    /// accepted any more, the open ones get the drain timeout
    /// ([`MeshServerBuilder::drain_timeout`]) to finish, and those still open after it are
    /// closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(server: mesh_tower::inbound::MeshServer) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:9000").await?;
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// # drop(stop);
    /// server
    ///     .serve_tcp_with_shutdown(listener, |_conn| async {}, async { let _ = stopped.await; })
    ///     .await
    /// # }
    /// ```
    pub async fn serve_tcp_with_shutdown<H, F, G>(
        &self,
        listener: TcpListener,
        handler: H,
        signal: G,
    ) -> io::Result<()>
    where
        H: Fn(crate::tcp::MeshTcpStream) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
        G: Future<Output = ()>,
    {
        let handler = Arc::new(handler);
        let mut conns = tokio::task::JoinSet::new();
        // `tcp.maxConnections` of the inbound connection pool: one per proxied connection
        let pool = Arc::new(self.inbound_pool(&listener));
        tokio::pin!(signal);
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) if is_transient(&e) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                () = &mut signal => break,
            };
            let _ = tcp.set_nodelay(true);
            let this = self.clone();
            let handler = Arc::clone(&handler);
            let pool = Arc::clone(&pool);
            conns.spawn(async move {
                if let Some((stream, _slot)) = this.accept_tcp(tcp, remote, &pool).await {
                    handler(stream).await;
                }
            });
        }
        drop(listener);
        let drained = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(self.inner.drain_timeout, drained)
            .await
            .is_err()
        {
            tracing::info!("drain timeout: closing the remaining TCP connections");
            conns.shutdown().await;
        }
        Ok(())
    }

    /// The workload port `listener` serves (the builder's [`MeshServerBuilder::port`], else
    /// the listener's own), for the per-port layers.
    fn served_port(&self, listener: &TcpListener) -> Arc<ServedPort> {
        let i = &self.inner;
        Arc::new(ServedPort {
            mesh: i.mesh.clone(),
            namespace: i.namespace.clone(),
            labels: i.labels.clone(),
            service_host: i.service.as_deref().map(|s| s.host.clone()),
            port: i
                .port
                .or(listener.local_addr().ok().map(|a| a.port()))
                .unwrap_or_default(),
        })
    }

    /// The inbound connection pool of the port `listener` serves.
    fn inbound_pool(&self, listener: &TcpListener) -> pool::InboundPoolLayer {
        pool::InboundPoolLayer::new(self.served_port(listener))
    }

    /// The gRPC-Web translation of the port `listener` serves (on only if it is `GRPC-WEB`).
    fn grpc_web(&self, listener: &TcpListener) -> grpc_web::GrpcWebLayer {
        grpc_web::GrpcWebLayer::new(self.served_port(listener))
    }

    /// Accepts one TCP connection: the PeerAuthentication mode, the handshake, the
    /// network-level authorization and the metrics. `None`: refused or denied (closed).
    async fn accept_tcp(
        &self,
        tcp: tokio::net::TcpStream,
        remote: std::net::SocketAddr,
        pool: &pool::InboundPoolLayer,
    ) -> Option<(
        crate::tcp::MeshTcpStream,
        Option<tokio::sync::OwnedSemaphorePermit>,
    )> {
        let i = &self.inner;
        let local = tcp.local_addr().ok();
        let port = i.port.or(local.map(|a| a.port())).unwrap_or_default();
        let mode = self.peer_authn_mode(port);
        let inbound = match mode {
            PeerAuthnMode::Strict => &i.strict,
            PeerAuthnMode::Permissive => &i.permissive,
            PeerAuthnMode::Disable => &i.disable,
        };
        // PERMISSIVE on a TCP port: TLS that is not the mesh's is passed through (sniffed
        // once: plaintext is taken as it is)
        let sniffed = match mode {
            PeerAuthnMode::Permissive if inbound.tls_acceptor().is_some() => {
                Some(self.sniff_permissive(&tcp).await)
            }
            _ => None,
        };
        let own_tls = match &sniffed {
            Some(Sniffed::OwnTls(sni)) => Some(sni.clone()),
            _ => None,
        };
        let accepted = match sniffed {
            Some(Sniffed::Plaintext | Sniffed::OwnTls(_)) => Ok(mesh_tls::Accepted {
                stream: mesh_tls::MeshStream::Plain(tcp),
                peer: None,
            }),
            Some(Sniffed::Mesh) | None => inbound.accept(tcp).await,
        };
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                let why = mesh_tls::VerifyError::from_io(&e)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| e.to_string());
                tracing::debug!(%remote, port, ?mode, error = %why, "TCP connection refused");
                return None;
            }
        };
        let mutual_tls = accepted.peer.is_some();
        let info = ConnectionInfo::new(accepted.peer, port)
            .with_addrs(Some(remote), local)
            // connection.sni: the server name of the client's ClientHello
            .with_tls(
                mutual_tls || own_tls.is_some(),
                own_tls
                    .as_ref()
                    .map_or(accepted.stream.server_name(), |sni| sni.as_deref()),
            )
            .with_mode(mode);
        let config = i.metrics_layer.config();
        let peer = match info.peer() {
            Some(p) => Arc::new(
                peer_workload(&i.mesh, p)
                    .unwrap_or_else(|| WorkloadInfo::from_principal(p.identity().as_uri())),
            ),
            None => Arc::clone(&config.unknown),
        };
        let service = i
            .service
            .clone()
            .unwrap_or_else(|| Arc::clone(&config.default_service));
        let labels = |flags| {
            crate::metrics::RequestLabels::tcp(
                crate::metrics::Reporter::Destination,
                Arc::clone(&config.local),
                Arc::clone(&peer),
                Arc::clone(&service),
                flags,
                mutual_tls,
            )
        };
        // counted (and logged) whatever the decision, as Envoy's stats filter counts the
        // connection before the RBAC filter or the TCP proxy closes it
        let mut log = crate::accesslog::TcpLog::start(
            crate::accesslog::Direction::Inbound,
            i.log_format.as_ref(),
            info.addrs(),
            info.sni(),
        );
        let refuse = |flags, log: Option<Box<crate::accesslog::TcpLog>>| {
            drop(config.metrics.tcp_connection(&labels(flags)));
            if let Some(log) = log {
                log.finish(0, 0);
            }
            None
        };
        if !i.authz.authorize_connection(&info).await.allowed {
            return refuse(crate::envoy::ResponseFlags::NONE, log);
        }
        // past RBAC, Envoy's TCP proxy has its cluster `inbound|<port>||`, whose host is
        // the application
        if let Some(l) = log.as_mut() {
            l.upstream = Some(crate::accesslog::UpstreamInfo {
                host: local,
                cluster: Some(format!("inbound|{port}||").into()),
                ..Default::default()
            });
        }
        // past the inbound pool's maxConnections Envoy's TCP proxy closes it (flag UO)
        let Ok(slot) = pool.admit_connection() else {
            if let Some(u) = log.as_mut().and_then(|l| l.upstream.as_mut()) {
                u.host = None;
            }
            tracing::debug!(%remote, "inbound connection pool overflow: maxConnections reached; closing");
            return refuse(crate::envoy::ResponseFlags::UPSTREAM_OVERFLOW, log);
        };
        let series = config
            .metrics
            .tcp_connection(&labels(crate::envoy::ResponseFlags::NONE));
        let peer = info.peer().cloned();
        let socket = socket2::SockRef::from(accepted.stream.tcp())
            .try_clone()
            .ok();
        let stream = crate::tcp::MeshTcpStream::new(
            accepted.stream,
            crate::tcp::Side::Inbound,
            Some(series),
        )
        .with_peer(peer)
        .with_info(info)
        .with_log(log)
        // the inbound TCP proxy's idle timeout: istiod's from the proxy's
        // `ISTIO_META_IDLE_TIMEOUT` (Envoy's 1 h when unset; `0s`: none)
        .with_timeouts(
            Some(i.mesh.options().idle_timeout).filter(|d| !d.is_zero()),
            None,
            socket,
        );
        Some((stream, slot))
    }
}

/// What a PERMISSIVE TCP port's first bytes say.
enum Sniffed {
    /// Plaintext (or nothing within `protocolDetectionTimeout`).
    Plaintext,
    /// A ClientHello offering none of Istio's mTLS ALPNs, with its SNI: the client's own
    /// TLS to the application.
    OwnTls(Option<String>),
    /// A ClientHello offering one (or one that could not be read): mesh mTLS.
    Mesh,
}

impl MeshServer {
    /// Under PERMISSIVE, what a TCP connection opens with: plaintext; a ClientHello
    /// offering none of Istio's mTLS ALPNs, the client's own TLS to the application (a
    /// client outside the mesh speaking HTTPS or a database's TLS to it), which istiod's
    /// "plain TLS" filter chain hands to the TCP proxy untouched; or mesh mTLS, which
    /// [`InboundTls::accept`] then takes as before.
    async fn sniff_permissive(&self, tcp: &tokio::net::TcpStream) -> Sniffed {
        let i = &self.inner;
        let sniff = mesh_tls::sniff_tls(tcp);
        let is_tls = match i.detection_timeout {
            Some(t) => tokio::time::timeout(t, sniff).await.unwrap_or(Ok(false)),
            None => sniff.await,
        };
        match is_tls {
            Ok(false) => return Sniffed::Plaintext,
            Ok(true) => {}
            // (the accept reports the error)
            Err(_) => return Sniffed::Mesh,
        }
        let wait = i.handshake_timeout.unwrap_or(Duration::from_secs(10));
        match crate::gateway::peek_client_hello(tcp, wait).await {
            Ok(crate::gateway::Peeked::Tls(hello))
                if !crate::gateway::offers_istio_mtls_alpn(&hello.alpn) =>
            {
                Sniffed::OwnTls(hello.sni)
            }
            _ => Sniffed::Mesh,
        }
    }
}

pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_unset_to_permissive() {
        let cases = [
            (MtlsMode::Strict, PeerAuthnMode::Strict),
            (MtlsMode::Permissive, PeerAuthnMode::Permissive),
            (MtlsMode::Disable, PeerAuthnMode::Disable),
            (MtlsMode::Unset, PeerAuthnMode::Permissive),
        ];
        for (m, want) in cases {
            assert_eq!(peer_authn_mode(m), want);
        }
    }

    #[test]
    fn transient_accept_errors() {
        assert!(is_transient(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(is_transient(&io::Error::from_raw_os_error(24)));
        assert!(!is_transient(&io::Error::from(io::ErrorKind::InvalidInput)));
    }
}
