//! Istio's standard metrics, recorded by a Tower layer and exposed in Prometheus format so
//! Istio's dashboards (Grafana, Kiali) work unchanged.
//!
//! Series (names and label names exactly as Istio's sidecar exports them; see istio.io
//! "Istio Standard Metrics"):
//! - `istio_requests_total` (counter),
//! - `istio_request_duration_milliseconds` (histogram),
//! - `istio_request_bytes`, `istio_response_bytes` (histograms of message sizes, the head
//!   as HTTP/1.1 writes it with the body, as istio_stats reports the wire bytes),
//! - for gRPC requests, `istio_request_messages_total` and `istio_response_messages_total`
//!   (counters of the length-prefixed messages each side sent, as Envoy's gRPC stats count
//!   them),
//! - for TCP connections ([`crate::tcp`]): `istio_tcp_connections_opened_total`,
//!   `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total` (bytes from the
//!   client to the server) and `istio_tcp_sent_bytes_total` (from the server to the client),
//!   counted as the bytes pass rather than every 15 s (Istio's `tcpReportingDuration`), with
//!   `request_protocol="tcp"` and no `response_code` or `grpc_response_status`, as Istio's;
//!
//! labelled `reporter`, `source_workload`, `source_canonical_service`,
//! `source_canonical_revision`, `source_workload_namespace`, `source_principal`,
//! `source_app`, `source_version`, `destination_workload`, `destination_workload_namespace`,
//! `destination_principal`, `destination_app`, `destination_version`,
//! `destination_service`, `destination_canonical_service`,
//! `destination_canonical_revision`, `destination_service_name`,
//! `destination_service_namespace`, `destination_cluster`, `request_protocol`,
//! `response_code`, `grpc_response_status`, `response_flags`,
//! `connection_security_policy`, `source_cluster`. Unknown values are `unknown`, as in Istio;
//! histograms use Envoy's default buckets (0.5 ms … 3 600 000), as Istio's do.
//!
//! ## Where the labels come from
//! - The layer's own side (reporter, this workload) is static: [`MetricsLayer::inbound`]
//!   (`reporter="destination"`) or [`MetricsLayer::outbound`] (`reporter="source"`).
//! - The other side and the service come per request from a [`MetricsContext`] that the
//!   inbound or outbound stack puts in the **request** extensions (e.g. the peer's identity
//!   from mTLS, known before the request reaches this layer) or in the **response**
//!   extensions (e.g. the endpoint an outbound request was sent to, decided further in);
//!   fields in the response override those in the request. Without one in the request, the
//!   [`ConnectionInfo`](crate::inbound::ConnectionInfo)'s is used (the
//!   [`ConnectionInfoLayer`](crate::inbound::ConnectionInfoLayer) computes it once per
//!   connection).
//! - Envoy [`ResponseFlags`] come from the response extensions (the [`crate::envoy`] replies
//!   put them there).
//!
//! A request is recorded when its response body ends (or is dropped), so the duration and
//! the response size cover the whole body, as Envoy's do.
//!
//! Cost per request: a look through the thread's recent series (the label tuple compared by
//! the addresses of its `Arc`s; on a miss, a read-locked lookup by the label values;
//! allocation happens only for a new tuple), then atomics for the
//! observations on the thread's own stripe ([`AtomicHistogram`], not prometheus-client's
//! mutex-guarded histogram), no allocation unless the request body size is unknown in
//! advance (then one shared counter).
//!
//! # Examples
//!
//! A server and a client of the same process recording into one [`IstioMetrics`], scraped
//! through the [`MetricsEndpoint`]: one series per reporter.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint, MetricsLayer, WorkloadInfo};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let metrics = Arc::new(IstioMetrics::new());
//! let workload = |name: &str| WorkloadInfo::from_labels(name, "default", "", &Default::default());
//! let hello = service_fn(|_req: http::Request<_>| async {
//!     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
//! });
//! // the server side of `reviews`, the client side of `productpage`
//! let server = MetricsLayer::inbound(Arc::clone(&metrics), workload("reviews-v1")).layer(hello);
//! let client = MetricsLayer::outbound(Arc::clone(&metrics), workload("productpage-v1")).layer(hello);
//! for svc in [server, client] {
//!     let resp = svc.oneshot(http::Request::new(Full::new(Bytes::from("ping")))).await?;
//!     resp.into_body().collect().await?;
//! }
//!
//! let scrape = MetricsEndpoint::new(metrics).oneshot(http::Request::get("/stats/prometheus").body(())?).await?;
//! let text = String::from_utf8(scrape.into_body().collect().await?.to_bytes().to_vec())?;
//! let requests: Vec<&str> = text.lines().filter(|l| l.starts_with("istio_requests_total{")).collect();
//! assert_eq!(requests.len(), 2);
//! assert!(requests.iter().any(|l| l.contains(r#"reporter="destination""#) && l.contains(r#"destination_workload="reviews-v1""#)));
//! assert!(requests.iter().any(|l| l.contains(r#"reporter="source""#) && l.contains(r#"source_workload="productpage-v1""#)));
//! // `GET / HTTP/1.1\r\n`, the blank line and the 4-byte body: istio_stats' wire bytes
//! let sizes = text.lines().filter(|l| l.starts_with("istio_request_bytes_sum{"));
//! assert!(sizes.map(|l| l.ends_with(" 22.0")).all(|ok| ok), "{text}");
//! # Ok(()) }
//! ```

mod body;
mod exposition;
mod future;
mod histogram;
mod layer;
mod service;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use body::{MetricsBody, Recorder, RequestBody};
pub use exposition::{
    serve_metrics, MetricsEndpoint, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
};
pub use future::ResponseFuture;
pub use histogram::AtomicHistogram;
pub use layer::MetricsLayer;
pub use service::Metrics;

pub(crate) use future::{grpc_status_of, Pending};
pub(crate) use layer::Config as MetricsConfig;
pub(crate) use service::start as start_recording;

use crate::envoy::ResponseFlags;

/// Envoy's default histogram buckets, which Istio's standard histograms use.
///
/// # Examples
///
/// ```
/// use mesh_tower::metrics::{AtomicHistogram, BUCKETS};
///
/// assert_eq!((BUCKETS[0], BUCKETS[18]), (0.5, 3_600_000.0)); // 0.5 ms to one hour
/// assert!(BUCKETS.windows(2).all(|w| w[0] < w[1]));
///
/// let h = AtomicHistogram::default();
/// h.observe(42.0);
/// let (_, _, buckets) = h.snapshot();
/// assert_eq!(buckets[5], (50.0, 1), "42 ms: the 50 ms bucket");
/// ```
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The cluster id a workload reports when none is set: Istio's `CLUSTER_ID` default
/// (istiod's `clusterID`, `Kubernetes`), rendered as `source_cluster`/`destination_cluster`.
///
/// # Examples
///
/// ```
/// assert_eq!(mesh_tower::metrics::DEFAULT_CLUSTER_ID, "Kubernetes");
/// ```
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

/// Which proxy reports: the client side (`source`) or the server side (`destination`).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, Reporter, WorkloadInfo};
///
/// let metrics = Arc::new(IstioMetrics::new());
/// let server = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default());
/// let client = MetricsLayer::outbound(metrics, WorkloadInfo::default());
/// assert_eq!(server.reporter(), Reporter::Destination);
/// assert_eq!(client.reporter(), Reporter::Source);
/// assert_eq!(client.reporter().as_str(), "source");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client side (outbound).
    Source,
    /// The server side (inbound).
    Destination,
}

