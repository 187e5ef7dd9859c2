//! PEM/DER helpers and certificate inspection with x509-parser.

use std::path::Path;
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{to_system, TlsError, VerifyError};
use crate::identity::{Identity, SPIFFE_PREFIX};

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::io(path, e))
}

/// Parses every `CERTIFICATE` block of a PEM text. Errors when there is none or one is
/// malformed.
///
/// `what` names the input in error messages (usually its file name).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{certs_from_pem, Identity, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
///
/// let chain = certs_from_pem("cert-chain.pem", cert.chain_pem().as_bytes())?;
/// assert_eq!(chain.len(), 1); // the leaf; a self-signed root has no intermediate
///
/// let err = certs_from_pem("cert-chain.pem", b"not PEM").unwrap_err();
/// assert_eq!(err.to_string(), "cert-chain.pem: no CERTIFICATE block found");
/// # Ok(()) }
/// ```
pub fn certs_from_pem(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::parse(what, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::parse(what, "no CERTIFICATE block found"));
    }
    for c in &certs {
        X509Certificate::from_der(c)
            .map_err(|e| TlsError::parse(what, format!("bad certificate: {e}")))?;
    }
    Ok(certs)
}

/// Parses every `X509 CRL` block of a PEM text: a DestinationRule's `caCrl`, a
/// credential's `ca.crl`. Errors when there is none or one is malformed, so a revocation
/// list that cannot be read is never taken for an empty one.
///
/// `what` names the input in error messages (usually its file name).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{crls_from_pem, Identity, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
/// let crl = ca.revocation_list(&[&cert], Duration::from_secs(3600))?;
///
/// assert_eq!(crls_from_pem("ca.crl", crl.as_bytes())?.len(), 1);
/// let err = crls_from_pem("ca.crl", cert.chain_pem().as_bytes()).unwrap_err();
/// assert_eq!(err.to_string(), "ca.crl: no X509 CRL block found");
/// # Ok(()) }
/// ```
pub fn crls_from_pem(
    what: &str,
    pem: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::parse(what, format!("bad PEM: {e}")))?;
    if crls.is_empty() {
        return Err(TlsError::parse(what, "no X509 CRL block found"));
    }
    for c in &crls {
        webpki::BorrowedCertRevocationList::from_der(c)
            .map_err(|e| TlsError::parse(what, format!("bad CRL: {e:?}")))?;
    }
    Ok(crls)
}

/// The revocation lists as webpki checks them (parsed once, when a config is built).
pub(crate) fn owned_crls(
    what: &str,
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<std::sync::Arc<[webpki::CertRevocationList<'static>]>, TlsError> {
    crls.iter()
        .map(|c| {
            webpki::OwnedCertRevocationList::from_der(c)
                .map(webpki::CertRevocationList::from)
                .map_err(|e| TlsError::parse(what, format!("bad CRL: {e:?}")))
        })
        .collect()
}

/// Parses the private key of a PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{key_from_pem, Identity, MeshCa};
/// use mesh_tls::rustls::pki_types::PrivateKeyDer;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
///
/// let key = key_from_pem("key.pem", cert.key_pem().as_bytes())?;
/// assert!(matches!(key, PrivateKeyDer::Pkcs8(_))); // the CA writes PKCS#8 keys
/// assert!(key_from_pem("key.pem", cert.chain_pem().as_bytes()).is_err());
/// # Ok(()) }
/// ```
pub fn key_from_pem(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::parse(what, format!("no usable private key: {e}")))
}

/// Encodes DER certificates as PEM.
pub(crate) fn certs_to_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for c in certs {
        out.push_str(&pem_block("CERTIFICATE", c));
    }
    out
}

pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// What we read from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    pub(crate) uris: Vec<String>,
    pub(crate) dns: Vec<String>,
    pub(crate) ips: Vec<String>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) is_ca: bool,
}

