//! Checks shared by several kinds, with istiod's messages.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Ctx, Help};
use crate::diag::{codes, Severity};
use crate::model::{Duration, StringMatch};

/// Istio's DNS-1123 label (`[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, ≤ 63; upper case is
/// accepted, as in Istio's regex).
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Kubernetes DNS-1123 subdomain (object names): lower case, ≤ 253, dot-separated labels.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.')
            .all(|l| is_dns1123_label(l) && !l.bytes().any(|c| c.is_ascii_uppercase()))
}

/// Istio's `IsWildcardDNS1123Label`: `*`, or `*`/`*-` followed by a label, or a label.
fn is_wildcard_dns1123_label(s: &str) -> bool {
    if s.len() > 63 {
        return false;
    }
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    is_dns1123_label(rest)
}

fn check_dns1123_preconditions(domain: &str) -> Result<(), String> {
    if domain.len() > 255 {
        return Err(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Err("empty domain name not allowed".to_owned());
    }
    Ok(())
}

fn validate_dns1123_labels(domain: &str, full: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts[parts.len() - 1];
    if !tld.is_empty() && tld.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "domain name {full:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    for (i, label) in parts.iter().enumerate() {
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name {full:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    Ok(())
}

/// istiod's `ValidateWildcardDomain`: a DNS name whose first label may be a wildcard.
///
/// # Examples
///
/// ```
/// use mesh_core::validate::validate_wildcard_domain;
///
/// assert_eq!(validate_wildcard_domain("*.example.com"), Ok(()));
/// assert_eq!(validate_wildcard_domain("reviews"), Ok(()));
/// assert_eq!(validate_wildcard_domain("*"), Ok(()));
/// assert!(validate_wildcard_domain("api.*.example.com").is_err()); // wildcard not first
/// assert!(validate_wildcard_domain("under_score.example.com").is_err());
/// ```
pub fn validate_wildcard_domain(domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_dns1123_label(first) {
        return Err(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    match rest {
        // istiod names only the part after the first label in these errors.
        Some(r) => validate_dns1123_labels(r, r),
        None => Ok(()),
    }
}

/// istiod's `ValidateFQDN`: a DNS name without wildcards.
pub(crate) fn validate_fqdn(domain: &str) -> Result<(), String> {
    check_dns1123_preconditions(domain)?;
    validate_dns1123_labels(domain, domain)
}

/// istiod's `ValidateDuration`: at least 1 ms, millisecond precision.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
/// use mesh_core::validate::validate_duration;
///
/// let d = |s: &str| Duration::parse(s).unwrap();
/// assert_eq!(validate_duration(d("1.5s")), Ok(()));
/// assert_eq!(validate_duration(d("1500us")), Err("only durations to ms precision are supported".to_string()));
/// // (the minimum is checked first, as istiod does)
/// assert_eq!(validate_duration(d("500us")), Err("duration must be greater than 1ms".to_string()));
/// assert_eq!(validate_duration(d("0s")), Err("duration must be greater than 1ms".to_string()));
/// ```
pub fn validate_duration(d: Duration) -> Result<(), String> {
    if d.as_nanos() < 1_000_000 {
        return Err("duration must be greater than 1ms".to_owned());
    }
    if !d.is_ms_precision() {
        return Err("only durations to ms precision are supported".to_owned());
    }
    Ok(())
}

/// A duration that may also be zero (idle timeouts, cookie TTL).
pub(crate) fn validate_duration_or_zero(d: Duration) -> Result<(), String> {
    if d.as_nanos() == 0 {
        Ok(())
    } else {
        validate_duration(d)
    }
}

/// `ValidatePort`.
pub(crate) fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// `ValidatePort` for a Go `int`, negative numbers included.
pub(crate) fn validate_port_int(port: i64) -> Result<(), String> {
    match u32::try_from(port) {
        Ok(p) => validate_port(p),
        Err(_) => Err(format!("port number {port} must be in the range 1..65535")),
    }
}

/// `validatePercentage` (Percent message).
pub(crate) fn validate_percentage(v: f64) -> Result<(), String> {
    if !(0.0..=100.0).contains(&v) || (v > 0.0 && v < 0.0001) || v.is_nan() {
        Err(format!(
            "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
            fmt_float(v)
        ))
    } else {
        Ok(())
    }
}

/// `validatePercent` (integer percentages).
pub(crate) fn validate_percent_int(v: i64) -> Result<(), String> {
    if (0..=100).contains(&v) {
        Ok(())
    } else {
        Err(format!("percentage {v} is not in range 0..100"))
    }
}

/// Formats a float like Go's `%v`.
pub(crate) fn fmt_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

pub(crate) fn is_cidr(s: &str) -> bool {
    s.parse::<ipnet::IpNet>().is_ok()
}

/// An IP or a CIDR.
pub(crate) fn validate_ip_or_cidr(s: &str) -> Result<(), String> {
    if s.contains('/') {
        if is_cidr(s) {
            Ok(())
        } else {
            Err(format!("{s} is not a valid CIDR block"))
        }
    } else if is_ip(s) {
        Ok(())
    } else {
        Err(format!("{s} is not a valid IP"))
    }
}

/// Kubernetes label name part: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, ≤ 63.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub(crate) fn is_label_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty() && is_dns1123_subdomain(prefix) && is_qualified_name_part(name)
        }
        None => is_qualified_name_part(k),
    }
}

pub(crate) fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_qualified_name_part(v)
}

