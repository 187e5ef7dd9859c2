//! `x-forwarded-proto` as Istio's sidecars write it: the outbound connection manager adds
//! `http` when the application sent none (its hop to the sidecar is plaintext), before
//! routing, so VirtualService `headers` conditions see it; the inbound one adds the
//! connection's (`https` over mTLS, `http` in plaintext) when the caller sent none, and
//! keeps a caller's. Real mesh client and mesh server over loopback mTLS.

mod httpbin_client;
mod outbound_support;

use std::net::SocketAddr;

use axum::extract::Request as AxumRequest;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use httpbin_client::{mtls, plain, HTTPBIN_HOST};
use mesh_core::mesh::Mesh;
use mesh_tower::inbound::MeshServer;
use outbound_support::{client, get, get_with, register, send, Pki};
use tokio::net::TcpListener;

/// A mesh server for `httpbin` (namespace `foo`, PERMISSIVE) whose application answers
/// the `x-forwarded-proto` it received (`-` for none).
async fn httpbin(pki: &Pki, mesh: &Mesh) -> SocketAddr {
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels,
        pki.creds("foo", "httpbin"),
    )
    .service_host(HTTPBIN_HOST)
    .port(8000)
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(|req: AxumRequest| async move {
        let all: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-proto")
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        if all.is_empty() {
            "-".to_owned()
        } else {
            all.join(",")
        }
    });
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

fn req(headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get("/headers").header("host", "httpbin.foo:8000");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
";

#[tokio::test]
async fn the_inbound_side_writes_the_connections_scheme_when_absent() {
    let pki = Pki::new();
    let mesh = Mesh::from_yaml(SERVICE).unwrap();
    let addr = httpbin(&pki, &mesh).await;
    let sleep = pki.creds("foo", "sleep");
    // a caller that is not a sidecar (a proxyless client) and sends none: the connection's
    let (_, _, body) = mtls(addr, &sleep, false, req(&[])).await.unwrap();
    assert_eq!(&body[..], b"https");
    let (_, _, body) = mtls(addr, &sleep, true, req(&[])).await.unwrap();
    assert_eq!(&body[..], b"https", "HTTP/2");
    let (_, _, body) = plain(addr, req(&[])).await.unwrap();
    assert_eq!(&body[..], b"http", "plaintext under PERMISSIVE");
    // a caller's value is kept (a sidecar caller sends `http`)
    let (_, _, body) = mtls(addr, &sleep, false, req(&[("x-forwarded-proto", "http")]))
        .await
        .unwrap();
    assert_eq!(&body[..], b"http");
}

#[tokio::test]
async fn a_mesh_caller_sends_http_as_a_sidecar_does() {
    let pki = Pki::new();
    let mesh = Mesh::new(Default::default());
    let addr = httpbin(&pki, &mesh).await;
    register(&mesh, "httpbin-1", "foo", "httpbin", "httpbin", "v1", addr);
    let service = format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: foo}}
spec:
  selector: {{app: httpbin}}
  ports: [{{name: http, port: 8000, targetPort: {port}}}]
",
        port = addr.port()
    );
    outbound_support::reload(&mesh, &service);
    let sleep = client(&mesh, &pki, "foo", "sleep");
    let (status, _, body, _) = send(&sleep, get("http://httpbin.foo:8000/headers")).await;
    assert_eq!((status, body.as_str()), (200, "http"));
    // the application's own value passes as it is (no second one)
    let (status, _, body, _) = send(
        &sleep,
        get_with(
            "http://httpbin.foo:8000/headers",
            &[("x-forwarded-proto", "https")],
        ),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "https"));
}

#[tokio::test]
async fn virtual_service_header_conditions_see_it() {
    let pki = Pki::new();
    let mesh = Mesh::from_yaml(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.internal]
  http:
  - match: [{headers: {x-forwarded-proto: {exact: http}}}]
    directResponse: {status: 200, body: {string: plaintext from the application}}
  - directResponse: {status: 200, body: {string: other}}
",
    )
    .unwrap();
    let app = client(&mesh, &pki, "default", "app");
    let (_, _, body, _) = send(&app, get("http://api.example.internal/")).await;
    assert_eq!(body, "plaintext from the application");
    let (_, _, body, _) = send(
        &app,
        get_with(
            "http://api.example.internal/",
            &[("x-forwarded-proto", "https")],
        ),
    )
    .await;
    assert_eq!(body, "other");
}
