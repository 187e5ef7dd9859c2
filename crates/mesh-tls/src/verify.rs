//! Certificate verifiers that check the SPIFFE identity inside the handshake.
//!
//! - [`MeshClientCertVerifier`] (server side): rustls's stock `WebPkiClientVerifier` checks
//!   the chain against the trust bundle, then the client's SPIFFE ID is checked against a
//!   [`PeerPolicy`] (accepted trust domains, optional allow-list).
//! - [`MeshServerCertVerifier`] (client side): webpki checks the chain (the server's
//!   certificate may carry no DNS name at all, which rustls's stock verifier would refuse),
//!   then the server's SPIFFE ID against a [`PeerPolicy`], or its SANs against an explicit
//!   `subjectAltNames` list.
//!
//! Both read the trust bundle through an atomic pointer, so a new bundle (root rotation)
//! applies from the next handshake on without rebuilding any rustls config.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::bundle::TrustBundle;
use crate::error::{from_certificate_error, TlsError, VerifyError};
use crate::identity::Identity;
use crate::pki::{self, CertInfo};

/// Which SPIFFE identities a peer may present.
///
/// The trust domain is checked first ([`VerifyError::WrongTrustDomain`]), then the optional
/// allow-list ([`VerifyError::IdentityNotAllowed`]). An allow-list entry also matches the
/// same namespace and service account in another accepted trust domain (Istio's
/// trust-domain aliases).
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, PeerPolicy, VerifyError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sleep = Identity::new("cluster.local", "default", "sleep")?;
/// let policy = PeerPolicy::trust_domains(["cluster.local", "old.example.com"])
///     .allow_only([sleep.clone()]);
/// assert_eq!(policy.accepted_trust_domains(), ["cluster.local", "old.example.com"]);
///
/// assert!(policy.check(&sleep).is_ok());
/// // The same account under an alias of the trust domain.
/// assert!(policy.check(&sleep.with_trust_domain("old.example.com")?).is_ok());
/// // Another account: not allowed.
/// let err = policy.check(&Identity::new("cluster.local", "default", "curl")?).unwrap_err();
/// assert!(matches!(err, VerifyError::IdentityNotAllowed { .. }));
/// // Another trust domain: refused before the allow-list.
/// let err = policy.check(&Identity::new("evil.example", "default", "sleep")?).unwrap_err();
/// assert!(matches!(err, VerifyError::WrongTrustDomain { .. }));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPolicy {
    trust_domains: Arc<[String]>,
    allowed: Option<Arc<[Identity]>>,
    /// The chain alone decides ([`PeerPolicy::any_chained`]).
    chain_only: bool,
    /// The allow-list is matched exactly, with no trust-domain aliases
    /// ([`PeerPolicy::exactly`]).
    exact: bool,
}

impl PeerPolicy {
    /// Any identity of `trust_domain`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = PeerPolicy::trust_domain("cluster.local");
    /// assert!(policy.check(&Identity::new("cluster.local", "default", "sleep")?).is_ok());
    /// assert!(policy.check(&Identity::new("other.mesh", "default", "sleep")?).is_err());
    /// # Ok(()) }
    /// ```
    pub fn trust_domain(trust_domain: impl Into<String>) -> Self {
        Self {
            trust_domains: Arc::from([trust_domain.into()]),
            allowed: None,
            chain_only: false,
            exact: false,
        }
    }

