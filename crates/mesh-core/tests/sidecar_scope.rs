//! Sidecar scoping of VirtualServices (spec §6): a client sees a VirtualService only when
//! its Sidecar's egress listener for the port imports it by the VirtualService's own
//! namespace and one of its hosts. Bookinfo's YAML, as Istio's samples ship it, lives in the
//! `bookinfo` namespace; the clients' Sidecars are ours.

use std::path::{Path, PathBuf};

use http::HeaderMap;
use mesh_core::load::{LoadOptions, Loader};
use mesh_core::model::Labels;
use mesh_core::names::MeshOptions;
use mesh_core::route::{HttpRequestAttrs, L4Attrs};
use mesh_core::snapshot::Snapshot;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples")
}

/// Bookinfo (Services, DestinationRules, reviews to v3) in `bookinfo`, plus `extra`.
fn bookinfo_with(extra: &str) -> Snapshot {
    let loader = Loader::new(LoadOptions {
        default_namespace: "bookinfo".into(),
        ..LoadOptions::default()
    });
    let mut loaded = loader
        .load_paths(
            [
                "bookinfo/platform-kube/bookinfo.yaml",
                "bookinfo/networking/destination-rule-all.yaml",
                "bookinfo/networking/virtual-service-reviews-v3.yaml",
            ]
            .iter()
            .map(|f| samples().join(f)),
        )
        .unwrap();
    loaded.extend(loader.load_str(extra, "sidecars.yaml"));
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let invalid: Vec<_> = mesh_core::validate::validate_all(&loaded.objects)
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
    let snap = Snapshot::build(&loaded.objects, MeshOptions::default());
    assert!(
        snap.compile_errors().is_empty(),
        "{:?}",
        snap.compile_errors()
    );
    snap
}

fn labels(v: &[(&str, &str)]) -> Labels {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (VirtualService, subsets of the destinations) for a GET from `ns` with `labels`.
fn route(snap: &Snapshot, ns: &str, l: &Labels, authority: &str) -> (Option<String>, Vec<String>) {
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new(ns, authority, "/", &h).with_source_labels(l));
    (
        d.virtual_service_name().map(str::to_owned),
        d.destinations()
            .iter()
            .map(|w| w.subset.as_deref().unwrap_or("-").to_owned())
            .collect(),
    )
}

const REVIEWS: &str = "reviews.bookinfo.svc.cluster.local:9080";

/// Whether a client of `ns` with labels `l` reaches `host` on `port`, as the mesh client
/// checks it: the registry's service for the host, imported by the client's Sidecar.
fn reachable(snap: &Snapshot, ns: &str, l: &Labels, host: &str, port: u16) -> bool {
    let svc = snap.registry().service(host, ns).expect("a service");
    snap.sidecar_for(ns, l)
        .is_none_or(|sc| sc.imports(ns, &svc.namespace, &svc.hostname, port))
}

#[test]
fn own_namespace_sidecar_hides_another_namespace_virtual_service() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: checkout, namespace: shop}
spec:
  workloadSelector: {labels: {app: checkout}}
  egress:
  - hosts: ["./*", "bookinfo/*"]
"#,
    );
    let web = labels(&[("app", "web")]);
    let checkout = labels(&[("app", "checkout")]);
    // shop's default Sidecar imports only shop's config: default routing, no subset
    assert_eq!(
        route(&snap, "shop", &web, REVIEWS),
        (None, vec!["-".into()])
    );
    // the checkout workload's Sidecar imports bookinfo's: reviews goes to v3
    assert_eq!(
        route(&snap, "shop", &checkout, REVIEWS),
        (Some("bookinfo/reviews".into()), vec!["v3".into()])
    );
    // a namespace without a Sidecar sees every exported VirtualService
    assert_eq!(
        route(&snap, "web", &web, REVIEWS),
        (Some("bookinfo/reviews".into()), vec!["v3".into()])
    );
    // bookinfo's own workloads are not scoped either
    assert_eq!(
        route(&snap, "bookinfo", &Labels::new(), "reviews:9080")
            .0
            .as_deref(),
        Some("bookinfo/reviews")
    );
}

#[test]
fn the_namespace_part_is_the_virtual_service_namespace_not_the_service_one() {
    // a VirtualService in shop for bookinfo's reviews: imported by `./*`, although the
    // service itself lives in bookinfo
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-for-shop, namespace: shop}
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews.bookinfo.svc.cluster.local, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: blog}
spec:
  egress:
  - hosts: ["./reviews.bookinfo.svc.cluster.local"]
