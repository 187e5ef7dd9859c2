//! Authorization: AuthorizationPolicy compiled once, evaluated as Istio does (spec §8).
//!
//! ```
//! use mesh_core::mesh::Mesh;
//! use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
//!
//! let mesh = Mesh::from_yaml(r#"
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: httpbin, namespace: foo}
//! spec:
//!   selector: {matchLabels: {app: httpbin}}
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"]}}]
//! "#).unwrap();
//! let labels = [("app".to_string(), "httpbin".to_string())].into();
//! // once per workload, again when the snapshot changes:
//! let authz = mesh.snapshot().authz_for_workload("foo", &labels);
//! let headers = http::HeaderMap::new();
//! let http = HttpAuthzAttrs { method: "GET", path: "/ip", host: "httpbin", headers: &headers };
//! let mut req = AuthzRequest::http(8000, http);
//! assert!(!authz.evaluate(&req).allowed); // plaintext: no principal
//! req.principal = Some("cluster.local/ns/default/sa/sleep");
//! let d = authz.evaluate(&req);
//! assert!(d.allowed);
//! assert_eq!(d.policy.as_deref(), Some("foo/httpbin"));
//! ```
//!
//! Order: a policy that could not be compiled denies (fail closed, naming it and why); then
//! CUSTOM, DENY, ALLOW; no ALLOW policy means allow; ALLOW policies and none matching means
//! deny; AUDIT only marks the decision.
//!
//! CUSTOM policies delegate to an external authorizer, a MeshConfig extension provider
//! ([`crate::meshconfig`]) that this pure engine cannot call: [`WorkloadAuthz::custom_match`]
//! says whether one must be asked (and which), [`WorkloadAuthz::evaluate_with`] takes its
//! answer. Without one ([`WorkloadAuthz::evaluate`]) a matching CUSTOM policy denies.
//! `mesh_tower::authz::AuthorizationLayer` asks `envoyExtAuthzHttp` providers over HTTP.
//!
//! Deliberate differences: dry-run policies (`istio.io/dry-run: "true"`) are reported in
//! [`AuthzDecision::dry_run`] but not enforced; `targetRefs` apply only to Gateway
//! workloads (label `gateway.networking.k8s.io/gateway-name`), Service/ServiceEntry
//! targets being for waypoints.
//!
//! As istiod compiles them: a principal naming the mesh's trust domain, one of its
//! `trustDomainAliases` or `cluster.local` matches the identity in each of them; a
//! `namespaces` value is Istio's regex `.*/ns/<value>/.*` on the principal, every `*` of
//! it a wildcard and its other regex metacharacters left as they are; a bare `source.serviceAccount` is in the policy's namespace; IPv4
//! peers of a dual-stack socket (`::ffff:10.1.2.3`) are matched as IPv4, as Envoy reports
//! them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::HeaderName;
use ipnet::IpNet;

use crate::model::{
    AuthorizationAction, AuthorizationPolicy, ConfigObject, Labels, Operation, RuleSource, Spec,
};
use crate::names::{labels_match, parse_principal, MeshOptions};

/// A string pattern: exact, `prefix*`, `*suffix`, `*` (any non-empty value), or the
/// regular expression istiod made of a value with regex metacharacters ([`principal_pat`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pat {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Regex(Re),
}

/// A compiled regular expression, compared by its pattern.
#[derive(Debug, Clone)]
struct Re(regex::Regex);

impl PartialEq for Re {
    fn eq(&self, other: &Re) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Re {}

impl Re {
    /// Whether the principal `p` (without `spiffe://`) as Envoy sees it, with its
    /// `spiffe://`, matches the whole regex (only principals and service accounts with regex
    /// metacharacters come here: one allocation).
    fn is_spiffe_match(&self, p: &str) -> bool {
        self.0.is_match(&format!("spiffe://{p}"))
    }
}

/// Characters that make a value written into one of istiod's regular expressions mean more
/// than itself.
const REGEX_META: &[char] = &[
    '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$', '\\',
];

/// A `principals` (or `source.principal`) value as Envoy matches it: istiod writes a
/// `*suffix` one into the regex `spiffe://.*<suffix>` without escaping it, so `.` there is
/// any character and `[0]` a class. A value without metacharacters is a plain [`Pat`]
/// (the same matches, no regex on the request path).
fn principal_pat(v: &str) -> Result<Pat, String> {
    match v.strip_prefix('*') {
        Some(suffix) if !suffix.is_empty() && suffix.contains(REGEX_META) => {
            regex::Regex::new(&format!("^(?:spiffe://.*{suffix})$"))
                .map(|re| Pat::Regex(Re(re)))
                .map_err(|e| {
                    format!("principal {v:?} is not a valid regular expression for Envoy: {e}")
                })
        }
        _ => Ok(Pat::new(v)),
    }
}

impl Pat {
    fn new(v: &str) -> Pat {
        // Istio's StringMatcherWithPrefix: `*` first, then a leading `*` (so `*/admin*` is the
        // suffix `/admin*`), then a trailing one
        if v == "*" {
            Pat::Any
        } else if let Some(s) = v.strip_prefix('*') {
            Pat::Suffix(s.into())
        } else if let Some(p) = v.strip_suffix('*') {
            Pat::Prefix(p.into())
        } else {
            Pat::Exact(v.into())
        }
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Pat::Any => !s.is_empty(),
            Pat::Exact(e) => s == &**e,
            Pat::Prefix(p) => s.starts_with(&**p),
            Pat::Suffix(p) => s.ends_with(&**p),
            Pat::Regex(re) => re.is_spiffe_match(s),
        }
    }

    fn matches_ci(&self, s: &str) -> bool {
        let ends = |s: &str, p: &str| {
            s.len() >= p.len()
                && s.as_bytes()[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
        };
        match self {
            Pat::Any => !s.is_empty(),
            Pat::Exact(e) => s.eq_ignore_ascii_case(e),
            Pat::Prefix(p) => {
                s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Pat::Suffix(p) => ends(s, p),
            Pat::Regex(re) => re.is_spiffe_match(s),
        }
    }
}

/// A header value as Envoy's matchers see it: its bytes, not only visible ASCII (a value
/// with UTF-8 or obs-text is matched too; bytes that are not UTF-8 are read as U+FFFD,
/// which no pattern written in YAML holds). No copy for UTF-8.
fn header_text(v: &http::HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// Whether `s` matches `pattern` as a whole, each `*` of the pattern standing for any run
/// of characters (`/` included): Istio's regex where every `*` became `.*`.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    // the last `*` seen and where in `s` its run ends so far (backtracking point)
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// A `namespaces` (or `source.namespace`) value as istiod compiles it: the regex
/// `.*/ns/<value>/.*` on the principal, every `*` of the value `.*` and the value not
/// escaped otherwise (so `.` is any character and `prod?` a regex too). A value with no
/// other metacharacter is a glob (the same matches, no regex on the request path).
#[derive(Debug, Clone)]
enum NsPat {
    Glob(Box<str>),
    Regex(Re),
}

impl NsPat {
    fn new(v: &str) -> Result<NsPat, String> {
        if !v.replace('*', "").contains(REGEX_META) {
            return Ok(NsPat::Glob(format!("*/ns/{v}/*").into()));
        }
        let bad = |e: regex::Error| {
            format!("namespace {v:?} is not a valid regular expression for Envoy: {e}")
        };
        // istiod's very regex must compile (`a)|(b` does not, and Envoy refuses it); then
        // it is matched whole, as Envoy's `safe_regex`
        let istiod = format!(".*/ns/{}/.*", v.replace('*', ".*"));
        regex::Regex::new(&istiod).map_err(bad)?;
        regex::Regex::new(&format!("^(?:{istiod})$"))
            .map(|re| NsPat::Regex(Re(re)))
            .map_err(bad)
    }

    /// Whether the principal `p` (without `spiffe://`) is in a namespace it names.
    fn matches(&self, p: &str) -> bool {
        match self {
            NsPat::Glob(g) => glob(g, p),
            NsPat::Regex(re) => re.is_spiffe_match(p),
        }
    }
}

/// istiod's `trustdomain.Bundle`: the mesh's trust domain, then its aliases.
struct TrustDomains<'a>(Vec<&'a str>);

impl<'a> TrustDomains<'a> {
    fn of(opts: &'a MeshOptions) -> TrustDomains<'a> {
        let mut v = vec![opts.trust_domain.as_str()];
        v.extend(opts.trust_domain_aliases.iter().map(String::as_str));
        TrustDomains(v)
    }

    /// `ReplaceTrustDomainAliases`: a `<td>/ns/<ns>/sa/<sa>` principal whose trust domain
    /// is one of the bundle's, or `cluster.local` ("a pointer to the local trust domain and
    /// its aliases"), becomes one principal per trust domain of the bundle; any other value
    /// is kept as written.
    fn principals(&self, values: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(values.len());
        for v in values {
            let parts: Vec<&str> = v.split('/').collect();
            let td = match parts[..] {
                [td, _, _, _, _] if td != "*" => td,
                _ => {
                    out.push(v.clone());
                    continue;
                }
            };
            let known = td == "cluster.local" || self.0.iter().any(|&t| string_match(td, t));
            // (istiod's stringMatch takes the principal's trust domain as the pattern:
            // `*bar` covers the bundle's `foobar`, `td*` its `td1`)
            if !known {
                out.push(v.clone());
                continue;
            }
            let rest = &v[td.len()..];
            let mut mine: Vec<String> = Vec::with_capacity(self.0.len());
            for t in &self.0 {
                let p = match td.strip_prefix('*') {
                    Some(suffix) if t.ends_with(suffix) => v.clone(),
                    _ => format!("{t}{rest}"),
                };
                if !mine.contains(&p) {
                    mine.push(p);
                }
            }
            out.extend(mine);
        }
        out
    }

    /// `ExpandTrustDomainAliases`: a `trustDomains` value that is one of the bundle's
    /// trust domains stands for all of them.
    fn expand(&self, values: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(values.len());
        for v in values {
            let add: Vec<&str> = if self.0.contains(&v.as_str()) {
                self.0.clone()
            } else {
                vec![v.as_str()]
            };
            for a in add {
                if !out.iter().any(|o| o == a) {
                    out.push(a.to_owned());
                }
            }
        }
        out
    }
}

/// istiod's `trustdomain.stringMatch(a, [td])`: the principal's trust domain `a` and the
/// bundle's `td` match when equal, when `td` is `*`, or when either is a `prefix*` or
/// `*suffix` pattern the other fits.
fn string_match(a: &str, td: &str) -> bool {
    let fits = |pattern: &str, s: &str| {
        pattern.strip_suffix('*').is_some_and(|p| s.starts_with(p))
            || pattern.strip_prefix('*').is_some_and(|p| s.ends_with(p))
    };
    a == td || td == "*" || fits(a, td) || fits(td, a)
}

/// Whether the principal `p` (without `spiffe://`) is service account `sa` of namespace
/// `ns` as istiod's `serviceAccountRegex` matches it, `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`
/// in full: any trust domain, other key/value pairs between the namespace and the account,
/// and after it.
fn sa_matches(p: &str, ns: &str, sa: &str) -> bool {
    // (no allocation: this runs per request)
    p.match_indices("/ns/").any(|(i, _)| {
        i >= 1
            && p[i + 4..]
                .strip_prefix(ns)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|rest| {
                    rest.match_indices("sa/").any(|(j, _)| {
                        let before_ok = j == 0 || (j >= 2 && rest.as_bytes()[j - 1] == b'/');
                        before_ok
                            && rest[j + 3..].strip_prefix(sa).is_some_and(|after| {
                                after.is_empty() || (after.len() > 1 && after.starts_with('/'))
                            })
                    })
                })
    })
}

/// Whether the principal `p` (without `spiffe://`) is the service account `v` names:
/// istiod's `serviceAccountRegex`, for the `serviceAccounts` field and the
/// `source.serviceAccount` condition alike.
fn ns_sa_matches((n, s, re): &NsSa, p: &str) -> bool {
    match re {
        Some(re) => re.is_spiffe_match(p),
        None => sa_matches(p, n, s),
    }
}

/// A `serviceAccounts` value (or a `source.serviceAccount` one): `sa` in the policy's
/// namespace, or `ns/sa`; no wildcard.
fn ns_sa(s: &str, ns: &str) -> Result<NsSa, String> {
    if s.contains('*') {
        return Err(format!("wildcard not allowed, found in {s}"));
    }
    let (n, sa) = match s.split('/').collect::<Vec<_>>()[..] {
        [sa] if !sa.is_empty() => (ns, sa),
        [n, sa] if !n.is_empty() && !sa.is_empty() => (n, sa),
        _ => {
            return Err(format!(
                "expected format 'serviceAccount' or 'namespace/serviceAccount', found {s:?}"
            ))
        }
    };
    // istiod's `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` takes them unescaped: with
    // metacharacters (a `.` in an account name), Envoy matches that regex
    let re = if n.contains(REGEX_META) || sa.contains(REGEX_META) {
        let re = regex::Regex::new(&format!("^(?:spiffe://.+/ns/{n}/(.+/|)sa/{sa}(/.+)?)$"))
            .map_err(|e| {
                format!("service account {s:?} is not a valid regular expression for Envoy: {e}")
            })?;
        Some(Re(re))
    } else {
        None
    };
    Ok((n.into(), sa.into(), re))
}

/// A `requestPrincipals` value as Istio compiles it: split at its last `/` into an
/// issuer and a subject matcher, each matched against the token's own `iss` and `sub`
/// claims (so a token without `sub` matches no value, not even `*`). `*` alone is any
/// non-empty issuer and subject; a leading `*` is a suffix match on the issuer (or, without
/// a `/`, on the subject); a trailing `*` a prefix match on the subject (or, without a
/// `/`, on the issuer).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReqPrincipal {
    iss: Pat,
    sub: Pat,
}

impl ReqPrincipal {
    fn new(v: &str) -> ReqPrincipal {
        let (iss, sub) = match v.rfind('/') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        let exact = |s: &str| Pat::Exact(s.into());
        let (iss, sub) = if v == "*" {
            (Pat::Any, Pat::Any)
        } else if let Some(after_star) = v.strip_prefix('*') {
            match sub {
                Some(sub) => (
                    if iss == "*" {
                        Pat::Any
                    } else {
                        Pat::Suffix(iss[1..].into())
                    },
                    exact(sub),
                ),
                None => (Pat::Any, Pat::Suffix(after_star.into())),
            }
        } else if let Some(stripped) = v.strip_suffix('*') {
            match sub {
                Some(sub) => (
                    exact(iss),
                    if sub == "*" {
                        Pat::Any
                    } else {
                        Pat::Prefix(sub[..sub.len() - 1].into())
                    },
                ),
                None => (Pat::Prefix(stripped.into()), Pat::Any),
            }
        } else {
            (exact(iss), exact(sub.unwrap_or("")))
        };
        ReqPrincipal { iss, sub }
    }

    fn matches(&self, iss: Option<&str>, sub: Option<&str>) -> bool {
        iss.is_some_and(|i| self.iss.matches(i)) && sub.is_some_and(|s| self.sub.matches(s))
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// A literal segment.
    Lit(Box<str>),
    /// `{*}`: exactly one non-empty segment.
    One,
    /// `{**}`: any run of segments (no operator after it; literal segments may follow).
    Rest,
}

/// A path pattern: a [`Pat`] or a template with `{*}` / `{**}` (matched segment by segment,
/// no regex).
#[derive(Debug, Clone)]
enum PathPat {
    Plain(Pat),
    Template(Box<[Seg]>),
}

impl PathPat {
    fn new(v: &str) -> Result<PathPat, String> {
        if !v.contains('{') && !v.contains('}') {
            return Ok(PathPat::Plain(Pat::new(v)));
        }
        check_path_template(v).map_err(|e| format!("invalid or unsupported path {v}: {e}"))?;
        // istiod accepts it, but Envoy's uri_template must start with `/`: the listener's
        // update is refused, and the policy never applies as written (fail closed here)
        if !v.starts_with('/') {
            return Err(format!(
                "path template {v} does not start with `/`: Envoy refuses it"
            ));
        }
        let segs: Box<[Seg]> = v
            .split('/')
            .map(|seg| match seg {
                "{*}" => Seg::One,
                "{**}" => Seg::Rest,
                s => Seg::Lit(s.into()),
            })
            .collect();
        Ok(PathPat::Template(segs))
    }

