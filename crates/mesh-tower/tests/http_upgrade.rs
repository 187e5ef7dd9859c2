//! HTTP/1.1 upgrades (WebSocket) end to end on loopback, as Istio's Envoy passes them by
//! default: a `MeshClient` and the ingress gateway (plain HTTP and a terminated HTTPS
//! server) in front of a `MeshServer` under STRICT mTLS, all with certificates from one
//! in-process CA. The upstream app answers `101 Switching Protocols` and echoes the raw
//! bytes of the upgraded stream; authorization denials, a server ignoring the upgrade,
//! retries, the route timeout, the connection pool and the metrics are checked around it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{rustls, Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::{ConnectionInfo, MeshServer, ServerBody};
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TD: &str = "cluster.local";
const WAIT: Duration = Duration::from_secs(5);

fn creds(ca: &MeshCa, ns: &str, sa: &str, dns: &[&str]) -> Arc<WorkloadCredentials> {
    let id = Identity::new(TD, ns, sa).unwrap();
    WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), dns).unwrap()).unwrap()
}

/// The `echo` service (port 8080 `http`) under STRICT mTLS, a DENY policy on `/denied`,
/// a VirtualService with a 300 ms route timeout and, for `/flaky`, retries on 5xx; and an
/// ingress gateway for `ws.example.com` on 80 (HTTP) and 443 (HTTPS, `ws-credential`) whose
/// own policy denies `/gw-denied`. `extra`: more config (a DestinationRule).
fn config(extra: &str) -> String {
    format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: default}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-denied, namespace: default}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/denied]}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo]
  http:
  - match: [{{uri: {{prefix: /flaky}}}}]
    route: [{{destination: {{host: echo}}}}]
    retries: {{attempts: 2, retryOn: 5xx}}
  - route: [{{destination: {{host: echo}}}}]
    timeout: 300ms
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: ws-gateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [ws.example.com]
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: SIMPLE, credentialName: ws-credential}}
    hosts: [ws.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ws, namespace: istio-system}}
spec:
  hosts: [ws.example.com]
  gateways: [ws-gateway]
  http:
  - route: [{{destination: {{host: echo.default.svc.cluster.local, port: {{number: 8080}}}}}}]
    timeout: 300ms
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: gw-deny, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/gw-denied]}}}}]}}]
{extra}"
    )
}

/// What the echo app saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    version: http::Version,
    connection: Option<String>,
    upgrade: Option<String>,
    /// The client side of the connection the request came on.
    remote: Option<SocketAddr>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    fn last(&self, path: &str) -> Seen {
        self.all()
            .into_iter()
            .rev()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("no request for {path}"))
    }
    fn count(&self, path: &str) -> usize {
        self.all().iter().filter(|s| s.path == path).count()
    }
}

/// The app: a WebSocket-like echo. An upgrade request gets 101 and its upgraded stream's
/// bytes back (until EOF), except on `/plain-ok` (200, the upgrade ignored) and the first
/// `/flaky` request (503); other requests get 200 with their HTTP version.
fn echo_app(
    log: Log,
) -> impl tower::Service<
    Request<ServerBody>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let flaky = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |mut req: Request<ServerBody>| {
        let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        let seen = Seen {
            path: req.uri().path().to_owned(),
            version: req.version(),
            connection: header("connection"),
            upgrade: header("upgrade"),
            remote: req
                .extensions()
                .get::<ConnectionInfo>()
                .and_then(|c| c.remote_addr()),
        };
        log.0.lock().unwrap().push(seen.clone());
        let flaky = Arc::clone(&flaky);
        let on_upgrade = hyper::upgrade::on(&mut req);
        async move {
            let text = |status: StatusCode, body: String| {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = status;
                Ok(r)
            };
            if seen.upgrade.is_none() || seen.path == "/plain-ok" {
                return text(StatusCode::OK, format!("plain {:?}", seen.version));
            }
            if seen.path == "/flaky" && flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                return text(StatusCode::SERVICE_UNAVAILABLE, "try again".into());
            }
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                .body(Full::new(Bytes::new()))
                .unwrap())
        }
    })
}

