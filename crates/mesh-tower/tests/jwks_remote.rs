//! RequestAuthentication `jwksUri` fetched from real loopback servers (hyper over TCP, and
//! over rustls for `https://`) by a `MeshServer`, tokens sent by a plain HTTP client:
//! - `https://` keys from a server whose certificate our CA issued (for `localhost`): the
//!   CA added with `trust_jwks_roots`, tokens verify;
//! - a server whose certificate chains to no trusted root: fail closed (401 `Jwks remote
//!   fetch is failed`), until its CA is trusted;
//! - the jwtRule's `timeout`: a server that never answers the first fetch; it is abandoned
//!   at the timeout and retried like any failed fetch;
//! - `spaceDelimitedClaims` of the provider that verified the token, through the layer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use tokio::net::{TcpListener, TcpStream};

const ES_KEY: &str = include_str!("../../mesh-core/tests/fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");
const ISSUER: &str = "https://idp.example";

fn token(claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn valid_token() -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    token(serde_json::json!({"iss": ISSUER, "sub": "alice", "exp": exp, "roles": "editor admin"}))
}

/// A RequestAuthentication for `httpbin` with this jwtRule body (after the issuer), and
/// an AuthorizationPolicy requiring a request principal.
fn policies(rule: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
{rule}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  rules: [{{from: [{{source: {{requestPrincipals: ["*"]}}}}]}}]
"#
    )
}

/// The workload's credentials, from `ca`.
async fn credentials(ca: &Arc<MeshCa>) -> (Arc<WorkloadCredentials>, CertManager) {
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let m = CertManager::start(
        id,
        Arc::new(CaSource::new(Arc::clone(ca))),
        RotationOptions::default(),
    )
    .await
    .unwrap();
    (m.credentials().clone(), m)
}

/// A mesh server for `httpbin` in `foo` (no PeerAuthentication: plaintext is accepted).
async fn start(mesh: &Mesh, ca: &Arc<MeshCa>) -> (SocketAddr, MeshServer, CertManager) {
    let (creds, manager) = credentials(ca).await;
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds)
        .port(8000)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    let app = tower::service_fn(|_req: Request<mesh_tower::inbound::ServerBody>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    tokio::spawn(async move { s.serve(listener, app).await });
    (addr, server, manager)
}

/// GET /headers with a bearer token over plaintext HTTP/1.1.
async fn get(addr: SocketAddr, token: &str) -> (StatusCode, Bytes) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/headers")
        .header("host", "httpbin.foo:8000")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Sends the token until the answer is not the pending-fetch 401 (or `limit` passes),