/// `labels.Instance.Validate`.
pub(crate) fn validate_labels(cx: &mut Ctx<'_>, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if !is_label_key(k) {
            cx.error(&format!("{path}.{k}"), format!("invalid tag key: {k:?}"));
        }
        if !is_label_value(v) {
            cx.error(&format!("{path}.{k}"), format!("invalid tag value: {v:?}"));
        }
    }
}

/// istiod's `validateWorkloadSelector` (DestinationRule, PeerAuthentication,
/// AuthorizationPolicy, RequestAuthentication) and `ValidateAlphaWorkloadSelector` (ServiceEntry,
/// Sidecar): no empty key, no `*` in a key or value; no labels is a warning. Neither checks the
/// label syntax, so a label no workload can carry is only a hint; but the CRDs limit values to
/// 63 characters (`maxLength: 63`), which the API server enforces before istiod sees the
/// object. Returns whether istiod reported an error: ServiceEntry and Sidecar validation
/// stops there.
pub(crate) fn validate_workload_selector(
    cx: &mut Ctx<'_>,
    path: &str,
    labels: &BTreeMap<String, String>,
    empty_warning: &str,
) -> bool {
    if labels.is_empty() {
        cx.warn(path, empty_warning);
        return false;
    }
    let mut failed = false;
    for (k, v) in labels {
        let p = format!("{path}.{k}");
        let mut bad = false;
        if k.is_empty() {
            cx.error(
                &p,
                format!("empty key is not supported in selector: \"={v}\""),
            );
            bad = true;
        }
        if k.contains('*') || v.contains('*') {
            cx.error(
                &p,
                format!("wildcard is not supported in selector: \"{k}={v}\""),
            );
            bad = true;
        }
        // the API server's `maxLength` counts characters
        let too_long = v.chars().count() > 63;
        if too_long {
            cx.error(&p, format!("{p}: Too long: may not be longer than 63"));
        }
        if !bad && !too_long {
            lint_unmatchable_selector_label(cx, &p, k, v);
        }
        failed |= bad;
    }
    failed
}

