//! Istio's telemetry rules checked end to end on loopback against a `MeshServer` (and the
//! metrics and trace layers over real hyper clients): the labels istio_stats.cc renders for
//! unknown peers, clusters, the Host fallback of a server that names no service, principals
//! on plaintext, ext_authz's `UAEX`, a caller gone before (or during) the response (`DC`),
//! the gRPC status inferred from the HTTP status, and how B3 is read and written.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{
    client_config, Alpn, ClientContext, ClientTlsMode, ClientTlsSettings, Destination, Identity,
    MeshCa, WorkloadCredentials,
};
use mesh_tower::inbound::MeshServer;
use mesh_tower::metrics::{IstioMetrics, MetricsLayer, RequestBody, WorkloadInfo};
use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt};

const HOST: &str = "httpbin.foo:8000";

fn creds(ca: &MeshCa, ns: &str, sa: &str) -> Arc<WorkloadCredentials> {
    let id = Identity::new("cluster.local", ns, sa).unwrap();
    WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
}

/// A body that sends one chunk and then never ends.
struct Endless(bool);

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 {
            return Poll::Pending;
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first chunk")))))
    }
}

fn app() -> Router {
    use axum::routing::get;
    let grpc = |status: u16| {
        Response::builder()
            .status(status)
            .header("content-type", "application/grpc")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/stream",
            get(|| async { Response::new(axum::body::Body::new(Endless(false))) }),
        )
        .route(
            "/status/503",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") }),
        )
        // a gRPC service answering without grpc-status: a plain 503, a 200
        .route(
            "/pkg.Svc/Unavailable",
            axum::routing::post(move || async move { grpc(503) }),
        )
        .route(
            "/pkg.Svc/NoStatus",
            axum::routing::post(move || async move { grpc(200) }),
        )
        .route(
            "/trace",
            get(|req: Request<axum::body::Body>| async move {
                let ctx = req.extensions().get::<TraceContext>().unwrap();
                format!("{} {:016x}", ctx.trace_id_hex(), ctx.span_id)
            }),
        )
}

/// httpbin in `foo`, no service host, serving `app()`; `cluster` sets its cluster id.
async fn httpbin(ca: &MeshCa, cluster: Option<&str>) -> (SocketAddr, Arc<IstioMetrics>) {
    let labels = [
        ("app".to_string(), "httpbin".to_string()),
        ("version".to_string(), "v1".to_string()),
    ]
    .into();
    let mut builder = MeshServer::builder(
        Mesh::new(Default::default()),
        "foo",
        "httpbin",
        labels,
        creds(ca, "foo", "httpbin"),
    )
    // a Zipkin tracer with W3C propagation, sharing the caller's span (Envoy's own
    // default), so the application's context is the caller's
    .trace(TraceConfig {
        formats: mesh_tower::trace::Formats {
            w3c: true,
            ..mesh_tower::trace::Formats::B3
        },
        shared_span_context: true,
        ..TraceConfig::default()
    });
    if let Some(c) = cluster {
        builder = builder.cluster_id(c);
    }
    let server = builder.build().unwrap();
    let metrics = Arc::clone(server.metrics());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app()).await });
    (addr, metrics)
}

type Resp = (StatusCode, Bytes);

async fn send<IO>(io: IO, req: Request<Full<Bytes>>) -> Resp
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn plain(addr: SocketAddr, req: Request<Full<Bytes>>) -> Resp {
    send(TokioIo::new(TcpStream::connect(addr).await.unwrap()), req).await
}

/// One request over mutual TLS as `client`.
async fn mtls(addr: SocketAddr, client: &WorkloadCredentials, req: Request<Full<Bytes>>) -> Resp {
    let tls = client_config(
        &ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        },
        &Destination {
            host: "httpbin.foo.svc.cluster.local",
            port: 8000,
            subset: None,
            service_accounts: &[Identity::new("cluster.local", "foo", "httpbin").unwrap()],
        },
        &ClientContext {
            workload: Some(client),
            credentials: None,
            alpn: Alpn::Http1,
            opaque: false,
        },
    )
    .unwrap()
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tls.connect(tcp).await.unwrap();
    send(TokioIo::new(stream), req).await
}

