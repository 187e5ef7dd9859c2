//! A workload's credentials and their rotation.
//!
//! [`WorkloadCredentials`] holds the current certificate behind an atomic pointer. The
//! rustls configs built from it ([`WorkloadCredentials::server_config`],
//! [`crate::client_config`]) resolve the certificate at each handshake through
//! `ResolvesServerCert`/`ResolvesClientCert`, so a config is built once and a renewed
//! certificate is served from the next handshake on; connections already open keep their
//! session and are never cut.
//!
//! [`CertManager`] renews the certificate before it expires (by default at half its life,
//! as Istio's agent does) from a [`CertificateSource`]: the in-process [`MeshCa`] through
//! [`CaSource`], or any other source (a future istiod CSR client).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::UnixTime;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SignatureScheme};

use crate::bundle::TrustBundle;
use crate::ca::{CertRequest, MeshCa, WorkloadCert, DEFAULT_WORKLOAD_TTL};
use crate::error::{rfc3339, TlsError};
use crate::identity::Identity;
use crate::verify::{self, MeshClientCertVerifier, PeerPolicy, SharedTrust, TrustState};

/// ALPN protocols a mesh server accepts, in its order of preference: HTTP/2, HTTP/1.1, and
/// the values Istio sidecar clients offer (`istio-peer-exchange`, `istio`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials, SERVER_ALPN};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "httpbin")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
/// let config = creds.server_config(None)?;
/// assert_eq!(config.alpn_protocols, SERVER_ALPN.map(<[u8]>::to_vec));
/// assert_eq!(SERVER_ALPN[0], b"h2"); // preferred
/// # Ok(()) }
/// ```
pub const SERVER_ALPN: [&[u8]; 4] = [b"h2", b"http/1.1", b"istio-peer-exchange", b"istio"];

struct Current {
    cert: WorkloadCert,
    key: Arc<CertifiedKey>,
}

/// The certificate resolver shared by every config of a workload.
#[derive(Clone)]
struct Resolver(Arc<ArcSwap<Current>>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Resolver")
            .field(&self.0.load().cert.identity())
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A workload's identity, current certificate and trust bundle.
///
/// Share it by `Arc`. Configs built from it follow certificate renewals and trust-bundle
/// changes without being rebuilt.
///
/// Usually a [`CertManager`] creates and renews them; [`WorkloadCredentials::new`] wraps a
/// certificate you already have.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, WorkloadCredentials, SERVER_ALPN};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "httpbin")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
/// assert_eq!(creds.identity(), &id);
/// assert_eq!(creds.trust_domains(), ["cluster.local"]);
///
/// // One server config for the workload; it serves whatever certificate is current.
/// let config = creds.server_config(None)?;
/// assert_eq!(config.alpn_protocols.len(), SERVER_ALPN.len());
///
/// // A renewal is picked up by that config from the next handshake on.
/// creds.install(ca.issue(&id, Duration::from_secs(7200), &[])?)?;
/// assert_eq!(creds.renewals(), 1);
/// assert_eq!(creds.not_after(), creds.current().not_after());
/// # Ok(()) }
/// ```
pub struct WorkloadCredentials {
    identity: Identity,
    current: Resolver,
    trust: SharedTrust,
    /// The roots trusted besides the current certificate's own: the extra roots it was
    /// built with, or the bundle [`WorkloadCredentials::set_trust_bundle`] set. A renewal's
    /// bundle is its certificate's roots and these, so roots the CA no longer serves (the
    /// last step of a root rotation) stop being trusted, as Istio's agent replaces the root
    /// it hands to Envoy.
    pinned: std::sync::Mutex<Option<TrustBundle>>,
    trust_domains: Arc<[String]>,
    renewals: AtomicU64,
}

impl fmt::Debug for WorkloadCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCredentials")
            .field("identity", &self.identity)
            .field("not_after", &rfc3339(self.not_after()))
            .field("trust_domains", &self.trust_domains)
            .finish_non_exhaustive()
    }
}

