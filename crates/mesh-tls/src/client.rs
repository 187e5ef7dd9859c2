//! Outbound: DestinationRule `trafficPolicy.tls` (ClientTLSSettings) to a rustls client
//! config.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::bundle::TrustBundle;
use crate::ca::certified_key;
use crate::creds::WorkloadCredentials;
use crate::error::TlsError;
use crate::identity::Identity;
use crate::pki;
use crate::verify::{
    self, CaKeyUsageChecked, MeshServerCertVerifier, PeerPolicy, ServerCheck,
    SkipServerVerification,
};

/// DestinationRule `ClientTLSSettings.mode`. The zero value (default) is DISABLE.
///
/// # Examples
///
/// ```
/// use mesh_tls::{client_config, ClientContext, ClientTlsMode, ClientTlsSettings, Destination};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(ClientTlsMode::default(), ClientTlsMode::Disable);
///
/// // DISABLE: no TLS client config at all, the connection is plaintext.
/// let settings = ClientTlsSettings::default();
/// let dest = Destination { host: "reviews.default.svc.cluster.local", port: 9080, subset: None, service_accounts: &[] };
/// assert!(client_config(&settings, &dest, &ClientContext::default())?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ClientTlsMode {
    /// Plaintext.
    #[default]
    Disable,
    /// TLS, server verified, no client certificate.
    Simple,
    /// TLS with a client certificate from files or `credentialName`.
    Mutual,
    /// Mesh mTLS with the workload's own certificate, server identity checked.
    IstioMutual,
}

/// DestinationRule `ClientTLSSettings`, as written (file paths, not contents).
///
/// # Examples
///
/// The settings of this DestinationRule:
///
/// ```yaml
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: originate-tls, namespace: default}
/// spec:
///   host: api.example.com
///   trafficPolicy:
///     tls:
///       mode: SIMPLE
///       caCertificates: /etc/certs/ca.pem
///       sni: api.example.com
/// ```
///
/// ```
/// use mesh_tls::{ClientTlsMode, ClientTlsSettings};
///
/// let settings = ClientTlsSettings {
///     mode: ClientTlsMode::Simple,
///     ca_certificates: Some("/etc/certs/ca.pem".into()),
///     sni: Some("api.example.com".into()),
///     ..Default::default()
/// };
/// assert!(settings.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsSettings {
    /// `mode`.
    pub mode: ClientTlsMode,
    /// `clientCertificate`: PEM file (MUTUAL).
    pub client_certificate: Option<PathBuf>,
    /// `privateKey`: PEM file (MUTUAL).
    pub private_key: Option<PathBuf>,
    /// `caCertificates`: PEM file of roots; unset means the OS roots (SIMPLE, MUTUAL).
    pub ca_certificates: Option<PathBuf>,
    /// `caCrl`: PEM file of certificate revocation lists (SIMPLE, MUTUAL). The server's
    /// whole chain is checked, as Envoy checks it: a revoked certificate, a CA of the chain
    /// without a CRL of its issuer, or a CRL past its `nextUpdate` fails the handshake.
    /// ISTIO_MUTUAL refuses it (the mesh's own roots have no CRL here).
    pub ca_crl: Option<PathBuf>,
    /// `credentialName`: resolved through a [`CredentialLookup`].
    pub credential_name: Option<String>,
    /// `subjectAltNames`: the server certificate must carry one of these SANs.
    pub subject_alt_names: Vec<String>,
    /// `sni`.
    pub sni: Option<String>,
    /// `insecureSkipVerify`.
    pub insecure_skip_verify: bool,
}

