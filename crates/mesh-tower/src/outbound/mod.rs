//! The outbound (client) side of the mesh: a client, and a layer around your own client,
//! that turn a plain request to `http://reviews:9080/...` into mesh traffic.
//!
//! For every request, with one snapshot of the mesh loaded for its whole life:
//! 1. **name**: the authority is resolved as the client's namespace would (`reviews` ⇒
//!    `reviews.<ns>.svc.cluster.local`, an FQDN as is); the port comes from the URL, else
//!    the service's only port;
//! 2. **route**: the VirtualService decision ([`mesh_core::route::RouteDecision`]): a local
//!    answer (404 no route, redirect, direct response), or weighted destinations with
//!    actions (fault, rewrite, header operations, mirrors, timeout, retries);
//! 3. **pick**: a destination by weight, its subset's endpoints through the DestinationRule
//!    and the registry, an endpoint by the load-balancing policy ([`crate::lb`]), skipping
//!    ejected ones;
//! 4. **send** over the endpoint's pooled connections (keep-alive HTTP/1.1, or one
//!    multiplexed HTTP/2 connection; see [Connection pool](#connection-pool)), originating
//!    mTLS with the workload's certificate when the destination is in the mesh (auto mTLS,
//!    ISTIO_MUTUAL), or per the DestinationRule's `tls`; the server's SPIFFE identity is
//!    verified inside the handshake ([`MeshConnector`]);
//! 5. **record** the outcome for outlier detection ([`crate::outlier`]) and the balancer
//!    (in-flight counts held until the response body ends), retry per the route's policy
//!    (Istio's default when unset), and answer failures as Envoy does ([`crate::envoy`]):
//!    503 `no healthy upstream`, 504 `upstream request timeout`, 503 `upstream connect error
//!    or disconnect/reset before headers. ...`, 503 UO on circuit-breaker overflow.
//!
//! [`MeshClient`] is the ready client (mesh transport, Istio metrics with
//! `reporter="source"`, trace propagation); [`OutboundLayer`] wraps your own
//! `tower::Service` (e.g. hyper-util's legacy `Client`) and sends through it, addressing the
//! endpoint picked (`http://<ip>:<port>`, `Host` kept). With the `reqwest` feature,
//! `outbound::reqwest::MeshMiddleware` plugs the client
//! into `reqwest-middleware`.
//!
//! # `https://` requests
//!
//! An `https://` request is the application's own TLS: the client originates it to the
//! request's host (SNI and certificate name from the host, the platform's roots), as the
//! application would through a sidecar. On a service port declared `TLS` or `HTTPS` (or
//! for a host the registry does not know, on a port a service its VirtualService covers
//! declares so), the VirtualService's `tls` routes decide where it goes, as a sidecar
//! routes the application's ClientHello (SNI, port, `sourceLabels`, `destinationSubnets`):
//! to their
//! destination, with no retries, timeouts or header operations (istio.io's TLS egress and
//! egress gateway tasks). Otherwise, unlike a sidecar, which cannot see inside the
//! application's TLS, the client routes it by `http` routes. A `tls` route to a destination
//! whose DestinationRule sets TLS is refused (503 NC): the application's TLS cannot be
//! tunneled inside the DestinationRule's.
//!
//! # Ports declared TCP
//!
//! A request to a port its service declares `TCP` (`MONGO`, `MYSQL`, `REDIS`) is what a
//! sidecar proxies as a connection: the service's VirtualService `tcp` routes decide where
//! it goes (else the service itself), its `http` routes never apply, and nothing of Envoy's
//! router or connection manager is written (no retries, deadline, `x-envoy-*` headers or
//! `server`).
//!
//! # Connection pool
//!
//! Each endpoint has its own pool of hyper `client::conn` connections: a stack of idle
//! HTTP/1.1 connections (the most recently used first) and the shared HTTP/2 connections
//! when the server chose `h2` (one, and another each time the others' streams are all
//! taken). DestinationRule `connectionPool` applies as Envoy applies it:
//! `tcp.maxConnections` bounds the destination's connections, and a request that finds
//! none free waits as one of at most `http.http1MaxPendingRequests` pending requests
//! (beyond: 503 with `x-envoy-overloaded`, flag UO); `http.http2MaxRequests` bounds active
//! requests and `http.maxRetries` concurrent retries (same reply);
//! `http.maxRequestsPerConnection` retires a connection after that many requests;
//! `http.idleTimeout` (or `tcp.idleTimeout`, 1 h by default) closes idle connections
//! (HTTP/2 ones once no stream has been open for that long). A
//! pooled connection the server closed in the meantime is discarded and the request, not
//! yet written, goes out on another.
//!
//! # Retries and bodies
//!
//! A request body whose exact size (`size_hint`) is at most
//! [`ClientOptions::retry_buffer_limit`] (1 MiB, Envoy's default buffer limit) is buffered
//! whole before the first attempt. One of unknown length (a gRPC call's, a chunked upload)
//! is sent as it arrives and kept as it is sent, as Envoy's router keeps it: a retry sends
//! it again from the start, until more than the limit has been read, which turns retries
//! off for the request. One known to be longer than the limit is sent once, never
//! retried. Mirrors get either: a
//! streamed body is copied to them as the route's upstream reads it (Envoy's streaming
//! shadows), and a mirror that falls more than the limit behind, or whose request body is
//! cut short, is reset without touching the request.
//!
//! # Timeouts and Envoy's headers
//!
//! The route's `timeout` (none when unset, as Istio's) bounds the whole request, retries
//! and the response body included; `perTryTimeout` each attempt, from the moment a
//! connection takes it. As Envoy's router on the route istiod writes
//! ([`crate::envoy::Timeouts`]), a gRPC request's own `grpc-timeout` is its deadline,
//! capped at the route's `timeout`. The application's own Envoy control headers
//! (`x-envoy-retry-on`, `x-envoy-max-retries`, `x-envoy-upstream-rq-timeout-ms`, ...) are
//! removed unread, as a sidecar's outbound listener takes every application request for
//! external. Every attempt then carries what Envoy writes upstream:
//! `x-envoy-attempt-count` (1, 2, ...), and with a timeout `x-envoy-expected-rq-timeout-ms`
//! and, for gRPC, a `grpc-timeout` with the time left (all before the route's header
//! operations, which may change them); `x-envoy-original-path` when the route rewrote the
//! path. An answer from upstream to a request received whole before it was answered
//! carries `x-envoy-upstream-service-time` (before the route's response header operations,
//! which may remove it). MeshConfig
//! `defaultConfig.proxyHeaders` (`attemptCount`, `envoyDebugHeaders`) turns them off
//! ([`mesh_core::meshconfig::ProxyHeaders`]).
//!
//! # HTTP/1.1 upgrades (WebSocket)
//!
//! As Istio configures Envoy by default (`upgrade_configs: websocket` since the
//! VirtualService `websocketUpgrade` field was removed), a WebSocket upgrade request
//! (`Connection: upgrade`, `Upgrade: websocket`) is routed, authorized by the server and
//! retried like any other request, with its `connection` and `upgrade` headers kept. It goes
//! out over HTTP/1.1 (an idle pooled connection, or a new one offering only `http/1.1` by
//! ALPN, even where plain requests share an HTTP/2 connection) and is never mirrored. When
//! the server answers `101 Switching Protocols`, take the stream with
//! `hyper::upgrade::on(&mut response)`: it runs over the connection (mTLS included) that
//! the 101 came on, which is never pooled again. The route `timeout` and `perTryTimeout`
//! cover the wait for the response headers; the upgraded stream then lives until either
//! side closes it. Any other answer is a normal response. As with Envoy, an `h2c` upgrade
//! offer is dropped (the request goes on as plain HTTP/1.1) and any other upgrade protocol
//! is refused with 403 (Envoy's `upgrade_failed`).
//!
//! ```
//! use http_body_util::Empty;
//! use hyper_util::rt::TokioIo;
//! use mesh_core::mesh::Mesh;
//! use mesh_core::registry::Workload;
//! use mesh_tower::outbound::{ClientWorkload, MeshClient};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn chat_server() -> std::net::SocketAddr {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap();
//! #     tokio::spawn(async move {
//! #         let (tcp, _) = listener.accept().await.unwrap();
//! #         let svc = hyper::service::service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
//! #             let on = hyper::upgrade::on(&mut req);
//! #             tokio::spawn(async move {
//! #                 let mut io = TokioIo::new(on.await.unwrap());
//! #                 let mut buf = [0u8; 5];
//! #                 io.read_exact(&mut buf).await.unwrap();
//! #                 io.write_all(&buf).await.unwrap();
//! #             });
//! #             http::Response::builder()
//! #                 .status(101)
//! #                 .header("connection", "upgrade")
//! #                 .header("upgrade", "websocket")
//! #                 .body(Empty::<bytes::Bytes>::new())
//! #         });
//! #         let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
//! #         let _ = conn.with_upgrades().await;
//! #     });
//! #     addr
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mesh = Mesh::from_yaml("
//! apiVersion: v1
//! kind: Service
//! metadata: {name: chat, namespace: default}
//! spec:
//!   selector: {app: chat}
//!   ports: [{name: http, port: 8080}]
//! ")?;
//! let addr = chat_server().await; // answers 101, then echoes 5 bytes
//! mesh.register(Workload {
//!     name: "chat-v1".to_string(),
//!     namespace: "default".to_string(),
//!     service_account: "chat".to_string(),
//!     labels: [("app".to_string(), "chat".to_string())].into(),
//!     address: addr.ip(),
//!     ports: [("http".to_string(), addr.port())].into(),
//!     locality: None,
//!     weight: 0,
//! });
//! let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
//! let req = http::Request::get("http://chat:8080/socket")
//!     .header("connection", "upgrade")
//!     .header("upgrade", "websocket")
//!     .header("sec-websocket-version", "13")
//!     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
//!     .body(Empty::<bytes::Bytes>::new())?;
//! let mut resp = client.request(req).await?;
//! assert_eq!(resp.status(), 101);
//! let mut stream = TokioIo::new(hyper::upgrade::on(&mut resp).await?);
//! stream.write_all(b"hello").await?;
//! let mut echo = [0u8; 5];
//! stream.read_exact(&mut echo).await?;
//! assert_eq!(&echo, b"hello");
//! # Ok(()) }
//! ```
//!
//! # Where this differs from Istio / Envoy, on purpose
//!
//! - An upgraded stream has no idle timeout, and the endpoint's in-flight count (least
//!   request balancing) and the `http2MaxRequests` permit are released at the 101, not
//!   when the stream closes.
//! - `maxConnections` and `http1MaxPendingRequests` are per destination (Envoy's cluster),
//!   but a pending request waits for a connection to its own endpoint (the one the load
//!   balancer picked), not to any endpoint of the destination.
//! - Fault injection does not disable the route's retries and timeout.
//! - In header operations, `%UPSTREAM_REMOTE_ADDRESS%` and `%DOWNSTREAM_PEER_URI_SAN%`
//!   expand to nothing (the header is not written); a mesh client's downstream address
//!   is its own workload's address (`ClientWorkload::address`), port 0.
//! - `outlierDetectionHttpErrorCodes` and `PASSTHROUGH` load balancing are not applied
//!   (`PASSTHROUGH` balances as LEAST_REQUEST). `warmup` slow start scales a new
//!   endpoint's weight by thinning its picks, which gives Envoy's shares over time.
//! - A destination host missing from the registry is 503 NC (cluster not found) when a
//!   VirtualService routes to it. Without a route, traffic Envoy has no cluster for (a
//!   host outside the registry, a port the service does not declare, a service the
//!   client's Sidecar does not import) follows the client's `outboundTrafficPolicy`
//!   (its Sidecar's, else MeshConfig's; `ALLOW_ANY` by default): passed through to the
//!   request's own host and port (Envoy's original destination; the name is resolved when
//!   connecting, plaintext unless the URI is `https`, no DestinationRule, no retries,
//!   metrics naming `PassthroughCluster`), or 502 under `REGISTRY_ONLY`. Under
//!   `ALLOW_ANY`, a Sidecar's `egressProxy` takes that traffic instead: the proxy
//!   service's destination (its DestinationRule, mTLS), the request's Host kept, no
//!   retries; 503 NC when the registry has no such proxy.
//!
//! # Examples
//!
//! Istio's request-routing task: requests from user `jason` go to `reviews` v2, all others
//! to v1. Two plain HTTP servers on loopback stand for the two versions (a client without
//! [credentials](MeshClientBuilder::credentials) talks plaintext to them; with credentials
//! it originates mTLS, see the [crate docs](crate)):
//!
//! ```
//! use http_body_util::{BodyExt, Empty};
//! use mesh_core::mesh::Mesh;
//! use mesh_core::registry::Workload;
//! use mesh_tower::outbound::{ClientWorkload, MeshClient};
//!
//! # async fn reviews(version: &'static str) -> std::net::SocketAddr {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap();
//! #     let app = axum::Router::new().fallback(move || async move { version });
//! #     tokio::spawn(async move { axum::serve(listener, app).await });
//! #     addr
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mesh = Mesh::from_yaml("
//! apiVersion: v1
//! kind: Service
//! metadata: {name: reviews, namespace: default}
//! spec:
//!   selector: {app: reviews}
//!   ports: [{name: http, port: 9080}]
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews, namespace: default}
//! spec:
//!   host: reviews
//!   subsets:
//!   - {name: v1, labels: {version: v1}}
//!   - {name: v2, labels: {version: v2}}
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews, namespace: default}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - match: [{headers: {end-user: {exact: jason}}}]
//!     route: [{destination: {host: reviews, subset: v2}}]
//!   - route: [{destination: {host: reviews, subset: v1}}]
//! ")?;
//! for version in ["v1", "v2"] {
//!     let addr = reviews(version).await; // a server answering its version
//!     mesh.register(Workload {
//!         name: format!("reviews-{version}"),
//!         namespace: "default".to_string(),
//!         service_account: "bookinfo-reviews".to_string(),
//!         labels: [("app", "reviews"), ("version", version)]
//!             .map(|(k, v)| (k.to_string(), v.to_string()))
//!             .into(),
//!         address: addr.ip(),
//!         ports: [("http".to_string(), addr.port())].into(),
//!         locality: None,
//!         weight: 0,
//!     });
//! }
//!
//! let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
//! let client = MeshClient::builder(mesh, me).build();
//! let get = |user: &str| {
//!     http::Request::get("http://reviews:9080/reviews/0")
//!         .header("end-user", user)
//!         .body(Empty::<bytes::Bytes>::new())
//!         .unwrap()
//! };
//! let resp = client.request(get("jason")).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.into_body().collect().await?.to_bytes(), "v2");
//! let resp = client.request(get("alice")).await?;
//! assert_eq!(resp.into_body().collect().await?.to_bytes(), "v1");
//! # Ok(()) }
//! ```

mod connector;
mod cors;
mod deadline;
mod dest;
mod h2_settings;
mod mirror;
mod replay;
mod retry;
mod tcp;
mod upstream;

#[cfg(feature = "reqwest")]
pub mod reqwest;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, LOCATION, SERVER, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use mesh_core::mesh::Mesh;
use mesh_core::model::{Labels, OutboundMode};
use mesh_core::route::{
    AbortStatus, HeaderContext, HeaderOps, HttpRequestAttrs, RetryPolicy, RouteOutcome,
};
use mesh_tls::{CredentialLookup, WorkloadCredentials};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};
use xxhash_rust::xxh64::xxh64;

pub use connector::{ConnectError, MeshConn, MeshConnector};
pub use deadline::BodyTimeout;
pub(crate) use tcp::Routed;
pub use upstream::UpstreamBody;

use crate::accesslog::UpstreamInfo;
use crate::envoy::{
    is_grpc, LocalReply, ResetReason, ResponseCodeDetails, ResponseFlags, DIRECT_RESPONSE,
    UPGRADE_FAILED,
};
use crate::gateway::X_FORWARDED_PROTO;
use crate::lb::{ConnectionAddrs, RequestGuard};
use crate::metrics::{
    IstioMetrics, MetricsBody, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo,
};
use crate::outlier::Outcome;
use crate::pool::Permit;
use crate::trace::{PropagateTrace, PropagateTraceLayer, TraceConfig};
use dest::{DestCache, DestKey, DestState};
use retry::{AttemptFailure, RetryOn};

/// Errors that cross the stack: boxed.
///
/// # Examples
///
/// ```
/// use mesh_tower::outbound::{BoxError, OutboundError};
///
/// let cause: BoxError = "connection reset while reading the body".into();
/// let err = OutboundError::Body(cause);
/// assert_eq!(err.to_string(), "request body: connection reset while reading the body");
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The body type inside the outbound stack (requests and responses).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::outbound::MeshBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let body: MeshBody = Full::new(Bytes::from("{\"id\": 0}"))
///     .map_err(|never: Infallible| match never {})
///     .boxed();
/// assert_eq!(body.collect().await?.to_bytes(), "{\"id\": 0}");
/// # Ok(()) }
/// ```
pub type MeshBody = BoxBody<Bytes, BoxError>;

/// The response body of a [`MeshClient`]: the request is counted in the client's Istio
/// metrics when this body has been read to the end (or dropped).
///
/// # Examples
///
/// A VirtualService `directResponse` is answered by the client itself:
///
/// ```
/// use http_body_util::{BodyExt, Empty};
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{ClientBody, ClientWorkload, MeshClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: shop, namespace: default}
/// spec:
///   hosts: [shop]
///   http:
///   - directResponse: {status: 503, body: {string: down for maintenance}}
/// ")?;
/// let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
/// let req = http::Request::get("http://shop/").body(Empty::<bytes::Bytes>::new())?;
/// let resp: http::Response<ClientBody> = client.request(req).await?;
/// assert_eq!(resp.status(), 503);
/// assert_eq!(client.metrics().series_count(), 0, "recorded when the body ends");
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "down for maintenance");
/// assert_eq!(client.metrics().series_count(), 1);
/// # Ok(()) }
/// ```
pub type ClientBody = MetricsBody<MeshBody>;

