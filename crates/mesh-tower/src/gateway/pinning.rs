//! A MUTUAL gateway server's extra client-certificate checks: `subjectAltNames`,
//! `verifyCertificateSpki` and `verifyCertificateHash`, as Envoy's
//! `CertificateValidationContext` applies them (`match_typed_subject_alt_names` with exact
//! matchers, `verify_certificate_spki`, `verify_certificate_hash`): after the chain is
//! verified, during the handshake, so a client that fails them gets a TLS alert, not a
//! connection.

use std::sync::Arc;

use mesh_tls::rustls::client::danger::HandshakeSignatureValid;
use mesh_tls::rustls::pki_types::{CertificateDer, UnixTime};
use mesh_tls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use mesh_tls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The checks on top of the chain's verification.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    /// `subjectAltNames`: one of the certificate's SANs (DNS, URI, email or IP) must be
    /// one of these, exactly.
    sans: Vec<String>,
    /// `verifyCertificateSpki` (SHA-256 of the SubjectPublicKeyInfo, base64) and
    /// `verifyCertificateHash` (SHA-256 of the certificate, hex): the certificate must
    /// match one of either when any is given.
    spki: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

impl Pins {
    /// The settings' checks; an entry that is not a SHA-256 in the expected encoding is an
    /// error (Envoy refuses such a config).
    pub(crate) fn new(sans: &[String], spki: &[String], hashes: &[String]) -> Result<Pins, String> {
        let spki = spki
            .iter()
            .map(|s| {
                mesh_core::names::base64_decode(s.trim(), false)
                    .filter(|d| d.len() == 32)
                    .ok_or_else(|| format!("verifyCertificateSpki {s:?} is not a base64 SHA-256"))
            })
            .collect::<Result<_, _>>()?;
        let hashes = hashes
            .iter()
            .map(|h| {
                decode_hex(h)
                    .filter(|d| d.len() == 32)
                    .ok_or_else(|| format!("verifyCertificateHash {h:?} is not a hex SHA-256"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Pins {
            sans: sans.to_vec(),
            spki,
            hashes,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sans.is_empty() && self.spki.is_empty() && self.hashes.is_empty()
    }

    /// Whether the client's (verified) leaf passes.
    fn accepts(&self, der: &[u8]) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return false;
        };
        if !self.sans.is_empty() && !sans_match(&self.sans, &cert) {
            return false;
        }
        if self.spki.is_empty() && self.hashes.is_empty() {
            return true;
        }
        let spki = super::xfcc::sha256(cert.tbs_certificate.subject_pki.raw);
        let hash = super::xfcc::sha256(der);
        spki.is_some_and(|d| self.spki.contains(&d))
            || hash.is_some_and(|d| self.hashes.contains(&d))
    }
}

/// Whether one of the certificate's SANs matches one of `wanted`, as Envoy matches an
/// exact `subjectAltNames` entry against each SAN type: a DNS name case-insensitively, a
/// wildcard certificate name (`*.example.com`) covering one label; URIs, email addresses
/// and IP addresses (as text) exactly.
fn sans_match(wanted: &[String], cert: &X509Certificate<'_>) -> bool {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|name| match name {
        GeneralName::DNSName(dns) => wanted.iter().any(|w| dns_name_match(w, dns)),
        GeneralName::URI(s) | GeneralName::RFC822Name(s) => wanted.iter().any(|w| w == s),
        GeneralName::IPAddress(b) => {
            let ip = match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                _ => None,
            };
            ip.is_some_and(|ip| wanted.iter().any(|w| *w == ip.to_string()))
        }
        _ => false,
    })
}

/// Envoy's `dnsNameMatch(dns_name, pattern)`: `pattern` (the certificate's name) equal to
/// `dns_name` ignoring case, or `*.suffix` where `dns_name` is one label before `.suffix`.
fn dns_name_match(dns_name: &str, pattern: &str) -> bool {
    if dns_name.eq_ignore_ascii_case(pattern) {
        return true;
    }
    match (pattern.strip_prefix('*'), dns_name.find('.')) {
        (Some(suffix), Some(dot)) if suffix.starts_with('.') && dot > 0 => {
            dns_name[dot..].eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

/// Hex, simple or colon-separated (`DF:6F:...`), either case.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// A client-certificate verifier: `inner`'s chain verification, then the pins.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) pins: Pins,
}

impl ClientCertVerifier for PinnedVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.pins.accepts(end_entity.as_ref()) {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_as_envoy_matches_them() {
        assert!(dns_name_match("a.c.example.com", "A.C.Example.com"));
        assert!(dns_name_match("a.c.example.com", "*.c.example.com"));
        assert!(
            !dns_name_match("x.a.c.example.com", "*.c.example.com"),
            "one label"
        );
        assert!(!dns_name_match("c.example.com", "*.c.example.com"));
        assert!(!dns_name_match("a.c.example.com", "*.example.com"));
    }

    #[test]
    fn encodings() {
        // the SHA-256 of "" in both encodings Istio documents
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let colons: String = hex
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(decode_hex(hex), decode_hex(&colons));
        assert_eq!(decode_hex(hex).unwrap().len(), 32);
        let b64 = mesh_core::names::base64_encode(&decode_hex(hex).unwrap(), false);
        assert_eq!(
            mesh_core::names::base64_decode(&b64, false),
            decode_hex(hex)
        );
        assert!(Pins::new(&[], &[b64], &[hex.into()]).is_ok());
        assert!(Pins::new(&[], &["not base64!".into()], &[])
            .unwrap_err()
            .contains("verifyCertificateSpki"));
        assert!(Pins::new(&[], &[], &["abc".into()])
            .unwrap_err()
            .contains("verifyCertificateHash"));
        assert!(
            Pins::new(&[], &["AAAA".into()], &[]).is_err(),
            "too short for a SHA-256"
        );
    }
}