impl Reporter {
    /// Istio's label value.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::Reporter;
    ///
    /// assert_eq!(Reporter::Source.as_str(), "source");
    /// assert_eq!(Reporter::Destination.as_str(), "destination");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// The identity and labels of one workload, as Istio's metrics describe it.
///
/// # Examples
///
/// ```
/// use mesh_tower::metrics::WorkloadInfo;
///
/// let labels = [("app", "reviews"), ("version", "v2")]
///     .map(|(k, v)| (k.to_string(), v.to_string()))
///     .into();
/// let reviews = WorkloadInfo::from_labels(
///     "reviews-v2",
///     "default",
///     "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
///     &labels,
/// );
/// assert_eq!((reviews.app.as_str(), reviews.version.as_str()), ("reviews", "v2"));
/// // Istio's canonical service and revision fall back to `app` and `version`...
/// assert_eq!(reviews.canonical_service, "reviews");
/// assert_eq!(reviews.canonical_revision, "v2");
///
/// // ...and, without labels, to the workload name and `latest`.
/// let bare = WorkloadInfo::from_labels("ratings-v1", "default", "", &Default::default());
/// assert_eq!(bare.canonical_service, "ratings-v1");
/// assert_eq!(bare.canonical_revision, "latest");
/// ```
#[derive(Clone, Debug, Default, Eq)]
pub struct WorkloadInfo {
    /// Workload name (e.g. the Deployment `reviews-v1`).
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// SPIFFE principal, `spiffe://cluster.local/ns/NS/sa/SA`.
    pub principal: String,
    /// `app` label.
    pub app: String,
    /// `version` label.
    pub version: String,
    /// Canonical service (`service.istio.io/canonical-name`, else
    /// `app.kubernetes.io/name`, else `app`, else the workload), in Istio's order.
    pub canonical_service: String,
    /// Canonical revision (`service.istio.io/canonical-revision`, else the version, else
    /// `latest`).
    pub canonical_revision: String,
    /// Cluster id (Istio's `CLUSTER_ID`). Empty: for the reporting workload itself,
    /// [`DEFAULT_CLUSTER_ID`]; for a peer known in the mesh (it has a principal or a
    /// workload name), the reporting workload's cluster; for an unknown peer, `unknown`.
    pub cluster: String,
}

/// String equality with an explicit empty-string fast path: label values are often empty
/// (unknown), and comparing two empty `String`s calls `memcmp` on dangling pointers, which
/// is measurably slow on some sandboxed machines (about 90 ns here).
fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

impl PartialEq for WorkloadInfo {
    fn eq(&self, o: &Self) -> bool {
        str_eq(&self.workload, &o.workload)
            && str_eq(&self.namespace, &o.namespace)
            && str_eq(&self.principal, &o.principal)
            && str_eq(&self.app, &o.app)
            && str_eq(&self.version, &o.version)
            && str_eq(&self.canonical_service, &o.canonical_service)
            && str_eq(&self.canonical_revision, &o.canonical_revision)
            && str_eq(&self.cluster, &o.cluster)
    }
}

impl PartialEq for ServiceInfo {
    fn eq(&self, o: &Self) -> bool {
        str_eq(&self.host, &o.host)
            && str_eq(&self.name, &o.name)
            && str_eq(&self.namespace, &o.namespace)
    }
}

impl std::hash::Hash for WorkloadInfo {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for s in [
            &self.workload,
            &self.namespace,
            &self.principal,
            &self.app,
            &self.version,
            &self.canonical_service,
            &self.canonical_revision,
            &self.cluster,
        ] {
            s.hash(h);
        }
    }
}

impl std::hash::Hash for ServiceInfo {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.host.hash(h);
        self.name.hash(h);
        self.namespace.hash(h);
    }
}

