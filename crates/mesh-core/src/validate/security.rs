//! PeerAuthentication, AuthorizationPolicy and RequestAuthentication checks (istiod
//! `ValidatePeerAuthentication`, `ValidateAuthorizationPolicy`,
//! `ValidateRequestAuthentication`, spec §§7-9).

use super::common::*;
use super::{Ctx, Help};
use crate::diag::{codes, Severity};
use crate::model::{
    AuthorizationAction, AuthorizationPolicy, Condition, JwtRule, MatchLabelsSelector, Operation,
    PeerAuthentication, PolicyTargetReference, RequestAuthentication, RuleSource,
};

pub(super) fn validate_peer_authentication(cx: &mut Ctx<'_>, pa: &PeerAuthentication) {
    let has_selector = pa
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if let Some(sel) = &pa.selector {
        validate_workload_selector(
            cx,
            "spec.selector.matchLabels",
            &sel.match_labels,
            "workload selector specified without labels",
        );
    }
    if pa.port_level_mtls.is_empty() && cx.obj.source.locate("spec.portLevelMtls").is_some() {
        cx.error(
            "spec.portLevelMtls",
            "port level mTLS, if defined, must have at least one element",
        );
    }
    if !pa.port_level_mtls.is_empty() && !has_selector {
        cx.error(
            "spec.portLevelMtls",
            "mesh/namespace peer authentication cannot have port level mTLS",
        )
        .help("portLevelMtls needs a `selector` naming the workloads (ports are container ports)");
    }
    for port in pa.port_level_mtls.keys() {
        if !(1..=65535).contains(port) {
            cx.error(
                &format!("spec.portLevelMtls.{port}"),
                "port must be in range 1..65535",
            );
        }
    }
    if has_selector && cx.namespace() == cx.opts.root_namespace {
        cx.with_code(
            Severity::Warning,
            codes::INEFFECTIVE_POLICY,
            "spec.selector",
            format!(
                "a PeerAuthentication with a selector in the root namespace ({}) is ignored",
                cx.opts.root_namespace
            ),
        )
        .help("move it to the workloads' namespace, or remove the selector to make it mesh-wide");
    }
}

fn validate_target_refs(
    cx: &mut Ctx<'_>,
    selector: &Option<MatchLabelsSelector>,
    target_ref: &Option<PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    prefix: &str,
) {
    if let Some(sel) = selector {
        validate_workload_selector(
            cx,
            "spec.selector.matchLabels",
            &sel.match_labels,
            "workload selector specified without labels",
        );
    }
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        cx.error(
            "spec",
            format!("{prefix}only one of targetRefs or workloadSelector can be set"),
        );
    }
    let refs = target_ref
        .iter()
        .map(|r| ("spec.targetRef".to_owned(), r))
        .chain(
            target_refs
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r)),
        );
    let allowed = [
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "GatewayClass"),
        ("", "Service"),
        ("core", "Service"),
        ("networking.istio.io", "ServiceEntry"),
    ];
    for (p, r) in refs {
        if r.name.is_empty() {
            cx.error(
                &format!("{p}.name"),
                format!("{prefix}targetRef name must be set"),
            );
        }
        if r.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
            cx.error(
                &format!("{p}.namespace"),
                format!("{prefix}targetRef namespace must not be set; cross namespace referencing is not supported"),
            );
        }
        if !allowed.iter().any(|(g, k)| *g == r.group && *k == r.kind) {
            cx.error(
                &format!("{p}.kind"),
                format!(
                    "{prefix}targetRef must be to one of [gateway.networking.k8s.io/Gateway gateway.networking.k8s.io/GatewayClass /Service networking.istio.io/ServiceEntry] but was {}/{}",
                    r.group, r.kind
                ),
            );
        }
    }
}

