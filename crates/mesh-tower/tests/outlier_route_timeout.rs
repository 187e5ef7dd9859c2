//! Outlier detection counts a route `timeout` against the endpoint that did not answer in
//! time (Envoy's `onResponseTimeout` reports a 504, LocalOriginTimeout, for the attempt in
//! flight): a hung endpoint is ejected after `consecutive5xxErrors` timeouts, on loopback.
//! A gRPC answer's `grpc-status` counts as the HTTP status it stands for.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

/// An HTTP server answering `name` after `delay`.
async fn server(name: &'static str, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        name
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A ServiceEntry `host` with port `(number, protocol)` and two loopback endpoints on
/// `ports`, balanced round robin with outlier detection ejecting after two errors, and a
/// VirtualService route with `route` (such as `timeout: 200ms, `) and no retries.
fn two_endpoints(host: &str, port: (u16, &str), ports: [u16; 2], route: &str) -> String {
    let (number, protocol) = port;
    format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  ports: [{{number: {number}, name: main, protocol: {protocol}}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{main: {}}}}}
  - {{address: 127.0.0.1, ports: {{main: {}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api, namespace: default}}
spec:
  host: {host}
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 2, interval: 1m, baseEjectionTime: 1m, maxEjectionPercent: 100}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [{host}]
  http: [{{{route}retries: {{attempts: 0}}, route: [{{destination: {{host: {host}}}}}]}}]
",
        ports[0], ports[1]
    )
}

#[tokio::test]
async fn a_route_timeout_counts_for_outlier_detection() {
    let hung = server("hung", Duration::from_secs(30)).await;
    let fast = server("fast", Duration::ZERO).await;
    let yaml = two_endpoints(
        "api.example.internal",
        (8080, "HTTP"),
        [hung.port(), fast.port()],
        "timeout: 200ms, ",
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
    let mut timeouts = 0;
    for _ in 0..12 {
        let req = http::Request::get("http://api.example.internal:8080/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        match status.as_u16() {
            504 => timeouts += 1,
            200 => assert_eq!(body, "fast"),
            other => panic!("{other}"),
        }
    }
    assert_eq!(timeouts, 2, "ejected after two route timeouts");
}

/// A gRPC server (h2c) whose every answer is trailers-only with `grpc-status: status`.
async fn grpc_server(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move {
        (
            [
                ("content-type", "application/grpc"),
                ("grpc-status", status),
            ],
            "",
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn grpc_error_statuses_count_for_outlier_detection() {
    // Envoy's router reports a gRPC answer's grpc-status as the HTTP status it stands for
    // (UNAVAILABLE: 503), so a backend answering UNAVAILABLE with HTTP 200 is ejected
    let unavailable = grpc_server("14").await;
    let ok = grpc_server("0").await;
    let yaml = two_endpoints(
        "grpc.example.internal",
        (50051, "GRPC"),
        [unavailable.port(), ok.port()],
        "",
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
    let mut failures = 0;
    for _ in 0..12 {
        let req = http::Request::post("http://grpc.example.internal:50051/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let grpc = resp.headers()["grpc-status"].to_str().unwrap().to_owned();
        resp.into_body().collect().await.unwrap();
        match grpc.as_str() {
            "14" => failures += 1,
            "0" => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(failures, 2, "ejected after two UNAVAILABLE answers");
}