impl ClientTlsSettings {
    /// Istio's validation (`ValidateTLS`), with Istio's messages, joined by `; `.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{ClientTlsMode, ClientTlsSettings};
    ///
    /// let mutual = ClientTlsSettings { mode: ClientTlsMode::Mutual, ..Default::default() };
    /// assert_eq!(
    ///     mutual.validate().unwrap_err().to_string(),
    ///     "client certificate required for mutual tls; private key required for mutual tls",
    /// );
    ///
    /// let with_secret = ClientTlsSettings {
    ///     mode: ClientTlsMode::Mutual,
    ///     credential_name: Some("client-credential".into()),
    ///     ..Default::default()
    /// };
    /// assert!(with_secret.validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), TlsError> {
        let mut errs: Vec<&str> = Vec::new();
        let has_ca = self.ca_certificates.is_some();
        let has_cred = self
            .credential_name
            .as_deref()
            .is_some_and(|s| !s.is_empty());
        let has_sans = !self.subject_alt_names.is_empty();
        if self.insecure_skip_verify {
            match self.mode {
                ClientTlsMode::Simple if has_ca || has_cred || has_sans => errs.push(
                    "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true",
                ),
                ClientTlsMode::Mutual if has_ca || has_sans => errs.push(
                    "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true",
                ),
                _ => {}
            }
        }
        let simple_or_mutual = matches!(self.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
        if simple_or_mutual && has_cred {
            if self.client_certificate.is_some()
                || has_ca
                || self.private_key.is_some()
                || self.ca_crl.is_some()
            {
                errs.push("cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
            }
        } else if self.mode == ClientTlsMode::Mutual {
            if self.client_certificate.is_none() {
                errs.push("client certificate required for mutual tls");
            }
            if self.private_key.is_none() {
                errs.push("private key required for mutual tls");
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(TlsError::Config(errs.join("; ")))
        }
    }
}

/// The contents behind a `credentialName` (a Kubernetes secret in Istio).
///
/// # Examples
///
/// ```
/// use mesh_tls::Credential;
///
/// let cred = Credential {
///     cert_chain_pem: Some("-----BEGIN CERTIFICATE-----\n...".into()),
///     key_pem: Some("-----BEGIN PRIVATE KEY-----\n...".into()),
///     crl_pem: None,
///     ca_pem: None,
/// };
/// // The key never shows up in logs.
/// let shown = format!("{cred:?}");
/// assert!(shown.contains("<redacted>"));
/// assert!(!shown.contains("PRIVATE KEY"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// Certificate chain PEM (`tls.crt` / `cert`).
    pub cert_chain_pem: Option<String>,
    /// Private key PEM (`tls.key` / `key`).
    pub key_pem: Option<String>,
    /// CA roots PEM (`ca.crt` / `cacert`).
    pub ca_pem: Option<String>,
    /// Certificate revocation lists PEM (`ca.crl` / `crl`), checked with the CA roots.
    pub crl_pem: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("cert_chain_pem", &self.cert_chain_pem.is_some())
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.is_some())
            .field("crl_pem", &self.crl_pem.is_some())
            .finish()
    }
}

/// Resolves a `credentialName` to its contents.
///
/// [`DirCredentials`] reads them from directories; an application may keep them anywhere.
///
/// # Examples
///
/// An in-memory store used for a DestinationRule with `mode: MUTUAL` and
/// `credentialName: client-credential`:
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use mesh_tls::*;
///
/// #[derive(Debug)]
/// struct Secrets(HashMap<String, Credential>);
///
/// impl CredentialLookup for Secrets {
///     fn lookup(&self, name: &str) -> Result<Credential, TlsError> {
///         self.0
///             .get(name)
///             .cloned()
///             .ok_or_else(|| TlsError::Config(format!("no credential {name:?}")))
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("example.com")?;
/// let client = ca.issue(&Identity::new("example.com", "default", "client")?, Duration::from_secs(3600), &[])?;
/// let secrets = Secrets(HashMap::from([(
///     "client-credential".to_string(),
///     Credential {
///         cert_chain_pem: Some(client.chain_pem().into()),
///         key_pem: Some(client.key_pem().into()),
///         crl_pem: None,
///         ca_pem: Some(client.root_pem().into()),
///     },
/// )]));
///
/// let settings = ClientTlsSettings {
///     mode: ClientTlsMode::Mutual,
///     credential_name: Some("client-credential".into()),
///     ..Default::default()
/// };
/// let dest = Destination { host: "api.example.com", port: 443, subset: None, service_accounts: &[] };
/// let ctx = ClientContext { credentials: Some(&secrets), ..Default::default() };
/// let tls = client_config(&settings, &dest, &ctx)?.expect("MUTUAL");
/// assert!(tls.config().client_auth_cert_resolver.has_certs());
///
/// let missing = ClientTlsSettings { credential_name: Some("nope".into()), ..settings };
/// assert!(client_config(&missing, &dest, &ctx).is_err());
/// # Ok(()) }
/// ```
pub trait CredentialLookup: Send + Sync + fmt::Debug {
    /// The credential called `name`; an error if there is none.
    fn lookup(&self, name: &str) -> Result<Credential, TlsError>;
}

/// Credentials stored as directories: `<root>/<name>/` holding Istio's generic secret keys
/// (`cert`, `key`, `cacert`, `crl`) or the TLS secret keys (`tls.crt`, `tls.key`, `ca.crt`,
/// `ca.crl`), and optionally a separate `<root>/<name>-cacert/` with `cacert` or `ca.crt`
/// (Istio's `<name>-cacert` secret). The roots come as istiod's `GetCaCert` reads them:
/// from `<name>-cacert/` when it exists, else from `<name>/`; in either, `cacert` before
/// `ca.crt`. A CRL is taken with the roots it goes with: `ca.crl` beside `ca.crt`, `crl`
/// beside `cacert`, in the same directory.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{CredentialLookup, DirCredentials, Identity, MeshCa};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("example.com")?;
/// let cert = ca.issue(&Identity::new("example.com", "default", "web")?, Duration::from_secs(3600), &[])?;
///
/// // <root>/httpbin-credential/{tls.crt,tls.key,ca.crt}, as a kubernetes.io/tls secret.
/// let root = tempfile::tempdir()?;
/// let dir = root.path().join("httpbin-credential");
/// std::fs::create_dir(&dir)?;
/// std::fs::write(dir.join("tls.crt"), cert.chain_pem())?;
/// std::fs::write(dir.join("tls.key"), cert.key_pem())?;
/// std::fs::write(dir.join("ca.crt"), cert.root_pem())?;
///
/// let store = DirCredentials::new(root.path());
/// let cred = store.lookup("httpbin-credential")?;
/// assert_eq!(cred.cert_chain_pem.as_deref(), Some(cert.chain_pem()));
/// assert_eq!(cred.ca_pem.as_deref(), Some(cert.root_pem()));
/// assert!(store.lookup("missing").is_err());
/// assert!(store.lookup("../etc").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DirCredentials {
    root: PathBuf,
}