struct Setup {
    mesh: Mesh,
    ca: Arc<MeshCa>,
    log: Log,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The echo workload (a STRICT `MeshServer`, service account `echo`) registered in a mesh
/// with [`config`]`(extra)`.
async fn setup(extra: &str) -> Setup {
    let ca = Arc::new(MeshCa::self_signed(TD).unwrap());
    let mesh = Mesh::from_yaml(&config(extra)).unwrap();
    let labels: mesh_core::model::Labels = [("app".to_string(), "echo".to_string())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "default",
        "echo",
        labels.clone(),
        creds(&ca, "default", "echo", &[]),
    )
    .port(8080)
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Log::default();
    let app = echo_app(log.clone());
    let task = tokio::spawn(async move { server.serve(listener, app).await });
    mesh.register(Workload {
        name: "echo-v1".into(),
        namespace: "default".into(),
        service_account: "echo".into(),
        labels,
        address: addr.ip(),
        ports: [("http".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    Setup {
        mesh,
        ca,
        log,
        _server: task,
    }
}

fn client(s: &Setup) -> MeshClient {
    let me = ClientWorkload::new("sleep", "default", "sleep").with_label("app", "sleep");
    MeshClient::builder(s.mesh.clone(), me)
        .credentials(creds(&s.ca, "default", "sleep", &[]))
        .build()
}

fn upgrade_req(uri: &str, protocol: &str) -> Request<Empty<Bytes>> {
    Request::get(uri)
        .header("connection", "Upgrade")
        .header("upgrade", protocol)
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .unwrap()
}

/// Writes `msg` and expects it echoed back.
async fn round_trip<IO: AsyncRead + AsyncWrite + Unpin>(io: &mut IO, msg: &[u8]) {
    io.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(WAIT, io.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

async fn text<B>(resp: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// Through a `MeshClient` over mTLS: the 101 is the user's to upgrade, with bytes both
/// ways past the route timeout; the upgraded connection is never pooled again; a 503 before
/// the upgrade is retried; metrics count the 101. `extra`: the DestinationRule, if any.
async fn mesh_client_websocket(extra: &str, plain_version: http::Version) {
    let s = setup(extra).await;
    let client = client(&s);

    // a plain request first: its HTTP/1.1 connection (if any) goes back to the pool
    let resp = client.request(upgrade_free("/before")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(text(resp).await, format!("plain {plain_version:?}"));

    let mut resp = client
        .request(upgrade_req("http://echo:8080/ws", "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(&mut resp))
        .await
        .unwrap()
        .expect("upgraded");
    drop(resp); // the request is counted in the metrics now
    let mut ws = TokioIo::new(upgraded);
    round_trip(&mut ws, b"ping").await;
    // the hop-by-hop headers of the upgrade reached the app, over HTTP/1.1
    let seen = s.log.last("/ws");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.connection.as_deref(), Some("Upgrade"));
    assert_eq!(seen.upgrade.as_deref(), Some("websocket"));

    // the route timeout (300 ms) covers the wait for the 101, not the upgraded stream
    tokio::time::sleep(Duration::from_millis(500)).await;
    round_trip(&mut ws, b"still here after the route timeout").await;

    // plain requests meanwhile never land on the upgraded connection
    for i in 0..3 {
        let path = format!("/after-{i}");
        let resp = tokio::time::timeout(WAIT, client.request(upgrade_free(&path)))
            .await
            .expect("not stuck on the upgraded connection")
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(text(resp).await, format!("plain {plain_version:?}"));
        assert_ne!(s.log.last(&path).remote, seen.remote);
    }
    round_trip(&mut ws, b"and still mine").await;

    // a second upgrade while the first is open gets a connection of its own
    let mut resp = client
        .request(upgrade_req("http://echo:8080/ws2", "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let mut ws2 = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    drop(resp);
    round_trip(&mut ws2, b"second").await;
    round_trip(&mut ws, b"first").await;
    assert_ne!(s.log.last("/ws2").remote, seen.remote);
    drop(ws2);

    // retried on a 503 before the upgrade, then upgraded
    let mut resp = client
        .request(upgrade_req("http://echo:8080/flaky", "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(s.log.count("/flaky"), 2);
    let mut flaky = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    drop(resp);
    round_trip(&mut flaky, b"after a retry").await;

    // the upgrades are counted like any request, by their 101
    let metrics = client.metrics().render();
    let upgrades = metrics
        .lines()
        .find(|l| l.starts_with("istio_requests_total{") && l.contains(r#"response_code="101""#))
        .unwrap_or_else(|| panic!("no 101 series:\n{metrics}"));
    assert!(upgrades.ends_with(" 3"), "{upgrades}");

    // closing our side ends the app's echo loop; the client goes on working
    ws.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, ws.read_to_end(&mut rest))
        .await
        .expect("the server closes too");
    // the app drops its upgraded stream without a TLS close_notify: the mTLS connection
    // ends with an unexpected EOF, which is the app's to answer for, not the mesh's
    match end {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
    }
    let resp = client.request(upgrade_free("/last")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

fn upgrade_free(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://echo:8080{path}"))
        .body(Empty::new())
        .unwrap()
}

/// Port declared `http`: every request goes over pooled HTTP/1.1 connections, the upgrade
/// takes the idle one, which is then never reused.
#[tokio::test]
async fn mesh_client_websocket_over_http1_pool() {
    mesh_client_websocket("", http::Version::HTTP_11).await;
}

/// `h2UpgradePolicy: UPGRADE`: plain requests share one HTTP/2 connection, while an
/// upgrade goes out on an HTTP/1.1 connection (ALPN `http/1.1` only), which HTTP/2 could
/// not carry.
#[tokio::test]
async fn mesh_client_websocket_next_to_http2() {
    let dr = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE}}}
";
    mesh_client_websocket(dr, http::Version::HTTP_2).await;
}

/// What is not a 101 is a normal response: the workload's authorization denies (403, no
/// upgrade), a server ignoring the upgrade (200 with its body). As Istio's Envoy: an
/// upgrade to another protocol is refused (403, never sent), an `h2c` offer dropped.
#[tokio::test]
async fn mesh_client_upgrade_refused_or_ignored() {
    let s = setup("").await;
    let client = client(&s);

    let mut resp = client
        .request(upgrade_req("http://echo:8080/denied", "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(hyper::upgrade::on(&mut resp).await.is_err(), "no upgrade");
    assert_eq!(text(resp).await, "RBAC: access denied");
    assert_eq!(s.log.count("/denied"), 0, "the app never saw it");

    let mut resp = client
        .request(upgrade_req("http://echo:8080/plain-ok", "websocket"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(hyper::upgrade::on(&mut resp).await.is_err(), "no upgrade");
    assert_eq!(text(resp).await, "plain HTTP/1.1");
    // and its connection stays pooled and usable
    let first = s.log.last("/plain-ok").remote;
    let resp = client.request(upgrade_free("/next")).await.unwrap();
    assert_eq!(text(resp).await, "plain HTTP/1.1");
    assert_eq!(s.log.last("/next").remote, first);

    let resp = client
        .request(upgrade_req("http://echo:8080/other", "echo/1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(text(resp).await, "");
    assert_eq!(s.log.count("/other"), 0, "never sent");

    let resp = client
        .request(upgrade_req("http://echo:8080/h2c", "h2c"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = s.log.last("/h2c");
    assert_eq!(seen.upgrade, None);
    assert_eq!(seen.connection, None);
}

/// The gateway of [`config`] with a mesh identity (auto mTLS to the STRICT workload) and
/// a `ws-credential` for `ws.example.com` issued by the mesh CA; with the CA's root (PEM).
async fn gateway(s: &Setup) -> (GatewayServer, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::new(TD, "istio-system", "istio-ingressgateway-service-account").unwrap();
    let cert =
        s.ca.issue(&id, Duration::from_secs(3600), &["ws.example.com"])
            .unwrap();
    let cred = dir.path().join("ws-credential");
    std::fs::create_dir(&cred).unwrap();
    std::fs::write(cred.join("tls.crt"), cert.chain_pem()).unwrap();
    std::fs::write(cred.join("tls.key"), cert.key_pem()).unwrap();
    let labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(s.mesh.clone(), "istio-system", labels)
        .workload_credentials(creds(
            &s.ca,
            "istio-system",
            "istio-ingressgateway-service-account",
            &[],
        ))
        .credential_dir(dir.path())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    (gw, dir, cert.root_pem().to_owned())
}

/// An HTTP/1.1 client connection (with upgrades) over `io`.
async fn h1<IO>(io: IO) -> http1::SendRequest<Empty<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn.with_upgrades());
    tx
}

/// A TLS connection to the gateway's HTTPS server, trusting `root_pem`.
async fn tls_to_gateway(
    root_pem: &str,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in mesh_tls::certs_from_pem("root", root_pem.as_bytes()).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // a WebSocket client offers HTTP/1.1 only
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("ws.example.com").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls
}

fn gw_req(path: &str, protocol: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::get(path).header("host", "ws.example.com");
    if let Some(p) = protocol {
        b = b
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", p)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13");
    }
    b.body(Empty::new()).unwrap()
}

/// One downstream connection to the gateway: refusals and ignored upgrades come back as
/// normal responses on the same connection; then the upgrade, spliced to the workload.
async fn through_gateway(s: &Setup, mut tx: http1::SendRequest<Empty<Bytes>>) {
    // the gateway's own policy
    let mut resp = tx
        .send_request(gw_req("/gw-denied", Some("websocket")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(hyper::upgrade::on(&mut resp).await.is_err());
    assert_eq!(text(resp).await, "RBAC: access denied");
    // the workload's policy
    let mut resp = tx
        .send_request(gw_req("/denied", Some("websocket")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(hyper::upgrade::on(&mut resp).await.is_err());
    assert_eq!(text(resp).await, "RBAC: access denied");
    // a server ignoring the upgrade
    let mut resp = tx
        .send_request(gw_req("/plain-ok", Some("websocket")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(hyper::upgrade::on(&mut resp).await.is_err());
    assert_eq!(text(resp).await, "plain HTTP/1.1");
    // other upgrade protocols: Envoy's 403, nothing forwarded; h2c: served plain
    let resp = tx
        .send_request(gw_req("/other", Some("echo/1")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(s.log.count("/other"), 0);
    let resp = tx.send_request(gw_req("/h2c", Some("h2c"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    assert_eq!(s.log.last("/h2c").upgrade, None);
    // a plain request: hop-by-hop headers dropped
    let resp = tx.send_request(gw_req("/plain", None)).await.unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    assert_eq!(s.log.last("/plain").connection, None);

    // the upgrade: 101 from the workload, then the gateway splices both connections
    let mut resp = tx
        .send_request(gw_req("/ws", Some("websocket")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], "websocket");
    assert_eq!(
        resp.headers()["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(&mut resp))
        .await
        .unwrap()
        .expect("upgraded");
    let mut ws = TokioIo::new(upgraded);
    round_trip(&mut ws, b"hello through the gateway").await;
    let seen = s.log.last("/ws");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.connection.as_deref(), Some("upgrade"));
    assert_eq!(seen.upgrade.as_deref(), Some("websocket"));
    // past the gateway route's timeout
    tokio::time::sleep(Duration::from_millis(500)).await;
    let big = vec![b'x'; 256 * 1024];
    round_trip(&mut ws, &big).await;
    // our side closes: the gateway passes the close on, and the workload's end closes too
    ws.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, ws.read_to_end(&mut rest))
        .await
        .expect("closed end to end")
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn gateway_http_websocket_to_strict_workload() {
    let s = setup("").await;
    let (gw, _dir, _) = gateway(&s).await;
    let tcp = TcpStream::connect(gw.local_addr(80).unwrap())
        .await
        .unwrap();
    through_gateway(&s, h1(tcp).await).await;
    // the gateway counts the upgrade (reporter=source, as Istio's gateway)
    let metrics = gw.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total{") && l.contains(r#"response_code="101""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn gateway_https_websocket_to_strict_workload() {
    let s = setup("").await;
    let (gw, _dir, root) = gateway(&s).await;
    let tls = tls_to_gateway(&root, gw.local_addr(443).unwrap()).await;
    through_gateway(&s, h1(tls).await).await;
}
