//! How the mesh client names an upstream's failure before the response headers, as
//! Envoy's router does, over real loopback upstreams: an HTTP/2 stream the upstream resets
//! is a `remote reset` (flag UR), an HTTP/1.1 answer that cannot be parsed a `protocol
//! error` (UPE), both 503 with Envoy's text; a failure after the response started is
//! counted UC with the response's code.

mod conn_support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::mesh::Mesh;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn client(protocol: &str, port: u16) -> MeshClient {
    client_with(protocol, port, "")
}

/// A client of `backend.example.internal:8080` (`protocol`) at `127.0.0.1:port`, with
/// `more` config.
fn client_with(protocol: &str, port: u16, more: &str) -> MeshClient {
    let mesh = Mesh::from_yaml(&format!(
        "{more}
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 8080, name: p, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{p: {port}}}}}]
"
    ))
    .unwrap();
    MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build()
}

/// GET through `client`: the status, the body, and the client's `response_flags` for it.
async fn get(client: &MeshClient) -> (u16, String, String) {
    let req = http::Request::get("http://backend.example.internal:8080/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let metrics = client.metrics().render();
    let flags = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .and_then(|l| l.split("response_flags=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned();
    (status, String::from_utf8_lossy(&body).into_owned(), flags)
}

/// An HTTP/1.1 upstream that reads a request, writes `answer` and closes its side, on
/// every connection: its port, and how many connections it answered.
async fn canned_upstream(
    answer: &'static [u8],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counted = std::sync::Arc::clone(&counted);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tcp.write_all(answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, answered)
}

#[tokio::test]
async fn an_http2_stream_the_upstream_resets_is_a_remote_reset() {
    // an h2c upstream whose service fails: hyper resets the stream (INTERNAL_ERROR)
    let port = conn_support::h2c_upstream(|_req| async {
        Err::<http::Response<Empty<Bytes>>, _>(std::io::Error::other("handler failed"))
    })
    .await;
    let (status, body, flags) = get(&client("HTTP2", port)).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers. reset reason: remote reset"
    );
    assert_eq!(flags, "UR");
}

#[tokio::test]
async fn an_http1_answer_that_cannot_be_parsed_is_a_protocol_error() {
    let (port, _) = canned_upstream(b"HTTP/1.1 2x0 OK\r\n\r\n").await;
    let (status, body, flags) = get(&client("HTTP", port)).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
    );
    assert_eq!(flags, "UPE");
}

/// URX is Envoy's "retry limit exceeded": the last failure would have been retried but no
/// attempt was left. A retry followed by a failure the policy does not retry is not that.
#[tokio::test]
async fn a_failure_not_retried_after_a_retry_is_not_flagged_urx() {
    // the first request answered 503 (retried: `retryOn: 503`), the next ones cut before
    // any answer (`reset` is not in the policy)
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = std::sync::Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while tcp.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                        return; // closed before any answer
                    }
                    let _ = tcp
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    let vs = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend}
spec:
  hosts: [backend.example.internal]
  http: [{route: [{destination: {host: backend.example.internal}}], retries: {attempts: 3, retryOn: '503'}}]
---";
    let (status, body, flags) = get(&client_with("HTTP", port, vs)).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "upstream connect error or disconnect/reset before headers. retried and the latest \
         reset reason: connection termination"
    );
    assert_eq!(flags, "UC");
}

/// A connect timeout is `reset reason: connection timeout`, without a transport failure
/// reason (Envoy's pool records none for it).
#[tokio::test]
async fn a_connect_timeout_is_said_as_envoy_says_it() {
    // a listener whose accept queue is full and never drained: the kernel drops further
    // SYNs, so a new connection neither succeeds nor fails
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    let _listener = socket.listen(0).unwrap();
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        let c = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        match c {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    if !full {
        eprintln!("skipped: this kernel does not drop SYNs to a full accept queue");
        return;
    }
    let dr = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: backend}
spec:
  host: backend.example.internal
  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 100ms}}}
---";
    let (status, body, flags) = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        get(&client_with("HTTP", port, dr)),
    )
    .await
    .expect("the connect timeout answers");
    assert_eq!(status, 503);
    // (the default retry policy retries a connect failure: the last attempt speaks)
    assert!(
        body == "upstream connect error or disconnect/reset before headers. reset reason: \
                 connection timeout"
            || body
                == "upstream connect error or disconnect/reset before headers. retried and the \
                    latest reset reason: connection timeout",
        "{body}"
    );
    assert!(flags.starts_with("UF"), "{flags}");
    drop(held);
}

/// A 200 whose body ends after 7 of its 100 bytes.
const CUT_SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";

/// An upstream that fails after its response started (here: closes with most of a
/// `content-length` body unsent) is Envoy's `onUpstreamAbort`: the caller gets the status
/// and what was sent, then an error; the request is counted with the response's code and
/// flag UC, not as a whole answer.
#[tokio::test]
async fn an_upstream_cut_after_the_response_started_is_uc() {
    let (port, _) = canned_upstream(CUT_SHORT).await;
    let client = client("HTTP", port);
    let req = http::Request::get("http://backend.example.internal:8080/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.into_body().collect().await.is_err());
    let metrics = client.metrics().render();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        line.contains("response_code=\"200\"") && line.contains("response_flags=\"UC\""),
        "{line}"
    );
}

/// Envoy's router reports an upstream reset to outlier detection whether or not the
/// response had started (`onUpstreamReset`): an endpoint that cuts its answers short is
/// ejected as one that resets before them would be.
#[tokio::test]
async fn a_reset_after_the_headers_counts_for_outlier_detection() {
    // an endpoint cutting every answer short, counting them
    let (cut_port, cuts) = canned_upstream(CUT_SHORT).await;
    // and a good one
    let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good_port = good.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        axum::serve(good, app).await
    });
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: backend}}
spec:
  hosts: [backend.example.internal]
  ports: [{{number: 8080, name: p, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{p: {cut_port}}}}}
  - {{address: 127.0.0.1, ports: {{p: {good_port}}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend}}
spec:
  host: backend.example.internal
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}}
"
    ))
    .unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "default", "app")).build();
    for _ in 0..6 {
        let req = http::Request::get("http://backend.example.internal:8080/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        let _ = resp.into_body().collect().await;
    }
    assert_eq!(
        cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "ejected after its first cut answer"
    );
}
