//! Body types of the metrics middleware.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use super::future::grpc_status_of;
use super::{IstioMetrics, RequestLabels};
use crate::envoy::{http_to_grpc_status, ResponseFlags};
use crate::observe::{BodyObserver, BodySize, CountingBody, GrpcFrames, ObservedBody};

/// The request body as the inner service sees it: counted when its size is not known in
/// advance.
///
/// # Examples
///
/// The service under a [`MetricsLayer`](super::MetricsLayer) takes `Request<RequestBody<B>>`
/// and reads it like any body; its size, with the head's, goes into `istio_request_bytes`:
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, RequestBody, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let app = service_fn(|req: http::Request<RequestBody<Full<Bytes>>>| async move {
///     let body = req.into_body().collect().await.unwrap().to_bytes();
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!("{} bytes", body.len())))))
/// });
/// let svc = MetricsLayer::inbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(app);
///
/// let req = http::Request::post("/post").body(Full::new(Bytes::from("hello mesh")))?;
/// let resp = svc.oneshot(req).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "10 bytes");
///
/// let text = metrics.render();
/// let sum = text.lines().find(|l| l.starts_with("istio_request_bytes_sum{")).unwrap();
/// // `POST /post HTTP/1.1\r\n` and the blank line (23 bytes), then the 10-byte body
/// assert!(sum.ends_with(" 33.0"), "{sum}");
/// # Ok(()) }
/// ```
pub type RequestBody<B> = CountingBody<B>;

/// The response body of [`Metrics`](super::Metrics): records the request when it ends.
///
/// # Examples
///
/// The request is counted once the response body has been read (or dropped), with its size:
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::metrics::{IstioMetrics, MetricsBody, MetricsLayer, WorkloadInfo};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let svc = MetricsLayer::outbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(
///     |_req: http::Request<_>| async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("12345")))) },
/// ));
/// let resp: http::Response<MetricsBody<Full<Bytes>>> =
///     svc.clone().oneshot(http::Request::new(Full::new(Bytes::new()))).await?;
/// assert_eq!(metrics.series_count(), 0, "not yet: the body is still being read");
/// resp.into_body().collect().await?;
/// assert_eq!(metrics.series_count(), 1);
///
/// let text = metrics.render();
/// let sum = text.lines().find(|l| l.starts_with("istio_response_bytes_sum{")).unwrap();
/// // the head as HTTP/1.1 writes it (`HTTP/1.1 200 OK\r\n`, no headers, `\r\n`: 19 bytes)
/// // and the 5-byte body, as istio_stats counts wire bytes
/// assert!(sum.ends_with(" 24.0"), "{sum}");
/// # Ok(()) }
/// ```
pub type MetricsBody<B> = ObservedBody<B, Recorder>;

/// Records one request into [`IstioMetrics`] when dropped (at the end of the response
/// body). Created by the metrics middleware, which puts it in the [`MetricsBody`].
///
/// # Examples
///
/// A response body dropped before its end still records its request (with the bytes
/// actually sent):
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use mesh_tower::metrics::{IstioMetrics, MetricsLayer, Recorder, WorkloadInfo};
/// use mesh_tower::observe::ObservedBody;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let svc = MetricsLayer::outbound(Arc::clone(&metrics), WorkloadInfo::default()).layer(service_fn(
///     |_req: http::Request<_>| async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("12345")))) },
/// ));
/// let resp = svc.oneshot(http::Request::new(Full::new(Bytes::new()))).await?;
/// let body: ObservedBody<Full<Bytes>, Recorder> = resp.into_body();
/// drop(body); // the client went away: the Recorder inside records the request
/// assert_eq!(metrics.series_count(), 1);
/// assert!(metrics.render().contains("istio_requests_total{"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Recorder {
    metrics: Arc<IstioMetrics>,
    labels: RequestLabels,
    start: Instant,
    request_size: BodySize,
    /// The request head's bytes (counted with the body, as istio_stats does).
    request_head: u64,
    response_bytes: u64,
    /// A gRPC request's messages: the client's (counted by the request body), the
    /// server's (counted here).
    messages: Option<(Arc<AtomicU64>, GrpcFrames)>,
    /// Bytes of the last data frame not yet seen by `on_bytes`.
    unseen: u64,
    /// The response body reached its end (or failed); dropped before, it was cut short.
    ended: bool,
}

impl Recorder {
    pub(crate) fn new(
        metrics: Arc<IstioMetrics>,
        labels: RequestLabels,
        start: Instant,
        request_size: BodySize,
        request_head: u64,
        request_messages: Option<Arc<AtomicU64>>,
    ) -> Self {
        Recorder {
            metrics,
            labels,
            start,
            request_size,
            request_head,
            response_bytes: 0,
            messages: request_messages.map(|r| (r, GrpcFrames::default())),
            unseen: 0,
            ended: false,
        }
    }
}

impl Recorder {
    /// The response head's bytes, counted with its body.
    pub(crate) fn response_head(&mut self, n: u64) {
        self.response_bytes += n;
    }

    /// The response is not gRPC: its body's messages are not counted.
    pub(crate) fn stop_counting_response_messages(&mut self) {
        if let Some((_, frames)) = &mut self.messages {
            frames.broken = true;
        }
    }
}

impl BodyObserver for Recorder {
    fn on_data(&mut self, n: u64) {
        self.response_bytes += n;
        if let Some((_, frames)) = &mut self.messages {
            // the previous frame's bytes did not all come through on_bytes: boundaries lost
            frames.broken |= self.unseen != 0;
            self.unseen = n;
        }
    }

    fn wants_bytes(&self) -> bool {
        self.messages.as_ref().is_some_and(|(_, f)| !f.broken)
    }

    fn on_bytes(&mut self, chunk: &[u8]) {
        if let Some((_, frames)) = &mut self.messages {
            frames.feed(chunk);
            self.unseen = self.unseen.saturating_sub(chunk.len() as u64);
        }
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if self.labels.grpc_status.is_none() && self.labels.protocol == super::RequestProtocol::Grpc
        {
            self.labels.grpc_status = grpc_status_of(trailers);
        }
    }

    fn on_end(&mut self) {
        self.ended = true;
    }

    fn on_error(&mut self) {
        // reset by the upstream after the response started: Envoy's UC (not the caller's DC)
        self.ended = true;
        self.labels
            .flags
            .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let l = &mut self.labels;
        if !self.ended && l.response_code != 0 {
            // the body was dropped before its end: the caller went away mid-response
            // (Envoy's DC, DownstreamConnectionTermination, with the response's code)
            l.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
        }
        if l.protocol == super::RequestProtocol::Grpc
            && l.grpc_status.is_none()
            && l.response_code != 0
        {
            // no grpc-status in the trailers or the headers: inferred from the HTTP status
            // (Envoy's Grpc::Common::getGrpcStatus(trailers, headers, info), which
            // istio_stats uses for gRPC requests: httpToGrpcStatus, e.g. 503 → 14, 200 → 2)
            l.grpc_status = Some(http_to_grpc_status(l.response_code));
        }
        // whole milliseconds, as istio_stats divides the duration (int64); in u64, whose
        // conversion to f64 is one instruction (`as_millis` is a u128's, a libcall)
        let d = self.start.elapsed();
        let ms = d
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis())) as f64;
        let messages = self
            .messages
            .as_ref()
            .map(|(sent, received)| (sent.load(Ordering::Relaxed), received.count));
        self.metrics.record(
            &self.labels,
            ms,
            self.request_head + self.request_size.get(),
            self.response_bytes,
            messages,
        );
    }
}
