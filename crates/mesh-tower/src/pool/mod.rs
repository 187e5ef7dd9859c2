//! Connection-pool limits (DestinationRule `trafficPolicy.connectionPool`) as Envoy's
//! circuit breakers apply them: atomic counters per destination, RAII permits, and a 503
//! `UO` overflow answer (`x-envoy-overloaded: true`) when a limit is hit.
//!
//! | Istio field | Envoy | here |
//! | --- | --- | --- |
//! | `tcp.maxConnections` | `max_connections` | [`CircuitBreaker::try_connection`] |
//! | `http.http1MaxPendingRequests` | `max_pending_requests` | [`CircuitBreaker::try_pending`] |
//! | `http.http2MaxRequests` | `max_requests` (active requests, any protocol) | [`CircuitBreaker::try_request`] |
//! | `http.maxRetries` | `max_retries` (concurrent retries) | [`CircuitBreaker::try_retry`] |
//! | `http.maxRequestsPerConnection` | per connection | [`ConnectionPermit::start_request`] |
//! | `http.maxConcurrentStreams` | `http2_protocol_options.max_concurrent_streams` | [`PoolLimits::max_concurrent_streams`], per HTTP/2 connection |
//!
//! Defaults are Istio's: every limit 2^32−1 except `maxRequestsPerConnection` (0 =
//! unlimited). Zero counts as unset for the integer limits of a DestinationRule, as in
//! Istio ([`PoolLimits::from_istio`]); a [`PoolLimits`] built by hand takes its numbers as
//! they are (a `max_connections`, `max_pending_requests`, `max_requests` or `max_retries`
//! of 0 admits nothing; `max_requests_per_connection` 0 is unlimited).
//!
//! A request first takes a request permit, then (if no connection is free) a pending permit
//! while it waits; an overflow of either is the 503 above. An endpoint with no connection at
//! all opens one even past `maxConnections` (Envoy does, so that a request sent there never
//! waits behind other endpoints' idle connections). A retry that would exceed
//! `maxRetries` is simply not made (Envoy counts `upstream_rq_retry_overflow` and returns the
//! last response).
//!
//! ```
//! use mesh_tower::pool::{CircuitBreaker, PoolLimits};
//!
//! let cb = CircuitBreaker::new(PoolLimits { max_requests: 1, ..PoolLimits::default() });
//! let first = cb.try_request().unwrap();
//! let overflow = cb.try_request().unwrap_err();
//! assert_eq!(overflow.to_reply().status(), 503);
//! drop(first);
//! assert!(cb.try_request().is_ok());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::envoy::LocalReply;

/// Istio's default for every limit: 2^32−1.
///
/// # Examples
///
/// ```
/// use mesh_tower::pool::{PoolLimits, UNLIMITED};
///
/// assert_eq!(UNLIMITED, 4_294_967_295);
/// // Unset (or 0) in the DestinationRule.
/// assert_eq!(PoolLimits::from_istio(None, Some(0), None, None, None).max_pending_requests, UNLIMITED);
/// ```
pub const UNLIMITED: u32 = u32::MAX;

/// The limits of one destination's pool.
///
/// # Examples
///
/// ```
/// use mesh_tower::pool::{PoolLimits, UNLIMITED};
///
/// let limits = PoolLimits::default();
/// assert_eq!(limits.max_connections, UNLIMITED);
/// assert_eq!(limits.max_requests_per_connection, 0); // unlimited
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// `tcp.maxConnections`.
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`.
    pub max_pending_requests: u32,
    /// `http.http2MaxRequests`.
    pub max_requests: u32,
    /// `http.maxRetries`.
    pub max_retries: u32,
    /// `http.maxRequestsPerConnection` (0 = unlimited; 1 disables keep-alive).
    pub max_requests_per_connection: u32,
    /// `http.maxConcurrentStreams`: the streams one HTTP/2 connection carries at once
    /// before another connection is opened to the same endpoint (the server's own
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` applies too, whichever is smaller).
    pub max_concurrent_streams: u32,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: UNLIMITED,
            max_pending_requests: UNLIMITED,
            max_requests: UNLIMITED,
            max_retries: UNLIMITED,
            max_requests_per_connection: 0,
            max_concurrent_streams: UNLIMITED,
        }
    }
}

