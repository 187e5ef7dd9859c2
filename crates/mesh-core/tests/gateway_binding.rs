//! Gateway route configurations as istiod builds them (pilot `buildGatewayHTTPRouteConfig`,
//! `MergeGateways`, `gatewayRDSRouteName`, `VirtualServicesForGateway`): which
//! VirtualService a request at a gateway reaches.

use mesh_core::gateway::{http_route_name, https_route_name};
use mesh_core::mesh::Mesh;
use mesh_core::model::Labels;
use mesh_core::route::{HttpRequestAttrs, L4Attrs};
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> std::sync::Arc<Snapshot> {
    Mesh::from_yaml(yaml).unwrap().snapshot()
}

fn ingress() -> Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

/// The VirtualService a request for `authority` at `gateway` (a Gateway list or a route
/// configuration name) on `port` reaches, from a gateway workload in `ns`.
fn vs_at(s: &Snapshot, ns: &str, gateway: &str, port: u16, authority: &str) -> Option<String> {
    let h = http::HeaderMap::new();
    let labels = ingress();
    let mut a = HttpRequestAttrs::new(ns, authority, "/", &h)
        .with_gateway(Some(gateway))
        .with_source_labels(&labels);
    a.port = port;
    let d = s.route_http(&a);
    d.destinations()
        .first()
        .and(d.virtual_service_name().map(str::to_owned))
}

const TWO_HTTPS: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-secure, protocol: HTTPS}
    hosts: [secure.example.com]
    tls: {mode: MUTUAL, credentialName: secure-cred}
  - port: {number: 443, name: https-public, protocol: HTTPS}
    hosts: [public.example.com]
    tls: {mode: SIMPLE, credentialName: public-cred}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: admin}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: public, namespace: default}
spec:
  hosts: [public.example.com]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: web}}]}]
";

#[test]
fn each_https_server_has_its_own_route_configuration() {
    let s = snap(TWO_HTTPS);
    let public = https_route_name(443, "https-public", "istio-system/gw");
    let secure = https_route_name(443, "https-secure", "istio-system/gw");
    assert_eq!(public, "https.443.https-public.gw.istio-system");
    let at = |route: &str, host| vs_at(&s, "istio-system", route, 443, host);
    assert_eq!(
        at(&public, "public.example.com").as_deref(),
        Some("default/public")
    );
    // the SIMPLE server's SNI does not reach the MUTUAL server's host
    assert_eq!(at(&public, "secure.example.com"), None);
    assert_eq!(
        at(&secure, "secure.example.com").as_deref(),
        Some("default/secure")
    );
    assert_eq!(at(&secure, "public.example.com"), None);
    // a Gateway name on a TLS port: the server the Host would be the SNI of
    assert_eq!(
        at("istio-system/gw", "secure.example.com").as_deref(),
        Some("default/secure")
    );
    // the server an SNI picks
    let routes = s.routes();
    assert_eq!(
        routes.gateway_https_route("istio-system/gw", 443, Some("PUBLIC.example.com")),
        Some(public.as_str())
    );
    assert_eq!(
        routes.gateway_https_route("istio-system/gw", 443, None),
        None
    );
    assert_eq!(
        routes.gateway_https_route("istio-system/gw", 8443, Some("public.example.com")),
        None
    );
}

const MERGED: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-a, namespace: team-a}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [a.example.com]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-b, namespace: team-b}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-b, namespace: team-b}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [gw-b]
  http: [{route: [{destination: {host: b}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-c, namespace: team-c}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-d, namespace: team-d}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-d, namespace: team-d}
spec:
  hosts: [d.example.com]
  gateways: [gw-d]
  http:
  # bound to both Gateways, this route only through gw-c: match `gateways` see the
  # Gateway each contribution comes through
  - match: [{gateways: [team-c/gw-c], uri: {prefix: /c}}]
    route: [{destination: {host: c}}]
  - route: [{destination: {host: d}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: elsewhere, namespace: team-e}
spec:
  selector: {istio: other}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-e, namespace: team-e}
spec:
  hosts: [e.example.com]
  gateways: [elsewhere]
  http: [{route: [{destination: {host: e}}]}]
";

#[test]
fn plain_http_servers_merge_across_the_workloads_gateways() {
    let s = snap(MERGED);
    let at = |route: &str, port, host| vs_at(&s, "istio-system", route, port, host);
    let http80 = http_route_name(80);
    // gw-a's exact host has no VirtualService; gw-b's virtual host for it routes
    assert_eq!(
        at(&http80, 80, "a.example.com").as_deref(),
        Some("team-b/vs-b")
    );
    assert_eq!(
        at(&http80, 80, "b.example.com:80").as_deref(),
        Some("team-b/vs-b")
    );
    // a Gateway not selecting the workload contributes nothing
    assert_eq!(at(&http80, 80, "e.example.com"), None);
    // the same with the Gateways listed
    let listed = "team-a/gw-a,team-b/gw-b";
    assert_eq!(
        at(listed, 80, "a.example.com").as_deref(),
        Some("team-b/vs-b")
    );
    assert_eq!(at("team-a/gw-a", 80, "a.example.com"), None);
    assert_eq!(
        at("team-e/elsewhere", 80, "e.example.com").as_deref(),
        Some("team-e/vs-e")
    );
    // 8080: gw-c and gw-d both `*`; vs-d bound to gw-d only
    assert_eq!(
        at(&http_route_name(8080), 8080, "d.example.com").as_deref(),
        Some("team-d/vs-d")
    );
    assert_eq!(at("team-c/gw-c", 8080, "d.example.com"), None);
}

#[test]
fn match_gateways_see_the_gateway_each_contribution_comes_through() {
    let yaml = MERGED.replace("gateways: [gw-d]", "gateways: [gw-d, team-c/gw-c]");
    let s = snap(&yaml);
    let h = http::HeaderMap::new();
    let labels = ingress();
    let dest = |route: &str| {
        let mut a = HttpRequestAttrs::new("istio-system", "d.example.com", "/c", &h)
            .with_gateway(Some(route))
            .with_source_labels(&labels);
        a.port = 8080;
        let d = s.route_http(&a);
        d.destinations().first().map(|w| w.host.to_string())
    };
    // merged: gw-c's server contributes first (load order), its route matches through it
    assert_eq!(
        dest("http.8080").as_deref(),
        Some("c.team-d.svc.cluster.local")
    );
    assert_eq!(
        dest("team-d/gw-d").as_deref(),
        Some("d.team-d.svc.cluster.local")
    );
}

#[test]
fn binding_uses_namespace_scoped_server_hosts_intersected_with_vs_hosts() {
    let s = snap(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['ns1/*', '*.example.com', './own.example.org', '*/any.example.org']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs2, namespace: ns2}
spec:
  hosts: ['*']
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: two}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs3, namespace: ns2}
spec:
  hosts: ['*.wild.com']
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: three}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs1, namespace: ns1}
spec:
  hosts: [foo.com, '*.wild.com']
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: one}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sys, namespace: istio-system}
spec:
  hosts: [own.example.org, other.example.org]
  gateways: [gw]
  http: [{route: [{destination: {host: sys}}]}]