fn req(method: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn grpc_req(path: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", HOST)
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap()
}

/// `istio_requests_total` series as label maps with their counts.
fn requests(metrics: &IstioMetrics) -> Vec<(BTreeMap<String, String>, u64)> {
    let text = metrics.render();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("istio_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").unwrap();
            let end = after.find('"').unwrap();
            map.insert(k.to_string(), after[..end].to_string());
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.push((map, value.parse().unwrap()));
    }
    out
}

/// The one series whose labels include `want`, waiting for it to be recorded (a request is
/// recorded when its response body ends, which may be just after the client read it).
async fn series(metrics: &IstioMetrics, want: &[(&str, &str)]) -> BTreeMap<String, String> {
    for _ in 0..200 {
        let found: Vec<_> = requests(metrics)
            .into_iter()
            .filter(|(l, _)| {
                want.iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        if let [(labels, _)] = found.as_slice() {
            return labels.clone();
        }
        assert!(found.len() <= 1, "several series match {want:?}: {found:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no series with {want:?} in\n{}", metrics.render());
}

fn assert_labels(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            labels.get(*k).map(String::as_str),
            Some(*v),
            "{k} in {labels:?}"
        );
    }
}

/// istio_stats' server side: an unknown caller's revision is `latest`, its cluster
/// `unknown`; the server's cluster is `Kubernetes`; without service metadata the service is
/// the Host header (whole, as name too) in the server's namespace; principals only on mTLS.
#[tokio::test]
async fn server_labels_for_plaintext_and_mtls_callers() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, metrics) = httpbin(&ca, None).await;

    assert_eq!(plain(addr, req("GET", "/ok")).await.0, StatusCode::OK);
    let l = series(&metrics, &[("connection_security_policy", "none")]).await;
    assert_labels(
        &l,
        &[
            ("reporter", "destination"),
            ("source_workload", "unknown"),
            ("source_canonical_revision", "latest"),
            ("source_principal", "unknown"),
            ("source_cluster", "unknown"),
            ("destination_workload", "httpbin"),
            ("destination_principal", "unknown"),
            ("destination_app", "httpbin"),
            ("destination_version", "v1"),
            ("destination_canonical_revision", "v1"),
            ("destination_cluster", "Kubernetes"),
            ("destination_service", HOST),
            ("destination_service_name", HOST),
            ("destination_service_namespace", "foo"),
        ],
    );

    let sleep = creds(&ca, "bar", "sleep");
    assert_eq!(
        mtls(addr, &sleep, req("GET", "/ok")).await.0,
        StatusCode::OK
    );
    let l = series(&metrics, &[("connection_security_policy", "mutual_tls")]).await;
    assert_labels(
        &l,
        &[
            ("source_principal", "spiffe://cluster.local/ns/bar/sa/sleep"),
            ("source_workload_namespace", "bar"),
            ("source_canonical_revision", "latest"),
            // known by its certificate in this mesh: in this cluster
            ("source_cluster", "Kubernetes"),
            (
                "destination_principal",
                "spiffe://cluster.local/ns/foo/sa/httpbin",
            ),
            ("destination_cluster", "Kubernetes"),
            // the server's own namespace, not the caller's
            ("destination_service_namespace", "foo"),
        ],
    );
}

/// A cluster id set on the server is its `destination_cluster` and the `source_cluster` of
/// callers in the mesh.
#[tokio::test]
async fn cluster_id_is_reported_for_the_server_and_mesh_callers() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, metrics) = httpbin(&ca, Some("east")).await;
    plain(addr, req("GET", "/ok")).await;
    mtls(addr, &creds(&ca, "foo", "sleep"), req("GET", "/ok")).await;
    let l = series(&metrics, &[("connection_security_policy", "none")]).await;
    assert_labels(
        &l,
        &[
            ("source_cluster", "unknown"),
            ("destination_cluster", "east"),
        ],
    );
    let l = series(&metrics, &[("connection_security_policy", "mutual_tls")]).await;
    assert_labels(
        &l,
        &[("source_cluster", "east"), ("destination_cluster", "east")],
    );
}

