//! The mesh certificate authority (rcgen): a self-signed root for a trust domain, or a
//! plugged-in CA from Istio's `cacerts` files, issuing SPIFFE workload certificates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::bundle::TrustBundle;
use crate::error::{rfc3339, TlsError};
use crate::identity::{check_trust_domain, Identity};
use crate::pki::{self, CertInfo};

/// Istio's default workload certificate lifetime (`DefaultWorkloadCertTTL`): 24 hours.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{CertRequest, Identity, DEFAULT_WORKLOAD_TTL};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(DEFAULT_WORKLOAD_TTL, Duration::from_secs(24 * 3600));
/// let req = CertRequest::new(Identity::new("cluster.local", "default", "sleep")?);
/// assert_eq!(req.ttl, DEFAULT_WORKLOAD_TTL);
/// # Ok(()) }
/// ```
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's maximum workload certificate lifetime (`DefaultMaxWorkloadCertTTL`): 90 days.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, MAX_WORKLOAD_TTL};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// assert!(ca.issue(&id, MAX_WORKLOAD_TTL, &[]).is_ok());
/// let err = ca.issue(&id, MAX_WORKLOAD_TTL + Duration::from_secs(1), &[]).unwrap_err();
/// assert_eq!(err.to_string(), "requested TTL 7776001s is greater than the max allowed TTL 7776000s");
/// # Ok(()) }
/// ```
pub const MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Istio's self-signed root lifetime (`DefaultSelfSignedCACertTTL`): 10 years.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use mesh_tls::{MeshCa, DEFAULT_ROOT_TTL};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let left = ca.not_after().duration_since(SystemTime::now())?;
/// assert!(left <= DEFAULT_ROOT_TTL && left > DEFAULT_ROOT_TTL - Duration::from_secs(60));
/// # Ok(()) }
/// ```
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(3650 * 24 * 3600);
/// How far `notBefore` is moved into the past to tolerate clock skew between hosts:
/// Istio's `ClockSkewGracePeriod`, 2 minutes (at most a tenth of the lifetime, so that very
/// short-lived certificates still rotate on time).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, CLOCK_SKEW_GRACE};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let life = |ttl| -> Result<Duration, Box<dyn std::error::Error>> {
///     let cert = ca.issue(&id, ttl, &[])?;
///     Ok(cert.not_after().duration_since(cert.not_before())?)
/// };
/// // An hour-long certificate starts two minutes early...
/// assert_eq!(life(Duration::from_secs(3600))?, Duration::from_secs(3600) + CLOCK_SKEW_GRACE);
/// // ...a 100 s one only a tenth of its lifetime early.
/// assert_eq!(life(Duration::from_secs(100))?, Duration::from_secs(110));
/// # Ok(()) }
/// ```
pub const CLOCK_SKEW_GRACE: Duration = Duration::from_secs(120);

/// Istio's `cacerts` file names.
///
/// # Examples
///
/// [`MeshCa::write_dir`] writes these four files:
///
/// ```
/// use mesh_tls::{files, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// MeshCa::self_signed("cluster.local")?.write_dir(dir.path())?;
/// for name in [files::CA_CERT, files::CA_KEY, files::ROOT_CERT, files::CERT_CHAIN] {
///     assert!(dir.path().join(name).is_file(), "{name}");
/// }
/// assert_eq!(files::CA_KEY, "ca-key.pem");
/// # Ok(()) }
/// ```
pub mod files {
    /// The signing (intermediate) certificate.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{files, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// ca.write_dir(dir.path())?;
    /// // A self-signed CA signs with its root.
    /// let ca_cert = std::fs::read_to_string(dir.path().join(files::CA_CERT))?;
    /// assert_eq!(ca_cert, ca.trust_bundle().to_pem());
    /// # Ok(()) }
    /// ```
    pub const CA_CERT: &str = "ca-cert.pem";
    /// The signing key.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{files, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// MeshCa::self_signed("cluster.local")?.write_dir(dir.path())?;
    /// let key = std::fs::read_to_string(dir.path().join(files::CA_KEY))?;
    /// assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    /// # Ok(()) }
    /// ```
    pub const CA_KEY: &str = "ca-key.pem";
    /// The root(s) of trust.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{files, Identity, MeshCa, TrustBundle};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let dir = tempfile::tempdir()?;
    /// ca.issue(&id, Duration::from_secs(3600), &[])?.write_dir(dir.path())?;
    /// let roots = TrustBundle::from_pem_file(dir.path().join(files::ROOT_CERT))?;
    /// assert_eq!(roots.certs(), ca.trust_bundle().certs());
    /// # Ok(()) }
    /// ```
    pub const ROOT_CERT: &str = "root-cert.pem";
    /// The chain from the signing certificate towards the root.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{certs_from_pem, files, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// let dir = tempfile::tempdir()?;
    /// cert.write_dir(dir.path())?;
    /// let chain = std::fs::read(dir.path().join(files::CERT_CHAIN))?;
    /// assert_eq!(certs_from_pem(files::CERT_CHAIN, &chain)?, cert.chain_der()?);
    /// # Ok(()) }
    /// ```
    pub const CERT_CHAIN: &str = "cert-chain.pem";
    /// A workload's private key (workload directory).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{files, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
    /// let dir = tempfile::tempdir()?;
    /// cert.write_dir(dir.path())?;
    /// assert_eq!(std::fs::read_to_string(dir.path().join(files::KEY))?, cert.key_pem());
    /// # Ok(()) }
    /// ```
    pub const KEY: &str = "key.pem";
}

/// A mesh CA: signs workload certificates for SPIFFE identities.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, DEFAULT_WORKLOAD_TTL};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// assert_eq!(ca.trust_domain(), "cluster.local");
///
/// let id = Identity::new("cluster.local", "default", "httpbin")?;
/// let cert = ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[])?;
/// assert_eq!(cert.identity(), &id);
/// assert_eq!(
///     cert.not_after().duration_since(cert.not_before())?,
///     // notBefore is moved back by the clock-skew grace (2 minutes, as Istio's)
///     DEFAULT_WORKLOAD_TTL + Duration::from_secs(120),
/// );
/// // The workload trusts the CA's roots.
/// assert_eq!(cert.trust_bundle()?.certs(), ca.trust_bundle().certs());
/// # Ok(()) }
/// ```
pub struct MeshCa {
    trust_domain: String,
    issuer: Issuer<'static, KeyPair>,
    signing_cert: CertificateDer<'static>,
    /// What follows a leaf in a workload chain: the signing cert and any intermediates
    /// above it, roots excluded.
    intermediates: Vec<CertificateDer<'static>>,
    /// `cert-chain.pem` as loaded or written.
    cert_chain: Vec<CertificateDer<'static>>,
    roots: TrustBundle,
    key_pem: String,
    not_after: SystemTime,
}

impl fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCa")
            .field("trust_domain", &self.trust_domain)
            .field("roots", &self.roots.subjects())
            .field("intermediates", &self.intermediates.len())
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

