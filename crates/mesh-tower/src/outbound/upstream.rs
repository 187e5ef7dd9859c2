//! The mesh transport's connections to one destination: per endpoint, a LIFO stack of idle
//! HTTP/1.1 connections and the shared HTTP/2 connections (one, unless its streams are all
//! taken), each a hyper `client::conn` sender whose connection task we spawn ourselves.
//!
//! Why not hyper-util's pooled client: its pool is keyed by `(scheme, authority)` (a hash and
//! a lock per checkout over every host), every request crosses an extra oneshot channel and
//! gets a `Connected` envelope in its extensions, and the request URI has to be absolute.
//! Here the load balancer has already picked an endpoint by index, so the pool is a slot
//! in a slice: checkout is one uncontended lock and a `pop`, the request goes out in origin
//! form, and nothing is allocated for the pool itself on the request path.
//!
//! Envoy's connection-pool semantics, as DestinationRule `connectionPool` sets them:
//! - `tcp.maxConnections`: a new connection takes a slot from the destination's circuit
//!   breaker; when none is left the request waits for a connection to come back. Except for an
//!   endpoint with no connection at all (none idle, busy or being opened): it opens one past
//!   the limit, counted as an overflow, as Envoy's `ConnPoolImplBase::tryCreateNewConnection`
//!   does "to prevent pending streams being queued to this upstream with no way to be
//!   processed" (idle connections to other endpoints would otherwise hold every slot, and a
//!   request the balancer sent here would wait forever);
//! - `http.http1MaxPendingRequests`: a request with no ready connection (none idle, no
//!   HTTP/2 connection with room) is pending until a connection takes it, both while the
//!   connection it opened is being established and while it waits for one to come back, as
//!   Envoy's `ConnPoolImplBase::newStreamImpl` counts it; beyond the limit: 503 UO;
//! - `http.maxRequestsPerConnection`: a connection that has carried that many requests is
//!   not reused (`1` disables keep-alive);
//! - `http.maxConcurrentStreams` and the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//!   (whichever is smaller): when every HTTP/2 connection to the endpoint carries that many
//!   streams, another connection is opened (if `maxConnections` allows; otherwise the
//!   request is pending, under `http1MaxPendingRequests`, until a stream is free), as
//!   Envoy's HTTP/2 pool does. A stream counts until its response body has ended or is
//!   dropped;
//! - `http.idleTimeout` / `tcp.idleTimeout` (1 h by default): a connection that has carried
//!   no request for that long is closed, as Envoy's codec client closes any upstream
//!   connection idle for `idle_timeout`: an idle HTTP/1.1 connection, and an HTTP/2
//!   connection with no active stream since (so one opened for more streams at a load peak
//!   closes once the peak is over). A sweeper task per destination closes them on time
//!   whether or not another request comes (a request that finds one closes it too);
//! - `tcp.maxConnectionDuration`: a connection that old takes no new request and is closed
//!   once its requests are done (Envoy's `max_connection_duration` drain), on time too;
//! - the pools go with their destination: a dropped client, or a destination rebuilt for a
//!   new DestinationRule (or MeshConfig connection settings), closes its pooled
//!   connections, and those carrying a request close once it is done, as Envoy drains the
//!   pools of a cluster it replaces; when only the destination's endpoints changed (a
//!   workload registered or gone: Envoy's endpoint update), the endpoints that stay keep
//!   their pools and connections, and the destination its circuit breaker's counts;
//! - a reused connection that turns out to be closed before the request was written is
//!   discarded and the request goes out on another one (hyper-util's "retry canceled
//!   requests"; Envoy does the same for a stale pooled connection).
//!
//! An HTTP/1.1 upgrade request (WebSocket) goes out on an HTTP/1.1 connection: an idle one,
//! or a new one offering only `http/1.1` by ALPN, never the shared HTTP/2 connection. When
//! the server answers `101 Switching Protocols`, the connection belongs to the upgraded
//! stream (`hyper::upgrade::on` on the response) and is never pooled again; it keeps its
//! `maxConnections` slot until the upgraded stream is dropped, as Envoy counts an upgraded
//! stream's connection. Any other answer leaves the connection reusable as usual.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pin_project_lite::pin_project;
use tokio::sync::Notify;

use super::connector::{ConnectError, MeshConnector};
use super::dest::lock;
use super::h2_settings::{SettingsIo, Streams};
use super::{BoxError, MeshBody};
use crate::metrics::WorkloadInfo;
use crate::pool::{CircuitBreaker, Permit};

/// The metrics' view of the server at the other end of a connection: the endpoint's, with
/// the principal of the certificate it actually presented (`None`: no TLS identity). Istio's
/// client reporter takes `destination_principal` from the upstream connection's peer
/// certificate URI SAN, not from what the mesh expected it to be.
pub(crate) type ConnPeer = Option<Arc<WorkloadInfo>>;

