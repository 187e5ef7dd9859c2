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

/// Why a response body ended early: the route `timeout` fired while it was read (Envoy
/// resets the stream then). The error a [`MeshClient`](super::MeshClient) response body
/// ends with, boxed; downcast to tell it from a broken connection.
///
/// # Examples
///
/// A backend that sends its headers and two of the ten bytes it announced, under a route
/// timeout of 200 ms:
///
/// ```
/// use http_body_util::{BodyExt, Empty};
/// use mesh_core::mesh::Mesh;
/// use mesh_tower::outbound::{BodyTimeout, ClientWorkload, MeshClient};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let port = listener.local_addr()?.port();
/// tokio::spawn(async move {
///     let (mut conn, _) = listener.accept().await.unwrap();
///     let _ = conn.read(&mut [0; 4096]).await;
///     conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await.unwrap();
///     std::future::pending::<()>().await // the rest never comes
/// });
/// let mesh = Mesh::from_yaml(&format!("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {{name: feed, namespace: default}}
/// spec:
///   hosts: [feed.example.com]
///   location: MESH_EXTERNAL
///   ports: [{{number: 80, name: http, protocol: HTTP}}]
///   resolution: STATIC
///   endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {{name: feed, namespace: default}}
/// spec:
///   hosts: [feed.example.com]
///   http:
///   - timeout: 200ms
///     route: [{{destination: {{host: feed.example.com}}}}]
/// "))?;
/// let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "default", "sleep")).build();
/// let req = http::Request::get("http://feed.example.com/").body(Empty::<bytes::Bytes>::new())?;
/// let resp = client.request(req).await?;
/// assert_eq!(resp.status(), 200); // the headers came in time
/// let err = resp.into_body().collect().await.unwrap_err();
/// assert!(err.downcast_ref::<BodyTimeout>().is_some(), "{err}");
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("upstream request timeout: the route timeout fired while the response body was read")]
pub struct BodyTimeout;

/// The end of a request body still streaming in, when it comes.
type Ending = Pin<Box<dyn std::future::Future<Output = Instant> + Send + Sync>>;

pin_project! {
    /// `inner`, ended with [`BodyTimeout`] if it is not over by the deadline.
    pub(super) struct Deadline {
        #[pin]
        inner: MeshBody,
        #[pin]
        sleep: Sleep,
        expired: bool,
        // the deadline is that long after the request's end, not yet come
        waiting: Option<(Ending, std::time::Duration)>,
    }
}

impl Deadline {
    pub(super) fn new(inner: MeshBody, at: Instant) -> Deadline {
        Deadline {
            inner,
            sleep: tokio::time::sleep_until(at),
            expired: false,
            waiting: None,
        }
    }

    /// The deadline `timeout` after the request's body has ended (Envoy's route timeout
    /// starts then), for an answer that came before it did (a bidirectional stream).
    pub(super) fn after_end(
        inner: MeshBody,
        ended: std::sync::Arc<super::Ended>,
        timeout: std::time::Duration,
    ) -> Deadline {
        Deadline {
            inner,
            // (reset once the request has ended)
            sleep: tokio::time::sleep(std::time::Duration::from_secs(86_400 * 365)),
            expired: false,
            waiting: Some((Box::pin(async move { ended.wait().await }), timeout)),
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
        let mut this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        if let Some((ending, timeout)) = this.waiting.as_mut()
            && let Poll::Ready(end) = ending.as_mut().poll(cx)
        {
            let at = end + *timeout;
            *this.waiting = None;
            this.sleep.as_mut().reset(at);
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.waiting.is_none() && this.sleep.poll(cx).is_ready() {
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