impl PoolLimits {
    /// Limits from Istio's optional integers: absent or 0 means the default.
    ///
    /// # Examples
    ///
    /// ```yaml
    /// connectionPool:
    ///   tcp: {maxConnections: 1}
    ///   http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
    /// ```
    ///
    /// ```
    /// use mesh_tower::pool::{PoolLimits, UNLIMITED};
    ///
    /// let limits = PoolLimits::from_istio(Some(1), Some(1), None, Some(0), Some(1));
    /// assert_eq!(limits.max_connections, 1);
    /// assert_eq!(limits.max_pending_requests, 1);
    /// assert_eq!(limits.max_requests, UNLIMITED);
    /// assert_eq!(limits.max_retries, UNLIMITED); // 0 counts as unset
    /// assert_eq!(limits.max_requests_per_connection, 1);
    /// ```
    pub fn from_istio(
        max_connections: Option<i64>,
        http1_max_pending_requests: Option<i64>,
        http2_max_requests: Option<i64>,
        max_retries: Option<i64>,
        max_requests_per_connection: Option<i64>,
    ) -> Self {
        let limit = |v: Option<i64>| match v {
            Some(n) if n > 0 => n.min(i64::from(u32::MAX)) as u32,
            _ => UNLIMITED,
        };
        PoolLimits {
            max_connections: limit(max_connections),
            max_pending_requests: limit(http1_max_pending_requests),
            max_requests: limit(http2_max_requests),
            max_retries: limit(max_retries),
            max_requests_per_connection: match max_requests_per_connection {
                Some(n) if n > 0 => n.min(i64::from(u32::MAX)) as u32,
                _ => 0,
            },
            max_concurrent_streams: UNLIMITED,
        }
    }
}

/// Which limit overflowed.
///
/// # Examples
///
/// ```
/// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
///
/// let cb = CircuitBreaker::new(PoolLimits { max_pending_requests: 1, ..PoolLimits::default() });
/// let _waiting = cb.try_pending().unwrap();
/// assert_eq!(cb.try_pending().unwrap_err().kind, OverflowKind::PendingRequests);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowKind {
    /// `maxConnections`.
    Connections,
    /// `http1MaxPendingRequests`.
    PendingRequests,
    /// `http2MaxRequests`.
    Requests,
    /// `maxRetries`.
    Retries,
}

/// A circuit breaker refused: answer with [`Overflow::to_reply`] (503, UO).
///
/// # Examples
///
/// ```
/// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
///
/// let cb = CircuitBreaker::new(PoolLimits { max_connections: 1, ..PoolLimits::default() });
/// let _conn = cb.try_connection().unwrap();
/// let overflow = cb.try_connection().unwrap_err();
/// assert_eq!((overflow.kind, overflow.limit), (OverflowKind::Connections, 1));
/// assert_eq!(overflow.to_string(), "circuit breaker overflow: maxConnections (1) reached");
///
/// let response = overflow.to_reply().to_response::<bytes::Bytes>(false);
/// assert_eq!(response.status(), 503);
/// assert_eq!(response.headers()["x-envoy-overloaded"], "true");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Overflow {
    /// The limit that was hit.
    pub kind: OverflowKind,
    /// Its value.
    pub limit: u32,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            OverflowKind::Connections => "maxConnections",
            OverflowKind::PendingRequests => "http1MaxPendingRequests",
            OverflowKind::Requests => "http2MaxRequests",
            OverflowKind::Retries => "maxRetries",
        };
        write!(
            f,
            "circuit breaker overflow: {name} ({}) reached",
            self.limit
        )
    }
}