/// The HTTP version a request needs of its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Whatever the destination speaks (its pooled HTTP/2 connection, an idle HTTP/1.1 one,
    /// or a new one as its protocol says).
    Any,
    /// HTTP/1.1: an upgrade (WebSocket), or an HTTP/1.1 request to a destination that keeps
    /// the downstream's protocol.
    Http1,
    /// HTTP/2: an HTTP/2 request to a destination that keeps the downstream's protocol.
    Http2,
}

/// The connections of one destination, one pool per endpoint (same order as the balancer's
/// endpoints).
pub(crate) struct Upstream {
    connector: MeshConnector,
    breaker: CircuitBreaker,
    idle_timeout: Option<Duration>,
    max_requests_per_connection: u32,
    /// `maxConcurrentStreams`, per HTTP/2 connection.
    max_streams: u32,
    endpoints: Box<[Arc<EndpointPool>]>,
    waiters: Arc<Waiters>,
    /// HTTP/2 keepalive PINGs: their interval and how long one may go unanswered before
    /// the connection is closed (DestinationRule `http.http2KeepAlive`).
    h2_keepalive: Option<(Duration, Duration)>,
    /// Stops the idle sweeper ([`start_sweeper`]) when dropped.
    _sweeper: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoints", &self.endpoints.len())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Requests waiting for a connection slot (`maxConnections` reached): woken when a
/// connection goes back to a pool or closes.
#[derive(Default)]
struct Waiters {
    count: AtomicUsize,
    notify: Notify,
}

impl Waiters {
    fn wake(&self) {
        if self.count.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }
}

struct EndpointPool {
    addr: SocketAddr,
    /// The metrics' view of this endpoint, without a principal.
    base: Arc<WorkloadInfo>,
    /// The view with the principal its last connection presented, shared by the
    /// connections that present the same one.
    last_peer: Mutex<Option<Arc<WorkloadInfo>>>,
    state: Mutex<PoolState>,
    /// Connections to this endpoint open or being opened (idle, in use, upgraded until the
    /// upgrade completes): at 0, a new one may exceed `maxConnections`.
    open: AtomicUsize,
    /// An HTTP/2 connection is being opened for more streams ([`H2Opening`]).
    h2_opening: AtomicBool,
    /// The destination's waiters (shared by its endpoints).
    waiters: Arc<Waiters>,
    /// `connectionPool.tcp.maxConnectionDuration`: a connection older than this takes no
    /// new request (Envoy's `max_connection_duration` drains it) and closes once idle.
    max_age: Option<Duration>,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Idle>,
    /// HTTP/2 connections, oldest first (usually one: another is pooled only when the
    /// others' streams are all taken).
    h2: Vec<H2>,
    /// The [`Upstream`]s holding this pool: two while a destination rebuilt because its
    /// endpoint set changed hands the pools of the endpoints that stay to the new one.
    owners: usize,
    /// Every [`Upstream`] holding it is gone (its client dropped, or its destination
    /// rebuilt for a new config): nothing is pooled any more, and a connection coming back
    /// is closed.
    retired: bool,
}

/// An idle HTTP/1.1 connection.
struct Idle {
    tx: http1::SendRequest<MeshBody>,
    used: u32,
    since: Instant,
    /// When the connection was opened (for `maxConnectionDuration`).
    opened: Instant,
    /// `h2` was offered and the server chose HTTP/1.1: it may carry an HTTP/2 request
    /// ([`Want::Http2`]) too, as no HTTP/2 connection to this server can be had.
    h2_refused: bool,
    peer: ConnPeer,
    /// Dialed by name: the address reached.
    remote: Option<SocketAddr>,
}

/// The address a response's connection reached, when its endpoint was dialed by name (a
/// response extension, for the access log's upstream host).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reached(pub(crate) SocketAddr);

/// `resp`, marked with the address its connection reached (dialed by name only: nothing
/// is added for an endpoint's own address).
fn reached<B>(mut resp: Response<B>, remote: Option<SocketAddr>) -> Response<B> {
    if let Some(a) = remote {
        resp.extensions_mut().insert(Reached(a));
    }
    resp
}

/// A shared HTTP/2 connection of an endpoint.
#[derive(Clone)]
struct H2 {
    tx: http2::SendRequest<MeshBody>,
    /// When the connection was opened (for `maxConnectionDuration`).
    opened: Instant,
    streams: Arc<Streams>,
    peer: ConnPeer,
    remote: Option<SocketAddr>,
}

/// What an endpoint's HTTP/2 connections offer a request.
enum H2Pick {
    /// A connection with a free stream, the stream counted.
    Ready(H2, StreamSlot),
    /// Every pooled connection's streams are taken.
    Busy,
}

impl EndpointPool {
    /// The metrics' view of the server on a connection that presented `principal`: the
    /// same `Arc` as for the endpoint's earlier connections that presented the same
    /// identity, so requests over any of them fall in one series of the metrics'
    /// per-thread cache, which is keyed by the `Arc`'s address (a new `Arc` per connection
    /// made every connection a cache miss: a lock and a hash of the labels per request).
    fn peer_info(&self, principal: String) -> Arc<WorkloadInfo> {
        let mut last = lock(&self.last_peer);
        if let Some(info) = last.as_ref().filter(|i| i.principal == principal) {
            return Arc::clone(info);
        }
        let info = Arc::new(WorkloadInfo {
            principal,
            ..(*self.base).clone()
        });
        *last = Some(Arc::clone(&info));
        info
    }

