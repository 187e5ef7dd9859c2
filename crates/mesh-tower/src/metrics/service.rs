//! [`Metrics`]: the service of the metrics middleware.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::Service;

use super::future::{Pending, ResponseFuture};
use super::layer::{Config, MetricsLayer};
use super::{MetricsBody, MetricsContext, RequestBody, RequestProtocol};
use crate::envoy::is_grpc;
use crate::observe::CountingBody;

/// Records Istio's standard metrics for each request to `S`. See [`MetricsLayer`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use mesh_tower::metrics::{IstioMetrics, Metrics, MetricsLayer, WorkloadInfo};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let layer = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default());
/// let app = service_fn(|_req: http::Request<_>| async {
///     Ok::<_, Infallible>(http::Response::builder().status(201).body(Empty::<Bytes>::new()).unwrap())
/// });
/// let svc = Metrics::new(app, &layer);
///
/// let resp = svc.oneshot(http::Request::post("/anything").body(Empty::<Bytes>::new())?).await?;
/// assert_eq!(resp.status(), 201);
/// resp.into_body().collect().await?;
/// assert!(metrics.render().contains(r#"response_code="201""#));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Metrics<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Metrics { inner, config }
    }

    /// Wraps `inner` with the configuration of `layer`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use mesh_tower::metrics::{IstioMetrics, Metrics, MetricsLayer, WorkloadInfo};
    /// use tower::{service_fn, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let sleep = WorkloadInfo::from_labels("sleep", "foo", "", &Default::default());
    /// let layer = MetricsLayer::outbound(Arc::clone(&metrics), sleep);
    /// let transport = service_fn(|_req: http::Request<_>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    /// });
    /// let svc = Metrics::new(transport, &layer);
    /// svc.oneshot(http::Request::new(Empty::<Bytes>::new())).await?.into_body().collect().await?;
    ///
    /// let text = metrics.render();
    /// assert!(text.contains(r#"reporter="source""#), "{text}");
    /// assert!(text.contains(r#"source_workload="sleep""#), "{text}");
    /// # Ok(()) }
    /// ```
    pub fn new(inner: S, layer: &MetricsLayer) -> Self {
        use tower::Layer;
        layer.layer(inner)
    }

    /// A layer for this service (same as [`MetricsLayer`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, Metrics, MetricsLayer, Reporter, WorkloadInfo};
    ///
    /// let layer = MetricsLayer::inbound(Arc::new(IstioMetrics::new()), WorkloadInfo::default());
    /// // the service type names no inner service yet: any will do
    /// let layer = Metrics::<()>::layer(layer);
    /// assert_eq!(layer.reporter(), Reporter::Destination);
    /// ```
    pub fn layer(layer: MetricsLayer) -> MetricsLayer {
        layer
    }

    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = MetricsLayer::inbound(Arc::new(IstioMetrics::new()), WorkloadInfo::default());
    /// let svc = layer.layer(App { name: "httpbin" });
    /// assert_eq!(svc.get_ref().name, "httpbin");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = MetricsLayer::inbound(Arc::new(IstioMetrics::new()), WorkloadInfo::default());
    /// let mut svc = layer.layer(App { name: "httpbin" });
    /// svc.get_mut().name = "httpbin-v2";
    /// assert_eq!(svc.get_ref().name, "httpbin-v2");
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, WorkloadInfo};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let layer = MetricsLayer::inbound(Arc::new(IstioMetrics::new()), WorkloadInfo::default());
    /// let svc = layer.layer(App { name: "httpbin" });
    /// let app: App = svc.into_inner();
    /// assert_eq!(app.name, "httpbin");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Metrics<S>
where
    S: Service<Request<RequestBody<ReqB>>, Response = Response<ResB>>,
    ReqB: http_body::Body,
    ResB: http_body::Body,
{
    type Response = Response<MetricsBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let (req, pending) = start(&self.config, req);
        ResponseFuture::new(self.inner.call(req), pending)
    }
}

/// Starts recording a request: its start time, protocol, the context it carries, and its
/// body wrapped to be counted when its size is not known.
pub(crate) fn start<ReqB: http_body::Body>(
    config: &Arc<Config>,
    req: Request<ReqB>,
) -> (Request<RequestBody<ReqB>>, Pending) {
    let start = Instant::now();
    let protocol = if is_grpc(req.headers()) {
        RequestProtocol::Grpc
    } else {
        RequestProtocol::Http
    };
    let ext = req.extensions();
    let context = match ext.get::<MetricsContext>() {
        Some(c) => c.clone(),
        None => ext
            .get::<crate::inbound::ConnectionInfo>()
            .map(|c| c.metrics_context())
            .unwrap_or_default(),
    };
    // A server that names no service reports the Host header as its destination service
    // (istio_stats `populatePeerInfo`: the Host fallback when the inbound cluster has no
    // service metadata); only then is the authority kept (a reference count, no copy).
    let host = if config.reporter == super::Reporter::Destination
        && context.service.is_none()
        && config.default_service.host.is_empty()
    {
        // HTTP/1's Host header; HTTP/2's :authority (which hyper keeps in the URI)
        req.headers().get(http::header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        })
    } else {
        None
    };
    let head = req.method() == http::Method::HEAD;
    let (parts, body) = req.into_parts();
    // `GET /path HTTP/1.1\r\n`
    let target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let request_head =
        super::future::head_size(parts.method.as_str().len() + target + 12, &parts.headers);
    let (mut body, request_size) = CountingBody::new(body);
    // gRPC: istio_request_messages_total / istio_response_messages_total
    let request_messages = (protocol == RequestProtocol::Grpc).then(|| body.count_grpc_messages());
    let pending = Pending {
        config: Arc::clone(config),
        start,
        protocol,
        context,
        request_size,
        request_head,
        request_messages,
        host,
        head,
        done: false,
    };
    (Request::from_parts(parts, body), pending)
}
