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