    /// An HTTP/2 connection for a request, its stream counted: the oldest open one with a
    /// stream free under `max_streams` and the server's limit, else [`H2Pick::Busy`];
    /// `None` without one. Connections that are closed, have carried `max_requests`, or
    /// have had no stream for `idle_timeout` are let go.
    ///
    /// Envoy's codec client arms its idle timer (`idle_timeout`, HTTP/1 and HTTP/2 alike)
    /// when its last active stream ends and closes the connection when it fires: a
    /// connection opened at a load peak does not stay open once the peak is over. Here it
    /// is let go by the destination's sweeper ([`Self::sweep`]) or when next looked at, as
    /// an idle HTTP/1.1 connection is ([`Self::pop_idle`]): with its `SendRequest` gone and
    /// no stream left on it, hyper closes it (GOAWAY, then the socket). A connection
    /// carrying a stream is never let go for idleness.
    fn h2(
        &self,
        max_requests: u32,
        max_streams: u32,
        idle_timeout: Option<Duration>,
    ) -> Option<H2Pick> {
        let mut st = lock(&self.state);
        if st.h2.is_empty() {
            return None;
        }
        st.h2.retain(|c| {
            !c.tx.is_closed()
                && (max_requests == 0 || c.streams.used.load(Ordering::Relaxed) < max_requests)
                && !idle_timeout.is_some_and(|t| c.streams.idle_for(t))
                && !self.too_old(c.opened)
        });
        if st.h2.is_empty() {
            return None;
        }
        let Some(conn) = st.h2.iter().find(|c| c.streams.has_room(max_streams)) else {
            return Some(H2Pick::Busy);
        };
        conn.streams.take();
        let slot = StreamSlot {
            streams: Arc::clone(&conn.streams),
            waiters: Arc::clone(&self.waiters),
        };
        Some(H2Pick::Ready(conn.clone(), slot))
    }

    /// Lets go of HTTP/2 connection `streams` (closed under a request).
    fn drop_h2(&self, streams: &Arc<Streams>) {
        lock(&self.state)
            .h2
            .retain(|c| !Arc::ptr_eq(&c.streams, streams));
    }

    /// Returns a connection taken from the pool without a request to send over it.
    fn put_back(&self, conn: Idle) {
        self.pool_idle(conn);
        self.waiters.wake();
    }

    /// Pools idle HTTP/1.1 connection `conn`, unless the pool is retired: then it is
    /// closed (dropped, outside the lock).
    fn pool_idle(&self, conn: Idle) {
        let mut st = lock(&self.state);
        if st.retired {
            drop(st);
            drop(conn);
            return;
        }
        st.idle.push(conn);
    }

    /// A connection opened at `opened` is past `maxConnectionDuration`: Envoy drains it
    /// (no new stream; closed once its streams end).
    fn too_old(&self, opened: Instant) -> bool {
        self.max_age.is_some_and(|m| opened.elapsed() >= m)
    }

    /// The most recently used idle HTTP/1.1 connection that is still fresh; stale ones
    /// (idle too long, or past `maxConnectionDuration`) are closed (dropped).
    /// `h2_refused_only`: only a connection whose server refused `h2` ([`Idle::h2_refused`]).
    fn pop_idle(&self, idle_timeout: Option<Duration>, h2_refused_only: bool) -> Option<Idle> {
        let mut st = lock(&self.state);
        let mut i = st.idle.len();
        while i > 0 {
            i -= 1;
            let c = &st.idle[i];
            if c.tx.is_closed() || self.too_old(c.opened) {
                st.idle.remove(i);
                continue;
            }
            if let Some(t) = idle_timeout
                && c.since.elapsed() >= t
            {
                // LIFO: everything below is older still
                st.idle.drain(..=i);
                return None;
            }
            if h2_refused_only && !c.h2_refused {
                continue;
            }
            return Some(st.idle.remove(i));
        }
        None
    }

