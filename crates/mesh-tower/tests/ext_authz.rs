//! AuthorizationPolicy `action: CUSTOM` with a MeshConfig `envoyExtAuthzHttp` provider, end
//! to end on loopback: Istio's sample external authorizer (allows when `x-ext-authz: allow`,
//! denies with 403, a body and a header otherwise) as an axum server behind a ServiceEntry,
//! a `MeshServer` (and an ingress gateway) whose CUSTOM policy matches `/headers`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::MeshServer;
use tokio::net::TcpListener;

/// What the authorizer saw: (method, path and query, headers).
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap)>>>;

/// Istio's samples/extauthz HTTP server, in axum.
async fn authorizer() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().fallback(move |req: Request<axum::body::Body>| {
        let log = Arc::clone(&log);
        async move {
            let pq = req.uri().path_and_query().map_or("", |p| p.as_str()).to_owned();
            let h = req.headers().clone();
            log.lock()
                .unwrap()
                .push((req.method().to_string(), pq, h.clone()));
            let verdict = h.get("x-ext-authz").and_then(|v| v.to_str().ok()).unwrap_or("");
            if verdict == "slow" {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            if verdict == "allow" || verdict == "slow" {
                http::Response::builder()
                    .status(200)
                    .header("x-ext-authz-check-result", "allowed")
                    .header("x-user", "alice")
                    .header("set-cookie", "session=1")
                    .header("x-internal", "not for anyone")
                    .body(axum::body::Body::empty())
                    .unwrap()
            } else if verdict == "deny-unauthenticated" {
                http::Response::builder()
                    .status(401)
                    .header("x-ext-authz-check-result", "denied")
                    .header("grpc-status", "16")
                    .body(axum::body::Body::empty())
                    .unwrap()
            } else if verdict == "broken" {
                http::Response::builder()
                    .status(500)
                    .body(axum::body::Body::from("oops"))
                    .unwrap()
            } else {
                http::Response::builder()
                    .status(403)
                    .header("x-ext-authz-check-result", "denied")
                    .header("x-internal", "not for anyone")
                    .header("content-type", "text/plain")
                    .body(axum::body::Body::from(
                        "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
                    ))
                    .unwrap()
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// The MeshConfig of Istio's ext-authz task with the response header options, plus
/// `extra` lines under the provider.
fn mesh_config(extra: &str) -> MeshConfig {
    MeshConfig::from_yaml(&format!(
        r#"
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    pathPrefix: /check
    timeout: 500ms
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToUpstreamOnAllow: ["x-user"]
    headersToDownstreamOnAllow: ["set-cookie"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
{extra}"#
    ))
    .unwrap()
}

/// The authorizer behind a ServiceEntry (outside the mesh: plaintext), and the CUSTOM
/// policy on `/headers` of `app: httpbin` and of the ingress gateway.
fn policies(authz_port: u16, provider: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  location: MESH_EXTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {authz_port}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {{paths: ["/headers"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz-ingress, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: {provider}}}
  rules: [{{to: [{{operation: {{paths: ["/headers"]}}}}]}}]
"#
    )
}

/// httpbin behind a MeshServer; the app answers with the `x-user` header it received.
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
        format!(
            "x-user={}",
            h.get("x-user").and_then(|v| v.to_str().ok()).unwrap_or("-")
        )
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    addr
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

async fn get(addr: SocketAddr, path: &str, verdict: Option<&str>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{addr}{path}"))
        .header("host", "httpbin.foo:8000")
        .header("authorization", "Bearer abc");
    if let Some(v) = verdict {
        req = req.header("x-ext-authz", v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test]
async fn custom_policy_asks_the_http_authorizer() {
    let (authz, seen) = authorizer().await;
    let mesh = Mesh::with_mesh_config(&mesh_config(""));
    mesh.reload_loaded(mesh_core::load::load_str(
        &policies(authz.port(), "sample-ext-authz-http"),
        "p.yaml",
    ))
    .unwrap();
    let addr = httpbin(mesh).await;

    // allowed: the app sees the authorizer's x-user, the client its set-cookie
    let a = get(addr, "/headers?q=1", Some("allow")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, "x-user=alice");
    assert_eq!(a.headers["set-cookie"], "session=1");
    assert!(a.headers.get("x-internal").is_none());
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (method, pq, h) = &seen[0];
        assert_eq!(
            (method.as_str(), pq.as_str()),
            ("GET", "/check/headers?q=1")
        );
        assert_eq!(h["host"], "httpbin.foo:8000");
        assert_eq!(h["authorization"], "Bearer abc");
        assert_eq!(h["x-ext-authz"], "allow");
        assert_eq!(h["content-length"], "0");
        assert!(h.get("user-agent").is_none(), "not selected: {h:?}");
    }

    // denied: the authorizer's status, body and selected header
    let d = get(addr, "/headers", Some("deny")).await;
    assert_eq!(d.status, StatusCode::FORBIDDEN);
    assert_eq!(
        d.body,
        "denied by ext_authz for not found header `x-ext-authz: allow` in the request"
    );
    assert_eq!(d.headers["x-ext-authz-check-result"], "denied");
    assert!(d.headers.get("x-internal").is_none());
    assert!(d.headers.get("set-cookie").is_none());

    // a path the CUSTOM policy does not match never reaches the authorizer
    let before = seen.lock().unwrap().len();
    let ip = get(addr, "/ip", Some("deny")).await;
    assert_eq!((ip.status, ip.body.as_str()), (StatusCode::OK, "x-user=-"));
    assert_eq!(seen.lock().unwrap().len(), before);

    // the authorizer's 5xx is an error: statusOnError (403), empty body
    let e = get(addr, "/headers", Some("broken")).await;
    assert_eq!((e.status, e.body.as_str()), (StatusCode::FORBIDDEN, ""));

    // too slow: the provider's 500ms timeout
    let start = Instant::now();
    let t = get(addr, "/headers", Some("slow")).await;
    assert_eq!(t.status, StatusCode::FORBIDDEN);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn authorizer_down_fails_closed_or_open() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap(); // closed again
    for (extra, want) in [
        ("", StatusCode::FORBIDDEN),
        (
            "    statusOnError: \"503\"\n",
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        ("    failOpen: true\n", StatusCode::OK),
    ] {
        let mesh = Mesh::with_mesh_config(&mesh_config(extra));
        mesh.reload_loaded(mesh_core::load::load_str(
            &policies(dead.port(), "sample-ext-authz-http"),
            "p.yaml",
        ))
        .unwrap();
        let addr = httpbin(mesh).await;
        let a = get(addr, "/headers", Some("allow")).await;
        assert_eq!(a.status, want, "{extra}: {}", a.body);
        if want == StatusCode::OK {
            assert_eq!(a.body, "x-user=-");
        }
    }
}

#[tokio::test]
// istiod turns the CUSTOM rules of a workload whose provider cannot be used into DENY
// rules (builder.go `getBadCustomDenyRules`: "failed to process CUSTOM action, will
// generate deny configs for the specified rules"): what they match is denied, the rest is
// decided by DENY and ALLOW as usual, and the authorizer is never asked
async fn undefined_provider_denies_what_its_rules_match() {
    let (authz, seen) = authorizer().await;
    let mesh = Mesh::with_mesh_config(&mesh_config(""));
    mesh.reload_loaded(mesh_core::load::load_str(
        &policies(authz.port(), "no-such-provider"),
        "p.yaml",
    ))
    .unwrap();
    let addr = httpbin(mesh).await;
    let a = get(addr, "/headers", Some("allow")).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::FORBIDDEN, "RBAC: access denied")
    );
    let a = get(addr, "/ip", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(seen.lock().unwrap().is_empty());
}

/// istiod builds an authorizer only for a service its registry has (`LookupCluster`): a
/// provider whose `service` is unknown, or in another namespace than its `ns/` names, is
/// unusable, and its CUSTOM rules deny even with `failOpen` (which lets through only a
/// known authorizer that fails); the authorizer is never asked.
#[tokio::test]
async fn a_provider_service_the_registry_lacks_denies_even_with_fail_open() {
    let (authz, seen) = authorizer().await;
    let with_service = policies(authz.port(), "sample-ext-authz-http");
    let (_, without_service) = with_service.split_once("---\n").unwrap();
    for (config, service) in [
        (without_service, "ext-authz.foo.svc.cluster.local"),
        (with_service.as_str(), "bar/ext-authz.foo.svc.cluster.local"),
    ] {
        let mesh_config = MeshConfig::from_yaml(&format!(
            "extensionProviders:\n- name: sample-ext-authz-http\n  envoyExtAuthzHttp: {{service: {service}, port: 8000, failOpen: true}}\n"
        ))
        .unwrap();
        let mesh = Mesh::with_mesh_config(&mesh_config);
        mesh.reload_loaded(mesh_core::load::load_str(config, "p.yaml"))
            .unwrap();
        let addr = httpbin(mesh).await;
        let a = get(addr, "/headers", Some("allow")).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::FORBIDDEN, "RBAC: access denied"),
            "{service}"
        );
        assert_eq!(get(addr, "/ip", None).await.status, StatusCode::OK);
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gateway_asks_the_authorizer() {
    let (authz, seen) = authorizer().await;
    let mesh = Mesh::with_mesh_config(&mesh_config(""));
    let routes = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: web, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [web]
  http: [{directResponse: {status: 200, body: {string: hello}}}]
"#;
    mesh.reload_loaded(mesh_core::load::load_str(
        &format!(
            "{}{routes}",
            policies(authz.port(), "sample-ext-authz-http")
        ),
        "p.yaml",
    ))
    .unwrap();
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gateway = GatewayServer::builder(mesh, "istio-system", labels)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    assert_eq!(
        gateway.authorization().policies(),
        ["istio-system/ext-authz-ingress"]
    );
    let addr = gateway.local_addr(80).unwrap();
    let a = get(addr, "/headers", Some("allow")).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "hello"));
    assert_eq!(a.headers["set-cookie"], "session=1");
    let d = get(addr, "/headers", Some("deny")).await;
    assert_eq!(d.status, StatusCode::FORBIDDEN);
    assert!(d.body.starts_with("denied by ext_authz"), "{}", d.body);
    assert_eq!(get(addr, "/other", None).await.status, StatusCode::OK);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// The authorizer's headers on a denial replace the reply's own, as Envoy's ext_authz
/// removes each name it sets before adding its values: one `grpc-status`, the
/// authorizer's.
#[tokio::test]
async fn a_denials_headers_replace_the_replys_own() {
    let (authz, _seen) = authorizer().await;
    let config = MeshConfig::from_yaml(
        r#"
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: "8000"
    pathPrefix: /check
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result", "grpc-status"]
"#,
    )
    .unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    mesh.reload_loaded(mesh_core::load::load_str(
        &policies(authz.port(), "sample-ext-authz-http"),
        "p.yaml",
    ))
    .unwrap();
    let addr = httpbin(mesh).await;
    // a gRPC call: the authorizer's `grpc-status` is the one sent, not a second one
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let req = Request::post(format!("http://{addr}/headers"))
        .header("content-type", "application/grpc")
        .header("x-ext-authz", "deny-unauthenticated")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let status: Vec<_> = resp.headers().get_all("grpc-status").iter().collect();
    assert_eq!(status, ["16"], "{:?}", resp.headers());
    assert_eq!(resp.headers()["x-ext-authz-check-result"], "denied");
}
