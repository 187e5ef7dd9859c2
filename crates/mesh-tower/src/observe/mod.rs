//! Body wrappers shared by the observing layers (metrics, access log): count the bytes that
//! pass and report once when the body ends or is dropped.
//!
//! # Examples
//!
//! Count a request body as the application reads it, and a response body as it is sent:
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::HeaderMap;
//! use http_body_util::{BodyExt, Full};
//! use mesh_tower::observe::{BodyObserver, CountingBody, ObservedBody};
//!
//! struct Sent(Arc<AtomicU64>);
//! impl BodyObserver for Sent {
//!     fn on_data(&mut self, n: u64) {
//!         self.0.fetch_add(n, Ordering::Relaxed);
//!     }
//!     fn on_trailers(&mut self, _: &HeaderMap) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (request_body, received) = CountingBody::new(Full::new(Bytes::from("ping")));
//! request_body.collect().await.unwrap();
//! assert_eq!(received.get(), 4);
//!
//! let sent = Arc::new(AtomicU64::new(0));
//! let response_body = ObservedBody::new(Full::new(Bytes::from("pong!")), Some(Sent(sent.clone())));
//! response_body.collect().await.unwrap();
//! assert_eq!(sent.load(Ordering::Relaxed), 5);
//! # }
//! ```

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Receives what a response body carries; reports when dropped (its `Drop` is the
/// "request finished" event).
///
/// # Examples
///
/// An observer that reports the bytes sent when the response is over:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use http::HeaderMap;
/// use http_body_util::{BodyExt, Full};
/// use mesh_tower::observe::{BodyObserver, ObservedBody};
///
/// struct Sent {
///     bytes: u64,
///     report: Arc<Mutex<Option<u64>>>,
/// }
///
/// impl BodyObserver for Sent {
///     fn on_data(&mut self, n: u64) {
///         self.bytes += n;
///     }
///     fn on_trailers(&mut self, _trailers: &HeaderMap) {}
/// }
///
/// impl Drop for Sent {
///     fn drop(&mut self) {
///         *self.report.lock().unwrap() = Some(self.bytes);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = Arc::new(Mutex::new(None));
/// let observer = Sent { bytes: 0, report: report.clone() };
/// let body = ObservedBody::new(Full::new(Bytes::from("hello world")), Some(observer));
/// assert_eq!(*report.lock().unwrap(), None);
/// body.collect().await.unwrap();
/// assert_eq!(*report.lock().unwrap(), Some(11));
/// # }
/// ```
pub trait BodyObserver {
    /// `n` bytes of data went through.
    ///
    /// # Examples
    ///
    /// Called once for each data frame, with its size; an empty body has none:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body_util::{BodyExt, Empty, Full};
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// /// Records the size of each data frame.
    /// struct Frames(Arc<Mutex<Vec<u64>>>);
    /// impl BodyObserver for Frames {
    ///     fn on_data(&mut self, n: u64) {
    ///         self.0.lock().unwrap().push(n);
    ///     }
    ///     fn on_trailers(&mut self, _: &HeaderMap) {}
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let sizes = Arc::new(Mutex::new(Vec::new()));
    /// let body = ObservedBody::new(Full::new(Bytes::from("hello world")), Some(Frames(sizes.clone())));
    /// body.collect().await.unwrap();
    /// assert_eq!(*sizes.lock().unwrap(), [11]);
    ///
    /// let sizes = Arc::new(Mutex::new(Vec::new()));
    /// let body = ObservedBody::new(Empty::<Bytes>::new(), Some(Frames(sizes.clone())));
    /// body.collect().await.unwrap();
    /// assert!(sizes.lock().unwrap().is_empty());
    /// # }
    /// ```
    fn on_data(&mut self, n: u64);

    /// Whether [`on_bytes`](Self::on_bytes) wants the data itself (by default not: only
    /// sizes are observed).
    ///
    /// # Examples
    ///
    /// ```
    /// use http::HeaderMap;
    /// use mesh_tower::observe::BodyObserver;
    ///
    /// struct Sizes;
    /// impl BodyObserver for Sizes {
    ///     fn on_data(&mut self, _: u64) {}
    ///     fn on_trailers(&mut self, _: &HeaderMap) {}
    /// }
    /// assert!(!Sizes.wants_bytes());
    /// ```
    fn wants_bytes(&self) -> bool {
        false
    }

    /// A contiguous piece of a data frame went through (in order; a frame may come in
    /// several pieces), when [`wants_bytes`](Self::wants_bytes) says so. A data frame of
    /// more than 32 pieces, which cannot be read without consuming it, is not passed: the
    /// pieces add up to less than [`on_data`](Self::on_data) said.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// /// Keeps a copy of what went through.
    /// struct Tee(Arc<Mutex<Vec<u8>>>);
    /// impl BodyObserver for Tee {
    ///     fn on_data(&mut self, _: u64) {}
    ///     fn on_trailers(&mut self, _: &HeaderMap) {}
    ///     fn wants_bytes(&self) -> bool {
    ///         true
    ///     }
    ///     fn on_bytes(&mut self, chunk: &[u8]) {
    ///         self.0.lock().unwrap().extend_from_slice(chunk);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let body = ObservedBody::new(Full::new(Bytes::from("hello")), Some(Tee(seen.clone())));
    /// body.collect().await.unwrap();
    /// assert_eq!(*seen.lock().unwrap(), b"hello");
    /// # }
    /// ```
    fn on_bytes(&mut self, _chunk: &[u8]) {}

    /// Trailers went through.
    ///
    /// # Examples
    ///
    /// The trailers of a gRPC response, seen on their way to the client:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// /// Keeps the `grpc-status` trailer.
    /// struct GrpcStatus(Arc<Mutex<Option<String>>>);
    /// impl BodyObserver for GrpcStatus {
    ///     fn on_data(&mut self, _: u64) {}
    ///     fn on_trailers(&mut self, trailers: &HeaderMap) {
    ///         let status = trailers.get("grpc-status").and_then(|v| v.to_str().ok());
    ///         *self.0.lock().unwrap() = status.map(String::from);
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let mut trailers = HeaderMap::new();
    /// trailers.insert("grpc-status", "14".parse().unwrap());
    /// let response = Full::new(Bytes::from("reply")).with_trailers(async move { Some(Ok(trailers)) });
    /// let status = Arc::new(Mutex::new(None));
    /// let body = ObservedBody::new(response, Some(GrpcStatus(status.clone())));
    /// let collected = body.collect().await.unwrap();
    /// assert_eq!(collected.trailers().unwrap()["grpc-status"], "14"); // passed on as they were
    /// assert_eq!(status.lock().unwrap().as_deref(), Some("14"));
    /// # }
    /// ```
    fn on_trailers(&mut self, trailers: &HeaderMap);
    /// The body reached its end (or failed): called once, just before the observer is
    /// dropped. An observer dropped without it was dropped with a body cut short.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// /// Records its end and its drop.
    /// struct Events(Arc<Mutex<Vec<&'static str>>>);
    /// impl BodyObserver for Events {
    ///     fn on_data(&mut self, _: u64) {}
    ///     fn on_trailers(&mut self, _: &HeaderMap) {}
    ///     fn on_end(&mut self) {
    ///         self.0.lock().unwrap().push("end");
    ///     }
    /// }
    /// impl Drop for Events {
    ///     fn drop(&mut self) {
    ///         self.0.lock().unwrap().push("drop");
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // read to its end
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let body = ObservedBody::new(Full::new(Bytes::from("ok")), Some(Events(events.clone())));
    /// body.collect().await.unwrap();
    /// assert_eq!(*events.lock().unwrap(), ["end", "drop"]);
    ///
    /// // cut short: dropped before it was read
    /// let events = Arc::new(Mutex::new(Vec::new()));
    /// let body = ObservedBody::new(Full::new(Bytes::from("ok")), Some(Events(events.clone())));
    /// drop(body);
    /// assert_eq!(*events.lock().unwrap(), ["drop"]);
    /// # }
    /// ```
    fn on_end(&mut self) {}

    /// The body failed: the upstream (for a response, the peer or application that made
    /// it) reset it after the response had started. By default, as its end.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::sync::{Arc, Mutex};
    /// use std::task::{Context, Poll};
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body::{Body, Frame};
    /// use http_body_util::BodyExt;
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// /// A body its upstream resets at once.
    /// struct Reset;
    /// impl Body for Reset {
    ///     type Data = Bytes;
    ///     type Error = std::io::Error;
    ///     fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
    ///         Poll::Ready(Some(Err(std::io::Error::other("reset"))))
    ///     }
    /// }
    ///
    /// struct Seen(Arc<Mutex<&'static str>>);
    /// impl BodyObserver for Seen {
    ///     fn on_data(&mut self, _: u64) {}
    ///     fn on_trailers(&mut self, _: &HeaderMap) {}
    ///     fn on_end(&mut self) { *self.0.lock().unwrap() = "end"; }
    ///     fn on_error(&mut self) { *self.0.lock().unwrap() = "error"; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let seen = Arc::new(Mutex::new(""));
    /// let body = ObservedBody::new(Reset, Some(Seen(seen.clone())));
    /// assert!(body.collect().await.is_err());
    /// assert_eq!(*seen.lock().unwrap(), "error");
    /// # }
    /// ```
    fn on_error(&mut self) {
        self.on_end();
    }
}

impl<O: BodyObserver + ?Sized> BodyObserver for Box<O> {
    fn on_data(&mut self, n: u64) {
        (**self).on_data(n);
    }
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        (**self).on_trailers(trailers);
    }
    fn on_end(&mut self) {
        (**self).on_end();
    }
    fn on_error(&mut self) {
        (**self).on_error();
    }
}

