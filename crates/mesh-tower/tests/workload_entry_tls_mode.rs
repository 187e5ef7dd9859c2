//! Auto mTLS to WorkloadEntry / ServiceEntry endpoints follows istiod's TLS mode of the
//! endpoint (`getTLSModeFromWorkloadEntry`): its `security.istio.io/tlsMode` label when it
//! has one, else whether it names a service account. Real servers on loopback: a plaintext
//! one (a VM without a sidecar) and a STRICT mTLS one.

mod outbound_support;

use axum::Router;
use outbound_support::*;

async fn plaintext_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|| async { "plain vm" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn the_tls_mode_label_decides_before_the_service_account() {
    let pki = Pki::new();
    let plain = plaintext_server().await;
    let strict = start(&pki, "strict-vm", "default", "vm", Behaviour::Ok).await;
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vm-plain, namespace: default}}
spec:
  hosts: [vm-plain.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {plain_port}}}
    serviceAccount: vm
    labels: {{security.istio.io/tlsMode: disabled}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vm-mtls, namespace: default}}
spec:
  hosts: [vm-mtls.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {strict_port}}}
    labels: {{security.istio.io/tlsMode: istio}}
",
        plain_port = plain.port(),
        strict_port = strict.addr.port(),
    );
    let mesh = mesh(&yaml);
    let client = client(&mesh, &pki, "default", "sleep");
    // a service account but `tlsMode: disabled`: plaintext, as to a VM without a sidecar
    let (status, _, body, _) = send(&client, get("http://vm-plain.example.internal/")).await;
    assert_eq!((status, body.as_str()), (200, "plain vm"));
    // `tlsMode: istio` without a service account: mTLS
    let (status, by, _, _) = send(&client, get("http://vm-mtls.example.internal/")).await;
    assert_eq!((status, by.as_str()), (200, "strict-vm"));
    assert_eq!(
        strict.peers.lock().unwrap().as_slice(),
        ["cluster.local/ns/default/sa/sleep"]
    );
}