impl Overflow {
    /// Envoy's answer: 503, `...reset reason: overflow`, UO, `x-envoy-overloaded: true`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::LocalReply;
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_requests: 1, ..PoolLimits::default() });
    /// let _active = cb.try_request().unwrap();
    /// let reply = cb.try_request().unwrap_err().to_reply();
    /// assert_eq!(reply, LocalReply::Overflow);
    /// assert_eq!(reply.flags().to_string(), "UO");
    /// assert_eq!(reply.body(), "upstream connect error or disconnect/reset before headers. reset reason: overflow");
    /// ```
    pub fn to_reply(&self) -> LocalReply {
        LocalReply::Overflow
    }
}

impl From<Overflow> for LocalReply {
    fn from(_: Overflow) -> Self {
        LocalReply::Overflow
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    overflows: AtomicU64,
}

/// The circuit breakers of one destination. Cheap to clone (shared counters).
///
/// # Examples
///
/// `http.maxRetries: 1`: a second concurrent retry is not made.
///
/// ```
/// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
///
/// let cb = CircuitBreaker::new(PoolLimits { max_retries: 1, ..PoolLimits::default() });
/// let shared = cb.clone(); // the same counters
/// let retry = cb.try_retry().unwrap();
/// assert!(shared.try_retry().is_err());
/// assert_eq!(cb.in_use(), (0, 0, 0, 1));
/// assert_eq!(cb.overflow_count(), 1);
/// drop(retry);
/// assert_eq!(shared.in_use(), (0, 0, 0, 0));
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    limits: PoolLimits,
    counters: Arc<Counters>,
}

/// Counts one unit of a resource until dropped.
///
/// # Examples
///
/// ```
/// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
///
/// let cb = CircuitBreaker::new(PoolLimits::default());
/// let permit = cb.try_request().unwrap();
/// assert_eq!(permit.kind(), OverflowKind::Requests);
/// assert_eq!(cb.in_use().2, 1);
/// drop(permit);
/// assert_eq!(cb.in_use().2, 0);
/// ```
#[derive(Debug)]
pub struct Permit {
    counters: Arc<Counters>,
    kind: OverflowKind,
}

impl Permit {
    /// Which resource this permit holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits::default());
    /// assert_eq!(cb.try_pending().unwrap().kind(), OverflowKind::PendingRequests);
    /// assert_eq!(cb.try_retry().unwrap().kind(), OverflowKind::Retries);
    /// ```
    pub fn kind(&self) -> OverflowKind {
        self.kind
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        counter(&self.counters, self.kind).fetch_sub(1, Ordering::AcqRel);
    }
}

fn counter(c: &Counters, kind: OverflowKind) -> &AtomicU32 {
    match kind {
        OverflowKind::Connections => &c.connections,
        OverflowKind::PendingRequests => &c.pending,
        OverflowKind::Requests => &c.requests,
        OverflowKind::Retries => &c.retries,
    }
}

/// A connection slot, also counting the requests made on that connection.
///
/// # Examples
///
/// `http.maxRequestsPerConnection: 2`:
///
/// ```
/// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
///
/// let cb = CircuitBreaker::new(PoolLimits { max_requests_per_connection: 2, ..PoolLimits::default() });
/// let conn = cb.try_connection().unwrap();
/// assert!(conn.start_request());
/// assert!(conn.reusable());
/// assert!(conn.start_request());
/// assert!(!conn.reusable()); // open a new connection for the next request
/// assert!(!conn.start_request());
/// assert_eq!(conn.requests(), 2);
/// ```
#[derive(Debug)]
pub struct ConnectionPermit {
    _permit: Permit,
    max_requests: u32,
    used: AtomicU32,
}

