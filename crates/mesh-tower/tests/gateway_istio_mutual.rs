//! A Gateway server with `tls.mode: ISTIO_MUTUAL`, as in istio.io's "Egress Gateways" task
//! (egress through a gateway with mutual TLS between the sidecar and the gateway): the
//! gateway presents its own mesh certificate and requires the client's, the mesh client
//! reaches it with the DestinationRule's `ISTIO_MUTUAL` and `sni`, and the gateway's
//! AuthorizationPolicy sees the client's principal. Real sockets, certificates from our CA.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::load::load_str;
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::{GatewayError, GatewayServer};
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

/// The task's Gateway, DestinationRule and VirtualService (edition.cnn.com through
/// `istio-egressgateway`), with the ServiceEntry's endpoint on loopback (`{backend}`) and
/// the egress gateway's Service.
fn yaml(backend: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  ports:
  - {{name: http2, port: 80}}
  - {{name: https, port: 443}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cnn, namespace: default}}
spec:
  hosts: [edition.cnn.com]
  ports:
  - {{number: 80, name: http-port, protocol: HTTP}}
  - {{number: 443, name: https, protocol: HTTPS}}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http-port: {backend}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: default}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [edition.cnn.com]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-cnn, namespace: default}}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer: {{simple: ROUND_ROBIN}}
      portLevelSettings:
      - port: {{number: 443}}
        tls: {{mode: ISTIO_MUTUAL, sni: edition.cnn.com}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-cnn-through-egress-gateway, namespace: default}}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        subset: cnn
        port: {{number: 443}}
      weight: 100
  - match: [{{gateways: [istio-egressgateway], port: 443}}]
    route:
    - destination: {{host: edition.cnn.com, port: {{number: 80}}}}
      weight: 100
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: egress-from-sleep, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: egressgateway}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/default/sa/sleep]}}}}]
"#
    )
}

#[tokio::test]
async fn egress_gateway_with_istio_mutual() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let creds = |ns: &str, sa: &str| {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
    };

    // the "external" service: plain HTTP, answering with the Host it was asked for
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|h: http::HeaderMap| async move {
        format!("cnn host={}", h["host"].to_str().unwrap())
    });
    tokio::spawn(async move { axum::serve(backend, app).await });

    let mesh = Mesh::from_yaml(&yaml(backend_port)).unwrap();
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "egressgateway".to_string())].into();

    // a gateway without a mesh identity cannot serve ISTIO_MUTUAL: refused at start
    let err = GatewayServer::builder(mesh.clone(), "istio-system", labels.clone())
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GatewayError::Server { port: 443, message, .. }
            if message.contains("ISTIO_MUTUAL needs the gateway's mesh identity")),
        "{err}"
    );

    let gw = GatewayServer::builder(mesh.clone(), "istio-system", labels.clone())
        .workload_credentials(creds("istio-system", "istio-egressgateway-service-account"))
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let gw_addr = gw.local_addr(443).unwrap();
    mesh.register(Workload {
        name: "istio-egressgateway".into(),
        namespace: "istio-system".into(),
        service_account: "istio-egressgateway-service-account".into(),
        labels,
        address: gw_addr.ip(),
        ports: [("https".to_string(), gw_addr.port())].into(),
        locality: None,
        weight: 0,
    });

    let get = |client: MeshClient| async move {
        let req = http::Request::get("http://edition.cnn.com/politics")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };

    // sleep's sidecar: edition.cnn.com:80 -> the egress gateway's 443 over ISTIO_MUTUAL
    // (SNI edition.cnn.com) -> edition.cnn.com:80
    let sleep = MeshClient::builder(
        mesh.clone(),
        ClientWorkload::new("sleep", "default", "sleep"),
    )
    .credentials(creds("default", "sleep"))
    .build();
    let (status, body) = get(sleep).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "cnn host=edition.cnn.com");

    // another workload's identity reaches the gateway but its policy, which reads the
    // client certificate's principal, denies it
    let web = MeshClient::builder(mesh.clone(), ClientWorkload::new("web", "default", "web"))
        .credentials(creds("default", "web"))
        .build();
    let (status, body) = get(web).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body, "RBAC: access denied");

    // without a mesh certificate the handshake fails (the gateway requires one): Envoy's 503
    let anonymous =
        MeshClient::builder(mesh.clone(), ClientWorkload::new("anon", "default", "anon")).build();
    let (status, body) = get(anonymous).await;
    assert_eq!(status, 503, "{body}");

    // a TLS client with a certificate from another CA is refused at the handshake too
    let other_ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "sleep").unwrap();
    let forged =
        WorkloadCredentials::new(other_ca.issue(&id, Duration::from_secs(3600), &[]).unwrap())
            .unwrap();
    let impostor = MeshClient::builder(
        mesh.clone(),
        ClientWorkload::new("sleep", "default", "sleep"),
    )
    .credentials(forged)
    .build();
    let (status, _) = get(impostor).await;
    assert_eq!(status, 503);

    // a reload (a new snapshot generation) rebuilds the server's TLS config from the
    // gateway's credentials: still served
    mesh.reload_loaded(load_str(&yaml(backend_port), "again.yaml"))
        .unwrap();
    let client = |sa: &str| {
        MeshClient::builder(mesh.clone(), ClientWorkload::new(sa, "default", sa))
            .credentials(creds("default", sa))
            .build()
    };
    assert_eq!(get(client("sleep")).await.0, 200);

    // subjectAltNames narrow the clients the handshake accepts: web's certificate is
    // refused before any request (its 403 above came from the policy), sleep's is taken
    let pinned = yaml(backend_port).replace(
        "tls: {mode: ISTIO_MUTUAL}",
        "tls: {mode: ISTIO_MUTUAL, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/sleep']}",
    );
    mesh.reload_loaded(load_str(&pinned, "pinned.yaml"))
        .unwrap();
    assert_eq!(get(client("sleep")).await.0, 200);
    assert_eq!(get(client("web")).await.0, 503);
}
