//! What the inbound listener's HTTP connection manager does to a request before any filter,
//! as Istio configures a sidecar's inbound listener:
//!
//! - `x-forwarded-client-cert`: `forward_client_cert_details: APPEND_FORWARD` with
//!   `set_current_client_cert_details {subject, uri, dns}` (istio
//!   `buildSidecarInboundHTTPOpts`, `ForwardClientCertDetails` from the proxy's
//!   `GetProxyHeaders`: MeshConfig `defaultConfig.proxyHeaders.forwardedClientCert`,
//!   APPEND_FORWARD by default; the other modes as the gateway applies them). Envoy
//!   (`ConnectionManagerUtility::mutateXfccRequestHeader`) removes the header on a
//!   connection without a client certificate (plaintext under PERMISSIVE or DISABLE), and on
//!   mTLS appends one element, `,`-separated, after what the caller sent:
//!   `By=<our URI SAN>;Hash=<sha256 hex of the peer's leaf DER>;Subject="<dn>";URI=<peer URI
//!   SAN>;DNS=<peer DNS SAN>` (each `By`, `URI` and `DNS` once per SAN; `URI=` alone when the
//!   peer has none; no `DNS` when it has none). The element is the gateway's
//!   (`gateway/xfcc.rs`, SANITIZE_SET with `cert` too) without its `Cert`.
//! - `x-forwarded-proto`: written when absent, from the connection (`https` over mTLS,
//!   `http` in plaintext), a caller's kept (`mutateRequestHeaders`: the inbound listener
//!   has no `use_remote_address`). A mesh client or sidecar caller has written `http`.
//! - Envoy's control headers (`x-envoy-retry-on`, `x-envoy-upstream-rq-timeout-ms`,
//!   `x-envoy-expected-rq-timeout-ms`, `x-envoy-internal`, ...): removed, as the inbound
//!   listener (no `use_remote_address`, no X-Forwarded-For) takes every request for
//!   external (`cleanInternalHeaders`).
//! - `grpc-timeout`: Istio's inbound route has `max_stream_duration` with
//!   `grpc_timeout_header_max: 0`, so Envoy's connection manager
//!   (`refreshDurationTimeout`) bounds the stream of a request carrying one by it
//!   (uncapped; absent or malformed: no bound; `0`: already passed), and a gRPC application sees it
//!   rewritten in Envoy's form (`1S` as `1000m`). When it passes before the answer began:
//!   504 `downstream duration timeout` (gRPC: `DEADLINE_EXCEEDED`), details
//!   `max_duration_timeout`; after, the stream is reset.
//! - HTTP/1.0 (and 0.9): Envoy's HTTP/1 codec refuses it unless `accept_http_10` is set,
//!   which Istio leaves off unless the proxy's `ISTIO_META_HTTP10` is `1` (here MeshConfig's
//!   `defaultConfig.proxyMetadata`; then the request is served): `426 Upgrade
//!   Required` with body `Upgrade Required` (`ServerConnectionImpl::checkProtocolVersion`,
//!   `sendProtocolError`, details `low_version`), and the connection closes (a codec
//!   error).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, SERVER};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::gateway::xfcc as gateway_xfcc;
use mesh_core::meshconfig::ForwardClientCertDetails;

/// The `By` keys of this server's XFCC elements: the URI SANs of its own certificate
/// (leaf, DER); none when it cannot be read.
pub(super) fn local_uri_sans(leaf: &[u8]) -> Vec<String> {
    gateway_xfcc::uri_sans(leaf)
}

/// The XFCC element a sidecar's inbound listener appends for a peer certificate (leaf,
/// DER): `By`, `Hash`, `Subject`, `URI`, `DNS` (no `Cert`). `None` if the certificate
/// cannot be parsed (it was verified in the handshake, so that is not expected; the
/// caller's XFCC is then removed, failing closed).
pub(super) fn client_cert_details(by: &[String], leaf: &[u8]) -> Option<HeaderValue> {
    // the gateway's element without the PEM; built once per connection
    gateway_xfcc::header_value(by, leaf, false)
}

/// Per connection: applies the mesh's `proxyHeaders.forwardedClientCert` (APPEND_FORWARD
/// by default) with the connection's element to every request, removes Envoy's control
/// headers ([`crate::envoy::CONTROL_HEADERS`]) and writes a missing `x-forwarded-proto`,
/// before the stack (access log, authorization, the application) sees it.
#[derive(Clone, Debug)]
pub(super) struct ForwardClientCert<S> {
    inner: S,
    mode: ForwardClientCertDetails,
    details: Option<HeaderValue>,
    /// The connection's `x-forwarded-proto` (`https` over TLS).
    proto: HeaderValue,
}