/// The client workload: who is calling (its namespace decides name resolution and which
/// VirtualServices and DestinationRules apply; its labels match `sourceLabels` and
/// workload selectors).
///
/// # Examples
///
/// The client's labels are what a VirtualService's `sourceLabels` match:
///
/// ```
/// use http_body_util::Empty;
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings, namespace: default}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings, namespace: default}
/// spec:
///   hosts: [ratings]
///   http:
///   - match: [{sourceLabels: {app: reviews, version: v2}}]
///     directResponse: {status: 418}
///   - directResponse: {status: 200}
/// ")?;
/// let v2 = ClientWorkload::new("reviews-v2", "default", "bookinfo-reviews")
///     .with_label("app", "reviews")
///     .with_label("version", "v2")
///     .with_locality("us-east1/us-east1-b");
/// assert_eq!(v2.labels["version"], "v2");
/// assert_eq!(v2.locality.as_deref(), Some("us-east1/us-east1-b"));
/// let v1 = ClientWorkload::new("reviews-v1", "default", "bookinfo-reviews")
///     .with_label("app", "reviews")
///     .with_label("version", "v1");
///
/// let status = |me: ClientWorkload| {
///     let client = MeshClient::builder(mesh.clone(), me).build();
///     async move {
///         let req = http::Request::get("http://ratings:9080/ratings/0")
///             .body(Empty::<bytes::Bytes>::new())
///             .unwrap();
///         client.request(req).await.unwrap().status()
///     }
/// };
/// assert_eq!(status(v2).await, 418);
/// assert_eq!(status(v1).await, 200);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientWorkload {
    /// Workload name (`productpage-v1`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Pod-style labels (`app`, `version`).
    pub labels: Labels,
    /// `region/zone/subzone` (locality load balancing).
    pub locality: Option<String>,
    /// The workload's own IP (consistent hashing by `useSourceIp`; unset, the client hashes
    /// a stand-in stable for this workload in this process, as a pod's IP is).
    pub address: Option<IpAddr>,
    /// The cluster id (Istio's `CLUSTER_ID`) the metrics report as `source_cluster`; unset,
    /// [`DEFAULT_CLUSTER_ID`](crate::metrics::DEFAULT_CLUSTER_ID) (`Kubernetes`).
    pub cluster_id: Option<String>,
}

impl ClientWorkload {
    /// A workload with no labels.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::outbound::ClientWorkload;
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// assert_eq!(me.name, "productpage-v1");
    /// assert_eq!(me.namespace, "default");
    /// assert_eq!(me.service_account, "bookinfo-productpage");
    /// assert!(me.labels.is_empty());
    /// assert_eq!(me.locality, None);
    /// ```
    pub fn new(name: &str, namespace: &str, service_account: &str) -> Self {
        ClientWorkload {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            ..Default::default()
        }
    }

    /// Sets a label (VirtualService `sourceLabels` and Sidecar `workloadSelector`s match
    /// the client by its labels; the metrics name it by `app` and `version`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::outbound::ClientWorkload;
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage")
    ///     .with_label("app", "productpage")
    ///     .with_label("version", "v1")
    ///     .with_label("version", "v2"); // a later value replaces an earlier one
    /// assert_eq!(me.labels.len(), 2);
    /// assert_eq!(me.labels["app"], "productpage");
    /// assert_eq!(me.labels["version"], "v2");
    /// ```
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the locality, `region/zone/subzone` (locality load balancing prefers endpoints
    /// of the same locality).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::outbound::ClientWorkload;
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage")
    ///     .with_locality("us-west1/us-west1-a");
    /// assert_eq!(me.locality.as_deref(), Some("us-west1/us-west1-a"));
    /// ```
    pub fn with_locality(mut self, locality: &str) -> Self {
        self.locality = Some(locality.to_owned());
        self
    }

    /// Sets the cluster id (Istio's `CLUSTER_ID`) the client's metrics report as
    /// `source_cluster` (default `Kubernetes`; endpoints of this mesh are reported in the
    /// same cluster).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::outbound::ClientWorkload;
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage")
    ///     .with_cluster_id("east");
    /// assert_eq!(me.cluster_id.as_deref(), Some("east"));
    /// ```
    pub fn with_cluster_id(mut self, cluster: &str) -> Self {
        self.cluster_id = Some(cluster.to_owned());
        self
    }
}

/// Client settings that are not Istio configuration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{ClientOptions, ClientWorkload, MeshClient};
///
/// let defaults = ClientOptions::default();
/// assert_eq!(defaults.connect_timeout, Duration::from_secs(10));
/// assert_eq!(defaults.retry_buffer_limit, 1 << 20);
///
/// // Buffer (and so retry) request bodies of up to 64 KiB only.
/// let options = ClientOptions {
///     retry_buffer_limit: 64 << 10,
///     ..ClientOptions::default()
/// };
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let client = MeshClient::builder(Mesh::new(Default::default()), me)
///     .options(options)
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Connect timeout when the DestinationRule sets none (Istio: 10 s).
    pub connect_timeout: Duration,
    /// Largest request body buffered for retries and mirrors (1 MiB, Envoy's buffer
    /// limit); also how far behind the route's upstream a mirror of a streamed body may
    /// fall before it is reset (0: streamed bodies are not mirrored).
    pub retry_buffer_limit: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: dest::DEFAULT_CONNECT_TIMEOUT,
            retry_buffer_limit: 1 << 20,
        }
    }
}

/// What the request path shares.
pub(crate) struct ClientShared {
    pub(crate) mesh: Mesh,
    pub(crate) workload: ClientWorkload,
    pub(crate) credentials: Option<Arc<WorkloadCredentials>>,
    pub(crate) credential_lookup: Option<Arc<dyn CredentialLookup>>,
    pub(crate) options: ClientOptions,
    cache: DestCache,
    source: Option<SocketAddr>,
    /// What `consistentHash.useSourceIp` hashes for this client's own requests (Envoy: the
    /// downstream IP, stable per pod): the workload's address if set, else an address
    /// standing for this workload in this process (see [`workload_hash_source`]).
    hash_source: SocketAddr,
    /// Write the access log ([`MeshClientBuilder::access_log`]).
    access_log: bool,
    /// The MeshConfig's access-log format, if it sets one.
    log_format: Option<Arc<crate::accesslog::LogFormat>>,
    /// The `server` header of every response returned to the application, as a sidecar's
    /// outbound listener writes it (MeshConfig `proxyHeaders.server`: Envoy's default
    /// `envoy`), read when the client is built; `None`: the upstream's passes.
    server_header: Option<HeaderValue>,
    /// A gateway's client: istiod gives its clusters of undeclared ports no
    /// `use_downstream_protocol` (sidecars only, `setUpstreamProtocol`).
    pub(crate) gateway: bool,
}

impl ClientShared {
    /// Whether this request is access-logged: the client's access log is on and a
    /// subscriber listens to its target.
    fn logs_access(&self) -> bool {
        self.access_log && tracing::enabled!(target: crate::accesslog::TARGET, tracing::Level::INFO)
    }
}

/// A stable stand-in for a workload's IP when none is configured, for source-IP hashing:
/// a unique-local IPv6 address (`fd00::/8`) derived from the workload's namespace and name
/// and a random number drawn once per process. Like a pod IP it is the same for every
/// request and client of the workload in this process, and differs between replicas
/// (processes) of the same workload. Never dialed, never shown: header operators and the
/// access log still see the configured address or none.
fn workload_hash_source(workload: &ClientWorkload) -> SocketAddr {
    static PROCESS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(rand::random);
    let ns = xxh64(workload.namespace.as_bytes(), *PROCESS);
    let name = xxh64(workload.name.as_bytes(), ns);
    let bits = (0xfdu128 << 120) | (u128::from(ns) << 64 | u128::from(name)) >> 8;
    SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::from(bits)), 0)
}

impl std::fmt::Debug for ClientShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShared")
            .field("workload", &self.workload)
            .field("destinations", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The request could not be handled at all (everything else is an Envoy-style response).
///
/// # Examples
///
/// A relative URI without a `Host` header names no service:
///
/// ```
/// use http_body_util::Empty;
/// use mesh_core::mesh::Mesh;
/// use mesh_core::model::OutboundMode;
/// use mesh_core::names::MeshOptions;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient, OutboundError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let registry_only = MeshOptions {
///     outbound_traffic_policy: OutboundMode::RegistryOnly,
///     ..MeshOptions::default()
/// };
/// let client = MeshClient::builder(Mesh::new(registry_only), me).build();
/// let req = http::Request::get("/reviews/0").body(Empty::<bytes::Bytes>::new())?;
/// let err = client.request(req).await.unwrap_err();
/// assert!(matches!(err, OutboundError::NoAuthority));
///
/// // With a Host header the same request is routed (here: to a host the mesh does not
/// // know, which a REGISTRY_ONLY client refuses with 502 rather than an error).
/// let req = http::Request::get("/reviews/0")
///     .header("host", "reviews:9080")
///     .body(Empty::<bytes::Bytes>::new())?;
/// assert_eq!(client.request(req).await?.status(), 502);
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The request has no authority (neither in the URI nor a `Host` header).
    #[error(
        "request has no authority: set an absolute URI (http://reviews:9080/...) or a Host header"
    )]
    NoAuthority,
    /// The request body failed while it was being buffered.
    #[error("request body: {0}")]
    Body(BoxError),
}

/// Why an upstream attempt failed, in the response extensions of a 503 from the mesh
/// (the text is also in the body, after `transport failure reason:`).
///
/// # Examples
///
/// The only endpoint of `reviews` refuses connections (nothing listens on its port):
///
/// ```
/// use http_body_util::{BodyExt, Empty};
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient, UpstreamFailure};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?; // closed again
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: dead.ip(),
///     ports: [("http".to_string(), dead.port())].into(),
///     locality: None,
///     weight: 0,
/// });
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let client = MeshClient::builder(mesh, me).build();
/// let req = http::Request::get("http://reviews:9080/").body(Empty::<bytes::Bytes>::new())?;
/// let resp = client.request(req).await?; // after Istio's default retries on connect-failure
/// assert_eq!(resp.status(), 503);
/// let failure = resp.extensions().get::<UpstreamFailure>().cloned().unwrap();
/// assert_eq!(failure.endpoint, dead);
/// let body = String::from_utf8(resp.into_body().collect().await?.to_bytes().to_vec())?;
/// assert!(body.starts_with("upstream connect error or disconnect/reset before headers."), "{body}");
/// assert!(body.contains(&failure.message), "{body}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// The endpoint tried last.
    pub endpoint: SocketAddr,
    /// What went wrong (e.g. the expected and presented SPIFFE identities).
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// Transport: how one attempt is sent.

type SendFuture<B> = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

/// Sends one attempt to one endpoint of a destination: what the routing, balancing and
/// resilience of [`Outbound`] run over. Implemented by [`MeshTransport`] (the
/// [`MeshClient`]'s pooled mTLS connections) and [`ServiceTransport`] (your own client
/// under an [`OutboundLayer`]).
///
/// # Examples
///
/// Code generic over the transport sees the same mesh answers with either:
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{Empty, Full};
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{ClientWorkload, MeshBody, Outbound, OutboundError, OutboundLayer, Transport};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// async fn status_of<T: Transport>(svc: Outbound<T>, uri: &str) -> Result<u16, OutboundError> {
///     let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
///     Ok(svc.oneshot(req).await?.status().as_u16())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// let client = service_fn(|_req: http::Request<MeshBody>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("sent"))))
/// });
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let svc = OutboundLayer::builder(mesh, me).layer().layer(client);
/// // `reviews` has no endpoint yet: Envoy's 503 `no healthy upstream`, nothing sent.
/// assert_eq!(status_of(svc, "http://reviews:9080/").await?, 503);
/// # Ok(()) }
/// ```
pub trait Transport: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static;

    /// Sends `req` (origin-form URI, `Host` set) to endpoint `endpoint` of `dest`.
    #[doc(hidden)]
    fn send(
        &self,
        dest: &Arc<dyn std::any::Any + Send + Sync>,
        endpoint: usize,
        req: Request<MeshBody>,
    ) -> SendFuture<Self::Body>;
}

/// The mesh's own transport: per-endpoint pools of hyper connections with mTLS.
///
/// This is what a [`MeshClient`] sends over. With the workload's
/// [credentials](MeshClientBuilder::credentials), a connection to a mesh endpoint is mutual
/// TLS and the server must present the SPIFFE identity of the destination's service
/// accounts, checked inside the handshake.
///
/// # Examples
///
/// A server registered as `bookinfo-reviews` but presenting another identity is refused:
///
/// ```
/// use std::time::Duration;
/// use http_body_util::Empty;
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
/// use mesh_tower::inbound::MeshServer;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient, UpstreamFailure};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let creds = |sa: &str| {
///     let id = Identity::new("cluster.local", "default", sa).unwrap();
///     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
/// };
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// // The server runs with the identity `impostor`...
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let server = MeshServer::builder(mesh.clone(), "default", "impostor", Default::default(), creds("impostor"))
///     .build()?;
/// let app = axum::Router::new().fallback(|| async { "secret reviews" });
/// tokio::spawn(async move { server.serve(listener, app).await });
/// // ...but is registered as a `reviews` workload of the service account `bookinfo-reviews`.
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: addr.ip(),
///     ports: [("http".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
///
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let client = MeshClient::builder(mesh, me)
///     .credentials(creds("bookinfo-productpage"))
///     .build();
/// let req = http::Request::get("http://reviews:9080/").body(Empty::<bytes::Bytes>::new())?;
/// let resp = client.request(req).await?;
/// assert_eq!(resp.status(), 503);
/// let failure = resp.extensions().get::<UpstreamFailure>().unwrap();
/// assert!(failure.message.contains("CERTIFICATE_VERIFY_FAILED"), "{}", failure.message);
/// assert!(failure.message.contains("spiffe://cluster.local/ns/default/sa/impostor"), "{}", failure.message);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MeshTransport;

impl Transport for MeshTransport {
    type Body = upstream::UpstreamBody;

    fn send(
        &self,
        dest: &Arc<dyn std::any::Any + Send + Sync>,
        endpoint: usize,
        req: Request<MeshBody>,
    ) -> SendFuture<Self::Body> {
        let Ok(d) = Arc::clone(dest).downcast::<DestState>() else {
            return Box::pin(async { Err("destination state missing".into()) });
        };
        crate::box_in_place(|| async move {
            let upgrade = upgrade_of(req.headers()) == Some(UpgradeRequest::WebSocket);
            let want = if upgrade {
                upstream::Want::Http1
            } else {
                upstream::Want::Any
            };
            Ok(d.upstream.send(endpoint, req, want, None).await?.0)
        })
    }
}

/// How this crate sends one attempt: the mesh transport straight into its pool (the
/// attempt's future lives inside the request's, not boxed, and no `Arc` is cloned), any
/// other [`Transport`] through its boxed future ([`Via`]).
pub(crate) trait Sender: Clone + Send + Sync + 'static {
    type Body: Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static;

    /// The sender takes a request's `http2MaxRequests` slot itself when a connection takes
    /// the request (Envoy's `attachStreamToClient`; a request waiting for a connection is
    /// pending, not active), and its answer's body holds it. Otherwise each attempt takes
    /// one before it is sent.
    const COUNTS_REQUESTS: bool = false;

    /// `want`: the HTTP version the attempt needs of its connection (HTTP/1.1 for an
    /// upgrade, WebSocket). With the answer, the peer of the connection when the sender
    /// knows it (`None`: it does not).
    /// `per_try`: the route's `perTryTimeout`; its expiry is an
    /// [`upstream::PerTryTimeout`] error.
    fn send_to(
        &self,
        dest: &Arc<DestState>,
        endpoint: usize,
        req: Request<MeshBody>,
        want: upstream::Want,
        per_try: Option<Duration>,
    ) -> impl Future<Output = Result<(Response<Self::Body>, Option<upstream::ConnPeer>), BoxError>> + Send;
}

impl Sender for MeshTransport {
    type Body = upstream::UpstreamBody;
    const COUNTS_REQUESTS: bool = true;

    fn send_to(
        &self,
        dest: &Arc<DestState>,
        endpoint: usize,
        req: Request<MeshBody>,
        want: upstream::Want,
        per_try: Option<Duration>,
    ) -> impl Future<Output = Result<(Response<Self::Body>, Option<upstream::ConnPeer>), BoxError>> + Send
    {
        // not an `async move` block around the send: the block would keep the send's
        // future twice (as its capture and as its awaitee), doubling every enclosing future
        SomePeer {
            send: dest.upstream.send(endpoint, req, want, per_try),
        }
    }
}

pin_project_lite::pin_project! {
    /// [`upstream::Upstream::send`]'s answer with its peer as the [`Sender`]'s (known).
    struct SomePeer<F> {
        #[pin]
        send: F,
    }
}

impl<F, R> Future for SomePeer<F>
where
    F: Future<Output = Result<(R, upstream::ConnPeer), BoxError>>,
{
    type Output = Result<(R, Option<upstream::ConnPeer>), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project()
            .send
            .poll(cx)
            .map(|r| r.map(|(resp, peer)| (resp, Some(peer))))
    }
}

/// A user's [`Transport`] as a [`Sender`].
#[derive(Clone)]
pub(crate) struct Via<T>(T);

impl<T: Transport> Sender for Via<T> {
    type Body = T::Body;

    fn send_to(
        &self,
        dest: &Arc<DestState>,
        endpoint: usize,
        req: Request<MeshBody>,
        _want: upstream::Want, // the user's client sees the request's headers and version
        per_try: Option<Duration>,
    ) -> impl Future<Output = Result<(Response<Self::Body>, Option<upstream::ConnPeer>), BoxError>> + Send
    {
        let mut req = req;
        let per_try = per_try.map(|limit| upstream::PerTry {
            limit,
            after: req.extensions_mut().remove::<BodyEnding>().map(|b| b.0),
        });
        let any: Arc<dyn std::any::Any + Send + Sync> = Arc::clone(dest) as _;
        let send = self.0.send(&any, endpoint, req);
        // a user's client does not say when a connection took the request: the per-try
        // timeout covers the whole send
        async move {
            let resp = upstream::within(&per_try, send).await??;
            Ok((resp, None))
        }
    }
}

/// Sends through a user's service (see [`OutboundLayer`]): each attempt gets an absolute
/// URI naming the endpoint picked (`http://<ip>:<port>/...`) and keeps the `Host` the
/// application sent.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty, Full};
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshBody, Outbound, OutboundLayer, ServiceTransport};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: "10.0.0.7".parse()?,
///     ports: [("http".to_string(), 9080)].into(),
///     locality: None,
///     weight: 0,
/// });
/// // Your client: here it only says what it was asked to send.
/// let client = service_fn(|req: http::Request<MeshBody>| async move {
///     let text = format!("{} Host: {}", req.uri(), req.headers()["host"].to_str().unwrap());
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
/// });
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let svc: Outbound<ServiceTransport<_>> = OutboundLayer::builder(mesh, me).layer().layer(client);
///
/// let req = http::Request::get("http://reviews:9080/reviews/0?u=1").body(Empty::<Bytes>::new())?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(
///     resp.into_body().collect().await?.to_bytes(),
///     "http://10.0.0.7:9080/reviews/0?u=1 Host: reviews:9080"
/// );
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ServiceTransport<S> {
    inner: S,
}

impl<S, RB> Transport for ServiceTransport<S>
where
    S: Service<Request<MeshBody>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Body<Data = Bytes> + Send + Sync + 'static,
    RB::Error: Into<BoxError>,
{
    type Body = MeshBody;

    fn send(
        &self,
        dest: &Arc<dyn std::any::Any + Send + Sync>,
        endpoint: usize,
        mut req: Request<MeshBody>,
    ) -> SendFuture<MeshBody> {
        // the user's client wants an absolute URI naming the endpoint
        if let Some(d) = dest.downcast_ref::<DestState>() {
            let pq = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = endpoint_uri(d, endpoint, &pq);
        }
        Box::pin(SendThrough {
            inner: self.inner.clone().oneshot(req),
        })
    }
}