/// istio_stats' client side: an unknown destination's revision is `latest`, its service,
/// namespace and cluster `unknown`; the client's own principal is `unknown` on plaintext,
/// its cluster `Kubernetes`, a label it lacks empty.
#[tokio::test]
async fn client_labels_for_an_unknown_destination() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let svc = tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
        });
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = TowerToHyperService::new(svc);
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let metrics = Arc::new(IstioMetrics::new());
    let me = WorkloadInfo::from_labels(
        "sleep",
        "foo",
        "spiffe://cluster.local/ns/foo/sa/sleep",
        &[("app".to_string(), "sleep".to_string())].into(),
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<RequestBody<Full<Bytes>>>();
    let svc = MetricsLayer::outbound(Arc::clone(&metrics), me).layer(client);
    let resp = svc
        .oneshot(
            Request::get(format!("http://{addr}/ok"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    let l = series(&metrics, &[("reporter", "source")]).await;
    assert_labels(
        &l,
        &[
            ("source_workload", "sleep"),
            // the reporter's own labels as they are (istio_stats: the node's LABELS), a
            // missing one empty; the peer's missing ones `unknown`
            ("source_app", "sleep"),
            ("source_version", ""),
            ("destination_app", "unknown"),
            ("destination_version", "unknown"),
            ("source_principal", "unknown"),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", "unknown"),
            ("destination_canonical_revision", "latest"),
            ("destination_service", "unknown"),
            ("destination_service_namespace", "unknown"),
            ("destination_cluster", "unknown"),
            ("connection_security_policy", "unknown"),
        ],
    );
}

/// A caller gone before the response: response code 0 and `DC`; gone in the middle of the
/// body: the response's code and `DC`. Complete responses, empty ones and HEAD carry no
/// flag.
#[tokio::test]
async fn a_caller_gone_before_or_during_the_response_is_dc() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, metrics) = httpbin(&ca, None).await;

    // complete answers: no flag
    assert_eq!(plain(addr, req("GET", "/ok")).await.0, StatusCode::OK);
    assert_eq!(
        plain(addr, req("GET", "/empty")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(plain(addr, req("HEAD", "/ok")).await.0, StatusCode::OK);
    for code in ["200", "204"] {
        let l = series(&metrics, &[("response_code", code)]).await;
        assert_labels(&l, &[("response_flags", "-")]);
    }

    // gone before the response
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /slow HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    let l = series(&metrics, &[("response_code", "0")]).await;
    assert_labels(&l, &[("response_flags", "DC")]);

    // gone in the middle of the body
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET /stream HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("first chunk") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    drop(tcp);
    let l = series(
        &metrics,
        &[("response_flags", "DC"), ("response_code", "200")],
    )
    .await;
    assert_labels(&l, &[("destination_workload", "httpbin")]);
}

/// A gRPC request answered without grpc-status: Envoy's getGrpcStatus infers it from the
/// HTTP status (503 → 14 UNAVAILABLE, 200 → 2 UNKNOWN); a plain HTTP request has none.
#[tokio::test]
async fn grpc_status_is_inferred_from_the_http_status() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, metrics) = httpbin(&ca, None).await;
    assert_eq!(
        plain(addr, grpc_req("/pkg.Svc/Unavailable")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    plain(addr, grpc_req("/pkg.Svc/NoStatus")).await;
    plain(addr, req("GET", "/status/503")).await;
    let l = series(
        &metrics,
        &[("request_protocol", "grpc"), ("response_code", "503")],
    )
    .await;
    assert_labels(&l, &[("grpc_response_status", "14")]);
    let l = series(
        &metrics,
        &[("request_protocol", "grpc"), ("response_code", "200")],
    )
    .await;
    assert_labels(&l, &[("grpc_response_status", "2")]);
    let l = series(
        &metrics,
        &[("request_protocol", "http"), ("response_code", "503")],
    )
    .await;
    assert_labels(&l, &[("grpc_response_status", "")]);
}

/// The MeshConfig of Istio's ext-authz task.
fn ext_authz_config() -> MeshConfig {
    MeshConfig::from_yaml(
        r#"
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    timeout: 500ms
    includeRequestHeadersInCheck: ["x-ext-authz"]
"#,
    )
    .unwrap()
}

fn ext_authz_policies(authz_port: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {authz_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: CUSTOM
  provider: {{name: sample-ext-authz-http}}
  rules: [{{to: [{{operation: {{paths: ["/headers"]}}}}]}}]
"#
    )
}

/// The sample authorizer: allows `x-ext-authz: allow`, fails with 500 for `broken`,
/// denies (403) the rest.
async fn authorizer() -> SocketAddr {
    let app = Router::new().fallback(|h: http::HeaderMap| async move {
        match h.get("x-ext-authz").and_then(|v| v.to_str().ok()) {
            Some("allow") => StatusCode::OK,
            Some("broken") => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// ext_authz's denials and fail-closed errors carry `UAEX` in the metrics.
#[tokio::test]
async fn ext_authz_denials_and_errors_are_uaex() {
    let authz = authorizer().await;
    let mesh = Mesh::with_mesh_config(&ext_authz_config());
    mesh.reload_loaded(mesh_core::load::load_str(
        &ext_authz_policies(authz.port()),
        "p.yaml",
    ))
    .unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds(&ca, "foo", "httpbin"))
        .build()
        .unwrap();
    let metrics = Arc::clone(server.metrics());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { server.serve(listener, app).await });

    let with = |verdict: &str| {
        Request::get("/headers")
            .header("host", HOST)
            .header("x-ext-authz", verdict)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(plain(addr, with("allow")).await.0, StatusCode::OK);
    assert_eq!(plain(addr, with("deny")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(plain(addr, with("broken")).await.0, StatusCode::FORBIDDEN);
    let l = series(&metrics, &[("response_code", "200")]).await;
    assert_labels(&l, &[("response_flags", "-")]);
    // the denial and the error: one series, counted twice
    let l = series(&metrics, &[("response_code", "403")]).await;
    assert_labels(&l, &[("response_flags", "UAEX")]);
    let count = requests(&metrics)
        .into_iter()
        .find(|(l, _)| l["response_code"] == "403")
        .unwrap()
        .1;
    assert_eq!(count, 2);
}

/// Echoes the B3 headers it received.
async fn echo_b3() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|h: http::HeaderMap| async move {
        let get = |n: &str| h.get(n).map_or("-", |v| v.to_str().unwrap()).to_owned();
        format!(
            "sampled={} flags={}",
            get("x-b3-sampled"),
            get("x-b3-flags")
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Envoy's Zipkin tracer writes a debug trace as `x-b3-sampled: 1`, never `x-b3-flags`.
#[tokio::test]
async fn a_debug_trace_is_written_as_sampled() {
    let addr = echo_b3().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let svc = PropagateTraceLayer::outbound(TraceConfig::default()).layer(client);
    let debug = TraceContext {
        debug: true,
        ..TraceContext::new_root(0.0, &mut rand::rng())
    };
    let mut r = Request::get(format!("http://{addr}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    r.extensions_mut().insert(debug);
    let resp = svc.oneshot(r).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "sampled=1 flags=-");
}

/// With both B3 and W3C headers, a server whose Zipkin tracer falls back to W3C
/// (`USE_B3_WITH_W3C_PROPAGATION`) reads B3; W3C alone is read too.
#[tokio::test]
async fn b3_wins_over_w3c_and_w3c_alone_is_read() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, _metrics) = httpbin(&ca, None).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let both = Request::get("/trace")
        .header("host", HOST)
        .header("traceparent", tp)
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = plain(addr, both).await;
    assert_eq!(body, "80f198ee56343ba864fe8b2a57d3eff7 e457b5a2e4d86bd1");
    let w3c = Request::get("/trace")
        .header("host", HOST)
        .header("traceparent", tp)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = plain(addr, w3c).await;
    assert_eq!(body, "4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7");
}
