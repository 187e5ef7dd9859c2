//! [`PropagateTraceLayer`].

use tower::Layer;

use super::service::PropagateTrace;
use super::TraceConfig;

/// Which side of the mesh a propagation layer sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

/// Propagates trace context and `x-request-id`. See the [module docs](super).
///
/// # Examples
///
/// On a server sharing the caller's span (Zipkin's `shared_span_context` on, Envoy's own
/// default): the caller's B3 headers reach the application as they came, the configured
/// formats it did not send (here W3C `traceparent`, configured as Zipkin's
/// `USE_B3_WITH_W3C_PROPAGATION` writes it) are added for the same span, and so is a
/// missing `x-request-id`:
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{Formats, PropagateTraceLayer, TraceConfig, TraceContext};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// let both = Formats { w3c: true, ..Formats::B3 };
/// let config = TraceConfig { formats: both, shared_span_context: true, ..TraceConfig::default() };
/// let app = ServiceBuilder::new()
///     .layer(PropagateTraceLayer::inbound(config))
///     .service(service_fn(|req: http::Request<()>| async move {
///         Ok::<_, Infallible>(req)
///     }));
/// let req = http::Request::builder()
///     .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
///     .header("x-b3-spanid", "e457b5a2e4d86bd1")
///     .header("x-b3-sampled", "1")
///     .body(())
///     .unwrap();
/// let seen = app.oneshot(req).await?;
///
/// let ctx = seen.extensions().get::<TraceContext>().unwrap();
/// assert_eq!(ctx.trace_id_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
/// assert_eq!(ctx.span_id, 0xe457b5a2e4d86bd1);
/// // the application sees this hop's span in both formats
/// assert_eq!(seen.headers()["x-b3-spanid"], "e457b5a2e4d86bd1");
/// assert_eq!(
///     seen.headers()["traceparent"],
///     "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"
/// );
/// assert_eq!(seen.headers()["x-request-id"].len(), 36);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PropagateTraceLayer {
    pub(crate) direction: Direction,
    pub(crate) config: TraceConfig,
}

impl PropagateTraceLayer {
    /// For a server: the caller's span is the parent of a server span (or, with
    /// [`TraceConfig::shared_span_context`] on, is shared); the context becomes the task's
    /// current context while the request is handled.
    ///
    /// # Examples
    ///
    /// The server opens a span of its own (as istiod configures Envoy's tracers) and the
    /// application sees it in the headers, the caller's span as its parent:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{self, Formats, PropagateTraceLayer, TraceConfig, TraceContext};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// let both = Formats { w3c: true, ..Formats::B3 };
    /// let config = TraceConfig { formats: both, ..TraceConfig::default() };
    /// let app = PropagateTraceLayer::inbound(config).layer(service_fn(|req: http::Request<()>| async move {
    ///     let ctx = req.extensions().get::<TraceContext>().cloned().unwrap();
    ///     assert_eq!(trace::current().as_ref(), Some(&ctx)); // the task's current context
    ///     Ok::<_, Infallible>((ctx, req))
    /// }));
    /// let req = http::Request::builder()
    ///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    ///     .body(())
    ///     .unwrap();
    /// let (ctx, seen) = app.oneshot(req).await?;
    ///
    /// assert_eq!(ctx.parent_span_id, Some(0x00f0_67aa_0ba9_02b7));
    /// assert_eq!(seen.headers()["traceparent"], ctx.traceparent());
    /// assert_eq!(seen.headers()["x-b3-parentspanid"], "00f067aa0ba902b7");
    /// assert_eq!(trace::current(), None, "only while the request is handled");
    /// # Ok(()) }
    /// ```
    pub fn inbound(config: TraceConfig) -> Self {
        PropagateTraceLayer {
            direction: Direction::Inbound,
            config,
        }
    }

    /// For a client: the parent is the request's own headers, its extensions, or the
    /// current inbound context.
    ///
    /// # Examples
    ///
    /// An outbound call made while an inbound request is handled continues its trace and
    /// carries its `x-request-id`, without the application copying headers:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// // The application's client: returns the headers it would send.
    /// let client = PropagateTraceLayer::outbound(TraceConfig::default()).layer(service_fn(
    ///     |req: http::Request<()>| async move { Ok::<_, Infallible>(req.headers().clone()) },
    /// ));
    /// // The application: handles an inbound request by calling out.
    /// let app = PropagateTraceLayer::inbound(TraceConfig::default()).layer(service_fn(
    ///     move |inbound: http::Request<()>| {
    ///         let client = client.clone();
    ///         async move {
    ///             let sent = client.oneshot(http::Request::new(())).await?;
    ///             Ok::<_, Infallible>((inbound.extensions().get::<TraceContext>().cloned().unwrap(), sent))
    ///         }
    ///     },
    /// ));
    /// let req = http::Request::builder().header("x-request-id", "req-42").body(()).unwrap();
    /// let (hop, sent) = app.oneshot(req).await?;
    ///
    /// assert_eq!(sent["x-request-id"], "req-42");
    /// assert_eq!(sent["x-b3-traceid"], hop.trace_id_hex());
    /// assert_eq!(sent["x-b3-parentspanid"], format!("{:016x}", hop.span_id).as_str());
    /// # Ok(()) }
    /// ```
    pub fn outbound(config: TraceConfig) -> Self {
        PropagateTraceLayer {
            direction: Direction::Outbound,
            config,
        }
    }
}

impl<S> Layer<S> for PropagateTraceLayer {
    type Service = PropagateTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTrace::new(inner, *self)
    }
}
