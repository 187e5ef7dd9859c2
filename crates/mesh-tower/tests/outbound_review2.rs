//! Outbound behaviours a second review found diverging from Istio/Envoy, against real
//! loopback servers: the client's `destination_principal` from the certificate the server
//! actually presented, pending-request accounting while a connection is being opened, the
//! HTTP idle timeout, and locality failover with both `failoverPriority` and `failover`.

mod outbound_support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    assert_eq!(s.conns.load(Ordering::SeqCst), 1);
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

/// A STRICT mTLS `reviews` server (`spiffe://cluster.local/ns/default/sa/reviews`) whose TLS
/// handshake starts `handshake_delay` after a connection is accepted (a connection slow to
/// establish), answering 200 after `delay`; counts the connections it accepted.
async fn slow_handshake_server(
    pki: &Pki,
    handshake_delay: Duration,
    delay: Duration,
) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use mesh_tls::{InboundTls, PeerAuthnMode};
    let creds = pki.creds("default", "reviews");
    let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &creds, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let inbound = inbound.clone();
            tokio::spawn(async move {
                tokio::time::sleep(handshake_delay).await;
                let Ok(acc) = inbound.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"reviews-v1")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(acc.stream), svc)
                    .await;
            });
        }
    });
    (addr, conns)
}

/// The DestinationRule of Istio's circuit-breaking task.
const CIRCUIT_BREAKING: &str = "    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n";

/// Sends `n` requests, the i-th after `i * gap`: (status, overloaded, body) each.
async fn concurrent(
    client: &mesh_tower::outbound::MeshClient,
    n: usize,
    gap: Duration,
) -> Vec<(u16, bool, String)> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(gap * i as u32).await;
            let (st, _, body, h) = send(&c, get("http://reviews:9080/")).await;
            (st, h.contains_key("x-envoy-overloaded"), body)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

// Envoy counts a request as pending from the moment it finds no ready connection, including
// while the connection opened for it is being established (ConnPoolImplBase::newStreamImpl
// checks max_pending_requests before tryCreateNewConnections): with one pending request
// allowed, of three callers arriving while the only connection is being opened, the first
// is pending for it and the other two overflow.
#[tokio::test]
async fn a_request_waiting_for_its_new_connection_is_pending() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(CIRCUIT_BREAKING));
    let (addr, conns) =
        slow_handshake_server(&pki, Duration::from_millis(300), Duration::from_millis(50)).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    let results = concurrent(&client, 3, Duration::from_millis(20)).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 1, "{results:?}");
    assert_eq!(results[0].0, 200, "{results:?}");
    for r in &results[1..] {
        assert_eq!(r.0, 503, "{results:?}");
        assert!(r.1, "x-envoy-overloaded: {results:?}");
        assert!(r.2.ends_with("reset reason: overflow"), "{results:?}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

// Once the connection is established and carries its request, the request is no longer
// pending: a second caller may wait as the one pending request and is served after it.
#[tokio::test]
async fn a_request_on_an_established_connection_is_no_longer_pending() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(CIRCUIT_BREAKING));
    let (addr, conns) =
        slow_handshake_server(&pki, Duration::from_millis(100), Duration::from_millis(400)).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    let started = Instant::now();
    // the second arrives while the first is being served (connected at ~100 ms)
    let results = concurrent(&client, 2, Duration::from_millis(250)).await;
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    // maxRequestsPerConnection: 1 -> the second got a connection of its own, after the first
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// A mesh client of `productpage`'s identity running as `me`.
fn productpage_as(
    mesh: &mesh_core::mesh::Mesh,
    pki: &Pki,
    me: mesh_tower::outbound::ClientWorkload,
) -> mesh_tower::outbound::MeshClient {
    mesh_tower::outbound::MeshClient::builder(mesh.clone(), me)
        .credentials(pki.creds("default", "productpage"))
        .build()
}

/// Registers `name` (service account `reviews`, labels `app: reviews`, `version`) in
/// `locality`, listening at `addr`.
fn register_at(
    mesh: &mesh_core::mesh::Mesh,
    name: &str,
    version: &str,
    locality: &str,
    addr: std::net::SocketAddr,
) {
    mesh.register(mesh_core::registry::Workload {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        service_account: "reviews".to_owned(),
        labels: [("app", "reviews"), ("version", version)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        address: addr.ip(),
        ports: [("http".to_owned(), addr.port())].into(),
        locality: Some(locality.to_owned()),
        weight: 0,
    });
}

// Istio's ApplyLocalityLoadBalancer: with `failoverPriority`, an explicit `failover` is
// applied as well (applyLocalityFailover within each failoverPriority level, `priority*5 +
// locality priority`): the client's version first, and within it its own zone, then the
// failover region, then other regions. (Istio refuses `failover` with a region topology
// key in `failoverPriority`, hence a label.)
#[tokio::test]
async fn failover_priority_and_failover_both_apply() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}---\n{}",
        with_dr(
            "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}\n    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting:\n        failoverPriority: [version]\n        failover: [{from: us-east, to: eu-west}]\n"
        ),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n"
    ));
    let near = start(
        &pki,
        "reviews-near",
        "default",
        "reviews",
        Behaviour::Always500,
    )
    .await;
    let near_v2 = start(&pki, "reviews-near-v2", "default", "reviews", Behaviour::Ok).await;
    let eu = start(&pki, "reviews-eu", "default", "reviews", Behaviour::Ok).await;
    let ap = start(&pki, "reviews-ap", "default", "reviews", Behaviour::Ok).await;
    register_at(&mesh, "reviews-near", "v1", "us-east/zone1/a", near.addr);
    register_at(
        &mesh,
        "reviews-near-v2",
        "v2",
        "us-east/zone1/a",
        near_v2.addr,
    );
    register_at(&mesh, "reviews-eu", "v1", "eu-west/zone1/a", eu.addr);
    register_at(&mesh, "reviews-ap", "v1", "ap-south/zone1/a", ap.addr);
    let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
        .with_label("app", "productpage")
        .with_label("version", "v1")
        .with_locality("us-east/zone1/a");
    let client = productpage_as(&mesh, &pki, me);
    // the client's zone (and version) takes everything; its first 500 ejects it
    let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, by.as_str()), (500, "reviews-near"));
    for _ in 0..20 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!(
            (st, by.as_str()),
            (200, "reviews-eu"),
            "the failover region"
        );
    }
    assert_eq!(ap.hits(), 0, "other regions after the failover region");
    assert_eq!(near_v2.hits(), 0, "failoverPriority first");
}

