//! gRPC-Web to gRPC and back, as Envoy's `grpc_web` filter does it. istiod adds that filter
//! to the HTTP filters of every listener whose protocol is `GRPC-WEB`
//! (`buildHTTPConnectionManager`: `httpOpts.protocol == protocol.GRPCWeb`): a gateway
//! server of that protocol, a sidecar's inbound listener for a service port of that
//! protocol (a Kubernetes port named `grpc-web...` or with `appProtocol: grpc-web`, a
//! ServiceEntry port `protocol: GRPC-WEB`, a Sidecar `ingress` port), and a sidecar's
//! outbound listener for such a port. It comes after the authorization filters (ext_authz,
//! jwt_authn, RBAC) and before the gRPC stats, `istio.stats` and the router:
//!
//! - a request whose `content-type` is exactly `application/grpc-web`,
//!   `application/grpc-web+proto`, `application/grpc-web-text` or
//!   `application/grpc-web-text+proto` goes on as gRPC: `content-type: application/grpc`,
//!   `te: trailers`, no `content-length`, a `-text` body decoded from base64;
//! - its gRPC answer comes back as gRPC-Web: `application/grpc-web+proto` (or
//!   `application/grpc-web-text+proto` when the request's `accept` is a `-text` type),
//!   the messages as they are, the trailers as the body's last frame (flag `0x80`, then
//!   the length and the `name:value\r\n` lines), base64 for text;
//! - any other request passes untouched.
//!
//! Authorization therefore sees the gRPC-Web request, and a denial is Envoy's RBAC local
//! reply for a request that is not gRPC (`application/grpc-web` is not a gRPC content type
//! for Envoy): `403 RBAC: access denied` in plain text, which the `grpc_web` filter, not
//! having seen the request, passes as it is. `istio.stats` sees the translated request, so
//! a translated call is `request_protocol="grpc"`; the answer's trailers are in its body by
//! the time the stats are logged (the filter clears the trailer map), so its
//! `grpc_response_status` is inferred from the HTTP status: `2` (UNKNOWN) for a 200, as
//! Istio reports it (istio/istio#46138, #58430). The response of a translated request
//! carries [`Translated`] in its extensions for the metrics layer to do the same.
//!
//! # Differences from Envoy
//!
//! - An answer that is not gRPC (a non-gRPC application, a local reply of our own after the
//!   filter) passes with its content type translated only when it is gRPC; Envoy turns it
//!   into a headers-only gRPC-Web answer (`grpc-status` from the HTTP status,
//!   `grpc-message` the body's first 16 KiB, percent-encoded). The local replies this
//!   module makes itself are in Envoy's form.
//! - A text answer is base64 in groups of three bytes as the body streams (padding at the
//!   end); Envoy encodes each gRPC frame on its own. Clients decode both.
//! - A text request's groups may each end in padding (concatenated padded chunks) and
//!   whitespace between them is skipped; Envoy's decoder refuses both.
//! - `grpc-accept-encoding` is not added to the translated request.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::Either;

use crate::outbound::BoxError;

/// The largest `-text` request body read whole before it is decoded (at a mesh server and
/// a mesh client): base64 of a 4 MiB message (gRPC's default limit) and its 5-byte prefix.
pub(crate) const MAX_TEXT_BODY: usize = (4 * 1024 * 1024 + 5_usize).div_ceil(3) * 4;

/// The answer to a `-text` request body that is not base64, as Envoy's filter words it.
pub(crate) const BAD_BASE64: &str = "Bad gRPC-web request, invalid base64 data.";

/// How to translate the answer of a gRPC-Web request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The request's `accept` asked for base64 (`application/grpc-web-text[+proto]`).
    pub(crate) text: bool,
}

/// In the extensions of the response to a request translated from gRPC-Web: the metrics
/// report it as `istio.stats` does, after the `grpc_web` filter (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Translated;

/// Whether `content_type` is one of the four gRPC-Web content types Envoy's
/// `isGrpcWebRequest` takes.
pub(crate) fn is_web_type(content_type: &[u8]) -> bool {
    web_type(content_type).is_some()
}

/// Whether `content_type` is a gRPC-Web content type, as Envoy's `isGrpcWebRequest`
/// (exactly one of the four, no parameters): `Some(text)`, else `None`.
fn web_type(content_type: &[u8]) -> Option<bool> {
    match content_type {
        b"application/grpc-web" | b"application/grpc-web+proto" => Some(false),
        b"application/grpc-web-text" | b"application/grpc-web-text+proto" => Some(true),
        _ => None,
    }
}

