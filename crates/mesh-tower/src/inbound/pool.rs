//! The circuit breakers of a sidecar's inbound cluster, between the sidecar and the
//! application, as istiod sets them ([`Snapshot::inbound_connection_pool`]: the Sidecar's
//! `ingress` listener for the port, its `inboundConnectionPool`, else the served service's
//! DestinationRule `connectionPool`; nothing on a port istiod sends through its
//! passthrough cluster).
//!
//! In-process there is no connection to the application; a request holds what a sidecar's
//! request to it would hold, from the moment it is handed to the application until its
//! response body ends (or is dropped), as Envoy's connection pools count them:
//!
//! - a connection, or a stream of one: when the sidecar would speak HTTP/1.1 to the
//!   application (a port declared `HTTP`, or an undeclared one called over HTTP/1.1), one
//!   of `tcp.maxConnections` connections, each carrying one request at a time; over
//!   HTTP/2 (`HTTP2`, `GRPC`, `GRPC-WEB` ports, or the caller's HTTP/2 on an undeclared
//!   one or with `http.useClientProtocol`), one of `maxConnections` ×
//!   `http.maxConcurrentStreams` streams (unlimited unless both are set). A request that
//!   finds none free waits, as one of at most `http.http1MaxPendingRequests` pending
//!   requests;
//! - then an active-request slot (`http.http2MaxRequests`), any protocol: a pending
//!   request does not count as active.
//!
//! Past a limit the request is answered as Envoy answers it: 503 `upstream connect error
//! or disconnect/reset before headers. reset reason: overflow`, `x-envoy-overloaded:
//! true`, response flag `UO` (a gRPC request: `grpc-status` 14). The authorization layer
//! decides first: a denied request takes no slot. The limits are read from the current
//! snapshot on the first request after each reload; counts carry over while the settings
//! stay the same. The other fields (`maxRequestsPerConnection`, `idleTimeout`,
//! `connectTimeout`, `maxRetries`, `tcpKeepalive`) concern the sidecar's connections to
//! the application, which do not exist here.
//!
//! On TCP ports (`MeshServer::serve_tcp`) a proxied connection holds one of
//! `tcp.maxConnections` while it is open; past it the connection is closed once accepted
//! and authorized, as Envoy's TCP proxy closes it when it cannot connect upstream.
//!
//! [`Snapshot::inbound_connection_pool`]: mesh_core::snapshot::Snapshot::inbound_connection_pool

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use mesh_core::model::ConnectionPoolSettings;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service, ServiceExt};

use super::ServedPort;
use crate::envoy::{is_grpc, LocalReply};
use crate::pool::{CircuitBreaker, Permit, PoolLimits, UNLIMITED};

/// How the sidecar's inbound cluster would speak to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// HTTP/2 (`HTTP2`, `GRPC`, `GRPC-WEB` ports): requests share connections.
    Http2,
    /// HTTP/1.1 (`HTTP` ports): a connection per request in flight.
    Http1,
    /// Undeclared: the caller's protocol (`use_downstream_protocol`).
    Downstream,
}

impl Upstream {
    /// As istiod's `setUpstreamProtocol` for an inbound cluster, then `useClientProtocol`.
    fn of(protocol: Option<&str>, use_client_protocol: bool) -> Upstream {
        let is = |names: &[&str]| {
            protocol.is_some_and(|p| names.iter().any(|n| p.eq_ignore_ascii_case(n)))
        };
        if use_client_protocol {
            Upstream::Downstream
        } else if is(&["HTTP2", "GRPC", "GRPC-WEB"]) {
            Upstream::Http2
        } else if is(&["HTTP", "HTTP_PROXY"]) {
            Upstream::Http1
        } else {
            Upstream::Downstream
        }
    }
}

/// The limits in force for one set of settings, with their counts.
#[derive(Debug)]
struct Limiter {
    settings: ConnectionPoolSettings,
    upstream: Upstream,
    breaker: CircuitBreaker,
    /// HTTP/1.1 to the application: `maxConnections` connections, one request each at a
    /// time (none: unlimited). Also the TCP proxy's connections.
    h1_slots: Option<Arc<Semaphore>>,
    /// HTTP/2 to the application: `maxConnections` connections of `maxConcurrentStreams`
    /// streams each (none: unlimited).
    h2_slots: Option<Arc<Semaphore>>,
}

