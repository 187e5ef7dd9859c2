//! SPIFFE IDs that are not of Istio's `/ns/<ns>/sa/<sa>` form (as SPIRE issues them,
//! `spiffe://cluster.local/workload/billing`) over real mTLS: a mesh server accepts them
//! when their trust domain is trusted (istiod's SAN matchers are `spiffe://<td>/` prefixes),
//! AuthorizationPolicy `principals` match the whole ID, `namespaces` never match one
//! (Envoy's `.*/ns/<ns>/.*` pattern finds no namespace in it), and the metrics name the
//! principal with an unknown namespace.

mod httpbin_client;

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use httpbin_client::{mtls, HTTPBIN_HOST};
use mesh_core::mesh::Mesh;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions, WorkloadCredentials};
use mesh_tower::inbound::{ConnectionInfo, MeshServer};
use mesh_tower::metrics::IstioMetrics;
use tokio::net::TcpListener;

const POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: billing-only, namespace: foo}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/workload/billing]}}]
  - from: [{source: {namespaces: [foo]}}]
    to: [{operation: {paths: [/ns-only]}}]
";

async fn creds(
    ca: &Arc<MeshCa>,
    id: &str,
    dns: &[&str],
    keep: &mut Vec<CertManager>,
) -> Arc<WorkloadCredentials> {
    let source =
        CaSource::new(ca.clone()).with_dns_sans(dns.iter().map(|s| s.to_string()).collect());
    let m = CertManager::start(
        Identity::parse(id).unwrap(),
        Arc::new(source),
        RotationOptions::default(),
    )
    .await
    .unwrap();
    let c = m.credentials().clone();
    keep.push(m);
    c
}

fn get_req(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "httpbin.foo:8000")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn spiffe_ids_of_other_paths_are_peers_named_by_their_principal() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let mut keep = Vec::new();
    let httpbin = creds(
        &ca,
        "spiffe://cluster.local/ns/foo/sa/httpbin",
        &["localhost"],
        &mut keep,
    )
    .await;
    let billing = creds(
        &ca,
        "spiffe://cluster.local/workload/billing",
        &[],
        &mut keep,
    )
    .await;
    let audit = creds(&ca, "spiffe://cluster.local/workload/audit", &[], &mut keep).await;
    // a path that looks like Istio's form with more after it has no namespace either
    let lookalike = creds(
        &ca,
        "spiffe://cluster.local/ns/foo/sa/sleep/x",
        &[],
        &mut keep,
    )
    .await;
    let sleep = creds(
        &ca,
        "spiffe://cluster.local/ns/foo/sa/sleep",
        &[],
        &mut keep,
    )
    .await;
    // the same CA, another trust domain: not trusted
    let stranger = creds(
        &ca,
        "spiffe://other.domain/workload/billing",
        &[],
        &mut keep,
    )
    .await;

    let mesh = Mesh::from_yaml(POLICIES).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, httpbin)
        .service_host(HTTPBIN_HOST)
        .metrics(metrics.clone())
        .port(8000)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    async fn whoami(Extension(c): Extension<ConnectionInfo>) -> String {
        format!("principal={}", c.principal().unwrap_or(""))
    }
    let app = Router::new().fallback(get(whoami));
    tokio::spawn(async move { server.serve(listener, app).await });

    // the principal the policy names: allowed, and the application sees it
    let (status, _, body) = mtls(addr, &billing, false, get_req("/")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"principal=cluster.local/workload/billing");
    // another path of the trust domain: a peer, but not allowed
    let (status, _, body) = mtls(addr, &audit, false, get_req("/")).await.unwrap();
    assert_eq!(
        (status.as_u16(), &body[..]),
        (403, &b"RBAC: access denied"[..])
    );
    // a namespace rule matches Istio's form only
    let (status, _, _) = mtls(addr, &sleep, false, get_req("/ns-only"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = mtls(addr, &billing, false, get_req("/ns-only"))
        .await
        .unwrap();
    assert_eq!(status, 200, "billing's principal rule allows every path");
    let (status, _, _) = mtls(addr, &audit, false, get_req("/ns-only"))
        .await
        .unwrap();
    assert_eq!(status, 403);
    // Envoy's namespace pattern `.*/ns/foo/.*` is a regex on the principal: it finds `foo`
    // in a longer path too
    let (status, _, _) = mtls(addr, &lookalike, false, get_req("/ns-only"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // a trust domain the server does not trust: the handshake fails
    assert!(mtls(addr, &stranger, false, get_req("/")).await.is_err());

    let text = metrics.render();
    let series = |must: &[&str]| {
        text.lines()
            .any(|l| l.starts_with("istio_requests_total{") && must.iter().all(|m| l.contains(m)))
    };
    assert!(
        series(&[
            "source_principal=\"spiffe://cluster.local/workload/billing\"",
            "source_workload_namespace=\"unknown\"",
            "response_code=\"200\"",
            "connection_security_policy=\"mutual_tls\"",
        ]),
        "{text}"
    );
}
