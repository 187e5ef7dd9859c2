//! DestinationRule checks (istiod `ValidateDestinationRule`, spec §3).

use std::collections::HashSet;

use super::common::*;
use super::{Ctx, Help};
use crate::model::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule, H2UpgradePolicy,
    LoadBalancerSettings, LocalityLbSetting, OutlierDetection, TrafficPolicy,
};

pub(super) fn validate(cx: &mut Ctx<'_>, dr: &DestinationRule) {
    if let Err(e) = validate_wildcard_domain(&dr.host) {
        cx.error("spec.host", e);
    }
    let has_selector = dr.workload_selector.is_some();
    if let Some(sel) = &dr.workload_selector {
        validate_workload_selector(
            cx,
            "spec.workloadSelector.matchLabels",
            &sel.match_labels,
            "workload selector specified without labels",
        );
    }
    validate_export_to(cx, "spec.exportTo", &dr.export_to, false, has_selector);
    if let Some(tp) = &dr.traffic_policy {
        validate_traffic_policy(cx, "spec.trafficPolicy", tp);
    }
    let mut names = HashSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let p = format!("spec.subsets[{i}]");
        if s.name.is_empty() {
            cx.error(&format!("{p}.name"), "subset name cannot be empty");
        } else if !is_dns1123_label(&s.name) {
            cx.error(
                &format!("{p}.name"),
                format!("subset name is invalid: {}", s.name),
            );
        }
        if !names.insert(s.name.as_str()) {
            cx.error(
                &format!("{p}.name"),
                format!("duplicate subset names: {}", s.name),
            );
        }
        validate_labels(cx, &format!("{p}.labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            validate_traffic_policy(cx, &format!("{p}.trafficPolicy"), tp);
        }
    }
}

/// `validateTrafficPolicy`.
pub(super) fn validate_traffic_policy(cx: &mut Ctx<'_>, p: &str, tp: &TrafficPolicy) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
        && tp.tunnel.is_none()
        && tp.proxy_protocol.is_none()
        && tp.retry_budget.is_none()
    {
        cx.error(p, "traffic policy must have at least one field");
        return;
    }
    // istiod returns this error alone
    if tp.tunnel.is_some() && tp.proxy_protocol.is_some() {
        cx.error(p, "tunnel and proxyProtocol must not be set together");
        return;
    }
    // valid Istio the mesh client does not apply: said, not silently dropped
    for (field, set, what) in [
        (
            "proxyProtocol",
            tp.proxy_protocol.is_some(),
            "the mesh client writes no PROXY protocol header to the upstream",
        ),
        (
            "tunnel",
            tp.tunnel.is_some(),
            "the mesh client does not tunnel connections over HTTP CONNECT or POST",
        ),
        (
            "retryBudget",
            tp.retry_budget.is_some(),
            "concurrent retries are bounded by connectionPool.http.maxRetries only",
        ),
    ] {
        if set {
            cx.with_code(
                crate::diag::Severity::Warning,
                crate::diag::codes::NOT_APPLIED,
                &format!("{p}.{field}"),
                format!("trafficPolicy.{field} is not applied by inmesh: {what}"),
            );
        }
    }
    if let Some(od) = &tp.outlier_detection {
        validate_outlier_detection(cx, &format!("{p}.outlierDetection"), od);
    }
    if let Some(cp) = &tp.connection_pool {
        validate_connection_pool(cx, &format!("{p}.connectionPool"), cp);
    }
    if let Some(lb) = &tp.load_balancer {
        validate_load_balancer(
            cx,
            &format!("{p}.loadBalancer"),
            lb,
            tp.outlier_detection.is_some(),
        );
    }
    if let Some(tls) = &tp.tls {
        validate_client_tls(cx, &format!("{p}.tls"), tls);
    }
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = format!("{p}.portLevelSettings[{i}]");
        match &pl.port {
            None => {
                cx.error(&pp, "portTrafficPolicy must have valid port");
            }
            Some(port) => cx.check(&format!("{pp}.port.number"), validate_port(port.number)),
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            cx.error(&pp, "port traffic policy must have at least one field");
        }
        if let Some(od) = &pl.outlier_detection {
            validate_outlier_detection(cx, &format!("{pp}.outlierDetection"), od);
        }
        if let Some(cp) = &pl.connection_pool {
            validate_connection_pool(cx, &format!("{pp}.connectionPool"), cp);
        }
        if let Some(lb) = &pl.load_balancer {
            validate_load_balancer(
                cx,
                &format!("{pp}.loadBalancer"),
                lb,
                pl.outlier_detection.is_some(),
            );
        }
        if let Some(tls) = &pl.tls {
            validate_client_tls(cx, &format!("{pp}.tls"), tls);
        }
    }
    if let Some(t) = &tp.tunnel {
        let tp_ = format!("{p}.tunnel");
        if let Some(proto) = &t.protocol
            && proto != "CONNECT"
            && proto != "POST"
        {
            cx.error(
                &format!("{tp_}.protocol"),
                "tunnel protocol must be \"CONNECT\" or \"POST\"",
            );
        }
        if let Err(e) = validate_fqdn(&t.target_host)
            && !is_ip(&t.target_host)
        {
            cx.error(
                    &format!("{tp_}.targetHost"),
                    format!(
                        "tunnel target host must be valid FQDN or IP address: {e}; {} is not a valid IP",
                        t.target_host
                    ),
                );
        }
        if let Err(e) = validate_port(t.target_port) {
            cx.error(
                &format!("{tp_}.targetPort"),
                format!("tunnel target port is invalid: {e}"),
            );
        }
    }
    if let Some(rb) = &tp.retry_budget {
        let rp = format!("{p}.retryBudget");
        if let Some(pc) = rb.percent {
            cx.check(&format!("{rp}.percent"), validate_percentage(pc.0));
        }
        if let Some(d) = rb.budget_interval {
            cx.check(
                &format!("{rp}.budgetInterval"),
                validate_duration_or_zero(d),
            );
        }
    }
}

