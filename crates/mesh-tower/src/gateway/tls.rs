//! Gateway server TLS: rustls configs from `credentialName` (SIMPLE, MUTUAL,
//! OPTIONAL_MUTUAL), built once per credential and snapshot generation.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mesh_core::meshconfig::TlsDefaults;
use mesh_core::model::{ServerTlsMode, ServerTlsSettings, TlsProtocol};
use mesh_tls::rustls::server::danger::ClientCertVerifier;
use mesh_tls::rustls::server::WebPkiClientVerifier;
use mesh_tls::rustls::{self, RootCertStore, ServerConfig};
use mesh_tls::{certs_from_pem, key_from_pem, CredentialLookup, TlsError, WorkloadCredentials};

/// What a terminating server offers by ALPN, as istiod's `BuildListenerTLSContext` sets
/// it (`ALPNHttp`): HTTPS servers and `TLS` servers carrying TCP alike.
const HTTPS_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// An `ISTIO_MUTUAL` `TLS` server carrying TCP: Istio's metadata exchange first
/// (`ALPNDownstreamWithMxc`).
const ISTIO_MUTUAL_TCP_ALPN: [&[u8]; 3] = [b"istio-peer-exchange", b"h2", b"http/1.1"];

/// Checks that we can honour a server's TLS settings; an unsupported field is an error,
/// never silently ignored.
pub(crate) fn check_supported(tls: &ServerTlsSettings) -> Result<(), String> {
    let mut unsupported = Vec::new();
    // client certificate checks: applied on MUTUAL and OPTIONAL_MUTUAL servers (SIMPLE and
    // PASSTHROUGH see no client certificate); ISTIO_MUTUAL checks the mesh identity
    if tls.mode == ServerTlsMode::Simple && !tls.subject_alt_names.is_empty() {
        // istiod makes them a validation context without a trusted CA, which Envoy
        // refuses: "SAN-based verification of peer certificates without trusted CA is
        // insecure and not allowed"
        unsupported.push("subjectAltNames on a SIMPLE server (no client CA to verify against)");
    }
    if tls.mode == ServerTlsMode::IstioMutual
        && (!tls.verify_certificate_spki.is_empty() || !tls.verify_certificate_hash.is_empty())
    {
        unsupported.push("verifyCertificateSpki/verifyCertificateHash with ISTIO_MUTUAL");
    }
    if tls.ca_crl.is_some() {
        unsupported.push("caCrl");
    }
    if tls.server_certificate.is_some() || !tls.tls_certificates.is_empty() {
        unsupported.push("serverCertificate/tlsCertificates (file paths; use credentialName)");
    }
    if tls.credential_names.len() > 1 {
        unsupported.push("credentialNames with two certificates (give one credentialName)");
    }
    if tls.insecure_skip_verify == Some(true) {
        unsupported.push("insecureSkipVerify");
    }
    match tls.mode {
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            if tls.credential_name.is_none() && tls.credential_names.is_empty() {
                return Err(format!(
                    "TLS mode {:?} needs a credentialName (file paths are not supported)",
                    tls.mode
                ));
            }
        }
        // ISTIO_MUTUAL: the gateway's own mesh certificate (checked when the config is
        // built); AUTO_PASSTHROUGH: no certificate, the SNI names the destination
        ServerTlsMode::Passthrough
        | ServerTlsMode::IstioMutual
        | ServerTlsMode::AutoPassthrough => {}
    }
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unsupported TLS settings: {}",
            unsupported.join(", ")
        ))
    }
}

