//! A route `timeout` lasts until the whole response has been read, as Envoy's route
//! timeout does: a body still streaming when it fires is cut, one that ends in time is
//! whole. A real mesh client to a real HTTP backend on loopback streaming its body slowly.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

/// A body of `ab`, `cd`, `ef`, each 150 ms after the one before.
struct Trickle {
    sent: u8,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent == 3 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let i = self.sent;
        self.sent += 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(150);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![
            b'a' + 2 * i,
            b'b' + 2 * i,
        ])))))
    }
}

/// Answers at once, then trickles its body.
async fn slow_body_backend() -> SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        axum::body::Body::new(Trickle {
            sent: 0,
            sleep: Box::pin(tokio::time::sleep(Duration::from_millis(150))),
        })
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn config(backend: SocketAddr) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: feed, namespace: default}}
spec:
  hosts: [feed.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: feed, namespace: default}}
spec:
  hosts: [feed.example.com]
  http:
  - match: [{{uri: {{prefix: /short}}}}]
    timeout: 250ms
    route: [{{destination: {{host: feed.example.com}}}}]
  - timeout: 2s
    route: [{{destination: {{host: feed.example.com}}}}]
",
        backend.port()
    )
}

#[tokio::test]
async fn route_timeout_bounds_the_response_body() {
    let backend = slow_body_backend().await;
    let mesh = Mesh::from_yaml(&config(backend)).unwrap();
    let client =
        MeshClient::builder(mesh, ClientWorkload::new("sleep", "default", "sleep")).build();
    let get = |path: &str| {
        http::Request::get(format!("http://feed.example.com{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // the headers come in time, the body does not: it is cut at the route timeout
    let start = Instant::now();
    let resp = client.request(get("/short")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let err = resp.into_body().collect().await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        err.to_string().contains("upstream request timeout"),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_millis(240) && elapsed < Duration::from_millis(440),
        "cut at the route timeout, not at the body's end: {elapsed:?}"
    );

    // a body that ends within the timeout is whole
    let resp = client.request(get("/long")).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"abcdef");
}
