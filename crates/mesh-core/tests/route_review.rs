//! Route table against Istio where a review found it diverging: VirtualServices left without
//! routes by the static pre-filters, gateway catch-all ordering, raw query values, the ports
//! a VirtualService host outside the registry applies on, and the MeshConfig defaults
//! (`defaultHttpRetryPolicy`, `default*ExportTo`).

use http::HeaderMap;
use mesh_core::meshconfig::MeshConfig;
use mesh_core::model::Labels;
use mesh_core::names::MeshOptions;
use mesh_core::route::{HttpRequestAttrs, RetryPolicy, RouteOutcome};
use mesh_core::snapshot::Snapshot;

fn snap_with(yaml: &str, opts: MeshOptions) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "review.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let snap = Snapshot::build(&loaded.objects, opts);
    assert!(
        snap.compile_errors().is_empty(),
        "{:?}",
        snap.compile_errors()
    );
    snap
}

fn snap(yaml: &str) -> Snapshot {
    snap_with(yaml, MeshOptions::default())
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (VirtualService, route index, status, first destination host)
fn summary(
    snap: &Snapshot,
    a: &HttpRequestAttrs<'_>,
) -> (Option<String>, Option<usize>, Option<u16>, Option<String>) {
    let d = snap.route_http(a);
    (
        d.virtual_service_name().map(str::to_owned),
        d.route_index(),
        d.status(),
        d.destinations().first().map(|w| w.host.to_string()),
    )
}

const STATIC: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{port: 9080, name: http}, {port: 9090, name: http-admin}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcponly, namespace: default}
spec:
  hosts: [ratings]
  tcp:
  - route: [{destination: {host: ratings, port: {number: 3306}}}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {ports: [{port: 9080, name: http}, {port: 3306, name: tcp-mysql}], selector: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: portonly, namespace: default}
spec:
  hosts: [details]
  http:
  - match: [{port: 9080}]
    route: [{destination: {host: details, subset: v1}}]
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: default}
spec: {ports: [{port: 9080, name: http}, {port: 9090, name: http-admin}], selector: {app: details}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage]
  http:
  - match: [{port: 9080, uri: {prefix: /api}}, {sourceNamespace: prod}]
    route: [{destination: {host: productpage, subset: v1}}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec: {ports: [{port: 9080, name: http}], selector: {app: productpage}}
"#;

/// A mesh VirtualService whose every HTTP route the static pre-filters drop for a client
/// and port has no virtual host there: the service keeps its default route (istiod
/// `buildSidecarVirtualHostsForVirtualService` returns nothing when
/// `BuildHTTPRoutesForVirtualService` builds no route).
#[test]
fn virtual_service_without_surviving_routes_leaves_the_default_route() {
    let s = snap(STATIC);
    let h = HeaderMap::new();
    let productpage = labels(&[("app", "productpage")]);
    let other = labels(&[("app", "other")]);
    let default_route = |host: &str| (None, None, None, Some(host.to_owned()));

    // sourceLabels: the productpage client takes the VS, any other client the default route
    let a = HttpRequestAttrs::new("default", "reviews:9080", "/", &h);
    assert_eq!(
        summary(&s, &a.with_source_labels(&productpage)),
        (
            Some("default/reviews".into()),
            Some(0),
            None,
            Some("reviews.default.svc.cluster.local".into())
        )
    );
    assert_eq!(
        summary(&s, &a.with_source_labels(&other)),
        default_route("reviews.default.svc.cluster.local")
    );
    assert_eq!(
        summary(&s, &a),
        default_route("reviews.default.svc.cluster.local")
    );
    let d = s.route_http(&a.with_source_labels(&other));
    assert_eq!(d.outcome, RouteOutcome::Forward);
    assert_eq!(d.retries(), RetryPolicy::istio_default());

    // a VirtualService with only tcp routes has no HTTP route at all
    let a = HttpRequestAttrs::new("default", "ratings:9080", "/", &h);
    assert_eq!(
        summary(&s, &a),
        default_route("ratings.default.svc.cluster.local")
    );

    // `port: 9080` only: on 9090 the VS has no route
    let a = HttpRequestAttrs::new("default", "details:9090", "/", &h);
    assert_eq!(
        summary(&s, &a),
        default_route("details.default.svc.cluster.local")
    );
    let a = HttpRequestAttrs::new("default", "details:9080", "/", &h);
    assert_eq!(summary(&s, &a).1, Some(0));

    // some match blocks survive: the VS applies, and a request none of them matches is a 404
    let a = HttpRequestAttrs::new("default", "productpage:9080", "/api/x", &h);
    assert_eq!(summary(&s, &a).1, Some(0));
    let a = HttpRequestAttrs::new("default", "productpage:9080", "/other", &h);
    assert_eq!(
        summary(&s, &a),
        (Some("default/productpage".into()), None, Some(404), None)
    );
    // from prod the second block survives (and matches everything)
    let a = HttpRequestAttrs::new("prod", "productpage.default:9080", "/other", &h);
    assert_eq!(summary(&s, &a).1, Some(0));
}

/// Gateways keep Envoy's 404 when the VirtualService bound to them keeps no route: a
/// gateway has no default route.
#[test]
fn gateway_without_surviving_routes_still_answers_404() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8080, name: http-alt, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{port: 8080}]
    route: [{destination: {host: frontend}}]
