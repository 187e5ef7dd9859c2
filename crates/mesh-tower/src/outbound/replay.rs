//! A streamed request body kept for retries, as Envoy's router keeps one: a body of
//! unknown length (a gRPC call's, a chunked upload) is sent to the first attempt as it
//! arrives, and what was sent is kept, up to the buffer limit; a retry sends it again from
//! the start and then goes on with the rest of the body as it arrives. Once more than the
//! limit has been read, nothing is kept and no retry is made (Envoy: "the request body
//! exceeded the buffer limit", retries off).
//!
//! One attempt reads at a time: a new reader makes the previous one fail (its attempt has
//! been given up). The readers share the body's state under a mutex, taken once per frame
//! of a streamed body only (a buffered body, the usual small request, does not come here).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;

use super::{BoxError, MeshBody};

/// The body shared by the attempts of one request.
pub(super) struct Replay {
    state: Arc<Mutex<State>>,
}

struct State {
    /// The rest of the body, not yet read (`None` once it has ended or failed).
    inner: Option<MeshBody>,
    /// What the attempts have read of it, while within `limit`.
    frames: Vec<Frame<Bytes>>,
    /// Data bytes read.
    read: u64,
    limit: u64,
    /// More than `limit` was read, or the body failed: it cannot be sent again.
    spent: bool,
    /// The reader allowed to read (the latest).
    current: u64,
    /// The reader waiting for the rest of the body, woken when it is replaced (to fail,
    /// and let its attempt's connection go).
    waiting: Option<Waker>,
}

impl Replay {
    /// Keeps `inner` (read at most once) for retries, up to `limit` data bytes.
    pub(super) fn new(inner: MeshBody, limit: u64) -> Self {
        Replay {
            state: Arc::new(Mutex::new(State {
                inner: Some(inner),
                frames: Vec::new(),
                read: 0,
                limit,
                spent: false,
                current: 0,
                waiting: None,
            })),
        }
    }

    /// Whether the body can still be sent (again) from its start.
    pub(super) fn replayable(&self) -> bool {
        !self.lock().spent
    }

    /// Gives up the current attempt's body (a retry has been decided): it fails from now
    /// on, so nothing more is read for it while the retry waits for its backoff.
    pub(super) fn abandon(&self) {
        let mut state = self.lock();
        state.current += 1;
        if let Some(w) = state.waiting.take() {
            w.wake();
        }
    }

    /// Keeps nothing more (an answer was taken: no retry can come); what was kept goes
    /// once the current attempt's body has sent it, and that body goes on.
    pub(super) fn stop_keeping(&self) {
        self.lock().spent = true;
    }