    /// Any identity of any of these trust domains (the local one and its aliases).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = PeerPolicy::trust_domains(["cluster.local", "old.example.com"]);
    /// assert!(policy.check(&Identity::new("old.example.com", "default", "sleep")?).is_ok());
    /// assert!(policy.allowed().is_none()); // any identity of those trust domains
    /// # Ok(()) }
    /// ```
    pub fn trust_domains<I, S>(trust_domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            trust_domains: trust_domains.into_iter().map(Into::into).collect(),
            allowed: None,
            chain_only: false,
            exact: false,
        }
    }

    /// Any client certificate that chains to the trusted roots, whatever its SPIFFE ID (or
    /// none): Envoy's validation context without SAN matchers, as istiod builds it for a
    /// gateway's `ISTIO_MUTUAL` server without `subjectAltNames`. With
    /// [`allow_only`](Self::allow_only) it takes those identities, of any trust domain. (For
    /// a server's certificate, [`ServerCheck::Chain`] is the chain-only check.)
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// let any = PeerPolicy::any_chained();
    /// assert!(any.is_chain_only());
    /// assert!(any.check(&Identity::new("other.domain", "ns", "sa")?).is_ok());
    /// assert!(!PeerPolicy::trust_domain("cluster.local").is_chain_only());
    /// // narrowed to a list: those identities only
    /// let sleep = Identity::new("cluster.local", "default", "sleep")?;
    /// let only = PeerPolicy::any_chained().allow_only([sleep.clone()]);
    /// assert!(only.check(&sleep).is_ok());
    /// assert!(only.check(&Identity::new("other.domain", "ns", "sa")?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn any_chained() -> Self {
        Self {
            trust_domains: Arc::from([]),
            allowed: None,
            chain_only: true,
            exact: false,
        }
    }

    /// Whether the chain alone decides ([`PeerPolicy::any_chained`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mesh_tls::PeerPolicy::any_chained().is_chain_only());
    /// ```
    pub fn is_chain_only(&self) -> bool {
        self.chain_only
    }

    /// Restricts the accepted peers to these identities.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let gateway = Identity::new("cluster.local", "istio-system", "istio-ingressgateway-service-account")?;
    /// let policy = PeerPolicy::trust_domain("cluster.local").allow_only([gateway.clone()]);
    /// assert!(policy.check(&gateway).is_ok());
    /// assert!(policy.check(&Identity::new("cluster.local", "default", "sleep")?).is_err());
    /// # Ok(()) }
    /// ```
    pub fn allow_only(mut self, identities: impl IntoIterator<Item = Identity>) -> Self {
        self.allowed = Some(identities.into_iter().collect());
        self
    }

    /// Matches the allow-list exactly: an allowed identity in one accepted trust domain no
    /// longer admits the same namespace and service account in another (Envoy's SAN
    /// matchers as istiod writes them for a Gateway's `subjectAltNames`, with no aliases).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let a = Identity::parse("spiffe://a.org/ns/x/sa/x")?;
    /// let b = Identity::parse("spiffe://b.org/ns/y/sa/y")?;
    /// let policy = PeerPolicy::trust_domains(["a.org", "b.org"]).allow_only([a.clone(), b.clone()]);
    /// // aliases: x's account in b.org is x's
    /// assert!(policy.check(&a.with_trust_domain("b.org")?).is_ok());
    /// let exact = policy.exactly();
    /// assert!(exact.check(&a.with_trust_domain("b.org")?).is_err());
    /// assert!(exact.check(&b).is_ok());
    /// # Ok(()) }
    /// ```
    pub fn exactly(mut self) -> Self {
        self.exact = true;
        self
    }

    /// The accepted trust domains.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::PeerPolicy;
    ///
    /// let policy = PeerPolicy::trust_domains(["cluster.local", "old.example.com"]);
    /// assert_eq!(policy.accepted_trust_domains(), ["cluster.local", "old.example.com"]);
    /// ```
    pub fn accepted_trust_domains(&self) -> &[String] {
        &self.trust_domains
    }

    /// The allow-list, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sleep = Identity::new("cluster.local", "default", "sleep")?;
    /// let policy = PeerPolicy::trust_domain("cluster.local");
    /// assert_eq!(policy.allowed(), None);
    /// assert_eq!(policy.allow_only([sleep.clone()]).allowed(), Some(&[sleep][..]));
    /// # Ok(()) }
    /// ```
    pub fn allowed(&self) -> Option<&[Identity]> {
        self.allowed.as_deref()
    }

    fn td_ok(&self, td: &str) -> bool {
        self.trust_domains.iter().any(|t| t == td)
    }

    /// Checks an identity against the policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, PeerPolicy, VerifyError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = PeerPolicy::trust_domain("cluster.local");
    /// let stranger = Identity::new("other.mesh", "default", "sleep")?;
    /// match policy.check(&stranger) {
    ///     Err(VerifyError::WrongTrustDomain { expected, presented }) => {
    ///         assert_eq!(expected, ["cluster.local"]);
    ///         assert_eq!(presented, stranger);
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn check(&self, id: &Identity) -> Result<(), VerifyError> {
        if self.chain_only {
            // no trust-domain check; an `allow_only` list still narrows the identities
            return match &self.allowed {
                Some(allowed) if !allowed.contains(id) => Err(VerifyError::IdentityNotAllowed {
                    expected: allowed.iter().map(|a| a.to_string()).collect(),
                    presented: vec![id.to_string()],
                }),
                _ => Ok(()),
            };
        }
        if !self.td_ok(id.trust_domain()) {
            return Err(VerifyError::WrongTrustDomain {
                expected: self.trust_domains.to_vec(),
                presented: id.clone(),
            });
        }
        if let Some(allowed) = &self.allowed {
            let ok = allowed
                .iter()
                // trust-domain aliases expand Istio's form only (istiod's
                // `ExpandWithTrustDomains` skips any ID `ParseIdentity` refuses)
                .any(|a| {
                    a == id
                        || (!self.exact
                            && a.is_istio_form()
                            && id.is_istio_form()
                            && a.path() == id.path()
                            && self.td_ok(a.trust_domain()))
                });
            if !ok {
                return Err(VerifyError::IdentityNotAllowed {
                    expected: allowed.iter().map(|a| a.to_string()).collect(),
                    presented: vec![id.to_string()],
                });
            }
        }
        Ok(())
    }
}