impl DirCredentials {
    /// Credentials under `root`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{CredentialLookup, DirCredentials, Identity, MeshCa};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("example.com")?;
    /// let cert = ca.issue(&Identity::new("example.com", "default", "client")?, Duration::from_secs(3600), &[])?;
    /// // An Istio generic secret: cert, key, and the roots in a separate `<name>-cacert`.
    /// let root = tempfile::tempdir()?;
    /// std::fs::create_dir(root.path().join("client-credential"))?;
    /// std::fs::write(root.path().join("client-credential/cert"), cert.chain_pem())?;
    /// std::fs::write(root.path().join("client-credential/key"), cert.key_pem())?;
    /// std::fs::create_dir(root.path().join("client-credential-cacert"))?;
    /// std::fs::write(root.path().join("client-credential-cacert/cacert"), cert.root_pem())?;
    ///
    /// let cred = DirCredentials::new(root.path()).lookup("client-credential")?;
    /// assert_eq!(cred.key_pem.as_deref(), Some(cert.key_pem()));
    /// assert_eq!(cred.ca_pem.as_deref(), Some(cert.root_pem()));
    /// # Ok(()) }
    /// ```
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

fn read_first(dir: &Path, names: &[&str]) -> Result<Option<String>, TlsError> {
    for n in names {
        let p = dir.join(n);
        if p.is_file() {
            let bytes = pki::read_file(&p)?;
            return String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| TlsError::parse(p.display().to_string(), "not UTF-8 PEM"));
        }
    }
    Ok(None)
}

impl CredentialLookup for DirCredentials {
    fn lookup(&self, name: &str) -> Result<Credential, TlsError> {
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(TlsError::Config(format!(
                "credentialName {name:?} is not a valid name"
            )));
        }
        let dir = self.root.join(name);
        let ca_dir = self.root.join(format!("{name}-cacert"));
        if !dir.is_dir() && !ca_dir.is_dir() {
            return Err(TlsError::Config(format!(
                "credentialName {name:?}: no credential at {}",
                dir.display()
            )));
        }
        let mut cred = Credential {
            cert_chain_pem: read_first(&dir, &["tls.crt", "cert"])?,
            key_pem: read_first(&dir, &["tls.key", "key"])?,
            ca_pem: None,
            crl_pem: None,
        };
        // the roots, and the CRL of the same secret, as istiod's `GetCaCert`: the
        // `-cacert` credential when there is one, else the credential itself; in it
        // `cacert` with `crl`, else `ca.crt` with `ca.crl` (`ExtractRoot`)
        let d = if ca_dir.is_dir() { &ca_dir } else { &dir };
        for (ca, crl) in [("cacert", "crl"), ("ca.crt", "ca.crl")] {
            if let Some(pem) = read_first(d, &[ca])? {
                cred.ca_pem = Some(pem);
                cred.crl_pem = read_first(d, &[crl])?;
                return Ok(cred);
            }
        }
        Ok(cred)
    }
}

/// Application protocols the client offers by ALPN.
///
/// # Examples
///
/// ISTIO_MUTUAL offers Istio's own values first, then these:
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
///
/// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
/// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
/// let ctx = ClientContext { workload: Some(&creds), alpn: Alpn::Http1, ..Default::default() };
/// let tls = client_config(&settings, &dest, &ctx)?.unwrap();
/// assert_eq!(
///     tls.config().alpn_protocols,
///     [&b"istio-peer-exchange"[..], b"istio", b"http/1.1"],
/// );
/// assert_eq!(Alpn::default(), Alpn::Http2AndHttp1);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Alpn {
    /// None (raw TCP, or a client stack that sets ALPN itself).
    None,
    /// `http/1.1`.
    Http1,
    /// `h2`.
    Http2,
    /// `h2`, `http/1.1`: the server picks.
    #[default]
    Http2AndHttp1,
}

impl Alpn {
    fn protocols(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::None => &[],
            Alpn::Http1 => &[b"http/1.1"],
            Alpn::Http2 => &[b"h2"],
            Alpn::Http2AndHttp1 => &[b"h2", b"http/1.1"],
        }
    }
}