impl WorkloadInfo {
    /// Derives the metric labels from a workload's name, namespace, service account and pod
    /// labels, with Istio's fallbacks (`app.kubernetes.io/name`, canonical labels, `latest`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::WorkloadInfo;
    ///
    /// let labels = [
    ///     ("app.kubernetes.io/name", "reviews"),
    ///     ("app.kubernetes.io/version", "v3"),
    ///     ("service.istio.io/canonical-revision", "2024-06"),
    /// ]
    /// .map(|(k, v)| (k.to_string(), v.to_string()))
    /// .into();
    /// let principal = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews";
    /// let w = WorkloadInfo::from_labels("reviews-v3", "bookinfo", principal, &labels);
    /// assert_eq!((w.workload.as_str(), w.namespace.as_str()), ("reviews-v3", "bookinfo"));
    /// assert_eq!(w.app, "reviews"); // no `app` label: `app.kubernetes.io/name`
    /// assert_eq!(w.version, "v3");
    /// assert_eq!(w.canonical_service, "reviews");
    /// assert_eq!(w.canonical_revision, "2024-06"); // the canonical label wins
    /// assert_eq!(w.principal, principal);
    /// ```
    pub fn from_labels(
        workload: &str,
        namespace: &str,
        principal: &str,
        labels: &BTreeMap<String, String>,
    ) -> Self {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
                .cloned()
        };
        let app = get(&["app", "app.kubernetes.io/name"]).unwrap_or_default();
        let version = get(&["version", "app.kubernetes.io/version"]).unwrap_or_default();
        let canonical_service = get(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .unwrap_or_else(|| workload.to_owned());
        let canonical_revision = get(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .unwrap_or_else(|| "latest".to_owned());
        WorkloadInfo {
            workload: workload.to_owned(),
            namespace: namespace.to_owned(),
            principal: principal.to_owned(),
            app,
            version,
            canonical_service,
            canonical_revision,
            cluster: String::new(),
        }
    }

    /// A peer known only by its SPIFFE principal (`spiffe://td/ns/NS/sa/SA`): the namespace
    /// is taken from it when it is of Istio's form, everything else is unknown.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::WorkloadInfo;
    ///
    /// let peer = WorkloadInfo::from_principal("spiffe://cluster.local/ns/foo/sa/sleep");
    /// assert_eq!(peer.namespace, "foo");
    /// assert_eq!(peer.principal, "spiffe://cluster.local/ns/foo/sa/sleep");
    /// assert_eq!(peer.workload, ""); // rendered as "unknown"
    /// // another path names no namespace, whatever its segments
    /// assert_eq!(WorkloadInfo::from_principal("spiffe://td/team/ns/prod/x").namespace, "");
    /// ```
    pub fn from_principal(principal: &str) -> Self {
        let namespace = mesh_tls::Identity::parse(principal)
            .map(|id| id.namespace().to_owned())
            .unwrap_or_default();
        WorkloadInfo {
            principal: principal.to_owned(),
            namespace,
            ..Default::default()
        }
    }
}

/// The destination service of a request.
///
/// # Examples
///
/// ```
/// use mesh_tower::metrics::ServiceInfo;
///
/// let reviews = ServiceInfo::from_host("reviews.bookinfo.svc.cluster.local");
/// assert_eq!((reviews.name.as_str(), reviews.namespace.as_str()), ("reviews", "bookinfo"));
///
/// // Not a Kubernetes service: the whole host is the name, the namespace unknown.
/// let external = ServiceInfo::from_host("api.example.com");
/// assert_eq!((external.name.as_str(), external.namespace.as_str()), ("api.example.com", ""));
/// ```
#[derive(Clone, Debug, Default, Eq)]
pub struct ServiceInfo {
    /// FQDN (`reviews.default.svc.cluster.local`): `destination_service`.
    pub host: String,
    /// Short name (`reviews`): `destination_service_name`.
    pub name: String,
    /// Namespace: `destination_service_namespace`.
    pub namespace: String,
}

impl ServiceInfo {
    /// From a Kubernetes FQDN `name.namespace.svc...` (other hosts keep the whole host as
    /// the name and an unknown namespace, as Istio does for external services).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::ServiceInfo;
    ///
    /// let s = ServiceInfo::from_host("ratings.bookinfo.svc.cluster.local");
    /// assert_eq!(s.host, "ratings.bookinfo.svc.cluster.local");
    /// assert_eq!((s.name.as_str(), s.namespace.as_str()), ("ratings", "bookinfo"));
    ///
    /// // without `.svc` the host is not read as `name.namespace`
    /// let other = ServiceInfo::from_host("ratings.bookinfo");
    /// assert_eq!((other.name.as_str(), other.namespace.as_str()), ("ratings.bookinfo", ""));
    /// ```
    pub fn from_host(host: &str) -> Self {
        let mut parts = host.split('.');
        let name = parts.next().unwrap_or("");
        let ns = parts.next().unwrap_or("");
        let svc = parts.next();
        if svc == Some("svc") && !ns.is_empty() {
            ServiceInfo {
                host: host.to_owned(),
                name: name.to_owned(),
                namespace: ns.to_owned(),
            }
        } else {
            ServiceInfo {
                host: host.to_owned(),
                name: host.to_owned(),
                namespace: String::new(),
            }
        }
    }
}

/// Per-request metric labels supplied by the inbound/outbound stacks through request or
/// response extensions. See the [module docs](self).
///
/// # Examples
///
/// A server stack that knows its caller (here put in the request by hand, as the
/// [`ConnectionInfoLayer`](crate::inbound::ConnectionInfoLayer) does from mTLS):
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let httpbin = WorkloadInfo::from_labels("httpbin", "foo", "spiffe://cluster.local/ns/foo/sa/httpbin", &Default::default());
/// let svc = MetricsLayer::inbound(Arc::clone(&metrics), httpbin).layer(service_fn(|_req| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
/// }));
///
/// let mut req = http::Request::new(Full::new(Bytes::new()));
/// req.extensions_mut().insert(MetricsContext {
///     peer: Some(Arc::new(WorkloadInfo::from_principal("spiffe://cluster.local/ns/foo/sa/sleep"))),
///     service: Some(Arc::new(ServiceInfo::from_host("httpbin.foo.svc.cluster.local"))),
///     mutual_tls: Some(true),
/// });
/// svc.oneshot(req).await?.into_body().collect().await?;
///
/// let text = metrics.render();
/// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
/// for label in [
///     r#"source_principal="spiffe://cluster.local/ns/foo/sa/sleep""#,
///     r#"source_workload_namespace="foo""#,
///     r#"destination_service="httpbin.foo.svc.cluster.local""#,
///     r#"connection_security_policy="mutual_tls""#,
/// ] {
///     assert!(line.contains(label), "{label} in {line}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsContext {
    /// The other side: the source workload (inbound) or the destination workload
    /// (outbound).
    pub peer: Option<Arc<WorkloadInfo>>,
    /// The destination service.
    pub service: Option<Arc<ServiceInfo>>,
    /// Whether the connection was mutual TLS: the server side's
    /// `connection_security_policy` (the client side always says `unknown`, as Istio
    /// does), and on both sides whether this workload's principal is reported (on
    /// plaintext it is `unknown`, as Istio takes it from the TLS connection). Unset:
    /// whether the peer has a principal (which only a certificate gives).
    pub mutual_tls: Option<bool>,
}

impl MetricsContext {
    fn merge_from(&mut self, other: &MetricsContext) {
        if other.peer.is_some() {
            self.peer.clone_from(&other.peer);
        }
        if other.service.is_some() {
            self.service.clone_from(&other.service);
        }
        if other.mutual_tls.is_some() {
            self.mutual_tls = other.mutual_tls;
        }
    }
}

/// `request_protocol`: `http`, or `grpc` for a request with a gRPC content type, or one a
/// `GRPC-WEB` port or gateway server translated from gRPC-Web (whose series then also carry
/// the `grpc_response_status`).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(|_req| async {
///     let resp = http::Response::builder()
///         .header("content-type", "application/grpc")
///         .header("grpc-status", "5") // NOT_FOUND, trailers-only
///         .body(Full::new(Bytes::new()))
///         .unwrap();
///     Ok::<_, Infallible>(resp)
/// }));
/// let req = http::Request::post("/pkg.Echo/Say")
///     .header("content-type", "application/grpc")
///     .body(Full::new(Bytes::new()))?;
/// svc.oneshot(req).await?.into_body().collect().await?;
///
/// let text = metrics.render();
/// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
/// assert!(line.contains(r#"request_protocol="grpc""#), "{line}");
/// assert!(line.contains(r#"grpc_response_status="5""#), "{line}");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1.1 or HTTP/2.
    Http,
    /// gRPC.
    Grpc,
    /// An opaque TCP connection (the `istio_tcp_*` series).
    Tcp,
}

/// The full label tuple of one series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RequestLabels {
    reporter: Reporter,
    source: Arc<WorkloadInfo>,
    destination: Arc<WorkloadInfo>,
    service: Arc<ServiceInfo>,
    protocol: RequestProtocol,
    response_code: u16,
    grpc_status: Option<u32>,
    flags: ResponseFlags,
    /// `Some(true)` mutual_tls, `Some(false)` none, `None` unknown.
    security: Option<bool>,
    /// Whether this side's principal is reported: it presented its certificate on the
    /// connection (mutual TLS); on plaintext Istio reports `unknown` (istio_stats takes the
    /// local SAN from the TLS connection).
    local_principal: bool,
}

impl RequestLabels {
    /// The labels of a TCP connection reported by `reporter`, whose own workload is
    /// `local` and whose other side is `peer`; `mutual_tls`: the connection is mutual TLS
    /// (the server's `connection_security_policy`; on both sides, whether the local
    /// principal is reported).
    pub(crate) fn tcp(
        reporter: Reporter,
        local: Arc<WorkloadInfo>,
        peer: Arc<WorkloadInfo>,
        service: Arc<ServiceInfo>,
        flags: ResponseFlags,
        mutual_tls: bool,
    ) -> Self {
        let (source, destination, security) = match reporter {
            Reporter::Destination => (peer, local, Some(mutual_tls)),
            // the client side's connection_security_policy is always unknown in Istio
            Reporter::Source => (local, peer, None),
        };
        RequestLabels {
            reporter,
            source,
            destination,
            service,
            protocol: RequestProtocol::Tcp,
            response_code: 0,
            grpc_status: None,
            flags,
            security,
            local_principal: mutual_tls,
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "unknown"
    } else {
        s
    }
}

fn non_empty_or<'a>(s: &'a str, fallback: &'a str) -> &'a str {
    if s.is_empty() {
        fallback
    } else {
        s
    }
}

/// One side's workload labels (workload, canonical service and revision, namespace,
/// principal, app, version): the reporter's own as they are, the peer's or `unknown`.
fn side<'a>(
    w: &'a WorkloadInfo,
    is_local: bool,
    local_principal: &'a str,
    peer_revision: &'a str,
) -> [&'a str; 7] {
    if is_local {
        [
            w.workload.as_str(),
            w.canonical_service.as_str(),
            w.canonical_revision.as_str(),
            w.namespace.as_str(),
            local_principal,
            w.app.as_str(),
            w.version.as_str(),
        ]
    } else {
        [
            or_unknown(&w.workload),
            or_unknown(&w.canonical_service),
            peer_revision,
            or_unknown(&w.namespace),
            or_unknown(&w.principal),
            or_unknown(&w.app),
            or_unknown(&w.version),
        ]
    }
}

