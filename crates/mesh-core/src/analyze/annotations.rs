//! istioctl's annotation analyzer, `annotations.K8sAnalyzer` (istio/istio
//! `pkg/config/analysis/analyzers/annotations/annotations.go`).
//!
//! Istio reads dozens of `*.istio.io` annotations, each on certain kinds of object only, and
//! ignores the rest without a word: an annotation with a typo, or one written on a
//! Deployment instead of its pod template, just does nothing. istioctl checks every
//! Namespace, Service, Pod and Deployment for that; so do we, with its codes and messages
//! (`pkg/config/analysis/msg/messages.yaml`):
//!
//! | code | severity | finding |
//! | --- | --- | --- |
//! | `IST0108` | warning | UnknownAnnotation: an annotation in Istio's namespace that is not in Istio's table |
//! | `IST0135` | info | DeprecatedAnnotation: a deprecated annotation (not `sidecar.istio.io/inject` when the object also has the `sidecar.istio.io/inject` label) |
//! | `IST0107` | warning | MisplacedAnnotation: an annotation on a kind its table entry does not list (a Deployment's own metadata is never right: pod annotations go in its template) |
//! | `IST0125` | warning | InvalidAnnotation: a value sidecar injection refuses (`inject.AnnotationValidation`), with injection's error text |
//!
//! An annotation is Istio's when the part of its key before the first `/` ends with
//! `istio.io`, or when it is `kubernetes.io/ingress.class` (which Istio documents). Only the
//! object's own `metadata.annotations` are read, not a Deployment's pod template, as
//! istioctl does. The table is istio/api's `annotation.AllResourceAnnotations()`
//! (`annotation/annotations.gen.go`); annotations that istiod and its controllers write
//! themselves (`sidecar.istio.io/status`, `gateway.istio.io/controller-version`,
//! `istio.io/rev`: istioctl's `maturity.AlwaysIgnoredAnnotations`) are not checked.
//!
//! Where we differ: findings come in key order (Go iterates the map at random), point at
//! the annotation's key, and may carry a hint; `galley.istio.io/analyze-suppress` is not
//! honoured; the `proxy.istio.io/config` check decodes and validates the ProxyConfig
//! fields its validation reads, not every field of it (see [`validate_proxy_config`]).
//!
//! # Examples
//!
//! ```
//! use mesh_core::diag::Severity;
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata:
//!   name: reviews
//!   annotations:
//!     sidecar.istio.io/proxyCPU: 500m
//! spec:
//!   selector: {matchLabels: {app: reviews}}
//!   template:
//!     metadata: {labels: {app: reviews}}
//!     spec: {containers: [{name: reviews, image: reviews}]}
//! ", "reviews.yaml");
//! let found = mesh_core::analyze::analyze(&loaded.objects);
//! let d = found.iter().find(|d| d.code == "IST0107").unwrap();
//! assert_eq!(d.severity, Severity::Warning);
//! assert_eq!(d.message, "Misplaced annotation: sidecar.istio.io/proxyCPU can only be applied to Pod");
//! assert_eq!((d.line, d.path.as_str()), (7, "metadata.annotations.sidecar.istio.io/proxyCPU"));
//! ```

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diag::{did_you_mean, Diagnostic, Severity};
use crate::model::{ConfigObject, Kind};
use crate::validate::common::{go_atoi, go_parse_uint, go_quote};

use crate::diag::codes::{
    DEPRECATED_ANNOTATION, INVALID_ANNOTATION, MISPLACED_ANNOTATION, UNKNOWN_ANNOTATION,
};

/// The sidecar injection annotation, deprecated in favour of the label of the same name.
const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// Set by istiod and its controllers, never by hand: not checked (istioctl's
/// `maturity.AlwaysIgnoredAnnotations`).
const ALWAYS_IGNORED: [&str; 3] = [
    "sidecar.istio.io/status",
    "gateway.istio.io/controller-version",
    "istio.io/rev",
];

/// The annotation findings on the Namespaces, Services, Pods and Deployments among `objs`.
pub(super) fn annotations(objs: &[&ConfigObject]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for o in objs {
        if !matches!(
            o.kind,
            Kind::Namespace | Kind::Service | Kind::Pod | Kind::Deployment
        ) {
            continue;
        }
        let kind = o.kind.as_str();
        for (key, value) in &o.metadata.annotations {
            if !is_istio_annotation(key) || ALWAYS_IGNORED.contains(&key.as_str()) {
                continue;
            }
            let Some(def) = ANNOTATIONS.iter().find(|a| a.name == key) else {
                let d = report(
                    &mut out,
                    o,
                    Severity::Warning,
                    UNKNOWN_ANNOTATION,
                    key,
                    format!("Unknown annotation: {key}"),
                );
                if let Some(near) = did_you_mean(key, ANNOTATIONS.iter().map(|a| a.name)) {
                    d.help = Some(format!("did you mean `{near}`?"));
                }
                continue;
            };
            if def.deprecated
                && !(key == SIDECAR_INJECT && o.metadata.labels.contains_key(SIDECAR_INJECT))
            {
                let extra = if key == SIDECAR_INJECT {
                    r#" in favor of the "sidecar.istio.io/inject" label"#
                } else {
                    ""
                };
                report(
                    &mut out,
                    o,
                    Severity::Info,
                    DEPRECATED_ANNOTATION,
                    key,
                    format!(
                        "Annotation {} has been deprecated{extra} and may not work in future Istio versions.",
                        go_quote(key)
                    ),
                );
            }
            if def.resources.contains(&"Any") {
                continue;
            }
            if !def.resources.contains(&kind) {
                let d = report(
                    &mut out,
                    o,
                    Severity::Warning,
                    MISPLACED_ANNOTATION,
                    key,
                    format!(
                        "Misplaced annotation: {key} can only be applied to {}",
                        def.resources.join(", ")
                    ),
                );
                if o.kind == Kind::Deployment && def.resources.contains(&"Pod") {
                    d.help = Some(
                        "annotations for the pods go in the pod template: `spec.template.metadata.annotations`"
                            .to_owned(),
                    );
                }
                continue;
            }
            if let Some(validate) = validator(key)
                && let Err(problem) = validate(value)
            {
                report(
                    &mut out,
                    o,
                    Severity::Warning,
                    INVALID_ANNOTATION,
                    key,
                    format!("Invalid annotation {key}: {problem}"),
                );
            }
        }
    }
    out
}

/// True for keys in Istio's namespace: the part before the first `/` ends with `istio.io`
/// (so `fooistio.io/x` is one too, as in istioctl), and `kubernetes.io/ingress.class`.
fn is_istio_annotation(key: &str) -> bool {
    key == "kubernetes.io/ingress.class"
        || key
            .split('/')
            .next()
            .is_some_and(|p| p.ends_with("istio.io"))
}

/// Adds a finding about annotation `key` of `o`, located at the key (where istioctl's
/// `util.AddLineNumber` points: a block scalar's value starts a line further down).
fn report<'a>(
    out: &'a mut Vec<Diagnostic>,
    o: &ConfigObject,
    severity: Severity,
    code: &'static str,
    key: &str,
    message: String,
) -> &'a mut Diagnostic {
    let path = format!("metadata.annotations.{key}");
    let at = o
        .source
        .locate(&path)
        .unwrap_or_else(|| o.source.locate_nearest(&path));
    out.push(Diagnostic::new(
        severity,
        code,
        message,
        o.source.file.clone(),
        at,
        path,
    ));
    out.last_mut().expect("just pushed")
}

/// One entry of Istio's annotation table.
#[derive(Debug)]
struct Annotation {
    /// The key.
    name: &'static str,
    /// An alpha-phase feature (istioctl's AlphaAnalyzer, IST0136, reports those; it is not
    /// among the default analyzers, and neither do we run it).
    #[allow(dead_code)]
    alpha: bool,
    /// Deprecated: IST0135.
    deprecated: bool,
    /// The kinds it applies to, as istio/api's `ResourceTypes` names them (`Any` for all).
    resources: &'static [&'static str],
}

/// An annotation's feature status in istio/api.
#[derive(Debug, Clone, Copy)]
enum Status {
    /// Alpha.
    Alpha,
    /// Beta.
    Beta,
    /// Stable.
    Stable,
}

/// A table row.
const fn row(
    name: &'static str,
    status: Status,
    deprecated: bool,
    resources: &'static [&'static str],
) -> Annotation {
    Annotation {
        name,
        alpha: matches!(status, Status::Alpha),
        deprecated,
        resources,
    }
}

use Status::{Alpha, Beta, Stable};

