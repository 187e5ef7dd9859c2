//! Trace-context propagation as Istio's sidecars do it: W3C `traceparent`/`tracestate`, B3
//! (multi-header `x-b3-*` and single `b3`), and `x-request-id`.
//!
//! Which formats are read and written follows the mesh's tracer ([`TraceConfig::from_mesh`]
//! of MeshConfig's tracing settings): none by default, as Istio's default install since
//! 1.22 (only `x-request-id`); B3 for a Zipkin tracer (`b3`, then `x-b3-*`, as Envoy's
//! Zipkin tracer reads them); W3C for an `opentelemetry` provider; B3 with a W3C fallback,
//! both written, for Zipkin's `USE_B3_WITH_W3C_PROPAGATION`. Headers of a format the
//! tracer does not read pass through untouched.
//!
//! [`PropagateTraceLayer::inbound`] reads the caller's context and opens a server span (a
//! new span id whose parent is the caller's: istiod sets Zipkin's `shared_span_context`
//! off, and Envoy's OpenTelemetry tracer always opens one), rewriting the headers to carry
//! it; with [`TraceConfig::shared_span_context`] on it shares the caller's span instead
//! (Envoy's own Zipkin default) and the application sees the caller's trace headers as
//! they came, plus any configured format the caller did not send. Either way it adds an
//! `x-request-id` if there is none, and exposes the [`TraceContext`] in the request
//! extensions and as the task's [`current`] context while the request is handled. A
//! request without a usable context starts a new trace, written in every configured
//! format.
//!
//! [`PropagateTraceLayer::outbound`] does the same for a client request: its parent is the
//! trace headers the application already set, else a [`TraceContext`] in the request
//! extensions, else the [`current`] context of the inbound request being handled, else a new
//! trace. So an outbound call made while handling an inbound request carries the trace on
//! (and its `x-request-id`) without the application copying headers.
//!
//! New traces are sampled at [`TraceConfig::sampling_percent`] (Istio's default 1%); an
//! incoming decision is kept.
//!
//! # Examples
//!
//! A server called with B3 context calls another service while handling the request: the
//! outbound call stays in the caller's trace, in a new span whose parent is the server's
//! own span, with the same `x-request-id`.
//!
//! ```
//! use std::convert::Infallible;
//! use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Infallible> {
//! // the client: returns the headers it would send
//! let client = PropagateTraceLayer::outbound(TraceConfig::default()).layer(service_fn(
//!     |req: http::Request<()>| async move { Ok::<_, Infallible>(req.headers().clone()) },
//! ));
//! // the server: handles each request by calling out
//! let server = PropagateTraceLayer::inbound(TraceConfig::default()).layer(service_fn(
//!     move |_req: http::Request<()>| client.clone().oneshot(http::Request::new(())),
//! ));
//! let req = http::Request::builder()
//!     .header("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736")
//!     .header("x-b3-spanid", "00f067aa0ba902b7")
//!     .header("x-b3-sampled", "1")
//!     .header("x-request-id", "r-7")
//!     .body(())
//!     .unwrap();
//! let sent = server.oneshot(req).await?;
//!
//! assert_eq!(sent["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
//! let parent = sent["x-b3-parentspanid"].to_str().unwrap();
//! assert_ne!(parent, "00f067aa0ba902b7", "the server's own span, a child of the caller's");
//! assert_ne!(sent["x-b3-spanid"], parent, "a new span");
//! assert_eq!(sent["x-b3-sampled"], "1", "the caller's sampling decision");
//! assert_eq!(sent["x-request-id"], "r-7");
//! # Ok(()) }
//! ```

mod layer;
mod service;

use bytes::BytesMut;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use mesh_core::meshconfig::{TracePropagation, Tracing};
use rand::{Rng, RngCore};

pub use layer::PropagateTraceLayer;
pub(crate) use service::prepare as prepare_request;
pub use service::{PropagateTrace, PropagateTraceFuture};

/// `traceparent`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, TRACEPARENT};
///
/// let ctx = TraceContext::new_root(100.0, &mut rand::rng());
/// let mut headers = http::HeaderMap::new();
/// ctx.inject(&mut headers, Formats::W3C);
/// assert_eq!(TRACEPARENT, "traceparent");
/// assert_eq!(headers[TRACEPARENT], ctx.traceparent());
/// assert!(headers[TRACEPARENT].to_str().unwrap().ends_with("-01"), "sampled");
/// ```
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, TRACESTATE};
///
/// let ctx = TraceContext {
///     tracestate: Some(http::HeaderValue::from_static("congo=t61rcWkgMzE")),
///     ..TraceContext::new_root(100.0, &mut rand::rng())
/// };
/// let mut headers = http::HeaderMap::new();
/// ctx.child(&mut rand::rng()).inject(&mut headers, Formats::W3C);
/// assert_eq!(headers[TRACESTATE], "congo=t61rcWkgMzE"); // carried unchanged
/// ```
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `b3` (single header).
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, B3};
///
/// let ctx = TraceContext::new_root(100.0, &mut rand::rng());
/// let mut headers = http::HeaderMap::new();
/// ctx.inject(&mut headers, Formats::default());
/// assert!(!headers.contains_key(B3), "not a default format");
/// ctx.inject(&mut headers, Formats { w3c: false, b3_multi: false, b3_single: true });
/// assert_eq!(headers[B3], ctx.b3_single());
/// ```
pub const B3: HeaderName = HeaderName::from_static("b3");
/// `x-b3-traceid`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, X_B3_TRACEID};
///
/// let ctx = TraceContext::new_root(100.0, &mut rand::rng());
/// let mut headers = http::HeaderMap::new();
/// ctx.inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_TRACEID], ctx.trace_id_hex());
/// assert_eq!(headers[X_B3_TRACEID].len(), 32);
/// ```
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, X_B3_SPANID};
///
/// let ctx = TraceContext::new_root(100.0, &mut rand::rng());
/// let mut headers = http::HeaderMap::new();
/// ctx.inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_SPANID], format!("{:016x}", ctx.span_id).as_str());
/// ```
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, X_B3_PARENTSPANID};
///
/// let root = TraceContext::new_root(100.0, &mut rand::rng());
/// let mut headers = http::HeaderMap::new();
/// root.inject(&mut headers, Formats::default());
/// assert!(!headers.contains_key(X_B3_PARENTSPANID), "a root span has no parent");
///
/// root.child(&mut rand::rng()).inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_PARENTSPANID], format!("{:016x}", root.span_id).as_str());
/// ```
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, X_B3_SAMPLED};
///
/// let mut headers = http::HeaderMap::new();
/// TraceContext::new_root(100.0, &mut rand::rng()).inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_SAMPLED], "1");
/// TraceContext::new_root(0.0, &mut rand::rng()).inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_SAMPLED], "0");
/// ```
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags`.
///
/// # Examples
///
/// Read (`x-b3-flags: 1`, debug, implies sampling) but never written: Envoy's Zipkin tracer
/// writes a debug trace as `x-b3-sampled: 1`:
///
/// ```
/// use mesh_tower::trace::{Formats, TraceContext, X_B3_FLAGS, X_B3_SAMPLED};
///
/// let ctx = TraceContext { debug: true, ..TraceContext::new_root(0.0, &mut rand::rng()) };
/// let mut headers = http::HeaderMap::new();
/// ctx.inject(&mut headers, Formats::default());
/// assert_eq!(headers[X_B3_SAMPLED], "1");
/// assert!(!headers.contains_key(X_B3_FLAGS));
/// ```
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// `x-request-id`.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, X_REQUEST_ID};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// let svc = PropagateTraceLayer::inbound(TraceConfig::default()).layer(service_fn(
///     |req: http::Request<()>| async move { Ok::<_, Infallible>(req.headers()[X_REQUEST_ID].clone()) },
/// ));
/// let with_id = http::Request::builder().header(X_REQUEST_ID, "r-1").body(()).unwrap();
/// assert_eq!(svc.clone().oneshot(with_id).await?, "r-1"); // kept
/// let without = http::Request::new(());
/// assert_eq!(svc.oneshot(without).await?.len(), 36); // a new UUID
/// # Ok(()) }
/// ```
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Which formats to write on the next hop.
///
/// # Examples
///
/// ```
/// use http::HeaderMap;
/// use mesh_tower::trace::{Formats, TraceContext};
/// use rand::rngs::StdRng;
/// use rand::SeedableRng;
///
/// assert_eq!(Formats::default(), Formats { w3c: false, b3_multi: true, b3_single: false });
///
/// let ctx = TraceContext::new_root(100.0, &mut StdRng::seed_from_u64(7));
/// let mut headers = HeaderMap::new();
/// ctx.inject(&mut headers, Formats { w3c: false, b3_multi: false, b3_single: true });
/// assert_eq!(headers.len(), 1);
/// assert_eq!(headers["b3"], ctx.b3_single());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    /// W3C `traceparent` (+ `tracestate`).
    pub w3c: bool,
    /// B3 multi-header (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`,
    /// `x-b3-sampled`).
    pub b3_multi: bool,
    /// B3 single header `b3`.
    pub b3_single: bool,
}

impl Default for Formats {
    /// B3 multi-header: what Envoy's Zipkin tracer sends, Istio's default tracer.
    fn default() -> Self {
        Formats::B3
    }
}

impl Formats {
    /// No trace headers: tracing off (MeshConfig `enableTracing: false`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{Formats, TraceContext};
    ///
    /// let mut headers = http::HeaderMap::new();
    /// TraceContext::new_root(100.0, &mut rand::rng()).inject(&mut headers, Formats::NONE);
    /// assert!(headers.is_empty());
    /// ```
    pub const NONE: Formats = Formats {
        w3c: false,
        b3_multi: false,
        b3_single: false,
    };

    /// B3 multi-header only (Envoy's Zipkin tracer, Istio's default).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mesh_tower::trace::Formats::B3, Default::default());
    /// ```
    pub const B3: Formats = Formats {
        w3c: false,
        b3_multi: true,
        b3_single: false,
    };

