//! Raw HTTP/1.1 connections for the tests of how servers end their connections
//! (`inbound_shutdown`, `gateway_drain`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET path` with `host` on a new connection to `addr`.
pub async fn send(addr: SocketAddr, host: &str, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

/// Reads the first answer on `tcp` and checks it is a 200.
pub async fn answered_200(tcp: &mut TcpStream) {
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Reads until the server closes the connection (up to 5 s); what was read.
pub async fn until_closed(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "still open after 5 s");
    String::from_utf8_lossy(&all).into_owned()
}

/// Waits (up to 5 s) until `n` reaches `want`.
pub async fn reaches(n: &AtomicUsize, want: usize) {
    let start = Instant::now();
    while n.load(Ordering::SeqCst) < want {
        assert!(start.elapsed() < Duration::from_secs(5), "not reached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
