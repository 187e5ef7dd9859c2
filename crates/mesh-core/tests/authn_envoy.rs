//! RequestAuthentication against what Envoy's jwt_authn filter accepts, as a replay of its
//! extractor, `Jwt::parseFromString`, `Jwks::createFrom` and `Filter::onComplete` found:
//! header fields it ignores, padded base64url, unusable keys beside good ones, the status
//! of a wrong audience, token order, cookies and percent-encoded parameter names.

use jsonwebtoken::{Algorithm, EncodingKey};
use mesh_core::authn::{authenticate, is_cors_preflight, parse_jwks, Authenticated, JwtError};
use mesh_core::model::Labels;
use serde_json::json;

const ES_KEY: &str = include_str!("fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");
const NOW: u64 = 1_800_000_000;

fn b64url(bytes: &[u8], pad: bool) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

/// An ES256 token over these exact header and payload JSON texts, signed with the
/// fixture's key (kid `k1`).
fn token_with(header: &serde_json::Value, payload: &serde_json::Value, pad: bool) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes(), pad),
        b64url(payload.to_string().as_bytes(), pad)
    );
    let key = EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::ES256).unwrap();
    format!("{message}.{sig}")
}

fn token(sub: &str) -> String {
    token_with(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "https://idp.example.com", "sub": sub, "aud": "api", "exp": NOW + 600}),
        false,
    )
}

fn policy(rule_extra: &str, jwks: &str) -> String {
    let jwks = jwks.replace('\n', " ");
    format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  jwtRules:
  - issuer: https://idp.example.com
    jwks: '{jwks}'
{rule_extra}"
    )
}

fn check(
    yaml: &str,
    headers: &[(&'static str, String)],
    query: Option<&str>,
) -> Result<Option<Authenticated>, JwtError> {
    let snap = mesh_core::mesh::Mesh::from_yaml(yaml).unwrap().snapshot();
    let providers = snap.jwt_providers("foo", &Labels::new());
    assert_eq!(providers.len(), 1);
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, v.parse().unwrap());
    }
    authenticate(&providers, &h, query, NOW, &|_| None)
}

fn principal(r: Result<Option<Authenticated>, JwtError>) -> String {
    r.unwrap().unwrap().auth.principal
}

/// `Jwt::parseFromString` reads only `alg` and `kid` of the header: an AWS ALB style
/// header with a number field, `b64: false` or a list is accepted; base64url segments
/// with their `=` padding too (absl's `WebSafeBase64Unescape`) where the extractor keeps
/// them.
#[test]
fn header_fields_envoy_ignores_and_padding_verify() {
    let yaml = policy("", JWKS);
    let payload = json!({"iss": "https://idp.example.com", "sub": "alb", "exp": NOW + 600});
    for header in [
        json!({"alg": "ES256", "kid": "k1", "signer": "arn:aws:elb:x", "exp": 1_700_000_000}),
        json!({"alg": "ES256", "kid": "k1", "b64": false}),
        json!({"alg": "ES256", "kid": "k1", "x5t": 5, "foo": [1]}),
    ] {
        let t = token_with(&header, &payload, false);
        let got = check(&yaml, &[("authorization", format!("Bearer {t}"))], None);
        assert_eq!(principal(got), "https://idp.example.com/alb", "{header}");
    }
    // padding: in a header without a prefix the token is the value as it is
    let padded = token_with(&json!({"alg": "ES256", "kid": "k1"}), &payload, true);
    assert!(padded.contains('='), "{padded}");
    let raw = policy("    fromHeaders: [{name: x-jwt}]\n", JWKS);
    let got = check(&raw, &[("x-jwt", padded.clone())], None);
    assert_eq!(principal(got), "https://idp.example.com/alb");
    // after a prefix, `extractJWT` takes base64url characters and dots only: the token
    // ends at the first `=`
    let got = check(
        &yaml,
        &[("authorization", format!("Bearer {padded}"))],
        None,
    );
    assert_eq!(got.unwrap_err(), JwtError::BadFormat);
    // a forged signature still fails
    let forged = format!("{}AAAA", &padded[..padded.rfind('.').unwrap() + 1]);
    let got = check(&raw, &[("x-jwt", forged)], None);
    assert_eq!(got.unwrap_err(), JwtError::VerificationFails);
}