    /// W3C `traceparent` and `tracestate` only (Envoy's OpenTelemetry tracer).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{Formats, TraceContext};
    ///
    /// let mut headers = http::HeaderMap::new();
    /// TraceContext::new_root(100.0, &mut rand::rng()).inject(&mut headers, Formats::W3C);
    /// assert!(headers.contains_key("traceparent") && !headers.contains_key("x-b3-traceid"));
    /// ```
    pub const W3C: Formats = Formats {
        w3c: true,
        b3_multi: false,
        b3_single: false,
    };

    /// The formats a MeshConfig tracer writes ([`TracePropagation`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::TracePropagation;
    /// use mesh_tower::trace::Formats;
    ///
    /// let both = Formats::of(TracePropagation::B3AndW3c);
    /// assert!(both.w3c && both.b3_multi && !both.b3_single);
    /// ```
    pub fn of(propagation: TracePropagation) -> Formats {
        Formats {
            w3c: propagation.w3c(),
            b3_multi: propagation.b3(),
            b3_single: false,
        }
    }

    /// Whether any header is written.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::Formats;
    ///
    /// assert!(Formats::B3.any() && !Formats::NONE.any());
    /// ```
    pub fn any(self) -> bool {
        self.w3c || self.b3_multi || self.b3_single
    }
}

/// Propagation settings.
///
/// # Examples
///
/// With sampling off, new traces are not sampled, but a caller's decision is kept:
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// assert_eq!(TraceConfig::default().sampling_percent, 1.0);
/// let config = TraceConfig { sampling_percent: 0.0, ..TraceConfig::default() };
/// let svc = PropagateTraceLayer::inbound(config).layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, Infallible>(req.extensions().get::<TraceContext>().unwrap().sampled)
/// }));
///
/// let new_trace = http::Request::new(());
/// assert!(!svc.clone().oneshot(new_trace).await?);
///
/// let sampled_by_caller = http::Request::builder()
///     .header("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736")
///     .header("x-b3-spanid", "00f067aa0ba902b7")
///     .header("x-b3-sampled", "1")
///     .body(())
///     .unwrap();
/// assert!(svc.oneshot(sampled_by_caller).await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceConfig {
    /// Formats always written (a `b3` single header is also written when one came in).
    pub formats: Formats,
    /// Percentage of new traces sampled (Istio's default: 1.0).
    pub sampling_percent: f64,
    /// Whether a server shares its caller's span, as Envoy's Zipkin tracer does when its
    /// `shared_span_context` is on (Envoy's default, which istiod turns off): the
    /// application then sees the caller's span in the trace headers as they came, and its
    /// [`TraceContext`] has the caller's span id. Off, a server opens its own span (a new
    /// span id whose parent is the caller's), as Envoy does in Istio with either tracer,
    /// and rewrites the headers to carry it. Default: off. Clients always open a new span.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// let hop = |config: TraceConfig| {
    ///     PropagateTraceLayer::inbound(config).layer(service_fn(|req: http::Request<()>| async move {
    ///         Ok::<_, Infallible>(req.extensions().get::<TraceContext>().cloned().unwrap())
    ///     }))
    /// };
    /// let caller = || {
    ///     http::Request::builder()
    ///         .header("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736")
    ///         .header("x-b3-spanid", "00f067aa0ba902b7")
    ///         .body(())
    ///         .unwrap()
    /// };
    ///
    /// assert!(!TraceConfig::default().shared_span_context);
    /// let own = hop(TraceConfig::default()).oneshot(caller()).await?;
    /// assert_ne!(own.span_id, 0x00f0_67aa_0ba9_02b7); // a server span of its own
    /// assert_eq!(own.parent_span_id, Some(0x00f0_67aa_0ba9_02b7));
    ///
    /// let shared = TraceConfig { shared_span_context: true, ..TraceConfig::default() };
    /// let shared = hop(shared).oneshot(caller()).await?;
    /// assert_eq!(shared.span_id, 0x00f0_67aa_0ba9_02b7); // the caller's span
    /// # Ok(()) }
    /// ```
    pub shared_span_context: bool,
    /// Whether a request without an `x-request-id` gets a new one (Envoy's
    /// `generate_request_id`; MeshConfig `proxyHeaders.requestId.disabled` turns it off).
    /// Off, a request's own id (or, on a client, its server request's) is still carried,
    /// and a request with none starts no sampled trace: Envoy samples by the request id
    /// (Istio's `UseRequestIdForTraceSampling`), so it finds the request not traceable.
    /// Default: on.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// let off = TraceConfig { generate_request_id: false, ..TraceConfig::default() };
    /// let svc = PropagateTraceLayer::outbound(off).layer(service_fn(
    ///     |req: http::Request<()>| async move { Ok::<_, Infallible>(req.headers().clone()) },
    /// ));
    /// let sent = svc.clone().oneshot(http::Request::new(())).await?;
    /// assert!(!sent.contains_key("x-request-id"));
    /// let with_id = http::Request::builder().header("x-request-id", "r-1").body(()).unwrap();
    /// assert_eq!(svc.oneshot(with_id).await?["x-request-id"], "r-1");
    /// # Ok(()) }
    /// ```
    pub generate_request_id: bool,
}

impl Default for TraceConfig {
    /// A Zipkin tracer as istiod configures Envoy's: B3 headers, 1 % of new traces
    /// sampled, a server span of its own (`shared_span_context: false`). Mesh clients,
    /// servers and gateways do not use it: they take the mesh's tracer
    /// ([`TraceConfig::from_mesh`]), none by default as in Istio's default install.
    fn default() -> Self {
        TraceConfig::from_mesh(&Tracing {
            enabled: true,
            ..Tracing::default()
        })
    }
}

impl TraceConfig {
    /// What a MeshConfig's tracing settings ([`MeshOptions::tracing`]) make of a hop: the
    /// configuration mesh clients, servers and gateways use unless given one of their own.
    /// Tracing off writes no trace header (only `x-request-id`).
    ///
    /// [`MeshOptions::tracing`]: mesh_core::names::MeshOptions::tracing
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_tower::trace::{Formats, TraceConfig};
    ///
    /// let config = MeshConfig::from_yaml("
    /// defaultProviders: {tracing: [otel]}
    /// extensionProviders:
    /// - name: otel
    ///   opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
    /// ")?;
    /// let trace = TraceConfig::from_mesh(&config.tracing);
    /// assert_eq!(trace.formats, Formats::W3C);
    ///
    /// let off = MeshConfig::from_yaml("enableTracing: false")?;
    /// assert_eq!(TraceConfig::from_mesh(&off.tracing).formats, Formats::NONE);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn from_mesh(tracing: &Tracing) -> TraceConfig {
        TraceConfig {
            formats: if tracing.enabled {
                Formats::of(tracing.propagation)
            } else {
                Formats::NONE
            },
            sampling_percent: tracing.sampling_percent,
            // istiod's Zipkin config sets `shared_span_context: false`, and Envoy's
            // OpenTelemetry tracer always opens a span: a server span of its own
            shared_span_context: false,
            generate_request_id: true,
        }
    }

    /// What a mesh's options make of a hop: [`TraceConfig::from_mesh`] with its
    /// `tracing`, and `generate_request_id` from MeshConfig `proxyHeaders.requestId`. The
    /// configuration mesh clients, servers and gateways use unless given one of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_tower::trace::TraceConfig;
    ///
    /// let config = MeshConfig::from_yaml("defaultConfig: {proxyHeaders: {requestId: {disabled: true}}}")?;
    /// let trace = TraceConfig::from_options(&MeshOptions::from_mesh_config(&config));
    /// assert!(!trace.generate_request_id);
    /// assert!(TraceConfig::from_options(&MeshOptions::default()).generate_request_id);
    /// # Ok::<(), mesh_core::meshconfig::MeshConfigError>(())
    /// ```
    pub fn from_options(options: &mesh_core::names::MeshOptions) -> TraceConfig {
        TraceConfig {
            generate_request_id: options.proxy_headers.request_id,
            ..TraceConfig::from_mesh(&options.tracing)
        }
    }
}

/// Where a context came from.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{Formats, Origin, PropagateTraceLayer, TraceConfig, TraceContext};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// // a tracer that reads both (Zipkin with USE_B3_WITH_W3C_PROPAGATION)
/// let both = TraceConfig { formats: Formats { w3c: true, ..Formats::B3 }, ..TraceConfig::default() };
/// let svc = PropagateTraceLayer::inbound(both).layer(service_fn(
///     |req: http::Request<()>| async move {
///         Ok::<_, Infallible>(req.extensions().get::<TraceContext>().unwrap().origin)
///     },
/// ));
/// let with = |name: &str, value: &str| http::Request::builder().header(name, value).body(()).unwrap();
///
/// let w3c = with("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(svc.clone().oneshot(w3c).await?, Origin::W3c);
/// let b3 = with("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
/// assert_eq!(svc.clone().oneshot(b3).await?, Origin::B3Single);
/// let invalid = with("traceparent", "garbage"); // ignored, as the W3C spec requires
/// assert_eq!(svc.oneshot(invalid).await?, Origin::New);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `traceparent`.
    W3c,
    /// `b3`.
    B3Single,
    /// `x-b3-*`.
    B3Multi,
    /// Started here.
    New,
}