/// Lint: a selector label that is not a valid Kubernetes label selects no workload (istiod
/// does not check selector label syntax).
pub(crate) fn lint_unmatchable_selector_label(cx: &mut Ctx<'_>, path: &str, k: &str, v: &str) {
    if is_label_key(k) && is_label_value(v) {
        return;
    }
    let kind = cx.obj.kind.as_str();
    cx.with_code(
        Severity::Info,
        codes::LINT,
        path,
        format!(
            "selector `{k}: {v}` is not a valid Kubernetes label, so no workload has it: this {kind} selects nothing"
        ),
    )
    .help(format!(
        "a {kind} selector matches labels exactly (no wildcards)"
    ));
}

/// RFC 7230 token characters (header names).
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Checks a regex as Istio/Envoy would use it (RE2, matched against the whole string): it
/// compiles exactly when the data plane's [`re2_regex`](crate::route::re2_regex)
/// compiles it (RE2's ASCII classes, `\Q...\E`, literal `{`, repeat counts up to 1000).
pub(crate) fn validate_regex(re: &str) -> Result<(), String> {
    const RE2_HINT: &str =
        "Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)";
    crate::route::re2_regex(re, true)
        .map(drop)
        .map_err(|e| format!("{e}; {RE2_HINT}"))
}

/// `validateStringMatch`: one arm at most, non-empty prefix (except `uri`), non-empty regex of
/// at most 1024 characters that compiles.
pub(crate) fn validate_string_match(
    cx: &mut Ctx<'_>,
    path: &str,
    where_: &str,
    m: &StringMatch,
    is_uri: bool,
) {
    if m.arms_set() > 1 {
        cx.error(
            path,
            format!("{where_:?}: only one of exact, prefix or regex may be set"),
        );
    }
    if let Some(p) = &m.prefix
        && p.is_empty()
        && !is_uri
    {
        cx.error(
            &format!("{path}.prefix"),
            format!("{where_:?}: prefix string match should not be empty"),
        );
    }
    if let Some(r) = &m.regex {
        let rp = format!("{path}.regex");
        if r.is_empty() {
            cx.error(
                &rp,
                format!("{where_:?}: regex string match should not be empty"),
            );
        } else if r.len() > 1024 {
            cx.error(
                &rp,
                format!("{where_:?}: regex is too large, max length allowed is 1024"),
            );
        } else if let Err(e) = validate_regex(r) {
            cx.error(&rp, format!("{where_:?}: {e}"));
        }
    }
}

/// `validateExportTo`.
pub(crate) fn validate_export_to(
    cx: &mut Ctx<'_>,
    path: &str,
    export_to: &[String],
    is_service_entry: bool,
    is_dr_with_selector: bool,
) {
    if export_to.is_empty() {
        return;
    }
    let ns = cx.namespace().to_owned();
    // istiod's set of entries, `.` standing for the namespace itself
    let mut set: Vec<&str> = Vec::new();
    for (i, e) in export_to.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let e = e.as_str();
        let key = if e == "." { ns.as_str() } else { e };
        if set.contains(&key) {
            if key != e {
                cx.error(
                    &p,
                    format!("duplicate entries in exportTo: . and current namespace {ns}"),
                );
            } else {
                cx.error(&p, format!("duplicate entries in exportTo for entry {e}"));
            }
            continue;
        }
        set.push(key);
        match e {
            "*" | "." => {}
            "~" => {
                if !is_service_entry {
                    cx.error(
                        &p,
                        "exportTo ~ (none) is not allowed for Istio configuration objects",
                    );
                }
            }
            _ => {
                if !is_dns1123_label(e) {
                    cx.error(
                        &p,
                        "only .,*, or a valid DNS 1123 label is allowed as exportTo entry",
                    );
                }
            }
        }
    }
    if is_dr_with_selector {
        if set.contains(&ns.as_str()) {
            if set.len() > 1 {
                cx.error(
                    path,
                    "destination rule with workload selector cannot have multiple entries in exportTo",
                );
            }
        } else {
            cx.error(
                path,
                "destination rule with workload selector cannot have exportTo beyond current namespace",
            );
        }
    }
    // istiod reports both for a ServiceEntry with `~` and `*`
    if set.contains(&"*") && set.len() > 1 {
        cx.error(
            path,
            "cannot have both public (*) and non-public exportTo values for a resource",
        );
    }
    if is_service_entry && set.contains(&"~") && set.len() > 1 {
        cx.error(
            path,
            "cannot export service entry to no one (~) and someone",
        );
    }
}