"#,
    );
    let h = HeaderMap::new();
    let at = |port| {
        let a = HttpRequestAttrs::new("istio-system", "shop.example.com", "/", &h)
            .with_gateway(Some("istio-system/gw"))
            .with_port(port);
        s.route_http(&a).status()
    };
    assert_eq!(at(8080), None);
    assert_eq!(at(80), Some(404));
}

const GW_MERGE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-frontend, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: canary}}]
  - route: [{destination: {host: frontend}}]
  - match: [{uri: {prefix: /dead}}]
    route: [{destination: {host: dead}}]
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
  - match: [{uri: {prefix: /}, method: {exact: POST}}]
    route: [{destination: {host: poster}}]
  - match: [{uri: {prefix: /}}, {uri: {prefix: /late}}]
    route: [{destination: {host: b-catchall}}]
"#;

/// istiod's gateway route configuration merges the VirtualServices of a host and sorts the
/// result with `SortVHostRoutes`: catch-all routes (prefix `/`, no header, query or claim
/// condition; a route without `match` is one) go after all others, in their order; each
/// VirtualService's routes stop at its first catch-all.
#[test]
fn gateway_moves_catch_all_routes_last() {
    let s = snap(GW_MERGE);
    let dest = |method: &str, path: &str, hdrs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in hdrs {
            h.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let a = HttpRequestAttrs::new("istio-system", "shop.example.com", path, &h)
            .with_gateway(Some("istio-system/gw"))
            .with_method(method);
        let d = s.route_http(&a);
        (
            d.virtual_service_name().map(str::to_owned),
            d.destinations()
                .first()
                .map(|w| w.host.split('.').next().unwrap().to_owned()),
        )
    };
    let vs = |v: &str, h: &str| (Some(v.to_owned()), Some(h.to_owned()));
    assert_eq!(dest("GET", "/api/x", &[]), vs("default/b-api", "api"));
    assert_eq!(
        dest("GET", "/api/x", &[("x-canary", "1")]),
        vs("default/a-frontend", "canary")
    );
    // a prefix `/` with a method condition is no catch-all: it keeps its place
    assert_eq!(dest("POST", "/x", &[]), vs("default/b-api", "poster"));
    // the catch-alls, in order: a-frontend's route without match first
    assert_eq!(dest("GET", "/", &[]), vs("default/a-frontend", "frontend"));
    // routes after a VirtualService's first catch-all are never built
    assert_eq!(
        dest("GET", "/dead", &[]),
        vs("default/a-frontend", "frontend")
    );
    assert_eq!(
        dest("GET", "/late", &[]),
        vs("default/a-frontend", "frontend")
    );
}

/// Sidecars do not merge VirtualServices nor sort their routes: the VirtualService's order
/// stands.
#[test]
fn sidecar_keeps_the_virtual_service_order() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com]
  http:
  - match: [{uri: {prefix: /}}]
    route: [{destination: {host: frontend}}]
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
"#,
    );
    let h = HeaderMap::new();
    let a = HttpRequestAttrs::new("default", "shop.example.com", "/api/x", &h);
    assert_eq!(s.route_http(&a).route_index(), Some(0));
}

/// Envoy matches query parameter values as sent: no percent-decoding, no `+` → space
/// (its router parses the query with `parseQueryString`, decode_params=false).
#[test]
fn query_values_are_matched_raw() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - match: [{queryParams: {q: {exact: "a b"}}}]
    directResponse: {status: 201}
  - match: [{queryParams: {q: {exact: "x%20y"}}}]
    directResponse: {status: 202}
  - match: [{queryParams: {p: {regex: "1\\+1"}}}]
    directResponse: {status: 203}
  - directResponse: {status: 299}