"#,
    );
    assert_eq!(
        route(&snap, "shop", &Labels::new(), REVIEWS),
        (Some("shop/reviews-for-shop".into()), vec!["v1".into()])
    );
    // `./reviews...` from blog names blog's config: bookinfo's VirtualService is not imported
    assert_eq!(route(&snap, "blog", &Labels::new(), REVIEWS).0, None);
}

#[test]
fn per_port_listeners_select_per_port() {
    let snap = bookinfo_with(
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews-admin, namespace: bookinfo}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 8080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-admin, namespace: bookinfo}
spec:
  hosts: [reviews-admin]
  http: [{route: [{destination: {host: reviews-admin, subset: v2}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-admin, namespace: bookinfo}
spec: {host: reviews-admin, subsets: [{name: v2, labels: {version: v2}}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["bookinfo/*"]
  - hosts: ["./*"]
"#,
    );
    let none = Labels::new();
    let admin = "reviews-admin.bookinfo.svc.cluster.local";
    // 9080: the port's own listener imports bookinfo's VirtualServices
    assert_eq!(
        route(&snap, "shop", &none, &format!("{admin}:9080"))
            .0
            .as_deref(),
        Some("bookinfo/reviews-admin")
    );
    // 8080: the catch-all listener, which imports only shop's
    assert_eq!(
        route(&snap, "shop", &none, &format!("{admin}:8080")).0,
        None
    );
}

#[test]
fn root_namespace_default_dot_is_each_client_namespace() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
"#,
    );
    // for bookinfo's workloads `.` is bookinfo: its VirtualService applies
    assert_eq!(
        route(&snap, "bookinfo", &Labels::new(), "reviews:9080")
            .0
            .as_deref(),
        Some("bookinfo/reviews")
    );
    // for shop's it is shop
    assert_eq!(route(&snap, "shop", &Labels::new(), REVIEWS).0, None);
}

#[test]
fn wildcards_match_either_way_and_the_most_specific_imported_vs_wins() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: egress}
spec:
  hosts: [api.example.com, www.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: egress}
