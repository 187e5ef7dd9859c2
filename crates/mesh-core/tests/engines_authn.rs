//! RequestAuthentication: real ES256 and HS256 tokens checked against inline and fetched
//! JWKS, every rejection with Envoy's message, token locations, and the verified identity
//! deciding an AuthorizationPolicy with `requestPrincipals` and claims.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mesh_core::authn::{authenticate, JwtError, TokenLocation};
use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
use mesh_core::model::Labels;
use serde_json::json;

/// A P-256 key made for these tests (never used elsewhere).
const ES_KEY: &str = include_str!("fixtures/jwt/es256-key.pem");
/// Its public half as a JWKS.
const JWKS: &str = include_str!("fixtures/jwt/jwks.json");

const NOW: u64 = 1_800_000_000;
const ISSUER: &str = "testing@secure.istio.io";

fn es256(kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_owned());
    encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims() -> serde_json::Value {
    json!({"iss": ISSUER, "sub": ISSUER, "exp": NOW + 3600, "groups": ["group1", "group2"], "aud": "httpbin", "azp": "web"})
}

fn config(extra_rule: &str) -> String {
    format!(
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
{extra_rule}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/{ISSUER}"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [group1]}}]
"#,
        jwks = JWKS.replace('\n', " ")
    )
}

fn httpbin() -> Labels {
    [("app".to_string(), "httpbin".to_string())].into()
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    h
}

#[test]
fn tokens_are_verified_and_decide_authorization() {
    let snap = mesh_core::mesh::Mesh::from_yaml(&config(""))
        .unwrap()
        .snapshot();
    let providers = snap.jwt_providers("foo", &httpbin());
    let none = |_: &str| None;
    let check = |headers: &http::HeaderMap| authenticate(&providers, headers, None, NOW, &none);

    // valid: the identity authorization sees
    let ok = check(&bearer(&es256("k1", claims()))).unwrap().unwrap();
    assert_eq!(ok.auth.principal, format!("{ISSUER}/{ISSUER}"));
    assert_eq!(ok.auth.audiences, ["httpbin"]);
    assert_eq!(ok.auth.presenter.as_deref(), Some("web"));
    assert_eq!(ok.provider.policy(), "foo/jwt-example");
    assert_eq!(
        ok.token.location,
        TokenLocation::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into()
        }
    );
    let authz = snap.authz_for_workload("foo", &httpbin());
    let headers = http::HeaderMap::new();
    let attrs = HttpAuthzAttrs {
        method: "GET",
        path: "/headers",
        host: "httpbin.foo:8000",
        headers: &headers,
    };
    let mut areq = AuthzRequest::http(8000, attrs);
    assert!(
        !authz.evaluate(&areq).allowed,
        "no token: 403 from the policy"
    );
    areq.request_auth = Some(&ok.auth);
    assert!(authz.evaluate(&areq).allowed);

    // no token at all: accepted, no identity
    assert!(check(&http::HeaderMap::new()).unwrap().is_none());

    // each rejection, with Envoy's message
    let expired = json!({"iss": ISSUER, "sub": "a", "exp": NOW - 120});
    assert_eq!(
        check(&bearer(&es256("k1", expired))).unwrap_err(),
        JwtError::Expired
    );
    // within the 60 s of clock skew: still valid
    let just = json!({"iss": ISSUER, "sub": "a", "exp": NOW - 30});
    assert!(check(&bearer(&es256("k1", just))).unwrap().is_some());
    let early = json!({"iss": ISSUER, "sub": "a", "nbf": NOW + 600});
    assert_eq!(
        check(&bearer(&es256("k1", early))).unwrap_err(),
        JwtError::NotYetValid
    );
    let stranger = json!({"iss": "other.example.com", "sub": "a"});
    let e = check(&bearer(&es256("k1", stranger))).unwrap_err();
    assert_eq!(
        (e.clone(), e.to_string()),
        (
            JwtError::IssuerNotConfigured,
            "Jwt issuer is not configured".to_owned()
        )
    );
    assert_eq!(
        check(&bearer(&es256("k9", claims()))).unwrap_err(),
        JwtError::NoMatchingKey
    );
    let mut forged = es256("k1", claims());
    let sig_start = forged.rfind('.').unwrap() + 1;
    let flipped = if &forged[sig_start..sig_start + 1] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(sig_start..sig_start + 1, flipped);
    let e = check(&bearer(&forged)).unwrap_err();
    assert_eq!(
        (e.clone(), e.to_string()),
        (
            JwtError::VerificationFails,
            "Jwt verification fails".to_owned()
        )
    );
    assert_eq!(check(&bearer("a.b")).unwrap_err(), JwtError::BadFormat);

    // an HS256 token cannot pass for the EC key (algorithm confusion)
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let hs = encode(&h, &claims(), &EncodingKey::from_secret(b"x")).unwrap();
    assert!(check(&bearer(&hs)).is_err());

    // the default second location: the access_token query parameter
    let q = format!("a=1&access_token={}", es256("k1", claims()));
    let found = authenticate(&providers, &http::HeaderMap::new(), Some(&q), NOW, &none)
        .unwrap()
        .unwrap();
    assert_eq!(
        found.token.location,
        TokenLocation::Param("access_token".into())
    );
}

