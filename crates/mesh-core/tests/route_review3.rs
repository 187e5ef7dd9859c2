//! Route table against istiod where a third review found it diverging: a registry service
//! keeps its most specific VirtualService (or its default route), and match `gateways`
//! switches off the source filters.

use mesh_core::names::MeshOptions;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "review3.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, MeshOptions::default())
}

const REVIEWS: &str = "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
";

/// istiod's `computeWildcardHostVirtualServiceIndex` gives `reviews` to its exact-host
/// VirtualService; when that one keeps no route for this client, the service gets its
/// default route, not the wildcard VirtualService's.
#[test]
fn exact_virtual_service_without_a_route_leaves_the_default_route() {
    let s = snap(&format!(
        "{REVIEWS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-exact, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{sourceLabels: {{app: productpage}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wildcard, namespace: default}}
spec:
  hosts: ['*.default.svc.cluster.local']
  http:
  - route: [{{destination: {{host: ratings}}}}]
"
    ));
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/", &h));
    assert_eq!(d.virtual_service_name(), None);
    assert_eq!(
        d.destinations()[0].host.as_ref(),
        "reviews.default.svc.cluster.local"
    );
    // the productpage client keeps the exact VirtualService's route
    let labels = [("app".to_string(), "productpage".to_string())].into();
    let mut attrs = HttpRequestAttrs::new("default", "reviews:9080", "/", &h);
    attrs.source_labels = &labels;
    let d = s.route_http(&attrs);
    assert_eq!(d.virtual_service_name(), Some("default/reviews-exact"));
    // a host no registry service has still falls through to the wildcard
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "other.default.svc.cluster.local",
        "/",
        &h,
    ));
    assert_eq!(d.virtual_service_name(), Some("default/wildcard"));
}

/// istiod's `sourceMatchHTTP`: with match `gateways`, `sourceNamespace` is not consulted.
#[test]
fn match_gateways_ignores_source_namespace() {
    let s = snap(&format!(
        "{REVIEWS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{gateways: [mesh], sourceNamespace: other}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - match: [{{sourceNamespace: other}}]
    route: [{{destination: {{host: reviews, subset: v3}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
"
    ));
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/", &h));
    assert_eq!(d.destinations()[0].subset.as_deref(), Some("v2"));
}
