//! Authorization and JWT decisions where inmesh had drifted from Istio/Envoy: the
//! `request.auth.principal` condition, path templates, header present-match, the order of
//! `*` in a pattern, AUDIT/CUSTOM rules with HTTP fields on TCP, port 0, JWKS keys without a
//! `kid`, the token prefix, and every token having to be valid.

use mesh_core::authn::{authenticate, JwtError, TokenLocation};
use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs, RequestAuth, WorkloadAuthz};
use mesh_core::model::Labels;
use serde_json::json;

fn authz(yaml: &str, ns: &str) -> WorkloadAuthz {
    mesh_core::mesh::Mesh::from_yaml(yaml)
        .unwrap()
        .snapshot()
        .authz_for_workload(ns, &Labels::new())
}

fn policy(name: &str, action: &str, rule: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n\
         metadata: {{name: {name}, namespace: foo}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n"
    )
}

/// Allowed over HTTP, with these headers and (optionally) a verified JWT.
fn http_allowed(
    a: &WorkloadAuthz,
    path: &str,
    headers: &http::HeaderMap,
    jwt: Option<&RequestAuth>,
) -> bool {
    let attrs = HttpAuthzAttrs {
        method: "GET",
        path,
        host: "httpbin.foo:8000",
        headers,
    };
    let mut req = AuthzRequest::http(8000, attrs);
    req.request_auth = jwt;
    a.evaluate(&req).allowed
}

/// Istio compiles `when: request.auth.principal` with the `requestPrincipals` generator:
/// the value split at its last `/` into an `iss` and a `sub` matcher. `*` needs both
/// claims; `iss/*` is that issuer exactly with any subject.
#[test]
fn request_auth_principal_condition_matches_iss_and_sub() {
    let any = authz(
        &policy(
            "need-jwt",
            "ALLOW",
            r#"when: [{key: request.auth.principal, values: ["*"]}]"#,
        ),
        "foo",
    );
    let iss = authz(
        &policy(
            "need-iss",
            "ALLOW",
            r#"when: [{key: request.auth.principal, values: ["https://issuer.example.com/*"]}]"#,
        ),
        "foo",
    );
    let not = authz(
        &policy(
            "not-mallory",
            "ALLOW",
            r#"when: [{key: request.auth.principal, notValues: ["https://issuer.example.com/mallory"]}]"#,
        ),
        "foo",
    );
    let h = http::HeaderMap::new();
    let no_sub = RequestAuth::from_claims(json!({"iss": "https://issuer.example.com"}));
    let alice =
        RequestAuth::from_claims(json!({"iss": "https://issuer.example.com", "sub": "alice"}));
    let mallory =
        RequestAuth::from_claims(json!({"iss": "https://issuer.example.com", "sub": "mallory"}));
    let nested =
        RequestAuth::from_claims(json!({"iss": "https://issuer.example.com/x", "sub": "alice"}));

    // a token without `sub`: its principal string is "iss/", which `*` and `iss/*` matched
    assert!(!http_allowed(&any, "/", &h, Some(&no_sub)));
    assert!(!http_allowed(&iss, "/", &h, Some(&no_sub)));
    assert!(!http_allowed(&any, "/", &h, None));
    assert!(http_allowed(&any, "/", &h, Some(&alice)));
    assert!(http_allowed(&iss, "/", &h, Some(&alice)));
    // `iss/*` is the issuer exactly, not a prefix of `iss/sub`
    assert!(!http_allowed(&iss, "/", &h, Some(&nested)));
    // notValues too
    assert!(http_allowed(&not, "/", &h, Some(&alice)));
    assert!(!http_allowed(&not, "/", &h, Some(&mallory)));
}

