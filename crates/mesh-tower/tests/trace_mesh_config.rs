//! The trace headers a mesh client and a mesh server write follow MeshConfig's tracer, as
//! istiod configures Envoy's: none by default (Istio's default install since 1.22: only
//! `x-request-id`), B3 for a Zipkin tracer, W3C with an `opentelemetry` default provider,
//! both with Zipkin's `USE_B3_WITH_W3C_PROPAGATION`, and none with `enableTracing: false`.
//! With a tracer the server opens a span of its own (istiod sets Zipkin's
//! `shared_span_context: false`). Real loopback sockets: a mesh client calls a mesh server
//! whose application answers with the trace headers it got.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::load::load_str;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_core::registry::Workload;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
";

const TRACE_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-request-id",
];

/// The trace header names the application behind a mesh server receives from a mesh
/// client, both built on a mesh with `mesh_config`, for a request carrying `sent`.
async fn seen_by_app(mesh_config: &str, sent: &[(&str, &str)]) -> Vec<String> {
    headers_seen_by_app(mesh_config, sent)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// [`seen_by_app`], with the values.
async fn headers_seen_by_app(mesh_config: &str, sent: &[(&str, &str)]) -> Vec<(String, String)> {
    let config = MeshConfig::from_yaml(mesh_config).unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    mesh.reload_loaded(load_str(SERVICE, "service.yaml"))
        .unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|h: http::HeaderMap| async move {
        TRACE_HEADERS
            .iter()
            .filter_map(|n| Some(format!("{n}={}", h.get(*n)?.to_str().ok()?)))
            .collect::<Vec<_>>()
            .join(",")
    });
    tokio::spawn(async move { server.serve(listener, app).await });
    mesh.register(Workload {
        name: "httpbin-v1".to_string(),
        namespace: "foo".to_string(),
        service_account: "httpbin".to_string(),
        labels: [("app".to_string(), "httpbin".to_string())].into(),
        address: addr.ip(),
        ports: [("http".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    // no credentials: plaintext to the PERMISSIVE server
    let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep")).build();
    let mut req = http::Request::get("http://httpbin.foo:8000/headers");
    for (k, v) in sent {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec())
        .unwrap()
        .split(',')
        .filter_map(|s| s.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What the application sees with a B3 tracer: the client's span is its server span's
/// parent.
const B3_HEADERS: [&str; 5] = [
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-request-id",
];

const ZIPKIN: &str = "
defaultConfig:
  tracing:
    sampling: 100
    zipkin: {address: zipkin.istio-system:9411}
";

#[tokio::test]
async fn istios_default_install_has_no_tracer_and_zipkin_propagates_b3() {
    // no tracing settings at all: Istio 1.22 removed the default Zipkin tracer
    assert_eq!(
        seen_by_app("rootNamespace: istio-system", &[]).await,
        ["x-request-id"]
    );
    assert_eq!(
        seen_by_app("defaultConfig: {tracing: {}}", &[]).await,
        ["x-request-id"]
    );
    // a Zipkin tracer named
    assert_eq!(seen_by_app(ZIPKIN, &[]).await, B3_HEADERS);
}

#[tokio::test]
async fn a_b3_tracer_opens_server_spans_and_leaves_w3c_alone() {
    let get = |h: &[(String, String)], k: &str| {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // the application's outbound request carries a traceparent only: Envoy's Zipkin tracer
    // (USE_B3) does not read it, starts a trace of its own, and passes it on untouched
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let h = headers_seen_by_app(ZIPKIN, &[("traceparent", tp)]).await;
    assert_eq!(get(&h, "traceparent"), tp);
    assert_ne!(get(&h, "x-b3-traceid"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(get(&h, "x-b3-traceid").len(), 32);
    // B3 sent by the application: the client opens a child span, the server one more;
    // the application sees the server's span, whose parent is the client's
    let h = headers_seen_by_app(
        ZIPKIN,
        &[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    assert_eq!(get(&h, "x-b3-traceid"), "80f198ee56343ba864fe8b2a57d3eff7");
    let (span, parent) = (get(&h, "x-b3-spanid"), get(&h, "x-b3-parentspanid"));
    assert!(
        span != "e457b5a2e4d86bd1" && parent != "e457b5a2e4d86bd1",
        "{h:?}"
    );
    assert_ne!(span, parent);
    assert_eq!(get(&h, "x-b3-sampled"), "1");
}

#[tokio::test]
async fn an_opentelemetry_default_provider_propagates_w3c() {
    let otel = "
defaultProviders: {tracing: [otel]}
extensionProviders:
- name: otel
  opentelemetry: {service: opentelemetry-collector.observability.svc.cluster.local, port: 4317}
";
    assert_eq!(
        seen_by_app(otel, &[]).await,
        ["traceparent", "x-request-id"]
    );
    // a tracer named by defaultProviders traces even with enableTracing off (a Telemetry-API
    // tracer, as istiod configures it)
    let otel_off = format!("enableTracing: false\n{otel}");
    assert_eq!(
        seen_by_app(&otel_off, &[]).await,
        ["traceparent", "x-request-id"]
    );
}

#[tokio::test]
async fn zipkin_with_w3c_propagation_writes_both() {
    let both = "
defaultProviders: {tracing: [zipkin]}
extensionProviders:
- name: zipkin
  zipkin:
    service: zipkin.istio-system.svc.cluster.local
    port: 9411
    traceContextOption: USE_B3_WITH_W3C_PROPAGATION
";
    assert_eq!(
        seen_by_app(both, &[]).await,
        [
            "traceparent",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "x-request-id"
        ]
    );
}

#[tokio::test]
async fn tracing_off_leaves_trace_headers_alone_and_adds_only_a_request_id() {
    assert_eq!(
        seen_by_app("enableTracing: false", &[]).await,
        ["x-request-id"]
    );
    // what the application sent goes through as it was
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        seen_by_app("enableTracing: false", &[("traceparent", tp)]).await,
        ["traceparent", "x-request-id"]
    );
    // a default provider no extensionProviders entry defines: istiod finds no tracer
    assert_eq!(
        seen_by_app("defaultProviders: {tracing: [missing]}", &[]).await,
        ["x-request-id"]
    );
}