/// The trust bundle and the stock client verifier built from it, swapped as one.
pub(crate) struct TrustState {
    pub(crate) bundle: TrustBundle,
    webpki_client: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for TrustState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustState")
            .field("roots", &self.bundle.subjects())
            .finish_non_exhaustive()
    }
}

impl TrustState {
    pub(crate) fn new(bundle: TrustBundle) -> Result<Self, TlsError> {
        let webpki_client = WebPkiClientVerifier::builder_with_provider(
            bundle.root_store().clone(),
            crate::provider(),
        )
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
        Ok(Self {
            bundle,
            webpki_client,
        })
    }
}

/// The trust bundle shared by every verifier of a workload.
pub(crate) type SharedTrust = Arc<ArcSwap<TrustState>>;

pub(crate) fn shared_trust(bundle: &TrustBundle) -> Result<SharedTrust, TlsError> {
    Ok(Arc::new(ArcSwap::from_pointee(TrustState::new(
        bundle.clone(),
    )?)))
}

fn algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGS: std::sync::OnceLock<WebPkiSupportedAlgorithms> = std::sync::OnceLock::new();
    ALGS.get_or_init(|| crate::provider().signature_verification_algorithms)
}

/// The refusal of a chain that verifies only up to a root outside its dates.
fn root_dates_error(end_entity: &CertificateDer<'_>) -> VerifyError {
    let presented = CertInfo::parse(end_entity)
        .map(|i| i.presented())
        .unwrap_or_default();
    VerifyError::Invalid {
        presented,
        reason: "the root certificate it chains to is expired or not yet valid".into(),
    }
}

