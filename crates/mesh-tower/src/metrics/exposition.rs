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
/// let resp = endpoint.respond(&http::Request::get("/metrics").body(()).unwrap());
/// assert_eq!(resp.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
/// ```
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A Tower service answering `GET /stats/prometheus` and `GET /metrics` with the
/// exposition; other paths get 404, other methods 405.
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
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "# EOF\n");
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
    /// use mesh_tower::metrics::{IstioMetrics, MetricsEndpoint, OPENMETRICS_CONTENT_TYPE};
    ///
    /// let endpoint = MetricsEndpoint::new(Arc::new(IstioMetrics::new()));
    /// let head = endpoint.respond(&http::Request::head("/stats/prometheus").body(()).unwrap());
    /// assert_eq!(head.status(), 200);
    /// assert_eq!(head.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
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
    /// let resp = app.oneshot(http::Request::get("/metrics").body(axum::body::Body::empty())?).await?;
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
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(self.metrics.render())
        };
        let mut r = Response::new(Full::new(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        );
        r
    }
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
/// does. Runs until dropped; accept errors are logged and retried, never fatal.
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
/// use mesh_tower::metrics::{serve_metrics, IstioMetrics, OPENMETRICS_CONTENT_TYPE};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let metrics = Arc::new(IstioMetrics::new());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?; // 15090 in a pod
/// let addr = listener.local_addr()?;
/// let server = tokio::spawn(serve_metrics(listener, Arc::clone(&metrics)));
///
/// let scraper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
/// let resp = scraper.get(format!("http://{addr}/stats/prometheus").parse()?).await?;
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "# EOF\n");
/// server.abort();
/// # Ok(()) }
/// ```
pub async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<IstioMetrics>) {
    let endpoint = MetricsEndpoint::new(metrics);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let svc = hyper_util::service::TowerToHyperService::new(endpoint.clone());
        tokio::spawn(async move {
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
                assert_eq!(resp.headers()[CONTENT_TYPE], OPENMETRICS_CONTENT_TYPE);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                if method == Method::GET {
                    let text = String::from_utf8(body.to_vec()).unwrap();
                    // Nothing recorded yet: an empty, well-formed exposition.
                    assert_eq!(text, "# EOF\n");
                } else {
                    assert!(body.is_empty());
                }
            }
        }
    }
}