/// The TLS 1.2 suites `cipherSuites` names, by their OpenSSL names as Envoy takes them
/// (an `[A|B]` equal-preference group counts as its members), that rustls implements.
const TLS12_SUITES: [(&str, rustls::CipherSuite); 6] = [
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// `provider` offering, for TLS 1.2, only the `cipherSuites` named, in their order
/// (Envoy's `tls_params.cipher_suites`, which do not apply to TLS 1.3: its suites stay).
/// Names Envoy does not know are dropped first, as istiod drops them with a warning; when
/// none is left, the defaults stay. Known suites rustls does not implement (CBC, non-ECDHE
/// key exchange) cannot be offered and are skipped with a warning. The second value says
/// whether the server's order should win (a list was applied).
fn with_cipher_suites(
    provider: Arc<rustls::crypto::CryptoProvider>,
    names: &[String],
) -> (Arc<rustls::crypto::CryptoProvider>, bool) {
    let valid: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| mesh_core::validate::is_envoy_cipher_suite(n))
        // BoringSSL's rule words and operators (`ALL`, `-X`, `!X`) are not suites of their
        // own: what they would change is left to the defaults
        .filter(|n| {
            n.starts_with('[') || n.starts_with(|c: char| c.is_ascii_alphanumeric()) && *n != "ALL"
        })
        .collect();
    if valid.is_empty() {
        return (provider, false);
    }
    let wanted = valid
        .iter()
        .flat_map(|n| n.trim_matches(|c| c == '[' || c == ']').split('|'))
        .map(str::trim);
    let mut tls12 = Vec::new();
    for name in wanted {
        match TLS12_SUITES.iter().find(|(n, _)| *n == name) {
            Some((_, suite)) => {
                if let Some(s) = provider.cipher_suites.iter().find(|s| s.suite() == *suite)
                    && !tls12
                        .iter()
                        .any(|x: &rustls::SupportedCipherSuite| x.suite() == *suite)
                {
                    tls12.push(*s);
                }
            }
            None => {
                tracing::warn!(cipher = name, "cipherSuites: not offered (rustls implements only ECDHE with AES-GCM or ChaCha20-Poly1305 for TLS 1.2)");
            }
        }
    }
    let mut p = (*provider).clone();
    p.cipher_suites
        .retain(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)));
    p.cipher_suites.extend(tls12);
    (Arc::new(p), true)
}

/// A server's TLS settings with MeshConfig's `tlsDefaults` where it sets none: the lowest
/// version (one below TLS 1.2 taken as TLS 1.2, with the warning given at load) and the
/// cipher suites.
fn apply_defaults(tls: &ServerTlsSettings, defaults: &TlsDefaults) -> ServerTlsSettings {
    let mut out = tls.clone();
    if matches!(out.min_protocol_version, None | Some(TlsProtocol::TlsAuto)) {
        out.min_protocol_version = defaults.min_protocol_version.map(|v| match v {
            TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1 => TlsProtocol::TlsV1_2,
            v => v,
        });
    }
    if out.cipher_suites.is_empty() {
        out.cipher_suites.clone_from(&defaults.cipher_suites);
    }
    out
}

/// `provider` offering only the key-exchange groups of `tlsDefaults.ecdhCurves`, in their
/// order (Envoy's `tls_params.ecdh_curves`, by BoringSSL's names); names rustls does not
/// implement are skipped with a warning, and when none is left the defaults stay.
fn with_ecdh_curves(
    provider: Arc<rustls::crypto::CryptoProvider>,
    names: &[String],
) -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::NamedGroup;
    if names.is_empty() {
        return provider;
    }
    let mut groups = Vec::new();
    for name in names {
        let want = match name.trim() {
            "X25519" => Some(NamedGroup::X25519),
            "P-256" | "prime256v1" | "secp256r1" => Some(NamedGroup::secp256r1),
            "P-384" | "secp384r1" => Some(NamedGroup::secp384r1),
            "P-521" | "secp521r1" => Some(NamedGroup::secp521r1),
            "X25519MLKEM768" => Some(NamedGroup::X25519MLKEM768),
            _ => None,
        };
        match want.and_then(|w| provider.kx_groups.iter().find(|g| g.name() == w)) {
            Some(g)
                if !groups
                    .iter()
                    .any(|x: &&dyn rustls::crypto::SupportedKxGroup| x.name() == g.name()) =>
            {
                groups.push(*g);
            }
            Some(_) => {}
            None => {
                tracing::warn!(curve = %name, "tlsDefaults.ecdhCurves: not offered (rustls here offers X25519, P-256, P-384 and X25519MLKEM768)")
            }
        }
    }
    if groups.is_empty() {
        return provider;
    }
    let mut p = (*provider).clone();
    p.kx_groups = groups;
    Arc::new(p)
}

