//! VirtualService checks (istiod `ValidateVirtualService`, spec §2).

use super::common::*;
use super::{Ctx, Help};
use crate::diag::{codes, Severity};
use crate::model::{
    host, CorsPolicy, Destination, HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest,
    HttpRetry, HttpRoute, Percent, RouteDestination, VirtualService,
};

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The status codes Go's `http.StatusText` knows (a retryOn integer must be one).
fn is_known_status(code: u32) -> bool {
    matches!(code,
        100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429
        | 431 | 451 | 500..=508 | 510 | 511)
}

/// istiod's range check lets status 600 through (its message says 200-599), but Envoy's
/// `FaultAbort.http_status` and `DirectResponseAction.status` end at 599: Envoy rejects the
/// routes of the port and keeps the ones it had.
fn envoy_refuses_600(cx: &mut Ctx<'_>, path: &str) {
    cx.lint_warn(
        path,
        "HTTP status 600 passes istiod's check, but Envoy accepts at most 599: it rejects the routes of this port with it and keeps its previous ones",
    );
}

/// istioctl's `Deprecated` message (IST0002): a deprecated field in use.
const DEPRECATED: &str = "IST0002";

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

pub(super) fn validate(cx: &mut Ctx<'_>, vs: &VirtualService) {
    let is_delegate = vs.hosts.is_empty();
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    // istiod's isGateway: no `mesh` among the gateways (true for an empty list)
    let no_mesh_gateway = !vs.gateways.iter().any(|g| g == "mesh");
    let applies_to_gateway = !vs.gateways.is_empty() && no_mesh_gateway;
    // istiod's isSniHost: some TLS match has sniHosts
    let has_sni_hosts = vs
        .tls
        .iter()
        .any(|r| r.matches.iter().any(|m| !m.sni_hosts.is_empty()));

    if is_delegate {
        if !vs.gateways.is_empty() {
            cx.error(
                "spec.gateways",
                "delegate virtual service must have no gateways specified",
            );
        }
        if !vs.tls.is_empty() {
            cx.error(
                "spec.tls",
                "delegate virtual service must have no tls route specified",
            );
        }
        if !vs.tcp.is_empty() {
            cx.error(
                "spec.tcp",
                "delegate virtual service must have no tcp route specified",
            );
        }
    }

    let mut all_hosts_valid = true;
    for (i, h) in vs.hosts.iter().enumerate() {
        let p = format!("spec.hosts[{i}]");
        let checked = if applies_to_gateway {
            validate_wildcard_domain_for_gateway(has_sni_hosts, h)
        } else {
            validate_wildcard_domain(h)
        };
        if let Err(e) = checked {
            if !is_ip(h) {
                cx.error(&p, e);
                all_hosts_valid = false;
            }
        } else if applies_to_mesh && h == "*" {
            cx.error(
                &p,
                "wildcard host * is not allowed for virtual services bound to the mesh gateway",
            );
            all_hosts_valid = false;
        }
    }
    if all_hosts_valid {
        // istiod compares host.Name values as written (case-sensitive)
        for i in 0..vs.hosts.len() {
            for j in i + 1..vs.hosts.len() {
                if host::matches(&vs.hosts[i], &vs.hosts[j]) {
                    cx.error(
                        &format!("spec.hosts[{j}]"),
                        format!(
                            "duplicate hosts in virtual service: {} & {}",
                            vs.hosts[i], vs.hosts[j]
                        ),
                    );
                }
            }
        }
    }

    validate_gateway_names(cx, "spec.gateways", &vs.gateways);
    validate_export_to(cx, "spec.exportTo", &vs.export_to, false, false);

    if vs.http.is_empty() && vs.tls.is_empty() && vs.tcp.is_empty() {
        cx.error(
            "spec",
            "http, tcp or tls must be provided in virtual service",
        );
    }

    for (i, r) in vs.http.iter().enumerate() {
        validate_http_route(
            cx,
            &format!("spec.http[{i}]"),
            r,
            is_delegate,
            applies_to_mesh,
            &vs.gateways,
        );
    }
    analyze_unreachable_http_rules(cx, &vs.http);
    let tcp: Vec<&[crate::model::L4MatchAttributes]> =
        vs.tcp.iter().map(|r| r.matches.as_slice()).collect();
    analyze_unreachable_l4(cx, "tcp", &tcp);
    let tls: Vec<&[crate::model::TlsMatchAttributes]> =
        vs.tls.iter().map(|r| r.matches.as_slice()).collect();
    analyze_unreachable_l4(cx, "tls", &tls);

    for (i, r) in vs.tls.iter().enumerate() {
        let p = format!("spec.tls[{i}]");
        if r.matches.is_empty() {
            cx.error(&p, "TLS route must have at least one match condition");
        }
        for (j, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{j}]");
            if m.sni_hosts.is_empty() {
                cx.error(&mp, "TLS match must have at least one SNI host");
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                let sp = format!("{mp}.sniHosts[{k}]");
                if is_ip(sni) {
                    cx.warn(
                        &sp,
                        format!("using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"),
                    );
                    continue;
                }
                let checked = if no_mesh_gateway {
                    validate_wildcard_domain_for_gateway(true, sni)
                } else {
                    validate_wildcard_domain(sni)
                };
                if let Err(e) = checked {
                    cx.error(&sp, e);
                    continue;
                }
                // istiod compares the names as written (no short-name resolution).
                let ok = vs.hosts.iter().any(|h| host::subset_of(sni, h));
                if !ok && !vs.hosts.is_empty() {
                    cx.error(
                        &sp,
                        format!(
                            "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
                            vs.hosts.join(", ")
                        ),
                    );
                }
            }
            validate_l4_common(
                cx,
                &mp,
                &m.destination_subnets,
                m.port,
                &m.source_labels,
                &m.gateways,
                m.source_namespace.as_deref(),
            );
        }
        validate_route_destinations(cx, &p, &r.route, "TLS route is required");
    }

    for (i, r) in vs.tcp.iter().enumerate() {
        let p = format!("spec.tcp[{i}]");
        for (j, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{j}]");
            validate_l4_common(
                cx,
                &mp,
                &m.destination_subnets,
                m.port,
                &m.source_labels,
                &m.gateways,
                m.source_namespace.as_deref(),
            );
            // istiod's validateTCPMatch does not check the (hidden) sourceSubnet, and
            // inmesh does not match on it
            if let Some(e) = m
                .source_subnet
                .as_deref()
                .and_then(|s| validate_ip_or_cidr(s).err())
            {
                cx.lint_warn(
                    &format!("{mp}.sourceSubnet"),
                    format!("{e}: inmesh ignores sourceSubnet, so this match applies to connections from any address"),
                );
            }
        }
        validate_route_destinations(cx, &p, &r.route, "TCP route is required");
    }
}

