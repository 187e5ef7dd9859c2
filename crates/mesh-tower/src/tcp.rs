//! Opaque TCP through the mesh: databases, caches, any protocol that is not HTTP.
//!
//! Istio carries such traffic with Envoy's TCP proxy: the client's sidecar routes the
//! connection by the VirtualService `tcp` routes (or the service's default route), picks an
//! endpoint by the DestinationRule's load balancer, and originates mutual TLS to it; the
//! server's sidecar accepts it under the PeerAuthentication mode, authorizes it with the
//! AuthorizationPolicies' network-level rules, and counts it in the `istio_tcp_*` metrics.
//! The same, in process:
//!
//! - [`MeshClient::connect`](crate::outbound::MeshClient::connect) opens a connection to
//!   `host:port` as the client's sidecar would (routing, subsets, load balancing, outlier
//!   detection, `maxConnections`, `connectTimeout`, auto mTLS / ISTIO_MUTUAL / SIMPLE /
//!   MUTUAL origination with the SPIFFE identity checked) and returns a [`MeshTcpStream`];
//! - [`MeshServer::serve_tcp`](crate::inbound::MeshServer::serve_tcp) accepts connections
//!   as the server's sidecar would and hands the allowed ones to your handler as
//!   [`MeshTcpStream`]s.
//!
//! Both sides count `istio_tcp_connections_opened_total`,
//! `istio_tcp_connections_closed_total`, `istio_tcp_received_bytes_total` (client to server)
//! and `istio_tcp_sent_bytes_total` (server to client), with `request_protocol="tcp"`.
//!
//! # Examples
//!
//! A TCP echo service (Istio's `tcp-echo` sample) that only `sleep` may call, and a client
//! connecting to it by its short name:
//!
//! ```
//! use std::time::Duration;
//! use mesh_core::mesh::Mesh;
//! use mesh_core::registry::Workload;
//! use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
//! use mesh_tower::inbound::MeshServer;
//! use mesh_tower::outbound::{ClientWorkload, MeshClient};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let ca = MeshCa::self_signed("cluster.local")?;
//! let creds = |sa: &str| {
//!     let id = Identity::new("cluster.local", "foo", sa).unwrap();
//!     WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
//! };
//! let mesh = Mesh::from_yaml(r#"
//! apiVersion: v1
//! kind: Service
//! metadata: {name: tcp-echo, namespace: foo}
//! spec:
//!   selector: {app: tcp-echo}
//!   ports: [{name: tcp, port: 9000}]
//! ---
//! apiVersion: security.istio.io/v1
//! kind: AuthorizationPolicy
//! metadata: {name: tcp-echo, namespace: foo}
//! spec:
//!   selector: {matchLabels: {app: tcp-echo}}
//!   action: ALLOW
//!   rules:
//!   - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
//!     to: [{operation: {ports: ["9000"]}}]
//! "#)?;
//! let labels = [("app".to_string(), "tcp-echo".to_string())].into();
//! let server = MeshServer::builder(mesh.clone(), "foo", "tcp-echo", labels, creds("tcp-echo"))
//!     .port(9000)
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     server.serve_tcp(listener, |mut conn| async move {
//!         let (mut r, mut w) = tokio::io::split(&mut conn);
//!         let _ = tokio::io::copy(&mut r, &mut w).await;
//!     }).await
//! });
//! mesh.register(Workload {
//!     name: "tcp-echo".to_string(),
//!     namespace: "foo".to_string(),
//!     service_account: "tcp-echo".to_string(),
//!     labels: [("app".to_string(), "tcp-echo".to_string())].into(),
//!     address: addr.ip(),
//!     ports: [("tcp".to_string(), addr.port())].into(),
//!     locality: None,
//!     weight: 0,
//! });
//!
//! let sleep = MeshClient::builder(mesh.clone(), ClientWorkload::new("sleep", "foo", "sleep"))
//!     .credentials(creds("sleep"))
//!     .build();
//! let mut conn = sleep.connect("tcp-echo:9000").await?;
//! assert_eq!(conn.peer().map(|p| p.identity().service_account()), Some("tcp-echo"));
//! conn.write_all(b"hello").await?;
//! let mut echo = [0u8; 5];
//! conn.read_exact(&mut echo).await?;
//! assert_eq!(&echo, b"hello");
//!
//! // another identity: the server closes the connection without a byte
//! let other = MeshClient::builder(mesh, ClientWorkload::new("web", "foo", "web"))
//!     .credentials(creds("web"))
//!     .build();
//! let mut denied = other.connect("tcp-echo:9000").await?;
//! let _ = denied.write_all(b"hello").await;
//! let mut buf = [0u8; 5];
//! assert!(matches!(denied.read(&mut buf).await, Ok(0) | Err(_)));
//! # Ok(()) }
//! ```
//!
//! # Differences from Istio
//!
//! - The target is the name the application asks for (`host:port`); an IP address is
//!   matched to a service by its addresses, as Envoy matches the original destination. A
//!   host the registry does not know, with no VirtualService, is refused (Envoy: the
//!   `BlackHoleCluster` under `REGISTRY_ONLY`, the original destination under
//!   `ALLOW_ANY`, which an in-process client does not have): as for HTTP.
//! - Bytes are counted as they pass, not reported every `tcpReportingDuration` (15 s).
//! - A denied connection is closed right after the TLS handshake, before any byte is read
//!   (Envoy's RBAC network filter decides on the first bytes from the client); a
//!   server-first protocol therefore sees the close before it speaks. It is counted opened
//!   and closed, as the stats filter counts it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use mesh_tls::PeerIdentity;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::accesslog::TcpLog;
use crate::envoy::ResponseFlags;
use crate::inbound::ConnectionInfo;
use crate::lb::RequestGuard;
use crate::metrics::TcpSeries;
use crate::outbound::ConnectError;

/// What a [`MeshTcpStream`] runs over.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Which way the bytes read from the stream go: on the server, from the client; on the
/// client, from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The server's stream (`reporter="destination"`): reads are received bytes.
    Inbound,
    /// The client's stream (`reporter="source"`): writes are received bytes (the server
    /// receives them).
    Outbound,
}

/// A TCP connection through the mesh: plaintext or mutual TLS as the mesh decided, counted
/// in the `istio_tcp_*` metrics until dropped.
///
/// It is `tokio::io::AsyncRead + AsyncWrite`; [`peer`](Self::peer) is the verified
/// identity of the other side (the server the client reached, the client the server
/// accepted), when the connection is mutual TLS. See the [module docs](self) for mutual
/// TLS and authorization.
///
/// # Examples
///
/// A client without mesh credentials reaches a plain TCP server in plaintext: the stream
/// has no verified peer.
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     let (mut s, _) = listener.accept().await.unwrap();
///     s.write_all(b"+PONG\r\n").await.unwrap();
/// });
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: redis, namespace: foo}
/// spec:
///   selector: {app: redis}
///   ports: [{name: tcp-redis, port: 6379}]
/// ")?;
/// mesh.register(Workload {
///     name: "redis-0".to_string(),
///     namespace: "foo".to_string(),
///     service_account: "redis".to_string(),
///     labels: [("app".to_string(), "redis".to_string())].into(),
///     address: addr.ip(),
///     ports: [("tcp-redis".to_string(), addr.port())].into(),
///     locality: None,
///     weight: 0,
/// });
/// let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
/// let mut conn = client.connect("redis:6379").await?;
/// assert!(conn.peer().is_none(), "plaintext: no verified identity");
/// let mut reply = [0u8; 7];
/// conn.read_exact(&mut reply).await?;
/// assert_eq!(&reply, b"+PONG\r\n");
/// # Ok(()) }
/// ```
pub struct MeshTcpStream {
    io: Pin<Box<dyn Io>>,
    side: Side,
    series: Option<TcpSeries>,
    peer: Option<PeerIdentity>,
    info: Option<ConnectionInfo>,
    /// The endpoint's active-request count (least-request balancing), held while open.
    _guard: Option<RequestGuard>,
    /// The access-log entry, written at the close.
    log: Option<Box<TcpLog>>,
    /// Bytes from the client, and to it, so far (for the access log).
    received: u64,
    sent: u64,
    /// The TCP proxy's idle timeout and maximum duration.
    timers: Option<Timers>,
}

