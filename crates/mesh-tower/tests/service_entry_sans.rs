//! A ServiceEntry's `subjectAltNames` as istiod uses them, against real TLS servers on
//! loopback: with ISTIO_MUTUAL they add to the endpoints' service accounts (a server
//! presenting an endpoint's identity is accepted); with SIMPLE and a DestinationRule `sni`
//! but no `subjectAltNames`, the server must present one of them (`constructUpstreamTLS`).
//! And a host two namespaces define, under a Sidecar that imports one of them.

mod egress_support;
mod outbound_support;

use std::time::Duration;

use mesh_tls::{Identity, MeshCa};
use outbound_support::*;

#[tokio::test]
async fn istio_mutual_accepts_the_endpoints_identities_next_to_the_entrys_sans() {
    let pki = Pki::new();
    let server = start(&pki, "reviews-ext", "default", "reviews", Behaviour::Ok).await;
    let port = server.addr.port();
    let mesh = mesh(&format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews-ext, namespace: default}}
spec:
  hosts: [reviews.ext]
  location: MESH_INTERNAL
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  subjectAltNames: [spiffe://cluster.local/ns/other/sa/someone-else]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}, serviceAccount: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews-ext, namespace: default}}
spec:
  host: reviews.ext
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
"
    ));
    let client = client(&mesh, &pki, "default", "productpage");
    let (status, _, body, _) = send(&client, get("http://reviews.ext:9080/")).await;
    assert_eq!((status, body.as_str()), (200, "reviews-ext"));
}

#[tokio::test]
async fn simple_with_sni_checks_the_entrys_sans() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("partner.example", "prod", "api").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["api.partner.example"])
        .unwrap();
    let (addr, _snis) = egress_support::tls_server(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("ca.pem");
    std::fs::write(&roots, cert.root_pem()).unwrap();
    let yaml = |san: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: partner, namespace: default}}
spec:
  hosts: [api.partner.example]
  ports: [{{number: 9443, name: tls-api, protocol: HTTP}}]
  resolution: STATIC
  subjectAltNames: ['{san}']
  endpoints: [{{address: 127.0.0.1, ports: {{tls-api: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: partner, namespace: default}}
spec:
  host: api.partner.example
  trafficPolicy:
    tls: {{mode: SIMPLE, sni: api.partner.example, caCertificates: {}}}
",
            addr.port(),
            roots.display()
        )
    };
    // the server's certificate names the host but not the identity the entry pins
    let mesh = mesh(&yaml("spiffe://partner.example/ns/prod/sa/other"));
    let client = mesh_tower::outbound::MeshClient::builder(
        mesh.clone(),
        mesh_tower::outbound::ClientWorkload::new("app", "default", "app"),
    )
    .build();
    let (status, body, failure) =
        egress_support::get(&client, "http://api.partner.example:9443/").await;
    assert_eq!(status, 503, "{failure} / {body}");
    // pinned right, accepted
    reload(&mesh, &yaml("spiffe://partner.example/ns/prod/sa/api"));
    let (status, body, failure) =
        egress_support::get(&client, "http://api.partner.example:9443/").await;
    assert_eq!(status, 200, "{failure} / {body}");
}

/// A host two namespaces define: a client whose Sidecar imports one namespace's copy is
/// sent to that copy (istiod's `selectServices`), not refused because the registry's first
/// pick is the other.
#[tokio::test]
async fn sidecar_picks_the_imported_copy_of_a_duplicated_host() {
    let pki = Pki::new();
    let b = start(&pki, "api-b", "team-b", "api", Behaviour::Ok).await;
    let dead = dead_addr().await;
    let entry = |ns: &str, addr: std::net::SocketAddr| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: {ns}}}
spec:
  hosts: [api.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: {}, ports: {{http: {}}}, serviceAccount: api, labels: {{security.istio.io/tlsMode: istio}}}}]
---
",
            addr.ip(),
            addr.port()
        )
    };
    let mesh = mesh(&format!(
        "{}{}apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec: {{egress: [{{hosts: ['team-b/*']}}]}}
",
        entry("team-a", dead),
        entry("team-b", b.addr)
    ));
    let client = client(&mesh, &pki, "shop", "app");
    let (status, _, body, _) = send(&client, get("http://api.example.com/")).await;
    assert_eq!((status, body.as_str()), (200, "api-b"));
}