impl WorkloadCredentials {
    /// Credentials from a certificate; the trust bundle is the certificate's roots and the
    /// accepted trust domain is the identity's.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use mesh_tls::{CertRequest, Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// assert_eq!(creds.trust_bundle().certs(), ca.trust_bundle().certs());
    ///
    /// // An expired certificate is refused.
    /// let mut req = CertRequest::new(id);
    /// req.valid_from = Some(SystemTime::now() - Duration::from_secs(7200));
    /// req.ttl = Duration::from_secs(3600);
    /// assert!(WorkloadCredentials::new(ca.issue_request(&req)?).is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(cert: WorkloadCert) -> Result<Arc<Self>, TlsError> {
        Self::with_trust(cert, None, &[])
    }

    /// Credentials with extra roots (root rotation, other meshes) and trust-domain aliases
    /// accepted from peers.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let old_mesh = MeshCa::self_signed("old.example.com")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    ///
    /// let creds = WorkloadCredentials::with_trust(
    ///     cert,
    ///     Some(old_mesh.trust_bundle()),
    ///     &["old.example.com"],
    /// )?;
    /// assert_eq!(creds.trust_domains(), ["cluster.local", "old.example.com"]);
    /// assert_eq!(creds.trust_bundle().certs().len(), 2);
    ///
    /// let peer = Identity::new("old.example.com", "default", "sleep")?;
    /// assert!(creds.peer_policy().check(&peer).is_ok());
    /// # Ok(()) }
    /// ```
    pub fn with_trust(
        cert: WorkloadCert,
        extra_roots: Option<&TrustBundle>,
        trust_domain_aliases: &[&str],
    ) -> Result<Arc<Self>, TlsError> {
        let mut bundle = cert.trust_bundle()?;
        if let Some(extra) = extra_roots {
            bundle = bundle.merged(extra)?;
        }
        let identity = cert.identity().clone();
        let key = validate(&cert, &identity, &bundle)?;
        let mut tds = vec![identity.trust_domain().to_owned()];
        for a in trust_domain_aliases {
            crate::identity::check_trust_domain(a)
                .map_err(|r| TlsError::Config(format!("trust domain alias {a:?}: {r}")))?;
            if !tds.iter().any(|t| t == a) {
                tds.push((*a).to_owned());
            }
        }
        Ok(Arc::new(Self {
            identity,
            current: Resolver(Arc::new(ArcSwap::from_pointee(Current { cert, key }))),
            trust: verify::shared_trust(&bundle)?,
            pinned: std::sync::Mutex::new(extra_roots.cloned()),
            trust_domains: tds.into(),
            renewals: AtomicU64::new(0),
        }))
    }

    /// The workload's identity.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// assert_eq!(creds.identity(), &id);
    /// # Ok(()) }
    /// ```
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The current certificate.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// let creds = WorkloadCredentials::new(cert.clone())?;
    /// assert_eq!(creds.current().chain_pem(), cert.chain_pem());
    ///
    /// let renewed = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// creds.install(renewed.clone())?;
    /// assert_eq!(creds.current().chain_pem(), renewed.chain_pem());
    /// # Ok(()) }
    /// ```
    pub fn current(&self) -> WorkloadCert {
        self.current.0.load().cert.clone()
    }

    /// When the current certificate expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// let creds = WorkloadCredentials::new(cert.clone())?;
    /// assert_eq!(creds.not_after(), cert.not_after());
    /// # Ok(()) }
    /// ```
    pub fn not_after(&self) -> SystemTime {
        self.current.0.load().cert.not_after()
    }

    /// How many times a new certificate was installed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// assert_eq!(creds.renewals(), 0);
    /// creds.install(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// assert_eq!(creds.renewals(), 1);
    /// // A refused certificate is not a renewal.
    /// let other = Identity::new("cluster.local", "default", "sleep")?;
    /// assert!(creds.install(ca.issue(&other, Duration::from_secs(3600), &[])?).is_err());
    /// assert_eq!(creds.renewals(), 1);
    /// # Ok(()) }
    /// ```
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    /// The accepted trust domains (the identity's, then the aliases).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// let creds = WorkloadCredentials::with_trust(cert, None, &["old.example.com"])?;
    /// assert_eq!(creds.trust_domains(), ["cluster.local", "old.example.com"]);
    /// # Ok(()) }
    /// ```
    pub fn trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    /// The current trust bundle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let next = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// assert_eq!(creds.trust_bundle().certs().len(), 1);
    /// creds.set_trust_bundle(ca.trust_bundle().merged(next.trust_bundle())?)?;
    /// assert!(creds.trust_bundle().contains_all(next.trust_bundle()));
    /// # Ok(()) }
    /// ```
    pub fn trust_bundle(&self) -> TrustBundle {
        self.trust.load().bundle.clone()
    }

    /// Replaces the trust bundle (applies from the next handshake). Refused if the current
    /// certificate would no longer verify against it.
    ///
    /// The roots of `bundle` that are not the current certificate's own stay trusted across
    /// renewals (they replace the extra roots given to [`WorkloadCredentials::with_trust`]);
    /// the certificate's own roots are those of each renewed certificate, so a root the CA
    /// stops serving is no longer trusted once a certificate without it is installed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let next = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let ttl = Duration::from_secs(3600);
    /// let creds = WorkloadCredentials::new(ca.issue(&id, ttl, &[])?)?;
    ///
    /// // Only the next root: our own certificate would not verify. Refused.
    /// assert!(creds.set_trust_bundle(next.trust_bundle().clone()).is_err());
    /// // Both roots (the first step of a root rotation): accepted.
    /// creds.set_trust_bundle(ca.trust_bundle().merged(next.trust_bundle())?)?;
    /// assert_eq!(creds.trust_bundle().certs().len(), 2);
    /// // a renewal from the same CA keeps both; one from the next CA alone, only its root
    /// creds.install(ca.issue(&id, ttl, &[])?)?;
    /// assert_eq!(creds.trust_bundle().certs().len(), 2);
    /// creds.install(next.issue(&id, ttl, &[])?)?;
    /// assert_eq!(creds.trust_bundle().certs(), next.trust_bundle().certs());
    /// # Ok(()) }
    /// ```
    pub fn set_trust_bundle(&self, bundle: TrustBundle) -> Result<(), TlsError> {
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let cur = self.current.0.load();
        validate(&cur.cert, &self.identity, &bundle)?;
        let own = cur.cert.trust_bundle()?;
        let extra: Vec<_> = bundle
            .certs()
            .iter()
            .filter(|c| !own.certs().contains(c))
            .cloned()
            .collect();
        let extra = if extra.is_empty() {
            None
        } else {
            Some(TrustBundle::new(extra)?)
        };
        self.trust.store(Arc::new(TrustState::new(bundle)?));
        *pinned = extra;
        Ok(())
    }

    /// Installs a renewed certificate, after checking it: same identity, key matches, valid
    /// now, chain verifies up to its own roots (and the pinned ones: the extra roots given to
    /// [`WorkloadCredentials::with_trust`], or the bundle of
    /// [`WorkloadCredentials::set_trust_bundle`]). The trust bundle becomes those roots: a
    /// root the CA stopped serving is no longer trusted (the last step of a root rotation).
    /// On error the current certificate and bundle stay.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let ttl = Duration::from_secs(3600);
    /// let creds = WorkloadCredentials::new(ca.issue(&id, ttl, &[])?)?;
    ///
    /// // A certificate for another identity is refused; the current one stays.
    /// let other = Identity::new("cluster.local", "default", "sleep")?;
    /// assert!(creds.install(ca.issue(&other, ttl, &[])?).is_err());
    /// assert_eq!(creds.renewals(), 0);
    ///
    /// creds.install(ca.issue(&id, ttl, &[])?)?;
    /// assert_eq!(creds.renewals(), 1);
    /// # Ok(()) }
    /// ```
    pub fn install(&self, cert: WorkloadCert) -> Result<(), TlsError> {
        let pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let current_bundle = self.trust.load().bundle.clone();
        // the certificate's roots and the pinned ones: a root the CA no longer serves is
        // dropped, one it added is trusted
        let mut bundle = cert.trust_bundle()?;
        if let Some(p) = pinned.as_ref() {
            bundle = bundle.merged(p)?;
        }
        let changed =
            !(bundle.contains_all(&current_bundle) && current_bundle.contains_all(&bundle));
        let key = validate(&cert, &self.identity, &bundle)?;
        if changed {
            tracing::info!(identity = %self.identity, roots = bundle.certs().len(), "trust bundle follows the renewed certificate's roots");
            self.trust.store(Arc::new(TrustState::new(bundle)?));
        }
        drop(pinned);
        tracing::info!(identity = %self.identity, not_after = %rfc3339(cert.not_after()), "workload certificate installed");
        self.current.0.store(Arc::new(Current { cert, key }));
        self.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The default policy for peers: any identity of our trust domain or its aliases.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    ///
    /// let policy = creds.peer_policy();
    /// assert!(policy.check(&Identity::new("cluster.local", "prod", "sleep")?).is_ok());
    /// assert!(policy.check(&Identity::new("other.mesh", "prod", "sleep")?).is_err());
    /// # Ok(()) }
    /// ```
    pub fn peer_policy(&self) -> PeerPolicy {
        PeerPolicy::trust_domains(self.trust_domains.iter().cloned())
    }

    /// A rustls server config requiring a client certificate (STRICT, and the TLS side of
    /// PERMISSIVE), accepting clients per `policy` (default: [`peer_policy`](Self::peer_policy)),
    /// advertising [`SERVER_ALPN`]. Build it once per policy and share it; it follows
    /// certificate renewals by itself.
    ///
    /// # Examples
    ///
    /// A server that accepts only the `sleep` service account:
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, PeerPolicy, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    ///
    /// let sleep = Identity::new("cluster.local", "default", "sleep")?;
    /// let policy = PeerPolicy::trust_domain("cluster.local").allow_only([sleep]);
    /// let config = creds.server_config(Some(policy))?;
    /// assert_eq!(config.alpn_protocols[0], b"h2");
    /// assert_eq!(config.send_tls13_tickets, 0); // no session resumption
    /// # Ok(()) }
    /// ```
    pub fn server_config(&self, policy: Option<PeerPolicy>) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config_versions(policy, false)
    }

    /// [`server_config`](Self::server_config), TLS 1.3 only when `tls13_only` (MeshConfig
    /// `meshMTLS.minProtocolVersion: TLSV1_3`): a TLS 1.2 client fails the handshake.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let config = creds.server_config_versions(None, true)?;
    /// assert_eq!(config.alpn_protocols[0], b"h2");
    /// # Ok(()) }
    /// ```
    pub fn server_config_versions(
        &self,
        policy: Option<PeerPolicy>,
        tls13_only: bool,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let policy = policy.unwrap_or_else(|| self.peer_policy());
        let verifier = MeshClientCertVerifier::shared(self.trust.clone(), policy);
        let builder = ServerConfig::builder_with_provider(crate::provider());
        let builder = if tls13_only {
            builder.with_protocol_versions(&[&rustls::version::TLS13])?
        } else {
            builder.with_safe_default_protocol_versions()?
        };
        let mut cfg = builder
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(self.current.clone()));
        cfg.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        // No session resumption: every connection is a full handshake, so the client's
        // certificate and identity are checked against the current policy and bundle each
        // time, and the peer identity is always read from a certificate just verified.
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// The server config for a PeerAuthentication mode: the mTLS config for STRICT and
    /// PERMISSIVE (whose TLS side is mTLS), `None` for DISABLE.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    ///
    /// assert!(creds.server_config_for(PeerAuthnMode::Strict)?.is_some());
    /// assert!(creds.server_config_for(PeerAuthnMode::Permissive)?.is_some());
    /// assert!(creds.server_config_for(PeerAuthnMode::Disable)?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn server_config_for(
        &self,
        mode: crate::PeerAuthnMode,
    ) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        match mode {
            crate::PeerAuthnMode::Disable => Ok(None),
            crate::PeerAuthnMode::Strict | crate::PeerAuthnMode::Permissive => {
                self.server_config(None).map(Some)
            }
        }
    }

    pub(crate) fn shared_trust(&self) -> SharedTrust {
        self.trust.clone()
    }

    pub(crate) fn client_resolver(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(self.current.clone())
    }
}