pub(super) fn validate_authorization_policy(cx: &mut Ctx<'_>, ap: &AuthorizationPolicy) {
    let prefix = format!(
        "invalid policy {}.{}: ",
        cx.obj.metadata.name,
        cx.namespace()
    );
    validate_target_refs(cx, &ap.selector, &ap.target_ref, &ap.target_refs, &prefix);

    if let Some(v) = cx.obj.metadata.annotations.get("istio.io/dry-run") {
        if !matches!(
            ap.action,
            AuthorizationAction::Allow | AuthorizationAction::Deny
        ) {
            let action = action_name(ap.action);
            cx.error(
                "metadata.annotations.istio.io/dry-run",
                format!(
                    "the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action {action} in {}/{}",
                    cx.namespace(),
                    cx.obj.metadata.name
                ),
            );
        }
        if crate::authz::parse_go_bool(v).is_none() {
            let (ns, name) = (cx.namespace().to_owned(), cx.obj.metadata.name.clone());
            cx.error(
                "metadata.annotations.istio.io/dry-run",
                format!("{ns}/{name} has annotation istio.io/dry-run with invalid value ({v}): strconv.ParseBool: parsing {v:?}: invalid syntax"),
            );
        }
    }

    match ap.action {
        AuthorizationAction::Custom => {
            if ap.rules.is_empty() {
                cx.error("spec.rules", format!("{prefix}CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{{}}` if you want it be triggered for every request"));
            } else {
                match &ap.provider {
                    None => {
                        cx.error("spec", format!("{prefix}`provider.name` must not be empty"));
                    }
                    Some(p) if p.name.is_empty() => {
                        cx.error(
                            "spec.provider.name",
                            format!("{prefix}`provider.name` must not be empty"),
                        );
                    }
                    _ => {}
                }
            }
        }
        other => {
            if ap.provider.is_some() {
                cx.error(
                    "spec.provider",
                    format!(
                        "{prefix}`provider` must not be with non CUSTOM action, found {}",
                        action_name(other)
                    ),
                );
            }
            if other == AuthorizationAction::Deny && ap.rules.is_empty() {
                cx.error("spec", format!("{prefix}DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{{}}` if you want it be triggered for every request"));
            }
        }
    }

    let custom = ap.action == AuthorizationAction::Custom;
    for (i, rule) in ap.rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        // istiod's formula for "only HTTP attributes in a DENY rule".
        let mut from_exists = false;
        let mut to_exists = false;
        let mut tcp_in_from = false;
        let mut tcp_in_to = false;
        if let Some(from) = &rule.from {
            if from.is_empty() {
                cx.error(
                    &format!("{rp}.from"),
                    format!("{prefix}`from` must not be empty, found at rule {i}"),
                );
            }
            for (j, f) in from.iter().enumerate() {
                let fp = format!("{rp}.from[{j}]");
                match &f.source {
                    None => {
                        cx.error(
                            &fp,
                            format!("{prefix}`from.source` must not be nil, found at rule {i}"),
                        );
                    }
                    Some(s) if *s == RuleSource::default() => {
                        from_exists = true;
                        cx.error(
                            &format!("{fp}.source"),
                            format!("{prefix}`from.source` must not be empty, found at rule {i}"),
                        );
                    }
                    Some(s) => {
                        from_exists = true;
                        validate_source(cx, &format!("{fp}.source"), s, i, &prefix, custom);
                        if !(s.principals.is_empty()
                            && s.not_principals.is_empty()
                            && s.ip_blocks.is_empty()
                            && s.not_ip_blocks.is_empty()
                            && s.namespaces.is_empty()
                            && s.not_namespaces.is_empty()
                            && s.remote_ip_blocks.is_empty()
                            && s.not_remote_ip_blocks.is_empty()
                            && s.service_accounts.is_empty()
                            && s.not_service_accounts.is_empty())
                        {
                            tcp_in_from = true;
                        }
                    }
                }
            }
        }
        if let Some(to) = &rule.to {
            if to.is_empty() {
                cx.error(
                    &format!("{rp}.to"),
                    format!("{prefix}`to` must not be empty, found at rule {i}"),
                );
            }
            for (j, t) in to.iter().enumerate() {
                let tp = format!("{rp}.to[{j}]");
                match &t.operation {
                    None => {
                        cx.error(
                            &tp,
                            format!("{prefix}`to.operation` must not be nil, found at rule {i}"),
                        );
                    }
                    Some(o) if *o == Operation::default() => {
                        to_exists = true;
                        cx.error(
                            &format!("{tp}.operation"),
                            format!("{prefix}`to.operation` must not be empty, found at rule {i}"),
                        );
                    }
                    Some(o) => {
                        to_exists = true;
                        validate_operation(cx, &format!("{tp}.operation"), o, &prefix);
                        if !o.ports.is_empty() || !o.not_ports.is_empty() {
                            tcp_in_to = true;
                        }
                    }
                }
            }
        }
        for (j, c) in rule.when.iter().enumerate() {
            validate_condition(cx, &format!("{rp}.when[{j}]"), c, &prefix, custom);
        }
        let http_only = (from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to);
        if ap.action == AuthorizationAction::Deny && http_only {
            cx.warn(
                &rp,
                "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port",
            );
        }
    }
}