/// The trace context of one hop.
///
/// The inbound [`PropagateTraceLayer`] puts the hop's context in the request extensions
/// (axum: `Extension<TraceContext>`) and makes it the task's [`current`] context.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::{Origin, TraceContext};
/// use rand::rngs::StdRng;
/// use rand::SeedableRng;
///
/// let mut rng = StdRng::seed_from_u64(1);
/// let root = TraceContext::new_root(100.0, &mut rng);
/// assert!(root.sampled);
/// assert_eq!(root.origin, Origin::New);
/// assert_eq!(root.parent_span_id, None);
/// assert_eq!(root.trace_id_hex(), format!("{:032x}", root.trace_id));
///
/// let next = root.child(&mut rng);
/// assert_eq!(next.trace_id, root.trace_id);
/// assert_eq!(next.parent_span_id, Some(root.span_id));
/// assert_eq!(
///     next.traceparent(),
///     format!("00-{}-{:016x}-01", root.trace_id_hex(), next.span_id)
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// Trace id (64-bit B3 ids are kept in the low half).
    pub trace_id: u128,
    /// True when the trace id is 64-bit (B3) and must be written back as 16 hex digits.
    pub short_trace_id: bool,
    /// This hop's span id (on a server sharing its caller's span, the caller's).
    pub span_id: u64,
    /// The parent of this hop's span, when known (on a server sharing its caller's span,
    /// the caller's parent as its B3 headers name it).
    pub parent_span_id: Option<u64>,
    /// Sampling decision.
    pub sampled: bool,
    /// B3 debug flag.
    pub debug: bool,
    /// W3C `tracestate`, carried unchanged.
    pub tracestate: Option<HeaderValue>,
    /// The request id (`x-request-id`) of the request this context belongs to.
    pub request_id: Option<HeaderValue>,
    /// Where the parent context came from.
    pub origin: Origin,
}

/// The context as extracted from headers (the caller's span).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parent {
    trace_id: u128,
    short: bool,
    span_id: u64,
    /// The caller's parent span, as B3 carries it (W3C does not).
    parent_span_id: Option<u64>,
    sampled: Option<bool>,
    debug: bool,
    tracestate: Option<HeaderValue>,
    origin: Origin,
}

/// The value of each hex digit, 0xff for every other byte: either case (`B3`), or lower case
/// only (W3C Trace Context).
const fn hex_table(upper: bool) -> [u8; 256] {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        if upper {
            t[b'A' as usize + i] = 10 + i as u8;
        }
        i += 1;
    }
    t
}

/// The reference the SWAR parser is tested against.
#[cfg(test)]
const HEX_ANY_CASE: [u8; 256] = hex_table(true);
const HEX_LOWER: [u8; 256] = hex_table(false);

/// Up to 16 hex digits as a `u64` (one table lookup per digit, no `core::fmt`).
fn hex_in(s: &[u8], table: &[u8; 256]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    let mut bad = 0u8;
    for &b in s {
        let d = table[usize::from(b)];
        bad |= d;
        v = (v << 4) | u64::from(d & 0xf);
    }
    (bad & 0xf0 == 0).then_some(v)
}

/// Eight hex digits (either case with `any_case`, else lower case only) as their value, or
/// `None` if any byte is not one: all eight checked and converted at once (SWAR), about a
/// third of the work of a table lookup per digit.
fn unhex8(chunk: &[u8; 8], any_case: bool) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_be_bytes(*chunk);
    if x & HIGH != 0 {
        return None;
    }
    // the high bit of each byte in `lo..=hi` (bytes are ASCII, so no sum carries over)
    let in_range = |v: u64, lo: u8, hi: u8| {
        (v + ONES * u64::from(0x80 - lo)) & !(v + ONES * u64::from(0x7f - hi)) & HIGH
    };
    let digits = in_range(x, b'0', b'9');
    // setting bit 5 maps 'A'..='F' (and only them) onto 'a'..='f'
    let letters = in_range(if any_case { x | (ONES * 0x20) } else { x }, b'a', b'f');
    if digits | letters != HIGH {
        return None;
    }
    // each byte's value: its low nibble, plus 9 for a letter ('a' is 0x61)
    let v = (x & (ONES * 0x0f)) + (letters >> 7) * 9;
    // pack the eight nibbles, the first digit the most significant
    let v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    let v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    Some(((v | (v >> 16)) & 0xffff_ffff) as u32)
}

/// Exactly 16 hex digits as a `u64` (see [`unhex8`]).
fn hex16_in(s: &[u8], any_case: bool) -> Option<u64> {
    let (hi, lo) = s.split_at_checked(8)?;
    let (hi, lo): (&[u8; 8], &[u8; 8]) = (hi.try_into().ok()?, lo.try_into().ok()?);
    Some((u64::from(unhex8(hi, any_case)?) << 32) | u64::from(unhex8(lo, any_case)?))
}

/// A 64-bit id: exactly 16 hex digits, not all zero.
fn hex_u64(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    hex16_in(s, true).filter(|&v| v != 0)
}

/// A trace id: 16 or 32 hex digits, not all zero; true when it is 16 (64-bit B3).
fn hex_trace_id(s: &[u8]) -> Option<(u128, bool)> {
    let (v, short) = match s.len() {
        16 => (u128::from(hex16_in(s, true)?), true),
        32 => {
            let hi = hex16_in(&s[..16], true)?;
            let lo = hex16_in(&s[16..], true)?;
            ((u128::from(hi) << 64) | u128::from(lo), false)
        }
        _ => return None,
    };
    (v != 0).then_some((v, short))
}

/// Parses `traceparent` (W3C Trace Context level 1: `{version}-{trace-id}-{parent-id}-{flags}`
/// in lower-case hex; later versions are read by their first four fields). Invalid values
/// are ignored, as the spec requires.
pub(crate) fn parse_traceparent(s: &[u8]) -> Option<Parent> {
    // fixed positions: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 bytes
    if s.len() < 55 || s[2] != b'-' || s[35] != b'-' || s[52] != b'-' {
        return None;
    }
    let version = hex_in(&s[..2], &HEX_LOWER)?;
    match version {
        0xff => return None,
        0 if s.len() != 55 => return None,
        // a later version may append fields, each after a dash
        _ if s.len() > 55 && s[55] != b'-' => return None,
        _ => {}
    }
    let hi = hex16_in(&s[3..19], false)?;
    let lo = hex16_in(&s[19..35], false)?;
    let trace_id = (u128::from(hi) << 64) | u128::from(lo);
    let span_id = hex16_in(&s[36..52], false)?;
    let flags = hex_in(&s[53..55], &HEX_LOWER)?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        short: false,
        span_id,
        parent_span_id: None,
        sampled: Some(flags & 1 == 1),
        debug: false,
        tracestate: None,
        origin: Origin::W3c,
    })
}

fn parse_b3_sampled(s: &[u8]) -> Option<(Option<bool>, bool)> {
    match s {
        b"1" | b"true" => Some((Some(true), false)),
        b"0" | b"false" => Some((Some(false), false)),
        b"d" => Some((Some(true), true)),
        _ => None,
    }
}

