//! AuthorizationPolicy `action: CUSTOM` with a MeshConfig `envoyExtAuthzGrpc` provider, end
//! to end on loopback: a gRPC authorizer speaking `envoy.service.auth.v3.Authorization/Check`
//! over HTTP/2 (Istio's samples/extauthz logic: allow on `x-ext-authz: allow`, else deny
//! with 403, a body and a header), behind a ServiceEntry, in front of a `MeshServer` whose
//! CUSTOM policy matches `/headers`. The test authorizer reads the protobuf with its own
//! small decoder, independent of the library's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::Router;
use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use tokio::net::TcpListener;

// --- a protobuf reader for the test authorizer (wire types 0 and 2) ---

fn varint(b: &[u8], at: &mut usize) -> u64 {
    let mut v = 0;
    let mut shift = 0;
    loop {
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// (field, varint or bytes) of a message.
fn parse(b: &[u8]) -> Vec<(u64, u64, &[u8])> {
    let mut out = vec![];
    let mut at = 0;
    while at < b.len() {
        let key = varint(b, &mut at);
        match key & 7 {
            0 => out.push((key >> 3, varint(b, &mut at), &b[0..0])),
            2 => {
                let len = varint(b, &mut at) as usize;
                out.push((key >> 3, 0, &b[at..at + len]));
                at += len;
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn sub(b: &[u8], field: u64) -> Vec<&[u8]> {
    parse(b)
        .into_iter()
        .filter(|f| f.0 == field)
        .map(|f| f.2)
        .collect()
}

fn text(b: &[u8], field: u64) -> String {
    sub(b, field)
        .first()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default()
}

// --- a protobuf writer for the answers ---

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_int(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

/// A `HeaderValueOption` with `header {key, value}`.
fn header_option(key: &str, value: &str) -> Vec<u8> {
    let mut h = vec![];
    field_bytes(&mut h, 1, key.as_bytes());
    field_bytes(&mut h, 2, value.as_bytes());
    let mut o = vec![];
    field_bytes(&mut o, 1, &h);
    o
}

/// What the authorizer saw of each check: (source principal, destination principal,
/// :path, headers).
type Seen = Arc<Mutex<Vec<(String, String, String, Vec<(String, String)>)>>>;

/// A unary gRPC answer: the message, then the trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }
}

async fn check(req: Request<Incoming>, seen: Seen) -> Result<Response<GrpcBody>, Infallible> {
    assert_eq!(
        req.uri().path(),
        "/envoy.service.auth.v3.Authorization/Check"
    );
    assert_eq!(req.headers()["content-type"], "application/grpc");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let message = &body[5..];
    let attrs = sub(message, 1)[0];
    let principal = |peer: u64| {
        sub(attrs, peer)
            .first()
            .map(|p| text(p, 4))
            .unwrap_or_default()
    };
    let request = sub(attrs, 4)[0];
    let Some(http) = sub(request, 2).first().copied() else {
        // a TCP connection (the network filter): the peers only; sleep may connect
        let source = principal(1);
        seen.lock()
            .unwrap()
            .push((source.clone(), principal(2), String::new(), Vec::new()));
        let mut answer = vec![];
        if !source.ends_with("/sa/sleep") {
            let mut status = vec![];
            field_int(&mut status, 1, 7);
            field_bytes(&mut answer, 1, &status);
        }
        return Ok(grpc_answer(answer));
    };
    let mut headers: Vec<(String, String)> = sub(http, 3)
        .into_iter()
        .map(|e| (text(e, 1), text(e, 2)))
        .collect();
    // the body fields, noted among the headers under names no header has
    for (field, name) in [(11, "@body"), (12, "@raw_body")] {
        if let Some(b) = sub(http, field).first() {
            headers.push((name.to_owned(), String::from_utf8_lossy(b).into_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    seen.lock()
        .unwrap()
        .push((principal(1), principal(2), text(http, 4), headers.clone()));
    let verdict = header("x-ext-authz");
    if verdict == "unavailable" {
        // a failed call: trailers-only, grpc-status UNAVAILABLE
        let resp = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-message", "overloaded")
            .body(GrpcBody {
                data: None,
                trailers: None,
            })
            .unwrap();
        return Ok(resp);
    }
    if verdict == "slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut answer = vec![];
    if verdict == "allow" || verdict == "slow" {
        field_bytes(&mut answer, 1, &[]); // status OK
        let mut ok = vec![];
        field_bytes(
            &mut ok,
            2,
            &header_option("x-ext-authz-check-result", "allowed"),
        );
        field_bytes(&mut ok, 5, b"authorization");
        field_bytes(&mut ok, 6, &header_option("x-ext-authz-response", "ok"));
        field_bytes(&mut answer, 3, &ok);
    } else {
        let mut status = vec![];
        field_int(&mut status, 1, 7); // PERMISSION_DENIED
        field_bytes(&mut answer, 1, &status);
        let mut denied = vec![];
        let mut http_status = vec![];
        field_int(&mut http_status, 1, 403);
        field_bytes(&mut denied, 1, &http_status);
        field_bytes(
            &mut denied,
            2,
            &header_option("x-ext-authz-check-result", "denied"),
        );
        field_bytes(
            &mut denied,
            3,
            b"denied by ext_authz for not found header `x-ext-authz: allow` in the request",
        );
        field_bytes(&mut answer, 2, &denied);
    }
    Ok(grpc_answer(answer))
}

/// A unary gRPC answer carrying `answer`, grpc-status 0.
fn grpc_answer(answer: Vec<u8>) -> Response<GrpcBody> {
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(answer.len() as u32);
    frame.put_slice(&answer);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    Response::builder()
        .header("content-type", "application/grpc")
        .body(GrpcBody {
            data: Some(frame.freeze()),
            trailers: Some(trailers),
        })
        .unwrap()
}

/// The gRPC authorizer: HTTP/2 with prior knowledge on a loopback port.
async fn authorizer() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| check(req, Arc::clone(&log)));
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn mesh_config(extra: &str) -> MeshConfig {
    MeshConfig::from_yaml(&format!(
        r#"
extensionProviders:
- name: sample-ext-authz-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: "9000"
    timeout: 500ms
{extra}"#
    ))
    .unwrap()
}

fn policies(authz_port: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 9000, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {authz_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: CUSTOM
  provider: {{name: sample-ext-authz-grpc}}
  rules: [{{to: [{{operation: {{paths: ["/headers"]}}}}]}}]
"#
    )
}

/// httpbin behind a MeshServer (PERMISSIVE: the test client is plaintext); the app answers
/// with the headers the authorizer's answer changed.
async fn httpbin(mesh: Mesh) -> SocketAddr {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let creds =
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, creds)
        .build()
        .unwrap();
    let app = Router::new().fallback(|h: HeaderMap| async move {
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        format!(
            "result={} authorization={}",
            get("x-ext-authz-check-result"),
            get("authorization")
        )
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

async fn get(addr: SocketAddr, path: &str, verdict: &str) -> (StatusCode, http::HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", "httpbin.foo:8000")
        .header("authorization", "Bearer abc")
        .header("x-request-id", "req-1")
        .header("x-ext-authz", verdict)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn custom_policy_asks_the_grpc_authorizer() {
    let (authz, seen) = authorizer().await;
    let mesh = Mesh::with_mesh_config(&mesh_config(""));
    mesh.reload_loaded(mesh_core::load::load_str(&policies(authz.port()), "p.yaml"))
        .unwrap();
    let addr = httpbin(mesh).await;

    // allowed: the authorizer set a header and removed `authorization` on the request, and
    // added one to the response
    let (status, headers, body) = get(addr, "/headers?q=1", "allow").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "result=allowed authorization=-");
    assert_eq!(headers["x-ext-authz-response"], "ok");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (source, destination, path, headers) = &seen[0];
        assert_eq!(source, "", "a plaintext caller has no principal");
        assert_eq!(destination, "spiffe://cluster.local/ns/foo/sa/httpbin");
        assert_eq!(path, "/headers?q=1");
        let h = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(":authority"), Some("httpbin.foo:8000"));
        assert_eq!(h(":method"), Some("GET"));
        assert_eq!(h(":path"), Some("/headers?q=1"));
        assert_eq!(
            h("authorization"),
            Some("Bearer abc"),
            "every header goes to gRPC"
        );
        assert_eq!(h("host"), None);
    }

    // denied: the denied_response's status, body and header
    let (status, headers, body) = get(addr, "/headers", "deny").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
    );
    assert_eq!(headers["x-ext-authz-check-result"], "denied");

    // a path the CUSTOM policy does not match never reaches the authorizer
    let before = seen.lock().unwrap().len();
    let (status, _, _) = get(addr, "/ip", "deny").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.lock().unwrap().len(), before);

    // a failed call (grpc-status 14) and a slow one: statusOnError (403), empty body
    for verdict in ["unavailable", "slow"] {
        let start = std::time::Instant::now();
        let (status, _, body) = get(addr, "/headers", verdict).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::FORBIDDEN, ""),
            "{verdict}"
        );
        assert!(start.elapsed() < Duration::from_secs(2), "{verdict}");
    }
}

#[tokio::test]
async fn grpc_authorizer_down_fails_closed_or_open() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    for (extra, want) in [
        ("", StatusCode::FORBIDDEN),
        (
            "    statusOnError: \"503\"\n",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("    failOpen: true\n", StatusCode::OK),
    ] {
        let mesh = Mesh::with_mesh_config(&mesh_config(extra));
        mesh.reload_loaded(mesh_core::load::load_str(&policies(dead.port()), "p.yaml"))
            .unwrap();
        let addr = httpbin(mesh).await;
        let (status, _, body) = get(addr, "/headers", "allow").await;
        assert_eq!(status, want, "{extra:?}: {body}");
    }
}

/// CUSTOM on TCP, as istiod builds it: a gRPC provider is asked for each connection
/// (Envoy's network ext_authz filter: the peers' principals), an HTTP provider does not
/// apply to TCP, an authorizer that cannot be reached closes the connection (or lets it
/// through with failOpen).
#[tokio::test]
async fn custom_policy_on_tcp_connections() {
    use mesh_core::registry::Workload;
    use mesh_tower::outbound::{ClientWorkload, MeshClient};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (authz, seen) = authorizer().await;
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let creds = |sa: &str| {
        let id = Identity::new("cluster.local", "foo", sa).unwrap();
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
    };
    let yaml = |authz_port: u16, provider: &str| {
        format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: tcp-echo, namespace: foo}}
spec: {{selector: {{app: tcp-echo}}, ports: [{{name: tcp, port: 9000}}]}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 9000, name: grpc, protocol: GRPC}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {authz_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz-tcp, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: tcp-echo}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {{ports: ["9000"]}}}}]}}]
"#
        )
    };
    let config = MeshConfig::from_yaml(
        r#"
extensionProviders:
- name: grpc
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000, timeout: 500ms}
- name: grpc-open
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000, timeout: 500ms, failOpen: true}
- name: http
  envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 9000}