",
    );
    let at = |host| vs_at(&s, "istio-system", "istio-system/gw", 80, host);
    // vs2's `*` meets `*.example.com` only (`ns1/*` admits ns1): the narrower name
    assert_eq!(at("x.example.com").as_deref(), Some("ns2/vs2"));
    assert_eq!(at("any.example.org").as_deref(), Some("ns2/vs2"));
    assert_eq!(at("x.wild.com").as_deref(), Some("ns1/vs1"));
    assert_eq!(at("foo.com").as_deref(), Some("ns1/vs1"));
    assert_eq!(at("bar.com"), None);
    // `./` is the Gateway's namespace: only istio-system's VirtualService binds for it
    assert_eq!(at("own.example.org").as_deref(), Some("istio-system/sys"));
    assert_eq!(at("other.example.org"), None);
}

#[test]
fn export_to_is_checked_against_the_gateway_workloads_namespace() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private-app, namespace: app}
spec:
  hosts: [a.example.com]
  exportTo: ['.']
  gateways: [gw]
  http: [{route: [{destination: {host: a}}]}]
  tls: [{match: [{sniHosts: [a.example.com]}], route: [{destination: {host: a}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private-sys, namespace: istio-system}
spec:
  hosts: [b.example.com]
  exportTo: ['.']
  gateways: [app/gw]
  http: [{route: [{destination: {host: b}}]}]
  tls: [{match: [{sniHosts: [b.example.com]}], route: [{destination: {host: b}}]}]
";
    let s = snap(yaml);
    // a gateway workload in istio-system implementing app/gw
    assert_eq!(
        vs_at(&s, "istio-system", "app/gw", 80, "a.example.com"),
        None
    );
    assert_eq!(
        vs_at(&s, "istio-system", "app/gw", 80, "b.example.com").as_deref(),
        Some("istio-system/private-sys")
    );
    // one in app
    assert_eq!(
        vs_at(&s, "app", "app/gw", 80, "a.example.com").as_deref(),
        Some("app/private-app")
    );
    assert_eq!(vs_at(&s, "app", "app/gw", 80, "b.example.com"), None);
    // TLS passthrough routes alike
    let tls = |ns, sni| {
        let mut a = L4Attrs::new(ns, 443);
        a.gateway = Some("app/gw");
        a.sni = Some(sni);
        s.route_tls(&a).virtual_service.map(|v| v.name.to_string())
    };
    assert_eq!(tls("istio-system", "a.example.com"), None);
    assert_eq!(
        tls("istio-system", "b.example.com").as_deref(),
        Some("istio-system/private-sys")
    );
}

#[test]
fn https_redirect_is_a_property_of_the_virtual_host() {
    let s = snap(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: redirect, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [secure.example.com, 'ns1/scoped.example.com']
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: plain, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: ns1}
spec:
  hosts: [secure.example.com, scoped.example.com, www.example.com]
  gateways: [istio-system/plain, istio-system/redirect]
  http: [{route: [{destination: {host: web}}]}]
",
    );
    let h = http::HeaderMap::new();
    let labels = ingress();
    let tls = |host| {
        let mut a = HttpRequestAttrs::new("istio-system", host, "/", &h)
            .with_gateway(Some("http.80"))
            .with_source_labels(&labels);
        a.port = 80;
        s.routes().gateway_requires_tls(&a)
    };
    // the redirecting server contributes to the merged virtual host: it requires TLS
    assert_eq!(tls("secure.example.com"), Some(true));
    assert_eq!(tls("scoped.example.com"), Some(true));
    assert_eq!(tls("www.example.com"), Some(false));
    assert_eq!(tls("example.org"), None);
    // mesh traffic has no gateway virtual host
    let a = HttpRequestAttrs::new("istio-system", "secure.example.com", "/", &h);
    assert_eq!(s.routes().gateway_requires_tls(&a), None);
}
