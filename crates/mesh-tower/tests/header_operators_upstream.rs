//! Envoy's upstream and certificate command operators in VirtualService header operations:
//! `%UPSTREAM_REMOTE_ADDRESS%` (and `_WITHOUT_PORT`, `%UPSTREAM_REMOTE_PORT%`),
//! `%UPSTREAM_HOST%`, `%DOWNSTREAM_PEER_URI_SAN%`, `%DOWNSTREAM_LOCAL_URI_SAN%` and
//! `%DOWNSTREAM_PEER_SUBJECT%`, through a MeshClient and the ingress gateway (real
//! listeners, real backends).
//!
//! Envoy evaluates a route's request headers before it picks a host, so the upstream
//! operators are empty there and the header is not added; in response headers they name the
//! endpoint that answered. After a connect failure there is no upstream connection:
//! `%UPSTREAM_REMOTE_ADDRESS%` is empty while `%UPSTREAM_HOST%` names the endpoint picked.

mod outbound_support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tls::{Credential, Identity, MeshCa};
use mesh_tower::gateway::GatewayServer;
use outbound_support::{client, get, send, start_reviews_v1, Behaviour, Pki};
use tokio::net::TcpListener;

mod secrets_support;
use secrets_support::Secrets;

const RESPONSE_OPS: &str = "
      request:
        set:
          x-up-req: '%UPSTREAM_REMOTE_ADDRESS%'
          x-host-req: '%UPSTREAM_HOST%'
      response:
        set:
          x-upstream: '%UPSTREAM_REMOTE_ADDRESS%'
          x-upstream-ip: '%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'
          x-upstream-port: '%UPSTREAM_REMOTE_PORT%'
          x-upstream-host: '%UPSTREAM_HOST%'
          x-peer-san: '%DOWNSTREAM_PEER_URI_SAN%'
          x-local-san: '%DOWNSTREAM_LOCAL_URI_SAN%'
          x-peer-subject: '%DOWNSTREAM_PEER_SUBJECT%'";

#[tokio::test]
async fn mesh_client_response_headers_name_the_upstream() {
    let pki = Pki::new();
    let mesh = outbound_support::mesh(&format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - headers:{RESPONSE_OPS}
    route: [{{destination: {{host: reviews}}}}]
"
    ));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    // a client that writes no access log: the operators still see the upstream
    let client = client(&mesh, &pki, "default", "productpage");
    let (status, by, _, headers) = send(&client, get("http://reviews:9080/reviews/0")).await;
    assert_eq!((status, by.as_str()), (200, "reviews-v1"));
    let addr = server.addr;
    assert_eq!(headers["x-upstream"], addr.to_string().as_str());
    assert_eq!(headers["x-upstream-ip"], addr.ip().to_string().as_str());
    assert_eq!(headers["x-upstream-port"], addr.port().to_string().as_str());
    assert_eq!(headers["x-upstream-host"], addr.to_string().as_str());
    // the downstream of a mesh client is its own application: no TLS, no certificate
    for h in ["x-peer-san", "x-local-san", "x-peer-subject"] {
        assert!(!headers.contains_key(h), "{h}: {headers:?}");
    }
}

