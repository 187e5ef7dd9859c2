//! Validation and analysis compared with Istio, from an audit of `meshctl validate` against
//! istiod's webhook (`pkg/config/validation`), the CRD schemas (istio/api
//! `customresourcedefinitions.gen.yaml`) and `istioctl analyze`: what each accepts and
//! refuses, over real YAML.

use mesh_core::analyze::analyze;
use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;
use mesh_core::names::MeshOptions;
use mesh_core::validate::validate_all;

#[track_caller]
fn validate(yaml: &str) -> Vec<Diagnostic> {
    let l = load_str(yaml, "t.yaml");
    assert!(!l.has_errors(), "load: {:#?}", l.diagnostics);
    validate_all(&l.objects)
}

#[track_caller]
fn analyzed(yaml: &str) -> Vec<Diagnostic> {
    let l = load_str(yaml, "t.yaml");
    assert!(!l.has_errors(), "load: {:#?}", l.diagnostics);
    analyze(&l.objects)
}

/// (severity, code, path, message) of each finding.
fn summary(d: &[Diagnostic]) -> Vec<(Severity, &str, &str, &str)> {
    d.iter()
        .map(|d| (d.severity, d.code, d.path.as_str(), d.message.as_str()))
        .collect()
}

fn errors(d: &[Diagnostic]) -> Vec<(&str, &str)> {
    d.iter()
        .filter(|d| d.is_error())
        .map(|d| (d.path.as_str(), d.message.as_str()))
        .collect()
}

/// A VirtualService for `reviews` with one HTTP route carrying `extra` (YAML flow mapping
/// entries after the route).
fn http_route(extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews}}}}]
    {extra}
"
    )
}

/// The CRD types the deprecated `fault.delay.percent` as a plain int32 and istiod's
/// `validateHTTPFaultInjectionDelay` range-checks `percentage` only, so 150 is accepted;
/// `istioctl analyze` (deprecation.FieldAnalyzer) warns IST0002 for any positive `percent`.
#[test]
fn deprecated_delay_percent_is_accepted_with_a_deprecation_warning() {
    let deprecated = "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage";
    let path = "spec.http[0].fault.delay.percent";
    let found = validate(&http_route(
        "fault: {delay: {fixedDelay: 5s, percent: 150}}",
    ));
    assert_eq!(
        summary(&found),
        [
            (Severity::Warning, "IST0002", path, deprecated),
            (
                Severity::Warning,
                "IM0100",
                path,
                "percent 150 is not in range 0..100: inmesh delays every request"
            ),
        ]
    );
    // the finding points at the field's line
    assert_eq!(found[0].line, 8);
    assert_eq!(
        found[0].help.as_deref(),
        Some("write `percentage: {value: 100}` instead")
    );

    let found = validate(&http_route("fault: {delay: {fixedDelay: 5s, percent: 50}}"));
    assert_eq!(
        summary(&found),
        [(Severity::Warning, "IST0002", path, deprecated)]
    );
    // with `percentage` set, that is what applies
    let found = validate(&http_route(
        "fault: {delay: {fixedDelay: 5s, percent: 150, percentage: {value: 10}}}",
    ));
    assert_eq!(
        summary(&found),
        [(Severity::Warning, "IST0002", path, deprecated)]
    );
    // istioctl only reports a positive value
    assert!(validate(&http_route("fault: {delay: {fixedDelay: 5s, percent: 0}}")).is_empty());
    let found = validate(&http_route("fault: {delay: {fixedDelay: 5s, percent: -5}}"));
    assert!(errors(&found).is_empty(), "{found:#?}");
    assert_eq!(
        summary(&found),
        [(
            Severity::Warning,
            "IM0100",
            path,
            "percent -5 is not in range 0..100: inmesh delays no request"
        )]
    );
    // `percentage` keeps the webhook's range check
    let found = validate(&http_route(
        "fault: {delay: {fixedDelay: 5s, percentage: {value: 150}}}",
    ));
    assert_eq!(errors(&found).len(), 1, "{found:#?}");
}

