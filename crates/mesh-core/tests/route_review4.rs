//! Route table against istiod where a fourth review (replaying istio.io's traffic tasks)
//! found it diverging.

use mesh_core::names::MeshOptions;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "review4.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, MeshOptions::default())
}

/// istio.io "Egress using Wildcard Hosts": an `https` request to a host of the wildcard
/// (`en.wikipedia.org`) that the registry does not know takes the `tls` route whose
/// `sniHosts` cover it, to the egress gateway, as Envoy's `*.wikipedia.org` filter chain
/// on port 443 does; it neither goes straight out nor to the `http` routes.
#[test]
fn https_to_a_host_of_a_wildcard_takes_its_tls_route() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  ports: [{name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: www-wikipedia, namespace: default}
spec:
  hosts: [www.wikipedia.org]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wikipedia-through-egress-gateway, namespace: default}
spec:
  hosts: ['*.wikipedia.org']
  gateways: [mesh]
  tls:
  - match: [{gateways: [mesh], sniHosts: ['*.wikipedia.org']}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}
",
    );
    let h = http::HeaderMap::new();
    for host in ["en.wikipedia.org", "de.wikipedia.org", "www.wikipedia.org"] {
        let attrs = HttpRequestAttrs::new("default", host, "/wiki/Main_Page", &h)
            .with_scheme("https")
            .with_port(443);
        let d = s.route_http(&attrs);
        assert_eq!(
            d.virtual_service_name(),
            Some("default/wikipedia-through-egress-gateway"),
            "{host}"
        );
        assert_eq!(d.tls_route, Some(0), "{host}");
        assert_eq!(
            d.destinations()[0].host.as_ref(),
            "istio-egressgateway.istio-system.svc.cluster.local"
        );
    }
    // a port no service the VirtualService covers declares TLS: istiod builds no SNI
    // filter chain there (even for a `tls` match without a port)
    let on_8443 = s.route_http(
        &HttpRequestAttrs::new("default", "en.wikipedia.org:8443", "/", &h)
            .with_scheme("https")
            .with_port(8443),
    );
    assert_eq!(on_8443.tls_route, None);
    // outside the wildcard: no route
    let attrs = HttpRequestAttrs::new("default", "example.org", "/", &h)
        .with_scheme("https")
        .with_port(443);
    assert_eq!(s.route_http(&attrs).virtual_service_name(), None);
}

const TCP_ECHO: &str = "apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000}, {name: tcp-other, port: 9001}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
";

/// A port the service declares TCP has a TCP proxy at a sidecar, no HTTP route
/// configuration (istiod groups virtual hosts by the ports that `IsHTTPOrSniffed`): bytes
/// sent there, an HTTP request too, follow the `tcp` routes (istio.io TCP traffic
/// shifting's 80/20), never the `http` routes, and nothing retries them.
#[test]
fn http_to_a_port_declared_tcp_follows_the_tcp_routes() {
    let vs = |routes: &str| {
        snap(&format!(
            "{TCP_ECHO}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: [tcp-echo]
{routes}"
        ))
    };
    let h = http::HeaderMap::new();
    let attrs = HttpRequestAttrs::new("default", "tcp-echo:9000", "/", &h);
    let shifted = vs("  tcp:
  - match: [{port: 9000}]
    route:
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 20}
");
    let d = shifted.route_http(&attrs);
    assert!(d.opaque);
    assert_eq!(
        (d.virtual_service_name(), d.tcp_route, d.route_index()),
        (Some("default/tcp-echo"), Some(0), None)
    );
    let split: Vec<_> = d
        .destinations()
        .iter()
        .map(|w| (w.subset.as_deref().unwrap(), w.weight))
        .collect();
    assert_eq!(split, [("v1", 80), ("v2", 20)]);
    assert_eq!(d.retries().attempts, 0);
    // the tcp route is for 9000 only: on 9001 the service itself
    let d = shifted.route_http(&HttpRequestAttrs::new("default", "tcp-echo:9001", "/", &h));
    assert!(d.opaque && d.virtual_service_name().is_none());
    assert_eq!(d.destinations()[0].subset, None);

    // `http` routes never apply there
    let http_only = vs(
        "  http: [{route: [{destination: {host: tcp-echo, subset: v2, port: {number: 9000}}}]}]
",
    );
    let d = http_only.route_http(&attrs);
    assert!(d.opaque);
    assert_eq!((d.virtual_service_name(), d.tcp_route), (None, None));
    assert_eq!(d.destinations()[0].subset, None);
    // ...but on port 80, istiod's virtual host for VirtualServices whose hosts cover no
    // HTTP port of a registry service, they do
    let d = http_only.route_http(&HttpRequestAttrs::new("default", "tcp-echo:80", "/", &h));
    assert!(!d.opaque);
    assert_eq!(d.virtual_service_name(), Some("default/tcp-echo"));
}

