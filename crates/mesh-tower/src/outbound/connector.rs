//! [`MeshConnector`]: how the mesh transport's per-endpoint pools (and, as a
//! `tower::Service<Uri>`, a hyper-util client of your own) connect to an endpoint. It dials
//! the endpoint (as a service: the one the URI names, `http://<ip>:<port>`), takes a
//! connection slot from the destination's circuit breaker (`maxConnections`), applies the
//! connect timeout, and originates TLS with the destination's rustls config (built once per destination and
//! policy, never per connection): ISTIO_MUTUAL checks the server's SPIFFE identity inside
//! the handshake. HTTP/2 is used when the server picks `h2` by ALPN, and without TLS when
//! the port is declared HTTP/2 (`HTTP2`/`GRPC`/`GRPC-WEB` or `h2UpgradePolicy: UPGRADE`:
//! h2c with prior knowledge, as Envoy's HTTP/2 cluster); a connection for an HTTP/1.1
//! upgrade (WebSocket) offers `http/1.1` only, so that the upgrade can happen. An endpoint
//! known by name (the original destination of a `resolution: NONE` ServiceEntry, a DNS
//! name not resolved yet) is resolved with the system resolver when connecting.

use mesh_core::model::TcpKeepalive;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use mesh_tls::{OutboundTls, PeerIdentity, VerifyError};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pool::{CircuitBreaker, ConnectionPermit, Overflow};

/// Why a connection could not be made.
///
/// The text is Envoy's transport failure reason, which the mesh puts in its 503 body and
/// in [`UpstreamFailure`](super::UpstreamFailure).
///
/// # Examples
///
/// ```
/// use mesh_tower::outbound::{ConnectError, MeshConnector};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // The connector dials endpoint addresses, not names.
/// let err = MeshConnector::plaintext()
///     .oneshot("http://reviews:9080/".parse()?)
///     .await
///     .unwrap_err();
/// assert!(matches!(err, ConnectError::BadAddress(_)));
///
/// // Nothing listens on this port any more: the TCP connect is refused.
/// let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
/// let err = MeshConnector::plaintext()
///     .oneshot(format!("http://{dead}/").parse()?)
///     .await
///     .unwrap_err();
/// assert!(matches!(err, ConnectError::Tcp(_)));
/// assert!(err.to_string().starts_with("delayed connect error: "), "{err}");
///
/// let timeout = ConnectError::Timeout(std::time::Duration::from_millis(250));
/// assert_eq!(timeout.to_string(), "connect timeout after 250ms");
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `maxConnections` reached (Envoy: 503 UO).
    #[error("{0}")]
    Overflow(Overflow),
    /// The connection (TCP, and the TLS handshake when there is one) was not up within
    /// `connectTimeout`.
    #[error("connect timeout after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed (refused, unreachable).
    #[error("delayed connect error: {}", os_error_text(.0))]
    Tcp(io::Error),
    /// The TLS handshake failed; when the peer's certificate was refused, the
    /// [`VerifyError`] says what was expected and what was presented.
    #[error("TLS_error: {}", match .verify { Some(v) => format!("CERTIFICATE_VERIFY_FAILED: {v}"), None => .io.to_string() })]
    Tls {
        /// The handshake error.
        io: io::Error,
        /// The verification failure, when that was the cause.
        verify: Option<VerifyError>,
    },
    /// The TLS settings of the destination could not be turned into a client config
    /// (fail closed: nothing is sent).
    #[error("TLS configuration error: {0}")]
    TlsConfig(String),
    /// The URI does not name an endpoint address.
    #[error("not an endpoint address: {0}")]
    BadAddress(String),
    /// An endpoint dialed by name (the original destination of a `resolution: NONE`
    /// ServiceEntry, a DNS name not resolved yet) did not resolve to an address.
    #[error("DNS resolution failed for {host}: {error}")]
    Dns {
        /// The name looked up.
        host: String,
        /// Why it failed.
        error: io::Error,
    },
}

