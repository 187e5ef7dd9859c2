//! Gateway checks (istiod `ValidateGateway`, spec §5).

use std::collections::HashSet;

use super::common::*;
use super::{Ctx, Help};
use crate::model::{Gateway, Server, ServerTlsMode, ServerTlsSettings, TlsProtocol};

const GATEWAY_PROTOCOLS: &[&str] = &[
    "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS", "REDIS", "MYSQL",
];

/// Cipher suites Envoy (BoringSSL) accepts by name.
const CIPHERS: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "DES-CBC3-SHA",
];

pub(super) fn validate(cx: &mut Ctx<'_>, gw: &Gateway) {
    if gw.servers.is_empty() {
        cx.error("spec.servers", "gateway must have at least one server");
    }
    if let Some(sel) = &gw.selector {
        for (k, v) in sel {
            let p = format!("spec.selector.{k}");
            if k.is_empty() {
                cx.error(
                    &p,
                    format!("empty key is not supported in selector: \"={v}\""),
                );
            }
            if k.contains('*') || v.contains('*') {
                cx.error(
                    &p,
                    format!("wildcard is not supported in selector: \"{k}={v}\""),
                );
            }
        }
        validate_labels(cx, "spec.selector", sel);
    }
    let mut port_names = HashSet::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let p = format!("spec.servers[{i}]");
        validate_server(cx, &p, s);
        if !s.port.name.is_empty() && !port_names.insert(s.port.name.as_str()) {
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
    let is_uds = s.bind.as_deref().is_some_and(|b| b.starts_with("unix://"));
    if is_uds {
        if port.number != 0 {
            cx.error(
                &format!("{pp}.number"),
                format!(
                    "port number must be 0 for unix domain socket: {}",
                    port.number
                ),
            );
        }
    } else {
        cx.check(&format!("{pp}.number"), validate_port(port.number));
    }
    let proto = port.protocol.to_ascii_uppercase();
    if port.protocol.is_empty() || !GATEWAY_PROTOCOLS.contains(&proto.as_str()) {
        cx.error(
            &format!("{pp}.protocol"),
            format!("invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP", port.protocol),
        );
    }
    if port.name.is_empty() {
        cx.error(
            &format!("{pp}.name"),
            format!("port name must be set: {}", port.number),
        );
    }
    if port.target_port.is_some() {
        cx.error(
            &format!("{pp}.targetPort"),
            "targetPort has no impact on Gateways",
        );
    }
    if let Some(b) = &s.bind {
        if !b.starts_with("unix://") && !is_ip(b) {
            cx.error(&format!("{p}.bind"), format!("{b} is not a valid IP"));
        }
    }
    let is_https_or_tls = proto == "HTTPS" || proto == "TLS";
    let is_http = matches!(proto.as_str(), "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB");
    match &s.tls {
        None => {
            if is_https_or_tls {
                cx.error(p, "server must have TLS settings for HTTPS/TLS protocols")
                    .help("add `tls: {mode: SIMPLE, credentialName: <secret>}` (or PASSTHROUGH to route by SNI)");
            }
        }
        Some(tls) => {
            let tp = format!("{p}.tls");
            // istiod accepts any TLS block carrying httpsRedirect (only the redirect is used).
            if is_http {
                if !tls.https_redirect {
                    cx.error(
                        &tp,
                        "server cannot have TLS settings for plain text HTTP ports",
                    );
                }
            } else if !is_https_or_tls && !tls.https_redirect {
                cx.error(
                    &tp,
                    "server cannot have TLS settings for non HTTPS/TLS ports",
                );
            }
            if tls.https_redirect && !is_http {
                cx.warn(
                    &format!("{tp}.httpsRedirect"),
                    "tls.httpsRedirect should only be used with http servers",
                );
            }
            if is_https_or_tls {
                validate_server_tls(cx, &tp, tls);
            }
        }
    }
}

/// `validateTLSOptions` (server side).
pub(super) fn validate_server_tls(cx: &mut Ctx<'_>, tp: &str, tls: &ServerTlsSettings) {
    let has_files = tls.server_certificate.is_some() || tls.private_key.is_some();
    let sources = usize::from(
        tls.credential_name
            .as_deref()
            .is_some_and(|s| !s.is_empty()),
    ) + usize::from(!tls.credential_names.is_empty())
        + usize::from(has_files)
        + usize::from(!tls.tls_certificates.is_empty());
    match tls.mode {
        ServerTlsMode::IstioMutual => {
            let checks = [
                (tls.server_certificate.is_some(), "server certificate"),
                (tls.private_key.is_some(), "private key"),
                (tls.ca_certificates.is_some(), "CA bundle"),
                (!tls.tls_certificates.is_empty(), "tlsCertificates"),
                (tls.credential_name.is_some(), "credentialName"),
                (!tls.credential_names.is_empty(), "credentialNames"),
            ];
            for (set, what) in checks {
                if set {
                    cx.error(
                        tp,
                        format!("ISTIO_MUTUAL TLS cannot have associated {what}"),
                    );
                }
            }
            return;
        }
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => {
            if sources > 0 || tls.ca_certificates.is_some() {
                cx.warn(
                    tp,
                    "PASSTHROUGH mode does not use certificates, they will be ignored",
                );
            }
            return;
        }
        _ => {}
    }
    if sources > 1 {
        cx.error(tp, "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified");
    }
    let uses_credential = tls
        .credential_name
        .as_deref()
        .is_some_and(|s| !s.is_empty())
        || !tls.credential_names.is_empty();
    if uses_credential {
        if tls.ca_crl.is_some() {
            cx.error(tp, "CRL is not supported with credentialName. CRL has to be specified in the credential");
        }
    } else if tls.tls_certificates.is_empty() {
        let mutual = matches!(
            tls.mode,
            ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
        );
        let what = if mutual { "MUTUAL" } else { "SIMPLE" };
        if tls.server_certificate.as_deref().unwrap_or("").is_empty() {
            cx.error(tp, format!("{what} TLS requires a server certificate"))
                .help("set `credentialName` to a Kubernetes secret, or `serverCertificate` and `privateKey` to files");
        }
        if tls.private_key.as_deref().unwrap_or("").is_empty() {
            cx.error(tp, format!("{what} TLS requires a private key"));
        }
        if mutual
            && tls.ca_certificates.as_deref().unwrap_or("").is_empty()
            && tls.ca_cert_credential_name.is_none()
        {
            cx.error(tp, "MUTUAL TLS requires a client CA bundle");
        }
    }
    if tls.mode == ServerTlsMode::Simple && tls.ca_crl.is_some() {
        cx.error(tp, "CRL is not supported with SIMPLE TLS");
    }
    if tls.credential_names.len() > 2 {
        cx.error(
            &format!("{tp}.credentialNames"),
            "at most two credentialNames (one RSA, one ECDSA) may be set",
        );
    }
    if tls.tls_certificates.len() > 2 {
        cx.error(
            &format!("{tp}.tlsCertificates"),
            "at most two tlsCertificates (one RSA, one ECDSA) may be set",
        );
    }
    let mut invalid = Vec::new();
    let mut dups = Vec::new();
    let mut seen = HashSet::new();
    for c in &tls.cipher_suites {
        if !CIPHERS.contains(&c.as_str()) {
            invalid.push(c.as_str());
        } else if !seen.insert(c.as_str()) {
            dups.push(c.as_str());
        }
    }
    if !invalid.is_empty() {
        cx.warn(
            &format!("{tp}.cipherSuites"),
            format!("ignoring invalid cipher suites: {invalid:?}"),
        );
    }
    if !dups.is_empty() {
        cx.warn(
            &format!("{tp}.cipherSuites"),
            format!("ignoring duplicate cipher suites: {dups:?}"),
        );
    }
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
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version) {
        let rank = |v: TlsProtocol| match v {
            TlsProtocol::TlsAuto => 0,
            TlsProtocol::TlsV1_0 => 1,
            TlsProtocol::TlsV1_1 => 2,
            TlsProtocol::TlsV1_2 => 3,
            TlsProtocol::TlsV1_3 => 4,
        };
        if rank(min) > 0 && rank(max) > 0 && rank(min) > rank(max) {
            cx.error(
                tp,
                "Tls min protocol version cannot be greater than max protocol version",
            );
        }
    }
}
