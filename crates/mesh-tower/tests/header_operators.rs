//! Envoy's `%COMMAND%` operators in a VirtualService's header operations, expanded per
//! request by the ingress gateway (a real listener, a real backend echoing what it got):
//! the downstream client's address, the request's own headers, the protocol, Istio's
//! cluster name and a literal `%%`.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_tower::gateway::GatewayServer;
use tokio::net::TcpListener;

/// Answers with the `x-` request headers it got, one `name=value` per line.
async fn echo() -> SocketAddr {
    let app = Router::new().fallback(|req: Request| async move {
        let mut lines: Vec<String> = req
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-") && k.as_str() != "x-request-id")
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        lines.join("\n")
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

#[tokio::test]
async fn gateway_expands_header_operators() {
    let backend = echo().await;
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
  - headers:
      request:
        set:
          x-client-ip: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'
          x-user-copy: '%REQ(x-user)%'
          x-missing: 'none:%REQ(x-absent)%'
          x-discount: '100%%'
        add:
          x-proto: '%PROTOCOL%'
      response:
        set:
          x-cluster: '%UPSTREAM_CLUSTER%'
          x-user-seen: '%REQ(x-user)%'
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
    let req = http::Request::get(format!("http://{addr}/items"))
        .header("host", "api.example.com")
        .header("x-user", "jason")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let (parts, body) = resp.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let got: Vec<&str> = body.lines().collect();
    for want in [
        "x-client-ip=127.0.0.1",
        "x-discount=100%",
        "x-missing=none:",
        "x-proto=HTTP/1.1",
        "x-user-copy=jason",
    ] {
        assert!(got.contains(&want), "{want} in {got:?}");
    }
    assert_eq!(
        parts.headers["x-cluster"],
        "outbound|8080||api.default.svc.cluster.local"
    );
    assert_eq!(parts.headers["x-user-seen"], "jason");
}