/// What to issue: an identity, a lifetime and extra DNS names.
///
/// # Examples
///
/// A certificate that is already expired, for testing how peers refuse it:
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use mesh_tls::{CertRequest, Identity, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let mut req = CertRequest::new(Identity::new("cluster.local", "default", "sleep")?);
/// req.valid_from = Some(SystemTime::now() - Duration::from_secs(7200));
/// req.ttl = Duration::from_secs(3600);
/// req.dns_sans = vec!["localhost".into(), "127.0.0.1".into()];
/// let cert = ca.issue_request(&req)?;
/// assert!(cert.not_after() < SystemTime::now());
///
/// // Istio's limits: no zero lifetime, at most 90 days.
/// req.ttl = Duration::ZERO;
/// assert!(ca.issue_request(&req).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// The SPIFFE identity, written as the certificate's URI SAN.
    pub identity: Identity,
    /// Lifetime; default 24 h, at most 90 days, and never beyond the CA's own expiry.
    pub ttl: Duration,
    /// DNS SANs added after the SPIFFE URI (e.g. `localhost`, for tools like curl that
    /// cannot verify a SPIFFE-only certificate).
    pub dns_sans: Vec<String>,
    /// The start of validity; default now minus [`CLOCK_SKEW_GRACE`] (capped at ttl / 10).
    /// Mostly for tests of not-yet-valid and expired certificates.
    pub valid_from: Option<SystemTime>,
}

impl CertRequest {
    /// A request for `identity` with Istio's defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{CertRequest, Identity, DEFAULT_WORKLOAD_TTL};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let req = CertRequest::new(Identity::new("cluster.local", "default", "sleep")?);
    /// assert_eq!(req.identity.service_account(), "sleep");
    /// assert_eq!(req.ttl, DEFAULT_WORKLOAD_TTL);
    /// assert!(req.dns_sans.is_empty());
    /// assert!(req.valid_from.is_none());
    /// # Ok(()) }
    /// ```
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            ttl: DEFAULT_WORKLOAD_TTL,
            dns_sans: Vec::new(),
            valid_from: None,
        }
    }
}