// istiod's `setTopologyLabels`: a proxy's labels carry its cluster and its locality's
// topology labels (`AugmentLabels`), and a proxy without a locality takes it from its
// topology labels. So `failoverPriority` on `topology.istio.io/cluster` then the zone keeps
// a client that only has topology labels in its zone.
#[tokio::test]
async fn failover_priority_sees_the_clients_cluster_and_topology_labels() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(
        "    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 1m}\n    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting:\n        failoverPriority: [topology.istio.io/cluster, topology.kubernetes.io/zone]\n",
    ));
    let near = start(&pki, "reviews-near", "default", "reviews", Behaviour::Ok).await;
    let far = start(&pki, "reviews-far", "default", "reviews", Behaviour::Ok).await;
    register_at(&mesh, "reviews-near", "v1", "us-east/zone1", near.addr);
    register_at(&mesh, "reviews-far", "v1", "us-east/zone2", far.addr);
    let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
        .with_label("app", "productpage")
        .with_label("topology.kubernetes.io/region", "us-east")
        .with_label("topology.kubernetes.io/zone", "zone1");
    let client = productpage_as(&mesh, &pki, me);
    for _ in 0..20 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-near"));
    }
    assert_eq!(far.hits(), 0);
}

// istiod's per-endpoint mTLS check (`mtls_checker.go`): a port entry of a DestinationRule
// without `tls` leaves the cluster to auto mTLS, but the rule's top-level mode still
// decides each endpoint: DISABLE sends plaintext (a STRICT server refuses it), and
// ISTIO_MUTUAL sends mTLS whatever the server's PeerAuthentication says.
#[tokio::test]
async fn a_port_entry_without_tls_keeps_the_rules_mode_per_endpoint() {
    let pki = Pki::new();
    let port_entry =
        "    portLevelSettings: [{port: {number: 9080}, connectionPool: {tcp: {maxConnections: 100}}}]\n";
    let mesh = mesh(&with_dr(&format!(
        "    tls: {{mode: DISABLE}}\n{port_entry}"
    )));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503, "plaintext to a STRICT server");
    assert_eq!(server.hits(), 0);

    let disable = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: default}\nspec: {mtls: {mode: DISABLE}}\n---\n";
    reload(
        &mesh,
        &format!(
            "{disable}{}",
            with_dr(&format!("    tls: {{mode: ISTIO_MUTUAL}}\n{port_entry}"))
        ),
    );
    let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(
        (st, by.as_str()),
        (200, "reviews-v1"),
        "mTLS despite DISABLE"
    );
}

