//! [`AccessLog`] service, its future and body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use http::header::{HOST, USER_AGENT};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::{Direction, LogEntry, LogFormat, RequestFacts, TARGET};
use crate::envoy::ResponseFlags;
use crate::lb::ConnectionAddrs;
use crate::observe::{CountingBody, ObservedBody};

/// The response body of [`AccessLog`]: logs the request when it ends.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body::Body;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::{AccessLogBody, AccessLogLayer};
/// use mesh_tower::observe::CountingBody;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hello"))))
/// });
/// let response = AccessLogLayer::inbound().layer(app).oneshot(http::Request::get("/").body(Full::new(Bytes::new()))?).await?;
/// let body: AccessLogBody<Full<Bytes>> = response.into_body();
/// assert_eq!(body.get_ref().size_hint().exact(), Some(5)); // the inner body, untouched
/// assert_eq!(body.collect().await?.to_bytes(), "hello");
/// # Ok(()) }
/// ```
pub type AccessLogBody<B> = ObservedBody<B, Box<LogEntry>>;

/// Logs every request to `S`. See [`AccessLogLayer`](super::AccessLogLayer).
///
/// # Examples
///
/// The downstream addresses come from the [`ConnectionAddrs`] in the request extensions:
///
/// ```
/// use std::convert::Infallible;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::accesslog::{AccessLog, AccessLogLayer};
/// use mesh_tower::lb::ConnectionAddrs;
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
/// let server: AccessLog<_> = AccessLogLayer::inbound().layer(app);
///
/// let mut req = http::Request::get("/").body(Full::new(Bytes::new()))?;
/// req.extensions_mut().insert(ConnectionAddrs {
///     remote: Some("10.1.2.3:40000".parse()?),
///     local: Some("10.0.0.1:8080".parse()?),
/// });
/// server.oneshot(req).await?.into_body().collect().await?;
/// // the application is the upstream of Envoy's inbound cluster `inbound|8080||`, by the
/// // route `default`
/// let text = logs.text();
/// assert!(text.contains(r#""10.0.0.1:8080" inbound|8080|| - 10.0.0.1:8080 10.1.2.3:40000 - default"#), "{text}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
    direction: Direction,
    format: Option<Arc<LogFormat>>,
}

impl<S> AccessLog<S> {
    pub(crate) fn new(inner: S, direction: Direction, format: Option<Arc<LogFormat>>) -> Self {
        AccessLog {
            inner,
            direction,
            format,
        }
    }

    /// The wrapped service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::AccessLogLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = AccessLogLayer::inbound().layer(App { name: "productpage" });
    /// assert_eq!(svc.get_ref().name, "productpage");
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::AccessLogLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let mut svc = AccessLogLayer::inbound().layer(App { name: "productpage" });
    /// svc.get_mut().name = "reviews";
    /// assert_eq!(svc.get_ref().name, "reviews");
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::AccessLogLayer;
    /// use tower::Layer;
    ///
    /// #[derive(Debug)]
    /// struct App { name: &'static str }
    ///
    /// let svc = AccessLogLayer::outbound().layer(App { name: "productpage" });
    /// let app: App = svc.into_inner();
    /// assert_eq!(app.name, "productpage");
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for AccessLog<S>
where
    S: Service<Request<CountingBody<ReqB>>, Response = Response<ResB>>,
    ReqB: http_body::Body,
    ResB: http_body::Body,
{
    type Response = Response<AccessLogBody<ResB>>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            let (parts, body) = req.into_parts();
            let req = Request::from_parts(parts, CountingBody::passthrough(body));
            return AccessLogFuture {
                inner: self.inner.call(req),
                facts: None,
            };
        }
        let (mut parts, body) = req.into_parts();
        let (body, facts) = capture_with(self.direction, self.format.as_ref(), &mut parts, body);
        AccessLogFuture {
            inner: self.inner.call(Request::from_parts(parts, body)),
            facts: Some(facts),
        }
    }
}