/// Envoy's TCP proxy `idle_timeout` (DestinationRule `connectionPool.tcp.idleTimeout`, 1 h
/// by default) and `max_downstream_connection_duration` (`maxConnectionDuration`): timers
/// of their own, as Envoy's dispatcher runs them. Past either, a watchdog task shuts the
/// socket down both ways (the peer sees the close at once, whatever the application is
/// doing) and the stream fails with `TimedOut` from then on.
#[derive(Debug)]
struct Timers {
    state: Arc<TimerState>,
}

#[derive(Debug)]
struct TimerState {
    idle: Option<std::time::Duration>,
    started: tokio::time::Instant,
    /// When bytes last moved, in milliseconds after `started`.
    last_ms: AtomicU64,
    /// The end of `maxConnectionDuration`.
    until: Option<tokio::time::Instant>,
    /// Set by the watchdog: which deadline passed.
    expired: std::sync::OnceLock<&'static str>,
    /// The stream was dropped: the watchdog ends.
    closed: AtomicBool,
    wake: tokio::sync::Notify,
    /// Without a socket to shut down (no descriptor to spare): the stream's waiting read
    /// or write, woken when a deadline passes.
    parked: Option<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl TimerState {
    fn deadline(&self) -> Option<tokio::time::Instant> {
        let last =
            self.started + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let idle = self.idle.map(|d| last + d);
        match (idle, self.until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn error(&self) -> Option<io::Error> {
        self.expired
            .get()
            .map(|what| io::Error::new(io::ErrorKind::TimedOut, *what))
    }
}

/// Runs the timers of one stream until a deadline passes (then shuts `socket` down both
/// ways) or the stream is dropped.
async fn watchdog(state: Arc<TimerState>, socket: Option<socket2::Socket>) {
    loop {
        if state.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(deadline) = state.deadline() else {
            return;
        };
        if tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = state.wake.notified() => {}
            }
            continue;
        }
        let what = match state.until {
            Some(u) if u <= deadline => "max connection duration reached",
            _ => "idle timeout",
        };
        let _ = state.expired.set(what);
        if let Some(s) = socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let parked = state.parked.as_ref().and_then(|p| {
            p.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        });
        if let Some(w) = parked {
            w.wake();
        }
        return;
    }
}

impl fmt::Debug for MeshTcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTcpStream")
            .field("side", &self.side)
            .field("peer", &self.peer)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl MeshTcpStream {
    pub(crate) fn new<T>(io: T, side: Side, series: Option<TcpSeries>) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        MeshTcpStream {
            io: Box::pin(io),
            side,
            series,
            peer: None,
            info: None,
            _guard: None,
            log: None,
            received: 0,
            sent: 0,
            timers: None,
        }
    }