/// istiod's `validateTCPMatch` does not check the hidden `sourceSubnet`; inmesh does not
/// match on it, so an invalid one is a warning that says so.
#[test]
fn tcp_source_subnet_is_not_an_error() {
    let vs = |subnet: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: mongo, namespace: default}}
spec:
  hosts: [mongo]
  tcp:
  - match:
    - port: 27017
      sourceSubnet: \"{subnet}\"
    route: [{{destination: {{host: mongo}}}}]
"
        )
    };
    let found = validate(&vs("10.0.0.0/33"));
    assert_eq!(
        summary(&found),
        [(
            Severity::Warning,
            "IM0100",
            "spec.tcp[0].match[0].sourceSubnet",
            "10.0.0.0/33 is not a valid CIDR block: inmesh ignores sourceSubnet, so this match applies to connections from any address"
        )]
    );
    assert_eq!(found[0].line, 9);
    let found = validate(&vs("not-an-ip"));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(!found[0].is_error());
    assert!(found[0]
        .message
        .starts_with("not-an-ip is not a valid IP: "));
    assert!(validate(&vs("10.0.0.0/8")).is_empty());
    assert!(validate(&vs("10.1.2.3")).is_empty());
}

/// Go's regexp/syntax (istiod) and RE2 (Envoy) refuse a repeat whose nested counts make
/// more than 1000 copies (`repeatIsValid(re, 1000)`, `invalid repeat count`).
#[test]
fn nested_repeat_counts_over_1000_copies_are_refused() {
    let with_regex =
        |re: &str| validate(&http_route(&format!("match: [{{uri: {{regex: '{re}'}}}}]")));
    for (re, msg) in [
        (
            "(a{10}){200}",
            "\"uri\": invalid repeat count `{200}` around `{10}`: 2000 copies (RE2 allows at most 1000)",
        ),
        (
            "((ab){40}){30}",
            "\"uri\": invalid repeat count `{30}` around `{40}`: 1200 copies (RE2 allows at most 1000)",
        ),
        (
            "(x{100}y){11}",
            "\"uri\": invalid repeat count `{11}` around `{100}`: 1100 copies (RE2 allows at most 1000)",
        ),
    ] {
        let found = with_regex(re);
        let e = errors(&found);
        assert_eq!(e.len(), 1, "{re}: {found:#?}");
        assert_eq!(e[0].0, "spec.http[0].match[0].uri.regex", "{re}");
        assert_eq!(
            e[0].1,
            format!("{msg}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"),
            "{re}"
        );
    }
    // at most 1000 copies, or counts side by side, are fine
    for re in [
        "(x{100}y){10}",
        "(a{10}){100}",
        "(a{500})(b{500}){2}",
        "((a{10})+){100}",
    ] {
        let found = with_regex(re);
        assert!(errors(&found).is_empty(), "{re}: {found:#?}");
    }
    // the data plane compiles the same dialect: the route is refused, not mis-compiled
    let l = load_str(
        &http_route("match: [{uri: {regex: '(a{10}){200}'}}]"),
        "t.yaml",
    );
    let table = mesh_core::route::RouteTable::build(&l.objects, &MeshOptions::default());
    assert_eq!(table.errors.len(), 1, "{:?}", table.errors);
    assert!(
        table.errors[0].contains("invalid repeat count `{200}`"),
        "{:?}",
        table.errors
    );
}

/// An escaped non-ASCII character (which RE2 and Go refuse) used to panic the repeat check.
#[test]
fn escaped_non_ascii_in_a_regex_is_an_error_not_a_panic() {
    let found = validate(&http_route("match: [{uri: {regex: '\\é{2}'}}]"));
    let e = errors(&found);
    assert_eq!(e.len(), 1, "{found:#?}");
    assert_eq!(e[0].0, "spec.http[0].match[0].uri.regex");
}