struct FlagsLabel(ResponseFlags);

impl fmt::Display for FlagsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl EncodeLabelSet for RequestLabels {
    /// Renders the labels as istio_stats.cc `populatePeerInfo` does: the reporting side's
    /// own values as they are (node metadata, possibly empty), the peer's with `unknown`
    /// for what is not known (its canonical revision: `latest`).
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        self.encode_labels(encoder, true)
    }
}

/// The labels of `istio_request_messages_total` and `istio_response_messages_total`: a
/// request's without `request_protocol`, `response_code`, `grpc_response_status`,
/// `response_flags` and `connection_security_policy`, which istio_stats adds to the
/// request metrics only (`reportHelper(true)` runs before it adds them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MessageLabels(RequestLabels);

impl MessageLabels {
    pub(crate) fn of(labels: &RequestLabels) -> Self {
        MessageLabels(RequestLabels {
            response_code: 0,
            grpc_status: None,
            flags: ResponseFlags::NONE,
            security: None,
            ..labels.clone()
        })
    }
}

impl EncodeLabelSet for MessageLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        self.0.encode_labels(encoder, false)
    }
}

impl RequestLabels {
    /// The labels, with the request's own (`request_protocol` to
    /// `connection_security_policy`) when `request` is set.
    fn encode_labels(
        &self,
        encoder: &mut LabelSetEncoder<'_>,
        request: bool,
    ) -> Result<(), fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        let (local, peer) = match self.reporter {
            Reporter::Destination => (&self.destination, &self.source),
            Reporter::Source => (&self.source, &self.destination),
        };
        let local_cluster = if local.cluster.is_empty() {
            DEFAULT_CLUSTER_ID
        } else {
            local.cluster.as_str()
        };
        // the peer's cluster: its own when known; a peer known in this mesh (by the
        // registry or its certificate) is in this workload's cluster
        let peer_cluster = if !peer.cluster.is_empty() {
            peer.cluster.as_str()
        } else if !peer.principal.is_empty() || !peer.workload.is_empty() {
            local_cluster
        } else {
            "unknown"
        };
        let local_principal = if self.local_principal && !local.principal.is_empty() {
            local.principal.as_str()
        } else {
            "unknown"
        };
        let peer_revision = if peer.canonical_revision.is_empty() {
            "latest"
        } else {
            peer.canonical_revision.as_str()
        };
        let svc = &self.service;
        // destination service: the service's, else on the server side the canonical name
        // (the Host header fallback is resolved into `service` beforehand)
        let service_fallback = match self.reporter {
            Reporter::Destination => local.canonical_service.as_str(),
            Reporter::Source => "unknown",
        };
        // the server reports its own namespace; the client the peer's
        let service_namespace = match self.reporter {
            Reporter::Destination => local.namespace.as_str(),
            Reporter::Source => or_unknown(&peer.namespace),
        };
        let local_is_source = self.reporter == Reporter::Source;
        let [s_workload, s_canonical, s_revision, s_namespace, s_principal, s_app, s_version] =
            side(
                &self.source,
                local_is_source,
                local_principal,
                peer_revision,
            );
        let [d_workload, d_canonical, d_revision, d_namespace, d_principal, d_app, d_version] =
            side(
                &self.destination,
                !local_is_source,
                local_principal,
                peer_revision,
            );
        let (s_cluster, d_cluster) = if local_is_source {
            (local_cluster, peer_cluster)
        } else {
            (peer_cluster, local_cluster)
        };
        let strs: [(&str, &str); 19] = [
            ("reporter", self.reporter.as_str()),
            ("source_workload", s_workload),
            ("source_canonical_service", s_canonical),
            ("source_canonical_revision", s_revision),
            ("source_workload_namespace", s_namespace),
            ("source_principal", s_principal),
            ("source_app", s_app),
            ("source_version", s_version),
            ("destination_workload", d_workload),
            ("destination_workload_namespace", d_namespace),
            ("destination_principal", d_principal),
            ("destination_app", d_app),
            ("destination_version", d_version),
            (
                "destination_service",
                non_empty_or(&svc.host, service_fallback),
            ),
            ("destination_canonical_service", d_canonical),
            ("destination_canonical_revision", d_revision),
            (
                "destination_service_name",
                non_empty_or(&svc.name, service_fallback),
            ),
            ("destination_service_namespace", service_namespace),
            ("destination_cluster", d_cluster),
        ];
        for pair in strs {
            pair.encode(encoder.encode_label())?;
        }
        if !request {
            return ("source_cluster", s_cluster).encode(encoder.encode_label());
        }
        let protocol = match self.protocol {
            RequestProtocol::Http => "http",
            RequestProtocol::Grpc => "grpc",
            RequestProtocol::Tcp => "tcp",
        };
        ("request_protocol", protocol).encode(encoder.encode_label())?;
        // istio_stats: the response code and gRPC status are HTTP labels only
        if self.protocol != RequestProtocol::Tcp {
            ("response_code", u32::from(self.response_code)).encode(encoder.encode_label())?;
            match self.grpc_status {
                // (istio_stats writes Envoy's InvalidCode as the number it is)
                Some(future::GRPC_INVALID) => {
                    ("grpc_response_status", "-1").encode(encoder.encode_label())?
                }
                Some(code) => ("grpc_response_status", code).encode(encoder.encode_label())?,
                None => ("grpc_response_status", "").encode(encoder.encode_label())?,
            }
        }
        // ResponseFlags render without allocation through a small stack buffer.
        let mut buf = FlagBuf::default();
        fmt::write(&mut buf, format_args!("{}", FlagsLabel(self.flags)))?;
        ("response_flags", buf.as_str()).encode(encoder.encode_label())?;
        let security = match self.security {
            Some(true) => "mutual_tls",
            Some(false) => "none",
            None => "unknown",
        };
        ("connection_security_policy", security).encode(encoder.encode_label())?;
        ("source_cluster", s_cluster).encode(encoder.encode_label())?;
        Ok(())
    }
}

struct FlagBuf {
    buf: [u8; 128],
    len: usize,
}

