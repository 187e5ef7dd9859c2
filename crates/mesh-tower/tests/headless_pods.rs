//! A headless Service's pods by their own names (StatefulSets: `db-0.db.ns.svc.cluster.local`):
//! istiod lists `*.<name>` for every name of a headless Service among the domains of its
//! virtual host, and its clusters are ORIGINAL_DST, so such a request is routed by the
//! Service's VirtualServices and reaches that pod, over mTLS with the pod's identity. Real
//! STRICT mTLS servers on loopback.

mod outbound_support;

use outbound_support::*;

const YAML: &str = "
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  http:
  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: db, subset: v2}}]
    headers: {response: {set: {x-route: v2}}}
  - route: [{destination: {host: db}}]
    headers: {response: {set: {x-route: default}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  subsets: [{name: v2, labels: {version: v2}}]
";

#[tokio::test]
async fn a_pod_of_a_headless_service_is_routed_by_the_service_to_that_pod() {
    let pki = Pki::new();
    let mesh = mesh(YAML);
    let db0 = start(&pki, "db-0", "default", "db", Behaviour::Ok).await;
    let db1 = start(&pki, "db-1", "default", "db", Behaviour::Ok).await;
    register(&mesh, "db-0", "default", "db", "db", "v1", db0.addr);
    register(&mesh, "db-1", "default", "db", "db", "v1", db1.addr);
    let client = client(&mesh, &pki, "default", "sleep");

    for host in [
        "db-0.db.default.svc.cluster.local",
        "db-0.db.default.svc",
        "db-0.db.default",
        "db-0.db",
        "DB-0.db.default.svc.cluster.local",
    ] {
        for _ in 0..3 {
            let (status, by, _, headers) =
                send(&client, get(&format!("http://{host}:9080/"))).await;
            assert_eq!((status, by.as_str()), (200, "db-0"), "{host}");
            // the Service's VirtualService decided it
            assert_eq!(headers["x-route"], "default", "{host}");
        }
    }
    let (status, by, _, _) = send(&client, get("http://db-1.db:9080/")).await;
    assert_eq!((status, by.as_str()), (200, "db-1"));
    // a route to a subset the pod is not in still reaches the pod (ORIGINAL_DST clusters)
    let (status, by, _, headers) = send(&client, get("http://db-1.db:9080/v2")).await;
    assert_eq!((status, by.as_str()), (200, "db-1"));
    assert_eq!(headers["x-route"], "v2");
    // over the mesh's mTLS, checked against the Service's identities
    assert!(db0
        .peers
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "cluster.local/ns/default/sa/sleep"));
    assert_eq!(db0.hits(), 15);
    assert_eq!(db1.hits(), 2);

    // the Service itself still balances over its pods
    for _ in 0..20 {
        let (status, _, _, _) = send(&client, get("http://db:9080/")).await;
        assert_eq!(status, 200);
    }
    assert!(
        db0.hits() > 15 && db1.hits() > 2,
        "{} {}",
        db0.hits(),
        db1.hits()
    );

    // a pod the Service does not have: no endpoint (Envoy's original destination would
    // have nowhere to go; the name does not resolve)
    let (status, _, body, _) = send(&client, get("http://db-7.db:9080/")).await;
    assert_eq!((status, body.as_str()), (503, "no healthy upstream"));
}

#[tokio::test]
async fn the_short_form_is_the_clients_own_namespace_only() {
    let pki = Pki::new();
    let mesh = mesh(YAML);
    let db0 = start(&pki, "db-0", "default", "db", Behaviour::Ok).await;
    register(&mesh, "db-0", "default", "db", "db", "v1", db0.addr);
    let other = client(&mesh, &pki, "other", "sleep");
    // `<pod>.<service>.<namespace>` from another namespace
    let (status, by, _, _) = send(&other, get("http://db-0.db.default:9080/")).await;
    assert_eq!((status, by.as_str()), (200, "db-0"));
    // `db-0.db` from `other` is no pod of `db.default` (istiod's `*.db` is in the virtual
    // host only for clients of the Service's namespace): it passes through
    let snap = mesh.snapshot();
    let h = http::HeaderMap::new();
    let route = |ns, host| {
        let d = snap.route_http(&mesh_core::route::HttpRequestAttrs::new(ns, host, "/", &h));
        d.virtual_service_name().map(str::to_owned)
    };
    assert_eq!(route("other", "db-0.db"), None);
    assert_eq!(route("default", "db-0.db").as_deref(), Some("default/db"));
}

/// A headless Service named as its namespace (`redis` in `redis`): `redis.redis` is the
/// Service by one of its own names (Envoy's exact domain wins over `*.redis`), not a pod
/// named `redis`.
#[tokio::test]
async fn a_service_named_as_its_namespace_is_not_taken_for_a_pod() {
    let pki = Pki::new();
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: redis, namespace: redis}\nspec: {clusterIP: None, selector: {app: redis}, ports: [{name: http, port: 9080}]}\n",
    );
    let r0 = start(&pki, "redis-0", "redis", "redis", Behaviour::Ok).await;
    register(&mesh, "redis-0", "redis", "redis", "redis", "v1", r0.addr);
    let other = client(&mesh, &pki, "other", "sleep");
    for host in [
        "redis.redis",
        "redis.redis.svc.cluster.local",
        "redis-0.redis.redis",
    ] {
        let (status, by, _, _) = send(&other, get(&format!("http://{host}:9080/"))).await;
        assert_eq!((status, by.as_str()), (200, "redis-0"), "{host}");
    }
}
