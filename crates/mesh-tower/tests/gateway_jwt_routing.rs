//! Istio's "JWT claim based routing" task at the ingress gateway, over real sockets: a
//! RequestAuthentication selecting the gateway verifies ES256 tokens, and a gateway-bound
//! VirtualService routes on the verified claims (`@request.auth.claims.groups`, nested
//! `@request.auth.claims[nested][key]`, and `withoutHeaders` on a claim): group1 tokens go
//! to v2, everything else to v1. A request without a token matches no claim condition
//! (and every `withoutHeaders` one); an invalid token is refused before routing.

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_tower::gateway::GatewayServer;
use serde_json::json;
use tokio::net::TcpListener;

const ES_KEY: &str = include_str!("../../mesh-core/tests/fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");
const ISSUER: &str = "testing@secure.istio.io";

fn token(claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn claims(extra: serde_json::Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut c = json!({"iss": ISSUER, "sub": "user-1", "exp": exp});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    token(c)
}

/// A backend answering with its version.
async fn backend(version: &'static str) -> SocketAddr {
    let app = Router::new().fallback(move || async move { version });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn config(v1: u16, v2: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: httpbin-gateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress-jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/httpbin-gateway]
  http:
  - match: [{{headers: {{"@request.auth.claims.groups": {{exact: group1}}}}}}]
    route: [{{destination: {{host: httpbin, subset: v2, port: {{number: 8000}}}}}}]
  - match: [{{uri: {{prefix: /nested}}, headers: {{"@request.auth.claims[nested][key]": {{prefix: val}}}}}}]
    route: [{{destination: {{host: httpbin, subset: v2, port: {{number: 8000}}}}}}]
  - match: [{{uri: {{prefix: /without}}, withoutHeaders: {{"@request.auth.claims.groups": {{exact: group2}}}}}}]
    route: [{{destination: {{host: httpbin, subset: v2, port: {{number: 8000}}}}}}]
  - route: [{{destination: {{host: httpbin, subset: v1, port: {{number: 8000}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin, namespace: default}}
spec:
  host: httpbin
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}
"#,
        jwks = JWKS.trim().replace('\n', " "),
    )
}

/// (what, path, token, expected status and body)
type Case = (
    &'static str,
    &'static str,
    Option<String>,
    (u16, &'static str),
);

#[tokio::test]
async fn gateway_routes_on_the_verified_jwt_claims() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let mesh = Mesh::from_yaml(&config(v1.port(), v2.port())).unwrap();
    assert!(
        mesh.snapshot().compile_errors().is_empty(),
        "{:?}",
        mesh.snapshot().compile_errors()
    );
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh, "istio-system", labels)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let call = |path: &str, token: Option<String>| {
        let mut b = http::Request::get(format!("http://{addr}{path}"))
            .header("host", "httpbin.example.com");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b.body(Empty::new()).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };

    let group1 = || Some(claims(json!({"groups": ["group1", "group2"]})));
    let group2 = || Some(claims(json!({"groups": ["group2"]})));
    let table: Vec<Case> = vec![
        ("group1 in a list claim", "/headers", group1(), (200, "v2")),
        (
            "group1 as a string claim",
            "/headers",
            Some(claims(json!({"groups": "group1"}))),
            (200, "v2"),
        ),
        ("another group", "/headers", group2(), (200, "v1")),
        (
            "no groups claim",
            "/headers",
            Some(claims(json!({}))),
            (200, "v1"),
        ),
        (
            "a number is no string",
            "/headers",
            Some(claims(json!({"groups": 1}))),
            (200, "v1"),
        ),
        ("no token", "/headers", None, (200, "v1")),
        (
            "nested claim",
            "/nested",
            Some(claims(json!({"nested": {"key": "value1"}}))),
            (200, "v2"),
        ),
        (
            "nested claim, other value",
            "/nested",
            Some(claims(json!({"nested": {"key": "other"}}))),
            (200, "v1"),
        ),
        ("nested claim, no token", "/nested", None, (200, "v1")),
        ("withoutHeaders, no token", "/without", None, (200, "v2")),
        ("withoutHeaders, group2", "/without", group2(), (200, "v1")),
        (
            "withoutHeaders, group3",
            "/without",
            Some(claims(json!({"groups": ["group3"]}))),
            (200, "v2"),
        ),
    ];
    for (what, path, token, want) in table {
        let (status, body) = call(path, token).await;
        assert_eq!((status, body.as_str()), want, "{what}");
    }

    // a token that does not verify never reaches routing
    // (group1's claims under the signature of another token)
    let group1 = claims(json!({"groups": ["group1"]}));
    let other = claims(json!({"groups": ["group2"]}));
    let (signed, _) = group1.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{signature}");
    let (status, body) = call("/headers", Some(forged)).await;
    assert_eq!(status, 401, "{body}");
}