/// Rewrites the headers of a gRPC-Web request as gRPC's; `None` (and the headers as they
/// were) for any other request. `Some((answer, text))`: how to answer, and whether the
/// body is base64 (to decode).
pub(crate) fn request_headers(headers: &mut HeaderMap) -> Option<(Answer, bool)> {
    let text_request = web_type(headers.get(CONTENT_TYPE)?.as_bytes())?;
    let text = headers
        .get(ACCEPT)
        .and_then(|v| web_type(v.as_bytes()))
        .unwrap_or(false);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.remove(CONTENT_LENGTH);
    headers.insert(TE, HeaderValue::from_static("trailers"));
    Some((Answer { text }, text_request))
}

/// Rewrites a gRPC-Web request as gRPC, its `-text` body decoded as it streams; `None`
/// (and the request as it was) for any other.
pub(crate) fn request<B>(req: Request<B>) -> (Request<Either<B, TextDecoded<B>>>, Option<Answer>) {
    let (mut parts, body) = req.into_parts();
    let Some((answer, text_request)) = request_headers(&mut parts.headers) else {
        return (Request::from_parts(parts, Either::Left(body)), None);
    };
    let body = if text_request {
        Either::Right(TextDecoded {
            inner: body,
            pending: BytesMut::new(),
        })
    } else {
        Either::Left(body)
    };
    (Request::from_parts(parts, body), Some(answer))
}

/// Decodes base64 in groups of four characters (each group may end in padding: padded
/// chunks may be concatenated), skipping whitespace; `None` if it is not base64 or ends
/// inside a group.
pub(crate) fn decode_text(text: &[u8]) -> Option<Vec<u8>> {
    let mut pending = BytesMut::new();
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    decode_groups(&mut pending, text, &mut out)?;
    pending.is_empty().then_some(out)
}

/// Appends what `input` completes of `pending`'s groups of four to `out`, keeping an
/// incomplete group in `pending`; `None` if a group is not base64.
fn decode_groups(pending: &mut BytesMut, input: &[u8], out: &mut Vec<u8>) -> Option<()> {
    pending.extend(input.iter().filter(|b| !b.is_ascii_whitespace()));
    let whole = pending.len() / 4 * 4;
    let groups = pending.split_to(whole);
    for g in groups.chunks(4) {
        let s = std::str::from_utf8(g).ok()?;
        out.extend_from_slice(&mesh_core::names::base64_decode(s, false)?);
    }
    Some(())
}

/// The answer to a gRPC-Web request that the translation itself refuses (`status`,
/// `message`), as Envoy's local reply comes out of its `grpc_web` filter: the status kept,
/// a gRPC-Web content type, `grpc-status` from the HTTP status, `grpc-message` the reply's
/// text (printable ASCII: percent-encoding leaves it as it is), no body.
pub(crate) fn refusal<R: Default>(
    status: StatusCode,
    message: &'static str,
    answer: Answer,
) -> Response<R> {
    let mut resp = Response::new(R::default());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, content_type(answer));
    h.insert(
        http::HeaderName::from_static("grpc-status"),
        HeaderValue::from(crate::envoy::http_to_grpc_status(status.as_u16())),
    );
    h.insert("grpc-message", HeaderValue::from_static(message));
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp.extensions_mut().insert(Translated);
    resp
}

fn content_type(answer: Answer) -> HeaderValue {
    HeaderValue::from_static(if answer.text {
        "application/grpc-web-text+proto"
    } else {
        "application/grpc-web+proto"
    })
}

/// Translates the answer of a gRPC-Web request: a gRPC answer into gRPC-Web (its trailers
/// into its body); any other as it is. Either way the response carries [`Translated`].
pub(crate) fn response<B>(resp: Response<B>, answer: Answer) -> Response<Either<B, WebBody<B>>> {
    let (mut parts, body) = resp.into_parts();
    parts.extensions.insert(Translated);
    if !crate::envoy::is_grpc(&parts.headers) {
        return Response::from_parts(parts, Either::Left(body));
    }
    parts.headers.insert(CONTENT_TYPE, content_type(answer));
    parts.headers.remove(CONTENT_LENGTH);
    let body = WebBody {
        inner: body,
        text: answer.text,
        carry: BytesMut::new(),
        done: false,
    };
    Response::from_parts(parts, Either::Right(body))
}

