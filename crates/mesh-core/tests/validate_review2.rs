//! Validation compared with istiod, second review: what istiod does not check (selector label
//! syntax), where it stops at the first error, and its exact texts.

use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;
use mesh_core::validate::validate_all;

fn obj(kind: &str, spec: &str) -> String {
    let group = match kind {
        "AuthorizationPolicy" | "PeerAuthentication" | "RequestAuthentication" => {
            "security.istio.io/v1"
        }
        _ => "networking.istio.io/v1",
    };
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: {group}\nkind: {kind}\nmetadata: {{name: x, namespace: ns1}}\nspec:\n{spec}"
    )
}

/// The webhook's findings for one object.
#[track_caller]
fn validate(kind: &str, spec: &str) -> Vec<Diagnostic> {
    let l = load_str(&obj(kind, spec), "t.yaml");
    assert!(!l.has_errors(), "load: {:#?}", l.diagnostics);
    validate_all(&l.objects)
}

/// The errors, as (path, message).
#[track_caller]
fn errors(kind: &str, spec: &str) -> Vec<(String, String)> {
    validate(kind, spec)
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| (d.path, d.message))
        .collect()
}

#[track_caller]
fn error_messages(kind: &str, spec: &str) -> Vec<String> {
    errors(kind, spec).into_iter().map(|(_, m)| m).collect()
}

// 1. Selectors: istiod rejects an empty key and `*`, never the label syntax.

#[test]
fn workload_selector_labels_are_not_label_checked() {
    let cases = [
        (
            "DestinationRule",
            "host: reviews\nworkloadSelector: {matchLabels: {app: 'my app'}}\ntrafficPolicy: {loadBalancer: {simple: RANDOM}}",
            "spec.workloadSelector.matchLabels.app",
        ),
        (
            "ServiceEntry",
            "hosts: [x.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nworkloadSelector: {labels: {app: 'my app'}}",
            "spec.workloadSelector.labels.app",
        ),
        (
            "Sidecar",
            "workloadSelector: {labels: {app: 'my app'}}\negress: [{hosts: ['./*']}]",
            "spec.workloadSelector.labels.app",
        ),
        (
            "PeerAuthentication",
            "selector: {matchLabels: {app: 'my app'}}\nmtls: {mode: STRICT}",
            "spec.selector.matchLabels.app",
        ),
        (
            "AuthorizationPolicy",
            "selector: {matchLabels: {'bad key!': v}}\naction: ALLOW\nrules: [{}]",
            "spec.selector.matchLabels.bad key!",
        ),
        (
            "RequestAuthentication",
            "selector: {matchLabels: {app: 'my app'}}\njwtRules: [{issuer: https://a.example.com}]",
            "spec.selector.matchLabels.app",
        ),
    ];
    for (kind, spec, path) in cases {
        let ds = validate(kind, spec);
        assert!(ds.iter().all(|d| !d.is_error()), "{kind}: {ds:#?}");
        // a label no workload can carry: a hint that the selector selects nothing
        let hint = ds
            .iter()
            .find(|d| d.path == path)
            .unwrap_or_else(|| panic!("{kind}: no hint at {path}: {ds:#?}"));
        assert_eq!((hint.severity, hint.code), (Severity::Info, "IM0100"));
        assert!(
            hint.message
                .ends_with(&format!("this {kind} selects nothing")),
            "{}",
            hint.message
        );
    }
}