/// The host form of `outbound_.<port>_.<subset>_.<hostname>` (istiod's
/// `outboundHostNameFormat`).
const OUTBOUND_HOST_NAME_FORMAT: &str = "outbound_.<port>_._.<hostname>";

/// istiod's `ValidateWildcardDomainForVirtualServiceBoundToGateway`: with `sni`, the SNI that
/// AUTO_PASSTHROUGH gateways route on (`outbound_.<port>_.<subset>_.<hostname>`) is accepted
/// too; otherwise a wildcard domain.
fn validate_wildcard_domain_for_gateway(sni: bool, domain: &str) -> Result<(), String> {
    if sni && domain.starts_with("outbound_") {
        if domain.len() > 255 {
            return Err(format!("domain name {domain:?} too long (max 255)"));
        }
        // parseAutoGeneratedSNIDomain
        let parts: Vec<&str> = domain.split('_').collect();
        if parts.len() < 4 {
            return Err(format!(
                "domain name {domain} invalid, should follow '{OUTBOUND_HOST_NAME_FORMAT}' format"
            ));
        }
        let port = parts[1].trim_matches('.');
        let hostname = parts[3].trim_matches('.');
        // istiod matches `([0-9].*)` and `([a-zA-Z].*)` unanchored
        if !port.bytes().any(|c| c.is_ascii_digit()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {port:?} invalid). should follow {OUTBOUND_HOST_NAME_FORMAT} format"
            ));
        }
        if !hostname.bytes().any(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {OUTBOUND_HOST_NAME_FORMAT} format"
            ));
        }
        return Ok(());
    }
    validate_wildcard_domain(domain)
}

#[allow(clippy::too_many_arguments)]
fn validate_l4_common(
    cx: &mut Ctx<'_>,
    mp: &str,
    subnets: &[String],
    port: Option<u32>,
    source_labels: &std::collections::BTreeMap<String, String>,
    gateways: &[String],
    source_namespace: Option<&str>,
) {
    for (k, s) in subnets.iter().enumerate() {
        cx.check(
            &format!("{mp}.destinationSubnets[{k}]"),
            validate_ip_or_cidr(s),
        );
    }
    // istiod skips a zero port (`if match.Port != 0`)
    if let Some(p) = port.filter(|p| *p != 0) {
        cx.check(&format!("{mp}.port"), validate_port(p));
    }
    validate_labels(cx, &format!("{mp}.sourceLabels"), source_labels);
    validate_gateway_names(cx, &format!("{mp}.gateways"), gateways);
    // (istiod checks `sourceNamespace` on HTTP matches only: `validateTLSMatch` and
    // `validateTCPMatch` do not look at it)
    let _ = source_namespace;
}

fn validate_route_destinations(
    cx: &mut Ctx<'_>,
    p: &str,
    route: &[RouteDestination],
    required: &str,
) {
    if route.is_empty() {
        cx.error(&format!("{p}.route"), required);
        return;
    }
    let mut total: i64 = 0;
    for (k, d) in route.iter().enumerate() {
        let dp = format!("{p}.route[{k}]");
        validate_destination(cx, &format!("{dp}.destination"), &d.destination);
        let w = d.weight.unwrap_or(0);
        if w < 0 {
            cx.error(&format!("{dp}.weight"), format!("weight {w} < 0"));
        }
        total += i64::from(w);
    }
    if route.len() > 1 && total == 0 {
        cx.error(&format!("{p}.route"), "total destination weight = 0");
    }
}

/// `validateDestination`.
pub(super) fn validate_destination(cx: &mut Ctx<'_>, p: &str, d: &Destination) {
    let hp = format!("{p}.host");
    if d.host.is_empty() && cx.obj.source.locate(p).is_none() {
        cx.error(p, "destination is required")
            .help("set `destination: {host: <service>}`");
    } else if d.host.is_empty() {
        cx.error(&hp, "empty domain name not allowed")
            .help("set `host` to a service host name such as `reviews`");
    } else if d.host == "*" {
        cx.error(&hp, format!("invalid destination host {}", d.host));
    } else if let Err(e) = validate_wildcard_domain(&d.host) {
        let help = if d.host.starts_with('/') {
            Some("a destination host is a service name such as `reviews` or `reviews.default.svc.cluster.local`; to match a path use `match: [{uri: {prefix: ...}}]`")
        } else {
            None
        };
        let diag = cx.error(&hp, e);
        if let Some(h) = help {
            diag.help(h);
        }
    }
    if let Some(s) = &d.subset {
        let sp = format!("{p}.subset");
        if s.is_empty() {
            cx.error(&sp, "subset name cannot be empty");
        } else if !is_dns1123_label(s) {
            cx.error(&sp, format!("subset name is invalid: {s}"));
        }
    }
    if let Some(port) = &d.port {
        cx.check(&format!("{p}.port.number"), validate_port(port.number));
    }
}

