//! Per-object validation: the checks istiod's validating webhook makes, with Istio's own
//! messages (spec §§1-9, §12), plus a few lint hints.
//!
//! Errors are what istiod rejects; warnings are what istiod returns as API warnings (or what
//! `istioctl analyze` flags for a single object, such as unreachable rules); `Info` is a lint
//! that Istio accepts silently, or what `istioctl analyze` reports as info (a match a
//! previous rule covers, IST0131). Webhook findings use code `IST0106` (errors) and `IST0133`
//! (the webhook's warnings), unreachable/ineffective
//! rules `IST0130`/`IST0131`, deprecated fields istioctl's deprecation analyzer names
//! `IST0002`, lints `IM0100` (info, or a warning when the config cannot work
//! as written), things inmesh does not apply as Envoy would `IM0013`.
//!
//! Deliberate differences from Istio, all stricter:
//! - nothing is pruned: unknown fields were already rejected by the loader;
//! - regexes are checked with Rust's `regex` crate, which accepts nearly the same syntax as
//!   RE2 (both reject look-around and back-references).
//!
//! # Examples
//!
//! ```
//! use mesh_core::diag::{codes, Severity};
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route: [{destination: {host: reviews}}]
//!     timeout: 500us
//!   - route: [{destination: {host: ratings}}]
//! ", "vs.yaml");
//! assert!(loaded.diagnostics.is_empty()); // the schema is fine
//! let found = mesh_core::validate::validate_all(&loaded.objects);
//! let summary: Vec<(Severity, &str, &str)> =
//!     found.iter().map(|d| (d.severity, d.code, d.path.as_str())).collect();
//! assert_eq!(
//!     summary,
//!     [
//!         // istiod rejects a sub-millisecond timeout
//!         (Severity::Error, codes::VALIDATION, "spec.http[0].timeout"),
//!         // the first rule has no match, so the second never applies
//!         (Severity::Warning, codes::VS_UNREACHABLE_RULE, "spec.http[1]"),
//!     ]
//! );
//! ```

use crate::diag::{codes, Diagnostic, Severity};
use crate::model::{ConfigObject, Kind, Spec};

pub(crate) mod common;
mod destination_rule;
mod gateway;
pub use gateway::is_envoy_cipher_suite;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use common::{validate_duration, validate_wildcard_domain};

/// Settings that change what istiod accepts.
///
/// # Examples
///
/// ```
/// use mesh_core::validate::{validate_all_with, ValidateOptions};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: mysql}
/// spec:
///   hosts: [mysql.example.com]
///   ports: [{number: 3306, name: tcp, protocol: TCP}]
///   resolution: DNS
/// ", "se.yaml");
/// // with istiod's default IP auto-allocation this is fine...
/// assert!(validate_all_with(&loaded.objects, &ValidateOptions::default()).is_empty());
/// // ...without it a TCP ServiceEntry needs `addresses`
/// let opts = ValidateOptions { ip_autoallocate: false, ..ValidateOptions::default() };
/// let found = validate_all_with(&loaded.objects, &opts);
/// assert_eq!(found[0].path, "spec.ports[0].protocol");
/// assert!(found[0].message.starts_with("addresses are required"));
/// assert!(!found[0].is_error()); // istiod warns
/// ```
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The mesh root namespace (`istio-system`).
    pub root_namespace: String,
    /// istiod's `PILOT_ENABLE_IP_AUTOALLOCATE` (default true): when off, ServiceEntries with
    /// TCP ports and no addresses get a warning.
    pub ip_autoallocate: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            root_namespace: "istio-system".to_owned(),
            ip_autoallocate: true,
        }
    }
}

/// Validates one object with default options.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::Severity;
/// use mesh_core::validate::validate_object;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets: [{name: v1, labels: {version: v1}}, {name: v1, labels: {version: v2}}]
/// ", "dr.yaml");
/// let found = validate_object(&loaded.objects[0]);
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].severity, Severity::Error);
/// assert_eq!(found[0].path, "spec.subsets[1].name");
/// assert_eq!(found[0].message, "duplicate subset names: v1");
/// ```
pub fn validate_object(obj: &ConfigObject) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    validate_into(obj, &ValidateOptions::default(), &mut out);
    out
}

