//! [`PropagateTrace`].

use std::task::{Context, Poll};

use http::Request;
use tokio::task::futures::TaskLocalFuture;
use tower::Service;

use super::layer::{Direction, PropagateTraceLayer};
use bytes::BytesMut;

use super::{
    current, new_request_id, scope, take_request_id, Found, Origin, Seen, TraceContext,
    X_REQUEST_ID,
};

/// The response future of [`PropagateTrace`]: the inner future run with the hop's context
/// as the task's [`current`](super::current) context.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{self, PropagateTraceFuture, PropagateTraceLayer, TraceConfig};
/// use tower::{service_fn, Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// let mut svc = PropagateTraceLayer::inbound(TraceConfig::default())
///     .layer(service_fn(|_req: http::Request<()>| async { Ok::<_, Infallible>(trace::current()) }));
/// let fut: PropagateTraceFuture<_> = svc.ready().await?.call(http::Request::new(()));
/// let current = fut.await?.unwrap();
/// assert!(current.request_id.is_some());
/// # Ok(()) }
/// ```
pub type PropagateTraceFuture<F> = TaskLocalFuture<TraceContext, F>;

/// Propagates trace context and `x-request-id`. See [`PropagateTraceLayer`].
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{PropagateTrace, PropagateTraceLayer, TraceConfig};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// let echo = service_fn(|req: http::Request<()>| async move { Ok::<_, Infallible>(req) });
/// let svc = PropagateTrace::new(echo, PropagateTraceLayer::outbound(TraceConfig::default()));
///
/// // A request already carrying an id keeps it.
/// let req = http::Request::builder().header("x-request-id", "abc").body(()).unwrap();
/// let sent = svc.clone().oneshot(req).await?;
/// assert_eq!(sent.headers()["x-request-id"], "abc");
/// assert!(sent.headers().contains_key("x-b3-traceid")); // a new trace, in B3 (Istio's default)
///
/// let _inner = svc.into_inner(); // the wrapped service back
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateTrace<S> {
    inner: S,
    layer: PropagateTraceLayer,
}

impl<S> PropagateTrace<S> {
    /// Wraps `inner`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{PropagateTrace, PropagateTraceLayer, TraceConfig, TraceContext};
    /// use tower::{service_fn, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// let app = service_fn(|req: http::Request<()>| async move {
    ///     Ok::<_, Infallible>(req.extensions().get::<TraceContext>().cloned())
    /// });
    /// let svc = PropagateTrace::new(app, PropagateTraceLayer::inbound(TraceConfig::default()));
    /// let req = http::Request::builder()
    ///     .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
    ///     .body(())
    ///     .unwrap();
    /// let ctx = svc.oneshot(req).await?.unwrap();
    /// assert_eq!(ctx.trace_id_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
    /// # Ok(()) }
    /// ```
    pub fn new(inner: S, layer: PropagateTraceLayer) -> Self {
        PropagateTrace { inner, layer }
    }

    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = PropagateTraceLayer::inbound(TraceConfig::default()).layer(App { name: "reviews" });
    /// assert_eq!(svc.get_ref().name, "reviews");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let mut svc = PropagateTraceLayer::outbound(TraceConfig::default()).layer(App { name: "reviews" });
    /// svc.get_mut().name = "ratings";
    /// assert_eq!(svc.get_ref().name, "ratings");
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = PropagateTraceLayer::inbound(TraceConfig::default()).layer(App { name: "reviews" });
    /// let app: App = svc.into_inner();
    /// assert_eq!(app.name, "reviews");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }

    pub(crate) fn trace_layer(&self) -> &PropagateTraceLayer {
        &self.layer
    }
}

impl<S, B> Service<Request<B>> for PropagateTrace<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = PropagateTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = prepare(&self.layer, &mut req);
        scope(ctx, self.inner.call(req))
    }
}

/// A new trace: with the sampling decision the request carries without a context
/// (Envoy's Zipkin `extractSampled`), else sampled at the configured rate; never sampled
/// when the request will have no `x-request-id` (`has_id` false: Envoy samples by it, and
/// finds a request without one not traceable).
fn new_root(
    found: &Found<'_>,
    config: super::TraceConfig,
    has_id: bool,
    rng: &mut impl rand::RngCore,
) -> TraceContext {
    match found.sampling_only() {
        Some((sampled, debug)) => TraceContext {
            sampled,
            debug,
            ..TraceContext::new_root(0.0, rng)
        },
        None if has_id => TraceContext::new_root(config.sampling_percent, rng),
        None => TraceContext::new_root(0.0, rng),
    }
}

