//! A Kubernetes `ExternalName` Service naming a service the mesh knows is an alias of it, as
//! istiod builds it since Istio 1.21 (`ENABLE_EXTERNAL_NAME_ALIAS`, on by default): a
//! request to the alias is routed by the target's VirtualServices to the target's
//! endpoints, with the target's DestinationRule and auto mTLS, and keeps the Host it was
//! sent with. Real mTLS servers on loopback.

mod outbound_support;

use outbound_support::*;

/// `reviews-alias.shop`: an `ExternalName` Service naming `reviews.default`.
const ALIAS: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews-alias, namespace: shop}
spec:
  type: ExternalName
  externalName: reviews.default.svc.cluster.local
  ports: [{name: http, port: 9080}]
---
";

#[tokio::test]
async fn an_alias_of_a_mesh_service_is_routed_as_the_service() {
    let pki = Pki::new();
    let mesh = mesh("");
    let v1 = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let v2 = start(&pki, "reviews-v2", "default", "reviews", Behaviour::Ok).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        v1.addr,
    );
    register(
        &mesh,
        "reviews-v2",
        "default",
        "reviews",
        "reviews",
        "v2",
        v2.addr,
    );
    reload(
        &mesh,
        &format!(
            "{}{ALIAS}
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v2}}}}]}}]
",
            service_yaml("reviews", "default")
        ),
    );
    let client = client(&mesh, &pki, "shop", "sleep");
    for url in [
        "http://reviews-alias:9080/r",
        "http://reviews-alias.shop.svc.cluster.local:9080/r",
    ] {
        let (status, by, _, headers) = send(&client, get(url)).await;
        // the target's VirtualService chose its subset v2, reached over mTLS
        assert_eq!((status, by.as_str()), (200, "reviews-v2"), "{url}");
        // the Host as the application sent it
        let host = url.trim_start_matches("http://").trim_end_matches("/r");
        assert_eq!(headers["x-seen-host"], host, "{url}");
    }
    assert_eq!(v1.hits(), 0);
    assert_eq!(
        v2.peers.lock().unwrap().as_slice(),
        [
            "cluster.local/ns/shop/sa/sleep",
            "cluster.local/ns/shop/sa/sleep"
        ]
    );

    // a route naming the alias goes to the target's cluster (istiod's
    // `GetDestinationCluster`), the target's subsets included
    reload(
        &mesh,
        &format!(
            "{}{}{ALIAS}
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings, namespace: shop}}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  http: [{{route: [{{destination: {{host: reviews-alias.shop.svc.cluster.local, subset: v1}}}}]}}]
",
            service_yaml("reviews", "default"),
            service_yaml("ratings", "shop"),
        ),
    );
    let (status, by, _, _) = send(&client, get("http://ratings:9080/r")).await;
    assert_eq!((status, by.as_str()), (200, "reviews-v1"));

    // the registry says what an ExternalName Service aliases
    let snap = mesh.snapshot();
    let svc = snap
        .registry()
        .service("reviews-alias.shop.svc.cluster.local", "shop")
        .unwrap();
    assert_eq!(
        svc.alias_of.as_deref(),
        Some("reviews.default.svc.cluster.local")
    );
}