fn validate_outlier_detection(cx: &mut Ctx<'_>, p: &str, od: &OutlierDetection) {
    if od.consecutive_errors.is_some_and(|c| c != 0) {
        cx.warn(
            &format!("{p}.consecutiveErrors"),
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
        );
    }
    if let Some(c) = od.consecutive_errors
        && c < 0
    {
        cx.error(
            &format!("{p}.consecutiveErrors"),
            "outlier detection consecutive errors cannot be negative",
        );
    }
    if od.consecutive_local_origin_failures.is_some_and(|c| c > 0)
        && !od.split_external_local_origin_errors
    {
        cx.error(
            &format!("{p}.consecutiveLocalOriginFailures"),
            "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
        );
    }
    if let Some(d) = od.interval {
        cx.check(&format!("{p}.interval"), validate_duration(d));
    }
    if let Some(d) = od.base_ejection_time {
        cx.check(&format!("{p}.baseEjectionTime"), validate_duration(d));
    }
    if let Some(v) = od.max_ejection_percent {
        cx.check(
            &format!("{p}.maxEjectionPercent"),
            validate_percent_int(i64::from(v)),
        );
    }
    if let Some(v) = od.min_health_percent {
        cx.check(
            &format!("{p}.minHealthPercent"),
            validate_percent_int(i64::from(v)),
        );
    }
    for (i, c) in od.outlier_detection_http_error_codes.iter().enumerate() {
        if !(100..=599).contains(c) {
            cx.error(
                &format!("{p}.outlierDetectionHttpErrorCodes[{i}]"),
                format!("invalid HTTP status code {c}: must be in range 100-599"),
            );
        }
    }
    if !od.outlier_detection_http_error_codes.is_empty() {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            &format!("{p}.outlierDetectionHttpErrorCodes"),
            "outlierDetectionHttpErrorCodes is not applied by inmesh: consecutive5xxErrors \
             and consecutiveGatewayErrors count the 5xx answers as Envoy does by default",
        );
    }
}