/// Answers with the `x-` request headers it got, one `name=value` per line.
async fn echo() -> SocketAddr {
    let app = Router::new().fallback(|req: Request| async move {
        let mut lines: Vec<String> = req
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-") && k.as_str() != "x-request-id")
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
            .collect();
        lines.sort();
        lines.join("\n")
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn labels() -> mesh_core::model::Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

/// A Gateway (plain HTTP on 80; MUTUAL on 443 when `tls`) routing `api.example.com` to
/// `backend` and `dead.example.com` to `dead`, with [`RESPONSE_OPS`].
fn gateway_config(backend: SocketAddr, dead: SocketAddr, tls: bool) -> String {
    let vs = |name: &str, host: &str| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}.example.com]
  gateways: [istio-system/gw]
  http:
  - headers:{RESPONSE_OPS}
    route: [{{destination: {{host: {name}.default.svc.cluster.local, port: {{number: 8080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
",
            port = if name == "api" {
                backend.port()
            } else {
                dead.port()
            }
        )
    };
    format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
{}---{}---{}",
        if tls {
            "  - port: {number: 443, name: https-mtls, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: MUTUAL, credentialName: gw-cred}
"
        } else {
            ""
        },
        vs("api", "api"),
        vs("dead", "dead")
    )
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn body_lines(resp: http::Response<hyper::body::Incoming>) -> (u16, http::HeaderMap, String) {
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, parts.headers, body)
}

#[tokio::test]
async fn gateway_upstream_operators_in_response_headers_only() {
    let backend = echo().await;
    let dead = closed_port().await;
    let mesh = Mesh::from_yaml(&gateway_config(backend, dead, false)).unwrap();
    let gw = GatewayServer::builder(mesh, "istio-system", labels())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let req = |host: &str| {
        http::Request::get(format!("http://{addr}/items"))
            .header("host", host)
            .body(Empty::new())
            .unwrap()
    };

    let (status, headers, body) =
        body_lines(http.request(req("api.example.com")).await.unwrap()).await;
    assert_eq!(status, 200);
    // request headers: no upstream yet, the value is empty and the header is not added
    for h in ["x-up-req", "x-host-req"] {
        assert!(!body.contains(h), "{h} in the request: {body}");
    }
    assert!(body.contains("x-forwarded-proto=http"), "{body}");
    assert_eq!(headers["x-upstream"], backend.to_string().as_str());
    assert_eq!(headers["x-upstream-ip"], "127.0.0.1");
    assert_eq!(
        headers["x-upstream-port"],
        backend.port().to_string().as_str()
    );
    assert_eq!(headers["x-upstream-host"], backend.to_string().as_str());
    // plain HTTP: no certificates
    for h in ["x-peer-san", "x-local-san", "x-peer-subject"] {
        assert!(!headers.contains_key(h), "{h}: {headers:?}");
    }

    // a connect failure: the host was picked, but no connection was made
    let (status, headers, _) =
        body_lines(http.request(req("dead.example.com")).await.unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(headers["x-upstream-host"], dead.to_string().as_str());
    for h in ["x-upstream", "x-upstream-ip", "x-upstream-port"] {
        assert!(!headers.contains_key(h), "{h}: {headers:?}");
    }
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("version").output().is_ok()
}

#[tokio::test]
async fn gateway_certificate_operators_on_a_mutual_listener() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // a client certificate from another root, with a subject (an escaped comma) and two
    // URI SANs
    let script = r#"
set -e
openssl req -x509 -sha256 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -subj "/O=Other Inc./CN=Other Root" -keyout other.key -out other.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout carol.key \
  -subj "/C=US/O=Client\, Inc./CN=carol.example.com" -out carol.csr 2>/dev/null
printf "subjectAltName=URI:https://carol.example.com/x,URI:spiffe://other.example/carol,DNS:carol.example.com\nextendedKeyUsage=clientAuth\n" > carol.ext
openssl x509 -req -sha256 -days 2 -CA other.crt -CAkey other.key -set_serial 0x1234abcd \
  -in carol.csr -out carol.crt -extfile carol.ext 2>/dev/null
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {out:?}");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();

    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca
        .issue(&gw_id, Duration::from_secs(3600), &["api.example.com"])
        .unwrap();
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "gw-cred".into(),
        Credential {
            cert_chain_pem: Some(gw_cert.chain_pem().to_owned()),
            key_pem: Some(gw_cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: Some(format!(
                "{}{}",
                ca.trust_bundle().to_pem(),
                read("other.crt")
            )),
        },
    );
    let backend = echo().await;
    let dead = closed_port().await;
    let mesh = Mesh::from_yaml(&gateway_config(backend, dead, true)).unwrap();
    let gw = GatewayServer::builder(mesh, "istio-system", labels())
        .credentials(Arc::new(secrets))
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let https = gw.local_addr(443).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for c in ca.trust_bundle().certs() {
        roots.add(c.clone()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            mesh_tls::certs_from_pem("client", read("carol.crt").as_bytes()).unwrap(),
            mesh_tls::key_from_pem("client", read("carol.key").as_bytes()).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("api.example.com").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/items")
        .header("host", "api.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, headers, _) = body_lines(tx.send_request(req).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["x-peer-san"],
        "https://carol.example.com/x,spiffe://other.example/carol"
    );
    assert_eq!(
        headers["x-local-san"],
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
    );
    // RFC 2253: the last RDN first, the comma in a value escaped
    assert_eq!(
        headers["x-peer-subject"],
        r"CN=carol.example.com,O=Client\, Inc.,C=US"
    );
    assert_eq!(headers["x-upstream"], backend.to_string().as_str());
}