impl MeshCa {
    /// A new self-signed root CA (ECDSA P-256, 10 years) for `trust_domain`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// assert_eq!(ca.trust_bundle().subjects(), ["O=cluster.local, CN=Root CA"]);
    /// // Trust domains are lower case.
    /// assert!(MeshCa::self_signed("Cluster.Local").is_err());
    /// # Ok(()) }
    /// ```
    pub fn self_signed(trust_domain: &str) -> Result<Self, TlsError> {
        check_trust_domain(trust_domain)
            .map_err(|r| TlsError::Config(format!("trust domain {trust_domain:?}: {r}")))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "Root CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        let not_after = now + DEFAULT_ROOT_TTL;
        params.not_before = (now - CLOCK_SKEW_GRACE).into();
        params.not_after = not_after.into();
        let cert = params.self_signed(&key)?;
        let der = cert.der().clone();
        let key_pem = key.serialize_pem();
        let roots = TrustBundle::new(vec![der.clone()])?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            issuer: Issuer::new(params, key),
            signing_cert: der.clone(),
            intermediates: Vec::new(),
            cert_chain: vec![der],
            roots,
            key_pem,
            not_after: truncate_to_secs(not_after),
        })
    }

    /// Loads a plugged-in CA from Istio's `cacerts` files in `dir`: `ca-cert.pem`,
    /// `ca-key.pem`, `root-cert.pem` and `cert-chain.pem` (all four, as istiod requires a
    /// complete signing bundle), or a `kubernetes.io/tls` secret's `tls.crt`, `tls.key`
    /// and `ca.crt` (istiod's `detectSigningCABundle` takes those first: the chain is
    /// `tls.crt` then `ca.crt`).
    ///
    /// Checked, failing closed: the key matches `ca-cert.pem`; `ca-cert.pem` is a CA that
    /// may sign certificates and is valid now; a probe certificate it signs verifies up to
    /// `root-cert.pem` through `cert-chain.pem`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, MeshCa, DEFAULT_WORKLOAD_TTL};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A `cacerts` directory, as `kubectl create secret generic cacerts` would mount it.
    /// let cacerts = tempfile::tempdir()?;
    /// let original = MeshCa::self_signed("cluster.local")?;
    /// original.write_dir(cacerts.path())?;
    ///
    /// let ca = MeshCa::from_plugin_dir(cacerts.path(), "cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let cert = ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[])?;
    /// assert_eq!(cert.trust_bundle()?.certs(), original.trust_bundle().certs());
    ///
    /// // A missing file is named in the error.
    /// let empty = tempfile::tempdir()?;
    /// let err = MeshCa::from_plugin_dir(empty.path(), "cluster.local").unwrap_err();
    /// assert!(err.to_string().contains("ca-cert.pem"));
    /// # Ok(()) }
    /// ```
    pub fn from_plugin_dir(dir: impl AsRef<Path>, trust_domain: &str) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        let read = |name: &str| pki::read_file(&dir.join(name));
        if dir.join("tls.crt").exists() {
            let (cert, key, root) = (read("tls.crt")?, read("tls.key")?, read("ca.crt")?);
            let mut chain = cert.clone();
            if !chain.ends_with(b"\n") {
                chain.push(b'\n');
            }
            chain.extend_from_slice(&root);
            return Self::from_plugin_pem(&cert, &key, &root, Some(&chain), trust_domain);
        }
        let ca_cert = read(files::CA_CERT)?;
        let ca_key = read(files::CA_KEY)?;
        let root = read(files::ROOT_CERT)?;
        let chain = read(files::CERT_CHAIN)?;
        Self::from_plugin_pem(&ca_cert, &ca_key, &root, Some(&chain), trust_domain)
    }

    /// [`from_plugin_dir`](Self::from_plugin_dir) from PEM texts.
    ///
    /// # Examples
    ///
    /// A signing key that does not belong to `ca-cert.pem` is refused:
    ///
    /// ```
    /// use mesh_tls::{files, MeshCa, TlsError};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// MeshCa::self_signed("cluster.local")?.write_dir(dir.path())?;
    /// let read = |name: &str| std::fs::read(dir.path().join(name));
    /// let (cert, key, root) = (read(files::CA_CERT)?, read(files::CA_KEY)?, read(files::ROOT_CERT)?);
    ///
    /// let ca = MeshCa::from_plugin_pem(&cert, &key, &root, None, "cluster.local")?;
    /// assert_eq!(ca.trust_domain(), "cluster.local");
    ///
    /// let other = tempfile::tempdir()?;
    /// MeshCa::self_signed("cluster.local")?.write_dir(other.path())?;
    /// let other_key = std::fs::read(other.path().join(files::CA_KEY))?;
    /// let err = MeshCa::from_plugin_pem(&cert, &other_key, &root, None, "cluster.local").unwrap_err();
    /// assert!(matches!(err, TlsError::KeyMismatch { .. }));
    /// # Ok(()) }
    /// ```
    pub fn from_plugin_pem(
        ca_cert_pem: &[u8],
        ca_key_pem: &[u8],
        root_cert_pem: &[u8],
        cert_chain_pem: Option<&[u8]>,
        trust_domain: &str,
    ) -> Result<Self, TlsError> {
        check_trust_domain(trust_domain)
            .map_err(|r| TlsError::Config(format!("trust domain {trust_domain:?}: {r}")))?;
        let ca_certs = pki::certs_from_pem(files::CA_CERT, ca_cert_pem)?;
        let signing_cert = ca_certs[0].clone();
        let roots = TrustBundle::new(pki::certs_from_pem(files::ROOT_CERT, root_cert_pem)?)?;
        let cert_chain = match cert_chain_pem {
            Some(pem) => pki::certs_from_pem(files::CERT_CHAIN, pem)?,
            None => ca_certs.clone(),
        };

        // The key must be the certificate's (rcgen does not check this).
        let key_der = pki::key_from_pem(files::CA_KEY, ca_key_pem)?;
        let key = KeyPair::try_from(&key_der)
            .map_err(|e| TlsError::parse(files::CA_KEY, format!("unsupported key: {e}")))?;
        let cert_bits =
            pki::public_key_bits(&signing_cert).map_err(|e| TlsError::parse(files::CA_CERT, e))?;
        if rcgen::PublicKeyData::der_bytes(&key) != cert_bits.as_slice() {
            return Err(TlsError::KeyMismatch {
                what: format!("{} / {}", files::CA_KEY, files::CA_CERT),
            });
        }

        let info =
            CertInfo::parse(&signing_cert).map_err(|e| TlsError::parse(files::CA_CERT, e))?;
        if !info.is_ca {
            return Err(TlsError::invalid(
                files::CA_CERT,
                if info.subject.is_empty() {
                    "its certificate (no subject) is not a CA certificate (basicConstraints CA:TRUE missing)".to_owned()
                } else {
                    format!(
                        "{} is not a CA certificate (basicConstraints CA:TRUE missing)",
                        info.subject
                    )
                },
            ));
        }
        let now = SystemTime::now();
        if now > info.not_after {
            return Err(TlsError::invalid(
                files::CA_CERT,
                format!("expired at {}", rfc3339(info.not_after)),
            ));
        }
        if now < info.not_before {
            return Err(TlsError::invalid(
                files::CA_CERT,
                format!("not valid before {}", rfc3339(info.not_before)),
            ));
        }

        let issuer = Issuer::from_ca_cert_der(&signing_cert, key).map_err(|e| {
            TlsError::parse(files::CA_CERT, format!("unusable CA certificate: {e}"))
        })?;
        if !issuer.key_usages().is_empty()
            && !issuer.key_usages().contains(&KeyUsagePurpose::KeyCertSign)
        {
            return Err(TlsError::invalid(
                files::CA_CERT,
                "key usage does not allow signing certificates (keyCertSign)",
            ));
        }

        // Workload chains: the signing cert, then whatever cert-chain.pem adds above it,
        // roots excluded (the peer has them).
        let mut intermediates = Vec::new();
        if !roots.certs().contains(&signing_cert) {
            intermediates.push(signing_cert.clone());
        }
        for c in &cert_chain {
            if !roots.certs().contains(c) && !intermediates.contains(c) {
                intermediates.push(c.clone());
            }
        }

        // every CA above the signing one must be allowed to sign (webpki does not check it;
        // Envoy's BoringSSL refuses such a chain at every handshake)
        pki::check_ca_key_usage(&signing_cert, &intermediates)
            .map_err(|e| TlsError::invalid(files::CERT_CHAIN, e.to_string()))?;

        let key_pem = String::from_utf8_lossy(ca_key_pem).into_owned();
        let ca = Self {
            trust_domain: trust_domain.to_owned(),
            issuer,
            signing_cert,
            intermediates,
            cert_chain,
            roots,
            key_pem,
            not_after: info.not_after,
        };
        ca.probe()?;
        Ok(ca)
    }

    /// Issues a short probe certificate and verifies it up to the roots, so a CA whose
    /// chain is broken is refused at load time rather than at the first handshake.
    fn probe(&self) -> Result<(), TlsError> {
        let id = Identity::new(&self.trust_domain, "probe", "probe")?;
        let mut req = CertRequest::new(id);
        req.ttl = Duration::from_secs(120);
        let wc = self.issue_request(&req)?;
        let chain = wc.chain_der()?;
        let ee = webpki::EndEntityCert::try_from(&chain[0])
            .map_err(|e| TlsError::invalid(files::CA_CERT, format!("probe certificate: {e}")))?;
        // (a root outside its dates ends no chain, as istiod's Go verification says)
        let now = UnixTime::now();
        let anchors: Vec<_> = self
            .roots
            .anchors_valid_at(now)
            .unwrap_or_else(|| self.roots.root_store().roots.to_vec());
        let provider = crate::provider();
        ee.verify_for_usage(
            provider.signature_verification_algorithms.all,
            &anchors,
            &chain[1..],
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| {
            TlsError::invalid(
                files::CA_CERT,
                match self.roots.outside_dates(now) {
                    Some(dates) => {
                        format!(
                        "certificates signed by {} do not verify up to {}: {e} ({} of {}: {dates})",
                        files::CA_CERT,
                        files::ROOT_CERT,
                        if self.roots.certs().len() == 1 { "the root" } else { "roots" },
                        files::ROOT_CERT,
                    )
                    }
                    None => format!(
                        "certificates signed by {} do not verify up to {}: {e}",
                        files::CA_CERT,
                        files::ROOT_CERT
                    ),
                },
            )
        })?;
        Ok(())
    }

    /// Reads a CA written by [`write_dir`](Self::write_dir) (or any `cacerts` directory).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// ca.write_dir(dir.path())?;
    /// let again = MeshCa::read_dir(dir.path(), "cluster.local")?;
    /// assert_eq!(again.trust_bundle().certs(), ca.trust_bundle().certs());
    /// # Ok(()) }
    /// ```
    pub fn read_dir(dir: impl AsRef<Path>, trust_domain: &str) -> Result<Self, TlsError> {
        Self::from_plugin_dir(dir, trust_domain)
    }

    /// Writes the CA as Istio's `cacerts` files (`ca-cert.pem`, `ca-key.pem` with mode
    /// 0600, `root-cert.pem`, `cert-chain.pem`), creating `dir` if needed.
    ///
    /// # Examples
    ///
    /// Keep one CA across restarts:
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let ca = MeshCa::self_signed("example.org")?;
    /// ca.write_dir(dir.path().join("cacerts"))?;
    ///
    /// let again = MeshCa::read_dir(dir.path().join("cacerts"), "example.org")?;
    /// assert_eq!(again.trust_bundle().certs(), ca.trust_bundle().certs());
    /// assert_eq!(again.not_after(), ca.not_after());
    /// # Ok(()) }
    /// ```
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        write_file(
            &dir.join(files::CA_CERT),
            pki::certs_to_pem(std::slice::from_ref(&self.signing_cert)).as_bytes(),
            false,
        )?;
        write_file(&dir.join(files::CA_KEY), self.key_pem.as_bytes(), true)?;
        write_file(
            &dir.join(files::ROOT_CERT),
            self.roots.to_pem().as_bytes(),
            false,
        )?;
        write_file(
            &dir.join(files::CERT_CHAIN),
            pki::certs_to_pem(&self.cert_chain).as_bytes(),
            false,
        )?;
        Ok(())
    }

    /// The trust domain this CA issues for by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::MeshCa;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(MeshCa::self_signed("example.org")?.trust_domain(), "example.org");
    /// # Ok(()) }
    /// ```
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The roots (`root-cert.pem`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert_eq!(ca.trust_bundle().to_pem(), cert.root_pem());
    /// # Ok(()) }
    /// ```
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.roots
    }

    /// When the signing certificate expires; workload certificates never outlive it.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{Identity, MeshCa, MAX_WORKLOAD_TTL};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, MAX_WORKLOAD_TTL, &[])?;
    /// assert!(cert.not_after() <= ca.not_after());
    /// # Ok(()) }
    /// ```
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a workload certificate for `identity`, valid for `ttl`, with the SPIFFE URI
    /// SAN and `extra_dns_sans`.
    ///
    /// Entries of `extra_dns_sans` that parse as IP addresses become IP SANs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, MAX_WORKLOAD_TTL};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// // `localhost` lets tools like curl verify the certificate too.
    /// let cert = ca.issue(&id, Duration::from_secs(3600), &["localhost", "127.0.0.1"])?;
    /// assert_eq!(cert.chain_der()?.len(), 1);
    ///
    /// assert!(ca.issue(&id, MAX_WORKLOAD_TTL + Duration::from_secs(1), &[]).is_err());
    /// assert!(ca.issue(&id, Duration::from_secs(3600), &["not a name!"]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn issue(
        &self,
        identity: &Identity,
        ttl: Duration,
        extra_dns_sans: &[&str],
    ) -> Result<WorkloadCert, TlsError> {
        let mut req = CertRequest::new(identity.clone());
        req.ttl = ttl;
        req.dns_sans = extra_dns_sans.iter().map(|s| (*s).to_owned()).collect();
        self.issue_request(&req)
    }

    /// Issues a workload certificate: Istio's shape (empty subject, critical SAN with the
    /// SPIFFE URI first, KeyUsage digitalSignature + keyEncipherment, ExtKeyUsage
    /// serverAuth + clientAuth, CA:FALSE), a fresh ECDSA P-256 key, and the chain up to
    /// (not including) the root.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use mesh_tls::{CertRequest, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let mut req = CertRequest::new(Identity::new("cluster.local", "default", "httpbin")?);
    /// req.ttl = Duration::from_secs(600);
    /// req.dns_sans = vec!["localhost".into()];
    /// // Not valid for another hour.
    /// req.valid_from = Some(SystemTime::now() + Duration::from_secs(3600));
    /// let cert = ca.issue_request(&req)?;
    /// assert!(cert.not_before() > SystemTime::now());
    /// assert_eq!(cert.not_after().duration_since(cert.not_before())?, req.ttl);
    /// # Ok(()) }
    /// ```
    pub fn issue_request(&self, req: &CertRequest) -> Result<WorkloadCert, TlsError> {
        if req.ttl.is_zero() {
            return Err(TlsError::Config(
                "certificate ttl must be greater than zero".into(),
            ));
        }
        if req.ttl > MAX_WORKLOAD_TTL {
            return Err(TlsError::Config(format!(
                "requested TTL {}s is greater than the max allowed TTL {}s",
                req.ttl.as_secs(),
                MAX_WORKLOAD_TTL.as_secs()
            )));
        }
        let now = SystemTime::now();
        let not_before = req
            .valid_from
            .unwrap_or_else(|| now - CLOCK_SKEW_GRACE.min(req.ttl / 10));
        let start = req.valid_from.unwrap_or(now);
        let mut not_after = start + req.ttl;
        if not_after > self.not_after {
            not_after = self.not_after;
        }
        if not_after <= not_before {
            return Err(TlsError::Config(format!(
                "the CA certificate expires at {}: cannot issue",
                rfc3339(self.not_after)
            )));
        }

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let mut sans = vec![SanType::URI(
            req.identity
                .as_uri()
                .try_into()
                .map_err(|e| TlsError::Config(format!("SPIFFE URI: {e}")))?,
        )];
        for d in &req.dns_sans {
            if let Ok(ip) = d.parse::<std::net::IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else {
                rustls::pki_types::DnsName::try_from(d.as_str()).map_err(|_| {
                    TlsError::Config(format!("DNS SAN {d:?} is not a valid DNS name"))
                })?;
                sans.push(SanType::DnsName(
                    d.as_str()
                        .try_into()
                        .map_err(|e| TlsError::Config(format!("DNS SAN {d:?}: {e}")))?,
                ));
            }
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let cert = params.signed_by(&key, &self.issuer)?;

        let mut chain = Vec::with_capacity(1 + self.intermediates.len());
        chain.push(cert.der().clone());
        chain.extend(self.intermediates.iter().cloned());
        Ok(WorkloadCert {
            identity: req.identity.clone(),
            chain_pem: pki::certs_to_pem(&chain),
            key_pem: key.serialize_pem(),
            root_pem: self.roots.to_pem(),
            not_before: truncate_to_secs(not_before),
            not_after: truncate_to_secs(not_after),
        })
    }

    /// A certificate revocation list (PEM) signed by this CA, listing `revoked` (certificates
    /// it issued) and valid for `validity` from now: what a DestinationRule's `caCrl` or a
    /// credential's `ca.crl` holds. For development and tests; a production CA publishes
    /// its CRLs itself.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{crls_from_pem, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let stolen = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let crl = ca.revocation_list(&[&stolen], Duration::from_secs(24 * 3600))?;
    /// assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    /// assert_eq!(crls_from_pem("ca.crl", crl.as_bytes())?.len(), 1);
    /// // a CRL listing nothing is a CRL too: every certificate of this CA is good
    /// assert!(ca.revocation_list(&[], Duration::from_secs(3600)).is_ok());
    /// # Ok(()) }
    /// ```
    pub fn revocation_list(
        &self,
        revoked: &[&WorkloadCert],
        validity: Duration,
    ) -> Result<String, TlsError> {
        let mut leaves = Vec::with_capacity(revoked.len());
        for cert in revoked {
            let chain = cert.chain_der()?;
            leaves.push(
                chain
                    .into_iter()
                    .next()
                    .ok_or_else(|| TlsError::parse("workload certificate", "empty chain"))?,
            );
        }
        self.revocation_list_der(&leaves, validity)
    }

    /// [`revocation_list`](Self::revocation_list) for certificates given as DER (e.g. read
    /// from PEM files with [`certs_from_pem`](crate::certs_from_pem)): each must have been
    /// issued by this CA's signing certificate, else it is an error (a CRL lists only its
    /// issuer's certificates).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{certs_from_pem, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let leaf = certs_from_pem("cert-chain.pem", cert.chain_pem().as_bytes())?.remove(0);
    /// assert!(ca.revocation_list_der(&[leaf], Duration::from_secs(3600)).is_ok());
    /// // another CA's certificate cannot be revoked here
    /// let other = MeshCa::self_signed("cluster.local")?
    ///     .issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let theirs = certs_from_pem("other.pem", other.chain_pem().as_bytes())?.remove(0);
    /// assert!(ca.revocation_list_der(&[theirs], Duration::from_secs(3600)).is_err());
    /// # Ok(()) }
    /// ```
    pub fn revocation_list_der(
        &self,
        revoked: &[CertificateDer<'_>],
        validity: Duration,
    ) -> Result<String, TlsError> {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber,
        };
        use x509_parser::prelude::{FromDer, X509Certificate};
        if validity.is_zero() {
            return Err(TlsError::Config(
                "revocation list validity must be greater than zero".into(),
            ));
        }
        let (_, signer) = X509Certificate::from_der(&self.signing_cert)
            .map_err(|e| TlsError::parse("CA certificate", format!("bad certificate: {e}")))?;
        let now = SystemTime::now();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for leaf in revoked {
            let (_, x509) = X509Certificate::from_der(leaf).map_err(|e| {
                TlsError::parse("revoked certificate", format!("bad certificate: {e}"))
            })?;
            if x509.verify_signature(Some(signer.public_key())).is_err() {
                return Err(TlsError::Config(format!(
                    "certificate {} (serial {}) was not issued by this CA",
                    x509.subject(),
                    x509.raw_serial_as_string()
                )));
            }
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(x509.tbs_certificate.raw_serial()),
                revocation_time: now.into(),
                reason_code: None,
                invalidity_date: None,
            });
        }
        // nanoseconds: two lists made in the same second still get distinct numbers
        let crl_number = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        const MAX_VALIDITY: Duration = Duration::from_secs(100 * 366 * 24 * 3600);
        if validity > MAX_VALIDITY {
            return Err(TlsError::Config(
                "revocation list validity must be at most 100 years".into(),
            ));
        }
        // the list's authority key identifier is the signing certificate's own subject key
        // identifier, which OpenSSL (Envoy) matches exactly: a plugged-in CA's is often a
        // SHA-1 of its key, not the SHA-256 rcgen would compute
        let key_identifier_method = signer
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(KeyIdMethod::PreSpecified(k.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        let params = CertificateRevocationListParams {
            this_update: (now - CLOCK_SKEW_GRACE).into(),
            next_update: (now + validity).into(),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method,
        };
        let crl = params.signed_by(&self.issuer).map_err(|e| match e {
            rcgen::Error::IssuerNotCrlSigner => TlsError::Config(
                "the CA certificate's key usage does not include cRLSign: it cannot sign \
                 revocation lists"
                    .into(),
            ),
            other => other.into(),
        })?;
        Ok(crl.pem()?)
    }
}