/// How a destination's connections are secured.
#[derive(Clone, Debug)]
pub(crate) enum TlsPolicy {
    /// Plaintext to every endpoint.
    Plaintext,
    /// TLS with this config, except to the endpoints listed (auto mTLS: endpoints without a
    /// mesh identity get plaintext, as Istio's auto mTLS does for pods without a sidecar).
    Tls {
        config: Arc<OutboundTls>,
        plaintext: Arc<HashSet<SocketAddr>>,
        /// `config` without `h2` in its ALPN, for connections carrying an HTTP/1.1 upgrade:
        /// built on the first upgrade request (most destinations never see one).
        http1: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
        /// The config of opaque TCP connections: built with the policy for the ports that
        /// may carry them (no auto SNI), else `config` offering no HTTP protocol by ALPN,
        /// built on the first one.
        opaque: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
    },
    /// The TLS settings could not be built: refuse every connection with this message.
    Broken(Arc<str>),
}

/// Connects to mesh endpoints for one destination: dials the endpoint in the URI, takes a
/// `maxConnections` slot, applies the connect timeout and originates TLS with the
/// destination's rustls config (built once), checking the server's SPIFFE identity.
///
/// The [`MeshClient`](super::MeshClient) builds one per destination from its
/// DestinationRule; [`plaintext`](Self::plaintext) gives one for your own hyper-util
/// client (see [`OutboundLayer`](super::OutboundLayer)).
///
/// # Examples
///
/// A `tower::Service<Uri>`, as hyper-util's client wants its connectors:
///
/// ```
/// use hyper_util::client::legacy::connect::Connection;
/// use mesh_tower::outbound::MeshConnector;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
///
/// let conn = MeshConnector::plaintext()
///     .oneshot(format!("http://{addr}/reviews/0").parse()?)
///     .await?;
/// assert!(!conn.connected().is_negotiated_h2());
/// let (_accepted, client_addr) = listener.accept().await?;
/// assert_eq!(client_addr.ip(), addr.ip());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MeshConnector {
    tls: TlsPolicy,
    connect_timeout: Duration,
    breaker: CircuitBreaker,
    /// Plaintext connections speak HTTP/2 with prior knowledge (h2c): the port is declared
    /// HTTP/2 (`HTTP2`, `GRPC`, `GRPC-WEB`, or upgraded by `h2UpgradePolicy`).
    h2c: bool,
    /// Endpoints dialed by name: the placeholder address the balancer and pools know them
    /// by → the name and port to resolve when connecting.
    names: Option<Arc<HashMap<SocketAddr, DialName>>>,
    /// `SO_KEEPALIVE` and its parameters on every connection (`tcpKeepalive`).
    keepalive: Option<socket2::TcpKeepalive>,
}

/// A name to resolve, with the system resolver, each time a connection is made to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DialName {
    pub(crate) host: Arc<str>,
    pub(crate) port: u16,
}

impl fmt::Debug for MeshConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshConnector")
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("h2c", &self.h2c)
            .finish_non_exhaustive()
    }
}

impl MeshConnector {
    pub(crate) fn new(tls: TlsPolicy, connect_timeout: Duration, breaker: CircuitBreaker) -> Self {
        MeshConnector {
            tls,
            connect_timeout,
            breaker,
            h2c: false,
            names: None,
            keepalive: None,
        }
    }

    /// Turns TCP keepalive on for every connection, as Envoy's cluster
    /// `upstream_connection_options.tcp_keepalive` (istiod builds it from the
    /// DestinationRule's and MeshConfig's `tcpKeepalive`): the fields set are applied in
    /// whole seconds (at least 1), the others stay the operating system's.
    pub(crate) fn with_keepalive(mut self, keepalive: Option<&TcpKeepalive>) -> Self {
        self.keepalive = keepalive.map(|k| {
            let secs =
                |d: &mesh_core::model::Duration| Duration::from_secs(d.as_std().as_secs().max(1));
            let mut out = socket2::TcpKeepalive::new();
            if let Some(t) = &k.time {
                out = out.with_time(secs(t));
            }
            if let Some(i) = &k.interval {
                out = out.with_interval(secs(i));
            }
            if let Some(p) = k.probes.filter(|p| *p > 0) {
                out = out.with_retries(p);
            }
            out
        });
        self
    }

    /// Plaintext connections speak HTTP/2 with prior knowledge (Envoy's HTTP/2 cluster
    /// without TLS); an HTTP/1.1 upgrade still gets an HTTP/1.1 connection.
    pub(crate) fn with_h2c(mut self, h2c: bool) -> Self {
        self.h2c = h2c;
        self
    }