/// checking that every answer before is exactly that; the last answer.
async fn until_fetched(addr: SocketAddr, token: &str, limit: Duration) -> (StatusCode, Bytes) {
    let started = Instant::now();
    loop {
        let (st, body) = get(addr, token).await;
        if st != StatusCode::UNAUTHORIZED || started.elapsed() > limit {
            return (st, body);
        }
        assert_eq!(&body[..], b"Jwks remote fetch is failed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A JWKS server on loopback (real hyper HTTP/1.1, over TLS with `tls`). With
/// `hang_first`, the first connection is accepted and never answered. Counts the
/// connections it accepted.
async fn jwks_server(
    tls: Option<Arc<rustls::ServerConfig>>,
    hang_first: bool,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) == 0 && hang_first {
                held.push(tcp);
                continue;
            }
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let resp = if req.uri().path() == "/jwks.json" {
                            Response::new(Full::new(Bytes::from_static(JWKS.as_bytes())))
                        } else {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        Ok::<_, Infallible>(resp)
                    });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(cfg) => {
                        // an untrusted client aborts the handshake: nothing to serve
                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A TLS server config with a certificate from `ca` for `localhost`.
fn server_tls(ca: &MeshCa) -> Arc<rustls::ServerConfig> {
    let id = Identity::new(ca.trust_domain(), "idp", "keys").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["localhost"])
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn https_jwks_uri_verified_against_added_roots() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let idp_ca = MeshCa::self_signed("idp.example").unwrap();
    let (jwks_addr, _) = jwks_server(Some(server_tls(&idp_ca)), false).await;
    let uri = format!("https://localhost:{}/jwks.json", jwks_addr.port());
    let mesh = Mesh::from_yaml(&policies(&format!("    jwksUri: {uri}"))).unwrap();
    let (addr, server, _m) = start(&mesh, &ca).await;
    server
        .authorization()
        .trust_jwks_roots(idp_ca.trust_bundle().clone());

    let good = valid_token();
    let (st, body) = until_fetched(addr, &good, Duration::from_secs(5)).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok"[..]));
    // the keys verify tokens, not anything: a forged signature is still refused
    let mut forged = good.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let (st, body) = get(addr, &forged).await;
    assert_eq!(
        (st, &body[..]),
        (StatusCode::UNAUTHORIZED, &b"Jwt verification fails"[..])
    );
}

#[tokio::test]
async fn untrusted_https_jwks_server_fails_closed() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    // the server's certificate is from a CA nobody trusts (and it is not a platform root)
    let rogue_ca = MeshCa::self_signed("rogue.example").unwrap();
    let (jwks_addr, accepted) = jwks_server(Some(server_tls(&rogue_ca)), false).await;
    let uri = format!("https://localhost:{}/jwks.json", jwks_addr.port());
    let mesh = Mesh::from_yaml(&policies(&format!("    jwksUri: {uri}"))).unwrap();
    let (addr, server, _m) = start(&mesh, &ca).await;
    // trusting another CA does not trust this server
    server
        .authorization()
        .trust_jwks_roots(ca.trust_bundle().clone());

    let good = valid_token();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let (st, body) = get(addr, &good).await;
        assert_eq!(
            (st, &body[..]),
            (
                StatusCode::UNAUTHORIZED,
                &b"Jwks remote fetch is failed"[..]
            )
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // it was tried, and tried again after the failure
    assert!(accepted.load(Ordering::SeqCst) >= 2, "{accepted:?}");

    // once its CA is trusted, the next attempt gets the keys
    server
        .authorization()
        .trust_jwks_roots(rogue_ca.trust_bundle().clone());
    let (st, body) = until_fetched(addr, &good, Duration::from_secs(5)).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok"[..]));
}

#[tokio::test]
async fn a_jwks_fetch_is_abandoned_at_the_rule_timeout() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    // the first connection is never answered; later ones are
    let (jwks_addr, accepted) = jwks_server(None, true).await;
    let mesh = Mesh::from_yaml(&policies(&format!(
        "    jwksUri: http://{jwks_addr}/jwks.json\n    timeout: 300ms"
    )))
    .unwrap();
    let (addr, _server, _m) = start(&mesh, &ca).await;

    let good = valid_token();
    let started = Instant::now();
    let (st, body) = until_fetched(addr, &good, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // 300 ms for the hung fetch, a second before the retry: well before the default 5 s
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn space_delimited_claims_of_the_verifying_rule() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let (jwks_addr, _) = jwks_server(None, false).await;
    let config = |listed: &str| {
        format!(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: http://{jwks_addr}/jwks.json
    spaceDelimitedClaims: [{listed}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admins, namespace: foo}}
spec:
  rules: [{{when: [{{key: "request.auth.claims[roles]", values: [admin]}}]}}]
"#
        )
    };
    let mesh = Mesh::from_yaml(&config("roles")).unwrap();
    let (addr, _server, _m) = start(&mesh, &ca).await;
    let good = valid_token(); // roles: "editor admin"
    let (st, body) = until_fetched(addr, &good, Duration::from_secs(5)).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok"[..]));
    // without `roles` in the list, "editor admin" is one value: not `admin`
    mesh.reload_loaded(mesh_core::load::load_str(&config("groups"), "t.yaml"))
        .unwrap();
    let (st, body) = get(addr, &good).await;
    assert_eq!(
        (st, &body[..]),
        (StatusCode::FORBIDDEN, &b"RBAC: access denied"[..])
    );
}

/// istiod fetches a `jwksUri` before the proxy gets its configuration, so a valid token
/// works from the first request: the first requests wait for the first fetch (up to the
/// jwtRule's `timeout`) instead of being refused while it runs; a fetch that does not
/// answer in time leaves them refused, fail closed.
#[tokio::test]
async fn the_first_request_waits_for_the_first_keys() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let (jwks_addr, _) = jwks_server(None, false).await;
    let mesh = Mesh::from_yaml(&policies(&format!(
        "    jwksUri: http://{jwks_addr}/jwks.json"
    )))
    .unwrap();
    let (addr, _server, _m) = start(&mesh, &ca).await;
    let good = valid_token();
    let (a, b) = tokio::join!(get(addr, &good), get(addr, &good));
    assert_eq!((a.0, &a.1[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!((b.0, &b.1[..]), (StatusCode::OK, &b"ok"[..]));

    // a server that does not answer the first fetch: refused once the timeout passed
    let (hung, _) = jwks_server(None, true).await;
    let mesh = Mesh::from_yaml(&policies(&format!(
        "    jwksUri: http://{hung}/jwks.json\n    timeout: 300ms"
    )))
    .unwrap();
    let (addr, _server, _m) = start(&mesh, &ca).await;
    let started = Instant::now();
    let (st, body) = get(addr, &good).await;
    assert_eq!(
        (st, &body[..]),
        (
            StatusCode::UNAUTHORIZED,
            &b"Jwks remote fetch is failed"[..]
        )
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
