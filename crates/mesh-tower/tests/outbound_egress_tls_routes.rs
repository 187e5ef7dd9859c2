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

/// A ServiceEntry `tls-backend.internal` on loopback port `b`, declared TLS.
fn tls_backend(b: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-backend}}
spec:
  hosts: [tls-backend.internal]
  ports: [{{number: {b}, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
    )
}

#[tokio::test]
async fn https_requests_follow_tls_routes_by_sni() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["api.example.test", "api"])
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
{backend}",
        backend = tls_backend(b)
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

    // nor does one of the host's VirtualService for another SNI, nor one for other
    // clients (`sourceLabels`)
    let wildcard_host = routes.replace(
        "hosts: [api.example.test]\n  tls",
        "hosts: ['*.example.test']\n  tls",
    );
    for to in [
        "sniHosts: [other.example.test]",
        "sniHosts: ['*.example.test'], sourceLabels: {app: other}",
    ] {
        let other = wildcard_host.replace("sniHosts: [api.example.test]", to);
        mesh.reload_loaded(mesh_core::load::load_str(&other, "vs.yaml"))
            .unwrap();
        let (status, body, failure) = get(&client, &url).await;
        assert_eq!(status, 200, "{to}: {failure} / {body}");
        assert_eq!(body, format!("tls-direct api.example.test:{a}"), "{to}");
    }
    // (the wildcard SNI does match when the labels do)
    let wild = wildcard_host.replace(
        "sniHosts: [api.example.test]",
        "sniHosts: ['*.example.test']",
    );
    mesh.reload_loaded(mesh_core::load::load_str(&wild, "vs.yaml"))
        .unwrap();
    let (_, body, _) = get(&client, &url).await;
    assert_eq!(body, format!("tls-routed api.example.test:{a}"));

    // a VirtualService with `http` routes only: the mesh client, which sees the request,
    // routes it by them (where we differ: docs)
    let http_only = format!(
        "{entries}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api}}
spec:
  hosts: [api.example.test]
  http: [{{fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}, route: [{{destination: {{host: api.example.test}}}}]}}]
"
    );
    mesh.reload_loaded(mesh_core::load::load_str(&http_only, "vs.yaml"))
        .unwrap();
    let (status, _, _) = get(&client, &url).await;
    assert_eq!(status, 418);
    // a port declared HTTP has no tls filter chain in Istio: `tls` routes do not apply
    let http_port = routes.replace(
        &format!("{{number: {a}, name: tls, protocol: TLS}}"),
        &format!("{{number: {a}, name: http, protocol: HTTP}}"),
    );
    mesh.reload_loaded(mesh_core::load::load_str(&http_port, "vs.yaml"))
        .unwrap();
    let (status, body, failure) = get(&client, &url).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-direct api.example.test:{a}"));

    // a destination whose DestinationRule sets TLS: the application's TLS cannot be
    // tunneled inside it, so the request is refused (503 NC), never sent without it
    let dr_tls = format!(
        "{routes}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tls-backend}}
spec:
  host: tls-backend.internal
  trafficPolicy: {{tls: {{mode: SIMPLE}}}}
"
    );
    mesh.reload_loaded(mesh_core::load::load_str(&dr_tls, "vs.yaml"))
        .unwrap();
    let before = routed_snis.lock().unwrap().len();
    let (status, body, _) = get(&client, &url).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(routed_snis.lock().unwrap().len(), before);

    // a tls route to a host the registry does not have: no cluster (503 NC), never the
    // request's own destination
    let unknown = routes.replace("host: tls-backend.internal", "host: missing.internal");
    mesh.reload_loaded(mesh_core::load::load_str(&unknown, "vs.yaml"))
        .unwrap();
    let (status, body, _) = get(&client, &url).await;
    assert_eq!(status, 503, "{body}");

    through_an_egress_gateway(&cert).await;
    by_a_short_name(&cert).await;
}

/// A Kubernetes service asked for by its short name (`https://api:<port>/`, SNI `api`): its
/// VirtualService (`hosts: [api]`, the FQDN once expanded) is found by the service, and
/// `sniHosts: [api]` is matched against the SNI as written, as Envoy's filter chain does.
async fn by_a_short_name(cert: &mesh_tls::WorkloadCert) {
    let (direct, _) = tagged_tls_server(cert, "-direct").await;
    let (routed, _) = tagged_tls_server(cert, "-routed").await;
    let (a, b) = (direct.port(), routed.port());
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: default}}
spec: {{selector: {{app: api}}, ports: [{{name: https, port: {a}}}]}}
---
{backend}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api]
  tls:
  - match: [{{port: {a}, sniHosts: [api]}}]
    route: [{{destination: {{host: tls-backend.internal, port: {{number: {b}}}}}}}]
",
        backend = tls_backend(b)
    ))
    .unwrap();
    mesh.register(mesh_core::registry::Workload {
        name: "api-1".into(),
        namespace: "default".into(),
        service_account: "api".into(),
        labels: [("app".to_string(), "api".to_string())].into(),
        address: "127.0.0.1".parse().unwrap(),
        ports: Default::default(),
        locality: None,
        weight: 0,
    });
    let client =
        MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build();
    let (status, body, failure) = get(&client, &format!("https://api:{a}/")).await;
    assert_eq!(status, 200, "{failure} / {body}");
    assert_eq!(body, format!("tls-routed api:{a}"));
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