"#,
    );
    let h = HeaderMap::new();
    let status = |path| {
        s.route_http(&HttpRequestAttrs::new(
            "default",
            "web.example.com",
            path,
            &h,
        ))
        .status()
    };
    assert_eq!(status("/?q=a%20b"), Some(299));
    assert_eq!(status("/?q=a+b"), Some(299));
    assert_eq!(status("/?q=x%20y"), Some(202));
    assert_eq!(status("/?p=1+1"), Some(203));
    assert_eq!(status("/?p=1%2B1"), Some(299));
}

/// Envoy's `QueryParameterMatcher::matches` tests only the first value of a repeated key
/// (`QueryParamsMulti::getFirstValue`), and `parseQueryString` decodes neither names nor
/// values: `%71` is not `q`, `%2B` is not `+`, `+` is not a space; names are
/// case-sensitive, a name without `=` has the value `""`, and only the first `=` splits.
#[test]
fn query_params_first_value_raw_names() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - match: [{queryParams: {q: {exact: "a"}}}]
    directResponse: {status: 201}
  - match: [{queryParams: {e: {exact: ""}}}]
    directResponse: {status: 202}
  - match: [{queryParams: {p: {exact: "a+b"}}}]
    directResponse: {status: 203}
  - match: [{queryParams: {k: {exact: "x=y"}}}]
    directResponse: {status: 204}
  - match: [{queryParams: {s: {exact: "a%20b"}}}]
    directResponse: {status: 205}
  - directResponse: {status: 299}
"#,
    );
    let h = HeaderMap::new();
    let status = |path| {
        s.route_http(&HttpRequestAttrs::new(
            "default",
            "web.example.com",
            path,
            &h,
        ))
        .status()
    };
    let table = [
        ("/?q=a", 201),
        ("/?x=1&q=a", 201),
        ("/?q=a&q=b", 201),
        // the first value decides, a later matching one is ignored
        ("/?q=b&q=a", 299),
        ("/?%71=a", 299),
        ("/?Q=a", 299),
        ("/?q=%61", 299),
        ("/?e", 202),
        ("/?e=", 202),
        ("/?e=x&e", 299),
        ("/?p=a+b", 203),
        ("/?p=a%2Bb", 299),
        ("/?p=a%2bb", 299),
        ("/?p=a%20b", 299),
        ("/?p=a b", 299),
        ("/?k=x=y", 204),
        ("/?s=a%20b", 205),
        ("/?s=a+b", 299),
        ("/?s=a%2520b", 299),
    ];
    for (path, want) in table {
        assert_eq!(status(path), Some(want), "{path}");
    }
}

const HOSTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dotted, namespace: prod}
spec:
  hosts: [reviews.prod]
  http: [{directResponse: {status: 418}}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: prod}
spec: {ports: [{port: 9080, name: http}], selector: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed, namespace: prod}
spec:
  hosts: [ratings, ratings.corp.example]
  http: [{directResponse: {status: 419}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nowhere, namespace: prod}
spec:
  hosts: [legacy.corp.example]
  http: [{directResponse: {status: 420}}]
"#;

/// A VirtualService host outside the registry gets a virtual host only on port 80, unless
/// the VirtualService also covers a registry service with the port (istiod
/// `separateVSHostsAndServices`, `buildSidecarVirtualHostsForVirtualService`). The client's
/// own short-name expansion (DNS search path) is not a VirtualService host.
#[test]
fn virtual_service_host_outside_the_registry_applies_on_port_80() {
    let s = snap(HOSTS);
    let h = HeaderMap::new();
    let status = |authority| {
        summary(
            &s,
            &HttpRequestAttrs::new("prod", authority, "/reviews/0", &h),
        )
    };
    // `reviews.prod` is not a registry host: on 9080 the service's default route takes the
    // name (the client's search path makes it reviews.prod.svc.cluster.local)
    assert_eq!(
        status("reviews.prod:9080"),
        (
            None,
            None,
            None,
            Some("reviews.prod.svc.cluster.local".into())
        )
    );
    assert_eq!(status("reviews.prod").2, Some(418)); // port 80
    assert_eq!(status("reviews:9080").2, None); // the service itself
                                                // a VirtualService covering a registry service with the port: all its hosts apply there
    assert_eq!(status("ratings:9080").2, Some(419));
    assert_eq!(status("ratings.corp.example:9080").2, Some(419));
    // the name is not a service's, and no service has port 7000: `selectVirtualServices`
    // leaves the VirtualService out of that port's route configuration
    assert_eq!(status("ratings.corp.example:7000").2, None);
    // a VirtualService covering no registry service at all: port 80 only
    assert_eq!(status("legacy.corp.example").2, Some(420));
    assert_eq!(status("legacy.corp.example:8080").2, None);
    assert_eq!(status("legacy.corp.example:9080").2, None);
}

fn mesh_config(yaml: &str) -> MeshOptions {
    MeshOptions::from_mesh_config(&MeshConfig::from_yaml(yaml).unwrap())
}

const SIMPLE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /own}}]
    retries: {attempts: 3}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