    /// Envoy's uri_template matcher (uri_template_internal.cc): the template becomes the
    /// regex `/` + segments joined by `/`, fully matched, where `{*}` is
    /// `[a-zA-Z0-9-._~%!$&'()+,;:@=]+` (one non-empty segment of pchars) and `{**}` the same
    /// set plus `/`, repeated `*` (so `/public/{**}` matches `/public/` but not `/public`,
    /// and `/a/{**}/b` matches `/a/x/y/b` and `/a//b` but not `/a/b`).
    fn matches(&self, p: &str) -> bool {
        fn pchar(b: u8) -> bool {
            b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b)
        }
        match self {
            PathPat::Plain(pat) => pat.matches(p),
            PathPat::Template(segs) => {
                let mut rest = p;
                for (i, seg) in segs.iter().enumerate() {
                    if i > 0 {
                        match rest.strip_prefix('/') {
                            Some(r) => rest = r,
                            None => return false,
                        }
                    }
                    match seg {
                        Seg::Rest => {
                            // only literals after it (checked at compile time): they end the
                            // path, after any run of pchars and slashes
                            let mut tail = String::new();
                            for s in &segs[i + 1..] {
                                if let Seg::Lit(l) = s {
                                    tail.push('/');
                                    tail.push_str(l);
                                }
                            }
                            return rest.len() >= tail.len()
                                && rest.ends_with(&*tail)
                                && rest.as_bytes()[..rest.len() - tail.len()]
                                    .iter()
                                    .all(|&b| b == b'/' || pchar(b));
                        }
                        Seg::One => {
                            let end = rest.find('/').unwrap_or(rest.len());
                            if end == 0 || !rest.as_bytes()[..end].iter().all(|b| pchar(*b)) {
                                return false;
                            }
                            rest = &rest[end..];
                        }
                        Seg::Lit(l) => match rest.strip_prefix(&**l) {
                            Some(r) if r.is_empty() || r.starts_with('/') => rest = r,
                            _ => return false,
                        },
                    }
                }
                rest.is_empty()
            }
        }
    }
}

/// istiod's `CheckValidPathTemplate` of one path: with the leading and trailing `/`
/// trimmed, `{*}` and `{**}` segments, no operator after a `{**}`, no other brace, and
/// (when there is a template) only pchar literal segments. `Err`: istiod's reason.
pub(crate) fn check_path_template(path: &str) -> Result<(), String> {
    let has_template = path.contains("{*}") || path.contains("{**}");
    let mut any = false;
    for glob in path.trim_matches('/').split('/') {
        match glob {
            "{*}" | "{**}" if any => return Err("{**} is not the last operator".to_owned()),
            "{*}" => continue,
            "{**}" => {
                any = true;
                continue;
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Err("Contains '{' or '}' beyond a supported path template".to_owned());
        }
        let literal = !glob.is_empty()
            && glob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
        if has_template && !literal {
            return Err(format!(
                "Contains segment {glob} with invalid string literal"
            ));
        }
    }
    Ok(())
}

fn ip_net(s: &str) -> Result<IpNet, String> {
    if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|e| format!("bad CIDR range ({s}): {e}"))
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad IP address ({s})"))
    }
}

/// A port as Istio's `convertToPort` takes it: 0..=65535 (0 is valid and matches no
/// connection).
fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("bad port ({s}): not a port number"))
}

fn list<T>(v: &[String], f: impl Fn(&str) -> Result<T, String>) -> Result<Box<[T]>, String> {
    v.iter().map(|s| f(s)).collect()
}

/// A `serviceAccounts` value: namespace, account, and the regex Envoy matches when they
/// hold regex metacharacters.
type NsSa = (Box<str>, Box<str>, Option<Re>);

#[derive(Debug, Clone)]
struct CSource {
    principals: Box<[Pat]>,
    not_principals: Box<[Pat]>,
    request_principals: Box<[ReqPrincipal]>,
    not_request_principals: Box<[ReqPrincipal]>,
    /// Matched on the principal.
    namespaces: Box<[NsPat]>,
    not_namespaces: Box<[NsPat]>,
    service_accounts: Box<[NsSa]>,
    not_service_accounts: Box<[NsSa]>,
    ip_blocks: Box<[IpNet]>,
    not_ip_blocks: Box<[IpNet]>,
    remote_ip_blocks: Box<[IpNet]>,
    not_remote_ip_blocks: Box<[IpNet]>,
    trust_domains: Box<[Pat]>,
    not_trust_domains: Box<[Pat]>,
}

#[derive(Debug, Clone)]
struct COperation {
    hosts: Box<[Pat]>,
    not_hosts: Box<[Pat]>,
    ports: Box<[u16]>,
    not_ports: Box<[u16]>,
    methods: Box<[Pat]>,
    not_methods: Box<[Pat]>,
    paths: Box<[PathPat]>,
    not_paths: Box<[PathPat]>,
}

#[derive(Debug, Clone)]
enum Attr {
    Header(HeaderName),
    /// `request.experimental.inline.headers[name]`: one element of the header's
    /// comma-separated values, by Istio's regular expression.
    InlineHeader(HeaderName),
    /// `request.headers[:authority]`, `[:method]`, `[:path]`, `[:scheme]`: Envoy's header
    /// matcher reads the pseudo-headers.
    Pseudo(Pseudo),
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourcePrincipal,
    SourceServiceAccount,
    SourceTrustDomain,
    AuthPrincipal,
    AuthAudiences,
    AuthPresenter,
    AuthClaims(Box<[Box<str>]>),
    DestinationIp,
    DestinationPort,
    Sni,
    Experimental(Box<str>),
}

/// A request pseudo-header a `request.headers[...]` condition may name.
#[derive(Debug, Clone, Copy)]
enum Pseudo {
    Authority,
    Method,
    /// `:path` as Envoy's header map holds it: the (normalized) path with its query.
    Path,
    Scheme,
    /// Any other `:name`: valid for Envoy's `HeaderMatcher` (its name pattern allows one
    /// leading `:`) but never in a request's header map by the time RBAC runs (`:protocol`
    /// included: Envoy's HTTP/2 codec turns an extended CONNECT into an HTTP/1 upgrade
    /// first), so it is absent: `values` never match, `notValues` always do.
    Absent,
}

impl Attr {
    fn parse(key: &str) -> Result<Attr, String> {
        if let Some(rest) = key.strip_prefix("request.experimental.inline.headers[") {
            let name = rest
                .strip_suffix(']')
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("bad key ({key}): should have format a[b]"))?;
            let name = match name.to_ascii_lowercase().as_str() {
                "host" => ":authority".to_owned(),
                n => n.to_owned(),
            };
            return match name.as_str() {
                ":authority" => Ok(Attr::Pseudo(Pseudo::Authority)),
                ":method" => Ok(Attr::Pseudo(Pseudo::Method)),
                ":path" => Ok(Attr::Pseudo(Pseudo::Path)),
                ":scheme" => Ok(Attr::Pseudo(Pseudo::Scheme)),
                n if n.starts_with(':') => Ok(Attr::Pseudo(Pseudo::Absent)),
                n => HeaderName::from_bytes(n.as_bytes())
                    .map(Attr::InlineHeader)
                    .map_err(|_| format!("bad key ({key}): invalid header name")),
            };
        }
        if let Some(rest) = key.strip_prefix("request.headers[") {
            let name = rest
                .strip_suffix(']')
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("bad key ({key}): should have format a[b]"))?;
            match name.to_ascii_lowercase().as_str() {
                // `host` is `:authority` in Envoy's header map (HTTP/1.1 `Host` included)
                ":authority" | "host" => return Ok(Attr::Pseudo(Pseudo::Authority)),
                ":method" => return Ok(Attr::Pseudo(Pseudo::Method)),
                ":path" => return Ok(Attr::Pseudo(Pseudo::Path)),
                ":scheme" => return Ok(Attr::Pseudo(Pseudo::Scheme)),
                // Envoy's HTTP_HEADER_NAME pattern (`^:?[0-9a-zA-Z!#$%&'*+-.^_|~`]+$`): one
                // leading `:`, then a token
                n if n.len() > 1
                    && n.starts_with(':')
                    && HeaderName::from_bytes(&n.as_bytes()[1..]).is_ok() =>
                {
                    return Ok(Attr::Pseudo(Pseudo::Absent));
                }
                _ => {}
            }
            return HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map(Attr::Header)
                .map_err(|_| format!("bad key ({key}): invalid header name"));
        }
        if let Some(rest) = key.strip_prefix("request.auth.claims[") {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("bad key ({key}): should have format a[b]"))?;
            let parts: Box<[Box<str>]> = inner.split("][").map(Into::into).collect();
            if parts.iter().any(|p| p.is_empty() || p.contains(['[', ']'])) {
                return Err(format!("bad key ({key}): should have format a[b]"));
            }
            return Ok(Attr::AuthClaims(parts));
        }
        if key.starts_with("experimental.envoy.filters.") {
            return Ok(Attr::Experimental(key.into()));
        }
        Ok(match key {
            "source.ip" => Attr::SourceIp,
            "remote.ip" => Attr::RemoteIp,
            "source.namespace" => Attr::SourceNamespace,
            "source.principal" => Attr::SourcePrincipal,
            "source.serviceAccount" => Attr::SourceServiceAccount,
            "source.trustDomain" => Attr::SourceTrustDomain,
            "request.auth.principal" => Attr::AuthPrincipal,
            "request.auth.audiences" => Attr::AuthAudiences,
            "request.auth.presenter" => Attr::AuthPresenter,
            "destination.ip" => Attr::DestinationIp,
            "destination.port" => Attr::DestinationPort,
            "connection.sni" => Attr::Sni,
            "destination.namespace"
            | "destination.labels"
            | "destination.name"
            | "destination.user" => {
                return Err(format!("attribute {key} is not supported"));
            }
            k if k.starts_with("destination.labels[") => {
                return Err(format!(
                    "attribute {key} is replaced by the workload selector"
                ));
            }
            _ => return Err(format!("unknown attribute: {key}")),
        })
    }

    fn http_only(&self) -> bool {
        matches!(
            self,
            Attr::Header(_)
                | Attr::InlineHeader(_)
                | Attr::Pseudo(_)
                | Attr::AuthPrincipal
                | Attr::AuthAudiences
                | Attr::AuthPresenter
                | Attr::AuthClaims(_)
        )
    }
}

#[derive(Debug, Clone)]
enum Vals {
    Pats(Box<[Pat]>),
    /// `source.namespace`: [`NsPat`]s on the principal.
    Namespaces(Box<[NsPat]>),
    /// `source.serviceAccount`: as `serviceAccounts`.
    ServiceAccounts(Box<[NsSa]>),
    /// `request.auth.principal`: Istio compiles it with the `requestPrincipals` generator.
    ReqPrincipals(Box<[ReqPrincipal]>),
    Ips(Box<[IpNet]>),
    Ports(Box<[u16]>),
    /// `request.experimental.inline.headers`: istiod's `^v$|^v,.*|.*,v,.*|.*,v$` for each
    /// value `v` (escaped, its `*` wildcards as `.*`), matched as Envoy's `safe_regex` (the
    /// whole value).
    Regexes(Box<[regex::Regex]>),
}

impl Vals {
    /// `ns`: the policy's namespace; `tds`: the mesh's trust domains.
    fn new(attr: &Attr, v: &[String], ns: &str, tds: &TrustDomains<'_>) -> Result<Vals, String> {
        let pats = |v: &[String]| Vals::Pats(v.iter().map(|s| Pat::new(s)).collect());
        Ok(match attr {
            Attr::SourceIp | Attr::RemoteIp | Attr::DestinationIp => Vals::Ips(list(v, ip_net)?),
            Attr::DestinationPort => Vals::Ports(list(v, port)?),
            Attr::AuthPrincipal => {
                Vals::ReqPrincipals(v.iter().map(|s| ReqPrincipal::new(s)).collect())
            }
            Attr::SourceNamespace => Vals::Namespaces(list(v, NsPat::new)?),
            Attr::SourceServiceAccount => Vals::ServiceAccounts(
                list(v, |s| ns_sa(s, ns)).map_err(|e| format!("{e} (source.serviceAccount)"))?,
            ),
            Attr::SourcePrincipal => Vals::Pats(list(&tds.principals(v), principal_pat)?),
            Attr::SourceTrustDomain => pats(&tds.expand(v)),
            Attr::InlineHeader(_) => Vals::Regexes(list(v, |s| {
                // istiod's InlineHeaderMatcher: `*` is any value (present), `*x` and `x*`
                // suffix and prefix, the rest escaped; one element of the comma-joined
                // values
                let p = if s == "*" {
                    ".*".to_owned()
                } else if let Some(x) = s.strip_prefix('*') {
                    format!(".*{}", regex::escape(x))
                } else if let Some(x) = s.strip_suffix('*') {
                    format!("{}.*", regex::escape(x))
                } else {
                    regex::escape(s)
                };
                regex::Regex::new(&format!("^(?:{p}|{p},.*|.*,{p},.*|.*,{p})$"))
                    .map_err(|e| format!("invalid regular expression from {s:?}: {e}"))
            })?),
            _ => pats(v),
        })
    }

    fn is_empty(&self) -> bool {
        match self {
            Vals::Pats(p) => p.is_empty(),
            Vals::Namespaces(p) => p.is_empty(),
            Vals::ServiceAccounts(p) => p.is_empty(),
            Vals::ReqPrincipals(p) => p.is_empty(),
            Vals::Ips(p) => p.is_empty(),
            Vals::Ports(p) => p.is_empty(),
            Vals::Regexes(p) => p.is_empty(),
        }
    }
}

#[derive(Debug, Clone)]
struct CCondition {
    attr: Attr,
    values: Vals,
    not_values: Vals,
}

#[derive(Debug, Clone)]
struct CRule {
    from: Option<Box<[CSource]>>,
    to: Option<Box<[COperation]>>,
    when: Box<[CCondition]>,
    http_only: bool,
}

/// A compiled AuthorizationPolicy.
///
/// [`AuthzPolicies::build`] compiles every policy of a config; compile one directly to
/// check it.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::CompiledPolicy;
/// use mesh_core::model::AuthorizationAction;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: ext-authz, namespace: foo}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   action: CUSTOM
///   provider: {name: my-ext-authz}
///   rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
/// "#, "ap.yaml");
/// let o = &loaded.objects[0];
/// let ap = o.spec.as_authorization_policy().unwrap();
/// let p = CompiledPolicy::compile(&o.metadata.name, &o.metadata.namespace, ap, false);
/// assert_eq!(&*p.name, "foo/ext-authz");
/// assert_eq!(p.action, AuthorizationAction::Custom);
/// assert_eq!(p.provider.as_deref(), Some("my-ext-authz"));
/// assert_eq!(p.error(), None);
/// ```
#[derive(Debug)]
pub struct CompiledPolicy {
    /// `ns/name`.
    pub name: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Action.
    pub action: AuthorizationAction,
    /// CUSTOM provider name.
    pub provider: Option<Box<str>>,
    /// `istio.io/dry-run: "true"`.
    pub dry_run: bool,
    selector: Option<Labels>,
    /// Gateway names targeted by `targetRefs` (kind Gateway).
    target_gateways: Box<[Box<str>]>,
    has_target_refs: bool,
    rules: Result<Box<[CRule]>, Arc<str>>,
}

impl CompiledPolicy {
    /// Compiles one policy; an error makes the policy deny (fail closed).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::CompiledPolicy;
    ///
    /// // istiod's webhook rejects this path template; compiled anyway, it denies
    /// let loaded = mesh_core::load::load_str(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: bad-path, namespace: foo}
    /// spec:
    ///   rules: [{to: [{operation: {paths: ["/{**}/{*}"]}}]}]
    /// "#, "ap.yaml");
    /// assert!(mesh_core::check(&loaded).iter().any(|d| d.is_error()));
    /// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
    /// let p = CompiledPolicy::compile("bad-path", "foo", ap, false);
    /// assert_eq!(
    ///     p.error(),
    ///     Some("invalid or unsupported path /{**}/{*}: {**} is not the last operator")
    /// );
    /// ```
    pub fn compile(name: &str, namespace: &str, ap: &AuthorizationPolicy, dry_run: bool) -> Self {
        Self::compile_in(name, namespace, ap, dry_run, &MeshOptions::default())
    }

    /// [`CompiledPolicy::compile`] for a mesh with these options: its trust domain and
    /// `trustDomainAliases` ([`MeshOptions::trust_domain_aliases`]) widen the principals
    /// as istiod does.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::CompiledPolicy;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let loaded = mesh_core::load::load_str(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-batch, namespace: prod}
    /// spec:
    ///   action: DENY
    ///   rules: [{from: [{source: {principals: ["old.td/ns/prod/sa/batch"]}}]}]
    /// "#, "ap.yaml");
    /// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
    /// let opts = MeshOptions {
    ///     trust_domain: "new.td".into(),
    ///     trust_domain_aliases: vec!["old.td".into()],
    ///     ..MeshOptions::default()
    /// };
    /// let p = CompiledPolicy::compile_in("deny-batch", "prod", ap, false, &opts);
    /// assert_eq!(p.error(), None);
    /// ```
    pub fn compile_in(
        name: &str,
        namespace: &str,
        ap: &AuthorizationPolicy,
        dry_run: bool,
        opts: &MeshOptions,
    ) -> Self {
        let mut target_gateways = Vec::new();
        for t in ap.target_refs.iter().chain(ap.target_ref.iter()) {
            if t.kind == "Gateway" {
                target_gateways.push(t.name.as_str().into());
            }
        }
        CompiledPolicy {
            name: format!("{namespace}/{name}").into(),
            namespace: namespace.into(),
            action: ap.action,
            provider: ap.provider.as_ref().map(|p| p.name.as_str().into()),
            dry_run,
            selector: ap.selector.as_ref().map(|s| s.match_labels.clone()),
            target_gateways: target_gateways.into(),
            has_target_refs: !ap.target_refs.is_empty() || ap.target_ref.is_some(),
            rules: compile_rules(ap, namespace, &TrustDomains::of(opts)).map_err(Into::into),
        }
    }