/// `validateConnectionPool`.
pub(super) fn validate_connection_pool(cx: &mut Ctx<'_>, p: &str, cp: &ConnectionPoolSettings) {
    if cp.http.is_none() && cp.tcp.is_none() {
        cx.error(p, "connection pool must have at least one field");
    }
    if let Some(h) = &cp.http {
        let hp = format!("{p}.http");
        let ints = [
            (
                "http1MaxPendingRequests",
                h.http1_max_pending_requests,
                "http1 max pending requests",
            ),
            (
                "http2MaxRequests",
                h.http2_max_requests,
                "http2 max requests",
            ),
            (
                "maxRequestsPerConnection",
                h.max_requests_per_connection,
                "max requests per connection",
            ),
            ("maxRetries", h.max_retries, "max retries"),
            (
                "maxConcurrentStreams",
                h.max_concurrent_streams,
                "max concurrent streams",
            ),
        ];
        for (field, v, what) in ints {
            if v.is_some_and(|v| v < 0) {
                cx.error(
                    &format!("{hp}.{field}"),
                    format!("{what} must be non-negative"),
                );
            }
        }
        if let Some(d) = h.idle_timeout {
            cx.check(&format!("{hp}.idleTimeout"), validate_duration(d));
        }
        if h.use_client_protocol == Some(true)
            && h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
        {
            cx.error(
                &hp,
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            );
        }
        if let Some(ka) = &h.http2_keep_alive {
            let kp = format!("{hp}.http2KeepAlive");
            match ka.interval {
                None => {
                    cx.error(&kp, "http2 keepalive interval is required");
                }
                Some(d) => cx.check(&format!("{kp}.interval"), validate_duration(d)),
            }
            match ka.timeout {
                None => {
                    cx.error(&kp, "http2 keepalive timeout is required");
                }
                Some(d) => cx.check(&format!("{kp}.timeout"), validate_duration(d)),
            }
        }
    }
    if let Some(t) = &cp.tcp {
        let tp = format!("{p}.tcp");
        if t.max_connections.is_some_and(|v| v < 0) {
            cx.error(
                &format!("{tp}.maxConnections"),
                "max connections must be non-negative",
            );
        }
        if let Some(d) = t.connect_timeout {
            cx.check(&format!("{tp}.connectTimeout"), validate_duration(d));
        }
        if let Some(d) = t.max_connection_duration {
            cx.check(&format!("{tp}.maxConnectionDuration"), validate_duration(d));
        }
        // istiod skips the check when the value has no whole millisecond (`0s` disables
        // the timeout; so, truncated, does anything under 1ms)
        if let Some(d) = t.idle_timeout.filter(|d| d.as_nanos() / 1_000_000 != 0) {
            cx.check(&format!("{tp}.idleTimeout"), validate_duration(d));
        }
        if let Some(ka) = &t.tcp_keepalive {
            if let Some(d) = ka.time {
                cx.check(&format!("{tp}.tcpKeepalive.time"), validate_duration(d));
            }
            if let Some(d) = ka.interval {
                cx.check(&format!("{tp}.tcpKeepalive.interval"), validate_duration(d));
            }
        }
    }
}

