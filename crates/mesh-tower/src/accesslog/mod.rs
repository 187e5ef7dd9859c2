//! An access log as Istio's sidecars write it: one `tracing` event per request, at INFO on
//! target [`TARGET`] (`inmesh::access_log`), when the response body ends.
//!
//! The event's message is a line in Istio's default text format:
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
//! %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
//! "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//! %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//! "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
//! %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
//! %REQUESTED_SERVER_NAME% %ROUTE_NAME%
//! ```
//!
//! (on one line), or the format MeshConfig `accessLogEncoding` / `accessLogFormat` asks
//! for ([`LogFormat::from_mesh_config`], applied process-wide by [`set_default_format`] or
//! to one layer by [`AccessLogLayer::with_format`]): Istio's default JSON object (the same
//! fields, by pilot's `EnvoyJSONLogFormatIstio` keys), or a custom TEXT or JSON format.
//! Whatever the format, the same values are structured fields of the event (`method`, `path`,
//! `protocol`, `response_code`, `response_flags`, `response_code_details`,
//! `bytes_received`, `bytes_sent`, `duration_ms`, `request_id`, `authority`,
//! `upstream_host`, `upstream_cluster`, `route_name`, `direction`, ...).
//!
//! Values not known to this layer come from extensions: [`ConnectionAddrs`] in the request
//! (downstream addresses), and in the response [`ResponseFlags`],
//! [`ResponseCodeDetails`] (local replies set both) and [`UpstreamInfo`] (the outbound stack
//! sets it). When no subscriber listens to [`TARGET`], the layer captures nothing.

mod format;
mod service;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use tower::Layer;

pub use format::{default_format, set_default_format, LogFormat};
pub(crate) use service::{capture_with, entry_for};
pub use service::{AccessLog, AccessLogBody, AccessLogFuture};

use crate::envoy::{ResponseCodeDetails, ResponseFlags};
use crate::lb::ConnectionAddrs;
use crate::observe::{BodyObserver, BodySize};

/// The `tracing` target of access-log events.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::{AccessLogLayer, TARGET};
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, Layer, ServiceExt};
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
/// });
/// let server = AccessLogLayer::inbound().layer(app);
/// server.oneshot(http::Request::get("/").body(Full::new(Bytes::new()))?).await?.into_body().collect().await?;
/// assert_eq!(TARGET, "inmesh::access_log");
/// assert!(logs.text().contains(&format!(" INFO {TARGET}: ")));
/// # Ok(()) }
/// ```
pub const TARGET: &str = "inmesh::access_log";

/// Upstream facts for the access log, put in the response extensions by the outbound
/// stack.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::{AccessLogLayer, UpstreamInfo};
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, Layer, ServiceExt};
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let upstream = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///     let mut response = http::Response::new(Full::new(Bytes::from("reviews")));
///     response.extensions_mut().insert(UpstreamInfo {
///         host: Some("10.0.0.7:9080".parse().unwrap()),
///         cluster: Some("outbound|9080|v1|reviews.default.svc.cluster.local".into()),
///         route_name: Some("default".into()),
///         ..Default::default()
///     });
///     Ok::<_, Infallible>(response)
/// });
/// let client = AccessLogLayer::outbound().layer(upstream);
/// let req = http::Request::get("http://reviews:9080/reviews/0").body(Full::new(Bytes::new()))?;
/// client.oneshot(req).await?.into_body().collect().await?;
/// assert!(logs.text().contains(r#""10.0.0.7:9080" outbound|9080|v1|reviews.default.svc.cluster.local "#));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// The endpoint the request was sent to (`%UPSTREAM_HOST%`).
    pub host: Option<SocketAddr>,
    /// Envoy-style cluster name, e.g. `outbound|9080|v1|reviews.default.svc.cluster.local`.
    pub cluster: Option<Arc<str>>,
    /// Our address on the upstream connection.
    pub local_address: Option<SocketAddr>,
    /// The route name (VirtualService route `name`, `default` when unnamed).
    pub route_name: Option<Arc<str>>,
    /// Transport failure reason (e.g. a TLS error).
    pub transport_failure: Option<String>,
}

