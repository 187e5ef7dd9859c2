//! Errors: [`TlsError`] for loading and building, [`VerifyError`] for a peer that failed
//! verification inside a handshake.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::identity::{Identity, IdentityError};

/// An error loading certificates, building a CA or a TLS configuration.
///
/// None of these happen on the request path: they are reported when a CA, a credential or a
/// config is built, and the previous good state (if any) stays in place.
///
/// # Examples
///
/// ```
/// use mesh_tls::{MeshCa, TlsError, WorkloadCert};
///
/// // Trust domains are lower case (the SPIFFE rule).
/// let err = MeshCa::self_signed("Cluster.Local").unwrap_err();
/// assert!(matches!(err, TlsError::Config(_)));
///
/// // Unreadable files are named.
/// let err = WorkloadCert::read_dir("/nonexistent/certs").unwrap_err();
/// assert!(matches!(err, TlsError::Io { .. }));
/// assert!(err.to_string().starts_with("/nonexistent/certs/cert-chain.pem: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// PEM or DER that does not parse, or holds nothing of the expected kind.
    #[error("{what}: {reason}")]
    Parse {
        /// What was being parsed (usually a file name).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A private key that does not belong to its certificate.
    #[error("{what}: the private key does not match the certificate's public key")]
    KeyMismatch {
        /// Which key and certificate.
        what: String,
    },
    /// A certificate that cannot serve its purpose (not a CA, expired CA, chain that does
    /// not reach the root, missing SPIFFE ID, ...).
    #[error("{what}: {reason}")]
    InvalidCertificate {
        /// Which certificate.
        what: String,
        /// Why.
        reason: String,
    },
    /// A bad SPIFFE identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Settings rejected as Istio rejects them (the message is Istio's where it has one).
    #[error("{0}")]
    Config(String),
    /// Certificate generation failed in rcgen.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A certificate source (the CA, or a future istiod client) failed.
    #[error("certificate source: {0}")]
    Source(String),
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn parse(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Parse {
            what: what.into(),
            reason: reason.into(),
        }
    }
    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidCertificate {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Why a peer's certificate was refused during a handshake.
///
/// Every variant names what was expected and what the peer presented. The verifiers return
/// it inside `rustls::Error::InvalidCertificate(CertificateError::Other(..))`; get it back
/// with [`VerifyError::from_rustls`] or, from an I/O error returned by a handshake,
/// [`VerifyError::from_io`]. Errors rustls raises itself are mapped too (for example a
/// client that sent no certificate to a STRICT server is
/// [`NoClientCertificate`](Self::NoClientCertificate)).
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, PeerPolicy, VerifyError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = PeerPolicy::trust_domain("cluster.local");
/// let stranger = Identity::new("other.mesh", "default", "sleep")?;
/// let err = policy.check(&stranger).unwrap_err();
/// assert_eq!(err.kind(), "wrong_trust_domain");
/// assert_eq!(
///     err.to_string(),
///     "wrong trust domain: presented spiffe://other.mesh/ns/default/sa/sleep \
///      (trust domain \"other.mesh\"), expected one of [cluster.local]",
/// );
///
/// // What a verifier hands to rustls, and how to get it back.
/// let back = VerifyError::from_rustls(&err.clone().into_rustls());
/// assert_eq!(back, Some(err));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The peer's certificate (or one in its chain) has expired.
    Expired {
        /// The peer's SPIFFE ID (or other SAN) if it could be read.
        presented: String,
        /// When it stopped being valid.
        not_after: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// The peer's certificate (or one in its chain) is not valid yet.
    NotYetValid {
        /// The peer's SPIFFE ID (or other SAN) if it could be read.
        presented: String,
        /// When it becomes valid.
        not_before: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// The chain does not lead to any root of the trust bundle.
    UnknownIssuer {
        /// The peer's SPIFFE ID (or other SAN) if it could be read.
        presented: String,
        /// The issuer named by the last certificate the peer sent.
        presented_issuer: String,
        /// The subjects of the trusted roots.
        expected_roots: Vec<String>,
    },
    /// A valid chain, but the SPIFFE ID is in a trust domain we do not accept.
    WrongTrustDomain {
        /// The accepted trust domains.
        expected: Vec<String>,
        /// The peer's identity.
        presented: Identity,
    },
    /// A valid chain in an accepted trust domain, but not one of the allowed identities
    /// (or, for SIMPLE/MUTUAL origination, no SAN matches `subjectAltNames`).
    IdentityNotAllowed {
        /// The allowed identities or names.
        expected: Vec<String>,
        /// What the peer's certificate carries (its SPIFFE ID, or all its SANs).
        presented: Vec<String>,
    },
    /// The client sent no certificate, and mTLS is required.
    NoClientCertificate,
    /// A valid chain, but no SPIFFE ID in Istio's form in the URI SANs.
    NoSpiffeIdentity {
        /// The SANs the certificate carries.
        presented: Vec<String>,
    },
    /// Any other certificate problem (bad signature, wrong key usage, bad encoding...).
    Invalid {
        /// The peer's SPIFFE ID (or other SAN) if it could be read.
        presented: String,
        /// What is wrong.
        reason: String,
    },
}

impl VerifyError {
    /// Wraps this error as the rustls error a verifier returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::rustls::{CertificateError, Error};
    /// use mesh_tls::VerifyError;
    ///
    /// let err = VerifyError::NoClientCertificate.into_rustls();
    /// assert!(matches!(err, Error::InvalidCertificate(CertificateError::Other(_))));
    /// assert_eq!(VerifyError::from_rustls(&err), Some(VerifyError::NoClientCertificate));
    /// ```
    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(self),
        )))
    }

    /// Recovers the verification failure behind a rustls error, if it is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::rustls::{CertificateError, Error};
    /// use mesh_tls::VerifyError;
    ///
    /// // rustls's own errors are mapped too.
    /// assert_eq!(
    ///     VerifyError::from_rustls(&Error::NoCertificatesPresented),
    ///     Some(VerifyError::NoClientCertificate),
    /// );
    /// let unknown = VerifyError::from_rustls(&Error::InvalidCertificate(CertificateError::UnknownIssuer));
    /// assert_eq!(unknown.unwrap().kind(), "unknown_issuer");
    /// // Not a certificate problem.
    /// assert_eq!(VerifyError::from_rustls(&Error::HandshakeNotComplete), None);
    /// ```
    pub fn from_rustls(err: &rustls::Error) -> Option<VerifyError> {
        match err {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<VerifyError>().cloned()
            }
            rustls::Error::NoCertificatesPresented => Some(VerifyError::NoClientCertificate),
            rustls::Error::InvalidCertificate(e) => Some(from_certificate_error(e, String::new())),
            _ => None,
        }
    }

    /// Recovers the verification failure behind an I/O error returned by a tokio-rustls
    /// handshake (or a read after it), if it is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use mesh_tls::VerifyError;
    ///
    /// // tokio-rustls reports a handshake failure as an I/O error wrapping the rustls error.
    /// let err = io::Error::new(io::ErrorKind::InvalidData, mesh_tls::rustls::Error::NoCertificatesPresented);
    /// assert_eq!(VerifyError::from_io(&err), Some(VerifyError::NoClientCertificate));
    ///
    /// // Other I/O errors are not verification failures.
    /// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    /// assert_eq!(VerifyError::from_io(&reset), None);
    /// ```
    pub fn from_io(err: &io::Error) -> Option<VerifyError> {
        let inner = err.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Self::from_rustls(r);
        }
        inner.downcast_ref::<VerifyError>().cloned()
    }

    /// A short stable name of the failure kind, for logs and metrics labels.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy, VerifyError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(VerifyError::NoClientCertificate.kind(), "no_client_certificate");
    /// let policy = PeerPolicy::trust_domain("cluster.local")
    ///     .allow_only([Identity::new("cluster.local", "default", "sleep")?]);
    /// let err = policy.check(&Identity::new("cluster.local", "default", "curl")?).unwrap_err();
    /// assert_eq!(err.kind(), "identity_not_allowed");
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::UnknownIssuer { .. } => "unknown_issuer",
            Self::WrongTrustDomain { .. } => "wrong_trust_domain",
            Self::IdentityNotAllowed { .. } => "identity_not_allowed",
            Self::NoClientCertificate => "no_client_certificate",
            Self::NoSpiffeIdentity { .. } => "no_spiffe_identity",
            Self::Invalid { .. } => "invalid_certificate",
        }
    }
}