/// Checks a certificate before it is served; returns its rustls key.
fn validate(
    cert: &WorkloadCert,
    identity: &Identity,
    bundle: &TrustBundle,
) -> Result<Arc<CertifiedKey>, TlsError> {
    if cert.identity() != identity {
        return Err(TlsError::invalid(
            "workload certificate",
            format!(
                "identity {} does not match the workload's {}",
                cert.identity(),
                identity
            ),
        ));
    }
    let key = cert.certified_key()?;
    let chain = &key.cert;
    let ee = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| TlsError::invalid("workload certificate", e.to_string()))?;
    let algs = crate::provider().signature_verification_algorithms.all;
    for usage in [
        webpki::KeyUsage::server_auth(),
        webpki::KeyUsage::client_auth(),
    ] {
        ee.verify_for_usage(
            algs,
            &bundle.root_store().roots,
            &chain[1..],
            UnixTime::now(),
            usage,
            None,
            None,
        )
        .map_err(|e| {
            TlsError::invalid(
                "workload certificate",
                format!("does not verify up to the trust bundle: {e}"),
            )
        })?;
    }
    Ok(key)
}

/// A boxed future, as [`CertificateSource`] returns.
///
/// # Examples
///
/// ```
/// use mesh_tls::BoxFuture;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let answer: BoxFuture<'static, u32> = Box::pin(async { 42 });
/// assert_eq!(answer.await, 42);
/// # }
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where renewed certificates come from.
///
/// # Examples
///
/// A source that counts its fetches around the in-process CA (an istiod CSR client would
/// send a signing request instead):
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mesh_tls::*;
///
/// #[derive(Debug)]
/// struct Counting {
///     ca: MeshCa,
///     fetches: AtomicU32,
/// }
///
/// impl CertificateSource for Counting {
///     fn fetch<'a>(&'a self, identity: &'a Identity) -> BoxFuture<'a, Result<WorkloadCert, TlsError>> {
///         Box::pin(async move {
///             self.fetches.fetch_add(1, Ordering::Relaxed);
///             self.ca.issue(identity, Duration::from_secs(3600), &[])
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = Arc::new(Counting { ca: MeshCa::self_signed("cluster.local")?, fetches: AtomicU32::new(0) });
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let manager = CertManager::start(id, source.clone(), RotationOptions::default()).await?;
/// manager.rotate_now().await?;
/// assert_eq!(source.fetches.load(Ordering::Relaxed), 2);
/// assert_eq!(manager.credentials().renewals(), 1);
/// # Ok(()) }
/// ```
pub trait CertificateSource: Send + Sync + fmt::Debug + 'static {
    /// A fresh certificate (new key) for `identity`.
    fn fetch<'a>(&'a self, identity: &'a Identity)
        -> BoxFuture<'a, Result<WorkloadCert, TlsError>>;
}