#[test]
fn audiences_locations_and_fetched_keys() {
    let rule = "  - issuer: https://accounts.example.com\n    audiences: [shop]\n    jwksUri: http://127.0.0.1:1/jwks.json\n    fromHeaders: [{name: X-Jwt, prefix: 'Token '}]\n    fromCookies: [session]\n    outputClaimToHeaders: [{header: x-user, claim: sub}]\n";
    let snap = mesh_core::mesh::Mesh::from_yaml(&config(rule))
        .unwrap()
        .snapshot();
    let providers = snap.jwt_providers("foo", &httpbin());
    assert_eq!(providers.len(), 2);
    let accounts = providers
        .iter()
        .find(|p| p.issuer() == "https://accounts.example.com")
        .unwrap();
    assert_eq!(accounts.jwks_uri(), Some("http://127.0.0.1:1/jwks.json"));
    assert_eq!(
        accounts.output_claim_to_headers(),
        [("x-user".to_owned(), "sub".to_owned())]
    );
    let keys: Arc<JwkSet> = Arc::new(serde_json::from_str(JWKS).unwrap());
    let fetched = |uri: &str| (uri == "http://127.0.0.1:1/jwks.json").then(|| Arc::clone(&keys));
    let not_yet = |_: &str| None;
    let token = |aud: &str| {
        es256(
            "k1",
            json!({"iss": "https://accounts.example.com", "sub": "u1", "aud": [aud, "other"], "exp": NOW + 60}),
        )
    };
    let mut h = http::HeaderMap::new();
    h.insert("x-jwt", format!("Token {}", token("shop")).parse().unwrap());
    // the keys are not fetched yet: fail closed
    assert_eq!(
        authenticate(&providers, &h, None, NOW, &not_yet).unwrap_err(),
        JwtError::JwksFetchFailed
    );
    let ok = authenticate(&providers, &h, None, NOW, &fetched)
        .unwrap()
        .unwrap();
    assert_eq!(ok.auth.principal, "https://accounts.example.com/u1");
    assert_eq!(ok.auth.audiences, ["shop", "other"]);
    // an audience the rule does not list
    let mut h = http::HeaderMap::new();
    h.insert(
        "x-jwt",
        format!("Token {}", token("admin")).parse().unwrap(),
    );
    assert_eq!(
        authenticate(&providers, &h, None, NOW, &fetched).unwrap_err(),
        JwtError::AudienceNotAllowed
    );
    // the cookie location
    let mut h = http::HeaderMap::new();
    h.insert(
        "cookie",
        format!("theme=dark; session={}", token("shop"))
            .parse()
            .unwrap(),
    );
    let ok = authenticate(&providers, &h, None, NOW, &fetched)
        .unwrap()
        .unwrap();
    assert_eq!(ok.token.location, TokenLocation::Cookie("session".into()));
    // the token must be valid for the provider whose location it occupies: this issuer's
    // token in the default Authorization header belongs to no provider of that location
    let h = bearer(&token("shop"));
    assert_eq!(
        authenticate(&providers, &h, None, NOW, &fetched).unwrap_err(),
        JwtError::IssuerNotConfigured
    );
}

/// A rule with only a `jwksUri` (no `issuer`) takes tokens of any issuer its keys verify.
#[test]
fn a_rule_without_issuer_takes_any_issuer() {
    let snap = mesh_core::mesh::Mesh::from_yaml(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: any, namespace: foo}\nspec: {jwtRules: [{jwksUri: 'http://127.0.0.1:1/keys'}]}\n",
    )
    .unwrap()
    .snapshot();
    let providers = snap.jwt_providers("foo", &Labels::new());
    let keys: Arc<JwkSet> = Arc::new(serde_json::from_str(JWKS).unwrap());
    let fetched = |_: &str| Some(Arc::clone(&keys));
    let t = es256("k1", json!({"iss": "anyone.example.com", "sub": "s"}));
    let ok = authenticate(&providers, &bearer(&t), None, NOW, &fetched)
        .unwrap()
        .unwrap();
    assert_eq!(ok.auth.principal, "anyone.example.com/s");
}