/// Which side a log line comes from (a field of the event).
///
/// [`AccessLogLayer::inbound`] logs `direction="inbound"`, [`AccessLogLayer::outbound`]
/// `direction="outbound"`.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::AccessLogLayer;
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, Layer, ServiceExt};
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
/// });
/// let server = AccessLogLayer::inbound().layer(app);
/// server.oneshot(http::Request::get("/").body(Full::new(Bytes::new()))?).await?.into_body().collect().await?;
/// assert!(logs.text().contains(r#"direction="inbound""#));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Server side.
    Inbound,
    /// Client side.
    Outbound,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Logs every request through the wrapped service. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::AccessLogLayer;
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let server = ServiceBuilder::new()
///     .layer(AccessLogLayer::inbound())
///     .service(service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///         Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("<html>"))))
///     }));
///
/// let req = http::Request::get("/productpage")
///     .header("host", "bookinfo.example.com")
///     .header("x-request-id", "4f2a8c1e")
///     .body(Full::new(Bytes::new()))?;
/// let response = server.oneshot(req).await?;
/// assert_eq!(logs.text(), ""); // logged when the response body ends
/// response.into_body().collect().await?;
///
/// let line = logs.text();
/// assert!(line.contains(r#""GET /productpage HTTP/1.1" 200 - via_upstream - "-" 0 6 "#));
/// assert!(line.contains(r#""4f2a8c1e" "bookinfo.example.com""#));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AccessLogLayer {
    direction: Direction,
    /// This layer's format (`None`: the process-wide [`default_format`]).
    format: Option<Arc<LogFormat>>,
}

impl AccessLogLayer {
    /// A server-side access log.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::accesslog::AccessLogLayer;
    /// use mesh_tower::observe::CountingBody;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Logs(Arc<Mutex<Vec<u8>>>);
    /// # impl std::io::Write for Logs {
    /// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
    /// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
    /// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    /// #     let logs = Logs::default();
    /// #     let writer = logs.clone();
    /// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    /// #     (logs, tracing::subscriber::set_default(subscriber))
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
    /// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
    ///     let mut res = http::Response::new(Full::new(Bytes::from("not here")));
    ///     *res.status_mut() = http::StatusCode::NOT_FOUND;
    ///     Ok::<_, Infallible>(res)
    /// });
    /// let server = AccessLogLayer::inbound().layer(app);
    /// let req = http::Request::get("/ratings/7").header("user-agent", "curl/8.5.0").body(Full::new(Bytes::new()))?;
    /// server.oneshot(req).await?.into_body().collect().await?;
    /// let line = logs.text();
    /// assert!(line.contains(r#""GET /ratings/7 HTTP/1.1" 404 - via_upstream"#));
    /// assert!(line.contains(r#""curl/8.5.0""#));
    /// assert!(line.contains(r#"direction="inbound""#));
    /// # Ok(()) }
    /// ```
    pub fn inbound() -> Self {
        AccessLogLayer {
            direction: Direction::Inbound,
            format: None,
        }
    }

    /// A client-side access log.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::accesslog::AccessLogLayer;
    /// use mesh_tower::observe::CountingBody;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Logs(Arc<Mutex<Vec<u8>>>);
    /// # impl std::io::Write for Logs {
    /// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
    /// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
    /// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    /// #     let logs = Logs::default();
    /// #     let writer = logs.clone();
    /// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    /// #     (logs, tracing::subscriber::set_default(subscriber))
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
    /// let upstream = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("{}"))))
    /// });
    /// let client = AccessLogLayer::outbound().layer(upstream);
    /// let req = http::Request::get("http://reviews.default.svc.cluster.local:9080/reviews/0").body(Full::new(Bytes::new()))?;
    /// client.oneshot(req).await?.into_body().collect().await?;
    /// let line = logs.text();
    /// assert!(line.contains(r#"direction="outbound""#));
    /// // No Host header: the authority comes from the URI.
    /// assert!(line.contains(r#""reviews.default.svc.cluster.local:9080""#));
    /// # Ok(()) }
    /// ```
    pub fn outbound() -> Self {
        AccessLogLayer {
            direction: Direction::Outbound,
            format: None,
        }
    }