/// Envoy's uri_template: `{*}` is one non-empty segment of pchars, `{**}` any run of pchars
/// and `/`, possibly empty, after the `/` before it.
#[test]
fn path_templates_as_envoy_uri_template() {
    let a = authz(
        &policy(
            "allow-public",
            "ALLOW",
            r#"to: [{operation: {paths: ["/public/{**}", "/img/{*}/thumb", "/a/{*}/"]}}]"#,
        ),
        "foo",
    );
    let h = http::HeaderMap::new();
    let ok = |p: &str| http_allowed(&a, p, &h, None);
    assert!(!ok("/public"), "`/public/{{**}}` needs the `/`");
    assert!(ok("/public/"));
    assert!(ok("/public/a/b"));
    assert!(ok("/public/a%20b:c@d=e"));
    assert!(!ok("/publicx/a"));
    assert!(!ok("/public/a*b"), "`*` is not a pchar");
    assert!(!ok("/public/a\"b"));
    assert!(ok("/img/x/thumb"));
    assert!(ok("/img/x~y'z/thumb"));
    assert!(!ok("/img//thumb"));
    assert!(!ok("/img/x/y/thumb"));
    assert!(!ok("/img/x*/thumb"));
    assert!(!ok("/img/x/thumb/"));
    assert!(ok("/a/x/"));
    assert!(!ok("/a/x"));
}

/// `request.headers[x]` with `*` is Istio's HeaderMatcher present match: an empty value
/// counts. Other fields keep `*` as `.+` (non-empty).
#[test]
fn header_star_is_a_present_match() {
    let deny = authz(
        &policy(
            "deny-hdr",
            "DENY",
            r#"when: [{key: "request.headers[x-evil]", values: ["*"]}]"#,
        ),
        "foo",
    );
    let mut empty = http::HeaderMap::new();
    empty.insert("x-evil", "".parse().unwrap());
    assert!(!http_allowed(&deny, "/", &empty, None));
    let mut set = http::HeaderMap::new();
    set.insert("x-evil", "1".parse().unwrap());
    assert!(!http_allowed(&deny, "/", &set, None));
    // a value that is not UTF-8 is still present
    let mut bytes = http::HeaderMap::new();
    bytes.insert("x-evil", http::HeaderValue::from_bytes(b"\xff").unwrap());
    assert!(!http_allowed(&deny, "/", &bytes, None));
    assert!(http_allowed(&deny, "/", &http::HeaderMap::new(), None));

    // notValues `*`: only requests without the header
    let need_absent = authz(
        &policy(
            "no-hdr",
            "ALLOW",
            r#"when: [{key: "request.headers[x-evil]", notValues: ["*"]}]"#,
        ),
        "foo",
    );
    assert!(!http_allowed(&need_absent, "/", &empty, None));
    assert!(http_allowed(
        &need_absent,
        "/",
        &http::HeaderMap::new(),
        None
    ));

    // a claim `*` is `.+`: an empty string claim does not match
    let claim = authz(
        &policy(
            "claim",
            "ALLOW",
            r#"when: [{key: "request.auth.claims[team]", values: ["*"]}]"#,
        ),
        "foo",
    );
    let h = http::HeaderMap::new();
    let empty_team = RequestAuth::from_claims(json!({"iss": "i", "sub": "s", "team": ""}));
    let team = RequestAuth::from_claims(json!({"iss": "i", "sub": "s", "team": "a"}));
    assert!(!http_allowed(&claim, "/", &h, Some(&empty_team)));
    assert!(http_allowed(&claim, "/", &h, Some(&team)));
}

/// Istio's StringMatcherWithPrefix looks at a leading `*` before a trailing one:
/// `*/admin*` is the suffix `/admin*`, not the prefix `*/admin`.
#[test]
fn leading_star_is_checked_first() {
    let a = authz(
        &policy(
            "deny-star",
            "DENY",
            r#"to: [{operation: {paths: ["*/admin*"]}}]"#,
        ),
        "foo",
    );
    let h = http::HeaderMap::new();
    assert!(!http_allowed(&a, "/x/admin*", &h, None));
    assert!(http_allowed(&a, "*/admin/x", &h, None));
    assert!(http_allowed(&a, "/admin/x", &h, None));
}