pin_project! {
    /// The user's service future, its response body boxed.
    struct SendThrough<S: Service<Request<MeshBody>>> {
        #[pin]
        inner: tower::util::Oneshot<S, Request<MeshBody>>,
    }
}

impl<S, RB> Future for SendThrough<S>
where
    S: Service<Request<MeshBody>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + Sync + 'static,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<MeshBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(resp)) => Poll::Ready(Ok(resp.map(|b| b.map_err(Into::into).boxed()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The service.

/// The outbound mesh service: routing, balancing, resilience, over a [`Transport`].
///
/// Built by an [`OutboundLayer`] over your own client (inside a [`MeshClient`] over the
/// [`MeshTransport`]). Mesh failures are Envoy's answers, as responses; the service fails
/// only with an [`OutboundError`].
///
/// # Examples
///
/// Retries as the route asks (`attempts: 2, retryOn: 5xx`), here over a client whose first
/// answer is a 503:
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty, Full};
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshBody, OutboundLayer};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews, namespace: default}
/// spec:
///   hosts: [reviews]
///   http:
///   - route: [{destination: {host: reviews}}]
///     retries: {attempts: 2, retryOn: 5xx}
/// ")?;
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: "10.0.0.7".parse()?,
///     ports: [("http".to_string(), 9080)].into(),
///     locality: None,
///     weight: 0,
/// });
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = Arc::clone(&calls);
/// let client = service_fn(move |_req: http::Request<MeshBody>| {
///     let n = seen.fetch_add(1, Ordering::SeqCst);
///     async move {
///         let mut resp = http::Response::new(Full::new(Bytes::from(format!("attempt {n}"))));
///         if n == 0 {
///             *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
///         }
///         Ok::<_, Infallible>(resp)
///     }
/// });
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let svc = OutboundLayer::builder(mesh, me).layer().layer(client);
///
/// let req = http::Request::get("http://reviews:9080/").body(Empty::<Bytes>::new())?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "attempt 1");
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Outbound<T> {
    shared: Arc<ClientShared>,
    transport: T,
}

impl<T: Clone> Clone for Outbound<T> {
    fn clone(&self) -> Self {
        Outbound {
            shared: Arc::clone(&self.shared),
            transport: self.transport.clone(),
        }
    }
}

impl<T, B> Service<Request<B>> for Outbound<T>
where
    T: Transport,
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<MeshBody>;
    type Error = OutboundError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<MeshBody>, OutboundError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let transport = Via(self.transport.clone());
        crate::box_in_place(|| async move {
            handle(&shared, &transport, req, false, None)
                .await
                .map(|(r, _)| r)
        })
    }
}

/// The future of one [`MeshClient`] request (inside its trace scope).
type ClientFuture =
    Pin<Box<dyn Future<Output = Result<Response<ClientBody>, OutboundError>> + Send>>;

/// [`Outbound`] over the mesh transport with Istio's metrics (`reporter="source"`) recorded
/// in place: what [`MetricsLayer`] over [`Outbound`] does, without passing the destination's
/// labels up through the response extensions. The service inside a [`MeshClient`].
#[derive(Clone)]
pub(crate) struct MeteredOutbound {
    shared: Arc<ClientShared>,
    metrics: Arc<crate::metrics::MetricsConfig>,
}

impl std::fmt::Debug for MeteredOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredOutbound")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for MeteredOutbound
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ClientBody>;
    type Error = OutboundError;
    type Future = ClientFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.start(req)
    }
}

impl MeteredOutbound {
    fn start<B>(&self, req: Request<B>) -> ClientFuture
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let this = self.clone();
        crate::box_in_place(|| async move { this.run(req).await })
    }

    /// One request, recorded in place; borrows the client, so [`MeshClient::request`] runs
    /// it without cloning the client's state.
    async fn run<B>(&self, req: Request<B>) -> Result<Response<ClientBody>, OutboundError>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (req, pending) = crate::metrics::start_recording(&self.metrics, req);
        if self.shared.logs_access() {
            // boxed: the logged path's future would otherwise size every request's
            return crate::box_in_place(|| self.run_logged(req, pending)).await;
        }
        match handle(&self.shared, &MeshTransport, req, true, None).await {
            Ok((resp, ctx)) => Ok(pending.finish(resp, ctx.as_ref())),
            Err(e) => {
                pending.abandon();
                Err(e)
            }
        }
    }
}

impl MeteredOutbound {
    /// [`MeteredOutbound::run`] with the client's access log
    /// ([`MeshClientBuilder::access_log`]): one more allocation per request (the log entry
    /// and the boxed body that writes it when it ends).
    async fn run_logged<B>(
        &self,
        req: Request<B>,
        pending: crate::metrics::Pending,
    ) -> Result<Response<ClientBody>, OutboundError>
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = req.into_parts();
        let (body, facts) = crate::accesslog::capture_with(
            crate::accesslog::Direction::Outbound,
            self.shared.log_format.as_ref(),
            &mut parts,
            body,
        );
        let req = Request::from_parts(parts, body);
        match handle(&self.shared, &MeshTransport, req, true, None).await {
            Ok((resp, ctx)) => {
                let entry = crate::accesslog::entry_for(facts, &resp);
                let resp = resp.map(|b| crate::observe::ObservedBody::new(b, Some(entry)).boxed());
                Ok(pending.finish(resp, ctx.as_ref()))
            }
            Err(e) => {
                pending.abandon();
                Err(e)
            }
        }
    }
}

/// Builds a [`MeshClient`] or an [`OutboundLayer`].
///
/// # Examples
///
/// Two clients recording into one shared metrics registry, sampling every new trace:
///
/// ```
/// use std::sync::Arc;
/// use http_body_util::{BodyExt, Empty};
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::metrics::IstioMetrics;
/// use mesh_tower::outbound::{ClientOptions, ClientWorkload, MeshClient};
/// use mesh_tower::trace::TraceConfig;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings, namespace: default}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings, namespace: default}
/// spec:
///   hosts: [ratings]
///   http:
///   - directResponse: {status: 200, body: {string: '5 stars'}}
/// ")?;
/// let metrics = Arc::new(IstioMetrics::new());
/// let build = |name: &str| {
///     MeshClient::builder(mesh.clone(), ClientWorkload::new(name, "default", name))
///         .options(ClientOptions::default())
///         .metrics(Arc::clone(&metrics))
///         .trace(TraceConfig { sampling_percent: 100.0, ..TraceConfig::default() })
///         .build()
/// };
/// let (reviews, productpage) = (build("reviews-v1"), build("productpage-v1"));
/// assert!(Arc::ptr_eq(reviews.metrics(), productpage.metrics()));
///
/// for client in [&reviews, &productpage] {
///     let req = http::Request::get("http://ratings:9080/").body(Empty::<bytes::Bytes>::new())?;
///     let resp = client.request(req).await?;
///     assert_eq!(resp.into_body().collect().await?.to_bytes(), "5 stars");
/// }
/// assert_eq!(metrics.series_count(), 2, "one series per source workload");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MeshClientBuilder {
    mesh: Mesh,
    workload: ClientWorkload,
    credentials: Option<Arc<WorkloadCredentials>>,
    credential_lookup: Option<Arc<dyn CredentialLookup>>,
    options: ClientOptions,
    metrics: Option<Arc<IstioMetrics>>,
    /// Set by [`MeshClientBuilder::trace`]; else the mesh's tracing.
    trace: Option<TraceConfig>,
    access_log: bool,
    /// The client of a gateway ([`MeshClientBuilder::for_gateway`]).
    gateway: bool,
}

impl MeshClientBuilder {
    /// Writes an access log line per request, as Istio's client sidecar does (`tracing`
    /// events at INFO on target [`TARGET`](crate::accesslog::TARGET), direction
    /// `outbound`, with the upstream host, cluster and route name). Off by default: when on
    /// and a subscriber listens, each request costs a log entry and a boxed response body
    /// (only [`MeshClientBuilder::build`] logs).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(Mesh::new(Default::default()), me)
    ///     .access_log(true)
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn access_log(mut self, on: bool) -> Self {
        self.access_log = on;
        self
    }

    /// The workload's mesh credentials (needed for mTLS: without them, in-mesh destinations
    /// get plaintext unless a DestinationRule asks for ISTIO_MUTUAL, which then fails closed).
    ///
    /// # Examples
    ///
    /// A DestinationRule asks for ISTIO_MUTUAL: the client without credentials sends
    /// nothing, the one with credentials reaches the server over mTLS.
    ///
    /// ```
    /// use std::time::Duration;
    /// use axum::Extension;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::{ConnectionInfo, MeshServer};
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient, UpstreamFailure};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let creds = |sa: &str| {
    ///     let id = Identity::new("cluster.local", "default", sa).unwrap();
    ///     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
    /// };
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   host: reviews
    ///   trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
    /// ")?;
    /// // A reviews server answering with its caller's principal.
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let labels = [("app".to_string(), "reviews".to_string())].into();
    /// let server = MeshServer::builder(mesh.clone(), "default", "bookinfo-reviews", labels, creds("bookinfo-reviews"))
    ///     .build()?;
    /// let app = axum::Router::new().fallback(|Extension(c): Extension<ConnectionInfo>| async move {
    ///     c.principal().unwrap_or("plaintext").to_string()
    /// });
    /// tokio::spawn(async move { server.serve(listener, app).await });
    /// mesh.register(Workload {
    ///     name: "reviews-v1".to_string(),
    ///     namespace: "default".to_string(),
    ///     service_account: "bookinfo-reviews".to_string(),
    ///     labels: [("app".to_string(), "reviews".to_string())].into(),
    ///     address: addr.ip(),
    ///     ports: [("http".to_string(), addr.port())].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let get = || http::Request::get("http://reviews:9080/").body(Empty::<bytes::Bytes>::new()).unwrap();
    ///
    /// let without = MeshClient::builder(mesh.clone(), me.clone()).build();
    /// let resp = without.request(get()).await?;
    /// assert_eq!(resp.status(), 503);
    /// let failure = resp.extensions().get::<UpstreamFailure>().unwrap();
    /// assert!(failure.message.starts_with("TLS configuration error"), "{}", failure.message);
    ///
    /// let with = MeshClient::builder(mesh, me).credentials(creds("bookinfo-productpage")).build();
    /// let resp = with.request(get()).await?;
    /// assert_eq!(resp.status(), 200);
    /// assert_eq!(
    ///     resp.into_body().collect().await?.to_bytes(),
    ///     "cluster.local/ns/default/sa/bookinfo-productpage"
    /// );
    /// # Ok(()) }
    /// ```
    pub fn credentials(mut self, credentials: Arc<WorkloadCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Resolves DestinationRule `credentialName`s.
    ///
    /// # Examples
    ///
    /// A DestinationRule originating MUTUAL TLS with the client certificate and CA of the
    /// `reviews-client` credential, stored as a directory ([`mesh_tls::DirCredentials`]):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use axum::Extension;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tls::{DirCredentials, Identity, MeshCa, WorkloadCredentials};
    /// use mesh_tower::inbound::{ConnectionInfo, MeshServer};
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let ttl = Duration::from_secs(3600);
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   host: reviews
    ///   trafficPolicy: {tls: {mode: MUTUAL, credentialName: reviews-client}}
    /// ")?;
    /// // A reviews server whose certificate also names the host the client asks for, which
    /// // the client checks (Istio's auto SAN validation: the request's Host, `reviews`).
    /// let id = Identity::new("cluster.local", "default", "bookinfo-reviews")?;
    /// let server_cert = ca.issue(&id, ttl, &["reviews", "reviews.default.svc.cluster.local"])?;
    /// let labels = [("app".to_string(), "reviews".to_string())].into();
    /// let server = MeshServer::builder(mesh.clone(), "default", "bookinfo-reviews", labels, WorkloadCredentials::new(server_cert)?)
    ///     .build()?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let app = axum::Router::new().fallback(|Extension(c): Extension<ConnectionInfo>| async move {
    ///     format!("hello {}", c.principal().unwrap_or("plaintext"))
    /// });
    /// tokio::spawn(async move { server.serve(listener, app).await });
    /// mesh.register(Workload {
    ///     name: "reviews-v1".to_string(),
    ///     namespace: "default".to_string(),
    ///     service_account: "bookinfo-reviews".to_string(),
    ///     labels: [("app".to_string(), "reviews".to_string())].into(),
    ///     address: addr.ip(),
    ///     ports: [("http".to_string(), addr.port())].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    ///
    /// // <dir>/reviews-client/{tls.crt,tls.key,ca.crt}, as a kubernetes.io/tls secret.
    /// let client_cert = ca.issue(&Identity::new("cluster.local", "default", "productpage")?, ttl, &[])?;
    /// let secrets = tempfile::tempdir()?;
    /// let dir = secrets.path().join("reviews-client");
    /// std::fs::create_dir(&dir)?;
    /// std::fs::write(dir.join("tls.crt"), client_cert.chain_pem())?;
    /// std::fs::write(dir.join("tls.key"), client_cert.key_pem())?;
    /// std::fs::write(dir.join("ca.crt"), client_cert.root_pem())?;
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(mesh, me)
    ///     .credential_lookup(Arc::new(DirCredentials::new(secrets.path())))
    ///     .build();
    /// let req = http::Request::get("http://reviews:9080/").body(Empty::<bytes::Bytes>::new())?;
    /// let resp = client.request(req).await?;
    /// assert_eq!(resp.status(), 200);
    /// // the server saw the credential's client certificate
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "hello cluster.local/ns/default/sa/productpage");
    /// # Ok(()) }
    /// ```
    pub fn credential_lookup(mut self, lookup: Arc<dyn CredentialLookup>) -> Self {
        self.credential_lookup = Some(lookup);
        self
    }

    /// Client options (default: [`ClientOptions::default`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientOptions, ClientWorkload, MeshClient};
    ///
    /// // Give up connecting after 2 s where no DestinationRule sets a connect timeout.
    /// let options = ClientOptions {
    ///     connect_timeout: Duration::from_secs(2),
    ///     ..ClientOptions::default()
    /// };
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(Mesh::new(Default::default()), me)
    ///     .options(options)
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Records Istio metrics into `metrics` (default: a registry of the client's own).
    /// Only [`MeshClientBuilder::build`] records metrics; [`MeshClientBuilder::layer`]
    /// ignores this.
    ///
    /// # Examples
    ///
    /// Two clients sharing one registry (one scrape endpoint for the process):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::metrics::IstioMetrics;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let mesh = Mesh::new(Default::default());
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let a = MeshClient::builder(mesh.clone(), ClientWorkload::new("a", "default", "a"))
    ///     .metrics(Arc::clone(&metrics))
    ///     .build();
    /// let b = MeshClient::builder(mesh, ClientWorkload::new("b", "default", "b"))
    ///     .metrics(Arc::clone(&metrics))
    ///     .build();
    /// assert!(Arc::ptr_eq(a.metrics(), &metrics));
    /// assert!(Arc::ptr_eq(b.metrics(), &metrics));
    /// ```
    pub fn metrics(mut self, metrics: Arc<IstioMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Trace propagation settings (default: [`TraceConfig::default`]). Only
    /// [`MeshClientBuilder::build`] propagates traces; [`MeshClientBuilder::layer`] ignores
    /// this.
    ///
    /// # Examples
    ///
    /// A client writing only the B3 single header (the server echoes the trace headers it
    /// received):
    ///
    /// ```
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    /// use mesh_tower::trace::{Formats, TraceConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let app = axum::Router::new().fallback(|h: http::HeaderMap| async move {
    ///     format!("b3={} traceparent={}", h.contains_key("b3"), h.contains_key("traceparent"))
    /// });
    /// tokio::spawn(async move { axum::serve(listener, app).await });
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ")?;
    /// mesh.register(Workload {
    ///     name: "reviews-v1".to_string(),
    ///     namespace: "default".to_string(),
    ///     service_account: "bookinfo-reviews".to_string(),
    ///     labels: [("app".to_string(), "reviews".to_string())].into(),
    ///     address: addr.ip(),
    ///     ports: [("http".to_string(), addr.port())].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    ///
    /// let trace = TraceConfig {
    ///     formats: Formats { w3c: false, b3_multi: false, b3_single: true },
    ///     ..TraceConfig::default()
    /// };
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(mesh, me).trace(trace).build();
    /// let req = http::Request::get("http://reviews:9080/").body(Empty::<bytes::Bytes>::new())?;
    /// let resp = client.request(req).await?;
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "b3=true traceparent=false");
    /// # Ok(()) }
    /// ```
    pub fn trace(mut self, trace: TraceConfig) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The client of a gateway, whose clusters istiod builds as a gateway's.
    pub(crate) fn for_gateway(mut self) -> Self {
        self.gateway = true;
        self
    }

    fn shared(self) -> (Arc<ClientShared>, Option<Arc<IstioMetrics>>, TraceConfig) {
        let source = self.workload.address.map(|ip| SocketAddr::new(ip, 0));
        let hash_source = source.unwrap_or_else(|| workload_hash_source(&self.workload));
        let log_format = crate::accesslog::mesh_format(self.mesh.options());
        let server_header = (self.mesh.options().proxy_headers.outbound_server.as_deref())
            .and_then(|v| HeaderValue::from_str(v).ok());
        let trace = self
            .trace
            .unwrap_or_else(|| TraceConfig::from_options(self.mesh.options()));
        (
            Arc::new(ClientShared {
                mesh: self.mesh,
                workload: self.workload,
                credentials: self.credentials,
                credential_lookup: self.credential_lookup,
                options: self.options,
                cache: DestCache::default(),
                source,
                hash_source,
                access_log: self.access_log,
                log_format,
                server_header,
                gateway: self.gateway,
            }),
            self.metrics,
            trace,
        )
    }

    /// The ready client: the mesh transport, Istio metrics (`reporter="source"`) and trace
    /// propagation.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(Mesh::new(Default::default()), me).build();
    /// // no `metrics` given: the client has a registry of its own, empty so far
    /// assert_eq!(client.metrics().series_count(), 0);
    /// ```
    pub fn build(self) -> MeshClient {
        let (shared, metrics, trace) = self.shared();
        let metrics = metrics.unwrap_or_else(|| Arc::new(IstioMetrics::new()));
        let w = &shared.workload;
        let principal = shared
            .credentials
            .as_ref()
            .map(|c| c.identity().as_uri().to_owned())
            .unwrap_or_default();
        let mut me = WorkloadInfo::from_labels(&w.name, &w.namespace, &principal, &w.labels);
        if let Some(c) = &w.cluster_id {
            me.cluster.clone_from(c);
        }
        let layer = MetricsLayer::outbound(Arc::clone(&metrics), me);
        let inner = MeteredOutbound {
            shared: Arc::clone(&shared),
            metrics: Arc::clone(layer.config()),
        };
        let svc = PropagateTraceLayer::outbound(trace).layer(inner);
        MeshClient {
            svc,
            metrics,
            shared,
            metrics_config: Arc::clone(layer.config()),
        }
    }

    /// A layer over the user's own client service (see [`OutboundLayer`]): routing,
    /// balancing, retries and timeouts, without this crate's transport, metrics or trace
    /// propagation (the settings of [`MeshClientBuilder::metrics`] and
    /// [`MeshClientBuilder::trace`] are not used).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty, Full};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tower::outbound::{ClientWorkload, MeshBody, MeshClient};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ")?;
    /// mesh.register(Workload {
    ///     name: "reviews-v1".to_string(),
    ///     namespace: "default".to_string(),
    ///     service_account: "bookinfo-reviews".to_string(),
    ///     labels: [("app".to_string(), "reviews".to_string())].into(),
    ///     address: "10.0.0.7".parse()?,
    ///     ports: [("http".to_string(), 9080)].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    /// // Your client: here it answers with the URI it was asked to send to.
    /// let client = service_fn(|req: http::Request<MeshBody>| async move {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(req.uri().to_string()))))
    /// });
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let svc = MeshClient::builder(mesh, me).layer().layer(client);
    /// let req = http::Request::get("http://reviews:9080/reviews/0").body(Empty::<Bytes>::new())?;
    /// let resp = svc.oneshot(req).await?;
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "http://10.0.0.7:9080/reviews/0");
    /// # Ok(()) }
    /// ```
    pub fn layer(self) -> OutboundLayer {
        let (shared, _, _) = self.shared();
        OutboundLayer { shared }
    }
}

