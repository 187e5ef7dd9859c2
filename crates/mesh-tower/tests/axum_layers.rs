//! The observing layers used the way an axum user would: `.layer(...)` on a `Router`,
//! served by `axum::serve` on loopback.

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_tower::accesslog::AccessLogLayer;
use mesh_tower::metrics::{IstioMetrics, MetricsLayer, ServiceInfo, WorkloadInfo};
use mesh_tower::trace::{PropagateTraceLayer, TraceConfig, TraceContext};
use tokio::net::TcpListener;

#[tokio::test]
async fn axum_router_with_mesh_layers() {
    let metrics = Arc::new(IstioMetrics::new());
    let me = WorkloadInfo::from_labels(
        "httpbin",
        "foo",
        "spiffe://cluster.local/ns/foo/sa/httpbin",
        &Default::default(),
    );
    let app = Router::new()
        .route(
            "/trace",
            get(|Extension(ctx): Extension<TraceContext>| async move {
                // the server's own span, a child of the caller's
                format!(
                    "{} {:016x}",
                    ctx.trace_id_hex(),
                    ctx.parent_span_id.unwrap_or(0)
                )
            }),
        )
        .layer(
            MetricsLayer::inbound(Arc::clone(&metrics), me)
                .with_default_service(ServiceInfo::from_host("httpbin.foo.svc.cluster.local")),
        )
        .layer(PropagateTraceLayer::inbound(TraceConfig::default()))
        .layer(AccessLogLayer::inbound());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{addr}/trace"))
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body.as_ref(),
        b"80f198ee56343ba864fe8b2a57d3eff7 e457b5a2e4d86bd1"
    );
    let resp = client
        .request(
            Request::get(format!("http://{addr}/nope"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    resp.into_body().collect().await.unwrap();

    let text = metrics.render();
    let count = |code: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("istio_requests_total{")
                    && l.contains(&format!("response_code=\"{code}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(count("200").as_deref(), Some("1"), "{text}");
    assert_eq!(count("404").as_deref(), Some("1"), "{text}");
    assert!(text.contains("destination_service=\"httpbin.foo.svc.cluster.local\""));
}
