//! MeshConfig `accessLogEncoding: JSON` and `accessLogFormat`: the access-log line as
//! Istio's default JSON object (pilot `EnvoyJSONLogFormatIstio`: the fields of the default
//! TEXT format, numbers as numbers, `null` for values not known), and custom TEXT and JSON
//! formats, parsed back from real requests through the ingress gateway and an access-log
//! layer.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tower::accesslog::{set_default_format, AccessLogLayer, LogFormat, TARGET};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::observe::CountingBody;
use serde_json::Value;
use tokio::net::TcpListener;
use tower::{service_fn, Layer as _, ServiceExt};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The messages of access-log events.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Message<'a>(&'a mut Option<String>);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut m = None;
        event.record(&mut Message(&mut m));
        self.0.lock().unwrap().extend(m);
    }
}

impl Capture {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn json(&self) -> Vec<serde_json::Map<String, Value>> {
        self.lines()
            .iter()
            .map(|l| match serde_json::from_str(l) {
                Ok(Value::Object(m)) => m,
                other => panic!("not a JSON object: {l}: {other:?}"),
            })
            .collect()
    }
}

async fn backend() -> SocketAddr {
    let app = Router::new().fallback(|| async { "hello" });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

const ISTIO_JSON_KEYS: [&str; 24] = [
    "authority",
    "bytes_received",
    "bytes_sent",
    "connection_termination_details",
    "downstream_local_address",
    "downstream_remote_address",
    "duration",
    "method",
    "path",
    "protocol",
    "request_id",
    "requested_server_name",
    "response_code",
    "response_code_details",
    "response_flags",
    "route_name",
    "start_time",
    "upstream_cluster",
    "upstream_host",
    "upstream_local_address",
    "upstream_service_time",
    "upstream_transport_failure_reason",
    "user_agent",
    "x_forwarded_for",
];

/// The only test here that changes the process-wide format (the others set their own).
#[tokio::test(flavor = "current_thread")]
async fn gateway_writes_istio_default_json_from_mesh_config() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config =
        MeshConfig::from_yaml("accessLogFile: /dev/stdout\naccessLogEncoding: JSON").unwrap();
    set_default_format(LogFormat::from_mesh_config(&config).unwrap());

    let backend = backend().await;
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/gw]
  http:
  - name: api-route
    route: [{{destination: {{host: api, port: {{number: 8080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        backend.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh, "istio-system", labels)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    for host in ["api.example.com", "nowhere.example.com"] {
        let req = http::Request::get(format!("http://{addr}/items?x=1"))
            .header("host", host)
            .header("user-agent", "curl/8.5.0")
            .header("x-request-id", "4f2a8c1e")
            .body(Empty::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
    }
    // the entries are written when the response bodies end, on the gateway's tasks
    for _ in 0..100 {
        if capture.lines().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    set_default_format(LogFormat::text());

    let logs = capture.json();
    assert_eq!(logs.len(), 2, "{:?}", capture.lines());
    let ok = &logs[0];
    let keys: BTreeSet<&str> = ok.keys().map(String::as_str).collect();
    assert_eq!(keys, ISTIO_JSON_KEYS.into_iter().collect());
    assert_eq!(ok["response_code"], 200, "a number");
    assert_eq!(ok["bytes_sent"], 5);
    assert_eq!(ok["bytes_received"], 0);
    assert!(ok["duration"].is_u64(), "{ok:?}");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/items?x=1");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["authority"], "api.example.com");
    assert_eq!(ok["user_agent"], "curl/8.5.0");
    // the gateway replaced the client's id (Envoy without `preserve_external_request_id`)
    // and logs the one the request went on with
    let id = ok["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_ne!(id, "4f2a8c1e");
    assert_ne!(logs[1]["request_id"], ok["request_id"]);
    assert_eq!(ok["response_flags"], "-");
    assert_eq!(ok["response_code_details"], "via_upstream");
    assert_eq!(ok["upstream_host"], backend.to_string());
    assert_eq!(
        ok["upstream_cluster"],
        "outbound|8080||api.default.svc.cluster.local"
    );
    assert_eq!(ok["route_name"], "api-route");
    assert_eq!(ok["downstream_local_address"], addr.to_string());
    assert!(ok["downstream_remote_address"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));
    assert!(ok["start_time"].as_str().is_some_and(|t| t.ends_with('Z')));
    // the gateway's connection manager appended its peer before the log read it
    assert_eq!(ok["x_forwarded_for"], "127.0.0.1");
    for k in [
        "connection_termination_details",
        "requested_server_name",
        "upstream_transport_failure_reason",
        "upstream_local_address",
    ] {
        assert_eq!(ok[k], Value::Null, "{k}");
    }

    // no route: the gateway's own 404, no upstream
    let nr = &logs[1];
    assert_eq!(nr["response_code"], 404);
    assert_eq!(nr["response_flags"], "NR");
    assert_eq!(nr["response_code_details"], "route_not_found");
    assert_eq!(nr["upstream_host"], Value::Null);
    assert_eq!(nr["upstream_cluster"], Value::Null);
}

type Body = Full<Bytes>;

async fn one_request(format: LogFormat, capture: &Capture) {
    let app = service_fn(|_req: http::Request<CountingBody<Body>>| async {
        let mut resp = http::Response::new(Full::new(Bytes::from("{\"ok\":true}")));
        *resp.status_mut() = http::StatusCode::CREATED;
        resp.headers_mut()
            .insert("x-envoy-upstream-service-time", "7".parse().unwrap());
        resp.headers_mut()
            .insert("x-version", "v2".parse().unwrap());
        Ok::<_, Infallible>(resp)
    });
    let svc = AccessLogLayer::outbound().with_format(format).layer(app);
    let req = http::Request::post("http://reviews:9080/reviews/0?x=1")
        .header("x-user", "jason")
        .header("x-request-id", "abc")
        .body(Full::new(Bytes::from("12345")))
        .unwrap();
    svc.oneshot(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert!(!capture.lines().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn custom_text_format_from_mesh_config() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config = MeshConfig::from_yaml(
        r#"accessLogFormat: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESP(X-VERSION)% user=%REQ(X-USER)% %REQ(X-ABSENT)% %REQ(X-REQUEST-ID):2% %BYTES_RECEIVED%/%BYTES_SENT% 100%% %START_TIME(%Y)%\n""#,
    )
    .unwrap();
    one_request(LogFormat::from_mesh_config(&config).unwrap(), &capture).await;
    let line = &capture.lines()[0];
    let year = line.rsplit(' ').next().unwrap();
    assert_eq!(year.len(), 4, "{line}");
    assert_eq!(
        line.strip_suffix(year).unwrap(),
        "POST /reviews/0?x=1 201 v2 user=jason - ab 5/11 100% "
    );
}

#[tokio::test(flavor = "current_thread")]
async fn custom_json_format_keeps_types() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config = MeshConfig::from_yaml(
        r#"
accessLogEncoding: JSON
accessLogFormat: |
  {"code": "%RESPONSE_CODE%", "user": "%REQ(x-user)%", "missing": "%REQ(x-absent)%",
   "line": "%REQ(:METHOD)% %RESPONSE_CODE% %REQ(x-absent)%", "svc": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
   "short": "%REQ(X-USER):3%", "fixed": 1, "cluster": "%UPSTREAM_CLUSTER%"}
"#,
    )
    .unwrap();
    one_request(LogFormat::from_mesh_config(&config).unwrap(), &capture).await;
    let log = &capture.json()[0];
    assert_eq!(log["code"], 201);
    assert_eq!(log["user"], "jason");
    assert_eq!(log["missing"], Value::Null);
    assert_eq!(log["line"], "POST 201 -", "text inside a longer value");
    assert_eq!(log["svc"], "7");
    assert_eq!(log["short"], "jas");
    assert_eq!(log["fixed"], 1);
    assert_eq!(log["cluster"], Value::Null);
    assert_eq!(log.len(), 8);

    // not a JSON object: istiod falls back to the default JSON format
    let config = MeshConfig::from_yaml("accessLogEncoding: JSON\naccessLogFormat: '%DURATION%'");
    let config = config.unwrap();
    assert!(LogFormat::from_mesh_config(&config)
        .unwrap()
        .is_istio_default());
}

#[tokio::test(flavor = "current_thread")]
async fn requested_server_name_is_the_connections_sni() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    for format in [LogFormat::text(), LogFormat::json()] {
        let app = service_fn(|_req: http::Request<CountingBody<Body>>| async {
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        });
        let svc = AccessLogLayer::inbound().with_format(format).layer(app);
        let mut req = http::Request::get("/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut().insert(
            mesh_tower::inbound::ConnectionInfo::new(None, 443)
                .with_tls(true, Some("bookinfo.example.com")),
        );
        let resp = svc.oneshot(req).await.unwrap();
        resp.into_body().collect().await.unwrap();
    }
    let lines = capture.lines();
    assert!(
        // the server side's route is Envoy's inbound `default`
        lines[0].ends_with(" - - bookinfo.example.com default"),
        "TEXT: {}",
        lines[0]
    );
    let json: serde_json::Map<String, Value> = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(json["requested_server_name"], "bookinfo.example.com");
}

/// A mesh built from a MeshConfig with `accessLogEncoding: JSON`: its servers write JSON
/// without any process-wide setting.
#[tokio::test(flavor = "current_thread")]
async fn mesh_server_takes_the_format_of_its_mesh_config() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let config = MeshConfig::from_yaml("accessLogEncoding: JSON").unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    let ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
    let id = mesh_tls::Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds = mesh_tls::WorkloadCredentials::new(
        ca.issue(&id, std::time::Duration::from_secs(3600), &[])
            .unwrap(),
    )
    .unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = mesh_tower::inbound::MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { server.serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{addr}/status/200"))
        .header("host", "httpbin.foo:8000")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    resp.into_body().collect().await.unwrap();
    for _ in 0..100 {
        if !capture.lines().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let logs = capture.json();
    assert_eq!(logs.len(), 1, "{:?}", capture.lines());
    assert_eq!(logs[0]["path"], "/status/200");
    assert_eq!(logs[0]["response_code"], 200);
}

/// Envoy's `%GRPC_STATUS%` forms (the trailers' status of a gRPC call, none for other
/// requests), Istio's `%REQ_WITHOUT_QUERY(...)%` and `%UPSTREAM_CLUSTER_RAW%`; Envoy's
/// operators this log does not write are `-`, the rest of the format kept (an operator
/// Envoy does not know is still an error).
#[tokio::test(flavor = "current_thread")]
async fn grpc_status_and_operators_not_written() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let format = LogFormat::text_format(
        "%GRPC_STATUS% %GRPC_STATUS(SNAKE_STRING)% %GRPC_STATUS_NUMBER% %REQ_WITHOUT_QUERY(:PATH)% \
         %UPSTREAM_CLUSTER_RAW% %RESPONSE_DURATION% %CEL(request.path)% %RESPONSE_CODE%",
    )
    .unwrap();
    assert_eq!(format.operators_not_written(), ["RESPONSE_DURATION", "CEL"]);
    assert!(LogFormat::text_format("%GRPC_STATUS(LOUD)%").is_err());
    assert!(LogFormat::text_format("%NOT_AN_ENVOY_OPERATOR%").is_err());
    let app = service_fn(|_req: http::Request<CountingBody<Body>>| async {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let body = Full::new(Bytes::from_static(b"\0\0\0\0\0"))
            .with_trailers(async move { Some(Ok(trailers)) });
        Ok::<_, Infallible>(http::Response::new(body))
    });
    let svc = AccessLogLayer::outbound().with_format(format).layer(app);
    for content_type in ["application/grpc", "application/json"] {
        let req = http::Request::post("http://reviews:9080/pkg.Svc/Call?x=1")
            .header("content-type", content_type)
            .body(Full::new(Bytes::new()))
            .unwrap();
        svc.clone()
            .oneshot(req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap();
    }
    assert_eq!(
        capture.lines(),
        [
            "Unavailable UNAVAILABLE 14 /pkg.Svc/Call - - - 200",
            "- - - /pkg.Svc/Call - - - 200",
        ]
    );
}