impl Default for FlagBuf {
    fn default() -> Self {
        FlagBuf {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl FlagBuf {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl fmt::Write for FlagBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

type HistogramFamily = Family<RequestLabels, AtomicHistogram>;

#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: AtomicHistogram,
    request_bytes: AtomicHistogram,
    response_bytes: AtomicHistogram,
    /// gRPC requests' `istio_request_messages_total` and `istio_response_messages_total`.
    messages: Option<(Counter, Counter)>,
}

impl Series {
    fn observe(
        &self,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
        messages: Option<(u64, u64)>,
    ) {
        self.requests.inc();
        self.duration.observe(duration_ms);
        self.request_bytes.observe(request_bytes as f64);
        self.response_bytes.observe(response_bytes as f64);
        if let (Some((req, resp)), Some((sent, received))) = (&self.messages, messages) {
            req.inc_by(sent);
            resp.inc_by(received);
        }
    }
}

/// A small multiply-rotate hasher (FxHash) for the series cache: the label tuple is hashed
/// on every request, and its values come from configuration and verified identities, not
/// from arbitrary request data, so SipHash's flooding resistance is not needed.
#[derive(Clone, Copy, Debug, Default)]
struct BuildFxHasher;

impl std::hash::BuildHasher for BuildFxHasher {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

#[derive(Debug)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u64(&mut self, i: u64) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(K);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Istio's standard HTTP metrics and the registry they are exposed from. Share it by `Arc`
/// between the inbound and outbound layers and the metrics endpoint.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// assert_eq!(metrics.render(), "# EOF\n", "nothing recorded yet");
///
/// let me = WorkloadInfo::from_labels("httpbin", "foo", "", &Default::default());
/// let svc = MetricsLayer::inbound(Arc::clone(&metrics), me).layer(service_fn(|req: http::Request<_>| async move {
///     let status = if req.uri().path() == "/status/418" { 418 } else { 200 };
///     let resp = http::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap();
///     Ok::<_, Infallible>(resp)
/// }));
/// for path in ["/get", "/get", "/status/418"] {
///     let req = http::Request::get(path).body(Full::new(Bytes::new()))?;
///     svc.clone().oneshot(req).await?.into_body().collect().await?;
/// }
/// assert_eq!(metrics.series_count(), 2, "one series per response code");
///
/// let text = metrics.render();
/// assert!(text.contains("# TYPE istio_requests counter"));
/// assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram"));
/// let ok = text
///     .lines()
///     .find(|l| l.starts_with("istio_requests_total{") && l.contains(r#"response_code="200""#))
///     .unwrap();
/// assert!(ok.ends_with(" 2"), "{ok}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct IstioMetrics {
    /// Tells registries apart in the per-thread series cache (addresses can be reused).
    id: u64,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    request_bytes: HistogramFamily,
    response_bytes: HistogramFamily,
    request_messages: Family<MessageLabels, Counter>,
    response_messages: Family<MessageLabels, Counter>,
    series: RwLock<HashMap<RequestLabels, Arc<Series>, BuildFxHasher>>,
    tcp_opened: Family<RequestLabels, Counter>,
    tcp_closed: Family<RequestLabels, Counter>,
    tcp_received: Family<RequestLabels, Counter>,
    tcp_sent: Family<RequestLabels, Counter>,
}

/// A label tuple by the addresses of its `Arc`s and its small fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PtrKey {
    source: usize,
    destination: usize,
    service: usize,
    response_code: u16,
    grpc_status: Option<u32>,
    flags: ResponseFlags,
    security: Option<bool>,
    local_principal: bool,
    reporter: Reporter,
    protocol: RequestProtocol,
}

impl PtrKey {
    fn of(l: &RequestLabels) -> Self {
        PtrKey {
            source: Arc::as_ptr(&l.source) as usize,
            destination: Arc::as_ptr(&l.destination) as usize,
            service: Arc::as_ptr(&l.service) as usize,
            response_code: l.response_code,
            grpc_status: l.grpc_status,
            flags: l.flags,
            security: l.security,
            local_principal: l.local_principal,
            reporter: l.reporter,
            protocol: l.protocol,
        }
    }
}

impl Default for IstioMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl IstioMetrics {
    /// The four standard metrics in a fresh registry (prefix `istio`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::metrics::IstioMetrics;
    ///
    /// let metrics = IstioMetrics::new();
    /// assert_eq!(metrics.series_count(), 0);
    /// assert_eq!(metrics.render(), "# EOF\n", "the families render once they have series");
    /// ```
    pub fn new() -> Self {
        Self::with_registry(Registry::with_prefix("istio"))
    }

    /// The four standard metrics added to `registry`, which must have the `istio` prefix
    /// for the series to be named as Istio's (other metrics may already be in it).
    ///
    /// # Examples
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// use prometheus_client::registry::Registry;
    /// use mesh_tower::metrics::IstioMetrics;
    ///
    /// # fn main() -> Result<(), std::fmt::Error> {
    /// let mut registry = Registry::with_prefix("istio");
    /// let reloads: Counter = Counter::default();
    /// registry.register("config_reloads", "Mesh config reloads", reloads.clone());
    /// let metrics = IstioMetrics::with_registry(registry);
    ///
    /// reloads.inc();
    /// let text = metrics.render();
    /// assert!(text.contains("istio_config_reloads_total 1"), "{text}");
    /// // Istio's four families render once they have series.
    /// assert!(!text.contains("istio_requests_total"), "{text}");
    ///
    /// // `registry()` for encoding it yourself: the same text as `render()` here (`render()`
    /// // also writes whole histogram bucket bounds as Envoy does, `le="250"`).
    /// let mut encoded = String::new();
    /// prometheus_client::encoding::text::encode(&mut encoded, metrics.registry())?;
    /// assert_eq!(encoded, text);
    /// # Ok(()) }
    /// ```
    pub fn with_registry(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = HistogramFamily::default();
        let request_bytes = HistogramFamily::default();
        let response_bytes = HistogramFamily::default();
        registry.register(
            "requests",
            "Counter of requests handled by the mesh",
            requests.clone(),
        );
        registry.register(
            "request_duration_milliseconds",
            "Histogram of request durations in milliseconds",
            duration.clone(),
        );
        registry.register(
            "request_bytes",
            "Histogram of request sizes in bytes (head and body)",
            request_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Histogram of response sizes in bytes (head and body)",
            response_bytes.clone(),
        );
        let request_messages = Family::<MessageLabels, Counter>::default();
        let response_messages = Family::<MessageLabels, Counter>::default();
        registry.register(
            "request_messages",
            "Counter of gRPC messages sent by clients",
            request_messages.clone(),
        );
        registry.register(
            "response_messages",
            "Counter of gRPC messages sent by servers",
            response_messages.clone(),
        );
        let tcp_opened = Family::<RequestLabels, Counter>::default();
        let tcp_closed = Family::<RequestLabels, Counter>::default();
        let tcp_received = Family::<RequestLabels, Counter>::default();
        let tcp_sent = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tcp_connections_opened",
            "Counter of TCP connections opened",
            tcp_opened.clone(),
        );
        registry.register(
            "tcp_connections_closed",
            "Counter of TCP connections closed",
            tcp_closed.clone(),
        );
        registry.register(
            "tcp_received_bytes",
            "Counter of bytes received from the client on TCP connections",
            tcp_received.clone(),
        );
        registry.register(
            "tcp_sent_bytes",
            "Counter of bytes sent to the client on TCP connections",
            tcp_sent.clone(),
        );
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        IstioMetrics {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            registry,
            requests,
            duration,
            request_bytes,
            response_bytes,
            request_messages,
            response_messages,
            series: RwLock::new(HashMap::default()),
            tcp_opened,
            tcp_closed,
            tcp_received,
            tcp_sent,
        }
    }

    /// The registry (to encode it yourself or inspect it).
    ///
    /// # Examples
    ///
    /// Appending the mesh's series to an exposition of your own:
    ///
    /// ```
    /// use prometheus_client::encoding::text::{encode_eof, encode_registry};
    /// use mesh_tower::metrics::IstioMetrics;
    ///
    /// # fn main() -> Result<(), std::fmt::Error> {
    /// let metrics = IstioMetrics::new();
    /// // one exposition out of several registries: the application's own, then the mesh's
    /// let mut text = String::from("# TYPE app_up gauge\napp_up 1\n");
    /// encode_registry(&mut text, metrics.registry())?;
    /// encode_eof(&mut text)?;
    /// assert_eq!(text, "# TYPE app_up gauge\napp_up 1\n# EOF\n");
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders the registry in the Prometheus (OpenMetrics) text format, histogram bucket
    /// bounds written as Envoy writes them (`le="250"`, not `le="250.0"`), so queries and
    /// recording rules naming a bucket of Istio's histograms match.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::builder().status(404).body(Empty::<Bytes>::new()).unwrap())
    /// }));
    /// svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render();
    /// assert!(text.contains("# HELP istio_requests Counter of requests handled by the mesh"), "{text}");
    /// assert!(text.contains(r#"istio_request_duration_milliseconds_bucket{"#), "{text}");
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// assert!(line.contains(r#"response_code="404""#) && line.ends_with(" 1"), "{line}");
    /// assert!(text.ends_with("# EOF\n"));
    /// assert!(text.contains(r#"_bucket{le="250","#) && !text.contains(r#"le="250.0""#), "{text}");
    /// # Ok(()) }
    /// ```
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        envoy_bucket_bounds(&out)
    }

