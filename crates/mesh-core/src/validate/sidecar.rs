//! Sidecar checks (istiod `ValidateSidecar`, spec §6).

use std::collections::{HashMap, HashSet};

use super::common::*;
use super::destination_rule::validate_connection_pool;
use super::gateway::{validate_server_tls, validate_unix_address};
use super::service_entry::is_known_protocol;
use super::Ctx;

use crate::gateway::is_http_protocol;
use crate::model::{CaptureMode, OutboundMode, Port, ServerTlsMode, Sidecar};

/// Go's `net.SplitHostPort`: `host:port` or `[v6]:port`, with Go's error text.
fn split_host_port(s: &str) -> Result<(&str, &str), String> {
    let fail = |why: &str| Err(format!("address {s}: {why}"));
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    // the port starts after the last colon
    let Some(i) = s.rfind(':') else {
        return fail(MISSING_PORT);
    };
    let (host, j, k) = if s.starts_with('[') {
        // the first ']' just before the last ':'
        let Some(end) = s.find(']') else {
            return fail("missing ']' in address");
        };
        if end + 1 == s.len() {
            return fail(MISSING_PORT);
        }
        if end + 1 != i {
            return fail(if s.as_bytes()[end + 1] == b':' {
                TOO_MANY_COLONS
            } else {
                MISSING_PORT
            });
        }
        (&s[1..end], 1, end + 1)
    } else {
        let host = &s[..i];
        if host.contains(':') {
            return fail(TOO_MANY_COLONS);
        }
        (host, 0, 0)
    };
    if s[j..].contains('[') {
        return fail("unexpected '[' in address");
    }
    if s[k..].contains(']') {
        return fail("unexpected ']' in address");
    }
    Ok((host, &s[i + 1..]))
}

fn validate_port_name_and_protocol(cx: &mut Ctx<'_>, pp: &str, port: &Port) {
    if !port.name.is_empty() && !is_dns1123_label(&port.name) {
        cx.error(
            &format!("{pp}.name"),
            format!("invalid port name: {}", port.name),
        );
    }
    if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
        cx.error(
            &format!("{pp}.protocol"),
            format!("unsupported protocol: {}", port.protocol),
        );
    }
}

