//! Sidecar checks (istiod `ValidateSidecar`, spec §6).

use std::collections::HashSet;

use super::common::*;
use super::destination_rule::validate_connection_pool;
use super::Ctx;
use crate::model::{OutboundMode, ServerTlsMode, Sidecar};

fn valid_default_endpoint(e: &str) -> bool {
    if let Some(path) = e.strip_prefix("unix://") {
        return path.starts_with('/') || path.starts_with('@');
    }
    for prefix in ["127.0.0.1:", "0.0.0.0:", "[::1]:", "[::]:"] {
        if let Some(port) = e.strip_prefix(prefix) {
            return port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        }
    }
    false
}

pub(super) fn validate(cx: &mut Ctx<'_>, sc: &Sidecar) {
    if sc.workload_selector.is_none()
        && sc.ingress.is_empty()
        && sc.egress.is_empty()
        && sc.inbound_connection_pool.is_none()
        && sc.outbound_traffic_policy.is_none()
    {
        cx.error("spec", "sidecar: empty configuration provided");
    }
    if let Some(sel) = &sc.workload_selector {
        validate_workload_selector(
            cx,
            "spec.workloadSelector.labels",
            &sel.labels,
            "sidecar: workload selector specified without labels, will be applied to all services in namespace",
        );
    }
    let mut ports = HashSet::new();
    for (i, ing) in sc.ingress.iter().enumerate() {
        let p = format!("spec.ingress[{i}]");
        match &ing.port {
            None => {
                cx.error(&p, "sidecar: port is required for ingress listeners");
            }
            Some(port) => {
                let is_uds = ing
                    .bind
                    .as_deref()
                    .is_some_and(|b| b.starts_with("unix://"));
                if port.number == 0 && !is_uds {
                    cx.error(
                        &format!("{p}.port.number"),
                        "sidecar: ports with 0 value must have a unix domain socket bind address",
                    );
                } else if port.number != 0 {
                    cx.check(&format!("{p}.port.number"), validate_port(port.number));
                }
                if port.target_port.is_some() {
                    cx.error(
                        &format!("{p}.port.targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                if !port.protocol.is_empty()
                    && !super::service_entry::is_known_protocol(&port.protocol)
                {
                    cx.error(
                        &format!("{p}.port.protocol"),
                        format!("unsupported protocol: {}", port.protocol),
                    );
                }
                let key = (ing.bind.clone().unwrap_or_default(), port.number);
                if !ports.insert(key) {
                    cx.error(
                        &format!("{p}.port"),
                        "sidecar: ports on IP bound listeners must be unique",
                    );
                }
            }
        }
        if let Some(b) = &ing.bind {
            if !b.starts_with("unix://") && !is_ip(b) {
                cx.error(
                    &format!("{p}.bind"),
                    format!("sidecar: {b} is not a valid IP"),
                );
            }
        }
        if let Some(e) = &ing.default_endpoint {
            if !e.is_empty() && !valid_default_endpoint(e) {
                cx.error(
                    &format!("{p}.defaultEndpoint"),
                    "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
                );
            }
        }
        if let Some(tls) = &ing.tls {
            let tp = format!("{p}.tls");
            if !matches!(tls.mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
                let mode = match tls.mode {
                    ServerTlsMode::Passthrough => "PASSTHROUGH",
                    ServerTlsMode::AutoPassthrough => "AUTO_PASSTHROUGH",
                    ServerTlsMode::IstioMutual => "ISTIO_MUTUAL",
                    ServerTlsMode::OptionalMutual => "OPTIONAL_MUTUAL",
                    ServerTlsMode::Simple => "SIMPLE",
                    ServerTlsMode::Mutual => "MUTUAL",
                };
                cx.error(
                    &format!("{tp}.mode"),
                    format!("configuration is invalid: cannot set mode to {mode} in sidecar ingress tls"),
                );
            }
            if !tls.subject_alt_names.is_empty() {
                cx.error(
                    &tp,
                    "sidecar: subjectAltNames is not supported in ingress tls",
                );
            }
            if tls.https_redirect {
                cx.error(&tp, "sidecar: httpsRedirect is not supported");
            }
            if tls.credential_name.is_some() {
                cx.error(&tp, "sidecar: credentialName is not currently supported");
            }
            super::gateway::validate_server_tls(cx, &tp, tls);
        }
        if let Some(cp) = &ing.connection_pool {
            validate_connection_pool(cx, &format!("{p}.connectionPool"), cp);
        }
    }

    let mut portless = 0;
    let mut egress_ports = HashSet::new();
    for (i, eg) in sc.egress.iter().enumerate() {
        let p = format!("spec.egress[{i}]");
        match &eg.port {
            None => {
                portless += 1;
                if portless > 1 {
                    cx.error(
                        &p,
                        "sidecar: egress can have only one listener with empty port",
                    );
                } else if i != sc.egress.len() - 1 {
                    cx.error(&p, "sidecar: the egress listener with empty port should be the last listener in the list");
                }
            }
            Some(port) => {
                let is_uds = eg.bind.as_deref().is_some_and(|b| b.starts_with("unix://"));
                if port.number == 0 && !is_uds {
                    cx.error(
                        &format!("{p}.port.number"),
                        "sidecar: ports with 0 value must have a unix domain socket bind address",
                    );
                } else if port.number != 0 {
                    cx.check(&format!("{p}.port.number"), validate_port(port.number));
                }
                if port.target_port.is_some() {
                    cx.error(
                        &format!("{p}.port.targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                if !egress_ports.insert((eg.bind.clone().unwrap_or_default(), port.number)) {
                    cx.error(
                        &format!("{p}.port"),
                        "sidecar: ports on IP bound listeners must be unique",
                    );
                }
            }
        }
        if let Some(b) = &eg.bind {
            if !b.starts_with("unix://") && !is_ip(b) {
                cx.error(
                    &format!("{p}.bind"),
                    format!("sidecar: {b} is not a valid IP"),
                );
            }
        }
        if eg.hosts.is_empty() {
            cx.error(
                &format!("{p}.hosts"),
                "sidecar: egress listener must contain at least one host",
            );
        }
        let mut seen = HashSet::new();
        let has_all = eg.hosts.iter().any(|h| h == "*/*");
        for (j, h) in eg.hosts.iter().enumerate() {
            let hp = format!("{p}.hosts[{j}]");
            cx.check(&hp, validate_namespace_slash_wildcard_hostname(h, false));
            if !seen.insert(h.as_str()) {
                cx.warn(&hp, format!("duplicated egress host: {h}"));
            }
        }
        if has_all && eg.hosts.len() > 1 {
            cx.warn(
                &format!("{p}.hosts"),
                "`*/*` host select all resources, no other hosts can be added",
            );
        }
    }
    if let Some(cp) = &sc.inbound_connection_pool {
        validate_connection_pool(cx, "spec.inboundConnectionPool", cp);
    }
    if let Some(otp) = &sc.outbound_traffic_policy {
        if otp.mode == OutboundMode::AllowAnyDynamicDns {
            cx.error(
                "spec.outboundTrafficPolicy.mode",
                "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
            );
        }
        if let Some(ep) = &otp.egress_proxy {
            if otp.mode != OutboundMode::AllowAny {
                cx.error(
                    "spec.outboundTrafficPolicy.egressProxy",
                    "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode",
                );
            }
            super::virtual_service::validate_destination(
                cx,
                "spec.outboundTrafficPolicy.egressProxy",
                ep,
            );
        }
    }
}