    /// Closes the stream after `idle` without bytes moving (`None`: never) or past
    /// `max_duration` from now; `socket` (a duplicate of the TCP connection's descriptor)
    /// is shut down then. Without one (no descriptor to spare), the stream still fails once
    /// a deadline passed.
    pub(crate) fn with_timeouts(
        mut self,
        idle: Option<std::time::Duration>,
        max_duration: Option<std::time::Duration>,
        socket: Option<socket2::Socket>,
    ) -> Self {
        if idle.is_none() && max_duration.is_none() {
            return self;
        }
        let now = tokio::time::Instant::now();
        let state = Arc::new(TimerState {
            idle,
            started: now,
            last_ms: AtomicU64::new(0),
            until: max_duration.map(|d| now + d),
            expired: std::sync::OnceLock::new(),
            closed: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            parked: socket.is_none().then(|| std::sync::Mutex::new(None)),
        });
        tokio::spawn(watchdog(Arc::clone(&state), socket));
        self.timers = Some(Timers { state });
        self
    }

    fn moved(&mut self) {
        if let Some(t) = &self.timers {
            let ms = t.state.started.elapsed().as_millis();
            t.state
                .last_ms
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// The error of a stream whose timer ran out.
    fn expired(&self) -> Option<io::Error> {
        self.timers.as_ref().and_then(|t| t.state.error())
    }

    /// A read or write is waiting: without a socket the watchdog can shut down, it wakes
    /// this one when a deadline passes.
    fn park(&self, cx: &Context<'_>) {
        if let Some(p) = self.timers.as_ref().and_then(|t| t.state.parked.as_ref()) {
            *p.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cx.waker().clone());
        }
    }

    pub(crate) fn with_log(mut self, log: Option<Box<TcpLog>>) -> Self {
        self.log = log;
        self
    }

    pub(crate) fn with_peer(mut self, peer: Option<PeerIdentity>) -> Self {
        self.peer = peer;
        self
    }

    pub(crate) fn with_info(mut self, info: ConnectionInfo) -> Self {
        self.info = Some(info);
        self
    }

    pub(crate) fn with_guard(mut self, guard: RequestGuard) -> Self {
        self._guard = Some(guard);
        self
    }

    /// The verified SPIFFE identity of the other side, when the connection is mutual TLS
    /// (see the [module docs](self): a client sees the server's identity).
    ///
    /// # Examples
    ///
    /// A client without mesh credentials reaches a plain TCP server in plaintext: the stream
    /// has no verified peer.
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// tokio::spawn(async move {
    ///     let (mut s, _) = listener.accept().await.unwrap();
    ///     s.write_all(b"+PONG\r\n").await.unwrap();
    /// });
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: redis, namespace: foo}
    /// spec:
    ///   selector: {app: redis}
    ///   ports: [{name: tcp-redis, port: 6379}]
    /// ")?;
    /// mesh.register(Workload {
    ///     name: "redis-0".to_string(),
    ///     namespace: "foo".to_string(),
    ///     service_account: "redis".to_string(),
    ///     labels: [("app".to_string(), "redis".to_string())].into(),
    ///     address: addr.ip(),
    ///     ports: [("tcp-redis".to_string(), addr.port())].into(),
    ///     locality: None,
    ///     weight: 0,
    /// });
    /// let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    /// let mut conn = client.connect("redis:6379").await?;
    /// assert!(conn.peer().is_none(), "plaintext: no verified identity");
    /// let mut reply = [0u8; 7];
    /// conn.read_exact(&mut reply).await?;
    /// assert_eq!(&reply, b"+PONG\r\n");
    /// # Ok(()) }
    /// ```
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// On the server side: the connection as the mesh accepted it (peer identity,
    /// addresses, port, PeerAuthentication mode). `None` on the client side.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(server: mesh_tower::inbound::MeshServer) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:9000").await?;
    /// server.serve_tcp(listener, |conn| async move {
    ///     let info = conn.connection_info().expect("server side");
    ///     println!("{} from {:?}", info.principal().unwrap_or("plaintext"), info.remote_addr());
    /// }).await
    /// # }
    /// ```
    pub fn connection_info(&self) -> Option<&ConnectionInfo> {
        self.info.as_ref()
    }

