//! Gateway checks (istiod `ValidateGateway`, spec §5).

use std::collections::HashSet;

use super::common::*;
use super::{Ctx, Help};
use crate::gateway::is_http_protocol;
use crate::model::{Gateway, Server, ServerTlsMode, ServerTlsSettings, TlsProtocol};

/// Cipher suites istiod accepts by name (`ValidCipherSuites`: BoringSSL's, the PSK ones
/// left out).
const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Whether istiod's `IsValidCipherSuite` accepts `name`: a suite BoringSSL knows by name
/// (not a PSK one), `ALL`, empty, or anything not starting with a letter or digit (an
/// `[A|B]` equal-preference group, a `-X`, `+X` or `!X` operator, which istiod passes on
/// unparsed). istiod drops the others from a server's `cipherSuites` with a warning.
///
/// # Examples
///
/// ```
/// use mesh_core::validate::is_envoy_cipher_suite;
///
/// assert!(is_envoy_cipher_suite("ECDHE-ECDSA-AES256-GCM-SHA384"));
/// assert!(is_envoy_cipher_suite("[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]"));
/// assert!(is_envoy_cipher_suite("ALL"));
/// assert!(is_envoy_cipher_suite("-AES128-SHA"));
/// assert!(!is_envoy_cipher_suite("PSK-AES128-CBC-SHA"));
/// assert!(!is_envoy_cipher_suite("TLS_AES_128_GCM_SHA256")); // TLS 1.3 suites are not configurable
/// ```
pub fn is_envoy_cipher_suite(name: &str) -> bool {
    match name.chars().next() {
        None => true,
        Some(c) if !c.is_alphanumeric() => true,
        Some(_) => name == "ALL" || CIPHERS.contains(&name),
    }
}

pub(super) fn validate(cx: &mut Ctx<'_>, gw: &Gateway) {
    if gw.servers.is_empty() {
        cx.error("spec.servers", "gateway must have at least one server");
    }
    // istiod's ValidateGateway does not check the selector (a plain label map); one that no
    // Kubernetes label can satisfy selects no workload, which is only worth a hint
    if let Some(sel) = &gw.selector {
        for (k, v) in sel {
            lint_unmatchable_selector_label(cx, &format!("spec.selector.{k}"), k, v);
        }
    }
    let mut port_names = HashSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let p = format!("spec.servers[{i}]");
        validate_server(cx, &p, s);
        if s.tls.as_ref().is_some_and(|t| t.https_redirect) && !is_http_protocol(&s.port.protocol) {
            cx.warn(
                &format!("{p}.tls.httpsRedirect"),
                "tls.httpsRedirect should only be used with http servers",
            );
        }
        if !port_names.insert(s.port.name.as_str()) {
            cx.error(
                &format!("{p}.port.name"),
                format!(
                    "port names in servers must be unique: duplicate name {}",
                    s.port.name
                ),
            );
        }
    }
}

/// A `Port` as Go's `%v` prints the proto message in istiod's messages: its set fields in
/// field order (`number:80 protocol:"HTTP" name:"http"`).
fn port_text(port: &crate::model::Port) -> String {
    let mut fields = Vec::new();
    if port.number != 0 {
        fields.push(format!("number:{}", port.number));
    }
    if !port.protocol.is_empty() {
        fields.push(format!("protocol:{:?}", port.protocol));
    }
    if !port.name.is_empty() {
        fields.push(format!("name:{:?}", port.name));
    }
    if let Some(t) = port.target_port.filter(|&t| t != 0) {
        fields.push(format!("target_port:{t}"));
    }
    fields.join(" ")
}

fn is_tls_protocol(p: &str) -> bool {
    p.eq_ignore_ascii_case("HTTPS") || p.eq_ignore_ascii_case("TLS")
}