/// The mesh client: [`Outbound`] over the mesh transport, with Istio metrics and trace
/// propagation. Cheap to clone (one client per workload, shared).
///
/// # Examples
///
/// A plain `http://reviews:9080/...` request reaches a `reviews` endpoint, with the trace
/// context added on the way (the server echoes the `traceparent` it received). The client is
/// also a `tower::Service`:
///
/// ```
/// use http_body_util::{BodyExt, Empty};
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let app = axum::Router::new().fallback(|headers: http::HeaderMap| async move {
///     headers["x-request-id"].to_str().unwrap().to_string()
/// });
/// tokio::spawn(async move { axum::serve(listener, app).await });
///
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: addr.ip(),
///     ports: [("http".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let client = MeshClient::builder(mesh, me).build();
///
/// let req = http::Request::get("http://reviews:9080/reviews/0").body(Empty::<bytes::Bytes>::new())?;
/// let resp = client.clone().oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// let request_id = resp.into_body().collect().await?.to_bytes();
/// assert_eq!(request_id.len(), 36, "a new x-request-id, as Envoy writes: {request_id:?}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MeshClient {
    svc: PropagateTrace<MeteredOutbound>,
    metrics: Arc<IstioMetrics>,
    /// For [`MeshClient::connect`] (TCP): what the request path shares, and the metrics'
    /// view of this workload.
    shared: Arc<ClientShared>,
    metrics_config: Arc<crate::metrics::MetricsConfig>,
}

impl MeshClient {
    /// Starts building a client for `workload` in `mesh`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ").unwrap();
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage")
    ///     .with_label("app", "productpage")
    ///     .with_label("version", "v1");
    /// let client = MeshClient::builder(mesh, me).build();
    /// # let _ = client;
    /// ```
    pub fn builder(mesh: Mesh, workload: ClientWorkload) -> MeshClientBuilder {
        MeshClientBuilder {
            mesh,
            workload,
            credentials: None,
            credential_lookup: None,
            options: ClientOptions::default(),
            metrics: None,
            trace: None,
            access_log: false,
            gateway: false,
        }
    }

    /// Sends a request through the mesh. Mesh failures are responses (Envoy's answers);
    /// `Err` only when the request itself is unusable.
    ///
    /// # Examples
    ///
    /// ```
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   selector: {app: reviews}
    ///   ports: [{name: http, port: 9080}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /reviews}}]
    ///     route: [{destination: {host: reviews}}]
    /// ")?;
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let client = MeshClient::builder(mesh, me).build();
    /// let get = |uri: &str| http::Request::get(uri).body(Empty::<bytes::Bytes>::new()).unwrap();
    ///
    /// // No route matches /health: 404, as Envoy answers.
    /// let resp = client.request(get("http://reviews:9080/health")).await?;
    /// assert_eq!(resp.status(), 404);
    ///
    /// // Routed, but `reviews` has no endpoint.
    /// let resp = client.request(get("http://reviews:9080/reviews/0")).await?;
    /// assert_eq!(resp.status(), 503);
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "no healthy upstream");
    /// # Ok(()) }
    /// ```
    pub fn request<B>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = Result<Response<ClientBody>, OutboundError>> + Send + '_
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        // the same as calling the service, without cloning it per request; and without
        // making the hop's context the task's current one, which only code running inside
        // the request would see, and none does with the mesh transport (the scope would
        // swap the context in and out of the task-local on every poll). Not an `async fn`:
        // the trace headers are written when the request is made, and the future is the
        // metered run's own, without a level that would keep the request a second time.
        // Boxed: the run's state is some 6 KB, which the caller's own future would carry
        // and copy each time it moves it (in a callgrind cache simulation of the e2e
        // benchmark, 8 % fewer L1 data misses per request, the same instructions); built in
        // its box, not copied into it
        let mut req = req;
        crate::trace::prepare_request(self.svc.trace_layer(), &mut req);
        crate::box_in_place(|| self.svc.get_ref().run(req))
    }

    /// The Istio metrics this client records (`reporter="source"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings, namespace: default}
    /// spec:
    ///   hosts: [ratings]
    ///   http:
    ///   - directResponse: {status: 503}
    /// ")?;
    /// let me = ClientWorkload::new("reviews-v2", "default", "bookinfo-reviews")
    ///     .with_label("app", "reviews")
    ///     .with_label("version", "v2");
    /// let client = MeshClient::builder(mesh, me).build();
    /// let req = http::Request::get("http://ratings:9080/ratings/0").body(Empty::<bytes::Bytes>::new())?;
    /// client.request(req).await?.into_body().collect().await?;
    ///
    /// let text = client.metrics().render();
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// assert!(line.contains(r#"reporter="source""#), "{line}");
    /// assert!(line.contains(r#"source_workload="reviews-v2""#), "{line}");
    /// assert!(line.contains(r#"source_version="v2""#), "{line}");
    /// assert!(line.contains(r#"response_code="503""#), "{line}");
    /// assert!(line.ends_with(" 1"), "{line}");
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.metrics
    }
}

impl<B> Service<Request<B>> for MeshClient
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ClientBody>;
    type Error = OutboundError;
    type Future = crate::trace::PropagateTraceFuture<ClientFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<B>>::poll_ready(&mut self.svc, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.svc.call(req)
    }
}

/// Wraps a user's client service `S` (e.g. `hyper_util::client::legacy::Client<_, MeshBody>`)
/// with the outbound mesh logic: `S` receives each attempt addressed to the endpoint picked
/// (`http://<ip>:<port>/...`, `Host` set to the service's authority). TLS origination is
/// `S`'s business here (use [`MeshClient`] for mesh mTLS).
///
/// # Examples
///
/// Around hyper-util's pooled client, dialling with the [`MeshConnector`]:
///
/// ```
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshBody, MeshConnector, OutboundLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # let addr = listener.local_addr()?;
/// # let app = axum::Router::new().fallback(|| async { "reviews-v1" });
/// # tokio::spawn(async move { axum::serve(listener, app).await });
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ")?;
/// // `addr`: a plain HTTP server on loopback answering "reviews-v1".
/// mesh.register(Workload {
///     name: "reviews-v1".to_string(),
///     namespace: "default".to_string(),
///     service_account: "bookinfo-reviews".to_string(),
///     labels: [("app".to_string(), "reviews".to_string())].into(),
///     address: addr.ip(),
///     ports: [("http".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
///
/// let http = Client::builder(TokioExecutor::new()).build::<_, MeshBody>(MeshConnector::plaintext());
/// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
/// let svc = ServiceBuilder::new()
///     .layer(OutboundLayer::builder(mesh, me).layer())
///     .service(http);
///
/// let req = http::Request::get("http://reviews:9080/reviews/0").body(Empty::<bytes::Bytes>::new())?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "reviews-v1");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OutboundLayer {
    shared: Arc<ClientShared>,
}

impl OutboundLayer {
    /// Starts building a layer for `workload` in `mesh` (then [`MeshClientBuilder::layer`]).
    ///
    /// # Examples
    ///
    /// Over hyper-util's pooled client (a full round trip is in the [`OutboundLayer`]
    /// example):
    ///
    /// ```
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::outbound::{ClientWorkload, MeshBody, MeshConnector, OutboundLayer};
    /// use tower::ServiceBuilder;
    ///
    /// let http = Client::builder(TokioExecutor::new()).build::<_, MeshBody>(MeshConnector::plaintext());
    /// let me = ClientWorkload::new("productpage-v1", "default", "bookinfo-productpage");
    /// let layer = OutboundLayer::builder(Mesh::new(Default::default()), me).layer();
    /// let svc = ServiceBuilder::new().layer(layer).service(http);
    /// # let _ = svc;
    /// ```
    pub fn builder(mesh: Mesh, workload: ClientWorkload) -> MeshClientBuilder {
        MeshClient::builder(mesh, workload)
    }
}

impl<S> Layer<S> for OutboundLayer {
    type Service = Outbound<ServiceTransport<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        Outbound {
            shared: Arc::clone(&self.shared),
            transport: ServiceTransport { inner },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The request path.

/// The port of an authority (`host:port`, `[v6]:port`), if it names one: what
/// [`Authority::port_u16`] answers, without building a `Port` on the way.
fn port_of(authority: &str) -> Option<u16> {
    // the digits after the last `:`, read from the end (no search, no `str::parse`)
    let b = authority.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 5 || b.len() == digits || b[b.len() - digits - 1] != b':' {
        return None;
    }
    let port = b[b.len() - digits..]
        .iter()
        .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(port).ok()
}

/// A destination Envoy has no cluster for, under `REGISTRY_ONLY`: 502 with an empty body.
///
/// istiod's `block_all` route answers this as a direct response: status 502, no response
/// flag, details `direct_response`; istio_stats names its destination service
/// `BlackHoleCluster` (by the route name), the service host being the Host header.
fn black_hole(grpc: bool, authority: &str) -> (Response<MeshBody>, Option<MetricsContext>) {
    let r = local(
        LocalReply::DirectResponse {
            status: StatusCode::BAD_GATEWAY,
        },
        grpc,
    );
    let service = ServiceInfo {
        host: authority.to_owned(),
        name: "BlackHoleCluster".to_owned(),
        namespace: String::new(),
    };
    (r, Some(service_context(service)))
}

/// The name Istio gives the route to a service no VirtualService routes.
fn default_route_name() -> Arc<str> {
    static NAME: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    Arc::clone(NAME.get_or_init(|| Arc::from("default")))
}

/// The metrics context of an answer whose destination service is `service` and whose
/// endpoint is not known.
fn service_context(service: ServiceInfo) -> MetricsContext {
    MetricsContext {
        service: Some(Arc::new(service)),
        ..MetricsContext::default()
    }
}

/// The metrics context of an answer made before the router ran (a gateway's own
/// authorization denied the request): the service the route leads to, as Envoy's
/// connection manager resolves the route and its cluster before any filter runs (so
/// istio_stats names it), else the Host header.
pub(crate) fn routed_context(
    snap: &mesh_core::snapshot::Snapshot,
    namespace: &str,
    attrs: &HttpRequestAttrs<'_>,
) -> Option<MetricsContext> {
    let decision = snap
        .routes()
        .route_http_scoped(snap.registry(), snap.options(), attrs, None);
    let service = decision
        .virtual_service
        .and(decision.pick(rand::random::<u64>()))
        .and_then(|wd| {
            snap.registry()
                .service(&wd.host, namespace)
                .filter(|s| *s.hostname == *wd.host)
        });
    match service {
        Some(svc) => Some(service_context(dest::service_info(svc))),
        None => host_context(attrs.authority),
    }
}

/// The metrics context of an answer made before a destination is known (no route, no
/// cluster, a redirect or a direct response without one): istio_stats falls back to the
/// Host header for `destination_service` and `destination_service_name`.
pub(crate) fn host_context(authority: &str) -> Option<MetricsContext> {
    Some(service_context(ServiceInfo {
        host: authority.to_owned(),
        name: authority.to_owned(),
        namespace: String::new(),
    }))
}

/// Marks `resp` as a route's direct response or redirect (Envoy's details
/// `direct_response`).
fn direct_response_details(resp: &mut Response<MeshBody>) {
    resp.extensions_mut()
        .insert(ResponseCodeDetails(DIRECT_RESPONSE.to_owned()));
}

/// The HTTP/1.1 upgrade a request asks for: `Connection` lists `upgrade` and an `Upgrade`
/// header names the protocol (Envoy's `Utility::isUpgrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpgradeRequest {
    /// `Upgrade: websocket`, the one upgrade Istio configures (`upgrade_configs`): forwarded.
    WebSocket,
    /// `Upgrade: h2c`: Envoy's HTTP/1.1 codec drops these headers and serves the request as
    /// a plain HTTP/1.1 request.
    H2c,
    /// Any other protocol: Envoy answers 403 (`upgrade_failed`).
    Other,
}

/// The upgrade `headers` ask for, if any: one lookup when there is no `Connection` header.
pub(crate) fn upgrade_of(headers: &http::HeaderMap) -> Option<UpgradeRequest> {
    let mut connection = headers.get_all(http::header::CONNECTION).iter();
    if !connection.any(|v| has_token(v.as_bytes(), b"upgrade")) {
        return None;
    }
    let protocol = headers.get(http::header::UPGRADE)?.as_bytes().trim_ascii();
    Some(if protocol.eq_ignore_ascii_case(b"websocket") {
        UpgradeRequest::WebSocket
    } else if protocol.eq_ignore_ascii_case(b"h2c") {
        UpgradeRequest::H2c
    } else {
        UpgradeRequest::Other
    })
}

/// Whether a comma-separated header value lists `token` (ASCII case-insensitive).
fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Drops an `h2c` upgrade offer, as Envoy's HTTP/1.1 codec does: the request goes on as
/// plain HTTP/1.1.
pub(crate) fn strip_h2c_upgrade(headers: &mut http::HeaderMap) {
    headers.remove(http::header::UPGRADE);
    headers.remove(http::header::CONNECTION);
    headers.remove("http2-settings");
}

/// Envoy's answer to an upgrade of a type the connection manager does not allow (Istio
/// allows `websocket` only): 403 with an empty body (response code details
/// `upgrade_failed`).
pub(crate) fn upgrade_failed<B: Default>() -> Response<B> {
    let mut r = Response::new(B::default());
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.extensions_mut()
        .insert(ResponseCodeDetails(UPGRADE_FAILED.to_owned()));
    r
}

fn local(reply: LocalReply, grpc: bool) -> Response<MeshBody> {
    let mut resp = reply.to_response_with(grpc, full);
    resp.extensions_mut().insert(LocalOrigin);
    resp
}

/// Marks a response the mesh client made itself (Envoy's local replies and direct
/// responses), whose content type is settled after the route's header operations.
#[derive(Clone, Copy)]
struct LocalOrigin;

fn full(b: Bytes) -> MeshBody {
    Full::new(b).map_err(|e: Infallible| match e {}).boxed()
}

fn empty() -> MeshBody {
    Empty::new().map_err(|e: Infallible| match e {}).boxed()
}

/// A request body: buffered (replayable), streamed once, or streamed and kept for retries
/// (with a flag set once it has ended).
enum ReqBody {
    Buffered(Bytes),
    Streaming(Option<MeshBody>, Arc<Ended>),
    Replayed(replay::Replay, Arc<Ended>),
}

impl ReqBody {
    fn take(&mut self) -> Option<MeshBody> {
        match self {
            ReqBody::Buffered(b) => Some(if b.is_empty() {
                empty()
            } else {
                full(b.clone())
            }),
            ReqBody::Streaming(s, _) => s.take(),
            ReqBody::Replayed(r, _) => r.reader(),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            ReqBody::Buffered(_) => true,
            ReqBody::Streaming(..) => false,
            ReqBody::Replayed(r, _) => r.replayable(),
        }
    }

    /// A retry has been decided: the attempt's body is given up at once (a streamed one
    /// stops being read for it, so the backoff reads nothing past the buffer limit).
    fn abandon_attempt(&self) {
        if let ReqBody::Replayed(r, _) = self {
            r.abandon();
        }
    }

    /// An answer was taken: nothing more is kept for retries.
    fn answered(&self) {
        if let ReqBody::Replayed(r, _) = self {
            r.stop_keeping();
        }
    }

    /// Keeps a streamed body of unknown length (a gRPC call's, a chunked upload) for
    /// retries as it is sent, up to `limit` bytes, as Envoy's router does (a body whose
    /// length is known is buffered whole when within the limit, or too long to keep).
    fn keep_for_retries(&mut self, limit: u64) {
        if let ReqBody::Streaming(s, ended) = self
            && limit > 0
            && s.as_ref().is_some_and(|b| b.size_hint().exact().is_none())
            && let Some(b) = s.take()
        {
            *self = ReqBody::Replayed(replay::Replay::new(b, limit), Arc::clone(ended));
        }
    }

    /// The whole body has been received (Envoy's downstream request complete).
    fn complete(&self) -> bool {
        match self {
            ReqBody::Buffered(_) => true,
            ReqBody::Streaming(_, ended) | ReqBody::Replayed(_, ended) => ended.at().is_some(),
        }
    }

    /// When a streamed body ended, if it did.
    fn ended_at(&self) -> Option<tokio::time::Instant> {
        match self {
            ReqBody::Buffered(_) => None,
            ReqBody::Streaming(_, e) | ReqBody::Replayed(_, e) => e.at(),
        }
    }

    /// For a body still streaming in: the signal of its end, from which Envoy's route and
    /// per-try timeouts run.
    fn ending(&self) -> Option<&Arc<Ended>> {
        match self {
            ReqBody::Buffered(_) => None,
            ReqBody::Streaming(_, e) | ReqBody::Replayed(_, e) => e.at().is_none().then_some(e),
        }
    }
}

/// When a streamed request body ended (Envoy's downstream request complete), for the
/// timeouts that start then.
#[derive(Default)]
pub(crate) struct Ended {
    at: std::sync::OnceLock<tokio::time::Instant>,
    notify: tokio::sync::Notify,
}

impl Ended {
    fn set(&self) {
        if self.at.set(tokio::time::Instant::now()).is_ok() {
            self.notify.notify_waiters();
        }
    }

    /// When the body ended, if it has.
    fn at(&self) -> Option<tokio::time::Instant> {
        self.at.get().copied()
    }

    /// Waits for the body's end.
    pub(crate) async fn wait(&self) -> tokio::time::Instant {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // (registered before the check: an end between the two is not missed)
            notified.as_mut().enable();
            if let Some(at) = self.at() {
                return at;
            }
            notified.await;
        }
    }
}