impl CertInfo {
    pub(crate) fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, x) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut info = CertInfo {
            uris: Vec::new(),
            dns: Vec::new(),
            ips: Vec::new(),
            not_before: to_system(x.validity().not_before.timestamp().max(0) as u64),
            not_after: to_system(x.validity().not_after.timestamp().max(0) as u64),
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            is_ca: x.is_ca(),
        };
        let san = x
            .subject_alternative_name()
            .map_err(|e| format!("bad subjectAltName: {e}"))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => info.uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => info.dns.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            info.ips.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// All SANs, URIs first, for messages.
    pub(crate) fn all_sans(&self) -> Vec<String> {
        self.uris
            .iter()
            .chain(&self.dns)
            .chain(&self.ips)
            .cloned()
            .collect()
    }

    /// The best short description of who presented this certificate.
    pub(crate) fn presented(&self) -> String {
        self.uris
            .first()
            .or(self.dns.first())
            .cloned()
            .unwrap_or_else(|| self.subject.clone())
    }

    /// The certificate's single SPIFFE identity (an X.509 SVID carries exactly one URI SAN
    /// of the `spiffe` scheme).
    pub(crate) fn spiffe(&self) -> Result<Identity, VerifyError> {
        let mut spiffe = self.uris.iter().filter(|u| is_spiffe(u));
        let (Some(first), None) = (spiffe.next(), spiffe.next()) else {
            return Err(VerifyError::NoSpiffeIdentity {
                presented: self.all_sans(),
            });
        };
        Identity::parse(first).map_err(|_| VerifyError::NoSpiffeIdentity {
            presented: self.all_sans(),
        })
    }
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// The SPIFFE identity of a DER certificate: exactly one `spiffe://` URI SAN, in Istio's
/// form. Only the failure path builds a full [`CertInfo`] for the message.
pub(crate) fn spiffe_of(der: &[u8]) -> Result<Identity, VerifyError> {
    let fail = || match CertInfo::parse(der) {
        Ok(info) => VerifyError::NoSpiffeIdentity {
            presented: info.all_sans(),
        },
        Err(reason) => VerifyError::Invalid {
            presented: String::new(),
            reason,
        },
    };
    let Ok((_, x)) = X509Certificate::from_der(der) else {
        return Err(fail());
    };
    let Ok(Some(san)) = x.subject_alternative_name() else {
        return Err(fail());
    };
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(u) = name
            && is_spiffe(u)
        {
            if found.is_some() {
                return Err(fail());
            }
            found = Some(*u);
        }
    }
    found.and_then(|u| Identity::parse(u).ok()).ok_or_else(fail)
}

/// Checks that every CA certificate of a peer's chain (`intermediates`, as sent after its
/// leaf `end_entity`) may sign certificates: one whose key usage is present without
/// `keyCertSign` issues nothing, as BoringSSL (Envoy) and OpenSSL check and webpki does not.
/// A certificate that cannot be parsed fails too (fail closed). Runs once per handshake,
/// on the intermediates only (a mesh CA's leaves usually come with none). Unlike
/// BoringSSL, which checks the chain it built, every certificate the peer sent is checked
/// (an unused extra one without `keyCertSign` refuses too), and the trust bundle's roots
/// are not (they are the operator's).
pub(crate) fn check_ca_key_usage(
    end_entity: &[u8],
    intermediates: &[impl AsRef<[u8]>],
) -> Result<(), VerifyError> {
    for der in intermediates {
        let refused = |reason: String| VerifyError::Invalid {
            presented: CertInfo::parse(end_entity)
                .map(|i| i.presented())
                .unwrap_or_default(),
            reason,
        };
        let (_, x) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| refused(format!("a certificate of the chain cannot be parsed: {e}")))?;
        let ku = x
            .key_usage()
            .map_err(|e| refused(format!("bad key usage in `{}`: {e}", x.subject())))?;
        if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(refused(format!(
                "the chain's CA `{}` may not sign certificates: its key usage lacks keyCertSign",
                x.subject()
            )));
        }
    }
    Ok(())
}

fn is_spiffe(uri: &str) -> bool {
    uri.get(..SPIFFE_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SPIFFE_PREFIX))
}

/// The raw public key bits (the subjectPublicKey BIT STRING) of a DER certificate.
pub(crate) fn public_key_bits(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, x) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    Ok(x.public_key().subject_public_key.data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_table() {
        for (input, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input), want);
        }
    }

    #[test]
    fn pem_errors() {
        assert!(certs_from_pem("x", b"").is_err());
        assert!(certs_from_pem("x", b"garbage").is_err());
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = certs_from_pem("x", bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("bad certificate"), "{err}");
        assert!(key_from_pem("k", b"nothing").is_err());
    }

    #[test]
    fn istio_sample_workload_cert() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/istio-samples/certs/workload-foo-cert.pem"
        ));
        let Ok(pem) = pem else {
            eprintln!("skipped: Istio sample certs not present");
            return;
        };
        let certs = certs_from_pem("workload-foo-cert.pem", &pem).unwrap();
        assert_eq!(certs.len(), 2);
        let info = CertInfo::parse(&certs[0]).unwrap();
        assert_eq!(info.uris, vec!["spiffe://trust-domain-foo/ns/foo/sa/foo"]);
        assert_eq!(
            info.spiffe().unwrap().principal(),
            "trust-domain-foo/ns/foo/sa/foo"
        );
        assert!(!info.is_ca);
        // PEM round trip
        let again = certs_from_pem("again", certs_to_pem(&certs).as_bytes()).unwrap();
        assert_eq!(again, certs);
    }
}