/// model.go checkError: only ALLOW drops a rule whose HTTP-only field cannot apply to TCP;
/// AUDIT (and CUSTOM, built as an RBAC DENY) ignore the field, like DENY.
#[test]
fn audit_and_custom_widen_http_rules_on_tcp() {
    let audit = authz(
        &policy(
            "audit-get",
            "AUDIT",
            r#"to: [{operation: {methods: ["GET"]}}]"#,
        ),
        "foo",
    );
    let d = audit.evaluate(&AuthzRequest::tcp(8000));
    assert!(d.allowed);
    assert_eq!(d.audit.as_deref(), Some("foo/audit-get"));

    let custom = authz(
        &format!(
            "{}  provider: {{name: ext}}\n",
            policy(
                "custom-get",
                "CUSTOM",
                r#"to: [{operation: {methods: ["GET"]}}]"#
            )
        ),
        "foo",
    );
    let req = AuthzRequest::tcp(8000);
    assert_eq!(
        custom.custom_match(&req).map(|p| p.policy.to_string()),
        Some("foo/custom-get".to_owned())
    );
    // ALLOW still narrows: the rule matches no TCP connection
    let allow = authz(
        &policy(
            "allow-get",
            "ALLOW",
            r#"to: [{operation: {methods: ["GET"]}}]"#,
        ),
        "foo",
    );
    assert!(!allow.evaluate(&AuthzRequest::tcp(8000)).allowed);
}