fn versions(
    tls: &ServerTlsSettings,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |p: Option<TlsProtocol>, default: u8| match p {
        None | Some(TlsProtocol::TlsAuto) => Ok(default),
        Some(TlsProtocol::TlsV1_2) => Ok(2),
        Some(TlsProtocol::TlsV1_3) => Ok(3),
        Some(other) => Err(format!(
            "{other:?} is not supported (TLS 1.2 is the minimum)"
        )),
    };
    let min = rank(tls.min_protocol_version, 2)?;
    let max = rank(tls.max_protocol_version, 3)?;
    let mut v = Vec::new();
    if min <= 2 && max >= 2 {
        v.push(&rustls::version::TLS12);
    }
    if max >= 3 {
        v.push(&rustls::version::TLS13);
    }
    if v.is_empty() {
        return Err("minProtocolVersion is above maxProtocolVersion".into());
    }
    Ok(v)
}

/// A terminating server's TLS: the rustls config and the URI SANs of the server's own
/// certificate (the `By` of the `x-forwarded-client-cert` it sets).
#[derive(Clone, Debug)]
pub(crate) struct Terminating {
    pub(crate) config: Arc<ServerConfig>,
    /// The same without ALPN, for a client whose ALPN offer has nothing in common with
    /// ours: Envoy's `alpnSelectCallback` answers `SSL_TLSEXT_ERR_NOACK` and the handshake
    /// goes on without ALPN, where rustls would refuse it (`no_application_protocol`).
    /// `None` when the config has no ALPN.
    no_alpn: Option<Arc<ServerConfig>>,
    pub(crate) by: Arc<[String]>,
}

impl Terminating {
    fn new(cfg: ServerConfig, by: Arc<[String]>) -> Terminating {
        let no_alpn = (!cfg.alpn_protocols.is_empty()).then(|| {
            let mut plain = cfg.clone();
            plain.alpn_protocols.clear();
            Arc::new(plain)
        });
        Terminating {
            config: Arc::new(cfg),
            no_alpn,
            by,
        }
    }

    /// The config for a ClientHello offering `alpn` (empty: no ALPN extension).
    pub(crate) fn config_for(&self, alpn: &[Vec<u8>]) -> Arc<ServerConfig> {
        match &self.no_alpn {
            Some(plain)
                if !alpn.is_empty()
                    && !alpn.iter().any(|p| self.config.alpn_protocols.contains(p)) =>
            {
                Arc::clone(plain)
            }
            _ => Arc::clone(&self.config),
        }
    }
}

