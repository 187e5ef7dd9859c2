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
use super::{MetricsBody, MetricsContext, Reporter, RequestLabels, RequestProtocol, ServiceInfo};
use crate::envoy::ResponseFlags;
use crate::observe::{BodyObserver, BodySize};

#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) config: Arc<Config>,
    pub(crate) start: Instant,
    pub(crate) protocol: RequestProtocol,
    pub(crate) context: MetricsContext,
    pub(crate) request_size: BodySize,
    /// The request head's size as HTTP/1.1 writes it (see [`head_size`]).
    pub(crate) request_head: u64,
    /// A gRPC request's messages, counted by its body.
    pub(crate) request_messages: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The request's authority, kept only by a server that names no service: its
    /// `destination_service` then is the Host header, as istio_stats falls back to.
    pub(crate) host: Option<http::HeaderValue>,
    /// A HEAD request: its response has no body to wait for.
    pub(crate) head: bool,
    /// Recorded (or handed to a recorder) already.
    pub(crate) done: bool,
}

impl Drop for Pending {
    /// Dropped without a response: the caller went away before it came (the server's
    /// future dropped by a closed connection, the client's by its caller). Envoy records
    /// and logs such a request with response code 0 and `DC`
    /// (DownstreamConnectionTermination).
    fn drop(&mut self) {
        if !self.done {
            drop(self.take_recorder(
                0,
                None,
                ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION,
                None,
            ));
        }
    }
}