/// `validateGatewayNames`.
pub(crate) fn validate_gateway_names(cx: &mut Ctx<'_>, path: &str, names: &[String]) {
    for (i, g) in names.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if g == "mesh" {
            continue;
        }
        match g.split_once('/') {
            None => {
                if let Some((name, rest)) = g.split_once('.') {
                    let ns = rest.split('.').next().unwrap_or("");
                    cx.warn(
                        &p,
                        format!(
                            "using legacy gatewayName format {g:?}; prefer the <namespace>/<name> format: \"{ns}/{name}\""
                        ),
                    );
                }
                if let Err(e) = validate_fqdn(g) {
                    cx.error(&p, e);
                }
            }
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    cx.error(&p, "config namespace and gateway name cannot be empty");
                    continue;
                }
                // istiod's webhook checks the namespace as a DNS label (so `./name` is rejected
                // here even though config resolution understands it).
                if !is_dns1123_label(ns) {
                    cx.error(&p, format!("invalid value for namespace: {ns:?}"));
                }
                if !is_dns1123_label(name) {
                    cx.error(&p, format!("invalid value for gateway name: {name:?}"));
                }
            }
        }
    }
}

/// `ValidateNamespaceSlashWildcardHostname` (Gateway server hosts, Sidecar egress hosts):
/// `namespace/dnsName` (a Gateway also takes a bare `dnsName`). The namespace is `*`, `.`, a
/// DNS label, or for a Sidecar `~`. Returns istiod's first error.
pub(crate) fn validate_namespace_slash_wildcard_hostname(
    host: &str,
    is_gateway: bool,
) -> Result<(), String> {
    let Some((ns, dns)) = host.split_once('/') else {
        if is_gateway {
            // old style host in the gateway
            return validate_sidecar_or_gateway_hostname_part(host, true);
        }
        return Err("host must be of form namespace/dnsName".to_owned());
    };
    if ns.is_empty() || dns.is_empty() {
        return Err("config namespace and dnsName in host entry cannot be empty".to_owned());
    }
    let special = if is_gateway {
        ns == "*" || ns == "."
    } else {
        ns == "*" || ns == "." || ns == "~"
    };
    if !special && !is_dns1123_label(ns) {
        let what = if is_gateway { "gateway" } else { "sidecar" };
        return Err(format!("invalid namespace value {ns:?} in {what}"));
    }
    validate_sidecar_or_gateway_hostname_part(dns, is_gateway)
}

/// istiod's `validateSidecarOrGatewayHostnamePart`: no short names (for Sidecars too), a DNS
/// name whose first label may be a wildcard (a Gateway also takes an IP: "Gateway allows IP
/// as the host string"), no partial wildcard.
fn validate_sidecar_or_gateway_hostname_part(dns: &str, is_gateway: bool) -> Result<(), String> {
    if dns != "*" && !dns.contains('.') {
        return Err("short names (non FQDN) are not allowed".to_owned());
    }
    if let Err(e) = validate_wildcard_domain(dns)
        && (!is_gateway || !is_ip(dns))
    {
        return Err(e);
    }
    if dns.contains('*') && dns.len() != 1 && !dns.starts_with("*.") {
        return Err(format!("partial wildcard {dns:?} not allowed"));
    }
    Ok(())
}

/// Kubernetes' DNS-1123 label (namespaces): lower case, unlike Istio's
/// [`is_dns1123_label`].
pub(crate) fn is_k8s_dns1123_label(s: &str) -> bool {
    is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase())
}