/// istiod's route configuration `80` sees only the services declaring port 80
/// (`BuildSidecarOutboundVirtualHosts`), so a VirtualService for `reviews` (9080) gets a
/// virtual host there through its special case for hosts it finds no service for:
/// `reviews:80` takes it, as `reviews:9080` does; other ports do not.
#[test]
fn port_80_takes_the_virtual_service_of_a_service_without_port_80() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v3}}]}]
",
    );
    let h = http::HeaderMap::new();
    let vs_of = |authority: &str| {
        s.route_http(&HttpRequestAttrs::new("default", authority, "/", &h))
            .virtual_service_name()
            .map(str::to_owned)
    };
    assert_eq!(vs_of("reviews:9080").as_deref(), Some("default/reviews"));
    assert_eq!(vs_of("reviews:80").as_deref(), Some("default/reviews"));
    assert_eq!(vs_of("reviews:8080"), None);
}

/// A wildcard ServiceEntry's TCP port is a TCP proxy too (istiod's `0.0.0.0:<port>`
/// listener): a request to one of its hosts follows its `tcp` routes, else goes where the
/// host as asked goes.
#[test]
fn a_wildcard_service_entrys_tcp_port_is_a_connection() {
    let yaml = |routes: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: dbs, namespace: default}}
spec:
  hosts: ['*.db.internal']
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: dbs, namespace: default}}
spec:
  hosts: ['*.db.internal']
  http: [{{route: [{{destination: {{host: http.db.internal}}}}]}}]
{routes}"
        )
    };
    let h = http::HeaderMap::new();
    let attrs = HttpRequestAttrs::new("default", "a.db.internal:5432", "/", &h);
    let s = snap(&yaml(
        "  tcp: [{route: [{destination: {host: proxy.db.internal, port: {number: 5432}}}]}]\n",
    ));
    let d = s.route_http(&attrs);
    assert!(d.opaque);
    assert_eq!(d.tcp_route, Some(0));
    assert_eq!(d.destinations()[0].host.as_ref(), "proxy.db.internal");
    let s = snap(&yaml(""));
    let d = s.route_http(&attrs);
    assert!(d.opaque);
    assert_eq!((d.tcp_route, d.host.as_ref()), (None, "a.db.internal"));
    assert_eq!(d.destinations()[0].host.as_ref(), "a.db.internal");
}

/// A UDP port (Istio serves none) does not hide the TCP port of the same number: kube-dns's
/// `dns` (UDP 53) and `dns-tcp` (TCP 53, named for no protocol: a well-known port, TCP).
#[test]
fn a_udp_port_does_not_hide_the_tcp_port_of_the_same_number() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec:
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
",
    );
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "kube-system",
        "kube-dns:53",
        "/",
        &h,
    ));
    assert!(d.opaque, "{d:?}");
}

/// proto3 zero values are unset to istiod: a match `port: 0` or `sourceNamespace: ""`
/// restricts nothing (and a delegate's inherits the root's), and validation accepts them.
#[test]
fn zero_valued_match_fields_are_unset() {
    let yaml = "apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec: {ports: [{port: 8080, name: http}, {port: 9090, name: http-b}], selector: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [productpage]
  http:
  - match: [{port: 0, sourceNamespace: ''}]
    route: [{destination: {host: productpage.org}}]
  - route: [{destination: {host: example.org}}]
";
    let l = mesh_core::load::load_str(yaml, "vs.yaml");
    let d = mesh_core::validate::validate_all(&l.objects);
    assert!(d.iter().all(|d| !d.is_error()), "{d:#?}");
    let s = snap(yaml);
    let h = http::HeaderMap::new();
    for port in [8080, 9090] {
        let attrs = HttpRequestAttrs::new("default", "productpage", "/a", &h).with_port(port);
        let d = s.route_http(&attrs);
        assert_eq!(&*d.destinations()[0].host, "productpage.org", "{port}");
    }
}

/// Envoy's `newUri`: a redirect path that does not start with `/` gets one.
#[test]
fn a_redirect_uri_without_slash_gets_one() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{port: 8080, name: http}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [reviews]
  http:
  - redirect: {uri: example.org, authority: some-authority.default.svc.cluster.local, redirectCode: 308}
",
    );
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews:8080",
        "/anything",
        &h,
    ));
    let mesh_core::route::RouteOutcome::Redirect(r) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(
        r.location(
            "http",
            "reviews:8080",
            8080,
            "/anything",
            Some("x=1"),
            d.prefix_len
        ),
        "http://some-authority.default.svc.cluster.local/example.org?x=1"
    );
}

/// istiod's `SortServicesByCreationTime` names a ServiceEntry's service by its host: copies
/// of one host from two namespaces are ordered by namespace (objects without timestamps),
/// not by the ServiceEntries' names.
#[test]
fn copies_of_a_host_are_ordered_by_namespace() {
    let s = snap(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: foo, namespace: ns1}
spec: {hosts: [foobar.svc.cluster.local], ports: [{number: 8031, name: http, protocol: HTTP}], resolution: DNS}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bar, namespace: ns2}
spec: {hosts: [foobar.svc.cluster.local], ports: [{number: 8034, name: http, protocol: HTTP}], resolution: DNS}
",
    );
    let svc = s
        .registry()
        .service("foobar.svc.cluster.local", "mynamespace")
        .unwrap();
    assert_eq!(&*svc.namespace, "ns1");
}

