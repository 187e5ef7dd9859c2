//! The metrics layer over real hyper servers and clients on loopback, and the exposition
//! scraped over HTTP and parsed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_tower::envoy::LocalReply;
use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// Serves `svc` on a loopback port (HTTP/1.1 and HTTP/2).
async fn serve<S, B>(svc: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The application: answers by path.
async fn app<B: http_body::Body>(req: Request<B>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let grpc = mesh_tower::envoy::is_grpc(req.headers());
    let body = req
        .into_body()
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let resp = match path.as_str() {
        "/denied" => LocalReply::RbacDenied.to_response_with(grpc, full),
        "/unhealthy" => LocalReply::NoHealthyUpstream.to_response_with(grpc, full),
        "/status/503" => {
            let mut r = Response::new(full("unavailable"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
        "/grpc.Service/Method" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "5".parse().unwrap());
            let body = Full::new(Bytes::from_static(b"\0\0\0\0\x03abc"))
                .with_trailers(async move { Some(Ok(trailers)) })
                .boxed();
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            r
        }
        _ => Response::new(full(format!("echo {} bytes", body.len()))),
    };
    Ok(resp)
}

fn sleep_identity() -> MetricsContext {
    MetricsContext {
        peer: Some(Arc::new(WorkloadInfo::from_principal(
            "spiffe://cluster.local/ns/foo/sa/sleep",
        ))),
        service: None,
        mutual_tls: Some(true),
    }
}

fn httpbin() -> WorkloadInfo {
    let labels: BTreeMap<String, String> = [("app", "httpbin"), ("version", "v1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    WorkloadInfo::from_labels(
        "httpbin",
        "foo",
        "spiffe://cluster.local/ns/foo/sa/httpbin",
        &labels,
    )
}

/// One parsed sample of the exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").expect("label");
            // Values are escaped; ours contain no quotes.
            let end = after.find('"').expect("value end");
            map.insert(k.to_string(), after[..end].to_string());
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.push(Sample {
            name: name.to_string(),
            labels: map,
            value: value.parse().expect("value"),
        });
    }
    out
}

fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

async fn scrape(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, String) {
    scrape_accepting(addr, path, "*/*").await
}

async fn scrape_accepting(
    addr: SocketAddr,
    path: &str,
    accept: &str,
) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("accept", accept)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

const ISTIO_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

#[tokio::test]
async fn inbound_metrics_scraped_and_parsed() {
    let metrics = Arc::new(IstioMetrics::new());
    let layer = MetricsLayer::inbound(Arc::clone(&metrics), httpbin())
        .with_default_service(ServiceInfo::from_host("httpbin.foo.svc.cluster.local"));
    let svc = ServiceBuilder::new()
        // What the inbound stack does: the peer identity from mTLS into the extensions.
        .map_request(|mut req: Request<hyper::body::Incoming>| {
            if req.headers().get("x-test-plaintext").is_none() {
                req.extensions_mut().insert(sleep_identity());
            }
            req
        })
        .layer(layer)
        .service_fn(app);
    let addr = serve(svc).await;
    // The sidecar-style metrics port.
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    tokio::spawn(mesh_tower::metrics::serve_metrics(
        metrics_listener,
        Arc::clone(&metrics),
    ));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: &str, path: &str, body: &'static [u8], plaintext: bool| {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if plaintext {
            b = b.header("x-test-plaintext", "1");
        }
        let req = b.body(Full::new(Bytes::from_static(body))).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    for _ in 0..3 {
        let (s, b) = send("GET", "/get", b"", false).await;
        assert_eq!(s, 200);
        assert_eq!(b.as_ref(), b"echo 0 bytes");
    }
    let big: &'static [u8] = Box::leak(vec![b'x'; 1234].into_boxed_slice());
    let (s, _) = send("POST", "/post", big, false).await;
    assert_eq!(s, 200);
    assert_eq!(send("GET", "/status/503", b"", false).await.0, 503);
    let (s, b) = send("GET", "/denied", b"", true).await;
    assert_eq!(
        (s.as_u16(), b.as_ref()),
        (403, b"RBAC: access denied".as_ref())
    );
    let (s, b) = send("GET", "/unhealthy", b"", false).await;
    assert_eq!(
        (s.as_u16(), b.as_ref()),
        (503, b"no healthy upstream".as_ref())
    );

    // gRPC over HTTP/2 with a grpc-status trailer.
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/grpc.Service/Method"))
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "5");

    let (status, headers, text) = scrape(metrics_addr, "/stats/prometheus").await;
    assert_eq!(status, 200);
    // the classic text format, as Envoy serves it to a scraper that does not ask for
    // OpenMetrics: counter families named with their `_total`, no `# EOF`
    assert_eq!(
        headers["content-type"],
        mesh_tower::metrics::PROMETHEUS_TEXT_CONTENT_TYPE
    );
    assert!(
        text.contains("# TYPE istio_requests_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    // OpenMetrics to a scraper that asks for it (Prometheus does), the same samples
    let (_, open_headers, open_text) = scrape_accepting(
        metrics_addr,
        "/stats/prometheus",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    assert_eq!(
        open_headers["content-type"],
        mesh_tower::metrics::OPENMETRICS_CONTENT_TYPE
    );
    assert!(
        open_text.contains("# TYPE istio_requests counter\n"),
        "{open_text}"
    );
    assert!(open_text.ends_with("# EOF\n"));
    let samples = parse_exposition(&text);
    assert_eq!(samples.len(), parse_exposition(&open_text).len());

    // the gRPC call's messages: one each way (an empty request message, "abc" back)
    for family in [
        "istio_request_messages_total",
        "istio_response_messages_total",
    ] {
        // only the gRPC call has them, with the peers' labels and not the request's own,
        // as istio_stats reports them
        let grpc = find(&samples, family, &[("reporter", "destination")]);
        assert_eq!(grpc.len(), 1, "{family} in {text}");
        assert_eq!(grpc[0].value, 1.0, "{family}");
        for absent in ["request_protocol", "response_code", "grpc_response_status"] {
            assert!(!grpc[0].labels.contains_key(absent), "{family}: {absent}");
        }
        assert_eq!(
            grpc[0].labels["source_principal"],
            "spiffe://cluster.local/ns/foo/sa/sleep"
        );
    }

    let ok = find(
        &samples,
        "istio_requests_total",
        &[("response_code", "200"), ("request_protocol", "http")],
    );
    assert_eq!(ok.len(), 1, "{text}");
    let ok = ok[0];
    assert_eq!(ok.value, 4.0);
    let label_names: Vec<&str> = ok.labels.keys().map(String::as_str).collect();
    let mut want_names = ISTIO_LABELS.to_vec();
    want_names.sort();
    assert_eq!(label_names, want_names);
    for (k, v) in [
        ("reporter", "destination"),
        ("source_principal", "spiffe://cluster.local/ns/foo/sa/sleep"),
        ("source_workload_namespace", "foo"),
        ("destination_workload", "httpbin"),
        ("destination_workload_namespace", "foo"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/foo/sa/httpbin",
        ),
        ("destination_app", "httpbin"),
        ("destination_version", "v1"),
        ("destination_service", "httpbin.foo.svc.cluster.local"),
        ("destination_service_name", "httpbin"),
        ("destination_service_namespace", "foo"),
        ("response_flags", "-"),
        ("grpc_response_status", ""),
        ("connection_security_policy", "mutual_tls"),
    ] {
        assert_eq!(ok.labels[k], v, "{k}");
    }

    let unavailable = find(
        &samples,
        "istio_requests_total",
        &[("response_code", "503"), ("response_flags", "-")],
    );
    assert_eq!(unavailable.len(), 1);
    assert_eq!(unavailable[0].value, 1.0);
    let uh = find(
        &samples,
        "istio_requests_total",
        &[("response_code", "503"), ("response_flags", "UH")],
    );
    assert_eq!(uh.len(), 1, "{text}");
    // The plaintext request has no principal and no mTLS.
    let denied = find(
        &samples,
        "istio_requests_total",
        &[("response_code", "403")],
    );
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].labels["source_principal"], "unknown");
    assert_eq!(denied[0].labels["connection_security_policy"], "none");
    let grpc = find(
        &samples,
        "istio_requests_total",
        &[
            ("request_protocol", "grpc"),
            ("grpc_response_status", "5"),
            ("response_code", "200"),
        ],
    );
    assert_eq!(grpc.len(), 1, "{text}");

    // Histograms: counts, sums and the +Inf bucket agree; the POST body is counted.
    let count = find(
        &samples,
        "istio_request_bytes_count",
        &[("response_code", "200"), ("request_protocol", "http")],
    );
    assert_eq!(count[0].value, 4.0);
    let sum = find(
        &samples,
        "istio_request_bytes_sum",
        &[("response_code", "200"), ("request_protocol", "http")],
    );
    // the bodies (1234 bytes) and the four request heads, as istio_stats counts wire bytes
    assert!(
        sum[0].value > 1234.0 + 4.0 * 16.0 && sum[0].value < 1234.0 + 4.0 * 300.0,
        "{}",
        sum[0].value
    );
    let resp_sum = find(
        &samples,
        "istio_response_bytes_sum",
        &[("response_code", "403")],
    );
    let body = "RBAC: access denied".len() as f64;
    assert!(
        resp_sum[0].value > body + 19.0 && resp_sum[0].value < body + 400.0,
        "{}",
        resp_sum[0].value
    );
    let inf = find(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[
            ("response_code", "200"),
            ("request_protocol", "http"),
            ("le", "+Inf"),
        ],
    );
    assert_eq!(inf[0].value, 4.0);
    let buckets = find(
        &samples,
        "istio_request_duration_milliseconds_bucket",
        &[("response_code", "200"), ("request_protocol", "http")],
    );
    assert_eq!(buckets.len(), 20, "19 Envoy buckets + +Inf");
    let dur_sum = find(
        &samples,
        "istio_request_duration_milliseconds_sum",
        &[("response_code", "200"), ("request_protocol", "http")],
    );
    // whole milliseconds, as istio_stats records them (a loopback request may take 0)
    assert!(dur_sum[0].value >= 0.0 && dur_sum[0].value < 10_000.0);
    assert_eq!(dur_sum[0].value.fract(), 0.0);

    // /metrics serves the same; unknown paths 404.
    assert_eq!(scrape(metrics_addr, "/metrics").await.0, 200);
    assert_eq!(scrape(metrics_addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn outbound_metrics_take_destination_from_response() {
    let upstream = serve(ServiceBuilder::new().service_fn(app)).await;
    let metrics = Arc::new(IstioMetrics::new());
    let me = WorkloadInfo::from_labels(
        "sleep",
        "foo",
        "spiffe://cluster.local/ns/foo/sa/sleep",
        &[("app".to_string(), "sleep".to_string())]
            .into_iter()
            .collect(),
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut svc = ServiceBuilder::new()
        .layer(MetricsLayer::outbound(Arc::clone(&metrics), me))
        // What the outbound stack does once it has picked the endpoint.
        .map_response(|mut resp: Response<hyper::body::Incoming>| {
            resp.extensions_mut().insert(MetricsContext {
                peer: Some(Arc::new(httpbin())),
                service: Some(Arc::new(ServiceInfo::from_host(
                    "httpbin.foo.svc.cluster.local",
                ))),
                mutual_tls: None,
            });
            resp
        })
        .service_fn(
            move |req: Request<mesh_tower::metrics::RequestBody<Full<Bytes>>>| {
                let client = client.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    client
                        .request(Request::from_parts(parts, body.into_inner()))
                        .await
                }
            },
        );
    for _ in 0..2 {
        let req = Request::get(format!("http://{upstream}/get"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = svc.ready().await.unwrap().call(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
    let samples = parse_exposition(&metrics.render());
    let s = find(&samples, "istio_requests_total", &[("reporter", "source")]);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].value, 2.0);
    for (k, v) in [
        ("source_workload", "sleep"),
        ("source_app", "sleep"),
        ("source_canonical_revision", "latest"),
        ("destination_workload", "httpbin"),
        ("destination_service", "httpbin.foo.svc.cluster.local"),
        ("connection_security_policy", "unknown"),
        ("response_code", "200"),
    ] {
        assert_eq!(s[0].labels[k], v, "{k}");
    }
    let bytes = find(
        &samples,
        "istio_response_bytes_sum",
        &[("reporter", "source")],
    );
    // two answers: their bodies and heads
    let body = 2.0 * "echo 0 bytes".len() as f64;
    assert!(
        bytes[0].value > body + 2.0 * 19.0 && bytes[0].value < body + 2.0 * 400.0,
        "{}",
        bytes[0].value
    );
}
