//! `remoteIpBlocks` / `remote.ip`: the original client address, as Envoy's connection manager
//! works it out from `X-Forwarded-For`: on a sidecar the rightmost address; on a gateway the
//! connection's peer, or with `numTrustedProxies` N the N-th address from the right (istio.io
//! "Ingress Access Control" and "Configuring Gateway Network Topology"). `ipBlocks` stays the
//! direct peer. Real loopback servers and clients.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::MeshServer;
use tokio::net::TcpListener;

async fn get(addr: SocketAddr, host: &str, xff: &[&str]) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{addr}/headers")).header("host", host);
    for v in xff {
        req = req.header("x-forwarded-for", *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

/// A sidecar (MeshServer): the client is the rightmost X-Forwarded-For address.
#[tokio::test]
async fn sidecar_reads_the_rightmost_forwarded_address() {
    let mesh = Mesh::from_yaml(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-bad-client, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-peer, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{from: [{source: {ipBlocks: [198.51.100.9]}}]}]
",
    )
    .unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { server.serve(listener, app).await });

    let host = "httpbin.foo:8000";
    // no X-Forwarded-For: the peer (127.0.0.1)
    assert_eq!(get(addr, host, &[]).await, StatusCode::OK);
    // the gateway appended the client's address: denied
    assert_eq!(
        get(addr, host, &["203.0.113.7"]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(addr, host, &["10.1.1.1, 203.0.113.7"]).await,
        StatusCode::FORBIDDEN
    );
    // several lines are one list
    assert_eq!(
        get(addr, host, &["10.1.1.1", "203.0.113.7"]).await,
        StatusCode::FORBIDDEN
    );
    // the bad address further left is not the client a sidecar trusts
    assert_eq!(
        get(addr, host, &["203.0.113.7, 10.1.1.1"]).await,
        StatusCode::OK
    );
    // ipBlocks is the direct peer, never a header
    assert_eq!(get(addr, host, &["198.51.100.9"]).await, StatusCode::OK);
    // not an address: the peer stands
    assert_eq!(get(addr, host, &["unknown"]).await, StatusCode::OK);
}

/// A gateway: the peer, unless proxies in front are trusted (`numTrustedProxies`).
#[tokio::test]
async fn gateway_trusts_as_many_hops_as_configured() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "httpbin" });
    tokio::spawn(async move { axum::serve(backend, app).await });
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
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: httpbin.example.internal, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.example.internal]
  location: MESH_EXTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-policy, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: ALLOW
  rules: [{{from: [{{source: {{remoteIpBlocks: [203.0.113.0/24]}}}}]}}]
",
        backend_addr.port()
    );
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let host = "httpbin.example.com";
    // (numTrustedProxies, X-Forwarded-For, allowed)
    let cases: [(Option<u32>, &[&str], bool); 7] = [
        (None, &[], false),
        // no trusted proxy: the header is the client's word, not taken
        (None, &["203.0.113.7"], false),
        (Some(1), &["203.0.113.7"], true),
        (Some(1), &["10.9.9.9, 203.0.113.7"], true),
        (Some(1), &["203.0.113.7, 10.9.9.9"], false),
        (Some(2), &["203.0.113.7, 10.9.9.9"], true),
        // fewer addresses than trusted hops: the peer
        (Some(2), &["203.0.113.7"], false),
    ];
    for (trusted, xff, allowed) in cases {
        let mesh = Mesh::from_yaml(&yaml).unwrap();
        let mut b = GatewayServer::builder(mesh, "istio-system", labels.clone())
            .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap());
        if let Some(n) = trusted {
            b = b.num_trusted_proxies(n);
        }
        let gw = b.start().await.unwrap();
        let status = get(gw.local_addr(80).unwrap(), host, xff).await;
        let want = if allowed {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            status, want,
            "numTrustedProxies {trusted:?}, X-Forwarded-For {xff:?}"
        );
    }
}