/// The destination a client config is for.
///
/// # Examples
///
/// The `v1` subset of `reviews`, whose pods run as the `bookinfo-reviews` service account:
///
/// ```
/// use mesh_tls::{istio_mutual_sni, Destination, Identity};
///
/// # fn main() -> Result<(), mesh_tls::IdentityError> {
/// let accounts = [Identity::new("cluster.local", "default", "bookinfo-reviews")?];
/// let dest = Destination {
///     host: "reviews.default.svc.cluster.local",
///     port: 9080,
///     subset: Some("v1"),
///     service_accounts: &accounts,
/// };
/// assert_eq!(
///     istio_mutual_sni(dest.port, dest.subset, dest.host),
///     "outbound_.9080_.v1_.reviews.default.svc.cluster.local",
/// );
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Destination<'a> {
    /// The destination host (the service FQDN, or the Host/authority for external hosts):
    /// default SNI and name to verify for SIMPLE/MUTUAL.
    pub host: &'a str,
    /// The service port (ISTIO_MUTUAL SNI).
    pub port: u16,
    /// The subset (ISTIO_MUTUAL SNI).
    pub subset: Option<&'a str>,
    /// The identities the destination's workloads may have (its service accounts), checked
    /// under ISTIO_MUTUAL when `subjectAltNames` is empty.
    pub service_accounts: &'a [Identity],
}

/// What a client config may draw on.
///
/// # Examples
///
/// ISTIO_MUTUAL needs the workload's credentials:
///
/// ```
/// use mesh_tls::{client_config, ClientContext, ClientTlsMode, ClientTlsSettings, Destination};
///
/// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
/// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
/// let err = client_config(&settings, &dest, &ClientContext::default()).unwrap_err();
/// assert_eq!(err.to_string(), "ISTIO_MUTUAL needs the workload's mesh credentials");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientContext<'a> {
    /// The workload's mesh credentials (required for ISTIO_MUTUAL).
    pub workload: Option<&'a WorkloadCredentials>,
    /// Resolves `credentialName` (required when it is set).
    pub credentials: Option<&'a dyn CredentialLookup>,
    /// Application protocols to offer.
    pub alpn: Alpn,
    /// For opaque TCP connections: Envoy's auto SNI and auto SAN validation are options of
    /// HTTP upstreams, so SIMPLE and MUTUAL without `sni` send no SNI, and without
    /// `subjectAltNames` check the chain alone, as istiod's TCP clusters do.
    pub opaque: bool,
}

/// A built client TLS setup for one destination: the rustls config (built once, shared)
/// and the name to send as SNI.
///
/// # Examples
///
/// An mTLS handshake with a mesh server over an in-memory pipe (a `TcpStream` in real
/// use), both identities checked:
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
/// let server = WorkloadCredentials::new(ca.issue(&server_id, ttl, &[])?)?;
/// let client = WorkloadCredentials::new(ca.issue(&client_id, ttl, &[])?)?;
///
/// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
/// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
/// let accounts = [server_id.clone()];
/// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &accounts };
/// let ctx = ClientContext { workload: Some(&client), ..Default::default() };
/// let outbound = client_config(&settings, &dest, &ctx)?.unwrap();
/// assert_eq!(outbound.server_name().to_str(), "outbound_.8000_._.httpbin.default.svc.cluster.local");
///
/// let (client_io, server_io) = tokio::io::duplex(16 * 1024);
/// let acceptor = inbound.tls_acceptor().unwrap();
/// let (client_tls, server_tls) = tokio::join!(outbound.connect(client_io), acceptor.accept(server_io));
/// let (client_tls, server_tls) = (client_tls?, server_tls?);
/// assert_eq!(PeerIdentity::of(client_tls.get_ref().1).unwrap().identity(), &server_id);
/// assert_eq!(PeerIdentity::of(server_tls.get_ref().1).unwrap().identity(), &client_id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OutboundTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl fmt::Debug for OutboundTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundTls")
            .field("server_name", &self.server_name)
            .field("alpn", &self.config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

impl OutboundTls {
    /// The rustls config.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
    /// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
    /// let ctx = ClientContext { workload: Some(&creds), alpn: Alpn::Http2, ..Default::default() };
    /// let tls = client_config(&settings, &dest, &ctx)?.unwrap();
    /// // The workload's certificate is offered; Istio's ALPN values come first.
    /// assert!(tls.config().client_auth_cert_resolver.has_certs());
    /// assert_eq!(tls.config().alpn_protocols.last().unwrap(), b"h2");
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
    /// The SNI / verification name.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::*;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ca = MeshCa::self_signed("example.com")?;
    /// # std::fs::write(dir.path().join("ca.pem"), ca.trust_bundle().to_pem())?;
    /// // SIMPLE with an explicit `sni`, verified against our own roots.
    /// let settings = ClientTlsSettings {
    ///     mode: ClientTlsMode::Simple,
    ///     ca_certificates: Some(dir.path().join("ca.pem")),
    ///     sni: Some("api.internal.example.com".into()),
    ///     ..Default::default()
    /// };
    /// let dest = Destination { host: "api.example.com", port: 443, subset: None, service_accounts: &[] };
    /// let tls = client_config(&settings, &dest, &ClientContext::default())?.unwrap();
    /// assert_eq!(tls.server_name().to_str(), "api.internal.example.com");
    /// # Ok(()) }
    /// ```
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
    /// Performs the handshake over `io`.
    ///
    /// # Examples
    ///
    /// An ISTIO_MUTUAL handshake and a round trip with a STRICT server, over an in-memory pipe:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use mesh_tls::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let ttl = Duration::from_secs(3600);
    /// # let server = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "httpbin")?, ttl, &[])?)?;
    /// # let client = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?)?;
    /// # let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
    /// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
    /// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
    /// let ctx = ClientContext { workload: Some(&client), ..Default::default() };
    /// let outbound = client_config(&settings, &dest, &ctx)?.unwrap();
    ///
    /// let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    /// let acceptor = inbound.tls_acceptor().unwrap().clone();
    /// let echo = tokio::spawn(async move {
    ///     let mut tls = acceptor.accept(server_io).await?;
    ///     let mut buf = [0u8; 4];
    ///     tls.read_exact(&mut buf).await?;
    ///     tls.write_all(&buf).await?;
    ///     tls.flush().await?;
    ///     std::io::Result::Ok(())
    /// });
    /// let mut tls = outbound.connect(client_io).await?;
    /// assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    /// tls.write_all(b"ping").await?;
    /// let mut buf = [0u8; 4];
    /// tls.read_exact(&mut buf).await?;
    /// assert_eq!(&buf, b"ping");
    /// echo.await??;
    /// # Ok(()) }
    /// ```
    pub async fn connect<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), io)
            .await
    }
}