/// Parses the single `b3` header: `{trace}-{span}[-{sampled}[-{parent}]]`, or only a
/// sampling decision (which carries no parent).
pub(crate) fn parse_b3_single(s: &[u8]) -> Option<Parent> {
    let mut parts = s.split(|&b| b == b'-');
    let trace = parts.next()?;
    let span = parts.next()?;
    let (trace_id, short) = hex_trace_id(trace)?;
    let span_id = hex_u64(span)?;
    let (sampled, debug) = match parts.next() {
        Some(x) => parse_b3_sampled(x)?,
        None => (None, false),
    };
    let parent_span_id = match parts.next() {
        Some(parent) => Some(hex_u64(parent)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Parent {
        trace_id,
        short,
        span_id,
        parent_span_id,
        sampled,
        debug,
        tracestate: None,
        origin: Origin::B3Single,
    })
}

/// The `tracestate` list: repeated fields combined into one, comma-separated, as W3C Trace
/// Context (and RFC 9110 for list headers) reads them.
fn tracestate_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut fields = headers.get_all(TRACESTATE).iter();
    let first = fields.next()?;
    let Some(second) = fields.next() else {
        return Some(first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(fields) {
        joined.push(b',');
        joined.extend_from_slice(v.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// Extracts the caller's context: `b3`, then `x-b3-*`, then W3C.
#[cfg(test)]
pub(crate) fn extract(headers: &HeaderMap) -> Option<Parent> {
    Found::scan(headers).parent(headers)
}

/// A header's value with surrounding whitespace trimmed (the parsers accept only ASCII, so
/// there is no need to check for text first).
fn trimmed(v: Option<&HeaderValue>) -> Option<&[u8]> {
    v.map(|v| v.as_bytes().trim_ascii())
}

/// The trace headers of a request (the first value of each), found in one pass over its
/// entries: cheaper than a lookup per header, which hashes the name and probes the map.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Found<'a> {
    traceparent: Option<&'a HeaderValue>,
    tracestate: Option<&'a HeaderValue>,
    /// More than one `tracestate` field (they are combined).
    tracestates: bool,
    b3: Option<&'a HeaderValue>,
    trace_id: Option<&'a HeaderValue>,
    span_id: Option<&'a HeaderValue>,
    parent_span_id: Option<&'a HeaderValue>,
    sampled: Option<&'a HeaderValue>,
    flags: Option<&'a HeaderValue>,
    pub(crate) request_id: Option<&'a HeaderValue>,
    /// Which of them are there.
    pub(crate) seen: Seen,
    /// The `traceparent`'s trace id, span id and sampled flag, once [`Found::parent`] has
    /// parsed it (`Some(None)`: parsed, not valid), so it is parsed once per request.
    w3c: Option<Option<(u128, u64, bool)>>,
}

impl<'a> Found<'a> {
    /// Finds the trace headers of `headers`: one pass over a map of the usual size, a
    /// lookup per trace header in a large one.
    pub(crate) fn scan(headers: &'a HeaderMap) -> Found<'a> {
        let mut f = Found::default();
        if headers.len() > 32 {
            for (name, slot, bit) in [
                (&TRACEPARENT, &mut f.traceparent, Seen::TRACEPARENT),
                (&B3, &mut f.b3, Seen::B3),
                (&X_B3_TRACEID, &mut f.trace_id, Seen::TRACE_ID),
                (&X_B3_SPANID, &mut f.span_id, Seen::SPAN_ID),
                (
                    &X_B3_PARENTSPANID,
                    &mut f.parent_span_id,
                    Seen::PARENT_SPAN_ID,
                ),
                (&X_B3_SAMPLED, &mut f.sampled, Seen::SAMPLED),
                (&X_REQUEST_ID, &mut f.request_id, Seen::REQUEST_ID),
            ] {
                *slot = headers.get(name);
                if slot.is_some() {
                    f.seen.0 |= bit;
                }
            }
            f.flags = headers.get(X_B3_FLAGS);
            let mut states = headers.get_all(TRACESTATE).iter();
            f.tracestate = states.next();
            f.tracestates = states.next().is_some();
            if f.tracestate.is_some() {
                f.seen.0 |= Seen::TRACESTATE;
            }
            return f;
        }
        for (name, value) in headers {
            let (slot, bit) = match name.as_str() {
                "traceparent" => (&mut f.traceparent, Seen::TRACEPARENT),
                "tracestate" => {
                    f.tracestates = f.tracestate.is_some();
                    (&mut f.tracestate, Seen::TRACESTATE)
                }
                "b3" => (&mut f.b3, Seen::B3),
                "x-b3-traceid" => (&mut f.trace_id, Seen::TRACE_ID),
                "x-b3-spanid" => (&mut f.span_id, Seen::SPAN_ID),
                "x-b3-parentspanid" => (&mut f.parent_span_id, Seen::PARENT_SPAN_ID),
                "x-b3-sampled" => (&mut f.sampled, Seen::SAMPLED),
                "x-b3-flags" => (&mut f.flags, 0),
                "x-request-id" => (&mut f.request_id, Seen::REQUEST_ID),
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
            f.seen.0 |= bit;
        }
        f
    }

    /// Forgets the formats a tracer writing `formats` does not read: Envoy's Zipkin tracer
    /// reads B3 only (W3C too only with `USE_B3_WITH_W3C_PROPAGATION`), its OpenTelemetry
    /// tracer W3C only, and without a tracer nothing is read; the headers it does not read
    /// pass through untouched.
    pub(crate) fn only(&mut self, formats: Formats) {
        if !formats.w3c {
            self.traceparent = None;
            self.tracestate = None;
            self.tracestates = false;
        }
        if !(formats.b3_multi || formats.b3_single) {
            self.b3 = None;
            self.trace_id = None;
            self.span_id = None;
            self.parent_span_id = None;
            self.sampled = None;
            self.flags = None;
        }
    }

    /// A B3 sampling decision without a context (`b3: 0|1|d`, or `x-b3-sampled` without
    /// ids): Envoy's Zipkin tracer starts a new trace with that decision (its
    /// `extractSampled`). (sampled, debug).
    pub(crate) fn sampling_only(&self) -> Option<(bool, bool)> {
        let decision = trimmed(self.b3)
            .and_then(parse_b3_sampled)
            .or_else(|| trimmed(self.sampled).and_then(parse_b3_sampled))?;
        let (sampled, debug) = decision;
        Some((sampled? || debug, debug))
    }

    /// The caller's context (`b3`, then `x-b3-*`, then W3C); `headers` are the ones
    /// scanned, read again only for repeated `tracestate` fields.
    pub(crate) fn parent(&mut self, headers: &HeaderMap) -> Option<Parent> {
        // B3 first, as Istio's Zipkin tracer reads it (`b3`, then `x-b3-*`
        // [span_context_extractor.cc]); W3C only when there is no B3 context, as Envoy's
        // USE_B3_WITH_W3C_PROPAGATION fallback does
        let w3c = trimmed(self.traceparent).and_then(parse_traceparent);
        self.w3c = Some(
            w3c.as_ref()
                .map(|w| (w.trace_id, w.span_id, w.sampled == Some(true))),
        );
        let b3 = trimmed(self.b3)
            .and_then(parse_b3_single)
            .or_else(|| self.b3_multi(w3c.as_ref()));
        let tracestate = || {
            if self.tracestates {
                tracestate_of(headers)
            } else {
                self.tracestate.cloned()
            }
        };
        match (b3, w3c) {
            (Some(mut p), Some(w)) => {
                // the same trace in both (a mesh client writes both): its tracestate goes on
                if w.trace_id == p.trace_id {
                    p.tracestate = tracestate();
                }
                Some(p)
            }
            (Some(p), None) => Some(p),
            (None, Some(mut p)) => {
                p.tracestate = tracestate();
                Some(p)
            }
            (None, None) => None,
        }
    }

    /// The `x-b3-*` context, if its trace and span ids are there. `w3c`: the request's
    /// parsed `traceparent`; when the B3 ids are its very digits (a mesh client writes both
    /// formats from one span), they are its ids, taken without parsing them again.
    fn b3_multi(&self, w3c: Option<&Parent>) -> Option<Parent> {
        let (trace, span) = (trimmed(self.trace_id)?, trimmed(self.span_id)?);
        let (trace_id, short, span_id) = match (w3c, trimmed(self.traceparent)) {
            (Some(w), Some(tp)) if tp.get(3..35) == Some(trace) && tp.get(36..52) == Some(span) => {
                (w.trace_id, false, w.span_id)
            }
            _ => {
                let (trace_id, short) = hex_trace_id(trace)?;
                (trace_id, short, hex_u64(span)?)
            }
        };
        let debug = trimmed(self.flags) == Some(b"1");
        let sampled = trimmed(self.sampled)
            .and_then(parse_b3_sampled)
            .and_then(|(s, _)| s);
        Some(Parent {
            trace_id,
            short,
            span_id,
            parent_span_id: trimmed(self.parent_span_id).and_then(hex_u64),
            sampled: if debug { Some(true) } else { sampled },
            debug,
            tracestate: None,
            origin: Origin::B3Multi,
        })
    }

    /// True when the `traceparent` carries `ctx`'s span and sampling decision (a B3
    /// context won, and the caller wrote the same span in both formats).
    pub(crate) fn traceparent_carries(&self, ctx: &TraceContext) -> bool {
        let w3c = match self.w3c {
            Some(parsed) => parsed,
            None => trimmed(self.traceparent)
                .and_then(parse_traceparent)
                .map(|w| (w.trace_id, w.span_id, w.sampled == Some(true))),
        };
        w3c == Some((ctx.trace_id, ctx.span_id, ctx.sampled))
    }

    /// True when the B3 multi-header fields carry `ctx`'s span: an `x-b3-traceid` and an
    /// `x-b3-spanid` naming its ids (as numbers: the case of their hex digits does not
    /// matter).
    pub(crate) fn b3_multi_carries(&self, ctx: &TraceContext) -> bool {
        // the usual case, a mesh client's request: the fields spell the very digits of the
        // traceparent the context came from
        if ctx.origin == Origin::W3c
            && let (Some(tp), Some(trace), Some(span)) = (
                trimmed(self.traceparent),
                trimmed(self.trace_id),
                trimmed(self.span_id),
            )
            && tp.get(3..35) == Some(trace)
            && tp.get(36..52) == Some(span)
        {
            return true;
        }
        trimmed(self.trace_id).and_then(hex_trace_id) == Some((ctx.trace_id, ctx.short_trace_id))
            && trimmed(self.span_id).and_then(hex_u64) == Some(ctx.span_id)
    }
}

fn nonzero_u64<R: RngCore + ?Sized>(rng: &mut R) -> u64 {
    loop {
        let v = rng.next_u64();
        if v != 0 {
            return v;
        }
    }
}

/// A sampling decision for a trace that has none: true for `sampling_percent` % of calls.
fn decide<R: RngCore + ?Sized>(sampling_percent: f64, rng: &mut R) -> bool {
    sampling_percent >= 100.0
        || (sampling_percent > 0.0 && rng.random::<f64>() * 100.0 < sampling_percent)
}

impl TraceContext {
    /// A new trace (new trace and span ids), sampled at `sampling_percent`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::{Origin, TraceContext};
    ///
    /// let mut rng = rand::rng();
    /// let always = TraceContext::new_root(100.0, &mut rng);
    /// assert!(always.sampled);
    /// assert_eq!((always.origin, always.parent_span_id), (Origin::New, None));
    /// assert!(!always.short_trace_id && always.span_id != 0);
    /// assert!(!TraceContext::new_root(0.0, &mut rng).sampled);
    /// assert_ne!(TraceContext::new_root(100.0, &mut rng).trace_id, always.trace_id);
    /// ```
    pub fn new_root<R: RngCore + ?Sized>(sampling_percent: f64, rng: &mut R) -> Self {
        let hi = u128::from(rng.next_u64());
        let lo = u128::from(nonzero_u64(rng));
        let sampled = decide(sampling_percent, rng);
        TraceContext {
            trace_id: (hi << 64) | lo,
            short_trace_id: false,
            span_id: nonzero_u64(rng),
            parent_span_id: None,
            sampled,
            debug: false,
            tracestate: None,
            request_id: None,
            origin: Origin::New,
        }
    }

    /// A server span of its own: a new span id whose parent is the caller's.
    pub(crate) fn from_parent<R: RngCore + ?Sized>(
        parent: Parent,
        sampling_percent: f64,
        rng: &mut R,
    ) -> Self {
        let span = (nonzero_u64(rng), Some(parent.span_id));
        Self::continuing(parent, span, sampling_percent, rng)
    }

    /// A server's context that shares the caller's span (Zipkin's `shared_span_context`):
    /// the caller's ids, its sampling decision (or one made now, when it deferred it).
    pub(crate) fn shared<R: RngCore + ?Sized>(
        parent: Parent,
        sampling_percent: f64,
        rng: &mut R,
    ) -> Self {
        let span = (parent.span_id, parent.parent_span_id);
        Self::continuing(parent, span, sampling_percent, rng)
    }

    /// The caller's trace continued with `(span id, parent span id)`.
    fn continuing<R: RngCore + ?Sized>(
        parent: Parent,
        (span_id, parent_span_id): (u64, Option<u64>),
        sampling_percent: f64,
        rng: &mut R,
    ) -> Self {
        let sampled = parent
            .sampled
            .unwrap_or_else(|| decide(sampling_percent, rng));
        TraceContext {
            trace_id: parent.trace_id,
            short_trace_id: parent.short,
            span_id,
            parent_span_id,
            sampled,
            debug: parent.debug,
            tracestate: parent.tracestate,
            request_id: None,
            origin: parent.origin,
        }
    }

    /// The context of the next hop: same trace, a new span whose parent is this one.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::HeaderValue;
    /// use mesh_tower::trace::TraceContext;
    ///
    /// let mut rng = rand::rng();
    /// let hop = TraceContext {
    ///     request_id: Some(HeaderValue::from_static("r-1")),
    ///     ..TraceContext::new_root(0.0, &mut rng)
    /// };
    /// let next = hop.child(&mut rng);
    /// assert_eq!(next.trace_id, hop.trace_id);
    /// assert_ne!(next.span_id, hop.span_id);
    /// assert_eq!(next.parent_span_id, Some(hop.span_id));
    /// // everything else is carried on: the sampling decision, the request id
    /// assert_eq!((next.sampled, next.request_id.clone()), (false, hop.request_id.clone()));
    /// ```
    pub fn child<R: RngCore + ?Sized>(&self, rng: &mut R) -> Self {
        TraceContext {
            span_id: nonzero_u64(rng),
            parent_span_id: Some(self.span_id),
            ..self.clone()
        }
    }

    /// The trace id as hex (32 digits, or 16 for a 64-bit B3 id).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::TraceContext;
    ///
    /// let ctx = TraceContext {
    ///     trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
    ///     ..TraceContext::new_root(100.0, &mut rand::rng())
    /// };
    /// assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    ///
    /// let b3 = TraceContext { trace_id: 0xa3ce_929d_0e0e_4736, short_trace_id: true, ..ctx };
    /// assert_eq!(b3.trace_id_hex(), "a3ce929d0e0e4736");
    /// ```
    pub fn trace_id_hex(&self) -> String {
        let mut b = BytesMut::with_capacity(32);
        put_trace_id(&mut b, self.trace_id, self.short_trace_id);
        ascii_string(&b)
    }

    /// The `traceparent` value for this span.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::trace::TraceContext;
    ///
    /// let ctx = TraceContext {
    ///     trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
    ///     span_id: 0x00f0_67aa_0ba9_02b7,
    ///     ..TraceContext::new_root(100.0, &mut rand::rng())
    /// };
    /// assert_eq!(ctx.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    ///
    /// // W3C needs 128 bits: a 64-bit B3 trace id is padded with zeros
    /// let b3 = TraceContext { trace_id: 0xa3ce_929d_0e0e_4736, short_trace_id: true, sampled: false, ..ctx };
    /// assert_eq!(b3.traceparent(), "00-0000000000000000a3ce929d0e0e4736-00f067aa0ba902b7-00");
    /// ```
    pub fn traceparent(&self) -> String {
        let mut b = BytesMut::with_capacity(55);
        self.put_traceparent(&mut b);
        ascii_string(&b)
    }

    /// The single `b3` header value for this span.
    ///
    /// # Examples
    ///
    /// A 64-bit B3 trace id stays 64-bit on the next hop:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Infallible> {
    /// let svc = PropagateTraceLayer::inbound(TraceConfig::default()).layer(service_fn(
    ///     |req: http::Request<()>| async move {
    ///         Ok::<_, Infallible>(req.extensions().get::<TraceContext>().unwrap().clone())
    ///     },
    /// ));
    /// let req = http::Request::builder()
    ///     .header("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d")
    ///     .body(())
    ///     .unwrap();
    /// let ctx = svc.oneshot(req).await?;
    /// assert!(ctx.short_trace_id && ctx.debug);
    /// // the server's own span, a child of the caller's
    /// assert_eq!(
    ///     ctx.b3_single(),
    ///     format!("64fe8b2a57d3eff7-{:016x}-d-e457b5a2e4d86bd1", ctx.span_id)
    /// );
    /// // the next hop's span names it as its parent
    /// let next = ctx.child(&mut rand::rng());
    /// assert_eq!(
    ///     next.b3_single(),
    ///     format!("64fe8b2a57d3eff7-{:016x}-d-{:016x}", next.span_id, ctx.span_id)
    /// );
    /// # Ok(()) }
    /// ```
    pub fn b3_single(&self) -> String {
        let mut b = BytesMut::with_capacity(72);
        self.put_b3_single(&mut b);
        ascii_string(&b)
    }

    fn put_traceparent(&self, b: &mut BytesMut) {
        b.extend_from_slice(b"00-");
        put_hex128(b, self.trace_id);
        b.extend_from_slice(b"-");
        put_hex64(b, self.span_id);
        b.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
    }

    fn put_b3_single(&self, b: &mut BytesMut) {
        put_trace_id(b, self.trace_id, self.short_trace_id);
        b.extend_from_slice(b"-");
        put_hex64(b, self.span_id);
        b.extend_from_slice(if self.debug {
            b"-d"
        } else if self.sampled {
            b"-1"
        } else {
            b"-0"
        });
        if let Some(p) = self.parent_span_id {
            b.extend_from_slice(b"-");
            put_hex64(b, p);
        }
    }

    /// Writes this span into `headers` in `formats` (replacing what was there).
    ///
    /// # Examples
    ///
    /// ```
    /// use http::HeaderMap;
    /// use mesh_tower::trace::{Formats, TraceContext};
    /// use rand::rngs::StdRng;
    /// use rand::SeedableRng;
    ///
    /// let mut rng = StdRng::seed_from_u64(3);
    /// let ctx = TraceContext::new_root(0.0, &mut rng).child(&mut rng);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-b3-sampled", "1".parse().unwrap()); // replaced
    /// ctx.inject(&mut headers, Formats { w3c: true, ..Formats::B3 });
    ///
    /// assert_eq!(headers["traceparent"], ctx.traceparent());
    /// assert_eq!(headers["x-b3-traceid"], ctx.trace_id_hex());
    /// assert_eq!(headers["x-b3-spanid"], format!("{:016x}", ctx.span_id).as_str());
    /// assert_eq!(headers["x-b3-parentspanid"], format!("{:016x}", ctx.parent_span_id.unwrap()).as_str());
    /// assert_eq!(headers["x-b3-sampled"], "0");
    /// assert!(!headers.contains_key("b3"));
    /// ```
    pub fn inject(&self, headers: &mut HeaderMap, formats: Formats) {
        self.inject_into(headers, formats, &mut BytesMut::new(), false, Seen::ALL);
    }

    /// [`inject`](Self::inject), formatting every value into `buf`: the header values are
    /// slices of one shared allocation (cloning them later is a reference count), and no
    /// `core::fmt` is involved. `tracestate_read` says this context was extracted from
    /// `headers` themselves, so their `tracestate` fields already are
    /// [`tracestate`](Self::tracestate) (which combines them) and need no write; `seen` says
    /// which trace headers `headers` may hold (a header it rules out needs no lookup or
    /// removal).
    ///
    /// Each header costs one map operation: values that change on every hop (the span
    /// ids) are inserted; values a server usually forwards unchanged (the trace id and
    /// the sampling decision) are compared first and written only when they differ.
    pub(crate) fn inject_into(
        &self,
        headers: &mut HeaderMap,
        formats: Formats,
        buf: &mut BytesMut,
        tracestate_read: bool,
        seen: Seen,
    ) {
        buf.reserve(INJECT_VALUES);
        if formats.w3c {
            self.put_traceparent(buf);
            insert_written(headers, TRACEPARENT, buf);
            if !tracestate_read {
                match &self.tracestate {
                    Some(ts) => {
                        headers.insert(TRACESTATE, ts.clone());
                    }
                    None if seen.may_hold(Seen::TRACESTATE) => {
                        headers.remove(TRACESTATE);
                    }
                    None => {}
                }
            }
        }
        if formats.b3_multi {
            put_trace_id(buf, self.trace_id, self.short_trace_id);
            if seen.may_hold(Seen::TRACE_ID) && holds(headers, &X_B3_TRACEID, buf) {
                buf.clear();
            } else {
                insert_written(headers, X_B3_TRACEID, buf);
            }
            put_hex64(buf, self.span_id);
            insert_written(headers, X_B3_SPANID, buf);
            match self.parent_span_id {
                Some(p) => {
                    put_hex64(buf, p);
                    insert_written(headers, X_B3_PARENTSPANID, buf);
                }
                None if seen.may_hold(Seen::PARENT_SPAN_ID) => {
                    headers.remove(X_B3_PARENTSPANID);
                }
                None => {}
            }
            // Envoy's Zipkin tracer writes x-b3-sampled (1 or 0) and never x-b3-flags: a
            // debug trace goes on as sampled [zipkin_tracer_impl.cc ZipkinSpan::injectContext]
            let sampled = self.sampled || self.debug;
            let value: &'static [u8] = if sampled { b"1" } else { b"0" };
            if !(seen.may_hold(Seen::SAMPLED) && holds(headers, &X_B3_SAMPLED, value)) {
                headers.insert(
                    X_B3_SAMPLED,
                    HeaderValue::from_static(if sampled { "1" } else { "0" }),
                );
            }
        }
        if formats.b3_single {
            self.put_b3_single(buf);
            insert_written(headers, B3, buf);
        }
    }
}

/// Which trace headers a map may hold ([`Found::seen`]). A request without a usable trace
/// context mostly has none of them, and then needs no lookup or removal per trace header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen(u8);

impl Seen {
    pub(crate) const TRACESTATE: u8 = 1;
    pub(crate) const PARENT_SPAN_ID: u8 = 1 << 1;
    pub(crate) const TRACE_ID: u8 = 1 << 2;
    pub(crate) const SAMPLED: u8 = 1 << 3;
    pub(crate) const REQUEST_ID: u8 = 1 << 4;
    pub(crate) const B3: u8 = 1 << 5;
    pub(crate) const SPAN_ID: u8 = 1 << 6;
    pub(crate) const TRACEPARENT: u8 = 1 << 7;

    /// Nothing known: every header may be there.
    pub(crate) const ALL: Seen = Seen(u8::MAX);

    /// False when `header` (one of the constants) is surely absent.
    pub(crate) fn may_hold(self, header: u8) -> bool {
        self.0 & header != 0
    }
}

/// True when `headers` hold exactly one `name`, and its value is `bytes` (a lookup,
/// cheaper than a write that changes nothing).
fn holds(headers: &HeaderMap, name: &HeaderName, bytes: &[u8]) -> bool {
    let mut values = headers.get_all(name).iter();
    values.next().is_some_and(|v| v.as_bytes() == bytes) && values.next().is_none()
}

/// Sets `name` to the bytes just written into `buf`, taken from it as a shared slice.
fn insert_written(headers: &mut HeaderMap, name: HeaderName, buf: &mut BytesMut) {
    if let Some(v) = take_value(buf) {
        headers.insert(name, v);
    }
}

/// Room for every value [`TraceContext::inject_into`] may write (55 + 32 + 16 + 16 + 69).
const INJECT_VALUES: usize = 188;

/// [`INJECT_VALUES`] and an `x-request-id` (36).
const INJECT_CAPACITY: usize = INJECT_VALUES + 36;

/// The bytes written so far into `buf` as a header value (a slice of `buf`'s allocation).
fn take_value(buf: &mut BytesMut) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(buf.split().freeze()).ok()
}

fn ascii_string(b: &[u8]) -> String {
    // only hex digits and dashes are ever written
    String::from_utf8_lossy(b).into_owned()
}

/// The 8 lower-case hex digits of the low 32 bits of `x`, as the big-endian bytes of the
/// result: each nibble is spread into a byte of its own, then all eight are turned into
/// `'0'..='9'` or `'a'..='f'` at once (no table, no loop).
const fn hex8(x: u64) -> u64 {
    let x = x & 0xffff_ffff;
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    // byte k (counting from the least significant) now holds nibble k
    let x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more (nibble + 6 carries into bit 4)
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    // '0' + nibble, and 'a' - '0' - 10 = 0x27 more for a letter
    x + 0x3030_3030_3030_3030 + letters * 0x27
}

/// The 16 lower-case hex digits of `v`, most significant first.
fn hex16(v: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8(v >> 32).to_be_bytes());
    out[8..].copy_from_slice(&hex8(v).to_be_bytes());
    out
}

/// The 16 lower-case hex digits of `v`.
fn put_hex64(out: &mut BytesMut, v: u64) {
    out.extend_from_slice(&hex16(v));
}

/// The 32 lower-case hex digits of `v`.
fn put_hex128(out: &mut BytesMut, v: u128) {
    put_hex64(out, (v >> 64) as u64);
    put_hex64(out, v as u64);
}

fn put_trace_id(out: &mut BytesMut, id: u128, short: bool) {
    if short {
        put_hex64(out, id as u64);
    } else {
        put_hex128(out, id);
    }
}

/// A random UUID v4, as Envoy generates for `x-request-id`.
///
/// # Examples
///
/// ```
/// use mesh_tower::trace::new_request_id;
///
/// let id = new_request_id(&mut rand::rng());
/// let parts: Vec<&str> = id.to_str().unwrap().split('-').collect();
/// assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
/// assert!(parts[2].starts_with('4'), "version 4");
/// assert_ne!(new_request_id(&mut rand::rng()), id);
/// ```
pub fn new_request_id<R: RngCore + ?Sized>(rng: &mut R) -> HeaderValue {
    // built on the stack and copied once into its own 36 bytes (a `BytesMut` made shared
    // by its split would cost a second allocation)
    HeaderValue::from_bytes(&request_id(rng)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Writes a random UUID v4 (36 characters) into `out`.
pub(crate) fn put_request_id<R: RngCore + ?Sized>(out: &mut BytesMut, rng: &mut R) {
    out.extend_from_slice(&request_id(rng));
}

/// A random UUID v4, its 36 characters.
fn request_id<R: RngCore + ?Sized>(rng: &mut R) -> [u8; 36] {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let v = u128::from_be_bytes(b);
    let (hi, lo) = (hex16((v >> 64) as u64), hex16(v as u64));
    // 8-4-4-4-12 hex digits
    let mut s = [b'-'; 36];
    s[..8].copy_from_slice(&hi[..8]);
    s[9..13].copy_from_slice(&hi[8..12]);
    s[14..18].copy_from_slice(&hi[12..]);
    s[19..23].copy_from_slice(&lo[..4]);
    s[24..].copy_from_slice(&lo[4..]);
    s
}

/// The `x-request-id` written into `buf`, as a header value sharing `buf`'s allocation.
pub(crate) fn take_request_id<R: RngCore + ?Sized>(buf: &mut BytesMut, rng: &mut R) -> HeaderValue {
    buf.reserve(INJECT_CAPACITY);
    put_request_id(buf, rng);
    take_value(buf).unwrap_or_else(|| HeaderValue::from_static("-"))
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// The trace context of the request the current task is handling (set by the inbound
/// layer around the application's future), if any.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{self, PropagateTraceLayer, TraceConfig, TraceContext};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Infallible> {
/// assert_eq!(trace::current(), None, "not handling a request");
///
/// let svc = PropagateTraceLayer::inbound(TraceConfig::default()).layer(service_fn(
///     |req: http::Request<()>| async move {
///         // deep inside the handler, without the request at hand
///         let current = trace::current().unwrap();
///         Ok::<_, Infallible>(Some(&current) == req.extensions().get::<TraceContext>())
///     },
/// ));
/// assert!(svc.oneshot(http::Request::new(())).await?);
/// # Ok(()) }
/// ```
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `ctx` as the [`current`] context (for work spawned off the request
/// task that should carry the trace on).
///
/// # Examples
///
/// A background task spawned while handling a request, calling out through the outbound
/// layer: the call stays in the request's trace.
///
/// ```
/// use std::convert::Infallible;
/// use mesh_tower::trace::{self, PropagateTraceLayer, TraceConfig, TraceContext};
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let request_ctx = TraceContext::new_root(100.0, &mut rand::rng());
/// let outbound = PropagateTraceLayer::outbound(TraceConfig::default()).layer(service_fn(
///     |req: http::Request<()>| async move {
///         Ok::<_, Infallible>(req.headers()["x-b3-traceid"].to_str().unwrap().to_string())
///     },
/// ));
///
/// let task = tokio::spawn(trace::scope(request_ctx.clone(), async move {
///     outbound.oneshot(http::Request::new(())).await
/// }));
/// assert_eq!(task.await??, request_ctx.trace_id_hex());
/// # Ok(()) }
/// ```
pub fn scope<F: std::future::Future>(
    ctx: TraceContext,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<TraceContext, F> {
    CURRENT.scope(ctx, fut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_table() {
        let cases = [
            (TP, true),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                false,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
                false,
            ),
            (
                "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                false,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
                false,
            ),
            ("garbage", false),
            ("", false),
        ];
        for (s, ok) in cases {
            assert_eq!(parse_traceparent(s.as_bytes()).is_some(), ok, "{s}");
        }
        let p = parse_traceparent(TP.as_bytes()).unwrap();
        assert_eq!(p.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(p.span_id, 0x00f067aa0ba902b7);
        assert_eq!(p.sampled, Some(true));
    }

    #[test]
    fn b3_single_table() {
        let cases = [
            (
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                Some((false, Some(true), false)),
            ),
            (
                "64fe8b2a57d3eff7-e457b5a2e4d86bd1",
                Some((true, None, false)),
            ),
            (
                "64fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
                Some((true, Some(true), true)),
            ),
            (
                "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0",
                Some((true, Some(false), false)),
            ),
            ("0", None),
            ("64fe8b2a57d3eff7-e457b5a2e4d86bd1-x", None),
            ("64fe8b2a57d3eff7-e457", None),
            (
                "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-extra",
                None,
            ),
        ];
        for (s, want) in cases {
            let got = parse_b3_single(s.as_bytes()).map(|p| (p.short, p.sampled, p.debug));
            assert_eq!(got, want, "{s}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn extract_precedence_and_b3_multi() {
        let h = headers(&[
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ]);
        // B3 wins, as Envoy's Zipkin tracer reads it; the traceparent names another trace,
        // so its tracestate is not this one's
        let p = extract(&h).unwrap();
        assert_eq!(p.origin, Origin::B3Multi);
        assert_eq!(p.trace_id, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(p.tracestate, None);
        // the same trace in both: B3's ids, the W3C tracestate carried on
        let h = headers(&[
            ("traceparent", TP),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ]);
        let p = extract(&h).unwrap();
        assert_eq!((p.origin, p.span_id), (Origin::B3Multi, 0xe457b5a2e4d86bd1));
        assert_eq!(p.tracestate.unwrap(), "congo=t61rcWkgMzE");
        // W3C alone still works (a documented extension)
        let h = headers(&[("traceparent", TP), ("tracestate", "congo=t61rcWkgMzE")]);
        let p = extract(&h).unwrap();
        assert_eq!(p.origin, Origin::W3c);
        assert_eq!(p.tracestate.unwrap(), "congo=t61rcWkgMzE");
        // Invalid traceparent falls back to B3.
        let h = headers(&[
            ("traceparent", "bad"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ]);
        let p = extract(&h).unwrap();
        assert_eq!(p.origin, Origin::B3Multi);
        assert_eq!(p.trace_id, 0x80f198ee56343ba864fe8b2a57d3eff7);
        assert_eq!(p.sampled, Some(true));
        let h = headers(&[
            ("x-b3-traceid", "64fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-flags", "1"),
        ]);
        let p = extract(&h).unwrap();
        assert!(p.short && p.debug && p.sampled == Some(true));
        assert_eq!(
            extract(&headers(&[("x-b3-traceid", "64fe8b2a57d3eff7")])),
            None
        );
        assert_eq!(extract(&HeaderMap::new()), None);
    }

    #[test]
    fn child_and_inject_round_trip() {
        let mut rng = StdRng::seed_from_u64(1);
        let parent = extract(&headers(&[("traceparent", TP), ("tracestate", "a=b")])).unwrap();
        let ctx = TraceContext::from_parent(parent, 1.0, &mut rng);
        assert_eq!(ctx.parent_span_id, Some(0x00f067aa0ba902b7));
        assert_ne!(ctx.span_id, 0x00f067aa0ba902b7);
        let mut h = HeaderMap::new();
        ctx.inject(
            &mut h,
            Formats {
                w3c: true,
                b3_multi: true,
                b3_single: true,
            },
        );
        let tp = h["traceparent"].to_str().unwrap();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(tp.ends_with("-01"));
        assert_eq!(h["tracestate"], "a=b");
        assert_eq!(h["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(
            h["x-b3-spanid"].to_str().unwrap(),
            format!("{:016x}", ctx.span_id)
        );
        let b3 = h["b3"].to_str().unwrap();
        assert!(b3.ends_with("-1-00f067aa0ba902b7"), "{b3}");
        // What we wrote parses back to the same trace, with our span as the parent.
        let back = extract(&h).unwrap();
        assert_eq!((back.trace_id, back.span_id), (ctx.trace_id, ctx.span_id));
        let child = ctx.child(&mut rng);
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_eq!(child.parent_span_id, Some(ctx.span_id));
    }

    #[test]
    fn hex_ids_parse_like_from_str_radix() {
        assert_eq!(hex_u64(b"00f067aa0ba902b7"), Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(hex_u64(b"00F067AA0BA902B7"), Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(hex_u64(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(hex_u64(b"0000000000000000"), None, "all zero is invalid");
        assert_eq!(hex_u64(b"00f067aa0ba902b"), None, "15 digits");
        assert_eq!(hex_u64(b"00f067aa0ba902b77"), None, "17 digits");
        for bad in [
            "00f067aa0ba902bg",
            "+0f067aa0ba902b7",
            "00f067aa0ba902 7",
            "00f067aa0ba902b\u{e9}",
        ] {
            assert_eq!(hex_u64(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(
            hex_trace_id(b"4bf92f3577b34da6a3ce929d0e0e4736"),
            Some((0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, false))
        );
        assert_eq!(
            hex_trace_id(b"a3ce929d0e0e4736"),
            Some((0xa3ce_929d_0e0e_4736, true))
        );
        assert_eq!(hex_trace_id(b"00000000000000000000000000000000"), None);
        assert_eq!(
            hex_trace_id(b"0000000000000000a3ce929d0e0e4736"),
            Some((0xa3ce_929d_0e0e_4736, false))
        );
        assert_eq!(hex_trace_id(b"4bf92f3577b34da6a3ce929d0e0e473x"), None);
        assert_eq!(hex_trace_id(b"4bf92f3577b34da6a3ce929d0e0e47"), None);
    }

    #[test]
    fn swar_hex_reads_like_the_table() {
        // every byte value at every position, the other digits valid
        for any_case in [true, false] {
            let table = if any_case { &HEX_ANY_CASE } else { &HEX_LOWER };
            for base in [
                *b"0123456789abcdef",
                *b"fedcba9876543210",
                *b"0000000000000000",
            ] {
                for at in 0..16 {
                    for b in 0..=255u8 {
                        let mut s = base;
                        s[at] = b;
                        assert_eq!(
                            hex16_in(&s, any_case),
                            hex_in(&s, table),
                            "{s:?} {any_case}"
                        );
                    }
                }
            }
        }
        // random strings over the hex digits of both cases and their neighbours
        let mut rng = StdRng::seed_from_u64(8);
        let alphabet = b"0123456789abcdefABCDEF/:@`gG \xff";
        for _ in 0..100_000 {
            let s: Vec<u8> = (0..16)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            assert_eq!(hex16_in(&s, true), hex_in(&s, &HEX_ANY_CASE), "{s:?}");
            assert_eq!(hex16_in(&s, false), hex_in(&s, &HEX_LOWER), "{s:?}");
        }
        assert_eq!(hex16_in(b"0123456789abcde", true), None, "15 digits");
    }

    #[test]
    fn short_b3_ids_stay_short() {
        let mut rng = StdRng::seed_from_u64(2);
        let parent = extract(&headers(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")])).unwrap();
        let ctx = TraceContext::from_parent(parent, 100.0, &mut rng);
        assert!(!ctx.sampled, "the incoming decision is kept");
        assert_eq!(ctx.trace_id_hex(), "64fe8b2a57d3eff7");
        assert!(ctx.b3_single().starts_with("64fe8b2a57d3eff7-"));
        // W3C needs 128 bits: the short id is left-padded with zeros.
        assert!(ctx
            .traceparent()
            .starts_with("00-000000000000000064fe8b2a57d3eff7-"));
    }

    #[test]
    fn sampling_of_new_traces() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(TraceContext::new_root(100.0, &mut rng).sampled);
        assert!(!TraceContext::new_root(0.0, &mut rng).sampled);
        let n = 20_000;
        let sampled = (0..n)
            .filter(|_| TraceContext::new_root(10.0, &mut rng).sampled)
            .count();
        let share = sampled as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.01, "{share}");
    }

    #[test]
    fn request_id_is_uuid_v4() {
        let mut rng = StdRng::seed_from_u64(4);
        let id = new_request_id(&mut rng);
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(new_request_id(&mut rng), id);

        // the digits are the random bytes in order (version and variant bits set), as
        // `format!` would write them
        let mut bytes = [0u8; 16];
        StdRng::seed_from_u64(4).fill_bytes(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s.replace('-', ""), hex);
    }

    #[test]
    fn hex_digits_are_written_like_format() {
        let mut rng = StdRng::seed_from_u64(16);
        let edges = [
            0,
            1,
            9,
            10,
            15,
            16,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            u64::MAX,
        ];
        let mut values: Vec<u64> = edges.to_vec();
        values.extend((0..16u64).map(|n| n * 0x1111_1111_1111_1111));
        values.extend((0..10_000).map(|_| rng.next_u64()));
        for v in values {
            assert_eq!(hex16(v), format!("{v:016x}").as_bytes(), "{v:#x}");
        }
        let mut b = BytesMut::new();
        put_hex128(&mut b, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(&b[..], b"4bf92f3577b34da6a3ce929d0e0e4736");
    }

    proptest::proptest! {
        #[test]
        fn extract_never_panics_and_yields_valid_ids(
            tp in ".{0,80}",
            b3 in "[0-9a-f-]{0,80}",
            tid in "[0-9a-fA-F]{0,40}",
            sid in "[0-9a-f]{0,20}",
            sampled in ".{0,3}",
        ) {
            let mut h = HeaderMap::new();
            for (name, v) in [("traceparent", &tp), ("b3", &b3), ("x-b3-traceid", &tid), ("x-b3-spanid", &sid), ("x-b3-sampled", &sampled)] {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(HeaderName::from_static(name), v);
                }
            }
            if let Some(p) = extract(&h) {
                proptest::prop_assert!(p.trace_id != 0 && p.span_id != 0);
                let ctx = TraceContext::from_parent(p, 1.0, &mut rand::rng());
                let mut out = HeaderMap::new();
                ctx.inject(&mut out, Formats { w3c: true, b3_multi: true, b3_single: true });
                let back = extract(&out).unwrap();
                proptest::prop_assert_eq!(back.trace_id, ctx.trace_id);
                proptest::prop_assert_eq!(back.span_id, ctx.span_id);
            }
        }
    }

    /// The headers an inbound layer that opens its own server span hands the application
    /// for a request carrying `pairs`.
    async fn inbound_sees(pairs: &[(&str, &str)]) -> (HeaderMap, TraceContext) {
        let own_span = TraceConfig {
            shared_span_context: false,
            formats: BOTH,
            ..TraceConfig::default()
        };
        inbound_with(own_span, pairs).await
    }

    /// W3C and B3 multi-header (Zipkin with `USE_B3_WITH_W3C_PROPAGATION`): the tests of
    /// how the two formats agree use both.
    const BOTH: Formats = Formats {
        w3c: true,
        b3_multi: true,
        b3_single: false,
    };

    #[tokio::test]
    async fn the_default_is_zipkin_b3_and_leaves_w3c_alone() {
        // a caller without context: B3 only, as Envoy's Zipkin tracer
        let (h, ctx) = inbound_with(TraceConfig::default(), &[]).await;
        assert_eq!(h["x-b3-traceid"], ctx.trace_id_hex());
        assert!(!h.contains_key("traceparent"), "{h:?}");
        assert_eq!(h["x-request-id"].len(), 36);

        // an outbound call whose application set a traceparent (an OpenTelemetry app):
        // Envoy's Zipkin tracer (USE_B3) does not read W3C, starts a trace of its own and
        // passes the traceparent on untouched
        use tower::{service_fn, Layer, ServiceExt};
        let client = PropagateTraceLayer::outbound(TraceConfig::default()).layer(service_fn(
            |req: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.headers().clone())
            },
        ));
        let req = http::Request::builder()
            .header("traceparent", TP)
            .body(())
            .unwrap();
        let h = client.clone().oneshot(req).await.unwrap();
        assert_eq!(h["traceparent"], TP);
        assert_ne!(h["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!h.contains_key("x-b3-parentspanid"), "a root span");

        // tracing off: the request's trace headers are left alone, only x-request-id added
        let off = TraceConfig {
            formats: Formats::NONE,
            ..TraceConfig::default()
        };
        let (h, _) = inbound_with(
            off,
            &[
                ("traceparent", TP),
                ("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1"),
            ],
        )
        .await;
        assert_eq!(h["traceparent"], TP);
        assert_eq!(h["b3"], "64fe8b2a57d3eff7-e457b5a2e4d86bd1");
        assert!(!h.contains_key("x-b3-traceid"));
        assert_eq!(h["x-request-id"].len(), 36);
        let client = PropagateTraceLayer::outbound(off).layer(service_fn(
            |req: http::Request<()>| async move {
                Ok::<_, std::convert::Infallible>(req.headers().clone())
            },
        ));
        let h = client.oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(h.len(), 1, "only x-request-id: {h:?}");
    }

    /// The headers an inbound layer with `config` hands the application for a request
    /// carrying `pairs`.
    async fn inbound_with(
        config: TraceConfig,
        pairs: &[(&str, &str)],
    ) -> (HeaderMap, TraceContext) {
        use tower::{service_fn, Layer, ServiceExt};
        let app = PropagateTraceLayer::inbound(config).layer(service_fn(
            |req: http::Request<()>| async move {
                let ctx = req.extensions().get::<TraceContext>().cloned().unwrap();
                Ok::<_, std::convert::Infallible>((req.headers().clone(), ctx))
            },
        ));
        let mut req = http::Request::new(());
        for (k, v) in pairs {
            req.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        app.oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn inbound_rewrites_what_changes_and_keeps_what_does_not() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let (h, ctx) = inbound_sees(&[
            ("traceparent", TP),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
            ("x-b3-traceid", trace),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "r-1"),
        ])
        .await;
        assert_eq!(ctx.parent_span_id, Some(0x00f0_67aa_0ba9_02b7));
        assert_eq!(h["traceparent"], ctx.traceparent());
        // both tracestate fields reach the application, in order, and the context holds
        // them combined (W3C: one list), as an outbound call forwards them
        let states: Vec<_> = h.get_all("tracestate").iter().collect();
        assert_eq!(states, ["a=1", "b=2"]);
        assert_eq!(ctx.tracestate.as_ref().unwrap(), "a=1,b=2");
        assert_eq!(h["x-b3-traceid"], trace);
        assert_eq!(h["x-b3-spanid"], format!("{:016x}", ctx.span_id).as_str());
        assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(h.get_all("x-b3-sampled").iter().count(), 1);
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(h["x-request-id"], "r-1");

        // a traceparent that disagrees with the B3 context that won (B3 first, as Envoy's
        // Zipkin tracer reads it) is overwritten, and repeated B3 fields collapse into one
        let (h, ctx) = inbound_sees(&[
            ("traceparent", TP),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
            ("x-b3-sampled", "1"),
        ])
        .await;
        assert_eq!(ctx.trace_id_hex(), "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(h["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(h["traceparent"], ctx.traceparent());
        assert_eq!(h.get_all("x-b3-sampled").iter().collect::<Vec<_>>(), ["0"]);
        assert!(!h.contains_key("tracestate"));

        // a caller without context: a new trace, every header added
        let (h, ctx) = inbound_sees(&[
            ("tracestate", "stale=1"),
            ("x-b3-parentspanid", "e457b5a2e4d86bd1"),
        ])
        .await;
        assert_eq!(ctx.origin, Origin::New);
        assert_eq!(h["x-b3-traceid"], ctx.trace_id_hex());
        assert!(
            !h.contains_key("tracestate"),
            "a new trace carries no tracestate"
        );
        assert!(
            !h.contains_key("x-b3-parentspanid"),
            "a root span has no parent"
        );
        assert_eq!(h["x-request-id"].len(), 36);

        // no usable context, but a request id and a sampling flag: the id is kept, and the
        // new trace takes the flag's decision (Envoy's Zipkin `extractSampled`)
        let (h, ctx) = inbound_sees(&[
            ("x-request-id", "r-2"),
            ("x-b3-sampled", "1"),
            ("x-b3-sampled", "1"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ])
        .await;
        assert_eq!(ctx.origin, Origin::New);
        assert!(ctx.sampled);
        assert_eq!(h["x-request-id"], "r-2");
        assert_eq!(h.get_all("x-b3-sampled").iter().collect::<Vec<_>>(), ["1"]);
        assert_eq!(h["x-b3-spanid"], format!("{:016x}", ctx.span_id).as_str());

        // sampling decisions without ids, against a 100 % sampling rate: kept
        let all = TraceConfig {
            sampling_percent: 100.0,
            ..TraceConfig::default()
        };
        for (name, value, sampled) in [
            ("b3", "0", false),
            ("x-b3-sampled", "0", false),
            ("b3", "d", true),
        ] {
            let (h, ctx) = inbound_with(all, &[(name, value)]).await;
            assert_eq!(ctx.sampled, sampled, "{name}: {value}");
            assert_eq!(h["x-b3-sampled"], if sampled { "1" } else { "0" });
            if name == "b3" {
                assert_eq!(h["b3"], value, "a b3 header passes as it came");
            }
        }
    }

    #[tokio::test]
    async fn a_shared_span_leaves_the_callers_headers_as_they_came() {
        let shared = TraceConfig {
            formats: BOTH,
            shared_span_context: true,
            ..TraceConfig::default()
        };
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let sent = [
            ("traceparent", TP),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
            ("x-b3-traceid", trace),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-parentspanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "r-1"),
        ];
        let (h, ctx) = inbound_with(shared, &sent).await;
        assert_eq!(ctx.trace_id_hex(), trace);
        assert_eq!(ctx.span_id, 0x00f0_67aa_0ba9_02b7, "the caller's span");
        assert_eq!(
            ctx.parent_span_id,
            Some(0xe457_b5a2_e4d8_6bd1),
            "B3's parent"
        );
        assert_eq!(ctx.origin, Origin::B3Multi);
        assert!(ctx.sampled);
        assert_eq!(ctx.tracestate.as_ref().unwrap(), "a=1,b=2");
        let mut got: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = sent
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want, "every header as it came");

        // B3 only: the caller's ids (and its parent) are the context's, traceparent is added
        let (h, ctx) = inbound_with(
            shared,
            &[
                ("x-b3-traceid", "64fe8b2a57d3eff7"),
                ("x-b3-spanid", "E457B5A2E4D86BD1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
                ("x-b3-sampled", "0"),
                ("tracestate", "stale=1"),
            ],
        )
        .await;
        assert_eq!(
            (ctx.span_id, ctx.parent_span_id),
            (0xe457_b5a2_e4d8_6bd1, Some(0x05e3_ac9a_4f6e_3b90))
        );
        assert!(ctx.short_trace_id && !ctx.sampled);
        assert_eq!(h["x-b3-spanid"], "E457B5A2E4D86BD1", "left as it came");
        assert_eq!(h["x-b3-parentspanid"], "05e3ac9a4f6e3b90");
        assert_eq!(h["traceparent"], ctx.traceparent());
        assert!(h["traceparent"]
            .to_str()
            .unwrap()
            .ends_with("-e457b5a2e4d86bd1-00"));
        assert!(
            !h.contains_key("tracestate"),
            "no traceparent came, so no tracestate"
        );
        assert_eq!(h["x-request-id"].len(), 36, "added");

        // a traceparent that disagrees with the B3 context that won is rewritten to it
        // (B3 first, as Envoy's Zipkin tracer reads it); the B3 fields stay as they came
        let (h, ctx) = inbound_with(
            shared,
            &[
                ("traceparent", TP),
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ],
        )
        .await;
        assert_eq!(ctx.span_id, 0xe457_b5a2_e4d8_6bd1);
        assert_eq!(h["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(h["x-b3-spanid"], "e457b5a2e4d86bd1");
        assert_eq!(h["x-b3-parentspanid"], "05e3ac9a4f6e3b90");
        assert_eq!(h["traceparent"], ctx.traceparent());
        assert!(h["traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-"));

        // a deferred sampling decision is made here and written down, in the multi
        // headers (Envoy's Zipkin tracer writes no `b3` single header: it passes as it came)
        let sampled_all = TraceConfig {
            sampling_percent: 100.0,
            ..shared
        };
        let (h, ctx) =
            inbound_with(sampled_all, &[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1")]).await;
        assert_eq!(ctx.span_id, 0xe457_b5a2_e4d8_6bd1);
        assert!(ctx.sampled);
        assert_eq!(h["b3"], "64fe8b2a57d3eff7-e457b5a2e4d86bd1");
        assert_eq!(h["x-b3-sampled"], "1");
        assert_eq!(h["x-b3-spanid"], "e457b5a2e4d86bd1");

        // no usable context: a new trace, as without sharing
        let (h, ctx) = inbound_with(shared, &[("traceparent", "garbage")]).await;
        assert_eq!(ctx.origin, Origin::New);
        assert_eq!(h["traceparent"], ctx.traceparent());
        assert_eq!(h["x-b3-spanid"], format!("{:016x}", ctx.span_id).as_str());
    }

    #[test]
    fn seen_finds_the_trace_headers_a_map_holds() {
        let h = headers(&[
            ("tracestate", "a=1"),
            ("x-request-id", "r"),
            ("accept", "*/*"),
        ]);
        let seen = Found::scan(&h).seen;
        assert!(seen.may_hold(Seen::TRACESTATE) && seen.may_hold(Seen::REQUEST_ID));
        for absent in [
            Seen::PARENT_SPAN_ID,
            Seen::TRACE_ID,
            Seen::SAMPLED,
            Seen::B3,
        ] {
            assert!(!seen.may_hold(absent), "{absent}");
        }
        // a large map is read by lookups, with the same result
        let trace = [
            ("traceparent", TP),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
            ("x-b3-sampled", "1"),
            ("x-request-id", "r"),
        ];
        let filler: Vec<(String, String)> = (0..40)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        let mut pairs: Vec<(&str, &str)> = filler
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend(trace);
        let (large, small) = (headers(&pairs), headers(&trace));
        let (mut by_lookup, mut by_pass) = (Found::scan(&large), Found::scan(&small));
        assert_eq!(by_lookup.seen, by_pass.seen);
        let want = Seen::TRACEPARENT | Seen::TRACESTATE | Seen::SAMPLED | Seen::REQUEST_ID;
        assert_eq!(by_pass.seen, Seen(want));
        let parent = by_pass.parent(&small).unwrap();
        assert_eq!(parent.tracestate.as_ref().unwrap(), "a=1,b=2");
        assert_eq!(by_lookup.parent(&large), Some(parent));
        assert_eq!(by_lookup.request_id.unwrap(), "r");
    }

    #[tokio::test]
    async fn current_is_scoped() {
        assert_eq!(current(), None);
        let ctx = TraceContext::new_root(100.0, &mut rand::rng());
        let inner = scope(ctx.clone(), async { current() }).await;
        assert_eq!(inner, Some(ctx));
        assert_eq!(current(), None);
    }
}