/// istio/api `annotation.AllResourceAnnotations()`, in its order (the version with
/// `ambient.istio.io/redirection`, `sidecar.istio.io/nativeSidecar` and
/// `networking.istio.io/traffic-distribution`; `alpha.istio.io/identity` and
/// `sidecar.istio.io/controlPlaneAuthPolicy` are gone from it, so they are unknown).
#[rustfmt::skip]
static ANNOTATIONS: [Annotation; 62] = [
    // row(name, feature status, deprecated, resources)
    row("alpha.istio.io/canonical-serviceaccounts",               Alpha,  true,  &["Service"]),
    row("alpha.istio.io/kubernetes-serviceaccounts",              Alpha,  true,  &["Service"]),
    row("ambient.istio.io/bypass-inbound-capture",                Alpha,  false, &["Pod"]),
    row("ambient.istio.io/redirection",                           Beta,   false, &["Pod"]),
    row("ambient.istio.io/waypoint-inbound-binding",              Alpha,  false, &["GatewayClass", "Gateway"]),
    row("galley.istio.io/analyze-suppress",                       Alpha,  false, &["Any"]),
    row("gateway.istio.io/controller-version",                    Alpha,  false, &["Any"]),
    row("gateway.istio.io/name-override",                         Alpha,  false, &["Gateway"]),
    row("gateway.istio.io/service-account",                       Alpha,  false, &["Gateway"]),
    row("inject.istio.io/templates",                              Alpha,  false, &["Pod"]),
    row("istio.io/autoRegistrationGroup",                         Alpha,  false, &["WorkloadEntry"]),
    row("istio.io/connectedAt",                                   Alpha,  false, &["WorkloadEntry"]),
    row("istio.io/disconnectedAt",                                Alpha,  false, &["WorkloadEntry"]),
    row("istio.io/dry-run",                                       Alpha,  false, &["AuthorizationPolicy"]),
    row("istio.io/rev",                                           Alpha,  false, &["Pod"]),
    row("istio.io/workloadController",                            Alpha,  false, &["WorkloadEntry"]),
    row("kubernetes.io/ingress.class",                            Stable, false, &["Ingress"]),
    row("networking.istio.io/exportTo",                           Alpha,  false, &["Service"]),
    row("networking.istio.io/service-type",                       Alpha,  false, &["Gateway"]),
    row("networking.istio.io/traffic-distribution",               Alpha,  false, &["Service", "ServiceEntry"]),
    row("prometheus.istio.io/merge-metrics",                      Alpha,  false, &["Pod"]),
    row("proxy.istio.io/config",                                  Beta,   false, &["Pod"]),
    row("proxy.istio.io/overrides",                               Alpha,  false, &["Pod"]),
    row("readiness.status.sidecar.istio.io/applicationPorts",     Alpha,  false, &["Pod"]),
    row("readiness.status.sidecar.istio.io/failureThreshold",     Alpha,  false, &["Pod"]),
    row("readiness.status.sidecar.istio.io/initialDelaySeconds",  Alpha,  false, &["Pod"]),
    row("readiness.status.sidecar.istio.io/periodSeconds",        Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/agentLogLevel",                         Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/bootstrapOverride",                     Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/componentLogLevel",                     Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/discoveryAddress",                      Alpha,  true,  &["Pod"]),
    row("sidecar.istio.io/enableCoreDump",                        Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/extraStatTags",                         Alpha,  true,  &["Pod"]),
    row("sidecar.istio.io/inject",                                Beta,   true,  &["Pod"]),
    row("sidecar.istio.io/interceptionMode",                      Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/logLevel",                              Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/nativeSidecar",                         Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyCPU",                              Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyCPULimit",                         Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyImage",                            Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyImageType",                        Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyMemory",                           Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/proxyMemoryLimit",                      Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/rewriteAppHTTPProbers",                 Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/statsHistogramBuckets",                 Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/statsInclusionPrefixes",                Alpha,  true,  &["Pod"]),
    row("sidecar.istio.io/statsInclusionRegexps",                 Alpha,  true,  &["Pod"]),
    row("sidecar.istio.io/statsInclusionSuffixes",                Alpha,  true,  &["Pod"]),
    row("sidecar.istio.io/status",                                Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/userVolume",                            Alpha,  false, &["Pod"]),
    row("sidecar.istio.io/userVolumeMount",                       Alpha,  false, &["Pod"]),
    row("status.sidecar.istio.io/port",                           Alpha,  false, &["Pod"]),
    row("topology.istio.io/controlPlaneClusters",                 Alpha,  false, &["Namespace"]),
    row("traffic.istio.io/nodeSelector",                          Stable, false, &["Service"]),
    row("traffic.sidecar.istio.io/excludeInboundPorts",           Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/excludeInterfaces",             Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/excludeOutboundIPRanges",       Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/excludeOutboundPorts",          Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/includeInboundPorts",           Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/includeOutboundIPRanges",       Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/includeOutboundPorts",          Alpha,  false, &["Pod"]),
    row("traffic.sidecar.istio.io/kubevirtInterfaces",            Alpha,  false, &["Pod"]),
];

// ---------------------------------------------------------------------------------------
// Values: istio/istio `pkg/kube/inject/validate.go` (`AnnotationValidation`)
// ---------------------------------------------------------------------------------------

/// A value check: `Err` holds injection's error text.
type Validator = fn(&str) -> Result<(), String>;

/// The check sidecar injection makes of annotation `key`'s value, if it makes one.
fn validator(key: &str) -> Option<Validator> {
    Some(match key {
        "sidecar.istio.io/interceptionMode" => validate_interception_mode,
        "status.sidecar.istio.io/port" => validate_status_port,
        "readiness.status.sidecar.istio.io/initialDelaySeconds"
        | "readiness.status.sidecar.istio.io/periodSeconds"
        | "readiness.status.sidecar.istio.io/failureThreshold" => validate_uint32,
        "traffic.sidecar.istio.io/includeOutboundIPRanges" => validate_include_ip_ranges,
        "traffic.sidecar.istio.io/excludeOutboundIPRanges" => validate_exclude_ip_ranges,
        "traffic.sidecar.istio.io/includeInboundPorts" => validate_include_inbound_ports,
        "traffic.sidecar.istio.io/excludeInboundPorts" => validate_exclude_inbound_ports,
        "traffic.sidecar.istio.io/excludeOutboundPorts" => validate_exclude_outbound_ports,
        "prometheus.istio.io/merge-metrics" => validate_bool,
        "proxy.istio.io/config" => validate_proxy_config,
        _ => return None,
    })
}

/// `validateInterceptionMode`: `REDIRECT`, `TPROXY` or `NONE`, exactly.
fn validate_interception_mode(mode: &str) -> Result<(), String> {
    match mode {
        "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
        _ => Err(format!(
            "interceptionMode invalid, use REDIRECT,TPROXY,NONE: {mode}"
        )),
    }
}

/// `validateStatusPort`: one port, 0 to 65535 (the text names `excludeInboundPorts`, a
/// copy-paste slip in Istio kept here).
fn validate_status_port(port: &str) -> Result<(), String> {
    parse_port(port)
        .map(drop)
        .map_err(|e| format!("excludeInboundPorts invalid: {e}"))
}

/// `validateUInt32`: `strconv.ParseUint(value, 10, 32)`, untrimmed.
fn validate_uint32(value: &str) -> Result<(), String> {
    go_parse_uint(value, 32).map(drop)
}

/// `validateBool`: `strconv.ParseBool`.
fn validate_bool(value: &str) -> Result<(), String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false"
        | "False" => Ok(()),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(value)
        )),
    }
}

/// `ValidateIncludeIPRanges`: `*`, or a comma-separated list of CIDRs (empty is fine).
fn validate_include_ip_ranges(ranges: &str) -> Result<(), String> {
    if ranges == "*" {
        return Ok(());
    }
    validate_cidr_list(ranges).map_err(|e| format!("includeIPRanges invalid: {e}"))
}

/// `ValidateExcludeIPRanges`: a comma-separated list of CIDRs (empty is fine, `*` is not).
fn validate_exclude_ip_ranges(ranges: &str) -> Result<(), String> {
    validate_cidr_list(ranges).map_err(|e| format!("excludeIPRanges invalid: {e}"))
}

/// `ValidateIncludeInboundPorts`: `*`, or a list of ports.
fn validate_include_inbound_ports(ports: &str) -> Result<(), String> {
    if ports == "*" {
        return Ok(());
    }
    validate_port_list("includeInboundPorts", ports)
}

/// `ValidateExcludeInboundPorts`: a list of ports.
fn validate_exclude_inbound_ports(ports: &str) -> Result<(), String> {
    validate_port_list("excludeInboundPorts", ports)
}

/// `ValidateExcludeOutboundPorts`: a list of ports.
fn validate_exclude_outbound_ports(ports: &str) -> Result<(), String> {
    validate_port_list("excludeOutboundPorts", ports)
}

/// `validateCIDRList`: items split on `,` (no trimming), each a `netip.ParsePrefix` CIDR.
fn validate_cidr_list(cidrs: &str) -> Result<(), String> {
    if cidrs.is_empty() {
        return Ok(());
    }
    for cidr in cidrs.split(',') {
        go_parse_prefix(cidr).map_err(|e| format!("failed parsing cidr '{cidr}': {e}"))?;
    }
    Ok(())
}

/// `validatePortList`: `parsePorts`, its error prefixed by the parameter's name.
fn validate_port_list(name: &str, ports: &str) -> Result<(), String> {
    parse_ports(ports).map_err(|e| format!("{name} invalid: {e}"))
}

/// `parsePorts`: the trimmed string split on `,`, each item a port; empty is no ports. An
/// item's error is wrapped a second time, as in Istio.
fn parse_ports(ports: &str) -> Result<(), String> {
    let ports = ports.trim();
    if ports.is_empty() {
        return Ok(());
    }
    for p in ports.split(',') {
        parse_port(p).map_err(|e| format!("failed parsing port '{p}': {e}"))?;
    }
    Ok(())
}

/// `parsePort`: the trimmed item as `strconv.ParseUint(s, 10, 16)`.
fn parse_port(port: &str) -> Result<u64, String> {
    go_parse_uint(port.trim(), 16).map_err(|e| format!("failed parsing port '{port}': {e}"))
}

// ---------------------------------------------------------------------------------------
// Go's parsers, with their error texts
// ---------------------------------------------------------------------------------------

/// An IP address as Go's `netip.ParseAddr` reads it: whether it is IPv6, and whether it has
/// a zone (`fe80::1%eth0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GoAddr {
    /// IPv6 (IPv4-mapped ones included).
    v6: bool,
    /// Has an IPv6 zone.
    zone: bool,
}

/// Go's `netip.ParseAddr` (Go 1.23), with its error text.
fn go_parse_addr(s: &str) -> Result<GoAddr, String> {
    for b in s.bytes() {
        match b {
            b'.' => {
                return parse_ipv4_fields(s, 0, s.len()).map(|()| GoAddr {
                    v6: false,
                    zone: false,
                })
            }
            b':' => return parse_ipv6(s),
            b'%' => return Err(addr_error(s, "missing IPv6 address", None)),
            _ => {}
        }
    }
    Err(addr_error(s, "unable to parse IP", None))
}

/// Go's `parseAddrError` text.
fn addr_error(input: &str, msg: &str, at: Option<&str>) -> String {
    match at {
        Some(at) if !at.is_empty() => format!(
            "ParseAddr({}): {msg} (at {})",
            go_quote(input),
            go_quote(at)
        ),
        _ => format!("ParseAddr({}): {msg}", go_quote(input)),
    }
}

/// Go's `parseIPv4Fields`: the dotted quad in `input[off..end]`.
fn parse_ipv4_fields(input: &str, off: usize, end: usize) -> Result<(), String> {
    let s = &input.as_bytes()[off..end];
    let (mut val, mut pos, mut digits) = (0u32, 0, 0);
    for i in 0..s.len() {
        match s[i] {
            d @ b'0'..=b'9' => {
                if digits == 1 && val == 0 {
                    return Err(addr_error(
                        input,
                        "IPv4 field has octet with leading zero",
                        None,
                    ));
                }
                val = val * 10 + u32::from(d - b'0');
                digits += 1;
                if val > 255 {
                    return Err(addr_error(input, "IPv4 field has value >255", None));
                }
            }
            b'.' => {
                if i == 0 || i == s.len() - 1 || s[i - 1] == b'.' {
                    return Err(addr_error(
                        input,
                        "IPv4 field must have at least one digit",
                        Some(&input[off + i..end]),
                    ));
                }
                if pos == 3 {
                    return Err(addr_error(input, "IPv4 address too long", None));
                }
                pos += 1;
                val = 0;
                digits = 0;
            }
            _ => {
                return Err(addr_error(
                    input,
                    "unexpected character",
                    Some(&input[off + i..end]),
                ))
            }
        }
    }
    if pos < 3 {
        return Err(addr_error(input, "IPv4 address too short", None));
    }
    Ok(())
}