impl ConnectionPermit {
    /// Counts a request on this connection; `false` when `maxRequestsPerConnection` is
    /// reached (the connection must not be reused: open another one).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// // maxRequestsPerConnection: 1 disables keep-alive.
    /// let cb = CircuitBreaker::new(PoolLimits { max_requests_per_connection: 1, ..PoolLimits::default() });
    /// let conn = cb.try_connection().unwrap();
    /// assert!(conn.start_request());
    /// assert!(!conn.start_request());
    ///
    /// // Unset (0): any number of requests.
    /// let conn = CircuitBreaker::new(PoolLimits::default()).try_connection().unwrap();
    /// assert!((0..1000).all(|_| conn.start_request()));
    /// ```
    pub fn start_request(&self) -> bool {
        if self.max_requests == 0 {
            self.used.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.max_requests).then_some(u + 1)
            })
            .is_ok()
    }

    /// Whether the connection may carry another request (keep-alive).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_requests_per_connection: 1, ..PoolLimits::default() });
    /// let conn = cb.try_connection().unwrap();
    /// assert!(conn.reusable());
    /// conn.start_request();
    /// assert!(!conn.reusable());
    /// ```
    pub fn reusable(&self) -> bool {
        self.max_requests == 0 || self.used.load(Ordering::Acquire) < self.max_requests
    }

    /// Requests made on this connection so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let conn = CircuitBreaker::new(PoolLimits::default()).try_connection().unwrap();
    /// assert_eq!(conn.requests(), 0);
    /// conn.start_request();
    /// conn.start_request();
    /// assert_eq!(conn.requests(), 2);
    /// ```
    pub fn requests(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }
}

impl CircuitBreaker {
    /// Circuit breakers with these limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits::from_istio(Some(2), None, None, None, None));
    /// let _a = cb.try_connection().unwrap();
    /// let _b = cb.try_connection().unwrap();
    /// assert!(cb.try_connection().is_err());
    /// ```
    pub fn new(limits: PoolLimits) -> Self {
        CircuitBreaker {
            limits,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The limits.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let limits = PoolLimits { max_retries: 3, ..PoolLimits::default() };
    /// assert_eq!(CircuitBreaker::new(limits).limits(), limits);
    /// ```
    pub fn limits(&self) -> PoolLimits {
        self.limits
    }

    fn acquire(&self, kind: OverflowKind, limit: u32) -> Result<Permit, Overflow> {
        let c = counter(&self.counters, kind);
        match c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        }) {
            Ok(_) => Ok(Permit {
                counters: Arc::clone(&self.counters),
                kind,
            }),
            Err(_) => {
                self.counters.overflows.fetch_add(1, Ordering::Relaxed);
                Err(Overflow { kind, limit })
            }
        }
    }

    /// An active request (`http2MaxRequests`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_requests: 2, ..PoolLimits::default() });
    /// let permits: Vec<_> = (0..2).map(|_| cb.try_request().unwrap()).collect();
    /// let overflow = cb.try_request().unwrap_err();
    /// assert_eq!((overflow.kind, overflow.limit), (OverflowKind::Requests, 2));
    /// drop(permits);
    /// assert!(cb.try_request().is_ok());
    /// ```
    pub fn try_request(&self) -> Result<Permit, Overflow> {
        self.acquire(OverflowKind::Requests, self.limits.max_requests)
    }

    /// A request waiting for a connection (`http1MaxPendingRequests`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_pending_requests: 1, ..PoolLimits::default() });
    /// let waiting = cb.try_pending().unwrap();
    /// assert_eq!(cb.try_pending().unwrap_err().to_string(), "circuit breaker overflow: http1MaxPendingRequests (1) reached");
    /// drop(waiting); // got a connection
    /// assert!(cb.try_pending().is_ok());
    /// ```
    pub fn try_pending(&self) -> Result<Permit, Overflow> {
        self.acquire(
            OverflowKind::PendingRequests,
            self.limits.max_pending_requests,
        )
    }