"#,
    )
    .unwrap();
    // (authorizer port, provider, sleep connects, web connects)
    let cases = [
        (authz.port(), "grpc", true, false),
        (dead.port(), "grpc", false, false),
        (dead.port(), "grpc-open", true, true),
        (dead.port(), "http", true, true),
    ];
    for (port, provider, sleep_ok, web_ok) in cases {
        let mesh = Mesh::with_mesh_config(&config);
        mesh.reload_loaded(mesh_core::load::load_str(&yaml(port, provider), "p.yaml"))
            .unwrap();
        let labels: mesh_core::model::Labels = [("app".to_string(), "tcp-echo".to_string())].into();
        let server = MeshServer::builder(
            mesh.clone(),
            "foo",
            "tcp-echo",
            labels.clone(),
            creds("tcp-echo"),
        )
        .port(9000)
        .build()
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            server
                .serve_tcp(listener, |mut c| async move {
                    let mut b = [0u8; 5];
                    if c.read_exact(&mut b).await.is_ok() {
                        let _ = c.write_all(&b).await;
                    }
                })
                .await
        });
        mesh.register(Workload {
            name: "tcp-echo".into(),
            namespace: "foo".into(),
            service_account: "tcp-echo".into(),
            labels,
            address: addr.ip(),
            ports: [("tcp".to_string(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
        for (sa, want) in [("sleep", sleep_ok), ("web", web_ok)] {
            let client = MeshClient::builder(mesh.clone(), ClientWorkload::new(sa, "foo", sa))
                .credentials(creds(sa))
                .build();
            let mut conn = client.connect("tcp-echo:9000").await.unwrap();
            let _ = conn.write_all(b"hello").await;
            let mut b = [0u8; 5];
            let got = tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut b))
                .await
                .unwrap();
            assert_eq!(got.is_ok(), want, "{provider} on :{port} as {sa}");
        }
    }
    let seen = seen.lock().unwrap();
    let (source, destination, _, _) = &seen[0];
    assert_eq!(source, "spiffe://cluster.local/ns/foo/sa/sleep");
    assert_eq!(destination, "spiffe://cluster.local/ns/foo/sa/tcp-echo");
    assert_eq!(
        seen.len(),
        2,
        "asked once per connection, only with the reachable gRPC provider"
    );
}

/// `includeRequestBodyInCheck` with a gRPC authorizer: the first `maxRequestBytes` of the
/// body in `body` (a protobuf string: invalid UTF-8 bytes become `!`, as Envoy sanitizes
/// it) or, with `packAsBytes`, as they are in `raw_body`; `x-envoy-auth-partial-body` in
/// the headers; the application reads the whole body.
#[tokio::test]
async fn the_grpc_check_carries_the_body() {
    for (pack_as_bytes, field, want) in [
        (false, "@body", "!binary"),
        (true, "@raw_body", "\u{fffd}binary"),
    ] {
        let (authz, seen) = authorizer().await;
        let mesh = Mesh::with_mesh_config(&mesh_config(&format!(
            "    includeRequestBodyInCheck: {{maxRequestBytes: 7, allowPartialMessage: true, packAsBytes: {pack_as_bytes}}}"
        )));
        mesh.reload_loaded(mesh_core::load::load_str(&policies(authz.port()), "p.yaml"))
            .unwrap();
        let addr = httpbin(mesh).await;
        let client =
            Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
        let req = Request::post(format!("http://{addr}/headers"))
            .header("host", "httpbin.foo:8000")
            .header("x-ext-authz", "allow")
            .body(http_body_util::Full::new(Bytes::from_static(
                b"\xffbinary and more",
            )))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "packAsBytes {pack_as_bytes}");
        let seen = seen.lock().unwrap();
        let (_, _, _, headers) = seen.last().unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(field), Some(want), "packAsBytes {pack_as_bytes}");
        assert_eq!(get("x-envoy-auth-partial-body"), Some("true"));
        let other = if pack_as_bytes { "@body" } else { "@raw_body" };
        assert_eq!(get(other), None);
    }
}