impl Limiter {
    fn new(settings: &ConnectionPoolSettings, upstream: Upstream) -> Limiter {
        let tcp = settings.tcp.as_ref();
        let http = settings.http.as_ref();
        let limits = PoolLimits::from_istio(
            tcp.and_then(|t| t.max_connections).map(i64::from),
            http.and_then(|h| h.http1_max_pending_requests)
                .map(i64::from),
            http.and_then(|h| h.http2_max_requests).map(i64::from),
            None,
            None,
        );
        let slots =
            |n: u64| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS as u64) as usize));
        let connections =
            (limits.max_connections != UNLIMITED).then_some(u64::from(limits.max_connections));
        // istiod sets `max_concurrent_streams` from a positive `maxConcurrentStreams` only
        let streams = http
            .and_then(|h| h.max_concurrent_streams)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0);
        Limiter {
            settings: settings.clone(),
            upstream,
            breaker: CircuitBreaker::new(limits),
            h1_slots: connections.map(slots),
            h2_slots: connections
                .zip(streams)
                .map(|(c, s)| slots(c.saturating_mul(s))),
        }
    }

    /// The slots a request of `version` waits for, if any are limited.
    fn slots_for(&self, version: Version) -> Option<&Arc<Semaphore>> {
        let h2 = match self.upstream {
            Upstream::Http2 => true,
            Upstream::Http1 => false,
            Upstream::Downstream => version >= Version::HTTP_2,
        };
        if h2 {
            self.h2_slots.as_ref()
        } else {
            self.h1_slots.as_ref()
        }
    }
}

/// The limiter for the current snapshot (`None`: no limits), and the snapshot it was
/// resolved for (`None`: not yet).
#[derive(Debug)]
struct Current {
    generation: Option<u64>,
    limiter: Option<Arc<Limiter>>,
}

#[derive(Debug)]
struct State {
    served: Arc<ServedPort>,
    current: ArcSwap<Current>,
    /// Held while the limiter is resolved again, so that requests racing past a reload
    /// share one limiter (and its counts) rather than each making its own.
    resolving: std::sync::Mutex<()>,
}

impl State {
    /// The limiter in force now: resolved again on the first request after a reload.
    fn limiter(&self) -> Option<Arc<Limiter>> {
        let current = self.current.load();
        if current.generation == Some(self.served.mesh().generation()) {
            return current.limiter.clone();
        }
        // the generation counter moves just after the snapshot: resolved meanwhile?
        let snap = self.served.mesh().load();
        let generation = snap.generation();
        if current.generation == Some(generation) {
            return current.limiter.clone();
        }
        let _one_at_a_time = self
            .resolving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load();
        // resolved meanwhile, or already for a newer snapshot than this request's
        if current.generation.is_some_and(|g| g >= generation) {
            return current.limiter.clone();
        }
        let pool = self.served.settings(&snap);
        let upstream = Upstream::of(pool.protocol, pool.use_client_protocol);
        let limiter = pool.settings.map(|settings| match &current.limiter {
            // the same settings keep their counts
            Some(l) if l.settings == *settings && l.upstream == upstream => Arc::clone(l),
            _ => Arc::new(Limiter::new(settings, upstream)),
        });
        self.current.store(Arc::new(Current {
            generation: Some(generation),
            limiter: limiter.clone(),
        }));
        limiter
    }
}

impl State {
    /// Envoy's router's overflow answer, without `x-envoy-overloaded` when MeshConfig
    /// suppresses the router's own headers (`proxyHeaders.envoyDebugHeaders.disabled`), as
    /// istiod's inbound router is configured too.
    fn overflow_reply(&self, grpc: bool) -> Response<Full<Bytes>> {
        let mut reply = LocalReply::Overflow.to_response(grpc);
        if !self
            .served
            .mesh()
            .options()
            .proxy_headers
            .envoy_debug_headers
        {
            reply.headers_mut().remove("x-envoy-overloaded");
        }
        reply
    }
}

/// Applies a workload port's inbound connection pool to the application behind it (see the
/// module docs).
#[derive(Debug, Clone)]
pub(crate) struct InboundPoolLayer {
    state: Arc<State>,
}

impl InboundPoolLayer {
    /// For the workload port `served`.
    pub(crate) fn new(served: Arc<ServedPort>) -> InboundPoolLayer {
        InboundPoolLayer {
            state: Arc::new(State {
                served,
                current: ArcSwap::from_pointee(Current {
                    generation: None,
                    limiter: None,
                }),
                resolving: std::sync::Mutex::new(()),
            }),
        }
    }
}

impl InboundPoolLayer {
    /// A proxied TCP connection to the application (`MeshServer::serve_tcp`): one of
    /// `tcp.maxConnections`, held while it is open (`Ok(None)`: no limit); `Err` past it.
    pub(crate) fn admit_connection(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let Some(limiter) = self.state.limiter() else {
            return Ok(None);
        };
        match &limiter.h1_slots {
            None => Ok(None),
            Some(c) => Arc::clone(c).try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }
}

impl<S> Layer<S> for InboundPoolLayer {
    type Service = InboundPool<S>;