    /// The endpoints at these placeholder addresses are dialed by resolving their name.
    pub(crate) fn with_names(mut self, names: HashMap<SocketAddr, DialName>) -> Self {
        self.names = (!names.is_empty()).then(|| Arc::new(names));
        self
    }

    /// A plaintext connector with Envoy's defaults (10 s connect timeout, no limits), e.g.
    /// for the user's own hyper-util client under an [`OutboundLayer`](super::OutboundLayer).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty};
    /// use hyper_util::client::legacy::Client;
    /// use hyper_util::rt::TokioExecutor;
    /// use mesh_tower::outbound::MeshConnector;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let app = axum::Router::new().fallback(|| async { "ratings-v1" });
    /// tokio::spawn(async move { axum::serve(listener, app).await });
    ///
    /// let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(MeshConnector::plaintext());
    /// let resp = client.get(format!("http://{addr}/ratings/0").parse()?).await?;
    /// assert_eq!(resp.status(), 200);
    /// assert_eq!(resp.into_body().collect().await?.to_bytes(), "ratings-v1");
    /// # Ok(()) }
    /// ```
    pub fn plaintext() -> Self {
        MeshConnector::new(
            TlsPolicy::Plaintext,
            Duration::from_secs(10),
            CircuitBreaker::new(Default::default()),
        )
    }
}

fn endpoint_addr(uri: &Uri) -> Result<SocketAddr, ConnectError> {
    let host = uri.host().unwrap_or("");
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(80);
    host.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| ConnectError::BadAddress(uri.to_string()))
}

impl tower::Service<Uri> for MeshConnector {
    type Response = MeshConn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<MeshConn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr = endpoint_addr(&uri)?;
            if let TlsPolicy::Broken(msg) = &this.tls {
                return Err(ConnectError::TlsConfig(msg.to_string()));
            }
            let permit = this
                .breaker
                .try_connection()
                .map_err(ConnectError::Overflow)?;
            this.connect_addr(addr, permit, false).await
        })
    }
}

impl MeshConnector {
    /// Dials `addr` holding `permit` (a `maxConnections` slot), then originates TLS per the
    /// destination's policy; `http1_only`: offer no `h2` (the connection is for an HTTP/1.1
    /// upgrade, which HTTP/2 cannot carry).
    pub(crate) async fn connect_addr(
        &self,
        addr: SocketAddr,
        permit: ConnectionPermit,
        http1_only: bool,
    ) -> Result<MeshConn, ConnectError> {
        let alpn = if http1_only { Alpn::Http1 } else { Alpn::Http };
        self.connect_with(addr, permit, alpn).await
    }

    /// Dials `addr` for an opaque TCP connection (no HTTP): as
    /// [`connect_addr`](Self::connect_addr), offering no ALPN protocol.
    pub(crate) async fn connect_opaque(
        &self,
        addr: SocketAddr,
        permit: ConnectionPermit,
    ) -> Result<MeshConn, ConnectError> {
        self.connect_with(addr, permit, Alpn::None).await
    }

    /// Dials `addr` in plaintext whatever the TLS policy (the bytes carry the
    /// downstream's own TLS: an `AUTO_PASSTHROUGH` gateway).
    pub(crate) async fn connect_raw(
        &self,
        addr: SocketAddr,
        permit: ConnectionPermit,
    ) -> Result<MeshConn, ConnectError> {
        self.connect_with(addr, permit, Alpn::Raw).await
    }

