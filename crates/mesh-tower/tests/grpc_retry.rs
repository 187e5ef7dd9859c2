//! A gRPC call (a request body of unknown length, as every gRPC client sends) is retried
//! under Istio's default retry policy (`unavailable` among its `retryOn`), its body sent
//! whole again, as Envoy's router keeps the body it streams for retries; over a real
//! HTTP/2 (h2c) upstream on loopback.

mod conn_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};

/// A gRPC request body of unknown length: two frames, no size hint.
struct Call(Vec<Bytes>);

impl http_body::Body for Call {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| Ok(http_body::Frame::data(self.0.remove(0))));
        std::task::Poll::Ready(next)
    }
}

#[tokio::test]
async fn a_grpc_call_answered_unavailable_is_retried_with_its_whole_body() {
    // an h2c gRPC upstream: the first call is answered trailers-only UNAVAILABLE, the
    // next with the request's bytes
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let port = conn_support::h2c_upstream(move |req: http::Request<hyper::body::Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            let resp = http::Response::builder().header("content-type", "application/grpc");
            let resp = if first {
                resp.header("grpc-status", "14")
                    .body(Full::new(Bytes::new()))
            } else {
                resp.body(Full::new(body))
            };
            Ok(resp.unwrap())
        }
    })
    .await;
    // no VirtualService: Istio's default retry policy (2 attempts, `unavailable` among
    // its `retryOn`)
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: greeter}}
spec:
  hosts: [greeter.example.internal]
  ports: [{{number: 8080, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {port}}}}}]
"
    ))
    .unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build();
    let req =
        http::Request::post("http://greeter.example.internal:8080/helloworld.Greeter/SayHello")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Call(vec![
                Bytes::from_static(b"\0\0\0\0\x05"),
                Bytes::from_static(b"hello"),
            ]))
            .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("grpc-status"), "{resp:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        Bytes::from_static(b"\0\0\0\0\x05hello"),
        "the whole call again"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
