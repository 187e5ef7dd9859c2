//! [`MetricsEndpoint`]: serves the Prometheus exposition, as the sidecar does on port 15090
//! (`/stats/prometheus`), and on `/metrics`.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower::Service;

use super::IstioMetrics;

/// The content type of the OpenMetrics text format that `prometheus-client` writes
/// (Prometheus negotiates and parses it).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint, OPENMETRICS_CONTENT_TYPE};
///
/// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
/// // what Prometheus asks for
/// let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// let req = http::Request::get("/metrics").header("accept", accept).body(()).unwrap();
/// let resp = endpoint.respond(&req);
/// assert_eq!(resp.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
/// ```
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of Prometheus's text format 0.0.4, which Envoy's `/stats/prometheus`
/// serves and [`MetricsEndpoint`] serves to a scraper that does not ask for OpenMetrics.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint, PROMETHEUS_TEXT_CONTENT_TYPE};
///
/// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
/// let resp = endpoint.respond(&http::Request::get("/stats/prometheus").body(()).unwrap());
/// assert_eq!(resp.headers()["content-type"], PROMETHEUS_TEXT_CONTENT_TYPE);
/// ```
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Tower service answering `GET /stats/prometheus` and `GET /metrics` with the
/// exposition; other paths get 404, other methods 405. A scraper whose `Accept` names
/// `application/openmetrics-text` (Prometheus does) gets OpenMetrics; any other (`curl`,
/// agents that read the classic format) Prometheus's text format 0.0.4, as Envoy serves it.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use http_body_util::BodyExt;
/// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
///
/// let resp = endpoint.clone().oneshot(http::Request::get("/stats/prometheus").body(())?).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "", "nothing recorded yet");
///
/// let resp = endpoint.clone().oneshot(http::Request::get("/healthz").body(())?).await?;
/// assert_eq!(resp.status(), 404);
/// let resp = endpoint.oneshot(http::Request::post("/metrics").body(())?).await?;
/// assert_eq!(resp.status(), 405);
/// assert_eq!(resp.headers()["allow"], "GET, HEAD");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsEndpoint {
    metrics: Arc<IstioMetrics>,
}

impl MetricsEndpoint {
    /// Serves `metrics`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use http_body::Body as _;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint, PROMETHEUS_TEXT_CONTENT_TYPE};
    ///
    /// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
    /// let head = endpoint.respond(&http::Request::head("/stats/prometheus").body(()).unwrap());
    /// assert_eq!(head.status(), 200);
    /// assert_eq!(head.headers()["content-type"], PROMETHEUS_TEXT_CONTENT_TYPE);
    /// assert_eq!(head.body().size_hint().exact(), Some(0), "HEAD: no body");
    /// ```
    pub fn new(metrics: Arc<IstioMetrics>) -> Self {
        MetricsEndpoint { metrics }
    }

    /// Answers one request (the logic of the service, usable from any framework).
    ///
    /// # Examples
    ///
    /// As an axum handler next to the application's routes:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use axum::routing::get;
    /// use axum::Router;
    /// use http_body_util::BodyExt;
    /// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .route("/metrics", get(move |req: axum::extract::Request| async move { endpoint.respond(&req) }));
    ///
    /// let req = http::Request::get("/metrics")
    ///     .header("accept", "application/openmetrics-text")
    ///     .body(axum::body::Body::empty())?;
    /// let resp = app.oneshot(req).await?;
    /// assert_eq!(resp.status(), 200);
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "# EOF\n");
    /// # Ok(()) }
    /// ```
    pub fn respond<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        if path != "/stats/prometheus" && path != "/metrics" {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let open = wants_openmetrics(req.headers());
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else if open {
            Bytes::from(self.metrics.render())
        } else {
            Bytes::from(self.metrics.render_prometheus())
        };
        let mut r = Response::new(Full::new(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if open {
                OPENMETRICS_CONTENT_TYPE
            } else {
                PROMETHEUS_TEXT_CONTENT_TYPE
            }),
        );
        r
    }
}

/// Whether `Accept` takes OpenMetrics: a media range `application/openmetrics-text` whose
/// `q` is not 0.
fn wants_openmetrics(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            parts
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("application/openmetrics-text"))
                && !parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
}

impl<B> Service<Request<B>> for MetricsEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.respond(&req)))
    }
}

/// Serves the exposition on `listener` (HTTP/1.1 and HTTP/2), as the sidecar's port 15090
/// does. Runs until dropped, and its connections with it; accept errors are logged and
/// retried, never fatal.
///
/// # Examples
///
/// Scraped over HTTP, as Prometheus would:
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use mesh_tower::metrics::{
///     serve_metrics, IstioMetrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?; // 15090 in a pod
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(serve_metrics(listener, Arc::clone(&metrics)));
///
/// let scraper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// let req = http::Request::get(format!("http://{addr}/stats/prometheus"))
///     .header("accept", "application/openmetrics-text; version=1.0.0")
///     .body(Empty::new())?;
/// let resp = scraper.request(req).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "# EOF\n");
///
/// // `curl` and other agents get the classic text format, as Envoy serves it
/// let resp = scraper.get(format!("http://{addr}/stats/prometheus").parse()?).await?;
/// assert_eq!(resp.headers()["content-type"], PROMETHEUS_TEXT_CONTENT_TYPE);
/// server.abort();
/// # Ok(()) }
/// ```
pub async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<IstioMetrics>) {
    let endpoint = MetricsEndpoint::new(metrics);
    // the connections' tasks, closed with this future (a scraper's keep-alive connection
    // does not outlive it)
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let svc = hyper_util::service::TowerToHyperService::new(endpoint.clone());
        conns.spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn accept_negotiation() {
        let wants = |accept: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ACCEPT, accept.parse().unwrap());
            wants_openmetrics(&h)
        };
        assert!(wants(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(wants("Application/OpenMetrics-Text"));
        assert!(!wants("*/*"));
        assert!(!wants("text/plain;version=0.0.4"));
        assert!(!wants("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(&http::HeaderMap::new()));
    }

    #[tokio::test]
    async fn dropping_the_endpoint_closes_its_connections() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(serve_metrics(listener, Arc::new(IstioMetrics::new())));
        // a scraper's keep-alive connection, idle after its answer
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        assert!(conn.read(&mut buf).await.unwrap() > 0);
        serving.abort();
        let _ = serving.await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut rest),
        )
        .await;
        assert!(read.is_ok(), "the connection outlived the endpoint");
    }

    #[tokio::test]
    async fn endpoint_paths_and_methods() {
        let ep = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
        let cases = [
            (Method::GET, "/stats/prometheus", 200),
            (Method::GET, "/metrics", 200),
            (Method::HEAD, "/metrics", 200),
            (Method::GET, "/other", 404),
            (Method::POST, "/metrics", 405),
        ];
        for (method, path, status) in cases {
            let req = Request::builder()
                .method(method.clone())
                .uri(path)
                .body(())
                .unwrap();
            let resp = ep.clone().call(req).await.unwrap();
            assert_eq!(resp.status(), status, "{method} {path}");
            if status == 200 {
                assert_eq!(resp.headers()[CONTENT_TYPE], PROMETHEUS_TEXT_CONTENT_TYPE);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                // Nothing recorded yet: an empty exposition.
                assert!(body.is_empty());
            }
        }
    }
}