    /// The compile error, if the policy could not be compiled.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::CompiledPolicy;
    ///
    /// let loaded = mesh_core::load::load_str(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: admin-only, namespace: foo}
    /// spec:
    ///   action: DENY
    ///   rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
    /// "#, "ap.yaml");
    /// let ap = loaded.objects[0].spec.as_authorization_policy().unwrap();
    /// let p = CompiledPolicy::compile("admin-only", "foo", ap, false);
    /// assert_eq!(p.error(), None);
    /// ```
    pub fn error(&self) -> Option<&str> {
        self.rules.as_ref().err().map(|e| &**e)
    }

    fn applies_to(&self, namespace: &str, labels: &Labels, root: &str) -> bool {
        let same_ns = *self.namespace == *namespace;
        if self.has_target_refs {
            return same_ns
                && labels
                    .get("gateway.networking.k8s.io/gateway-name")
                    .is_some_and(|g| self.target_gateways.iter().any(|t| &**t == g));
        }
        if !(same_ns || *self.namespace == *root) {
            return false;
        }
        match &self.selector {
            None => true,
            Some(sel) => labels_match(sel, labels),
        }
    }

    /// Index of the first matching rule.
    /// Whether a rule reads `remote.ip` (`remoteIpBlocks`, `notRemoteIpBlocks`, a `when`
    /// on `remote.ip`).
    fn uses_remote_ip(&self) -> bool {
        let Ok(rules) = &self.rules else {
            return false;
        };
        rules.iter().any(|r| {
            r.when.iter().any(|c| matches!(c.attr, Attr::RemoteIp))
                || r.from
                    .iter()
                    .flatten()
                    .any(|s| !s.remote_ip_blocks.is_empty() || !s.not_remote_ip_blocks.is_empty())
        })
    }

    fn first_match(&self, req: &AuthzRequest<'_>) -> Option<usize> {
        let rules = self.rules.as_ref().ok()?;
        // model.go checkError: only ALLOW drops a rule for an HTTP-only field on TCP; DENY
        // and AUDIT (and CUSTOM, built as an RBAC DENY) ignore the field, a wider rule
        let widen = self.action != AuthorizationAction::Allow;
        rules.iter().position(|r| r.matches(req, widen))
    }
}

fn compile_rules(
    ap: &AuthorizationPolicy,
    ns: &str,
    tds: &TrustDomains<'_>,
) -> Result<Box<[CRule]>, String> {
    let mut out = Vec::with_capacity(ap.rules.len());
    for (i, r) in ap.rules.iter().enumerate() {
        let mut http_only = false;
        let from = match &r.from {
            None => None,
            Some(v) if v.is_empty() => {
                return Err(format!("`from` must not be empty, found at rule {i}"))
            }
            Some(v) => Some(
                v.iter()
                    .map(|f| {
                        let s = f.source.as_ref().ok_or_else(|| {
                            format!("`from.source` must not be nil, found at rule {i}")
                        })?;
                        http_only |= !s.request_principals.is_empty()
                            || !s.not_request_principals.is_empty();
                        compile_source(s, ns, tds)
                    })
                    .collect::<Result<Box<[_]>, String>>()?,
            ),
        };
        let to = match &r.to {
            None => None,
            Some(v) if v.is_empty() => return Err("`to` must not be empty".into()),
            Some(v) => Some(
                v.iter()
                    .map(|t| {
                        let o = t.operation.as_ref().ok_or_else(|| {
                            format!("`to.operation` must not be nil, found at rule {i}")
                        })?;
                        http_only |= !(o.hosts.is_empty()
                            && o.not_hosts.is_empty()
                            && o.methods.is_empty()
                            && o.not_methods.is_empty()
                            && o.paths.is_empty()
                            && o.not_paths.is_empty());
                        compile_operation(o)
                    })
                    .collect::<Result<Box<[_]>, String>>()?,
            ),
        };
        let when = r
            .when
            .iter()
            .map(|c| {
                if c.key.is_empty() {
                    return Err("`key` must not be empty".to_owned());
                }
                if c.values.is_empty() && c.not_values.is_empty() {
                    return Err(format!(
                        "at least one of `values` or `notValues` must be set for key {}",
                        c.key
                    ));
                }
                let attr = Attr::parse(&c.key)
                    .map_err(|e| format!("invalid `value` for `key` {}: {e}", c.key))?;
                http_only |= attr.http_only();
                Ok(CCondition {
                    values: Vals::new(&attr, &c.values, ns, tds)?,
                    not_values: Vals::new(&attr, &c.not_values, ns, tds)?,
                    attr,
                })
            })
            .collect::<Result<Box<[_]>, String>>()?;
        out.push(CRule {
            from,
            to,
            when,
            http_only,
        });
    }
    Ok(out.into())
}

fn compile_source(s: &RuleSource, ns: &str, tds: &TrustDomains<'_>) -> Result<CSource, String> {
    let pats = |v: &[String]| -> Box<[Pat]> { v.iter().map(|s| Pat::new(s)).collect() };
    let sa = |v: &[String]| -> Result<Box<[NsSa]>, String> { list(v, |s| ns_sa(s, ns)) };
    Ok(CSource {
        principals: list(&tds.principals(&s.principals), principal_pat)?,
        not_principals: list(&tds.principals(&s.not_principals), principal_pat)?,
        request_principals: s
            .request_principals
            .iter()
            .map(|v| ReqPrincipal::new(v))
            .collect(),
        not_request_principals: s
            .not_request_principals
            .iter()
            .map(|v| ReqPrincipal::new(v))
            .collect(),
        namespaces: list(&s.namespaces, NsPat::new)?,
        not_namespaces: list(&s.not_namespaces, NsPat::new)?,
        service_accounts: sa(&s.service_accounts)?,
        not_service_accounts: sa(&s.not_service_accounts)?,
        ip_blocks: list(&s.ip_blocks, ip_net)?,
        not_ip_blocks: list(&s.not_ip_blocks, ip_net)?,
        remote_ip_blocks: list(&s.remote_ip_blocks, ip_net)?,
        not_remote_ip_blocks: list(&s.not_remote_ip_blocks, ip_net)?,
        trust_domains: pats(&tds.expand(&s.trust_domains)),
        not_trust_domains: pats(&tds.expand(&s.not_trust_domains)),
    })
}

fn compile_operation(o: &Operation) -> Result<COperation, String> {
    let pats = |v: &[String]| -> Box<[Pat]> { v.iter().map(|s| Pat::new(s)).collect() };
    Ok(COperation {
        hosts: pats(&o.hosts),
        not_hosts: pats(&o.not_hosts),
        ports: list(&o.ports, port)?,
        not_ports: list(&o.not_ports, port)?,
        methods: pats(&o.methods),
        not_methods: pats(&o.not_methods),
        paths: list(&o.paths, PathPat::new)?,
        not_paths: list(&o.not_paths, PathPat::new)?,
    })
}

/// "values OR'd, `notValues` none": `pos` empty means no constraint.
fn field<T>(pos: &[T], neg: &[T], m: impl Fn(&T) -> bool) -> bool {
    (pos.is_empty() || pos.iter().any(&m)) && !neg.iter().any(m)
}

impl CSource {
    fn matches(&self, r: &AuthzRequest<'_>, skip_http: bool) -> bool {
        let p = r
            .principal
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
        // the principal's parts, only for the fields that look at them
        let needs_parts = !(self.trust_domains.is_empty() && self.not_trust_domains.is_empty());
        let parsed = if needs_parts {
            p.and_then(parse_principal)
        } else {
            None
        };
        let on_p = |pat: &Pat| p.is_some_and(|p| pat.matches(p));
        let on_td = |pat: &Pat| parsed.is_some_and(|(td, _, _)| pat.matches(td));
        let on_sa = |v: &NsSa| p.is_some_and(|p| ns_sa_matches(v, p));
        let src = r.source_ip;
        let remote = r.remote_ip.or(r.source_ip);
        let on_ip = |ip: Option<IpAddr>| {
            move |net: &IpNet| ip.is_some_and(|ip| net.contains(&ip.to_canonical()))
        };
        field(&self.principals, &self.not_principals, on_p)
            && field(&self.namespaces, &self.not_namespaces, |n| {
                p.is_some_and(|p| n.matches(p))
            })
            && field(&self.service_accounts, &self.not_service_accounts, on_sa)
            && field(&self.trust_domains, &self.not_trust_domains, on_td)
            && field(&self.ip_blocks, &self.not_ip_blocks, on_ip(src))
            && field(
                &self.remote_ip_blocks,
                &self.not_remote_ip_blocks,
                on_ip(remote),
            )
            && (skip_http || {
                let (iss, sub) = r.request_auth.map_or((None, None), RequestAuth::iss_sub);
                field(
                    &self.request_principals,
                    &self.not_request_principals,
                    |m: &ReqPrincipal| m.matches(iss, sub),
                )
            })
    }
}

impl COperation {
    fn matches(&self, r: &AuthzRequest<'_>, skip_http: bool) -> bool {
        let port_ok = field(&self.ports, &self.not_ports, |p| *p == r.destination_port);
        if !port_ok {
            return false;
        }
        if skip_http {
            return true;
        }
        let Some(h) = &r.http else {
            // HTTP fields on a TCP request: only reached for DENY, AUDIT or CUSTOM (fields dropped)
            return true;
        };
        let path = h.path.split_once('?').map_or(h.path, |(p, _)| p);
        // Istio's HostMatcher: the whole `:authority`, port included, ignoring case
        let hosts_ok = (self.hosts.is_empty() && self.not_hosts.is_empty())
            || field(&self.hosts, &self.not_hosts, |pat: &Pat| {
                pat.matches_ci(h.host)
            });
        hosts_ok
            && field(&self.methods, &self.not_methods, |pat: &Pat| {
                pat.matches(h.method)
            })
            && field(&self.paths, &self.not_paths, |pat: &PathPat| {
                pat.matches(path)
            })
    }
}

impl CCondition {
    fn matches(&self, r: &AuthzRequest<'_>) -> bool {
        let pos = self.values.is_empty() || self.any(&self.values, r);
        pos && (self.not_values.is_empty() || !self.any(&self.not_values, r))
    }

    fn any(&self, vals: &Vals, r: &AuthzRequest<'_>) -> bool {
        let p = r
            .principal
            .map(|p| p.strip_prefix("spiffe://").unwrap_or(p));
        let parsed = match self.attr {
            Attr::SourceTrustDomain => p.and_then(parse_principal),
            _ => None,
        };
        let pats = |s: Option<&str>| match (vals, s) {
            (Vals::Pats(ps), Some(s)) => ps.iter().any(|pat| pat.matches(s)),
            _ => false,
        };
        let ips = |ip: Option<IpAddr>| match (vals, ip) {
            (Vals::Ips(nets), Some(ip)) => nets.iter().any(|n| n.contains(&ip.to_canonical())),
            _ => false,
        };
        match &self.attr {
            Attr::Header(name) => {
                let Some(h) = &r.http else { return false };
                let mut it = h.headers.get_all(name).iter();
                let Some(first) = it.next() else { return false };
                // Istio's HeaderMatcher: `*` is a present match (an empty value too)
                if matches!(vals, Vals::Pats(ps) if ps.contains(&Pat::Any)) {
                    return true;
                }
                match it.next() {
                    None => pats(Some(&header_text(first))),
                    Some(second) => {
                        let mut joined = String::new();
                        for v in [first, second].into_iter().chain(it) {
                            if !joined.is_empty() {
                                joined.push(',');
                            }
                            joined.push_str(&header_text(v));
                        }
                        pats(Some(&joined))
                    }
                }
            }
            Attr::InlineHeader(name) => {
                let (Some(h), Vals::Regexes(res)) = (&r.http, vals) else {
                    return false;
                };
                let mut it = h.headers.get_all(name).iter();
                let Some(first) = it.next() else { return false };
                let first = header_text(first);
                // (Envoy joins several values with `,`; one is matched as it is)
                let Some(second) = it.next() else {
                    return res.iter().any(|re| re.is_match(&first));
                };
                let mut joined = format!("{first},{}", header_text(second));
                for v in it {
                    joined.push(',');
                    joined.push_str(&header_text(v));
                }
                res.iter().any(|re| re.is_match(&joined))
            }
            Attr::SourceIp => ips(r.source_ip),
            Attr::RemoteIp => ips(r.remote_ip.or(r.source_ip)),
            Attr::DestinationIp => ips(r.destination_ip),
            Attr::DestinationPort => match vals {
                Vals::Ports(ps) => ps.contains(&r.destination_port),
                _ => false,
            },
            Attr::SourceNamespace => match (vals, p) {
                (Vals::Namespaces(ns), Some(p)) => ns.iter().any(|n| n.matches(p)),
                _ => false,
            },
            Attr::SourcePrincipal => pats(p),
            Attr::SourceTrustDomain => pats(parsed.map(|(td, _, _)| td)),
            // (istiod builds it with the `serviceAccounts` field's generator)
            Attr::SourceServiceAccount => match (vals, p) {
                (Vals::ServiceAccounts(v), Some(p)) => v.iter().any(|x| ns_sa_matches(x, p)),
                _ => false,
            },
            Attr::Pseudo(which) => {
                let Some(h) = &r.http else { return false };
                let v = match which {
                    Pseudo::Authority => Some(h.host),
                    Pseudo::Method => Some(h.method),
                    // Envoy's `:path` keeps the query (only `paths` drop it)
                    Pseudo::Path => Some(h.path),
                    Pseudo::Scheme => r.scheme,
                    Pseudo::Absent => None,
                };
                pats(v)
            }
            Attr::AuthPrincipal => {
                let (iss, sub) = r.request_auth.map_or((None, None), RequestAuth::iss_sub);
                match vals {
                    Vals::ReqPrincipals(ps) => ps.iter().any(|m| m.matches(iss, sub)),
                    _ => false,
                }
            }
            Attr::AuthPresenter => pats(r.request_auth.and_then(|a| a.presenter.as_deref())),
            Attr::AuthAudiences => r
                .request_auth
                .is_some_and(|a| a.audiences.iter().any(|aud| pats(Some(aud)))),
            Attr::AuthClaims(path) => {
                let Some(a) = r.request_auth else {
                    return false;
                };
                let mut v = &a.claims;
                for k in path.iter() {
                    match v.get(&**k) {
                        Some(next) => v = next,
                        None => return false,
                    }
                }
                // Envoy's jwt_authn turns a top-level space-delimited string claim into the
                // list of its non-empty parts (`normalize_payload_in_metadata`); Istio's
                // matcher then takes any element. A string with no part stays as it is.
                let split = match &path[..] {
                    [name] => a.is_space_delimited(name),
                    _ => false,
                };
                match v {
                    serde_json::Value::String(s) if split => {
                        let mut parts = s.split(' ').filter(|t| !t.is_empty()).peekable();
                        if parts.peek().is_none() {
                            pats(Some(s))
                        } else {
                            parts.any(|t| pats(Some(t)))
                        }
                    }
                    serde_json::Value::String(s) => pats(Some(s)),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| pats(Some(s)))),
                    // Envoy's string matchers see strings only: a boolean or number claim
                    // matches no value
                    _ => false,
                }
            }
            Attr::Sni => pats(r.sni),
            Attr::Experimental(k) => r
                .filter_metadata
                .iter()
                .any(|(mk, mv)| *mk == &**k && pats(Some(mv))),
        }
    }
}

impl CRule {
    fn matches(&self, r: &AuthzRequest<'_>, widen: bool) -> bool {
        let tcp = r.http.is_none();
        if tcp && self.http_only && !widen {
            // ALLOW rules using HTTP-only fields never match TCP
            return false;
        }
        let skip_http = tcp;
        self.from
            .as_ref()
            .is_none_or(|f| f.iter().any(|s| s.matches(r, skip_http)))
            && self
                .to
                .as_ref()
                .is_none_or(|t| t.iter().any(|o| o.matches(r, skip_http)))
            && self
                .when
                .iter()
                .all(|c| (skip_http && c.attr.http_only()) || c.matches(r))
    }
}