/// Tells the observer the body failed and drops it.
fn fail<O: BodyObserver>(observer: &mut Option<O>) {
    if let Some(mut o) = observer.take() {
        o.on_error();
    }
}

/// Tells the observer the body is over and drops it.
fn end<O: BodyObserver>(observer: &mut Option<O>) {
    if let Some(mut o) = observer.take() {
        o.on_end();
    }
}

pin_project! {
    /// A response body that tells its observer about data and trailers, and drops the
    /// observer (which then reports) at end of stream, on error, or when dropped early.
    ///
    /// See [`BodyObserver`] for an observer. Without one the body passes through as is.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::accesslog::LogEntry;
    /// use mesh_tower::observe::ObservedBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body: ObservedBody<_, LogEntry> = ObservedBody::new(Full::new(Bytes::from("ok")), None);
    /// assert_eq!(body.get_ref().size_hint().exact(), Some(2));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct ObservedBody<B, O> {
        #[pin]
        inner: B,
        observer: Option<O>,
    }
}

impl<B, O> ObservedBody<B, O> {
    /// Wraps `inner`; `observer` may be `None` to pass the body through untouched.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::HeaderMap;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::{BodyObserver, ObservedBody};
    ///
    /// #[derive(Default)]
    /// struct Frames { data: u32, trailers: u32 }
    /// impl BodyObserver for Frames {
    ///     fn on_data(&mut self, _n: u64) { self.data += 1; }
    ///     fn on_trailers(&mut self, _t: &HeaderMap) { self.trailers += 1; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // With an observer...
    /// let mut body = ObservedBody::new(Full::new(Bytes::from("hello")), Some(Frames::default()));
    /// assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "hello");
    /// assert!(body.frame().await.is_none());
    /// // ...and without: the body passes through.
    /// let plain: ObservedBody<_, Frames> = ObservedBody::new(Full::new(Bytes::from("hello")), None);
    /// assert_eq!(plain.collect().await.unwrap().to_bytes(), "hello");
    /// # }
    /// ```
    pub fn new(inner: B, observer: Option<O>) -> Self {
        ObservedBody { inner, observer }
    }

