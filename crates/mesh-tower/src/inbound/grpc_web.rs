//! gRPC-Web on a mesh server's `GRPC-WEB` port, as the `grpc_web` filter istiod adds to a
//! sidecar's inbound listener for a service port of that protocol (see `crate::grpc_web`
//! for the translation and its placement in Envoy's filter chain).
//!
//! The port's protocol is found as the inbound connection pool finds it
//! ([`Snapshot::inbound_connection_pool`]): the Sidecar `ingress` listener's for the port,
//! else that of the port of [`MeshServerBuilder::service_host`](super::MeshServerBuilder::service_host)
//! whose target port (a named `targetPort` as this workload's endpoint names it) is the
//! server's. It is decided once per snapshot generation and kept in one atomic word: on
//! any other port a request costs two atomic loads and a comparison.
//!
//! The layer sits after authorization and before the inbound connection pool and the
//! application, as the filter sits after Envoy's RBAC filter and before the router.
//!
//! # Differences from Istio
//!
//! - A `-text` request body is read whole before the application gets it (decoded at once,
//!   so that bad base64 is Envoy's `400 Bad gRPC-web request, invalid base64 data.` before
//!   the application runs), up to [`MAX_TEXT_BODY`] (past it: 413); Envoy decodes it as it
//!   streams, without a limit. gRPC-Web clients send one message per call (no client
//!   streaming), and gRPC servers refuse messages over 4 MiB by default.
//! - The access log and the request byte counts see the decoded body of a `-text` request
//!   as the application reads it (the wire size when the caller sent a `content-length`).
//! - `istio_request_messages_total` and `istio_response_messages_total` are not counted for
//!   translated calls (Envoy's gRPC stats filter counts them after the translation).
//! - Istio's metrics report a translated call's `grpc_response_status` as `2` (UNKNOWN)
//!   whatever its trailers say (the filter moves them into the body before `istio.stats`
//!   reads them): we report the same, so dashboards agree.
//!
//! [`Snapshot::inbound_connection_pool`]: mesh_core::snapshot::Snapshot::inbound_connection_pool

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceExt};

use super::{ServedPort, ServerBody};
use crate::grpc_web::{refusal, Answer, WebBody, BAD_BASE64, MAX_TEXT_BODY};

/// How long reading a body ahead waits for the client's next bytes: for ever, as istiod
/// turns Envoy's `stream_idle_timeout` off (`StreamIdleTimeout = 0` on every connection
/// manager it builds); the connection's idle timeout and the client's own still apply.
const BODY_IDLE_TIMEOUT: Option<std::time::Duration> = None;

#[derive(Debug)]
struct State {
    served: Arc<ServedPort>,
    /// `0`: not resolved yet; else `(generation + 1) << 1 | on` for the snapshot it was
    /// resolved for.
    resolved: AtomicU64,
}

impl State {
    /// Whether the port is `GRPC-WEB` in the current snapshot.
    #[inline]
    fn on(&self) -> bool {
        let key = |generation: u64| generation.wrapping_add(1) << 1;
        let r = self.resolved.load(Ordering::Relaxed);
        if r & !1 == key(self.served.mesh().generation()) {
            return r & 1 == 1;
        }
        // the generation counter moves just after the snapshot: resolved meanwhile?
        let snap = self.served.mesh().load();
        let key = key(snap.generation());
        if r & !1 == key {
            return r & 1 == 1;
        }
        let on = self
            .served
            .settings(&snap)
            .protocol
            .is_some_and(|p| p.eq_ignore_ascii_case("GRPC-WEB"));
        // racing requests of one generation store the same word
        self.resolved.store(key | u64::from(on), Ordering::Relaxed);
        on
    }
}

/// Translates gRPC-Web on a `GRPC-WEB` port (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct GrpcWebLayer {
    state: Arc<State>,
}

impl GrpcWebLayer {
    /// For the workload port `served`.
    pub(crate) fn new(served: Arc<ServedPort>) -> GrpcWebLayer {
        GrpcWebLayer {
            state: Arc::new(State {
                served,
                resolved: AtomicU64::new(0),
            }),
        }
    }
}

impl<S> Layer<S> for GrpcWebLayer {
    type Service = GrpcWeb<S>;