/// `validateServer` / `validateServerPort` / `validateServerBind`.
fn validate_server(cx: &mut Ctx<'_>, p: &str, s: &Server) {
    if s.hosts.is_empty() {
        cx.error(
            &format!("{p}.hosts"),
            "server config must contain at least one host",
        );
    }
    for (i, h) in s.hosts.iter().enumerate() {
        cx.check(
            &format!("{p}.hosts[{i}]"),
            validate_namespace_slash_wildcard_hostname(h, true),
        );
    }
    let pp = format!("{p}.port");
    let port = &s.port;
    let bind = s.bind.as_deref().unwrap_or("");
    let is_uds = bind.starts_with("unix://");
    let mut port_ok = true;
    if !super::service_entry::is_known_protocol(&port.protocol) {
        port_ok = false;
        cx.error(
            &format!("{pp}.protocol"),
            format!(
                "invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP",
                port.protocol
            ),
        );
    }
    if (port.number > 0 || !is_uds)
        && let Err(e) = validate_port(port.number)
    {
        port_ok = false;
        cx.error(&format!("{pp}.number"), e);
    }
    if port.target_port.is_some_and(|t| t > 0) {
        port_ok = false;
        cx.error(
            &format!("{pp}.targetPort"),
            "targetPort has no impact on Gateways",
        );
    }
    if port.name.is_empty() {
        port_ok = false;
        cx.error(
            &format!("{pp}.name"),
            format!("port name must be set: {}", port_text(port)),
        );
    }
    if is_uds {
        if let Err(e) = validate_unix_address(&bind["unix://".len()..]) {
            cx.error(&format!("{p}.bind"), e);
        }
        if port.number != 0 {
            cx.error(
                &format!("{p}.bind"),
                format!(
                    "port number must be 0 for unix domain socket: {}",
                    port_text(port)
                ),
            );
        }
    } else if !bind.is_empty() && !is_ip(bind) {
        cx.error(&format!("{p}.bind"), format!("{bind} is not a valid IP"));
    }
    if let Some(tls) = &s.tls {
        validate_server_tls(cx, &format!("{p}.tls"), tls);
    }
    // valid Istio the gateway does not serve as Envoy would: said, not found at startup
    let not_served = match port.protocol.to_ascii_uppercase().as_str() {
        "UDP" => Some("a gateway built from it refuses UDP servers at startup"),
        _ => None,
    };
    if let Some(what) = not_served {
        cx.with_code(
            crate::diag::Severity::Warning,
            crate::diag::codes::NOT_APPLIED,
            &format!("{pp}.protocol"),
            format!(
                "protocol {} is not applied by inmesh: {what}",
                port.protocol
            ),
        );
    }
    if port_ok {
        let tls_port = is_tls_protocol(&port.protocol);
        match &s.tls {
            None if tls_port => {
                cx.error(p, "server must have TLS settings for HTTPS/TLS protocols")
                    .help("add `tls: {mode: SIMPLE, credentialName: <secret>}` (or PASSTHROUGH to route by SNI)");
            }
            Some(tls) if !tls_port => {
                let passthrough = matches!(
                    tls.mode,
                    ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
                );
                if is_http_protocol(&port.protocol) {
                    // Only an httpsRedirect block is allowed on a plain HTTP server.
                    if !passthrough
                        || tls.ca_certificates.is_some()
                        || tls.private_key.is_some()
                        || tls.server_certificate.is_some()
                    {
                        cx.error(
                            &format!("{p}.tls"),
                            "server cannot have TLS settings for plain text HTTP ports",
                        );
                    }
                } else {
                    cx.error(
                        &format!("{p}.tls"),
                        "server cannot have TLS settings for non HTTPS/TLS ports",
                    );
                }
            }
            _ => {}
        }
    }
}

/// `ValidateUnixAddress`: an absolute path or an abstract socket (`@name`).
pub(super) fn validate_unix_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("unix address must not be empty".to_owned());
    }
    if addr.starts_with('@') {
        return Ok(());
    }
    if !addr.starts_with('/') || addr.ends_with('/') {
        return Err(format!("{addr} is not an absolute path to a file"));
    }
    Ok(())
}