    /// The wrapped body.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use mesh_tower::accesslog::LogEntry;
    /// use mesh_tower::observe::ObservedBody;
    ///
    /// let body: ObservedBody<_, LogEntry> = ObservedBody::new(Full::new(Bytes::from("abc")), None);
    /// let inner: &Full<Bytes> = body.get_ref();
    /// assert_eq!(http_body::Body::size_hint(inner).exact(), Some(3));
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, O> Body for ObservedBody<B, O>
where
    B: Body,
    O: BodyObserver,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        match ready!(this.inner.as_mut().poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(obs) = this.observer.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        obs.on_data(data.remaining() as u64);
                        if obs.wants_bytes() {
                            // a data frame it cannot see whole is not passed at all
                            let _ = for_each_chunk(data, |c| obs.on_bytes(c));
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        obs.on_trailers(trailers);
                    }
                }
                if this.inner.is_end_stream() {
                    end(this.observer);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                fail(this.observer);
                Poll::Ready(Some(Err(e)))
            }
            None => {
                end(this.observer);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The size of a request body: known up front (exact size hint) or counted as it is read.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use mesh_tower::observe::{BodySize, CountingBody};
///
/// let (_body, size) = CountingBody::new(Full::new(Bytes::from("{\"id\": 7}")));
/// assert!(matches!(size, BodySize::Exact(9)));
/// assert_eq!(size.get(), 9);
/// ```
#[derive(Clone, Debug)]
pub enum BodySize {
    /// Known from the size hint (`content-length` or a full body): no counting needed.
    Exact(u64),
    /// Counted while the application reads the body.
    Counted(Arc<AtomicU64>),
}

impl BodySize {
    /// The size known now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use mesh_tower::observe::BodySize;
    ///
    /// assert_eq!(BodySize::Exact(42).get(), 42);
    /// let counter = Arc::new(AtomicU64::new(0));
    /// let counted = BodySize::Counted(counter.clone());
    /// counter.fetch_add(7, Ordering::Relaxed);
    /// assert_eq!(counted.get(), 7);
    /// ```
    pub fn get(&self) -> u64 {
        match self {
            BodySize::Exact(n) => *n,
            BodySize::Counted(c) => c.load(Ordering::Relaxed),
        }
    }
}

pin_project! {
    /// A request body that counts its bytes when their number is not known in advance.
    ///
    /// # Examples
    ///
    /// A streamed body (here a mapped one, which has no exact size) is counted as it is
    /// read:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::{BodySize, CountingBody};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let streamed = Full::new(Bytes::from("chunk of data")).map_frame(|frame| frame);
    /// let (body, size) = CountingBody::new(streamed);
    /// assert!(matches!(size, BodySize::Counted(_)));
    /// assert_eq!(size.get(), 0);
    /// body.collect().await.unwrap();
    /// assert_eq!(size.get(), 13);
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct CountingBody<B> {
        #[pin]
        inner: B,
        counter: Option<Arc<AtomicU64>>,
        // the gRPC messages of a gRPC request body, when counted
        messages: Option<Box<GrpcMessages>>,
    }
}

/// The gRPC messages of a body: its length-prefixed frames (a flag byte, a 4-byte
/// big-endian length, the message), counted as each frame's prefix goes through, across
/// data frames of any size (Envoy's `Grpc::FrameInspector`, which the gRPC stats Istio
/// reports read).
#[derive(Debug, Default)]
pub(crate) struct GrpcFrames {
    /// Messages whose prefix went through.
    pub(crate) count: u64,
    /// Bytes of the current message still to come.
    need: u64,
    /// The prefix read so far.
    prefix: [u8; 5],
    prefix_len: u8,
    /// Bytes went by unseen: counting stopped.
    pub(crate) broken: bool,
}

impl GrpcFrames {
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.need > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.need).unwrap_or(usize::MAX));
                self.need -= n as u64;
                data = &data[n..];
                continue;
            }
            let at = usize::from(self.prefix_len);
            if at == 0 {
                // counted at the frame's first byte, as Envoy's frame inspector
                self.count += 1;
            }
            let n = (5 - at).min(data.len());
            self.prefix[at..at + n].copy_from_slice(&data[..n]);
            self.prefix_len += n as u8;
            data = &data[n..];
            if self.prefix_len == 5 {
                let len = [
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ];
                self.need = u64::from(u32::from_be_bytes(len));
                self.prefix_len = 0;
            }
        }
    }
}

