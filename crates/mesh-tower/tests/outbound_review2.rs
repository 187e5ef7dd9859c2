//! Outbound behaviours a second review found diverging from Istio/Envoy, against real
//! loopback servers: the client's `destination_principal` from the certificate the server
//! actually presented, pending-request accounting while a connection is being opened, the
//! HTTP idle timeout, and locality failover with both `failoverPriority` and `failover`.

mod outbound_support;

use outbound_support::*;

fn with_dr(policy: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n{policy}",
        service_yaml("reviews", "default")
    )
}

/// The `istio_requests_total` line of the client's metrics whose labels contain `want`.
fn series(client: &mesh_tower::outbound::MeshClient, want: &str) -> String {
    let text = client.metrics().render();
    text.lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(want))
        .unwrap_or_else(|| panic!("no series with {want} in\n{text}"))
        .to_owned()
}

// Istio's client reporter (istio_stats) takes destination_principal from the URI SAN of the
// upstream connection's peer certificate, not from the service account the registry lists.
#[tokio::test]
async fn destination_principal_is_the_identity_the_server_presented() {
    let pki = Pki::new();
    // the registry says `reviews`; the server presents `reviews-real`, which the
    // DestinationRule's subjectAltNames accept
    let mesh = mesh(&with_dr(
        "    tls: {mode: ISTIO_MUTUAL, subjectAltNames: [\"spiffe://cluster.local/ns/default/sa/reviews-real\"]}\n",
    ));
    let s = start(&pki, "reviews-v1", "default", "reviews-real", Behaviour::Ok).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        s.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    for _ in 0..2 {
        // a new connection, then a pooled one
        assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    }
    assert_eq!(s.conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    let line = series(&client, "response_code=\"200\"");
    for want in [
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/reviews-real\"",
        "destination_workload=\"reviews-v1\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/productpage\"",
        "istio_requests_total{",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
    assert!(line.ends_with(" 2"), "both requests in one series: {line}");
}