pin_project_lite::pin_project! {
    /// A `-text` request body, decoded from base64 as it streams.
    pub(crate) struct TextDecoded<B> {
        #[pin]
        inner: B,
        // characters of a group of four not complete yet
        pending: BytesMut,
    }
}

impl<B> Body for TextDecoded<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    let mut out = Vec::new();
                    if decode_groups(this.pending, &data, &mut out).is_none() {
                        return Poll::Ready(Some(Err(
                            "gRPC-Web text request body is not base64".into()
                        )));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None if this.pending.is_empty() => return Poll::Ready(None),
                None => {
                    return Poll::Ready(Some(Err(
                        "gRPC-Web text request body ends inside a base64 group".into(),
                    )))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream() && self.pending.is_empty()
    }
}

pin_project_lite::pin_project! {
    /// A gRPC answer's body as gRPC-Web: its messages, then its trailers as a frame of
    /// their own; base64 for text (encoded in groups of three bytes, the rest carried to
    /// the next frame, padded at the end).
    pub(crate) struct WebBody<B> {
        #[pin]
        inner: B,
        text: bool,
        carry: BytesMut,
        done: bool,
    }
}

/// The gRPC-Web trailers frame: flag `0x80`, big-endian length, `name:value\r\n` lines.
fn trailers_frame(trailers: &HeaderMap) -> Bytes {
    let len: usize = trailers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 3)
        .sum();
    let mut out = BytesMut::with_capacity(5 + len);
    out.extend_from_slice(&[0x80]);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    for (k, v) in trailers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b":");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// `data` as a text body sends it: base64 of what makes whole groups of three with what
/// was carried (with `last`, everything, padded).
fn encode_text(carry: &mut BytesMut, data: &[u8], last: bool) -> Bytes {
    carry.extend_from_slice(data);
    let n = if last {
        carry.len()
    } else {
        carry.len() / 3 * 3
    };
    let now = carry.split_to(n);
    Bytes::from(mesh_core::names::base64_encode(&now, false))
}