/// Maps a rustls certificate error (as the stock webpki verifiers return) to ours.
pub(crate) fn from_certificate_error(
    e: &rustls::CertificateError,
    presented: String,
) -> VerifyError {
    use rustls::CertificateError as C;
    match e {
        C::ExpiredContext { time, not_after } => VerifyError::Expired {
            presented,
            not_after: to_system(not_after.as_secs()),
            now: to_system(time.as_secs()),
        },
        C::Revoked => VerifyError::Invalid {
            presented,
            reason: "certificate revoked: a configured CRL lists it".into(),
        },
        C::UnknownRevocationStatus => VerifyError::Invalid {
            presented,
            reason: "revocation status unknown: no configured CRL is from the issuer of a \
                     certificate in the chain (a CRL is needed for every CA of the chain)"
                .into(),
        },
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => VerifyError::Invalid {
            presented,
            reason: "the certificate revocation list has expired (its nextUpdate has passed)"
                .into(),
        },
        C::Expired => VerifyError::Expired {
            presented,
            not_after: UNIX_EPOCH,
            now: SystemTime::now(),
        },
        C::NotValidYetContext { time, not_before } => VerifyError::NotYetValid {
            presented,
            not_before: to_system(not_before.as_secs()),
            now: to_system(time.as_secs()),
        },
        C::NotValidYet => VerifyError::NotYetValid {
            presented,
            not_before: UNIX_EPOCH,
            now: SystemTime::now(),
        },
        // The issuer's name matched a trusted certificate but its key did not sign: an
        // issuer we do not know (e.g. another mesh's root with the same name).
        C::UnknownIssuer | C::BadSignature => VerifyError::UnknownIssuer {
            presented,
            presented_issuer: String::new(),
            expected_roots: Vec::new(),
        },
        C::Other(other) => match other.0.downcast_ref::<VerifyError>() {
            Some(v) => v.clone(),
            None => VerifyError::Invalid {
                presented,
                reason: other.to_string(),
            },
        },
        other => VerifyError::Invalid {
            presented,
            reason: format!("{other:?}"),
        },
    }
}