/// A request body's gRPC message count, shared with whoever reports it.
#[derive(Debug)]
struct GrpcMessages {
    frames: GrpcFrames,
    total: Arc<AtomicU64>,
}

/// Calls `f` with each contiguous piece of `data`, in order, without consuming it; false,
/// without calling `f`, when `data` has more pieces than it can look at without consuming
/// them.
pub(crate) fn for_each_chunk<D: Buf>(data: &D, mut f: impl FnMut(&[u8])) -> bool {
    let chunk = data.chunk();
    if chunk.len() == data.remaining() {
        f(chunk);
        return true;
    }
    let mut slices = [std::io::IoSlice::new(&[]); 32];
    let n = data.chunks_vectored(&mut slices);
    if slices[..n].iter().map(|s| s.len()).sum::<usize>() != data.remaining() {
        return false;
    }
    for s in &slices[..n] {
        f(s);
    }
    true
}

impl<B: Body> CountingBody<B> {
    /// Wraps `inner`, returning the body and its size handle. Allocates only when the size
    /// is not exact.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Empty, Full};
    /// use mesh_tower::observe::{BodySize, CountingBody};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// // Known sizes need no counter.
    /// let (_body, size) = CountingBody::new(Empty::<Bytes>::new());
    /// assert!(matches!(size, BodySize::Exact(0)));
    ///
    /// // A body of unknown size is counted.
    /// let (body, size) = CountingBody::new(Full::new(Bytes::from("abc")).map_frame(|f| f));
    /// body.collect().await.unwrap();
    /// assert_eq!(size.get(), 3);
    /// # }
    /// ```
    pub fn new(inner: B) -> (Self, BodySize) {
        match inner.size_hint().exact() {
            Some(n) => (
                CountingBody {
                    inner,
                    counter: None,
                    messages: None,
                },
                BodySize::Exact(n),
            ),
            None => {
                let c = Arc::new(AtomicU64::new(0));
                (
                    CountingBody {
                        inner,
                        counter: Some(Arc::clone(&c)),
                        messages: None,
                    },
                    BodySize::Counted(c),
                )
            }
        }
    }