fn action_name(a: AuthorizationAction) -> &'static str {
    match a {
        AuthorizationAction::Allow => "ALLOW",
        AuthorizationAction::Deny => "DENY",
        AuthorizationAction::Audit => "AUDIT",
        AuthorizationAction::Custom => "CUSTOM",
    }
}

/// istiod's `CheckServiceAccount` for one value of `key`: `sa` or `ns/sa`, no wildcard,
/// at most 320 characters; its messages.
fn check_service_account(v: &str, key: &str) -> Result<(), String> {
    const FORMAT: &str = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    if v.is_empty() {
        return Err(format!("empty value not allowed, found in {key}"));
    }
    if v.contains('*') {
        return Err(format!("wildcard not allowed, found in {key}"));
    }
    if v.matches('/').count() > 1 {
        return Err(format!("{FORMAT}, found {v:?} in {key}"));
    }
    if v.len() > 320 {
        return Err(format!(
            "value cannot exceed 320 characters, found {v:?} in {key}"
        ));
    }
    match v.split_once('/') {
        Some(("", _)) => Err(format!("{FORMAT}, found empty namespace {v:?} in {key}")),
        Some((_, "")) => Err(format!(
            "{FORMAT}, found empty serviceAccount {v:?} in {key}"
        )),
        _ => Ok(()),
    }
}

/// `CheckEmptyValues`; the message names the field as istiod does (`Principals`).
fn check_values(cx: &mut Ctx<'_>, p: &str, field: &str, values: &[String], prefix: &str) {
    for (k, v) in values.iter().enumerate() {
        if v.is_empty() {
            let mut go_name = String::with_capacity(field.len());
            let mut chars = field.chars();
            if let Some(c) = chars.next() {
                go_name.extend(c.to_uppercase());
                go_name.extend(chars);
            }
            cx.error(
                &format!("{p}.{field}[{k}]"),
                format!("{prefix}empty value not allowed, found in {go_name}"),
            );
        }
    }
}

/// `security.ValidateIPs` and `CheckEmptyValues` (istiod reports an empty entry both ways).
fn check_ip_blocks(cx: &mut Ctx<'_>, p: &str, field: &str, values: &[String], prefix: &str) {
    for (k, v) in values.iter().enumerate() {
        if let Err(e) = validate_security_ip(v) {
            cx.error(&format!("{p}.{field}[{k}]"), format!("{prefix}{e}"));
        }
    }
    check_values(cx, p, field, values, prefix);
}