impl<S> ForwardClientCert<S> {
    pub(super) fn new(
        inner: S,
        mode: ForwardClientCertDetails,
        details: Option<HeaderValue>,
        tls: bool,
    ) -> Self {
        ForwardClientCert {
            inner,
            mode,
            details,
            proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
        }
    }
}

impl<S, B> Service<Request<B>> for ForwardClientCert<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        gateway_xfcc::mutate(req.headers_mut(), self.mode, self.details.as_ref());
        // the inbound listener, too, takes a request for external (no `use_remote_address`,
        // no X-Forwarded-For) and cleans Envoy's control headers before the application
        crate::envoy::clean_control_headers(req.headers_mut());
        // x-forwarded-proto when the caller sent none (a sidecar's caller writes `http`),
        // from the connection, as the connection manager does without `use_remote_address`
        req.headers_mut()
            .entry(crate::gateway::X_FORWARDED_PROTO)
            .or_insert_with(|| self.proto.clone());
        self.inner.call(req)
    }
}

/// Envoy's `426 Upgrade Required` for HTTP/1.0 and 0.9 requests (`accept_http_10` off, as
/// Istio configures it): DPE, details `low_version`, `connection: close`.
fn upgrade_required<B>() -> Response<Either<B, Full<Bytes>>> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
        b"Upgrade Required",
    ))));
    *r.status_mut() = StatusCode::UPGRADE_REQUIRED;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // a codec error ends the connection
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    r.extensions_mut()
        .insert(crate::envoy::ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR);
    r.extensions_mut()
        .insert(crate::envoy::ResponseCodeDetails("low_version".into()));
    r
}

/// Envoy's connection manager on a request without `Host` (HTTP/1.1) or `:authority`
/// (HTTP/2): 400, empty body (in gRPC form for gRPC), details `missing_host_header`,
/// before any filter. An empty `Host` is a host.
pub(crate) fn missing_host<B, R>(
    req: &Request<B>,
    make_body: impl FnOnce(Bytes) -> R,
) -> Option<Response<R>> {
    if req.uri().authority().is_some() || req.headers().contains_key(http::header::HOST) {
        return None;
    }
    tracing::debug!("request without a host: 400");
    let mut r = crate::envoy::LocalReply::MissingHost
        .to_response_with(crate::envoy::is_grpc(req.headers()), make_body);
    r.extensions_mut().insert(crate::envoy::ResponseCodeDetails(
        "missing_host_header".into(),
    ));
    Some(r)
}

/// What the inbound connection manager does around the filters: refuses HTTP/1.0 and 0.9
/// requests as Envoy's HTTP/1 codec does by default, and bounds a request carrying a
/// `grpc-timeout` by it (see the module docs). Inside the access log, which logs both
/// (`426` `DPE`; `504` `max_duration_timeout`), as Envoy's does.
/// Every response, local replies too, gets the connection manager's `server` header
/// (`server`: istiod's `istio-envoy` with Envoy's OVERWRITE; `None` for MeshConfig
/// `proxyHeaders.server.disabled`, PASS_THROUGH).
#[derive(Clone, Debug, Default)]
pub(super) struct HcmLayer {
    server: Option<HeaderValue>,
    accept_http_10: bool,
}

impl HcmLayer {
    /// `accept_http_10`: MeshConfig's `ISTIO_META_HTTP10` (Envoy's `accept_http_10`).
    pub(super) fn new(server: Option<HeaderValue>, accept_http_10: bool) -> Self {
        HcmLayer {
            server,
            accept_http_10,
        }
    }
}

impl<S> Layer<S> for HcmLayer {
    type Service = Hcm<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Hcm {
            inner,
            server: self.server.clone(),
            accept_http_10: self.accept_http_10,
        }
    }
}

/// The service of [`HcmLayer`].
#[derive(Clone, Debug)]
pub(super) struct Hcm<S> {
    inner: S,
    server: Option<HeaderValue>,
    accept_http_10: bool,
}

