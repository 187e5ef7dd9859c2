//! The peer's identity, read from an established connection.

use rustls::pki_types::CertificateDer;

use crate::error::VerifyError;
use crate::identity::Identity;
use crate::pki;

/// The authenticated SPIFFE identity of the other end of an mTLS connection.
///
/// Read once per connection (x509-parser on the peer's leaf certificate); mesh-tower puts
/// it into each request's extensions, where authorization reads
/// [`principal`](Self::principal) (`source.principal`) and [`namespace`](Self::namespace)
/// (`source.namespace`). A plaintext connection has none.
///
/// # Examples
///
/// Reading the identity from a certificate chain, as the handshake does (on a live
/// connection use [`PeerIdentity::of`]):
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, PeerIdentity};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let sleep = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = ca.issue(&sleep, Duration::from_secs(3600), &[])?;
///
/// let peer = PeerIdentity::from_certs(&cert.chain_der()?)?;
/// assert_eq!(peer.identity(), &sleep);
/// assert_eq!(peer.principal(), "cluster.local/ns/default/sa/sleep");
/// assert_eq!(peer.namespace(), "default");
/// assert_eq!(peer.service_account(), "sleep");
/// assert_eq!(peer, PeerIdentity::new(sleep));
///
/// // No certificate at all: no identity.
/// assert!(PeerIdentity::from_certs(&[]).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    identity: Identity,
}

impl PeerIdentity {
    /// The identity in a peer's certificate chain (leaf first).
    pub fn from_certs(certs: &[CertificateDer<'_>]) -> Result<Self, VerifyError> {
        let leaf = certs.first().ok_or(VerifyError::NoClientCertificate)?;
        Ok(Self {
            identity: pki::spiffe_of(leaf)?,
        })
    }

    /// The identity of the peer of an established rustls connection (server or client
    /// side), or `None` if it presented no certificate or no SPIFFE identity.
    pub fn of(conn: &rustls::CommonState) -> Option<Self> {
        Self::from_certs(conn.peer_certificates()?).ok()
    }

    /// Wraps an identity (for tests and for identities learnt by other means).
    pub fn new(identity: Identity) -> Self {
        Self { identity }
    }

    /// The SPIFFE identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Istio's principal `<td>/ns/<ns>/sa/<sa>`.
    pub fn principal(&self) -> &str {
        self.identity.principal()
    }

    /// The peer's namespace.
    pub fn namespace(&self) -> &str {
        self.identity.namespace()
    }

    /// The peer's trust domain.
    pub fn trust_domain(&self) -> &str {
        self.identity.trust_domain()
    }

    /// The peer's service account.
    pub fn service_account(&self) -> &str {
        self.identity.service_account()
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}
