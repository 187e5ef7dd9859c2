//! ServiceEntry and WorkloadEntry checks (istiod `ValidateServiceEntry`,
//! `ValidateWorkloadEntry`, spec §4).

use std::collections::HashSet;

use super::common::*;
use super::{Ctx, Help};
use crate::model::{Resolution, ServiceEntry, WorkloadEntry};

/// Protocols Istio parses (case-insensitive).
const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "MONGO",
    "TCP",
    "TLS",
    "UDP",
    "HTTP_PROXY",
    "REDIS",
    "MYSQL",
];

pub(super) fn is_known_protocol(p: &str) -> bool {
    PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p))
}

fn is_http_or_tls(p: &str) -> bool {
    [
        "HTTP",
        "HTTPS",
        "GRPC",
        "GRPC-WEB",
        "HTTP2",
        "TLS",
        "HTTP_PROXY",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(p))
}

/// `protocol.IsTCP`: TCP-based protocols that are neither HTTP nor HTTPS-terminated.
fn is_tcp_based(p: &str) -> bool {
    ["TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(p))
}

fn is_unix(addr: &str) -> bool {
    addr.starts_with("unix://")
}

pub(super) fn validate(cx: &mut Ctx<'_>, se: &ServiceEntry) {
    if let Some(sel) = &se.workload_selector {
        // istiod returns the selector's errors alone
        if validate_workload_selector(
            cx,
            "spec.workloadSelector.labels",
            &sel.labels,
            "service entry: workload selector specified without labels, will be applied to all services in namespace",
        ) {
            return;
        }
    }
    if se.hosts.is_empty() {
        cx.error("spec.hosts", "service entry must have at least one host");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        if h == "*" {
            cx.error(&p, "invalid host *");
            continue;
        }
        if h.starts_with('*') && !h.starts_with("*.") && se.resolution != Resolution::DynamicDns {
            cx.warn(&p, format!("partial wildcard {h:?} not allowed"));
        }
        cx.check(&p, validate_wildcard_domain(h));
    }
    for (i, a) in se.addresses.iter().enumerate() {
        let p = format!("spec.addresses[{i}]");
        if a.contains('/') {
            if !is_cidr(a) {
                cx.error(&p, format!("{a} is not a valid CIDR block"));
            } else if !matches!(se.resolution, Resolution::None | Resolution::Static) {
                cx.error(
                    &p,
                    "CIDR addresses are allowed only for NONE/STATIC resolution types",
                );
            }
        } else if !is_ip(a) {
            cx.error(&p, format!("{a} is not a valid IP"));
        }
    }

    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    let mut has_tcp_like = false;
    let mut non_http_tls = false;
    for (i, port) in se.ports.iter().enumerate() {
        let p = format!("spec.ports[{i}]");
        if !names.insert(port.name.as_str()) {
            cx.error(
                &format!("{p}.name"),
                format!("service entry port name {:?} already defined", port.name),
            );
        }
        if !numbers.insert(port.number) {
            cx.error(
                &format!("{p}.number"),
                format!("service entry port {} already defined", port.number),
            );
        }
        if port.name.is_empty() || !is_dns1123_label(&port.name) {
            cx.error(
                &format!("{p}.name"),
                format!("invalid port name: {}", port.name),
            );
        }
        cx.check(&format!("{p}.number"), validate_port(port.number));
        if let Some(t) = port.target_port {
            cx.check(&format!("{p}.targetPort"), validate_port(t));
        }
        if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
            cx.error(
                &format!("{p}.protocol"),
                format!("unsupported protocol: {}", port.protocol),
            );
        }
        // istiod compares case-sensitively here (spec §13.7), and warns per port.
        if port.protocol.is_empty() || port.protocol == "TCP" {
            // (an entry opts out with the label
            // `networking.istio.io/enable-autoallocate-ip: "false"`)
            let opted_out = cx
                .obj
                .metadata
                .labels
                .get("networking.istio.io/enable-autoallocate-ip")
                .is_some_and(|v| v == "false");
            let autoallocated =
                cx.opts.ip_autoallocate && se.resolution != Resolution::None && !opted_out;
            if se.addresses.is_empty() && !autoallocated {
                cx.warn(
                    &format!("{p}.protocol"),
                    "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is not enabled",
                );
            }
        }
        if is_tcp_based(&port.protocol) {
            has_tcp_like = true;
        }
        if !port.protocol.is_empty() && !is_http_or_tls(&port.protocol) || port.protocol.is_empty()
        {
            non_http_tls = true;
        }
    }
    if matches!(se.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
        && has_tcp_like
        && !se.addresses.is_empty()
        && se.hosts.len() > 1
    {
        cx.warn(
            "spec.hosts",
            "service entry can not have more than one host specified simultaneously with address and tcp port",
        );
    }
    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        cx.error(
            "spec",
            "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        );
    }
    validate_export_to(cx, "spec.exportTo", &se.export_to, true, false);

    match se.resolution {
        Resolution::None => {
            if !se.endpoints.is_empty() {
                cx.error(
                    "spec.endpoints",
                    "no endpoints should be provided for resolution type none",
                );
            }
            if se.workload_selector.is_some() {
                cx.warn(
                    "spec.workloadSelector",
                    "workloadSelector should not be set when resolution mode is NONE",
                );
            }
            // (a `targetPort` replaces the original destination port since Istio 1.22,
            // `ENABLE_RESOLUTION_NONE_TARGET_PORT`: no warning)
        }
        Resolution::Static => {
            let unix_count = se.endpoints.iter().filter(|e| is_unix(&e.address)).count();
            for (i, ep) in se.endpoints.iter().enumerate() {
                let p = format!("spec.endpoints[{i}]");
                // istiod's validateWorkloadEntry: an endpoint on another network may leave
                // its address out (reached through that network's gateway)
                if ep.address.is_empty() {
                    match ep.network.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) => {
                            cx.warn(
                                &format!("{p}.address"),
                                format!("address is unset with network {n:?}"),
                            );
                        }
                        None => {
                            cx.error(&format!("{p}.address"), "address is required");
                        }
                    }
                } else if let Some(path) = ep.address.strip_prefix("unix://") {
                    cx.check(
                        &format!("{p}.address"),
                        super::gateway::validate_unix_address(path),
                    );
                    if !ep.ports.is_empty() {
                        cx.error(
                            &format!("{p}.ports"),
                            format!("unix endpoint {} must not include ports", ep.address),
                        );
                    }
                } else if !is_ip(&ep.address) {
                    cx.error(
                        &format!("{p}.address"),
                        format!(
                            "endpoint address {:?} is not a valid IP address",
                            ep.address
                        ),
                    );
                }
                validate_endpoint_common(cx, &p, ep, se);
            }
            if unix_count > 0 && se.ports.len() != 1 {
                // Reported once (istiod repeats it per unix endpoint).
                cx.error(
                    "spec.ports",
                    "exactly 1 service port required for unix endpoints",
                );
            }
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            if se.endpoints.is_empty() {
                for (i, h) in se.hosts.iter().enumerate() {
                    let rest = h.strip_prefix("*.").unwrap_or(h);
                    if validate_fqdn(rest).is_err() || (h.starts_with('*') && !h.starts_with("*."))
                    {
                        cx.error(
                            &format!("spec.hosts[{i}]"),
                            format!(
                                "hosts must be FQDN or contain only prefix wildcards if no endpoints are provided for resolution mode {}, {h}",
                                if se.resolution == Resolution::Dns { "DNS" } else { "DNS_ROUND_ROBIN" }
                            ),
                        );
                    }
                }
            }
            if se.resolution == Resolution::DnsRoundRobin && se.endpoints.len() > 1 {
                cx.error(
                    "spec.endpoints",
                    "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                );
            }
            for (i, ep) in se.endpoints.iter().enumerate() {
                let p = format!("spec.endpoints[{i}]");
                if !is_ip(&ep.address) && validate_fqdn(&ep.address).is_err() {
                    cx.error(
                        &format!("{p}.address"),
                        format!(
                            "endpoint address {:?} is not a valid FQDN or an IP address",
                            ep.address
                        ),
                    );
                }
                validate_endpoint_common(cx, &p, ep, se);
            }
        }
        Resolution::DynamicDns => {
            for (i, h) in se.hosts.iter().enumerate() {
                if !h.starts_with('*') {
                    cx.error(
                        &format!("spec.hosts[{i}]"),
                        "host must be wildcarded for resolution mode DYNAMIC_DNS",
                    );
                }
            }
            if !se.addresses.is_empty() {
                cx.error(
                    "spec.addresses",
                    "addresses cannot be set for resolution mode DYNAMIC_DNS",
                );
            }
            if !se.endpoints.is_empty() {
                cx.error(
                    "spec.endpoints",
                    "endpoints cannot be set for resolution mode DYNAMIC_DNS",
                );
            }
            for (i, port) in se.ports.iter().enumerate() {
                let ok = ["HTTP", "TLS", "GRPC", "HTTP2"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(&port.protocol));
                if !ok {
                    cx.error(
                        &format!("spec.ports[{i}].protocol"),
                        "only HTTP, TLS, GRPC, and HTTP2 protocols are supported for resolution type DYNAMIC_DNS",
                    );
                }
            }
        }
    }
    // Plain TCP cannot tell several hosts apart (HTTP has the authority, TLS the SNI).
    if se.resolution != Resolution::None && se.hosts.len() > 1 && non_http_tls {
        cx.error(
            "spec",
            "multiple hosts provided with non-HTTP, non-TLS ports",
        );
    }
}

