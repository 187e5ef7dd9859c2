//! Mirrors of streamed request bodies, as Envoy streams its shadows (since 1.33): a body of
//! unknown length, or longer than the client's buffer limit, reaches the route's upstream
//! and every mirror whole, and a mirror that cannot be reached does not hold the request.
//! Plain backends on loopback behind ServiceEntries.

mod outbound_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use outbound_support::*;

/// A plain backend recording `<name> <body length> <body digest>` for every request.
async fn backend(name: &'static str, seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(move |req: Request| {
        let seen = Arc::clone(&seen);
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let sum: u64 = body.iter().map(|b| u64::from(*b)).sum();
            seen.lock()
                .unwrap()
                .push(format!("{name} {} {sum}", body.len()));
            name
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A ServiceEntry `name` for `<name>.example.internal` at `addr`.
fn entry(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
",
        addr.port()
    )
}

fn config(api: SocketAddr, shadow: SocketAddr) -> String {
    format!(
        "{}{}
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  http:
  - route: [{{destination: {{host: api.example.internal}}}}]
    mirror: {{host: shadow.example.internal}}
",
        entry("api", api),
        entry("shadow", shadow)
    )
}

/// A body of 64 KiB chunks, of unknown length (sent chunked), written by another task.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn streamed(chunks: usize) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..chunks {
            let chunk = Bytes::from(vec![(i % 251) as u8; 64 << 10]);
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    Chunks(rx)
}

#[tokio::test]
async fn a_streamed_body_is_mirrored_whole() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api = backend("api", Arc::clone(&seen)).await;
    let shadow = backend("shadow", Arc::clone(&seen)).await;
    let mesh = mesh(&config(api, shadow));
    let pki = Pki::new();
    let client = client(&mesh, &pki, "default", "sleep");
    // 40 chunks of 64 KiB: 2.5 MiB, past the 1 MiB buffer limit, and of unknown length
    let req = http::Request::post("http://api.example.internal/upload")
        .body(streamed(40))
        .unwrap();
    let (status, _, body, _) = send(&client, req).await;
    assert_eq!((status, body.as_str()), (200, "api"));
    for _ in 0..250 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let sum: u64 = (0..40u64).map(|i| (i % 251) * (64 << 10)).sum();
    let len = 40 * (64 << 10);
    assert_eq!(
        seen,
        [format!("api {len} {sum}"), format!("shadow {len} {sum}")]
    );
}

#[tokio::test]
async fn a_mirror_nobody_answers_does_not_hold_the_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api = backend("api", Arc::clone(&seen)).await;
    let dead = dead_addr().await;
    let mesh = mesh(&config(api, dead));
    let pki = Pki::new();
    let client = client(&mesh, &pki, "default", "sleep");
    let req = http::Request::post("http://api.example.internal/upload")
        .body(streamed(40))
        .unwrap();
    let (status, _, body, _) = tokio::time::timeout(Duration::from_secs(10), send(&client, req))
        .await
        .expect("the request is not held by its mirror");
    assert_eq!((status, body.as_str()), (200, "api"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [format!(
            "api {} {}",
            40 * (64 << 10),
            (0..40u64).map(|i| (i % 251) * (64 << 10)).sum::<u64>()
        )]
    );
}

/// Envoy gives a shadow request the route's timeout: a mirror that accepts the request and
/// never answers is reset when it runs out (its connection closed), not held for ever.
#[tokio::test]
async fn a_mirror_that_never_answers_is_reset_at_the_route_timeout() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api = backend("api", Arc::clone(&seen)).await;
    // a shadow that reads requests and never answers, counting its closed connections
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shadow = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&closed);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let yaml = config(api, shadow).replace(
        "  - route: [{destination: {host: api.example.internal}}]\n",
        "  - route: [{destination: {host: api.example.internal}}]\n    timeout: 500ms\n",
    );
    assert!(yaml.contains("timeout: 500ms"), "{yaml}");
    let mesh = mesh(&yaml);
    let pki = Pki::new();
    let client = client(&mesh, &pki, "default", "sleep");
    let start = std::time::Instant::now();
    let req = http::Request::get("http://api.example.internal/")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let (status, _, body, _) = send(&client, req).await;
    assert_eq!((status, body.as_str()), (200, "api"));
    while closed.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the shadow's connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "reset at the route timeout, not before: {:?}",
        start.elapsed()
    );
}