fn validate_http_route(
    cx: &mut Ctx<'_>,
    p: &str,
    r: &HttpRoute,
    is_delegate: bool,
    applies_to_mesh: bool,
    vs_gateways: &[String],
) {
    // Conflicts (validateHTTPRouteConflict): a root route (with `delegate`) may only not have
    // route/redirect; other routes get the full conflict checks.
    let is_root = !is_delegate && r.delegate.is_some();
    if is_root {
        let name = r.name.clone().unwrap_or_default();
        if r.redirect.is_some() {
            cx.error(
                p,
                format!("root HTTP route {name} must not specify redirect"),
            );
        }
        if !r.route.is_empty() {
            cx.error(p, format!("root HTTP route {name} must not specify route"));
        }
    } else {
        if is_delegate && r.delegate.is_some() {
            cx.error(
                &format!("{p}.delegate"),
                "delegate HTTP route cannot contain delegate",
            );
        }
        validate_route_conflicts(cx, p, r);
    }

    // Matches.
    for (i, m) in r.matches.iter().enumerate() {
        validate_http_match(
            cx,
            &format!("{p}.match[{i}]"),
            m,
            applies_to_mesh,
            vs_gateways,
        );
    }

    if let Some(d) = &r.delegate {
        // istiod's webhook does not check the name; no VirtualService can have it, so the
        // route delegates to nothing and istiod drops it
        if d.name.is_empty() {
            cx.lint_warn(
                &format!("{p}.delegate.name"),
                "delegate has no name: it names no VirtualService, and the route is dropped",
            );
        } else if !is_dns1123_subdomain(&d.name) {
            cx.lint_warn(
                &format!("{p}.delegate.name"),
                format!(
                    "delegate name {:?} is not a valid VirtualService name: the route is dropped",
                    d.name
                ),
            );
        }
        if let Some(ns) = &d.namespace
            && !ns.is_empty()
            && !is_dns1123_label(ns)
        {
            cx.lint_warn(
                &format!("{p}.delegate.namespace"),
                format!("delegate namespace {ns:?} is not a valid namespace: the route is dropped"),
            );
        }
    }

    // Route-level headers, after the rewrite's authority (istiod's validateAuthorityRewrite
    // starts from it)
    let mut authority: Option<String> = r.rewrite.as_ref().and_then(|rw| rw.authority.clone());
    if let Some(h) = &r.headers {
        validate_headers(cx, &format!("{p}.headers"), h, &mut authority);
    }
    if let Some(rw) = &r.rewrite {
        let rp = format!("{p}.rewrite");
        // (istiod tests the strings for emptiness: `uri: ""` is unset)
        let uri = rw.uri.as_deref().is_some_and(|u| !u.is_empty());
        let authority = rw.authority.as_deref().is_some_and(|a| !a.is_empty());
        if uri && rw.uri_regex_rewrite.is_some() {
            cx.error(
                &rp,
                "rewrite may only contain one of URI or UriRegexRewrite",
            );
        }
        if !uri && rw.uri_regex_rewrite.is_none() && !authority {
            cx.error(
                &rp,
                "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified",
            );
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            let rp2 = format!("{rp}.uriRegexRewrite");
            if rr.matcher.is_empty() || rr.rewrite.is_empty() {
                cx.error(
                    &rp2,
                    "UriRegexRewrite has errors\nUriRegexRewrite requires both Rewrite and Match fields to be specified",
                );
            } else if rr.matcher.len() > 1024 {
                cx.error(
                    &format!("{rp2}.match"),
                    "UriRegexRewrite has errors\n\"HTTPRewrite.UriRegexRewrite.Match\": regex is too large, max length allowed is 1024",
                );
            } else if let Err(e) = validate_regex(&rr.matcher) {
                cx.error(
                    &format!("{rp2}.match"),
                    format!(
                        "UriRegexRewrite has errors\n\"HTTPRewrite.UriRegexRewrite.Match\": {e}"
                    ),
                );
            }
        }
    }

    // Destinations (validateHTTPRouteDestinations).
    let mut total: i64 = 0;
    for (i, d) in r.route.iter().enumerate() {
        let dp = format!("{p}.route[{i}]");
        validate_destination(cx, &format!("{dp}.destination"), &d.destination);
        let w = d.weight.unwrap_or(0);
        if w < 0 {
            cx.error(&format!("{dp}.weight"), format!("weight {w} < 0"));
        }
        total += i64::from(w);
        if let Some(h) = &d.headers {
            // istiod checks the authority rewrite against route-level headers only.
            let mut dest_authority = None;
            validate_headers(cx, &format!("{dp}.headers"), h, &mut dest_authority);
        }
    }
    if r.route.len() > 1 && total == 0 {
        cx.error(&format!("{p}.route"), "total destination weight = 0").help(
            "weights are relative and an unset weight is 0: give each destination a weight (e.g. 80 and 20)",
        );
    } else if r.route.len() > 1 && r.route.iter().any(|d| d.weight.unwrap_or(0) == 0) {
        cx.with_code(
            Severity::Info,
            codes::LINT,
            &format!("{p}.route"),
            "a destination without a weight gets no traffic when several destinations are listed",
        );
    }

    if let Some(t) = r.timeout {
        cx.check(&format!("{p}.timeout"), validate_duration(t));
    }
    if let Some(rt) = &r.retries {
        validate_retries(cx, &format!("{p}.retries"), rt);
    }
    if let Some(f) = &r.fault {
        validate_fault(cx, &format!("{p}.fault"), f);
    }
    if let Some(m) = &r.mirror {
        validate_destination(cx, &format!("{p}.mirror"), m);
    }
    if let Some(mp) = &r.mirror_percentage {
        validate_mirror_percentage(
            cx,
            &format!("{p}.mirrorPercentage"),
            "mirror_percentage",
            mp,
        );
    }
    if r.mirror_percent.is_some() {
        cx.warn(
            &format!("{p}.mirrorPercent"),
            "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead",
        );
    }
    if let Some(mp) = r.mirror_percent
        && mp > 100
    {
        cx.error(
            &format!("{p}.mirrorPercent"),
            format!("mirror_percent must have a max value of 100 (it has {mp})"),
        );
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let mp = format!("{p}.mirrors[{i}]");
        validate_destination(cx, &format!("{mp}.destination"), &m.destination);
        if let Some(pc) = &m.percentage {
            validate_mirror_percentage(cx, &format!("{mp}.percentage"), "mirror percentage", pc);
        }
    }
    if let Some(rd) = &r.redirect {
        let rp = format!("{p}.redirect");
        if rd.uri.is_some() && rd.prefix_rewrite.is_some() {
            cx.error(
                &rp,
                "redirect may only specify one of uri or prefix_rewrite",
            );
        }
        if rd.prefix_rewrite.is_some()
            && r.matches
                .iter()
                .any(|m| m.uri.as_ref().is_some_and(|u| u.prefix.is_none()))
        {
            cx.error(
                &rp,
                "redirect prefix_rewrite requires all URI matches to use prefix match type",
            );
        }
        if rd.uri.as_deref().is_none_or(str::is_empty)
            && rd.authority.is_none()
            && rd.scheme.is_none()
            && rd.port.is_none()
            && rd.derive_port.is_none()
            && rd.prefix_rewrite.is_none()
        {
            cx.error(&rp, "redirect must specify URI, authority, scheme, or port");
        }
        // (istiod checks the range only when the code is not 0, proto3's unset)
        if let Some(code) = rd.redirect_code.filter(|c| *c != 0) {
            if !(300..=399).contains(&code) {
                cx.error(
                    &format!("{rp}.redirectCode"),
                    format!("{code} is not a valid redirect code, must be 3xx"),
                );
            } else if !matches!(code, 301 | 302 | 303 | 307 | 308) {
                cx.lint_warn(
                    &format!("{rp}.redirectCode"),
                    format!("redirect code {code} is not supported by Envoy (301, 302, 303, 307, 308): istiod gives the route no action, and Envoy rejects the routes of this port with it and keeps its previous ones (this mesh drops the route)"),
                );
            }
        }
        if let Some(s) = &rd.scheme
            && !s.is_empty()
            && s != "http"
            && s != "https"
        {
            cx.error(
                &format!("{rp}.scheme"),
                "invalid redirect scheme, must be \"http\" or \"https\"",
            );
        }
        if let Some(port) = rd.port {
            // istiod checks the range only above 0 (`port: 0` is set, and redirects
            // nothing)
            if port != 0 {
                cx.check(&format!("{rp}.port"), validate_port(port));
            }
            if rd.derive_port.is_some() {
                cx.error(&rp, "redirect may only specify one of port or derivePort");
            }
        }
    }
    if let Some(dr) = &r.direct_response {
        let dp = format!("{p}.directResponse");
        if !(200..=600).contains(&dr.status) {
            cx.error(
                &format!("{dp}.status"),
                format!("HTTP status {} is not in range 200-599", dr.status),
            );
        } else if dr.status == 600 {
            envoy_refuses_600(cx, &format!("{dp}.status"));
        }
        if let Some(b) = &dr.body {
            if b.string.is_some() && b.bytes.is_some() {
                cx.error(
                    &format!("{dp}.body"),
                    "only one of string or bytes may be set in a direct response body",
                );
            }
            // a proto `bytes` field: the API server and istiod decode it as base64
            if let Some(bytes) = &b.bytes
                && crate::names::base64_decode(bytes, false).is_none()
            {
                cx.error(
                    &format!("{dp}.body.bytes"),
                    format!("invalid value for bytes field: {bytes:?} is not base64"),
                );
            }
            let len = b.string.as_ref().map_or(0, String::len)
                + b.bytes.as_ref().map_or(0, |s| s.len() * 3 / 4);
            if len > 1024 * 1024 {
                cx.error(&format!("{dp}.body"), "large direct_responses may impact control plane performance, must be less than 1MB");
            } else if len > 100 * 1024 {
                cx.warn(
                    &format!("{dp}.body"),
                    "large direct_responses may impact control plane performance",
                );
            }
        }
    }
    if let Some(c) = &r.cors_policy {
        validate_cors(cx, &format!("{p}.corsPolicy"), c);
    }
}

