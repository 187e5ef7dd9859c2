//! A mesh server's connections end with its serving, over real loopback sockets: a
//! graceful shutdown lets requests in flight finish within the drain timeout and closes
//! what is still open after it, and dropping the serving future closes every connection
//! at once (an application that never answers does not keep them, nor the server, alive).

mod conn_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use tokio::net::TcpListener;

use conn_support::{answered_200, reaches, until_closed};

/// A PERMISSIVE mesh server (no PeerAuthentication: plaintext callers get in) with
/// `drain`; its app answers `/` at once and never answers `/hang`.
fn server(drain: Duration) -> (MeshServer, axum::Router, Arc<AtomicUsize>) {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let server = MeshServer::builder(
        Mesh::new(Default::default()),
        "foo",
        "httpbin",
        Default::default(),
        creds,
    )
    .drain_timeout(drain)
    .build()
    .unwrap();
    let hanging = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hanging);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route(
            "/hang",
            axum::routing::get(move || {
                let h = Arc::clone(&h);
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<&'static str>().await
                }
            }),
        );
    (server, app, hanging)
}

/// Serves `app` on a new listener until `stop` is sent; its address, the sender and the
/// serving task.
async fn serving(
    server: MeshServer,
    app: axum::Router,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, app, async {
                let _ = stopped.await;
            })
            .await
    });
    (addr, stop, task)
}

/// Sends a plaintext `GET path` on a new connection.
async fn send(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    conn_support::send(addr, "httpbin", path).await
}

#[tokio::test]
async fn connections_still_open_after_the_drain_timeout_are_closed() {
    let (server, app, hanging) = server(Duration::from_millis(300));
    let (addr, stop, serving) = serving(server, app).await;
    let mut hung = send(addr, "/hang").await;
    reaches(&hanging, 1).await;
    // an idle keep-alive connection: closed at once by the graceful shutdown
    let mut idle = send(addr, "/").await;
    answered_200(&mut idle).await;

    let start = Instant::now();
    stop.send(()).unwrap();
    assert_eq!(until_closed(&mut idle).await, "", "closed without a word");
    let r = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "the hanging request had its drain timeout: {:?}",
        start.elapsed()
    );
    // the request that never got its answer: its connection is closed, not left open
    assert_eq!(until_closed(&mut hung).await, "");
}

#[tokio::test]
async fn a_request_answered_within_the_drain_timeout_completes() {
    let (server, _, _) = server(Duration::from_secs(5));
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let (addr, stop, serving) = serving(server, app).await;
    let mut slow = send(addr, "/slow").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("done"), "{answer}");
    let r = tokio::time::timeout(Duration::from_secs(5), serving).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
}

#[tokio::test]
async fn dropping_the_serving_future_closes_its_connections() {
    let (server, app, hanging) = server(Duration::from_secs(30));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move { server.serve(listener, app).await });
    let mut hung = send(addr, "/hang").await;
    reaches(&hanging, 1).await;
    serving.abort();
    let _ = serving.await;
    assert_eq!(until_closed(&mut hung).await, "");
}