pub(crate) fn to_system(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Formats a time as RFC 3339 (UTC), e.g. `2026-11-25T20:40:16Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => dt
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| format!("@{secs}")),
        Err(_) => format!("@{secs}"),
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "<unknown>"
    } else {
        s
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired {
                presented,
                not_after,
                now,
            } => write!(
                f,
                "certificate expired: presented {} valid until {}, now {}",
                or_unknown(presented),
                rfc3339(*not_after),
                rfc3339(*now)
            ),
            Self::NotYetValid {
                presented,
                not_before,
                now,
            } => write!(
                f,
                "certificate not yet valid: presented {} valid from {}, now {}",
                or_unknown(presented),
                rfc3339(*not_before),
                rfc3339(*now)
            ),
            Self::UnknownIssuer {
                presented,
                presented_issuer,
                expected_roots,
            } => write!(
                f,
                "unknown issuer: presented {} issued by {:?}, expected a chain to one of [{}]",
                or_unknown(presented),
                or_unknown(presented_issuer),
                expected_roots.join("; ")
            ),
            Self::WrongTrustDomain {
                expected,
                presented,
            } => write!(
                f,
                "wrong trust domain: presented {presented} (trust domain {:?}), expected one of [{}]",
                presented.trust_domain(),
                expected.join(", ")
            ),
            Self::IdentityNotAllowed {
                expected,
                presented,
            } => write!(
                f,
                "identity not allowed: presented [{}], expected one of [{}]",
                presented.join(", "),
                expected.join(", ")
            ),
            Self::NoClientCertificate => {
                f.write_str("no client certificate: mutual TLS is required and the peer sent none")
            }
            Self::NoSpiffeIdentity { presented } => write!(
                f,
                "no SPIFFE identity: expected a URI SAN spiffe://<td>/ns/<ns>/sa/<sa>, presented SANs [{}]",
                presented.join(", ")
            ),
            Self::Invalid { presented, reason } => write!(
                f,
                "invalid certificate presented by {}: {reason}",
                or_unknown(presented)
            ),
        }
    }
}

impl std::error::Error for VerifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_rustls_and_io() {
        let id: Identity = "spiffe://other/ns/a/sa/b".parse().unwrap();
        let cases = vec![
            VerifyError::WrongTrustDomain {
                expected: vec!["cluster.local".into()],
                presented: id.clone(),
            },
            VerifyError::IdentityNotAllowed {
                expected: vec!["spiffe://cluster.local/ns/a/sa/c".into()],
                presented: vec![id.to_string()],
            },
            VerifyError::NoClientCertificate,
            VerifyError::Expired {
                presented: id.to_string(),
                not_after: to_system(10),
                now: to_system(20),
            },
        ];
        for case in cases {
            let r = case.clone().into_rustls();
            assert_eq!(VerifyError::from_rustls(&r).as_ref(), Some(&case));
            let io = io::Error::new(io::ErrorKind::InvalidData, r);
            assert_eq!(VerifyError::from_io(&io).as_ref(), Some(&case));
            assert!(!case.to_string().is_empty());
        }
        assert_eq!(
            VerifyError::from_rustls(&rustls::Error::NoCertificatesPresented),
            Some(VerifyError::NoClientCertificate)
        );
        assert_eq!(
            VerifyError::from_rustls(&rustls::Error::HandshakeNotComplete),
            None
        );
        assert_eq!(VerifyError::from_io(&io::Error::other("x")), None);
    }

    #[test]
    fn messages_name_expected_and_presented() {
        let id: Identity = "spiffe://evil.org/ns/a/sa/b".parse().unwrap();
        let e = VerifyError::WrongTrustDomain {
            expected: vec!["cluster.local".into()],
            presented: id,
        };
        let m = e.to_string();
        assert!(m.contains("evil.org") && m.contains("cluster.local"), "{m}");
        let e = VerifyError::Expired {
            presented: "spiffe://td/ns/a/sa/b".into(),
            not_after: to_system(0),
            now: to_system(86_400),
        };
        assert_eq!(
            e.to_string(),
            "certificate expired: presented spiffe://td/ns/a/sa/b valid until 1970-01-01T00:00:00Z, now 1970-01-02T00:00:00Z"
        );
        assert_eq!(e.kind(), "expired");
    }
}