    /// With its own format instead of the process-wide one ([`set_default_format`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::accesslog::{AccessLogLayer, LogFormat};
    /// use mesh_tower::observe::CountingBody;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// # use std::sync::{Arc, Mutex};
    /// # #[derive(Clone, Default)]
    /// # struct Logs(Arc<Mutex<Vec<u8>>>);
    /// # impl std::io::Write for Logs {
    /// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
    /// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
    /// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    /// #     let logs = Logs::default();
    /// #     let writer = logs.clone();
    /// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    /// #     (logs, tracing::subscriber::set_default(subscriber))
    /// # }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
    /// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("{}"))))
    /// });
    /// let server = AccessLogLayer::inbound().with_format(LogFormat::json()).layer(app);
    /// let req = http::Request::get("/ratings/7").body(Full::new(Bytes::new()))?;
    /// server.oneshot(req).await?.into_body().collect().await?;
    /// let line = logs.text();
    /// assert!(line.contains(r#""path":"/ratings/7""#), "{line}");
    /// assert!(line.contains(r#""response_code":200"#));
    /// assert!(line.contains(r#""upstream_host":null"#));
    /// # Ok(()) }
    /// ```
    pub fn with_format(mut self, format: LogFormat) -> Self {
        self.format = Some(Arc::new(format));
        self
    }

    /// This layer with the format of `mesh`'s MeshConfig (`accessLogEncoding`,
    /// `accessLogFormat`), when it sets one.
    pub(crate) fn with_mesh_format(mut self, mesh: &mesh_core::mesh::Mesh) -> Self {
        if let Some(f) = mesh_format(mesh.options()) {
            self.format = Some(f);
        }
        self
    }
}