/// Marks an attempt's request whose body is still streaming in: the per-try timeout starts
/// when it has ended, as Envoy's `setupPerTryTimeout` waits for the request to complete.
#[derive(Clone)]
pub(crate) struct BodyEnding(pub(crate) Arc<Ended>);

pin_project! {
    /// A streamed request body that notes when it has ended.
    struct Ending<B> {
        #[pin]
        inner: B,
        ended: Arc<Ended>,
    }
}

impl<B: Body> Body for Ending<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        // (a sized body's last frame may be the last one polled)
        if frame.is_none() || this.inner.is_end_stream() {
            this.ended.set();
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn read_body<B>(body: B, limit: u64) -> Result<ReqBody, OutboundError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(ReqBody::Buffered(Bytes::new()));
    }
    match body.size_hint().exact() {
        Some(n) if n <= limit => {
            let c = body
                .collect()
                .await
                .map_err(|e| OutboundError::Body(e.into()))?;
            Ok(ReqBody::Buffered(c.to_bytes()))
        }
        _ => {
            let ended = Arc::new(Ended::default());
            let inner = body.map_err(Into::into);
            let body = Ending {
                inner,
                ended: Arc::clone(&ended),
            };
            Ok(ReqBody::Streaming(Some(body.boxed()), ended))
        }
    }
}

pin_project! {
    /// A response body holding the endpoint's in-flight count and the circuit-breaker
    /// permits until it ends.
    struct Held<B> {
        #[pin]
        inner: B,
        hold: Option<Hold>,
        // the endpoint's outlier detector: a reset after the headers counts too
        outlier: Option<(Arc<crate::outlier::OutlierDetector>, usize)>,
    }
}

#[allow(dead_code)]
struct Hold {
    guard: RequestGuard,
    /// The request's `http2MaxRequests` slot, when the transport does not hold it.
    request: Option<Permit>,
}

impl<B: Body> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(None) => drop(this.hold.take()),
            Poll::Ready(Some(Err(_))) => {
                this.hold.take();
                // Envoy's router reports an upstream reset to outlier detection whether or
                // not the response had started (`onUpstreamReset`: a local-origin failure)
                if let Some((od, index)) = this.outlier.take() {
                    od.record(index, Outcome::Reset, std::time::Instant::now());
                }
            }
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn classify(err: &BoxError) -> (AttemptFailure, LocalReply, Option<String>) {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
    let mut connect = false;
    while let Some(e) = src {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            let msg = Some(c.to_string());
            return match c {
                ConnectError::Overflow(_) => {
                    (AttemptFailure::ConnectFailure, LocalReply::Overflow, None)
                }
                // (Envoy's pool records no transport failure reason for a connect
                // timeout: its body says `reset reason: connection timeout` alone)
                ConnectError::Timeout(_) => (
                    AttemptFailure::ConnectFailure,
                    reset(ResetReason::ConnectionTimeout, None),
                    msg,
                ),
                _ => (
                    AttemptFailure::ConnectFailure,
                    reset(ResetReason::RemoteConnectionFailure, msg.clone()),
                    msg,
                ),
            };
        }
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= h.is_connect();
        }
        // the upstream reset the stream (HTTP/2 RST_STREAM): `remote refused stream reset`
        // for REFUSED_STREAM, else `remote reset` (UR), as Envoy's codec says; a frame the
        // upstream got wrong is a `protocol error` (UPE)
        if let Some(h) = e.downcast_ref::<h2::Error>() {
            let text = Some(err.to_string());
            if h.is_reset() && h.is_remote() {
                return if h.reason() == Some(h2::Reason::REFUSED_STREAM) {
                    (
                        AttemptFailure::RefusedStream,
                        reset(ResetReason::RemoteRefusedStreamReset, None),
                        text,
                    )
                } else {
                    (
                        AttemptFailure::Reset,
                        reset(ResetReason::RemoteReset, None),
                        text,
                    )
                };
            }
            if h.is_library() && h.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
                return (
                    AttemptFailure::Reset,
                    reset(ResetReason::ProtocolError, None),
                    text,
                );
            }
        }
        // an HTTP/1.1 answer that cannot be parsed: Envoy's `protocol error` (UPE)
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_status() || h.is_parse_too_large())
        {
            return (
                AttemptFailure::Reset,
                reset(ResetReason::ProtocolError, None),
                Some(err.to_string()),
            );
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            connect = true;
        }
        src = e.source();
    }
    let text = err.to_string();
    if connect {
        return (
            AttemptFailure::ConnectFailure,
            reset(ResetReason::RemoteConnectionFailure, Some(text.clone())),
            Some(text),
        );
    }
    if text.contains("REFUSED_STREAM") || text.contains("refused stream") {
        return (
            AttemptFailure::RefusedStream,
            reset(ResetReason::RemoteRefusedStreamReset, None),
            Some(text),
        );
    }
    (
        AttemptFailure::Reset,
        reset(ResetReason::ConnectionTermination, None),
        Some(text),
    )
}

fn reset(reason: ResetReason, transport_failure: Option<String>) -> LocalReply {
    LocalReply::UpstreamReset {
        reason,
        transport_failure,
        retried: false,
    }
}

fn with_retried(r: LocalReply, retried: bool) -> LocalReply {
    match r {
        LocalReply::UpstreamReset {
            reason,
            transport_failure,
            ..
        } => LocalReply::UpstreamReset {
            reason,
            transport_failure,
            retried,
        },
        other => other,
    }
}

/// Forgets the destinations of `client` (see [`DestCache::clear`]).
pub(crate) fn forget_destinations(client: &MeshClient) {
    client.svc.get_ref().shared.cache.clear();
}

/// Where a gateway received the request it forwards: routing then follows the
/// VirtualServices bound to `gateway` (Istio's gateway routes), for the server `port` and
/// `scheme` it came in on, and a request no bound VirtualService routes gets 404.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GatewayRoute<'a> {
    pub(crate) gateway: &'a str,
    pub(crate) port: u16,
    pub(crate) scheme: &'a str,
    /// The downstream connection (its addresses and SNI, for header operators).
    pub(crate) conn: Option<&'a crate::inbound::ConnectionInfo>,
    /// The client's address as the gateway trusts it (from `X-Forwarded-For` past
    /// `numTrustedProxies`, else the connection's peer): Envoy's stream remote address,
    /// which `useSourceIp` hashes.
    pub(crate) client_ip: Option<std::net::IpAddr>,
    /// The TLS certificate names of the downstream connection, for header operators.
    pub(crate) tls_names: Option<&'a DownstreamTlsNames>,
}

/// What `%DOWNSTREAM_PEER_URI_SAN%`, `%DOWNSTREAM_LOCAL_URI_SAN%` and
/// `%DOWNSTREAM_PEER_SUBJECT%` expand to on a gateway's TLS connection (computed once per
/// connection; `None`: no such certificate, or no such name in it).
#[derive(Debug, Clone, Default)]
pub(crate) struct DownstreamTlsNames {
    /// The client certificate's URI SANs, `,`-separated.
    pub(crate) peer_uri_san: Option<Box<str>>,
    /// The URI SANs of the gateway's own certificate, `,`-separated.
    pub(crate) local_uri_san: Option<Box<str>>,
    /// The client certificate's subject, RFC 2253.
    pub(crate) peer_subject: Option<Box<str>>,
}

/// This host's name, for `%HOSTNAME%`.
fn hostname() -> Option<&'static str> {
    static NAME: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    });
    NAME.as_deref()
}

/// What Envoy's header operators see for a request: the downstream is a gateway's client
/// or, for a mesh client, its own workload.
fn header_context<'a>(
    shared: &ClientShared,
    via: Option<GatewayRoute<'a>>,
    version: http::Version,
    request: &'a http::HeaderMap,
    response: Option<&'a http::HeaderMap>,
    cluster: Option<&'a str>,
    upstream: Option<&UpstreamAddrs>,
) -> HeaderContext<'a> {
    let conn = via.and_then(|v| v.conn);
    let tls = via.and_then(|v| v.tls_names);
    HeaderContext {
        downstream_remote: match conn {
            Some(c) => c.remote_addr(),
            None => shared.source,
        },
        downstream_local: conn.and_then(|c| c.local_addr()),
        hostname: hostname(),
        protocol: Some(match version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        }),
        request_headers: Some(request),
        response_headers: response,
        requested_server_name: conn.and_then(|c| c.sni()),
        upstream_cluster: cluster,
        upstream_remote: upstream.and_then(|u| u.remote),
        upstream_host: upstream.and_then(|u| u.host),
        downstream_peer_uri_san: tls.and_then(|t| t.peer_uri_san.as_deref()),
        downstream_local_uri_san: tls.and_then(|t| t.local_uri_san.as_deref()),
        downstream_peer_subject: tls.and_then(|t| t.peer_subject.as_deref()),
        ..HeaderContext::default()
    }
}

/// The upstream of an answer, for `%UPSTREAM_HOST%` and `%UPSTREAM_REMOTE_ADDRESS%`.
#[derive(Clone, Copy, Debug, Default)]
struct UpstreamAddrs {
    /// The endpoint picked (also after a failed connect).
    host: Option<std::net::SocketAddr>,
    /// The endpoint a connection was made to.
    remote: Option<std::net::SocketAddr>,
}

impl UpstreamAddrs {
    /// From the answer's [`UpstreamInfo`] (the last attempt's endpoint). Envoy (1.31+)
    /// reads `%UPSTREAM_REMOTE_ADDRESS%` from the upstream connection: none after a
    /// connect failure (`UF`) or an overflow (`UO`), where only `%UPSTREAM_HOST%` is known.
    fn of(resp: &Response<MeshBody>) -> Option<Self> {
        let host = resp.extensions().get::<UpstreamInfo>()?.host?;
        let flags = resp
            .extensions()
            .get::<ResponseFlags>()
            .copied()
            .unwrap_or_default();
        let connected = !flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE)
            && !flags.contains(ResponseFlags::UPSTREAM_OVERFLOW);
        Some(UpstreamAddrs {
            host: Some(host),
            remote: connected.then_some(host),
        })
    }
}

/// Forwards `req` as the ingress gateway whose client `client` is (its workload, pools,
/// credentials), routed by the gateway-bound VirtualServices: the whole outbound path
/// (balancing, retries, timeouts, faults, mirrors, outlier detection, pooled TLS
/// origination), with the trace headers and `x-request-id` the gateway's Envoy writes. The
/// metrics context rides in the response extensions, for the gateway's metrics layer.
pub(crate) async fn forward_from_gateway<B>(
    client: &MeshClient,
    mut req: Request<B>,
    via: GatewayRoute<'_>,
) -> Response<MeshBody>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let grpc = is_grpc(req.headers());
    crate::trace::prepare_request(client.svc.trace_layer(), &mut req);
    let shared = &client.svc.get_ref().shared;
    match handle(shared, &MeshTransport, req, false, Some(via)).await {
        Ok((resp, _)) => resp,
        // the gateway gives every request an authority: this is not expected
        Err(e) => {
            tracing::debug!(error = %e, "gateway: request not forwarded");
            local(LocalReply::NoRoute, grpc)
        }
    }
}

/// Routes and sends `req`. The metrics context of the answer (set on every answer once
/// the Host is known: local replies carry the destination service too, as istio_stats
/// reads it from the route's cluster or the Host header) is returned when the caller
/// records metrics in place (`metered`), else put in the response extensions for a
/// [`MetricsLayer`] above.
async fn handle<T, B>(
    shared: &Arc<ClientShared>,
    transport: &T,
    req: Request<B>,
    metered: bool,
    via: Option<GatewayRoute<'_>>,
) -> Result<(Response<MeshBody>, Option<MetricsContext>), OutboundError>
where
    T: Sender,
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let from_gateway = via.is_some();
    let head = req.method() == http::Method::HEAD;
    let (mut resp, ctx) = if !from_gateway && to_grpc_web_port(shared, &req) {
        // boxed: a rare path, kept out of every request's future
        crate::box_in_place(|| route_grpc_web(shared, transport, req)).await?
    } else {
        route_and_send(shared, transport, req, via).await?
    };
    // a local reply (only those carry details) to a HEAD request is its headers alone, as
    // Envoy's `sendLocalReply` sends it, with the length of the body it would have had
    if head
        && resp
            .extensions()
            .get::<crate::envoy::ResponseCodeDetails>()
            .is_some()
    {
        if let Some(n) = resp.body().size_hint().exact() {
            resp.headers_mut()
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| HeaderValue::from(n));
        }
        *resp.body_mut() = empty();
    }
    // the outbound listener's connection manager: `server` on every response, local
    // replies too (Envoy's OVERWRITE with istiod's unset `server_name`: `envoy`); a
    // gateway writes its own, a TCP proxy none
    // and `date` on one that has none (a local reply, or an upstream that sent none)
    if !from_gateway && resp.extensions().get::<OpaqueHop>().is_none() {
        if let Some(v) = &shared.server_header {
            resp.headers_mut().insert(SERVER, v.clone());
        }
        if !resp.headers().contains_key(http::header::DATE) {
            resp.headers_mut()
                .insert(http::header::DATE, crate::envoy::date_header());
        }
    }
    if metered {
        return Ok((resp, ctx));
    }
    if let Some(c) = ctx {
        resp.extensions_mut().insert(c);
    }
    Ok((resp, None))
}

/// Whether `req` is gRPC-Web to a port a sidecar's outbound listener would give Envoy's
/// `grpc_web` filter: istiod adds it to the outbound listener of a port whose protocol is
/// `GRPC-WEB` (`buildSidecarOutboundHTTPListenerOpts`): here the port of the service the
/// request's host names (as the route lookup resolves it) declaring that protocol. Only a
/// request with a gRPC-Web content type looks further than its `content-type`.
fn to_grpc_web_port<B>(shared: &ClientShared, req: &Request<B>) -> bool {
    if !req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| crate::grpc_web::is_web_type(v.as_bytes()))
    {
        return false;
    }
    let Some(authority) = request_authority(req.uri(), req.headers(), req.extensions(), true)
    else {
        return false;
    };
    let snap = shared.mesh.load();
    let ns = shared.workload.namespace.as_str();
    let host = authority.host();
    let port =
        port_of(authority.as_str()).unwrap_or_else(|| unwritten_port(&snap, host, ns, req.uri()));
    snap.resolve_service(host, ns)
        .and_then(|s| s.port(port))
        .is_some_and(|p| p.protocol.eq_ignore_ascii_case("GRPC-WEB"))
}

/// Marks a request the mesh sends on its own behalf to an address it chose, carrying
/// another request's `Host` (an ext_authz check): routed by its URI, as Envoy's ext_authz
/// client sends to its cluster directly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RouteByUri;

/// The authority a request is routed by: its `Host` header's host when it names another
/// host than the URI (a sidecar's virtual hosts match the `Host`, whatever address the
/// application dialed), with the URI's port (the dialed port's listener; none written:
/// the scheme's); else the URI's, else the `Host`'s. Not for `https` (a sidecar cannot
/// read a `Host` inside the application's TLS), a gateway's requests (`use_host` false:
/// Envoy's codec takes an absolute URL's authority) or a [`RouteByUri`] request. Where
/// the request goes on a passthrough stays the URI's (see `route_and_send`).
fn request_authority(
    uri: &Uri,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
    use_host: bool,
) -> Option<Authority> {
    let Some(a) = uri.authority() else {
        return headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse().ok());
    };
    if !use_host || uri.scheme() == Some(&Scheme::HTTPS) {
        return Some(a.clone());
    }
    // (compared as written first: no parse for a `Host` naming the URI's host)
    let Some(host) = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| mesh_core::names::split_authority(h).0)
        .filter(|h| !h.eq_ignore_ascii_case(a.host()) && !h.is_empty())
    else {
        return Some(a.clone());
    };
    if extensions.get::<RouteByUri>().is_some() {
        return Some(a.clone());
    }
    let written = match a.port_u16() {
        Some(port) => format!("{}:{port}", bracketed(host)),
        None => bracketed(host).into_owned(),
    };
    written.parse().ok().or_else(|| Some(a.clone()))
}

/// `host` as an authority writes it: an IPv6 address in brackets.
fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// The port of a request whose authority writes none: the service's only port, else the
/// scheme's.
fn unwritten_port(snap: &mesh_core::snapshot::Snapshot, host: &str, ns: &str, uri: &Uri) -> u16 {
    snap.default_port(host, ns)
        .unwrap_or(if uri.scheme() == Some(&Scheme::HTTPS) {
            443
        } else {
            80
        })
}

/// [`route_and_send`] behind Envoy's `grpc_web` filter (see [`to_grpc_web_port`]): the
/// application's gRPC-Web request goes on as gRPC, routed as such, and the gRPC answer
/// comes back as gRPC-Web, its trailers in its body. A `-text` body is read whole and
/// decoded first (up to [`MAX_TEXT_BODY`](crate::grpc_web::MAX_TEXT_BODY), 413 past it), so
/// that one that is not base64 gets Envoy's 400 before anything is sent.
async fn route_grpc_web<T, B>(
    shared: &Arc<ClientShared>,
    transport: &T,
    req: Request<B>,
) -> Result<(Response<MeshBody>, Option<MetricsContext>), OutboundError>
where
    T: Sender,
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let Some((answer, text)) = crate::grpc_web::request_headers(&mut parts.headers) else {
        return route_and_send(shared, transport, Request::from_parts(parts, body), None).await;
    };
    let body = if text {
        let refused = |status, message| {
            let authority = parts.uri.authority().map_or("", |a| a.as_str());
            let resp: Response<MeshBody> = crate::grpc_web::refusal(status, message, answer);
            Ok((resp, host_context(authority)))
        };
        let limited = http_body_util::Limited::new(body, crate::grpc_web::MAX_TEXT_BODY);
        let text = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return refused(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large")
            }
            Err(_) => return refused(StatusCode::BAD_REQUEST, crate::grpc_web::BAD_BASE64),
        };
        match crate::grpc_web::decode_text(&text) {
            Some(decoded) => http_body_util::Either::Right(Full::new(Bytes::from(decoded))),
            None => return refused(StatusCode::BAD_REQUEST, crate::grpc_web::BAD_BASE64),
        }
    } else {
        http_body_util::Either::Left(body)
    };
    let req = Request::from_parts(parts, body);
    let (resp, ctx) = route_and_send(shared, transport, req, None).await?;
    let resp = crate::grpc_web::response(resp, answer).map(BodyExt::boxed);
    Ok((resp, ctx))
}

/// A route's redirect or direct response to a gRPC request, as Envoy's router sends it
/// (`sendLocalReply`, which answers a gRPC request in gRPC form): 200, `grpc-status`
/// mapped from the HTTP status (`httpToGrpcStatus`), the body as `grpc-message`.
fn grpc_local_reply(status: StatusCode, body: &[u8]) -> Response<MeshBody> {
    let mut r = Response::new(empty());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert(
        "grpc-status",
        HeaderValue::from(crate::envoy::http_to_grpc_status(status.as_u16())),
    );
    if !body.is_empty() {
        let text = String::from_utf8_lossy(body);
        if let Ok(v) = HeaderValue::from_str(&crate::envoy::grpc_percent_encode(&text)) {
            h.insert("grpc-message", v);
        }
    }
    r
}