/// Validates every object with default options.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route: [{destination: {host: reviews}}]
///   - match: [{uri: {prefix: /v2}}]
///     route: [{destination: {host: reviews}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: Public}
/// spec:
///   selector: {istio: ingressgateway}
///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
/// ", "config.yaml");
/// let found: Vec<String> = mesh_core::validate::validate_all(&loaded.objects)
///     .iter()
///     .map(|d| format!("{} {}", d.code, d.path))
///     .collect();
/// assert_eq!(
///     found,
///     [
///         "IST0130 spec.http[1].match[0]", // unreachable: the first route matches everything
///         "IST0106 metadata.name",         // names are lower case (DNS-1123)
///     ]
/// );
/// ```
pub fn validate_all(objects: &[ConfigObject]) -> Vec<Diagnostic> {
    validate_all_with(objects, &ValidateOptions::default())
}

/// Validates every object.
///
/// # Examples
///
/// ```
/// use mesh_core::validate::{validate_all_with, ValidateOptions};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: httpbin, namespace: mesh-root}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   mtls: {mode: STRICT}
/// ", "pa.yaml");
/// // a mesh whose root namespace is not istio-system
/// let opts = ValidateOptions { root_namespace: "mesh-root".into(), ..ValidateOptions::default() };
/// let found = validate_all_with(&loaded.objects, &opts);
/// assert_eq!(found[0].code, mesh_core::diag::codes::INEFFECTIVE_POLICY);
/// assert!(validate_all_with(&loaded.objects, &ValidateOptions::default()).is_empty());
/// ```
pub fn validate_all_with(objects: &[ConfigObject], opts: &ValidateOptions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for o in objects {
        validate_into(o, opts, &mut out);
    }
    out
}

/// Validates one object, appending to `out`.
///
/// # Examples
///
/// ```
/// use mesh_core::validate::{validate_into, ValidateOptions};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: deny-all-the-things, namespace: foo}
/// spec: {action: DENY}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-nothing, namespace: foo}
/// spec: {}
/// ", "ap.yaml");
/// let opts = ValidateOptions::default();
/// let mut out = Vec::new();
/// for o in &loaded.objects {
///     validate_into(o, &opts, &mut out);
/// }
/// assert_eq!(out.len(), 1);
/// assert_eq!(out[0].path, "spec");
/// assert!(out[0].message.starts_with(
///     "invalid policy deny-all-the-things.foo: DENY action without `rules` is meaningless"
/// ));
/// ```
pub fn validate_into(obj: &ConfigObject, opts: &ValidateOptions, out: &mut Vec<Diagnostic>) {
    let mut cx = Ctx { obj, opts, out };
    validate_metadata(&mut cx);
    match &obj.spec {
        Spec::VirtualService(vs) => virtual_service::validate(&mut cx, vs),
        Spec::DestinationRule(dr) => destination_rule::validate(&mut cx, dr),
        Spec::ServiceEntry(se) => service_entry::validate(&mut cx, se),
        Spec::WorkloadEntry(we) => service_entry::validate_workload_entry(&mut cx, we),
        Spec::Gateway(gw) => gateway::validate(&mut cx, gw),
        Spec::Sidecar(sc) => sidecar::validate(&mut cx, sc),
        Spec::PeerAuthentication(pa) => security::validate_peer_authentication(&mut cx, pa),
        Spec::AuthorizationPolicy(ap) => security::validate_authorization_policy(&mut cx, ap),
        Spec::RequestAuthentication(ra) => security::validate_request_authentication(&mut cx, ra),
        Spec::Service(_)
        | Spec::ServiceAccount
        | Spec::Workload(_)
        | Spec::Secret(_)
        | Spec::Namespace => {}
    }
}

/// istiod's `constants.AlwaysReject`: the webhook rejects any object carrying it.
const ALWAYS_REJECT: &str = "internal.istio.io/webhook-always-reject";

/// istiod's `constants.InternalParentNames`: the parents of generated config.
const INTERNAL_PARENT_NAMES: &str = "internal.istio.io/parents";