    fn layer(&self, inner: S) -> GrpcWeb<S> {
        GrpcWeb {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The service [`GrpcWebLayer`] makes.
#[derive(Debug, Clone)]
pub(crate) struct GrpcWeb<S> {
    inner: S,
    state: Arc<State>,
}

/// The response body of [`GrpcWeb`]: the application's as it is, translated, or empty (a
/// refusal, its text in its headers).
pub(crate) type GrpcWebBody<B> = Either<B, Either<WebBody<B>, Empty<Bytes>>>;

type Reading<T, E> =
    Pin<Box<dyn Future<Output = Result<Result<T, Response<Empty<Bytes>>>, E>> + Send>>;

impl<S, ResB> Service<Request<ServerBody>> for GrpcWeb<S>
where
    S: Service<Request<ServerBody>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<GrpcWebBody<ResB>>;
    type Error = S::Error;
    type Future = GrpcWebFuture<S::Future, Response<ResB>, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ServerBody>) -> Self::Future {
        if !self.state.on() {
            return GrpcWebFuture::Pass {
                fut: self.inner.call(req),
            };
        }
        let (mut parts, body) = req.into_parts();
        let Some((answer, text)) = crate::grpc_web::request_headers(&mut parts.headers) else {
            return GrpcWebFuture::Pass {
                fut: self.inner.call(Request::from_parts(parts, body)),
            };
        };
        let req = Request::from_parts(parts, body);
        if !text {
            return GrpcWebFuture::Translated {
                fut: self.inner.call(req),
                answer,
            };
        }
        // the service was made ready for this call; a clone waits in its place
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        GrpcWebFuture::Reading {
            fut: Box::pin(async move {
                let mut req = req;
                if let Err(refused) = decode_text_body(&mut req, answer).await {
                    return Ok(Err(refused));
                }
                inner.oneshot(req).await.map(Ok)
            }),
            answer,
        }
    }
}

/// Reads a `-text` request body whole and hands it on decoded; Envoy's answer if it cannot.
async fn decode_text_body(
    req: &mut Request<ServerBody>,
    answer: Answer,
) -> Result<(), Response<Empty<Bytes>>> {
    let body = req.body_mut().inner_mut().inner_mut();
    let bad = || refusal(StatusCode::BAD_REQUEST, BAD_BASE64, answer);
    let text = match body
        .read_ahead(MAX_TEXT_BODY, false, BODY_IDLE_TIMEOUT)
        .await
    {
        Ok((text, _)) => text,
        Err(crate::observe::ReadAheadError::TooLarge) => {
            return Err(refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                answer,
            ))
        }
        Err(crate::observe::ReadAheadError::Idle) => {
            return Err(refusal(
                StatusCode::REQUEST_TIMEOUT,
                "stream timeout",
                answer,
            ))
        }
        Err(crate::observe::ReadAheadError::Read(e)) => {
            tracing::debug!(error = %e, "gRPC-Web text request body unreadable");
            return Err(bad());
        }
    };
    let decoded = crate::grpc_web::decode_text(&text).ok_or_else(bad)?;
    body.replace_ahead_data(Bytes::from(decoded));
    Ok(())
}

pin_project! {
    /// The future of [`GrpcWeb`].
    #[project = FutProj]
    pub(crate) enum GrpcWebFuture<F, T, E> {
        /// Not gRPC-Web, or not a `GRPC-WEB` port: the application's answer as it is.
        Pass { #[pin] fut: F },
        /// A binary gRPC-Web request, translated.
        Translated { #[pin] fut: F, answer: Answer },
        /// A text request: its body read and decoded, then handed on.
        Reading { fut: Reading<T, E>, answer: Answer },
    }
}

impl<F, ResB, E> Future for GrpcWebFuture<F, Response<ResB>, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<GrpcWebBody<ResB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (resp, answer) = match self.project() {
            FutProj::Pass { fut } => {
                let resp = std::task::ready!(fut.poll(cx))?;
                return Poll::Ready(Ok(resp.map(Either::Left)));
            }
            FutProj::Translated { fut, answer } => (std::task::ready!(fut.poll(cx))?, *answer),
            FutProj::Reading { fut, answer } => match std::task::ready!(fut.as_mut().poll(cx))? {
                Ok(resp) => (resp, *answer),
                Err(refused) => {
                    return Poll::Ready(Ok(refused.map(|b| Either::Right(Either::Right(b)))))
                }
            },
        };
        let resp = crate::grpc_web::response(resp, answer);
        Poll::Ready(Ok(resp.map(|b| match b {
            Either::Left(b) => Either::Left(b),
            Either::Right(web) => Either::Right(Either::Left(web)),
        })))
    }
}
