//! mesh-tls: a mesh CA, SPIFFE workload identity and mutual TLS over rustls.
//!
//! Everything Istio does with certificates inside a sidecar, as a library:
//!
//! - [`Identity`]: `spiffe://<td>/ns/<ns>/sa/<sa>`, strict parse/print round trip, and
//!   [`Identity::principal`] (`<td>/ns/<ns>/sa/<sa>`, what AuthorizationPolicy compares).
//! - [`MeshCa`]: a self-signed root for a trust domain, or a plugged-in CA from Istio's
//!   `cacerts` files; [`MeshCa::issue`] returns a [`WorkloadCert`] (chain, key, roots,
//!   validity) written and read with Istio's file names (`cert-chain.pem`, `key.pem`,
//!   `root-cert.pem`).
//! - [`TrustBundle`]: the roots peers must chain to (several allowed).
//! - [`WorkloadCredentials`]: the workload's current certificate behind an atomic pointer;
//!   [`CertManager`] renews it at half its life from a [`CertificateSource`] ([`CaSource`]
//!   for the in-process CA).
//! - Inbound: [`InboundTls`] accepts a `TcpStream` per PeerAuthentication mode
//!   ([`PeerAuthnMode`]: STRICT, PERMISSIVE by sniffing the first byte, DISABLE) and
//!   returns an [`Accepted`]: a [`MeshStream`] (TLS or plain, `AsyncRead + AsyncWrite`) and
//!   the client's [`PeerIdentity`] for the request extensions.
//! - Outbound: [`client_config`] turns DestinationRule TLS settings
//!   ([`ClientTlsSettings`]: DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL with `clientCertificate`,
//!   `privateKey`, `caCertificates`, `sni`, `subjectAltNames`, `credentialName` through a
//!   [`CredentialLookup`]) into an [`OutboundTls`] (config + SNI).
//! - Verification happens inside the handshake ([`MeshClientCertVerifier`],
//!   [`MeshServerCertVerifier`]): the chain to the trust bundle, then the SPIFFE ID
//!   ([`PeerPolicy`]). A failure is a [`VerifyError`] naming what was expected and what was
//!   presented: expired, not yet valid, unknown issuer, wrong trust domain, identity not
//!   allowed, no client certificate.
//!
//! Every rustls config here is built with the aws-lc-rs provider passed explicitly
//! ([`provider`]), so nothing depends on a process-wide default provider. Configs are built
//! once (per workload policy / per destination) and follow certificate renewals through
//! rustls's certificate resolvers: never build one per connection.
//!
//! # Using it from a server and a client stack
//!
//! Inbound, per workload port: build an [`InboundTls`] once
//! ([`InboundTls::from_credentials`] with the resolved PeerAuthentication mode), call
//! [`InboundTls::accept`] on each accepted `TcpStream`, serve [`Accepted::stream`] (HTTP/2
//! when [`MeshStream::alpn_protocol`] is `h2`), and insert a clone of [`Accepted::peer`]
//! into every request's extensions. A handshake error means the connection is dropped (the
//! client sees a reset); [`VerifyError::from_io`] says why, for the log.
//!
//! Outbound, per destination (host, port, subset) and snapshot: [`client_config`] once,
//! then [`OutboundTls::connect`] per new connection. DISABLE gives `None`: plaintext.
//!
//! # Where we differ from Istio, on purpose
//!
//! - PERMISSIVE terminates every TLS connection as mTLS (client certificate required):
//!   Istio's sidecar passes TLS without its `istio*` ALPN through to the application, but
//!   here the application is in the same process and has no TLS of its own.
//! - Mesh connections never resume TLS sessions: each is a full handshake, so the peer's
//!   certificate is checked against the current bundle and policy every time.
//! - A verification failure is sent to the peer as a `bad_certificate` alert (rustls's
//!   alert for verifier-specific errors); the detail stays on the side that refused.
//! - A chain whose issuer has a trusted root's name but not its key (two meshes'
//!   self-signed roots for the same trust domain) is reported as an unknown issuer.
//! - A certificate with more than one SPIFFE URI SAN is refused (an X.509 SVID has one).
//! - `caCrl` (and a credential's `ca.crl`) is checked on SIMPLE and MUTUAL origination
//!   over the server's whole chain, as Envoy does; with ISTIO_MUTUAL it is refused rather
//!   than ignored (the mesh's own roots carry no CRL); renewal has no jitter; the server sends no
//!   certificate-authority hints (the bundle may change under a built config).
//! - Trust domains must be lower case (the SPIFFE rule), identity parts non-empty.
//!
//! # Example: STRICT server and ISTIO_MUTUAL client, both ours
//!
//! ```
//! use std::sync::Arc;
//! use mesh_tls::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = Arc::new(MeshCa::self_signed("cluster.local")?);
//! let server_id = Identity::new("cluster.local", "default", "httpbin")?;
//! let client_id = Identity::new("cluster.local", "default", "sleep")?;
//! let server = CertManager::start(server_id.clone(), Arc::new(CaSource::new(ca.clone())), RotationOptions::default()).await?;
//! let client = CertManager::start(client_id.clone(), Arc::new(CaSource::new(ca)), RotationOptions::default()).await?;
//!
//! let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, server.credentials(), None)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let accept = tokio::spawn(async move {
//!     let (tcp, _) = listener.accept().await.unwrap();
//!     inbound.accept(tcp).await.unwrap().peer
//! });
//!
//! let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
//! let dest = Destination {
//!     host: "httpbin.default.svc.cluster.local",
//!     port: 8000,
//!     subset: None,
//!     service_accounts: std::slice::from_ref(&server_id),
//! };
//! let ctx = ClientContext { workload: Some(client.credentials()), ..Default::default() };
//! let outbound = client_config(&settings, &dest, &ctx)?.expect("not DISABLE");
//! let tls = outbound.connect(tokio::net::TcpStream::connect(addr).await?).await?;
//! assert_eq!(PeerIdentity::of(tls.get_ref().1).unwrap().identity(), &server_id);
//! let peer = accept.await?.expect("mTLS peer");
//! assert_eq!(peer.principal(), "cluster.local/ns/default/sa/sleep");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