/// A verified JWT (from RequestAuthentication).
///
/// JWT verification happens before authorization; pass its result in
/// [`AuthzRequest::request_auth`] for `requestPrincipals` and `request.auth.*` conditions.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs, RequestAuth};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: require-jwt, namespace: foo}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   action: ALLOW
///   rules:
///   - from: [{source: {requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]}}]
///     when: [{key: "request.auth.claims[groups]", values: [group1]}]
/// "#).unwrap().snapshot();
/// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
/// let authz = snap.authz_for_workload("foo", &httpbin);
///
/// let jwt = RequestAuth {
///     principal: "testing@secure.istio.io/testing@secure.istio.io".into(),
///     claims: serde_json::json!({"groups": ["group1", "group2"]}),
///     ..RequestAuth::default()
/// };
/// let headers = http::HeaderMap::new();
/// let attrs = HttpAuthzAttrs { method: "GET", path: "/headers", host: "httpbin.foo:8000", headers: &headers };
/// let mut req = AuthzRequest::http(8000, attrs);
/// assert!(!authz.evaluate(&req).allowed); // no token
/// req.request_auth = Some(&jwt);
/// assert!(authz.evaluate(&req).allowed);
///
/// let other_group = RequestAuth { claims: serde_json::json!({"groups": ["group2"]}), ..jwt.clone() };
/// req.request_auth = Some(&other_group);
/// assert!(!authz.evaluate(&req).allowed);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestAuth {
    /// `iss/sub`.
    pub principal: String,
    /// `aud`.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    /// All claims.
    pub claims: serde_json::Value,
    /// The `spaceDelimitedClaims` of the provider that verified the token, besides `scope`
    /// and `permission` (always space-delimited); `None` when it names no other claim.
    /// Shared with the provider: carrying it costs no allocation.
    pub space_delimited_claims: Option<Arc<[String]>>,
}

impl RequestAuth {
    /// The identity a JWT's claims give: `iss/sub`, `aud` (a string or a list), `azp`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::RequestAuth;
    ///
    /// let a = RequestAuth::from_claims(serde_json::json!({
    ///     "iss": "https://accounts.example.com", "sub": "u1", "aud": ["shop", "cart"], "azp": "web",
    /// }));
    /// assert_eq!(a.principal, "https://accounts.example.com/u1");
    /// assert_eq!(a.audiences, ["shop", "cart"]);
    /// assert_eq!(a.presenter.as_deref(), Some("web"));
    /// ```
    pub fn from_claims(claims: serde_json::Value) -> RequestAuth {
        let s = |k: &str| claims.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let principal = format!("{}/{}", s("iss"), s("sub"));
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        RequestAuth {
            principal,
            audiences,
            presenter: claims
                .get("azp")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            claims,
            space_delimited_claims: None,
        }
    }

    /// The token's issuer and subject for `requestPrincipals`: its `iss` and `sub` claims
    /// (strings), else the two halves of [`principal`](Self::principal) split at its last
    /// `/` (for an identity given without claims); an empty half is absent.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::RequestAuth;
    ///
    /// let a = RequestAuth::from_claims(serde_json::json!({"iss": "https://a.example/x", "sub": "u1"}));
    /// assert_eq!(a.iss_sub(), (Some("https://a.example/x"), Some("u1")));
    /// // a token without `sub`
    /// let a = RequestAuth::from_claims(serde_json::json!({"iss": "https://a.example"}));
    /// assert_eq!(a.iss_sub(), (Some("https://a.example"), None));
    /// // an identity given as `iss/sub` only
    /// let a = RequestAuth { principal: "issuer.example/alice".into(), ..Default::default() };
    /// assert_eq!(a.iss_sub(), (Some("issuer.example"), Some("alice")));
    /// ```
    pub fn iss_sub(&self) -> (Option<&str>, Option<&str>) {
        let claim = |k: &str| self.claims.get(k).and_then(|v| v.as_str());
        let (p_iss, p_sub) = match self.principal.rfind('/') {
            Some(i) => (&self.principal[..i], &self.principal[i + 1..]),
            None => (self.principal.as_str(), ""),
        };
        fn non_empty(s: &str) -> Option<&str> {
            (!s.is_empty()).then_some(s)
        }
        let has_claims = self.claims.get("iss").is_some();
        if has_claims {
            (
                claim("iss").and_then(non_empty),
                claim("sub").and_then(non_empty),
            )
        } else {
            (non_empty(p_iss), non_empty(p_sub))
        }
    }

    /// Whether the top-level string claim `name` is a space-delimited list for
    /// `request.auth.claims[name]` conditions: `scope` and `permission` always (Istio's
    /// defaults), and the verifying provider's [`space_delimited_claims`](Self::space_delimited_claims).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::RequestAuth;
    ///
    /// let mut a = RequestAuth::from_claims(serde_json::json!({"roles": "editor admin"}));
    /// assert!(a.is_space_delimited("scope") && a.is_space_delimited("permission"));
    /// assert!(!a.is_space_delimited("roles"));
    /// a.space_delimited_claims = Some(vec!["roles".to_string()].into());
    /// assert!(a.is_space_delimited("roles"));
    /// ```
    pub fn is_space_delimited(&self, name: &str) -> bool {
        matches!(name, "scope" | "permission")
            || self
                .space_delimited_claims
                .as_deref()
                .is_some_and(|c| c.iter().any(|c| c == name))
    }
}

/// HTTP attributes of a request being authorized.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{normalize_path, AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-admin, namespace: foo}
/// spec:
///   action: DENY
///   rules: [{to: [{operation: {hosts: ["httpbin.foo*"], paths: ["/admin/*"], ports: ["8000"]}}]}]
/// "#).unwrap().snapshot();
/// let authz = snap.authz_for_workload("foo", &Labels::new());
/// let headers = http::HeaderMap::new();
/// let allowed = |path: &str, host: &str| {
///     let path = normalize_path(path).unwrap(); // as the sidecar does before authorization
///     let attrs = HttpAuthzAttrs { method: "GET", path: &path, host, headers: &headers };
///     authz.evaluate(&AuthzRequest::http(8000, attrs)).allowed
/// };
/// assert!(!allowed("/admin/users", "httpbin.foo:8000"));
/// assert!(!allowed("/public/../admin/users", "httpbin.foo:8000"));
/// assert!(allowed("/status/200", "httpbin.foo:8000"));
/// assert!(allowed("/admin/users", "other.foo:8000"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HttpAuthzAttrs<'a> {
    /// Method.
    pub method: &'a str,
    /// The normalized path with the request's query, as Envoy's `:path` holds it:
    /// `paths`/`notPaths` ignore the query, `request.headers[:path]` sees it.
    pub path: &'a str,
    /// `:authority` / Host.
    pub host: &'a str,
    /// Headers.
    pub headers: &'a http::HeaderMap,
}

/// What authorization reads from a request or connection, all borrowed.
///
/// Start from [`AuthzRequest::tcp`] or [`AuthzRequest::http`] and set what the connection
/// knows (the peer's principal, addresses, SNI).
///
/// # Examples
///
/// ```
/// use mesh_core::authz::AuthzRequest;
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: db-clients, namespace: data}
/// spec:
///   selector: {matchLabels: {app: postgres}}
///   action: ALLOW
///   rules:
///   - from: [{source: {namespaces: [billing]}}, {source: {ipBlocks: [10.8.0.0/16]}}]
///     to: [{operation: {ports: ['5432']}}]
/// ").unwrap().snapshot();
/// let postgres: Labels = [("app".to_string(), "postgres".to_string())].into();
/// let authz = snap.authz_for_workload("data", &postgres);
///
/// let mut conn = AuthzRequest::tcp(5432);
/// conn.principal = Some("cluster.local/ns/billing/sa/invoices");
/// assert!(authz.evaluate(&conn).allowed); // by namespace, from the mTLS identity
///
/// let mut conn = AuthzRequest::tcp(5432);
/// conn.source_ip = Some("10.8.3.4".parse().unwrap());
/// assert!(authz.evaluate(&conn).allowed); // by address
/// conn.source_ip = Some("10.9.0.1".parse().unwrap());
/// assert!(!authz.evaluate(&conn).allowed);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The peer's verified SPIFFE identity, without `spiffe://`
    /// (`cluster.local/ns/default/sa/sleep`); `None` for plaintext.
    pub principal: Option<&'a str>,
    /// Direct peer address.
    pub source_ip: Option<IpAddr>,
    /// Original client address (X-Forwarded-For / PROXY); defaults to `source_ip`.
    pub remote_ip: Option<IpAddr>,
    /// Local address.
    pub destination_ip: Option<IpAddr>,
    /// Local port.
    pub destination_port: u16,
    /// TLS SNI.
    pub sni: Option<&'a str>,
    /// The request's `:scheme` (`request.headers[:scheme]`), as Envoy's connection manager
    /// sets it ([`request_scheme`]); [`AuthzRequest::http`] starts at `http`, `None` for
    /// TCP.
    pub scheme: Option<&'a str>,
    /// HTTP attributes; `None` for TCP.
    pub http: Option<HttpAuthzAttrs<'a>>,
    /// The verified JWT, if any.
    pub request_auth: Option<&'a RequestAuth>,
    /// `experimental.envoy.filters.*` values by key.
    pub filter_metadata: &'a [(&'a str, &'a str)],
}

impl<'a> AuthzRequest<'a> {
    /// A TCP connection to `port`.
    ///
    /// HTTP-only fields of a rule (methods, paths, headers, ...) never match a TCP
    /// connection: an ALLOW rule that needs them does not allow it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::AuthzRequest;
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: tcp-echo, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: tcp-echo}}
    ///   action: ALLOW
    ///   rules: [{to: [{operation: {methods: [GET], ports: ['9000']}}]}]
    /// ").unwrap().snapshot();
    /// let tcp_echo: Labels = [("app".to_string(), "tcp-echo".to_string())].into();
    /// let d = snap.authz_for_workload("foo", &tcp_echo).evaluate(&AuthzRequest::tcp(9000));
    /// assert!(!d.allowed);
    /// ```
    pub fn tcp(port: u16) -> Self {
        AuthzRequest {
            principal: None,
            source_ip: None,
            remote_ip: None,
            destination_ip: None,
            destination_port: port,
            sni: None,
            scheme: None,
            http: None,
            request_auth: None,
            filter_metadata: &[],
        }
    }

    /// An HTTP request to `port`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
    ///
    /// let headers = http::HeaderMap::new();
    /// let attrs = HttpAuthzAttrs { method: "GET", path: "/ip", host: "httpbin.foo:8000", headers: &headers };
    /// let req = AuthzRequest::http(8000, attrs);
    /// assert_eq!(req.destination_port, 8000);
    /// assert_eq!(req.principal, None); // plaintext until set
    /// assert_eq!(req.http.map(|h| h.method), Some("GET"));
    /// assert_eq!(req.scheme, Some("http"));
    /// ```
    pub fn http(port: u16, http: HttpAuthzAttrs<'a>) -> Self {
        AuthzRequest {
            http: Some(http),
            // a plaintext request without `x-forwarded-proto`, until told otherwise
            scheme: Some("http"),
            ..AuthzRequest::tcp(port)
        }
    }
}

/// A request's `:scheme` as Envoy's connection manager sets it before any filter
/// (`ConnectionManagerUtility::mutateRequestHeaders`): the one the request carries (HTTP/2
/// `:scheme`, an HTTP/1 absolute URL), else a valid `x-forwarded-proto` (`http` or `https`,
/// any case; a sidecar's inbound listener keeps the caller's), else `https` on a TLS
/// connection and `http` on a plaintext one.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::request_scheme;
///
/// assert_eq!(request_scheme(None, None, true), "https"); // HTTP/1.1 over mTLS
/// assert_eq!(request_scheme(None, None, false), "http");
/// assert_eq!(request_scheme(None, Some("http"), true), "http"); // a caller's proxy said so
/// assert_eq!(request_scheme(None, Some("ftp"), false), "http"); // not a valid one
/// assert_eq!(request_scheme(Some("http"), Some("https"), true), "http"); // HTTP/2 `:scheme`
/// ```
pub fn request_scheme<'a>(
    uri: Option<&'a str>,
    forwarded_proto: Option<&'a str>,
    tls: bool,
) -> &'a str {
    let valid = |s: &&str| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https");
    uri.or(forwarded_proto.filter(valid))
        .unwrap_or(if tls { "https" } else { "http" })
}

/// Why a decision was made.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-post, namespace: foo}
/// spec:
///   action: DENY
///   rules: [{to: [{operation: {methods: [POST], ports: ['8000']}}]}]
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-get, namespace: foo}
/// spec:
///   action: ALLOW
///   rules: [{to: [{operation: {methods: [GET]}}]}]
/// ").unwrap().snapshot();
/// let headers = http::HeaderMap::new();
/// let reason = |ns: &str, method| {
///     let attrs = HttpAuthzAttrs { method, path: "/", host: "httpbin", headers: &headers };
///     snap.authz_for_workload(ns, &Labels::new()).evaluate(&AuthzRequest::http(8000, attrs)).reason
/// };
/// assert_eq!(reason("foo", "POST"), AuthzReason::DeniedByPolicy);
/// assert_eq!(reason("foo", "GET"), AuthzReason::AllowedByPolicy);
/// assert_eq!(reason("foo", "PUT"), AuthzReason::NoAllowMatched);
/// assert_eq!(reason("bar", "PUT"), AuthzReason::NoAllowPolicy);
/// assert_eq!(AuthzReason::DeniedByPolicy.to_string(), "a DENY policy matched");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzReason {
    /// An applicable policy could not be compiled.
    Uncompilable(Arc<str>),
    /// A CUSTOM policy matched and its provider denied (or none is available).
    CustomDenied,
    /// A DENY policy matched.
    DeniedByPolicy,
    /// No ALLOW policy applies to the workload.
    NoAllowPolicy,
    /// An ALLOW policy matched.
    AllowedByPolicy,
    /// ALLOW policies apply and none matched.
    NoAllowMatched,
}

impl fmt::Display for AuthzReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthzReason::Uncompilable(e) => {
                write!(
                    f,
                    "the policy could not be compiled ({e}); denying (fail closed)"
                )
            }
            AuthzReason::CustomDenied => f.write_str(
                "a CUSTOM policy matched and its external authorizer denied or is not available",
            ),
            AuthzReason::DeniedByPolicy => f.write_str("a DENY policy matched"),
            AuthzReason::NoAllowPolicy => {
                f.write_str("no ALLOW policy applies to the workload, and no DENY policy matched")
            }
            AuthzReason::AllowedByPolicy => f.write_str("an ALLOW policy matched"),
            AuthzReason::NoAllowMatched => {
                f.write_str("ALLOW policies apply to the workload but none matched")
            }
        }
    }
}

/// An authorization decision; deny answers 403 `RBAC: access denied`.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata:
///   name: deny-delete
///   namespace: foo
///   annotations: {"istio.io/dry-run": "true"}
/// spec:
///   action: DENY
///   rules: [{to: [{operation: {methods: [DELETE], ports: ['8000']}}]}]
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: audit-admin, namespace: foo}
/// spec:
///   action: AUDIT
///   rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
/// "#).unwrap().snapshot();
/// let authz = snap.authz_for_workload("foo", &Labels::new());
/// let headers = http::HeaderMap::new();
/// let attrs = HttpAuthzAttrs { method: "DELETE", path: "/admin/users", host: "httpbin", headers: &headers };
/// let d = authz.evaluate(&AuthzRequest::http(8000, attrs));
/// assert!(d.allowed); // the DENY policy is only a dry run...
/// assert_eq!(d.reason, AuthzReason::NoAllowPolicy);
/// assert_eq!(d.policy, None);
/// assert_eq!(d.dry_run.as_deref(), Some("foo/deny-delete")); // ...that would have denied
/// assert_eq!(d.audit.as_deref(), Some("foo/audit-admin")); // and the request is to be audited
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzDecision {
    /// Allowed?
    pub allowed: bool,
    /// The deciding policy, `ns/name`.
    pub policy: Option<Arc<str>>,
    /// Index of the deciding rule in that policy.
    pub rule: Option<usize>,
    /// Why.
    pub reason: AuthzReason,
    /// An AUDIT policy matched (log this request).
    pub audit: Option<Arc<str>>,
    /// A dry-run policy would have decided otherwise: the policy of the shadow result that
    /// differs from the decision (see `shadow_deny` and `shadow_allow`), when one matched.
    pub dry_run: Option<Arc<str>>,
    /// The dry-run DENY policies' result, as the shadow engine of Envoy's DENY RBAC filter
    /// computes it (`istio_dry_run_deny_shadow_engine_result` and `..._effective_policy_id`
    /// in its dynamic metadata): present when the workload has dry-run DENY policies.
    pub shadow_deny: Option<ShadowResult>,
    /// The dry-run ALLOW policies' result, as the ALLOW RBAC filter's shadow engine
    /// computes it (`istio_dry_run_allow_shadow_engine_result`): present when the workload
    /// has dry-run ALLOW policies and the request reached that filter (no enforced CUSTOM
    /// or DENY policy refused it). The enforced and the dry-run policies are separate
    /// engines, as istiod builds them (`rules` and `shadow_rules`).
    pub shadow_allow: Option<ShadowResult>,
}