/// Opens this hop's span for `req` (or, on a server sharing its caller's span, takes the
/// caller's) and writes its headers (what [`PropagateTrace`] does before calling the inner
/// service); the caller runs the request under [`scope`](super::scope) with the returned
/// context.
pub(crate) fn prepare<B>(layer: &PropagateTraceLayer, req: &mut Request<B>) -> TraceContext {
    let config = layer.config;
    let mut rng = rand::rng();
    // one pass over the request's headers finds the trace headers it has
    let mut found = Found::scan(req.headers());
    found.only(config.formats);
    let seen = found.seen;
    let from_headers = found.parent(req.headers());
    // a caller's headers are mostly rewritten in place (or, shared, left alone); a new
    // trace adds them all
    let adds_headers = from_headers.is_none();
    let origin = from_headers.as_ref().map_or(Origin::New, |p| p.origin);
    let share = layer.direction == Direction::Inbound
        && config.shared_span_context
        && from_headers.is_some();
    // a B3 caller may defer the sampling decision; the one made here is written down
    let deferred = from_headers.as_ref().is_some_and(|p| p.sampled.is_none());
    // extract read the map's tracestate along with its traceparent (a B3 context carries
    // one only when it took it from the map, along with an agreeing traceparent)
    let tracestate_read = origin == Origin::W3c
        || from_headers
            .as_ref()
            .is_some_and(|p| p.tracestate.is_some());
    let came_as_b3_single = seen.may_hold(Seen::B3);
    // x-request-id: keep the request's, else carry the parent's on, else a new one (unless
    // MeshConfig `proxyHeaders.requestId` turned that off)
    let existing = found.request_id.filter(|v| !v.is_empty()).cloned();
    let has_id = existing.is_some() || config.generate_request_id;
    let mut ctx = match (from_headers, layer.direction) {
        (Some(parent), _) if share => {
            TraceContext::shared(parent, config.sampling_percent, &mut rng)
        }
        (Some(parent), _) => TraceContext::from_parent(parent, config.sampling_percent, &mut rng),
        (None, Direction::Inbound) => new_root(&found, config, has_id, &mut rng),
        (None, Direction::Outbound) => {
            let parent = req
                .extensions()
                .get::<TraceContext>()
                .cloned()
                .or_else(current);
            match parent {
                Some(p) => {
                    let mut child = p.child(&mut rng);
                    child.request_id = p.request_id;
                    child
                }
                None => new_root(&found, config, has_id, &mut rng),
            }
        }
    };
    // only the configured formats are written (Envoy's Zipkin tracer: the multi headers; a
    // `b3` single header that came in passes through as it was)
    let mut formats = config.formats;
    if share {
        // The caller's span is this hop's: only the formats it did not send (or that
        // disagree with the context that won, or lack the sampling decision made here)
        // are written.
        formats.w3c &= !(origin == Origin::W3c || found.traceparent_carries(&ctx));
        formats.b3_multi &=
            deferred || !(origin == Origin::B3Multi || found.b3_multi_carries(&ctx));
        formats.b3_single &= deferred || !came_as_b3_single;
    }
    // One allocation holds every value written below; room in the map for them too.
    let mut buf = BytesMut::new();
    if adds_headers && formats.any() {
        // the trace headers and x-request-id (alone, it needs no more than an insert)
        let n = 1
            + 2 * usize::from(formats.w3c)
            + 4 * usize::from(formats.b3_multi)
            + usize::from(formats.b3_single);
        req.headers_mut().reserve(n);
    }
    let request_id = match existing {
        Some(v) => Some(v),
        None => {
            let id = match ctx.request_id.take() {
                Some(parent) => Some(parent),
                // into the buffer the trace headers' values share, else on its own
                None if config.generate_request_id && formats.any() => {
                    Some(take_request_id(&mut buf, &mut rng))
                }
                None if config.generate_request_id => Some(new_request_id(&mut rng)),
                None => None,
            };
            if let Some(id) = &id {
                req.headers_mut().insert(X_REQUEST_ID, id.clone());
                // an access log outside this layer logs the id the request went on with
                if let Some(late) = req.extensions().get::<crate::accesslog::LateFacts>() {
                    late.set_request_id(id);
                }
            }
            id
        }
    };
    ctx.request_id = request_id;
    if formats.w3c || formats.b3_multi || formats.b3_single {
        ctx.inject_into(req.headers_mut(), formats, &mut buf, tracestate_read, seen);
    }
    if layer.direction == Direction::Inbound {
        // the application reads its hop's context from the request
        req.extensions_mut().insert(ctx.clone());
    }
    ctx
}