    /// A retry in flight (`maxRetries`); on overflow, do not retry.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, OverflowKind, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_retries: 1, ..PoolLimits::default() });
    /// let _retry = cb.try_retry().unwrap();
    /// assert_eq!(cb.try_retry().unwrap_err().kind, OverflowKind::Retries);
    /// ```
    pub fn try_retry(&self) -> Result<Permit, Overflow> {
        self.acquire(OverflowKind::Retries, self.limits.max_retries)
    }

    /// A new connection (`maxConnections`), which also enforces
    /// `maxRequestsPerConnection`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_connections: 1, ..PoolLimits::default() });
    /// let conn = cb.try_connection().unwrap();
    /// assert_eq!(cb.in_use().0, 1);
    /// assert!(cb.try_connection().is_err());
    /// drop(conn); // closed
    /// assert_eq!(cb.in_use().0, 0);
    /// ```
    pub fn try_connection(&self) -> Result<ConnectionPermit, Overflow> {
        let permit = self.acquire(OverflowKind::Connections, self.limits.max_connections)?;
        Ok(ConnectionPermit {
            _permit: permit,
            max_requests: self.limits.max_requests_per_connection,
            used: AtomicU32::new(0),
        })
    }

    /// A connection slot taken even at `maxConnections` (the count goes past the limit):
    /// Envoy lets an endpoint with no connection open one anyway, so that requests queued
    /// for it are not stuck behind other endpoints' idle connections. The refused
    /// [`try_connection`](Self::try_connection) already counted the overflow.
    pub(crate) fn connection_past_limit(&self) -> ConnectionPermit {
        self.counters.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionPermit {
            _permit: Permit {
                counters: Arc::clone(&self.counters),
                kind: OverflowKind::Connections,
            },
            max_requests: self.limits.max_requests_per_connection,
            used: AtomicU32::new(0),
        }
    }

    /// Current counts: (connections, pending, requests, retries).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits::default());
    /// let _conn = cb.try_connection().unwrap();
    /// let _req = cb.try_request().unwrap();
    /// let _pending = cb.try_pending().unwrap();
    /// assert_eq!(cb.in_use(), (1, 1, 1, 0));
    /// ```
    pub fn in_use(&self) -> (u32, u32, u32, u32) {
        let c = &self.counters;
        (
            c.connections.load(Ordering::Relaxed),
            c.pending.load(Ordering::Relaxed),
            c.requests.load(Ordering::Relaxed),
            c.retries.load(Ordering::Relaxed),
        )
    }