/// `Jwks::createFrom` skips keys it cannot use (an encryption curve, an unknown key type,
/// an unsupported curve) and keeps the good ones; a set with none is refused.
#[test]
fn unusable_keys_do_not_spoil_the_set() {
    let good: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let mut keys = vec![
        json!({"kty": "OKP", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}),
        json!({"kty": "XYZ", "kid": "k1"}),
        json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
    ];
    keys.push(good["keys"][0].clone());
    let jwks = json!({ "keys": keys }).to_string();
    assert_eq!(parse_jwks(jwks.as_bytes()).unwrap().keys.len(), 1);
    let got = check(
        &policy("", &jwks),
        &[("authorization", format!("Bearer {}", token("u")))],
        None,
    );
    assert_eq!(principal(got), "https://idp.example.com/u");
    // nothing usable: every token fails closed
    let bad = json!({"keys": [keys[1].clone()]}).to_string();
    assert!(parse_jwks(bad.as_bytes()).is_err());
    assert!(parse_jwks(br#"{"nokeys": []}"#).is_err());
}

/// `Filter::onComplete`: a token whose audiences are not allowed is 403, every other
/// rejection 401.
#[test]
fn a_wrong_audience_is_forbidden() {
    let yaml = policy("    audiences: [other]\n", JWKS);
    let err = check(
        &yaml,
        &[("authorization", format!("Bearer {}", token("u")))],
        None,
    )
    .unwrap_err();
    assert_eq!(err, JwtError::AudienceNotAllowed);
    assert_eq!(err.http_status(), 403);
    assert_eq!(JwtError::VerificationFails.http_status(), 401);
}

/// Envoy's extractor keeps locations in ordered maps and verifies from the last: of two
/// valid tokens the alphabetically first header's is the identity, whatever the order of
/// `fromHeaders`; the last one's failure is the one reported.
#[test]
fn of_two_tokens_the_first_location_in_envoys_order_is_the_identity() {
    let yaml = policy("    fromHeaders: [{name: x-b}, {name: x-a}]\n", JWKS);
    let got = check(
        &yaml,
        &[("x-a", token("from-x-a")), ("x-b", token("from-x-b"))],
        None,
    );
    assert_eq!(principal(got), "https://idp.example.com/from-x-a");
    let yaml = policy("    fromParams: [tb, ta]\n", JWKS);
    let q = format!("tb={}&ta={}", token("from-tb"), token("from-ta"));
    assert_eq!(
        principal(check(&yaml, &[], Some(&q))),
        "https://idp.example.com/from-ta"
    );
    // default locations: the header verified after the query parameter
    let expired = token_with(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "https://idp.example.com", "sub": "old", "exp": NOW - 3600}),
        false,
    );
    let err = check(
        &policy("", JWKS),
        &[("authorization", format!("Bearer {expired}"))],
        Some("access_token=garbage"),
    )
    .unwrap_err();
    assert_eq!(err, JwtError::BadFormat);
}

/// `parseCookies` unquotes a quoted value and keeps an empty one (a token that fails);
/// `parseAndDecodeQueryString` decodes parameter names too.
#[test]
fn cookies_and_parameter_names_as_envoy_reads_them() {
    let yaml = policy("    fromCookies: [session]\n", JWKS);
    let t = token("c");
    let got = check(&yaml, &[("cookie", format!("a=1; session=\"{t}\""))], None);
    assert_eq!(principal(got), "https://idp.example.com/c");
    let err = check(&yaml, &[("cookie", "session=".to_owned())], None).unwrap_err();
    assert_eq!(err, JwtError::BadFormat);
    assert!(check(&yaml, &[("cookie", "other=x".to_owned())], None)
        .unwrap()
        .is_none());

    let yaml = policy("", JWKS);
    let q = format!("access%5Ftoken={}", token("q"));
    assert_eq!(
        principal(check(&yaml, &[], Some(&q))),
        "https://idp.example.com/q"
    );
    let err = check(&yaml, &[], Some("access%5Ftoken=garbage")).unwrap_err();
    assert_eq!(err, JwtError::BadFormat);
}

/// istiod sets `bypass_cors_preflight`: what counts as a preflight.
#[test]
fn cors_preflight_is_options_with_origin_and_request_method() {
    let mut h = http::HeaderMap::new();
    h.insert("origin", "https://app.example".parse().unwrap());
    assert!(!is_cors_preflight(&http::Method::OPTIONS, &h));
    h.insert("access-control-request-method", "PUT".parse().unwrap());
    assert!(is_cors_preflight(&http::Method::OPTIONS, &h));
    h.insert("access-control-request-method", "".parse().unwrap());
    assert!(!is_cors_preflight(&http::Method::OPTIONS, &h));
}