spec:
  hosts: [api.example.com]
  http: [{route: [{destination: {host: api.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: all-example, namespace: platform}
spec:
  hosts: ["*.example.com"]
  http: [{route: [{destination: {host: www.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress:
  - hosts: ["*/*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec:
  egress:
  - hosts: ["platform/api.example.com"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: c}
spec:
  egress:
  - hosts: ["egress/www.example.com", "platform/other.org"]
"#,
    );
    let none = Labels::new();
    // `*.example.com` imports both: the exact host's VirtualService is the most specific
    assert_eq!(
        route(&snap, "a", &none, "api.example.com").0.as_deref(),
        Some("egress/api")
    );
    // only platform's wildcard VirtualService is imported (`api.example.com` overlaps it);
    // it routes to www.example.com, which the Sidecar therefore imports, and istiod's
    // `separateVSHostsAndServices` gives its `*.example.com` to that service alone: no
    // virtual host routes api.example.com by it
    assert_eq!(route(&snap, "b", &none, "api.example.com").0, None);
    assert_eq!(
        route(&snap, "b", &none, "www.example.com").0.as_deref(),
        Some("platform/all-example")
    );
    // neither: egress/api has no host matching www.example.com, platform's is not imported
    assert_eq!(route(&snap, "c", &none, "api.example.com").0, None);
}

#[test]
fn export_to_still_applies_and_empty_egress_imports_everything() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  exportTo: ["."]
  http: [{route: [{destination: {host: ratings, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["*/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: blog}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
"#,
    );
    let none = Labels::new();
    let ratings = "ratings.bookinfo.svc.cluster.local:9080";
    // imported by `*/*` but exported to bookinfo only
    assert_eq!(route(&snap, "shop", &none, ratings).0, None);
    assert_eq!(
        route(&snap, "shop", &none, REVIEWS).0.as_deref(),
        Some("bookinfo/reviews")
    );
    // a Sidecar without egress listeners gets istiod's `*/*` one
    assert_eq!(
        route(&snap, "blog", &none, REVIEWS).0.as_deref(),
        Some("bookinfo/reviews")
    );
    let scope = snap.sidecar_for("blog", &none).unwrap();
    assert!(scope.imports(
        "blog",
        "bookinfo",
        "reviews.bookinfo.svc.cluster.local",
        9080
    ));
}

#[test]
fn tcp_and_tls_routes_are_scoped_too() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: data}
spec:
  hosts: [db.internal]
  tcp: [{route: [{destination: {host: db-replica.internal}}]}]
  tls:
  - match: [{port: 443, sniHosts: [db.internal]}]
    route: [{destination: {host: db-replica.internal}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*"]
"#,
    );
    let tcp = |ns| {
        let a = L4Attrs {
            sni: Some("db.internal"),
            ..L4Attrs::new(ns, 5432)
        };
        snap.route_tcp(&a)
            .virtual_service
            .map(|v| v.name.to_string())
    };
    let tls = |ns| {
        let a = L4Attrs {
            sni: Some("db.internal"),
            ..L4Attrs::new(ns, 443)
        };
        snap.route_tls(&a)
            .virtual_service
            .map(|v| v.name.to_string())
    };
    assert_eq!(tcp("web").as_deref(), Some("data/db"));
    assert_eq!(tcp("shop"), None);
    assert_eq!(tls("web").as_deref(), Some("data/db"));
    assert_eq!(tls("shop"), None);
}

#[test]
fn gateways_are_not_scoped_by_sidecars() {
    let loader = Loader::new(LoadOptions::default());
    let mut loaded = loader
        .load_paths([samples().join("bookinfo/networking/bookinfo-gateway.yaml")])
        .unwrap();
    loaded.extend(loader.load_str(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["~/*"]
"#,
        "sc.yaml",
    ));
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let snap = Snapshot::build(&loaded.objects, MeshOptions::default());
    let h = HeaderMap::new();
    let attrs = HttpRequestAttrs::new("default", "bookinfo.example.com", "/productpage", &h)
        .with_gateway(Some("default/bookinfo-gateway"))
        .with_port(8080);
    assert_eq!(
        snap.route_http(&attrs).virtual_service_name(),
        Some("default/bookinfo")
    );
}

#[test]
fn an_imported_virtual_service_imports_the_services_it_routes_to() {
    // the mesh default imports the root namespace's config; a VirtualService there sends
    // ratings traffic to bookinfo, whose services `./*` does not import elsewhere
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: istio-system}
spec:
  hosts: [ratings.bookinfo.svc.cluster.local]
  http:
  - match: [{sourceNamespace: blog}]
    route: [{destination: {host: details.bookinfo.svc.cluster.local}}]
  - route: [{destination: {host: ratings.bookinfo.svc.cluster.local, subset: v1}}]
"#,
    );
    let none = Labels::new();
    let host = |s: &str| format!("{s}.bookinfo.svc.cluster.local");
    let ratings = "ratings.bookinfo.svc.cluster.local:9080";
    assert_eq!(
        route(&snap, "shop", &none, ratings),
        (Some("istio-system/ratings".into()), vec!["v1".into()])
    );
    assert!(reachable(&snap, "shop", &none, &host("ratings"), 9080));
    // bookinfo's own VirtualService and services stay out of shop's scope
    assert_eq!(route(&snap, "shop", &none, REVIEWS).0, None);
    assert!(!reachable(&snap, "shop", &none, &host("reviews"), 9080));
    // the route for blog's clients imports details for them only
    assert!(!reachable(&snap, "shop", &none, &host("details"), 9080));
    assert!(reachable(&snap, "blog", &none, &host("details"), 9080));
    assert!(reachable(&snap, "blog", &none, &host("ratings"), 9080));
    // and bookinfo's clients import their namespace anyway
    assert!(reachable(&snap, "bookinfo", &none, &host("reviews"), 9080));
}

#[test]
fn a_listener_with_a_port_imports_routed_services_on_that_port() {
    let snap = bookinfo_with(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["istio-system/*"]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: shop}
spec:
  workloadSelector: {labels: {app: cart}}
  egress:
  - port: {number: 8080, protocol: HTTP, name: http}
    hosts: ["istio-system/*"]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: istio-system}
spec:
  hosts: [front.example.com]
  http:
  - route: [{destination: {host: productpage.bookinfo.svc.cluster.local, port: {number: 9080}}}]
    mirror: {host: details.bookinfo.svc.cluster.local}
"#,
    );
    let none = Labels::new();
    let cart = labels(&[("app", "cart")]);
    let host = |s: &str| format!("{s}.bookinfo.svc.cluster.local");
    assert!(reachable(&snap, "shop", &none, &host("productpage"), 9080));
    assert!(reachable(&snap, "shop", &none, &host("details"), 9080)); // mirrors count
    assert!(!reachable(&snap, "shop", &none, &host("details"), 8080));
    assert!(!reachable(&snap, "shop", &none, &host("reviews"), 9080));
    // bookinfo's services have no port 8080: the 8080 listener imports none of them
    assert!(!reachable(&snap, "shop", &cart, &host("productpage"), 9080));
    assert!(!reachable(&snap, "shop", &cart, &host("productpage"), 8080));
    assert!(!reachable(&snap, "shop", &cart, &host("details"), 9080));
}

/// istiod's `separateVSHostsAndServices` without a Sidecar too: a wildcard VirtualService
/// host that covers services on the port gives its routes to those services only; a name
/// under it that no service has is not routed by it (it passes through), while on a port
/// none of those services has, the wildcard is a virtual host of its own only on port 80.
#[test]
fn a_wildcard_host_covering_services_routes_only_them_without_a_sidecar() {
    let snap = mesh_core::mesh::Mesh::from_yaml(
        "apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec: {ports: [{port: 8000, name: http}], selector: {app: httpbin}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: default}
spec:
  hosts: ['*.svc.cluster.local']
  http: [{directResponse: {status: 418}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: default}
spec:
  hosts: ['*.example.com']
  http: [{directResponse: {status: 419}}]
",
    )
    .unwrap()
    .snapshot();
    let h = http::HeaderMap::new();
    let status = |authority: &str| {
        let d = snap.route_http(&mesh_core::route::HttpRequestAttrs::new(
            "default", authority, "/", &h,
        ));
        (d.virtual_service_name().map(str::to_owned), d.status())
    };
    // the service itself takes the wildcard's routes
    assert_eq!(
        status("httpbin:8000"),
        (Some("default/wild".into()), Some(418))
    );
    // another name under the wildcard, on the service's port: not routed by it
    assert_eq!(status("other.default.svc.cluster.local:8000"), (None, None));
    // port 80: no service under the wildcard has it, so the wildcard is its own virtual host
    assert_eq!(
        status("other.default.svc.cluster.local"),
        (Some("default/wild".into()), Some(418))
    );
    // a wildcard covering no service: port 80 only
    assert_eq!(
        status("api.example.com"),
        (Some("default/ext".into()), Some(419))
    );
    assert_eq!(status("api.example.com:8443"), (None, None));
}

/// istiod's `mostSpecificWildcardVsIndex`: a VirtualService's own non-service hosts get
/// virtual hosts on a port other than 80 only where it routes a service (one whose most
/// specific VirtualService it is); a wildcard covering any service on the port is never a
/// virtual host of its own, even when those services belong to a more specific one.
#[test]
fn non_service_hosts_follow_the_most_specific_virtual_service_index() {
    let yaml = |port: u16, with_a: bool| {
        let mut y = format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: a, namespace: default}}
spec: {{hosts: [a.foo.com], ports: [{{number: {port}, name: http, protocol: HTTP}}], resolution: DNS}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: default}}
spec:
  hosts: ['*.foo.com', legacy.corp]
  http: [{{directResponse: {{status: 418}}}}]
"
        );
        if with_a {
            y.push_str(
                "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.foo.com]
  http: [{directResponse: {status: 419}}]
",
            );
        }
        mesh_core::mesh::Mesh::from_yaml(&y).unwrap().snapshot()
    };
    let h = http::HeaderMap::new();
    let route = |snap: &mesh_core::snapshot::Snapshot, authority: &str| {
        let d = snap.route_http(&mesh_core::route::HttpRequestAttrs::new(
            "default", authority, "/", &h,
        ));
        (d.virtual_service_name().map(str::to_owned), d.status())
    };
    // wild is a.foo.com's VirtualService on 8080: its other host is routed there too
    let snap = yaml(8080, false);
    assert_eq!(route(&snap, "a.foo.com:8080").1, Some(418));
    assert_eq!(route(&snap, "legacy.corp:8080").1, Some(418));
    // `a` is more specific for a.foo.com: wild routes no service on 8080, so neither
    let snap = yaml(8080, true);
    assert_eq!(route(&snap, "a.foo.com:8080").1, Some(419));
    assert_eq!(route(&snap, "legacy.corp:8080"), (None, None));
    assert_eq!(route(&snap, "legacy.corp").1, Some(418)); // port 80
                                                          // on 80: `*.foo.com` covers a service there, so b.foo.com is not routed by it
    let snap = yaml(80, true);
    assert_eq!(route(&snap, "b.foo.com"), (None, None));
    assert_eq!(route(&snap, "a.foo.com").1, Some(419));
}