/// istiod's webhook refuses its internal annotations on any Istio object.
#[test]
fn internal_istio_annotations_are_refused() {
    let found = validate(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
  annotations:
    internal.istio.io/parents: HTTPRoute/reviews.default
    internal.istio.io/webhook-always-reject: \"true\"
spec: {host: reviews}
",
    );
    assert_eq!(
        summary(&found),
        [
            (
                Severity::Error,
                "IST0106",
                "metadata.annotations.internal.istio.io/webhook-always-reject",
                "\"internal.istio.io/webhook-always-reject\" annotation found, rejecting"
            ),
            (
                Severity::Error,
                "IST0106",
                "metadata.annotations.internal.istio.io/parents",
                "\"internal.istio.io/parents\" annotation found, this may not be set by users"
            ),
        ]
    );
    assert_eq!((found[0].line, found[1].line), (8, 7));
    // other internal annotations, and Kubernetes objects, are not checked
    let found = validate(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: default
  annotations: {internal.istio.io/gateway-service: gw.istio-system.svc.cluster.local}
spec: {host: reviews}
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: default
  annotations: {internal.istio.io/parents: x}
spec: {ports: [{port: 9080, name: http}]}
",
    );
    assert!(found.is_empty(), "{found:#?}");
}

/// The CRDs limit workload selector label values to 63 characters (`maxLength: 63` on
/// `matchLabels` of `istio.type.v1beta1.WorkloadSelector`, and on `labels` of the
/// networking `WorkloadSelector` of ServiceEntry and Sidecar): the API server refuses more.
#[test]
fn selector_label_values_over_63_characters_are_refused() {
    let long = "a".repeat(64);
    let ok = "a".repeat(63);
    let cases = [
        (
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec: {selector: {matchLabels: {app: VALUE}}}",
            "spec.selector.matchLabels.app",
        ),
        (
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, namespace: default}
spec: {selector: {matchLabels: {app: VALUE}}, mtls: {mode: STRICT}}",
            "spec.selector.matchLabels.app",
        ),
        (
            "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: p, namespace: default}
spec: {selector: {matchLabels: {app: VALUE}}}",
            "spec.selector.matchLabels.app",
        ),
        (
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: p, namespace: default}
spec: {host: reviews, workloadSelector: {matchLabels: {app: VALUE}}}",
            "spec.workloadSelector.matchLabels.app",
        ),
        (
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: p, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: VALUE}}",
            "spec.workloadSelector.labels.app",
        ),
        (
            "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: p, namespace: default}
spec:
  workloadSelector: {labels: {app: VALUE}}
  egress: [{hosts: ['./*']}]",
            "spec.workloadSelector.labels.app",
        ),
    ];
    for (yaml, path) in cases {
        let found = validate(&yaml.replace("VALUE", &long));
        assert_eq!(
            summary(&found),
            [(
                Severity::Error,
                "IST0106",
                path,
                format!("{path}: Too long: may not be longer than 63").as_str()
            )],
            "{yaml}"
        );
        let found = validate(&yaml.replace("VALUE", &ok));
        assert!(found.is_empty(), "{yaml}: {found:#?}");
    }
    // a Gateway's selector is a plain map in its CRD: still only the hint
    let found = validate(&format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: {long}}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]"
    ));
    assert!(errors(&found).is_empty(), "{found:#?}");
}

/// The Gateway CRD gives `tls.tlsCertificates` `maxItems: 2`, as `credentialNames`.
#[test]
fn more_than_two_tls_certificates_are_refused() {
    let cert = "{serverCertificate: /etc/certs/c.pem, privateKey: /etc/certs/k.pem}";
    let gw = |n: usize| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [example.com]
    tls:
      mode: SIMPLE
      tlsCertificates: [{}]
",
            vec![cert; n].join(", ")
        )
    };
    let found = validate(&gw(3));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0106",
            "spec.servers[0].tls.tlsCertificates",
            "spec.servers[0].tls.tlsCertificates: Too many: 3: must have at most 2 items"
        )]
    );
    assert!(validate(&gw(2)).is_empty());
    // whatever the mode
    let found = validate(&gw(3).replace("SIMPLE", "PASSTHROUGH"));
    assert!(
        found
            .iter()
            .any(|d| d.is_error() && d.message.contains("Too many: 3")),
        "{found:#?}"
    );
}