    /// `n` bytes moved: read from the stream (`read`) or written to it. Counts them as
    /// the client's (received) or the server's (sent) and resets the idle timer.
    fn count(&mut self, read: bool, n: usize) {
        if n == 0 {
            return;
        }
        self.moved();
        // on the server, reads come from the client; on the client, writes go to the server
        let from_client = read == (self.side == Side::Inbound);
        if from_client {
            self.received += n as u64;
        } else {
            self.sent += n as u64;
        }
        if let Some(s) = &self.series {
            if from_client {
                s.received(n);
            } else {
                s.sent(n);
            }
        }
    }

    /// After a write attempt: counts what was written.
    fn after_write(&mut self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            // (a write the watchdog's shutdown broke: its error instead)
            Poll::Ready(_) if self.expired().is_some() => {
                Poll::Ready(Err(self.expired().expect("expired")))
            }
            Poll::Ready(Ok(n)) => {
                self.count(false, n);
                Poll::Ready(Ok(n))
            }
            r => r,
        }
    }
}

impl Drop for MeshTcpStream {
    fn drop(&mut self) {
        if let Some(t) = &self.timers {
            t.state.closed.store(true, Ordering::Release);
            t.state.wake.notify_one();
        }
        if let Some(log) = self.log.take() {
            log.finish(self.received, self.sent);
        }
    }
}

impl AsyncRead for MeshTcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.expired() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = this.io.as_mut().poll_read(cx, buf);
        match &r {
            // (the watchdog's shutdown reads as the end of the stream: its error instead)
            Poll::Ready(_) if this.expired().is_some() => {
                buf.set_filled(before);
                return Poll::Ready(Err(this.expired().expect("expired")));
            }
            Poll::Ready(Ok(())) => this.count(true, buf.filled().len() - before),
            Poll::Pending => this.park(cx),
            _ => {}
        }
        r
    }
}

