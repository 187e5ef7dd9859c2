//! The server's HTTP/2 stream limit, read from its connection preface.
//!
//! Envoy's HTTP/2 connection pool opens another connection to an endpoint when its
//! connections' streams are all taken, and a connection's stream limit is the smaller of the
//! cluster's `max_concurrent_streams` (DestinationRule `http.maxConcurrentStreams`) and the
//! `SETTINGS_MAX_CONCURRENT_STREAMS` the server announced (`Http2::ActiveClient`'s
//! `onSettings`). hyper's client does not expose the peer's settings (it queues streams past
//! the limit instead), so [`SettingsIo`] reads the limit from the bytes themselves: a
//! server's connection preface is a `SETTINGS` frame (RFC 9113 §3.4), which is parsed as it
//! passes; after it, reads go straight through. A later `SETTINGS` frame that changes the
//! limit is not seen (servers announce it in the preface).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// The limit until the server's `SETTINGS` says otherwise: none (RFC 9113 §6.5.2, "initially,
/// there is no limit").
pub(crate) const NO_LIMIT: u32 = u32::MAX;

/// `SETTINGS` frame type.
const SETTINGS: u8 = 0x4;
/// `SETTINGS_MAX_CONCURRENT_STREAMS`.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// A parser fed the first bytes a server sends, until its first frame has passed.
#[derive(Debug, Default)]
struct Preface {
    header: [u8; 9],
    header_len: usize,
    entry: [u8; 6],
    entry_len: usize,
    /// Payload bytes of the `SETTINGS` frame still to come.
    payload_left: usize,
    done: bool,
}

impl Preface {
    /// Feeds `bytes`; the stream limit when the preface sets one.
    fn feed(&mut self, mut bytes: &[u8], limit: &AtomicU32) {
        while !self.done && !bytes.is_empty() {
            if self.header_len < 9 {
                let n = (9 - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == 9 {
                    let h = &self.header;
                    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let ack = h[4] & 0x1 != 0;
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    // anything else than a SETTINGS frame first is the codec's error to report
                    if h[3] != SETTINGS || ack || stream != 0 || len % 6 != 0 || len == 0 {
                        self.done = true;
                    }
                    self.payload_left = len;
                }
                continue;
            }
            let n = (6 - self.entry_len).min(bytes.len());
            self.entry[self.entry_len..self.entry_len + n].copy_from_slice(&bytes[..n]);
            self.entry_len += n;
            bytes = &bytes[n..];
            if self.entry_len == 6 {
                self.entry_len = 0;
                self.payload_left -= 6;
                let e = &self.entry;
                if u16::from_be_bytes([e[0], e[1]]) == MAX_CONCURRENT_STREAMS {
                    let v = u32::from_be_bytes([e[2], e[3], e[4], e[5]]);
                    limit.store(v, Ordering::Relaxed);
                }
                if self.payload_left == 0 {
                    self.done = true;
                }
            }
        }
    }
}

/// [`Streams::idle_since`] while the connection carries a stream.
const BUSY: u64 = u64::MAX;

/// Milliseconds since a process-wide epoch (the first call): an instant that fits in an
/// atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(BUSY - 1)
}

