//! Validation compared with istiod, third review: cases from Istio's own validation tests
//! (`virtualservice_test.go`, `validation_test.go`) and its CRD test data where this
//! validator disagreed, and the AuthorizationPolicy namespace analyzer.

use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;
use mesh_core::validate::validate_all;

/// The findings for one VirtualService with one `http` route.
#[track_caller]
fn route(route: &str) -> Vec<Diagnostic> {
    let route: String = route.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x, namespace: ns1}}\nspec:\n  hosts: [foo.bar]\n  http:\n  - {}",
        route.trim_start()
    );
    let l = load_str(&yaml, "t.yaml");
    assert!(!l.has_errors(), "load: {:#?}", l.diagnostics);
    validate_all(&l.objects)
}

#[track_caller]
fn errors(r: &str) -> Vec<(String, String)> {
    route(r)
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| (d.path, d.message))
        .collect()
}

#[test]
fn header_values_with_control_characters_are_refused() {
    for (field, value) in [
        ("request: {set: {x-h", "a\\x01b"),
        ("request: {add: {x-h", "a\\nb"),
        ("response: {add: {x-h", "a\\x7fb"),
        ("request: {set: {host", "a\\rb"),
    ] {
        let e = errors(&format!(
            "route: [{{destination: {{host: foo.baz}}}}]\nheaders: {{{field}: \"{value}\"}}}}}}"
        ));
        assert_eq!(e.len(), 1, "{field}: {e:#?}");
        assert!(e[0].1.contains("control character"), "{e:#?}");
    }
    // on a destination too
    let e = errors(
        "route: [{destination: {host: foo.baz}, headers: {request: {set: {x-h: \"a\\rb\"}}}}]",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].0, "spec.http[0].route[0].headers.request.set.x-h");
    // a tab is allowed
    assert!(errors(
        "route: [{destination: {host: foo.baz}}]\nheaders: {request: {set: {x-h: \"a\\tb\"}}}"
    )
    .is_empty());
}

#[test]
fn what_istiod_accepts_is_accepted() {
    // `port: 0` is a port (the oneof is set) that istiod does not range-check; Envoy reads
    // it as no port redirect
    assert!(errors("redirect: {uri: /x, port: 0}").is_empty());
    assert!(errors("redirect: {port: 0}").is_empty());
    // an empty `retryOn` is unset to istiod
    assert!(
        errors("route: [{destination: {host: foo.baz}}]\nretries: {attempts: 0, retryOn: ''}")
            .is_empty()
    );
    // the webhook does not check a delegate's name: a warning here, since the route
    // delegates to nothing
    let d = route("delegate: {}");
    assert!(d.iter().all(|d| !d.is_error()), "{d:#?}");
    assert!(
        d.iter()
            .any(|d| d.severity == Severity::Warning && d.path == "spec.http[0].delegate.name"),
        "{d:#?}"
    );
}

#[test]
fn a_redirect_to_port_zero_keeps_the_requests_port() {
    let l = load_str(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x, namespace: ns1}\nspec: {hosts: [foo.bar], ports: [{number: 8080, name: http, protocol: HTTP}], resolution: DNS}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x, namespace: ns1}\nspec:\n  hosts: [foo.bar]\n  http:\n  - redirect: {uri: /new, port: 0}\n",
        "t.yaml",
    );
    let snap = mesh_core::snapshot::Snapshot::build(&l.objects, Default::default());
    let h = http::HeaderMap::new();
    let d = snap.route_http(&mesh_core::route::HttpRequestAttrs::new(
        "ns1",
        "foo.bar:8080",
        "/old",
        &h,
    ));
    let mesh_core::route::RouteOutcome::Redirect(r) = &d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(
        r.location("http", "foo.bar:8080", 8080, "/old", None, d.prefix_len),
        "http://foo.bar:8080/new"
    );
}

#[test]
fn policy_namespaces_are_checked_against_loaded_namespaces() {
    let yaml = "apiVersion: v1
kind: Namespace
metadata: {name: foo, namespace: ignored}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar-prod}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a, namespace: foo}
spec:
  rules:
  - from:
    - source: {namespaces: [foo, \"bar-*\", \"*-prod\", missing]}
    - source: {notNamespaces: [nope]}
";
    let l = load_str(yaml, "a.yaml");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    // a Namespace is cluster-scoped: its metadata.namespace means nothing
    let ns = l.objects.iter().find(|o| o.metadata.name == "foo").unwrap();
    assert_eq!(ns.metadata.namespace, "");
    let found = mesh_core::analyze::analyze(&l.objects);
    let got: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|d| (d.code, d.path.as_str(), d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "IST0101",
                "spec.rules[0].from[0].source.namespaces[3]",
                "Referenced namespace not found: \"missing\""
            ),
            (
                "IST0101",
                "spec.rules[0].from[1].source.notNamespaces[0]",
                "Referenced namespace not found: \"nope\""
            ),
        ]
    );
    // without Namespace objects nothing is known about namespaces: no finding
    let policy = &yaml[yaml.rfind("---").unwrap() + 4..];
    let l = load_str(policy, "a.yaml");
    assert!(mesh_core::analyze::analyze(&l.objects).is_empty());
}

/// istiod's `validateWorkloadEntry` for a STATIC ServiceEntry's endpoints: an endpoint on
/// another network may leave its address out (a warning); without a network it is an
/// error. Such an endpoint has nothing to dial: the registry leaves it out.
#[test]
fn a_static_endpoint_without_address_needs_a_network() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: foo, namespace: bar}
spec:
  hosts: [www.example.com]
  ports: [{number: 443, protocol: HTTPS, name: https-example}]
  endpoints: [{network: cluster-1}, {address: 10.0.0.1}]
  resolution: STATIC
";
    let l = load_str(yaml, "se.yaml");
    let d = validate_all(&l.objects);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].severity, Severity::Warning);
    assert_eq!(d[0].message, "address is unset with network \"cluster-1\"");
    let snap = mesh_core::mesh::Mesh::from_yaml(yaml).unwrap().snapshot();
    let svc = snap.registry().service("www.example.com", "bar").unwrap();
    assert_eq!(svc.endpoints.len(), 1);

    let l = load_str(
        &yaml.replace("{network: cluster-1}", "{labels: {a: b}}"),
        "se.yaml",
    );
    let d = validate_all(&l.objects);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].is_error());
    assert_eq!(d[0].message, "address is required");
}

/// DestinationRule fields the mesh client does not apply are valid Istio, and said so
/// (IM0013) rather than dropped silently, wherever they are set.
#[test]
fn traffic_policy_fields_not_applied_are_warned() {
    let l = load_str(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x, namespace: ns1}
spec:
  host: legacy.example.com
  trafficPolicy:
    proxyProtocol: {version: V2}
    retryBudget: {percent: 10}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tunnel: {protocol: CONNECT, targetHost: proxy.example.com, targetPort: 3128}
",
        "t.yaml",
    );
    let ds = validate_all(&l.objects);
    assert!(ds.iter().all(|d| !d.is_error()), "{ds:#?}");
    let warned: Vec<&str> = ds
        .iter()
        .filter(|d| d.severity == Severity::Warning && d.code == "IM0013")
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(
        warned,
        [
            "spec.trafficPolicy.proxyProtocol",
            "spec.trafficPolicy.retryBudget",
            "spec.subsets[0].trafficPolicy.tunnel",
        ]
    );
}