/// Go's `parseIPv6`.
fn parse_ipv6(input: &str) -> Result<GoAddr, String> {
    let err = |msg: &str, at: Option<&str>| Err(addr_error(input, msg, at));
    let (mut s, zone) = match input.find('%') {
        Some(i) if i + 1 == input.len() => return err("zone must be a non-empty string", None),
        Some(i) => (&input[..i], Some(&input[i + 1..])),
        None => (input, None),
    };
    let ok = Ok(GoAddr {
        v6: true,
        zone: zone.is_some(),
    });
    let mut ellipsis: Option<usize> = None;
    if s.starts_with("::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return ok;
        }
    }
    let mut i = 0;
    while i < 16 {
        let b = s.as_bytes();
        let mut off = 0;
        let mut acc: u32 = 0;
        while off < b.len() {
            let Some(d) = (b[off] as char).to_digit(16) else {
                break;
            };
            acc = (acc << 4) + d;
            if off > 3 {
                return err("each group must have 4 or less digits", Some(s));
            }
            if acc > 0xffff {
                return err("IPv6 field has value >=2^16", Some(s));
            }
            off += 1;
        }
        if off == 0 {
            return err(
                "each colon-separated field must have at least one digit",
                Some(s),
            );
        }
        if off < b.len() && b[off] == b'.' {
            if ellipsis.is_none() && i != 12 {
                return err(
                    "embedded IPv4 address must replace the final 2 fields of the address",
                    Some(s),
                );
            }
            if i + 4 > 16 {
                return err(
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                    Some(s),
                );
            }
            let end = input.len() - zone.map_or(0, |z| z.len() + 1);
            parse_ipv4_fields(input, end - s.len(), end)?;
            s = "";
            i += 4;
            break;
        }
        i += 2;
        s = &s[off..];
        if s.is_empty() {
            break;
        }
        if !s.starts_with(':') {
            return err("unexpected character, want colon", Some(s));
        } else if s.len() == 1 {
            return err("colon must be followed by more characters", Some(s));
        }
        s = &s[1..];
        if s.starts_with(':') {
            if ellipsis.is_some() {
                return err("multiple :: in address", Some(s));
            }
            ellipsis = Some(i);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return err("trailing garbage after address", Some(s));
    }
    if i < 16 {
        if ellipsis.is_none() {
            return err("address string too short", None);
        }
    } else if ellipsis.is_some() {
        return err("the :: must expand to at least one field of zeros", None);
    }
    ok
}

/// Go's `netip.ParsePrefix`, with its error text.
fn go_parse_prefix(s: &str) -> Result<(), String> {
    let fail = |msg: &str| Err(format!("netip.ParsePrefix({}): {msg}", go_quote(s)));
    let Some(i) = s.rfind('/') else {
        return fail("no '/'");
    };
    let addr = match go_parse_addr(&s[..i]) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if addr.zone {
        return fail("IPv6 zones cannot be present in a prefix");
    }
    let bits = &s[i + 1..];
    let bad_bits = || fail(&format!("bad bits after slash: {}", go_quote(bits)));
    if bits.len() > 1 && !matches!(bits.as_bytes()[0], b'1'..=b'9') {
        return bad_bits();
    }
    let Ok(n) = go_atoi(bits) else {
        return bad_bits();
    };
    let max = if addr.v6 { 128 } else { 32 };
    if !(0..=max).contains(&n) {
        return fail("prefix length out of range");
    }
    Ok(())
}

/// Go's `net.SplitHostPort`, with its `AddrError` text.
fn go_split_host_port(hostport: &str) -> Result<(&str, &str), String> {
    let addr_err = |why: &str| {
        Err(if hostport.is_empty() {
            why.to_owned()
        } else {
            format!("address {hostport}: {why}")
        })
    };
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    let Some(i) = hostport.rfind(':') else {
        return addr_err(MISSING_PORT);
    };
    let (host, j, k);
    if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return addr_err("missing ']' in address");
        };
        if end + 1 == hostport.len() {
            return addr_err(MISSING_PORT);
        } else if end + 1 != i {
            if hostport.as_bytes()[end + 1] == b':' {
                return addr_err(TOO_MANY_COLONS);
            }
            return addr_err(MISSING_PORT);
        }
        host = &hostport[1..end];
        (j, k) = (1, end + 1);
    } else {
        host = &hostport[..i];
        if host.contains(':') {
            return addr_err(TOO_MANY_COLONS);
        }
        (j, k) = (0, 0);
    }
    if hostport[j..].contains('[') {
        return addr_err("unexpected '[' in address");
    }
    if hostport[k..].contains(']') {
        return addr_err("unexpected ']' in address");
    }
    Ok((host, &hostport[i + 1..]))
}

/// The `quote` of Go's `time` package: non-ASCII and control bytes as `\x..`.
fn time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error text.
fn go_parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c @ (b'-' | b'+')) = s.as_bytes().first().copied() {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // [0-9]*
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: u64 = 0;
        for &c in &b[..int_len] {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(c - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
        }
        let pre = int_len > 0;
        s = &s[int_len..];
        // (\.[0-9]*)?
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.starts_with('.') {
            s = &s[1..];
            let frac_len = s.bytes().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for c in s[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(c - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &s[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .bytes()
            .take_while(|&c| c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                time_quote(orig)
            ));
        }
        let u = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match u {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    time_quote(u),
                    time_quote(orig)
                ))
            }
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((d as i64).wrapping_neg());
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

// ---------------------------------------------------------------------------------------
// proxy.istio.io/config: `validateProxyConfig`
// ---------------------------------------------------------------------------------------

/// `validateProxyConfig`: the value, YAML or JSON, applied over `mesh.DefaultProxyConfig()`
/// (`protomarshal.ApplyYAML`: sigs.k8s.io/yaml, then jsonpb, unknown fields ignored), then
/// `agent.ValidateMeshConfigProxyConfig`, whose errors come as go-multierror prints them.
///
/// We decode the fields that validation reads, and the scalar, list and map fields people
/// set (`concurrency`, `proxyMetadata`, `holdApplicationUntilProxyStarts`, ...), with
/// jsonpb's errors; other message fields are only checked to be objects. YAML syntax errors
/// carry our parser's words, not go-yaml's.
fn validate_proxy_config(value: &str) -> Result<(), String> {
    let convert = |e: String| format!("failed to convert to apply proxy config: {e}");
    let json = yaml_to_json(value).map_err(convert)?;
    let mut config = ProxyConfig::default();
    if !matches!(json, Json::Null) {
        let fields = decode_message(&json, PROXY_CONFIG).map_err(convert)?;
        config.apply(fields);
    }
    let errs = config.validate();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(multierror(&errs))
    }
}

/// go-multierror's `ListFormatFunc`.
fn multierror(errs: &[String]) -> String {
    if let [one] = errs {
        return format!("1 error occurred:\n\t* {one}\n\n");
    }
    let points: Vec<String> = errs.iter().map(|e| format!("* {e}")).collect();
    format!(
        "{} errors occurred:\n\t{}\n\n",
        errs.len(),
        points.join("\n\t")
    )
}

/// A JSON value, as sigs.k8s.io/yaml turns YAML into JSON.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, as JSON text.
    Num(String),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object; a key written twice keeps its last value.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The JSON type, as Go's `json.UnmarshalTypeError` names it.
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::Num(_) => "number",
            Json::Str(_) => "string",
            Json::Arr(_) => "array",
            Json::Obj(_) => "object",
        }
    }

    /// Number of values in the tree (alias expansion is bounded by it).
    fn size(&self) -> usize {
        match self {
            Json::Arr(items) => 1 + items.iter().map(Json::size).sum::<usize>(),
            Json::Obj(entries) => 1 + entries.iter().map(|(_, v)| v.size()).sum::<usize>(),
            _ => 1,
        }
    }
}

/// At most this many values, aliases expanded, in an annotation's YAML.
const MAX_YAML_VALUES: usize = 100_000;

/// The first YAML document of `text` as JSON, plain scalars resolved as go-yaml v2 (YAML
/// 1.1) resolves them: `yes`/`on` are booleans, `0x1f` and `1_000` numbers.
fn yaml_to_json(text: &str) -> Result<Json, String> {
    /// A collection being read.
    enum Frame {
        /// A sequence, its anchor and items.
        Seq(usize, Vec<Json>),
        /// A mapping, its anchor, entries and pending key.
        Map(usize, Vec<(String, Json)>, Option<String>),
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Json> = HashMap::new();
    let mut root: Option<Json> = None;
    let mut values = 0usize;
    while let Some(next) = parser.next_event() {
        let (ev, _) = next.map_err(|e| {
            format!(
                "error converting YAML to JSON: yaml: line {}: {}",
                e.marker().line(),
                e.info()
            )
        })?;
        let (value, anchor) = match ev {
            Event::DocumentEnd if root.is_some() => break,
            Event::Alias(id) => match anchors.get(&id) {
                Some(v) => (v.clone(), 0),
                None => return Err("error converting YAML to JSON: yaml: unknown anchor".into()),
            },
            Event::Scalar(v, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let json = if style == ScalarStyle::Plain && !tagged_str {
                    resolve_plain(&v)
                } else {
                    Json::Str(v.into_owned())
                };
                (json, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(anchor, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(anchor, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(anchor, items)) => (Json::Arr(items), anchor),
                Some(Frame::Map(anchor, entries, _)) => (Json::Obj(entries), anchor),
                None => continue,
            },
            _ => continue,
        };
        values = values.saturating_add(value.size());
        if values > MAX_YAML_VALUES || stack.len() > 64 {
            return Err("error converting YAML to JSON: the value is too large".into());
        }
        if anchor != 0 {
            anchors.insert(anchor, value.clone());
        }
        match stack.last_mut() {
            None => root = Some(value),
            Some(Frame::Seq(_, items)) => items.push(value),
            Some(Frame::Map(_, entries, key)) => match key.take() {
                Some(k) => entries.push((k, value)),
                None => {
                    *key = Some(match value {
                        Json::Str(s) | Json::Num(s) => s,
                        Json::Bool(b) => b.to_string(),
                        Json::Null => "null".to_owned(),
                        Json::Arr(_) | Json::Obj(_) => {
                            return Err("error converting YAML to JSON: unsupported map key".into())
                        }
                    })
                }
            },
        }
    }
    Ok(root.unwrap_or(Json::Null))
}

/// A plain scalar as go-yaml v2 resolves it.
fn resolve_plain(s: &str) -> Json {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Json::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Json::Bool(false)
        }
        _ => {}
    }
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return Json::Str(s.to_owned());
    }
    let plain = s.replace('_', "");
    if let Some(n) = go_parse_int_base0(&plain) {
        return Json::Num(n.to_string());
    }
    if is_yaml_float(&plain)
        && let Ok(f) = plain.parse::<f64>()
        && f.is_finite()
    {
        return Json::Num(f.to_string());
    }
    Json::Str(s.to_owned())
}

/// Go's `strconv.ParseInt(s, 0, 64)`: a sign, then `0x`, `0o`, `0b`, a leading `0`
/// (octal) or decimal digits.
fn go_parse_int_base0(s: &str) -> Option<i128> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i128::from_str_radix(digits, radix).ok()?;
    let n = if neg { -n } else { n };
    (i128::from(i64::MIN)..=i128::from(u64::MAX))
        .contains(&n)
        .then_some(n)
}

/// go-yaml v2's float syntax: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    mantissa_ok && exp.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)))
}