/// Builds the server config for one Gateway server's TLS settings; `workload` is the
/// gateway's mesh identity, which `ISTIO_MUTUAL` servers present; `defaults` MeshConfig's
/// `tlsDefaults`, which `SIMPLE`, `MUTUAL` and `OPTIONAL_MUTUAL` servers take where they
/// set nothing (istiod's `applyDownstreamTLSDefaults`, then `applyServerTLSSettings`
/// field by field).
pub(crate) fn build_config(
    tls: &ServerTlsSettings,
    creds: &dyn CredentialLookup,
    workload: Option<&WorkloadCredentials>,
    http: bool,
    defaults: &TlsDefaults,
) -> Result<Terminating, String> {
    check_supported(tls)?;
    let with_defaults;
    let tls = if tls.mode == ServerTlsMode::IstioMutual {
        tls
    } else {
        with_defaults = apply_defaults(tls, defaults);
        &with_defaults
    };
    if tls.mode == ServerTlsMode::IstioMutual {
        // the server's min/max versions apply as to any other mode
        let v = versions(tls)?;
        let tls13_only = match (v.contains(&&rustls::version::TLS12), v.contains(&&rustls::version::TLS13)) {
            (true, true) => false,
            (false, true) => true,
            _ => return Err("ISTIO_MUTUAL with maxProtocolVersion TLSV1_2 is not supported (an ISTIO_MUTUAL server here offers TLS 1.2 and 1.3, or TLS 1.3 only)".into()),
        };
        return istio_mutual(workload, &tls.subject_alt_names, http, tls13_only);
    }
    let name = tls
        .credential_name
        .as_deref()
        .or(tls.credential_names.first().map(String::as_str))
        .ok_or("no credentialName")?;
    let fail = |e: TlsError| format!("credentialName {name:?}: {e}");
    let cred = creds.lookup(name).map_err(fail)?;
    let chain = cred
        .cert_chain_pem
        .as_deref()
        .ok_or_else(|| format!("credentialName {name:?}: no certificate (tls.crt / cert)"))?;
    let key = cred
        .key_pem
        .as_deref()
        .ok_or_else(|| format!("credentialName {name:?}: no private key (tls.key / key)"))?;
    let chain = certs_from_pem(name, chain.as_bytes()).map_err(fail)?;
    let key = key_from_pem(name, key.as_bytes()).map_err(fail)?;
    let by: Arc<[String]> = chain
        .first()
        .map(|leaf| super::xfcc::uri_sans(leaf.as_ref()))
        .unwrap_or_default()
        .into();
    let provider = with_ecdh_curves(mesh_tls::provider(), &defaults.ecdh_curves);
    let (provider, server_order) = with_cipher_suites(provider, &tls.cipher_suites);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(tls)?)
        .map_err(|e| e.to_string())?;
    let builder = match tls.mode {
        ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {
            let ca_name = tls.ca_cert_credential_name.as_deref();
            // the roots and the CRL that goes with them (`ca.crl` / `crl`), from one credential
            let (ca, crl) = match ca_name {
                Some(n) => {
                    let c = creds.lookup(n).map_err(fail)?;
                    (c.ca_pem, c.crl_pem)
                }
                None => (cred.ca_pem.clone(), cred.crl_pem.clone()),
            };
            let ca = ca.ok_or_else(|| {
                format!(
                    "MUTUAL TLS requires a client CA bundle: credentialName {:?} has no ca.crt \
                     (nor a {name}-cacert credential)",
                    ca_name.unwrap_or(name)
                )
            })?;
            let mut roots = RootCertStore::empty();
            for c in certs_from_pem(name, ca.as_bytes()).map_err(fail)? {
                roots
                    .add(c)
                    .map_err(|e| format!("credentialName {name:?}: CA certificate: {e}"))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // as Envoy checks a CRL: the client's whole chain, a CA without a CRL of its
            // issuer and an expired list refused
            let v = match crl {
                Some(pem) => {
                    let what = format!("credentialName {:?} CRL", ca_name.unwrap_or(name));
                    let crls = mesh_tls::crls_from_pem(&what, pem.as_bytes())
                        .map_err(|e| e.to_string())?;
                    v.with_crls(crls).enforce_revocation_expiration()
                }
                None => v,
            };
            let v = if tls.mode == ServerTlsMode::OptionalMutual {
                v.allow_unauthenticated()
            } else {
                v
            };
            // (with the CAs' key usage checked, as Envoy does and webpki does not)
            let verifier: Arc<dyn ClientCertVerifier> = Arc::new(mesh_tls::CaKeyUsageChecked(
                v.build().map_err(|e| e.to_string())?,
            ));
            let pins = super::pinning::Pins::new(
                &tls.subject_alt_names,
                &tls.verify_certificate_spki,
                &tls.verify_certificate_hash,
            )?;
            if pins.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(super::pinning::PinnedVerifier {
                    inner: verifier,
                    pins,
                }))
            }
        }
        _ => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("credentialName {name:?}: {e}"))?;
    cfg.alpn_protocols = HTTPS_ALPN.iter().map(|p| p.to_vec()).collect();
    // a configured cipher list is the server's preference, as BoringSSL applies it
    cfg.ignore_client_order = server_order;
    Ok(Terminating::new(cfg, by))
}

/// `ISTIO_MUTUAL`: the gateway presents its own mesh certificate (following its
/// renewals) and requires a client certificate chaining to the mesh's roots, as istiod
/// configures the gateway's Envoy (no trust-domain check, unlike a STRICT sidecar); the
/// client's SPIFFE identity, if any, is then the request's `source.principal`.
/// `subjectAltNames` narrow the clients to those SPIFFE identities (a mesh certificate
/// carries no other SAN, so an entry that is not one matches nobody).
fn istio_mutual(
    workload: Option<&WorkloadCredentials>,
    sans: &[String],
    http: bool,
    tls13_only: bool,
) -> Result<Terminating, String> {
    let workload = workload.ok_or(
        "TLS mode ISTIO_MUTUAL needs the gateway's mesh identity \
         (GatewayBuilder::workload_credentials)",
    )?;
    // exact identities: istiod gives these matchers no trust-domain aliases, so only the
    // trust domains the SANs name are accepted; without `subjectAltNames`, no SAN matcher
    // at all: any client certificate chaining to the mesh roots (`ApplyToCommonTLSContext`
    // with no SANs and no aliases)
    let policy = Some(if sans.is_empty() {
        mesh_tls::PeerPolicy::any_chained()
    } else {
        let ids: Vec<mesh_tls::Identity> = sans
            .iter()
            .filter_map(|s| mesh_tls::Identity::parse(s).ok())
            .collect();
        let mut tds: Vec<String> = ids.iter().map(|i| i.trust_domain().to_owned()).collect();
        tds.sort();
        tds.dedup();
        mesh_tls::PeerPolicy::trust_domains(tds)
            .allow_only(ids)
            .exactly()
    });
    let shared = workload
        .server_config_versions(policy, tls13_only)
        .map_err(|e| e.to_string())?;
    let mut cfg = (*shared).clone();
    let alpn: &[&[u8]] = if http {
        &HTTPS_ALPN
    } else {
        &ISTIO_MUTUAL_TCP_ALPN
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Terminating::new(
        cfg,
        vec![workload.identity().as_uri().to_owned()].into(),
    ))
}

