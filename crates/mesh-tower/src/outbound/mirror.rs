//! Streamed mirrors: a request body that is not buffered (of unknown length, or longer than
//! [`ClientOptions::retry_buffer_limit`](super::ClientOptions::retry_buffer_limit)) is
//! copied to each mirror as it streams to the route's upstream, as Envoy streams its
//! shadows since 1.33 (`streaming_shadow`).
//!
//! The route's upstream reads the body; each mirror gets every frame the upstream took (a
//! `Bytes` clone, no copy of the data). A mirror never slows the request down: what a mirror
//! has not sent yet waits in its queue, and a mirror falling more than the limit behind is
//! abandoned (its request reset), as is every mirror when the request body fails or is
//! dropped before its end (the upstream answered early, or was never reached).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;

use super::{BoxError, MeshBody};

enum Msg {
    Frame(Frame<Bytes>),
    /// The request body ended whole.
    End,
}

/// One mirror's end of the copy.
struct Tap {
    tx: mpsc::UnboundedSender<Msg>,
    /// Bytes queued for the mirror and not yet sent.
    queued: Arc<AtomicU64>,
}

/// The request body as the route's upstream reads it, copying each frame to the mirrors.
struct Tee {
    inner: MeshBody,
    taps: Vec<Tap>,
    limit: u64,
}

/// A mirror's request body: the frames of the request's body as they come.
struct Mirrored {
    rx: mpsc::UnboundedReceiver<Msg>,
    queued: Arc<AtomicU64>,
    ended: bool,
    size: SizeHint,
}

/// Splits `body` into the body the route's upstream reads and `mirrors` copies of it; a
/// copy more than `limit` bytes behind is abandoned.
pub(super) fn tee(body: MeshBody, mirrors: usize, limit: u64) -> (MeshBody, Vec<MeshBody>) {
    let size = body.size_hint();
    let mut taps = Vec::with_capacity(mirrors);
    let mut copies = Vec::with_capacity(mirrors);
    for _ in 0..mirrors {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        taps.push(Tap {
            tx,
            queued: Arc::clone(&queued),
        });
        copies.push(
            Mirrored {
                rx,
                queued,
                ended: false,
                size,
            }
            .boxed(),
        );
    }
    (
        Tee {
            inner: body,
            taps,
            limit,
        }
        .boxed(),
        copies,
    )
}

fn frame_len(f: &Frame<Bytes>) -> u64 {
    f.data_ref().map_or(0, |d| d.len() as u64)
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                let len = frame_len(f);
                let limit = this.limit;
                this.taps.retain(|t| {
                    let copy = if let Some(d) = f.data_ref() {
                        Frame::data(d.clone())
                    } else if let Some(t) = f.trailers_ref() {
                        Frame::trailers(t.clone())
                    } else {
                        return true;
                    };
                    // (a mirror too far behind is dropped: its request is reset)
                    let behind = t.queued.fetch_add(len, Ordering::AcqRel) + len;
                    behind <= limit && t.tx.send(Msg::Frame(copy)).is_ok()
                });
            }
            // the request failed: every mirror's request is reset
            Some(Err(_)) => this.taps.clear(),
            None => {
                for t in this.taps.drain(..) {
                    let _ = t.tx.send(Msg::End);
                }
            }
        }
        if this.inner.is_end_stream() {
            for t in this.taps.drain(..) {
                let _ = t.tx.send(Msg::End);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for Mirrored {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(Msg::Frame(f)) => {
                self.queued.fetch_sub(frame_len(&f), Ordering::AcqRel);
                Poll::Ready(Some(Ok(f)))
            }
            Some(Msg::End) => {
                self.ended = true;
                Poll::Ready(None)
            }
            // the request's body failed, was dropped before its end, or this mirror fell
            // too far behind
            None => {
                self.ended = true;
                Poll::Ready(Some(Err(
                    "mirror abandoned: the request body did not reach it whole".into(),
                )))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Frames;

    fn streamed(chunks: Vec<Result<Frame<Bytes>, BoxError>>) -> MeshBody {
        Frames(chunks.into()).boxed()
    }

    #[tokio::test]
    async fn every_mirror_gets_the_whole_body() {
        let body = streamed(vec![
            Ok(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
        ]);
        let (main, copies) = tee(body, 2, 1 << 20);
        assert_eq!(main.collect().await.unwrap().to_bytes(), "hello world");
        for c in copies {
            assert_eq!(c.collect().await.unwrap().to_bytes(), "hello world");
        }
    }

    #[tokio::test]
    async fn a_body_that_fails_or_is_dropped_resets_the_mirrors() {
        let body = streamed(vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err("client went away".into()),
        ]);
        let (main, copies) = tee(body, 1, 1 << 20);
        assert!(main.collect().await.is_err());
        for c in copies {
            assert!(c.collect().await.is_err());
        }
        let body = streamed(vec![Ok(Frame::data(Bytes::from_static(b"part")))]);
        let (main, copies) = tee(body, 1, 1 << 20);
        drop(main); // never read: the upstream was not reached
        for c in copies {
            assert!(c.collect().await.is_err());
        }
    }

    #[tokio::test]
    async fn a_mirror_too_far_behind_is_abandoned() {
        let body = streamed(vec![
            Ok(Frame::data(Bytes::from(vec![b'a'; 6]))),
            Ok(Frame::data(Bytes::from(vec![b'b'; 6]))),
        ]);
        let (main, copies) = tee(body, 1, 10);
        // the mirror reads nothing while the upstream reads it all
        assert_eq!(main.collect().await.unwrap().to_bytes().len(), 12);
        for c in copies {
            assert!(c.collect().await.is_err());
        }
    }
}
