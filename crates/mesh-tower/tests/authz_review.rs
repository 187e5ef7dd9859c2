//! RequestAuthentication on a real `MeshServer` over loopback, as Envoy's jwt_authn does it:
//! every token of a request must be valid (a bad `Authorization` header is not excused by a
//! good `access_token`), each verified token is removed from its header, and
//! `outputClaimToHeaders` writes nested, list, number and boolean claims as Envoy does.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use mesh_tower::inbound::MeshServer;
use tokio::net::{TcpListener, TcpStream};

/// A P-256 key made for these tests, and its public half as a JWKS.
const ES_KEY: &str = include_str!("../../mesh-core/tests/fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");
const ISSUER: &str = "testing@secure.istio.io";

fn token(claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The headers the application sees, one `name=value` line each (`-` when absent, values
/// of a repeated header joined with `|`).
fn app() -> Router {
    async fn echo(headers: http::HeaderMap) -> String {
        [
            "authorization",
            "x-token",
            "x-sub",
            "x-nested",
            "x-list",
            "x-obj",
            "x-num",
            "x-frac",
            "x-bool",
            "x-missing",
        ]
        .iter()
        .map(|n| {
            let vals: Vec<&str> = headers
                .get_all(*n)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            let v = if vals.is_empty() {
                "-".to_owned()
            } else {
                vals.join("|")
            };
            format!("{n}={v}\n")
        })
        .collect()
    }
    Router::new().route("/jwt", get(echo))
}

async fn start(yaml: &str) -> (SocketAddr, MeshServer, CertManager) {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let m = CertManager::start(id, Arc::new(CaSource::new(ca)), RotationOptions::default())
        .await
        .unwrap();
    let mesh = Mesh::from_yaml(yaml).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, m.credentials().clone())
        .port(8000)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, app()).await });
    (addr, server, m)
}

/// One plaintext HTTP/1.1 request (the namespace is PERMISSIVE).
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", "httpbin.foo:8000");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn config(locations: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
{locations}
    outputClaimToHeaders:
    - {{header: x-sub, claim: sub}}
    - {{header: x-nested, claim: a.b}}
    - {{header: x-list, claim: groups}}
    - {{header: x-obj, claim: a}}
    - {{header: x-num, claim: "n"}}
    - {{header: x-frac, claim: f}}
    - {{header: x-bool, claim: admin}}
    - {{header: x-missing, claim: a.nope}}
"#,
        jwks = JWKS.trim().replace('\n', " ")
    )
}

fn good() -> String {
    token(serde_json::json!({
        "iss": ISSUER, "sub": "alice", "exp": now() + 3600,
        "a": {"b": "deep"}, "groups": ["g1", "g2"], "n": 42, "f": 1.5, "admin": true,
    }))
}

/// Envoy's authenticator: "If a request has multiple tokens, all of them must be valid".
/// A bad `Authorization` header next to a good `access_token` query token is a 401, not a
/// request that carries the bad token on to the application.
#[tokio::test]
async fn every_token_must_be_valid() {
    let (addr, _server, _m) = start(&config("")).await;
    let good = good();
    let query = format!("/jwt?access_token={good}");

    // the good token alone, in either default location: allowed
    let (st, body) = send(addr, req(&query, &[])).await;
    assert_eq!(st, 200, "{body}");
    let bearer = format!("Bearer {good}");
    let (st, body) = send(addr, req("/jwt", &[("authorization", &bearer)])).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("authorization=-\n"), "{body}");

    // a bad header token plus the good query token: 401
    let (st, body) = send(addr, req(&query, &[("authorization", "Bearer not.a.jwt")])).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    // an expired header token plus the good query token: 401
    let expired = token(serde_json::json!({"iss": ISSUER, "sub": "bob", "exp": now() - 3600}));
    let expired = format!("Bearer {expired}");
    let (st, body) = send(addr, req(&query, &[("authorization", &expired)])).await;
    assert_eq!(
        (st, body.as_str()),
        (StatusCode::UNAUTHORIZED, "Jwt is expired")
    );
    // `Bearer ` with no token characters after it is a malformed token (Envoy's
    // `extractJWT` then takes the whole value), not a missing one
    let (st, _) = send(addr, req("/jwt", &[("authorization", "Bearer !!!")])).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // a header without the (case-sensitive) prefix holds no token for this location
    let lower = format!("bearer {good}");
    let (st, body) = send(addr, req("/jwt", &[("authorization", &lower)])).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(&format!("authorization={lower}\n")), "{body}");

    // both valid: allowed, and the header token removed
    let (st, body) = send(addr, req(&query, &[("authorization", &bearer)])).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("authorization=-\n"), "{body}");
}

/// With `forwardOriginalToken: false` (the default) Envoy removes every verified token from
/// the header it came from, not only the first one's.
#[tokio::test]
async fn every_verified_token_is_removed_from_its_header() {
    let locations =
        r#"    fromHeaders: [{name: authorization, prefix: "Bearer "}, {name: x-token}]"#;
    let (addr, _server, _m) = start(&config(locations)).await;
    let good = good();
    let bearer = format!("Bearer {good}");
    let (st, body) = send(
        addr,
        req("/jwt", &[("authorization", &bearer), ("x-token", &good)]),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("authorization=-\n"), "{body}");
    assert!(body.contains("x-token=-\n"), "{body}");

    // a bad token in the second location: 401
    let (st, body) = send(
        addr,
        req(
            "/jwt",
            &[("authorization", &bearer), ("x-token", "garbage")],
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
}

/// `outputClaimToHeaders` as Envoy's `addJWTClaimToHeader`: `.` paths into nested claims,
/// lists and objects as the base64 of their JSON, whole numbers as integers and others as
/// `std::to_string` writes them, booleans as `true`/`false`, a missing claim adds nothing;
/// and the client's own values of those headers never reach the application.
#[tokio::test]
async fn claims_to_headers_as_envoy_writes_them() {
    let (addr, _server, _m) = start(&config("")).await;
    let bearer = format!("Bearer {}", good());
    // a client's own values of the output headers are dropped first (Envoy's
    // sanitizeHeaders), with a token or without
    let spoof = [
        ("authorization", bearer.as_str()),
        ("x-sub", "admin"),
        ("x-missing", "spoofed"),
    ];
    let (st, body) = send(addr, req("/jwt", &spoof)).await;
    assert_eq!(st, 200, "{body}");
    let (st, anonymous) = send(addr, req("/jwt", &spoof[1..])).await;
    assert_eq!(st, 200, "{anonymous}");
    assert!(anonymous.contains("x-sub=-\n"), "{anonymous}");
    assert!(anonymous.contains("x-missing=-\n"), "{anonymous}");
    // base64 of `["g1","g2"]` and of `{"b":"deep"}`
    assert_eq!(
        body,
        "authorization=-\nx-token=-\nx-sub=alice\nx-nested=deep\nx-list=WyJnMSIsImcyIl0=\n\
         x-obj=eyJiIjoiZGVlcCJ9\nx-num=42\nx-frac=1.500000\nx-bool=true\nx-missing=-\n"
    );
}