/// `x-envoy-attempt-count`: which attempt an upstream request is (1 the first).
const X_ENVOY_ATTEMPT_COUNT: http::HeaderName =
    http::HeaderName::from_static("x-envoy-attempt-count");
/// `x-envoy-original-path`: the path before a rewrite.
const X_ENVOY_ORIGINAL_PATH: http::HeaderName =
    http::HeaderName::from_static("x-envoy-original-path");
/// Marks the answer to a request a sidecar would have proxied as a connection (its service
/// declares the port TCP, or a `tls` route took it): no connection manager wrote on it.
#[derive(Clone, Copy, Debug)]
struct OpaqueHop;

/// `x-envoy-upstream-service-time`: milliseconds from the request to the upstream's answer.
const X_ENVOY_UPSTREAM_SERVICE_TIME: http::HeaderName =
    http::HeaderName::from_static("x-envoy-upstream-service-time");

/// `n` as a header value, without allocating for the small numbers most attempt counts
/// and loopback service times are.
fn small_number(n: u64) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match usize::try_from(n).ok().and_then(|i| DIGITS.get(i)) {
        Some(d) => HeaderValue::from_static(d),
        None => HeaderValue::from(n),
    }
}

async fn route_and_send<T, B>(
    shared: &Arc<ClientShared>,
    transport: &T,
    req: Request<B>,
    via: Option<GatewayRoute<'_>>,
) -> Result<(Response<MeshBody>, Option<MetricsContext>), OutboundError>
where
    T: Sender,
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let snap = shared.mesh.snapshot();
    let ns = shared.workload.namespace.as_str();
    let mut req = req;
    if via.is_none() {
        // the sidecar's outbound connection manager, as every one istiod builds, normalizes
        // the path (MeshConfig `pathNormalization`, BASE by default) and refuses a method
        // its codec would, before routing: the route matches, and the upstream receives,
        // the normalized path (a gateway has done this at its edge)
        let mode = snap.options().path_normalization;
        if let Err(refused) = crate::envoy::sanitize_request::<_, Bytes>(&mut req, mode) {
            return Ok((refused.map(full), None));
        }
    }
    let (mut parts, body) = req.into_parts();
    let grpc = is_grpc(&parts.headers);
    // HTTP/1.1 upgrades as Istio configures Envoy: websocket allowed, h2c dropped, any other
    // refused (one header lookup when the request has no `Connection`)
    let upgrade = match upgrade_of(&parts.headers) {
        None => false,
        Some(UpgradeRequest::WebSocket) => true,
        Some(UpgradeRequest::H2c) => {
            strip_h2c_upgrade(&mut parts.headers);
            false
        }
        Some(UpgradeRequest::Other) => return Ok((upgrade_failed(), None)),
    };
    // a sidecar's outbound listener leaves Envoy's `forward_client_cert_details` at its
    // default, SANITIZE: the application's own `x-forwarded-client-cert` never reaches
    // the next hop, whose server sidecar appends the caller's verified certificate (a
    // gateway sets its own before routing)
    if via.is_none() {
        parts.headers.remove(crate::gateway::xfcc::XFCC);
        // nor do the application's `x-envoy-retry-on`, `x-envoy-upstream-rq-timeout-ms`
        // and the like: the listener takes its request for external and removes them (a
        // gateway has removed them at the edge)
        crate::envoy::clean_control_headers(&mut parts.headers);
    }
    // x-forwarded-proto: the connection manager writes it when absent, before routing
    // (`mutateRequestHeaders`), from the downstream connection, plaintext from the
    // application to its sidecar: `http` (a gateway has written its own; an `https`
    // request is the application's TLS, which a sidecar passes through without reading)
    let wrote_forwarded_proto = via.is_none()
        && parts.uri.scheme() != Some(&http::uri::Scheme::HTTPS)
        && match parts.headers.entry(X_FORWARDED_PROTO) {
            http::header::Entry::Vacant(e) => {
                e.insert(HeaderValue::from_static("http"));
                true
            }
            http::header::Entry::Occupied(_) => false,
        };
    let authority = request_authority(&parts.uri, &parts.headers, &parts.extensions, via.is_none())
        .ok_or(OutboundError::NoAuthority)?;
    // the port written in the authority (parsed once)
    let written_port = port_of(authority.as_str());
    let port = match via.map(|v| v.port).or(written_port) {
        Some(p) => p,
        None => unwritten_port(&snap, authority.host(), ns, &parts.uri),
    };
    let scheme = match via {
        Some(v) => v.scheme,
        None => parts.uri.scheme_str().unwrap_or("http"),
    };
    // the client's Sidecar (none for a gateway), looked up once for routing and imports
    let sidecar = match via {
        None => snap.sidecar_for(ns, &shared.workload.labels),
        Some(_) => None,
    };
    let attrs = HttpRequestAttrs {
        client_namespace: ns,
        source_labels: &shared.workload.labels,
        gateway: via.map(|v| v.gateway),
        authority: authority.as_str(),
        port,
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        scheme,
        headers: &parts.headers,
        // the JWT the gateway verified (its authorization put it in the extensions), for
        // claim based routing: looked up only for a gateway, mesh clients pay nothing
        request_auth: match via {
            Some(_) => parts.extensions.get::<mesh_core::authz::RequestAuth>(),
            None => None,
        },
    };
    let decision =
        snap.routes()
            .route_http_scoped(snap.registry(), snap.options(), &attrs, sidecar);
    if via.is_some() && decision.virtual_service.is_none() {
        // a gateway routes only by the VirtualServices bound to it
        return Ok((
            local(LocalReply::NoRoute, grpc),
            host_context(authority.as_str()),
        ));
    }
    let mut flags = ResponseFlags::NONE;
    match decision.outcome {
        RouteOutcome::Forward => {}
        RouteOutcome::NoRoute => {
            return Ok((
                local(LocalReply::NoRoute, grpc),
                host_context(authority.as_str()),
            ))
        }
        RouteOutcome::Redirect(r) => {
            let location = r.location(
                scheme,
                authority.as_str(),
                port,
                parts.uri.path(),
                parts.uri.query(),
                decision.prefix_len,
            );
            let code = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            let mut resp = if grpc {
                grpc_local_reply(code, &[])
            } else {
                let mut resp = Response::new(empty());
                *resp.status_mut() = code;
                resp
            };
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(LOCATION, v);
            }
            resp.extensions_mut().insert(LocalOrigin);
            let ops = RouteOps::route_only(decision.action().map(|a| &a.headers));
            finalize_response(shared, via, &parts, ops, || None, &mut resp);
            direct_response_details(&mut resp);
            return Ok((resp, host_context(authority.as_str())));
        }
        RouteOutcome::DirectResponse(d) => {
            let code = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
            let mut resp = match &d.body {
                _ if grpc => grpc_local_reply(code, d.body.as_deref().unwrap_or_default()),
                // (Envoy's `sendLocalReply`: `text/plain` only with a body to describe)
                Some(b) if !b.is_empty() => {
                    let mut r = Response::new(full(Bytes::copy_from_slice(b)));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    r
                }
                _ => Response::new(empty()),
            };
            if !grpc {
                *resp.status_mut() = code;
            }
            // Envoy's router: a direct response of 201 or 3xx says where, the request's own
            // URL (`newUri` without a redirect: its scheme, Host as sent, path and query)
            if d.status == 201 || (300..400).contains(&d.status) {
                let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let url = format!("{scheme}://{}{pq}", authority.as_str());
                if let Ok(v) = HeaderValue::from_str(&url) {
                    resp.headers_mut().insert(LOCATION, v);
                }
            }
            resp.extensions_mut().insert(LocalOrigin);
            let ops = RouteOps::route_only(decision.action().map(|a| &a.headers));
            finalize_response(shared, via, &parts, ops, || None, &mut resp);
            direct_response_details(&mut resp);
            return Ok((resp, host_context(authority.as_str())));
        }
    }
    let action = decision.action();

    // Envoy picks the weighted cluster with the route, before the fault filter runs: its
    // response headers apply to a fault abort too
    let picked = decision.pick(rand::random::<u64>());
    let route_ops = action.map(|a| &a.headers);
    let dest_ops = picked.and_then(|wd| wd.headers.as_deref());
    let ops = RouteOps {
        route: route_ops,
        dest: dest_ops,
        weighted: action.is_some_and(|a| a.weighted),
    };

    // fault injection: delay, then abort
    if let Some(f) = action.and_then(|a| a.fault.as_ref()) {
        if let Some((delay, share)) = f.delay
            && share.fires(rand::random::<u64>())
        {
            tokio::time::sleep(delay).await;
            flags.insert(ResponseFlags::DELAY_INJECTED);
        }
        if let Some((status, share)) = f.abort
            && share.fires(rand::random::<u64>())
        {
            let reply = match status {
                AbortStatus::Http(s) => LocalReply::FaultAbort {
                    http_status: StatusCode::from_u16(s).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    grpc_status: None,
                },
                AbortStatus::Grpc(c) => LocalReply::FaultAbort {
                    http_status: StatusCode::OK,
                    grpc_status: Some(u32::from(c)),
                },
            };
            // Envoy's fault filter sends `grpcStatus` as a local reply of 200 with that
            // status: in gRPC form for a gRPC request only (`sendLocalReply` uses the
            // status only then); any other request gets a plain 200
            let mut resp = local(reply, grpc);
            if !flags.is_empty() {
                add_flags(&mut resp, flags);
            }
            // the cluster the route chose (for `%UPSTREAM_CLUSTER%`), if it exists
            let exact = |wd: &mesh_core::route::WeightedDestination| {
                snap.registry()
                    .service(&wd.host, ns)
                    .filter(|s| *s.hostname == *wd.host)
            };
            let cluster = || {
                let wd = picked?;
                let svc = exact(wd)?;
                Some(wd.cluster_name(dest_port_of(wd, svc, port)))
            };
            finalize_response(shared, via, &parts, ops, cluster, &mut resp);
            // the route's cluster names the destination service (HCM sets the
            // cluster info with the route, before the fault filter runs)
            let ctx = match picked.and_then(exact) {
                Some(svc) => Some(service_context(dest::service_info(svc))),
                None => host_context(authority.as_str()),
            };
            return Ok((resp, ctx));
        }
    }

    // CORS, as Envoy's filter after fault injection (istiod's filter order: fault, CORS,
    // router) and before the router: a preflight is answered here; an answer to a request
    // from an allowed origin, the destination's or one the router makes, gets the CORS
    // headers (a fault's abort stops the request before CORS sees it: it gets none).
    let mut cors_origin = None;
    if let Some(c) = action.and_then(|a| a.cors.as_deref()) {
        match cors::check(c, &parts.method, &parts.headers) {
            cors::Step::Reply(resp) => return Ok((resp, host_context(authority.as_str()))),
            cors::Step::Allowed(origin) => cors_origin = Some((c, origin)),
            cors::Step::Pass => {}
        }
    }
    let with_cors = |mut resp: Response<MeshBody>| {
        if let Some((c, origin)) = &cors_origin {
            cors::set_response_headers(c, origin, resp.headers_mut());
        }
        resp
    };

    // a route to a cluster Envoy does not have: 503 NC, with the route's response headers
    // (Envoy's local replies go through the route's `finalizeResponseHeaders`)
    let cluster_not_found = |parts: &http::request::Parts| {
        let mut resp = local(LocalReply::ClusterNotFound, grpc);
        finalize_response(shared, via, parts, ops, || None, &mut resp);
        Ok((with_cors(resp), host_context(authority.as_str())))
    };
    let Some(wd) = picked else {
        return cluster_not_found(&parts);
    };
    // with a Sidecar, the copy of a duplicated host its egress imports
    let service = snap
        .registry()
        .service_for_client(&wd.host, ns, sidecar, wd.port.unwrap_or(port))
        // a destination a VirtualService names is a cluster of that very host: a wildcard
        // ServiceEntry (`*.example.com`) has no cluster for `api.example.com` (istio#49482)
        .filter(|s| decision.virtual_service.is_none() || *s.hostname == *wd.host);
    // a destination naming an `ExternalName` alias of a service the client knows is that
    // service's cluster (istiod's `GetDestinationCluster` in alias mode: an alias has none)
    let service = service.map(|s| {
        snap.registry()
            .alias_target(s, ns, sidecar, wd.port.unwrap_or(port))
            .unwrap_or(s)
    });
    // What Envoy does with traffic it has no cluster for, when no route named one: under
    // ALLOW_ANY (Istio's default) its passthrough route sends it to the original
    // destination, here the request's own host and port, or to the client Sidecar's
    // `egressProxy`; under REGISTRY_ONLY, 502. (A gateway routes by VirtualServices only.)
    let allow_any = via.is_none()
        && sidecar
            .and_then(|sc| sc.outbound_traffic_policy())
            .unwrap_or(snap.options().outbound_traffic_policy)
            != OutboundMode::RegistryOnly;
    let egress_proxy = sidecar
        .and_then(|sc| sc.egress_proxy())
        .filter(|_| allow_any);
    let unrouted = |parts: &http::request::Parts| {
        if decision.virtual_service.is_some() {
            return Some(cluster_not_found(parts));
        }
        if allow_any {
            return None;
        }
        let (resp, ctx) = black_hole(grpc, authority.as_str());
        Some(Ok((with_cors(resp), ctx)))
    };
    let mut passthrough = false;
    let service = match service {
        Some(s) => s,
        // not in the registry (Envoy: cluster not found, black hole or passthrough)
        None => match unrouted(&parts) {
            Some(answer) => return answer,
            None => {
                passthrough = true;
                dest::passthrough_service()
            }
        },
    };
    // The service's default route (no VirtualService) exists only on the ports the service
    // declares (istiod builds its virtual host on those listeners): a port written in the
    // request stays the port. Without one (`http://reviews/`), a single-port service's
    // port is taken, a convenience of the in-process client (docs: where we differ).
    let explicit_port = via.is_none() && written_port.is_some();
    let dest_port = if decision.virtual_service.is_none() && wd.port.is_none() && explicit_port {
        port
    } else {
        dest_port_of(wd, service, port)
    };
    // Istio builds a cluster `outbound|<port>||<host>` per declared service port only: a
    // port the service does not declare (named by the route, or the request's own port on a
    // multi-port service) is a cluster Envoy does not have: 503 NC [spec §2.4]. (A service
    // that declares no port at all takes any.)
    // A service the client's Sidecar does not import is no cluster for Envoy either:
    // black-holed under REGISTRY_ONLY, passed through under ALLOW_ANY. (Sidecars do not
    // apply to gateways.)
    let no_cluster = !passthrough
        && ((!service.ports.is_empty() && service.port(dest_port).is_none())
            || sidecar.is_some_and(|sc| {
                !sc.imports(ns, &service.namespace, &service.hostname, dest_port)
            }));
    let (service, dest_port) = if no_cluster {
        if let Some(answer) = unrouted(&parts) {
            return answer;
        }
        passthrough = true;
        (dest::passthrough_service(), port)
    } else {
        (service, dest_port)
    };
    // The Sidecar's `egressProxy` takes what would pass through (istiod's catch-all route
    // names its cluster, `outbound|<port>|<subset>|<host>`, instead of PassthroughCluster):
    // the request keeps its Host. A proxy the registry does not have, the Sidecar does not
    // import, or whose port its service does not declare, is a cluster Envoy does not
    // have: 503 NC.
    let egress_wd;
    let mut egressed = false;
    let (service, dest_port, wd) = match egress_proxy.filter(|_| passthrough) {
        None => (service, dest_port, wd),
        Some(ep) => {
            let (target, found) = egress_target(&snap, ns, sidecar, ep);
            egress_wd = target;
            let Some((svc, p)) = found else {
                return cluster_not_found(&parts);
            };
            passthrough = false;
            egressed = true;
            (svc, p, &egress_wd)
        }
    };
    let https = via.is_none() && parts.uri.scheme() == Some(&Scheme::HTTPS);
    // the original destination is the port the application wrote, else its scheme's (not
    // the single-port service's, a convenience of routing only)
    let (port, dest_port) = if passthrough {
        let p = written_port.unwrap_or(if https { 443 } else { 80 });
        (p, p)
    } else {
        (port, dest_port)
    };
    // the host a route's `rewrite.authority` sets is the one Envoy's auto SNI and SAN
    // validation read (`getRequestHostValue` after the route's host rewrite); istiod
    // makes a `host` (or `:authority`) set by the route's request headers, or by its only
    // destination's, the same host rewrite
    fn header_host(ops: Option<&mesh_core::route::HeaderOps>) -> Option<&str> {
        ops.and_then(|o| o.request.set.iter().find(|(n, _)| n == http::header::HOST))
            .and_then(|(_, v)| v.to_str().ok())
    }
    let rewritten = action
        .and_then(|a| a.rewrite.as_ref())
        .and_then(|rw| rw.authority.as_deref())
        .or_else(|| header_host(action.map(|a| &a.headers)))
        .or_else(|| {
            header_host(wd.headers.as_deref()).filter(|_| !action.is_some_and(|a| a.weighted))
        })
        .and_then(|a| a.parse::<Authority>().ok());
    // where a passthrough, NONE or headless destination connects: the address the
    // application dialed (Envoy's ORIGINAL_DST), whatever `Host` or rewrite routed it
    let dialed = dest::RequestTarget {
        authority: parts.uri.authority().unwrap_or(&authority),
        port,
        https,
    };
    let target = dest::RequestTarget {
        authority: rewritten.as_ref().unwrap_or(&authority),
        port,
        https,
    };
    let key = DestKey::for_request(service, wd.subset.clone(), dest_port, dialed);
    let mut dest = shared.cache.get(&snap, shared, service, &key);
    // TLS origination named by the request's host (auto SNI) when it is another name of
    // the service than its own (a short name): a destination of its own. Only for the
    // application's own requests: at a gateway the Host is the client's to choose, and
    // every name would hold a destination (connections, limits) of its own
    if via.is_none()
        && key.request.is_none()
        && dest.names_request_host()
        && let Some(k) = key.naming_request_host(target)
    {
        dest = shared.cache.get(&snap, shared, service, &k);
    }
    if !dest.subset_found() {
        return cluster_not_found(&parts);
    }
    // Istio tunnels an application's own TLS to the egress proxy inside the proxy's TLS;
    // the mesh client cannot nest the two, and would otherwise drop the application's
    // end-to-end TLS: refused (503 NC) rather than sent without it
    // So does a `tls` route's: the application's TLS to a destination that is another host
    // (an egress gateway) would be replaced by the DestinationRule's.
    if (egressed || decision.tls_route.is_some())
        && https
        && dest
            .tls_settings
            .as_ref()
            .is_some_and(|t| t.mode != mesh_core::model::ClientTlsMode::Disable)
    {
        tracing::warn!(host = %authority, destination = %wd.host,
            "an https request through an egressProxy or a tls route whose destination's DestinationRule sets TLS is refused: the application's TLS cannot be tunneled");
        return cluster_not_found(&parts);
    }

    // consistent hashing by source IP and generated cookies: a gateway's downstream
    // connection (Envoy's), else the client workload itself
    let conn_addrs = match via.and_then(|v| v.conn) {
        Some(c) => c.addrs(),
        None => ConnectionAddrs {
            remote: Some(shared.hash_source),
            local: None,
        },
    };
    // Envoy's router picks the host (its hash policy reading the request as it came)
    // before `finalizeRequestHeaders` applies the route's header operations and rewrites
    let request_hash = match dest.hash_key.as_ref() {
        Some(k) if dest.lb.algorithm().is_consistent_hash() => {
            // (`useSourceIp` hashes the stream's remote address, which a gateway takes from
            // `X-Forwarded-For`; a generated cookie, the connection's own addresses)
            let addrs = match (k, via.and_then(|v| v.client_ip)) {
                (crate::lb::HashKey::SourceIp, Some(ip)) => ConnectionAddrs {
                    remote: Some(std::net::SocketAddr::new(ip, 0)),
                    ..conn_addrs
                },
                _ => conn_addrs,
            };
            k.hash(&parts.headers, &parts.uri, addrs)
        }
        _ => crate::lb::RequestHash::default(),
    };

    // the passthrough route (to the original destination or the egress proxy) has no
    // retry policy
    let policy: &RetryPolicy = if passthrough || egressed {
        RetryPolicy::disabled()
    } else {
        decision.retries()
    };
    // Envoy's router, before the route's header operations (`finalizeRequestHeaders`): the
    // route's timeouts and a gRPC caller's deadline (`finalTimeout`), then what it writes
    // on the first attempt, the attempt count (istiod's `include_request_attempt_count`) and
    // the time the upstream has (`setTimeoutHeaders`); a retry overwrites them in its copy
    // (the same names: the copy's map does not grow)
    // A connection to a sidecar (a port the service declares TCP, or the application's TLS
    // a `tls` route took): its TCP proxy reads no HTTP, so no deadline and none of the
    // router's headers, on the request or the answer
    let opaque = decision.opaque || decision.tls_route.is_some();
    if opaque && wrote_forwarded_proto {
        parts.headers.remove(X_FORWARDED_PROTO);
    }
    let timeouts = if opaque {
        crate::envoy::Timeouts::default()
    } else {
        crate::envoy::Timeouts::for_request(
            decision.timeout(),
            policy.per_try_timeout,
            grpc,
            &parts.headers,
        )
    };
    let timed = timeouts != crate::envoy::Timeouts::default();
    let proxy_headers = &snap.options().proxy_headers;
    if proxy_headers.attempt_count && !opaque {
        parts
            .headers
            .insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from_static("1"));
    }
    if timed {
        timeouts.write_headers(
            std::time::Duration::ZERO,
            grpc,
            proxy_headers.envoy_debug_headers,
            &mut parts.headers,
        );
    }

    // request rewriting: the route's and the destination's header ops in Envoy's order
    // (RouteOps), then the rewrite
    if ops.any(|o| o.request.has_formatted()) {
        // Envoy's `%COMMAND%` operators, computed from the request as it came
        let cluster = if passthrough {
            dest::PASSTHROUGH_CLUSTER.to_owned()
        } else {
            wd.cluster_name(dest_port)
        };
        let before = parts.headers.clone();
        // (no upstream yet: Envoy evaluates request headers before it picks a host)
        let cx = header_context(
            shared,
            via,
            parts.version,
            &before,
            None,
            Some(&cluster),
            None,
        );
        ops.request(&mut parts.headers, &cx);
    } else {
        ops.request(&mut parts.headers, &HeaderContext::default());
    }
    let mut host_value = parts.headers.get(HOST).cloned().unwrap_or_else(|| {
        HeaderValue::from_str(authority.as_str()).unwrap_or(HeaderValue::from_static(""))
    });
    let mut path_and_query: PathAndQuery = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if let Some(rw) = action.and_then(|a| a.rewrite.as_ref()) {
        if let Some(p) = rw.path(parts.uri.path(), decision.prefix_len) {
            let pq = match parts.uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            if let Ok(v) = pq.parse::<PathAndQuery>() {
                // Envoy's `finalizePathHeader`: the path as it came, for the upstream
                // (a debug header: not with `envoyDebugHeaders.disabled`)
                if proxy_headers.envoy_debug_headers
                    && let Ok(orig) = HeaderValue::from_str(path_and_query.as_str())
                {
                    parts.headers.insert(X_ENVOY_ORIGINAL_PATH, orig);
                }
                path_and_query = v;
            }
        }
        if let Some(a) = &rw.authority
            && let Ok(v) = HeaderValue::from_str(a)
        {
            host_value = v;
        }
    }
    parts.headers.insert(HOST, host_value);
    let mut body = read_body(body, shared.options.retry_buffer_limit).await?;
    // Envoy's timeouts run from the end of the downstream request
    let started = tokio::time::Instant::now();

    // mirrors: fire and forget; never an upgrade (Envoy shadows a request once it has ended,
    // which an upgraded stream does only when it closes). A buffered body is sent to each
    // whole; a streamed one is copied to them as the route's upstream reads it (Envoy's
    // streaming shadows)
    // (and none when the route's own destination has no endpoint to take the request:
    // Envoy's router answers `no healthy upstream` before it looks at its shadows)
    if let (Some(a), false) = (action, upgrade)
        && !a.mirrors.is_empty()
        && dest.lb.can_pick()
    {
        let mut targets = Vec::new();
        // one draw for all the mirrors, as Envoy tests each shadow policy against the
        // stream's id: two 50 % mirrors fire together or not at all
        let draw = rand::random::<u64>();
        for m in a.mirrors.iter() {
            if !m.share.fires(draw) {
                continue;
            }
            // (a cluster of that very host: a wildcard ServiceEntry is none)
            let Some(msvc) = snap
                .registry()
                .service(&m.destination.host, ns)
                .filter(|s| *s.hostname == *m.destination.host)
            else {
                continue;
            };
            // (istiod's `GetDestinationCluster`: the mirror's port, else its service's only
            // one, else the listener's, the request's port)
            let mport = m.destination.port.unwrap_or(match msvc.ports.as_slice() {
                [p] => p.number,
                _ => port,
            });
            if !msvc.ports.is_empty() && msvc.port(mport).is_none() {
                continue; // no such cluster: Envoy shadows nothing
            }
            let mkey = DestKey::new(
                Arc::clone(&msvc.hostname),
                m.destination.subset.clone(),
                mport,
            );
            let mdest = shared.cache.get(&snap, shared, msvc, &mkey);
            let Ok(guard) = mdest.lb.pick(None) else {
                continue;
            };
            targets.push((mdest, guard));
        }
        let bodies: Vec<MeshBody> = match &mut body {
            ReqBody::Buffered(bytes) => targets.iter().map(|_| full(bytes.clone())).collect(),
            ReqBody::Streaming(streamed, _) => match streamed.take() {
                Some(b) if !targets.is_empty() => {
                    let limit = shared.options.retry_buffer_limit;
                    let (main, copies) = mirror::tee(b, targets.len(), limit);
                    *streamed = Some(main);
                    copies
                }
                taken => {
                    *streamed = taken;
                    Vec::new()
                }
            },
            // (kept for retries only after the mirrors' copies are set up, below)
            ReqBody::Replayed(..) => Vec::new(),
        };
        for ((mdest, guard), mbody) in targets.into_iter().zip(bodies) {
            let mut mreq = Request::new(mbody);
            *mreq.method_mut() = parts.method.clone();
            *mreq.headers_mut() = parts.headers.clone();
            *mreq.uri_mut() = Uri::from(path_and_query.clone());
            let t = transport.clone();
            let want = want_of(&mdest, parts.version, false);
            // Envoy gives a shadow the route's timeout (`setTimeout(global_timeout_)`),
            // from the same start: a mirror that does not answer in it is reset
            let deadline = timeouts.global.map(|t| started + t);
            tokio::spawn(async move {
                let index = guard.index();
                let _guard = guard;
                let shadow = async {
                    if let Ok((resp, _)) = t.send_to(&mdest, index, mreq, want, None).await {
                        let _ = resp.into_body().collect().await;
                    }
                };
                match deadline {
                    Some(at) => {
                        let _ = tokio::time::timeout_at(at, shadow).await;
                    }
                    None => shadow.await,
                }
            });
        }
    }

    // the access log's upstream fields, for a gateway (whose access log is on anyway) or a
    // client writing one
    // (and for response header operators such as `%UPSTREAM_HOST%`, which read it)
    let log_upstream = (via.is_some()
        || shared.logs_access()
        || ops.any(|o| o.response.has_formatted()))
    .then(|| match decision.virtual_service {
        // Istio names a VirtualService's route by its `name` (`.<match name>` after it
        // when the match that decided has one); the route to a service without one is
        // `default`
        Some(_) => decision.route_name().map(|n| Arc::<str>::from(&*n)),
        None if passthrough || egressed => Some(Arc::from("allow_any")),
        None => Some(default_route_name()),
    });
    // a streamed body of unknown length is kept for retries as it is sent (not an upgrade's
    // stream, which is never retried)
    if policy.enabled() && !upgrade {
        body.keep_for_retries(shared.options.retry_buffer_limit);
    }
    let attempts = Attempts {
        log_upstream,
        request_hash,
        transport,
        dest: &dest,
        policy,
        parts: &parts,
        path_and_query: &path_and_query,
        grpc,
        upgrade,
        want: want_of(&dest, parts.version, upgrade),
        // (a VirtualService route's: the service's default route keeps the predicate,
        // istiod's `BuildDefaultHTTPOutboundRoute` converting its policy without the hash)
        single_destination: decision.rule.is_some() && decision.destinations().len() == 1,
        in_flight: std::sync::atomic::AtomicUsize::new(usize::MAX),
        timeouts,
        timed,
        started,
        attempt_count: proxy_headers.attempt_count && !opaque,
        debug_headers: proxy_headers.envoy_debug_headers && !opaque,
    };
    let (mut resp, ctx) = match timeouts.global {
        Some(t) => {
            // Envoy's route timeout lasts until the whole response has been read: what
            // is left of it bounds the body (not an upgrade's stream past its 101). It
            // starts once the request has ended: for a body still streaming in, when
            // its last byte has come
            let ran = match body.ending().cloned().filter(|_| !upgrade) {
                None => tokio::time::timeout_at(started + t, attempts.run(&mut body))
                    .await
                    .map(|rc| (rc, None))
                    .map_err(drop),
                Some(ending) => {
                    let timer = async {
                        let end = ending.wait().await;
                        tokio::time::sleep_until(end + t).await;
                    };
                    tokio::select! {
                        biased;
                        rc = attempts.run(&mut body) => Ok((rc, Some(ending))),
                        () = timer => Err(()),
                    }
                }
            };
            match ran {
                Ok(((r, c), _)) if r.status() == StatusCode::SWITCHING_PROTOCOLS => (r, c),
                Ok(((r, c), ending)) => {
                    // what is left of the route timeout bounds the body: from the
                    // request's end, whether it has come or not
                    let deadline = |b| match ending {
                        Some(e) => match e.at() {
                            Some(end) => deadline::Deadline::new(b, end + t),
                            None => deadline::Deadline::after_end(b, e, t),
                        },
                        None => deadline::Deadline::new(b, started + t),
                    };
                    (r.map(|b| deadline(b).boxed()), c)
                }
                Err(()) => {
                    // Envoy's `onResponseTimeout`: the attempt still waiting for headers
                    // counts against its endpoint (a 504, LocalOriginTimeout)
                    let i = attempts
                        .in_flight
                        .load(std::sync::atomic::Ordering::Relaxed);
                    if let (Some(od), true) = (&dest.outlier, i != usize::MAX) {
                        od.record(i, Outcome::Timeout, std::time::Instant::now());
                    }
                    let mut resp = local(LocalReply::UpstreamTimeout, grpc);
                    // the host the attempt went to stays the request's upstream, in the
                    // metrics (its workload and, on mTLS, principals) and the access log
                    let in_flight = (i != usize::MAX).then_some(i);
                    attempts.note_upstream(&mut resp, in_flight.and_then(|i| dest.addr(i)), None);
                    (
                        resp,
                        MetricsContext {
                            peer: in_flight.and_then(|i| dest.peers.get(i).cloned()),
                            service: Some(Arc::clone(&dest.service)),
                            mutual_tls: in_flight.and_then(|i| dest.mutual_tls.get(i).copied()),
                        },
                    )
                }
            }
        }
        None => attempts.run(&mut body).await,
    };
    if !flags.is_empty() {
        add_flags(&mut resp, flags);
    }
    // Envoy's router writes `x-envoy-overloaded` on its overflow replies only when its
    // own headers are not suppressed (`proxyHeaders.envoyDebugHeaders.disabled`)
    if !proxy_headers.envoy_debug_headers
        && resp
            .extensions()
            .get::<ResponseFlags>()
            .is_some_and(|f| f.contains(ResponseFlags::UPSTREAM_OVERFLOW))
    {
        resp.headers_mut().remove("x-envoy-overloaded");
    }
    let cluster = || {
        Some(if passthrough {
            dest::PASSTHROUGH_CLUSTER.to_owned()
        } else {
            wd.cluster_name(dest_port)
        })
    };
    finalize_response(shared, via, &parts, ops, cluster, &mut resp);
    if opaque {
        resp.extensions_mut().insert(OpaqueHop);
    }
    let mut ctx = ctx;
    if passthrough {
        // istio_stats' host header fallback: the passthrough cluster has no service
        ctx.service = Some(Arc::new(ServiceInfo {
            host: authority.as_str().to_owned(),
            name: dest::PASSTHROUGH_CLUSTER.to_owned(),
            namespace: String::new(),
        }));
    }
    Ok((with_cors(resp), Some(ctx)))
}