// istiod's `GetLocalityLbSetting`: a Service's `trafficDistribution: PreferClose` (or
// `PreferSameZone`), with no DestinationRule `localityLbSetting`, is a failover by network,
// region and zone that needs no outlier detection.
#[tokio::test]
async fn traffic_distribution_prefer_close_keeps_traffic_in_the_clients_zone() {
    let pki = Pki::new();
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  trafficDistribution: PreferClose\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080}]\n",
    );
    let near = start(&pki, "reviews-near", "default", "reviews", Behaviour::Ok).await;
    let far = start(&pki, "reviews-far", "default", "reviews", Behaviour::Ok).await;
    register_at(&mesh, "reviews-near", "v1", "us-east/zone1/a", near.addr);
    register_at(&mesh, "reviews-far", "v1", "us-east/zone2/a", far.addr);
    let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
        .with_locality("us-east/zone1/b");
    let client = productpage_as(&mesh, &pki, me);
    for _ in 0..20 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-near"));
    }
    assert_eq!(far.hits(), 0);
}

// istiod's `filterIstioEndpoint`: a Service with `internalTrafficPolicy: Local` (`NodeLocal`)
// gives each proxy the endpoints on its own node only (`kubernetes.io/hostname`), and none
// when its node has none: the request is answered 503 `no healthy upstream`, not sent to
// another node.
#[tokio::test]
async fn internal_traffic_policy_local_reaches_only_the_clients_node() {
    let pki = Pki::new();
    let service = |policy: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: agent, namespace: default}}\nspec:\n  internalTrafficPolicy: {policy}\n  selector: {{app: agent}}\n  ports: [{{name: http, port: 9080}}]\n"
        )
    };
    let mesh = mesh(&service("Local"));
    let on = |node: &str, name: &str, addr: std::net::SocketAddr| {
        let labels = [("app", "agent"), ("kubernetes.io/hostname", node)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        mesh.register(mesh_core::registry::Workload {
            name: name.to_owned(),
            namespace: "default".to_owned(),
            service_account: "agent".to_owned(),
            labels,
            address: addr.ip(),
            ports: [("http".to_owned(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
    };
    let a = start(&pki, "agent-a", "default", "agent", Behaviour::Ok).await;
    let b = start(&pki, "agent-b", "default", "agent", Behaviour::Ok).await;
    on("node-a", "agent-a", a.addr);
    on("node-b", "agent-b", b.addr);
    let client_on = |node: &str| {
        let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
            .with_label("kubernetes.io/hostname", node);
        productpage_as(&mesh, &pki, me)
    };
    for (node, agent) in [("node-a", "agent-a"), ("node-b", "agent-b")] {
        let client = client_on(node);
        for _ in 0..10 {
            let (st, by, _, _) = send(&client, get("http://agent:9080/")).await;
            assert_eq!((st, by.as_str()), (200, agent), "a client on {node}");
        }
    }
    assert_eq!((a.hits(), b.hits()), (10, 10));
    // no agent on this node: no endpoint at all
    let elsewhere = client_on("node-c");
    let (st, _, body, headers) = send(&elsewhere, get("http://agent:9080/")).await;
    assert_eq!(
        (st, body.as_str()),
        (503, "no healthy upstream"),
        "{headers:?}"
    );
    assert_eq!((a.hits(), b.hits()), (10, 10));

    // `Cluster` (the default): every endpoint, whatever the node
    reload(&mesh, &service("Cluster"));
    for _ in 0..20 {
        let (st, _, _, _) = send(&elsewhere, get("http://agent:9080/")).await;
        assert_eq!(st, 200);
    }
    assert!(a.hits() > 10 && b.hits() > 10, "{} {}", a.hits(), b.hits());
}

// Kubernetes does not apply `internalTrafficPolicy` to a headless Service, and istiod's
// clusters for one are ORIGINAL_DST (no EDS endpoints to filter): a pod on another node is
// reached by its own name.
#[tokio::test]
async fn internal_traffic_policy_local_does_not_apply_to_a_headless_service() {
    let pki = Pki::new();
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec:\n  clusterIP: None\n  internalTrafficPolicy: Local\n  selector: {app: db}\n  ports: [{name: http, port: 9080}]\n",
    );
    let db1 = start(&pki, "db-1", "default", "db", Behaviour::Ok).await;
    let labels = [("app", "db"), ("kubernetes.io/hostname", "node-b")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    mesh.register(mesh_core::registry::Workload {
        name: "db-1".to_owned(),
        namespace: "default".to_owned(),
        service_account: "db".to_owned(),
        labels,
        address: db1.addr.ip(),
        ports: [("http".to_owned(), db1.addr.port())].into(),
        locality: None,
        weight: 0,
    });
    let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
        .with_label("kubernetes.io/hostname", "node-a");
    let client = productpage_as(&mesh, &pki, me);
    for host in ["db-1.db", "db"] {
        let (st, by, _, _) = send(&client, get(&format!("http://{host}:9080/"))).await;
        assert_eq!((st, by.as_str()), (200, "db-1"), "{host}");
    }
}