/// `validateTLSOptions` (server side: Gateway servers and Sidecar ingress).
pub(super) fn validate_server_tls(cx: &mut Ctx<'_>, tp: &str, tls: &ServerTlsSettings) {
    if matches!(
        tls.min_protocol_version,
        Some(TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1)
    ) && tls.cipher_suites.is_empty()
    {
        cx.warn(
            &format!("{tp}.minProtocolVersion"),
            "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
        );
    }
    let mut invalid: Vec<&str> = Vec::new();
    let mut valid = HashSet::new();
    let mut dups: Vec<&str> = Vec::new();
    for c in &tls.cipher_suites {
        if !is_envoy_cipher_suite(c) {
            invalid.push(c);
        } else if !valid.insert(c.as_str()) {
            dups.push(c);
        }
    }
    let go_list = |mut v: Vec<&str>| {
        v.sort_unstable();
        v.dedup();
        format!("[{}]", v.join(" "))
    };
    if !invalid.is_empty() {
        cx.warn(
            &format!("{tp}.cipherSuites"),
            format!("ignoring invalid cipher suites: {}", go_list(invalid)),
        );
    }
    if !dups.is_empty() {
        cx.warn(
            &format!("{tp}.cipherSuites"),
            format!("ignoring duplicate cipher suites: {}", go_list(dups)),
        );
    }
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    // CRD schema: `credentialNames` and `tlsCertificates` have at most 2 items (an RSA and
    // an ECDSA certificate); the API server refuses more, whatever the mode
    for (field, n) in [
        ("credentialNames", tls.credential_names.len()),
        ("tlsCertificates", tls.tls_certificates.len()),
    ] {
        if n > 2 {
            cx.error(
                &format!("{tp}.{field}"),
                format!("{tp}.{field}: Too many: {n}: must have at most 2 items"),
            );
        }
    }
    if tls.mode == ServerTlsMode::IstioMutual {
        let checks = [
            (set(&tls.server_certificate), "server certificate"),
            (set(&tls.private_key), "private key"),
            (set(&tls.ca_certificates), "CA bundle"),
            (!tls.tls_certificates.is_empty(), "tlsCertificates"),
            (set(&tls.credential_name), "credentialName"),
            (!tls.credential_names.is_empty(), "credentialNames"),
        ];
        for (is_set, what) in checks {
            if is_set {
                cx.error(
                    tp,
                    format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                );
            }
        }
        return;
    }
    if matches!(
        tls.mode,
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
    ) && (set(&tls.ca_crl)
        || set(&tls.server_certificate)
        || set(&tls.private_key)
        || set(&tls.ca_certificates)
        || !tls.tls_certificates.is_empty()
        || set(&tls.credential_name)
        || !tls.credential_names.is_empty())
    {
        let mode = if tls.mode == ServerTlsMode::Passthrough {
            "PASSTHROUGH"
        } else {
            "AUTO_PASSTHROUGH"
        };
        cx.warn(
            tp,
            format!("{mode} mode does not use certificates, they will be ignored"),
        );
    }
    let sources = usize::from(set(&tls.server_certificate) && set(&tls.private_key))
        + usize::from(set(&tls.credential_name))
        + usize::from(!tls.credential_names.is_empty())
        + usize::from(!tls.tls_certificates.is_empty());
    if sources > 1 {
        cx.error(tp, "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified");
    }
    let terminating = matches!(
        tls.mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    );
    if terminating && (set(&tls.credential_name) || !tls.credential_names.is_empty()) {
        // Credentials come from the secret; nothing else is required.
        return;
    }
    if terminating {
        let mutual = tls.mode != ServerTlsMode::Simple;
        let prefix = if mutual { "MUTUAL TLS" } else { "SIMPLE TLS" };
        if mutual && !set(&tls.ca_certificates) {
            cx.error(tp, format!("{prefix} requires a client CA bundle"));
        }
        let pairs: Vec<(bool, bool)> = if tls.tls_certificates.is_empty() {
            vec![(set(&tls.server_certificate), set(&tls.private_key))]
        } else {
            tls.tls_certificates
                .iter()
                .map(|c| (set(&c.server_certificate), set(&c.private_key)))
                .collect()
        };
        for (cert, key) in pairs {
            if !cert {
                cx.error(tp, format!("{prefix} requires a server certificate"))
                    .help("set `credentialName` to a Kubernetes secret, or `serverCertificate` and `privateKey` to files");
            }
            if !key {
                cx.error(tp, format!("{prefix} requires a private key"));
            }
        }
    }
    if set(&tls.ca_crl) {
        if set(&tls.credential_name) {
            cx.error(
                tp,
                "CRL is not supported with credentialName. CRL has to be specified in the credential",
            );
        }
        if tls.mode == ServerTlsMode::Simple {
            cx.error(tp, "CRL is not supported with SIMPLE TLS");
        }
    }
}