/// istiod's `validateLocalities`: `region[/zone[/subzone]]`, at most one trailing `*`, no
/// overlaps.
fn validate_localities(localities: &[&str]) -> Result<(), String> {
    use std::collections::HashMap;
    let mut map: HashMap<&str, HashMap<&str, HashMap<&str, bool>>> = HashMap::new();
    for &loc in localities {
        let stars = loc.matches('*').count();
        if stars > 1 || (stars == 1 && !loc.ends_with('*')) {
            return Err(format!(
                "locality {loc} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        let overlap = || format!("locality {loc} overlap with previous specified ones");
        if map.contains_key("*") {
            return Err(overlap());
        }
        let items: Vec<&str> = loc.splitn(3, '/').collect();
        if items.iter().any(|i| i.is_empty()) {
            return Err(format!(
                "locality {loc} must not contain empty region/zone/subzone info"
            ));
        }
        match items.as_slice() {
            [region] => {
                if map.contains_key(region) {
                    return Err(overlap());
                }
                map.insert(region, HashMap::from([("*", HashMap::from([("*", true)]))]));
            }
            [region, zone] => {
                let zones = map.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return Err(overlap());
                }
                zones.insert(zone, HashMap::from([("*", true)]));
            }
            [region, zone, sub] => {
                let zones = map.entry(region).or_default();
                if zones.contains_key("*") {
                    return Err(overlap());
                }
                let subs = zones.entry(zone).or_default();
                if subs.get("*") == Some(&true) || subs.get(sub) == Some(&true) {
                    return Err(overlap());
                }
                subs.insert(sub, true);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Envoy's `isPrime` (which istiod copies): 1, 2 and 3 count as prime.
fn is_prime(n: u64) -> bool {
    if n != 0 && n < 4 {
        return true;
    }
    if n & 1 == 0 {
        return false;
    }
    let mut f = 3;
    while f * f <= n {
        if n.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

fn validate_load_balancer(cx: &mut Ctx<'_>, p: &str, lb: &LoadBalancerSettings, has_outlier: bool) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        cx.error(p, "only one of simple or consistentHash may be set");
    }
    if lb.zone_aware_lb_setting.is_some() {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            &format!("{p}.zoneAwareLbSetting"),
            "zoneAwareLbSetting is not applied by inmesh: the endpoints are balanced without \
             Envoy's zone-aware routing (use localityLbSetting, or a Service's \
             trafficDistribution, for a zone preference)",
        );
    }
    if lb.simple == Some(crate::model::SimpleLb::Passthrough) {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            &format!("{p}.simple"),
            "simple: PASSTHROUGH is not applied by inmesh: the client has no original \
             destination to forward to, so it balances the service's endpoints as \
             LEAST_REQUEST",
        );
    }
    if let Some(ch) = &lb.consistent_hash {
        let cp = format!("{p}.consistentHash");
        let keys = usize::from(ch.http_header_name.is_some())
            + usize::from(ch.http_cookie.is_some())
            + usize::from(ch.use_source_ip.is_some())
            + usize::from(ch.http_query_parameter_name.is_some());
        if keys > 1 {
            cx.error(&cp, "only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
        }
        if let Some(c) = &ch.http_cookie {
            let kp = format!("{cp}.httpCookie");
            if c.name.is_empty() {
                cx.error(&kp, "name required for HttpCookie");
            }
            // (`ttl` is not checked: `validateLoadBalancer` has no rule for it, and `0s` is
            // a session cookie)
            let mut names = HashSet::new();
            for (i, a) in c.attributes.iter().enumerate() {
                if a.name.is_empty() {
                    cx.error(
                        &format!("{kp}.attributes[{i}]"),
                        "cookie attribute name cannot be empty",
                    );
                } else if !names.insert(a.name.as_str()) {
                    cx.error(
                        &format!("{kp}.attributes[{i}]"),
                        format!("duplicate cookie attribute name: {}", a.name),
                    );
                }
            }
        }
        if ch.minimum_ring_size.is_some() {
            cx.warn(
                &format!("{cp}.minimumRingSize"),
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
            );
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                cx.error(
                    &cp,
                    "only one of MinimumRingSize or Maglev/Ringhash can be specified",
                );
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            cx.error(&cp, "only one of ringHash or maglev may be set");
        }
        if let Some(m) = &ch.maglev {
            let mp = format!("{cp}.maglev.tableSize");
            // three independent checks, as istiod's (0 fails the first and the last)
            let n = m.table_size.unwrap_or(0);
            if n == 0 {
                cx.error(&mp, "tableSize must be set for maglev");
            }
            if n >= 5_000_011 {
                cx.error(&mp, "tableSize must be less than 5000011 for maglev");
            }
            // (past 2^40, already an error, the trial division would take seconds: skipped)
            if n < 1 << 40 && !is_prime(n) {
                cx.error(&mp, "tableSize must be a prime number for maglev");
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        if lb.zone_aware_lb_setting.is_some() {
            cx.error(
                p,
                "only one of localityLbSetting and zoneAwareLbSetting can be set",
            );
        }
        validate_locality_lb_setting(cx, &format!("{p}.localityLbSetting"), l, has_outlier);
    }
    if let Some(w) = &lb.warmup {
        let wp = format!("{p}.warmup");
        match w.duration {
            None => {
                cx.error(&wp, "duration is required");
            }
            Some(d) => cx.check(&format!("{wp}.duration"), validate_duration(d)),
        }
        if let Some(m) = w.minimum_percent {
            if m > 100.0 {
                cx.error(
                    &format!("{wp}.minimumPercent"),
                    "minimumPercent value should be less than or equal to 100",
                );
            } else if m < 0.0 {
                cx.error(
                    &format!("{wp}.minimumPercent"),
                    "minimumPercent value should be greater than or equal to 0",
                );
            }
        }
        if let Some(a) = w.aggression
            && a < 1.0
        {
            cx.error(
                &format!("{wp}.aggression"),
                "aggression should be greater than or equal to 1",
            );
        }
    }
    if let Some(d) = lb.warmup_duration_secs {
        cx.check(&format!("{p}.warmupDurationSecs"), validate_duration(d));
    }
}

/// istiod's `ValidateLocalityLbSetting`: its checks in its order, returning where it returns
/// (conflicting settings, a bad weight, a total other than 100).
fn validate_locality_lb_setting(
    cx: &mut Ctx<'_>,
    lp: &str,
    l: &LocalityLbSetting,
    has_outlier: bool,
) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        cx.error(
            lp,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        return;
    }
    if !l.failover.is_empty() {
        let topology = l.failover_priority.iter().find(|label| {
            matches!(
                label.as_str(),
                "topology.kubernetes.io/region"
                    | "topology.kubernetes.io/zone"
                    | "topology.istio.io/subzone"
            )
        });
        if let Some(label) = topology {
            cx.error(
                &format!("{lp}.failoverPriority"),
                format!("can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"),
            );
            return;
        }
    }
    let mut sources = Vec::with_capacity(l.distribute.len());
    for (i, d) in l.distribute.iter().enumerate() {
        sources.push(d.from.as_str());
        let mut total = 0u64;
        for (loc, w) in &d.to {
            if !(1..=100).contains(w) {
                cx.error(
                    &format!("{lp}.distribute[{i}].to.{loc}"),
                    "locality weight must be in range [1, 100]",
                );
                return;
            }
            total += u64::from(*w);
        }
        if total != 100 {
            cx.error(
                &format!("{lp}.distribute[{i}].to"),
                format!("total locality weight {total} != 100"),
            );
            return;
        }
        let dests: Vec<&str> = d.to.keys().map(String::as_str).collect();
        if let Err(e) = validate_localities(&dests) {
            cx.error(&format!("{lp}.distribute[{i}].to"), e);
        }
    }
    if let Err(e) = validate_localities(&sources) {
        cx.error(&format!("{lp}.distribute"), e);
    }
    if (!l.failover.is_empty() || !l.failover_priority.is_empty()) && !has_outlier {
        cx.warn(lp, "outlier detection policy must be provided for failover");
    }
    for (i, f) in l.failover.iter().enumerate() {
        let fp = format!("{lp}.failover[{i}]");
        if f.from == f.to {
            cx.error(
                &fp,
                "locality lb failover settings must specify different regions",
            );
        }
        if f.from.contains('/') || f.to.contains('/') {
            cx.error(&fp, "locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            cx.error(
                &fp,
                "locality lb failover region should not contain '*' wildcard",
            );
        }
    }
}

/// `ValidateTLS` (client side).
fn validate_client_tls(cx: &mut Ctx<'_>, p: &str, tls: &ClientTlsSettings) {
    // istiod's ValidateTLS compares the strings with "": an empty field counts as unset
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let has_files = set(&tls.client_certificate)
        || set(&tls.ca_certificates)
        || set(&tls.ca_crl)
        || set(&tls.private_key);
    let credential = set(&tls.credential_name);
    if tls.insecure_skip_verify == Some(true) {
        let simple_conflict = tls.mode == ClientTlsMode::Simple
            && (set(&tls.ca_certificates) || credential || !tls.subject_alt_names.is_empty());
        let mutual_conflict = tls.mode == ClientTlsMode::Mutual
            && (set(&tls.ca_certificates) || !tls.subject_alt_names.is_empty());
        if simple_conflict {
            cx.error(p, "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
        }
        if mutual_conflict {
            cx.error(p, "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
        }
    }
    // only SIMPLE and MUTUAL read credentialName; then the files must not be set
    if matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual) && credential {
        if has_files {
            cx.error(p, "cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
        }
    } else if tls.mode == ClientTlsMode::Mutual {
        if !set(&tls.client_certificate) {
            cx.error(p, "client certificate required for mutual tls");
        }
        if !set(&tls.private_key) {
            cx.error(p, "private key required for mutual tls");
        }
    }
    if tls.mode == ClientTlsMode::IstioMutual && set(&tls.ca_crl) {
        // (istiod ignores it; the mesh client cannot check it and refuses, fail closed)
        cx.lint_warn(p, "caCrl is not supported with ISTIO_MUTUAL: the mesh client refuses to connect to this destination (istiod ignores caCrl here)")
            .help("remove caCrl: ISTIO_MUTUAL checks the mesh's own certificates");
    }
    let others = set(&tls.client_certificate)
        || set(&tls.ca_certificates)
        || set(&tls.private_key)
        || tls.credential_name.is_some();
    if tls.mode == ClientTlsMode::IstioMutual && others {
        cx.lint_warn(p, "ISTIO_MUTUAL uses the mesh certificates: clientCertificate, privateKey, caCertificates and credentialName are ignored")
            .help("remove them, or use mode MUTUAL to present your own certificate");
    }
}