/// Captures what the access log needs from a request (its body counted from now on), for
/// `format` (`None`: the process-wide one).
pub(crate) fn capture_with<B: http_body::Body>(
    direction: Direction,
    format: Option<&Arc<LogFormat>>,
    parts: &mut http::request::Parts,
    body: B,
) -> (CountingBody<B>, Box<RequestFacts>) {
    let format = format.cloned().unwrap_or_else(super::default_format);
    let (body, received) = CountingBody::new(body);
    // the path normalization further in tells us the path it rewrote the request to
    let normalized = super::LateFacts::default();
    parts.extensions.insert(normalized.clone());
    let h = &parts.headers;
    let facts = Box::new(RequestFacts {
        direction,
        start_wall: SystemTime::now(),
        start: Instant::now(),
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        original_path: h.get("x-envoy-original-path").cloned(),
        normalized,
        version: parts.version,
        forwarded_for: h.get("x-forwarded-for").cloned(),
        user_agent: h.get(USER_AGENT).cloned(),
        request_id: h.get("x-request-id").cloned(),
        authority: h.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        }),
        downstream: parts
            .extensions
            .get::<ConnectionAddrs>()
            .copied()
            .or_else(|| {
                parts
                    .extensions
                    .get::<crate::inbound::ConnectionInfo>()
                    .map(|c| c.addrs())
            })
            .unwrap_or_default(),
        received,
        sni: parts
            .extensions
            .get::<crate::inbound::ConnectionInfo>()
            .and_then(|c| c.sni())
            .map(Into::into),
        extra_request: format.request_headers(h),
        format,
        tcp: false,
    });
    (body, facts)
}

/// The access-log entry of an answer (logged when it is dropped, at the end of the body).
pub(crate) fn entry_for<B: http_body::Body>(
    facts: Box<RequestFacts>,
    response: &Response<B>,
) -> Box<LogEntry> {
    let mut e = Box::new(LogEntry::new(
        facts,
        response.status().as_u16(),
        response.headers(),
        response.extensions(),
    ));
    e.nothing_to_send(response.body().is_end_stream());
    e
}

pin_project! {
    /// Response future of [`AccessLog`].
    ///
    /// # Examples
    ///
    /// With no subscriber listening to the access-log target, nothing is captured and the
    /// response passes through:
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::accesslog::{AccessLogFuture, AccessLogLayer};
    /// use mesh_tower::observe::CountingBody;
    /// use tower::{service_fn, Layer, Service, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = service_fn(|_req: http::Request<CountingBody<Full<Bytes>>>| async {
    ///     Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("hi"))))
    /// });
    /// let mut svc = AccessLogLayer::outbound().layer(app);
    /// let future: AccessLogFuture<_> = svc.ready().await?.call(http::Request::get("/").body(Full::new(Bytes::new()))?);
    /// let response = future.await?;
    /// assert_eq!(response.into_body().collect().await?.to_bytes(), "hi");
    /// # Ok(()) }
    /// ```
    #[derive(Debug)]
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        // boxed: the future and the response body stay small when nothing is logged
        facts: Option<Box<RequestFacts>>,
    }

    impl<F> PinnedDrop for AccessLogFuture<F> {
        /// Dropped before the response came: the caller went away (the server's future
        /// dropped with its connection, the client's by its caller). Envoy logs such a
        /// request with response code 0 and `DC` (DownstreamConnectionTermination).
        fn drop(this: Pin<&mut Self>) {
            if let Some(f) = this.project().facts.take() {
                let mut ext = http::Extensions::new();
                ext.insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                // Envoy's connection manager on the caller's close (`onEvent(RemoteClose)`)
                ext.insert(crate::envoy::ResponseCodeDetails(
                    "downstream_remote_disconnect".into(),
                ));
                drop(LogEntry::new(f, 0, &http::HeaderMap::new(), &ext));
            }
        }
    }
}

impl<F, B, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<AccessLogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let facts = this.facts.take();
        match result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                let entry = facts.map(|f| {
                    let mut e = Box::new(LogEntry::new(
                        f,
                        parts.status.as_u16(),
                        &parts.headers,
                        &parts.extensions,
                    ));
                    e.nothing_to_send(body.is_end_stream());
                    e
                });
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    ObservedBody::new(body, entry),
                )))
            }
            Err(e) => {
                // No response: logged with response code 0 (dropping the entry logs it).
                drop(facts.map(|f| {
                    LogEntry::new(f, 0, &http::HeaderMap::new(), &http::Extensions::new())
                }));
                Poll::Ready(Err(e))
            }
        }
    }
}
