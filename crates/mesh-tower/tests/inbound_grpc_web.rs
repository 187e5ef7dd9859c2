//! gRPC-Web at a mesh server: on a port whose protocol is `GRPC-WEB` (a Service port named
//! `grpc-web...`, or with `appProtocol: grpc-web`, found through a named `targetPort` too)
//! the server translates gRPC-Web to gRPC for the application and the answer back, trailers
//! in the body, as the `grpc_web` filter istiod adds to a sidecar's inbound listener for
//! such a port; after authorization (a denial is Envoy's plain `403 RBAC: access denied`)
//! and before the metrics' view of the protocol (`request_protocol="grpc"`, with Istio's
//! `grpc_response_status="2"`). Ordinary `GRPC` ports pass gRPC-Web as it is. Real mesh
//! servers over loopback, mTLS with certificates from the mesh CA.

mod frames;
mod httpbin_client;
mod outbound_support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use frames::Frames;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use httpbin_client::{mtls, Resp, HTTPBIN_HOST};
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tower::inbound::{MeshServer, ServerBody};
use mesh_tower::metrics::IstioMetrics;
use outbound_support::Pki;
use tokio::net::TcpListener;

const CONFIG: &str = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports:
  - {name: grpc-web, port: 8000, targetPort: 80}
  - {name: grpc, port: 9000, targetPort: 90}
  - {name: ui, port: 8001, appProtocol: grpc-web, targetPort: web}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-secret, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/secret.Vault/Open]}}]}]
";

/// A gRPC application: every call answered with its request's body as it came (the
/// messages), the request's `content-type` and `te` in `x-seen-*` headers, and the
/// trailers `grpc-status: 5`, `grpc-message: gone`.
fn app() -> impl tower::Service<
    Request<ServerBody>,
    Response = Response<Frames>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    tower::service_fn(|req: Request<ServerBody>| async move {
        let seen = |name: &str| {
            req.headers()
                .get(name)
                .cloned()
                .unwrap_or(HeaderValue::from_static("-"))
        };
        let (ct, te) = (seen("content-type"), seen("te"));
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        trailers.insert("grpc-message", HeaderValue::from_static("gone"));
        let mut resp = Response::new(Frames(VecDeque::from([
            Frame::data(body),
            Frame::trailers(trailers),
        ])));
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("x-seen-content-type", ct);
        h.insert("x-seen-te", te);
        Ok::<_, Infallible>(resp)
    })
}

/// The httpbin mesh server for its service on workload port `port`, serving [`app`].
async fn server(pki: &Pki, mesh: &Mesh, port: u16) -> (SocketAddr, Arc<IstioMetrics>) {
    let metrics = Arc::new(IstioMetrics::new());
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels,
        pki.creds("foo", "httpbin"),
    )
    .port(port)
    .service_host(HTTPBIN_HOST)
    .metrics(Arc::clone(&metrics))
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app()).await });
    (addr, metrics)
}

/// The mesh with [`CONFIG`] and the httpbin workload (its named port `web` is 81).
fn mesh() -> Mesh {
    let mesh = Mesh::from_yaml(CONFIG).unwrap();
    mesh.register(Workload {
        name: "httpbin".to_string(),
        namespace: "foo".to_string(),
        service_account: "httpbin".to_string(),
        labels: [("app".to_string(), "httpbin".to_string())].into(),
        address: "127.0.0.1".parse().unwrap(),
        ports: [("web".to_string(), 81)].into(),
        locality: None,
        weight: 0,
    });
    mesh
}

/// One gRPC message frame: uncompressed, big-endian length, the message.
fn message(m: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
    out.extend_from_slice(m);
    out
}

/// The trailers frame of the application's answer.
const TRAILERS: &[u8] = b"\x80\0\0\0\x22grpc-status:5\r\ngrpc-message:gone\r\n";