/// A shadow (dry-run) engine's result for a request.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-ip, namespace: foo, annotations: {"istio.io/dry-run": "true"}}
/// spec: {action: ALLOW, rules: [{to: [{operation: {paths: [/ip]}}]}]}
/// "#).unwrap().snapshot();
/// let authz = snap.authz_for_workload("foo", &Labels::new());
/// let headers = http::HeaderMap::new();
/// let attrs = HttpAuthzAttrs { method: "GET", path: "/headers", host: "httpbin", headers: &headers };
/// let d = authz.evaluate(&AuthzRequest::http(8000, attrs));
/// assert!(d.allowed); // enforced: no ALLOW policy
/// let shadow = d.shadow_allow.unwrap();
/// assert!(!shadow.allowed); // the dry-run ALLOW policy matches nothing: "denied"
/// assert_eq!(shadow.policy, None); // with no effective policy
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowResult {
    /// The shadow engine's result (`allowed` / `denied`).
    pub allowed: bool,
    /// The matching dry-run policy, `ns/name` (its effective policy id), if one matched.
    pub policy: Option<Arc<str>>,
    /// Index of the matching rule in that policy.
    pub rule: Option<usize>,
}

/// The policies that apply to one workload, grouped by action (compiled once per workload;
/// fetch again when the snapshot changes).
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-nothing, namespace: istio-system}
/// spec: {}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: productpage-viewer, namespace: default}
/// spec:
///   selector: {matchLabels: {app: productpage}}
///   action: ALLOW
///   rules: [{to: [{operation: {methods: [GET]}}]}]
/// ").unwrap().snapshot();
/// let productpage: Labels = [("app".to_string(), "productpage".to_string())].into();
/// let authz = snap.authz_for_workload("default", &productpage);
/// // the mesh-wide policy from the root namespace applies too
/// assert_eq!(
///     authz.policies().collect::<Vec<_>>(),
///     ["istio-system/allow-nothing", "default/productpage-viewer"]
/// );
/// assert_eq!(authz.allow_policies().count(), 2);
/// let headers = http::HeaderMap::new();
/// let get = HttpAuthzAttrs { method: "GET", path: "/productpage", host: "productpage:9080", headers: &headers };
/// assert!(authz.evaluate(&AuthzRequest::http(9080, get)).allowed);
/// let post = HttpAuthzAttrs { method: "POST", ..get };
/// assert!(!authz.evaluate(&AuthzRequest::http(9080, post)).allowed);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WorkloadAuthz {
    broken: Option<Arc<CompiledPolicy>>,
    custom: Vec<Arc<CompiledPolicy>>,
    deny: Vec<Arc<CompiledPolicy>>,
    allow: Vec<Arc<CompiledPolicy>>,
    audit: Vec<Arc<CompiledPolicy>>,
    dry_run: Vec<Arc<CompiledPolicy>>,
}

impl WorkloadAuthz {
    /// Names of the applicable policies. When policies fail to compile, only the first of
    /// them is named (the workload denies every request then, whichever it is).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-admin, namespace: foo}
    /// spec:
    ///   action: DENY
    ///   rules: [{to: [{operation: {paths: ["/admin"]}}]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-get, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   rules: [{to: [{operation: {methods: [GET]}}]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata:
    ///   name: trial
    ///   namespace: foo
    ///   annotations: {istio.io/dry-run: "true"}
    /// spec:
    ///   rules: [{from: [{source: {namespaces: [foo]}}]}]
    /// "#).unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let authz = snap.authz_for_workload("foo", &httpbin);
    /// // grouped by action (DENY before ALLOW); dry-run policies last
    /// assert_eq!(authz.policies().collect::<Vec<_>>(), ["foo/deny-admin", "foo/allow-get", "foo/trial"]);
    /// ```
    pub fn policies(&self) -> impl Iterator<Item = &str> {
        self.broken
            .iter()
            .chain(&self.custom)
            .chain(&self.deny)
            .chain(&self.allow)
            .chain(&self.audit)
            .chain(&self.dry_run)
            .map(|p| &*p.name)
    }

    /// Names of the applicable ALLOW policies (enforced ones).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-admin, namespace: foo}
    /// spec:
    ///   action: DENY
    ///   rules: [{to: [{operation: {paths: ["/admin"]}}]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-get, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   rules: [{to: [{operation: {methods: [GET]}}]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata:
    ///   name: trial
    ///   namespace: foo
    ///   annotations: {istio.io/dry-run: "true"}
    /// spec:
    ///   rules: [{from: [{source: {namespaces: [foo]}}]}]
    /// "#).unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let authz = snap.authz_for_workload("foo", &httpbin);
    /// // the dry-run ALLOW policy is not enforced, so it is not listed
    /// assert_eq!(authz.allow_policies().collect::<Vec<_>>(), ["foo/allow-get"]);
    /// ```
    pub fn allow_policies(&self) -> impl Iterator<Item = &str> {
        self.allow.iter().map(|p| &*p.name)
    }

    /// True when no policy applies (everything is allowed).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::AuthzRequest;
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing, namespace: foo}
    /// spec: {}
    /// ").unwrap().snapshot();
    /// assert!(!snap.authz_for_workload("foo", &Labels::new()).is_empty());
    /// let bar = snap.authz_for_workload("bar", &Labels::new());
    /// assert!(bar.is_empty());
    /// assert!(bar.evaluate(&AuthzRequest::tcp(8080)).allowed);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.policies().next().is_none()
    }

    /// Whether any applicable policy reads the original client address (`remote.ip`:
    /// `remoteIpBlocks`, `notRemoteIpBlocks`, a `when` on `remote.ip`), so a data plane
    /// need work out [`AuthzRequest::remote_ip`] from `X-Forwarded-For` only then.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ingress-policy, namespace: istio-system}
    /// spec:
    ///   selector: {matchLabels: {app: istio-ingressgateway}}
    ///   action: ALLOW
    ///   rules: [{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}]
    /// ").unwrap().snapshot();
    /// let gw: Labels = [("app".to_string(), "istio-ingressgateway".to_string())].into();
    /// assert!(snap.authz_for_workload("istio-system", &gw).uses_remote_ip());
    /// assert!(!snap.authz_for_workload("default", &Labels::new()).uses_remote_ip());
    /// ```
    pub fn uses_remote_ip(&self) -> bool {
        [
            &self.custom,
            &self.deny,
            &self.allow,
            &self.audit,
            &self.dry_run,
        ]
        .into_iter()
        .flatten()
        .any(|p| p.uses_remote_ip())
    }

    /// The providers named by the CUSTOM policies (enforced, then dry-run), in order
    /// (several names, or a name that is not defined, deny every request: see
    /// [`resolve_ext_authz`](crate::meshconfig::resolve_ext_authz)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
    /// ").unwrap().snapshot();
    /// assert_eq!(snap.authz_for_workload("foo", &Labels::new()).custom_providers(), ["opa"]);
    /// assert!(snap.authz_for_workload("bar", &Labels::new()).custom_providers().is_empty());
    /// ```
    pub fn custom_providers(&self) -> Vec<&str> {
        // istiod collects the providers of dry-run CUSTOM policies too before it checks
        // that there is exactly one
        self.custom
            .iter()
            .chain(
                self.dry_run
                    .iter()
                    .filter(|p| p.action == AuthorizationAction::Custom),
            )
            .map(|p| p.provider.as_deref().unwrap_or(""))
            .collect()
    }

    /// The first CUSTOM policy whose rules match `req`: the external authorizer must be
    /// asked before DENY and ALLOW policies are looked at. `None` when no CUSTOM policy
    /// applies or matches (a plain scan of an empty list when none applies).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec:
    ///   action: CUSTOM
    ///   provider: {name: sample-ext-authz-http}
    ///   rules: [{to: [{operation: {paths: ["/headers"]}}]}]
    /// "#).unwrap().snapshot();
    /// let authz = snap.authz_for_workload("foo", &Labels::new());
    /// let headers = http::HeaderMap::new();
    /// let at = |path| AuthzRequest::http(8000, HttpAuthzAttrs { method: "GET", path, host: "httpbin", headers: &headers });
    /// let m = authz.custom_match(&at("/headers")).unwrap();
    /// assert_eq!((&**m.policy, m.rule, m.provider), ("foo/ext-authz", 0, "sample-ext-authz-http"));
    /// assert!(authz.custom_match(&at("/ip")).is_none()); // the authorizer is not asked
    /// ```
    pub fn custom_match(&self, req: &AuthzRequest<'_>) -> Option<CustomMatch<'_>> {
        self.custom.iter().find_map(|p| {
            p.first_match(req).map(|rule| CustomMatch {
                policy: &p.name,
                rule,
                provider: p.provider.as_deref().unwrap_or(""),
            })
        })
    }

    /// Decides, with no external authorizer: a matching CUSTOM policy denies.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs};
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-method-get, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   action: DENY
    ///   rules:
    ///   - to: [{operation: {methods: [GET]}}]
    ///     when: [{key: 'request.headers[x-token]', notValues: [admin]}]
    /// ").unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let authz = snap.authz_for_workload("foo", &httpbin);
    /// let decide = |token: Option<&str>| {
    ///     let mut headers = http::HeaderMap::new();
    ///     if let Some(t) = token {
    ///         headers.insert("x-token", t.parse().unwrap());
    ///     }
    ///     let attrs = HttpAuthzAttrs { method: "GET", path: "/get", host: "httpbin.foo:8000", headers: &headers };
    ///     authz.evaluate(&AuthzRequest::http(8000, attrs))
    /// };
    /// assert!(decide(Some("admin")).allowed);
    /// let d = decide(Some("guest"));
    /// assert_eq!((d.allowed, d.reason, d.rule), (false, AuthzReason::DeniedByPolicy, Some(0)));
    /// assert_eq!(d.policy.as_deref(), Some("foo/deny-method-get"));
    /// assert!(!decide(None).allowed);
    /// ```
    pub fn evaluate(&self, req: &AuthzRequest<'_>) -> AuthzDecision {
        self.evaluate_with(req, &|_, _| false)
    }

    /// Decides; `custom(provider, req)` answers for CUSTOM policies (true = allow).
    ///
    /// The callback is asked only when a CUSTOM policy's rules match the request.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs};
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   action: CUSTOM
    ///   provider: {name: my-ext-authz}
    ///   rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
    /// "#).unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let authz = snap.authz_for_workload("foo", &httpbin);
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-ext-authz", "allow".parse().unwrap());
    /// // stands in for a call to the external authorizer named by the policy
    /// let provider = |name: &str, req: &AuthzRequest<'_>| {
    ///     name == "my-ext-authz"
    ///         && req.http.is_some_and(|h| h.headers.get("x-ext-authz").is_some_and(|v| v == "allow"))
    /// };
    /// let admin = HttpAuthzAttrs { method: "GET", path: "/admin/users", host: "httpbin", headers: &headers };
    /// assert!(authz.evaluate_with(&AuthzRequest::http(8000, admin), &provider).allowed);
    /// // without a provider a matching CUSTOM policy denies
    /// let d = authz.evaluate(&AuthzRequest::http(8000, admin));
    /// assert_eq!((d.allowed, d.reason), (false, AuthzReason::CustomDenied));
    /// ```
    pub fn evaluate_with(
        &self,
        req: &AuthzRequest<'_>,
        custom: &dyn Fn(&str, &AuthzRequest<'_>) -> bool,
    ) -> AuthzDecision {
        let mut d = self.enforce(req, custom);
        if let Some(p) = self.audit.iter().find(|p| p.first_match(req).is_some()) {
            d.audit = Some(p.name.clone());
        }
        if !self.dry_run.is_empty() {
            // each RBAC filter's shadow engine holds that action's dry-run policies only
            let shadow = |action: AuthorizationAction, matched_allows: bool| {
                let mut any = false;
                let m = self
                    .dry_run
                    .iter()
                    .filter(|p| p.action == action)
                    .inspect(|_| any = true)
                    .find_map(|p| p.first_match(req).map(|i| (p.name.clone(), i)));
                any.then(|| ShadowResult {
                    allowed: m.is_some() == matched_allows,
                    rule: m.as_ref().map(|(_, i)| *i),
                    policy: m.map(|(p, _)| p),
                })
            };
            // the DENY filter runs after the CUSTOM one let the request on, the ALLOW
            // filter after the enforced DENY one did too
            let reached_deny = !matches!(
                d.reason,
                AuthzReason::CustomDenied | AuthzReason::Uncompilable(_)
            );
            if reached_deny {
                d.shadow_deny = shadow(AuthorizationAction::Deny, false);
            }
            let reached_allow = reached_deny && d.reason != AuthzReason::DeniedByPolicy;
            if reached_allow {
                d.shadow_allow = shadow(AuthorizationAction::Allow, true);
            }
            d.dry_run = [&d.shadow_deny, &d.shadow_allow]
                .into_iter()
                .flatten()
                .find(|s| s.allowed != d.allowed)
                .and_then(|s| s.policy.clone());
        }
        d
    }

    fn enforce(
        &self,
        req: &AuthzRequest<'_>,
        custom: &dyn Fn(&str, &AuthzRequest<'_>) -> bool,
    ) -> AuthzDecision {
        let decide = |allowed, p: Option<&Arc<CompiledPolicy>>, rule, reason| AuthzDecision {
            allowed,
            policy: p.map(|p| p.name.clone()),
            rule,
            reason,
            audit: None,
            dry_run: None,
            shadow_deny: None,
            shadow_allow: None,
        };
        if let Some(p) = &self.broken {
            let e = p.error().unwrap_or("").into();
            return decide(false, Some(p), None, AuthzReason::Uncompilable(e));
        }
        for p in &self.custom {
            if let Some(i) = p.first_match(req)
                && !custom(p.provider.as_deref().unwrap_or(""), req)
            {
                return decide(false, Some(p), Some(i), AuthzReason::CustomDenied);
            }
        }
        for p in &self.deny {
            if let Some(i) = p.first_match(req) {
                return decide(false, Some(p), Some(i), AuthzReason::DeniedByPolicy);
            }
        }
        if self.allow.is_empty() {
            return decide(true, None, None, AuthzReason::NoAllowPolicy);
        }
        for p in &self.allow {
            if let Some(i) = p.first_match(req) {
                return decide(true, Some(p), Some(i), AuthzReason::AllowedByPolicy);
            }
        }
        decide(false, None, None, AuthzReason::NoAllowMatched)
    }
}

/// A CUSTOM policy matching a request ([`WorkloadAuthz::custom_match`]).
///
/// # Examples
///
/// ```
/// use mesh_core::authz::AuthzRequest;
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: ext-authz, namespace: foo}
/// spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}
/// ").unwrap().snapshot();
/// let authz = snap.authz_for_workload("foo", &Labels::new());
/// let m = authz.custom_match(&AuthzRequest::tcp(5432)).unwrap();
/// assert_eq!(m.provider, "opa");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomMatch<'a> {
    /// The policy, `ns/name`.
    pub policy: &'a Arc<str>,
    /// The index of its matching rule.
    pub rule: usize,
    /// Its `provider.name`.
    pub provider: &'a str,
}

/// Every AuthorizationPolicy, compiled, indexed by namespace.
///
/// Part of every snapshot; [`Snapshot::authz_for_workload`](crate::snapshot::Snapshot::authz_for_workload)
/// calls [`AuthzPolicies::for_workload`].
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzPolicies, AuthzReason, AuthzRequest};
/// use mesh_core::model::Labels;
/// use mesh_core::names::MeshOptions;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: bad-path, namespace: foo}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   rules: [{to: [{operation: {paths: ["/{**}/{*}"]}}]}]
/// "#, "ap.yaml");
/// let policies = AuthzPolicies::build(&loaded.objects, &MeshOptions::default());
/// let errors: Vec<(&str, &str)> = policies.errors().collect();
/// assert_eq!(errors[0].0, "foo/bad-path");
///
/// // fail closed: the workload it selects is denied everything
/// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
/// let d = policies.for_workload("foo", &httpbin).evaluate(&AuthzRequest::tcp(8000));
/// assert!(!d.allowed);
/// assert!(matches!(d.reason, AuthzReason::Uncompilable(_)));
/// assert!(policies.for_workload("foo", &Labels::new()).is_empty());
/// ```
#[derive(Debug, Default)]
pub struct AuthzPolicies {
    by_ns: HashMap<Box<str>, Vec<Arc<CompiledPolicy>>>,
    root: Box<str>,
}

impl AuthzPolicies {
    /// Compiles every AuthorizationPolicy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzPolicies, AuthzRequest};
    /// use mesh_core::model::Labels;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-all, namespace: mesh-root}
    /// spec: {action: DENY, rules: [{}]}
    /// ", "ap.yaml");
    /// // a policy in the configured root namespace applies to every workload
    /// let opts = MeshOptions { root_namespace: "mesh-root".into(), ..MeshOptions::default() };
    /// let policies = AuthzPolicies::build(&loaded.objects, &opts);
    /// let authz = policies.for_workload("bookinfo", &Labels::new());
    /// assert!(!authz.evaluate(&AuthzRequest::tcp(9080)).allowed);
    /// // with the default root namespace (istio-system) it applies to its own namespace only
    /// let policies = AuthzPolicies::build(&loaded.objects, &MeshOptions::default());
    /// assert!(policies.for_workload("bookinfo", &Labels::new()).is_empty());
    /// ```
    pub fn build(objects: &[ConfigObject], opts: &MeshOptions) -> AuthzPolicies {
        let mut by_ns: HashMap<Box<str>, Vec<Arc<CompiledPolicy>>> = HashMap::new();
        for o in objects {
            let Spec::AuthorizationPolicy(ap) = &o.spec else {
                continue;
            };
            let dry = o
                .metadata
                .annotations
                .get("istio.io/dry-run")
                .and_then(|v| parse_go_bool(v))
                .unwrap_or(false);
            let p =
                CompiledPolicy::compile_in(&o.metadata.name, &o.metadata.namespace, ap, dry, opts);
            match by_ns.get_mut(o.metadata.namespace.as_str()) {
                Some(v) => v.push(Arc::new(p)),
                None => {
                    by_ns.insert(o.metadata.namespace.as_str().into(), vec![Arc::new(p)]);
                }
            }
        }
        AuthzPolicies {
            by_ns,
            root: opts.root_namespace.as_str().into(),
        }
    }