    /// Overflows so far (Envoy's `upstream_rq_pending_overflow` + `..._overflow`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::pool::{CircuitBreaker, PoolLimits};
    ///
    /// let cb = CircuitBreaker::new(PoolLimits { max_requests: 1, max_pending_requests: 1, ..PoolLimits::default() });
    /// let _req = cb.try_request().unwrap();
    /// let _pending = cb.try_pending().unwrap();
    /// assert!(cb.try_request().is_err());
    /// assert!(cb.try_pending().is_err());
    /// assert_eq!(cb.overflow_count(), 2);
    /// ```
    pub fn overflow_count(&self) -> u64 {
        self.counters.overflows.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn limits_from_istio_table() {
        let cases = [
            (None, UNLIMITED),
            (Some(0), UNLIMITED),
            (Some(-1), UNLIMITED),
            (Some(1), 1),
            (Some(1 << 40), u32::MAX),
        ];
        for (v, want) in cases {
            let l = PoolLimits::from_istio(v, v, v, v, None);
            assert_eq!(
                (
                    l.max_connections,
                    l.max_pending_requests,
                    l.max_requests,
                    l.max_retries
                ),
                (want, want, want, want),
                "{v:?}"
            );
        }
        assert_eq!(
            PoolLimits::from_istio(None, None, None, None, Some(0)).max_requests_per_connection,
            0
        );
        assert_eq!(
            PoolLimits::from_istio(None, None, None, None, Some(1)).max_requests_per_connection,
            1
        );
    }

    #[test]
    fn each_limit_overflows_and_recovers() {
        type Acquire = fn(&CircuitBreaker) -> Result<(), Overflow>;
        let cases: [(OverflowKind, PoolLimits, Acquire); 4] = [
            (
                OverflowKind::Requests,
                PoolLimits {
                    max_requests: 2,
                    ..Default::default()
                },
                |cb| cb.try_request().map(std::mem::forget),
            ),
            (
                OverflowKind::PendingRequests,
                PoolLimits {
                    max_pending_requests: 2,
                    ..Default::default()
                },
                |cb| cb.try_pending().map(std::mem::forget),
            ),
            (
                OverflowKind::Retries,
                PoolLimits {
                    max_retries: 2,
                    ..Default::default()
                },
                |cb| cb.try_retry().map(std::mem::forget),
            ),
            (
                OverflowKind::Connections,
                PoolLimits {
                    max_connections: 2,
                    ..Default::default()
                },
                |cb| cb.try_connection().map(std::mem::forget),
            ),
        ];
        for (kind, limits, acquire) in cases {
            let cb = CircuitBreaker::new(limits);
            acquire(&cb).unwrap();
            acquire(&cb).unwrap();
            let err = acquire(&cb).unwrap_err();
            assert_eq!(err.kind, kind);
            assert_eq!(err.limit, 2);
            assert_eq!(cb.overflow_count(), 1);
        }
        // RAII: dropping a permit frees the slot.
        let cb = CircuitBreaker::new(PoolLimits {
            max_requests: 1,
            ..Default::default()
        });
        let p = cb.try_request().unwrap();
        assert_eq!(cb.in_use().2, 1);
        assert!(cb.try_request().is_err());
        drop(p);
        assert_eq!(cb.in_use().2, 0);
        assert!(cb.try_request().is_ok());
    }

    #[test]
    fn requests_per_connection() {
        let cb = CircuitBreaker::new(PoolLimits {
            max_requests_per_connection: 2,
            ..Default::default()
        });
        let c = cb.try_connection().unwrap();
        assert!(c.start_request());
        assert!(c.reusable());
        assert!(c.start_request());
        assert!(!c.reusable());
        assert!(!c.start_request());
        assert_eq!(c.requests(), 2);
        let unlimited = CircuitBreaker::new(PoolLimits::default())
            .try_connection()
            .unwrap();
        for _ in 0..1000 {
            assert!(unlimited.start_request());
        }
        assert!(unlimited.reusable());
    }

    #[test]
    fn overflow_reply_is_envoys() {
        let cb = CircuitBreaker::new(PoolLimits {
            max_pending_requests: 0,
            ..Default::default()
        });
        let err = cb.try_pending().unwrap_err();
        assert!(err.to_string().contains("http1MaxPendingRequests"));
        let resp: http::Response<Bytes> = LocalReply::from(err).to_response(false);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["x-envoy-overloaded"], "true");
        assert_eq!(
            resp.extensions()
                .get::<crate::envoy::ResponseFlags>()
                .unwrap()
                .to_string(),
            "UO"
        );
        assert_eq!(
            resp.body().as_ref(),
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow"
        );
    }

    #[test]
    fn concurrent_acquire_never_exceeds_limit() {
        let cb = CircuitBreaker::new(PoolLimits {
            max_requests: 10,
            ..Default::default()
        });
        let max_seen = Arc::new(AtomicU32::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let cb = cb.clone();
                let max_seen = Arc::clone(&max_seen);
                s.spawn(move || {
                    for _ in 0..10_000 {
                        if let Ok(p) = cb.try_request() {
                            max_seen.fetch_max(cb.in_use().2, Ordering::Relaxed);
                            drop(p);
                        }
                    }
                });
            }
        });
        assert!(max_seen.load(Ordering::Relaxed) <= 10);
        assert_eq!(cb.in_use().2, 0);
    }
}