/// Istio's ISTIO_MUTUAL SNI: `outbound_.<port>_.<subset>_.<fqdn>`.
///
/// # Examples
///
/// ```
/// use mesh_tls::istio_mutual_sni;
///
/// assert_eq!(
///     istio_mutual_sni(9080, Some("v2"), "reviews.default.svc.cluster.local"),
///     "outbound_.9080_.v2_.reviews.default.svc.cluster.local",
/// );
/// assert_eq!(
///     istio_mutual_sni(8000, None, "httpbin.default.svc.cluster.local"),
///     "outbound_.8000_._.httpbin.default.svc.cluster.local",
/// );
/// ```
pub fn istio_mutual_sni(port: u16, subset: Option<&str>, fqdn: &str) -> String {
    format!("outbound_.{port}_.{}_.{fqdn}", subset.unwrap_or(""))
}

fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned())
        .map_err(|_| TlsError::Config(format!("{name:?} is not a valid TLS server name")))
}

fn os_roots() -> Result<TrustBundle, TlsError> {
    let loaded = rustls_native_certs::load_native_certs();
    if loaded.certs.is_empty() {
        return Err(TlsError::Config(format!(
            "caCertificates is not set and no OS root certificates could be loaded ({} errors)",
            loaded.errors.len()
        )));
    }
    // Keep the roots webpki can use; a platform store may hold a few odd ones.
    let mut store_ok = Vec::with_capacity(loaded.certs.len());
    for c in loaded.certs {
        if webpki::anchor_from_trusted_cert(&c).is_ok() {
            store_ok.push(c);
        }
    }
    TrustBundle::new(store_ok)
}