fn validate_source(
    cx: &mut Ctx<'_>,
    p: &str,
    s: &RuleSource,
    rule: usize,
    prefix: &str,
    custom: bool,
) {
    let string_fields: [(&str, &[String]); 10] = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ];
    for (field, values) in string_fields {
        check_values(cx, p, field, values, prefix);
    }
    for (field, values) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        check_ip_blocks(cx, p, field, values, prefix);
    }
    if (!s.service_accounts.is_empty() || !s.not_service_accounts.is_empty())
        && (!s.principals.is_empty()
            || !s.not_principals.is_empty()
            || !s.namespaces.is_empty()
            || !s.not_namespaces.is_empty())
    {
        cx.error(p, format!("{prefix}cannot set serviceAccounts with namespaces or principals, found at rule {rule}"));
    }
    // istiod's CheckServiceAccount: the first error of each list
    for (field, key, values) in [
        ("serviceAccounts", "ServiceAccounts", &s.service_accounts),
        (
            "notServiceAccounts",
            "NotServiceAccounts",
            &s.not_service_accounts,
        ),
    ] {
        if values.len() > 16 {
            cx.error(
                &format!("{p}.{field}"),
                format!("{prefix}may not have more than 16 values"),
            );
            continue;
        }
        // (an empty value is already reported by CheckEmptyValues)
        let bad = values.iter().enumerate().find_map(|(k, v)| {
            (!v.is_empty())
                .then(|| check_service_account(v, key).err())
                .flatten()
                .map(|e| (k, e))
        });
        if let Some((k, e)) = bad {
            cx.error(&format!("{p}.{field}[{k}]"), format!("{prefix}{e}"));
        }
    }
    for (field, values) in [
        ("trustDomains", &s.trust_domains),
        ("notTrustDomains", &s.not_trust_domains),
    ] {
        for (k, v) in values.iter().enumerate() {
            let vp = format!("{p}.{field}[{k}]");
            let stars = v.matches('*').count();
            if stars > 1 {
                cx.error(
                    &vp,
                    format!("{prefix}at most one wildcard is allowed in trust domain {v:?}"),
                );
            } else if stars == 1 && v.len() > 1 && !v.starts_with('*') && !v.ends_with('*') {
                cx.error(&vp, format!("{prefix}wildcard is only allowed at the start or end of trust domain {v:?}"));
            }
            if v.contains('/') {
                cx.error(
                    &vp,
                    format!("{prefix}trust domain must not contain '/': {v:?}"),
                );
            }
        }
    }
    for (field, values) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
    ] {
        for (k, v) in values.iter().enumerate() {
            if let Some(rest) = v.strip_prefix("spiffe://") {
                cx.with_code(
                    Severity::Warning,
                    codes::LINT,
                    &format!("{p}.{field}[{k}]"),
                    format!("principal {v:?} starts with `spiffe://` and will never match: Istio adds the scheme itself"),
                )
                .help(format!("write `{rest}`"));
            }
        }
    }
    if custom {
        let unsupported: [(&str, bool); 8] = [
            ("From.Namespaces", !s.namespaces.is_empty()),
            ("From.NotNamespaces", !s.not_namespaces.is_empty()),
            ("From.ServiceAccounts", !s.service_accounts.is_empty()),
            (
                "From.NotServiceAccounts",
                !s.not_service_accounts.is_empty(),
            ),
            ("From.Principals", !s.principals.is_empty()),
            ("From.NotPrincipals", !s.not_principals.is_empty()),
            ("From.RequestPrincipals", !s.request_principals.is_empty()),
            (
                "From.NotRequestPrincipals",
                !s.not_request_principals.is_empty(),
            ),
        ];
        for (what, set) in unsupported {
            if set {
                cx.error(
                    p,
                    format!("{prefix}{what} is currently not supported with CUSTOM action"),
                );
            }
        }
    }
}

fn validate_operation(cx: &mut Ctx<'_>, p: &str, o: &Operation, prefix: &str) {
    for (field, values) in [
        ("hosts", &o.hosts),
        ("notHosts", &o.not_hosts),
        ("methods", &o.methods),
        ("notMethods", &o.not_methods),
        ("paths", &o.paths),
        ("notPaths", &o.not_paths),
        ("ports", &o.ports),
        ("notPorts", &o.not_ports),
    ] {
        check_values(cx, p, field, values, prefix);
    }
    // security.ValidatePorts: 0..65535 (an empty value is reported by both checks)
    for (field, values) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
        for (k, v) in values.iter().enumerate() {
            if let Err(e) = validate_security_port(v) {
                cx.error(&format!("{p}.{field}[{k}]"), format!("{prefix}{e}"));
            }
        }
    }
    for (field, key, values) in [
        ("paths", "Paths", &o.paths),
        ("notPaths", "NotPaths", &o.not_paths),
    ] {
        for (k, v) in values.iter().enumerate() {
            if let Err(e) = validate_path_template(v) {
                // istiod prints the path with its leading and trailing `/` trimmed
                let shown = v.trim_matches('/');
                cx.error(
                    &format!("{p}.{field}[{k}]"),
                    format!("{prefix}invalid or unsupported path {shown}, found in {key}. {e}"),
                );
            } else if (v.contains("{*}") || v.contains("{**}")) && !v.starts_with('/') {
                cx.lint_warn(
                    &format!("{p}.{field}[{k}]"),
                    format!("path template {v:?} does not start with `/`: istiod accepts it, but Envoy refuses the listener configuration with it, so the policy never applies as written (inmesh denies what the policy covers)"),
                );
            }
        }
    }
    for (field, values) in [("methods", &o.methods), ("notMethods", &o.not_methods)] {
        for (k, v) in values.iter().enumerate() {
            if v.bytes().any(|c| c.is_ascii_lowercase()) {
                cx.with_code(
                    Severity::Warning,
                    codes::LINT,
                    &format!("{p}.{field}[{k}]"),
                    format!("method {v:?} is not upper case and will never match (request methods are upper case)"),
                )
                .help(format!("write `{}`", v.to_ascii_uppercase()));
            }
        }
    }
}