pub(super) fn validate(cx: &mut Ctx<'_>, sc: &Sidecar) {
    // valid Istio that the in-process mesh has no listener for: said once, not silently
    // an ingress listener's connectionPool is applied by a MeshServer on that port (as is
    // inboundConnectionPool); where it listens and forwards to is the application's own
    if sc.ingress.iter().any(|l| {
        l.bind.is_some()
            || l.capture_mode != crate::model::CaptureMode::default()
            || l.default_endpoint.is_some()
            || l.tls.is_some()
    }) {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            "spec.ingress",
            "sidecar: ingress listeners' bind, captureMode, defaultEndpoint and tls are not applied by inmesh (the application serves its own ports; wrap them in a MeshServer); their connectionPool is",
        );
    }
    if sc
        .egress
        .iter()
        .any(|l| l.bind.is_some() || l.capture_mode != crate::model::CaptureMode::default())
    {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            "spec.egress",
            "sidecar: egress listeners' bind and captureMode are not applied by inmesh (the application calls through its MeshClient, not a listener); their hosts and port are",
        );
    }
    if let Some(sel) = &sc.workload_selector {
        // istiod returns the selector's errors alone
        if validate_workload_selector(
            cx,
            "spec.workloadSelector.labels",
            &sel.labels,
            "sidecar: workload selector specified without labels, will be applied to all services in namespace",
        ) {
            return;
        }
    }
    if sc.ingress.is_empty()
        && sc.egress.is_empty()
        && sc.inbound_connection_pool.is_none()
        && sc.outbound_traffic_policy.is_none()
    {
        cx.error("spec", "sidecar: empty configuration provided");
        return;
    }

    let mut ports = HashSet::new();
    for (i, ing) in sc.ingress.iter().enumerate() {
        let p = format!("spec.ingress[{i}]");
        let Some(port) = &ing.port else {
            cx.error(&p, "sidecar: port is required for ingress listeners");
            continue;
        };
        let pp = format!("{p}.port");
        if port.target_port.is_some_and(|t| t > 0) {
            cx.error(
                &format!("{pp}.targetPort"),
                "targetPort has no impact on Sidecars",
            );
        }
        validate_port_name_and_protocol(cx, &pp, port);
        cx.check(&format!("{pp}.number"), validate_port(port.number));
        if let Some(b) = ing.bind.as_deref().filter(|b| !b.is_empty())
            && !is_ip(b)
        {
            cx.error(&format!("{p}.bind"), format!("{b} is not a valid IP"));
        }
        if !ports.insert(port.number) {
            cx.error(&pp, "sidecar: ports on IP bound listeners must be unique");
        }
        if let Some(e) = ing.default_endpoint.as_deref().filter(|e| !e.is_empty()) {
            let ep = format!("{p}.defaultEndpoint");
            if let Some(path) = e.strip_prefix("unix://") {
                cx.check(&ep, validate_unix_address(path));
            } else {
                // istiod goes on after a split error, with an empty host and port
                let (host, port) = split_host_port(e).unwrap_or_else(|err| {
                    cx.error(&ep, err);
                    ("", "")
                });
                if !host.is_empty() && !matches!(host, "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
                    cx.error(
                        &ep,
                        "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset",
                    );
                }
                match go_atoi(port) {
                    Ok(n) => cx.check(&ep, validate_port_int(n)),
                    Err(err) => {
                        cx.error(
                            &ep,
                            format!(
                                "sidecar: defaultEndpoint port ({port}) is not a number: {err}"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(tls) = &ing.tls {
            let tp = format!("{p}.tls");
            if !tls.subject_alt_names.is_empty() {
                cx.error(
                    &tp,
                    "sidecar: subjectAltNames is not supported in ingress tls",
                );
            }
            if tls.https_redirect {
                cx.error(&tp, "sidecar: httpsRedirect is not supported");
            }
            if tls
                .credential_name
                .as_deref()
                .is_some_and(|c| !c.is_empty())
            {
                cx.error(&tp, "sidecar: credentialName is not currently supported");
            }
            if !tls.credential_names.is_empty() {
                cx.error(&tp, "sidecar: credentialNames is not currently supported");
            }
            if !tls.tls_certificates.is_empty() {
                cx.error(&tp, "sidecar: tls_certificates is not currently supported");
            }
            let bad_mode = match tls.mode {
                ServerTlsMode::IstioMutual => Some("ISTIO_MUTUAL"),
                ServerTlsMode::AutoPassthrough => Some("AUTO_PASSTHROUGH"),
                _ => None,
            };
            if let Some(mode) = bad_mode {
                cx.error(
                    &format!("{tp}.mode"),
                    format!("configuration is invalid: cannot set mode to {mode} in sidecar ingress tls"),
                );
            }
            let tls_port = port.protocol.eq_ignore_ascii_case("HTTPS")
                || port.protocol.eq_ignore_ascii_case("TLS");
            if !tls_port {
                cx.error(
                    &tp,
                    "server cannot have TLS settings for non HTTPS/TLS ports",
                );
            }
            validate_server_tls(cx, &tp, tls);
        }
        if let Some(cp) = &ing.connection_pool {
            validate_connection_pool(cx, &format!("{p}.connectionPool"), cp);
            if cp.http.is_some() && !is_http_protocol(&port.protocol) {
                cx.warn(
                    &format!("{p}.connectionPool.http"),
                    format!(
                        "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                        port.number, port.name, port.protocol
                    ),
                );
            }
        }
    }
    if let Some(cp) = &sc.inbound_connection_pool {
        validate_connection_pool(cx, "spec.inboundConnectionPool", cp);
    }

    let mut ports = HashSet::new();
    let mut uds = HashSet::new();
    let mut catch_all = false;
    for (i, eg) in sc.egress.iter().enumerate() {
        let p = format!("spec.egress[{i}]");
        match &eg.port {
            None => {
                if catch_all {
                    cx.error(
                        &p,
                        "sidecar: egress can have only one listener with empty port",
                    );
                    continue;
                }
                if i == sc.egress.len() - 1 {
                    catch_all = true;
                } else {
                    cx.error(
                        &p,
                        "sidecar: the egress listener with empty port should be the last listener in the list",
                    );
                }
            }
            Some(port) => {
                let pp = format!("{p}.port");
                if port.target_port.is_some_and(|t| t > 0) {
                    cx.error(
                        &format!("{pp}.targetPort"),
                        "targetPort has no impact on Sidecars",
                    );
                }
                let bind = eg.bind.as_deref().unwrap_or("");
                if !port.name.is_empty() && !is_dns1123_label(&port.name) {
                    cx.error(
                        &format!("{pp}.name"),
                        format!("invalid port name: {}", port.name),
                    );
                }
                if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
                    cx.error(
                        &format!("{pp}.protocol"),
                        format!("unsupported protocol: {}", port.protocol),
                    );
                }
                if port.number == 0 {
                    match bind.strip_prefix("unix://") {
                        None => {
                            cx.error(
                                &format!("{pp}.number"),
                                "sidecar: ports with 0 value must have a unix domain socket bind address",
                            );
                        }
                        Some(path) => cx.check(&format!("{p}.bind"), validate_unix_address(path)),
                    }
                    if !matches!(eg.capture_mode, CaptureMode::Default | CaptureMode::None) {
                        cx.error(
                            &format!("{p}.captureMode"),
                            "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
                        );
                    }
                    if !uds.insert(bind.to_owned()) {
                        cx.error(
                            &format!("{p}.bind"),
                            "sidecar: unix domain socket values for listeners must be unique",
                        );
                    }
                } else {
                    cx.check(&format!("{pp}.number"), validate_port(port.number));
                    if !bind.is_empty() && !is_ip(bind) {
                        cx.error(&format!("{p}.bind"), format!("{bind} is not a valid IP"));
                    }
                    if !ports.insert(port.number) {
                        cx.error(&pp, "sidecar: ports on IP bound listeners must be unique");
                    }
                }
            }
        }
        if eg.hosts.is_empty() {
            cx.error(
                &format!("{p}.hosts"),
                "sidecar: egress listener must contain at least one host",
            );
            continue;
        }
        let ns = cx.namespace().to_owned();
        let mut by_ns: HashMap<String, HashSet<&str>> = HashMap::new();
        for (j, h) in eg.hosts.iter().enumerate() {
            let hp = format!("{p}.hosts[{j}]");
            if let Some((hns, svc)) = h.split_once('/') {
                let key = if hns == "." {
                    ns.clone()
                } else {
                    hns.to_owned()
                };
                let set = by_ns.entry(key).or_default();
                let dup = if svc != "*" {
                    set.contains(svc) || set.contains("*")
                } else {
                    !set.is_empty()
                };
                if dup {
                    cx.warn(&hp, format!("duplicated egress host: {h}"));
                }
                set.insert(svc);
            }
            cx.check(&hp, validate_namespace_slash_wildcard_hostname(h, false));
        }
        if by_ns.get("*").is_some_and(|s| s.contains("*")) && by_ns.len() != 1 {
            cx.warn(
                &format!("{p}.hosts"),
                "`*/*` host select all resources, no other hosts can be added",
            );
        }
    }

    if let Some(otp) = &sc.outbound_traffic_policy {
        if otp.mode == OutboundMode::AllowAnyDynamicDns {
            cx.error(
                "spec.outboundTrafficPolicy.mode",
                "sidecar: ALLOW_ANY_DYNAMIC_DNS mode is only supported in MeshConfig, not in Sidecar resource",
            );
        }
        if let Some(ep) = &otp.egress_proxy {
            let path = "spec.outboundTrafficPolicy.egressProxy";
            if otp.mode != OutboundMode::AllowAny {
                cx.error(path, "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode");
                return;
            }
            cx.check(&format!("{path}.host"), validate_fqdn(&ep.host));
            if ep.port.is_none() {
                cx.error(path, "sidecar: egress_proxy port must be non-nil");
                return;
            }
            super::virtual_service::validate_destination(cx, path, ep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("127.0.0.1:8080"), Ok(("127.0.0.1", "8080")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert_eq!(split_host_port("127.0.0.1:"), Ok(("127.0.0.1", "")));
        let errors = [
            ("localhost", "address localhost: missing port in address"),
            ("::1:80", "address ::1:80: too many colons in address"),
            ("[::1]", "address [::1]: missing port in address"),
            ("[::1]x:80", "address [::1]x:80: missing port in address"),
            (
                "[::1]:80:90",
                "address [::1]:80:90: too many colons in address",
            ),
            ("[::1:80", "address [::1:80: missing ']' in address"),
            ("a[b:80", "address a[b:80: unexpected '[' in address"),
            ("a]b:80", "address a]b:80: unexpected ']' in address"),
        ];
        for (s, want) in errors {
            assert_eq!(split_host_port(s), Err(want.to_owned()), "{s}");
        }
    }
}