fn validate_route_conflicts(cx: &mut Ctx<'_>, p: &str, r: &HttpRoute) {
    if r.redirect.is_some() {
        if !r.route.is_empty() {
            cx.error(p, "HTTP route cannot contain both route and redirect");
        }
        if r.fault.is_some() {
            cx.error(p, "HTTP route cannot contain both fault and redirect");
        }
        if r.rewrite.is_some() {
            cx.error(
                p,
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if r.direct_response.is_some() {
            cx.error(
                p,
                "HTTP route rule cannot contain both direct_response and redirect",
            );
        }
    } else if r.direct_response.is_some() {
        if !r.route.is_empty() {
            cx.error(
                p,
                "HTTP route cannot contain both route and direct_response",
            );
        }
        if r.fault.is_some() {
            cx.error(
                p,
                "HTTP route cannot contain both fault and direct_response",
            );
        }
        if r.rewrite.is_some() {
            cx.error(
                p,
                "HTTP route rule cannot contain both rewrite and direct_response",
            );
        }
    } else if r.route.is_empty() {
        cx.error(p, "HTTP route, redirect or direct_response is required");
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        cx.error(p, "HTTP route cannot contain both mirror and mirrors");
    }
}

fn validate_mirror_percentage(cx: &mut Ctx<'_>, p: &str, what: &str, pc: &Percent) {
    if pc.value > 100.0 {
        cx.error(
            p,
            format!(
                "{what} must have a max value of 100 (it has {:.6})",
                pc.value
            ),
        );
    } else if pc.value < 0.0 {
        cx.error(
            p,
            format!("{what} must have a min value of 0 (it has {:.6})", pc.value),
        );
    }
}

fn validate_http_match(
    cx: &mut Ctx<'_>,
    mp: &str,
    m: &HttpMatchRequest,
    applies_to_mesh: bool,
    vs_gateways: &[String],
) {
    if let Some(u) = &m.uri {
        validate_string_match(cx, &format!("{mp}.uri"), "uri", u, true);
    }
    for (name, sm) in [
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            validate_string_match(cx, &format!("{mp}.{name}"), name, sm, false);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map.iter() {
            let hp = format!("{mp}.{field}.{name}");
            let claim = crate::route::jwt_claim_path(name).is_some();
            if claim {
                // istiod: only VirtualServices bound to gateways (and not to `mesh`) may route on
                // JWT claims.
                let applies_to_gateway =
                    !vs_gateways.is_empty() && !vs_gateways.iter().any(|g| g == "mesh");
                if !applies_to_gateway {
                    cx.error(
                        &hp,
                        format!(
                            "JWT claim based routing (key: {name}) is only supported for gateway, found no gateways: [{}]",
                            vs_gateways.join(" ")
                        ),
                    );
                }
                // Istio makes it an Envoy metadata matcher over a string matcher: with no
                // value (or `regex: "*"`), Envoy rejects the route configuration.
                if sm.kind().is_none() || sm.regex.as_deref() == Some("*") {
                    cx.error(
                        &hp,
                        format!(
                            "JWT claim match (key: {name}) needs exact, prefix or regex: Envoy has no presence match on claims and rejects an empty one"
                        ),
                    );
                }
            } else if let Err(e) = validate_match_header_name(name) {
                cx.error(&hp, e);
            }
            // `*` in withoutHeaders is a presence match, not a regex.
            if !((claim || field == "withoutHeaders") && sm.regex.as_deref() == Some("*")) {
                validate_string_match(cx, &hp, field, sm, false);
            }
            if field == "headers" {
                lint_header_looks_like_path(cx, &hp, name, sm);
            }
        }
    }
    for (name, sm) in &m.query_params {
        validate_string_match(
            cx,
            &format!("{mp}.queryParams.{name}"),
            "queryParams",
            sm,
            false,
        );
    }
    if let Some(port) = m.port.filter(|p| *p != 0) {
        cx.check(&format!("{mp}.port"), validate_port(port));
    }
    validate_labels(cx, &format!("{mp}.sourceLabels"), &m.source_labels);
    validate_gateway_names(cx, &format!("{mp}.gateways"), &m.gateways);
    if let Some(ns) = m.source_namespace.as_ref().filter(|ns| !ns.is_empty())
        && !is_dns1123_label(ns)
    {
        cx.error(
            &format!("{mp}.sourceNamespace"),
            format!("sourceNamespace match {ns} is invalid"),
        );
    }
    let _ = applies_to_mesh;
}

fn set_authority(cx: &mut Ctx<'_>, p: &str, authority: &mut Option<String>, value: &str) {
    if let Some(have) = authority {
        cx.error(p, format!("authority header cannot be set multiple times: have {have:?}, attempting to set {value:?}"));
    } else {
        *authority = Some(value.to_owned());
    }
}

fn validate_headers(cx: &mut Ctx<'_>, p: &str, h: &Headers, authority: &mut Option<String>) {
    if let Some(req) = &h.request {
        validate_header_ops(cx, &format!("{p}.request"), req, true, authority);
    }
    if let Some(resp) = &h.response {
        validate_header_ops(cx, &format!("{p}.response"), resp, false, authority);
    }
}

/// istiod's `ValidateHTTPHeaderNameOrJwtClaimRoute` (the JWT claim form is handled by the
/// caller): an HTTP/2 pseudo-header of RFC 7540, or an RFC 7230 token.
fn validate_match_header_name(name: &str) -> Result<(), String> {
    const PSEUDO_HEADERS: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":status"];
    if name.is_empty() {
        return Err("header name cannot be empty".to_owned());
    }
    if PSEUDO_HEADERS.contains(&name) || is_header_name(name) {
        return Ok(());
    }
    Err(format!("header name {name} is not a valid header name"))
}

/// Header operations, as istiod's `ValidateHTTPHeaderWithAuthorityOperationName` (request
/// set/add: the authority may be set once, other `:` names are refused) and
/// `ValidateHTTPHeaderOperationName` (the rest: no `:` names, no `host`). istiod does not
/// hold the names to the token syntax; inmesh cannot write a name that is not a token.
fn validate_header_ops(
    cx: &mut Ctx<'_>,
    p: &str,
    ops: &HeaderOperations,
    request: bool,
    authority: &mut Option<String>,
) {
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map.iter() {
            let hp = format!("{p}.{field}.{name}");
            let lower = name.to_ascii_lowercase();
            if request && (lower == "host" || lower == ":authority") {
                if let Err(e) = header_value_characters(value) {
                    cx.error(&hp, e);
                }
                set_authority(cx, &hp, authority, value);
                continue;
            }
            if validate_header_op_name(cx, &hp, name, request) {
                warn_unwritable_header_name(cx, &hp, name);
            }
            if let Err(e) = validate_header_value(value) {
                cx.error(&hp, e);
            } else if value.contains('%') {
                lint_header_value_operators(cx, &hp, value);
            }
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        let hp = format!("{p}.remove[{i}]");
        if validate_header_op_name(cx, &hp, name, false) {
            warn_unwritable_header_name(cx, &hp, name);
        }
    }
}

/// istiod's header operation name checks; true when the name passed.
fn validate_header_op_name(cx: &mut Ctx<'_>, hp: &str, name: &str, request_set: bool) -> bool {
    let err = if name.is_empty() {
        "header name cannot be empty".to_owned()
    } else if !request_set && name.eq_ignore_ascii_case("host") {
        format!("invalid header {name:?}: cannot set Host header")
    } else if name.starts_with(':') {
        format!("invalid header {name:?}: header cannot have \":\" prefix")
    } else {
        return true;
    };
    cx.error(hp, err);
    false
}

/// A header name istiod accepts but that is not an HTTP token (`x y`, `x/y`): inmesh's HTTP
/// stack cannot carry it, so the operation is skipped.
fn warn_unwritable_header_name(cx: &mut Ctx<'_>, hp: &str, name: &str) {
    if !is_header_name(name) {
        cx.with_code(
            Severity::Warning,
            codes::NOT_APPLIED,
            hp,
            format!(
                "header name {name:?} is not an HTTP token (RFC 7230): inmesh cannot write it and skips this operation"
            ),
        );
    }
}

/// Envoy's substitution operators, as the access log and header formatters know them.
const ENVOY_OPERATORS: &[&str] = &[
    "REQ",
    "RESP",
    "TRAILER",
    "REQ_WITHOUT_QUERY",
    "START_TIME",
    "START_TIME_LOCAL",
    "EMIT_TIME",
    "EMIT_TIME_LOCAL",
    "SYSTEM_TIME",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILERS_BYTES",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT",
    "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "PROTOCOL",
    "UPSTREAM_PROTOCOL",
    "RESPONSE_CODE",
    "RESPONSE_CODE_DETAILS",
    "CONNECTION_TERMINATION_DETAILS",
    "DURATION",
    "REQUEST_DURATION",
    "REQUEST_TX_DURATION",
    "RESPONSE_DURATION",
    "RESPONSE_TX_DURATION",
    "COMMON_DURATION",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "ROUNDTRIP_DURATION",
    "RESPONSE_FLAGS",
    "RESPONSE_FLAGS_LONG",
    "ROUTE_NAME",
    "VIRTUAL_CLUSTER_NAME",
    "UPSTREAM_HOST",
    "UPSTREAM_HOST_NAME",
    "UPSTREAM_HOST_NAME_WITHOUT_PORT",
    "UPSTREAM_CLUSTER",
    "UPSTREAM_CLUSTER_RAW",
    "UPSTREAM_LOCAL_ADDRESS",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_LOCAL_PORT",
    "UPSTREAM_REMOTE_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_REMOTE_PORT",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_TLS_SESSION_ID",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_LOCAL_SUBJECT",
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_CONNECTION_ID",
    "UPSTREAM_METADATA",
    "UPSTREAM_FILTER_STATE",
    "DOWNSTREAM_LOCAL_ADDRESS",
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_LOCAL_PORT",
    "DOWNSTREAM_REMOTE_ADDRESS",
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_REMOTE_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_PORT",
    "DOWNSTREAM_LOCAL_INTERFACE_NAME",
    "CONNECTION_ID",
    "REQUESTED_SERVER_NAME",
    "DOWNSTREAM_LOCAL_URI_SAN",
    "DOWNSTREAM_PEER_URI_SAN",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_PEER_IP_SAN",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "HOSTNAME",
    "LOCAL_REPLY_BODY",
    "FILTER_CHAIN_NAME",
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "FILTER_STATE",
    "METADATA",
    "ENVIRONMENT",
    "CEL",
    "TRACE_ID",
    "UNIQUE_ID",
    "STREAM_ID",
    "ACCESS_LOG_TYPE",
    "CUSTOM_FLAGS",
    "PATH",
    "QUERY_PARAM",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION",
];

/// Header value operators istiod accepts (it checks only that `%` pair up): one Envoy does
/// not know (or a bad argument) makes Envoy refuse the route configuration; a valid Envoy
/// operator inmesh does not expand is not applied. Either way inmesh skips the header.
fn lint_header_value_operators(cx: &mut Ctx<'_>, hp: &str, value: &str) {
    let Err(e) = crate::route::HeaderTemplate::parse(value) else {
        return;
    };
    let unsupported = e
        .strip_prefix("Not supported field in StreamInfo: ")
        .filter(|op| ENVOY_OPERATORS.contains(op));
    match unsupported {
        Some(op) => {
            cx.with_code(
                Severity::Warning,
                codes::NOT_APPLIED,
                hp,
                format!(
                    "header value {value:?}: inmesh does not expand the Envoy operator %{op}%, so it does not write this header"
                ),
            );
        }
        None => {
            cx.lint_warn(
                hp,
                format!(
                    "header value {value:?}: Envoy rejects it ({e}); the header is not written"
                ),
            );
        }
    }
}

/// istiod's `httpHeaderValueRegexp` (`^[^\u0000-\u0008\u000A-\u001F\u007F]*$`): no control
/// character but the tab, so a value cannot split a header line.
fn header_value_characters(v: &str) -> Result<(), String> {
    if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "header value configuration {v:?} is invalid: it contains a control character"
        ));
    }
    Ok(())
}