/// Path templates as istiod checks them ([`crate::authz::check_path_template`]).
fn validate_path_template(path: &str) -> Result<(), String> {
    if !path.contains('{') && !path.contains('}') {
        return Ok(());
    }
    crate::authz::check_path_template(path)
}

const EXACT_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

fn validate_condition(cx: &mut Ctx<'_>, p: &str, c: &Condition, prefix: &str, custom: bool) {
    let key = c.key.as_str();
    if key.is_empty() {
        cx.error(
            &format!("{p}.key"),
            format!("{prefix}`key` must not be empty"),
        );
        return;
    }
    let kp = format!("{p}.key");
    if custom
        && (key == "source.namespace"
            || key == "source.principal"
            || key == "source.serviceAccount"
            || key == "source.trustDomain"
            || key.starts_with("request.auth."))
    {
        cx.error(
            &kp,
            format!("{prefix}{key} is currently not supported with CUSTOM action"),
        );
    }
    if c.values.is_empty() && c.not_values.is_empty() {
        cx.error(
            p,
            format!("{prefix}at least one of `values` or `notValues` must be set for key {key}"),
        );
        return;
    }
    // istiod validates the key together with each value list (`ValidateAttribute`), so a bad
    // key is reported as "invalid `value` for `key` ...".
    let which = if c.values.is_empty() {
        "notValue"
    } else {
        "value"
    };
    let bracket_ok = |k: &str, base: &str| -> bool {
        let rest = &k[base.len()..];
        // a[b] or a[b][c]...
        !rest.is_empty()
            && rest.starts_with('[')
            && rest.ends_with(']')
            && rest[1..rest.len() - 1]
                .split("][")
                .all(|part| !part.is_empty() && !part.contains('[') && !part.contains(']'))
    };
    // istiod's `CheckEmptyValues`, before the key is looked at
    for (field, which, values) in [
        ("values", "value", &c.values),
        ("notValues", "notValue", &c.not_values),
    ] {
        if let Some(k) = values.iter().position(String::is_empty) {
            cx.error(
                &format!("{p}.{field}[{k}]"),
                format!(
                    "{prefix}invalid `{which}` for `key` {key}: empty value not allowed, found in {key}"
                ),
            );
            return;
        }
    }
    // istiod's `validateMapKey`: `a[b]` with something in the brackets
    let map_key_ok = |k: &str| {
        k.find('[')
            .is_some_and(|open| k.ends_with(']') && open > 0 && open + 2 < k.len())
    };
    let key_error: Option<String> = if EXACT_KEYS.contains(&key) {
        None
    } else if key.starts_with("experimental.envoy.filters.") {
        (!map_key_ok(key)).then(|| format!("bad key ({key}): should have format a[b]"))
    } else if key.starts_with("request.experimental.inline.headers") {
        (!bracket_ok(key, "request.experimental.inline.headers"))
            .then(|| format!("bad key ({key}): should have format a[b]"))
    } else if key.starts_with("request.headers") {
        (!bracket_ok(key, "request.headers") || key[16..key.len() - 1].contains("]["))
            .then(|| format!("bad key ({key}): should have format a[b]"))
    } else if key.starts_with("request.auth.claims") {
        (!bracket_ok(key, "request.auth.claims"))
            .then(|| format!("bad key ({key}): should have format a[b]"))
    } else if key == "destination.namespace" {
        Some(format!(
            "attribute {key} is replaced by the metadata.namespace"
        ))
    } else if key.starts_with("destination.labels") {
        Some(format!(
            "attribute {key} is replaced by the workload selector"
        ))
    } else if key == "destination.name" || key == "destination.user" {
        Some(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        ))
    } else {
        Some(format!("unknown attribute: {key}"))
    };
    if let Some(e) = key_error {
        let d = cx.error(
            &kp,
            format!("{prefix}invalid `{which}` for `key` {key}: {e}"),
        );
        if e.starts_with("unknown attribute") {
            let mut cands: Vec<&str> = EXACT_KEYS.to_vec();
            cands.extend(["request.headers[]", "request.auth.claims[]"]);
            if let Some(s) = crate::diag::did_you_mean(key, cands) {
                d.help(format!("did you mean `{s}`?"));
            }
        }
        return;
    }
    for (field, which, values) in [
        ("values", "value", &c.values),
        ("notValues", "notValue", &c.not_values),
    ] {
        if key == "source.serviceAccount" && values.len() > 16 {
            cx.error(
                &format!("{p}.{field}"),
                format!(
                    "{prefix}invalid `{which}` for `key` {key}: may not have more than 16 values"
                ),
            );
        }
        for (k, v) in values.iter().enumerate() {
            let vp = format!("{p}.{field}[{k}]");
            let err = match key {
                "source.ip" | "remote.ip" | "destination.ip" => validate_security_ip(v).err(),
                "destination.port" => validate_security_port(v).err(),
                "source.serviceAccount" => check_service_account(v, key).err(),
                _ => None,
            };
            if let Some(e) = err {
                cx.error(
                    &vp,
                    format!("{prefix}invalid `{which}` for `key` {key}: {e}"),
                );
            }
        }
    }
}