/// The in-process CA as a certificate source.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mesh_tls::{CaSource, CertificateSource, Identity, MeshCa};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
/// let source = CaSource::new(ca)
///     .with_ttl(Duration::from_secs(600))
///     .with_dns_sans(vec!["localhost".into()]);
///
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = source.fetch(&id).await?;
/// assert_eq!(cert.identity(), &id);
/// // 600 s, plus a tenth of it as clock-skew grace before "now"
/// assert_eq!(cert.not_after().duration_since(cert.not_before())?, Duration::from_secs(660));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CaSource {
    ca: Arc<MeshCa>,
    ttl: Duration,
    dns_sans: Vec<String>,
}

impl CaSource {
    /// Certificates from `ca` with Istio's 24 h lifetime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tls::{CaSource, CertificateSource, Identity, MeshCa, DEFAULT_WORKLOAD_TTL};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = CaSource::new(Arc::new(MeshCa::self_signed("cluster.local")?));
    /// let cert = source.fetch(&Identity::new("cluster.local", "default", "sleep")?).await?;
    /// let life = cert.not_after().duration_since(cert.not_before())?;
    /// assert_eq!(life, DEFAULT_WORKLOAD_TTL + std::time::Duration::from_secs(120));
    /// # Ok(()) }
    /// ```
    pub fn new(ca: Arc<MeshCa>) -> Self {
        Self {
            ca,
            ttl: DEFAULT_WORKLOAD_TTL,
            dns_sans: Vec::new(),
        }
    }
    /// With another lifetime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use mesh_tls::{CaSource, CertificateSource, Identity, MeshCa};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let cert = CaSource::new(ca.clone()).with_ttl(Duration::from_secs(3600)).fetch(&id).await?;
    /// assert_eq!(cert.not_after().duration_since(cert.not_before())?, Duration::from_secs(3720));
    /// // Istio's limit still applies.
    /// let too_long = CaSource::new(ca).with_ttl(Duration::from_secs(91 * 24 * 3600));
    /// assert!(too_long.fetch(&id).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// With extra DNS SANs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tls::{CaSource, CertificateSource, Identity, MeshCa};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let ok = CaSource::new(ca.clone()).with_dns_sans(vec!["localhost".into(), "127.0.0.1".into()]);
    /// assert_eq!(ok.fetch(&id).await?.identity(), &id);
    /// // Each name is checked when a certificate is issued.
    /// let bad = CaSource::new(ca).with_dns_sans(vec!["not a name".into()]);
    /// assert!(bad.fetch(&id).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn with_dns_sans(mut self, dns_sans: Vec<String>) -> Self {
        self.dns_sans = dns_sans;
        self
    }
}

