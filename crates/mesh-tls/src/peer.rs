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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// assert_eq!(PeerIdentity::from_certs(&cert.chain_der()?)?.identity(), &id);
    /// // A root has no SPIFFE identity.
    /// assert!(PeerIdentity::from_certs(ca.trust_bundle().certs()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_certs(certs: &[CertificateDer<'_>]) -> Result<Self, VerifyError> {
        let leaf = certs.first().ok_or(VerifyError::NoClientCertificate)?;
        Ok(Self {
            identity: pki::spiffe_of(leaf)?,
        })
    }

    /// The identity of the peer of an established rustls connection (server or client
    /// side), or `None` if it presented no certificate or no SPIFFE identity.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let ttl = Duration::from_secs(3600);
    /// let server_id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let client_id = Identity::new("cluster.local", "default", "sleep")?;
    /// # let server = WorkloadCredentials::new(ca.issue(&server_id, ttl, &[])?)?;
    /// # let client = WorkloadCredentials::new(ca.issue(&client_id, ttl, &[])?)?;
    /// # let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
    /// # let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
    /// # let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
    /// # let outbound = client_config(&settings, &dest, &ClientContext { workload: Some(&client), ..Default::default() })?.unwrap();
    /// // An mTLS handshake between an ISTIO_MUTUAL client and a STRICT server, in memory.
    /// let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    /// let acceptor = inbound.tls_acceptor().unwrap();
    /// let (client_tls, server_tls) = tokio::join!(outbound.connect(client_io), acceptor.accept(server_io));
    /// let (client_tls, server_tls) = (client_tls?, server_tls?);
    ///
    /// // Each side reads the other's identity from its rustls connection.
    /// assert_eq!(PeerIdentity::of(client_tls.get_ref().1).unwrap().identity(), &server_id);
    /// assert_eq!(PeerIdentity::of(server_tls.get_ref().1).unwrap().identity(), &client_id);
    /// # Ok(()) }
    /// ```
    pub fn of(conn: &rustls::CommonState) -> Option<Self> {
        Self::from_certs(conn.peer_certificates()?).ok()
    }

    /// Wraps an identity (for tests and for identities learnt by other means).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = PeerIdentity::new(Identity::new("cluster.local", "default", "sleep")?);
    /// assert_eq!(peer.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
    /// # Ok(()) }
    /// ```
    pub fn new(identity: Identity) -> Self {
        Self { identity }
    }

    /// The SPIFFE identity.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// assert_eq!(PeerIdentity::new(id.clone()).identity(), &id);
    /// # Ok(()) }
    /// ```
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Istio's principal `<td>/ns/<ns>/sa/<sa>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = PeerIdentity::new(Identity::new("cluster.local", "default", "sleep")?);
    /// assert_eq!(peer.principal(), "cluster.local/ns/default/sa/sleep");
    /// # Ok(()) }
    /// ```
    pub fn principal(&self) -> &str {
        self.identity.principal()
    }

    /// The peer's namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "productpage")?);
    /// assert_eq!(peer.namespace(), "bookinfo");
    /// # Ok(()) }
    /// ```
    pub fn namespace(&self) -> &str {
        self.identity.namespace()
    }

    /// The peer's trust domain.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = PeerIdentity::new(Identity::new("prod.example.com", "default", "sleep")?);
    /// assert_eq!(peer.trust_domain(), "prod.example.com");
    /// # Ok(()) }
    /// ```
    pub fn trust_domain(&self) -> &str {
        self.identity.trust_domain()
    }

    /// The peer's service account.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerIdentity};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let peer = PeerIdentity::new(Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?);
    /// assert_eq!(peer.service_account(), "bookinfo-reviews");
    /// # Ok(()) }
    /// ```
    pub fn service_account(&self) -> &str {
        self.identity.service_account()
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.identity.fmt(f)
    }
}