    /// Wraps `inner` without counting.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::observe::CountingBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = CountingBody::passthrough(Full::new(Bytes::from("as is")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "as is");
    /// # }
    /// ```
    pub fn passthrough(inner: B) -> Self {
        CountingBody {
            inner,
            counter: None,
            messages: None,
        }
    }

    /// Counts the gRPC messages read from now on; the count is shared with the caller.
    pub(crate) fn count_grpc_messages(&mut self) -> Arc<AtomicU64> {
        let total = Arc::new(AtomicU64::new(0));
        self.messages = Some(Box::new(GrpcMessages {
            frames: GrpcFrames::default(),
            total: Arc::clone(&total),
        }));
        total
    }

    /// The wrapped body.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use mesh_tower::observe::CountingBody;
    ///
    /// let (body, _size) = CountingBody::new(Full::new(Bytes::from("abc")));
    /// let inner: Full<Bytes> = body.into_inner();
    /// assert_eq!(http_body::Body::size_hint(&inner).exact(), Some(3));
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The wrapped body, not pinned (nothing has polled it through a pin yet, or it is
    /// `Unpin`): to buffer what the body holds before the application reads it.
    pub(crate) fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

pin_project! {
    /// A received request body (hyper's [`Incoming`](hyper::body::Incoming)) whose first
    /// frames can be read ahead and then handed out again: a mesh server or gateway reads
    /// them for a CUSTOM policy's external authorizer (`includeRequestBodyInCheck`), and
    /// the application still reads the whole body. Without a read-ahead it is `Incoming`
    /// as is.
    #[derive(Debug)]
    pub struct ReplayBody {
        #[pin]
        inner: hyper::body::Incoming,
        ahead: Option<Box<std::collections::VecDeque<Frame<bytes::Bytes>>>>,
    }
}

/// Why reading a body ahead stopped short.
#[derive(Debug)]
pub(crate) enum ReadAheadError {
    /// More than the limit, when a partial body is not allowed.
    TooLarge,
    /// The client sent nothing for the idle timeout.
    Idle,
    /// The body could not be read (the client went away).
    Read(hyper::Error),
}

impl ReplayBody {
    /// Wraps a received body.
    ///
    /// # Examples
    ///
    /// What a mesh server does with each request hyper hands it:
    ///
    /// ```
    /// use hyper::body::Incoming;
    /// use mesh_tower::observe::ReplayBody;
    ///
    /// fn wrap(req: http::Request<Incoming>) -> http::Request<ReplayBody> {
    ///     req.map(ReplayBody::new)
    /// }
    /// # let _ = wrap;
    /// ```
    pub fn new(inner: hyper::body::Incoming) -> Self {
        ReplayBody { inner, ahead: None }
    }

    /// Reads the body ahead, as Envoy's ext_authz filter buffers it: up to its end, or (with
    /// `allow_partial`) until at least `max` bytes are in; more than `max` without
    /// `allow_partial` is [`ReadAheadError::TooLarge`]. Returns the first `max` bytes and
    /// whether the buffered body was longer (Envoy's `x-envoy-auth-partial-body`). What
    /// was read is handed out again, in order, before the rest of the body. Waiting longer
    /// than `idle` (if set) for the next frame is [`ReadAheadError::Idle`].
    pub(crate) async fn read_ahead(
        &mut self,
        max: usize,
        allow_partial: bool,
        idle: Option<std::time::Duration>,
    ) -> Result<(bytes::Bytes, bool), ReadAheadError> {
        use http_body_util::BodyExt;
        let mut frames = self.ahead.take().map(|b| *b).unwrap_or_default();
        let mut total: usize = frames
            .iter()
            .filter_map(|f| f.data_ref().map(bytes::Bytes::len))
            .sum();
        let result = loop {
            if allow_partial && total >= max {
                break Ok(());
            }
            let next = match idle {
                Some(idle) => match tokio::time::timeout(idle, self.inner.frame()).await {
                    Ok(next) => next,
                    Err(_) => break Err(ReadAheadError::Idle),
                },
                None => self.inner.frame().await,
            };
            match next {
                None => break Ok(()),
                Some(Err(e)) => break Err(ReadAheadError::Read(e)),
                Some(Ok(f)) => {
                    total += f.data_ref().map_or(0, bytes::Bytes::len);
                    frames.push_back(f);
                    if !allow_partial && total > max {
                        break Err(ReadAheadError::TooLarge);
                    }
                }
            }
        };
        let sent = total.min(max);
        let out = match frames.iter().find_map(Frame::data_ref) {
            // one frame holds it all (the usual small body): a view of it, no copy
            Some(d) if d.len() >= sent => d.slice(..sent),
            _ => {
                let mut out = bytes::BytesMut::with_capacity(sent);
                for d in frames.iter().filter_map(Frame::data_ref) {
                    let n = (sent - out.len()).min(d.len());
                    out.extend_from_slice(&d[..n]);
                }
                out.freeze()
            }
        };
        if !frames.is_empty() {
            self.ahead = Some(Box::new(frames));
        }
        result.map(|()| (out, total > max))
    }

    /// Replaces the data read ahead by `data` (frames of other kinds stay, after it): the
    /// body a filter that rewrote the whole of it (gRPC-Web text decoded) hands on.
    pub(crate) fn replace_ahead_data(&mut self, data: bytes::Bytes) {
        let mut frames = self.ahead.take().map(|b| *b).unwrap_or_default();
        frames.retain(|f| !f.is_data());
        if !data.is_empty() {
            frames.push_front(Frame::data(data));
        }
        if !frames.is_empty() {
            self.ahead = Some(Box::new(frames));
        }
    }
}

impl Body for ReplayBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.project();
        if let Some(ahead) = this.ahead {
            if let Some(f) = ahead.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            *this.ahead = None;
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.as_ref().is_none_or(|a| a.is_empty()) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let Some(ahead) = &self.ahead else {
            return inner;
        };
        let n: u64 = ahead
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + n);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + n);
        }
        hint
    }
}