impl CertificateSource for CaSource {
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<WorkloadCert, TlsError>> {
        Box::pin(async move {
            let mut req = CertRequest::new(identity.clone());
            req.ttl = self.ttl;
            req.dns_sans = self.dns_sans.clone();
            self.ca.issue_request(&req)
        })
    }
}

/// When and how [`CertManager`] renews.
///
/// # Examples
///
/// Renew at 80% of the lifetime and also accept peers of an aliased trust domain:
///
/// ```
/// use std::sync::Arc;
/// use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let options = RotationOptions {
///     renew_at_fraction: 0.8,
///     trust_domain_aliases: vec!["old.example.com".into()],
///     ..RotationOptions::default()
/// };
/// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let manager = CertManager::start(id, Arc::new(CaSource::new(ca)), options).await?;
/// assert_eq!(manager.credentials().trust_domains(), ["cluster.local", "old.example.com"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// Renew when this fraction of the lifetime has passed (Istio's
    /// `SECRET_GRACE_PERIOD_RATIO` default 0.5). Clamped to 0.05..=0.95.
    pub renew_at_fraction: f64,
    /// First retry delay after a failed renewal (doubles up to `retry_max`).
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Extra roots to trust besides the certificates' own.
    pub extra_roots: Option<TrustBundle>,
    /// Trust-domain aliases accepted from peers.
    pub trust_domain_aliases: Vec<String>,
}