/// A server's destination service named by the Host header: istio_stats reports the
/// whole authority as `destination_service` and `destination_service_name`. Cached per
/// thread so that requests to one host share one `Arc` (and the series cache hits).
fn host_service(host: &http::HeaderValue) -> Arc<ServiceInfo> {
    const MAX: usize = 16;
    thread_local! {
        static HOSTS: std::cell::RefCell<Vec<(http::HeaderValue, Arc<ServiceInfo>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    HOSTS.with(|hosts| {
        let mut hosts = hosts.borrow_mut();
        if let Some((_, s)) = hosts.iter().find(|(h, _)| h == host) {
            return Arc::clone(s);
        }
        let name = String::from_utf8_lossy(host.as_bytes()).into_owned();
        let s = Arc::new(ServiceInfo {
            host: name.clone(),
            name,
            namespace: String::new(),
        });
        if hosts.len() >= MAX {
            hosts.remove(0);
        }
        hosts.push((host.clone(), Arc::clone(&s)));
        s
    })
}

/// The size of a message head as HTTP/1.1 writes it: its first line (`line`, with its
/// CRLF), each header as `name: value` and CRLF, and the blank line. istio_stats reports
/// a request's and a response's bytes as Envoy counts them on the wire, the head with the
/// body (an HTTP/2 hop's compressed HEADERS frames are smaller; the same figure stands
/// for them). An estimate of Envoy's count, not the count: headers a codec adds after the
/// layer (`content-length`, `date`), chunked framing and an HTTP/2 request's
/// `:authority` are not in it.
pub(crate) fn head_size(line: usize, headers: &http::HeaderMap) -> u64 {
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    (line + fields + 2) as u64
}

impl Pending {
    /// Wraps `response`'s body so the request is recorded when it ends; `context` is what
    /// the stack learned while handling it (it overrides the request's).
    pub(crate) fn finish<B: http_body::Body>(
        mut self,
        response: Response<B>,
        context: Option<&MetricsContext>,
    ) -> Response<MetricsBody<B>> {
        let (parts, body) = response.into_parts();
        let recorder = self.recorder_for(&parts, context, &body);
        Response::from_parts(parts, MetricsBody::new(body, Some(recorder)))
    }

    /// The recorder for a response with these parts (status, flags, `grpc-status`) and
    /// this body (one with nothing to send is complete already).
    fn recorder_for<B: http_body::Body>(
        &mut self,
        parts: &http::response::Parts,
        context: Option<&MetricsContext>,
        body: &B,
    ) -> Recorder {
        // a request translated from gRPC-Web went on as gRPC: `istio.stats`, after Envoy's
        // `grpc_web` filter, reports it as one (see `crate::grpc_web`)
        if self.protocol == RequestProtocol::Http
            && parts
                .extensions
                .get::<crate::grpc_web::Translated>()
                .is_some()
        {
            self.protocol = RequestProtocol::Grpc;
        }
        // a body that is never polled because there is nothing to send is not cut short
        let status = parts.status.as_u16();
        let complete =
            body.is_end_stream() || self.head || status < 200 || status == 204 || status == 304;
        // only a gRPC request's status is a label: no lookup for the rest
        let grpc_status = match self.protocol {
            RequestProtocol::Grpc => grpc_status_of(&parts.headers),
            RequestProtocol::Http | RequestProtocol::Tcp => None,
        };
        let mut recorder = self.take_recorder(
            status,
            context,
            parts
                .extensions
                .get::<ResponseFlags>()
                .copied()
                .unwrap_or_default(),
            grpc_status,
        );
        recorder.response_head(head_size(
            // `HTTP/1.1 200 OK\r\n`
            13 + parts.status.canonical_reason().map_or(0, str::len) + 2,
            &parts.headers,
        ));
        if complete {
            recorder.on_end();
        }
        if !(status == 200 && crate::envoy::is_grpc(&parts.headers)) {
            // Envoy's gRPC stats count a response's messages only when it is one
            // (`isGrpcResponseHeaders`: 200 with a gRPC content type)
            recorder.stop_counting_response_messages();
        }
        recorder
    }

    /// Records a request that got no response at all (response code 0, as Envoy does).
    pub(crate) fn abandon(mut self) {
        drop(self.take_recorder(0, None, ResponseFlags::NONE, None));
    }

    /// Builds the labels from the request context and what the response says (once:
    /// later calls, and the drop, find the context taken).
    fn take_recorder(
        &mut self,
        status: u16,
        response_context: Option<&MetricsContext>,
        flags: ResponseFlags,
        grpc_status: Option<u32>,
    ) -> Recorder {
        self.done = true;
        if let Some(rc) = response_context {
            self.context.merge_from(rc);
        }
        let c = &self.config;
        let service = match (self.context.service.take(), self.host.take()) {
            (Some(s), _) => s,
            (None, Some(host)) => host_service(&host),
            (None, None) => Arc::clone(&c.default_service),
        };
        let peer = self
            .context
            .peer
            .take()
            .unwrap_or_else(|| Arc::clone(&c.unknown));
        // mutual TLS: the connection's when the stack knows it, else whether the peer has
        // a principal (which only a certificate gives)
        let mtls = self
            .context
            .mutual_tls
            .unwrap_or(!peer.principal.is_empty());
        let (source, destination, security) = match c.reporter {
            Reporter::Destination => (peer, Arc::clone(&c.local), Some(mtls)),
            // the client side's connection_security_policy is always unknown in Istio
            Reporter::Source => (Arc::clone(&c.local), peer, None),
        };
        let grpc_status = match self.protocol {
            RequestProtocol::Grpc => grpc_status,
            RequestProtocol::Http | RequestProtocol::Tcp => None,
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
                local_principal: mtls,
            },
            self.start,
            std::mem::replace(&mut self.request_size, BodySize::Exact(0)),
            self.request_head,
            self.request_messages.take(),
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

/// Envoy's `Grpc::Status::InvalidCode` (-1): a `grpc-status` that is not a number, or
/// past the last code gRPC defines (16).
pub(crate) const GRPC_INVALID: u32 = u32::MAX;

/// The `grpc-status` of `headers`, as Envoy's `Grpc::Common::getGrpcStatus` reads it:
/// none without the header, [`GRPC_INVALID`] for a value that is not a known code.
pub(crate) fn grpc_status_of(headers: &http::HeaderMap) -> Option<u32> {
    let v = headers.get(GRPC_STATUS)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&c| c <= 16)
            .unwrap_or(GRPC_INVALID),
    )
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<MetricsBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let pending = this.pending.take();
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let recorder = pending.map(|mut p| {
                    p.recorder_for(&parts, parts.extensions.get::<MetricsContext>(), &body)
                });
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    MetricsBody::new(body, recorder),
                )))
            }
            Err(e) => {
                // No response at all: recorded with response code 0, as Envoy does for a
                // stream that ends without one. Dropping the recorder records it.
                drop(pending.map(|mut p| p.take_recorder(0, None, ResponseFlags::NONE, None)));
                Poll::Ready(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's `getGrpcStatus`: a number up to 16, else InvalidCode; no header, no status.
    #[test]
    fn grpc_status_as_envoy_reads_it() {
        let of = |v: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(v) = v {
                h.insert(GRPC_STATUS, v.parse().unwrap());
            }
            grpc_status_of(&h)
        };
        assert_eq!(of(None), None);
        assert_eq!(of(Some("0")), Some(0));
        assert_eq!(of(Some(" 14 ")), Some(14));
        assert_eq!(of(Some("16")), Some(16));
        assert_eq!(of(Some("17")), Some(GRPC_INVALID));
        assert_eq!(of(Some("99")), Some(GRPC_INVALID));
        assert_eq!(of(Some("abc")), Some(GRPC_INVALID));
        assert_eq!(of(Some("-1")), Some(GRPC_INVALID));
    }
}