/// Builds the client TLS setup for a destination from DestinationRule TLS settings;
/// `Ok(None)` for DISABLE. Validates the settings first (Istio's rules and messages), and
/// fails closed on anything unreadable or unsupported.
///
/// - ISTIO_MUTUAL: the workload's certificate (following renewals); the server's chain is
///   verified against the workload's trust bundle and its SPIFFE ID must be one of
///   `subjectAltNames` if set, else one of `dest.service_accounts`; with neither, the chain
///   alone decides, as istiod gives Envoy no SAN matcher then. SNI
///   `outbound_.<port>_.<subset>_.<fqdn>` unless `sni` is set. ALPN: `istio-peer-exchange`,
///   `istio`, then `ctx.alpn`.
/// - SIMPLE / MUTUAL: roots from `caCertificates` (or the credential's CA), else the OS
///   roots; with `subjectAltNames` the server needs one of them as a SAN; without, and
///   without `sni`, its certificate must be valid for `dest.host` (istiod's auto SAN
///   validation); with `sni` and no `subjectAltNames`, the chain alone decides (auto SAN
///   validation is off, as in istiod's `setAutoSniAndAutoSanValidation`). MUTUAL adds the
///   client certificate from `clientCertificate`/`privateKey` or `credentialName`.
///
/// Build once per destination and policy, and share; never per connection.
///
/// # Examples
///
/// SIMPLE TLS origination to an external service whose CA we have (DestinationRule
/// `tls: {mode: SIMPLE, caCertificates: ..., sni: api.example.com}`):
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("example.com")?;
/// let dir = tempfile::tempdir()?;
/// let ca_file = dir.path().join("ca.pem");
/// std::fs::write(&ca_file, ca.trust_bundle().to_pem())?;
///
/// let settings = ClientTlsSettings {
///     mode: ClientTlsMode::Simple,
///     ca_certificates: Some(ca_file),
///     sni: Some("api.example.com".into()),
///     ..Default::default()
/// };
/// let dest = Destination { host: "api.example.com", port: 443, subset: None, service_accounts: &[] };
/// let tls = client_config(&settings, &dest, &ClientContext::default())?.expect("SIMPLE is TLS");
/// assert_eq!(tls.server_name().to_str(), "api.example.com");
/// assert_eq!(tls.config().alpn_protocols, [&b"h2"[..], b"http/1.1"]);
/// assert!(!tls.config().client_auth_cert_resolver.has_certs()); // no client certificate
///
/// // a caCrl that cannot be read is an error, never an unchecked connection
/// let crl = ClientTlsSettings { ca_crl: Some(dir.path().join("missing.crl")), ..settings };
/// assert!(client_config(&crl, &dest, &ClientContext::default()).is_err());
/// # Ok(()) }
/// ```
pub fn client_config(
    settings: &ClientTlsSettings,
    dest: &Destination<'_>,
    ctx: &ClientContext<'_>,
) -> Result<Option<OutboundTls>, TlsError> {
    settings.validate()?;
    let provider = crate::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut alpn: Vec<Vec<u8>> = Vec::new();
    let (config, name) = match settings.mode {
        ClientTlsMode::Disable => return Ok(None),
        ClientTlsMode::IstioMutual => {
            if settings.ca_crl.is_some() {
                return Err(TlsError::Config(
                    "caCrl is not supported with ISTIO_MUTUAL: refusing to connect without the \
                     revocation check"
                        .into(),
                ));
            }
            let creds = ctx.workload.ok_or_else(|| {
                TlsError::Config("ISTIO_MUTUAL needs the workload's mesh credentials".into())
            })?;
            let check = if !settings.subject_alt_names.is_empty() {
                ServerCheck::SubjectAltNames(settings.subject_alt_names.clone().into())
            } else if !dest.service_accounts.is_empty() {
                ServerCheck::Spiffe(
                    PeerPolicy::trust_domains(creds.trust_domains().iter().cloned())
                        .allow_only(dest.service_accounts.iter().cloned()),
                )
            } else {
                // istiod: no SAN matchers, the mesh roots alone
                ServerCheck::Chain
            };
            let verifier = MeshServerCertVerifier::shared(creds.shared_trust(), check);
            let cfg = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_cert_resolver(creds.client_resolver());
            // Mesh connections never resume a session (see `server_config`).
            let mut cfg = cfg;
            cfg.resumption = rustls::client::Resumption::disabled();
            alpn.push(b"istio-peer-exchange".to_vec());
            alpn.push(b"istio".to_vec());
            let sni = match &settings.sni {
                Some(s) => s.clone(),
                None => istio_mutual_sni(dest.port, dest.subset, dest.host),
            };
            (cfg, server_name(&sni)?)
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            let cred = match settings
                .credential_name
                .as_deref()
                .filter(|s| !s.is_empty())
            {
                Some(name) => {
                    let lookup = ctx.credentials.ok_or_else(|| {
                        TlsError::Config(format!(
                            "credentialName {name:?} is set but no credential lookup is configured"
                        ))
                    })?;
                    Some(lookup.lookup(name)?)
                }
                None => None,
            };
            let sni = settings.sni.as_deref().unwrap_or(dest.host);
            let name = server_name(sni)?;
            let builder = if settings.insecure_skip_verify {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(SkipServerVerification))
            } else {
                let roots = match (
                    &settings.ca_certificates,
                    cred.as_ref().and_then(|c| c.ca_pem.as_ref()),
                ) {
                    (Some(path), _) => TrustBundle::from_pem_file(path)?,
                    (None, Some(pem)) => TrustBundle::new(pki::certs_from_pem(
                        "credentialName CA certificate",
                        pem.as_bytes(),
                    )?)?,
                    // a credential without roots: istiod's SDS sends no validation
                    // context for it, and no handshake completes (fail closed, never the
                    // platform's roots)
                    (None, None) if cred.is_some() => {
                        return Err(TlsError::Config(format!(
                            "credentialName {:?} has no CA certificate (cacert or ca.crt, in \
                             it or in a {0}-cacert credential)",
                            settings.credential_name.as_deref().unwrap_or_default()
                        )));
                    }
                    (None, None) => os_roots()?,
                };
                // caCrl, or the credential's ca.crl
                let crls = match (
                    &settings.ca_crl,
                    cred.as_ref().and_then(|c| c.crl_pem.as_ref()),
                ) {
                    (Some(path), _) => Some((
                        path.display().to_string(),
                        pki::crls_from_pem(&path.display().to_string(), &pki::read_file(path)?)?,
                    )),
                    (None, Some(pem)) => {
                        let what = format!(
                            "credentialName {:?} CRL",
                            settings.credential_name.as_deref().unwrap_or_default()
                        );
                        let crls = pki::crls_from_pem(&what, pem.as_bytes())?;
                        Some((what, crls))
                    }
                    (None, None) => None,
                };
                if settings.subject_alt_names.is_empty() && settings.sni.is_none() && !ctx.opaque {
                    // auto SAN validation: the certificate must be valid for the host
                    let v = WebPkiServerVerifier::builder_with_provider(
                        roots.root_store().clone(),
                        provider.clone(),
                    );
                    // the whole chain, an unknown status refused: Envoy's CRL check
                    let v = match crls {
                        Some((_, crls)) => v.with_crls(crls).enforce_revocation_expiration(),
                        None => v,
                    };
                    let v = v
                        .build()
                        .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
                    // (with the CAs' key usage checked, which webpki leaves out)
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(CaKeyUsageChecked(v)))
                } else {
                    let revocation = match crls {
                        Some((what, crls)) => Some(pki::owned_crls(&what, &crls)?),
                        None => None,
                    };
                    // an explicit `sni` turns istiod's auto SAN validation off (and TCP
                    // has none): without `subjectAltNames`, the chain alone is checked
                    let check = if settings.subject_alt_names.is_empty() {
                        ServerCheck::Chain
                    } else {
                        ServerCheck::SubjectAltNames(settings.subject_alt_names.clone().into())
                    };
                    let v = MeshServerCertVerifier::shared_with_revocation(
                        verify::shared_trust(&roots)?,
                        check,
                        revocation,
                    );
                    builder.dangerous().with_custom_certificate_verifier(v)
                }
            };
            let cfg = if settings.mode == ClientTlsMode::Mutual {
                let (chain_pem, key_pem, what) = match &cred {
                    Some(c) => {
                        let name = settings.credential_name.as_deref().unwrap_or_default();
                        let chain = c.cert_chain_pem.clone().ok_or_else(|| {
                            TlsError::Config(format!(
                                "credentialName {name:?}: no certificate (tls.crt / cert)"
                            ))
                        })?;
                        let key = c.key_pem.clone().ok_or_else(|| {
                            TlsError::Config(format!(
                                "credentialName {name:?}: no private key (tls.key / key)"
                            ))
                        })?;
                        (
                            chain.into_bytes(),
                            key.into_bytes(),
                            format!("credentialName {name:?}"),
                        )
                    }
                    None => {
                        // validate() guarantees both paths are set for MUTUAL without credentialName
                        let cert_path = settings
                            .client_certificate
                            .as_deref()
                            .unwrap_or(Path::new(""));
                        let key_path = settings.private_key.as_deref().unwrap_or(Path::new(""));
                        (
                            pki::read_file(cert_path)?,
                            pki::read_file(key_path)?,
                            format!("{} / {}", key_path.display(), cert_path.display()),
                        )
                    }
                };
                let chain = pki::certs_from_pem(&what, &chain_pem)?;
                let key = pki::key_from_pem(&what, &key_pem)?;
                let ck = certified_key(chain, key, &what)?;
                builder
                    .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)))
            } else {
                builder.with_no_client_auth()
            };
            (cfg, name)
        }
    };
    let mut config = config;
    alpn.extend(ctx.alpn.protocols().iter().map(|p| p.to_vec()));
    config.alpn_protocols = alpn;
    // no auto SNI on TCP: the name is left for the verifier alone
    if ctx.opaque && settings.sni.is_none() && settings.mode != ClientTlsMode::IstioMutual {
        config.enable_sni = false;
    }
    Ok(Some(OutboundTls {
        config: Arc::new(config),
        server_name: name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mode: ClientTlsMode) -> ClientTlsSettings {
        ClientTlsSettings {
            mode,
            ..Default::default()
        }
    }

    #[test]
    fn validate_table() {
        let p = |x: &str| Some(PathBuf::from(x));
        let cases: Vec<(ClientTlsSettings, Option<&str>)> = vec![
            (s(ClientTlsMode::Disable), None),
            (s(ClientTlsMode::Simple), None),
            (s(ClientTlsMode::IstioMutual), None),
            (
                s(ClientTlsMode::Mutual),
                Some("client certificate required for mutual tls; private key required for mutual tls"),
            ),
            (
                ClientTlsSettings { client_certificate: p("c"), ..s(ClientTlsMode::Mutual) },
                Some("private key required for mutual tls"),
            ),
            (
                ClientTlsSettings { client_certificate: p("c"), private_key: p("k"), ..s(ClientTlsMode::Mutual) },
                None,
            ),
            (
                ClientTlsSettings { credential_name: Some("c".into()), ..s(ClientTlsMode::Mutual) },
                None,
            ),
            (
                ClientTlsSettings { credential_name: Some("c".into()), ca_certificates: p("ca"), ..s(ClientTlsMode::Simple) },
                Some("cannot specify client certificates or CA certificate or CA CRL If credentialName is set"),
            ),
            (
                ClientTlsSettings { insecure_skip_verify: true, ca_certificates: p("ca"), ..s(ClientTlsMode::Simple) },
                Some("cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true"),
            ),
            (
                ClientTlsSettings { insecure_skip_verify: true, subject_alt_names: vec!["a".into()], client_certificate: p("c"), private_key: p("k"), ..s(ClientTlsMode::Mutual) },
                Some("cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true"),
            ),
            (
                ClientTlsSettings { insecure_skip_verify: true, credential_name: Some("c".into()), ..s(ClientTlsMode::Mutual) },
                None,
            ),
        ];
        for (settings, want) in cases {
            let got = settings.validate().err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{settings:?}");
        }
    }

    #[test]
    fn sni_forms() {
        assert_eq!(
            istio_mutual_sni(9080, Some("v1"), "reviews.default.svc.cluster.local"),
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
        );
        assert_eq!(
            istio_mutual_sni(9080, None, "reviews.default.svc.cluster.local"),
            "outbound_.9080_._.reviews.default.svc.cluster.local"
        );
        // rustls accepts both as SNI names
        server_name(&istio_mutual_sni(
            9080,
            None,
            "reviews.default.svc.cluster.local",
        ))
        .unwrap();
        server_name(&istio_mutual_sni(80, Some("v2"), "a.b")).unwrap();
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn dir_credentials() {
        let root = tempfile::tempdir().unwrap();
        let d = DirCredentials::new(root.path());
        assert!(d.lookup("missing").is_err());
        assert!(d.lookup("../etc").is_err());
        assert!(d.lookup("").is_err());
        std::fs::create_dir(root.path().join("a")).unwrap();
        std::fs::write(root.path().join("a/tls.crt"), "C").unwrap();
        std::fs::write(root.path().join("a/key"), "K").unwrap();
        std::fs::create_dir(root.path().join("a-cacert")).unwrap();
        std::fs::write(root.path().join("a-cacert/cacert"), "CA").unwrap();
        let c = d.lookup("a").unwrap();
        assert_eq!(c.cert_chain_pem.as_deref(), Some("C"));
        assert_eq!(c.key_pem.as_deref(), Some("K"));
        assert_eq!(c.ca_pem.as_deref(), Some("CA"));
        let dbg = format!("{c:?}");
        assert!(dbg.contains("redacted") && !dbg.contains("\"K\""), "{dbg}");
        assert_eq!(c.crl_pem, None);
        // a CRL goes with its roots: `crl` beside `cacert` in the -cacert secret; a `ca.crl`
        // there does not pair with `cacert`
        std::fs::write(root.path().join("a-cacert/ca.crl"), "TLS CRL").unwrap();
        assert_eq!(d.lookup("a").unwrap().crl_pem, None);
        std::fs::write(root.path().join("a-cacert/crl"), "CRL").unwrap();
        assert_eq!(d.lookup("a").unwrap().crl_pem.as_deref(), Some("CRL"));
        // roots in the credential itself too: the -cacert credential still decides, as
        // istiod's `GetCaCert` reads it first
        std::fs::write(root.path().join("a/ca.crt"), "OWN CA").unwrap();
        let c = d.lookup("a").unwrap();
        assert_eq!(
            (c.ca_pem.as_deref(), c.crl_pem.as_deref()),
            (Some("CA"), Some("CRL"))
        );
        // without it, the credential's own roots and CRL
        std::fs::remove_dir_all(root.path().join("a-cacert")).unwrap();
        let c = d.lookup("a").unwrap();
        assert_eq!((c.ca_pem.as_deref(), c.crl_pem), (Some("OWN CA"), None));
        std::fs::write(root.path().join("a/ca.crl"), "OWN CRL").unwrap();
        assert_eq!(d.lookup("a").unwrap().crl_pem.as_deref(), Some("OWN CRL"));
        // in one credential `cacert` comes first (`ExtractRoot`), with its own `crl`
        std::fs::write(root.path().join("a/cacert"), "GENERIC CA").unwrap();
        let c = d.lookup("a").unwrap();
        assert_eq!((c.ca_pem.as_deref(), c.crl_pem), (Some("GENERIC CA"), None));
    }

    #[test]
    fn mode_requirements() {
        let dest = Destination {
            host: "example.com",
            port: 443,
            subset: None,
            service_accounts: &[],
        };
        let ctx = ClientContext::default();
        assert!(client_config(&s(ClientTlsMode::Disable), &dest, &ctx)
            .unwrap()
            .is_none());
        let e = client_config(&s(ClientTlsMode::IstioMutual), &dest, &ctx).unwrap_err();
        assert!(e.to_string().contains("ISTIO_MUTUAL"), "{e}");
        let e = client_config(
            &ClientTlsSettings {
                credential_name: Some("x".into()),
                ..s(ClientTlsMode::Simple)
            },
            &dest,
            &ctx,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no credential lookup"), "{e}");
        let e = client_config(
            &ClientTlsSettings {
                ca_crl: Some("crl.pem".into()),
                ..s(ClientTlsMode::Simple)
            },
            &dest,
            &ctx,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("crl.pem"),
            "a caCrl that cannot be read: {e}"
        );
        let e = client_config(
            &ClientTlsSettings {
                ca_crl: Some("crl.pem".into()),
                ..s(ClientTlsMode::IstioMutual)
            },
            &dest,
            &ctx,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("caCrl is not supported with ISTIO_MUTUAL"),
            "{e}"
        );
        let e = client_config(
            &ClientTlsSettings {
                ca_certificates: Some("/nonexistent/ca.pem".into()),
                ..s(ClientTlsMode::Simple)
            },
            &dest,
            &ctx,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e = client_config(
            &ClientTlsSettings {
                client_certificate: Some("/nonexistent/c.pem".into()),
                private_key: Some("/nonexistent/k.pem".into()),
                ca_certificates: None,
                insecure_skip_verify: true,
                ..s(ClientTlsMode::Mutual)
            },
            &dest,
            &ctx,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
    }
}
