//! Authorization decisions against Envoy's, from a replay of istiod's AuthorizationPolicy
//! translation test data (`pilot/pkg/security/authz/builder/testdata`): inline header
//! matching, wildcard trust domains under aliases, the values istiod writes into regular
//! expressions unescaped, and path templates Envoy refuses.

use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs, WorkloadAuthz};
use mesh_core::model::Labels;
use mesh_core::names::MeshOptions;
use mesh_core::snapshot::Snapshot;

fn authz_with(yaml: &str, opts: MeshOptions) -> WorkloadAuthz {
    let loaded = mesh_core::load::load_str(yaml, "ap.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, opts).authz_for_workload("foo", &Labels::new())
}

fn authz(yaml: &str) -> WorkloadAuthz {
    authz_with(yaml, MeshOptions::default())
}

fn allow(rule: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a, namespace: foo}}\nspec:\n  rules:\n  - {rule}\n"
    )
}

fn deny(rule: &str) -> String {
    allow(rule).replace("spec:\n", "spec:\n  action: DENY\n")
}

fn allowed(
    a: &WorkloadAuthz,
    principal: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> bool {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let attrs = HttpAuthzAttrs {
        method: "GET",
        path,
        host: "httpbin.foo:8000",
        headers: &h,
    };
    let mut req = AuthzRequest::http(8000, attrs);
    req.principal = principal;
    a.evaluate(&req).allowed
}

/// `request.experimental.inline.headers[name]`: any element of the header's comma-joined
/// values (istiod's `^v$|^v,.*|.*,v,.*|.*,v$`).
#[test]
fn inline_headers_match_one_element_of_the_values() {
    let a = authz(&allow(
        "when: [{key: 'request.experimental.inline.headers[X-inline-header]', values: [header]}]",
    ));
    assert!(allowed(&a, None, "/", &[("x-inline-header", "header")]));
    assert!(allowed(&a, None, "/", &[("x-inline-header", "zzz,header")]));
    assert!(allowed(
        &a,
        None,
        "/",
        &[("x-inline-header", "zzz"), ("x-inline-header", "header")]
    ));
    assert!(allowed(&a, None, "/", &[("x-inline-header", "a,header,b")]));
    assert!(!allowed(&a, None, "/", &[("x-inline-header", "headers")]));
    assert!(!allowed(&a, None, "/", &[("x-inline-header", "zzz")]));
    assert!(!allowed(&a, None, "/", &[]));
    // `request.headers` would want the joined value whole
    let a = authz(&allow(
        "when: [{key: 'request.headers[X-inline-header]', values: [header]}]",
    ));
    assert!(!allowed(
        &a,
        None,
        "/",
        &[("x-inline-header", "zzz,header")]
    ));
    // and validation knows the key
    let l = mesh_core::load::load_str(
        &allow("when: [{key: 'request.experimental.inline.headers[x-a]', values: [b]}]"),
        "ap.yaml",
    );
    assert!(
        mesh_core::check(&l).is_empty(),
        "{:#?}",
        mesh_core::check(&l)
    );
}

/// istiod's trust domain bundle: a principal whose trust domain is a wildcard covering one
/// of the mesh's trust domains stands for all of them (`*bar` with `td1` and alias
/// `foobar`: `td1/...` exactly, and `*bar/...` as written).
#[test]
fn a_wildcard_trust_domain_covers_the_aliases() {
    let opts = MeshOptions {
        trust_domain: "td1".into(),
        trust_domain_aliases: vec!["foobar".into()],
        ..MeshOptions::default()
    };
    let a = authz_with(
        &allow("from: [{source: {principals: ['*bar/ns/foo/sa/sleep']}}]"),
        opts.clone(),
    );
    assert!(allowed(&a, Some("td1/ns/foo/sa/sleep"), "/", &[]));
    assert!(allowed(&a, Some("foobar/ns/foo/sa/sleep"), "/", &[]));
    assert!(allowed(&a, Some("xbar/ns/foo/sa/sleep"), "/", &[]));
    assert!(!allowed(&a, Some("other/ns/foo/sa/sleep"), "/", &[]));
    let a = authz_with(
        &allow("when: [{key: source.principal, values: ['*bar/ns/foo/sa/sleep']}]"),
        opts,
    );
    assert!(allowed(&a, Some("td1/ns/foo/sa/sleep"), "/", &[]));
}

/// istiod writes a `*suffix` principal and `serviceAccounts` into regular expressions
/// without escaping them: Envoy reads `.` as any character. A DENY policy therefore covers
/// more than its literal names, and so does inmesh.
#[test]
fn principals_and_service_accounts_are_envoys_regexes() {
    let a = authz(&deny(
        "from: [{source: {principals: ['*/ns/foo/sa/my.sa']}}]",
    ));
    assert!(!allowed(
        &a,
        Some("cluster.local/ns/foo/sa/my.sa"),
        "/",
        &[]
    ));
    assert!(!allowed(
        &a,
        Some("cluster.local/ns/foo/sa/my-sa"),
        "/",
        &[]
    ));
    assert!(allowed(&a, Some("cluster.local/ns/foo/sa/other"), "/", &[]));
    let a = authz(&deny(
        "from: [{source: {serviceAccounts: ['my-ns/my.sa']}}]",
    ));
    assert!(!allowed(
        &a,
        Some("cluster.local/ns/my-ns/sa/my.sa"),
        "/",
        &[]
    ));
    assert!(!allowed(
        &a,
        Some("cluster.local/ns/my-ns/sa/myxsa"),
        "/",
        &[]
    ));
    assert!(allowed(
        &a,
        Some("cluster.local/ns/my-ns/sa/mysa"),
        "/",
        &[]
    ));
    // names without metacharacters keep their plain match
    let a = authz(&allow(
        "from: [{source: {principals: ['*/ns/foo/sa/sleep']}}]",
    ));
    assert!(allowed(&a, Some("cluster.local/ns/foo/sa/sleep"), "/", &[]));
    assert!(!allowed(
        &a,
        Some("cluster.local/ns/foo/sa/sleepy"),
        "/",
        &[]
    ));
}

/// A path template that does not start with `/` passes istiod but Envoy refuses it: the
/// policy cannot be what Envoy enforces, so inmesh fails closed and validation warns.
#[test]
fn a_template_without_leading_slash_fails_closed() {
    let yaml = allow("to: [{operation: {paths: ['{**}/path/template']}}]");
    let a = authz(&yaml);
    assert!(!allowed(&a, None, "/a/path/template", &[]));
    let l = mesh_core::load::load_str(&yaml, "ap.yaml");
    let d = mesh_core::check(&l);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(!d[0].is_error());
    assert!(
        d[0].message.contains("does not start with `/`"),
        "{}",
        d[0].message
    );
}

/// istiod's `InlineHeaderMatcher` escapes the value and reads `*` as a wildcard: `*` is any
/// value, `x*` a prefix and `*x` a suffix of one element; a DENY on `evil*` covers `evilbar`.
#[test]
fn inline_header_values_are_escaped_with_wildcards() {
    let d = authz(&deny(
        "when: [{key: 'request.experimental.inline.headers[x-role]', values: ['evil*']}]",
    ));
    assert!(!allowed(&d, None, "/", &[("x-role", "evilbar")]));
    assert!(!allowed(&d, None, "/", &[("x-role", "a,evilbar")]));
    assert!(allowed(&d, None, "/", &[("x-role", "evi")]));
    let a = authz(&allow(
        "when: [{key: 'request.experimental.inline.headers[x-v]', values: [admin.v1]}]",
    ));
    assert!(allowed(&a, None, "/", &[("x-v", "admin.v1")]));
    assert!(!allowed(&a, None, "/", &[("x-v", "adminXv1")]));
    let any = authz(&allow(
        "when: [{key: 'request.experimental.inline.headers[x-v]', values: ['*']}]",
    ));
    assert!(allowed(&any, None, "/", &[("x-v", "anything")]));
    assert!(!allowed(&any, None, "/", &[]));
}

/// Envoy matches a principal's regex against the whole `spiffe://` URI: an alternation in
/// the value cannot match the bare principal.
#[test]
fn principal_regexes_see_the_spiffe_uri() {
    let a = authz(&allow(
        "from: [{source: {principals: ['*/ns/foo/sa/x|cluster.local/ns/bar/sa/y']}}]",
    ));
    assert!(!allowed(&a, Some("cluster.local/ns/bar/sa/y"), "/", &[]));
    assert!(allowed(&a, Some("cluster.local/ns/foo/sa/x"), "/", &[]));
}

/// istiod's `stringMatch` matches both ways: a wildcard alias of the mesh (`old-*`) covers
/// a principal's trust domain too.
#[test]
fn a_wildcard_alias_covers_a_principals_trust_domain() {
    let opts = MeshOptions {
        trust_domain: "new-td".into(),
        trust_domain_aliases: vec!["old-*".into()],
        ..MeshOptions::default()
    };
    let a = authz_with(
        &allow("from: [{source: {principals: ['old-td/ns/foo/sa/sleep']}}]"),
        opts,
    );
    assert!(allowed(&a, Some("new-td/ns/foo/sa/sleep"), "/", &[]));
}

/// `when: source.serviceAccount` is built with the `serviceAccounts` field's generator
/// (`srcServiceAccountGenerator`, istiod's `serviceAccountRegex`): the two accept the same
/// principals.
#[test]
fn the_service_account_condition_matches_as_the_field() {
    let field = authz(&allow(
        "from: [{source: {serviceAccounts: ['foo/my.sa', bar]}}]",
    ));
    let when = authz(&allow(
        "when: [{key: source.serviceAccount, values: ['foo/my.sa', bar]}]",
    ));
    for (p, want) in [
        ("cluster.local/ns/foo/sa/my.sa", true),
        ("cluster.local/ns/foo/sa/myXsa", true), // `.` unescaped in istiod's regex
        ("cluster.local/ns/foo/sa/bar/extra", true),
        ("cluster.local/ns/foo/x/y/sa/bar", true),
        ("cluster.local/ns/other/sa/bar", false),
    ] {
        assert_eq!(allowed(&field, Some(p), "/", &[]), want, "field {p}");
        assert_eq!(allowed(&when, Some(p), "/", &[]), want, "when {p}");
    }
}