/// The access-log format a mesh's MeshConfig asks for: `None` for Istio's default TEXT
/// format (the process-wide format then applies) or a format this access log cannot write
/// (warned about once per build).
pub(crate) fn mesh_format(opts: &mesh_core::names::MeshOptions) -> Option<Arc<LogFormat>> {
    use mesh_core::meshconfig::AccessLogEncoding;
    if opts.access_log_encoding == AccessLogEncoding::Text && opts.access_log_format.is_none() {
        return None;
    }
    match LogFormat::from_parts(opts.access_log_encoding, opts.access_log_format.as_deref()) {
        Ok(f) => {
            let unwritten = f.operators_not_written();
            if !unwritten.is_empty() {
                tracing::warn!(operators = ?unwritten,
                    "MeshConfig access log format: these operators are written as `-`");
            }
            Some(Arc::new(f))
        }
        Err(e) => {
            tracing::warn!(error = %e, "MeshConfig access log format not supported; using the default");
            None
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog::new(inner, self.direction, self.format.clone())
    }
}

/// What the stack inside the access log changes in a request that Envoy's access log sees
/// changed (its connection manager does it before any filter): the path normalization
/// (`envoy::sanitize_request`) rewrote the path to (Envoy logs `%REQ(:PATH)%` after it),
/// and the `x-request-id` given to a request that had none, or that replaced a gateway
/// client's. Put in the request extensions only while the access log is listening;
/// written only when something changes.
#[derive(Clone, Debug, Default)]
pub(crate) struct LateFacts(Arc<Late>);

#[derive(Debug, Default)]
struct Late {
    path: OnceLock<Uri>,
    request_id: OnceLock<HeaderValue>,
    forwarded_for: OnceLock<HeaderValue>,
    remote: OnceLock<std::net::SocketAddr>,
}

impl LateFacts {
    pub(crate) fn set_path(&self, uri: &Uri) {
        let _ = self.0.path.set(uri.clone());
    }

    fn path(&self) -> Option<&Uri> {
        self.0.path.get()
    }

    pub(crate) fn set_request_id(&self, id: &HeaderValue) {
        let _ = self.0.request_id.set(id.clone());
    }

    /// The `x-forwarded-for` the connection manager wrote (a gateway appends its peer).
    pub(crate) fn set_forwarded_for(&self, v: &HeaderValue) {
        let _ = self.0.forwarded_for.set(v.clone());
    }

    /// The stream's remote address when the connection manager took it from
    /// `x-forwarded-for` (a gateway behind trusted proxies): Envoy's
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`, port 0.
    pub(crate) fn set_remote(&self, a: std::net::SocketAddr) {
        let _ = self.0.remote.set(a);
    }
}

impl RequestFacts {
    /// The request's `x-forwarded-for` as the connection manager left it.
    pub(crate) fn forwarded_for(&self) -> Option<&HeaderValue> {
        self.normalized
            .0
            .forwarded_for
            .get()
            .or(self.forwarded_for.as_ref())
    }

    /// The downstream remote address as the connection manager inferred it.
    pub(crate) fn downstream_remote(&self) -> Option<std::net::SocketAddr> {
        self.normalized
            .0
            .remote
            .get()
            .copied()
            .or(self.downstream.remote)
    }

    /// The request's `x-request-id` as the stack left it.
    pub(crate) fn request_id(&self) -> Option<&HeaderValue> {
        self.normalized
            .0
            .request_id
            .get()
            .or(self.request_id.as_ref())
    }
}

/// What is captured from the request (cheap clones: header values share their bytes).
#[derive(Debug)]
pub(crate) struct RequestFacts {
    pub(crate) direction: Direction,
    pub(crate) start_wall: SystemTime,
    pub(crate) start: Instant,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) original_path: Option<HeaderValue>,
    /// What the stack changed later: the normalized path, a new request id.
    pub(crate) normalized: LateFacts,
    pub(crate) version: Version,
    pub(crate) forwarded_for: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) request_id: Option<HeaderValue>,
    pub(crate) authority: Option<HeaderValue>,
    pub(crate) downstream: ConnectionAddrs,
    pub(crate) received: BodySize,
    /// The TLS SNI of the downstream connection (`%REQUESTED_SERVER_NAME%`).
    pub(crate) sni: Option<Box<str>>,
    /// The format the entry is written in.
    pub(crate) format: Arc<LogFormat>,
    /// Request headers a custom format reads (not kept otherwise).
    pub(crate) extra_request: Option<HeaderMap>,
    /// An opaque TCP connection, not a request: the HTTP fields are `-`.
    pub(crate) tcp: bool,
}

/// One log entry: emitted when dropped (at the end of the response body).
///
/// It travels inside the response body ([`AccessLogBody`]), so a body dropped before its
/// end (the client went away) is logged too, with the bytes actually sent, flag `DC` and
/// details `downstream_remote_disconnect` (Envoy's, when the downstream closes mid-response).
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use mesh_tower::accesslog::AccessLogLayer;
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, Layer, ServiceExt};
/// # use std::sync::{Arc, Mutex};
/// # #[derive(Clone, Default)]
/// # struct Logs(Arc<Mutex<Vec<u8>>>);
/// # impl std::io::Write for Logs {
/// #     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
/// #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
/// # }
/// # impl Logs { fn text(&self) -> String { String::from_utf8(self.0.lock().unwrap().clone()).unwrap() } }
/// # fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
/// #     let logs = Logs::default();
/// #     let writer = logs.clone();
/// #     let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
/// #     (logs, tracing::subscriber::set_default(subscriber))
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (logs, _guard) = capture(); // a `tracing` subscriber writing into `logs`
/// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///     let mut response = http::Response::new(Full::new(Bytes::from("partial")));
///     *response.status_mut() = http::StatusCode::NOT_FOUND;
///     Ok::<_, Infallible>(response)
/// });
/// let response = AccessLogLayer::inbound().layer(app).oneshot(http::Request::get("/missing").body(Full::new(Bytes::new()))?).await?;
/// drop(response); // never read: the caller went away
/// assert!(logs.text().contains(r#""GET /missing HTTP/1.1" 404 DC downstream_remote_disconnect - "-" 0 0 "#));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LogEntry {
    facts: Box<RequestFacts>,
    status: u16,
    flags: ResponseFlags,
    details: Option<String>,
    upstream: Option<UpstreamInfo>,
    service_time: Option<HeaderValue>,
    /// Response headers a custom format reads.
    extra_response: Option<HeaderMap>,
    /// The trailers' `grpc-status`, when the format writes a gRPC status.
    trailer_grpc_status: Option<HeaderValue>,
    sent: u64,
    /// The response body was sent to its end (a 1xx has none to send).
    ended: bool,
}

impl LogEntry {
    pub(crate) fn new(
        facts: Box<RequestFacts>,
        status: u16,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        let details = extensions.get::<ResponseCodeDetails>().map(|d| d.0.clone());
        let upstream = extensions.get::<UpstreamInfo>().cloned().or_else(|| {
            // the server side: Envoy's inbound route is `default`, to the cluster
            // `inbound|<port>||` whose host is the application; a request answered before
            // the router (a local reply: RBAC, JWT, ...) reached no cluster
            (facts.direction == Direction::Inbound && !facts.tcp).then(|| {
                let app = facts
                    .downstream
                    .local
                    .filter(|_| details.is_none() && status != 0);
                UpstreamInfo {
                    host: app,
                    cluster: app.map(|a| format!("inbound|{}||", a.port()).into()),
                    route_name: Some(Arc::from("default")),
                    ..Default::default()
                }
            })
        });
        LogEntry {
            status,
            flags: extensions
                .get::<ResponseFlags>()
                .copied()
                .unwrap_or_default(),
            details,
            upstream,
            service_time: headers.get("x-envoy-upstream-service-time").cloned(),
            extra_response: facts.format.response_headers(headers),
            ended: status < 200,
            facts,
            trailer_grpc_status: None,
            sent: 0,
        }
    }
}

impl LogEntry {
    /// The response has no body to send (`end_stream`: an empty body, which a server
    /// never polls), or none is sent for its status or a HEAD request: not cut short when
    /// it is dropped unpolled.
    pub(crate) fn nothing_to_send(&mut self, end_stream: bool) {
        if end_stream
            || self.status == 204
            || self.status == 304
            || self.facts.method == http::Method::HEAD
        {
            self.ended = true;
        }
    }
}

impl BodyObserver for LogEntry {
    fn on_data(&mut self, n: u64) {
        self.sent += n;
    }

    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if self.facts.format.writes_grpc_status() {
            self.trailer_grpc_status = trailers.get("grpc-status").cloned();
        }
    }

    fn on_end(&mut self) {
        self.ended = true;
    }

    fn on_error(&mut self) {
        // the upstream reset the response after it had started (Envoy's router
        // `onUpstreamAbort`: UC, `upstream_reset_after_response_started{...}`)
        self.ended = true;
        self.flags
            .insert(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
        self.details =
            Some("upstream_reset_after_response_started{connection_termination}".to_owned());
    }
}

struct Opt<'a, T>(Option<&'a T>);

impl<T: fmt::Display> fmt::Display for Opt<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

struct Hv<'a>(Option<&'a HeaderValue>);

impl fmt::Display for Hv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.and_then(|v| v.to_str().ok()) {
            Some(s) => f.write_str(s),
            None => f.write_str("-"),
        }
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

/// `%START_TIME%`: RFC 3339 UTC with milliseconds.
pub(crate) struct StartTime(pub(crate) SystemTime);

impl fmt::Display for StartTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() as i64;
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

/// The Envoy-format line of an entry.
struct Line<'a>(&'a LogEntry, u64);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let r = &e.facts;
        let up = e.upstream.as_ref();
        let path: &dyn fmt::Display = match &r.original_path {
            _ if r.tcp => &"-",
            Some(p) => &Hv(Some(p)) as &dyn fmt::Display,
            None => &PathAndQuery(r.normalized.path().unwrap_or(&r.uri)),
        };
        // a TCP connection: Envoy's `"- - -" 0 FLAGS - -`
        let (method, proto, details) = if r.tcp {
            ("-", "-", "-")
        } else {
            (
                r.method.as_str(),
                protocol(r.version),
                e.details.as_deref().unwrap_or("via_upstream"),
            )
        };
        write!(
            f,
            "[{}] \"{} {} {}\" {} {} {} - \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} {} {}",
            StartTime(r.start_wall),
            method,
            path,
            proto,
            e.status,
            e.flags,
            details,
            Opt(up.and_then(|u| u.transport_failure.as_ref())),
            r.received.get(),
            e.sent,
            self.1,
            Hv(e.service_time.as_ref()),
            Hv(r.forwarded_for()),
            Hv(r.user_agent.as_ref()),
            Hv(r.request_id()),
            Hv(r.authority.as_ref()),
            Opt(up.and_then(|u| u.host.as_ref())),
            Opt(up.and_then(|u| u.cluster.as_ref())),
            Opt(up.and_then(|u| u.local_address.as_ref())),
            Opt(r.downstream.local.as_ref()),
            Opt(r.downstream_remote().as_ref()),
            Opt(r.sni.as_ref()),
            Opt(up.and_then(|u| u.route_name.as_ref())),
        )
    }
}

/// The event's message: the entry in its format.
struct Message<'a>(&'a LogEntry, u64);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = &self.0.facts.format;
        if format.is_istio_text() {
            Line(self.0, self.1).fmt(f)
        } else {
            f.write_str(&format.render(self.0, self.1))
        }
    }
}

/// The access-log entry of an opaque TCP connection, written when [`TcpLog::finish`]
/// is called (its close): Envoy's TCP proxy entry, `"- - -" 0 FLAGS - -` and the bytes,
/// duration, upstream and downstream addresses, in the format's layout.
#[derive(Debug)]
pub(crate) struct TcpLog {
    direction: Direction,
    format: Arc<LogFormat>,
    start_wall: SystemTime,
    start: Instant,
    downstream: ConnectionAddrs,
    sni: Option<Box<str>>,
    pub(crate) upstream: Option<UpstreamInfo>,
    pub(crate) flags: ResponseFlags,
}

impl TcpLog {
    /// An entry starting now, in `format` (`None`: the process-wide one); `None` when no
    /// subscriber listens to the access log.
    pub(crate) fn start(
        direction: Direction,
        format: Option<&Arc<LogFormat>>,
        downstream: ConnectionAddrs,
        sni: Option<&str>,
    ) -> Option<Box<TcpLog>> {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return None;
        }
        Some(Box::new(TcpLog {
            direction,
            format: format.cloned().unwrap_or_else(default_format),
            start_wall: SystemTime::now(),
            start: Instant::now(),
            downstream,
            sni: sni.map(Into::into),
            upstream: None,
            flags: ResponseFlags::NONE,
        }))
    }

    /// Writes the entry: `received` bytes came from the client, `sent` went to it.
    pub(crate) fn finish(self, received: u64, sent: u64) {
        let facts = RequestFacts {
            direction: self.direction,
            start_wall: self.start_wall,
            start: self.start,
            method: Method::GET,
            uri: Uri::default(),
            original_path: None,
            normalized: LateFacts::default(),
            version: Version::default(),
            forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            downstream: self.downstream,
            received: BodySize::Exact(received),
            sni: self.sni,
            format: self.format,
            extra_request: None,
            tcp: true,
        };
        // written by the entry's drop
        drop(LogEntry {
            facts: Box::new(facts),
            status: 0,
            flags: self.flags,
            details: None,
            upstream: self.upstream,
            service_time: None,
            extra_response: None,
            trailer_grpc_status: None,
            sent,
            ended: true,
        });
    }
}

struct PathAndQuery<'a>(&'a Uri);

impl fmt::Display for PathAndQuery<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.path_and_query() {
            Some(pq) => f.write_str(pq.as_str()),
            None => f.write_str("/"),
        }
    }
}

impl Drop for LogEntry {
    fn drop(&mut self) {
        if !self.ended && self.status != 0 {
            // the body dropped before its end: the caller went away mid-response (Envoy's
            // `resetAllStreams` on the downstream's close: DC, `downstream_remote_disconnect`,
            // the response's code kept), as the metrics count it
            self.flags
                .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
            self.details = Some("downstream_remote_disconnect".to_owned());
        }
        let duration_ms = self.facts.start.elapsed().as_millis() as u64;
        let r = &self.facts;
        let up = self.upstream.as_ref();
        let (method, path, proto): (&str, &dyn fmt::Display, &str) = if r.tcp {
            ("-", &"-", "tcp")
        } else {
            (
                r.method.as_str(),
                &PathAndQuery(r.normalized.path().unwrap_or(&r.uri)),
                protocol(r.version),
            )
        };
        tracing::info!(
            target: TARGET,
            direction = r.direction.as_str(),
            method,
            path = %path,
            protocol = proto,
            response_code = self.status,
            response_flags = %self.flags,
            response_code_details = self.details.as_deref().unwrap_or("via_upstream"),
            bytes_received = r.received.get(),
            bytes_sent = self.sent,
            duration_ms,
            request_id = %Hv(r.request_id()),
            authority = %Hv(r.authority.as_ref()),
            user_agent = %Hv(r.user_agent.as_ref()),
            upstream_host = %Opt(up.and_then(|u| u.host.as_ref())),
            upstream_cluster = %Opt(up.and_then(|u| u.cluster.as_ref())),
            route_name = %Opt(up.and_then(|u| u.route_name.as_ref())),
            downstream_remote_address = %Opt(r.downstream_remote().as_ref()),
            "{}",
            Message(self, duration_ms)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn start_time_table() {
        let cases = [
            (0u64, 0u32, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_764_100_761, 123, "2025-11-25T19:59:21.123Z"),
            (4_102_444_799, 999, "2099-12-31T23:59:59.999Z"),
        ];
        for (secs, ms, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(u64::from(ms));
            assert_eq!(StartTime(t).to_string(), want);
        }
    }

    #[test]
    fn line_format() {
        let facts = RequestFacts {
            direction: Direction::Outbound,
            start_wall: UNIX_EPOCH,
            start: Instant::now(),
            method: Method::GET,
            uri: "/reviews/0?x=1".parse().unwrap(),
            original_path: None,
            normalized: LateFacts::default(),
            version: Version::HTTP_11,
            forwarded_for: None,
            user_agent: Some(HeaderValue::from_static("curl/8.0")),
            request_id: Some(HeaderValue::from_static("abc")),
            authority: Some(HeaderValue::from_static("reviews:9080")),
            downstream: ConnectionAddrs::default(),
            received: BodySize::Exact(0),
            sni: None,
            format: Arc::new(LogFormat::text()),
            extra_request: None,
            tcp: false,
        };
        let mut ext = http::Extensions::new();
        ext.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
        ext.insert(ResponseCodeDetails("no_healthy_upstream".into()));
        ext.insert(UpstreamInfo {
            cluster: Some("outbound|9080|v1|reviews.default.svc.cluster.local".into()),
            route_name: Some("default".into()),
            ..Default::default()
        });
        let mut entry = LogEntry::new(Box::new(facts), 503, &HeaderMap::new(), &ext);
        entry.on_data(19);
        let line = Line(&entry, 3).to_string();
        assert_eq!(
            line,
            "[1970-01-01T00:00:00.000Z] \"GET /reviews/0?x=1 HTTP/1.1\" 503 UH no_healthy_upstream - \"-\" 0 19 3 - \"-\" \"curl/8.0\" \"abc\" \"reviews:9080\" \"-\" outbound|9080|v1|reviews.default.svc.cluster.local - - - - default"
        );
    }
}
