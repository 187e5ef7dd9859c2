//! The downstream idle timeout of Envoy's connection manager, for the HTTP connections
//! mesh servers and gateways accept.
//!
//! Envoy closes a downstream connection that has had no active stream for its
//! `common_http_protocol_options.idle_timeout`: one hour by default, or what istiod sets from
//! the proxy's `ISTIO_META_IDLE_TIMEOUT` (MeshConfig `defaultConfig.proxyMetadata` here,
//! [`MeshOptions::idle_timeout`](mesh_core::names::MeshOptions::idle_timeout)). A request
//! is active from the moment hyper hands it to the connection's service until its response
//! body has been sent or dropped, so a long download or a slow handler keeps its
//! connection, and an idle keep-alive connection (or one that never sent a request) is
//! closed ([`end_idle`]): HTTP/1.1 after Envoy's drain window, in which a request is still
//! answered, with `Connection: close`; HTTP/2 with GOAWAY; one that never sent a request at
//! once.
//!
//! The request path pays two counter increments, a flag's load and an `Arc` count per
//! request;
//! the timer runs in the connection's own task, waking every eighth of the timeout to look
//! at the counters (no clock read per request). The connection closes between the timeout
//! and an eighth more after its last request ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use pin_project_lite::pin_project;

/// How long a connection closed for idleness has to end after it was asked to (HTTP/2:
/// after its GOAWAY, which hyper ends once the client answers its ping; HTTP/1.1: the
/// window in which a request is still answered, with `Connection: close`): Envoy's
/// connection manager `drain_timeout` default. A peer that never answers is not waited for
/// longer.
pub(crate) const IDLE_DRAIN: Duration = Duration::from_secs(5);

/// A connection's request counters: how many requests its service was handed, and how many
/// of those have ended (their response body sent or dropped, or no response at all).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    started: AtomicU64,
    ended: AtomicU64,
    /// The connection has carried an HTTP/1.x request (so it is an HTTP/1.1 connection).
    http1: AtomicBool,
    /// Draining for idleness: responses say `Connection: close`.
    draining: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        Arc::new(Activity::default())
    }

    /// Completes once the connection has had no active request for `timeout` (never, for
    /// a zero timeout): its caller then closes the connection.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        let tick = (timeout / 8).max(Duration::from_millis(1));
        // (the requests started when the connection was first seen idle, and when)
        let mut idle_since: Option<(u64, tokio::time::Instant)> = None;
        loop {
            // `ended` first: a request that starts between the two loads is seen as started
            let ended = self.ended.load(Ordering::Acquire);
            let started = self.started.load(Ordering::Acquire);
            let now = tokio::time::Instant::now();
            idle_since = match idle_since {
                Some((seen, since)) if seen == started && ended == started => {
                    if now.duration_since(since) >= timeout {
                        return;
                    }
                    Some((seen, since))
                }
                _ => (ended == started).then_some((started, now)),
            };
            let wake = match idle_since {
                Some((_, since)) => (since + timeout).min(now + tick),
                None => now + tick,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// Ends a connection found idle ([`Activity::idle_for`]), as Envoy's connection manager
/// does on its idle timeout (`onIdleTimeout`, `startDrainSequence`): an HTTP/1.1 connection
/// drains for [`IDLE_DRAIN`], answering a request that comes in that window with
/// `Connection: close` (hyper then closes it after the response), and is closed at the
/// window's end, or once a request that came in it has been answered (as Envoy closes once
/// no stream is active); an HTTP/2 one is sent GOAWAY (hyper's graceful shutdown) and given
/// [`IDLE_DRAIN`] to end; one that never carried a request is closed at once (Envoy has no
/// codec for it yet). `shutdown` is the connection's graceful shutdown; `stop` the
/// server's: it ends an HTTP/1.1 connection's drain window at once (the server's own drain
/// bounds the rest).
pub(crate) async fn end_idle<C, E>(
    activity: &Activity,
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    stop: impl Future<Output = ()>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    if activity.http1.load(Ordering::Acquire) {
        activity.draining.store(true, Ordering::Release);
        tokio::select! {
            ended = conn.as_mut() => return ended,
            () = tokio::time::sleep(IDLE_DRAIN) => {}
            () = stop => {}
        }
        // (a request that came in the window is answered before hyper closes)
        shutdown(conn.as_mut());
        return conn.await;
    }
    shutdown(conn.as_mut());
    tokio::time::timeout(IDLE_DRAIN, conn)
        .await
        .unwrap_or(Ok(()))
}

/// Counts the requests of hyper service `S` into an [`Activity`].
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

/// A request of the connection, active until dropped.
struct Active(Arc<Activity>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.ended.fetch_add(1, Ordering::Release);
    }
}

impl<S, R, B> hyper::service::Service<Request<R>> for Tracked<S>
where
    S: hyper::service::Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<R>) -> Self::Future {
        self.activity.started.fetch_add(1, Ordering::Release);
        if req.version() < Version::HTTP_2 && !self.activity.http1.load(Ordering::Relaxed) {
            self.activity.http1.store(true, Ordering::Release);
        }
        let active = Active(Arc::clone(&self.activity));
        TrackedFuture {
            inner: self.inner.call(req),
            active: Some(active),
        }
    }
}

pin_project! {
    /// The answer of [`Tracked`]: the request stays active in its body.
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        active: Option<Active>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = std::task::ready!(this.inner.poll(cx))?;
        let active = this.active.take();
        if active
            .as_ref()
            .is_some_and(|a| a.0.draining.load(Ordering::Acquire))
            && resp.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            // draining for idleness (HTTP/1.1 only): the last response of the connection
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(resp.map(|inner| TrackedBody {
            inner,
            _active: active,
        })))
    }
}

pin_project! {
    /// A response body whose request is active until the body is dropped (hyper drops it
    /// once it has written its end, or when the connection goes).
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        _active: Option<Active>,
    }
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_the_last_request_ended() {
        let activity = Activity::new();
        let t = Duration::from_secs(80);
        let start = tokio::time::Instant::now();
        // a request active for 200 s, then the connection idle
        activity.started.fetch_add(1, Ordering::Release);
        let ends = {
            let a = Arc::clone(&activity);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(200)).await;
                drop(Active(a));
            })
        };
        activity.idle_for(t).await;
        let closed = start.elapsed();
        ends.await.unwrap();
        assert!(
            closed >= Duration::from_secs(280) && closed <= Duration::from_secs(290),
            "closed after {closed:?}: the timeout counts from the end of the last request, an eighth late at most"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_restarts_the_count() {
        let activity = Activity::new();
        let t = Duration::from_secs(80);
        let start = tokio::time::Instant::now();
        let a = Arc::clone(&activity);
        tokio::spawn(async move {
            // a short request at 60 s: idle again from then
            tokio::time::sleep(Duration::from_secs(60)).await;
            a.started.fetch_add(1, Ordering::Release);
            drop(Active(a));
        });
        activity.idle_for(t).await;
        let closed = start.elapsed();
        assert!(
            closed >= Duration::from_secs(140) && closed <= Duration::from_secs(150),
            "closed after {closed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn zero_never_times_out() {
        let activity = Activity::new();
        let r = tokio::time::timeout(
            Duration::from_secs(100_000),
            activity.idle_for(Duration::ZERO),
        )
        .await;
        assert!(r.is_err());
    }
}