    /// Every policy that failed to compile: (`ns/name`, error).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::AuthzPolicies;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let loaded = mesh_core::load::load_str(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ok, namespace: foo}
    /// spec: {rules: [{to: [{operation: {paths: ["/api/*"]}}]}]}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: bad-path, namespace: foo}
    /// spec: {rules: [{to: [{operation: {paths: ["/{**}/{*}"]}}]}]}
    /// "#, "ap.yaml");
    /// let policies = AuthzPolicies::build(&loaded.objects, &MeshOptions::default());
    /// let names: Vec<&str> = policies.errors().map(|(name, _)| name).collect();
    /// assert_eq!(names, ["foo/bad-path"]);
    /// ```
    pub fn errors(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_ns
            .values()
            .flatten()
            .filter_map(|p| p.error().map(|e| (&*p.name, e)))
    }

    /// The policies applying to a workload (root namespace first, then its own).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::AuthzPolicies;
    /// use mesh_core::model::Labels;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: ratings-viewer, namespace: bookinfo}
    /// spec:
    ///   selector: {matchLabels: {app: ratings}}
    ///   rules: [{from: [{source: {principals: [cluster.local/ns/bookinfo/sa/bookinfo-reviews]}}]}]
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: audit-all, namespace: istio-system}
    /// spec: {action: AUDIT, rules: [{}]}
    /// ", "ap.yaml");
    /// let policies = AuthzPolicies::build(&loaded.objects, &MeshOptions::default());
    /// let ratings: Labels = [("app".to_string(), "ratings".to_string())].into();
    /// let names = |ns: &str, labels: &Labels| -> Vec<String> {
    ///     policies.for_workload(ns, labels).policies().map(str::to_owned).collect()
    /// };
    /// assert_eq!(names("bookinfo", &ratings), ["bookinfo/ratings-viewer", "istio-system/audit-all"]);
    /// assert_eq!(names("bookinfo", &Labels::new()), ["istio-system/audit-all"]); // selector does not match
    /// assert_eq!(names("other", &ratings), ["istio-system/audit-all"]); // other namespace
    /// ```
    pub fn for_workload(&self, namespace: &str, labels: &Labels) -> WorkloadAuthz {
        let mut w = WorkloadAuthz::default();
        let root = self.by_ns.get(&*self.root).into_iter().flatten();
        let own = (namespace != &*self.root)
            .then(|| self.by_ns.get(namespace))
            .flatten()
            .into_iter()
            .flatten();
        for p in root.chain(own) {
            if !p.applies_to(namespace, labels, &self.root) {
                continue;
            }
            // a dry-run policy is never enforced, compiled or not (istiod puts it in the
            // shadow rules only)
            if p.error().is_some() && p.action != AuthorizationAction::Audit && !p.dry_run {
                w.broken.get_or_insert_with(|| p.clone());
                continue;
            }
            if p.dry_run {
                w.dry_run.push(p.clone());
                continue;
            }
            match p.action {
                AuthorizationAction::Custom => w.custom.push(p.clone()),
                AuthorizationAction::Deny => w.deny.push(p.clone()),
                AuthorizationAction::Allow => w.allow.push(p.clone()),
                AuthorizationAction::Audit => w.audit.push(p.clone()),
            }
        }
        w
    }
}

/// Envoy's `normalize_path` refused the path (an escaped or raw NUL, `%00`): the request
/// is answered 400 before routing and authorization
/// (`path_normalization_failed`).
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{normalize_path, InvalidPath};
///
/// let err = normalize_path("/files/a%00.txt").unwrap_err();
/// assert_eq!(err, InvalidPath);
/// assert_eq!(
///     err.to_string(),
///     "path normalization failed: the path holds an escaped NUL (%00)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("path normalization failed: the path holds an escaped NUL (%00)")]
pub struct InvalidPath;

/// Normalizes a request path as Istio's default `meshConfig.pathNormalization` (`BASE`)
/// has Envoy do (`normalize_path: true`, `merge_slashes: false`,
/// `path_with_escaped_slashes_action: KEEP_UNCHANGED`), RFC 3986 as Chromium's URL
/// canonicalizer reads it. The normalized path is what authorization, routing and the
/// application all see (§8.4):
///
/// - the query (from `?`) is dropped (callers put it back for the request);
/// - `%XX` of an unreserved character (`%2D %2E %30-%39 %41-%5A %5F %61-%7A %7E`, either
///   hex case) is decoded, once (`%252e` stays); other valid escapes, `%2F` and `%5C`
///   included, are kept exactly as sent; a `%` that starts no escape is kept, but becomes
///   `%25` where decoding would have created a new escape after it (`%%30%30`);
/// - `\` becomes `/`;
/// - `.` and `..` segments (also spelled `%2e`) are resolved, never above the root;
/// - slashes are not merged (`//` stays);
/// - bytes that may not appear in a path (controls, space, `"#<>^`{|}`, DEL, non-ASCII)
///   are percent-encoded;
/// - `%00` (or a raw NUL) fails: Envoy answers 400.
///
/// A path that does not start with `/` (`*`, an authority) is left as it is. Allocates
/// only when something changes: one scan finds out.
///
/// # Examples
///
/// ```
/// use std::borrow::Cow;
/// use mesh_core::authz::{normalize_path, InvalidPath};
///
/// assert_eq!(normalize_path("/admin/../public/./index.html").unwrap(), "/public/index.html");
/// assert_eq!(normalize_path("/%61dmin?q=1").unwrap(), "/admin");
/// assert_eq!(normalize_path("/a\\b").unwrap(), "/a/b");
/// assert_eq!(normalize_path("/%2e%2e/etc/passwd").unwrap(), "/etc/passwd");
/// assert_eq!(normalize_path("/a%2fb//c").unwrap(), "/a%2fb//c"); // KEEP_UNCHANGED, no merge
/// assert_eq!(normalize_path("/a%00b"), Err(InvalidPath));
/// assert!(matches!(normalize_path("/status/200?x=1"), Ok(Cow::Borrowed("/status/200"))));
/// ```
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    PathNormalization::Base.normalize(path)
}

/// MeshConfig `pathNormalization.normalization`: what is done to a request's path before
/// routing, authorization and the application, as Istio configures Envoy's connection
/// manager for each mode. Carried by [`MeshOptions`]
/// (`path_normalization`); the default is `BASE` (MeshConfig `DEFAULT` means `BASE`).
///
/// | mode | `normalize_path` | `merge_slashes` | `path_with_escaped_slashes_action` |
/// | --- | --- | --- | --- |
/// | `NONE` | false | false | `KEEP_UNCHANGED` |
/// | `BASE` | true | false | `KEEP_UNCHANGED` |
/// | `MERGE_SLASHES` | true | true | `KEEP_UNCHANGED` |
/// | `DECODE_AND_MERGE_SLASHES` | true | true | `UNESCAPE_AND_FORWARD` |
///
/// Envoy applies them in this order: `%2F`/`%5C` (either case) unescaped to `/` and `\`,
/// then the path normalized ([`normalize_path`]), then runs of slashes merged. So
/// `/app//../admin` is `/app/admin` with `MERGE_SLASHES` (the `..` removes the empty
/// segment before slashes are merged), and `/a%2F..%2Fb` is `/b` with
/// `DECODE_AND_MERGE_SLASHES`.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{InvalidPath, PathNormalization};
///
/// let modes = [
///     PathNormalization::None,
///     PathNormalization::Base,
///     PathNormalization::MergeSlashes,
///     PathNormalization::DecodeAndMergeSlashes,
/// ];
/// let all = |path: &str| modes.map(|m| m.normalize(path).map(|p| p.into_owned()));
/// assert_eq!(all("//admin/./x"), [
///     Ok("//admin/./x".to_string()),
///     Ok("//admin/x".to_string()),
///     Ok("/admin/x".to_string()),
///     Ok("/admin/x".to_string()),
/// ]);
/// assert_eq!(all("/a%2Fadmin").map(Result::unwrap), ["/a%2Fadmin", "/a%2Fadmin", "/a%2Fadmin", "/a/admin"]);
/// assert_eq!(all("/a%00")[0], Ok("/a%00".to_string())); // NONE checks nothing
/// assert_eq!(all("/a%00")[1], Err(InvalidPath));
///
/// assert_eq!(PathNormalization::default(), PathNormalization::Base);
/// assert_eq!(PathNormalization::from_name("DEFAULT"), Some(PathNormalization::Base));
/// assert_eq!(PathNormalization::MergeSlashes.as_str(), "MERGE_SLASHES");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PathNormalization {
    /// `NONE`: the path is left exactly as sent (no normalization, `%00` passes).
    None,
    /// `BASE` (the default): [`normalize_path`].
    #[default]
    Base,
    /// `MERGE_SLASHES`: `BASE`, then runs of `/` merged into one.
    MergeSlashes,
    /// `DECODE_AND_MERGE_SLASHES`: `%2F` and `%5C` (either case) decoded first, then
    /// `MERGE_SLASHES`.
    DecodeAndMergeSlashes,
}

impl PathNormalization {
    /// The modes' MeshConfig names, as [`PathNormalization::from_name`] takes them.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::PathNormalization;
    ///
    /// assert!(PathNormalization::NAMES.contains(&"DECODE_AND_MERGE_SLASHES"));
    /// for name in PathNormalization::NAMES {
    ///     assert!(PathNormalization::from_name(name).is_some());
    /// }
    /// ```
    pub const NAMES: [&'static str; 5] = [
        "DEFAULT",
        "NONE",
        "BASE",
        "MERGE_SLASHES",
        "DECODE_AND_MERGE_SLASHES",
    ];

    /// The mode a MeshConfig name selects (`DEFAULT` is `BASE`); `None` for another name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::PathNormalization;
    ///
    /// assert_eq!(PathNormalization::from_name("NONE"), Some(PathNormalization::None));
    /// assert_eq!(PathNormalization::from_name("merge_slashes"), None); // names are upper case
    /// ```
    pub fn from_name(name: &str) -> Option<PathNormalization> {
        Some(match name {
            "DEFAULT" | "BASE" => PathNormalization::Base,
            "NONE" => PathNormalization::None,
            "MERGE_SLASHES" => PathNormalization::MergeSlashes,
            "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
            _ => return None,
        })
    }

    /// The MeshConfig name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::PathNormalization;
    ///
    /// assert_eq!(PathNormalization::default().as_str(), "BASE");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PathNormalization::None => "NONE",
            PathNormalization::Base => "BASE",
            PathNormalization::MergeSlashes => "MERGE_SLASHES",
            PathNormalization::DecodeAndMergeSlashes => "DECODE_AND_MERGE_SLASHES",
        }
    }

    /// Normalizes `path` (its query dropped, as [`normalize_path`] does) in this mode.
    /// An ordinary path costs one scan and no allocation in every mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::borrow::Cow;
    /// use mesh_core::authz::PathNormalization;
    ///
    /// let m = PathNormalization::MergeSlashes;
    /// assert_eq!(m.normalize("/app//../admin").unwrap(), "/app/admin");
    /// assert_eq!(m.normalize(r"/app/\/\/\admin?x=1").unwrap(), "/app/admin");
    /// assert!(matches!(m.normalize("/status/200?x=1"), Ok(Cow::Borrowed("/status/200"))));
    /// let d = PathNormalization::DecodeAndMergeSlashes;
    /// assert_eq!(d.normalize("/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc").unwrap(), "/app/admin/abc");
    /// ```
    pub fn normalize(self, path: &str) -> Result<Cow<'_, str>, InvalidPath> {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        self.normalize_path_only(path)
    }

    /// Normalizes the path of `path_and_query` and keeps its query, as Envoy's `:path`
    /// holds it after normalization (what `request.headers[:path]` sees). Allocates only
    /// when the path changes and there is a query.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::borrow::Cow;
    /// use mesh_core::authz::PathNormalization;
    ///
    /// let base = PathNormalization::Base;
    /// assert_eq!(base.normalize_keep_query("/a/../admin?debug=1").unwrap(), "/admin?debug=1");
    /// assert!(matches!(base.normalize_keep_query("/x?debug=1"), Ok(Cow::Borrowed("/x?debug=1"))));
    /// assert!(base.normalize_keep_query("/%00?a").is_err());
    /// ```
    pub fn normalize_keep_query(self, path_and_query: &str) -> Result<Cow<'_, str>, InvalidPath> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        Ok(match (self.normalize_path_only(path)?, query) {
            (Cow::Borrowed(_), _) => Cow::Borrowed(path_and_query),
            (Cow::Owned(p), None) => Cow::Owned(p),
            (Cow::Owned(mut p), Some(q)) => {
                p.reserve_exact(q.len() + 1);
                p.push('?');
                p.push_str(q);
                Cow::Owned(p)
            }
        })
    }

    /// [`normalize`](Self::normalize) of a path without a query.
    fn normalize_path_only(self, path: &str) -> Result<Cow<'_, str>, InvalidPath> {
        let b = path.as_bytes();
        if self == PathNormalization::None || b.first() != Some(&b'/') {
            return Ok(Cow::Borrowed(path));
        }
        let merge = matches!(
            self,
            PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
        );
        // the hot path: one scan, no allocation
        let mut prev = 0u8;
        let clean = b.iter().all(|&c| {
            let ok = !(c == b'%'
                || c == b'\\'
                || must_escape(c)
                || c == 0
                || (prev == b'/' && (c == b'.' || (merge && c == b'/'))));
            prev = c;
            ok
        });
        if clean {
            return Ok(Cow::Borrowed(path));
        }
        let mut out = if self == PathNormalization::DecodeAndMergeSlashes {
            canonicalize(&unescape_slashes(b))?
        } else {
            canonicalize(b)?
        };
        if merge {
            merge_slashes(&mut out);
        }
        if out == path {
            return Ok(Cow::Borrowed(path));
        }
        Ok(Cow::Owned(out))
    }
}

/// Envoy's `UNESCAPE_AND_FORWARD`: `%2F`/`%2f` become `/`, `%5C`/`%5c` become `\`.
fn unescape_slashes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(b'2'), Some(b'F' | b'f')) => {
                    out.push(b'/');
                    i += 3;
                    continue;
                }
                (Some(b'5'), Some(b'C' | b'c')) => {
                    out.push(b'\\');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Envoy's `merge_slashes` over a path starting with `/`: its non-empty segments joined
/// by one `/`, after a leading `/`, with a trailing `/` when the path ended with one (so a
/// path of slashes only, `//`, stays `//`, as in Envoy).
fn merge_slashes(path: &mut String) {
    if !path.contains("//") {
        return;
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(seg);
    }
    if path.ends_with('/') {
        if out.is_empty() {
            out.push('/'); // Envoy's leading `/` before the (empty) join
        }
        out.push('/');
    }
    *path = out;
}

/// Bytes a canonical path carries percent-encoded (Chromium's path table): controls,
/// space, `"#<>?^`{|}`, DEL and non-ASCII. (`%` and `\` are handled on their own.)
fn must_escape(c: u8) -> bool {
    (0x01..=0x20).contains(&c)
        || c >= 0x7f
        || matches!(
            c,
            b'"' | b'#' | b'<' | b'>' | b'?' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
}

/// RFC 3986 unreserved characters but `.` (which the dot handling decodes).
fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The escape `%XY` at `i`, decoded.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    Some((hex(*b.get(i + 1)?)? << 4) | hex(*b.get(i + 2)?)?)
}

/// The length of a dot at `i`: `.` (1), `%2e`/`%2E` (3), or 0.
fn dot_at(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'.') => 1,
        Some(b'%') if escape_at(b, i) == Some(b'.') => 3,
        _ => 0,
    }
}

fn slash_at(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), Some(b'/' | b'\\'))
}

/// Drops the last segment of `out` (which ends with `/`), never the leading `/`.
fn up_one(out: &mut String) {
    let keep = out[..out.len() - 1].rfind('/').map_or(1, |i| i + 1);
    out.truncate(keep);
}