/// A Sidecar's `egressProxy` as the destination istiod's catch-all route names
/// (`GetDestinationCluster` with no service: the proxy's host as written, its port, 0 when
/// unset), and the service and port when that is a cluster the client has: a service of
/// exactly that host the Sidecar imports, declaring that port.
pub(crate) fn egress_target<'s>(
    snap: &'s mesh_core::snapshot::Snapshot,
    ns: &str,
    sidecar: Option<&mesh_core::sidecar::SidecarScope>,
    ep: &mesh_core::model::Destination,
) -> (
    mesh_core::route::WeightedDestination,
    Option<(&'s mesh_core::registry::Service, u16)>,
) {
    let port = ep
        .port
        .as_ref()
        .and_then(|p| u16::try_from(p.number).ok())
        .unwrap_or(0);
    let target = mesh_core::route::WeightedDestination {
        host: Arc::from(ep.host.as_str()),
        subset: ep.subset.as_deref().map(Arc::from),
        port: Some(port),
        weight: 100,
        headers: None,
    };
    let found = (port != 0)
        .then(|| {
            snap.registry().service_where(&ep.host, ns, |s| {
                *s.hostname == *ep.host
                    && sidecar.is_none_or(|sc| sc.imports(ns, &s.namespace, &s.hostname, port))
            })
        })
        .flatten()
        .filter(|s| s.ports.is_empty() || s.port(port).is_some());
    (target, found.map(|s| (&**s, port)))
}

/// The port of destination `wd`'s cluster: the route's, else the service's only port, else
/// the request's [spec §2.4].
fn dest_port_of(
    wd: &mesh_core::route::WeightedDestination,
    service: &mesh_core::registry::Service,
    request_port: u16,
) -> u16 {
    wd.port.unwrap_or(match service.ports.as_slice() {
        [p] => p.number,
        _ => request_port,
    })
}

/// A route's and its picked destination's header operations, applied in Envoy's order
/// ([`mesh_core::route::apply_route_and_destination`]).
#[derive(Clone, Copy)]
struct RouteOps<'a> {
    route: Option<&'a HeaderOps>,
    dest: Option<&'a HeaderOps>,
    /// the route has several destinations (weighted clusters)
    weighted: bool,
}

