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
            // (not the headers every request gets: its id, Envoy's attempt count, and the
            // `x-forwarded-proto` a sidecar writes when absent)
            .filter(|(k, _)| {
                k.as_str().starts_with("x-")
                    && !matches!(
                        k.as_str(),
                        "x-request-id" | "x-envoy-attempt-count" | "x-forwarded-proto"
                    )
            })
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

#[tokio::test]
async fn the_mesh_client_drops_the_applications_xfcc_but_a_route_may_set_one() {
    // a sidecar's outbound listener sanitizes `x-forwarded-client-cert` (Envoy's default,
    // SANITIZE) before routing: the route's own header operations still apply
    use mesh_tower::outbound::{ClientWorkload, MeshClient};
    let backend = echo().await;
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  http:
  - match: [{{uri: {{prefix: /set}}}}]
    headers: {{request: {{set: {{x-forwarded-client-cert: 'By=route'}}}}}}
    route: [{{destination: {{host: api.example.internal}}}}]
  - route: [{{destination: {{host: api.example.internal}}}}]
",
        backend.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build();
    for (path, want) in [("/", ""), ("/set", "x-forwarded-client-cert=By=route")] {
        let req = http::Request::get(format!("http://api.example.internal{path}"))
            .header(
                "x-forwarded-client-cert",
                "By=forged;URI=spiffe://x/ns/a/sa/admin",
            )
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, want, "{path}");
    }
}
