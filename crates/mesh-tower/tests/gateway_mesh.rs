//! The ingress gateway in front of a mesh workload under STRICT mTLS, from Istio's own
//! samples (`httpbin.yaml`, `httpbin-gateway.yaml`): the gateway originates ISTIO_MUTUAL
//! with its own identity (auto mTLS), and the workload authorizes the gateway's principal.

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::{ConnectionInfo, MeshServer};
use tokio::net::TcpListener;

fn sample(rel: &str) -> String {
    [
        "../../../shared/istio-samples",
        "/work/shared/istio-samples",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join(rel))
    .find(|p| p.exists())
    .map(|p| std::fs::read_to_string(p).unwrap())
    .expect(rel)
}

const POLICIES: &str = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-ingress, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account]}}]
";

#[tokio::test]
async fn gateway_to_strict_workload_with_auto_mtls() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let cert = |ns: &str, sa: &str| {
        let ca = ca.clone();
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        async move {
            CertManager::start(id, Arc::new(CaSource::new(ca)), RotationOptions::default())
                .await
                .unwrap()
        }
    };
    let httpbin_cert = cert("default", "httpbin").await;
    let gw_cert = cert("istio-system", "istio-ingressgateway-service-account").await;

    let yaml = format!(
        "{}\n---\n{}{POLICIES}",
        sample("httpbin/httpbin.yaml"),
        sample("httpbin/httpbin-gateway.yaml")
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();

    // the httpbin workload: a MeshServer, registered in the mesh
    let labels: mesh_core::model::Labels = [
        ("app".to_string(), "httpbin".to_string()),
        ("version".to_string(), "v1".to_string()),
    ]
    .into();
    let app = Router::new().route(
        "/headers",
        get(|Extension(c): Extension<ConnectionInfo>| async move {
            format!("principal={}", c.principal().unwrap_or(""))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = MeshServer::builder(
        mesh.clone(),
        "default",
        "httpbin",
        labels.clone(),
        httpbin_cert.credentials().clone(),
    )
    .port(8080)
    .build()
    .unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    mesh.register(Workload {
        name: "httpbin-1".into(),
        namespace: "default".into(),
        service_account: "httpbin".into(),
        labels,
        address: addr.ip(),
        ports: [("http".to_string(), addr.port())].into(),
        locality: None,
        weight: 1,
    });

    let ingress: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let get = |gw: std::net::SocketAddr| {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://{gw}/headers"))
                .header("host", "httpbin.example.com")
                .body(Empty::new())
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };

    // with its mesh identity, the gateway speaks mTLS to the STRICT workload, which sees
    // and authorizes the gateway's principal
    let gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress.clone())
        .workload_credentials(gw_cert.credentials().clone())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let (status, body) = get(gw.local_addr(80).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "principal=cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    );

    // a DestinationRule disabling TLS wins over auto mTLS: STRICT resets the plaintext
    // connection and the gateway answers Envoy's 503
    let dr = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy: {tls: {mode: DISABLE}}
";
    mesh.reload_loaded(mesh_core::load::load_str(&format!("{yaml}{dr}"), "x.yaml"))
        .unwrap();
    let (status, body) = get(gw.local_addr(80).unwrap()).await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with("upstream connect error or disconnect/reset before headers."),
        "{body}"
    );

    // a gateway without a mesh identity sends plaintext, refused the same way
    mesh.reload_loaded(mesh_core::load::load_str(&yaml, "x.yaml"))
        .unwrap();
    let plain_gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let (status, _) = get(plain_gw.local_addr(80).unwrap()).await;
    assert_eq!(status, 503);
    // while the mTLS gateway still gets through
    let (status, _) = get(gw.local_addr(80).unwrap()).await;
    assert_eq!(status, 200);
}