impl<B: Body> Body for CountingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let res = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &res
            && let Some(data) = frame.data_ref()
        {
            if let Some(c) = this.counter.as_ref() {
                c.fetch_add(data.remaining() as u64, Ordering::Relaxed);
            }
            if let Some(m) = this.messages.as_deref_mut() {
                if !m.frames.broken && !for_each_chunk(data, |c| m.frames.feed(c)) {
                    // bytes it could not see: the frame boundaries are lost, counting
                    // stops (as Envoy's inspector stops on an error)
                    m.frames.broken = true;
                }
                m.total.store(m.frames.count, Ordering::Relaxed);
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::sync::Mutex;

    #[derive(Debug)]
    struct Obs(Arc<Mutex<Vec<String>>>);

    impl BodyObserver for Obs {
        fn on_data(&mut self, n: u64) {
            self.0.lock().unwrap().push(format!("data {n}"));
        }
        fn on_trailers(&mut self, t: &HeaderMap) {
            self.0.lock().unwrap().push(format!("trailers {}", t.len()));
        }
    }

    impl Drop for Obs {
        fn drop(&mut self) {
            self.0.lock().unwrap().push("done".into());
        }
    }

    #[tokio::test]
    async fn observer_sees_data_trailers_and_end() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"de"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = frames_body(frames);
        let observed = ObservedBody::new(body, Some(Obs(Arc::clone(&log))));
        let collected = observed.collect().await.unwrap();
        assert_eq!(collected.to_bytes().as_ref(), b"abcde");
        assert_eq!(
            *log.lock().unwrap(),
            vec!["data 3", "data 2", "trailers 1", "done"]
        );
    }

    #[tokio::test]
    async fn observer_reports_when_dropped_unread() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let observed = ObservedBody::new(
            Full::new(Bytes::from_static(b"x")),
            Some(Obs(Arc::clone(&log))),
        );
        drop(observed);
        assert_eq!(*log.lock().unwrap(), vec!["done"]);
    }

    #[tokio::test]
    async fn counting_body_counts_only_unknown_sizes() {
        let (body, size) = CountingBody::new(Full::new(Bytes::from_static(b"hello")));
        assert!(matches!(size, BodySize::Exact(5)));
        let _ = body.collect().await;
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"defg"))),
        ];
        let (body, size) = CountingBody::new(frames_body(frames));
        assert!(matches!(size, BodySize::Counted(_)));
        assert_eq!(size.get(), 0);
        let _ = body.collect().await;
        assert_eq!(size.get(), 7);
    }

    /// A body yielding the given frames, with an unknown size.
    fn frames_body(items: Vec<Result<Frame<Bytes>, std::convert::Infallible>>) -> VecBody {
        VecBody(items.into())
    }

    struct VecBody(std::collections::VecDeque<Result<Frame<Bytes>, std::convert::Infallible>>);

    impl Body for VecBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }
}