/// One call over mesh mTLS as `sleep` (HTTP/2 with `h2`).
async fn call(
    pki: &Pki,
    addr: SocketAddr,
    h2: bool,
    path: &str,
    content_type: &str,
    accept: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let mut req = Request::post(format!("http://{HTTPBIN_HOST}{path}"))
        .header("content-type", content_type)
        .header("x-grpc-web", "1");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    mtls(addr, &pki.creds("foo", "sleep"), h2, req)
        .await
        .unwrap()
}

/// The `istio_requests_total` series of `metrics`.
fn requests(metrics: &IstioMetrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn grpc_web_port_translates_binary_and_text() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, metrics) = server(&pki, &mesh, 80).await;
    let msg = message(b"hello");
    let mut want = msg.clone();
    want.extend_from_slice(TRAILERS);

    // binary, over HTTP/1.1 and HTTP/2: gRPC to the application, trailers back in the body
    for h2 in [false, true] {
        let (status, h, body) = call(
            &pki,
            addr,
            h2,
            "/echo.Echo/Say",
            "application/grpc-web+proto",
            None,
            msg.clone(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(h["x-seen-content-type"], "application/grpc");
        assert_eq!(h["x-seen-te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc-web+proto");
        assert_eq!(&body[..], &want[..], "h2: {h2}");
    }

    // text: base64 both ways
    let encoded = mesh_core::names::base64_encode(&msg, false);
    let (status, h, body) = call(
        &pki,
        addr,
        false,
        "/echo.Echo/Say",
        "application/grpc-web-text",
        Some("application/grpc-web-text"),
        encoded.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["content-type"], "application/grpc-web-text+proto");
    let decoded = mesh_core::names::base64_decode(std::str::from_utf8(&body).unwrap(), false)
        .expect("a base64 answer");
    assert_eq!(&decoded[..], &want[..]);

    // istio.stats sees the translated call: gRPC, its status inferred from the 200 (the
    // trailers are in the body), as Istio reports it
    let lines = requests(&metrics);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert!(line.contains(r#"request_protocol="grpc""#), "{line}");
    assert!(line.contains(r#"response_code="200""#), "{line}");
    assert!(line.contains(r#"grpc_response_status="2""#), "{line}");
    assert!(line.ends_with(" 3"), "{line}");
}

#[tokio::test]
async fn other_requests_on_a_grpc_web_port_pass() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, metrics) = server(&pki, &mesh, 80).await;
    // not gRPC-Web, or not exactly one of Envoy's four content types: untouched both ways
    for ct in ["application/json", "application/grpc-web; charset=utf-8"] {
        let (status, h, body) = call(
            &pki,
            addr,
            false,
            "/echo.Echo/Say",
            ct,
            None,
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(h["x-seen-content-type"], ct);
        assert_eq!(h["x-seen-te"], "-");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(&body[..], b"{}", "no trailers frame in the body");
    }
    let lines = requests(&metrics);
    assert!(
        lines
            .iter()
            .all(|l| l.contains(r#"request_protocol="http""#)),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn grpc_ports_pass_grpc_web_as_it_is() {
    let pki = Pki::new();
    let mesh = mesh();
    // port 90 is the target of the service's `grpc` port: no grpc_web filter there
    let (addr, metrics) = server(&pki, &mesh, 90).await;
    let msg = message(b"hello");
    let (status, h, body) = call(
        &pki,
        addr,
        true,
        "/echo.Echo/Say",
        "application/grpc-web+proto",
        None,
        msg.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc-web+proto");
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(&body[..], &msg[..]);
    let lines = requests(&metrics);
    assert!(
        lines[0].contains(r#"request_protocol="http""#),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_named_target_port_with_app_protocol_grpc_web_translates() {
    let pki = Pki::new();
    let mesh = mesh();
    // workload port 81 is the endpoint's `web`, the target of the `appProtocol: grpc-web` port
    let (addr, _) = server(&pki, &mesh, 81).await;
    let msg = message(b"hi");
    let (status, h, body) = call(
        &pki,
        addr,
        false,
        "/echo.Echo/Say",
        "application/grpc-web",
        None,
        msg.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    assert!(body.ends_with(TRAILERS), "{body:?}");
}

#[tokio::test]
async fn a_denied_grpc_web_call_is_envoys_plain_403() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, metrics) = server(&pki, &mesh, 80).await;
    // RBAC runs before grpc_web: the request is not gRPC to it, so its denial is not either
    let (status, h, body) = call(
        &pki,
        addr,
        false,
        "/secret.Vault/Open",
        "application/grpc-web-text",
        Some("application/grpc-web-text"),
        mesh_core::names::base64_encode(&message(b"x"), false).into_bytes(),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(&body[..], b"RBAC: access denied");
    assert!(!h.contains_key("grpc-status"), "{h:?}");
    assert!(
        !h.contains_key("x-seen-content-type"),
        "the application is not called"
    );
    // istio.stats never saw it: an HTTP request
    let lines = requests(&metrics);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(r#"request_protocol="http""#),
        "{lines:#?}"
    );
    assert!(lines[0].contains(r#"response_code="403""#), "{lines:#?}");
    assert!(
        lines[0].contains(r#"grpc_response_status="""#),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn bad_base64_is_envoys_400() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, _) = server(&pki, &mesh, 80).await;
    let (status, h, body) = call(
        &pki,
        addr,
        false,
        "/echo.Echo/Say",
        "application/grpc-web-text",
        None,
        b"AAAA*AAA".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    assert_eq!(h["grpc-status"], "13");
    assert_eq!(
        h["grpc-message"],
        "Bad gRPC-web request, invalid base64 data."
    );
    assert!(body.is_empty());
    assert!(
        !h.contains_key("x-seen-content-type"),
        "the application is not called"
    );
}

/// The mesh of [`mesh`] with the httpbin workload's `grpc-web` and `grpc` ports both at
/// `addr` (the service ports 8000 and 9000 lead there), for a mesh client's calls.
fn mesh_at(addr: SocketAddr) -> Mesh {
    let mesh = Mesh::from_yaml(CONFIG).unwrap();
    mesh.register(Workload {
        name: "httpbin".to_string(),
        namespace: "foo".to_string(),
        service_account: "httpbin".to_string(),
        labels: [("app".to_string(), "httpbin".to_string())].into(),
        address: addr.ip(),
        ports: [
            ("grpc-web".to_string(), addr.port()),
            ("grpc".to_string(), addr.port()),
        ]
        .into(),
        locality: None,
        weight: 0,
    });
    mesh
}

/// A gRPC-Web call through a mesh client to `port` of httpbin: the answer's status,
/// headers and body.
async fn client_call(
    client: &mesh_tower::outbound::MeshClient,
    port: u16,
    accept: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, HeaderMap, Bytes) {
    let mut req = Request::post(format!("http://httpbin.foo:{port}/echo.Echo/Say"))
        .header("content-type", content_type);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

#[tokio::test]
async fn a_mesh_client_translates_on_a_grpc_web_port() {
    let pki = Pki::new();
    // the server's own port is its `grpc` one (90): it translates nothing, so what the
    // application sees is the mesh client's doing, as a sidecar's outbound listener's
    let mesh = mesh();
    let (addr, server_metrics) = server(&pki, &mesh, 90).await;
    let mesh = mesh_at(addr);
    let client = outbound_support::client(&mesh, &pki, "foo", "sleep");
    let msg = message(b"hello");
    let mut want = msg.clone();
    want.extend_from_slice(TRAILERS);

    let (status, h, body) = client_call(
        &client,
        8000,
        None,
        "application/grpc-web+proto",
        msg.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["x-seen-te"], "trailers");
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    assert_eq!(&body[..], &want[..]);

    // text, decoded on the way and encoded on the way back
    let encoded = mesh_core::names::base64_encode(&msg, false);
    let (status, h, body) = client_call(
        &client,
        8000,
        Some("application/grpc-web-text"),
        "application/grpc-web-text",
        encoded.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["content-type"], "application/grpc-web-text+proto");
    let decoded = mesh_core::names::base64_decode(std::str::from_utf8(&body).unwrap(), false)
        .expect("a base64 answer");
    assert_eq!(&decoded[..], &want[..]);

    // both sides saw gRPC: the server's metrics as the upstream's answer, the client's as
    // istio.stats after the filter (the status inferred from the 200, as Istio reports it)
    let client_lines = requests(client.metrics());
    assert_eq!(client_lines.len(), 1, "{client_lines:#?}");
    assert!(
        client_lines[0].contains(r#"request_protocol="grpc""#),
        "{client_lines:#?}"
    );
    assert!(
        client_lines[0].contains(r#"grpc_response_status="2""#),
        "{client_lines:#?}"
    );
    let server_lines = requests(&server_metrics);
    assert!(
        server_lines[0].contains(r#"grpc_response_status="5""#),
        "the server saw the application's own trailers: {server_lines:#?}"
    );
}

#[tokio::test]
async fn a_mesh_client_passes_grpc_web_to_other_ports() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, _) = server(&pki, &mesh, 90).await;
    let mesh = mesh_at(addr);
    let client = outbound_support::client(&mesh, &pki, "foo", "sleep");
    let msg = message(b"hello");
    // the service's `grpc` port: no grpc_web filter on its outbound listener
    let (status, h, body) = client_call(
        &client,
        9000,
        None,
        "application/grpc-web+proto",
        msg.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc-web+proto");
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(&body[..], &msg[..]);
}

#[tokio::test]
async fn a_mesh_client_refuses_bad_base64_before_sending() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, server_metrics) = server(&pki, &mesh, 90).await;
    let mesh = mesh_at(addr);
    let client = outbound_support::client(&mesh, &pki, "foo", "sleep");
    // Envoy's filter answers a `-text` body that is not base64 itself: 400, in gRPC-Web form
    let (status, h, body) = client_call(
        &client,
        8000,
        None,
        "application/grpc-web-text",
        b"AAAA*AAA".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    assert_eq!(h["grpc-status"], "13");
    assert_eq!(
        h["grpc-message"],
        "Bad gRPC-web request, invalid base64 data."
    );
    assert!(body.is_empty());
    assert!(
        requests(&server_metrics).is_empty(),
        "nothing reached the server"
    );
    let lines = requests(client.metrics());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(r#"response_code="400""#), "{lines:#?}");
}

#[tokio::test]
async fn a_reload_that_makes_the_port_grpc_web_translates_from_the_next_request() {
    let pki = Pki::new();
    let mesh = mesh();
    let (addr, _) = server(&pki, &mesh, 90).await;
    let msg = message(b"hello");
    let send = || {
        call(
            &pki,
            addr,
            true,
            "/echo.Echo/Say",
            "application/grpc-web+proto",
            None,
            msg.clone(),
        )
    };
    let (_, h, _) = send().await;
    assert_eq!(h["x-seen-content-type"], "application/grpc-web+proto");
    // the port's protocol is decided once per config generation: a reload is seen
    let yaml = CONFIG.replace(
        "{name: grpc, port: 9000, targetPort: 90}",
        "{name: grpc-web-2, port: 9000, targetPort: 90}",
    );
    assert_ne!(yaml, CONFIG);
    mesh.reload_loaded(mesh_core::load::load_str(&yaml, "reloaded.yaml"))
        .unwrap();
    let (status, h, body) = send().await;
    assert_eq!(status, 200);
    assert_eq!(h["x-seen-content-type"], "application/grpc");
    assert_eq!(h["content-type"], "application/grpc-web+proto");
    assert!(body.ends_with(TRAILERS), "{body:?}");
}