#[test]
fn a_wildcard_selector_value_is_only_the_wildcard_error() {
    let got = errors(
        "DestinationRule",
        "host: reviews\nworkloadSelector: {matchLabels: {app: 'a*'}}",
    );
    assert_eq!(
        got,
        [(
            "spec.workloadSelector.matchLabels.app".to_owned(),
            r#"wildcard is not supported in selector: "app=a*""#.to_owned()
        )]
    );
    // subset labels and endpoint labels are still label-checked, as istiod does
    assert_eq!(
        error_messages(
            "DestinationRule",
            "host: reviews\nsubsets: [{name: v1, labels: {'bad key!': v}}]"
        ),
        [r#"invalid tag key: "bad key!""#]
    );
    assert_eq!(
        error_messages(
            "ServiceEntry",
            "hosts: [x.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nendpoints: [{address: 1.2.3.4, labels: {app: 'my app'}}]"
        ),
        [r#"invalid tag value: "my app""#]
    );
}

#[test]
fn service_entry_and_sidecar_stop_at_selector_errors() {
    // ValidateAlphaWorkloadSelector's errors are returned alone (`return nil, err`)
    assert_eq!(
        error_messages(
            "ServiceEntry",
            "hosts: ['*']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC\nworkloadSelector: {labels: {app: 'a*'}}"
        ),
        [r#"wildcard is not supported in selector: "app=a*""#]
    );
    assert_eq!(
        error_messages(
            "Sidecar",
            "workloadSelector: {labels: {'*': a}}\negress: [{hosts: [reviews]}]"
        ),
        [r#"wildcard is not supported in selector: "*=a""#]
    );
    // validateWorkloadSelector's errors are appended to the others
    assert_eq!(
        error_messages(
            "DestinationRule",
            "host: reviews\nworkloadSelector: {matchLabels: {app: 'a*'}}\nsubsets: [{name: Bad_Name}]"
        )
        .len(),
        2
    );
}

// 2. Where istiod returns at the first error.

#[test]
fn tunnel_with_proxy_protocol_is_the_traffic_policy_s_only_error() {
    // validateTrafficPolicy returns right after this error: the TLS and tunnel settings are
    // not looked at
    let tp = "tls: {mode: MUTUAL}\n  tunnel: {targetHost: 'bad host', targetPort: 0}\n  proxyProtocol: {version: V1}";
    assert_eq!(
        errors(
            "DestinationRule",
            &format!("host: reviews\ntrafficPolicy:\n  {tp}")
        ),
        [(
            "spec.trafficPolicy".to_owned(),
            "tunnel and proxyProtocol must not be set together".to_owned()
        )]
    );
    // the subsets are validated on their own (multierror.Append)
    assert_eq!(
        error_messages(
            "DestinationRule",
            &format!("host: reviews\ntrafficPolicy:\n  {tp}\nsubsets: [{{name: Bad_Name, trafficPolicy: {{}}}}]")
        ),
        [
            "tunnel and proxyProtocol must not be set together",
            "subset name is invalid: Bad_Name",
            "traffic policy must have at least one field",
        ]
    );
}

#[test]
fn locality_lb_setting_stops_where_istiod_returns() {
    let lb = |setting: &str| {
        format!(
            "host: reviews\ntrafficPolicy:\n  outlierDetection: {{consecutive5xxErrors: 1}}\n  loadBalancer:\n    localityLbSetting: {setting}"
        )
    };
    let table: &[(&str, &[&str])] = &[
        // distribute with failover: nothing else is checked
        (
            "{distribute: [{from: 'us-west/zone1/*', to: {'us-west/zone1/*': 80, 'us-west/zone2/*': 10}}], failover: [{from: us-east, to: us-east}]}",
            &["can not simultaneously specify 'distribute' and 'failover'"],
        ),
        // failover with a topology label in failoverPriority: the failovers are not checked
        (
            "{failover: [{from: us-east/zone1, to: 'us-west*'}], failoverPriority: [topology.kubernetes.io/region, topology.kubernetes.io/zone]}",
            &["can not simultaneously set 'failover' and topology label 'topology.kubernetes.io/region' in 'failover_priority'"],
        ),
        // a weight out of range: neither the total nor the localities
        (
            "{distribute: [{from: 'us-*/zone1', to: {'us-west/*': 0, 'us-east/*': 100}}]}",
            &["locality weight must be in range [1, 100]"],
        ),
        // a total other than 100: not the localities, not the later entries
        (
            "{distribute: [{from: 'us-*/zone1', to: {'us-west/*': 80, 'us-east/*': 10}}, {from: b, to: {'x/*/y': 100}}]}",
            &["total locality weight 90 != 100"],
        ),
        // the destinations of each entry, then the sources, then the failovers
        (
            "{distribute: [{from: 'us-*/zone1', to: {'us-west/*': 50, 'us-west/zone1': 50}}, {from: 'us-west/*', to: {'us-east//a': 100}}]}",
            &[
                "locality us-west/zone1 overlap with previous specified ones",
                "locality us-east//a must not contain empty region/zone/subzone info",
                "locality us-*/zone1 wildcard '*' number can not exceed 1 and must be in the end",
            ],
        ),
        (
            "{failover: [{from: us-east/zone1, to: 'us-west*'}, {from: a, to: a}]}",
            &[
                "locality lb failover only specify region",
                "locality lb failover region should not contain '*' wildcard",
                "locality lb failover settings must specify different regions",
            ],
        ),
    ];
    for (setting, want) in table {
        assert_eq!(
            error_messages("DestinationRule", &lb(setting)),
            *want,
            "{setting}"
        );
    }
    // no warning about outlier detection when istiod returned before it
    let ds = validate(
        "DestinationRule",
        "host: reviews\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting: {distribute: [{from: a, to: {b: 100}}], failover: [{from: c, to: d}]}",
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
}

// 3. istiod's texts.

#[test]
fn tunnel_target_host_names_both_failures() {
    assert_eq!(
        errors(
            "DestinationRule",
            "host: reviews\ntrafficPolicy: {tunnel: {targetHost: 'bad host', targetPort: 8080}}"
        ),
        [(
            "spec.trafficPolicy.tunnel.targetHost".to_owned(),
            r#"tunnel target host must be valid FQDN or IP address: domain name "bad host" invalid (label "bad host" invalid); bad host is not a valid IP"#.to_owned()
        )]
    );
    for host in ["egress.example.com", "10.0.0.1", "::1"] {
        assert_eq!(
            errors(
                "DestinationRule",
                &format!("host: reviews\ntrafficPolicy: {{tunnel: {{targetHost: '{host}', targetPort: 8080}}}}")
            ),
            []
        );
    }
}

#[test]
fn sidecar_default_endpoint_ports_as_go_parses_them() {
    let ingress = |endpoint: &str| {
        format!(
            "workloadSelector: {{labels: {{app: web}}}}\ningress:\n- port: {{number: 9080, protocol: HTTP, name: http}}\n  defaultEndpoint: '{endpoint}'"
        )
    };
    let table: &[(&str, &[&str])] = &[
        (
            "127.0.0.1:http",
            &[
                r#"sidecar: defaultEndpoint port (http) is not a number: strconv.Atoi: parsing "http": invalid syntax"#,
            ],
        ),
        // strconv.Atoi takes a sign; ValidatePort then refuses the number
        ("127.0.0.1:+8080", &[]),
        (
            "127.0.0.1:-1",
            &["port number -1 must be in the range 1..65535"],
        ),
        (
            "0.0.0.0:99999999999999999999",
            &[
                r#"sidecar: defaultEndpoint port (99999999999999999999) is not a number: strconv.Atoi: parsing "99999999999999999999": value out of range"#,
            ],
        ),
        // istiod goes on after net.SplitHostPort's error, with an empty port
        (
            "127.0.0.1",
            &[
                "address 127.0.0.1: missing port in address",
                r#"sidecar: defaultEndpoint port () is not a number: strconv.Atoi: parsing "": invalid syntax"#,
            ],
        ),
        (
            "::1:8080",
            &[
                "address ::1:8080: too many colons in address",
                r#"sidecar: defaultEndpoint port () is not a number: strconv.Atoi: parsing "": invalid syntax"#,
            ],
        ),
        ("[::1]:8080", &[]),
    ];
    for (endpoint, want) in table {
        let got = errors("Sidecar", &ingress(endpoint));
        assert!(
            got.iter()
                .all(|(p, _)| p == "spec.ingress[0].defaultEndpoint"),
            "{got:?}"
        );
        let got: Vec<String> = got.into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, *want, "{endpoint}");
    }
}