"#;

/// MeshConfig `defaultHttpRetryPolicy` is the policy of routes without `retries` and of the
/// default route (istiod `applyHTTPRouteDestination`, `BuildDefaultHTTPOutboundRoute`).
#[test]
fn mesh_default_http_retry_policy() {
    let h = HeaderMap::new();
    let retries = |s: &Snapshot, authority, path| {
        s.route_http(&HttpRequestAttrs::new("default", authority, path, &h))
            .retries()
            .clone()
    };
    // attempts 0: no retries
    let s = snap_with(SIMPLE, mesh_config("defaultHttpRetryPolicy: {attempts: 0}"));
    assert!(!retries(&s, "reviews:9080", "/").enabled());
    assert!(!retries(&s, "ratings:9080", "/").enabled()); // default route, no VS
    assert_eq!(retries(&s, "reviews:9080", "/own").attempts, 3); // the route's own

    let s = snap_with(
        SIMPLE,
        mesh_config(
            "defaultHttpRetryPolicy: {attempts: 5, retryOn: '5xx,503', perTryTimeout: 2s, retryRemoteLocalities: true}",
        ),
    );
    for (authority, path) in [("reviews:9080", "/"), ("ratings:9080", "/")] {
        let r = retries(&s, authority, path);
        assert_eq!(r.attempts, 5, "{authority}");
        assert_eq!(&*r.retry_on, "5xx,retriable-status-codes");
        assert_eq!(&*r.retriable_status_codes, [503]);
        assert_eq!(r.per_try_timeout, Some(std::time::Duration::from_secs(2)));
        assert!(r.retry_remote_localities);
    }
    // `attempts` set, `retryOn` not: Istio's default conditions
    let r = retries(&s, "reviews:9080", "/own");
    assert_eq!(r.attempts, 3);
    assert_eq!(&*r.retry_on, mesh_core::route::DEFAULT_RETRY_ON);

    // the ConfigMap form
    let cm = mesh_core::meshconfig::load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    defaultHttpRetryPolicy:\n      attempts: 1\n",
        "istio.yaml",
    );
    let config = cm.config.expect("valid");
    assert_eq!(config.default_http_retry_policy.unwrap().attempts, 1);
}

/// MeshConfig `defaultVirtualServiceExportTo`, `defaultDestinationRuleExportTo` and
/// `defaultServiceExportTo` replace `*` for objects without `exportTo` (spec §1.5).
#[test]
fn mesh_default_export_to() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - directResponse: {status: 418}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  exportTo: ["*"]
  http:
  - directResponse: {status: 419}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"#;
    let h = HeaderMap::new();
    let status = |s: &Snapshot, ns, authority| {
        s.route_http(&HttpRequestAttrs::new(ns, authority, "/", &h))
            .status()
    };
    // no MeshConfig: everything is exported everywhere
    let s = snap(yaml);
    assert_eq!(status(&s, "other", "reviews.bookinfo:9080"), Some(418));
    assert!(s
        .destination_rule("reviews.bookinfo.svc.cluster.local", "other")
        .is_some());
    assert!(s.registry().service("api.example.com", "other").is_some());
    assert!(s
        .registry()
        .service("reviews.bookinfo.svc.cluster.local", "other")
        .is_some());

    let s = snap_with(
        yaml,
        mesh_config(
            "defaultVirtualServiceExportTo: ['.']\ndefaultDestinationRuleExportTo: ['.']\ndefaultServiceExportTo: ['.']",
        ),
    );
    assert_eq!(status(&s, "other", "reviews.bookinfo:9080"), None);
    assert_eq!(status(&s, "bookinfo", "reviews.bookinfo:9080"), Some(418));
    // an explicit exportTo still wins
    assert_eq!(status(&s, "other", "ratings.bookinfo"), Some(419));
    assert!(s
        .destination_rule("reviews.bookinfo.svc.cluster.local", "other")
        .is_none());
    assert!(s
        .destination_rule("reviews.bookinfo.svc.cluster.local", "bookinfo")
        .is_some());
    assert!(s.registry().service("api.example.com", "other").is_none());
    assert!(s
        .registry()
        .service("api.example.com", "bookinfo")
        .is_some());
    assert!(s
        .registry()
        .service("reviews.bookinfo.svc.cluster.local", "other")
        .is_none());
}
