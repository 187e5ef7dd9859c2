//! Outlier detection counts a route `timeout` against the endpoint that did not answer in
//! time (Envoy's `onResponseTimeout` reports a 504, LocalOriginTimeout, for the attempt in
//! flight): a hung endpoint is ejected after `consecutive5xxErrors` timeouts, on loopback.

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

#[tokio::test]
async fn a_route_timeout_counts_for_outlier_detection() {
    let hung = server("hung", Duration::from_secs(30)).await;
    let fast = server("fast", Duration::ZERO).await;
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  location: MESH_EXTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api, namespace: default}}
spec:
  host: api.example.internal
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 2, interval: 1m, baseEjectionTime: 1m, maxEjectionPercent: 100}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  http: [{{timeout: 200ms, retries: {{attempts: 0}}, route: [{{destination: {{host: api.example.internal}}}}]}}]
",
        hung.port(),
        fast.port()
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