type Entries<T> = HashMap<String, Result<T, String>>;

/// Built TLS configs by key, dropped when the snapshot generation changes (or on
/// [`Cache::clear`], after a credential changed). Reads are one atomic load and a hash
/// lookup; a miss copies the map (misses are rare: once per key and generation).
#[derive(Debug)]
pub(crate) struct Cache<T> {
    state: ArcSwap<(u64, Entries<T>)>,
}

impl<T: Clone> Cache<T> {
    pub(crate) fn new() -> Self {
        Cache {
            state: ArcSwap::from_pointee((u64::MAX, HashMap::new())),
        }
    }

    pub(crate) fn clear(&self) {
        self.state.store(Arc::new((u64::MAX, HashMap::new())));
    }

    pub(crate) fn get(
        &self,
        generation: u64,
        key: &str,
        build: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let cur = self.state.load();
        if cur.0 == generation
            && let Some(c) = cur.1.get(key)
        {
            return c.clone();
        }
        let built = build();
        let mut map = if cur.0 == generation {
            cur.1.clone()
        } else {
            HashMap::new()
        };
        map.insert(key.to_owned(), built.clone());
        self.state.store(Arc::new((generation, map)));
        built
    }
}

/// Server configs by (gateway, server index).
#[derive(Debug)]
pub(crate) struct ConfigCache {
    inner: Cache<Terminating>,
}

impl ConfigCache {
    pub(crate) fn new() -> Self {
        ConfigCache {
            inner: Cache::new(),
        }
    }

    pub(crate) fn clear(&self) {
        self.inner.clear();
    }