use std::sync::{Arc, OnceLock};

mod bundle;
mod ca;
mod client;
mod creds;
mod error;
mod identity;
mod peer;
mod pki;
mod server;
mod verify;

pub use bundle::TrustBundle;
pub use ca::{
    files, CertRequest, MeshCa, WorkloadCert, CLOCK_SKEW_GRACE, DEFAULT_ROOT_TTL,
    DEFAULT_WORKLOAD_TTL, MAX_WORKLOAD_TTL,
};
pub use client::{
    client_config, istio_mutual_sni, Alpn, ClientContext, ClientTlsMode, ClientTlsSettings,
    Credential, CredentialLookup, Destination, DirCredentials, OutboundTls,
};
pub use creds::{
    BoxFuture, CaSource, CertManager, CertificateSource, RotationOptions, WorkloadCredentials,
    SERVER_ALPN,
};
pub use error::{TlsError, VerifyError};
pub use identity::{Identity, IdentityError, DEFAULT_TRUST_DOMAIN, SPIFFE_PREFIX};
pub use peer::PeerIdentity;
pub use pki::{certs_from_pem, crls_from_pem, key_from_pem};
pub use server::{
    sniff_tls, Accepted, InboundTls, MeshStream, PeerAuthnMode, TLS_HANDSHAKE_RECORD,
};
pub use verify::{
    CaKeyUsageChecked, MeshClientCertVerifier, MeshServerCertVerifier, PeerPolicy, ServerCheck,
};

/// The rustls this crate builds on (re-exported so users name the same version).
pub use rustls;
/// The tokio-rustls this crate builds on.
pub use tokio_rustls;

/// The crypto provider every config of this crate uses: aws-lc-rs, passed explicitly (a
/// process with both ring and aws-lc-rs compiled in has no usable default).
///
/// # Examples
///
/// A rustls config of your own, on the same provider as the mesh's:
///
/// ```
/// use std::sync::Arc;
/// use mesh_tls::rustls::{ClientConfig, RootCertStore};
///
/// # fn main() -> Result<(), mesh_tls::rustls::Error> {
/// let config = ClientConfig::builder_with_provider(mesh_tls::provider())
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(RootCertStore::empty())
///     .with_no_client_auth();
/// assert!(Arc::ptr_eq(config.crypto_provider(), &mesh_tls::provider()));
/// # Ok(()) }
/// ```
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