impl<'a> RouteOps<'a> {
    fn route_only(route: Option<&'a HeaderOps>) -> RouteOps<'a> {
        RouteOps {
            route,
            dest: None,
            weighted: false,
        }
    }

    fn any(&self, f: impl Fn(&HeaderOps) -> bool) -> bool {
        self.route.is_some_and(&f) || self.dest.is_some_and(&f)
    }

    fn request(&self, headers: &mut http::HeaderMap, cx: &HeaderContext<'_>) {
        mesh_core::route::apply_route_and_destination(
            self.route.map(|o| &o.request),
            self.dest.map(|o| &o.request),
            self.weighted,
            headers,
            cx,
        );
    }

    fn response(&self, headers: &mut http::HeaderMap, cx: &HeaderContext<'_>) {
        mesh_core::route::apply_route_and_destination(
            self.route.map(|o| &o.response),
            self.dest.map(|o| &o.response),
            self.weighted,
            headers,
            cx,
        );
    }
}

/// Envoy's `finalizeResponseHeaders` on any answer once a route is chosen (the upstream's,
/// a redirect, a direct response, a fault abort, cluster not found): the route's and the
/// chosen destination's response header operations in Envoy's order ([`RouteOps`]).
/// `%...%` operators (computed only when
/// there are some) see the request as it is now, this answer, and `cluster` (the upstream
/// cluster, if there is one).
fn finalize_response(
    shared: &ClientShared,
    via: Option<GatewayRoute<'_>>,
    req: &http::request::Parts,
    ops: RouteOps<'_>,
    cluster: impl FnOnce() -> Option<String>,
    resp: &mut Response<MeshBody>,
) {
    // A local reply's content type, as Envoy's `prepareLocalReply` settles it: after the
    // header operations (which see none), `text/plain` for a body without one, none
    // without a body, and `application/grpc` whatever they did for a gRPC reply
    let local = match resp.extensions().get::<LocalOrigin>() {
        Some(_) if ops.any(|o| !o.response.is_empty()) => {
            let grpc = resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "application/grpc");
            resp.headers_mut().remove(CONTENT_TYPE);
            Some(grpc)
        }
        _ => None,
    };
    if ops.any(|o| o.response.has_formatted()) {
        let cluster = cluster();
        let answer = resp.headers().clone();
        let upstream = UpstreamAddrs::of(resp);
        let cx = header_context(
            shared,
            via,
            req.version,
            &req.headers,
            Some(&answer),
            cluster.as_deref(),
            upstream.as_ref(),
        );
        ops.response(resp.headers_mut(), &cx);
    } else {
        ops.response(resp.headers_mut(), &HeaderContext::default());
    }
    if let Some(grpc) = local {
        let empty = http_body::Body::size_hint(resp.body()).exact() == Some(0);
        let h = resp.headers_mut();
        if grpc {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        } else if empty {
            h.remove(CONTENT_TYPE);
            h.remove(http::header::CONTENT_LENGTH);
        } else if !h.contains_key(CONTENT_TYPE) {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
    }
}

/// The endpoints an attempt went to, for Envoy's previous-hosts retry predicate (the first
/// few are enough: it retries host selection a bounded number of times anyway).
#[derive(Default)]
struct Tried {
    list: [usize; 8],
    len: usize,
}

impl Tried {
    fn push(&mut self, index: usize) {
        if self.len < self.list.len() {
            self.list[self.len] = index;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[usize] {
        &self.list[..self.len]
    }
}

/// The HTTP version a request of `version` needs of its connections to `dest`: HTTP/1.1 for
/// an upgrade; its own where the destination keeps the downstream's protocol.
fn want_of(dest: &DestState, version: http::Version, upgrade: bool) -> upstream::Want {
    if upgrade {
        upstream::Want::Http1
    } else if !dest.downstream_protocol {
        upstream::Want::Any
    } else if version == http::Version::HTTP_2 {
        upstream::Want::Http2
    } else {
        upstream::Want::Http1
    }
}

/// Adds Envoy response flags to an answer's (a local reply's own, or none yet).
fn add_flags<B>(resp: &mut Response<B>, flags: ResponseFlags) {
    resp.extensions_mut()
        .get_or_insert_with(|| ResponseFlags::NONE)
        .insert(flags);
}

fn endpoint_uri(dest: &DestState, index: usize, pq: &PathAndQuery) -> Uri {
    let authority = match dest.authorities.get(index) {
        Some(a) => a.clone(),
        None => Authority::from_static("0.0.0.0:0"),
    };
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority)
        .path_and_query(pq.clone())
        .build()
        .expect("valid parts")
}

struct Attempts<'a, T> {
    /// Put [`UpstreamInfo`] (with this route name) in the answer's extensions.
    log_upstream: Option<Option<Arc<str>>>,
    /// The hash policy's hash of the request as it came (before header operations), and
    /// the cookie it generated.
    request_hash: crate::lb::RequestHash,
    transport: &'a T,
    dest: &'a Arc<DestState>,
    policy: &'a RetryPolicy,
    parts: &'a http::request::Parts,
    path_and_query: &'a PathAndQuery,
    grpc: bool,
    /// A WebSocket upgrade request: sent over HTTP/1.1.
    upgrade: bool,
    /// The HTTP version the attempts need of their connections (see [`upstream::Want`]).
    want: upstream::Want,
    /// The route is a VirtualService's with one destination (istiod's hash policy on
    /// retries applies only then).
    single_destination: bool,
    /// The endpoint of the attempt waiting for its response headers (`usize::MAX`: none),
    /// for the outlier detector when the route timeout cuts it off.
    in_flight: std::sync::atomic::AtomicUsize,
    /// The request's timeouts (the route's, a gRPC deadline).
    timeouts: crate::envoy::Timeouts,
    /// `timeouts` has one.
    timed: bool,
    /// When the request was received (Envoy's timeouts and service time count from there).
    started: tokio::time::Instant,
    /// Write `x-envoy-attempt-count` (MeshConfig `proxyHeaders`).
    attempt_count: bool,
    /// Write Envoy's debug headers (MeshConfig `proxyHeaders`).
    debug_headers: bool,
}

/// Envoy's `host_selection_retry_max_attempts` for the previous-hosts predicate.
const HOST_SELECTION_ATTEMPTS: usize = 5;

impl<T: Sender> Attempts<'_, T> {
    fn pick(&self, tried: &[usize]) -> Result<RequestGuard, crate::lb::NoHealthyUpstream> {
        let lb = &self.dest.lb;
        // istiod's `retryRemoteLocalities`: Envoy's `previous_priorities` retry priority,
        // `update_frequency: 2`: from the third attempt on, the priorities of the hosts
        // tried (counted two at a time) are avoided
        let excluded = if self.policy.retry_remote_localities && tried.len() >= 2 {
            tried[..tried.len() - tried.len() % 2]
                .iter()
                .filter_map(|&i| lb.priority_of(i))
                .filter(|&p| p < 64)
                .fold(0u64, |m, p| m | 1 << p)
        } else {
            0
        };
        let mut best = lb.pick_excluding(self.request_hash.hash, excluded)?;
        // istiod's retry.ConvertPolicy: the previous-hosts predicate unless the route's only
        // destination hashes consistently; an explicit `retryIgnorePreviousHosts` wins
        let avoid = self
            .policy
            .ignore_previous_hosts
            .unwrap_or(!(self.single_destination && lb.algorithm().is_consistent_hash()));
        if avoid && !tried.is_empty() && lb.available_count() > 1 {
            for _ in 0..HOST_SELECTION_ATTEMPTS {
                if !tried.contains(&best.index()) {
                    break;
                }
                best = lb.pick_excluding(None, excluded)?;
            }
        }
        Ok(best)
    }

    /// For the access log: the answer's upstream host (`host`), the destination's cluster
    /// and the route name, when the request is logged.
    fn note_upstream(
        &self,
        resp: &mut Response<MeshBody>,
        host: Option<std::net::SocketAddr>,
        transport_failure: Option<String>,
    ) {
        if let Some(route_name) = &self.log_upstream {
            resp.extensions_mut().insert(UpstreamInfo {
                host,
                cluster: Some(Arc::clone(&self.dest.cluster_name)),
                local_address: None,
                route_name: route_name.clone(),
                transport_failure,
            });
        }
    }

    /// The attempts, and the answer's metrics context: the destination service and, once
    /// an endpoint was picked, the last attempt's endpoint (as Envoy's upstream host).
    async fn run(&self, body: &mut ReqBody) -> (Response<MeshBody>, MetricsContext) {
        let mut endpoint = None;
        let mut transport_failure = None;
        let mut conn_peer = None;
        let mut resp = self
            .attempts(body, &mut endpoint, &mut conn_peer, &mut transport_failure)
            .await;
        let dest = self.dest;
        if self.log_upstream.is_some() {
            // (the address its connection reached, for an endpoint dialed by name)
            let host = resp
                .extensions()
                .get::<upstream::Reached>()
                .map(|r| r.0)
                .or_else(|| endpoint.and_then(|(i, _)| dest.addr(i)));
            self.note_upstream(&mut resp, host, transport_failure);
        }
        // the principals only with an upstream answer (its TLS connection), as
        // istio_stats reads them from the upstream certificates: the peer principal from
        // the URI SAN of the certificate the server presented on that connection (when the
        // transport knows it; a user's transport: the one the mesh TLS expects)
        let ctx = match endpoint {
            Some((i, true)) => MetricsContext {
                peer: match conn_peer {
                    Some(Some(p)) => Some(p),
                    Some(None) => dest.peers_unconnected.get(i).cloned(),
                    None => dest.peers.get(i).cloned(),
                },
                service: Some(Arc::clone(&dest.service)),
                mutual_tls: dest.mutual_tls.get(i).copied(),
            },
            Some((i, false)) => MetricsContext {
                peer: dest.peers_unconnected.get(i).cloned(),
                service: Some(Arc::clone(&dest.service)),
                mutual_tls: Some(false),
            },
            None => MetricsContext {
                peer: None,
                service: Some(Arc::clone(&dest.service)),
                mutual_tls: Some(false),
            },
        };
        (resp, ctx)
    }

    /// `endpoint`: the last attempt's endpoint, and whether it answered.
    async fn attempts(
        &self,
        body: &mut ReqBody,
        endpoint: &mut Option<(usize, bool)>,
        conn_peer: &mut Option<upstream::ConnPeer>,
        transport_failure: &mut Option<String>,
    ) -> Response<MeshBody> {
        let dest = self.dest;
        let retry_on = RetryOn::parse(&self.policy.retry_on);
        let max = if body.replayable() && self.policy.enabled() {
            1 + self.policy.attempts
        } else {
            1
        };
        let mut tried = Tried::default();
        let mut last: Option<Response<MeshBody>> = None;
        // the `maxRetries` slot of the retry being made (taken when it was decided)
        let mut retry_permit: Option<Permit> = None;
        for n in 0..max {
            let guard = match self.pick(tried.as_slice()) {
                Ok(g) => g,
                Err(e) => return last.unwrap_or_else(|| local(e.into(), self.grpc)),
            };
            let index = guard.index();
            let addr = guard.endpoint().addr();
            tried.push(index);
            *endpoint = Some((index, false));
            let request_permit = if T::COUNTS_REQUESTS {
                None
            } else {
                match dest.breaker.try_request() {
                    Ok(p) => Some(p),
                    Err(o) => return local(o.into(), self.grpc),
                }
            };
            let Some(req_body) = body.take() else {
                return last
                    .unwrap_or_else(|| local(reset(ResetReason::LocalReset, None), self.grpc));
            };
            let mut req = Request::new(req_body);
            *req.method_mut() = self.parts.method.clone();
            *req.headers_mut() = self.parts.headers.clone();
            *req.uri_mut() = Uri::from(self.path_and_query.clone());
            *req.version_mut() = http::Version::HTTP_11;
            if self.timeouts.per_try.is_some()
                && let Some(ending) = body.ending()
            {
                req.extensions_mut().insert(BodyEnding(Arc::clone(ending)));
            }
            // a retry: what Envoy's router writes again (`doRetry`): the attempt count and
            // the time left (the first attempt's are in the request already)
            if n > 0 {
                let h = req.headers_mut();
                if self.attempt_count {
                    h.insert(X_ENVOY_ATTEMPT_COUNT, small_number(n as u64 + 1));
                }
                if self.timed {
                    // (the route timeout runs from the end of a streamed body)
                    let from = body
                        .ended_at()
                        .map_or(self.started, |at| at.max(self.started));
                    self.timeouts
                        .write_headers(from.elapsed(), self.grpc, self.debug_headers, h);
                }
            }
            let send = self
                .transport
                .send_to(dest, index, req, self.want, self.timeouts.per_try);
            self.in_flight
                .store(index, std::sync::atomic::Ordering::Relaxed);
            // `None`: the per-try timeout expired
            let result = match send.await {
                Err(e) if e.is::<upstream::PerTryTimeout>() => None,
                r => Some(r),
            };
            self.in_flight
                .store(usize::MAX, std::sync::atomic::Ordering::Relaxed);
            let now = tokio::time::Instant::now().into_std();
            // (a streamed body read past the buffer limit turns retries off, as Envoy's
            // router resets its retry state then: no retry, no URX)
            let retrying = max > 1 && body.replayable();
            let retries_left = retrying && n + 1 < max;
            match result {
                Some(Ok((mut resp, peer))) => {
                    *conn_peer = peer;
                    let status = resp.status().as_u16();
                    // Envoy's retry state reads a `grpc-status` of any answer (a gRPC-Web
                    // or Connect call on a plain port comes back with one too); only a gRPC
                    // request's is the status outlier detection sees
                    let grpc_status = if self.grpc || (retrying && retry_on.any_grpc()) {
                        crate::metrics::grpc_status_of(resp.headers())
                    } else {
                        None
                    };
                    if let Some(od) = &dest.outlier {
                        // Envoy's router reports a gRPC answer's `grpc-status` (in its
                        // headers: a trailers-only answer) as the HTTP status it stands for
                        let reported = grpc_status
                            .filter(|_| self.grpc)
                            .map_or(status, crate::envoy::grpc_to_http_status);
                        od.record(index, Outcome::Status(reported), now);
                    }
                    // the retry this answer asks for, when the request may be retried at
                    // all: Envoy returns the answer flagged URX when no attempt is left, UO
                    // when `maxRetries` has no slot for it (upstream_rq_retry_overflow)
                    if retrying
                        && retry_on.should_retry_answer(
                            status,
                            grpc_status,
                            resp.headers(),
                            self.policy,
                        )
                    {
                        // the slot is taken before the answer is given up
                        drop(retry_permit.take());
                        if !retries_left {
                            add_flags(&mut resp, ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                        } else if let Ok(p) = dest.breaker.try_retry() {
                            retry_permit = Some(p);
                            drop(resp);
                            body.abandon_attempt();
                            tokio::time::sleep(retry::backoff(self.policy.backoff, n + 1)).await;
                            continue;
                        } else {
                            add_flags(&mut resp, ResponseFlags::UPSTREAM_OVERFLOW);
                        }
                    }
                    *endpoint = Some((index, true));
                    if self.debug_headers && !self.upgrade && body.complete() {
                        // Envoy's router, on the upstream's response headers when the whole
                        // request had been received (before the route's response header
                        // operations, which may remove it)
                        // (the clock read once after the attempt serves both)
                        let ms = now
                            .saturating_duration_since(self.started.into_std())
                            .as_millis();
                        resp.headers_mut().insert(
                            X_ENVOY_UPSTREAM_SERVICE_TIME,
                            small_number(u64::try_from(ms).unwrap_or(u64::MAX)),
                        );
                    }
                    if let Some(c) = &self.request_hash.set_cookie {
                        resp.headers_mut().append(SET_COOKIE, c.clone());
                    }
                    // a retry's `maxRetries` slot ends with its answer's headers (Envoy
                    // resets the retry state there, and keeps no more of the body); the
                    // request's and the endpoint's last as long as the body
                    drop(retry_permit.take());
                    body.answered();
                    let (p, b) = resp.into_parts();
                    let held = Held {
                        inner: b,
                        hold: Some(Hold {
                            guard,
                            request: request_permit,
                        }),
                        outlier: dest.outlier.as_ref().map(|od| (Arc::clone(od), index)),
                    };
                    return Response::from_parts(p, held.boxed());
                }
                Some(Err(e)) => {
                    let (failure, reply, message) = classify(&e);
                    let outcome = match failure {
                        AttemptFailure::ConnectFailure => Outcome::ConnectFailed,
                        _ => Outcome::Reset,
                    };
                    if !matches!(reply, LocalReply::Overflow)
                        && let Some(od) = &dest.outlier
                    {
                        od.record(index, outcome, now);
                    }
                    tracing::debug!(endpoint = %addr, error = %e, "outbound attempt failed");
                    if let LocalReply::UpstreamReset {
                        transport_failure: Some(t),
                        ..
                    } = &reply
                        && self.log_upstream.is_some()
                    {
                        *transport_failure = Some(t.clone());
                    }
                    let mut r = local(with_retried(reply.clone(), n > 0), self.grpc);
                    r.extensions_mut().insert(UpstreamFailure {
                        endpoint: addr,
                        message: message.unwrap_or_else(|| e.to_string()),
                    });
                    if matches!(reply, LocalReply::Overflow) {
                        return r;
                    }
                    let retriable = retrying && retry_on.should_retry(failure, None, self.policy);
                    if retriable && !retries_left {
                        // the attempts ran out on a failure that would have been retried
                        // (Envoy's `NoRetryLimitExceeded`); one that would not was no
                        // retry's limit, whatever came before it
                        add_flags(&mut r, ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                    }
                    if retries_left && retriable {
                        drop(retry_permit.take());
                        if let Ok(p) = dest.breaker.try_retry() {
                            retry_permit = Some(p);
                            last = Some(r);
                            body.abandon_attempt();
                            tokio::time::sleep(retry::backoff(self.policy.backoff, n + 1)).await;
                            continue;
                        }
                        add_flags(&mut r, ResponseFlags::UPSTREAM_OVERFLOW);
                    }
                    return r;
                }
                None => {
                    if let Some(od) = &dest.outlier {
                        od.record(index, Outcome::Timeout, now);
                    }
                    let mut r = local(LocalReply::UpstreamPerTryTimeout, self.grpc);
                    let retriable =
                        retry_on.should_retry(AttemptFailure::PerTryTimeout, None, self.policy);
                    if retriable && !retries_left && retrying {
                        // the attempts ran out (Envoy's `NoRetryLimitExceeded`)
                        add_flags(&mut r, ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                    }
                    if retries_left && retriable {
                        drop(retry_permit.take());
                        if let Ok(p) = dest.breaker.try_retry() {
                            retry_permit = Some(p);
                            last = Some(r);
                            body.abandon_attempt();
                            tokio::time::sleep(retry::backoff(self.policy.backoff, n + 1)).await;
                            continue;
                        }
                        add_flags(&mut r, ResponseFlags::UPSTREAM_OVERFLOW);
                    }
                    return r;
                }
            }
        }
        last.unwrap_or_else(|| local(LocalReply::NoHealthyUpstream, self.grpc))
    }
}

#[cfg(test)]
mod tests {
    use super::{request_authority, RouteByUri, HOST};
    use http::{HeaderValue, Uri};

    #[test]
    fn the_authority_a_request_is_routed_by() {
        let route = |uri: &str, host: Option<&str>, use_host: bool, by_uri: bool| {
            let uri: Uri = uri.parse().unwrap();
            let mut h = http::HeaderMap::new();
            if let Some(v) = host {
                h.insert(HOST, HeaderValue::from_str(v).unwrap());
            }
            let mut e = http::Extensions::new();
            if by_uri {
                e.insert(RouteByUri);
            }
            request_authority(&uri, &h, &e, use_host).map(|a| a.to_string())
        };
        let r = |uri, host| route(uri, host, true, false);
        // the Host names another host: it routes, with the URI's port (none: none)
        assert_eq!(
            r("http://10.0.0.5/", Some("api.example.com")).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            r("http://10.0.0.5:8080/", Some("api.example.com:9")).as_deref(),
            Some("api.example.com:8080")
        );
        assert_eq!(
            r("http://10.0.0.5/", Some("api.example.com:9")).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            r("http://10.0.0.5/", Some("[::1]:80")).as_deref(),
            Some("[::1]")
        );
        // the same host (any case, any port) or none: the URI's
        assert_eq!(
            r("http://api:80/", Some("API:8080")).as_deref(),
            Some("api:80")
        );
        assert_eq!(r("http://api:80/", None).as_deref(), Some("api:80"));
        // no URI authority: the Host's, as written
        assert_eq!(r("/x", Some("api:8080")).as_deref(), Some("api:8080"));
        // https (the Host is inside the application's TLS), a gateway's request, a check
        // sent on the mesh's own behalf: the URI's
        assert_eq!(
            r("https://10.0.0.5/", Some("api.example.com")).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            route("http://10.0.0.5/", Some("api"), false, false).as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            route("http://10.0.0.5/", Some("api"), true, true).as_deref(),
            Some("10.0.0.5")
        );
        let host_of = |a| mesh_core::names::split_authority(a).0;
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("name:80"), "name");
        assert_eq!(host_of("name"), "name");
    }

    #[test]
    fn port_of_answers_like_authority_port_u16() {
        for a in [
            "reviews",
            "reviews:9080",
            "reviews.default.svc.cluster.local:80",
            "10.0.0.1:8000",
            "10.0.0.1",
            "[::1]",
            "[::1]:8443",
            "user@host:65535",
            "host:0",
        ] {
            let authority: http::uri::Authority = a.parse().unwrap();
            assert_eq!(super::port_of(a), authority.port_u16(), "{a}");
        }
        assert_eq!(super::port_of("host:"), None);
        assert_eq!(super::port_of("host:99999"), None);
        assert_eq!(super::port_of("host:123456"), None);
        assert_eq!(super::port_of(":80"), Some(80));
    }
}
