//! A client's `Sidecar` scopes the VirtualServices that route its traffic, end to end over
//! real mTLS on loopback: a VirtualService in a namespace its egress hosts do not import
//! does not apply, and the request takes the default route to the service.

mod outbound_support;

use outbound_support::*;

#[tokio::test]
async fn a_virtual_service_the_sidecar_does_not_import_does_not_route() {
    let pki = Pki::new();
    let services = service_yaml("ratings", "other");
    // the VirtualService lives in `routes`, apart from the service it routes
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings, namespace: routes}\nspec:\n  hosts: [ratings.other.svc.cluster.local]\n  http: [{directResponse: {status: 418, body: {string: teapot}}}]\n---\n";
    let mesh = mesh(&format!("{services}{vs}"));
    let ratings = start(&pki, "ratings-v1", "other", "ratings", Behaviour::Ok).await;
    register(
        &mesh,
        "ratings-v1",
        "other",
        "ratings",
        "ratings",
        "v1",
        ratings.addr,
    );
    let productpage = client(&mesh, &pki, "default", "productpage");
    let call = || async { send(&productpage, get("http://ratings.other:9080/")).await };

    // no Sidecar: the VirtualService answers
    let (st, _, body, _) = call().await;
    assert_eq!((st, body.as_str()), (418, "teapot"));

    // the Sidecar imports other's services but not routes' config: default routing
    let sidecar = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec: {egress: [{hosts: ['./*', 'other/*']}]}\n---\n";
    reload(&mesh, &format!("{services}{vs}{sidecar}"));
    let (st, served_by, _, _) = call().await;
    assert_eq!((st, served_by.as_str()), (200, "ratings-v1"));
    assert_eq!(ratings.hits(), 1);

    // importing `routes/*` too brings the VirtualService back
    let sidecar = sidecar.replace("'other/*'", "'other/*', 'routes/*'");
    reload(&mesh, &format!("{services}{vs}{sidecar}"));
    let (st, _, body, _) = call().await;
    assert_eq!((st, body.as_str()), (418, "teapot"));
}
