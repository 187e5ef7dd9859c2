//! Body types of the metrics middleware.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use super::future::grpc_status_of;
use super::{IstioMetrics, RequestLabels};
use crate::observe::{BodyObserver, BodySize, CountingBody, ObservedBody};

/// The request body as the inner service sees it: counted when its size is not known in
/// advance.
pub type RequestBody<B> = CountingBody<B>;

/// The response body of [`Metrics`](super::Metrics): records the request when it ends.
pub type MetricsBody<B> = ObservedBody<B, Recorder>;

/// Records one request into [`IstioMetrics`] when dropped (at the end of the response
/// body). Created by the metrics middleware.
#[derive(Debug)]
pub struct Recorder {
    metrics: Arc<IstioMetrics>,
    labels: RequestLabels,
    start: Instant,
    request_size: BodySize,
    response_bytes: u64,
}

impl Recorder {
    pub(crate) fn new(
        metrics: Arc<IstioMetrics>,
        labels: RequestLabels,
        start: Instant,
        request_size: BodySize,
    ) -> Self {
        Recorder {
            metrics,
            labels,
            start,
            request_size,
            response_bytes: 0,
        }
    }
}

impl BodyObserver for Recorder {
    fn on_data(&mut self, n: u64) {
        self.response_bytes += n;
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if self.labels.grpc_status.is_none() && self.labels.protocol == super::RequestProtocol::Grpc
        {
            self.labels.grpc_status = grpc_status_of(trailers);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        self.metrics.record(
            &self.labels,
            ms,
            self.request_size.get(),
            self.response_bytes,
        );
    }
}