/// Registered claims of the wrong type are rejected before anything else, with
/// jwt_verify_lib's messages; a fractional time is truncated (still checked), `exp: 0` is
/// no expiry.
#[test]
fn registered_claims_are_type_checked() {
    let snap = mesh_core::mesh::Mesh::from_yaml(&config(""))
        .unwrap()
        .snapshot();
    let providers = snap.jwt_providers("foo", &httpbin());
    let none = |_: &str| None;
    let check = |c: serde_json::Value| {
        authenticate(&providers, &bearer(&es256("k1", c)), None, NOW, &none)
            .map(|a| a.map(|a| a.auth.principal))
            .map_err(|e| e.to_string())
    };
    let with = |k: &str, v: serde_json::Value| {
        let mut c = claims();
        c[k] = v;
        c
    };
    for (claim, value, message) in [
        ("exp", json!((NOW - 3600) as f64 + 0.5), "Jwt is expired"),
        (
            "exp",
            json!("1800003600"),
            "Jwt payload [exp] field is not an integer",
        ),
        (
            "exp",
            json!(-5),
            "Jwt payload [exp] field is not a positive 64 bit integer",
        ),
        ("nbf", json!((NOW + 3600) as f64), "Jwt not yet valid"),
        (
            "nbf",
            json!(true),
            "Jwt payload [nbf] field is not an integer",
        ),
        (
            "iat",
            json!("now"),
            "Jwt payload [iat] field is not an integer",
        ),
        ("sub", json!(123), "Jwt payload [sub] field is not a string"),
        (
            "iss",
            json!(["a"]),
            "Jwt payload [iss] field is not a string",
        ),
        ("jti", json!({}), "Jwt payload [jti] field is not a string"),
        (
            "aud",
            json!(["httpbin", 7]),
            "Jwt payload [aud] field is not a string or string list",
        ),
    ] {
        assert_eq!(
            check(with(claim, value.clone())),
            Err(message.to_owned()),
            "{claim}: {value}"
        );
    }
    let ok = Ok(Some(format!("{ISSUER}/{ISSUER}")));
    assert_eq!(check(with("exp", json!(0))), ok, "exp 0: no expiry");
    assert_eq!(check(with("exp", json!((NOW + 60) as f64 + 0.9))), ok);
    assert_eq!(check(with("aud", json!(["other", "httpbin"]))), ok);
}

/// A root-namespace RequestAuthentication with a selector applies to the selected
/// workloads of every namespace; one with `targetRefs` only to the targeted Gateway's
/// workloads of its namespace.
#[test]
fn which_request_authentications_apply() {
    let rule = |name: &str, ns: &str, scope: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{scope}  jwtRules: [{{issuer: {name}.example.com, jwks: '{{\"keys\": []}}'}}]\n---\n"
        )
    };
    let yaml = [
        rule("mesh", "istio-system", ""),
        rule(
            "root-selected",
            "istio-system",
            "  selector: {matchLabels: {app: httpbin}}\n",
        ),
        rule("ns", "foo", ""),
        rule(
            "gw",
            "foo",
            "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: my-gw}]\n",
        ),
        rule(
            "svc",
            "foo",
            "  targetRefs: [{group: '', kind: Service, name: httpbin}]\n",
        ),
    ]
    .concat();
    let snap = mesh_core::mesh::Mesh::from_yaml(&yaml).unwrap().snapshot();
    let issuers = |ns: &str, labels: &[(&str, &str)]| {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut v: Vec<String> = snap
            .jwt_providers(ns, &labels)
            .iter()
            .map(|p| p.issuer().trim_end_matches(".example.com").to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        issuers("foo", &[("app", "httpbin")]),
        ["mesh", "ns", "root-selected"]
    );
    assert_eq!(
        issuers("bar", &[("app", "httpbin")]),
        ["mesh", "root-selected"]
    );
    assert_eq!(issuers("bar", &[("app", "ratings")]), ["mesh"]);
    assert_eq!(
        issuers(
            "foo",
            &[("gateway.networking.k8s.io/gateway-name", "my-gw")]
        ),
        ["gw", "mesh", "ns"]
    );
    assert_eq!(
        issuers(
            "bar",
            &[("gateway.networking.k8s.io/gateway-name", "my-gw")]
        ),
        ["mesh"]
    );
}
