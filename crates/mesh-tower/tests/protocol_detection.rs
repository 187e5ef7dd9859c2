//! MeshConfig `protocolDetectionTimeout`: a PERMISSIVE port takes a connection whose client
//! sends nothing for that long as plaintext, so a server-first protocol (SMTP, MySQL) greets
//! a plaintext client; without it the port waits for the client's first bytes, as Istio's
//! default `0s` does. A real mesh server on loopback.

use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::names::MeshOptions;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use mesh_tower::tcp::MeshTcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn greet(mut conn: MeshTcpStream) {
    let _ = conn.write_all(b"220 ready\r\n").await;
    let mut buf = [0u8; 16];
    let _ = conn.read(&mut buf).await;
}

async fn greeting(timeout: Option<Duration>) -> Option<String> {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "mail").unwrap();
    let creds: Arc<WorkloadCredentials> =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let mesh = Mesh::new(MeshOptions {
        protocol_detection_timeout: timeout,
        ..MeshOptions::default()
    });
    let server = MeshServer::builder(mesh, "default", "mail", Default::default(), creds)
        .port(25)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve_tcp(listener, greet).await });
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(1), client.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_silent_client_is_plaintext_after_the_detection_timeout() {
    assert_eq!(
        greeting(Some(Duration::from_millis(100))).await.as_deref(),
        Some("220 ready\r\n")
    );
    // Istio's default: wait for the client
    assert_eq!(greeting(None).await, None);
}