/// The CRD rule on WorkloadEntry `ports` (and ServiceEntry endpoints' `ports`) keys is
/// `size(key) < 63`: one character less than istiod's DNS-1123 label check allows.
#[test]
fn port_names_of_63_characters_are_refused() {
    let name = "p".repeat(63);
    let short = "p".repeat(62);
    let we = |n: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm, namespace: default}}
spec:
  address: 10.0.0.1
  ports: {{{n}: 8080}}
"
        )
    };
    let found = validate(&we(&name));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0106",
            format!("spec.ports.{name}").as_str(),
            "spec.ports: Invalid value: \"object\": port name must be valid"
        )]
    );
    assert_eq!(found[0].line, 6);
    assert!(validate(&we(&short)).is_empty());

    let se = |n: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vms, namespace: default}}
spec:
  hosts: [vms.example.com]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: {n}, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
    ports: {{{n}: 8080}}
"
        )
    };
    let found = validate(&se(&name));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0106",
            format!("spec.endpoints[0].ports.{name}").as_str(),
            "spec.endpoints[0].ports: Invalid value: \"object\": port name must be valid"
        )]
    );
    assert!(validate(&se(&short)).is_empty());
}

/// istioctl's ConflictingMeshGatewayHostsAnalyzer (since it merges hosts exported to all
/// namespaces into each scoped key) reports a VirtualService exported to its own namespace
/// and one exported everywhere with the same host: each once.
#[test]
fn mesh_vs_exported_locally_conflicts_with_one_exported_everywhere() {
    let found = analyzed(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [reviews]
  exportTo: [.]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
",
    );
    let ist0109: Vec<&Diagnostic> = found.iter().filter(|d| d.code == "IST0109").collect();
    assert_eq!(ist0109.len(), 2, "{found:#?}");
    assert_eq!(
        (ist0109[0].line, ist0109[1].line),
        (5, 13),
        "one per VirtualService: {found:#?}"
    );
    // exported to different namespaces only: no conflict
    let found = analyzed(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: ns1}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: [.]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, namespace: ns2}
spec:
  hosts: [reviews.default.svc.cluster.local]
  exportTo: [.]
  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]
",
    );
    assert!(found.iter().all(|d| d.code != "IST0109"), "{found:#?}");
}

const API_SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 443, name: https, protocol: TLS}
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
";

/// istioctl's `checkServiceEntryPorts`: a destination's port is checked against the
/// ServiceEntry for its host as against a Kubernetes Service.
#[test]
fn destination_ports_are_checked_against_service_entries() {
    let vs = |dest: &str| {
        format!(
            "{API_SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  http: [{{route: [{{destination: {dest}}}]}}]
"
        )
    };
    let found = analyzed(&vs("{host: api.example.com, port: {number: 8080}}"));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0101",
            "spec.http[0].route[0].destination.port.number",
            "Referenced host:port not found: \"api.example.com:8080\""
        )]
    );
    assert_eq!(
        found[0].help.as_deref(),
        Some("ServiceEntry default/api (api.example.com) defines port(s) 443, 80")
    );
    let found = analyzed(&vs("{host: api.example.com}"));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0112",
            "spec.http[0].route[0].destination",
            "This VirtualService routes to a service \"api.example.com\" that exposes multiple ports [443 80]. Specifying a port in the destination is required to disambiguate."
        )]
    );
    assert!(analyzed(&vs("{host: api.example.com, port: {number: 80}}")).is_empty());

    // one port: no port needed
    let one_port = format!(
        "{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  http: [{{route: [{{destination: {{host: api.example.com}}}}]}}]
",
        API_SE.replace("  - {number: 80, name: http, protocol: HTTP}\n", "")
    );
    assert!(analyzed(&one_port).is_empty());

    // a mirror is checked too
    let found = analyzed(&format!(
        "{API_SE}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  http:
  - route: [{{destination: {{host: api.example.com, port: {{number: 80}}}}}}]
    mirror: {{host: api.example.com, port: {{number: 9}}}}
"
    ));
    assert_eq!(
        summary(&found),
        [(
            Severity::Error,
            "IST0101",
            "spec.http[0].mirror.port.number",
            "Referenced host:port not found: \"api.example.com:9\""
        )]
    );
}