    /// The exposition in Prometheus's text format 0.0.4, as Envoy's `/stats/prometheus`
    /// serves it: counter families are named with their `_total` in `# HELP` and `# TYPE`,
    /// and there is no `# EOF`. [`MetricsEndpoint`] serves it to scrapers that do not ask
    /// for OpenMetrics ([`render`](Self::render)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    /// }));
    /// svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render_prometheus();
    /// assert!(text.contains("# TYPE istio_requests_total counter\n"), "{text}");
    /// assert!(text.contains("# HELP istio_requests_total Counter of requests"), "{text}");
    /// assert!(text.lines().any(|l| l.starts_with("istio_requests_total{") && l.ends_with(" 1")));
    /// assert!(!text.contains("# EOF"));
    /// // OpenMetrics names the family without its `_total`
    /// assert!(metrics.render().contains("# TYPE istio_requests counter\n"));
    /// # Ok(()) }
    /// ```
    pub fn render_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.render())
    }

    /// Number of distinct label tuples recorded so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    /// }));
    /// for caller in ["sleep", "sleep", "productpage"] {
    ///     let principal = format!("spiffe://cluster.local/ns/foo/sa/{caller}");
    ///     let mut req = http::Request::new(Empty::<Bytes>::new());
    ///     req.extensions_mut().insert(MetricsContext {
    ///         peer: Some(Arc::new(WorkloadInfo::from_principal(&principal))),
    ///         ..MetricsContext::default()
    ///     });
    ///     svc.clone().oneshot(req).await?.into_body().collect().await?;
    /// }
    /// assert_eq!(metrics.series_count(), 2, "one series per caller");
    /// # Ok(()) }
    /// ```
    pub fn series_count(&self) -> usize {
        self.series.read().map(|s| s.len()).unwrap_or(0)
    }

    /// Records one request; `messages` are a gRPC request's messages (client's, server's).
    pub(crate) fn record(
        &self,
        labels: &RequestLabels,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
        messages: Option<(u64, u64)>,
    ) {
        let key = PtrKey::of(labels);
        // 1. this thread's recent series: no lock, no shared write but the observation's
        let hit = RECENT.with(|r| {
            let r = r.borrow();
            match r.iter().find(|e| e.owner == self.id && e.key == key) {
                Some(e) => {
                    e.series
                        .observe(duration_ms, request_bytes, response_bytes, messages);
                    true
                }
                None => false,
            }
        });
        if hit {
            return;
        }
        // 2. the registry's series by label values
        let cached = self
            .series
            .read()
            .ok()
            .and_then(|map| map.get(labels).cloned());
        let series = match cached {
            Some(s) => s,
            None => {
                let s = Arc::new(Series {
                    requests: self.requests.get_or_create_owned(labels),
                    duration: self.duration.get_or_create_owned(labels),
                    request_bytes: self.request_bytes.get_or_create_owned(labels),
                    response_bytes: self.response_bytes.get_or_create_owned(labels),
                    messages: (labels.protocol == RequestProtocol::Grpc).then(|| {
                        let m = MessageLabels::of(labels);
                        (
                            self.request_messages.get_or_create_owned(&m),
                            self.response_messages.get_or_create_owned(&m),
                        )
                    }),
                });
                if let Ok(mut map) = self.series.write() {
                    map.entry(labels.clone()).or_insert_with(|| Arc::clone(&s));
                }
                s
            }
        };
        self.remember(key, &series, labels);
        series.observe(duration_ms, request_bytes, response_bytes, messages);
    }

    /// Keeps `series` in this thread's recent series (replacing the oldest when full).
    /// Counts a TCP connection opened with `labels` (made with [`RequestLabels::tcp`]):
    /// the returned [`TcpSeries`] counts its bytes and its close.
    pub(crate) fn tcp_connection(&self, labels: &RequestLabels) -> TcpSeries {
        let opened = self.tcp_opened.get_or_create_owned(labels);
        opened.inc();
        TcpSeries {
            closed: self.tcp_closed.get_or_create_owned(labels),
            received: self.tcp_received.get_or_create_owned(labels),
            sent: self.tcp_sent.get_or_create_owned(labels),
        }
    }

    fn remember(&self, key: PtrKey, series: &Arc<Series>, labels: &RequestLabels) {
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            let entry = Recent {
                owner: self.id,
                key,
                series: Arc::clone(series),
                _labels: labels.clone(),
            };
            if r.len() < RECENT_MAX {
                r.push(entry);
            } else {
                r.rotate_left(1);
                if let Some(last) = r.last_mut() {
                    *last = entry;
                }
            }
        });
    }
}

/// Series a thread recorded into lately, at most this many.
/// The counters of one TCP connection: bytes from the client (`received`) and to it
/// (`sent`), and the close, counted when this is dropped.
#[derive(Debug)]
pub(crate) struct TcpSeries {
    closed: Counter,
    received: Counter,
    sent: Counter,
}

impl TcpSeries {
    /// `n` bytes went from the client to the server.
    pub(crate) fn received(&self, n: usize) {
        if n > 0 {
            self.received.inc_by(n as u64);
        }
    }

    /// `n` bytes went from the server to the client.
    pub(crate) fn sent(&self, n: usize) {
        if n > 0 {
            self.sent.inc_by(n as u64);
        }
    }
}

impl Drop for TcpSeries {
    fn drop(&mut self) {
        self.closed.inc();
    }
}

const RECENT_MAX: usize = 16;

/// One of a thread's recent series; it keeps its labels (so the addresses in its key stay
/// theirs).
struct Recent {
    owner: u64,
    key: PtrKey,
    series: Arc<Series>,
    _labels: RequestLabels,
}