    async fn connect_with(
        &self,
        addr: SocketAddr,
        permit: ConnectionPermit,
        alpn: Alpn,
    ) -> Result<MeshConn, ConnectError> {
        let http1_only = alpn != Alpn::Http;
        if let TlsPolicy::Broken(msg) = &self.tls {
            return Err(ConnectError::TlsConfig(msg.to_string()));
        }
        let name = self.names.as_ref().and_then(|n| n.get(&addr));
        let dial = async {
            match name {
                Some(n) => dial_name(n).await,
                None => TcpStream::connect(addr).await.map_err(ConnectError::Tcp),
            }
        };
        // Envoy's connect timer runs until the transport socket says connected: for TLS,
        // once the handshake is done
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let tcp = match tokio::time::timeout_at(deadline, dial).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ConnectError::Timeout(self.connect_timeout)),
        };
        let remote = name.and_then(|_| tcp.peer_addr().ok());
        let _ = tcp.set_nodelay(true);
        if let Some(k) = &self.keepalive {
            // best effort, as Envoy's socket options: a failure leaves the connection usable
            if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(k) {
                tracing::debug!(%addr, error = %e, "tcpKeepalive not applied");
            }
        }
        match &self.tls {
            TlsPolicy::Tls {
                config,
                plaintext,
                http1,
                opaque,
            } if alpn != Alpn::Raw && !plaintext.contains(&addr) => {
                let derived = match alpn {
                    Alpn::Http => None,
                    Alpn::Http1 => Some(http1.get_or_init(|| without_h2(config.config()))),
                    Alpn::None | Alpn::Raw => {
                        Some(opaque.get_or_init(|| without_alpn(config.config())))
                    }
                };
                let handshake = async {
                    match derived {
                        Some(cfg) => {
                            tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                                .connect(config.server_name().clone(), tcp)
                                .await
                        }
                        None => config.connect(tcp).await,
                    }
                };
                let Ok(tls) = tokio::time::timeout_at(deadline, handshake).await else {
                    return Err(ConnectError::Timeout(self.connect_timeout));
                };
                let tls = tls.map_err(|io| ConnectError::Tls {
                    verify: VerifyError::from_io(&io),
                    io,
                })?;
                let (_, conn) = tls.get_ref();
                let h2 = conn.alpn_protocol() == Some(b"h2");
                let peer = PeerIdentity::of(conn);
                Ok(MeshConn {
                    io: Io::Tls(Box::new(TokioIo::new(tls))),
                    h2,
                    peer,
                    remote,
                    _permit: Some(permit),
                })
            }
            // Istio gives a port declared HTTP/2 an HTTP/2 cluster: without TLS, h2c with
            // prior knowledge (no ALPN to ask the server)
            _ => Ok(MeshConn {
                io: Io::Plain(TokioIo::new(tcp)),
                h2: self.h2c && !http1_only,
                peer: None,
                remote,
                _permit: Some(permit),
            }),
        }
    }
}

/// Resolves `name` with the system resolver and connects to its addresses in the order
/// given, as an application connecting to that name would; the caller bounds the whole by
/// the connect timeout.
async fn dial_name(name: &DialName) -> Result<TcpStream, ConnectError> {
    let dns = |error| ConnectError::Dns {
        host: name.host.to_string(),
        error,
    };
    let addrs = tokio::net::lookup_host((&*name.host, name.port))
        .await
        .map_err(dns)?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => ConnectError::Tcp(e),
        None => dns(io::Error::new(io::ErrorKind::NotFound, "no address")),
    })
}

/// `config` offering no `h2` by ALPN (the same config when it offers none): the same
/// verifier, client certificate and session cache, so the SPIFFE identity is checked as
/// for every other connection.
fn without_h2(config: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    if !config.alpn_protocols.iter().any(|p| p == b"h2") {
        return Arc::clone(config);
    }
    let mut c = (**config).clone();
    c.alpn_protocols.retain(|p| p != b"h2");
    Arc::new(c)
}

/// `config` offering no HTTP protocol by ALPN (an opaque TCP connection carries no HTTP),
/// with the same verifier, client certificate and session cache. Istio's mTLS values
/// (`istio-peer-exchange`, `istio`) stay: istiod's TCP clusters offer them under
/// ISTIO_MUTUAL, and a PERMISSIVE server takes a TLS connection without them for the
/// application's own TLS.
fn without_alpn(config: &Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let http = |p: &Vec<u8>| matches!(p.as_slice(), b"h2" | b"http/1.1" | b"http/1.0");
    if !config.alpn_protocols.iter().any(http) {
        return Arc::clone(config);
    }
    let mut c = (**config).clone();
    c.alpn_protocols.retain(|p| !http(p));
    Arc::new(c)
}

/// What a connection offers by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alpn {
    /// The destination's protocols (`h2` and `http/1.1` as configured).
    Http,
    /// HTTP/1.1 only (an upgrade).
    Http1,
    /// None (opaque TCP).
    None,
    /// Opaque TCP with no TLS of ours: the bytes carry the downstream's.
    Raw,
}

enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

/// A connection to an endpoint (plaintext or TLS), holding its `maxConnections` slot.
///
/// It is hyper I/O (`hyper::rt::Read` and `Write`) and reports, as a hyper-util
/// `Connection`, whether the server chose HTTP/2 and, for mTLS, the server's verified
/// [`PeerIdentity`] (in the `Connected` extras).
///
/// # Examples
///
/// One HTTP/1.1 exchange by hand over a connection from the [`MeshConnector`]:
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Empty};
/// use mesh_tower::outbound::{MeshConn, MeshConnector};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// let app = axum::Router::new().fallback(|| async { "details-v1" });
/// tokio::spawn(async move { axum::serve(listener, app).await });
///
/// let conn: MeshConn = MeshConnector::plaintext().oneshot(format!("http://{addr}/").parse()?).await?;
/// assert!(format!("{conn:?}").contains("tls: false"), "{conn:?}");
/// let (mut sender, connection) = hyper::client::conn::http1::handshake(conn).await?;
/// tokio::spawn(connection);
/// let req = http::Request::get("/details/0")
///     .header("host", "details:9080")
///     .body(Empty::<Bytes>::new())?;
/// let resp = sender.send_request(req).await?;
/// assert_eq!(resp.into_body().collect().await?.to_bytes(), "details-v1");
/// # Ok(()) }
/// ```
pub struct MeshConn {
    io: Io,
    h2: bool,
    peer: Option<PeerIdentity>,
    /// Dialed by name: the address reached.
    remote: Option<SocketAddr>,
    _permit: Option<ConnectionPermit>,
}

impl fmt::Debug for MeshConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshConn")
            .field("tls", &matches!(self.io, Io::Tls(_)))
            .field("h2", &self.h2)
            .field("peer", &self.peer)
            .finish()
    }
}

impl MeshConn {
    /// True when the connection speaks HTTP/2: the server chose `h2` by ALPN, or the port
    /// is declared HTTP/2 (plaintext: prior knowledge).
    pub(crate) fn is_h2(&self) -> bool {
        self.h2
    }

    /// The identity in the certificate the server presented (TLS with a SPIFFE identity).
    pub(crate) fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The address reached, for an endpoint dialed by name (`None` otherwise: the
    /// endpoint's address is the one reached).
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// The TCP connection underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s.inner(),
            Io::Tls(s) => s.inner().get_ref().0,
        }
    }

    /// The connection as tokio I/O (for an opaque TCP connection), with the server's
    /// identity; the `maxConnections` slot stays held until the I/O is dropped.
    pub(crate) fn into_tokio(self) -> (TokioIo<MeshConn>, Option<PeerIdentity>) {
        let peer = self.peer.clone();
        (TokioIo::new(self), peer)
    }
}

impl Connection for MeshConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        let c = if self.h2 { c.negotiated_h2() } else { c };
        match &self.peer {
            // The server's verified identity reaches the response extensions.
            Some(p) => c.extra(p.clone()),
            None => c,
        }
    }
}

impl Read for MeshConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl Write for MeshConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The system's text for an OS error, as Envoy's `errorDetails` gives it (`strerror`:
/// `Connection refused`, since Envoy 1.31), without Rust's ` (os error N)`.
fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses() {
        let cases = [
            ("http://127.0.0.1:9080/x", Some("127.0.0.1:9080")),
            ("http://[::1]:80/", Some("[::1]:80")),
            ("http://10.0.0.1/", Some("10.0.0.1:80")),
            ("http://reviews:9080/", None),
        ];
        for (uri, want) in cases {
            let got = endpoint_addr(&uri.parse().unwrap())
                .ok()
                .map(|a| a.to_string());
            assert_eq!(got.as_deref(), want, "{uri}");
        }
    }

    #[test]
    fn connect_error_texts() {
        let refused = ConnectError::Tcp(io::Error::from_raw_os_error(111));
        assert_eq!(
            refused.to_string(),
            "delayed connect error: Connection refused"
        );
        let t = ConnectError::Timeout(Duration::from_secs(1));
        assert_eq!(t.to_string(), "connect timeout after 1s");
    }
}
