//! The route `timeout` past the response headers: Envoy's route timeout lasts until the
//! upstream response has been completely processed, so a body still streaming when it
//! fires is cut (the stream reset: a mesh client's reader gets an error, a gateway's
//! downstream connection is closed mid-body).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{BoxError, MeshBody};

/// Why a response body ended early.
#[derive(Debug, thiserror::Error)]
#[error("upstream request timeout: the route timeout fired while the response body was read")]
pub struct BodyTimeout;

pin_project! {
    /// `inner`, ended with [`BodyTimeout`] if it is not over by the deadline.
    pub(super) struct Deadline {
        #[pin]
        inner: MeshBody,
        #[pin]
        sleep: Sleep,
        expired: bool,
    }
}

impl Deadline {
    pub(super) fn new(inner: MeshBody, at: Instant) -> Deadline {
        Deadline {
            inner,
            sleep: tokio::time::sleep_until(at),
            expired: false,
        }
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.sleep.poll(cx).is_ready() {
            *this.expired = true;
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