impl AsyncWrite for MeshTcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired() {
            return Poll::Ready(Err(e));
        }
        let r = this.io.as_mut().poll_write(cx, buf);
        if r.is_pending() {
            this.park(cx);
        }
        this.after_write(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired() {
            return Poll::Ready(Err(e));
        }
        let r = this.io.as_mut().poll_write_vectored(cx, bufs);
        if r.is_pending() {
            this.park(cx);
        }
        this.after_write(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io.as_mut().poll_shutdown(cx)
    }
}

/// Why [`MeshClient::connect`](crate::outbound::MeshClient::connect) could not open a
/// connection. Each is counted in the client's `istio_tcp_*` metrics with Envoy's
/// response flags ([`flags`](Self::flags)), as the client's sidecar counts the connection
/// the application opened to it.
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{ClientWorkload, MeshClient};
/// use mesh_tower::tcp::TcpConnectError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: redis, namespace: default}
/// spec: {ports: [{name: tcp-redis, port: 6379}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: istio-system}
/// spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
/// ").unwrap();
/// let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
/// // the service has no endpoint
/// let err = client.connect("redis:6379").await.unwrap_err();
/// assert!(matches!(err, TcpConnectError::NoHealthyUpstream { .. }), "{err}");
/// assert_eq!(err.flags().to_string(), "UH");
/// // a host nobody declared, under REGISTRY_ONLY (ALLOW_ANY would pass it through)
/// let err = client.connect("db.example.com:5432").await.unwrap_err();
/// assert!(matches!(err, TcpConnectError::BlackHole { .. }), "{err}");
/// // no port, and the service has several (or none)
/// assert!(matches!(client.connect("db.example.com").await, Err(TcpConnectError::InvalidTarget { .. })));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TcpConnectError {
    /// The target is not `host:port` (or `host` of a service with exactly one port).
    #[error("invalid TCP target {target:?}: {reason}")]
    InvalidTarget {
        /// What was asked for.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No service of that name or address and no VirtualService for it (Envoy's
    /// `BlackHoleCluster`; flag UH).
    #[error("no service for {target} in the mesh (BlackHoleCluster)")]
    BlackHole {
        /// The target asked for.
        target: String,
    },
    /// The route names a cluster that does not exist: an undefined subset, a port the
    /// service does not declare, a host outside the registry (flag NC).
    #[error("cluster not found: {cluster}")]
    ClusterNotFound {
        /// Envoy's cluster name, `outbound|<port>|<subset>|<host>`.
        cluster: String,
    },
    /// No endpoint is available: none selected, or all ejected (flag UH).
    #[error("no healthy upstream in {cluster}")]
    NoHealthyUpstream {
        /// Envoy's cluster name.
        cluster: String,
    },
    /// The connection could not be established: refused, timed out, TLS failed, the
    /// server's identity refused, `maxConnections` reached (flags UF, UO).
    #[error("upstream connect error to {endpoint} in {cluster}: {error}")]
    Connect {
        /// Envoy's cluster name.
        cluster: String,
        /// The endpoint dialed.
        endpoint: std::net::SocketAddr,
        /// What failed.
        #[source]
        error: Box<ConnectError>,
    },
}

impl TcpConnectError {
    /// Envoy's response flag for this failure (the `response_flags` label).
    ///
    /// # Examples
    ///
    /// A service without endpoints is `UH`, no healthy upstream:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_tower::envoy::ResponseFlags;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    /// use mesh_tower::tcp::TcpConnectError;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: mongodb, namespace: foo}
    /// spec:
    ///   selector: {app: mongodb}
    ///   ports: [{name: mongo, port: 27017}]
    /// ")?;
    /// let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    /// let err = client.connect("mongodb:27017").await.unwrap_err();
    /// assert!(matches!(err, TcpConnectError::NoHealthyUpstream { .. }), "{err}");
    /// assert_eq!(err.flags(), ResponseFlags::NO_HEALTHY_UPSTREAM);
    /// assert_eq!(err.flags().to_string(), "UH");
    /// # Ok(()) }
    /// ```
    pub fn flags(&self) -> ResponseFlags {
        match self {
            TcpConnectError::InvalidTarget { .. } => ResponseFlags::NONE,
            TcpConnectError::BlackHole { .. } | TcpConnectError::NoHealthyUpstream { .. } => {
                ResponseFlags::NO_HEALTHY_UPSTREAM
            }
            TcpConnectError::ClusterNotFound { .. } => ResponseFlags::NO_CLUSTER_FOUND,
            TcpConnectError::Connect { error, .. }
                if matches!(**error, ConnectError::Overflow(_)) =>
            {
                ResponseFlags::UPSTREAM_OVERFLOW
            }
            // Envoy's TCP proxy: the failed attempt (UF) was the last one allowed
            // (`max_connect_attempts` 1, URX)
            TcpConnectError::Connect { .. } => {
                let mut f = ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
                f.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                f
            }
        }
    }
}