    /// The body for the next attempt: what was read so far, then the rest as it arrives;
    /// `None` when it cannot be sent from its start any more. The previous attempt's body
    /// fails from then on.
    pub(super) fn reader(&self) -> Option<MeshBody> {
        let mut state = self.lock();
        if state.spent {
            return None;
        }
        state.current += 1;
        if let Some(w) = state.waiting.take() {
            w.wake();
        }
        Some(
            Reader {
                state: Arc::clone(&self.state),
                id: state.current,
                at: 0,
            }
            .boxed(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One attempt's body.
struct Reader {
    state: Arc<Mutex<State>>,
    id: u64,
    /// The next kept frame to send.
    at: usize,
}

fn copy(frame: &Frame<Bytes>) -> Option<Frame<Bytes>> {
    match frame.data_ref() {
        Some(d) => Some(Frame::data(d.clone())),
        None => frame.trailers_ref().map(|t| Frame::trailers(t.clone())),
    }
}

impl Body for Reader {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let mut state = this.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.current != this.id {
            return Poll::Ready(Some(Err("the request body went to a retry".into())));
        }
        if let Some(kept) = state.frames.get(this.at) {
            let frame = copy(kept);
            this.at += 1;
            if let Some(f) = frame {
                return Poll::Ready(Some(Ok(f)));
            }
        }
        if state.spent && !state.frames.is_empty() {
            // all sent, and no other attempt will need them
            state.frames = Vec::new();
            this.at = 0;
        }
        let Some(inner) = state.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {
                state.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(r) => r,
        };
        match polled {
            None => {
                state.inner = None;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                state.inner = None;
                state.spent = true;
                state.frames = Vec::new();
                Poll::Ready(Some(Err(e)))
            }
            Some(Ok(frame)) => {
                if !state.spent {
                    state.read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    if state.read > state.limit {
                        // past the buffer limit: nothing kept, no retry
                        state.spent = true;
                        state.frames = Vec::new();
                        this.at = 0;
                    } else if let Some(kept) = copy(&frame) {
                        state.frames.push(kept);
                        this.at += 1;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.current == self.id && state.inner.is_none() && self.at >= state.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::future::Future;

    /// A body of the given frames, of unknown length.
    struct Frames(VecDeque<Result<Frame<Bytes>, BoxError>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    /// A streamed body of `parts`, of unknown length, then trailers.
    fn streamed(parts: &[&'static str]) -> MeshBody {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", http::HeaderValue::from_static("0"));
        frames.push(Ok(Frame::trailers(t)));
        Frames(frames.into()).boxed()
    }

    async fn all(body: MeshBody) -> (Bytes, Option<http::HeaderMap>) {
        let c = body.collect().await.unwrap();
        let trailers = c.trailers().cloned();
        (c.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_retry_gets_the_whole_body_again() {
        let replay = Replay::new(streamed(&["ab", "cd", "ef"]), 1 << 20);
        let mut first = replay.reader().unwrap();
        // the first attempt reads part of the body, then fails
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        assert!(replay.replayable());
        let second = replay.reader().unwrap();
        // the first attempt's body is given up
        assert!(first.frame().await.unwrap().is_err());
        let (data, trailers) = all(second).await;
        assert_eq!(data, "abcdef");
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
        // and once more, all of it kept
        let (data, trailers) = all(replay.reader().unwrap()).await;
        assert_eq!(data, "abcdef");
        assert!(trailers.is_some());
    }

    /// A body that is pending until told, then ends.
    struct Later(Option<tokio::sync::oneshot::Receiver<()>>);

    impl Body for Later {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            match self.0.as_mut().map(|r| Pin::new(r).poll(cx)) {
                Some(Poll::Pending) => Poll::Pending,
                _ => {
                    self.0 = None;
                    Poll::Ready(None)
                }
            }
        }
    }

    #[tokio::test]
    async fn a_reader_waiting_for_the_body_is_woken_to_fail_when_given_up() {
        let (_tx, rx) = tokio::sync::oneshot::channel();
        let replay = Replay::new(Later(Some(rx)).boxed(), 1 << 20);
        let first = replay.reader().unwrap();
        let waiting = tokio::spawn(async move { first.collect().await.map(|_| ()) });
        tokio::task::yield_now().await;
        replay.abandon();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the given-up reader was woken")
            .unwrap();
        assert!(ended.is_err());
    }

    #[tokio::test]
    async fn what_was_kept_is_still_sent_after_keeping_stops() {
        let replay = Replay::new(streamed(&["ab", "cd"]), 1 << 20);
        let mut first = replay.reader().unwrap();
        first.frame().await.unwrap().unwrap();
        let mut second = replay.reader().unwrap();
        // the retry's answer is taken before its body was sent: the kept "ab" still goes
        replay.stop_keeping();
        assert!(!replay.replayable());
        let f = second.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        let (data, trailers) = all(second).await;
        assert_eq!(data, "cd");
        assert!(trailers.is_some());
        assert!(replay.reader().is_none());
    }

    #[tokio::test]
    async fn past_the_limit_nothing_is_kept_and_no_retry_is_made() {
        let replay = Replay::new(streamed(&["abc", "def", "ghi"]), 5);
        let first = replay.reader().unwrap();
        let (data, _) = all(first).await;
        assert_eq!(data, "abcdefghi", "the attempt gets the whole body");
        assert!(!replay.replayable());
        assert!(replay.reader().is_none());
    }

    #[tokio::test]
    async fn a_failed_body_is_not_sent_again() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("client went away".into()),
        ];
        let replay = Replay::new(Frames(frames.into()).boxed(), 1 << 20);
        assert!(replay.reader().unwrap().collect().await.is_err());
        assert!(replay.reader().is_none());
    }
}
