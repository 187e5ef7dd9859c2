//! An `https://` request to a ServiceEntry with no DestinationRule TLS: the mesh client
//! originates TLS as the application would (Istio passes the application's TLS through):
//! SNI and certificate name from the request's host, verified against the platform's roots
//! (here `SSL_CERT_FILE`, which the platform root loader honours, so this test has a binary
//! of its own). `http://` to the same host and port stays plaintext, on its own connections.

mod egress_support;

use std::time::Duration;

use egress_support::{get, tls_server};
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa};
use mesh_tower::outbound::{ClientWorkload, MeshClient};

#[tokio::test]
async fn https_request_originates_tls_to_the_request_host() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["localhost"])
        .unwrap();
    // The platform's roots: this CA.
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, cert.root_pem()).unwrap();
    // SAFETY: the only test of this binary sets it before anything reads the environment
    // (the runtime's threads do not).
    unsafe { std::env::set_var("SSL_CERT_FILE", &roots) };

    let (addr, snis) = tls_server(&cert).await;
    let port = addr.port();
    // Istio's egress-control sample (`www.google.com`, port 443 HTTPS, DNS), on loopback.
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-https}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: https, protocol: HTTPS}}]
  resolution: DNS
"
    ))
    .unwrap();
    let client =
        MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build();

    let (status, body, failure) = get(&client, &format!("https://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls localhost:{port}"));
    let (status, _, _) = get(&client, &format!("https://localhost:{port}/")).await;
    assert_eq!(status, 200);
    let tls_conns = snis.lock().unwrap().len();
    assert!(
        snis.lock().unwrap().iter().all(|s| s == "localhost"),
        "{snis:?}"
    );

    // `http://` to the same host and port is the application's plaintext: never sent on
    // the TLS connections
    let (status, _, _) = get(&client, &format!("http://localhost:{port}/")).await;
    assert_ne!(status, 200);
    let seen = snis.lock().unwrap().clone();
    assert_eq!(seen.len(), tls_conns + 1, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("<not TLS>"));

    // a mesh-wide DestinationRule with `tls.mode: DISABLE` (Istio's pattern for the Kubernetes API
    // server under a mesh-wide ISTIO_MUTUAL) adds no TLS: the application's own still goes
    // out, never the https request in plaintext
    mesh.reload_loaded(mesh_core::load::load_str(
        &format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-https}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: https, protocol: HTTPS}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: everything, namespace: istio-system}}
spec:
  host: '*'
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
"
        ),
        "dr.yaml",
    ))
    .unwrap();
    let before = snis.lock().unwrap().len();
    let (status, body, failure) = get(&client, &format!("https://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls localhost:{port}"));
    let seen = snis.lock().unwrap().clone();
    assert!(
        seen[before..].iter().all(|s| s == "localhost"),
        "no plaintext connection: {seen:?}"
    );
}
