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

/// istiod's `IsCatchAllRoute` counts `uri: {regex: ".*"}` as a catch-all: merged on one
/// gateway host, such a route goes after the other VirtualServices' routes.
#[test]
fn regex_dot_star_is_a_catch_all_at_gateways() {
    let s = snap(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-catchall, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {regex: '.*'}}]
    route: [{destination: {host: frontend}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-api, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
",
    );
    let h = http::HeaderMap::new();
    let at = |path| {
        s.route_http(
            &HttpRequestAttrs::new("istio-system", "shop.example.com", path, &h)
                .with_gateway(Some("istio-system/gw")),
        )
        .virtual_service_name()
        .map(str::to_owned)
    };
    assert_eq!(at("/api/x").as_deref(), Some("default/b-api"));
    assert_eq!(at("/other").as_deref(), Some("default/a-catchall"));
}

/// istiod's `SelectVirtualServices` order decides which VirtualService claims a host:
/// private to the client's namespace, exported to it by name, then public; a public one in
/// the client's own namespace has no precedence.
#[test]
fn virtual_services_for_one_host_in_select_virtual_services_order() {
    let vs = |name: &str, ns: &str, export: &str, subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [ratings.prod.svc.cluster.local]
  {export}
  http: [{{route: [{{destination: {{host: ratings.prod.svc.cluster.local, subset: {subset}}}}}]}}]
---
"
        )
    };
    let svc = "apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
---
";
    let h = http::HeaderMap::new();
    let pick = |yaml: &str| {
        let s = snap(yaml);
        s.route_http(&HttpRequestAttrs::new(
            "default",
            "ratings.prod:9080",
            "/",
            &h,
        ))
        .virtual_service_name()
        .map(str::to_owned)
    };
    // exported by name beats public, even the client namespace's own
    let y = format!(
        "{svc}{}{}",
        vs("client", "default", "", "a"),
        vs("team", "prod", "exportTo: [default]", "b")
    );
    assert_eq!(pick(&y).as_deref(), Some("prod/team"));
    // private to the client's namespace beats both
    let y = format!("{y}{}", vs("private", "default", "exportTo: ['.']", "c"));
    assert_eq!(pick(&y).as_deref(), Some("default/private"));
    // two public ones: the first in config order
    let y = format!(
        "{svc}{}{}",
        vs("first", "prod", "", "a"),
        vs("second", "default", "", "b")
    );
    assert_eq!(pick(&y).as_deref(), Some("prod/first"));
}

/// istiod's `ApplyRedirect` leaves a route whose redirect code Envoy does not support
/// without an action, and Envoy refuses it (with the rest of that port's routes): it never
/// answers such a code. The route is dropped here, and the request falls through.
#[test]
fn a_redirect_code_envoy_does_not_support_drops_the_route() {
    let s = snap(&format!(
        "{REVIEWS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new, redirectCode: 300}}
  - match: [{{uri: {{prefix: /moved}}}}]
    redirect: {{uri: /new, redirectCode: 308}}
  - route: [{{destination: {{host: reviews}}}}]
"
    ));
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews:9080",
        "/old",
        &h,
    ));
    assert_eq!(d.route_index(), Some(2));
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews:9080",
        "/moved",
        &h,
    ));
    assert_eq!(d.route_index(), Some(1));
    assert!(s
        .routes()
        .errors
        .iter()
        .any(|e| e.contains("redirect code 300 is not supported by Envoy")));
}

/// `redirectCode: 0` is proto3's unset: istiod's `ApplyRedirect` (`case 0, 301`) redirects
/// with 301, and its validation checks the range only for another code.
#[test]
fn redirect_code_zero_is_a_301() {
    let yaml = format!(
        "{REVIEWS}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new, redirectCode: 0}}
  - route: [{{destination: {{host: reviews}}}}]
"
    );
    let loaded = mesh_core::load::load_str(&yaml, "review3.yaml");
    let report = mesh_core::validate::validate_all(&loaded.objects);
    assert!(
        !report.iter().any(|d| d.message.contains("redirect code")),
        "{report:#?}"
    );
    let s = snap(&yaml);
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews:9080",
        "/old",
        &h,
    ));
    assert_eq!(d.route_index(), Some(0));
    assert_eq!(d.action().unwrap().redirect.as_ref().unwrap().code, 301);
}