thread_local! {
    static RECENT: std::cell::RefCell<Vec<Recent>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// OpenMetrics text as Prometheus's text format 0.0.4: a counter family's `# HELP` and
/// `# TYPE` name its samples' `_total` name, `# UNIT` lines, counters' `_created` samples,
/// exemplars and the final `# EOF` are dropped, `unknown` is `untyped`.
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if body == "# EOF" || body.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| body.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(prefix);
            out.push_str(name);
            if counters.contains(name) {
                out.push_str("_total");
            }
            out.push(' ');
            out.push_str(if prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            });
            out.push('\n');
            continue;
        }
        if body.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let name_end = body.find(['{', ' ']).unwrap_or(body.len());
        if body[..name_end]
            .strip_suffix("_created")
            .is_some_and(|family| counters.contains(family))
        {
            continue;
        }
        // an exemplar (` # {...} value`) follows the sample's value, after its labels
        // (whose quoted values may hold ` # ` themselves)
        let after_labels = labels_end(body, name_end);
        match body[after_labels..].find(" # ").map(|i| after_labels + i) {
            Some(i) => {
                out.push_str(&body[..i]);
                out.push('\n');
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Where a sample line's label set ends (past its `}`), the labels starting at `from`
/// (none: `from`); quoted values, escapes included, are skipped.
fn labels_end(line: &str, from: usize) -> usize {
    if !line[from..].starts_with('{') {
        return from;
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line[from..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return from + i + 1,
            _ => {}
        }
    }
    line.len()
}

/// `text` with each whole histogram bound `le="N.0"` written `le="N"`, as Envoy's
/// Prometheus output formats bounds (`{:.32g}`); other bounds (`0.5`, `+Inf`) as they are.
/// Only a `_bucket` sample's own `le`, the first of its labels, is touched.
fn envoy_bucket_bounds(text: &str) -> String {
    const LE: &str = "{le=\"";
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let bound = line
            .find('{')
            .filter(|&i| line[..i].ends_with("_bucket") && line[i..].starts_with(LE));
        let Some(i) = bound else {
            out.push_str(line);
            continue;
        };
        let start = i + LE.len();
        let end = line[start..].find('"').map_or(line.len(), |e| start + e);
        let value = &line[start..end];
        out.push_str(&line[..start]);
        match value.strip_suffix(".0") {
            Some(whole) if !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) => {
                out.push_str(whole)
            }
            _ => out.push_str(value),
        }
        out.push_str(&line[end..]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn openmetrics_as_prometheus_text() {
        let open = "# HELP jobs Jobs done.\n# TYPE jobs counter\n# UNIT jobs seconds\n\
                    jobs_total{a=\"1 # }\\\"\"} 2 # {trace_id=\"x\"} 1.0\njobs_created{a=\"1\"} 1.7e9\n\
                    # HELP up Up.\n# TYPE up gauge\nup 1\n# TYPE odd unknown\nodd 3\n# EOF\n";
        assert_eq!(
            super::openmetrics_to_prometheus(open),
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{a=\"1 # }\\\"\"} 2\n\
             # HELP up Up.\n# TYPE up gauge\nup 1\n# TYPE odd untyped\nodd 3\n"
        );
    }

    #[test]
    fn whole_bucket_bounds_only() {
        let text = "a_bucket{le=\"250.0\",x=\"1\"} 1\na_bucket{le=\"0.5\",x=\"1\"} 1\n\
                    a_bucket{le=\"+Inf\",x=\"1\"} 1\nb{sample=\"3.0\",le=\"10.0\"} 2\n\
                    a_bucket{le=\"5.0\",host=\"x,le=\"} 1\n# EOF\n";
        assert_eq!(
            super::envoy_bucket_bounds(text),
            "a_bucket{le=\"250\",x=\"1\"} 1\na_bucket{le=\"0.5\",x=\"1\"} 1\n\
             a_bucket{le=\"+Inf\",x=\"1\"} 1\nb{sample=\"3.0\",le=\"10.0\"} 2\n\
             a_bucket{le=\"5\",host=\"x,le=\"} 1\n# EOF\n"
        );
    }

    use super::*;

    fn labels() -> RequestLabels {
        RequestLabels {
            reporter: Reporter::Destination,
            source: Arc::new(WorkloadInfo::from_principal(
                "spiffe://cluster.local/ns/foo/sa/sleep",
            )),
            destination: Arc::new(WorkloadInfo::from_labels(
                "httpbin",
                "foo",
                "spiffe://cluster.local/ns/foo/sa/httpbin",
                &[
                    ("app".to_string(), "httpbin".to_string()),
                    ("version".to_string(), "v1".to_string()),
                ]
                .into_iter()
                .collect(),
            )),
            service: Arc::new(ServiceInfo::from_host("httpbin.foo.svc.cluster.local")),
            protocol: RequestProtocol::Http,
            response_code: 200,
            grpc_status: None,
            flags: ResponseFlags::NONE,
            security: Some(true),
            local_principal: true,
        }
    }

    #[test]
    fn workload_info_fallbacks_table() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (
                l(&[("app", "reviews"), ("version", "v2")]),
                "reviews",
                "v2",
                "reviews",
                "v2",
            ),
            (l(&[]), "", "", "reviews-v2", "latest"),
            (
                l(&[
                    ("app.kubernetes.io/name", "rev"),
                    ("app.kubernetes.io/version", "3"),
                ]),
                "rev",
                "3",
                "rev",
                "3",
            ),
            (
                l(&[
                    ("app", "reviews"),
                    ("service.istio.io/canonical-name", "canon"),
                    ("service.istio.io/canonical-revision", "r1"),
                ]),
                "reviews",
                "",
                "canon",
                "r1",
            ),
        ];
        for (labels, app, version, cs, cr) in cases {
            let w = WorkloadInfo::from_labels("reviews-v2", "default", "", &labels);
            assert_eq!(
                (
                    w.app.as_str(),
                    w.version.as_str(),
                    w.canonical_service.as_str(),
                    w.canonical_revision.as_str()
                ),
                (app, version, cs, cr),
                "{labels:?}"
            );
        }
    }

    #[test]
    fn equality_table() {
        let a = WorkloadInfo::from_principal("spiffe://cluster.local/ns/foo/sa/sleep");
        let mut b = a.clone();
        assert_eq!(a, b);
        b.app = "x".into();
        assert_ne!(a, b);
        b.app.clear();
        b.cluster = "c".into();
        assert_ne!(a, b);
        let s = ServiceInfo::from_host("a.b.svc.cluster.local");
        let mut t = s.clone();
        assert_eq!(s, t);
        t.namespace.clear();
        assert_ne!(s, t);
    }

    #[test]
    fn principal_and_host_parsing() {
        let w = WorkloadInfo::from_principal("spiffe://cluster.local/ns/bookinfo/sa/productpage");
        assert_eq!(w.namespace, "bookinfo");
        assert_eq!(WorkloadInfo::from_principal("garbage").namespace, "");
        let s = ServiceInfo::from_host("reviews.bookinfo.svc.cluster.local");
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("reviews", "bookinfo")
        );
        let e = ServiceInfo::from_host("www.google.com");
        assert_eq!(
            (e.name.as_str(), e.namespace.as_str()),
            ("www.google.com", "")
        );
    }

    fn requests_200(m: &IstioMetrics) -> String {
        m.render()
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn the_thread_series_cache_keeps_registries_and_equal_labels_apart_correctly() {
        // two registries, the same label Arcs, one thread: each counts only its own
        let (a, b) = (IstioMetrics::new(), IstioMetrics::new());
        let l = labels();
        for _ in 0..3 {
            a.record(&l, 1.0, 0, 0, None);
        }
        b.record(&l, 1.0, 0, 0, None);
        assert_eq!(requests_200(&a), "3");
        assert_eq!(requests_200(&b), "1");
        // equal labels in other Arcs (a new connection's peer) land in the same series
        let mut other = labels();
        other.source = Arc::new((*l.source).clone());
        a.record(&other, 1.0, 0, 0, None);
        assert_eq!(a.series_count(), 1);
        assert_eq!(requests_200(&a), "4");
        // more distinct tuples than the thread remembers: still counted right
        for code in 300..340 {
            let mut x = labels();
            x.response_code = code;
            a.record(&x, 1.0, 0, 0, None);
            a.record(&x, 1.0, 0, 0, None);
        }
        a.record(&l, 1.0, 0, 0, None);
        assert_eq!(a.series_count(), 41);
        assert_eq!(requests_200(&a), "5");
    }

    #[test]
    fn renders_istio_names_and_labels() {
        let m = IstioMetrics::new();
        let mut l = labels();
        m.record(&l, 12.0, 100, 2000, None);
        m.record(&l, 3.0, 0, 10, None);
        l.response_code = 503;
        l.flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
        m.record(&l, 1.0, 0, 19, None);
        assert_eq!(m.series_count(), 2);
        let text = m.render();
        assert!(text.contains("# TYPE istio_requests counter"), "{text}");
        assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram"));
        assert!(text.contains("# TYPE istio_request_bytes histogram"));
        assert!(text.contains("# TYPE istio_response_bytes histogram"));
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
            .unwrap();
        for want in [
            "reporter=\"destination\"",
            "source_workload=\"unknown\"",
            "source_workload_namespace=\"foo\"",
            "source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\"",
            "destination_workload=\"httpbin\"",
            "destination_app=\"httpbin\"",
            "destination_version=\"v1\"",
            "destination_canonical_service=\"httpbin\"",
            "destination_canonical_revision=\"v1\"",
            "destination_service=\"httpbin.foo.svc.cluster.local\"",
            "destination_service_name=\"httpbin\"",
            "destination_service_namespace=\"foo\"",
            "destination_cluster=\"Kubernetes\"",
            "request_protocol=\"http\"",
            "grpc_response_status=\"\"",
            "response_flags=\"-\"",
            "connection_security_policy=\"mutual_tls\"",
            "source_cluster=\"Kubernetes\"",
        ] {
            assert!(line.contains(want), "{want} missing in {line}");
        }
        assert!(line.ends_with(" 2"), "{line}");
        assert!(text.contains("response_flags=\"UH\""));
        assert!(
            text.contains("le=\"3600000.0\"") || text.contains("le=\"3600000\""),
            "{text}"
        );
    }
}

#[cfg(test)]
mod grpc_message_tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http::HeaderMap;
    use http_body::{Body, Frame};
    use http_body_util::BodyExt;
    use tower::{service_fn, Layer, ServiceExt};

    use super::*;

    /// A body of the given frames, with no size hint (as a stream).
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    /// gRPC messages of these sizes, length-prefixed, cut into pieces of `piece` bytes so
    /// prefixes straddle data frames.
    fn grpc(sizes: &[usize], piece: usize, trailers: Option<HeaderMap>) -> Frames {
        let mut all = Vec::new();
        for &n in sizes {
            all.push(0u8);
            all.extend_from_slice(&(n as u32).to_be_bytes());
            all.extend(std::iter::repeat_n(7u8, n));
        }
        let mut frames: VecDeque<Frame<Bytes>> = all
            .chunks(piece)
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        if let Some(t) = trailers {
            frames.push_back(Frame::trailers(t));
        }
        Frames(frames)
    }

    fn value(text: &str, family: &str) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{family}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    }

    #[tokio::test]
    async fn grpc_messages_are_counted_both_ways_across_frame_boundaries() {
        let metrics = Arc::new(IstioMetrics::new());
        let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(
            service_fn(|req: http::Request<RequestBody<Frames>>| async move {
                // the server reads the client's stream, then answers two messages
                req.into_body().collect().await.unwrap();
                let mut t = HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                let mut resp = http::Response::new(grpc(&[0, 300], 7, Some(t)));
                resp.headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                Ok::<_, Infallible>(resp)
            }),
        );
        let req = http::Request::post("/echo.Echo/Stream")
            .header("content-type", "application/grpc")
            .body(grpc(&[3, 0, 1000, 2], 3, None))
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
        let text = metrics.render();
        assert_eq!(
            value(&text, "istio_request_messages_total").as_deref(),
            Some("4"),
            "{text}"
        );
        assert_eq!(
            value(&text, "istio_response_messages_total").as_deref(),
            Some("2"),
            "{text}"
        );
        assert!(text.contains("request_protocol=\"grpc\""), "{text}");
        // the message counters carry the peers' labels only, as istio_stats
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_request_messages_total{"))
            .unwrap();
        for absent in [
            "request_protocol=",
            "response_code=",
            "grpc_response_status=",
            "response_flags=",
            "connection_security_policy=",
        ] {
            assert!(!line.contains(absent), "{absent} in {line}");
        }
        assert!(line.contains("reporter=\"destination\""), "{line}");

        // a response that is not gRPC (a 503 in text): its body is no messages
        let metrics = Arc::new(IstioMetrics::new());
        let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(
            service_fn(|req: http::Request<RequestBody<Frames>>| async move {
                req.into_body().collect().await.unwrap();
                let mut resp = http::Response::new(grpc(&[9, 9], 4, None));
                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, Infallible>(resp)
            }),
        );
        let req = http::Request::post("/echo.Echo/Unary")
            .header("content-type", "application/grpc")
            .body(grpc(&[1], 6, None))
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
        let text = metrics.render();
        assert_eq!(
            value(&text, "istio_request_messages_total").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "istio_response_messages_total").as_deref(),
            Some("0")
        );

        // plain HTTP has no message counts
        let metrics = Arc::new(IstioMetrics::new());
        let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(
            service_fn(|_req: http::Request<RequestBody<Frames>>| async move {
                Ok::<_, Infallible>(http::Response::new(grpc(&[5], 2, None)))
            }),
        );
        let resp = svc
            .oneshot(http::Request::post("/").body(grpc(&[5], 2, None)).unwrap())
            .await
            .unwrap();
        resp.into_body().collect().await.unwrap();
        let text = metrics.render();
        assert!(value(&text, "istio_requests_total").is_some());
        assert!(!text.contains("istio_request_messages_total{"), "{text}");
    }

    #[test]
    fn frames_are_counted_by_their_prefixes() {
        let mut f = crate::observe::GrpcFrames::default();
        // a message of 1 byte, then an empty (compressed-flag) one
        f.feed(&[0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0]);
        assert_eq!(f.count, 2);
        // counted at a frame's first byte, as Envoy's inspector
        let mut cut = crate::observe::GrpcFrames::default();
        cut.feed(&[0, 0, 0, 0, 1, 9, 0]);
        assert_eq!(cut.count, 2);
        // a prefix announcing a long message: what follows is its body, not prefixes
        f.feed(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(f.count, 3);
        let mut byte_by_byte = crate::observe::GrpcFrames::default();
        for b in [0u8, 0, 0, 0, 2, 1, 1, 0, 0, 0, 0, 0] {
            byte_by_byte.feed(&[b]);
        }
        assert_eq!(byte_by_byte.count, 2);
    }
}