    fn layer(&self, inner: S) -> InboundPool<S> {
        InboundPool {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The service [`InboundPoolLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct InboundPool<S> {
    inner: S,
    state: Arc<State>,
}

/// What a request holds while the application has it.
#[derive(Debug)]
struct Hold {
    _request: Permit,
    _connection: Option<OwnedSemaphorePermit>,
}

/// A request waiting for a connection: then answered by the application (with what it
/// holds), or refused.
type Waiting<T, E> =
    Pin<Box<dyn Future<Output = Result<Result<(T, Hold), Response<Full<Bytes>>>, E>> + Send>>;

impl<S, ReqB, ResB> Service<Request<ReqB>> for InboundPool<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
{
    type Response = Response<Either<PooledBody<ResB>, Full<Bytes>>>;
    type Error = S::Error;
    type Future = InboundPoolFuture<S::Future, Response<ResB>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let Some(limiter) = self.state.limiter() else {
            return InboundPoolFuture::ready(self.inner.call(req), None);
        };
        let grpc = is_grpc(req.headers());
        let overflow = || InboundPoolFuture::overflow(self.state.overflow_reply(grpc));
        // Envoy's pools: a request waits (pending) for a connection, or a stream of one;
        // it counts as active (`http2MaxRequests`) once it has one
        let Some(slots) = limiter.slots_for(req.version()) else {
            return match limiter.breaker.try_request() {
                Ok(request) => InboundPoolFuture::ready(
                    self.inner.call(req),
                    Some(Hold {
                        _request: request,
                        _connection: None,
                    }),
                ),
                Err(_) => overflow(),
            };
        };
        if let Ok(conn) = Arc::clone(slots).try_acquire_owned() {
            return match limiter.breaker.try_request() {
                Ok(request) => InboundPoolFuture::ready(
                    self.inner.call(req),
                    Some(Hold {
                        _request: request,
                        _connection: Some(conn),
                    }),
                ),
                Err(_) => overflow(),
            };
        }
        // every one busy: wait as a pending request, if one more may
        let Ok(pending) = limiter.breaker.try_pending() else {
            return overflow();
        };
        let slots = Arc::clone(slots);
        let state = Arc::clone(&self.state);
        // the service was made ready for this call; a clone waits in its place
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        InboundPoolFuture::waiting(Box::pin(async move {
            let conn = slots
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            drop(pending);
            let Ok(request) = limiter.breaker.try_request() else {
                return Ok(Err(state.overflow_reply(grpc)));
            };
            let resp = inner.oneshot(req).await?;
            Ok(Ok((
                resp,
                Hold {
                    _request: request,
                    _connection: Some(conn),
                },
            )))
        }))
    }
}

pin_project! {
    /// The future of [`InboundPool`].
    #[project = FutProj]
    pub(crate) enum InboundPoolFuture<F, T, E> {
        /// Handed to the application.
        Ready { #[pin] fut: F, hold: Option<Hold> },
        /// Waiting for a connection, then handed to the application.
        Waiting { fut: Waiting<T, E> },
        /// Refused (a circuit breaker overflowed).
        Overflow { reply: Option<Response<Full<Bytes>>> },
    }
}

impl<F, T, E> InboundPoolFuture<F, T, E> {
    fn ready(fut: F, hold: Option<Hold>) -> Self {
        InboundPoolFuture::Ready { fut, hold }
    }

    fn waiting(fut: Waiting<T, E>) -> Self {
        InboundPoolFuture::Waiting { fut }
    }

    fn overflow(reply: Response<Full<Bytes>>) -> Self {
        InboundPoolFuture::Overflow { reply: Some(reply) }
    }
}

impl<F, ResB, E> Future for InboundPoolFuture<F, Response<ResB>, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<Either<PooledBody<ResB>, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (resp, hold) = match self.project() {
            FutProj::Ready { fut, hold } => (std::task::ready!(fut.poll(cx))?, hold.take()),
            FutProj::Waiting { fut } => match std::task::ready!(fut.as_mut().poll(cx))? {
                Ok((resp, hold)) => (resp, Some(hold)),
                Err(refused) => return Poll::Ready(Ok(refused.map(Either::Right))),
            },
            FutProj::Overflow { reply } => {
                let reply = reply.take().expect("polled after completion");
                return Poll::Ready(Ok(reply.map(Either::Right)));
            }
        };
        Poll::Ready(Ok(
            resp.map(|inner| Either::Left(PooledBody { inner, hold }))
        ))
    }
}

pin_project! {
    /// The application's response body, holding the request's slots until it ends.
    #[derive(Debug)]
    pub(crate) struct PooledBody<B> {
        #[pin]
        inner: B,
        hold: Option<Hold>,
    }
}

impl<B: Body> Body for PooledBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if this.hold.is_some() && !matches!(frame, Some(Ok(_))) {
            // the stream is over (ended, or failed): the slots are free again
            *this.hold = None;
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