/// Istio's `convertToPort` takes 0..=65535: port 0 compiles (and matches no connection)
/// instead of failing the policy closed.
#[test]
fn port_zero_compiles() {
    let deny = authz(
        &policy("port0", "DENY", r#"to: [{operation: {ports: ["0"]}}]"#),
        "foo",
    );
    assert!(deny.evaluate(&AuthzRequest::tcp(8000)).allowed);
    let cond = authz(
        &policy(
            "dport0",
            "DENY",
            r#"when: [{key: destination.port, values: ["0"]}]"#,
        ),
        "foo",
    );
    assert!(cond.evaluate(&AuthzRequest::tcp(8000)).allowed);
    let not0 = authz(
        &policy("not0", "DENY", r#"to: [{operation: {notPorts: ["0"]}}]"#),
        "foo",
    );
    assert!(!not0.evaluate(&AuthzRequest::tcp(8000)).allowed);
}

const ISSUER: &str = "https://issuer.example.com";

fn providers(jwks: &str, extra: &str) -> Vec<std::sync::Arc<mesh_core::authn::JwtProvider>> {
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n\
         metadata: {{name: jwt, namespace: foo}}\nspec:\n  jwtRules:\n  - issuer: {ISSUER}\n    jwks: '{jwks}'\n{extra}"
    );
    mesh_core::mesh::Mesh::from_yaml(&yaml)
        .unwrap()
        .snapshot()
        .jwt_providers("foo", &Labels::new())
}

const OCT: &str = r#"{"keys": [{"kty": "oct", "kid": "k", "alg": "HS256", "k": "c2VjcmV0"}]}"#;

fn hs256(kid: Option<&str>, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: kid.map(str::to_owned),
            ..Default::default()
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// Envoy's authenticator: with several tokens, every one must verify.
#[test]
fn every_token_must_verify() {
    let p = providers(OCT, "");
    let none = |_: &str| None;
    let good = hs256(Some("k"), json!({"iss": ISSUER, "sub": "alice"}));
    let bad = hs256(Some("k"), json!({"iss": ISSUER, "sub": "mallory"})) + "x";
    let other = hs256(
        Some("k"),
        json!({"iss": "https://other.example", "sub": "x"}),
    );
    let q = format!("access_token={good}");
    let bearer = |t: &str| headers(&[("authorization", &format!("Bearer {t}"))]);

    // the good query token with a bad header token: rejected
    let r = authenticate(&p, &bearer(&bad), Some(&q), 0, &none);
    assert_eq!(r.unwrap_err(), JwtError::VerificationFails);
    let r = authenticate(&p, &bearer("not-a-jwt"), Some(&q), 0, &none);
    assert_eq!(r.unwrap_err(), JwtError::BadFormat);
    // ... or a token of an issuer no rule names
    let r = authenticate(&p, &bearer(&other), Some(&q), 0, &none);
    assert_eq!(r.unwrap_err(), JwtError::IssuerNotConfigured);
    // the good header token with a bad query token: rejected too
    let r = authenticate(
        &p,
        &bearer(&good),
        Some(&format!("access_token={bad}")),
        0,
        &none,
    );
    assert!(r.is_err());

    // both good: the identity of the first, and both tokens reported
    let a = authenticate(&p, &bearer(&good), Some(&q), 0, &none)
        .unwrap()
        .unwrap();
    assert_eq!(a.auth.principal, format!("{ISSUER}/alice"));
    let locations: Vec<_> = a.tokens.iter().map(|t| t.token.location.clone()).collect();
    assert_eq!(
        locations,
        [
            TokenLocation::Header {
                name: "authorization".into(),
                prefix: "Bearer ".into()
            },
            TokenLocation::Param("access_token".into())
        ]
    );
}

/// jwt_verify_lib skips a key only when both it and the token have a `kid` and they differ:
/// a key without `kid` verifies a token with one.
#[test]
fn jwks_key_without_kid_verifies_a_token_with_kid() {
    let no_kid = r#"{"keys": [{"kty": "oct", "alg": "HS256", "k": "c2VjcmV0"}]}"#;
    let p = providers(no_kid, "");
    let none = |_: &str| None;
    let t = hs256(Some("some-kid"), json!({"iss": ISSUER, "sub": "alice"}));
    let h = headers(&[("authorization", &format!("Bearer {t}"))]);
    let a = authenticate(&p, &h, None, 0, &none).unwrap().unwrap();
    assert_eq!(a.auth.principal, format!("{ISSUER}/alice"));
    // a key with another kid is still skipped
    let p = providers(OCT, "");
    let t = hs256(Some("other"), json!({"iss": ISSUER, "sub": "alice"}));
    let h = headers(&[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(
        authenticate(&p, &h, None, 0, &none).unwrap_err(),
        JwtError::NoMatchingKey
    );
}

/// Envoy's extractor: the header's values joined with `,`, the prefix found
/// case-sensitively anywhere, the token the run of base64url/`.` characters after it.
#[test]
fn token_prefix_as_envoy_extracts_it() {
    let p = providers(OCT, "");
    let none = |_: &str| None;
    let t = hs256(Some("k"), json!({"iss": ISSUER, "sub": "alice"}));
    let check = |h: &http::HeaderMap| authenticate(&p, h, None, 0, &none);

    // the prefix not at the start, and the token ended by a non-token character
    let h = headers(&[("authorization", &format!("Basic abc, Bearer {t};x=y"))]);
    assert_eq!(check(&h).unwrap().unwrap().token.token, t);
    // two header values, joined
    let h = headers(&[
        ("authorization", "Basic abc"),
        ("authorization", &format!("Bearer {t}")),
    ]);
    assert_eq!(check(&h).unwrap().unwrap().token.token, t);
    // case-sensitive: `bearer ` is not the prefix, so no token at all
    let h = headers(&[("authorization", &format!("bearer {t}"))]);
    assert!(check(&h).unwrap().is_none());
    // the prefix with no token characters after it: the whole value is the (bad) token
    let h = headers(&[("authorization", "Bearer !!!")]);
    assert_eq!(check(&h).unwrap_err(), JwtError::BadFormat);

    // a header without a prefix: the value as it is
    let p = providers(OCT, "    fromHeaders: [{name: x-jwt}]\n");
    let h = headers(&[("x-jwt", &t)]);
    let a = authenticate(&p, &h, None, 0, &none).unwrap().unwrap();
    assert_eq!(a.token.token, t);
    // a value that is not a token is a bad token, not a missing one
    let h = headers(&[("x-jwt", "Bearer x")]);
    assert_eq!(
        authenticate(&p, &h, None, 0, &none).unwrap_err(),
        JwtError::BadFormat
    );
}