fn truncate_to_secs(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(|e| TlsError::io(path, e))?;
    f.write_all(data).map_err(|e| TlsError::io(path, e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| TlsError::io(path, e))?;
    }
    Ok(())
}

/// A workload's certificate: chain (leaf first), private key and roots, as PEM, with the
/// identity and validity read from the leaf.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, MeshCa, WorkloadCert};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let cert = ca.issue(&id, Duration::from_secs(3600), &[])?;
///
/// // Istio's file layout: cert-chain.pem, key.pem, root-cert.pem.
/// let dir = tempfile::tempdir()?;
/// cert.write_dir(dir.path())?;
/// let back = WorkloadCert::read_dir(dir.path())?;
/// assert_eq!(back.identity(), &id);
/// assert_eq!(back.chain_pem(), cert.chain_pem());
/// assert_eq!(back.not_after(), cert.not_after());
///
/// // The rustls signing key for a config.
/// let key = back.certified_key()?;
/// assert_eq!(key.cert.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WorkloadCert {
    identity: Identity,
    chain_pem: String,
    key_pem: String,
    root_pem: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl fmt::Debug for WorkloadCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("identity", &self.identity)
            .field("not_before", &rfc3339(self.not_before))
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

impl WorkloadCert {
    /// Builds from PEM texts, checking them: the chain parses, the key matches the leaf,
    /// the leaf carries exactly one SPIFFE identity, and the roots parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, TlsError, WorkloadCert};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let ttl = Duration::from_secs(3600);
    /// let a = ca.issue(&Identity::new("cluster.local", "default", "a")?, ttl, &[])?;
    /// let b = ca.issue(&Identity::new("cluster.local", "default", "b")?, ttl, &[])?;
    ///
    /// let again = WorkloadCert::from_pem(a.chain_pem(), a.key_pem(), a.root_pem())?;
    /// assert_eq!(again.identity().service_account(), "a");
    ///
    /// // b's key with a's certificate.
    /// let err = WorkloadCert::from_pem(a.chain_pem(), b.key_pem(), a.root_pem()).unwrap_err();
    /// assert!(matches!(err, TlsError::KeyMismatch { .. }));
    /// # Ok(()) }
    /// ```
    pub fn from_pem(chain_pem: &str, key_pem: &str, root_pem: &str) -> Result<Self, TlsError> {
        let chain = pki::certs_from_pem(files::CERT_CHAIN, chain_pem.as_bytes())?;
        let key = pki::key_from_pem(files::KEY, key_pem.as_bytes())?;
        check_key_matches(&chain, &key, "key.pem / cert-chain.pem")?;
        pki::certs_from_pem(files::ROOT_CERT, root_pem.as_bytes())?;
        let info = CertInfo::parse(&chain[0]).map_err(|e| TlsError::parse(files::CERT_CHAIN, e))?;
        let identity = info
            .spiffe()
            .map_err(|e| TlsError::invalid(files::CERT_CHAIN, e.to_string()))?;
        Ok(Self {
            identity,
            chain_pem: chain_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            root_pem: root_pem.to_owned(),
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// Reads `cert-chain.pem`, `key.pem` and `root-cert.pem` from `dir`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa, WorkloadCert};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let dir = tempfile::tempdir()?;
    /// cert.write_dir(dir.path())?;
    /// assert_eq!(WorkloadCert::read_dir(dir.path())?.key_pem(), cert.key_pem());
    /// // key.pem missing: an error naming it.
    /// std::fs::remove_file(dir.path().join("key.pem"))?;
    /// assert!(WorkloadCert::read_dir(dir.path()).unwrap_err().to_string().contains("key.pem"));
    /// # Ok(()) }
    /// ```
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Self, TlsError> {
        let dir = dir.as_ref();
        let read = |name: &str| -> Result<String, TlsError> {
            let p = dir.join(name);
            String::from_utf8(pki::read_file(&p)?)
                .map_err(|_| TlsError::parse(p.display().to_string(), "not UTF-8 PEM"))
        };
        Self::from_pem(
            &read(files::CERT_CHAIN)?,
            &read(files::KEY)?,
            &read(files::ROOT_CERT)?,
        )
    }

    /// Writes `cert-chain.pem`, `key.pem` (mode 0600) and `root-cert.pem` into `dir`,
    /// creating it if needed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let dir = tempfile::tempdir()?;
    /// cert.write_dir(dir.path().join("certs"))?;
    /// assert_eq!(std::fs::read_to_string(dir.path().join("certs/cert-chain.pem"))?, cert.chain_pem());
    /// assert_eq!(std::fs::read_to_string(dir.path().join("certs/root-cert.pem"))?, cert.root_pem());
    /// # #[cfg(unix)]
    /// # {
    /// use std::os::unix::fs::PermissionsExt;
    /// let mode = std::fs::metadata(dir.path().join("certs/key.pem"))?.permissions().mode();
    /// assert_eq!(mode & 0o777, 0o600);
    /// # }
    /// # Ok(()) }
    /// ```
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), TlsError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        write_file(
            &dir.join(files::CERT_CHAIN),
            self.chain_pem.as_bytes(),
            false,
        )?;
        write_file(&dir.join(files::KEY), self.key_pem.as_bytes(), true)?;
        write_file(&dir.join(files::ROOT_CERT), self.root_pem.as_bytes(), false)?;
        Ok(())
    }

    /// The SPIFFE identity in the leaf.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// assert_eq!(ca.issue(&id, Duration::from_secs(3600), &[])?.identity(), &id);
    /// # Ok(()) }
    /// ```
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// Leaf then intermediates, PEM (`cert-chain.pem`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{certs_from_pem, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert!(cert.chain_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    /// assert_eq!(certs_from_pem("cert-chain.pem", cert.chain_pem().as_bytes())?.len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The private key, PEM (`key.pem`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{key_from_pem, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert!(cert.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    /// assert_eq!(key_from_pem("key.pem", cert.key_pem().as_bytes())?, cert.key_der()?);
    /// # Ok(()) }
    /// ```
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
    /// The roots, PEM (`root-cert.pem`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert_eq!(cert.root_pem(), ca.trust_bundle().to_pem());
    /// # Ok(()) }
    /// ```
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }
    /// Start of validity.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// // Valid from two minutes ago (clock-skew grace).
    /// let ago = SystemTime::now().duration_since(cert.not_before())?;
    /// assert!(ago >= Duration::from_secs(120) && ago < Duration::from_secs(122));
    /// # Ok(()) }
    /// ```
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    /// End of validity.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let left = cert.not_after().duration_since(SystemTime::now())?;
    /// assert!(left <= Duration::from_secs(3600) && left > Duration::from_secs(3590));
    /// # Ok(()) }
    /// ```
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// The chain as DER, leaf first.
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
    /// let chain = ca.issue(&id, Duration::from_secs(3600), &[])?.chain_der()?;
    /// assert_eq!(chain.len(), 1);
    /// assert_eq!(PeerIdentity::from_certs(&chain)?.identity(), &id);
    /// # Ok(()) }
    /// ```
    pub fn chain_der(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        pki::certs_from_pem(files::CERT_CHAIN, self.chain_pem.as_bytes())
    }
    /// The private key as DER.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    /// use mesh_tls::rustls::pki_types::PrivateKeyDer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert!(matches!(cert.key_der()?, PrivateKeyDer::Pkcs8(_)));
    /// # Ok(()) }
    /// ```
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        pki::key_from_pem(files::KEY, self.key_pem.as_bytes())
    }
    /// The roots as a trust bundle.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// assert_eq!(cert.trust_bundle()?.certs(), ca.trust_bundle().certs());
    /// # Ok(()) }
    /// ```
    pub fn trust_bundle(&self) -> Result<TrustBundle, TlsError> {
        TrustBundle::from_pem(self.root_pem.as_bytes())
    }
    /// The rustls certified key (chain + signing key), checking that they match.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let cert = ca.issue(&Identity::new("cluster.local", "default", "sleep")?, Duration::from_secs(3600), &[])?;
    /// let key = cert.certified_key()?;
    /// assert_eq!(key.cert, cert.chain_der()?);
    /// assert!(key.keys_match().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
        certified_key(
            self.chain_der()?,
            self.key_der()?,
            "cert-chain.pem / key.pem",
        )
    }
}

