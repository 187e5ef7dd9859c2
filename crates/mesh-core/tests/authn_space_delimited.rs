//! `spaceDelimitedClaims` end to end in mesh-core: real ES256 tokens verified by one of two
//! providers, the verifying provider's list carried in the `RequestAuth` (shared, not
//! copied), and `request.auth.claims[..]` conditions matching one part of a
//! space-separated claim only for the claims that provider lists (and `scope`,
//! `permission` for every provider), as Istio configures Envoy.

use std::sync::Arc;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mesh_core::authn::authenticate;
use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs, RequestAuth};
use mesh_core::model::Labels;
use serde_json::json;

const ES_KEY: &str = include_str!("fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");
const NOW: u64 = 1_800_000_000;

fn es256(claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".to_owned());
    encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn config() -> String {
    let jwks = JWKS.replace('\n', " ");
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: roles.example.com
    jwks: '{jwks}'
    spaceDelimitedClaims: [roles]
  - issuer: plain.example.com
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: admins, namespace: foo}}
spec:
  action: ALLOW
  rules:
  - when: [{{key: "request.auth.claims[roles]", values: [admin]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: writers, namespace: foo}}
spec:
  action: DENY
  rules:
  - when: [{{key: "request.auth.claims[scope]", notValues: [write]}}]
"#
    )
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

#[test]
fn the_verifying_providers_space_delimited_claims_decide() {
    let snap = mesh_core::mesh::Mesh::from_yaml(&config())
        .unwrap()
        .snapshot();
    let providers = snap.jwt_providers("foo", &Labels::new());
    // (in issuer order, as istiod sorts them)
    let by = |iss: &str| providers.iter().find(|p| p.issuer() == iss).unwrap();
    assert_eq!(by("roles.example.com").space_delimited_claims(), ["roles"]);
    assert!(by("plain.example.com").space_delimited_claims().is_empty());
    let authz = snap.authz_for_workload("foo", &Labels::new());
    let verify = |iss: &str, roles: &str, scope: &str| -> RequestAuth {
        let token =
            es256(json!({"iss": iss, "sub": "u", "exp": NOW + 60, "roles": roles, "scope": scope}));
        authenticate(&providers, &bearer(&token), None, NOW, &|_| None)
            .unwrap()
            .expect("a valid token")
            .auth
    };
    let allowed = |auth: &RequestAuth| {
        let headers = http::HeaderMap::new();
        let attrs = HttpAuthzAttrs {
            method: "GET",
            path: "/",
            host: "httpbin.foo",
            headers: &headers,
        };
        let mut req = AuthzRequest::http(8000, attrs);
        req.request_auth = Some(auth);
        authz.evaluate(&req).allowed
    };

    // roles listed by the provider that verified the token: any part matches
    let a = verify("roles.example.com", "editor admin", "read write");
    assert!(allowed(&a));
    // the list is the provider's, shared by every token it verifies
    let b = verify("roles.example.com", "admin", "write");
    assert!(Arc::ptr_eq(
        a.space_delimited_claims.as_ref().unwrap(),
        b.space_delimited_claims.as_ref().unwrap()
    ));
    assert!(allowed(&b));
    assert!(!allowed(&verify(
        "roles.example.com",
        "editor viewer",
        "write"
    )));
    // scope is space-delimited for every provider: `write` among its parts is not denied
    assert!(!allowed(&verify("roles.example.com", "admin", "read")));

    // the same claims verified by the provider without the list: roles is one string
    let p = verify("plain.example.com", "editor admin", "read write");
    assert_eq!(p.space_delimited_claims, None);
    assert!(!allowed(&p));
    assert!(allowed(&verify("plain.example.com", "admin", "write")));
}