/// Whether the chain verifies for `usage` up to `anchors` only.
fn verifies_up_to(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[rustls::pki_types::TrustAnchor<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> bool {
    !anchors.is_empty()
        && webpki::EndEntityCert::try_from(end_entity).is_ok_and(|ee| {
            ee.verify_for_usage(
                algorithms().all,
                anchors,
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .is_ok()
        })
}

/// Maps a chain-verification failure to our error, with what the peer presented.
fn chain_error(
    err: &rustls::Error,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundle: &TrustBundle,
) -> VerifyError {
    let info = CertInfo::parse(end_entity).ok();
    let presented = info.as_ref().map(CertInfo::presented).unwrap_or_default();
    let mut bad_signature = false;
    let mut v = match err {
        // A chain whose issuer name matches a trusted certificate but whose signature does
        // not verify with that certificate's key: another CA with the same name (two meshes'
        // self-signed roots for one trust domain), i.e. an issuer we do not know.
        rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
            bad_signature = true;
            VerifyError::UnknownIssuer {
                presented,
                presented_issuer: String::new(),
                expected_roots: Vec::new(),
            }
        }
        rustls::Error::InvalidCertificate(ce) => from_certificate_error(ce, presented),
        other => VerifyError::Invalid {
            presented,
            reason: other.to_string(),
        },
    };
    if let VerifyError::UnknownIssuer {
        presented_issuer,
        expected_roots,
        ..
    } = &mut v
    {
        let top = intermediates.last().map(|c| CertInfo::parse(c).ok());
        *presented_issuer = match top {
            Some(Some(top)) => top.issuer,
            Some(None) => String::new(),
            None => info.map(|i| i.issuer).unwrap_or_default(),
        };
        *expected_roots = bundle.subjects().to_vec();
        if bad_signature {
            presented_issuer
                .push_str(" (signature does not verify with the trusted key of that name)");
        }
    }
    v
}

fn webpki_error(e: webpki::Error) -> rustls::Error {
    use webpki::Error as W;
    let ce = match e {
        W::CertExpired { time, not_after } => {
            rustls::CertificateError::ExpiredContext { time, not_after }
        }
        W::CertNotValidYet { time, not_before } => {
            rustls::CertificateError::NotValidYetContext { time, not_before }
        }
        W::UnknownIssuer => rustls::CertificateError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => rustls::CertificateError::BadSignature,
        // as rustls' own verifiers report a CRL that does not verify
        W::InvalidCrlSignatureForPublicKey => {
            return rustls::Error::InvalidCertRevocationList(
                rustls::CertRevocationListError::BadSignature,
            )
        }
        W::CertRevoked => rustls::CertificateError::Revoked,
        W::UnknownRevocationStatus => rustls::CertificateError::UnknownRevocationStatus,
        W::CrlExpired { time, next_update } => {
            rustls::CertificateError::ExpiredRevocationListContext { time, next_update }
        }
        W::BadDer | W::BadDerTime | W::TrailingData(_) => rustls::CertificateError::BadEncoding,
        other => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(ce)
}

/// Server side: the stock webpki client verifier, then the client's SPIFFE identity.
///
/// Client authentication is mandatory: a client without a certificate fails the handshake
/// ([`VerifyError::NoClientCertificate`]).
///
/// [`WorkloadCredentials::server_config`](crate::WorkloadCredentials::server_config) builds
/// one for you; build it directly for a server config of your own.
///
/// # Examples
///
/// Checking client certificates as the handshake does:
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::rustls::pki_types::UnixTime;
/// use mesh_tls::rustls::server::danger::ClientCertVerifier;
/// use mesh_tls::{Identity, MeshCa, MeshClientCertVerifier, PeerPolicy, VerifyError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let verifier = MeshClientCertVerifier::new(ca.trust_bundle(), PeerPolicy::trust_domain("cluster.local"))?;
///
/// let ttl = Duration::from_secs(3600);
/// let sleep = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?.chain_der()?;
/// assert!(verifier.verify_client_cert(&sleep[0], &sleep[1..], UnixTime::now()).is_ok());
///
/// // A certificate from another mesh's CA does not chain to our root.
/// let other = MeshCa::self_signed("cluster.local")?;
/// let stranger = other.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?.chain_der()?;
/// let err = verifier.verify_client_cert(&stranger[0], &stranger[1..], UnixTime::now()).unwrap_err();
/// assert_eq!(VerifyError::from_rustls(&err).unwrap().kind(), "unknown_issuer");
/// # Ok(()) }
/// ```
pub struct MeshClientCertVerifier {
    trust: SharedTrust,
    policy: PeerPolicy,
}

impl fmt::Debug for MeshClientCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshClientCertVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl MeshClientCertVerifier {
    /// A verifier over a fixed trust bundle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::rustls::pki_types::UnixTime;
    /// use mesh_tls::rustls::server::danger::ClientCertVerifier;
    /// use mesh_tls::{Identity, MeshCa, MeshClientCertVerifier, PeerPolicy, VerifyError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let verifier = MeshClientCertVerifier::new(ca.trust_bundle(), PeerPolicy::trust_domain("cluster.local"))?;
    /// assert!(verifier.client_auth_mandatory());
    ///
    /// // Signed by our CA, but for another trust domain.
    /// let other = Identity::new("other.mesh", "default", "sleep")?;
    /// let chain = ca.issue(&other, Duration::from_secs(3600), &[])?.chain_der()?;
    /// let err = verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()).unwrap_err();
    /// assert_eq!(VerifyError::from_rustls(&err).unwrap().kind(), "wrong_trust_domain");
    /// # Ok(()) }
    /// ```
    pub fn new(bundle: &TrustBundle, policy: PeerPolicy) -> Result<Arc<Self>, TlsError> {
        Ok(Self::shared(shared_trust(bundle)?, policy))
    }

    pub(crate) fn shared(trust: SharedTrust, policy: PeerPolicy) -> Arc<Self> {
        Arc::new(Self { trust, policy })
    }

    /// The policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{MeshCa, MeshClientCertVerifier, PeerPolicy};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let policy = PeerPolicy::trust_domains(["cluster.local", "old.example.com"]);
    /// let verifier = MeshClientCertVerifier::new(ca.trust_bundle(), policy.clone())?;
    /// assert_eq!(verifier.policy(), &policy);
    /// # Ok(()) }
    /// ```
    pub fn policy(&self) -> &PeerPolicy {
        &self.policy
    }
}

impl ClientCertVerifier for MeshClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle can change under us; hints are advisory and clients send their
        // certificate without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let trust = self.trust.load();
        if let Err(e) = trust
            .webpki_client
            .verify_client_cert(end_entity, intermediates, now)
        {
            let v = chain_error(&e, end_entity, intermediates, &trust.bundle);
            tracing::debug!(error = %v, "client certificate refused");
            return Err(v.into_rustls());
        }
        // a root past its dates ends no chain (Envoy checks the root's dates too): with
        // such a root in the bundle, the chain must verify up to one of the others
        if let Some(valid) = trust.bundle.anchors_valid_at(now) {
            let usage = webpki::KeyUsage::client_auth();
            if !verifies_up_to(end_entity, intermediates, &valid, now, usage) {
                let v = root_dates_error(end_entity);
                tracing::debug!(error = %v, "client certificate refused");
                return Err(v.into_rustls());
            }
        }
        if let Err(v) = pki::check_ca_key_usage(end_entity, intermediates) {
            tracing::debug!(error = %v, "client certificate refused");
            return Err(v.into_rustls());
        }
        if self.policy.chain_only && self.policy.allowed.is_none() {
            return Ok(ClientCertVerified::assertion());
        }
        let id = pki::spiffe_of(end_entity).map_err(VerifyError::into_rustls)?;
        if let Err(v) = self.policy.check(&id) {
            tracing::debug!(error = %v, "client identity refused");
            return Err(v.into_rustls());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// What the client checks in the server's certificate after the chain.
///
/// # Examples
///
/// DestinationRule `subjectAltNames: [httpbin.example.com]` against a certificate issued
/// with that DNS name:
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::rustls::client::danger::ServerCertVerifier;
/// use mesh_tls::rustls::pki_types::{ServerName, UnixTime};
/// use mesh_tls::{Identity, MeshCa, MeshServerCertVerifier, ServerCheck};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("example.com")?;
/// let id = Identity::new("example.com", "default", "httpbin")?;
/// let chain = ca.issue(&id, Duration::from_secs(3600), &["httpbin.example.com"])?.chain_der()?;
/// let name = ServerName::try_from("httpbin.example.com")?;
///
/// let by_dns = MeshServerCertVerifier::new(ca.trust_bundle(), ServerCheck::SubjectAltNames(["httpbin.example.com".to_string()].into()))?;
/// assert!(by_dns.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).is_ok());
///
/// let wrong = MeshServerCertVerifier::new(ca.trust_bundle(), ServerCheck::SubjectAltNames(["api.example.com".to_string()].into()))?;
/// assert!(wrong.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerCheck {
    /// The server's single SPIFFE ID against a policy (ISTIO_MUTUAL: the destination's
    /// service accounts, or any identity of the trust domain when they are unknown).
    Spiffe(PeerPolicy),
    /// Any SAN of the server's certificate equals one of these (`subjectAltNames`): URI SANs
    /// compared exactly, DNS SANs case-insensitively with a leading `*.` wildcard in the
    /// certificate matching one label, IP SANs by address.
    SubjectAltNames(Arc<[String]>),
    /// The chain alone, no name or identity: Envoy's validation context without SAN
    /// matchers, as istiod builds it for SIMPLE/MUTUAL with an explicit `sni` and no
    /// `subjectAltNames` (auto SAN validation is off then), and for ISTIO_MUTUAL to a
    /// destination whose service accounts are unknown.
    Chain,
}

/// Client side: webpki chain verification, then the server's identity, inside the
/// handshake. The SNI name is not used for the identity check.
///
/// [`client_config`](crate::client_config) builds one for ISTIO_MUTUAL; build it directly
/// for a client config of your own.
///
/// # Examples
///
/// ISTIO_MUTUAL's check: the server must be one of the destination's service accounts.
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::rustls::client::danger::ServerCertVerifier;
/// use mesh_tls::rustls::pki_types::{ServerName, UnixTime};
/// use mesh_tls::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let reviews = Identity::new("cluster.local", "default", "bookinfo-reviews")?;
/// let check = ServerCheck::Spiffe(PeerPolicy::trust_domain("cluster.local").allow_only([reviews.clone()]));
/// let verifier = MeshServerCertVerifier::new(ca.trust_bundle(), check)?;
/// let sni = ServerName::try_from("outbound_.9080_._.reviews.default.svc.cluster.local")?;
///
/// let ttl = Duration::from_secs(3600);
/// let good = ca.issue(&reviews, ttl, &[])?.chain_der()?;
/// assert!(verifier.verify_server_cert(&good[0], &good[1..], &sni, &[], UnixTime::now()).is_ok());
///
/// let ratings = ca.issue(&Identity::new("cluster.local", "default", "bookinfo-ratings")?, ttl, &[])?.chain_der()?;
/// let err = verifier.verify_server_cert(&ratings[0], &ratings[1..], &sni, &[], UnixTime::now()).unwrap_err();
/// assert_eq!(VerifyError::from_rustls(&err).unwrap().kind(), "identity_not_allowed");
/// # Ok(()) }
/// ```
pub struct MeshServerCertVerifier {
    trust: SharedTrust,
    check: ServerCheck,
    /// `caCrl` (SIMPLE/MUTUAL origination with `subjectAltNames`): the whole chain checked.
    revocation: Option<Arc<[webpki::CertRevocationList<'static>]>>,
}

impl fmt::Debug for MeshServerCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshServerCertVerifier")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl MeshServerCertVerifier {
    /// A verifier over a fixed trust bundle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use mesh_tls::rustls::client::danger::ServerCertVerifier;
    /// use mesh_tls::rustls::pki_types::{ServerName, UnixTime};
    /// use mesh_tls::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let check = ServerCheck::Spiffe(PeerPolicy::trust_domain("cluster.local"));
    /// let verifier = MeshServerCertVerifier::new(ca.trust_bundle(), check)?;
    /// let sni = ServerName::try_from("outbound_.8000_._.httpbin.default.svc.cluster.local")?;
    ///
    /// // A certificate that expired an hour ago.
    /// let mut req = CertRequest::new(Identity::new("cluster.local", "default", "httpbin")?);
    /// req.valid_from = Some(SystemTime::now() - Duration::from_secs(7200));
    /// req.ttl = Duration::from_secs(3600);
    /// let old = ca.issue_request(&req)?.chain_der()?;
    /// let err = verifier.verify_server_cert(&old[0], &old[1..], &sni, &[], UnixTime::now()).unwrap_err();
    /// assert_eq!(VerifyError::from_rustls(&err).unwrap().kind(), "expired");
    /// # Ok(()) }
    /// ```
    pub fn new(bundle: &TrustBundle, check: ServerCheck) -> Result<Arc<Self>, TlsError> {
        Ok(Self::shared(shared_trust(bundle)?, check))
    }

    pub(crate) fn shared(trust: SharedTrust, check: ServerCheck) -> Arc<Self> {
        Self::shared_with_revocation(trust, check, None)
    }

    /// A verifier also checking the chain against `crls` (none: no revocation check).
    pub(crate) fn shared_with_revocation(
        trust: SharedTrust,
        check: ServerCheck,
        revocation: Option<Arc<[webpki::CertRevocationList<'static>]>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            trust,
            check,
            revocation,
        })
    }
}

impl ServerCertVerifier for MeshServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let trust = self.trust.load();
        let crls: Vec<&webpki::CertRevocationList<'static>> =
            self.revocation.iter().flat_map(|c| c.iter()).collect();
        // as Envoy checks a CRL: every certificate of the chain, an unknown status and an
        // expired list refused
        let revocation = match (
            &self.revocation,
            webpki::RevocationOptionsBuilder::new(&crls),
        ) {
            (None, _) => None,
            (Some(_), Ok(b)) => Some(
                b.with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                    .build(),
            ),
            // a revocation check configured with no list: refuse, never skip it
            (Some(_), Err(_)) => {
                return Err(rustls::Error::InvalidCertRevocationList(
                    rustls::CertRevocationListError::ParseError,
                ))
            }
        };
        // a root past its dates ends no chain (Envoy checks the root's dates too)
        let valid = trust.bundle.anchors_valid_at(now);
        let anchors = valid.as_deref().unwrap_or(&trust.bundle.root_store().roots);
        if anchors.is_empty() {
            let v = root_dates_error(end_entity);
            tracing::debug!(error = %v, "server certificate refused");
            return Err(v.into_rustls());
        }
        let chain = webpki::EndEntityCert::try_from(end_entity)
            .map_err(webpki_error)
            .and_then(|ee| {
                ee.verify_for_usage(
                    algorithms().all,
                    anchors,
                    intermediates,
                    now,
                    webpki::KeyUsage::server_auth(),
                    revocation,
                    None,
                )
                .map(|_| ())
                .map_err(webpki_error)
            });
        if let Err(e) = chain {
            // (a chain that would end at a root outside its dates says so)
            let by_dates = valid.is_some()
                && verifies_up_to(
                    end_entity,
                    intermediates,
                    &trust.bundle.root_store().roots,
                    now,
                    webpki::KeyUsage::server_auth(),
                );
            let v = if by_dates {
                root_dates_error(end_entity)
            } else {
                chain_error(&e, end_entity, intermediates, &trust.bundle)
            };
            tracing::debug!(error = %v, "server certificate refused");
            return Err(v.into_rustls());
        }
        if let Err(v) = pki::check_ca_key_usage(end_entity, intermediates) {
            tracing::debug!(error = %v, "server certificate refused");
            return Err(v.into_rustls());
        }
        let result = match &self.check {
            ServerCheck::Spiffe(policy) => {
                pki::spiffe_of(end_entity).and_then(|id| policy.check(&id))
            }
            ServerCheck::SubjectAltNames(names) => check_sans(end_entity, names),
            ServerCheck::Chain => Ok(()),
        };
        if let Err(v) = result {
            tracing::debug!(error = %v, "server identity refused");
            return Err(v.into_rustls());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn check_sans(end_entity: &CertificateDer<'_>, names: &[String]) -> Result<(), VerifyError> {
    let info = CertInfo::parse(end_entity).map_err(|reason| VerifyError::Invalid {
        presented: String::new(),
        reason,
    })?;
    let ok = names.iter().any(|want| {
        info.uris.iter().any(|u| u == want)
            || info.dns.iter().any(|d| dns_matches(d, want))
            || info.ips.iter().any(|ip| ip_matches(ip, want))
    });
    if ok {
        Ok(())
    } else {
        Err(VerifyError::IdentityNotAllowed {
            expected: names.to_vec(),
            presented: info.all_sans(),
        })
    }
}

/// A certificate DNS SAN (possibly `*.example.com`) against a wanted name.
fn dns_matches(presented: &str, want: &str) -> bool {
    let presented = presented.trim_end_matches('.');
    let want = want.trim_end_matches('.');
    if presented.eq_ignore_ascii_case(want) {
        return true;
    }
    if let Some(suffix) = presented.strip_prefix("*.")
        && let Some((label, rest)) = want.split_once('.')
    {
        return !label.is_empty() && !label.contains('*') && rest.eq_ignore_ascii_case(suffix);
    }
    false
}

fn ip_matches(presented: &str, want: &str) -> bool {
    match (
        presented.parse::<std::net::IpAddr>(),
        want.parse::<std::net::IpAddr>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A stock (webpki) verifier with the check webpki leaves out: every CA certificate of the
/// peer's chain may sign certificates (a key usage, when present, has `keyCertSign`), as
/// Envoy's BoringSSL requires. The mesh's own verifiers make this check themselves; wrap
/// the stock ones (a gateway's `MUTUAL` client verifier, a `SIMPLE` origination's) in it:
/// `V` is a pointer to the verifier (`Arc<WebPkiClientVerifier>`, `Arc<dyn ...>`).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use mesh_tls::rustls::server::{danger::ClientCertVerifier, WebPkiClientVerifier};
/// use mesh_tls::rustls::RootCertStore;
/// use mesh_tls::{provider, CaKeyUsageChecked, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let mut roots = RootCertStore::empty();
/// roots.add(ca.trust_bundle().certs()[0].clone())?;
/// let stock = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
/// let checked: Arc<dyn ClientCertVerifier> = Arc::new(CaKeyUsageChecked(stock));
/// assert!(checked.client_auth_mandatory());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CaKeyUsageChecked<V>(pub V);

impl<V> ServerCertVerifier for CaKeyUsageChecked<V>
where
    V: std::ops::Deref + std::fmt::Debug + Send + Sync,
    V::Target: ServerCertVerifier,
{
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.0.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        pki::check_ca_key_usage(end_entity, intermediates).map_err(VerifyError::into_rustls)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.0.root_hint_subjects()
    }
}

impl<V> ClientCertVerifier for CaKeyUsageChecked<V>
where
    V: std::ops::Deref + std::fmt::Debug + Send + Sync,
    V::Target: ClientCertVerifier,
{
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self.0.verify_client_cert(end_entity, intermediates, now)?;
        pki::check_ca_key_usage(end_entity, intermediates).map_err(VerifyError::into_rustls)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.0.requires_raw_public_keys()
    }
}

/// A verifier that accepts any server certificate (DestinationRule `insecureSkipVerify:
/// true`). Handshake signatures are still checked, so the peer holds the key of the
/// certificate it sent.
#[derive(Debug)]
pub(crate) struct SkipServerVerification;

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Identity {
        s.parse().unwrap()
    }

    /// Trust-domain aliases expand Istio's `/ns/<ns>/sa/<sa>` form only (istiod's
    /// `ExpandWithTrustDomains`), and not at all for an exact policy.
    #[test]
    fn aliases_expand_istio_form_only() {
        let spire = PeerPolicy::trust_domains(["cluster.local", "old.td"])
            .allow_only([id("spiffe://cluster.local/workload/x")]);
        assert!(spire
            .check(&id("spiffe://cluster.local/workload/x"))
            .is_ok());
        let e = spire.check(&id("spiffe://old.td/workload/x")).unwrap_err();
        assert_eq!(e.kind(), "identity_not_allowed");
        let exact = PeerPolicy::trust_domains(["cluster.local", "old.td"])
            .allow_only([id("spiffe://cluster.local/ns/a/sa/b")])
            .exactly();
        assert!(exact.check(&id("spiffe://old.td/ns/a/sa/b")).is_err());
        assert!(exact.check(&id("spiffe://cluster.local/ns/a/sa/b")).is_ok());
    }

    #[test]
    fn policy_table() {
        let any_local = PeerPolicy::trust_domain("cluster.local");
        let aliases = PeerPolicy::trust_domains(["cluster.local", "old.td"]);
        let only_sleep = PeerPolicy::trust_domains(["cluster.local", "old.td"])
            .allow_only([id("spiffe://cluster.local/ns/default/sa/sleep")]);
        let cases: &[(&PeerPolicy, &str, &str)] = &[
            (&any_local, "spiffe://cluster.local/ns/a/sa/b", "ok"),
            (&any_local, "spiffe://other/ns/a/sa/b", "wrong_trust_domain"),
            (&aliases, "spiffe://old.td/ns/a/sa/b", "ok"),
            (
                &only_sleep,
                "spiffe://cluster.local/ns/default/sa/sleep",
                "ok",
            ),
            (&only_sleep, "spiffe://old.td/ns/default/sa/sleep", "ok"),
            (
                &only_sleep,
                "spiffe://cluster.local/ns/default/sa/other",
                "identity_not_allowed",
            ),
            (
                &only_sleep,
                "spiffe://cluster.local/ns/other/sa/sleep",
                "identity_not_allowed",
            ),
            (
                &only_sleep,
                "spiffe://evil/ns/default/sa/sleep",
                "wrong_trust_domain",
            ),
        ];
        for (policy, presented, want) in cases {
            let got = match policy.check(&id(presented)) {
                Ok(()) => "ok",
                Err(e) => e.kind(),
            };
            assert_eq!(got, *want, "{presented} against {policy:?}");
        }
        let empty = PeerPolicy::trust_domains(Vec::<String>::new());
        assert!(empty
            .check(&id("spiffe://cluster.local/ns/a/sa/b"))
            .is_err());
    }

    #[test]
    fn dns_match_table() {
        for (presented, want, ok) in [
            ("localhost", "localhost", true),
            ("LocalHost", "localhost", true),
            ("example.com.", "example.com", true),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.example.com", "*.example.com", true),
            ("a.example.com", "*.example.com", false),
            ("example.com", "example.org", false),
        ] {
            assert_eq!(dns_matches(presented, want), ok, "{presented} vs {want}");
        }
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("::1", "0:0:0:0:0:0:0:1"));
        assert!(!ip_matches("127.0.0.1", "localhost"));
    }
}