impl<B> Body for WebBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if *this.text => {
                        let out = encode_text(this.carry, &data, false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        *this.done = true;
                        let t = trailers_frame(&trailers);
                        let out = if *this.text {
                            encode_text(this.carry, &t, true)
                        } else {
                            t
                        };
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    // no trailers (not expected of gRPC): what is carried, then the end
                    *this.done = true;
                    if *this.text && !this.carry.is_empty() {
                        let out = encode_text(this.carry, &[], true);
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Frames;
    use http_body_util::BodyExt as _;
    use std::collections::VecDeque;

    fn frames(data: &[&'static [u8]], trailers: Option<(&'static str, &'static str)>) -> Frames {
        let mut f: VecDeque<Result<Frame<Bytes>, BoxError>> = data
            .iter()
            .map(|d| Ok(Frame::data(Bytes::from_static(d))))
            .collect();
        if let Some((k, v)) = trailers {
            let mut t = HeaderMap::new();
            t.insert(k, HeaderValue::from_static(v));
            f.push_back(Ok(Frame::trailers(t)));
        }
        Frames(f)
    }

    #[test]
    fn content_types_are_envoys_four_exactly() {
        let table: &[(&str, Option<bool>)] = &[
            ("application/grpc-web", Some(false)),
            ("application/grpc-web+proto", Some(false)),
            ("application/grpc-web-text", Some(true)),
            ("application/grpc-web-text+proto", Some(true)),
            // Envoy compares the header as it is: no parameters, no other case
            ("application/grpc-web; charset=utf-8", None),
            ("Application/gRPC-Web", None),
            ("application/grpc", None),
            ("application/grpc-web+json", None),
            ("", None),
        ];
        for (ct, want) in table {
            assert_eq!(web_type(ct.as_bytes()), *want, "{ct}");
        }
    }

    /// content type, accept, `(text answer, text request)` if translated
    type Case = (&'static str, Option<&'static str>, Option<(bool, bool)>);

    #[test]
    fn request_headers_become_grpc() {
        let table: &[Case] = &[
            ("application/grpc-web+proto", None, Some((false, false))),
            (
                "application/grpc-web",
                Some("application/grpc-web-text"),
                Some((true, false)),
            ),
            (
                "application/grpc-web-text",
                Some("*/*"),
                Some((false, true)),
            ),
            (
                "application/grpc-web-text+proto",
                Some("application/grpc-web-text+proto"),
                Some((true, true)),
            ),
            ("application/grpc", None, None),
            ("text/plain", Some("application/grpc-web-text"), None),
        ];
        for (ct, accept, want) in table {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
            if let Some(a) = accept {
                h.insert(ACCEPT, HeaderValue::from_static(a));
            }
            let got = request_headers(&mut h).map(|(a, t)| (a.text, t));
            assert_eq!(got, *want, "{ct} {accept:?}");
            if want.is_some() {
                assert_eq!(h[CONTENT_TYPE], "application/grpc");
                assert_eq!(h[TE], "trailers");
                assert!(!h.contains_key(CONTENT_LENGTH));
            } else {
                assert_eq!(h[CONTENT_TYPE], *ct, "untouched");
                assert!(!h.contains_key(TE));
            }
        }
    }

    #[test]
    fn text_is_decoded_in_groups() {
        assert_eq!(decode_text(b"aGVs bG8=IHdv\ncmxk").unwrap(), b"hello world");
        assert_eq!(decode_text(b"").unwrap(), b"");
        assert!(decode_text(b"aGV*").is_none());
        assert!(decode_text(b"aGV").is_none());
    }

    #[tokio::test]
    async fn text_request_bodies_are_decoded_across_chunks() {
        // "hello world" as two padded chunks, split inside a group
        let body = TextDecoded {
            inner: frames(&[b"aGVs", b"bG8=IHdv", b"cmxk"], None),
            pending: BytesMut::new(),
        };
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello world");
        let bad = TextDecoded {
            inner: frames(&[b"aGV*"], None),
            pending: BytesMut::new(),
        };
        assert!(bad.collect().await.is_err());
        let cut = TextDecoded {
            inner: frames(&[b"aGV"], None),
            pending: BytesMut::new(),
        };
        assert!(cut.collect().await.is_err());
    }

    fn grpc_answer(body: Frames) -> Response<Frames> {
        let mut resp = Response::new(body);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        resp
    }

    #[tokio::test]
    async fn answers_carry_their_trailers_in_the_body() {
        let body = frames(&[b"\0\0\0\0\x01x"], Some(("grpc-status", "0")));
        let web = response(grpc_answer(body), Answer { text: false });
        assert_eq!(web.headers()[CONTENT_TYPE], "application/grpc-web+proto");
        assert!(web.extensions().get::<Translated>().is_some());
        let bytes = web.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"\0\0\0\0\x01x\x80\0\0\0\x0fgrpc-status:0\r\n");
    }

    #[tokio::test]
    async fn text_answers_are_base64_in_groups_of_three() {
        let body = frames(&[b"\0\0\0\0", b"\x01x"], Some(("grpc-status", "0")));
        let web = response(grpc_answer(body), Answer { text: true });
        assert_eq!(
            web.headers()[CONTENT_TYPE],
            "application/grpc-web-text+proto"
        );
        let text = web.into_body().collect().await.unwrap().to_bytes();
        let text = std::str::from_utf8(&text).unwrap();
        let decoded = mesh_core::names::base64_decode(text, false).unwrap();
        assert_eq!(
            &decoded[..],
            b"\0\0\0\0\x01x\x80\0\0\0\x0fgrpc-status:0\r\n"
        );
    }

    #[tokio::test]
    async fn other_answers_pass() {
        let mut resp = Response::new(frames(&[b"no healthy upstream"], None));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let out = response(resp, Answer { text: false });
        assert_eq!(out.headers()[CONTENT_TYPE], "text/plain");
        assert!(out.extensions().get::<Translated>().is_some());
        assert_eq!(
            out.into_body().collect().await.unwrap().to_bytes(),
            "no healthy upstream"
        );
    }

    #[test]
    fn refusals_are_in_envoys_form() {
        let r: Response<http_body_util::Empty<Bytes>> = refusal(
            StatusCode::BAD_REQUEST,
            "Bad gRPC-web request, invalid base64 data.",
            Answer { text: true },
        );
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/grpc-web-text+proto");
        assert_eq!(r.headers()["grpc-status"], "13"); // INTERNAL, Envoy's httpToGrpcStatus(400)
        assert_eq!(
            r.headers()["grpc-message"],
            "Bad gRPC-web request, invalid base64 data."
        );
    }
}