/// Envoy `%VAR%` substitution syntax: `%` must pair up (a `%` inside an operator's
/// parentheses, as in `%START_TIME(%s)%`, does not count), `%%` is a literal percent.
fn validate_header_value(v: &str) -> Result<(), String> {
    header_value_characters(v)?;
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if b.get(i + 1) == Some(&b'%') {
                i += 2;
                continue;
            }
            match crate::route::format::operator_end(&v[i + 1..]) {
                Some(end) if end > 0 => i += end + 2,
                _ => {
                    return Err(format!(
                        "header value configuration: invalid header value {v:?}: unmatched '%' (use %% for a literal percent)"
                    ))
                }
            }
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn validate_retries(cx: &mut Ctx<'_>, p: &str, rt: &HttpRetry) {
    if rt.attempts < 0 {
        cx.error(&format!("{p}.attempts"), "attempts cannot be negative");
    }
    // istiod tests `retryOn != ""`: an empty one (templated YAML) counts as unset
    if rt.attempts == 0
        && (rt.per_try_timeout.is_some()
            || rt.retry_on.as_deref().is_some_and(|on| !on.is_empty())
            || rt.retry_remote_localities.is_some())
    {
        cx.error(
            p,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    if let Some(t) = rt.per_try_timeout {
        cx.check(&format!("{p}.perTryTimeout"), validate_duration(t));
    }
    if let Some(b) = rt.backoff {
        cx.check(&format!("{p}.backoff"), validate_duration(b));
    }
    if let Some(on) = &rt.retry_on
        && !on.is_empty()
    {
        for policy in on.split(',') {
            let is_code = policy.parse::<u32>().is_ok_and(is_known_status);
            if !is_code && !RETRY_ON.contains(&policy) {
                let d = cx.error(
                    &format!("{p}.retryOn"),
                    format!("{policy:?} is not a valid retryOn policy"),
                );
                if policy.trim() != policy {
                    d.help("remove the spaces: retryOn is a comma-separated list without spaces");
                }
            }
        }
    }
}

fn validate_fault(cx: &mut Ctx<'_>, p: &str, f: &HttpFaultInjection) {
    if f.abort.is_none() && f.delay.is_none() {
        cx.error(p, "HTTP fault injection must have an abort and/or a delay");
    }
    if let Some(a) = &f.abort {
        let ap = format!("{p}.abort");
        if let Some(pc) = &a.percentage {
            cx.check(
                &format!("{ap}.percentage.value"),
                validate_percentage(pc.value),
            );
        } else {
            cx.with_code(
                Severity::Info,
                codes::LINT,
                &ap,
                "fault abort without `percentage` never fires (Istio treats it as 0%)",
            )
            .help("add `percentage: {value: 100}`");
        }
        let set = usize::from(a.http_status.is_some())
            + usize::from(a.grpc_status.is_some())
            + usize::from(a.http2_error.is_some());
        if set > 1 {
            cx.error(
                &ap,
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if let Some(s) = a.http_status {
            if !(200..=600).contains(&s) {
                cx.error(
                    &format!("{ap}.httpStatus"),
                    format!("HTTP status {s} is not in range 200-599"),
                );
            } else if s == 600 {
                envoy_refuses_600(cx, &format!("{ap}.httpStatus"));
            }
        } else if let Some(g) = &a.grpc_status {
            if crate::route::actions::grpc_code(g).is_none() {
                cx.error(
                    &format!("{ap}.grpcStatus"),
                    format!("gRPC status {g:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
                );
            }
        } else if a.http2_error.is_some() {
            cx.error(
                &format!("{ap}.http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        } else {
            cx.warn(&ap, "abort configured, but error type not set");
        }
    }
    if let Some(d) = &f.delay {
        let dp = format!("{p}.delay");
        if let Some(pc) = &d.percentage {
            cx.check(
                &format!("{dp}.percentage.value"),
                validate_percentage(pc.value),
            );
        } else if d.percent.is_none() {
            cx.with_code(
                Severity::Info,
                codes::LINT,
                &dp,
                "fault delay without `percentage` never fires (Istio treats it as 0%)",
            )
            .help("add `percentage: {value: 100}`");
        }
        if let Some(pc) = d.percent {
            // The CRD types the deprecated `percent` as a plain int32 and the webhook
            // range-checks `percentage` only: any value is accepted.
            let pp = format!("{dp}.percent");
            if pc > 0 {
                // istioctl's deprecation.FieldAnalyzer, for any positive `percent`
                cx.with_code(
                    Severity::Warning,
                    DEPRECATED,
                    &pp,
                    "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage",
                )
                .help(format!(
                    "write `percentage: {{value: {}}}` instead",
                    pc.min(100)
                ));
            }
            if d.percentage.is_none() && !(0..=100).contains(&pc) {
                let share = if pc > 100 { "every" } else { "no" };
                cx.lint_warn(
                    &pp,
                    format!("percent {pc} is not in range 0..100: inmesh delays {share} request"),
                );
            }
        }
        if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
            cx.error(&dp, "only one of fixedDelay or exponentialDelay may be set");
        }
        if let Some(fd) = d.fixed_delay {
            cx.check(&format!("{dp}.fixedDelay"), validate_duration(fd));
        } else if d.exponential_delay.is_some() {
            cx.error(
                &format!("{dp}.exponentialDelay"),
                "exponentialDelay not supported yet",
            );
        } else {
            // istiod accepts a delay without a type silently
            cx.lint_warn(
                &dp,
                "delay configured, but fixedDelay not set: no delay is applied",
            );
        }
    }
}

fn validate_cors(cx: &mut Ctx<'_>, p: &str, c: &CorsPolicy) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        let op = format!("{p}.allowOrigins[{i}]");
        let value = o
            .exact
            .as_deref()
            .or(o.prefix.as_deref())
            .or(o.regex.as_deref())
            .unwrap_or("");
        if value.is_empty() {
            cx.error(
                &op,
                format!("'{value}' is not a valid match type for CORS allow origins"),
            );
        } else if o.arms_set() > 1 {
            validate_string_match(cx, &op, "corsPolicy.allowOrigins", o, false);
        } else if let Some(r) = &o.regex {
            if r.len() > 1024 {
                cx.error(
                    &format!("{op}.regex"),
                    "\"corsPolicy.allowOrigins\": regex is too large, max length allowed is 1024",
                );
            } else if let Err(e) = validate_regex(r) {
                cx.error(
                    &format!("{op}.regex"),
                    format!("\"corsPolicy.allowOrigins\": {e}"),
                );
            }
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&m.as_str()) {
            cx.error(
                &format!("{p}.allowMethods[{i}]"),
                format!("{m:?} is not a supported HTTP method"),
            );
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && !is_header_name(h) {
                cx.error(
                    &format!("{p}.{field}[{i}]"),
                    format!("{h:?} is not a valid HTTP header name"),
                );
            }
        }
    }
    if let Some(a) = c.max_age {
        let ap = format!("{p}.maxAge");
        cx.check(&ap, validate_duration(a));
        if !a.is_sec_precision() {
            cx.error(
                &ap,
                "max_age duration is accurate only to seconds precision",
            );
        }
    }
}

fn route_name(i: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{i}"),
    }
}

fn warn_unused(cx: &mut Ctx<'_>, path: &str, rule: &str, reason: &str, help: Option<String>) {
    let d = cx.with_code(
        Severity::Warning,
        codes::VS_UNREACHABLE_RULE,
        path,
        // (istioctl analyze's message for the webhook's warning; istiod's own says
        // `virtualService rule ... not used (...)`)
        format!("VirtualService rule {rule} not used ({reason})."),
    );
    if let Some(h) = help {
        d.help(h);
    }
}

fn warn_ineffective(cx: &mut Ctx<'_>, path: &str, rule: &str, matchno: &str, dup: &str) {
    // (istioctl analyze reports it as info; the webhook warns)
    cx.with_code(
        Severity::Info,
        codes::VS_INEFFECTIVE_MATCH,
        path,
        format!(
            "VirtualService rule {rule} match {matchno} is not used (duplicate/overlapping match in rule {dup})."
        ),
    );
}

/// A prefix match reduced for overlap checks (istiod `genMatchHTTPRoutes`).
struct PrefixMatch {
    route: String,
    route_index: usize,
    matchno: String,
    match_index: usize,
    prefix: String,
    port: Option<u32>,
    method: String,
    authority: String,
    headers: std::collections::BTreeMap<String, String>,
    query: std::collections::BTreeMap<String, String>,
    without: std::collections::BTreeMap<String, String>,
}

fn exact_or_prefix(m: Option<&crate::model::StringMatch>) -> String {
    match m {
        Some(m) if m.exact.as_deref().is_some_and(|e| !e.is_empty()) => {
            format!("exact:{}", m.exact.as_deref().unwrap_or(""))
        }
        Some(m) if m.prefix.as_deref().is_some_and(|e| !e.is_empty()) => {
            format!("prefix:{}", m.prefix.as_deref().unwrap_or(""))
        }
        _ => String::new(),
    }
}

fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    if !b.prefix.starts_with(&a.prefix) || a.port != b.port {
        return false;
    }
    let value_ok = |va: &str, vb: &str| va == vb || va.starts_with(vb);
    if !value_ok(&a.method, &b.method) || !value_ok(&a.authority, &b.authority) {
        return false;
    }
    for (ma, mb) in [
        (&a.headers, &b.headers),
        (&a.query, &b.query),
        (&a.without, &b.without),
    ] {
        if ma.len() != mb.len() {
            return false;
        }
        for (k, va) in ma {
            match mb.get(k) {
                Some(vb) if value_ok(va, vb) => {}
                _ => return false,
            }
        }
    }
    true
}

/// `analyzeUnreachableHTTPRules`: IST0130 / IST0131 warnings, as istiod's webhook gives them.
fn analyze_unreachable_http_rules(cx: &mut Ctx<'_>, routes: &[HttpRoute]) {
    let mut empty_match_at: Option<usize> = None;
    let mut seen: Vec<(&HttpMatchRequest, usize)> = Vec::new();
    let mut prefixes: Vec<PrefixMatch> = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let name = route_name(i, r.name.as_deref());
        let p = format!("spec.http[{i}]");
        if r.matches.is_empty() {
            if let Some(prev) = empty_match_at {
                warn_unused(
                    cx,
                    &p,
                    &name,
                    "only the last rule can have no matches",
                    Some(format!(
                        "rule {} has no `match`, so it catches every request",
                        route_name(prev, routes[prev].name.as_deref())
                    )),
                );
            }
            empty_match_at = Some(i);
            continue;
        }
        let mut duplicates = 0;
        for (j, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{j}]");
            if let Some(prev) = empty_match_at {
                warn_unused(
                    cx,
                    &mp,
                    &name,
                    "route without matches defined before",
                    Some(format!(
                        "rule {} has no `match`, so it catches every request; move it last",
                        route_name(prev, routes[prev].name.as_deref())
                    )),
                );
                continue;
            }
            let matchno = route_name(j, m.name.as_deref());
            if let Some(&(_, dup)) = seen.iter().find(|(s, _)| same_match(s, m)) {
                duplicates += 1;
                let dup_name = route_name(dup, routes[dup].name.as_deref());
                warn_ineffective(cx, &mp, &name, &matchno, &dup_name);
                continue;
            }
            seen.push((m, i));
            if let Some(prefix) = m
                .uri
                .as_ref()
                .and_then(|u| u.prefix.as_deref())
                .filter(|p| !p.is_empty())
            {
                let mut method = exact_or_prefix(m.method.as_ref());
                if method.is_empty() {
                    method = "exact:GET".to_owned();
                }
                let map = |x: &std::collections::BTreeMap<String, crate::model::StringMatch>| {
                    x.iter()
                        .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
                        .collect()
                };
                prefixes.push(PrefixMatch {
                    route: name.clone(),
                    route_index: i,
                    matchno: matchno.clone(),
                    match_index: j,
                    prefix: prefix.to_owned(),
                    port: m.port,
                    method,
                    authority: exact_or_prefix(m.authority.as_ref()),
                    headers: map(&m.headers),
                    query: map(&m.query_params),
                    without: map(&m.without_headers),
                });
            }
        }
        if duplicates == r.matches.len() {
            warn_unused(cx, &p, &name, "all matches used by prior rules", None);
        }
    }
    for (ai, a) in prefixes.iter().enumerate() {
        for b in &prefixes[ai + 1..] {
            if a.prefix == b.prefix {
                continue;
            }
            if covered(a, b) {
                let path = format!("spec.http[{}].match[{}]", b.route_index, b.match_index);
                let matchno = format!("{} of prefix {}", b.matchno, b.prefix);
                let dup = format!("{} of prefix {} on {}", a.matchno, a.prefix, a.route);
                warn_ineffective(cx, &path, &b.route, &matchno, &dup);
            }
        }
    }
}

/// The same analysis for TCP and TLS routes (no names: `#i`).
fn analyze_unreachable_l4<M: PartialEq>(cx: &mut Ctx<'_>, kind: &str, routes: &[&[M]]) {
    let mut empty_match_at = false;
    let mut seen: Vec<(&M, usize)> = Vec::new();
    for (i, matches) in routes.iter().enumerate() {
        let name = format!("#{i}");
        let p = format!("spec.{kind}[{i}]");
        if matches.is_empty() {
            if empty_match_at {
                warn_unused(
                    cx,
                    &p,
                    &name,
                    "only the last rule can have no matches",
                    None,
                );
            }
            empty_match_at = true;
            continue;
        }
        let mut duplicates = 0;
        for (j, m) in matches.iter().enumerate() {
            let mp = format!("{p}.match[{j}]");
            if empty_match_at {
                warn_unused(cx, &mp, &name, "route without matches defined before", None);
                continue;
            }
            if let Some(&(_, dup)) = seen.iter().find(|(s, _)| *s == m) {
                duplicates += 1;
                warn_ineffective(cx, &mp, &name, &format!("#{j}"), &format!("#{dup}"));
            } else {
                seen.push((m, i));
            }
        }
        if duplicates == matches.len() {
            warn_unused(cx, &p, &name, "all matches used by prior rules", None);
        }
    }
}

fn same_match(a: &HttpMatchRequest, b: &HttpMatchRequest) -> bool {
    // Compare everything but the name.
    let mut a2 = a.clone();
    a2.name = b.name.clone();
    a2 == *b
}
