//! `JWTRule.presence` (istio/istio#60823): a `REQUIRED` rule's token must be present and
//! valid in every request, and with one in the policy no single token stands in for the
//! others (Envoy's `requires_all`, each `OPTIONAL` rule with `allow_missing`).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mesh_core::authn::{authenticate, Authenticated, JwtError};
use mesh_core::model::Labels;
use serde_json::json;

const ES_KEY: &str = include_str!("fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");
const NOW: u64 = 1_800_000_000;

fn token(iss: &str, sub: &str, exp: u64) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".to_owned());
    encode(
        &h,
        &json!({"iss": iss, "sub": sub, "exp": exp}),
        &EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// An identity token in `Authorization` and a scope token in `x-scope-token`, the example
/// of the pull request that added the field; `scope` is `presence` of the second rule.
fn policy(idp: &str, scope: &str) -> String {
    let jwks = JWKS.replace('\n', " ");
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: multi-jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: https://idp.example.com
    jwks: '{jwks}'
    fromHeaders: [{{name: authorization, prefix: "Bearer "}}]
    outputClaimToHeaders: [{{header: x-idp-sub, claim: sub}}]
{idp}
  - issuer: https://scope.example.com
    jwks: '{jwks}'
    fromHeaders: [{{name: x-scope-token}}]
    outputClaimToHeaders: [{{header: x-scope-sub, claim: sub}}]
{scope}
"#
    )
}

fn check(
    yaml: &str,
    headers: &[(&'static str, String)],
) -> Result<Option<Authenticated>, JwtError> {
    let l = mesh_core::load::load_str(yaml, "ra.yaml");
    let diags = mesh_core::check(&l);
    assert!(diags.is_empty(), "{diags:#?}");
    let snap = mesh_core::mesh::Mesh::from_yaml(yaml).unwrap().snapshot();
    let providers = snap.jwt_providers("foo", &Labels::new());
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(*k, v.parse().unwrap());
    }
    authenticate(&providers, &h, None, NOW, &|_| None)
}

fn idp_ok() -> (&'static str, String) {
    (
        "authorization",
        format!(
            "Bearer {}",
            token("https://idp.example.com", "alice", NOW + 60)
        ),
    )
}

fn scope_ok() -> (&'static str, String) {
    (
        "x-scope-token",
        token("https://scope.example.com", "scopes", NOW + 60),
    )
}

fn scope_expired() -> (&'static str, String) {
    (
        "x-scope-token",
        token("https://scope.example.com", "scopes", NOW - 3600),
    )
}

#[test]
fn optional_rules_keep_istios_any_token_semantics() {
    let yaml = policy("", "");
    // no token: no identity, no failure (an AuthorizationPolicy must require one)
    assert!(check(&yaml, &[]).unwrap().is_none());
    // one valid token is enough, and a bad token at the other rule's location does not
    // matter once one provider verified its own (the outer `requires_any`)
    let a = check(&yaml, &[idp_ok(), scope_expired()]).unwrap().unwrap();
    assert_eq!(a.auth.principal, "https://idp.example.com/alice");
    // only a bad token: 401
    assert_eq!(
        check(&yaml, &[scope_expired()]).unwrap_err(),
        JwtError::Expired
    );
}

#[test]
fn every_required_token_must_be_present_and_valid() {
    let yaml = policy("    presence: REQUIRED", "    presence: REQUIRED");
    // nothing, or only one of the two: 401 "Jwt is missing"
    assert_eq!(check(&yaml, &[]).unwrap_err(), JwtError::Missing);
    assert_eq!(JwtError::Missing.to_string(), "Jwt is missing");
    assert_eq!(check(&yaml, &[idp_ok()]).unwrap_err(), JwtError::Missing);
    assert_eq!(check(&yaml, &[scope_ok()]).unwrap_err(), JwtError::Missing);
    // one of them invalid: its error, though the other verified
    assert_eq!(
        check(&yaml, &[idp_ok(), scope_expired()]).unwrap_err(),
        JwtError::Expired
    );
    // both: Envoy's requires_all verifies in order and each provider overwrites the one
    // `payload` metadata: the last rule's token is the identity; both tokens' outputs are
    // written
    let a = check(&yaml, &[idp_ok(), scope_ok()]).unwrap().unwrap();
    assert_eq!(a.auth.principal, "https://scope.example.com/scopes");
    let mut out = http::HeaderMap::new();
    mesh_core::authn::write_jwt_outputs(&mut out, &a);
    assert_eq!(out["x-idp-sub"], "alice");
    assert_eq!(out["x-scope-sub"], "scopes");
}

#[test]
fn an_optional_rule_beside_a_required_one_is_checked_when_present() {
    let yaml = policy("    presence: REQUIRED", "    presence: OPTIONAL");
    // the optional token may be missing
    let a = check(&yaml, &[idp_ok()]).unwrap().unwrap();
    assert_eq!(a.auth.principal, "https://idp.example.com/alice");
    // but when present it must be valid: no `requires_any` shortcut any more
    assert_eq!(
        check(&yaml, &[idp_ok(), scope_expired()]).unwrap_err(),
        JwtError::Expired
    );
    // and it cannot stand in for the required one
    assert_eq!(check(&yaml, &[scope_ok()]).unwrap_err(), JwtError::Missing);
}

#[test]
fn presence_values_are_checked() {
    let l = mesh_core::load::load_str(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad, namespace: foo}
spec:
  jwtRules:
  - issuer: example
    presence: MANDATORY
    spaceDelimitedClaims: [roles, '']
",
        "ra.yaml",
    );
    let diags = mesh_core::check(&l);
    assert!(
        diags
            .iter()
            .any(|d| d.path == "spec.jwtRules[0].presence" && d.message.contains("MANDATORY")),
        "{diags:#?}"
    );
    let l = mesh_core::load::load_str(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: bad, namespace: foo}
spec:
  jwtRules:
  - issuer: example
    spaceDelimitedClaims: [roles, '']
",
        "ra.yaml",
    );
    let diags = mesh_core::check(&l);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0].path, "spec.jwtRules[0].spaceDelimitedClaims[1]");
    assert!(
        diags[0].message.contains("should be at least 1 chars long"),
        "{}",
        diags[0].message
    );
}