/// The target of a TCP connection: host (no brackets) and port, if given.
pub(crate) fn parse_target(target: &str) -> Result<(&str, Option<u16>), TcpConnectError> {
    let invalid = |reason| TcpConnectError::InvalidTarget {
        target: target.to_string(),
        reason,
    };
    if target.is_empty() {
        return Err(invalid("empty"));
    }
    if target.contains(['/', '@', ' ', '?', '#']) {
        return Err(invalid("expected host:port"));
    }
    // [v6]:port, [v6], v4:port, name:port, name, or a bare IPv6 address
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(invalid("unclosed '['"))?;
        return match after {
            "" => Ok((host, None)),
            p => match p.strip_prefix(':').and_then(|p| p.parse().ok()) {
                Some(port) => Ok((host, Some(port))),
                None => Err(invalid("bad port")),
            },
        };
    }
    if target.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((target, None));
    }
    match target.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) if !host.is_empty() => Ok((host, Some(p))),
            _ => Err(invalid("bad port")),
        },
        None => Ok((target, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let ok = [
            ("mongodb:27017", ("mongodb", Some(27017))),
            ("mongodb", ("mongodb", None)),
            ("10.0.0.1:5432", ("10.0.0.1", Some(5432))),
            ("[fd00::1]:6379", ("fd00::1", Some(6379))),
            ("[fd00::1]", ("fd00::1", None)),
            ("fd00::1", ("fd00::1", None)),
            (
                "db.prod.svc.cluster.local:3306",
                ("db.prod.svc.cluster.local", Some(3306)),
            ),
        ];
        for (t, want) in ok {
            assert_eq!(parse_target(t).unwrap(), want, "{t}");
        }
        for bad in [
            "",
            ":80",
            "db:",
            "db:http",
            "db:70000",
            "[fd00::1",
            "[::1]x",
            "tcp://db:1",
            "a b:1",
        ] {
            assert!(
                matches!(
                    parse_target(bad),
                    Err(TcpConnectError::InvalidTarget { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn flags_are_envoys() {
        let cluster = || "outbound|9000||tcp-echo.foo.svc.cluster.local".to_string();
        let addr = "10.0.0.1:9000".parse().unwrap();
        let cases = [
            (
                TcpConnectError::BlackHole {
                    target: "x:1".into(),
                },
                "UH",
            ),
            (
                TcpConnectError::NoHealthyUpstream { cluster: cluster() },
                "UH",
            ),
            (
                TcpConnectError::ClusterNotFound { cluster: cluster() },
                "NC",
            ),
            (
                TcpConnectError::Connect {
                    cluster: cluster(),
                    endpoint: addr,
                    error: Box::new(ConnectError::Timeout(std::time::Duration::from_secs(1))),
                },
                "UF,URX",
            ),
        ];
        for (e, flag) in cases {
            assert_eq!(e.flags().to_string(), flag, "{e}");
        }
    }

    /// Without a socket to shut down (no descriptor to spare), a read waiting on an idle
    /// stream still fails at the idle timeout: the watchdog wakes it.
    #[tokio::test]
    async fn a_waiting_read_without_a_socket_fails_at_the_idle_timeout() {
        use tokio::io::AsyncReadExt;
        let (a, _b) = tokio::io::duplex(64);
        let mut s = MeshTcpStream::new(a, Side::Outbound, None).with_timeouts(
            Some(std::time::Duration::from_millis(100)),
            None,
            None,
        );
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("woken by the watchdog")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