    pub(crate) fn get(
        &self,
        generation: u64,
        gateway: &str,
        index: usize,
        build: impl FnOnce() -> Result<Terminating, String>,
    ) -> Result<Terminating, String> {
        self.inner
            .get(generation, &format!("{gateway}#{index}"), build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_settings_are_errors() {
        let base = ServerTlsSettings {
            mode: ServerTlsMode::Simple,
            credential_name: Some("c".into()),
            ..Default::default()
        };
        let cases: Vec<(ServerTlsSettings, Option<&str>)> = vec![
            (base.clone(), None),
            (
                ServerTlsSettings {
                    subject_alt_names: vec!["x".into()],
                    ..base.clone()
                },
                Some("subjectAltNames on a SIMPLE server"),
            ),
            (
                ServerTlsSettings {
                    mode: ServerTlsMode::Mutual,
                    subject_alt_names: vec!["x".into()],
                    ..base.clone()
                },
                None,
            ),
            (
                ServerTlsSettings {
                    mode: ServerTlsMode::IstioMutual,
                    credential_name: None,
                    verify_certificate_hash: vec!["x".into()],
                    ..Default::default()
                },
                Some("verifyCertificateSpki/verifyCertificateHash with ISTIO_MUTUAL"),
            ),
            (
                ServerTlsSettings {
                    credential_name: None,
                    ..base.clone()
                },
                Some("needs a credentialName"),
            ),
            (
                ServerTlsSettings {
                    credential_name: None,
                    credential_names: vec!["rsa".into(), "ecdsa".into()],
                    ..base.clone()
                },
                Some("credentialNames with two certificates"),
            ),
            (
                ServerTlsSettings {
                    credential_name: None,
                    credential_names: vec!["one".into()],
                    ..base.clone()
                },
                None,
            ),
            (
                ServerTlsSettings {
                    mode: ServerTlsMode::AutoPassthrough,
                    credential_name: None,
                    ..Default::default()
                },
                None,
            ),
            (
                ServerTlsSettings {
                    mode: ServerTlsMode::IstioMutual,
                    credential_name: None,
                    ..Default::default()
                },
                None,
            ),
            (
                ServerTlsSettings {
                    mode: ServerTlsMode::Passthrough,
                    credential_name: None,
                    ..Default::default()
                },
                None,
            ),
        ];
        for (tls, want) in cases {
            match (check_supported(&tls), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{e} should contain {w}"),
                (got, want) => panic!("{tls:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn protocol_versions() {
        let with = |min, max| ServerTlsSettings {
            min_protocol_version: min,
            max_protocol_version: max,
            ..Default::default()
        };
        assert_eq!(versions(&with(None, None)).unwrap().len(), 2);
        assert_eq!(
            versions(&with(Some(TlsProtocol::TlsV1_3), None))
                .unwrap()
                .len(),
            1
        );
        assert!(versions(&with(Some(TlsProtocol::TlsV1_0), None)).is_err());
        assert!(versions(&with(
            Some(TlsProtocol::TlsV1_3),
            Some(TlsProtocol::TlsV1_2)
        ))
        .is_err());
    }

    #[test]
    fn missing_credential_is_an_error() {
        let dir = std::env::temp_dir().join(format!("inmesh-gw-tls-{}", std::process::id()));
        let creds = mesh_tls::DirCredentials::new(&dir);
        let tls = ServerTlsSettings {
            mode: ServerTlsMode::Simple,
            credential_name: Some("nope".into()),
            ..Default::default()
        };
        let e = build_config(&tls, &creds, None, true, &TlsDefaults::default()).unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }

    /// An ISTIO_MUTUAL server keeps the Gateway's protocol versions: TLS 1.3 only when its
    /// minimum says so (a TLS 1.2 client's handshake fails), refused when the maximum
    /// leaves no TLS 1.3.
    #[tokio::test]
    async fn istio_mutual_servers_keep_the_protocol_versions() {
        use tokio::io::AsyncWriteExt;
        let ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
        let gw = mesh_tls::Identity::new("cluster.local", "istio-system", "gw").unwrap();
        let client = mesh_tls::Identity::new("cluster.local", "default", "sleep").unwrap();
        let ttl = std::time::Duration::from_secs(3600);
        let workload = WorkloadCredentials::new(ca.issue(&gw, ttl, &[]).unwrap()).unwrap();
        let creds = mesh_tls::DirCredentials::new(std::env::temp_dir());
        let tls = |min, max| ServerTlsSettings {
            mode: ServerTlsMode::IstioMutual,
            min_protocol_version: min,
            max_protocol_version: max,
            ..Default::default()
        };
        let e = build_config(
            &tls(None, Some(TlsProtocol::TlsV1_2)),
            &creds,
            Some(&workload),
            true,
            &TlsDefaults::default(),
        )
        .unwrap_err();
        assert!(e.contains("maxProtocolVersion TLSV1_2"), "{e}");
        let only13 = build_config(
            &tls(Some(TlsProtocol::TlsV1_3), None),
            &creds,
            Some(&workload),
            true,
            &TlsDefaults::default(),
        )
        .unwrap();
        let any = build_config(
            &tls(None, None),
            &creds,
            Some(&workload),
            true,
            &TlsDefaults::default(),
        )
        .unwrap();

        let cert = ca.issue(&client, ttl, &[]).unwrap();
        let verifier = mesh_tls::MeshServerCertVerifier::new(
            ca.trust_bundle(),
            mesh_tls::ServerCheck::Spiffe(mesh_tls::PeerPolicy::trust_domain("cluster.local")),
        )
        .unwrap();
        let tls12 = Arc::new(
            rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
                .unwrap(),
        );
        let handshake = |server: Arc<ServerConfig>| {
            let client = Arc::clone(&tls12);
            async move {
                let (a, b) = tokio::io::duplex(64 * 1024);
                let accept = tokio::spawn(async move {
                    tokio_rustls::TlsAcceptor::from(server)
                        .accept(b)
                        .await
                        .map(|_| ())
                });
                let connect = tokio_rustls::TlsConnector::from(client)
                    .connect("gw".try_into().unwrap(), a)
                    .await;
                if let Ok(mut s) = connect {
                    let _ = s.shutdown().await;
                }
                accept.await.unwrap()
            }
        };
        assert!(handshake(only13.config).await.is_err());
        assert!(handshake(any.config).await.is_ok());
    }

    /// ALPN as istiod's `BuildListenerTLSContext` sets it: `h2, http/1.1` on HTTPS
    /// servers, Istio's metadata exchange first on an ISTIO_MUTUAL server carrying TCP.
    #[test]
    fn istio_mutual_alpn_by_what_the_server_carries() {
        let ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
        let gw = mesh_tls::Identity::new("cluster.local", "istio-system", "gw").unwrap();
        let ttl = std::time::Duration::from_secs(3600);
        let workload = WorkloadCredentials::new(ca.issue(&gw, ttl, &[]).unwrap()).unwrap();
        let creds = mesh_tls::DirCredentials::new(std::env::temp_dir());
        let tls = ServerTlsSettings {
            mode: ServerTlsMode::IstioMutual,
            ..Default::default()
        };
        for (http, want) in [(true, &HTTPS_ALPN[..]), (false, &ISTIO_MUTUAL_TCP_ALPN[..])] {
            let built =
                build_config(&tls, &creds, Some(&workload), http, &TlsDefaults::default()).unwrap();
            assert_eq!(built.config.alpn_protocols, want, "http: {http}");
        }
        assert_eq!(ISTIO_MUTUAL_TCP_ALPN[0], b"istio-peer-exchange");
    }

    /// istiod gives an ISTIO_MUTUAL gateway server no SAN matcher without
    /// `subjectAltNames` (`ApplyToCommonTLSContext`): any client certificate chaining to
    /// the mesh roots is taken, another trust domain's too; with `subjectAltNames` only
    /// those; another CA's never.
    #[tokio::test]
    async fn istio_mutual_clients_need_the_chain_only() {
        use tokio::io::AsyncWriteExt;
        let ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
        let other_ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
        let ttl = std::time::Duration::from_secs(3600);
        let id = |td: &str, sa: &str| mesh_tls::Identity::new(td, "default", sa).unwrap();
        let gw = mesh_tls::Identity::new("cluster.local", "istio-system", "gw").unwrap();
        let workload = WorkloadCredentials::new(ca.issue(&gw, ttl, &[]).unwrap()).unwrap();
        let creds = mesh_tls::DirCredentials::new(std::env::temp_dir());
        let server = |sans: Vec<String>| {
            let tls = ServerTlsSettings {
                mode: ServerTlsMode::IstioMutual,
                subject_alt_names: sans,
                ..Default::default()
            };
            build_config(&tls, &creds, Some(&workload), true, &TlsDefaults::default())
                .unwrap()
                .config
        };
        let verifier =
            mesh_tls::MeshServerCertVerifier::new(ca.trust_bundle(), mesh_tls::ServerCheck::Chain)
                .unwrap();
        let handshake = |server: Arc<ServerConfig>, cert: mesh_tls::WorkloadCert| {
            let verifier = Arc::clone(&verifier);
            async move {
                let client = Arc::new(
                    rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
                        .with_safe_default_protocol_versions()
                        .unwrap()
                        .dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_client_auth_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
                        .unwrap(),
                );
                let (a, b) = tokio::io::duplex(64 * 1024);
                let accept = tokio::spawn(async move {
                    tokio_rustls::TlsAcceptor::from(server)
                        .accept(b)
                        .await
                        .map(|_| ())
                });
                if let Ok(mut s) = tokio_rustls::TlsConnector::from(client)
                    .connect("gw".try_into().unwrap(), a)
                    .await
                {
                    let _ = s.shutdown().await;
                }
                accept.await.unwrap()
            }
        };
        let foreign = || ca.issue(&id("other.domain", "sleep"), ttl, &[]).unwrap();
        assert!(handshake(server(vec![]), foreign()).await.is_ok());
        let pinned = vec!["spiffe://cluster.local/ns/default/sa/sleep".to_string()];
        assert!(handshake(server(pinned.clone()), foreign()).await.is_err());
        let sleep = ca.issue(&id("cluster.local", "sleep"), ttl, &[]).unwrap();
        assert!(handshake(server(pinned), sleep).await.is_ok());
        let forged = other_ca
            .issue(&id("cluster.local", "sleep"), ttl, &[])
            .unwrap();
        assert!(handshake(server(vec![]), forged).await.is_err());
    }
}
