//! An `https://` request is the application's own TLS, which a sidecar routes as a
//! connection: by a VirtualService's `tls` routes (SNI and port), as istio.io's TLS egress
//! tasks configure it, not by `http` routes it cannot see. A binary of its own: it sets
//! `SSL_CERT_FILE` (the platform's roots, which verify the application's TLS).

mod egress_support;

use std::time::Duration;

use egress_support::{get, tagged_tls_server};
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::outbound::{ClientWorkload, MeshClient};

#[tokio::test]
async fn https_requests_follow_tls_routes_by_sni() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["api.example.test"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, cert.root_pem()).unwrap();
    // SAFETY: the only test of this binary sets it before anything reads the environment
    // (the runtime's threads do not).
    unsafe { std::env::set_var("SSL_CERT_FILE", &roots) };

    // `direct`: where the request's own host and port lead; `routed`: the tls route's
    // destination, another service on another port
    let (direct, direct_snis) = tagged_tls_server(&cert, "-direct").await;
    let (routed, routed_snis) = tagged_tls_server(&cert, "-routed").await;
    let (a, b) = (direct.port(), routed.port());
    let entries = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api}}
spec:
  hosts: [api.example.test]
  ports: [{{number: {a}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-backend}}
spec:
  hosts: [tls-backend.internal]
  ports: [{{number: {b}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
    );
    let routes = format!(
        "{entries}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api}}
spec:
  hosts: [api.example.test]
  tls:
  - match: [{{port: {a}, sniHosts: [api.example.test]}}]
    route: [{{destination: {{host: tls-backend.internal, port: {{number: {b}}}}}}}]
"
    );
    let mesh = Mesh::from_yaml(&routes).unwrap();
    let client =
        MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build();

    // the tls route sends the application's TLS (SNI and name check: the request's host) to
    // its destination; the request itself is untouched
    let url = format!("https://api.example.test:{a}/");
    let (status, body, failure) = get(&client, &url).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-routed api.example.test:{a}"));
    assert_eq!(routed_snis.lock().unwrap().as_slice(), ["api.example.test"]);
    assert!(direct_snis.lock().unwrap().is_empty());

    // a tls route for another port does not match: the request goes where it names
    let other_port = routes.replace(&format!("port: {a}, sniHosts"), "port: 8443, sniHosts");
    mesh.reload_loaded(mesh_core::load::load_str(&other_port, "vs.yaml"))
        .unwrap();
    let (status, body, failure) = get(&client, &url).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-direct api.example.test:{a}"));
    assert_eq!(direct_snis.lock().unwrap().as_slice(), ["api.example.test"]);

    // nor does one for another SNI (a wildcard the host is not under)
    let other_sni = routes
        .replace(
            "hosts: [api.example.test]\n  tls",
            "hosts: ['*.example.com']\n  tls",
        )
        .replace(
            "sniHosts: [api.example.test]",
            "sniHosts: ['*.example.com']",
        );
    mesh.reload_loaded(mesh_core::load::load_str(&other_sni, "vs.yaml"))
        .unwrap();
    let (status, body, failure) = get(&client, &url).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-direct api.example.test:{a}"));

    // a tls route to a host the registry does not have: no cluster (503 NC), never the
    // request's own destination
    let unknown = routes.replace("host: tls-backend.internal", "host: missing.internal");
    mesh.reload_loaded(mesh_core::load::load_str(&unknown, "vs.yaml"))
        .unwrap();
    let (status, body, _) = get(&client, &url).await;
    assert_eq!(status, 503, "{body}");

    through_an_egress_gateway(&cert).await;
}

/// istio.io "Egress Gateways", HTTPS traffic: the application's TLS goes to the egress
/// gateway by the mesh's `tls` route, and the gateway's PASSTHROUGH server forwards it by
/// SNI to the external host. The client's registry reaches the host only through the
/// gateway (its address of the host is dead), so an answer proves the path.
async fn through_an_egress_gateway(cert: &mesh_tls::WorkloadCert) {
    let (external, snis) = tagged_tls_server(cert, "-external").await;
    let a = external.port();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gw_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let g = gw_listener.local_addr().unwrap().port();
    let entry = |port: u16| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api}}
spec:
  hosts: [api.example.test]
  ports: [{{number: {a}, name: tls, protocol: TLS, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
        )
    };
    let common = format!(
        "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {g}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 443, name: tls, protocol: TLS}}
    hosts: [api.example.test]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-api-through-egress-gateway}}
spec:
  hosts: [api.example.test]
  gateways: [mesh, istio-system/istio-egressgateway]
  tls:
  - match: [{{gateways: [mesh], port: {a}, sniHosts: [api.example.test]}}]
    route:
    - destination: {{host: istio-egressgateway.istio-system.svc.cluster.local, port: {{number: {g}}}}}
  - match: [{{gateways: [istio-system/istio-egressgateway], port: 443, sniHosts: [api.example.test]}}]
    route:
    - destination: {{host: api.example.test, port: {{number: {a}}}}}
"
    );
    let gateway_mesh = Mesh::from_yaml(&format!("{}{common}", entry(a))).unwrap();
    let client_mesh = Mesh::from_yaml(&format!("{}{common}", entry(dead))).unwrap();
    let labels = [("istio".to_string(), "egressgateway".to_string())].into();
    let _gw = GatewayServer::builder(gateway_mesh, "istio-system", labels)
        .listener(443, gw_listener)
        .start()
        .await
        .unwrap();
    let client = MeshClient::builder(
        client_mesh.clone(),
        ClientWorkload::new("sleep", "default", "sleep"),
    )
    .build();
    let url = format!("https://api.example.test:{a}/get");
    let (status, body, failure) = get(&client, &url).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-external api.example.test:{a}"));
    // the application's TLS, end to end: the external host saw its SNI
    assert_eq!(snis.lock().unwrap().as_slice(), ["api.example.test"]);

    // without the VirtualService the client goes to its own (dead) address of the host
    client_mesh
        .reload_loaded(mesh_core::load::load_str(&entry(dead), "se.yaml"))
        .unwrap();
    let (status, _, _) = get(&client, &url).await;
    assert_eq!(status, 503);
}