/// Builds a rustls certified key with the aws-lc-rs provider, checking the key matches.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    what: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let rcgen_key = KeyPair::try_from(&key).ok();
    let ck =
        rustls::sign::CertifiedKey::from_der(chain, key, &crate::provider()).map_err(
            |e| match e {
                rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                    what: what.to_owned(),
                },
                other => TlsError::parse(what, other.to_string()),
            },
        )?;
    match ck.keys_match() {
        Ok(()) => {}
        // The provider could not tell: compare the raw public keys ourselves (fail closed).
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            let leaf = ck.end_entity_cert()?;
            let bits = pki::public_key_bits(leaf).map_err(|e| TlsError::parse(what, e))?;
            match rcgen_key {
                Some(k) if rcgen::PublicKeyData::der_bytes(&k) == bits.as_slice() => {}
                _ => {
                    return Err(TlsError::KeyMismatch {
                        what: what.to_owned(),
                    })
                }
            }
        }
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                what: what.to_owned(),
            })
        }
    }
    Ok(Arc::new(ck))
}

fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    what: &str,
) -> Result<(), TlsError> {
    certified_key(chain.to_vec(), key.clone_key(), what).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Option<std::path::PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples/certs");
        p.join("ca-cert.pem").exists().then_some(p)
    }

    #[test]
    fn self_signed_issues_istio_shaped_certs() {
        let ca = MeshCa::self_signed("cluster.local").unwrap();
        let id = Identity::new("cluster.local", "default", "sleep").unwrap();
        let wc = ca
            .issue(&id, DEFAULT_WORKLOAD_TTL, &["localhost", "127.0.0.1"])
            .unwrap();
        assert_eq!(wc.identity(), &id);
        let chain = wc.chain_der().unwrap();
        assert_eq!(
            chain.len(),
            1,
            "self-signed root: the chain is the leaf alone"
        );
        let (_, x) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert_eq!(x.subject().to_string(), "");
        let san = x.subject_alternative_name().unwrap().unwrap();
        assert!(san.critical, "SAN must be critical with an empty subject");
        let info = CertInfo::parse(&chain[0]).unwrap();
        assert_eq!(info.uris, vec![id.as_uri().to_owned()]);
        assert_eq!(info.dns, vec!["localhost"]);
        assert_eq!(info.ips, vec!["127.0.0.1"]);
        assert!(!info.is_ca);
        let ku = x.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature() && ku.value.key_encipherment());
        let eku = x.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && eku.value.client_auth);
        let life = wc.not_after().duration_since(SystemTime::now()).unwrap();
        assert!(
            life > DEFAULT_WORKLOAD_TTL - Duration::from_secs(5) && life <= DEFAULT_WORKLOAD_TTL
        );
        wc.certified_key().unwrap();
    }

    #[test]
    fn ttl_limits() {
        let ca = MeshCa::self_signed("cluster.local").unwrap();
        let id = Identity::new("cluster.local", "a", "b").unwrap();
        for (ttl, ok) in [
            (Duration::ZERO, false),
            (Duration::from_secs(1), true),
            (MAX_WORKLOAD_TTL, true),
            (MAX_WORKLOAD_TTL + Duration::from_secs(1), false),
        ] {
            assert_eq!(ca.issue(&id, ttl, &[]).is_ok(), ok, "{ttl:?}");
        }
        assert!(ca
            .issue(&id, Duration::from_secs(1), &["bad name!"])
            .is_err());
    }

    #[test]
    fn bad_trust_domain() {
        assert!(MeshCa::self_signed("").is_err());
        assert!(MeshCa::self_signed("Bad/TD").is_err());
    }

    #[test]
    fn write_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let ca = MeshCa::self_signed("example.org").unwrap();
        ca.write_dir(dir.path()).unwrap();
        let again = MeshCa::read_dir(dir.path(), "example.org").unwrap();
        assert_eq!(again.trust_bundle().certs(), ca.trust_bundle().certs());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let id = Identity::new("example.org", "ns1", "sa1").unwrap();
        let wc = again.issue(&id, Duration::from_secs(3600), &[]).unwrap();
        let wdir = dir.path().join("w");
        wc.write_dir(&wdir).unwrap();
        let back = WorkloadCert::read_dir(&wdir).unwrap();
        assert_eq!(back.identity(), &id);
        assert_eq!(back.chain_pem(), wc.chain_pem());
        assert_eq!(back.not_after(), wc.not_after());
    }

    #[test]
    fn plugin_istio_sample_ca() {
        let Some(dir) = samples() else {
            eprintln!("skipped: Istio sample certs not present");
            return;
        };
        let ca = MeshCa::from_plugin_dir(&dir, "cluster.local").unwrap();
        let id = Identity::new("cluster.local", "foo", "foo").unwrap();
        let wc = ca.issue(&id, DEFAULT_WORKLOAD_TTL, &[]).unwrap();
        let chain = wc.chain_der().unwrap();
        assert_eq!(chain.len(), 2, "leaf + Istio CA intermediate");
        let root = std::fs::read(dir.join("root-cert.pem")).unwrap();
        assert_eq!(
            wc.trust_bundle().unwrap().certs(),
            pki::certs_from_pem("root", &root).unwrap().as_slice()
        );
    }

    #[test]
    fn plugin_errors() {
        let Some(dir) = samples() else {
            eprintln!("skipped: Istio sample certs not present");
            return;
        };
        let ca_cert = std::fs::read(dir.join("ca-cert.pem")).unwrap();
        let ca_key = std::fs::read(dir.join("ca-key.pem")).unwrap();
        let root = std::fs::read(dir.join("root-cert.pem")).unwrap();
        let other_key = std::fs::read(dir.join("workload-foo-key.pem")).unwrap();
        let foo_cert = std::fs::read(dir.join("workload-foo-cert.pem")).unwrap();
        let other = MeshCa::self_signed("x.y").unwrap();
        let other_root = other.trust_bundle().to_pem();

        // key of another certificate
        let e = MeshCa::from_plugin_pem(&ca_cert, &other_key, &root, None, "cluster.local")
            .unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        // a leaf is not a CA
        let e = MeshCa::from_plugin_pem(&foo_cert, &other_key, &root, None, "cluster.local")
            .unwrap_err();
        assert!(e.to_string().contains("not a CA"), "{e}");
        // the intermediate does not chain to this root
        let e = MeshCa::from_plugin_pem(
            &ca_cert,
            &ca_key,
            other_root.as_bytes(),
            None,
            "cluster.local",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("do not verify up to root-cert.pem"),
            "{e}"
        );
        // garbage
        assert!(MeshCa::from_plugin_pem(b"x", &ca_key, &root, None, "cluster.local").is_err());
        assert!(MeshCa::from_plugin_pem(&ca_cert, b"x", &root, None, "cluster.local").is_err());
        // a missing file is named
        let empty = tempfile::tempdir().unwrap();
        let e = MeshCa::from_plugin_dir(empty.path(), "cluster.local").unwrap_err();
        assert!(e.to_string().contains("ca-cert.pem"), "{e}");
    }

    /// root -> intermediate-1 -> signing CA, with `cert-chain.pem` = signing + int-1 + root
    /// (the layout of Istio's `tools/certs` Makefile): workload chains carry both
    /// intermediates and not the root.
    #[test]
    fn plugin_two_level_intermediates() {
        let ca_params = |cn: &str| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "Istio");
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            p.not_before = (SystemTime::now() - Duration::from_secs(3600)).into();
            p.not_after = (SystemTime::now() + Duration::from_secs(86_400 * 365)).into();
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Root CA");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int1_key = KeyPair::generate().unwrap();
        let int1_params = ca_params("Intermediate 1");
        let int1 = int1_params.signed_by(&int1_key, &root_issuer).unwrap();
        let int1_issuer = Issuer::new(int1_params, int1_key);
        let sign_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let sign = ca_params("Istio CA cluster-1")
            .signed_by(&sign_key, &int1_issuer)
            .unwrap();

        let chain_pem = format!("{}{}{}", sign.pem(), int1.pem(), root.pem());
        let ca = MeshCa::from_plugin_pem(
            sign.pem().as_bytes(),
            sign_key.serialize_pem().as_bytes(),
            root.pem().as_bytes(),
            Some(chain_pem.as_bytes()),
            "cluster.local",
        )
        .unwrap();
        let wc = ca
            .issue(
                &Identity::new("cluster.local", "a", "b").unwrap(),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap();
        let chain = wc.chain_der().unwrap();
        assert_eq!(chain.len(), 3, "leaf, signing CA, intermediate 1");
        assert_eq!(&chain[1], sign.der());
        assert_eq!(&chain[2], int1.der());

        // without cert-chain.pem the intermediate is missing and the CA is refused
        let e = MeshCa::from_plugin_pem(
            sign.pem().as_bytes(),
            sign_key.serialize_pem().as_bytes(),
            root.pem().as_bytes(),
            None,
            "cluster.local",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("do not verify up to root-cert.pem"),
            "{e}"
        );

        // an expired signing certificate is refused
        let mut old = ca_params("Old CA");
        old.not_before = (SystemTime::now() - Duration::from_secs(7200)).into();
        old.not_after = (SystemTime::now() - Duration::from_secs(3600)).into();
        let old_key = KeyPair::generate().unwrap();
        let old_cert = old.signed_by(&old_key, &root_issuer).unwrap();
        let e = MeshCa::from_plugin_pem(
            old_cert.pem().as_bytes(),
            old_key.serialize_pem().as_bytes(),
            root.pem().as_bytes(),
            None,
            "cluster.local",
        )
        .unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    /// A root past its dates ends no chain (Envoy checks the root's dates; istiod's Go
    /// verification too): a CA plugged in under an expired root is refused, and a peer
    /// chain that ends at one is refused by both verifiers, also beside a valid root.
    #[test]
    fn an_expired_root_ends_no_chain() {
        use crate::verify::{
            MeshClientCertVerifier, MeshServerCertVerifier, PeerPolicy, ServerCheck,
        };
        use rustls::client::danger::ServerCertVerifier;
        use rustls::server::danger::ClientCertVerifier;
        let ca_params = |cn: &str, from: i64, to: i64| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let at = |d: i64| {
                if d < 0 {
                    SystemTime::now() - Duration::from_secs(d.unsigned_abs())
                } else {
                    SystemTime::now() + Duration::from_secs(d as u64)
                }
            };
            p.not_before = at(from).into();
            p.not_after = at(to).into();
            p
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Old Root", -7200, -3600);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let sign_key = KeyPair::generate().unwrap();
        let sign_params = ca_params("Istio CA", -60, 86_400);
        let sign = sign_params
            .clone()
            .signed_by(&sign_key, &root_issuer)
            .unwrap();
        let chain_pem = format!("{}{}", sign.pem(), root.pem());
        let e = MeshCa::from_plugin_pem(
            sign.pem().as_bytes(),
            sign_key.serialize_pem().as_bytes(),
            root.pem().as_bytes(),
            Some(chain_pem.as_bytes()),
            "cluster.local",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("do not verify up to root-cert.pem"),
            "{e}"
        );
        // ... and says why
        assert!(e.to_string().contains("root 1 expired at"), "{e}");

        // a workload certificate under the expired root, checked beside a valid root
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
                .try_into()
                .unwrap(),
        )];
        leaf.not_before = (SystemTime::now() - Duration::from_secs(60)).into();
        leaf.not_after = (SystemTime::now() + Duration::from_secs(3600)).into();
        let leaf_key = KeyPair::generate().unwrap();
        let sign_issuer = Issuer::new(sign_params, sign_key);
        let leaf = leaf.signed_by(&leaf_key, &sign_issuer).unwrap();
        let other = MeshCa::self_signed("cluster.local").unwrap();
        let mut roots = vec![root.der().clone()];
        roots.extend(other.trust_bundle().certs().iter().cloned());
        let bundle = TrustBundle::new(roots).unwrap();
        let now = UnixTime::now();
        let inter = [sign.der().clone()];
        let client = MeshClientCertVerifier::new(&bundle, PeerPolicy::any_chained()).unwrap();
        let e = client
            .verify_client_cert(leaf.der(), &inter, now)
            .unwrap_err();
        assert!(e.to_string().contains("expired or not yet valid"), "{e}");
        let server = MeshServerCertVerifier::new(&bundle, ServerCheck::Chain).unwrap();
        let name = rustls::pki_types::ServerName::try_from("sleep").unwrap();
        let e = server
            .verify_server_cert(leaf.der(), &inter, &name, &[], now)
            .unwrap_err();
        assert!(e.to_string().contains("expired or not yet valid"), "{e}");
        // a chain up to a root within its dates is accepted beside the expired one
        let good = other
            .issue(
                &Identity::new("cluster.local", "default", "sleep").unwrap(),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap();
        let chain = good.chain_der().unwrap();
        client
            .verify_client_cert(&chain[0], &chain[1..], now)
            .unwrap();
        server
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
            .unwrap();
    }

    /// istiod's plug-in layouts: the four `cacerts` files (a missing `cert-chain.pem` is an
    /// incomplete bundle), or a `kubernetes.io/tls` secret's `tls.crt`, `tls.key`, `ca.crt`.
    #[test]
    fn plugin_layouts_as_istiod_reads_them() {
        let src = tempfile::tempdir().unwrap();
        let original = MeshCa::self_signed("cluster.local").unwrap();
        original.write_dir(src.path()).unwrap();
        let read = |n: &str| std::fs::read(src.path().join(n)).unwrap();
        let tls = tempfile::tempdir().unwrap();
        std::fs::write(tls.path().join("tls.crt"), read(files::CA_CERT)).unwrap();
        std::fs::write(tls.path().join("tls.key"), read(files::CA_KEY)).unwrap();
        std::fs::write(tls.path().join("ca.crt"), read(files::ROOT_CERT)).unwrap();
        let ca = MeshCa::from_plugin_dir(tls.path(), "cluster.local").unwrap();
        assert_eq!(ca.trust_bundle().certs(), original.trust_bundle().certs());

        std::fs::remove_file(src.path().join(files::CERT_CHAIN)).unwrap();
        let e = MeshCa::from_plugin_dir(src.path(), "cluster.local").unwrap_err();
        assert!(e.to_string().contains(files::CERT_CHAIN), "{e}");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let ca = MeshCa::self_signed("cluster.local").unwrap();
        let wc = ca
            .issue(
                &Identity::new("cluster.local", "a", "b").unwrap(),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap();
        let good = wc.chain_pem().as_bytes().to_vec();
        let der = wc.chain_der().unwrap()[0].to_vec();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            // flip a few bytes of a valid PEM and of a valid DER
            let mut pem = good.clone();
            let mut d = der.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % pem.len();
                pem[i] = next() as u8;
                let j = (next() as usize) % d.len();
                d[j] = next() as u8;
            }
            let pem_s = String::from_utf8_lossy(&pem);
            let _ = pki::certs_from_pem("fuzz", &pem);
            let _ = pki::key_from_pem("fuzz", &pem);
            let _ = TrustBundle::from_pem(&pem);
            let _ = WorkloadCert::from_pem(&pem_s, wc.key_pem(), wc.root_pem());
            let _ = CertInfo::parse(&d);
            let _ = pki::spiffe_of(&d);
            let _ = MeshCa::from_plugin_pem(&pem, wc.key_pem().as_bytes(), &pem, None, "td");
        }
    }

    #[test]
    fn workload_cert_from_pem_checks() {
        let ca = MeshCa::self_signed("cluster.local").unwrap();
        let a = ca
            .issue(
                &Identity::new("cluster.local", "a", "a").unwrap(),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap();
        let b = ca
            .issue(
                &Identity::new("cluster.local", "b", "b").unwrap(),
                DEFAULT_WORKLOAD_TTL,
                &[],
            )
            .unwrap();
        assert!(WorkloadCert::from_pem(a.chain_pem(), a.key_pem(), a.root_pem()).is_ok());
        let e = WorkloadCert::from_pem(a.chain_pem(), b.key_pem(), a.root_pem()).unwrap_err();
        assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
        assert!(WorkloadCert::from_pem("", a.key_pem(), a.root_pem()).is_err());
        assert!(WorkloadCert::from_pem(a.chain_pem(), a.key_pem(), "").is_err());
    }
}