fn validate_endpoint_common(cx: &mut Ctx<'_>, p: &str, ep: &WorkloadEntry, se: &ServiceEntry) {
    for (name, port) in &ep.ports {
        let pp = format!("{p}.ports.{name}");
        if !se.ports.iter().any(|sp| &sp.name == name) {
            cx.error(
                &pp,
                format!("endpoint port {port} is not defined by the service entry"),
            );
        }
        check_port_name(cx, &pp, &format!("{p}.ports"), name);
        cx.check(&pp, validate_port(*port));
    }
    validate_labels(cx, &format!("{p}.labels"), &ep.labels);
}

/// A key of a WorkloadEntry's (or an endpoint's) `ports`. The CRD's rule
/// `size(key) < 63 && key.matches(...)` refuses 63 characters, which istiod's DNS-1123
/// label check allows: the API server refuses the object first, naming the map (`map`).
fn check_port_name(cx: &mut Ctx<'_>, path: &str, map: &str, name: &str) {
    let chars = name.chars().count();
    if chars >= 63 {
        cx.error(
            path,
            format!("{map}: Invalid value: \"object\": port name must be valid"),
        )
        .help(format!(
            "port names must be shorter than 63 characters; this one has {chars}"
        ));
    } else if !is_dns1123_label(name) {
        cx.error(path, format!("invalid port name: {name}"));
    }
}

/// `ValidateWorkloadEntry`.
pub(super) fn validate_workload_entry(cx: &mut Ctx<'_>, we: &WorkloadEntry) {
    if we.address.is_empty() {
        match we.network.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => {
                cx.warn(
                    "spec.address",
                    format!("address is unset with network {n:?}"),
                );
            }
            None => {
                cx.error("spec.address", "address is required");
                return;
            }
        }
    } else if let Some(path) = we.address.strip_prefix("unix://") {
        cx.check("spec.address", super::gateway::validate_unix_address(path));
        if !we.ports.is_empty() {
            cx.error(
                "spec.ports",
                format!("unix endpoint {} must not include ports", we.address),
            );
        }
    } else if !is_ip(&we.address) && validate_fqdn(&we.address).is_err() {
        cx.error(
            "spec.address",
            format!(
                "endpoint address {:?} is not a valid FQDN or an IP address",
                we.address
            ),
        );
    }
    for (name, port) in &we.ports {
        let p = format!("spec.ports.{name}");
        check_port_name(cx, &p, "spec.ports", name);
        cx.check(&p, validate_port(*port));
    }
    validate_labels(cx, "spec.labels", &we.labels);
}