impl<S, B, ResB> Service<Request<B>> for Hcm<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<Either<StreamDeadline<ResB>, Full<Bytes>>>;
    type Error = S::Error;
    type Future = HcmFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if req.version() < http::Version::HTTP_11 && !self.accept_http_10 {
            tracing::debug!(version = ?req.version(), "HTTP/1.0 refused: 426 Upgrade Required");
            let mut response = upgrade_required();
            if let Some(v) = &self.server {
                response.headers_mut().insert(SERVER, v.clone());
            }
            return HcmFuture::Refused {
                response: Some(response),
            };
        }
        if let Some(mut response) = missing_host(&req, |b| Either::Right(Full::new(b))) {
            if let Some(v) = &self.server {
                response.headers_mut().insert(SERVER, v.clone());
            }
            return HcmFuture::Refused {
                response: Some(response),
            };
        }
        // an upgrade Istio does not configure (only `websocket`; `h2c` is dropped below):
        // Envoy's 403 `upgrade_failed`, and the connection closes (an upgrade's payload
        // could smuggle a request)
        if crate::outbound::upgrade_of(req.headers())
            == Some(crate::outbound::UpgradeRequest::Other)
        {
            tracing::debug!("upgrade other than websocket: 403");
            let mut response = crate::outbound::upgrade_failed::<Full<Bytes>>().map(Either::Right);
            let h = response.headers_mut();
            h.insert(CONNECTION, HeaderValue::from_static("close"));
            if let Some(v) = &self.server {
                h.insert(SERVER, v.clone());
            }
            return HcmFuture::Refused {
                response: Some(response),
            };
        }
        crate::envoy::strip_hop_by_hop(req.headers_mut());
        crate::envoy::absolute_form(&mut req, true);
        // Istio's inbound route: `max_stream_duration` with `grpc_timeout_header_max: 0`, so
        // Envoy's connection manager (`refreshDurationTimeout`) bounds the stream by the
        // request's `grpc-timeout` (uncapped; absent or malformed: no bound; 0: a timer of
        // 0, which fires at once) and, for a gRPC request, writes it back in its own form
        // for the application
        let limit = crate::envoy::grpc_timeout(req.headers());
        let grpc = limit.is_some() && crate::envoy::is_grpc(req.headers());
        if limit == Some(std::time::Duration::ZERO) {
            // the timer of 0 fires before the application could answer
            let reply = crate::envoy::LocalReply::MaxDurationTimeout;
            let mut r = reply.to_response_with(grpc, |b| Either::Right(Full::new(b)));
            if let Some(v) = self.server.clone() {
                r.headers_mut().insert(SERVER, v);
            }
            return HcmFuture::Refused { response: Some(r) };
        }
        if grpc {
            // (Envoy's `toGrpcTimeout`, as the router writes a deadline upstream)
            let deadline = crate::envoy::Timeouts {
                global: limit,
                per_try: None,
            };
            deadline.write_headers(std::time::Duration::ZERO, true, false, req.headers_mut());
        }
        HcmFuture::Inner {
            fut: self.inner.call(req),
            deadline: limit.map(|d| Box::pin(tokio::time::sleep(d))),
            grpc,
            server: self.server.clone(),
        }
    }
}

pin_project! {
    /// The response future of [`Hcm`]: the inner service's (cut by the stream's deadline),
    /// or the 426.
    #[project = HcmProj]
    pub(super) enum HcmFuture<F, ResB> {
        Inner {
            #[pin]
            fut: F,
            deadline: Option<Pin<Box<tokio::time::Sleep>>>,
            grpc: bool,
            server: Option<HeaderValue>,
        },
        Refused { response: Option<Response<Either<StreamDeadline<ResB>, Full<Bytes>>>> },
    }
}

impl<F, ResB> std::fmt::Debug for HcmFuture<F, ResB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HcmFuture")
    }
}

impl<F, ResB, E> Future for HcmFuture<F, ResB>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<Either<StreamDeadline<ResB>, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HcmProj::Inner {
                fut,
                deadline,
                grpc,
                server,
            } => {
                if let Poll::Ready(r) = fut.poll(cx) {
                    // what is left of the stream's time bounds the body
                    let deadline = deadline.take();
                    return Poll::Ready(r.map(|mut r| {
                        if let Some(v) = server.take() {
                            r.headers_mut().insert(SERVER, v);
                        }
                        r.map(|inner| Either::Left(StreamDeadline { inner, deadline }))
                    }));
                }
                match deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                    // Envoy's `onStreamMaxDurationReached` before the answer began: its
                    // local reply (504 even while the request is still being received,
                    // where Envoy says 408; a gRPC caller sees DEADLINE_EXCEEDED either way)
                    Some(Poll::Ready(())) => {
                        deadline.take();
                        let reply = crate::envoy::LocalReply::MaxDurationTimeout;
                        let mut r = reply.to_response_with(*grpc, |b| Either::Right(Full::new(b)));
                        if let Some(v) = server.take() {
                            r.headers_mut().insert(SERVER, v);
                        }
                        Poll::Ready(Ok(r))
                    }
                    _ => Poll::Pending,
                }
            }
            HcmProj::Refused { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => panic!("HcmFuture polled after completion"),
            },
        }
    }
}

