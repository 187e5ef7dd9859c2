//! A dropped gateway drains, over real loopback sockets: it stops listening, asks its open
//! connections to close, gives them the drain timeout to finish, then closes the rest, and
//! with them its own connections to the upstreams (its mesh client goes with it).

mod conn_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::mesh::Mesh;
use mesh_tower::gateway::GatewayServer;
use tokio::net::{TcpListener, TcpStream};

use conn_support::{answered_200, reaches, until_closed};

/// A backend that answers `/` at once, `/slow` after 300 ms and never answers `/hang`;
/// with the connections it accepted and those that ended.
struct Backend {
    addr: SocketAddr,
    hanging: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn backend() -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hanging, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, c) = (Arc::clone(&hanging), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (h, c) = (Arc::clone(&h), Arc::clone(&c));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let h = Arc::clone(&h);
                    async move {
                        let _: &http::Request<hyper::body::Incoming> = &req;
                        match req.uri().path() {
                            "/hang" => {
                                h.fetch_add(1, Ordering::SeqCst);
                                std::future::pending::<()>().await;
                            }
                            "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
                            _ => {}
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from("done")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Backend {
        addr,
        hanging,
        closed,
    }
}

/// A gateway on port 80 routing every host to the backend, draining for `drain`.
async fn gateway(backend: SocketAddr, drain: Duration) -> GatewayServer {
    let mesh = Mesh::from_yaml(&conn_support::gateway_config(backend.port())).unwrap();
    conn_support::start_gateway(mesh, Some(drain)).await
}

/// Sends `GET path` on a new connection to `addr`.
async fn send(addr: SocketAddr, path: &str) -> TcpStream {
    conn_support::send(addr, "example.com", path).await
}

#[tokio::test]
async fn a_dropped_gateway_closes_what_is_left_after_the_drain_timeout() {
    let b = backend().await;
    let gw = gateway(b.addr, Duration::from_millis(300)).await;
    let addr = gw.local_addr(80).unwrap();
    // a keep-alive connection, idle after its answer, and a request that never gets one
    let mut idle = send(addr, "/").await;
    answered_200(&mut idle).await;
    let mut hung = send(addr, "/hang").await;
    reaches(&b.hanging, 1).await;

    let start = Instant::now();
    drop(gw);
    assert_eq!(until_closed(&mut idle).await, "", "the idle one at once");
    assert_eq!(until_closed(&mut hung).await, "", "the hanging one");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "after the drain timeout: {:?}",
        start.elapsed()
    );
    // the gateway's pooled connection to the backend goes with it (the backend cannot
    // tell the other one closed: hyper reads no more of a connection whose request its
    // service still holds)
    reaches(&b.closed, 1).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_request_answered_within_the_drain_timeout_completes() {
    let b = backend().await;
    let gw = gateway(b.addr, Duration::from_secs(5)).await;
    let addr = gw.local_addr(80).unwrap();
    let mut slow = send(addr, "/slow").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(gw);
    let answer = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
}

/// A backend accepting WebSocket upgrades and echoing what it reads on the stream.
async fn echo_upgrades() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |mut req: http::Request<hyper::body::Incoming>| async move {
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let mut io = hyper_util::rt::TokioIo::new(on.await.unwrap());
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        });
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "websocket")
                                .body(http_body_util::Empty::<bytes::Bytes>::new())
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upgraded_stream_is_closed_after_the_drain_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway(echo_upgrades().await, Duration::from_millis(200)).await;
    let addr = gw.local_addr(80).unwrap();
    let mut ws = TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nhost: example.com\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = ws.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    ws.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping", "spliced");

    let start = Instant::now();
    drop(gw);
    assert_eq!(until_closed(&mut ws).await, "");
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "after the drain timeout: {:?}",
        start.elapsed()
    );
}
