//! The reqwest adapter: code written against reqwest (through reqwest-middleware) sends
//! through the mesh. Run with `cargo test -p mesh-tower --features reqwest`.

mod outbound_support;

use mesh_tower::outbound::reqwest::MeshMiddleware;
use outbound_support::*;

#[tokio::test]
async fn reqwest_middleware_routes_through_the_mesh_with_mtls() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{REGISTRY_ONLY}{}{}",
        service_yaml("reviews", "default"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n  - route: [{destination: {host: reviews, subset: v1}}]\n    retries: {attempts: 2, retryOn: 5xx}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n"
    ));
    let v1 = start(
        &pki,
        "reviews-v1",
        "default",
        "reviews",
        Behaviour::FailFirst(1),
    )
    .await;
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
    let mesh_client = client(&mesh, &pki, "default", "productpage");
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(MeshMiddleware::new(mesh_client))
        .build();

    let r = http
        .get("http://reviews:9080/reviews/0")
        .header("end-user", "jason")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "reviews-v2");
    assert_eq!(r.text().await.unwrap(), "reviews-v2");

    // a body reqwest knows the size of is replayable: the 503 is retried
    let r = http
        .post("http://reviews:9080/")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "reviews-v1:hello");
    assert_eq!(v1.hits(), 2);
    assert_eq!(
        v2.peers.lock().unwrap().as_slice(),
        ["cluster.local/ns/default/sa/productpage"],
        "mTLS with the client's identity"
    );

    // a host the mesh does not know, with no VirtualService: refused locally (REGISTRY_ONLY)
    let r = http
        .get("http://nowhere.example:8080/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(v1.hits() + v2.hits(), 3, "nothing else reached the servers");
}
