//! gRPC-Web on a gateway server of protocol `GRPC-WEB`, as Envoy's `grpc_web` filter does
//! it, which istiod adds to the HTTP filters of a listener of that protocol only (after
//! authorization, before the router):
//!
//! - a request whose `content-type` is `application/grpc-web[+proto]` or
//!   `application/grpc-web-text[+proto]` goes upstream as gRPC: `application/grpc[+proto]`,
//!   `te: trailers`, no `content-length`, a `-text` body decoded from base64 (streamed: each
//!   complete group of four characters as it comes);
//! - its gRPC answer comes back as gRPC-Web: `application/grpc-web+proto` (or
//!   `application/grpc-web-text+proto` when the request's `accept` asked for text), the
//!   messages as they are, the trailers as the body's last frame (flag `0x80`, then the
//!   length and the `name:value\r\n` lines), base64 for text. An answer that is not gRPC
//!   (a non-gRPC upstream, a local reply already in gRPC form with its status in the
//!   headers, "trailers-only") passes with its content type translated only when it is gRPC.
//!
//! Other requests pass untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, TE};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Either};

use crate::outbound::{BoxError, MeshBody};

/// How to translate the answer of a gRPC-Web request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    text: bool,
}

/// Rewrites a gRPC-Web request as gRPC; `None` (and the request as it was) for any other.
pub(super) fn request<B>(req: Request<B>) -> (Request<Either<B, TextDecoded<B>>>, Option<Answer>) {
    let web = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(web_type);
    let Some((text_request, proto)) = web else {
        return (req.map(Either::Left), None);
    };
    let text = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(web_type)
        .is_some_and(|(t, _)| t);
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if proto {
            "application/grpc+proto"
        } else {
            "application/grpc"
        }),
    );
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(TE, HeaderValue::from_static("trailers"));
    let body = if text_request {
        Either::Right(TextDecoded {
            inner: body,
            pending: BytesMut::new(),
        })
    } else {
        Either::Left(body)
    };
    (Request::from_parts(parts, body), Some(Answer { text }))
}

/// Translates the gRPC answer of a gRPC-Web request.
pub(super) fn response(resp: Response<MeshBody>, answer: Answer) -> Response<MeshBody> {
    let grpc = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"));
    if !grpc {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if answer.text {
            "application/grpc-web-text+proto"
        } else {
            "application/grpc-web+proto"
        }),
    );
    parts.headers.remove(CONTENT_LENGTH);
    let body = WebBody {
        inner: body,
        text: answer.text,
        carry: BytesMut::new(),
        done: false,
    };
    Response::from_parts(parts, body.boxed())
}

/// `(text, proto)` for a gRPC-Web content type (`application/grpc-web`, `-text`, each with
/// an optional `+proto`; parameters ignored).
fn web_type(content_type: &str) -> Option<(bool, bool)> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    let lower = base.to_ascii_lowercase();
    let (text, rest) = if let Some(r) = lower.strip_prefix("application/grpc-web-text") {
        (true, r)
    } else if let Some(r) = lower.strip_prefix("application/grpc-web") {
        (false, r)
    } else {
        return None;
    };
    match rest {
        "" => Some((text, false)),
        "+proto" => Some((text, true)),
        _ => None,
    }
}

pin_project_lite::pin_project! {
    /// A `-text` request body, decoded from base64 as it streams.
    pub(super) struct TextDecoded<B> {
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
                    let frame = match frame.into_data() {
                        Ok(data) => data,
                        Err(other) => return Poll::Ready(Some(Ok(other))),
                    };
                    this.pending
                        .extend(frame.iter().filter(|b| !b.is_ascii_whitespace()));
                    let whole = this.pending.len() / 4 * 4;
                    if whole == 0 {
                        continue;
                    }
                    let groups = this.pending.split_to(whole);
                    let mut out = Vec::with_capacity(whole / 4 * 3);
                    for g in groups.chunks(4) {
                        // (each group may end in padding: padded chunks may be concatenated)
                        let decoded = std::str::from_utf8(g)
                            .ok()
                            .and_then(|s| mesh_core::names::base64_decode(s, false));
                        match decoded {
                            Some(d) => out.extend_from_slice(&d),
                            None => {
                                return Poll::Ready(Some(Err(
                                    "gRPC-Web text request body is not base64".into(),
                                )))
                            }
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
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

/// A gRPC answer's body as gRPC-Web: its messages, then its trailers as a frame of their
/// own; base64 for text (encoded in groups of three bytes, the rest carried to the next
/// frame, padded at the end).
struct WebBody {
    inner: MeshBody,
    text: bool,
    carry: BytesMut,
    done: bool,
}

/// The gRPC-Web trailers frame: flag `0x80`, big-endian length, `name:value\r\n` lines.
fn trailers_frame(trailers: &HeaderMap) -> Bytes {
    let mut lines = Vec::new();
    for (k, v) in trailers {
        lines.extend_from_slice(k.as_str().as_bytes());
        lines.push(b':');
        lines.extend_from_slice(v.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    let mut out = BytesMut::with_capacity(5 + lines.len());
    out.extend_from_slice(&[0x80]);
    out.extend_from_slice(&u32::try_from(lines.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&lines);
    out.freeze()
}

impl WebBody {
    /// `data` as this body sends it: as it is, or base64 (with `last`, padded).
    fn encode(&mut self, data: &[u8], last: bool) -> Bytes {
        if !self.text {
            return Bytes::copy_from_slice(data);
        }
        self.carry.extend_from_slice(data);
        let n = if last {
            self.carry.len()
        } else {
            self.carry.len() / 3 * 3
        };
        let now = self.carry.split_to(n);
        Bytes::from(mesh_core::names::base64_encode(&now, false))
    }
}

impl Body for WebBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if this.text => {
                        let out = this.encode(&data, false);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        this.done = true;
                        let t = trailers_frame(&trailers);
                        let out = if this.text { this.encode(&t, true) } else { t };
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    // no trailers (not expected of gRPC): what is carried, then the end
                    this.done = true;
                    if this.text && !this.carry.is_empty() {
                        let out = this.encode(&[], true);
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
    fn content_types() {
        assert_eq!(web_type("application/grpc-web"), Some((false, false)));
        assert_eq!(web_type("application/grpc-web+proto"), Some((false, true)));
        assert_eq!(web_type("application/grpc-web-text"), Some((true, false)));
        assert_eq!(
            web_type("Application/gRPC-Web-Text+proto; charset=x"),
            Some((true, true))
        );
        assert_eq!(web_type("application/grpc"), None);
        assert_eq!(web_type("application/grpc-web+json"), None);
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

    fn grpc_answer(body: Frames) -> Response<MeshBody> {
        let mut resp = Response::new(body.boxed());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        resp
    }

    #[tokio::test]
    async fn answers_carry_their_trailers_in_the_body() {
        let body = frames(&[b"\0\0\0\0\x01x"], Some(("grpc-status", "0")));
        let web = response(grpc_answer(body), Answer { text: false });
        assert_eq!(web.headers()[CONTENT_TYPE], "application/grpc-web+proto");
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
        let mut resp = Response::new(frames(&[b"no healthy upstream"], None).boxed());
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let out = response(resp, Answer { text: false });
        assert_eq!(out.headers()[CONTENT_TYPE], "text/plain");
        assert_eq!(
            out.into_body().collect().await.unwrap().to_bytes(),
            "no healthy upstream"
        );
    }
}