pin_project! {
    /// A response body ended with an error (the stream reset, as Envoy resets a stream whose
    /// answer has begun) if it is still going when the request's stream duration is over.
    pub(super) struct StreamDeadline<B> {
        #[pin]
        inner: B,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<B> http_body::Body for StreamDeadline<B>
where
    B: http_body::Body,
    B::Error: Into<super::BoxError>,
{
    type Data = B::Data;
    type Error = super::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                this.deadline.take();
                Poll::Ready(Some(Err("downstream duration timeout".into())))
            }
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::xfcc::XFCC;
    use http::HeaderMap;

    fn xfcc(h: &HeaderMap) -> Vec<&str> {
        h.get_all(XFCC)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn append_forward_as_envoy() {
        let ours = HeaderValue::from_static("By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b");
        // (incoming values, result)
        let cases: [(&[&str], &str); 4] = [
            (&[], "By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b"),
            (
                &["URI=x"],
                "URI=x,By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b",
            ),
            // a repeated header joined with `,`, empty values skipped (appendToHeader)
            (
                &["URI=x", "", "URI=y"],
                "URI=x,URI=y,By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b",
            ),
            (&[""], "By=spiffe://a;Hash=00;Subject=\"\";URI=spiffe://b"),
        ];
        for (incoming, want) in cases {
            let mut h = HeaderMap::new();
            for v in incoming {
                h.append(XFCC, HeaderValue::from_str(v).unwrap());
            }
            gateway_xfcc::mutate(&mut h, ForwardClientCertDetails::AppendForward, Some(&ours));
            assert_eq!(xfcc(&h), [want], "{incoming:?}");
        }
        // plaintext: removed, every value
        let mut h = HeaderMap::new();
        h.append(XFCC, HeaderValue::from_static("URI=spiffe://evil"));
        h.append(XFCC, HeaderValue::from_static("URI=spiffe://evil2"));
        gateway_xfcc::mutate(&mut h, ForwardClientCertDetails::AppendForward, None);
        assert!(h.get(XFCC).is_none());
    }

    #[test]
    fn details_are_the_gateway_element_without_cert() {
        let ca = mesh_tls::MeshCa::self_signed("cluster.local").unwrap();
        let id = |sa: &str| mesh_tls::Identity::new("cluster.local", "foo", sa).unwrap();
        let ttl = std::time::Duration::from_secs(3600);
        let server = ca.issue(&id("httpbin"), ttl, &[]).unwrap();
        let client = ca.issue(&id("sleep"), ttl, &["sleep.foo.svc"]).unwrap();
        let by = local_uri_sans(server.chain_der().unwrap()[0].as_ref());
        assert_eq!(by, ["spiffe://cluster.local/ns/foo/sa/httpbin"]);
        let leaf = client.chain_der().unwrap()[0].clone();
        let v = client_cert_details(&by, leaf.as_ref()).unwrap();
        let hash: String = gateway_xfcc::sha256(leaf.as_ref())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            v.to_str().unwrap(),
            format!(
                "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={hash};Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep;DNS=sleep.foo.svc"
            )
        );
        assert!(client_cert_details(&by, b"not a certificate").is_none());
    }

    #[tokio::test]
    async fn http10_is_served_with_accept_http_10() {
        let app = tower::service_fn(|req: Request<()>| async move {
            assert_eq!(req.version(), http::Version::HTTP_10);
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut svc = HcmLayer::new(None, true).layer(app);
        let req = Request::builder()
            .version(http::Version::HTTP_10)
            .header("host", "app")
            .body(())
            .unwrap();
        let resp = tower::ServiceExt::ready(&mut svc)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn http10_gets_426() {
        let app = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let mut svc = HcmLayer::default().layer(app);
        for (version, status) in [
            (http::Version::HTTP_10, StatusCode::UPGRADE_REQUIRED),
            (http::Version::HTTP_09, StatusCode::UPGRADE_REQUIRED),
            (http::Version::HTTP_11, StatusCode::OK),
            (http::Version::HTTP_2, StatusCode::OK),
        ] {
            let req = Request::builder()
                .version(version)
                .header("host", "app")
                .body(())
                .unwrap();
            let resp = tower::ServiceExt::ready(&mut svc)
                .await
                .unwrap()
                .call(req)
                .await
                .unwrap();
            assert_eq!(resp.status(), status, "{version:?}");
            if status == StatusCode::UPGRADE_REQUIRED {
                assert_eq!(resp.headers()[CONNECTION], "close");
                assert_eq!(
                    resp.extensions()
                        .get::<crate::envoy::ResponseCodeDetails>()
                        .unwrap()
                        .0,
                    "low_version"
                );
                let body = http_body_util::BodyExt::collect(resp.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                assert_eq!(body, "Upgrade Required");
            }
        }
    }
}