    /// Lets go of the pooled connections that are closed, idle for `idle_timeout`, past
    /// `maxConnectionDuration`, or (HTTP/2) have carried `max_requests`, whether or not a
    /// request comes to look at them ([`Upstream`]'s sweeper calls it). The time until the
    /// next of those kept can be let go, when one can be told (an HTTP/2 connection
    /// carrying a stream cannot: it is never let go for idleness).
    fn sweep(&self, idle_timeout: Option<Duration>, max_requests: u32) -> Option<Duration> {
        let now = Instant::now();
        // (the time left of `limit` since `from`; zero: past it)
        let left = |limit: Option<Duration>, from: Instant| {
            limit.map(|l| l.saturating_sub(now.saturating_duration_since(from)))
        };
        let mut next: Option<Duration> = None;
        let mut st = lock(&self.state);
        st.idle.retain(|c| {
            let until = [left(idle_timeout, c.since), left(self.max_age, c.opened)]
                .into_iter()
                .flatten()
                .min();
            if c.tx.is_closed() || until.is_some_and(|d| d.is_zero()) {
                return false;
            }
            if let Some(d) = until {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            true
        });
        st.h2.retain(|c| {
            let idle = idle_timeout.and_then(|t| c.streams.idle_left(t));
            let until = [idle, left(self.max_age, c.opened)]
                .into_iter()
                .flatten()
                .min();
            if c.tx.is_closed()
                || (max_requests != 0 && c.streams.used.load(Ordering::Relaxed) >= max_requests)
                || until.is_some_and(|d| d.is_zero())
            {
                return false;
            }
            if let Some(d) = until {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            true
        });
        next
    }
}

/// Closes an [`Upstream`]'s idle connections on time, as Envoy's codec client's idle
/// timer (`idleTimeout`, 1 h by default) and its `max_connection_duration` drain do, so a
/// destination that is no longer called does not keep its connections open for ever (a
/// request looks at the connections it finds too: [`EndpointPool::pop_idle`]). It wakes
/// when the next pooled connection is due (at the latest every `period`), holds the
/// endpoints' pools weakly, and ends when the [`Upstream`] that started it is dropped
/// (the sender it keeps). Without a tokio runtime at hand none is started, and connections
/// are let go only when a request looks at them.
fn start_sweeper(
    endpoints: &[Arc<EndpointPool>],
    idle_timeout: Option<Duration>,
    max_age: Option<Duration>,
    max_requests: u32,
) -> Option<tokio::sync::oneshot::Sender<()>> {
    let period = [idle_timeout, max_age].into_iter().flatten().min()?;
    if endpoints.is_empty() {
        return None;
    }
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pools: Box<[std::sync::Weak<EndpointPool>]> =
        endpoints.iter().map(Arc::downgrade).collect();
    runtime.spawn(async move {
        let mut wait = period;
        let mut slept = std::time::Instant::now();
        // (the sender dropped, or sent: the upstream is gone)
        while tokio::time::timeout(wait, &mut stopped).await.is_err() {
            // A paused tokio clock (tests: `tokio::time::pause`) jumps to this timer
            // whenever the runtime idles, while the pools' clock, the real one, does not
            // move: sweeping would spin. Connections are then let go when next looked at.
            if slept.elapsed() < wait / 2 {
                let _ = stopped.await;
                return;
            }
            wait = period;
            for pool in &pools {
                let Some(ep) = pool.upgrade() else {
                    continue;
                };
                if let Some(d) = ep.sweep(idle_timeout, max_requests) {
                    wait = wait.min(d);
                }
            }
            // (a connection due within the millisecond is let go on the next round)
            wait = wait.max(Duration::from_millis(1));
            slept = std::time::Instant::now();
        }
    });
    Some(stop)
}

/// The pools' connections are closed with their [`Upstream`]: each pooled connection's
/// task holds its endpoint's pool (to count it open) and the pool holds the connection's
/// sender, so without this a dropped client's connections, or those of a destination
/// rebuilt for a new config, would stay open for as long as their servers let them (Envoy
/// drains a cluster's pools when the cluster goes). Requests in flight finish on their
/// connections, which are then closed instead of pooled.
impl Drop for Upstream {
    fn drop(&mut self) {
        for ep in &self.endpoints {
            let mut st = lock(&ep.state);
            st.owners -= 1;
            if st.owners > 0 {
                // handed to the destination's next state
                continue;
            }
            st.retired = true;
            let idle = std::mem::take(&mut st.idle);
            let h2 = std::mem::take(&mut st.h2);
            drop(st);
            drop((idle, h2));
        }
    }
}

impl Upstream {
    /// The connections of a destination's `endpoints` (the balancer's order), each with
    /// the metrics' view of its server.
    ///
    /// `carry`: the destination's previous upstream, when only its endpoint set changed
    /// (same connection settings, same circuit breaker), with, for each endpoint, the index
    /// of the same endpoint in it (`None`: a new one). The endpoints that stay keep their
    /// pools, connections included, as Envoy keeps its hosts' pools across an endpoint
    /// update; the others' pools close with the previous upstream.
    pub(crate) fn new(
        connector: MeshConnector,
        breaker: CircuitBreaker,
        (idle_timeout, max_age): (Duration, Option<Duration>),
        endpoints: impl IntoIterator<Item = (SocketAddr, Arc<WorkloadInfo>)>,
        carry: Option<(&Upstream, &[Option<usize>])>,
    ) -> Self {
        let max_requests_per_connection = breaker.limits().max_requests_per_connection;
        let max_streams = breaker.limits().max_concurrent_streams;
        let waiters = carry.map_or_else(Arc::<Waiters>::default, |(prev, _)| {
            Arc::clone(&prev.waiters)
        });
        let idle_timeout = (!idle_timeout.is_zero()).then_some(idle_timeout);
        let max_age = max_age.filter(|d| !d.is_zero());
        let endpoints: Box<[Arc<EndpointPool>]> = endpoints
            .into_iter()
            .enumerate()
            .map(|(i, (addr, base))| {
                let kept = carry.and_then(|(prev, same)| {
                    let pool = prev.endpoints.get(same.get(i).copied().flatten()?)?;
                    let mut st = lock(&pool.state);
                    (pool.addr == addr && !st.retired).then(|| {
                        st.owners += 1;
                        Arc::clone(pool)
                    })
                });
                kept.unwrap_or_else(|| {
                    Arc::new(EndpointPool {
                        addr,
                        base,
                        last_peer: Mutex::new(None),
                        state: Mutex::new(PoolState {
                            owners: 1,
                            ..PoolState::default()
                        }),
                        open: AtomicUsize::new(0),
                        h2_opening: AtomicBool::new(false),
                        waiters: Arc::clone(&waiters),
                        max_age,
                    })
                })
            })
            .collect();
        let sweeper = start_sweeper(
            &endpoints,
            idle_timeout,
            max_age,
            max_requests_per_connection,
        );
        Upstream {
            connector,
            breaker,
            idle_timeout,
            max_requests_per_connection,
            max_streams,
            endpoints,
            waiters,
            h2_keepalive: None,
            _sweeper: sweeper,
        }
    }

    /// Sends HTTP/2 keepalive PINGs on this upstream's HTTP/2 connections every `interval`,
    /// closing a connection whose PING goes unanswered for `timeout` (Envoy's
    /// `connection_keepalive`), idle connections included.
    pub(crate) fn with_h2_keepalive(mut self, keepalive: Option<(Duration, Duration)>) -> Self {
        self.h2_keepalive = keepalive;
        self
    }

    /// The destination's connector (for opaque TCP connections, which are not pooled).
    pub(crate) fn connector(&self) -> &MeshConnector {
        &self.connector
    }

    /// Sends `req` (origin-form URI, `Host` set) to endpoint `index` over a connection of
    /// the protocol `want`s (an HTTP/1.1 upgrade, WebSocket, must go out over HTTP/1.1).
    /// With the answer, the peer of the connection it came over.
    ///
    /// `per_try`: the route's `perTryTimeout`, started once a connection has taken the
    /// request, as Envoy's `UpstreamRequest::onPoolReady` starts it: waiting for a
    /// connection and opening one (TCP, TLS) fall under `connectTimeout` instead. On
    /// expiry the error is a [`PerTryTimeout`].
    pub(crate) async fn send(
        &self,
        index: usize,
        mut req: Request<MeshBody>,
        want: Want,
        per_try: Option<Duration>,
    ) -> Result<(Response<UpstreamBody>, ConnPeer), BoxError> {
        let upgrade = want == Want::Http1;
        let per_try = per_try.map(|limit| PerTry {
            limit,
            after: req
                .extensions_mut()
                .remove::<super::BodyEnding>()
                .map(|b| b.0),
        });
        let Some(ep) = self.endpoints.get(index) else {
            return Err(ConnectError::BadAddress(format!("endpoint #{index}")).into());
        };
        let max = self.max_requests_per_connection;
        let mut pending: Option<Permit> = None;
        loop {
            // 1. an HTTP/2 connection of the endpoint (not for an upgrade: HTTP/2 has none)
            let h2 = if upgrade {
                None
            } else {
                ep.h2(max, self.max_streams, self.idle_timeout)
            };
            if let Some(H2Pick::Busy) = h2 {
                // Envoy's pool opens another connection when its connections' streams are
                // all taken, if the circuit breaker allows one, and the stream is pending
                // until a connection takes it; without a connection slot, it stays pending
                // until a stream of one of them is free. One connection is opened at a
                // time: the others wait for it, then look again.
                let mut opening_elsewhere = ep.h2_opening.load(Ordering::SeqCst);
                if !opening_elsewhere && let Ok(permit) = self.breaker.try_connection() {
                    if ep
                        .h2_opening
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        let opening = H2Opening(Arc::clone(ep));
                        let pending = match pending.take() {
                            Some(p) => p,
                            None => self.breaker.try_pending().map_err(ConnectError::Overflow)?,
                        };
                        ep.open.fetch_add(1, Ordering::AcqRel);
                        let slots = Slots {
                            permit,
                            pending: Some(pending),
                            opening: Some(opening),
                        };
                        return crate::box_in_place(|| {
                            self.open_and_send(ep, slots, req, false, per_try.clone())
                        })
                        .await;
                    }
                    opening_elsewhere = true;
                }
                if pending.is_none() {
                    pending = Some(self.breaker.try_pending().map_err(ConnectError::Overflow)?);
                }
                if opening_elsewhere {
                    self.wait_for_h2(ep).await;
                } else {
                    self.wait_for_stream(ep).await;
                }
                continue;
            }
            if let Some(H2Pick::Ready(mut h2, slot)) = h2 {
                // attached to a connection: no longer pending, and an active request
                pending = None;
                let request = self.breaker.try_request().map_err(ConnectError::Overflow)?;
                h2.streams.used.fetch_add(1, Ordering::Relaxed);
                match within(&per_try, h2.tx.try_send_request(req)).await? {
                    Ok(resp) => {
                        let body = |b| UpstreamBody::stream(b, slot).holding(request);
                        return Ok((reached(resp.map(body), h2.remote), h2.peer));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(r) => {
                            req = r;
                            drop(slot);
                            ep.drop_h2(&h2.streams);
                            continue;
                        }
                        None => return Err(Box::new(e.into_error())),
                    },
                }
            }
            // 2. an idle HTTP/1.1 connection (for a request that must stay HTTP/2, only one
            // whose server refused h2)
            if let Some(mut idle) = ep.pop_idle(self.idle_timeout, want == Want::Http2) {
                if idle.tx.ready().await.is_err() {
                    continue;
                }
                pending = None;
                let request = match self.breaker.try_request() {
                    Ok(p) => p,
                    Err(o) => {
                        ep.put_back(idle);
                        return Err(ConnectError::Overflow(o).into());
                    }
                };
                idle.used += 1;
                match within(&per_try, idle.tx.try_send_request(req)).await? {
                    Ok(resp) => {
                        let peer = idle.peer.clone();
                        let remote = idle.remote;
                        let resp = self.lease(ep, idle, resp).map(|b| b.holding(request));
                        return Ok((reached(resp, remote), peer));
                    }
                    Err(mut e) => match e.take_message() {
                        Some(r) => {
                            req = r;
                            continue;
                        }
                        None => return Err(Box::new(e.into_error())),
                    },
                }
            }
            // 3. no ready connection: a pending request, whether it opens a connection (and
            // waits for it to be established) or waits for one to come back. Envoy's
            // `ConnPoolImplBase::newStreamImpl` checks `pendingRequests().canCreate()` (503 UO
            // beyond `max_pending_requests`) for every stream without a ready client, before
            // `tryCreateNewConnections`; the stream stays pending until a connection is
            // attached to it.
            if pending.is_none() {
                pending = Some(self.breaker.try_pending().map_err(ConnectError::Overflow)?);
            }
            let permit = match self.breaker.try_connection() {
                Ok(p) => {
                    ep.open.fetch_add(1, Ordering::AcqRel);
                    p
                }
                // Envoy: a host with no connection opens one past the cluster's limit (see
                // the module docs); one at a time, the others wait for it
                Err(_)
                    if ep
                        .open
                        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok() =>
                {
                    self.breaker.connection_past_limit()
                }
                Err(_) => {
                    self.wait_for_connection(ep).await;
                    continue;
                }
            };
            // opening a connection is the rare path: its future (the TLS connector's and
            // the HTTP handshake's) is boxed, so every request's future stays small
            let slots = Slots {
                permit,
                pending,
                opening: None,
            };
            return crate::box_in_place(|| {
                self.open_and_send(ep, slots, req, upgrade, per_try.clone())
            })
            .await;
        }
    }

    /// Opens a connection to `ep` (holding `slots`), pools it and sends `req` over it.
    async fn open_and_send(
        &self,
        ep: &Arc<EndpointPool>,
        slots: Slots,
        req: Request<MeshBody>,
        upgrade: bool,
        per_try: Option<PerTry>,
    ) -> Result<(Response<UpstreamBody>, ConnPeer), BoxError> {
        let Slots {
            permit,
            pending,
            opening,
        } = slots;
        let opened = Opened(Arc::clone(ep));
        let conn = self
            .connector
            .connect_addr(ep.addr, permit, upgrade)
            .await?;
        let remote = conn.remote();
        let waiters = Arc::clone(&self.waiters);
        // at most one allocation per connection, none per request
        let peer: ConnPeer = conn.peer().map(|p| ep.peer_info(p.identity().to_string()));
        if conn.is_h2() {
            let streams = Arc::new(Streams::first());
            let slot = StreamSlot {
                streams: Arc::clone(&streams),
                waiters: Arc::clone(&self.waiters),
            };
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(crate::envoy::MAX_HEADER_LIST_SIZE);
            if let Some((interval, timeout)) = self.h2_keepalive {
                builder
                    .keep_alive_interval(interval)
                    .keep_alive_timeout(timeout)
                    .keep_alive_while_idle(true);
            }
            let (tx, connection) = builder
                .handshake(SettingsIo::new(conn, Arc::clone(&streams)))
                .await?;
            tokio::spawn(async move {
                let _ = connection.await;
                drop(opened);
                waiters.wake();
            });
            let mut h2 = H2 {
                tx,
                opened: Instant::now(),
                streams,
                peer: peer.clone(),
                remote,
            };
            {
                // pooled when opened for more streams, or when no pooled connection has
                // room; otherwise (several requests opened one each at once, before any
                // was pooled) it closes after its request; never in a retired pool
                let mut st = lock(&ep.state);
                if !st.retired
                    && (opening.is_some()
                        || !st
                            .h2
                            .iter()
                            .any(|c| !c.tx.is_closed() && c.streams.has_room(self.max_streams)))
                {
                    st.h2.push(h2.clone());
                }
            }
            drop(opening);
            // requests waiting for this endpoint can share it now
            self.waiters.wake();
            drop(pending);
            let request = self.breaker.try_request().map_err(ConnectError::Overflow)?;
            return match within(&per_try, h2.tx.send_request(req)).await? {
                Ok(resp) => {
                    let body = |b| UpstreamBody::stream(b, slot).holding(request);
                    Ok((reached(resp.map(body), remote), peer))
                }
                Err(e) => Err(Box::new(e)),
            };
        }
        let (tx, connection) = http1::Builder::new().handshake(conn).await?;
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
            drop(opened);
            waiters.wake();
        });
        drop(pending);
        drop(opening);
        let now = Instant::now();
        let mut fresh = Idle {
            tx,
            used: 1,
            since: now,
            opened: now,
            // (offered h2, got HTTP/1.1)
            h2_refused: !upgrade,
            peer: peer.clone(),
            remote,
        };
        let request = match self.breaker.try_request() {
            Ok(p) => p,
            Err(o) => {
                fresh.used = 0;
                ep.put_back(fresh);
                return Err(ConnectError::Overflow(o).into());
            }
        };
        let resp = within(&per_try, fresh.tx.send_request(req)).await??;
        let resp = self.lease(ep, fresh, resp).map(|b| b.holding(request));
        Ok((reached(resp, remote), peer))
    }

