//! Inbound: PeerAuthentication modes on an accepted TCP connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::creds::WorkloadCredentials;
use crate::error::TlsError;
use crate::peer::PeerIdentity;
use crate::verify::PeerPolicy;

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
///
/// # Examples
///
/// A ClientHello starts with it:
///
/// ```
/// use std::sync::Arc;
/// use mesh_tls::rustls::{ClientConfig, ClientConnection, RootCertStore};
/// use mesh_tls::TLS_HANDSHAKE_RECORD;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClientConfig::builder_with_provider(mesh_tls::provider())
///     .with_safe_default_protocol_versions()?
///     .with_root_certificates(RootCertStore::empty())
///     .with_no_client_auth();
/// let mut conn = ClientConnection::new(Arc::new(config), "httpbin.example.com".try_into()?)?;
/// let mut hello = Vec::new();
/// conn.write_tls(&mut hello)?;
/// assert_eq!(hello[0], TLS_HANDSHAKE_RECORD);
/// # Ok(()) }
/// ```
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// PeerAuthentication mTLS mode of a workload port (UNSET resolved by the caller: at the
/// top it means PERMISSIVE).
///
/// # Examples
///
/// ```
/// use mesh_tls::{InboundTls, PeerAuthnMode};
///
/// assert_eq!(PeerAuthnMode::default(), PeerAuthnMode::Permissive);
/// // DISABLE needs no certificate; STRICT and PERMISSIVE do.
/// assert!(InboundTls::new(PeerAuthnMode::Disable, None).is_ok());
/// assert!(InboundTls::new(PeerAuthnMode::Strict, None).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PeerAuthnMode {
    /// mTLS required; a plaintext client's connection is dropped (it sees a reset).
    Strict,
    /// mTLS or plaintext on the same port, told apart by the first byte.
    #[default]
    Permissive,
    /// Plaintext only: the connection is not tunneled.
    Disable,
}

/// A server-side connection, TLS or plain. Implements `AsyncRead` + `AsyncWrite`, so one
/// server stack serves both sides of PERMISSIVE.
///
/// # Examples
///
/// A plaintext client on a PERMISSIVE port (over loopback):
///
/// ```
/// use std::time::Duration;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use mesh_tls::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "httpbin")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
/// let inbound = InboundTls::from_credentials(PeerAuthnMode::Permissive, &creds, None)?;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let mut client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// client.write_all(b"ping").await?;
///
/// let (tcp, _) = listener.accept().await?;
/// let Accepted { mut stream, peer } = inbound.accept(tcp).await?;
/// assert!(!stream.is_tls());
/// assert!(matches!(stream, MeshStream::Plain(_)));
/// assert_eq!(stream.alpn_protocol(), None);
/// assert!(peer.is_none());
/// let mut buf = [0u8; 4];
/// stream.read_exact(&mut buf).await?; // nothing was consumed by the sniffing
/// assert_eq!(&buf, b"ping");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum MeshStream {
    /// Plaintext (DISABLE, or PERMISSIVE with a plaintext client).
    Plain(TcpStream),
    /// Terminated mTLS.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl MeshStream {
    /// Whether the connection is TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::{TcpListener, TcpStream};
    /// use mesh_tls::{InboundTls, PeerAuthnMode};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let _client = TcpStream::connect(listener.local_addr()?).await?;
    /// let (tcp, _) = listener.accept().await?;
    /// // DISABLE: plaintext, whatever the client sends.
    /// let accepted = InboundTls::new(PeerAuthnMode::Disable, None)?.accept(tcp).await?;
    /// assert!(!accepted.stream.is_tls());
    /// # Ok(()) }
    /// ```
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The negotiated ALPN protocol, if TLS negotiated one.
    ///
    /// # Examples
    ///
    /// An HTTP/1.1-only mesh client on a STRICT port (over loopback):
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let ttl = Duration::from_secs(3600);
    /// # let server = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "httpbin")?, ttl, &[])?)?;
    /// # let client = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?)?;
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
    /// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
    /// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
    /// let ctx = ClientContext { workload: Some(&client), alpn: Alpn::Http1, ..Default::default() };
    /// let outbound = client_config(&settings, &dest, &ctx)?.unwrap();
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let client_side = tokio::spawn(async move {
    ///     outbound.connect(tokio::net::TcpStream::connect(addr).await?).await
    /// });
    /// let (tcp, _) = listener.accept().await?;
    /// let accepted = inbound.accept(tcp).await?;
    /// assert_eq!(accepted.stream.alpn_protocol(), Some(&b"http/1.1"[..]));
    /// client_side.await??;
    /// # Ok(()) }
    /// ```
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(t) => t.get_ref().1.alpn_protocol(),
        }
    }

    /// The TLS server name (SNI) the client sent in its ClientHello, if TLS and if it sent
    /// one: what AuthorizationPolicy's `connection.sni` matches (Envoy's RBAC
    /// `requested_server_name`). Mesh clients send `outbound_.<port>_.<subset>_.<host>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::*;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let ttl = Duration::from_secs(3600);
    /// # let server = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "httpbin")?, ttl, &[])?)?;
    /// # let client = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?)?;
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
    /// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
    /// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
    /// let ctx = ClientContext { workload: Some(&client), ..Default::default() };
    /// let outbound = client_config(&settings, &dest, &ctx)?.unwrap();
    ///
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let client_side = tokio::spawn(async move {
    ///     outbound.connect(tokio::net::TcpStream::connect(addr).await?).await
    /// });
    /// let (tcp, _) = listener.accept().await?;
    /// let accepted = inbound.accept(tcp).await?;
    /// assert_eq!(
    ///     accepted.stream.server_name(),
    ///     Some("outbound_.8000_._.httpbin.default.svc.cluster.local")
    /// );
    /// client_side.await??;
    ///
    /// // plaintext: no SNI
    /// let _plain = tokio::net::TcpStream::connect(addr).await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let accepted = InboundTls::new(PeerAuthnMode::Disable, None)?.accept(tcp).await?;
    /// assert_eq!(accepted.stream.server_name(), None);
    /// # Ok(()) }
    /// ```
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(t) => t.get_ref().1.server_name(),
        }
    }

    /// The TCP stream underneath.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::{TcpListener, TcpStream};
    /// use mesh_tls::{InboundTls, PeerAuthnMode};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let client = TcpStream::connect(listener.local_addr()?).await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let accepted = InboundTls::new(PeerAuthnMode::Disable, None)?.accept(tcp).await?;
    /// assert_eq!(accepted.stream.tcp().peer_addr()?, client.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(t) => t,
            Self::Tls(t) => t.get_ref().0,
        }
    }
}

