//! [`ResponseFuture`]: the response future of the metrics middleware.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::Response;
use pin_project_lite::pin_project;

use super::body::Recorder;
use super::layer::Config;
use super::{MetricsBody, MetricsContext, Reporter, RequestLabels, RequestProtocol};
use crate::envoy::ResponseFlags;
use crate::observe::BodySize;

#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) config: Arc<Config>,
    pub(crate) start: Instant,
    pub(crate) protocol: RequestProtocol,
    pub(crate) context: MetricsContext,
    pub(crate) request_size: BodySize,
}

impl Pending {
    /// Wraps `response`'s body so the request is recorded when it ends; `context` is what
    /// the stack learned while handling it (it overrides the request's).
    pub(crate) fn finish<B>(
        self,
        response: Response<B>,
        context: Option<&MetricsContext>,
    ) -> Response<MetricsBody<B>> {
        let (parts, body) = response.into_parts();
        let recorder = self.recorder_for(&parts, context);
        Response::from_parts(parts, MetricsBody::new(body, Some(recorder)))
    }

    /// The recorder for a response with these parts (status, flags, `grpc-status`).
    fn recorder_for(
        self,
        parts: &http::response::Parts,
        context: Option<&MetricsContext>,
    ) -> Recorder {
        // only a gRPC request's status is a label: no lookup for the rest
        let grpc_status = match self.protocol {
            RequestProtocol::Grpc => grpc_status_of(&parts.headers),
            RequestProtocol::Http => None,
        };
        self.into_recorder(
            parts.status.as_u16(),
            context,
            parts
                .extensions
                .get::<ResponseFlags>()
                .copied()
                .unwrap_or_default(),
            grpc_status,
        )
    }

    /// Records a request that got no response at all (response code 0, as Envoy does).
    pub(crate) fn abandon(self) {
        drop(self.into_recorder(0, None, ResponseFlags::NONE, None));
    }

    /// Builds the labels from the request context and what the response says.
    fn into_recorder(
        mut self,
        status: u16,
        response_context: Option<&MetricsContext>,
        flags: ResponseFlags,
        grpc_status: Option<u32>,
    ) -> Recorder {
        if let Some(rc) = response_context {
            self.context.merge_from(rc);
        }
        let c = &self.config;
        let service = self
            .context
            .service
            .take()
            .unwrap_or_else(|| Arc::clone(&c.default_service));
        let peer = self
            .context
            .peer
            .take()
            .unwrap_or_else(|| Arc::clone(&c.unknown));
        let (source, destination, security) = match c.reporter {
            Reporter::Destination => {
                let mtls = self
                    .context
                    .mutual_tls
                    .unwrap_or(!peer.principal.is_empty());
                (peer, Arc::clone(&c.local), Some(mtls))
            }
            Reporter::Source => (Arc::clone(&c.local), peer, None),
        };
        let grpc_status = match self.protocol {
            RequestProtocol::Grpc => grpc_status,
            RequestProtocol::Http => None,
        };
        Recorder::new(
            Arc::clone(&c.metrics),
            RequestLabels {
                reporter: c.reporter,
                source,
                destination,
                service,
                protocol: self.protocol,
                response_code: status,
                grpc_status,
                flags,
                security,
            },
            self.start,
            self.request_size,
        )
    }
}

pin_project! {
    /// Response future of [`Metrics`](super::Metrics): wraps the response body so the
    /// request is recorded when the body ends.
    ///
    /// # Examples
    ///
    /// When the inner service fails without a response, the request is still counted,
    /// with response code 0 (as Envoy reports a stream that ended without one):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, ResponseFuture, WorkloadInfo};
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let metrics = Arc::new(IstioMetrics::new());
    /// let mut svc = MetricsLayer::outbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(
    ///     |_req: http::Request<_>| async { Err::<http::Response<Full<Bytes>>, _>("connection reset") },
    /// ));
    /// let fut: ResponseFuture<_> = svc.ready().await.unwrap().call(http::Request::new(Full::new(Bytes::new())));
    /// assert_eq!(fut.await.unwrap_err(), "connection reset");
    ///
    /// let text = metrics.render();
    /// let line = text.lines().find(|l| l.starts_with("istio_requests_total{")).unwrap();
    /// assert!(line.contains(r#"response_code="0""#), "{line}");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Pending) -> Self {
        ResponseFuture {
            inner,
            pending: Some(pending),
        }
    }
}

/// `grpc-status`.
pub(crate) const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

pub(crate) fn grpc_status_of(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get(GRPC_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<MetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let recorder = pending
                    .map(|p| p.recorder_for(&parts, parts.extensions.get::<MetricsContext>()));
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    MetricsBody::new(body, recorder),
                )))
            }
            Err(e) => {
                // No response at all: recorded with response code 0, as Envoy does for a
                // stream that ends without one. Dropping the recorder records it.
                drop(pending.map(|p| p.into_recorder(0, None, ResponseFlags::NONE, None)));
                Poll::Ready(Err(e))
            }
        }
    }
}