    /// Waits until the HTTP/2 connection being opened to `ep` is pooled or failed, or a
    /// short while.
    async fn wait_for_h2(&self, ep: &EndpointPool) {
        self.waiters.count.fetch_add(1, Ordering::SeqCst);
        let notified = self.waiters.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if ep.h2_opening.load(Ordering::SeqCst) {
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        self.waiters.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until a stream of one of `ep`'s HTTP/2 connections is free (a stream ends
    /// wakes the destination's waiters), or a short while.
    async fn wait_for_stream(&self, ep: &EndpointPool) {
        self.waiters.count.fetch_add(1, Ordering::SeqCst);
        let notified = self.waiters.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let room = lock(&ep.state)
            .h2
            .iter()
            .any(|c| !c.tx.is_closed() && c.streams.has_room(self.max_streams));
        if !room {
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        self.waiters.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until a connection of this destination is returned or closed, or a short while
    /// (a connection slot freed elsewhere is noticed on the next round).
    async fn wait_for_connection(&self, ep: &EndpointPool) {
        self.waiters.count.fetch_add(1, Ordering::AcqRel);
        let notified = self.waiters.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ready = !lock(&ep.state).idle.is_empty()
            || ep.open.load(Ordering::Acquire) == 0
            || self.breaker.in_use().0 < self.breaker.limits().max_connections;
        if !ready {
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
        self.waiters.count.fetch_sub(1, Ordering::AcqRel);
    }

    fn lease(
        &self,
        ep: &Arc<EndpointPool>,
        conn: Idle,
        resp: Response<Incoming>,
    ) -> Response<UpstreamBody> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // the connection now carries the upgraded stream (hyper hands its I/O to the
            // response's `OnUpgrade` once the dispatcher sees the sender gone): never pooled
            drop(conn);
            return resp.map(UpstreamBody::plain);
        }
        let max = self.max_requests_per_connection;
        let lease = Lease {
            reuse: max == 0 || conn.used < max,
            pool: Arc::clone(ep),
            conn: Some(conn),
        };
        resp.map(|inner| UpstreamBody {
            inner,
            lease: Some(lease),
            stream: None,
            request: None,
            ended: false,
        })
    }
}

/// What a request opening a connection holds.
struct Slots {
    /// The connection's `maxConnections` slot.
    permit: crate::pool::ConnectionPermit,
    /// The request's pending slot, given up once the connection is up.
    pending: Option<Permit>,
    /// The endpoint's mark of an HTTP/2 connection being opened for more streams, cleared
    /// once it is pooled (or failed).
    opening: Option<H2Opening>,
}

/// A route's `perTryTimeout` expired (see [`Upstream::send`]).
#[derive(Debug)]
pub(crate) struct PerTryTimeout;

impl std::fmt::Display for PerTryTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("per-try timeout")
    }
}

impl std::error::Error for PerTryTimeout {}

/// A route's `perTryTimeout` for one attempt: `limit`, from when a connection took the
/// request, or from when its body ended if it was still streaming in then (Envoy's
/// `setupPerTryTimeout` runs once the request is complete).
#[derive(Clone)]
pub(crate) struct PerTry {
    pub(crate) limit: Duration,
    pub(crate) after: Option<Arc<super::Ended>>,
}

impl PerTry {
    /// Sleeps until the timeout has expired.
    pub(crate) async fn expired(&self) {
        match &self.after {
            Some(ending) => {
                let end = ending.wait().await.max(tokio::time::Instant::now());
                tokio::time::sleep_until(end + self.limit).await;
            }
            None => tokio::time::sleep(self.limit).await,
        }
    }
}

/// `send`, cut off when the per-try timeout expires, if there is one.
pub(crate) async fn within<F: std::future::Future>(
    limit: &Option<PerTry>,
    send: F,
) -> Result<F::Output, PerTryTimeout> {
    match limit {
        Some(PerTry { limit, after: None }) => tokio::time::timeout(*limit, send)
            .await
            .map_err(|_| PerTryTimeout),
        Some(p) => {
            tokio::select! {
                biased;
                out = send => Ok(out),
                () = p.expired() => Err(PerTryTimeout),
            }
        }
        None => Ok(send.await),
    }
}

/// Marks an HTTP/2 connection being opened to an endpoint for more streams, until dropped
/// (pooled, or failed); the requests waiting for it are woken then.
struct H2Opening(Arc<EndpointPool>);

impl Drop for H2Opening {
    fn drop(&mut self) {
        self.0.h2_opening.store(false, Ordering::SeqCst);
        self.0.waiters.wake();
    }
}

/// An open stream of an HTTP/2 connection ([`Streams`]): counted until dropped, when the
/// requests waiting for a free stream are woken.
pub(crate) struct StreamSlot {
    streams: Arc<Streams>,
    waiters: Arc<Waiters>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams.end();
        self.waiters.wake();
    }
}