/// The type of a protobuf field, as jsonpb reads it from JSON.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// `string`.
    Str,
    /// `bool` or `google.protobuf.BoolValue`.
    Bool,
    /// `int32` or `google.protobuf.Int32Value`.
    Int32,
    /// `uint32`.
    Uint32,
    /// `double`.
    Double,
    /// `google.protobuf.Duration`.
    Duration,
    /// An enum: its full name and values.
    Enum(&'static str, &'static [(&'static str, i32)]),
    /// `repeated string`.
    StrList,
    /// `map<string, string>`.
    StrMap,
    /// A message whose fields we read.
    Msg(&'static [Field]),
    /// A message whose fields we do not read (it must still be an object).
    Opaque,
}

/// A message field: its proto name (jsonpb also takes the lowerCamelCase JSON name) and
/// type, in the order the message declares them (jsonpb reads them in that order, so the
/// first bad one is the error).
#[derive(Debug, Clone, Copy)]
struct Field(&'static str, Ty);

/// A decoded field value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// An integer (also an enum's number).
    Int(i64),
    /// A duration, in nanoseconds.
    Dur(i64),
    /// A list of strings.
    List(Vec<String>),
    /// A message read field by field.
    Msg(Vec<(&'static str, Val)>),
    /// A value we do not keep.
    Other,
}

/// `istio.mesh.v1alpha1.AuthenticationPolicy`.
const AUTH_POLICY: &[(&str, i32)] = &[("NONE", 0), ("MUTUAL_TLS", 1), ("INHERIT", 1000)];

/// `istio.networking.v1alpha3.ClientTLSSettings` (for `tracing.tlsSettings`).
const CLIENT_TLS: &[Field] = &[
    Field(
        "mode",
        Ty::Enum(
            "istio.networking.v1alpha3.ClientTLSSettings.TLSmode",
            &[
                ("DISABLE", 0),
                ("SIMPLE", 1),
                ("MUTUAL", 2),
                ("ISTIO_MUTUAL", 3),
            ],
        ),
    ),
    Field("client_certificate", Ty::Str),
    Field("private_key", Ty::Str),
    Field("ca_certificates", Ty::Str),
    Field("credential_name", Ty::Str),
    Field("subject_alt_names", Ty::StrList),
    Field("sni", Ty::Str),
    Field("insecure_skip_verify", Ty::Bool),
    Field("ca_crl", Ty::Str),
];

/// `istio.mesh.v1alpha1.Tracing`.
const TRACING: &[Field] = &[
    Field("zipkin", Ty::Msg(&[Field("address", Ty::Str)])),
    Field(
        "lightstep",
        Ty::Msg(&[Field("address", Ty::Str), Field("access_token", Ty::Str)]),
    ),
    Field("datadog", Ty::Msg(&[Field("address", Ty::Str)])),
    Field("stackdriver", Ty::Opaque),
    Field("open_census_agent", Ty::Opaque),
    Field("custom_tags", Ty::Opaque),
    Field("max_path_tag_length", Ty::Uint32),
    Field("sampling", Ty::Double),
    Field("tls_settings", Ty::Msg(CLIENT_TLS)),
];

/// `istio.mesh.v1alpha1.RemoteService`.
const REMOTE_SERVICE: &[Field] = &[
    Field("address", Ty::Str),
    Field("tls_settings", Ty::Msg(CLIENT_TLS)),
    Field("tcp_keepalive", Ty::Opaque),
];

/// A private key provider's configuration (`poll_delay`).
const POLL_DELAY: &[Field] = &[Field("poll_delay", Ty::Duration)];

/// `istio.mesh.v1alpha1.ProxyConfig`, in declaration order.
const PROXY_CONFIG: &[Field] = &[
    Field("config_path", Ty::Str),
    Field("binary_path", Ty::Str),
    Field("service_cluster", Ty::Str),
    Field(
        "tracing_service_name",
        Ty::Enum(
            "istio.mesh.v1alpha1.ProxyConfig.TracingServiceName",
            &[
                ("APP_LABEL_AND_NAMESPACE", 0),
                ("CANONICAL_NAME_ONLY", 1),
                ("CANONICAL_NAME_AND_NAMESPACE", 2),
            ],
        ),
    ),
    Field("drain_duration", Ty::Duration),
    Field("parent_shutdown_duration", Ty::Duration),
    Field("discovery_address", Ty::Str),
    Field("discovery_refresh_delay", Ty::Duration),
    Field("zipkin_address", Ty::Str),
    Field("statsd_udp_address", Ty::Str),
    Field("envoy_metrics_service_address", Ty::Str),
    Field("proxy_admin_port", Ty::Int32),
    Field("availability_zone", Ty::Str),
    Field(
        "control_plane_auth_policy",
        Ty::Enum("istio.mesh.v1alpha1.AuthenticationPolicy", AUTH_POLICY),
    ),
    Field("custom_config_file", Ty::Str),
    Field("stat_name_length", Ty::Int32),
    Field("concurrency", Ty::Int32),
    Field("proxy_bootstrap_template_path", Ty::Str),
    Field(
        "interception_mode",
        Ty::Enum(
            "istio.mesh.v1alpha1.ProxyConfig.InboundInterceptionMode",
            &[("REDIRECT", 0), ("TPROXY", 1), ("NONE", 2)],
        ),
    ),
    Field("tracing", Ty::Msg(TRACING)),
    Field("sds", Ty::Opaque),
    Field("envoy_access_log_service", Ty::Msg(REMOTE_SERVICE)),
    Field("envoy_metrics_service", Ty::Msg(REMOTE_SERVICE)),
    Field("proxy_metadata", Ty::StrMap),
    Field("runtime_values", Ty::StrMap),
    Field("status_port", Ty::Int32),
    Field("extra_stat_tags", Ty::StrList),
    Field("gateway_topology", Ty::Opaque),
    Field("termination_drain_duration", Ty::Duration),
    Field("mesh_id", Ty::Str),
    Field("readiness_probe", Ty::Opaque),
    Field("proxy_stats_matcher", Ty::Opaque),
    Field("hold_application_until_proxy_starts", Ty::Bool),
    Field("ca_certificates_pem", Ty::StrList),
    Field("image", Ty::Opaque),
    Field(
        "private_key_provider",
        Ty::Msg(&[
            Field("cryptomb", Ty::Msg(POLL_DELAY)),
            Field("qat", Ty::Msg(POLL_DELAY)),
        ]),
    ),
    Field("proxy_headers", Ty::Opaque),
];

/// protoc's JSON name of a field: lowerCamelCase.
fn json_name(proto: &str) -> String {
    let mut out = String::with_capacity(proto.len());
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `json.UnmarshalTypeError` text.
fn type_error(value: &str, go_type: &str) -> String {
    format!("json: cannot unmarshal {value} into Go value of type {go_type}")
}

/// jsonpb reading an object into a message: the fields of `fields` that are present and not
/// null, in declaration order; the JSON name wins over the proto name; unknown keys ignored.
fn decode_message(json: &Json, fields: &[Field]) -> Result<Vec<(&'static str, Val)>, String> {
    let Json::Obj(entries) = json else {
        return Err(type_error(json.kind(), "map[string]json.RawMessage"));
    };
    let find = |name: &str| {
        entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    };
    let mut out = Vec::new();
    for &Field(name, ty) in fields {
        let Some(raw) = find(&json_name(name)).or_else(|| find(name)) else {
            continue;
        };
        if *raw == Json::Null {
            continue;
        }
        out.push((name, decode(raw, ty)?));
    }
    Ok(out)
}

/// jsonpb reading one field's value.
fn decode(json: &Json, ty: Ty) -> Result<Val, String> {
    match ty {
        Ty::Str => decode_string(json).map(Val::Str),
        Ty::Bool => match json {
            Json::Bool(b) => Ok(Val::Bool(*b)),
            other => Err(type_error(other.kind(), "bool")),
        },
        Ty::Int32 => decode_number(json, "int32", i32::MIN.into(), i32::MAX.into()).map(Val::Int),
        Ty::Uint32 => decode_number(json, "uint32", 0, u32::MAX.into()).map(Val::Int),
        Ty::Double => decode_double(json).map(|()| Val::Other),
        Ty::Duration => {
            let s = decode_string(json)?;
            go_parse_duration(&s)
                .map(Val::Dur)
                .map_err(|e| format!("bad Duration: {e}"))
        }
        Ty::Enum(full_name, values) => match json {
            Json::Str(s) => values
                .iter()
                .find(|(n, _)| n == s)
                .map(|&(_, v)| Val::Int(v.into()))
                .ok_or_else(|| {
                    format!(
                        "unknown value {} for enum {full_name}",
                        go_quote(&format!("\"{s}\""))
                    )
                }),
            other => decode_number(
                other,
                "protoreflect.EnumNumber",
                i32::MIN.into(),
                i32::MAX.into(),
            )
            .map(Val::Int),
        },
        Ty::StrList => match json {
            Json::Arr(items) => items
                .iter()
                .map(|i| match i {
                    Json::Null => Ok(String::new()),
                    other => decode_string(other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Val::List),
            other => Err(type_error(other.kind(), "[]json.RawMessage")),
        },
        Ty::StrMap => match json {
            Json::Obj(entries) => {
                for (_, v) in entries {
                    if *v != Json::Null {
                        decode_string(v)?;
                    }
                }
                Ok(Val::Other)
            }
            other => Err(type_error(other.kind(), "map[string]json.RawMessage")),
        },
        Ty::Msg(fields) => decode_message(json, fields).map(Val::Msg),
        Ty::Opaque => decode_message(json, &[]).map(|_| Val::Other),
    }
}

/// A JSON string into a Go `string`.
fn decode_string(json: &Json) -> Result<String, String> {
    match json {
        Json::Str(s) => Ok(s.clone()),
        Json::Null => Ok(String::new()),
        other => Err(type_error(other.kind(), "string")),
    }
}

/// jsonpb's integers: the JSON text with its quotes trimmed (so `"15000"` is 15000), read
/// by Go's `json.Unmarshal` into `go_type`.
fn decode_number(json: &Json, go_type: &str, min: i128, max: i128) -> Result<i64, String> {
    let text = match json {
        Json::Num(t) => t.as_str(),
        Json::Str(s) => s.as_str(),
        other => return Err(type_error(other.kind(), go_type)),
    };
    let text = json_literal(text, go_type)?;
    match text.parse::<i128>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n as i64),
        _ => Err(type_error(&format!("number {text}"), go_type)),
    }
}

/// jsonpb's `double`: a number, or a string holding one.
fn decode_double(json: &Json) -> Result<(), String> {
    match json {
        Json::Num(_) => Ok(()),
        Json::Str(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => Ok(()),
        Json::Str(s) => json_literal(s, "float64").map(drop),
        other => Err(type_error(other.kind(), "float64")),
    }
}

/// Text that jsonpb hands to Go's `json.Unmarshal` as a number: its number literal, or
/// Go's error for what else it is.
fn json_literal<'a>(text: &'a str, go_type: &str) -> Result<&'a str, String> {
    let t = text.trim_matches([' ', '\t', '\n', '\r']);
    let len = json_number_len(t);
    if len > 0 && len == t.len() {
        return Ok(t);
    }
    let invalid = |c: char, what: &str| {
        let shown = match c {
            '\'' => "'\\''".to_owned(),
            '"' => "'\"'".to_owned(),
            c => format!("'{c}'"),
        };
        Err(format!("invalid character {shown} {what}"))
    };
    if len > 0 {
        return invalid(
            t[len..].chars().next().unwrap_or(' '),
            "after top-level value",
        );
    }
    match t {
        "" => Err("unexpected end of JSON input".to_owned()),
        "true" | "false" => Err(type_error("bool", go_type)),
        _ if t.starts_with('"') => Err(type_error("string", go_type)),
        _ => invalid(
            t.chars().next().unwrap_or(' '),
            "looking for beginning of value",
        ),
    }
}

/// Length of the JSON number at the start of `s` (0 if none).
fn json_number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return 0,
    }
    if int_start == i {
        return 0;
    }
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// Which of the `cluster_name` oneof is set.
#[derive(Debug, Clone, PartialEq)]
enum ClusterName {
    /// `serviceCluster`.
    ServiceCluster(String),
    /// `tracingServiceName`.
    TracingServiceName,
}

/// The `tracer` oneof of `Tracing`, with the fields validation reads.
#[derive(Debug, Clone, PartialEq)]
enum Tracer {
    /// `zipkin.address`.
    Zipkin(String),
    /// `lightstep.address`, `lightstep.accessToken`.
    Lightstep(String, String),
    /// `datadog.address`.
    Datadog(String),
    /// Another tracer.
    Other,
}

/// `ClientTLSSettings`, the fields `ValidateTLS` reads.
#[derive(Debug, Clone, Default, PartialEq)]
struct ClientTls {
    /// `mode` (1 SIMPLE, 2 MUTUAL).
    mode: i64,
    /// `clientCertificate`.
    client_certificate: String,
    /// `privateKey`.
    private_key: String,
    /// `caCertificates`.
    ca_certificates: String,
    /// `credentialName`.
    credential_name: String,
    /// `subjectAltNames` is set (non-empty).
    subject_alt_names: bool,
    /// `insecureSkipVerify`.
    insecure_skip_verify: bool,
    /// `caCrl`.
    ca_crl: String,
}

/// The `provider` oneof of `PrivateKeyProvider`: each provider's `pollDelay`.
#[derive(Debug, Clone, PartialEq)]
enum KeyProvider {
    /// No provider.
    None,
    /// `cryptomb`.
    CryptoMb(Option<i64>),
    /// `qat`.
    Qat(Option<i64>),
}

/// The ProxyConfig fields `ValidateMeshConfigProxyConfig` reads.
#[derive(Debug, Clone, PartialEq)]
struct ProxyConfig {
    /// `configPath`.
    config_path: String,
    /// `binaryPath`.
    binary_path: String,
    /// `serviceCluster` / `tracingServiceName`.
    cluster_name: ClusterName,
    /// `drainDuration`, in nanoseconds.
    drain_duration: i64,
    /// `discoveryAddress`.
    discovery_address: String,
    /// `tracing`: its tracer and `tlsSettings`, when set.
    tracing: Option<(Option<Tracer>, Option<ClientTls>)>,
    /// `statsdUdpAddress`.
    statsd_udp_address: String,
    /// `envoyMetricsServiceAddress`.
    envoy_metrics_service_address: String,
    /// `envoyMetricsService.address`.
    envoy_metrics_service: String,
    /// `envoyAccessLogService.address`.
    envoy_access_log_service: String,
    /// `proxyAdminPort`.
    proxy_admin_port: i64,
    /// `controlPlaneAuthPolicy`.
    control_plane_auth_policy: i64,
    /// `statusPort`.
    status_port: i64,
    /// `privateKeyProvider`, when set.
    private_key_provider: Option<KeyProvider>,
}

impl Default for ProxyConfig {
    /// `mesh.DefaultProxyConfig()`, as far as validation reads it.
    fn default() -> Self {
        ProxyConfig {
            config_path: "./etc/istio/proxy".to_owned(),
            binary_path: "/usr/local/bin/envoy".to_owned(),
            cluster_name: ClusterName::ServiceCluster("istio-proxy".to_owned()),
            drain_duration: 45_000_000_000,
            discovery_address: "istiod.istio-system.svc:15012".to_owned(),
            tracing: Some((
                Some(Tracer::Zipkin("zipkin.istio-system:9411".to_owned())),
                None,
            )),
            statsd_udp_address: String::new(),
            envoy_metrics_service_address: String::new(),
            envoy_metrics_service: String::new(),
            envoy_access_log_service: String::new(),
            proxy_admin_port: 15000,
            control_plane_auth_policy: 1,
            status_port: 15020,
            private_key_provider: None,
        }
    }
}

/// The string in `v`, or empty.
fn str_of(v: Val) -> String {
    match v {
        Val::Str(s) => s,
        _ => String::new(),
    }
}

/// The `address` field of a decoded message.
fn address_of(v: Val) -> String {
    match v {
        Val::Msg(fields) => fields
            .into_iter()
            .find(|(n, _)| *n == "address")
            .map(|(_, v)| str_of(v))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

impl ProxyConfig {
    /// Sets the decoded top-level fields, as jsonpb does: a message field is replaced
    /// whole, a oneof keeps the last member set.
    fn apply(&mut self, fields: Vec<(&'static str, Val)>) {
        for (name, v) in fields {
            match (name, v) {
                ("config_path", v) => self.config_path = str_of(v),
                ("binary_path", v) => self.binary_path = str_of(v),
                ("service_cluster", v) => {
                    self.cluster_name = ClusterName::ServiceCluster(str_of(v))
                }
                ("tracing_service_name", _) => self.cluster_name = ClusterName::TracingServiceName,
                ("drain_duration", Val::Dur(d)) => self.drain_duration = d,
                ("discovery_address", v) => self.discovery_address = str_of(v),
                ("statsd_udp_address", v) => self.statsd_udp_address = str_of(v),
                ("envoy_metrics_service_address", v) => {
                    self.envoy_metrics_service_address = str_of(v);
                }
                ("envoy_metrics_service", v) => self.envoy_metrics_service = address_of(v),
                ("envoy_access_log_service", v) => self.envoy_access_log_service = address_of(v),
                ("proxy_admin_port", Val::Int(n)) => self.proxy_admin_port = n,
                ("control_plane_auth_policy", Val::Int(n)) => self.control_plane_auth_policy = n,
                ("status_port", Val::Int(n)) => self.status_port = n,
                ("tracing", Val::Msg(t)) => self.tracing = Some(tracing_of(t)),
                ("private_key_provider", Val::Msg(p)) => {
                    let mut provider = KeyProvider::None;
                    for (n, v) in p {
                        let delay = match v {
                            Val::Msg(f) => f.into_iter().find_map(|(_, v)| match v {
                                Val::Dur(d) => Some(d),
                                _ => None,
                            }),
                            _ => None,
                        };
                        provider = if n == "qat" {
                            KeyProvider::Qat(delay)
                        } else {
                            KeyProvider::CryptoMb(delay)
                        };
                    }
                    self.private_key_provider = Some(provider);
                }
                _ => {}
            }
        }
    }

    /// `agent.ValidateMeshConfigProxyConfig`: its errors, flattened, in its order.
    fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.config_path.is_empty() {
            errs.push("config path must be set".to_owned());
        }
        if self.binary_path.is_empty() {
            errs.push("binary path must be set".to_owned());
        }
        if self.cluster_name == ClusterName::ServiceCluster(String::new()) {
            errs.push("service cluster must be specified".to_owned());
        }
        errs.extend(validate_drain_duration(self.drain_duration));
        if self.discovery_address.is_empty() {
            errs.push("discovery address must be set to the proxy discovery service".to_owned());
        } else if let Err(e) = validate_proxy_address(&self.discovery_address) {
            errs.push(format!("invalid discovery address: {e}"));
        }
        if let Some((tracer, tls)) = &self.tracing {
            match tracer {
                Some(Tracer::Lightstep(address, token)) => {
                    let mut ls = Vec::new();
                    if address.is_empty() {
                        ls.push("address is required".to_owned());
                    }
                    if let Err(e) = validate_proxy_address(address) {
                        ls.push(format!("invalid lightstep address: {e}"));
                    }
                    if token.is_empty() {
                        ls.push("access token is required".to_owned());
                    }
                    errs.extend(
                        ls.into_iter()
                            .map(|e| format!("invalid lightstep config: {e}")),
                    );
                }
                Some(Tracer::Zipkin(address)) => {
                    if let Err(e) =
                        validate_proxy_address(&address.replacen("$(HOST_IP)", "127.0.0.1", 1))
                    {
                        errs.push(format!("invalid zipkin config: {e}"));
                    }
                }
                Some(Tracer::Datadog(address)) => {
                    if let Err(e) =
                        validate_proxy_address(&address.replacen("$(HOST_IP)", "127.0.0.1", 1))
                    {
                        errs.push(format!("invalid datadog config: {e}"));
                    }
                }
                Some(Tracer::Other) | None => {}
            }
            if let Some(tls) = tls {
                errs.extend(
                    validate_tls(tls)
                        .into_iter()
                        .map(|e| format!("invalid tracing TLS config: {e}")),
                );
            }
        }
        for (address, what) in [
            (&self.statsd_udp_address, "statsd udp address"),
            (
                &self.envoy_metrics_service_address,
                "envoy metrics service address",
            ),
            (&self.envoy_metrics_service, "envoy metrics service address"),
            (
                &self.envoy_access_log_service,
                "envoy access log service address",
            ),
        ] {
            if !address.is_empty()
                && let Err(e) = validate_proxy_address(address)
            {
                errs.push(format!("invalid {what} {}: {e}", go_quote(address)));
            }
        }
        if let Err(e) = validate_port(self.proxy_admin_port) {
            errs.push(format!("invalid proxy admin port: {e}"));
        }
        if !matches!(self.control_plane_auth_policy, 0 | 1) {
            let name = AUTH_POLICY
                .iter()
                .find(|&&(_, v)| i64::from(v) == self.control_plane_auth_policy)
                .map_or_else(
                    || self.control_plane_auth_policy.to_string(),
                    |(n, _)| (*n).to_owned(),
                );
            errs.push(format!(
                "invalid authentication policy: unrecognized control plane auth policy {}",
                go_quote(&name)
            ));
        }
        if let Err(e) = validate_port(self.status_port) {
            errs.push(format!("invalid status port: {e}"));
        }
        if let Some(provider) = &self.private_key_provider {
            let mut pk = Vec::new();
            match provider {
                KeyProvider::None => {
                    pk.push("private key provider configuration is required".to_owned());
                    pk.push("unknown private key provider".to_owned());
                }
                KeyProvider::CryptoMb(delay) | KeyProvider::Qat(delay) => match delay {
                    None => pk.push("pollDelay is required".to_owned()),
                    Some(0) => pk.push("pollDelay must be non zero".to_owned()),
                    Some(_) => {}
                },
            }
            errs.extend(
                pk.into_iter()
                    .map(|e| format!("invalid private key provider configuration: {e}")),
            );
        }
        errs
    }
}

/// The tracer and TLS settings of a decoded `Tracing`.
fn tracing_of(fields: Vec<(&'static str, Val)>) -> (Option<Tracer>, Option<ClientTls>) {
    let (mut tracer, mut tls) = (None, None);
    for (name, v) in fields {
        let mut sub = match v {
            Val::Msg(f) => f,
            _ => Vec::new(),
        };
        let mut take = |field: &str| {
            sub.iter()
                .position(|(n, _)| *n == field)
                .map(|i| str_of(sub.remove(i).1))
                .unwrap_or_default()
        };
        match name {
            "zipkin" => tracer = Some(Tracer::Zipkin(take("address"))),
            "lightstep" => {
                let address = take("address");
                tracer = Some(Tracer::Lightstep(address, take("access_token")));
            }
            "datadog" => tracer = Some(Tracer::Datadog(take("address"))),
            "stackdriver" | "open_census_agent" => tracer = Some(Tracer::Other),
            "tls_settings" => {
                let mut t = ClientTls::default();
                for (n, v) in sub {
                    match (n, v) {
                        ("mode", Val::Int(m)) => t.mode = m,
                        ("client_certificate", v) => t.client_certificate = str_of(v),
                        ("private_key", v) => t.private_key = str_of(v),
                        ("ca_certificates", v) => t.ca_certificates = str_of(v),
                        ("credential_name", v) => t.credential_name = str_of(v),
                        ("subject_alt_names", Val::List(l)) => t.subject_alt_names = !l.is_empty(),
                        ("insecure_skip_verify", Val::Bool(b)) => t.insecure_skip_verify = b,
                        ("ca_crl", v) => t.ca_crl = str_of(v),
                        _ => {}
                    }
                }
                tls = Some(t);
            }
            _ => {}
        }
    }
    (tracer, tls)
}

/// `agent.ValidateTLS` with no config namespace (a `configmap://` credential cannot name
/// its namespace then; we report that for any of them).
fn validate_tls(t: &ClientTls) -> Vec<String> {
    const SIMPLE: i64 = 1;
    const MUTUAL: i64 = 2;
    let mut errs = Vec::new();
    if t.credential_name.starts_with("configmap://") {
        errs.push(
            r#"invalid configmap:// credentialName: namespace must match the configuration namespace """#
                .to_owned(),
        );
    }
    if t.insecure_skip_verify {
        if t.mode == SIMPLE
            && (!t.ca_certificates.is_empty()
                || !t.credential_name.is_empty()
                || t.subject_alt_names)
        {
            errs.push("cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true".to_owned());
        }
        if t.mode == MUTUAL && (!t.ca_certificates.is_empty() || t.subject_alt_names) {
            errs.push(
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true"
                    .to_owned(),
            );
        }
    }
    if (t.mode == SIMPLE || t.mode == MUTUAL) && !t.credential_name.is_empty() {
        if !t.client_certificate.is_empty()
            || !t.ca_certificates.is_empty()
            || !t.private_key.is_empty()
            || !t.ca_crl.is_empty()
        {
            errs.push(
                "cannot specify client certificates or CA certificate or CA CRL If credentialName is set"
                    .to_owned(),
            );
        }
        return errs;
    }
    if t.mode == MUTUAL {
        if t.client_certificate.is_empty() {
            errs.push("client certificate required for mutual tls".to_owned());
        }
        if t.private_key.is_empty() {
            errs.push("private key required for mutual tls".to_owned());
        }
    }
    errs
}

/// `agent.ValidateDrainDuration`.
fn validate_drain_duration(nanos: i64) -> Vec<String> {
    const MS: i64 = 1_000_000;
    if nanos < MS {
        return vec!["invalid drain duration: duration must be greater than 1ms".to_owned()];
    }
    if nanos % MS != 0 {
        return vec![
            "invalid drain duration: only durations to ms precision are supported".to_owned(),
        ];
    }
    if nanos % (1000 * MS) != 0 {
        return vec!["drain time only supports durations to seconds precision".to_owned()];
    }
    Vec::new()
}

/// `agent.ValidatePort`.
fn validate_port(port: i64) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port number {port} must be in the range 1..65535"))
    }
}

/// `agent.ValidateProxyAddress`: `host:port`, the host a DNS name or an IP address.
fn validate_proxy_address(address: &str) -> Result<(), String> {
    let (host, port) = go_split_host_port(address)
        .map_err(|e| format!("unable to split {}: {e}", go_quote(address)))?;
    let port_number = go_atoi(port).map_err(|e| format!("port ({port}) is not a number: {e}"))?;
    validate_port(port_number)?;
    if !is_fqdn(host) && go_parse_addr(host).is_err() {
        return Err(format!(
            "{} is not a valid hostname or an IP address",
            go_quote(host)
        ));
    }
    Ok(())
}

/// `agent.ValidateFQDN` passes: at most 255 characters, DNS-1123 labels (upper case
/// allowed, as in Istio), a top-level label that is not all digits, an optional final dot.
fn is_fqdn(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let parts: Vec<&str> = name.split('.').collect();
    if go_atoi(parts[parts.len() - 1]).is_ok() {
        return false;
    }
    parts.iter().enumerate().all(|(i, label)| {
        (i == parts.len() - 1 && label.is_empty())
            || (label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
                && !label.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    /// The annotation findings for `yaml`, as (code, kind, name, key, line).
    fn run(yaml: &str) -> Vec<(&'static str, Kind, String, String, u32)> {
        let loaded = load_str(yaml, "a.yaml");
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let objs: Vec<&ConfigObject> = loaded.objects.iter().collect();
        annotations(&objs)
            .into_iter()
            .map(|d| {
                let o = objs
                    .iter()
                    .filter(|o| o.source.location.line <= d.line)
                    .max_by_key(|o| o.source.location.line)
                    .expect("an object");
                (
                    d.code,
                    o.kind,
                    o.metadata.name.clone(),
                    d.path[21..].to_owned(),
                    d.line,
                )
            })
            .collect()
    }

    #[test]
    fn table_is_well_formed() {
        const RESOURCE_TYPES: [&str; 10] = [
            "Any",
            "AuthorizationPolicy",
            "Gateway",
            "GatewayClass",
            "Ingress",
            "Namespace",
            "Pod",
            "Service",
            "ServiceEntry",
            "WorkloadEntry",
        ];
        assert_eq!(ANNOTATIONS.len(), 62);
        for (i, a) in ANNOTATIONS.iter().enumerate() {
            assert!(!a.resources.is_empty(), "{}", a.name);
            assert!(
                a.resources.iter().all(|r| RESOURCE_TYPES.contains(r)),
                "{}",
                a.name
            );
            assert!(
                is_istio_annotation(a.name),
                "{} is not in Istio's namespace",
                a.name
            );
            assert!(
                ANNOTATIONS[..i].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
        let count = |f: fn(&Annotation) -> bool| ANNOTATIONS.iter().filter(|a| f(a)).count();
        assert_eq!(count(|a| a.alpha), 57);
        assert_eq!(count(|a| a.deprecated), 8);
        // every validated key is in the table, on pods
        for a in &ANNOTATIONS {
            if validator(a.name).is_some() {
                assert_eq!(a.resources, ["Pod"], "{}", a.name);
            }
        }
        assert_eq!(
            ANNOTATIONS
                .iter()
                .filter(|a| validator(a.name).is_some())
                .count(),
            12
        );
    }

    #[test]
    fn istio_namespace() {
        for k in [
            "sidecar.istio.io/inject",
            "istio.io/rev",
            "fooistio.io/x",
            "kubernetes.io/ingress.class",
            "istio.io",
        ] {
            assert!(is_istio_annotation(k), "{k}");
        }
        for k in [
            "kubernetes.io/psp",
            "helm.sh/hook",
            "example.com/istio.io",
            "istio.io.example.com/x",
        ] {
            assert!(!is_istio_annotation(k), "{k}");
        }
    }

    #[test]
    fn simple_validators() {
        type Case = (Validator, &'static str, Option<&'static str>);
        let cases: &[Case] = &[
            (validate_interception_mode, "REDIRECT", None),
            (validate_interception_mode, "TPROXY", None),
            (validate_interception_mode, "NONE", None),
            (
                validate_interception_mode,
                "redirect",
                Some("interceptionMode invalid, use REDIRECT,TPROXY,NONE: redirect"),
            ),
            (
                validate_interception_mode,
                "",
                Some("interceptionMode invalid, use REDIRECT,TPROXY,NONE: "),
            ),
            (validate_status_port, "15020", None),
            (validate_status_port, " 0 ", None),
            (
                validate_status_port,
                "abc",
                Some(
                    r#"excludeInboundPorts invalid: failed parsing port 'abc': strconv.ParseUint: parsing "abc": invalid syntax"#,
                ),
            ),
            (
                validate_status_port,
                "65536",
                Some(
                    r#"excludeInboundPorts invalid: failed parsing port '65536': strconv.ParseUint: parsing "65536": value out of range"#,
                ),
            ),
            (validate_uint32, "0", None),
            (validate_uint32, "4294967295", None),
            (
                validate_uint32,
                "bar",
                Some(r#"strconv.ParseUint: parsing "bar": invalid syntax"#),
            ),
            (
                validate_uint32,
                "-1",
                Some(r#"strconv.ParseUint: parsing "-1": invalid syntax"#),
            ),
            (
                validate_uint32,
                " 1",
                Some(r#"strconv.ParseUint: parsing " 1": invalid syntax"#),
            ),
            (
                validate_uint32,
                "4294967296",
                Some(r#"strconv.ParseUint: parsing "4294967296": value out of range"#),
            ),
            (
                validate_uint32,
                "99999999999x",
                Some(r#"strconv.ParseUint: parsing "99999999999x": value out of range"#),
            ),
            (validate_bool, "true", None),
            (validate_bool, "F", None),
            (validate_bool, "0", None),
            (
                validate_bool,
                "yes",
                Some(r#"strconv.ParseBool: parsing "yes": invalid syntax"#),
            ),
            (
                validate_bool,
                "",
                Some(r#"strconv.ParseBool: parsing "": invalid syntax"#),
            ),
            (validate_include_ip_ranges, "*", None),
            (validate_include_ip_ranges, "", None),
            (validate_include_ip_ranges, "10.0.0.1/8,fd00::/8", None),
            (
                validate_include_ip_ranges,
                "*,10.0.0.0/8",
                Some(
                    r#"includeIPRanges invalid: failed parsing cidr '*': netip.ParsePrefix("*"): no '/'"#,
                ),
            ),
            (
                validate_include_ip_ranges,
                "10.0.0.0/8, 10.1.0.0/16",
                Some(
                    r#"includeIPRanges invalid: failed parsing cidr ' 10.1.0.0/16': netip.ParsePrefix(" 10.1.0.0/16"): ParseAddr(" 10.1.0.0"): unexpected character (at " 10.1.0.0")"#,
                ),
            ),
            (validate_exclude_ip_ranges, "", None),
            (validate_exclude_ip_ranges, "169.254.169.254/32", None),
            (
                validate_exclude_ip_ranges,
                "*",
                Some(
                    r#"excludeIPRanges invalid: failed parsing cidr '*': netip.ParsePrefix("*"): no '/'"#,
                ),
            ),
            (
                validate_exclude_ip_ranges,
                "10.0.0.0/8,",
                Some(
                    r#"excludeIPRanges invalid: failed parsing cidr '': netip.ParsePrefix(""): no '/'"#,
                ),
            ),
            (validate_include_inbound_ports, "*", None),
            (validate_include_inbound_ports, "80, 8080 ,9080", None),
            (validate_include_inbound_ports, "  ", None),
            (
                validate_include_inbound_ports,
                "80,*",
                Some(
                    r#"includeInboundPorts invalid: failed parsing port '*': failed parsing port '*': strconv.ParseUint: parsing "*": invalid syntax"#,
                ),
            ),
            (validate_exclude_inbound_ports, "15020", None),
            (
                validate_exclude_inbound_ports,
                "*",
                Some(
                    r#"excludeInboundPorts invalid: failed parsing port '*': failed parsing port '*': strconv.ParseUint: parsing "*": invalid syntax"#,
                ),
            ),
            (validate_exclude_outbound_ports, "", None),
            (
                validate_exclude_outbound_ports,
                "x",
                Some(
                    r#"excludeOutboundPorts invalid: failed parsing port 'x': failed parsing port 'x': strconv.ParseUint: parsing "x": invalid syntax"#,
                ),
            ),
            (
                validate_exclude_outbound_ports,
                "80,,90",
                Some(
                    r#"excludeOutboundPorts invalid: failed parsing port '': failed parsing port '': strconv.ParseUint: parsing "": invalid syntax"#,
                ),
            ),
            (
                validate_exclude_outbound_ports,
                "1, 70000",
                Some(
                    r#"excludeOutboundPorts invalid: failed parsing port ' 70000': failed parsing port ' 70000': strconv.ParseUint: parsing "70000": value out of range"#,
                ),
            ),
        ];
        for (f, value, want) in cases {
            assert_eq!(f(value).err().as_deref(), *want, "{value:?}");
        }
    }

    #[test]
    fn netip_prefixes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.0.0.1/8", None),
            ("0.0.0.0/0", None),
            ("::/0", None),
            ("::ffff:10.0.0.1/128", None),
            ("fd00:1:2:3::/64", None),
            ("10.0.0.0", Some(r#"netip.ParsePrefix("10.0.0.0"): no '/'"#)),
            (
                "10.0.0.0/33",
                Some(r#"netip.ParsePrefix("10.0.0.0/33"): prefix length out of range"#),
            ),
            (
                "::/129",
                Some(r#"netip.ParsePrefix("::/129"): prefix length out of range"#),
            ),
            (
                "10.0.0.0/08",
                Some(r#"netip.ParsePrefix("10.0.0.0/08"): bad bits after slash: "08""#),
            ),
            (
                "10.0.0.0/",
                Some(r#"netip.ParsePrefix("10.0.0.0/"): bad bits after slash: """#),
            ),
            (
                "10.0.0.0/-",
                Some(r#"netip.ParsePrefix("10.0.0.0/-"): bad bits after slash: "-""#),
            ),
            (
                "10.0.0/8",
                Some(
                    r#"netip.ParsePrefix("10.0.0/8"): ParseAddr("10.0.0"): IPv4 address too short"#,
                ),
            ),
            (
                "10.0.0.256/8",
                Some(
                    r#"netip.ParsePrefix("10.0.0.256/8"): ParseAddr("10.0.0.256"): IPv4 field has value >255"#,
                ),
            ),
            (
                "10.0.0.01/8",
                Some(
                    r#"netip.ParsePrefix("10.0.0.01/8"): ParseAddr("10.0.0.01"): IPv4 field has octet with leading zero"#,
                ),
            ),
            (
                "10..0.0/8",
                Some(
                    r#"netip.ParsePrefix("10..0.0/8"): ParseAddr("10..0.0"): IPv4 field must have at least one digit (at ".0.0")"#,
                ),
            ),
            (
                "1.2.3.4.5/8",
                Some(
                    r#"netip.ParsePrefix("1.2.3.4.5/8"): ParseAddr("1.2.3.4.5"): IPv4 address too long"#,
                ),
            ),
            (
                "abc/8",
                Some(r#"netip.ParsePrefix("abc/8"): ParseAddr("abc"): unable to parse IP"#),
            ),
            (
                "fe80::1%eth0/64",
                Some(
                    r#"netip.ParsePrefix("fe80::1%eth0/64"): IPv6 zones cannot be present in a prefix"#,
                ),
            ),
            (
                "1::2::3/64",
                Some(
                    r#"netip.ParsePrefix("1::2::3/64"): ParseAddr("1::2::3"): multiple :: in address (at ":3")"#,
                ),
            ),
            (
                "12345::/64",
                Some(
                    r#"netip.ParsePrefix("12345::/64"): ParseAddr("12345::"): each group must have 4 or less digits (at "12345::")"#,
                ),
            ),
            (
                "1:2:3/64",
                Some(
                    r#"netip.ParsePrefix("1:2:3/64"): ParseAddr("1:2:3"): address string too short"#,
                ),
            ),
            (
                "1:2:3:4:5:6:7:8::/64",
                Some(
                    r#"netip.ParsePrefix("1:2:3:4:5:6:7:8::/64"): ParseAddr("1:2:3:4:5:6:7:8::"): the :: must expand to at least one field of zeros"#,
                ),
            ),
            (
                "1:2:3:4:5:6:7:8:9/64",
                Some(
                    r#"netip.ParsePrefix("1:2:3:4:5:6:7:8:9/64"): ParseAddr("1:2:3:4:5:6:7:8:9"): trailing garbage after address (at "9")"#,
                ),
            ),
            (
                "::1.2.3/96",
                Some(
                    r#"netip.ParsePrefix("::1.2.3/96"): ParseAddr("::1.2.3"): IPv4 address too short"#,
                ),
            ),
            (
                "1:x::/64",
                Some(
                    r#"netip.ParsePrefix("1:x::/64"): ParseAddr("1:x::"): each colon-separated field must have at least one digit (at "x::")"#,
                ),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(go_parse_prefix(s).err().as_deref(), *want, "{s}");
        }
    }

    #[test]
    fn go_helpers() {
        assert_eq!(go_quote("a\"b\\c\n\u{7f}é"), r#""a\"b\\c\n\x7fé""#);
        assert_eq!(go_atoi("+80"), Ok(80));
        assert_eq!(go_atoi("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            go_atoi("9223372036854775808").unwrap_err(),
            r#"strconv.Atoi: parsing "9223372036854775808": value out of range"#
        );
        assert_eq!(
            go_atoi("").unwrap_err(),
            r#"strconv.Atoi: parsing "": invalid syntax"#
        );
        assert_eq!(go_split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(go_split_host_port("a:"), Ok(("a", "")));
        assert_eq!(
            go_split_host_port("a").unwrap_err(),
            "address a: missing port in address"
        );
        assert_eq!(
            go_split_host_port("a:b:c").unwrap_err(),
            "address a:b:c: too many colons in address"
        );
        assert_eq!(
            go_split_host_port("[::1]").unwrap_err(),
            "address [::1]: missing port in address"
        );
        assert_eq!(
            go_split_host_port("").unwrap_err(),
            "missing port in address"
        );
        let second = 1_000_000_000;
        assert_eq!(go_parse_duration("45s"), Ok(45 * second));
        assert_eq!(go_parse_duration("1m30.5s"), Ok(90 * second + second / 2));
        assert_eq!(go_parse_duration("-0"), Ok(0));
        assert_eq!(go_parse_duration("1.5µs"), Ok(1500));
        assert_eq!(go_parse_duration(".5h"), Ok(1800 * second));
        assert_eq!(
            go_parse_duration("10").unwrap_err(),
            r#"time: missing unit in duration "10""#
        );
        assert_eq!(
            go_parse_duration("10x").unwrap_err(),
            r#"time: unknown unit "x" in duration "10x""#
        );
        assert_eq!(
            go_parse_duration("abc").unwrap_err(),
            r#"time: invalid duration "abc""#
        );
        assert_eq!(
            go_parse_duration("").unwrap_err(),
            r#"time: invalid duration """#
        );
        assert_eq!(
            go_parse_duration("3000000h").unwrap_err(),
            r#"time: invalid duration "3000000h""#
        );
        assert_eq!(
            go_parse_duration("1é").unwrap_err(),
            r#"time: unknown unit "\xc3\xa9" in duration "1\xc3\xa9""#
        );
    }

    #[test]
    fn yaml_to_json_resolves_like_go_yaml_v2() {
        let j = yaml_to_json(
            "a: yes\nb: 0x1f\nc: 1_000\nd: '10'\ne: ~\nf: [1.5, 1e3, .5, off]\ng: &x {h: 010}\ni: *x\n",
        )
        .unwrap();
        let num = |s: &str| Json::Num(s.to_owned());
        assert_eq!(
            j,
            Json::Obj(vec![
                ("a".into(), Json::Bool(true)),
                ("b".into(), num("31")),
                ("c".into(), num("1000")),
                ("d".into(), Json::Str("10".into())),
                ("e".into(), Json::Null),
                (
                    "f".into(),
                    Json::Arr(vec![num("1.5"), num("1000"), num("0.5"), Json::Bool(false)])
                ),
                ("g".into(), Json::Obj(vec![("h".into(), num("8"))])),
                ("i".into(), Json::Obj(vec![("h".into(), num("8"))])),
            ])
        );
        assert_eq!(yaml_to_json("").unwrap(), Json::Null);
        assert_eq!(yaml_to_json("{}").unwrap(), Json::Obj(Vec::new()));
        assert!(yaml_to_json("a: [")
            .unwrap_err()
            .starts_with("error converting YAML to JSON: yaml: line "));
    }

    #[test]
    fn proxy_config() {
        let ok = [
            "",
            "{}",
            "null",
            "concurrency: 2",
            "concurrency: '0'",
            "holdApplicationUntilProxyStarts: true",
            "proxyMetadata: {ISTIO_META_DNS_CAPTURE: 'true'}",
            "discoveryAddress: istiod.istio-system.svc:15012",
            "discoveryAddress: '[::1]:15012'",
            "tracing: {sampling: 10}",
            "tracing: {zipkin: {address: '$(HOST_IP):9411'}}",
            "tracingServiceName: CANONICAL_NAME_ONLY\nserviceCluster: ''",
            "serviceCluster: ''\ntracingServiceName: CANONICAL_NAME_ONLY",
            "drain_duration: 10s",
            "controlPlaneAuthPolicy: NONE",
            "privateKeyProvider: {cryptomb: {pollDelay: 10ms}}",
            "proxyStatsMatcher: {inclusionPrefixes: [cluster.outbound]}",
            "unknownField: 5",
            r#"{"proxyAdminPort": 15000, "statusPort": "15020"}"#,
            "envoyAccessLogService: {address: als.istio-system:9000}",
        ];
        for v in ok {
            assert_eq!(validate_proxy_config(v), Ok(()), "{v:?}");
        }
        let one = |e: &str| format!("1 error occurred:\n\t* {e}\n\n");
        let bad: &[(&str, String)] = &[
            (
                "foo",
                "failed to convert to apply proxy config: json: cannot unmarshal string into Go value of type map[string]json.RawMessage".into(),
            ),
            (
                "[1]",
                "failed to convert to apply proxy config: json: cannot unmarshal array into Go value of type map[string]json.RawMessage".into(),
            ),
            (
                "concurrency: 1.5",
                "failed to convert to apply proxy config: json: cannot unmarshal number 1.5 into Go value of type int32".into(),
            ),
            (
                "proxyAdminPort: abc",
                "failed to convert to apply proxy config: invalid character 'a' looking for beginning of value".into(),
            ),
            (
                "statusPort: 99999999999",
                "failed to convert to apply proxy config: json: cannot unmarshal number 99999999999 into Go value of type int32".into(),
            ),
            (
                "holdApplicationUntilProxyStarts: 'true'",
                "failed to convert to apply proxy config: json: cannot unmarshal string into Go value of type bool".into(),
            ),
            (
                "proxyMetadata: {ISTIO_META_DNS_CAPTURE: true}",
                "failed to convert to apply proxy config: json: cannot unmarshal bool into Go value of type string".into(),
            ),
            (
                "drainDuration: 10",
                "failed to convert to apply proxy config: json: cannot unmarshal number into Go value of type string".into(),
            ),
            (
                "drainDuration: ten",
                r#"failed to convert to apply proxy config: bad Duration: time: invalid duration "ten""#.into(),
            ),
            (
                "controlPlaneAuthPolicy: FOO",
                r#"failed to convert to apply proxy config: unknown value "\"FOO\"" for enum istio.mesh.v1alpha1.AuthenticationPolicy"#.into(),
            ),
            (
                "tracing: {zipkin: []}",
                "failed to convert to apply proxy config: json: cannot unmarshal array into Go value of type map[string]json.RawMessage".into(),
            ),
            ("configPath: ''", one("config path must be set")),
            ("serviceCluster: ''", one("service cluster must be specified")),
            (
                "drainDuration: 1500ms",
                one("drain time only supports durations to seconds precision"),
            ),
            (
                "drainDuration: 0s",
                one("invalid drain duration: duration must be greater than 1ms"),
            ),
            (
                "discoveryAddress: ''",
                one("discovery address must be set to the proxy discovery service"),
            ),
            (
                "discoveryAddress: istiod",
                one(r#"invalid discovery address: unable to split "istiod": address istiod: missing port in address"#),
            ),
            (
                "discoveryAddress: istiod:http",
                one(r#"invalid discovery address: port (http) is not a number: strconv.Atoi: parsing "http": invalid syntax"#),
            ),
            (
                "discoveryAddress: istiod_x:15012",
                one(r#"invalid discovery address: "istiod_x" is not a valid hostname or an IP address"#),
            ),
            (
                "tracing: {zipkin: {address: zipkin}}",
                one(r#"invalid zipkin config: unable to split "zipkin": address zipkin: missing port in address"#),
            ),
            (
                "tracing: {datadog: {address: 'dd:0'}}",
                one("invalid datadog config: port number 0 must be in the range 1..65535"),
            ),
            (
                "proxyAdminPort: 0",
                one("invalid proxy admin port: port number 0 must be in the range 1..65535"),
            ),
            (
                "controlPlaneAuthPolicy: INHERIT",
                one(r#"invalid authentication policy: unrecognized control plane auth policy "INHERIT""#),
            ),
            (
                "controlPlaneAuthPolicy: 7",
                one(r#"invalid authentication policy: unrecognized control plane auth policy "7""#),
            ),
            (
                "statsdUdpAddress: statsd",
                one(r#"invalid statsd udp address "statsd": unable to split "statsd": address statsd: missing port in address"#),
            ),
            (
                "envoyMetricsService: {address: 'ms:99999'}",
                one(r#"invalid envoy metrics service address "ms:99999": port number 99999 must be in the range 1..65535"#),
            ),
            (
                "tracing: {tlsSettings: {mode: MUTUAL}}",
                "2 errors occurred:\n\t* invalid tracing TLS config: client certificate required for mutual tls\n\t* invalid tracing TLS config: private key required for mutual tls\n\n".into(),
            ),
            (
                "privateKeyProvider: {}",
                "2 errors occurred:\n\t* invalid private key provider configuration: private key provider configuration is required\n\t* invalid private key provider configuration: unknown private key provider\n\n".into(),
            ),
            (
                "privateKeyProvider: {qat: {pollDelay: 0s}}",
                one("invalid private key provider configuration: pollDelay must be non zero"),
            ),
            (
                "tracing: {lightstep: {}}",
                "3 errors occurred:\n\t* invalid lightstep config: address is required\n\t* invalid lightstep config: invalid lightstep address: unable to split \"\": missing port in address\n\t* invalid lightstep config: access token is required\n\n".into(),
            ),
            (
                "configPath: ''\nbinaryPath: ''\nstatusPort: -1",
                "3 errors occurred:\n\t* config path must be set\n\t* binary path must be set\n\t* invalid status port: port number -1 must be in the range 1..65535\n\n".into(),
            ),
        ];
        for (v, want) in bad {
            assert_eq!(validate_proxy_config(v).err().as_ref(), Some(want), "{v:?}");
        }
        assert!(validate_proxy_config("a: [").unwrap_err().starts_with(
            "failed to convert to apply proxy config: error converting YAML to JSON: yaml: line "
        ));
    }

    /// Istio's test file `pkg/config/analysis/analyzers/testdata/misannotated.yaml`
    /// (istio/istio, Apache-2.0).
    const MISANNOTATED: &str = include_str!("../../tests/analyze_annotations.rs");

    #[test]
    fn istio_misannotated_testdata() {
        // the integration test embeds the file; take it from there
        let start = MISANNOTATED
            .find("# K8s object with unknown Istio annotations")
            .unwrap();
        let end = MISANNOTATED[start..].find("\"#;").unwrap() + start;
        let mut found = run(&MISANNOTATED[start..end]);
        found.sort();
        let want = [
            (
                MISPLACED_ANNOTATION,
                Kind::Namespace,
                "staging",
                "kubernetes.io/ingress.class",
                118,
            ),
            (
                MISPLACED_ANNOTATION,
                Kind::Pod,
                "grafana-test",
                "kubernetes.io/ingress.class",
                82,
            ),
            (
                MISPLACED_ANNOTATION,
                Kind::Deployment,
                "fortio-deploy",
                "sidecar.istio.io/statsInclusionPrefixes",
                96,
            ),
            (
                UNKNOWN_ANNOTATION,
                Kind::Service,
                "httpbin",
                "networking.istio.io/exportThree",
                10,
            ),
            (
                INVALID_ANNOTATION,
                Kind::Pod,
                "invalid-annotations",
                "readiness.status.sidecar.istio.io/initialDelaySeconds",
                28,
            ),
            (
                DEPRECATED_ANNOTATION,
                Kind::Deployment,
                "fortio-deploy",
                "sidecar.istio.io/statsInclusionPrefixes",
                96,
            ),
        ];
        let mut want: Vec<_> = want
            .into_iter()
            .map(|(c, k, n, a, l)| (c, k, n.to_owned(), a.to_owned(), l))
            .collect();
        want.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn sidecar_inject_annotation_and_label() {
        let pod = |labels: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{{labels}}}\n  annotations:\n    sidecar.istio.io/inject: 'false'\nspec: {{containers: [{{name: c, image: i}}]}}\n")
        };
        let found = run(&pod("app: p"));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0, found[0].4), (DEPRECATED_ANNOTATION, 7));
        assert!(run(&pod("sidecar.istio.io/inject: 'false'")).is_empty());
        let loaded = load_str(&pod(""), "p.yaml");
        let objs: Vec<&ConfigObject> = loaded.objects.iter().collect();
        let d = &annotations(&objs)[0];
        assert_eq!(d.severity, Severity::Info);
        assert_eq!(
            d.message,
            r#"Annotation "sidecar.istio.io/inject" has been deprecated in favor of the "sidecar.istio.io/inject" label and may not work in future Istio versions."#
        );
    }

    #[test]
    fn any_ignored_and_unknown() {
        let found = run("apiVersion: v1
kind: Namespace
metadata:
  name: ns
  labels: {istio-injection: enabled}
  annotations:
    galley.istio.io/analyze-suppress: IST0102
    istio.io/rev: canary
    sidecar.istio.io/status: '{}'
    example.com/sidecar.istio.io: x
    topology.istio.io/controlPlaneClusters: '*'
    networking.istio.io/exportto: '.'
");
        assert_eq!(
            found,
            [(
                UNKNOWN_ANNOTATION,
                Kind::Namespace,
                "ns".to_owned(),
                "networking.istio.io/exportto".to_owned(),
                12
            )]
        );
        let loaded = load_str(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations: {networking.istio.io/exportto: '.'}\nspec: {ports: [{port: 80}]}\n",
            "s.yaml",
        );
        let objs: Vec<&ConfigObject> = loaded.objects.iter().collect();
        let d = &annotations(&objs)[0];
        assert_eq!(
            d.message,
            "Unknown annotation: networking.istio.io/exportto"
        );
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(
            d.help.as_deref(),
            Some("did you mean `networking.istio.io/exportTo`?")
        );
    }

    #[test]
    fn block_scalar_points_at_the_key() {
        let loaded = load_str(
            "apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    proxy.istio.io/config: |
      discoveryAddress: istiod
spec: {containers: [{name: c, image: i}]}
",
            "p.yaml",
        );
        let objs: Vec<&ConfigObject> = loaded.objects.iter().collect();
        let found = annotations(&objs);
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!((d.code, d.line, d.column), (INVALID_ANNOTATION, 6, 5));
        // the value starts a line below: istioctl's line is the key's
        let value_at = objs[0].source.locate_value(&d.path).map(|l| l.line);
        assert_eq!(value_at, Some(7));
        assert_eq!(
            d.message,
            "Invalid annotation proxy.istio.io/config: 1 error occurred:\n\t* invalid discovery address: unable to split \"istiod\": address istiod: missing port in address\n\n"
        );
    }
}