impl Default for RotationOptions {
    fn default() -> Self {
        Self {
            renew_at_fraction: 0.5,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            extra_roots: None,
            trust_domain_aliases: Vec::new(),
        }
    }
}

/// Keeps a workload's certificate fresh: fetches the first one, then renews it in a tokio
/// task before it expires. Dropping the manager stops renewals (the credentials stay
/// usable until the certificate expires).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let manager = CertManager::start(id.clone(), Arc::new(CaSource::new(ca)), RotationOptions::default()).await?;
///
/// // Hand the credentials to servers and clients; they follow renewals.
/// let creds = manager.credentials().clone();
/// assert_eq!(creds.identity(), &id);
/// let first = creds.current();
///
/// // Force a renewal (the task would do it at half the certificate's life).
/// manager.rotate_now().await?;
/// assert_eq!(creds.renewals(), 1);
/// assert_ne!(creds.current().chain_pem(), first.chain_pem());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CertManager {
    creds: Arc<WorkloadCredentials>,
    source: Arc<dyn CertificateSource>,
    task: tokio::task::JoinHandle<()>,
}

impl CertManager {
    /// Fetches the first certificate for `identity` and starts the renewal task. Must be
    /// called inside a tokio runtime.
    ///
    /// # Examples
    ///
    /// Trusting another mesh's root besides our own:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    /// let other = MeshCa::self_signed("other.mesh")?;
    /// let options = RotationOptions {
    ///     extra_roots: Some(other.trust_bundle().clone()),
    ///     ..RotationOptions::default()
    /// };
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let manager = CertManager::start(id, Arc::new(CaSource::new(ca.clone())), options).await?;
    /// let bundle = manager.credentials().trust_bundle();
    /// assert!(bundle.contains_all(ca.trust_bundle()) && bundle.contains_all(other.trust_bundle()));
    /// # Ok(()) }
    /// ```
    pub async fn start(
        identity: Identity,
        source: Arc<dyn CertificateSource>,
        options: RotationOptions,
    ) -> Result<Self, TlsError> {
        let first = source.fetch(&identity).await?;
        if first.identity() != &identity {
            return Err(TlsError::invalid(
                "workload certificate",
                format!("source issued {} for {}", first.identity(), identity),
            ));
        }
        let aliases: Vec<&str> = options
            .trust_domain_aliases
            .iter()
            .map(String::as_str)
            .collect();
        let creds = WorkloadCredentials::with_trust(first, options.extra_roots.as_ref(), &aliases)?;
        let task = tokio::spawn(renew_loop(Arc::downgrade(&creds), source.clone(), options));
        Ok(Self {
            creds,
            source,
            task,
        })
    }