/// Counts a connection in its endpoint's `open` until dropped (connect failed, or the
/// connection task ended).
struct Opened(Arc<EndpointPool>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An HTTP/1.1 connection in use; it goes back to its pool when the response body has
/// ended, and is closed when the body is dropped half read.
struct Lease {
    /// False once `maxRequestsPerConnection` is reached: the connection closes after this
    /// response.
    reuse: bool,
    pool: Arc<EndpointPool>,
    conn: Option<Idle>,
}

impl Lease {
    fn release(&mut self) {
        // (a connection past `maxConnectionDuration` closes once its request is done)
        if let Some(mut c) = self
            .conn
            .take()
            .filter(|c| self.reuse && !self.pool.too_old(c.opened))
        {
            c.since = Instant::now();
            self.pool.pool_idle(c);
            self.pool.waiters.wake();
        }
    }
}

pin_project! {
    /// The response body of the mesh transport ([`MeshTransport`](super::MeshTransport)'s
    /// [`Transport::Body`](super::Transport::Body)): an HTTP/1.1 connection goes back to
    /// its endpoint's pool when the body has ended (read to its end, or dropped once it
    /// has), and is closed when the body is dropped earlier or fails. Read it to the end,
    /// or drop it, to free the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use mesh_tower::outbound::{BoxError, MeshTransport, Transport, UpstreamBody};
    ///
    /// fn is_body<B: Body<Data = Bytes, Error = BoxError> + Send + Sync + 'static>() {}
    /// is_body::<UpstreamBody>();
    /// // the type a transport-generic user sees for the mesh transport
    /// let _: fn(<MeshTransport as Transport>::Body) -> UpstreamBody = |b| b;
    /// ```
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        lease: Option<Lease>,
        // an HTTP/2 stream, counted until the body ends or is dropped
        stream: Option<StreamSlot>,
        // the request's `http2MaxRequests` slot, taken when a connection took the request
        // and held as long as its answer
        request: Option<Permit>,
        ended: bool,
    }

    impl PinnedDrop for UpstreamBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(lease) = this.lease.as_mut()
                && (*this.ended || this.inner.is_end_stream()) {
                    lease.release();
                }
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    fn plain(inner: Incoming) -> Self {
        UpstreamBody {
            inner,
            lease: None,
            stream: None,
            request: None,
            ended: false,
        }
    }

    /// The same body, holding the request's `http2MaxRequests` slot as long as it lives.
    fn holding(mut self, request: Permit) -> Self {
        self.request = Some(request);
        self
    }

    /// The body of an HTTP/2 stream, counted in its connection until the body ends.
    fn stream(inner: Incoming, slot: StreamSlot) -> Self {
        UpstreamBody {
            inner,
            lease: None,
            stream: Some(slot),
            request: None,
            ended: false,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.ended = true;
                if let Some(l) = this.lease.as_mut() {
                    l.release();
                }
                this.stream.take();
                this.request.take();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // the connection is broken: never reuse it
                this.lease.take();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
