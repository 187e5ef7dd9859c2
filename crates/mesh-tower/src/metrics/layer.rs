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
/// ```
/// use std::sync::Arc;
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
///
/// let metrics = Arc::new(IstioMetrics::new());
/// let me = WorkloadInfo::from_labels("httpbin", "foo", "spiffe://cluster.local/ns/foo/sa/httpbin", &Default::default());
/// let layer = MetricsLayer::inbound(Arc::clone(&metrics), me);
/// let svc = tower::ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
///     });
/// # let _ = svc;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    config: Arc<Config>,
}

impl MetricsLayer {
    /// Server side (`reporter="destination"`): this workload is the destination; the
    /// source comes from the [`MetricsContext`](super::MetricsContext) in the request.
    pub fn inbound(metrics: Arc<IstioMetrics>, local: WorkloadInfo) -> Self {
        Self::new(metrics, Reporter::Destination, local)
    }

    /// Client side (`reporter="source"`): this workload is the source; the destination
    /// comes from the [`MetricsContext`](super::MetricsContext) in the request or response.
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
    pub fn reporter(&self) -> Reporter {
        self.config.reporter
    }

    /// The metrics recorded into.
    pub fn metrics(&self) -> &Arc<IstioMetrics> {
        &self.config.metrics
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::from_config(inner, Arc::clone(&self.config))
    }
}