    /// The credentials being kept fresh.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let manager = CertManager::start(id.clone(), Arc::new(CaSource::new(ca)), RotationOptions::default()).await?;
    /// let creds = manager.credentials();
    /// assert_eq!(creds.identity(), &id);
    /// assert_eq!(creds.renewals(), 0);
    /// # Ok(()) }
    /// ```
    pub fn credentials(&self) -> &Arc<WorkloadCredentials> {
        &self.creds
    }

    /// Fetches and installs a new certificate now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let manager = CertManager::start(id, Arc::new(CaSource::new(ca)), RotationOptions::default()).await?;
    /// let before = manager.credentials().current();
    /// manager.rotate_now().await?;
    /// let after = manager.credentials().current();
    /// assert_ne!(after.key_pem(), before.key_pem()); // a fresh key
    /// assert_eq!(manager.credentials().renewals(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn rotate_now(&self) -> Result<(), TlsError> {
        let cert = self.source.fetch(self.creds.identity()).await?;
        self.creds.install(cert)
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// When a certificate valid over [not_before, not_after] should be renewed.
pub(crate) fn renew_time(
    not_before: SystemTime,
    not_after: SystemTime,
    fraction: f64,
) -> SystemTime {
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.05, 0.95)
    } else {
        0.5
    };
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + life.mul_f64(fraction)
}

async fn renew_loop(
    creds: std::sync::Weak<WorkloadCredentials>,
    source: Arc<dyn CertificateSource>,
    options: RotationOptions,
) {
    let mut backoff = options.retry_min;
    loop {
        let (identity, at) = {
            let Some(c) = creds.upgrade() else { return };
            let cur = c.current();
            (
                c.identity().clone(),
                renew_time(cur.not_before(), cur.not_after(), options.renew_at_fraction),
            )
        };
        match at.duration_since(SystemTime::now()) {
            Ok(wait) => tokio::time::sleep(wait).await,
            // Already due: still pause a little, so a source that hands out nearly expired
            // certificates cannot make this loop spin.
            Err(_) => tokio::time::sleep(options.retry_min.min(Duration::from_secs(1))).await,
        }
        let result = match source.fetch(&identity).await {
            Ok(cert) => match creds.upgrade() {
                Some(c) => c.install(cert),
                None => return,
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => backoff = options.retry_min,
            Err(e) => {
                tracing::warn!(identity = %identity, error = %e, retry_in = ?backoff, "certificate renewal failed; keeping the current certificate");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn renew_time_table() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        for (nb, na, f, want) in [
            (0, 100, 0.5, 50),
            (0, 86_400, 0.5, 43_200),
            (10, 110, 0.8, 90),
            (0, 100, 0.0, 5),
            (0, 100, 2.0, 95),
            (0, 100, f64::NAN, 50),
            (100, 0, 0.5, 100),
        ] {
            assert_eq!(renew_time(t(nb), t(na), f), t(want), "{nb} {na} {f}");
        }
    }

    #[test]
    fn install_checks() {
        let ca = MeshCa::self_signed("cluster.local").unwrap();
        let other_ca = MeshCa::self_signed("cluster.local").unwrap();
        let id = Identity::new("cluster.local", "a", "a").unwrap();
        let creds =
            WorkloadCredentials::new(ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[]).unwrap()).unwrap();
        // another identity
        let other = Identity::new("cluster.local", "b", "b").unwrap();
        let e = creds
            .install(ca.issue(&other, DEFAULT_WORKLOAD_TTL, &[]).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // same identity, new key: accepted
        creds
            .install(ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[]).unwrap())
            .unwrap();
        assert_eq!(creds.renewals(), 1);
        // a cert from another root is accepted (the source is trusted), and its roots are
        // the bundle: the CA no longer serves the first root
        creds
            .install(other_ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[]).unwrap())
            .unwrap();
        assert_eq!(
            creds.trust_bundle().certs(),
            other_ca.trust_bundle().certs()
        );
        // a trust bundle the current cert does not verify against is refused
        let e = creds
            .set_trust_bundle(ca.trust_bundle().clone())
            .unwrap_err();
        assert!(e.to_string().contains("trust bundle"), "{e}");
        // an expired certificate is refused
        let mut req = CertRequest::new(id.clone());
        req.valid_from = Some(SystemTime::now() - Duration::from_secs(7200));
        req.ttl = Duration::from_secs(3600);
        let e = creds
            .install(other_ca.issue_request(&req).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        assert_eq!(creds.renewals(), 2);
    }
}