impl AsyncRead for MeshStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MeshStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// An accepted connection and who is on the other end.
///
/// # Examples
///
/// A mesh client on a STRICT port (over loopback): the stream is TLS and the peer is the
/// client's SPIFFE identity, ready for the request extensions.
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let ttl = Duration::from_secs(3600);
/// let server = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "httpbin")?, ttl, &[])?)?;
/// let client = WorkloadCredentials::new(ca.issue(&Identity::new("cluster.local", "default", "sleep")?, ttl, &[])?)?;
/// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &server, None)?;
///
/// let settings = ClientTlsSettings { mode: ClientTlsMode::IstioMutual, ..Default::default() };
/// let dest = Destination { host: "httpbin.default.svc.cluster.local", port: 8000, subset: None, service_accounts: &[] };
/// let ctx = ClientContext { workload: Some(&client), ..Default::default() };
/// let outbound = client_config(&settings, &dest, &ctx)?.unwrap();
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let client_side = tokio::spawn(async move {
///     outbound.connect(tokio::net::TcpStream::connect(addr).await?).await
/// });
///
/// let (tcp, _) = listener.accept().await?;
/// let accepted = inbound.accept(tcp).await?;
/// assert!(accepted.stream.is_tls());
/// assert_eq!(accepted.stream.alpn_protocol(), Some(&b"h2"[..]));
/// assert_eq!(accepted.peer.unwrap().principal(), "cluster.local/ns/default/sa/sleep");
/// client_side.await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Accepted {
    /// The stream to serve.
    pub stream: MeshStream,
    /// The peer's SPIFFE identity (mTLS), or `None` (plaintext).
    pub peer: Option<PeerIdentity>,
}

/// Tells a TLS ClientHello from plaintext by the first byte (`0x16`, a handshake record),
/// without consuming it. An empty connection (EOF before any byte) is plaintext.
///
/// # Examples
///
/// ```
/// use tokio::io::AsyncWriteExt;
/// use tokio::net::{TcpListener, TcpStream};
/// use mesh_tls::{sniff_tls, TLS_HANDSHAKE_RECORD};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
///
/// let mut tls_client = TcpStream::connect(addr).await?;
/// tls_client.write_all(&[TLS_HANDSHAKE_RECORD, 0x03, 0x01]).await?;
/// let (tcp, _) = listener.accept().await?;
/// assert!(sniff_tls(&tcp).await?);
///
/// let mut http_client = TcpStream::connect(addr).await?;
/// http_client.write_all(b"GET / HTTP/1.1\r\n").await?;
/// let (tcp, _) = listener.accept().await?;
/// assert!(!sniff_tls(&tcp).await?);
/// # Ok(()) }
/// ```
pub async fn sniff_tls(tcp: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok(n == 1 && first[0] == TLS_HANDSHAKE_RECORD)
}

/// Accepts connections per a PeerAuthentication mode.
///
/// Build one per (workload, port, mode) and share it; the rustls config inside is built
/// once and follows certificate renewals.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, PeerPolicy, WorkloadCredentials};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ca = MeshCa::self_signed("cluster.local")?;
/// let id = Identity::new("cluster.local", "default", "httpbin")?;
/// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
///
/// // STRICT, accepting only clients from the `default` namespace's `sleep` account.
/// let sleep = Identity::new("cluster.local", "default", "sleep")?;
/// let strict = InboundTls::from_credentials(
///     PeerAuthnMode::Strict,
///     &creds,
///     Some(PeerPolicy::trust_domain("cluster.local").allow_only([sleep])),
/// )?
/// .with_handshake_timeout(Some(Duration::from_secs(5)));
/// assert_eq!(strict.mode(), PeerAuthnMode::Strict);
/// assert!(strict.tls_acceptor().is_some());
///
/// // DISABLE never terminates TLS.
/// let plain = InboundTls::from_credentials(PeerAuthnMode::Disable, &creds, None)?;
/// assert!(plain.tls_acceptor().is_none());
/// # Ok(()) }
/// ```
///
/// Accepting connections: see [`Accepted`] (mTLS) and [`MeshStream`] (plaintext under
/// PERMISSIVE).
#[derive(Clone)]
pub struct InboundTls {
    mode: PeerAuthnMode,
    acceptor: Option<TlsAcceptor>,
    detection_timeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
}

impl std::fmt::Debug for InboundTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundTls")
            .field("mode", &self.mode)
            .field("detection_timeout", &self.detection_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl InboundTls {
    /// From a server config (required for STRICT and PERMISSIVE; ignored for DISABLE).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    ///
    /// let strict = InboundTls::new(PeerAuthnMode::Strict, Some(creds.server_config(None)?))?;
    /// assert!(strict.tls_acceptor().is_some());
    /// let err = InboundTls::new(PeerAuthnMode::Permissive, None).unwrap_err();
    /// assert!(err.to_string().contains("needs a TLS server config"));
    /// # Ok(()) }
    /// ```
    pub fn new(mode: PeerAuthnMode, config: Option<Arc<ServerConfig>>) -> Result<Self, TlsError> {
        let acceptor = match (mode, config) {
            (PeerAuthnMode::Disable, _) => None,
            (_, Some(cfg)) => Some(TlsAcceptor::from(cfg)),
            (m, None) => {
                return Err(TlsError::Config(format!(
                    "PeerAuthentication {m:?} needs a TLS server config (workload credentials)"
                )))
            }
        };
        Ok(Self {
            mode,
            acceptor,
            detection_timeout: None,
            handshake_timeout: Some(Duration::from_secs(10)),
        })
    }

    /// From workload credentials, accepting clients per `policy` (default: the workload's
    /// trust domains).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials, SERVER_ALPN};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    ///
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Permissive, &creds, None)?;
    /// let config = inbound.tls_acceptor().unwrap().config();
    /// assert_eq!(config.alpn_protocols.len(), SERVER_ALPN.len());
    /// # Ok(()) }
    /// ```
    pub fn from_credentials(
        mode: PeerAuthnMode,
        creds: &WorkloadCredentials,
        policy: Option<PeerPolicy>,
    ) -> Result<Self, TlsError> {
        let cfg = match mode {
            PeerAuthnMode::Disable => None,
            _ => Some(creds.server_config(policy)?),
        };
        Self::new(mode, cfg)
    }

    /// PERMISSIVE: if the client sends nothing for this long, treat the connection as
    /// plaintext (server-first protocols). Default: wait (Istio's
    /// `protocolDetectionTimeout` default is off).
    ///
    /// # Examples
    ///
    /// A server-first client that never writes is treated as plaintext after the timeout:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::net::{TcpListener, TcpStream};
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let id = Identity::new("cluster.local", "default", "mysql")?;
    /// # let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Permissive, &creds, None)?
    ///     .with_detection_timeout(Some(Duration::from_millis(50)));
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let _silent = TcpStream::connect(listener.local_addr()?).await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let accepted = inbound.accept(tcp).await?;
    /// assert!(!accepted.stream.is_tls());
    /// assert!(accepted.peer.is_none());
    /// # Ok(()) }
    /// ```
    pub fn with_detection_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.detection_timeout = timeout;
        self
    }

    /// Bound on the TLS handshake (default 10 s); `None` waits forever.
    ///
    /// # Examples
    ///
    /// A STRICT port drops a client that sends no ClientHello in time:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::net::{TcpListener, TcpStream};
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// # let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &creds, None)?
    ///     .with_handshake_timeout(Some(Duration::from_millis(50)));
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let _silent = TcpStream::connect(listener.local_addr()?).await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let err = inbound.accept(tcp).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    /// # Ok(()) }
    /// ```
    pub fn with_handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The TLS acceptor (STRICT, PERMISSIVE), for accepting over another transport than
    /// a `TcpStream` (then read the peer with [`PeerIdentity::of`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ca = MeshCa::self_signed("cluster.local")?;
    /// let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let strict = InboundTls::from_credentials(PeerAuthnMode::Strict, &creds, None)?;
    /// // Every mesh connection is a full handshake: no session tickets.
    /// assert_eq!(strict.tls_acceptor().unwrap().config().send_tls13_tickets, 0);
    /// assert!(InboundTls::new(PeerAuthnMode::Disable, None)?.tls_acceptor().is_none());
    /// # Ok(()) }
    /// ```
    pub fn tls_acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// The mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::{InboundTls, PeerAuthnMode};
    ///
    /// # fn main() -> Result<(), mesh_tls::TlsError> {
    /// assert_eq!(InboundTls::new(PeerAuthnMode::Disable, None)?.mode(), PeerAuthnMode::Disable);
    /// # Ok(()) }
    /// ```
    pub fn mode(&self) -> PeerAuthnMode {
        self.mode
    }

    /// Accepts one connection: STRICT resets a connection whose first byte is not a TLS
    /// handshake record and otherwise requires mTLS, PERMISSIVE sniffs the first byte
    /// (plaintext passes through, TLS must be mTLS), DISABLE passes through.
    /// A failed handshake returns the error; [`crate::VerifyError::from_io`] tells why.
    ///
    /// # Examples
    ///
    /// A plaintext client on a STRICT port is reset:
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::io::AsyncWriteExt;
    /// use tokio::net::{TcpListener, TcpStream};
    /// use mesh_tls::{Identity, InboundTls, MeshCa, PeerAuthnMode, WorkloadCredentials};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = MeshCa::self_signed("cluster.local")?;
    /// # let id = Identity::new("cluster.local", "default", "httpbin")?;
    /// # let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    /// let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, &creds, None)?;
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let mut client = TcpStream::connect(listener.local_addr()?).await?;
    /// client.write_all(b"GET / HTTP/1.1\r\nHost: httpbin\r\n\r\n").await?;
    ///
    /// let (tcp, _) = listener.accept().await?;
    /// let err = inbound.accept(tcp).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    /// # Ok(()) }
    /// ```
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let acceptor = match (&self.acceptor, self.mode) {
            (_, PeerAuthnMode::Disable) | (None, _) => {
                return Ok(Accepted {
                    stream: MeshStream::Plain(tcp),
                    peer: None,
                })
            }
            (Some(a), _) => a,
        };
        match self.mode {
            PeerAuthnMode::Permissive => {
                let is_tls = match self.detection_timeout {
                    Some(t) => tokio::time::timeout(t, sniff_tls(&tcp))
                        .await
                        .unwrap_or(Ok(false))?,
                    None => sniff_tls(&tcp).await?,
                };
                if !is_tls {
                    return Ok(Accepted {
                        stream: MeshStream::Plain(tcp),
                        peer: None,
                    });
                }
            }
            PeerAuthnMode::Strict => {
                let sniff = sniff_tls(&tcp);
                let is_tls = match self.handshake_timeout {
                    Some(t) => tokio::time::timeout(t, sniff).await.map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "no TLS ClientHello in time")
                    })??,
                    None => sniff.await?,
                };
                if !is_tls {
                    // Like Istio's sidecar (no filter chain matches plaintext under STRICT):
                    // reset the connection, without answering anything, not even a TLS alert.
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "plaintext connection reset: PeerAuthentication STRICT requires mTLS",
                    ));
                }
            }
            PeerAuthnMode::Disable => {}
        }
        let handshake = acceptor.accept(tcp);
        let tls = match self.handshake_timeout {
            Some(t) => tokio::time::timeout(t, handshake).await.map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??,
            None => handshake.await?,
        };
        let peer = PeerIdentity::of(tls.get_ref().1);
        if peer.is_none() {
            // The verifier guarantees a SPIFFE identity; fail closed if it is somehow absent.
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "mTLS peer without a SPIFFE identity",
            ));
        }
        Ok(Accepted {
            stream: MeshStream::Tls(Box::new(tls)),
            peer,
        })
    }
}