/// istioctl's `GetDestinationHost` falls back to a wildcard ServiceEntry host visible to
/// the VirtualService's namespace, whose ports then apply.
#[test]
fn destination_ports_are_checked_against_a_wildcard_service_entry() {
    let yaml = |se_ns: &str, export: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild, namespace: {se_ns}}}
spec:
  hosts: ['*.example.com']
  exportTo: [{export}]
  ports:
  - {{number: 443, name: https, protocol: TLS}}
  - {{number: 80, name: http, protocol: HTTP}}
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  http: [{{route: [{{destination: {{host: api.example.com}}}}]}}]
"
        )
    };
    let found = analyzed(&yaml("default", "'*'"));
    assert_eq!(
        found.iter().map(|d| d.code).collect::<Vec<_>>(),
        ["IST0112"],
        "{found:#?}"
    );
    // not visible from `default`: istioctl does not find it (the host is then unknown)
    let found = analyzed(&yaml("other", "."));
    assert!(found.iter().all(|d| d.code != "IST0112"), "{found:#?}");
}

/// IST0112 lists the ports as Go's `%v` prints a list.
#[test]
fn port_selector_required_lists_ports_as_istioctl() {
    let found = analyzed(
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{port: 9080, name: http}, {port: 9090, name: http-admin}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
",
    );
    let d: Vec<&Diagnostic> = found.iter().filter(|d| d.code == "IST0112").collect();
    assert_eq!(d.len(), 1, "{found:#?}");
    assert_eq!(
        d[0].message,
        "This VirtualService routes to a service \"reviews\" that exposes multiple ports [9080 9090]. Specifying a port in the destination is required to disambiguate."
    );
}

/// istiod tests `rewrite.uri`, `rewrite.authority` and `redirect.scheme` for emptiness: an
/// empty one is unset, so `uri: ""` beside `uriRegexRewrite` and `scheme: ""` are accepted,
/// and a rewrite whose every field is empty is refused.
#[test]
fn empty_rewrite_and_redirect_strings_are_unset() {
    let ok = [
        "rewrite: {uri: '', uriRegexRewrite: {match: '^/a', rewrite: /b}}",
        "rewrite: {uri: '', authority: x}",
    ];
    for extra in ok {
        let d = validate(&http_route(extra));
        assert!(errors(&d).is_empty(), "{extra}: {:#?}", summary(&d));
    }
    let d = validate(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - redirect: {uri: /n, scheme: ''}
",
    );
    assert!(errors(&d).is_empty(), "{:#?}", summary(&d));
    let d = validate(&http_route("rewrite: {uri: '', authority: ''}"));
    assert_eq!(
        errors(&d),
        [(
            "spec.http[0].rewrite",
            "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified"
        )]
    );
}

/// Status 600 passes istiod's range check, but Envoy's fault abort and direct response
/// statuses end at 599: a warning, not silence.
#[test]
fn status_600_is_warned_about() {
    let vs = |http: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - {http}
"
        )
    };
    for (http, path) in [
        (
            "{directResponse: {status: 600}}",
            "spec.http[0].directResponse.status",
        ),
        (
            "{fault: {abort: {httpStatus: 600, percentage: {value: 1}}}, route: [{destination: {host: reviews}}]}",
            "spec.http[0].fault.abort.httpStatus",
        ),
    ] {
        let d = validate(&vs(http));
        assert!(errors(&d).is_empty(), "{http}: {:#?}", summary(&d));
        assert!(
            d.iter().any(|d| d.severity == Severity::Warning
                && d.path == path
                && d.message.contains("Envoy accepts at most 599")),
            "{http}: {:#?}",
            summary(&d)
        );
    }
}