fn validate_metadata(cx: &mut Ctx<'_>) {
    let obj = cx.obj;
    if !obj.kind.is_istio() {
        return;
    }
    let name = &obj.metadata.name;
    if obj.kind == Kind::Gateway && !name.is_empty() && !common::is_dns1123_label(name) {
        cx.error("metadata.name", format!("invalid gateway name: {name:?}"));
    } else if !name.is_empty() && !common::is_dns1123_subdomain(name) {
        cx.error(
            "metadata.name",
            format!("invalid name {name:?}: must be a DNS-1123 subdomain (lower case letters, digits, '-' and '.')"),
        );
    }
    // the API server's ObjectMeta checks: a namespace is a (lower case) DNS-1123 label, label
    // keys are qualified names, values at most 63 characters of [-A-Za-z0-9_.]
    let ns = &obj.metadata.namespace;
    if !common::is_k8s_dns1123_label(ns) {
        cx.error(
            "metadata.namespace",
            format!("invalid namespace {ns:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
        );
    }
    for (k, v) in &obj.metadata.labels {
        let p = format!("metadata.labels.{k}");
        if !common::is_label_key(k) {
            cx.error(
                &p,
                format!("metadata.labels: Invalid value: {k:?}: a label key is an optional DNS subdomain prefix and '/', then a name of at most 63 characters: alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"),
            );
        }
        if !common::is_label_value(v) {
            cx.error(
                &p,
                format!("metadata.labels: Invalid value: {v:?}: a label value must be empty or at most 63 characters: alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"),
            );
        }
    }
    // istiod's webhook refuses its internal annotations: one that exists to test the
    // webhook, and one naming the parents of config istiod generates (set by a user, it
    // escalates privileges)
    for (key, msg) in [
        (ALWAYS_REJECT, "rejecting"),
        (INTERNAL_PARENT_NAMES, "this may not be set by users"),
    ] {
        if obj.metadata.annotations.contains_key(key) {
            cx.error(
                &format!("metadata.annotations.{key}"),
                format!("{key:?} annotation found, {msg}"),
            );
        }
    }
    if obj.metadata.annotations.contains_key("istio.io/dry-run")
        && obj.kind != Kind::AuthorizationPolicy
    {
        // istiod's checkDryRunAnnotation
        cx.error(
            "metadata.annotations.istio.io/dry-run",
            format!(
                "{ns}/{} has unsupported annotation istio.io/dry-run, please remove the annotation",
                obj.metadata.name
            ),
        );
    }
}

/// `path` with its last field in snake_case (`spec.http[0].mirror_percent` for
/// `spec.http[0].mirrorPercent`), where it differs: the key as written when a field's alias
/// (`mirror_percent`, `jwks_uri`) was used, to point at its line.
fn snake_last(path: &str) -> Option<String> {
    let (head, last) = path.rsplit_once('.')?;
    if !last.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut snake = String::with_capacity(last.len() + 4);
    for c in last.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    Some(format!("{head}.{snake}"))
}

/// Validation context: the object and the output.
pub(crate) struct Ctx<'a> {
    pub(crate) obj: &'a ConfigObject,
    pub(crate) opts: &'a ValidateOptions,
    out: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        msg: String,
    ) -> &mut Diagnostic {
        let src = &self.obj.source;
        let at = src
            .locate_value(path)
            .or_else(|| src.locate_value(&snake_last(path)?))
            .unwrap_or_else(|| src.locate_nearest(path));
        self.out.push(Diagnostic::new(
            severity,
            code,
            msg,
            src.file.clone(),
            at,
            path,
        ));
        self.out.last_mut().expect("just pushed")
    }

    /// An error (istiod rejects).
    pub(crate) fn error(&mut self, path: &str, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Error, codes::VALIDATION, path, msg.into())
    }

    /// A warning (istiod accepts with a warning).
    pub(crate) fn warn(&mut self, path: &str, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, codes::SCHEMA_WARNING, path, msg.into())
    }

    /// A warning about something istiod accepts silently but that cannot work as written
    /// (code `IM0100`, not istiod's `IST0133`).
    pub(crate) fn lint_warn(&mut self, path: &str, msg: impl Into<String>) -> &mut Diagnostic {
        self.push(Severity::Warning, codes::LINT, path, msg.into())
    }

    /// A diagnostic with a specific code.
    pub(crate) fn with_code(
        &mut self,
        severity: Severity,
        code: &'static str,
        path: &str,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(severity, code, path, msg.into())
    }

    /// Reports a `Result` from a helper as an error at `path`.
    pub(crate) fn check(&mut self, path: &str, r: Result<(), String>) {
        if let Err(e) = r {
            self.error(path, e);
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.obj.metadata.namespace
    }
}

/// Sets the help of a diagnostic.
pub(crate) trait Help {
    fn help(&mut self, help: impl Into<String>);
}

impl Help for Diagnostic {
    fn help(&mut self, help: impl Into<String>) {
        self.help = Some(help.into());
    }
}