/// The streams of one client HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct Streams {
    /// Requests it has carried (`maxRequestsPerConnection`).
    pub(crate) used: AtomicU32,
    /// Streams open now: sent, their response not yet read to its end or dropped.
    pub(crate) active: AtomicU32,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` ([`NO_LIMIT`] until known).
    pub(crate) peer_limit: AtomicU32,
    /// When `active` last fell to 0 ([`now_ms`]), for the idle timeout; [`BUSY`] from the
    /// moment a stream is taken on an idle connection. Meaningful only while `active` is 0.
    idle_since: AtomicU64,
}

impl Streams {
    /// A new connection's, carrying its first request (its end starts the idle time).
    pub(crate) fn first() -> Self {
        Streams {
            used: AtomicU32::new(1),
            active: AtomicU32::new(1),
            peer_limit: AtomicU32::new(NO_LIMIT),
            idle_since: AtomicU64::new(BUSY),
        }
    }

    /// Counts a stream taken on the connection (under its endpoint's pool lock). No clock
    /// is read: a connection that was idle is only marked busy.
    pub(crate) fn take(&self) {
        if self.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.idle_since.store(BUSY, Ordering::SeqCst);
        }
    }

    /// Counts a stream ended (its response read to its end, or dropped); the last one
    /// starts the connection's idle time.
    pub(crate) fn end(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(now_ms(), Ordering::SeqCst);
        }
    }

    /// True when the connection has carried no stream for at least `timeout`, as Envoy's
    /// codec client's idle timer, armed when its last active stream ends, would have
    /// closed it. The clock is read only for a connection with no stream open.
    ///
    /// Between the last stream's `active` reaching 0 and its time being written, the time
    /// seen is [`BUSY`] (written when that busy period's first stream was taken), so a
    /// connection that has just become idle is not mistaken for an old idle one. (Only an
    /// earlier stream end's time written late, after the next stream was taken, could
    /// stand in: at worst a connection with no stream is let go early.)
    pub(crate) fn idle_for(&self, timeout: Duration) -> bool {
        if self.active.load(Ordering::SeqCst) != 0 {
            return false;
        }
        let since = self.idle_since.load(Ordering::SeqCst);
        if since == BUSY {
            return false;
        }
        let timeout = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        now_ms().saturating_sub(since) >= timeout
    }

    /// How much longer the connection may stay without a stream before
    /// [`Self::idle_for`]`(timeout)` holds (zero: it holds now); `None` while a stream is
    /// open, when no end of idleness can be told yet.
    pub(crate) fn idle_left(&self, timeout: Duration) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let since = self.idle_since.load(Ordering::SeqCst);
        if since == BUSY {
            return None;
        }
        let idle = Duration::from_millis(now_ms().saturating_sub(since));
        Some(timeout.saturating_sub(idle))
    }

    /// True when another stream may open on the connection, with `configured` (the
    /// DestinationRule's `maxConcurrentStreams`) as the client's own limit.
    pub(crate) fn has_room(&self, configured: u32) -> bool {
        let limit = configured.min(self.peer_limit.load(Ordering::Relaxed));
        self.active.load(Ordering::Relaxed) < limit
    }
}

/// Client-side HTTP/2 I/O that notes the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (in
/// its connection's [`Streams`]) from its connection preface.
pub(crate) struct SettingsIo<T> {
    inner: T,
    preface: Option<Box<Preface>>,
    streams: Arc<Streams>,
}

impl<T> SettingsIo<T> {
    pub(crate) fn new(inner: T, streams: Arc<Streams>) -> Self {
        SettingsIo {
            inner,
            preface: Some(Box::default()),
            streams,
        }
    }
}

impl<T: Read + Unpin> Read for SettingsIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(preface) = this.preface.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        // the preface's first reads go through a small buffer of ours, to be seen
        let mut local = [0u8; 512];
        let n = buf.remaining().min(local.len());
        let mut rb = ReadBuf::new(&mut local[..n]);
        match Pin::new(&mut this.inner).poll_read(cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                preface.feed(got, &this.streams.peer_limit);
                if preface.done || got.is_empty() {
                    this.preface = None;
                }
                buf.put_slice(got);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Write + Unpin> Write for SettingsIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut e = id.to_be_bytes().to_vec();
        e.extend(value.to_be_bytes());
        e
    }

    /// The limit after feeding `bytes` in chunks of `chunk`, and whether parsing ended.
    fn parse(bytes: &[u8], chunk: usize) -> (u32, bool) {
        let limit = AtomicU32::new(NO_LIMIT);
        let mut p = Preface::default();
        for c in bytes.chunks(chunk) {
            p.feed(c, &limit);
        }
        (limit.load(Ordering::Relaxed), p.done)
    }

    #[test]
    fn reads_the_stream_limit_in_any_chunking() {
        let mut payload = setting(0x4, 65_535); // INITIAL_WINDOW_SIZE
        payload.extend(setting(MAX_CONCURRENT_STREAMS, 200));
        payload.extend(setting(0x6, 16_384));
        let mut bytes = frame(SETTINGS, 0, 0, &payload);
        // the frames that follow are not read
        bytes.extend(frame(SETTINGS, 0, 0, &setting(MAX_CONCURRENT_STREAMS, 7)));
        for chunk in [1, 2, 5, 9, 10, 13, 100] {
            assert_eq!(parse(&bytes, chunk), (200, true), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_preface_without_the_setting_leaves_no_limit() {
        let bytes = frame(SETTINGS, 0, 0, &setting(0x4, 1 << 20));
        assert_eq!(parse(&bytes, 4), (NO_LIMIT, true));
        // an empty SETTINGS frame
        assert_eq!(parse(&frame(SETTINGS, 0, 0, &[]), 4), (NO_LIMIT, true));
        // zero is a limit (no stream may be opened)
        let zero = frame(SETTINGS, 0, 0, &setting(MAX_CONCURRENT_STREAMS, 0));
        assert_eq!(parse(&zero, 3), (0, true));
    }

    #[test]
    fn a_connection_is_idle_only_with_no_stream_since_the_timeout() {
        let s = Streams::first();
        // carrying its first stream: never idle
        assert!(!s.idle_for(Duration::ZERO));
        s.end();
        assert!(s.idle_for(Duration::ZERO));
        assert!(!s.idle_for(Duration::from_secs(3600)));
        // a stream taken again: busy until the last one ends
        s.take();
        s.take();
        s.end();
        assert!(!s.idle_for(Duration::ZERO), "a stream still open");
        s.end();
        assert!(s.idle_for(Duration::ZERO));
        assert_eq!(s.active.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn anything_but_a_settings_frame_first_is_left_alone() {
        let entry = setting(MAX_CONCURRENT_STREAMS, 5);
        for bytes in [
            frame(0x8, 0, 0, &[0, 0, 1, 0]),              // WINDOW_UPDATE
            frame(SETTINGS, 0x1, 0, &[]),                 // an ACK
            frame(SETTINGS, 0, 1, &entry),                // on a stream
            frame(SETTINGS, 0, 0, &entry[..5]),           // a length not a multiple of 6
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), // not HTTP/2
        ] {
            assert_eq!(parse(&bytes, 64), (NO_LIMIT, true), "{bytes:?}");
        }
    }
}