/// Go's `strconv.ParseUint(s, 10, 32)`: decimal digits only (no sign), with its error text.
pub(crate) fn go_parse_uint32(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    match s.parse::<u64>() {
        Ok(n) if n <= u64::from(u32::MAX) => Ok(n),
        _ => Err(format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(s)
        )),
    }
}

/// istio's `security.ValidatePorts` for one value: `strconv.ParseUint(port, 10, 32)`, at most
/// 65535 (0 is accepted). istiod prints the parse error, or `<nil>` when the number is only
/// too large.
pub(crate) fn validate_security_port(v: &str) -> Result<(), String> {
    match go_parse_uint32(v) {
        Ok(n) if n <= 65535 => Ok(()),
        Ok(_) => Err(format!("bad port ({v}): <nil>")),
        Err(e) => Err(format!("bad port ({v}): {e}")),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control()
                || (c != ' ' && c.is_whitespace())
                || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{feff}') =>
            {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.ParseUint(s, 10, bits)`, digit by digit as Go reads them (so an overflow
/// before a stray character is "value out of range").
pub(crate) fn go_parse_uint(s: &str, bits: u32) -> Result<u64, String> {
    let err = |why: &str| format!("strconv.ParseUint: parsing {}: {why}", go_quote(s));
    if s.is_empty() {
        return Err(err("invalid syntax"));
    }
    let max = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(err("invalid syntax"));
        }
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
        {
            Some(n) if n <= max => n,
            _ => return Err(err("value out of range")),
        };
    }
    Ok(n)
}

/// Go's `strconv.Atoi` (64-bit): an optional sign, then decimal digits.
pub(crate) fn go_atoi(s: &str) -> Result<i64, String> {
    let err = |why: &str| format!("strconv.Atoi: parsing {}: {why}", go_quote(s));
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let un = match go_parse_uint(digits, 64) {
        Ok(n) => n,
        Err(e) if e.ends_with("value out of range") => return Err(err("value out of range")),
        Err(_) => return Err(err("invalid syntax")),
    };
    let cutoff = 1u64 << 63;
    match (neg, un) {
        (false, n) if n >= cutoff => Err(err("value out of range")),
        (true, n) if n > cutoff => Err(err("value out of range")),
        (true, n) => Ok((n as i64).wrapping_neg()),
        (false, n) => Ok(n as i64),
    }
}

/// istio's `security.ValidateIPs` for one value: a CIDR (Go's `netip.ParsePrefix`) or an IP,
/// with istiod's messages `bad CIDR range (%s): %v` / `bad IP address (%s)`.
pub(crate) fn validate_security_ip(v: &str) -> Result<(), String> {
    if v.contains('/') {
        go_parse_prefix(v).map_err(|e| format!("bad CIDR range ({v}): {e}"))
    } else if is_ip(v) {
        Ok(())
    } else {
        Err(format!("bad IP address ({v})"))
    }
}

/// Go's `netip.ParsePrefix`: `addr/bits`, bits without sign or leading zero and within the
/// address family, with Go's error text (IPv4 address errors as `netip.ParseAddr` words
/// them; IPv6 ones summarised).
pub(crate) fn go_parse_prefix(s: &str) -> Result<(), String> {
    let fail = |msg: String| Err(format!("netip.ParsePrefix({}): {msg}", go_quote(s)));
    let Some(i) = s.rfind('/') else {
        return fail("no '/'".to_owned());
    };
    let (addr, bits) = (&s[..i], &s[i + 1..]);
    let max_bits = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => return fail(go_parse_addr_error(addr)),
    };
    let bad_bits = || format!("bad bits after slash: {}", go_quote(bits));
    if bits.is_empty()
        || !bits.bytes().all(|c| c.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return fail(bad_bits());
    }
    match bits.parse::<u32>() {
        Ok(n) if n <= max_bits => Ok(()),
        Ok(_) => fail("prefix length out of range".to_owned()),
        Err(_) => fail(bad_bits()),
    }
}

/// The text of Go's `netip.ParseAddr` error for an address Rust's parser refused.
fn go_parse_addr_error(s: &str) -> String {
    let q = go_quote;
    let err = |msg: &str, at: Option<&str>| match at {
        Some(at) => format!("ParseAddr({}): {msg} (at {})", q(s), q(at)),
        None => format!("ParseAddr({}): {msg}", q(s)),
    };
    for (i, c) in s.char_indices() {
        match c {
            '.' => break,
            ':' => return err("invalid IPv6 address", None),
            '%' => return err("missing IPv6 address", None),
            _ if i + c.len_utf8() == s.len() => return err("unable to parse IP", None),
            _ => {}
        }
    }
    if s.is_empty() {
        return err("unable to parse IP", None);
    }
    // IPv4, as Go's parseIPv4
    let b = s.as_bytes();
    let (mut val, mut pos, mut digits) = (0u32, 0, 0);
    for i in 0..b.len() {
        match b[i] {
            d @ b'0'..=b'9' => {
                if digits == 1 && val == 0 {
                    return err("IPv4 field has octet with leading zero", None);
                }
                val = val * 10 + u32::from(d - b'0');
                digits += 1;
                if val > 255 {
                    return err("IPv4 field has value >255", None);
                }
            }
            b'.' => {
                if i == 0 || i == b.len() - 1 || b[i - 1] == b'.' {
                    return err("IPv4 field must have at least one digit", Some(&s[i..]));
                }
                if pos == 3 {
                    return err("IPv4 address too long", None);
                }
                pos += 1;
                val = 0;
                digits = 0;
            }
            _ => return err("unexpected character", Some(&s[i..])),
        }
    }
    if pos < 3 {
        return err("IPv4 address too short", None);
    }
    err("unable to parse IP", None)
}

/// Lint: a header value that looks like a path (the seed's `end-user: {exact: /api}`).
pub(crate) fn lint_header_looks_like_path(
    cx: &mut Ctx<'_>,
    path: &str,
    name: &str,
    m: &StringMatch,
) {
    if name.starts_with(':')
        || name.eq_ignore_ascii_case("referer")
        || name.contains("path")
        || name.contains("uri")
    {
        return;
    }
    let (arm, v) = match (&m.exact, &m.prefix) {
        (Some(v), _) => ("exact", v),
        (_, Some(v)) => ("prefix", v),
        _ => return,
    };
    if v.starts_with('/') {
        cx.with_code(
            Severity::Info,
            codes::LINT,
            &format!("{path}.{arm}"),
            format!(
                "header `{name}` must be {} `{v}`: the value looks like a URL path",
                if arm == "exact" {
                    "exactly"
                } else {
                    "prefixed by"
                }
            ),
        )
        .help(format!(
            "to match the request path, use `uri: {{{arm}: {v}}}` instead of a header match"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains() {
        let ok = [
            "reviews",
            "reviews.default.svc.cluster.local",
            "*",
            "*.example.com",
            "*-foo.example.com",
            "*foo.com",
            "istio.io.",
            "Upper.Case.com",
        ];
        for d in ok {
            assert_eq!(validate_wildcard_domain(d), Ok(()), "{d}");
        }
        let bad: &[(&str, &str)] = &[
            ("/", r#"domain name "/" invalid (label "/" invalid)"#),
            ("", "empty domain name not allowed"),
            (
                "a.*.com",
                r#"domain name "*.com" invalid (label "*" invalid)"#,
            ),
            (
                "foo.123",
                r#"domain name "123" invalid (top level domain "123" cannot be all-numeric)"#,
            ),
            (
                "a_b.com",
                r#"domain name "a_b.com" invalid (label "a_b" invalid)"#,
            ),
            (
                "-a.com",
                r#"domain name "-a.com" invalid (label "-a" invalid)"#,
            ),
            (
                "10.0.0.1",
                r#"domain name "0.0.1" invalid (top level domain "1" cannot be all-numeric)"#,
            ),
        ];
        for (d, msg) in bad {
            assert_eq!(validate_wildcard_domain(d).unwrap_err(), *msg, "{d}");
        }
        let long = "a.".repeat(130);
        assert!(validate_wildcard_domain(&long)
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn durations() {
        let table: &[(&str, Result<(), &str>)] = &[
            ("1ms", Ok(())),
            ("5s", Ok(())),
            ("0s", Err("duration must be greater than 1ms")),
            ("500us", Err("duration must be greater than 1ms")),
            (
                "1500us",
                Err("only durations to ms precision are supported"),
            ),
            ("-1s", Err("duration must be greater than 1ms")),
        ];
        for (d, want) in table {
            let got = validate_duration(Duration::parse(d).unwrap());
            assert_eq!(got, want.map_err(str::to_owned), "{d}");
        }
        assert_eq!(validate_duration_or_zero(Duration::ZERO), Ok(()));
    }

    #[test]
    fn percentages_and_ports() {
        assert!(validate_percentage(0.0).is_ok());
        assert!(validate_percentage(100.0).is_ok());
        assert!(validate_percentage(0.0001).is_ok());
        assert_eq!(
            validate_percentage(101.0).unwrap_err(),
            "percentage 101 is neither 0.0, nor in range [0.0001, 100.0]"
        );
        assert!(validate_percentage(0.00001).is_err());
        assert!(validate_percentage(-1.0).is_err());
        assert_eq!(
            validate_port(0).unwrap_err(),
            "port number 0 must be in the range 1..65535"
        );
        assert!(validate_port(65536).is_err());
        assert!(validate_port(443).is_ok());
    }

    #[test]
    fn labels_and_names() {
        assert!(is_label_key("app"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("-app"));
        assert!(!is_label_key("a/b/c"));
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_x"));
        assert!(!is_label_value("v1 "));
        assert!(is_dns1123_label("v1"));
        assert!(is_dns1123_label("V1"));
        assert!(!is_dns1123_label("v1.0"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("reviews.v1"));
        assert!(!is_dns1123_subdomain("Reviews"));
    }

    #[test]
    fn go_messages() {
        assert_eq!(
            validate_namespace_slash_wildcard_hostname("~ns/foo.com", false).unwrap_err(),
            r#"invalid namespace value "~ns" in sidecar"#
        );
        assert_eq!(
            validate_namespace_slash_wildcard_hostname("ns1/reviews", false).unwrap_err(),
            "short names (non FQDN) are not allowed"
        );
        assert_eq!(go_atoi("+80"), Ok(80));
        assert_eq!(go_atoi("-1"), Ok(-1));
        assert_eq!(
            go_atoi("http").unwrap_err(),
            r#"strconv.Atoi: parsing "http": invalid syntax"#
        );
        assert_eq!(
            go_atoi("").unwrap_err(),
            r#"strconv.Atoi: parsing "": invalid syntax"#
        );
        assert_eq!(
            go_atoi("-").unwrap_err(),
            r#"strconv.Atoi: parsing "-": invalid syntax"#
        );
        assert_eq!(
            go_atoi("99999999999999999999").unwrap_err(),
            r#"strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
        assert_eq!(
            validate_port_int(-1).unwrap_err(),
            "port number -1 must be in the range 1..65535"
        );
        assert_eq!(validate_security_port("0"), Ok(()));
        assert_eq!(validate_security_port("65535"), Ok(()));
        assert_eq!(
            validate_security_port("abc").unwrap_err(),
            r#"bad port (abc): strconv.ParseUint: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            validate_security_port("+80").unwrap_err(),
            r#"bad port (+80): strconv.ParseUint: parsing "+80": invalid syntax"#
        );
        assert_eq!(
            validate_security_port("70000").unwrap_err(),
            "bad port (70000): <nil>"
        );
        assert_eq!(
            validate_security_port("99999999999").unwrap_err(),
            r#"bad port (99999999999): strconv.ParseUint: parsing "99999999999": value out of range"#
        );
        let table = [
            (
                "1.2.3.4/33",
                r#"netip.ParsePrefix("1.2.3.4/33"): prefix length out of range"#,
            ),
            (
                "1.2.3.4/",
                r#"netip.ParsePrefix("1.2.3.4/"): bad bits after slash: """#,
            ),
            (
                "1.2.3.4/08",
                r#"netip.ParsePrefix("1.2.3.4/08"): bad bits after slash: "08""#,
            ),
            (
                "1.2.3/8",
                r#"netip.ParsePrefix("1.2.3/8"): ParseAddr("1.2.3"): IPv4 address too short"#,
            ),
            (
                "1.2.3.256/8",
                r#"netip.ParsePrefix("1.2.3.256/8"): ParseAddr("1.2.3.256"): IPv4 field has value >255"#,
            ),
            (
                "abc/8",
                r#"netip.ParsePrefix("abc/8"): ParseAddr("abc"): unable to parse IP"#,
            ),
            (
                "::1/129",
                r#"netip.ParsePrefix("::1/129"): prefix length out of range"#,
            ),
        ];
        for (v, want) in table {
            assert_eq!(go_parse_prefix(v).unwrap_err(), want, "{v}");
        }
        assert_eq!(go_parse_prefix("10.0.0.0/8"), Ok(()));
        assert_eq!(go_parse_prefix("::/0"), Ok(()));
        assert_eq!(
            validate_security_ip("1.2.3.4/33").unwrap_err(),
            r#"bad CIDR range (1.2.3.4/33): netip.ParsePrefix("1.2.3.4/33"): prefix length out of range"#
        );
        assert!(is_k8s_dns1123_label("ns-1"));
        assert!(!is_k8s_dns1123_label("Ns1"));
    }

    #[test]
    fn regexes() {
        assert!(validate_regex(r"\d+$").is_ok());
        assert!(validate_regex(r"^/api/v[0-9]+/.*").is_ok());
        let e = validate_regex("(unclosed").unwrap_err();
        assert!(e.contains("RE2"), "{e}");
        assert!(validate_regex("a{1001}").is_err());
        assert!(validate_regex("a{2,1000}").is_ok());
        assert!(validate_regex("(?=x)").is_err());
        assert!(validate_regex(r"(a)\1").is_err());
    }

    #[test]
    fn gateway_and_sidecar_hosts() {
        let table: &[(&str, bool, bool)] = &[
            ("*", true, true),
            ("*/*", true, true),
            ("./foo.example.com", true, true),
            ("ns/*.example.com", true, true),
            ("foo.example.com", true, true),
            ("foo", true, false),
            ("*foo.com", true, false),
            ("bad_ns/foo.com", true, false),
            ("/foo.com", true, false),
            ("istio-system/*", false, true),
            ("~/*", false, true),
            ("foo.com", false, false),
            // Gateway allows IP as the host string (istiod
            // validateSidecarOrGatewayHostnamePart), a Sidecar does not
            ("10.0.0.1", true, true),
            ("ns/192.168.1.1", true, true),
            ("ns/10.0.0.1", false, false),
            // short names are refused for Sidecars too; `*` and `*.foo` wildcards are fine
            ("ns1/reviews", false, false),
            ("ns1/*", false, true),
            ("ns1/*.foo", false, true),
            ("./*.svc.cluster.local", false, true),
            ("ns1/*foo", false, false),
            // a Sidecar namespace is `*`, `.`, `~` or a DNS label: not `~ns`
            ("~ns/foo.com", false, false),
            ("~/foo.com", true, false),
        ];
        for (h, gw, ok) in table {
            assert_eq!(
                validate_namespace_slash_wildcard_hostname(h, *gw).is_ok(),
                *ok,
                "{h} gateway={gw}"
            );
        }
    }
}