pub(super) fn validate_request_authentication(cx: &mut Ctx<'_>, ra: &RequestAuthentication) {
    let prefix = String::new();
    validate_target_refs(cx, &ra.selector, &ra.target_ref, &ra.target_refs, &prefix);
    for (i, r) in ra.jwt_rules.iter().enumerate() {
        validate_jwt_rule(cx, &format!("spec.jwtRules[{i}]"), r);
    }
}

fn is_jwt_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// What Go's `url.Parse` (istiod's `ParseJwksURI`) refuses in an `http(s)://` URI whose
/// part after the scheme is `rest`: a `%` not followed by two hex digits, a character not
/// allowed in a host name, a port that is not a number; with Go's messages.
fn go_url_parse(uri: &str, rest: &str) -> Result<(), String> {
    let b = uri.as_bytes();
    for (i, _) in uri.match_indices('%') {
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            let end = (i + 3).min(uri.len());
            let esc = uri.get(i..end).unwrap_or("%");
            return Err(format!("parse {uri:?}: invalid URL escape {esc:?}"));
        }
    }
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => (v6, None),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if let Some(c) = host.chars().find(|c| {
        c.is_control()
            || matches!(
                c,
                ' ' | '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`'
            )
    }) {
        return Err(format!(
            "parse {uri:?}: invalid character {:?} in host name",
            c.to_string()
        ));
    }
    if let Some(p) = port.filter(|p| !p.bytes().all(|c| c.is_ascii_digit())) {
        return Err(format!("parse {uri:?}: invalid port \":{p}\" after host"));
    }
    Ok(())
}