/// istiod's `canMergeServices`: two ServiceEntries for one host in one namespace, with the
/// same resolution and exportTo, are one service with the ports of both; in different
/// namespaces they stay apart.
#[test]
fn service_entries_for_one_host_in_one_namespace_merge() {
    let se = |name: &str, ns: &str, port: u16| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec: {{hosts: [foobar.svc.cluster.local], ports: [{{number: {port}, name: http-{port}, protocol: HTTP}}], resolution: DNS}}
"
        )
    };
    let s = snap(&format!(
        "{}{}",
        se("foo", "ns1", 8031),
        se("bar", "ns1", 8034)
    ));
    let svc = s
        .registry()
        .service("foobar.svc.cluster.local", "mynamespace")
        .unwrap();
    let ports: Vec<u16> = svc.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, [8034, 8031]);
    let s = snap(&format!(
        "{}{}",
        se("foo", "ns1", 8031),
        se("bar", "ns2", 8034)
    ));
    let svc = s
        .registry()
        .service("foobar.svc.cluster.local", "mynamespace")
        .unwrap();
    let ports: Vec<u16> = svc.ports.iter().map(|p| p.number).collect();
    assert_eq!(ports, [8031]);
}

/// Empty values are unset to istiod: a delegate's `namespace: ""` is the root's, and a
/// redirect's `uri: ""` keeps the request's path.
#[test]
fn empty_delegate_namespace_and_redirect_uri_are_unset() {
    let s = snap(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /r}}]
    delegate: {name: reviews-routes, namespace: ''}
  - redirect: {uri: '', authority: new.example.com}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-routes, namespace: default}
spec:
  http: [{route: [{destination: {host: reviews-v2}}]}]
",
    );
    let h = http::HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new("default", "reviews", "/r/1", &h));
    assert_eq!(
        &*d.destinations()[0].host,
        "reviews-v2.default.svc.cluster.local"
    );
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews",
        "/some/path",
        &h,
    ));
    let mesh_core::route::RouteOutcome::Redirect(r) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(
        r.location(
            "http",
            "reviews",
            80,
            "/some/path",
            Some("x=1"),
            d.prefix_len
        ),
        "http://new.example.com/some/path?x=1"
    );
}

/// Two ServiceEntries on one CIDR: the oldest (istiod's listener order, the first filter
/// chain) takes the connection.
#[test]
fn equal_cidrs_go_to_the_oldest_service_entry() {
    let se = |name: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec: {{hosts: [{name}.internal], addresses: [240.240.0.0/16], ports: [{{number: 5432, name: tcp, protocol: TCP}}], resolution: NONE}}
"
        )
    };
    let s = snap(&format!("{}{}", se("a-db"), se("b-db")));
    let svc = s
        .registry()
        .service_by_address("240.240.3.4".parse().unwrap(), 5432, "default")
        .unwrap();
    assert_eq!(&*svc.hostname, "a-db.internal");
}

/// An absolute name (trailing dot, as Kubernetes users write to skip the `ndots` search):
/// istiod lists each service's hostname with the dot among its virtual host's domains
/// (`GenerateAltVirtualHosts`, on by default), so the request is routed as the name
/// without it, wildcard ServiceEntries included; a short name with a dot gets no such form.
#[test]
fn an_absolute_name_is_its_services() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http: [{timeout: 2s, route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: bookinfo}
spec:
  hosts: ['*.example.com']
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
",
    );
    let h = http::HeaderMap::new();
    let route = |host: &str| {
        let attrs = HttpRequestAttrs::new("bookinfo", host, "/", &h).with_port(9080);
        let d = s.route_http(&attrs);
        (d.virtual_service_name(), d.host.to_string())
    };
    for host in [
        "reviews.bookinfo.svc.cluster.local",
        "reviews.bookinfo.svc.cluster.local.",
        "Reviews.Bookinfo.Svc.Cluster.Local.",
    ] {
        assert_eq!(
            route(host),
            (
                Some("bookinfo/reviews"),
                "reviews.bookinfo.svc.cluster.local".to_owned()
            ),
            "{host}"
        );
    }
    // without a port, the service's only port, as for the name without the dot
    assert_eq!(
        s.default_port("reviews.bookinfo.svc.cluster.local.", "bookinfo"),
        Some(9080)
    );
    assert_eq!(s.default_port("reviews.bookinfo.", "bookinfo"), None);
    // short names have no absolute form: not expanded
    assert_eq!(route("reviews.bookinfo.").0, None);
    assert_eq!(route("reviews.").0, None);
    // a wildcard ServiceEntry's host too: routed as the name without the dot
    let decide = |host: &str| {
        let attrs = HttpRequestAttrs::new("bookinfo", host, "/", &h);
        format!("{:?}", s.route_http(&attrs))
    };
    assert_eq!(decide("a.example.com."), decide("a.example.com"));
    assert!(s
        .registry()
        .service_for_client("a.example.com", "bookinfo", None, 80)
        .is_some());
}
