//! [`MetricsLayer`]: the cheap, cloneable configuration of the metrics middleware.

use std::sync::Arc;

use tower::Layer;

use super::service::Metrics;
use super::{IstioMetrics, Reporter, ServiceInfo, WorkloadInfo};

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) metrics: Arc<IstioMetrics>,
    pub(crate) reporter: Reporter,
    pub(crate) local: Arc<WorkloadInfo>,
    pub(crate) default_service: Arc<ServiceInfo>,
    pub(crate) unknown: Arc<WorkloadInfo>,
}

/// Records Istio's standard metrics for every request through the wrapped service.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let me = WorkloadInfo::from_labels("httpbin", "foo", "spiffe://cluster.local/ns/foo/sa/httpbin", &Default::default());
/// let layer = MetricsLayer::inbound(Arc::clone(&metrics), me);
/// let svc = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_req: http::Request<_>| async {
///         Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
///     });
///
/// let resp = svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?;
/// resp.into_body().collect().await?;
/// let text = metrics.render();
/// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
/// assert!(line.contains(r#"reporter="destination""#), "{line}");
/// assert!(line.contains(r#"destination_workload="httpbin""#), "{line}");
/// assert!(line.contains(r#"source_workload="unknown""#), "{line}");
/// assert!(line.ends_with(" 1"), "{line}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    config: Arc<Config>,
}

impl MetricsLayer {
    /// Server side (`reporter="destination"`): this workload is the destination; the
    /// source comes from the [`MetricsContext`](super::MetricsContext) in the request.
    ///
    /// # Examples
    ///
    /// Without a [`MetricsContext`](super::MetricsContext) in the request, the source comes from
    /// the [`ConnectionInfo`](crate::inbound::ConnectionInfo) of the connection:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tls::{Identity, PeerIdentity};
    /// use mesh_tower::inbound::ConnectionInfo;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let principal = "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings";
    /// let ratings = WorkloadInfo::from_labels("ratings-v1", "bookinfo", principal, &Default::default());
    /// let svc = MetricsLayer::inbound(Arc::clone(&metrics), ratings).layer(service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    /// }));
    ///
    /// // a request on an mTLS connection from `bookinfo-reviews`
    /// let reviews = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?);
    /// let mut req = http::Request::new(Empty::<Bytes>::new());
    /// req.extensions_mut().insert(ConnectionInfo::new(Some(reviews), 9080));
    /// svc.oneshot(req).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render();
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// for label in [
    ///     r#"reporter="destination""#,
    ///     r#"destination_workload="ratings-v1""#,
    ///     r#"source_principal="spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews""#,
    ///     r#"source_workload_namespace="bookinfo""#,
    ///     r#"connection_security_policy="mutual_tls""#,
    /// ] {
    ///     assert!(line.contains(label), "{label} in {line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn inbound(metrics: Arc<IstioMetrics>, local: WorkloadInfo) -> Self {
        Self::new(metrics, Reporter::Destination, local)
    }

    /// Client side (`reporter="source"`): this workload is the source; the destination
    /// comes from the [`MetricsContext`](super::MetricsContext) in the request or response.
    ///
    /// # Examples
    ///
    /// The client learns which endpoint answered only with the response, so the inner stack
    /// puts the destination in the response extensions:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let productpage = WorkloadInfo::from_labels("productpage-v1", "default", "", &Default::default());
    /// let sender = service_fn(|_req: http::Request<_>| async {
    ///     let mut resp = http::Response::new(Empty::<Bytes>::new());
    ///     let reviews_v2 = [("app", "reviews"), ("version", "v2")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    ///     resp.extensions_mut().insert(MetricsContext {
    ///         peer: Some(Arc::new(WorkloadInfo::from_labels("reviews-v2", "default", "", &reviews_v2))),
    ///         service: Some(Arc::new(ServiceInfo::from_host("reviews.default.svc.cluster.local"))),
    ///         mutual_tls: None,
    ///     });
    ///     Ok::<_, Infallible>(resp)
    /// });
    /// let svc = MetricsLayer::outbound(Arc::clone(&metrics), productpage).layer(sender);
    /// svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render();
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// for label in [
    ///     r#"reporter="source""#,
    ///     r#"source_workload="productpage-v1""#,
    ///     r#"destination_version="v2""#,
    ///     r#"destination_service_name="reviews""#,
    ///     r#"connection_security_policy="unknown""#,
    /// ] {
    ///     assert!(line.contains(label), "{label} in {line}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn outbound(metrics: Arc<IstioMetrics>, local: WorkloadInfo) -> Self {
        Self::new(metrics, Reporter::Source, local)
    }

    fn new(metrics: Arc<IstioMetrics>, reporter: Reporter, local: WorkloadInfo) -> Self {
        MetricsLayer {
            config: Arc::new(Config {
                metrics,
                reporter,
                local: Arc::new(local),
                default_service: Arc::new(ServiceInfo::default()),
                unknown: Arc::new(WorkloadInfo::default()),
            }),
        }
    }

    /// The destination service used when a request's context names none (inbound: the
    /// service this workload serves).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, ServiceInfo, WorkloadInfo};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let me = WorkloadInfo::from_labels("httpbin", "foo", "", &Default::default());
    /// let layer = MetricsLayer::inbound(Arc::clone(&metrics), me)
    ///     .with_default_service(ServiceInfo::from_host("httpbin.foo.svc.cluster.local"));
    /// assert!(Arc::ptr_eq(layer.metrics(), &metrics));
    /// let svc = layer.layer(service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    /// }));
    /// svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render();
    /// assert!(text.contains(r#"destination_service="httpbin.foo.svc.cluster.local""#), "{text}");
    /// // the server side reports its own namespace (istio_stats: the node's NAMESPACE)
    /// assert!(text.contains(r#"destination_service_namespace="foo""#), "{text}");
    /// # Ok(()) }
    /// ```
    pub fn with_default_service(self, service: ServiceInfo) -> Self {
        let c = &self.config;
        MetricsLayer {
            config: Arc::new(Config {
                metrics: Arc::clone(&c.metrics),
                reporter: c.reporter,
                local: Arc::clone(&c.local),
                default_service: Arc::new(service),
                unknown: Arc::clone(&c.unknown),
            }),
        }
    }

    /// The reporter this layer records as.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, Reporter, WorkloadInfo};
    ///
    /// let layer = MetricsLayer::outbound(Arc::new(IstioMetrics::new()), WorkloadInfo::default());
    /// assert_eq!(layer.reporter(), Reporter::Source);
    /// let layer = MetricsLayer::inbound(Arc::clone(layer.metrics()), WorkloadInfo::default());
    /// assert_eq!(layer.reporter(), Reporter::Destination);
    /// ```
    pub fn reporter(&self) -> Reporter {
        self.config.reporter
    }

    /// The metrics recorded into.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    ///
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let layer = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default());
    /// assert!(Arc::ptr_eq(layer.metrics(), &metrics));
    /// assert_eq!(layer.clone().metrics().series_count(), 0);
    /// ```
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.config.metrics
    }

    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.config
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_config(inner, Arc::clone(&self.config))
    }
}