fn validate_jwt_rule(cx: &mut Ctx<'_>, p: &str, r: &JwtRule) {
    let uri = r.jwks_uri.as_deref().unwrap_or("");
    if r.issuer.is_empty() && uri.is_empty() {
        cx.error(p, "issuer or jwksUri must be non-empty string");
    }
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            cx.error(
                &format!("{p}.audiences[{i}]"),
                "audience must be non-empty string",
            );
        }
    }
    if r.jwks.is_some() && r.jwks_uri.is_some() {
        cx.error(p, "only one of jwks or jwksUri can be set");
    }
    if !uri.is_empty() {
        match uri.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
                if rest.is_empty() || rest.starts_with('/') {
                    cx.error(
                        &format!("{p}.jwksUri"),
                        format!("invalid jwksUri {uri:?}: missing host"),
                    );
                } else if let Err(e) = go_url_parse(uri, rest) {
                    cx.error(&format!("{p}.jwksUri"), e);
                }
            }
            Some((scheme, _)) => {
                cx.error(
                    &format!("{p}.jwksUri"),
                    format!("URI scheme {scheme:?} is not supported"),
                );
            }
            None => {
                cx.error(
                    &format!("{p}.jwksUri"),
                    "url must have scheme http:// or https://",
                );
            }
        }
    }
    if let Some(jwks) = &r.jwks {
        match serde_json::from_str::<serde_json::Value>(jwks) {
            Err(e) => {
                cx.error(&format!("{p}.jwks"), format!("jwks parse error: {e}"));
            }
            Ok(v) => {
                // A JWK Set (`{"keys": [...]}`) or a single JWK (`{"kty": ...}`).
                let keys: Vec<&serde_json::Value> = match v.get("keys").and_then(|k| k.as_array()) {
                    Some(keys) => keys.iter().collect(),
                    None if v.get("kty").is_some() => vec![&v],
                    None => {
                        cx.error(
                            &format!("{p}.jwks"),
                            "jwks parse error: failed to parse jwks: expected a JWK Set with `keys` or a single JWK with `kty`",
                        );
                        Vec::new()
                    }
                };
                for (i, k) in keys.iter().enumerate() {
                    if k.get("kty").and_then(|t| t.as_str()).is_none() {
                        cx.error(
                            &format!("{p}.jwks"),
                            format!("jwks parse error: key at index {i} has no `kty`"),
                        );
                    }
                    if ["d", "p", "q", "dp", "dq", "qi"]
                        .iter()
                        .any(|f| k.get(f).is_some())
                    {
                        cx.lint_warn(
                            &format!("{p}.jwks"),
                            format!("jwks key at index {i} contains private key material; only public keys are used for verification"),
                        );
                    }
                }
            }
        }
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        if h.name.is_empty() {
            cx.error(
                &format!("{p}.fromHeaders[{i}].name"),
                "location header name must be non-empty string",
            );
        }
    }
    for (i, q) in r.from_params.iter().enumerate() {
        if q.is_empty() {
            cx.error(
                &format!("{p}.fromParams[{i}]"),
                "location query must be non-empty string",
            );
        }
    }
    for (i, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            cx.error(
                &format!("{p}.fromCookies[{i}]"),
                "cookie name must be non-empty string",
            );
        }
    }
    for (i, c) in r.space_delimited_claims.iter().enumerate() {
        if c.is_empty() {
            // the CRD's `minLength: 1` on the items (the API server refuses the object)
            cx.error(
                &format!("{p}.spaceDelimitedClaims[{i}]"),
                format!("{p}.spaceDelimitedClaims[{i}] in body should be at least 1 chars long"),
            );
        }
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let cp = format!("{p}.outputClaimToHeaders[{i}]");
        if c.header.is_empty() || c.claim.is_empty() {
            cx.error(
                &cp,
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
        } else if !is_jwt_header_name(&c.header) {
            cx.error(
                &format!("{cp}.header"),
                format!("header name {} is not a valid header name", c.header),
            );
        }
    }
    if let Some(t) = r.timeout {
        cx.check(&format!("{p}.timeout"), validate_duration(t));
    }
}

#[cfg(test)]
mod tests {
    use super::validate_path_template;

    #[test]
    fn path_templates() {
        assert!(validate_path_template("/api/{*}/x").is_ok());
        assert!(validate_path_template("/api/{**}").is_ok());
        assert!(validate_path_template("/plain/*").is_ok());
        // literals may follow `{**}` (istiod's TestCheckValidPathTemplate), operators not
        assert!(validate_path_template("/api/{**}/x").is_ok());
        assert_eq!(
            validate_path_template("/api/{**}/{*}").unwrap_err(),
            "{**} is not the last operator"
        );
        assert!(validate_path_template("/api/{id}").is_err());
        assert!(validate_path_template("/api/a{*}").is_err());
    }
}