/// The slow path of [`normalize_path`] over a path starting with `/`. The output is ASCII.
fn canonicalize(b: &[u8]) -> Result<String, InvalidPath> {
    let mut out = String::with_capacity(b.len());
    let mut invalid = false;
    // where in `out` the last `%` that started no valid escape went
    let mut stray_percent: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let dot = dot_at(b, i);
        if dot > 0 {
            let after = i + dot;
            if !out.ends_with('/') {
                out.push('.');
                i = after;
                continue;
            }
            if after == b.len() {
                i = after; // `/.` at the end: the directory
                continue;
            }
            if slash_at(b, after) {
                i = after + 1;
                continue;
            }
            let dot2 = dot_at(b, after);
            let end2 = after + dot2;
            if dot2 > 0 && (end2 == b.len() || slash_at(b, end2)) {
                up_one(&mut out);
                i = if end2 == b.len() { end2 } else { end2 + 1 };
                continue;
            }
            out.push('.'); // a name that starts with a dot
            i = after;
            continue;
        }
        let c = b[i];
        match c {
            b'\\' => out.push('/'),
            b'%' => match escape_at(b, i) {
                Some(v) if unreserved(v) => {
                    out.push(v as char);
                    i += 3;
                    // a stray `%` just before must not turn into an escape now
                    if let Some(p) = stray_percent.filter(|&p| p + 3 >= out.len()) {
                        let ob = out.as_bytes();
                        let second = ob.get(p + 2).copied().or_else(|| b.get(i).copied());
                        if hex(ob[p + 1]).is_some() && second.and_then(hex).is_some() {
                            out.insert_str(p + 1, "25");
                        }
                    }
                    continue;
                }
                Some(v) => {
                    invalid |= v == 0;
                    out.push('%');
                    out.push(b[i + 1] as char);
                    out.push(b[i + 2] as char);
                    i += 3;
                    continue;
                }
                None => {
                    stray_percent = Some(out.len());
                    out.push('%');
                }
            },
            0 => {
                invalid = true;
                out.push_str("%00");
            }
            c if must_escape(c) => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 0xf)] as char);
            }
            c => out.push(c as char),
        }
        i += 1;
    }
    if invalid {
        return Err(InvalidPath);
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`, which istiod applies to `istio.io/dry-run`: `1 t T TRUE true
/// True` and `0 f F FALSE false False`.
pub(crate) fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The methods Envoy's HTTP/1 codecs know (http-parser's list, and BalsaParser's
/// `kValidMethods`, which adds `MSEARCH`); any other method, however well-formed, is a codec
/// error (Envoy's `allow_custom_methods` is off by default, and Istio does not set it).
const HTTP1_EXTENSION_METHODS: [&str; 26] = [
    "ACL",
    "BIND",
    "CHECKOUT",
    "COPY",
    "LINK",
    "LOCK",
    "M-SEARCH",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "MSEARCH",
    "NOTIFY",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

/// Whether Envoy's HTTP/1 codec accepts the request method `m`: the standard methods and
/// the extension methods of http-parser and Balsa (`PROPFIND`, `PURGE`, `MSEARCH`, ...);
/// any other method, however well-formed, is a codec error, answered 400 before routing and
/// authorization (Envoy's `allow_custom_methods` is off, and Istio does not set it). Over
/// HTTP/2 any method passes the codec. A method not in upper case is refused on both.
///
/// # Examples
///
/// ```
/// use mesh_core::authz::http1_method_known;
///
/// assert!(http1_method_known(&http::Method::GET));
/// assert!(http1_method_known(&"PROPFIND".parse().unwrap()));
/// assert!(!http1_method_known(&"FROBNICATE".parse().unwrap()));
/// ```
pub fn http1_method_known(m: &http::Method) -> bool {
    use http::Method;
    // the standard methods are an enum in `http`: compared without looking at bytes
    matches!(
        *m,
        Method::GET
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS
            | Method::PATCH
            | Method::CONNECT
            | Method::TRACE
    ) || HTTP1_EXTENSION_METHODS.contains(&m.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_accounts_match_as_istiod_s_regex() {
        use super::sa_matches;
        assert!(sa_matches("cluster.local/ns/bar/sa/sleep", "bar", "sleep"));
        assert!(sa_matches("other.td/ns/bar/x/sa/sleep", "bar", "sleep"));
        assert!(sa_matches(
            "cluster.local/ns/bar/sa/sleep/extra",
            "bar",
            "sleep"
        ));
        assert!(!sa_matches(
            "cluster.local/ns/bar/sa/sleep-2",
            "bar",
            "sleep"
        ));
        assert!(!sa_matches(
            "cluster.local/ns/bar/sa/sleep/",
            "bar",
            "sleep"
        ));
        assert!(!sa_matches("/ns/bar/sa/sleep", "bar", "sleep"));
        assert!(!sa_matches("cluster.local/ns/foo/sa/sleep", "bar", "sleep"));
        assert!(!sa_matches(
            "cluster.local/ns/bar/xsa/sleep",
            "bar",
            "sleep"
        ));
    }

    use super::*;

    /// `request.auth.claims[..]` conditions over string claims: `scope` and `permission`
    /// are space-delimited lists, and so are the verifying provider's
    /// `spaceDelimitedClaims` (top-level claims only, as Envoy normalizes them); any part
    /// matches, the whole multi-part string does not (Envoy replaced it by the list).
    #[test]
    fn space_delimited_claims() {
        let extra = Some(Arc::from(vec!["roles".to_string(), "x.y".to_string()]));
        // (key, claims, the provider lists roles and x.y, value, matches)
        let table: &[(&str, &str, bool, &str, bool)] = &[
            ("scope", r#"{"scope": "read write"}"#, false, "write", true),
            ("scope", r#"{"scope": "read write"}"#, false, "read", true),
            (
                "scope",
                r#"{"scope": "read write"}"#,
                false,
                "read write",
                false,
            ),
            (
                "scope",
                r#"{"scope": "read  write "}"#,
                false,
                "write",
                true,
            ),
            ("scope", r#"{"scope": "read write"}"#, false, "wr*", true),
            ("scope", r#"{"scope": "read write"}"#, false, "*", true),
            ("scope", r#"{"scope": "admin"}"#, false, "admin", true),
            // no part at all: the string itself, as Envoy leaves it
            ("scope", r#"{"scope": "  "}"#, false, "*", true),
            ("scope", r#"{"scope": ""}"#, false, "*", false),
            ("permission", r#"{"permission": "a b"}"#, false, "b", true),
            // a list claim: any element, whole
            (
                "scope",
                r#"{"scope": ["read write", "x"]}"#,
                false,
                "read write",
                true,
            ),
            (
                "scope",
                r#"{"scope": ["read write", "x"]}"#,
                false,
                "write",
                false,
            ),
            // other claims are whole strings unless the provider lists them
            (
                "roles",
                r#"{"roles": "editor admin"}"#,
                false,
                "admin",
                false,
            ),
            (
                "roles",
                r#"{"roles": "editor admin"}"#,
                false,
                "editor admin",
                true,
            ),
            ("roles", r#"{"roles": "editor admin"}"#, true, "admin", true),
            (
                "roles",
                r#"{"roles": "editor admin"}"#,
                true,
                "editor admin",
                false,
            ),
            ("x.y", r#"{"x.y": "p q"}"#, true, "q", true),
            ("groups", r#"{"groups": "g1 g2"}"#, true, "g1", false),
            // nested claims are not normalized, even named scope or listed
            (
                "realm][scope",
                r#"{"realm": {"scope": "a b"}}"#,
                true,
                "a",
                false,
            ),
            (
                "realm][scope",
                r#"{"realm": {"scope": "a b"}}"#,
                true,
                "a b",
                true,
            ),
            (
                "realm][roles",
                r#"{"realm": {"roles": "a b"}}"#,
                true,
                "b",
                false,
            ),
        ];
        for (key, claims, listed, value, want) in table {
            let yaml = format!(
                "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: foo}}
spec:
  rules: [{{when: [{{key: \"request.auth.claims[{key}]\", values: [\"{value}\"]}}]}}]
"
            );
            let snap = crate::mesh::Mesh::from_yaml(&yaml).unwrap().snapshot();
            let authz = snap.authz_for_workload("foo", &Labels::new());
            let mut jwt = RequestAuth::from_claims(serde_json::from_str(claims).unwrap());
            if *listed {
                jwt.space_delimited_claims = extra.clone();
            }
            let headers = http::HeaderMap::new();
            let mut req = AuthzRequest::http(
                80,
                HttpAuthzAttrs {
                    method: "GET",
                    path: "/",
                    host: "h",
                    headers: &headers,
                },
            );
            req.request_auth = Some(&jwt);
            assert_eq!(
                authz.evaluate(&req).allowed,
                *want,
                "claims[{key}] = {value:?} over {claims} (listed: {listed})"
            );
        }
    }

    #[test]
    fn patterns() {
        let table = [
            ("*", "x", true),
            ("*", "", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("abc*", "abcd", true),
            ("*bcd", "abcd", true),
            ("*bcd", "abce", false),
        ];
        for (p, s, want) in table {
            assert_eq!(Pat::new(p).matches(s), want, "{p} {s}");
        }
        assert!(Pat::new("Example.COM").matches_ci("example.com"));
        assert!(Pat::new("*.EXAMPLE.com").matches_ci("a.example.com"));
    }

    #[test]
    fn path_templates() {
        let table = [
            ("/foo/{*}", "/foo/bar", true),
            ("/foo/{*}", "/foo/bar/baz", false),
            ("/foo/{**}", "/foo/bar/baz", true),
            ("/foo/{*}/baz", "/foo/x/baz", true),
            ("/api/*", "/api/v1", true),
            ("/foo/{**}", "/foo/", true),
            ("/foo/{*}", "/foo/", false),
            ("/foo/{*}", "/bar/x", false),
            ("/{*}/b", "/a/b", true),
            // `{**}` followed by literals (Envoy's `/foo/**/bar`): any run of segments
            ("/foo/{**}/bar", "/foo/x/bar", true),
            ("/foo/{**}/bar", "/foo/x/y/z/bar", true),
            ("/foo/{**}/bar", "/foo//bar", true),
            ("/foo/{**}/bar", "/foo/bar", false),
            ("/foo/{**}/bar", "/foo/x/bar/y", false),
            ("/foo/{**}/bar", "/foo/x/ybar", false),
            ("/{**}/admin", "/a/b/admin", true),
            ("/api/{**}/", "/api/v1/", true),
            ("/api/{**}/", "/api/v1", false),
        ];
        for (p, s, want) in table {
            assert_eq!(PathPat::new(p).unwrap().matches(s), want, "{p} {s}");
        }
        // istiod's CheckValidPathTemplate
        for bad in [
            "/foo/{**}/{*}",
            "/foo/{**}/bar/{**}",
            "/foo/{x}",
            "/foo/{**}buzz/bar",
            "/foo/{*}/bar/*",
            "/{*}/foo/?abc",
            "/{*}/a b",
            "/a//{*}",
        ] {
            assert!(PathPat::new(bad).is_err(), "{bad}");
        }
        assert!(PathPat::new("/{*}/foo/").is_ok());
    }

    #[test]
    fn attributes() {
        for ok in [
            "request.headers[x-token]",
            "source.ip",
            "remote.ip",
            "source.namespace",
            "source.principal",
            "request.auth.principal",
            "request.auth.audiences",
            "request.auth.presenter",
            "request.auth.claims[groups]",
            "request.auth.claims[a][b]",
            "destination.ip",
            "destination.port",
            "connection.sni",
            "experimental.envoy.filters.network.mysql_proxy[db.table]",
        ] {
            assert!(Attr::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "destination.namespace",
            "destination.labels[app]",
            "request.headers[]",
            "request.headers",
            "foo.bar",
            "request.auth.claims[]",
        ] {
            assert!(Attr::parse(bad).is_err(), "{bad}");
        }
    }

    /// Istio's BASE normalization (Envoy `normalize_path`, no slash merging, escaped
    /// slashes kept): the first rows are istio/istio's own path normalization test table.
    #[test]
    fn normalization() {
        let table = [
            ("/", "/"),
            ("/app/", "/app/"),
            ("/app/../admin", "/admin"),
            ("/app", "/app"),
            ("/app//", "/app//"),
            ("/app/%2f", "/app/%2f"),
            ("/app%2f/", "/app%2f/"),
            ("/xyz%30..//abc", "/xyz0..//abc"),
            ("/app/%2E./admin", "/admin"),
            ("/app\\admin", "/app/admin"),
            ("/app/\\/\\/\\admin", "/app//////admin"),
            ("/%2Fapp%5cadmin%5Cabc", "/%2Fapp%5cadmin%5Cabc"),
            (
                "/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc",
                "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
            ),
            ("/app//../admin", "/app/admin"),
            ("/app//../../admin", "/admin"),
            // the query goes
            ("/a/b?x=1", "/a/b"),
            ("/a/../b?x=/../c", "/b"),
            // unreserved characters decoded (either hex case), once
            ("/%61dmin", "/admin"),
            ("/%41%5a%5F%2d%7e%39", "/AZ_-~9"),
            ("/%252e%252e/x", "/%252e%252e/x"),
            // other escapes kept as sent
            ("/a%20b%3F%3f", "/a%20b%3F%3f"),
            // dot segments, never above the root
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../x", "/x"),
            ("/a/..b/.c", "/a/..b/.c"),
            ("/a/%2e/b", "/a/b"),
            ("/a%2e%2e/b", "/a../b"),
            ("/a/%2e%2E/b", "/b"),
            // stray `%` kept; a new escape after it is not created
            ("/100%/x", "/100%/x"),
            ("/%zz", "/%zz"),
            ("/%%30%30", "/%2500"),
            ("/%%300", "/%2500"),
            ("/%3%30", "/%2530"),
            ("/%g%30", "/%g0"),
            // bytes a path may not hold are escaped
            ("/a b", "/a%20b"),
            ("/a\"b{c}|^`<>#", "/a%22b%7Bc%7D%7C%5E%60%3C%3E%23"),
            ("/é", "/%C3%A9"),
            // not a path: left alone
            ("*", "*"),
        ];
        for (p, want) in table {
            assert_eq!(normalize_path(p), Ok(Cow::Borrowed(want)), "{p}");
        }
        for p in ["/a%00", "/%00/x", "/a\0b", "/x/%00?q"] {
            assert_eq!(normalize_path(p), Err(InvalidPath), "{p}");
        }
    }

    /// Every `pathNormalization` mode over istio/istio's path normalization test table
    /// (the rows of its BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES cases), plus edges:
    /// Envoy unescapes `%2F`/`%5C`, then normalizes, then merges slashes.
    #[test]
    fn normalization_per_mode() {
        use PathNormalization::{Base, DecodeAndMergeSlashes as Decode, MergeSlashes as Merge};
        // (path, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)
        let table: &[(&str, &str, &str, &str, &str)] = &[
            ("/", "/", "/", "/", "/"),
            ("/app/", "/app/", "/app/", "/app/", "/app/"),
            (
                "/app/../admin",
                "/app/../admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            ("/app//", "/app//", "/app//", "/app/", "/app/"),
            ("/app/%2f", "/app/%2f", "/app/%2f", "/app/%2f", "/app/"),
            ("/app%2f/", "/app%2f/", "/app%2f/", "/app%2f/", "/app/"),
            (
                "/xyz%30..//abc",
                "/xyz%30..//abc",
                "/xyz0..//abc",
                "/xyz0../abc",
                "/xyz0../abc",
            ),
            (
                "/app/%2E./admin",
                "/app/%2E./admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            (
                "/app\\admin",
                "/app\\admin",
                "/app/admin",
                "/app/admin",
                "/app/admin",
            ),
            (
                "/app/\\/\\/\\admin",
                "/app/\\/\\/\\admin",
                "/app//////admin",
                "/app/admin",
                "/app/admin",
            ),
            (
                "/%2Fapp%5cadmin%5Cabc",
                "/%2Fapp%5cadmin%5Cabc",
                "/%2Fapp%5cadmin%5Cabc",
                "/%2Fapp%5cadmin%5Cabc",
                "/app/admin/abc",
            ),
            (
                "/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc",
                "/%5Capp%2f%5c%2F%2e%2e%2fadmin%5c\\abc",
                "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
                "/%5Capp%2f%5c%2F..%2fadmin%5c/abc",
                "/app/admin/abc",
            ),
            // normalized before merged: the `..` removes the empty segment
            (
                "/app//../admin",
                "/app//../admin",
                "/app/admin",
                "/app/admin",
                "/app/admin",
            ),
            (
                "/app//../../admin",
                "/app//../../admin",
                "/admin",
                "/admin",
                "/admin",
            ),
            (
                "/%c0%2e%c0%2e/admin",
                "/%c0%2e%c0%2e/admin",
                "/%c0.%c0./admin",
                "/%c0.%c0./admin",
                "/%c0.%c0./admin",
            ),
            (
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0%2fadmin",
                "/%c0/admin",
            ),
            // istio's "not normalized" rows stay as they are in every mode
            (
                "/%252e%252e%252fadmin",
                "/%252e%252e%252fadmin",
                "/%252e%252e%252fadmin",
                "/%252e%252e%252fadmin",
                "/%252e%252e%252fadmin",
            ),
            (
                "/..;/admin",
                "/..;/admin",
                "/..;/admin",
                "/..;/admin",
                "/..;/admin",
            ),
            (
                "/admin;a=b/xyz",
                "/admin;a=b/xyz",
                "/admin;a=b/xyz",
                "/admin;a=b/xyz",
                "/admin;a=b/xyz",
            ),
            // edges
            ("//admin", "//admin", "//admin", "/admin", "/admin"),
            (
                "///a//b///?q=//",
                "///a//b///",
                "///a//b///",
                "/a/b/",
                "/a/b/",
            ),
            ("//", "//", "//", "//", "//"), // Envoy: leading `/` + nothing + trailing `/`
            ("/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a%2F%2Fb", "/a/b"),
            (
                "/a%2F..%2Fb",
                "/a%2F..%2Fb",
                "/a%2F..%2Fb",
                "/a%2F..%2Fb",
                "/b",
            ),
            ("/a%252Fb", "/a%252Fb", "/a%252Fb", "/a%252Fb", "/a%252Fb"), // decoded once
            ("/a%2", "/a%2", "/a%2", "/a%2", "/a%2"),
            ("*", "*", "*", "*", "*"),
        ];
        for &(p, none, base, merge, decode) in table {
            for (mode, want) in [
                (PathNormalization::None, none),
                (Base, base),
                (Merge, merge),
                (Decode, decode),
            ] {
                assert_eq!(
                    mode.normalize(p).as_deref(),
                    Ok(want),
                    "{} {p}",
                    mode.as_str()
                );
            }
        }
        for p in ["/a%00", "/%2F%00", "//x%00"] {
            for mode in [Base, Merge, Decode] {
                assert_eq!(mode.normalize(p), Err(InvalidPath), "{} {p}", mode.as_str());
            }
            assert!(PathNormalization::None.normalize(p).is_ok(), "{p}");
        }
        // ordinary paths are borrowed in every mode
        for mode in [PathNormalization::None, Base, Merge, Decode] {
            for p in ["/", "/status/200", "/a.b/c.d?x=//y", "/app/"] {
                assert!(
                    matches!(mode.normalize(p), Ok(Cow::Borrowed(_))),
                    "{} {p}",
                    mode.as_str()
                );
            }
        }
        assert!(matches!(
            Base.normalize("/a//b"),
            Ok(Cow::Borrowed("/a//b"))
        ));
    }

    /// Ordinary paths are borrowed, not copied.
    #[test]
    fn normalization_borrows_clean_paths() {
        for p in [
            "/",
            "/status/200",
            "/a.b/c.d?x=../y",
            "/api/v1/items/42/",
            "//a//b",
            "/a%2Fb",
        ] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    /// Policies of `yaml` for a workload in `ns` of a mesh with these options.
    fn workload(yaml: &str, ns: &str, opts: &MeshOptions) -> WorkloadAuthz {
        let loaded = crate::load::load_str(yaml, "ap.yaml");
        assert!(
            loaded.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            loaded.diagnostics
        );
        AuthzPolicies::build(&loaded.objects, opts).for_workload(ns, &Labels::new())
    }

    fn allowed_from(w: &WorkloadAuthz, principal: &str) -> bool {
        let headers = http::HeaderMap::new();
        let attrs = HttpAuthzAttrs {
            method: "GET",
            path: "/",
            host: "httpbin.foo:8000",
            headers: &headers,
        };
        let req = AuthzRequest {
            principal: Some(principal),
            ..AuthzRequest::http(8000, attrs)
        };
        w.evaluate(&req).allowed
    }

    /// istiod's trust domain migration (`trustdomain.Bundle`): `cluster.local`, the trust
    /// domain and its aliases all stand for each other in principals; other trust domains
    /// and `*` stay as written.
    #[test]
    fn principals_follow_the_trust_domain_and_its_aliases() {
        let deny = |principal: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: d, namespace: foo}}\nspec:\n  action: DENY\n  rules: [{{from: [{{source: {{principals: [\"{principal}\"]}}}}]}}]\n"
            )
        };
        let corp = MeshOptions {
            trust_domain: "corp.example".into(),
            ..MeshOptions::default()
        };
        let w = workload(&deny("cluster.local/ns/default/sa/evil"), "foo", &corp);
        assert!(!allowed_from(&w, "corp.example/ns/default/sa/evil"));
        assert!(allowed_from(&w, "corp.example/ns/default/sa/good"));
        // a trust domain the mesh does not know is matched as written
        let w = workload(&deny("other.td/ns/default/sa/evil"), "foo", &corp);
        assert!(allowed_from(&w, "corp.example/ns/default/sa/evil"));
        assert!(!allowed_from(&w, "other.td/ns/default/sa/evil"));

        let migrating = MeshOptions {
            trust_domain: "new.td".into(),
            trust_domain_aliases: vec!["old.td".into()],
            ..MeshOptions::default()
        };
        for written in ["old.td", "new.td", "cluster.local"] {
            let w = workload(
                &deny(&format!("{written}/ns/prod/sa/batch")),
                "foo",
                &migrating,
            );
            for peer in ["new.td", "old.td"] {
                assert!(
                    !allowed_from(&w, &format!("{peer}/ns/prod/sa/batch")),
                    "{written} {peer}"
                );
            }
            assert!(allowed_from(&w, "third.td/ns/prod/sa/batch"), "{written}");
        }
        // `*` as the trust domain is not rewritten; nor is a value that is no principal
        let w = workload(&deny("*/ns/prod/sa/batch"), "foo", &migrating);
        assert!(!allowed_from(&w, "third.td/ns/prod/sa/batch"));
        // an ALLOW written with `cluster.local` lets the caller of the real trust domain in
        let allow = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n  - when: [{key: source.principal, values: [cluster.local/ns/default/sa/curl]}]\n  - from: [{source: {trustDomains: [old.td]}}]\n    to: [{operation: {paths: [/td]}}]\n";
        let w = workload(allow, "foo", &corp);
        assert!(allowed_from(&w, "corp.example/ns/default/sa/sleep"));
        assert!(allowed_from(&w, "corp.example/ns/default/sa/curl"));
        assert!(!allowed_from(&w, "corp.example/ns/default/sa/other"));
        // `trustDomains: [old.td]` stands for the whole bundle
        let w = workload(allow, "foo", &migrating);
        let headers = http::HeaderMap::new();
        let at_td = |principal| {
            let attrs = HttpAuthzAttrs {
                method: "GET",
                path: "/td",
                host: "h",
                headers: &headers,
            };
            w.evaluate(&AuthzRequest {
                principal: Some(principal),
                ..AuthzRequest::http(80, attrs)
            })
            .allowed
        };
        assert!(at_td("new.td/ns/x/sa/y"));
        assert!(at_td("old.td/ns/x/sa/y"));
        assert!(!at_td("third.td/ns/x/sa/y"));
    }

    /// `source.serviceAccount` as istiod compiles it: a bare name is in the policy's
    /// namespace; `*` is refused (the policy fails closed).
    #[test]
    fn source_service_account_condition() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules: [{when: [{key: source.serviceAccount, values: [sleep, bar/curl]}]}]\n",
            "foo",
            &MeshOptions::default(),
        );
        assert!(!allowed_from(&w, "cluster.local/ns/foo/sa/sleep"));
        assert!(allowed_from(&w, "cluster.local/ns/bar/sa/sleep"));
        assert!(!allowed_from(&w, "cluster.local/ns/bar/sa/curl"));
        assert!(allowed_from(&w, "cluster.local/ns/foo/sa/curl"));
        let loaded = crate::load::load_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules: [{when: [{key: source.serviceAccount, values: ['*']}]}]\n",
            "ap.yaml",
        );
        let w = AuthzPolicies::build(&loaded.objects, &MeshOptions::default())
            .for_workload("foo", &Labels::new());
        assert!(
            !allowed_from(&w, "cluster.local/ns/foo/sa/sleep"),
            "fails closed"
        );
    }

    /// `namespaces` values are Istio's `.*/ns/<value>/.*` with every `*` a wildcard.
    #[test]
    fn namespace_wildcards_anywhere() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {namespaces: [team-*-prod]}}]\n  - when: [{key: source.namespace, values: ['*dev*']}]\n",
            "foo",
            &MeshOptions::default(),
        );
        assert!(!allowed_from(&w, "cluster.local/ns/team-a-prod/sa/x"));
        assert!(!allowed_from(&w, "cluster.local/ns/my-dev-1/sa/x"));
        assert!(allowed_from(&w, "cluster.local/ns/team-a-stage/sa/x"));
        assert!(allowed_from(&w, "cluster.local/ns/prod/sa/x"));
        assert!(glob("*/ns/foo/*", "td/ns/foo/sa/bar"));
        assert!(!glob("*/ns/foo/*", "td/ns/foobar/sa/bar"));
        assert!(glob("a*b*c", "abxbc"));
        assert!(!glob("a*b*c", "abxbcd"));
        assert!(glob("**", ""));
    }

    /// istiod writes a `namespaces` value into its regex unescaped: `.` is any character
    /// and `prod?` an optional `d`, in `namespaces`, `notNamespaces` and `source.namespace`
    /// alike.
    #[test]
    fn namespace_values_are_regexes_as_istiod_writes_them() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {namespaces: [te.t, 'prod?']}}]\n  - when: [{key: source.namespace, values: ['(ops|dev)']}]\n",
            "foo",
            &MeshOptions::default(),
        );
        for denied in ["test", "te.t", "pro", "prod", "ops", "dev"] {
            let p = format!("cluster.local/ns/{denied}/sa/x");
            assert!(!allowed_from(&w, &p), "{p}");
        }
        for allowed in ["tet", "prodd", "opsdev"] {
            let p = format!("cluster.local/ns/{allowed}/sa/x");
            assert!(allowed_from(&w, &p), "{p}");
        }
        // notNamespaces: an ALLOW for everyone outside `te.t` leaves `test` out too
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules:\n  - from: [{source: {notNamespaces: [te.t]}}]\n",
            "foo",
            &MeshOptions::default(),
        );
        assert!(!allowed_from(&w, "cluster.local/ns/test/sa/x"));
        assert!(allowed_from(&w, "cluster.local/ns/prod/sa/x"));
        // a value Envoy cannot compile fails the policy closed, even one the wrapping
        // would balance
        for bad in ["'a(b'", "'a)|(b'"] {
            let w = workload(
                &format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a, namespace: foo}}\nspec:\n  rules:\n  - from: [{{source: {{namespaces: [{bad}]}}}}]\n  - {{}}\n"),
                "foo",
                &MeshOptions::default(),
            );
            assert!(!allowed_from(&w, "cluster.local/ns/a/sa/x"), "{bad}");
        }
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules:\n  - from: [{source: {namespaces: ['a(b']}}]\n  - {}\n",
            "foo",
            &MeshOptions::default(),
        );
        assert!(!allowed_from(&w, "cluster.local/ns/prod/sa/x"));
    }

    /// `request.headers` values are matched on the header's bytes, UTF-8 included (a value
    /// `HeaderValue::to_str` refuses is not "absent").
    #[test]
    fn header_conditions_match_non_ascii_values() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - when: [{key: 'request.headers[x-user]', values: ['admin*']}]\n  - when: [{key: 'request.headers[x-team]', values: ['*é']}]\n",
            "foo",
            &MeshOptions::default(),
        );
        let decide = |name: &str, value: &[u8]| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            let attrs = HttpAuthzAttrs {
                method: "GET",
                path: "/",
                host: "httpbin",
                headers: &headers,
            };
            w.evaluate(&AuthzRequest::http(8000, attrs)).allowed
        };
        assert!(!decide("x-user", b"admin"));
        assert!(!decide("x-user", "adminé".as_bytes()));
        assert!(!decide("x-user", b"admin\xff"));
        assert!(!decide("x-team", "équipe é".as_bytes()));
        assert!(decide("x-user", "usér".as_bytes()));
    }

    /// An IPv4 peer of a dual-stack socket (`::ffff:a.b.c.d`) is matched as IPv4.
    #[test]
    fn ipv4_mapped_peers_match_ipv4_blocks() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: foo}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]\n  - when: [{key: destination.ip, values: [192.168.0.0/16]}]\n",
            "foo",
            &MeshOptions::default(),
        );
        let decide = |src: &str, dst: &str| {
            let req = AuthzRequest {
                source_ip: Some(src.parse().unwrap()),
                destination_ip: Some(dst.parse().unwrap()),
                ..AuthzRequest::tcp(80)
            };
            w.evaluate(&req).allowed
        };
        assert!(!decide("::ffff:10.1.2.3", "::1"));
        assert!(!decide("10.1.2.3", "::1"));
        assert!(!decide("::1", "::ffff:192.168.1.1"));
        assert!(decide("::ffff:11.1.2.3", "::ffff:127.0.0.1"));
    }

    /// `request.headers[:authority]` (and `host`), `[:method]`, `[:path]` read the
    /// pseudo-headers, as Envoy's header matcher does.
    #[test]
    fn pseudo_header_conditions() {
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules:\n  - when:\n    - {key: 'request.headers[:authority]', values: ['httpbin*']}\n    - {key: 'request.headers[:method]', values: [GET]}\n    - {key: 'request.headers[:path]', values: ['/get*']}\n",
            "foo",
            &MeshOptions::default(),
        );
        let headers = http::HeaderMap::new();
        let decide = |host, method, path| {
            let attrs = HttpAuthzAttrs {
                method,
                path,
                host,
                headers: &headers,
            };
            w.evaluate(&AuthzRequest::http(8000, attrs)).allowed
        };
        assert!(decide("httpbin.foo:8000", "GET", "/get?x=1"));
        assert!(!decide("other", "GET", "/get"));
        assert!(!decide("httpbin", "POST", "/get"));
        assert!(!decide("httpbin", "GET", "/ip"));
    }

    /// `request.headers[:path]` sees the query (Envoy's `:path`), `paths` do not;
    /// `[:scheme]` reads the request's scheme; any other `:name` compiles and is absent.
    #[test]
    fn pseudo_headers_path_query_scheme_and_unknown() {
        let policy = |when: &str| {
            format!("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: d, namespace: foo}}\nspec:\n  action: DENY\n  rules:\n  - when: [{when}]\n")
        };
        let headers = http::HeaderMap::new();
        let decide = |w: &WorkloadAuthz, path: &str, scheme: Option<&str>| {
            let attrs = HttpAuthzAttrs {
                method: "GET",
                path,
                host: "httpbin",
                headers: &headers,
            };
            let req = AuthzRequest {
                scheme,
                ..AuthzRequest::http(8000, attrs)
            };
            let d = w.evaluate(&req);
            assert!(
                !matches!(d.reason, AuthzReason::Uncompilable(_)),
                "compiles: {:?}",
                d.reason
            );
            d.allowed
        };
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            // (condition, path, scheme, allowed)
            (
                "{key: 'request.headers[:path]', values: ['*debug=1']}",
                "/x?debug=1",
                None,
                false,
            ),
            (
                "{key: 'request.headers[:path]', values: ['*debug=1']}",
                "/x",
                None,
                true,
            ),
            (
                "{key: 'request.headers[:path]', notValues: ['/public']}",
                "/public?a=1",
                None,
                false,
            ),
            (
                "{key: 'request.headers[:path]', notValues: ['/public']}",
                "/public",
                None,
                true,
            ),
            (
                "{key: 'request.headers[:scheme]', values: [ftp]}",
                "/x",
                Some("http"),
                true,
            ),
            (
                "{key: 'request.headers[:scheme]', values: [http]}",
                "/x",
                Some("http"),
                false,
            ),
            (
                "{key: 'request.headers[:scheme]', values: [http]}",
                "/x",
                Some("https"),
                true,
            ),
            (
                "{key: 'request.headers[:SCHEME]', notValues: [https]}",
                "/x",
                Some("http"),
                false,
            ),
            (
                "{key: 'request.headers[:protocol]', values: ['*']}",
                "/x",
                Some("http"),
                true,
            ),
            (
                "{key: 'request.headers[:protocol]', notValues: [websocket]}",
                "/x",
                Some("http"),
                false,
            ),
        ];
        for (when, path, scheme, want) in cases {
            let w = workload(&policy(when), "foo", &MeshOptions::default());
            assert_eq!(decide(&w, path, *scheme), *want, "{when} {path} {scheme:?}");
        }
        // `paths` still ignore the query
        let w = workload(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec:\n  rules: [{to: [{operation: {paths: [/public]}}]}]\n",
            "foo",
            &MeshOptions::default(),
        );
        assert!(decide(&w, "/public?a=1", None));
        // a name Envoy refuses is still a compile error (fail closed)
        assert!(Attr::parse("request.headers[:]").is_err());
        assert!(Attr::parse("request.headers[:a b]").is_err());
        assert!(Attr::parse("request.headers[a b]").is_err());
    }

    /// A dry-run policy is never enforced, even one that does not compile.
    #[test]
    fn uncompilable_dry_run_policy_is_not_enforced() {
        let loaded = crate::load::load_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: d\n  namespace: foo\n  annotations: {istio.io/dry-run: 'true'}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: ['/{**}/{*}']}}]}]\n",
            "ap.yaml",
        );
        let w = AuthzPolicies::build(&loaded.objects, &MeshOptions::default())
            .for_workload("foo", &Labels::new());
        assert!(allowed_from(&w, "cluster.local/ns/foo/sa/x"));
    }
}
