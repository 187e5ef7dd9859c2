//! JWT claim based routing (Istio's task of that name) in mesh-core, from YAML: a
//! gateway-bound VirtualService matching `@request.auth.claims..` keys in `headers` and
//! `withoutHeaders` against the verified token (a real ES256 token verified by the
//! RequestAuthentication of the snapshot), and the validation Istio applies to such keys.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mesh_core::authn::authenticate;
use mesh_core::authz::RequestAuth;
use mesh_core::diag::Diagnostic;
use mesh_core::load::load_str;
use mesh_core::model::Labels;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::validate::validate_all;
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
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: httpbin-gateway, namespace: foo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{jwks}'
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: ['*']
  gateways: [httpbin-gateway]
  http:
  - match:
    - uri: {{prefix: /headers}}
      headers: {{"@request.auth.claims.groups": {{exact: group1}}}}
    route: [{{destination: {{host: httpbin, subset: v2}}}}]
  - match:
    - uri: {{prefix: /nested}}
      headers: {{"@request.auth.claims.nested.key": {{exact: value1}}}}
    - uri: {{prefix: /nested}}
      headers: {{"@request.auth.claims[nested][other]": {{regex: "v[0-9]+"}}}}
    route: [{{destination: {{host: httpbin, subset: v2}}}}]
  - match:
    - uri: {{prefix: /without}}
      withoutHeaders: {{"@request.auth.claims.groups": {{exact: group2}}}}
    route: [{{destination: {{host: httpbin, subset: v2}}}}]
  - route: [{{destination: {{host: httpbin, subset: v1}}}}]
"#,
        jwks = JWKS.replace('\n', " ")
    )
}

#[test]
fn gateway_routes_on_verified_claims() {
    let mesh = mesh_core::mesh::Mesh::from_yaml(&config()).unwrap();
    let snap = mesh.snapshot();
    assert!(
        snap.compile_errors().is_empty(),
        "{:?}",
        snap.compile_errors()
    );
    let gateway: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let providers = snap.jwt_providers("istio-system", &gateway);
    // the gateway's RequestAuthentication verifies the token; its identity routes
    let verify = |claims: serde_json::Value| -> RequestAuth {
        let mut c = json!({"iss": "testing@secure.istio.io", "sub": "u1", "exp": NOW + 60});
        c.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        let mut h = http::HeaderMap::new();
        let bearer = format!("Bearer {}", es256(c));
        h.insert("authorization", bearer.parse().unwrap());
        authenticate(&providers, &h, None, NOW, &|_| None)
            .unwrap()
            .expect("a token")
            .auth
    };
    let h = http::HeaderMap::new();
    let subset = |path: &str, auth: Option<&RequestAuth>| -> String {
        let attrs = HttpRequestAttrs::new("istio-system", "httpbin.example.com", path, &h)
            .with_gateway(Some("foo/httpbin-gateway"))
            .with_request_auth(auth);
        let d = snap.route_http(&attrs);
        match d.destinations().first() {
            Some(w) => w.subset.as_deref().unwrap_or("").to_owned(),
            None => format!("{:?}", d.outcome),
        }
    };
    let group1 = verify(json!({"groups": ["group1"]}));
    let group2 = verify(json!({"groups": ["group2"]}));
    let nested = verify(json!({"nested": {"key": "value1"}}));
    let nested_other = verify(json!({"nested": {"other": "v12"}}));
    let table: &[(&str, Option<&RequestAuth>, &str)] = &[
        ("/headers", Some(&group1), "v2"),
        ("/headers", Some(&group2), "v1"),
        ("/headers", None, "v1"),
        ("/nested", Some(&nested), "v2"),
        ("/nested", Some(&nested_other), "v2"),
        ("/nested", Some(&group1), "v1"),
        ("/without", None, "v2"),
        ("/without", Some(&group1), "v2"),
        ("/without", Some(&group2), "v1"),
    ];
    for (path, auth, want) in table {
        assert_eq!(
            subset(path, *auth),
            *want,
            "{path} {:?}",
            auth.map(|a| &a.claims)
        );
    }
    // mesh traffic never carries a verified token into routing: the same host from a
    // sidecar is not routed by a gateway-bound VirtualService at all
    let attrs = HttpRequestAttrs::new("foo", "httpbin.example.com", "/headers", &h)
        .with_request_auth(Some(&group1));
    assert_eq!(snap.route_http(&attrs).virtual_service_name(), None);
}

fn vs(gateways: &str, key: &str, matcher: &str) -> Vec<Diagnostic> {
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: t, namespace: default}}
spec:
  hosts: [httpbin.example.com]
  gateways: {gateways}
  http:
  - match: [{{headers: {{"{key}": {matcher}}}}}]
    route: [{{destination: {{host: httpbin}}}}]
"#
    );
    let l = load_str(&yaml, "t.yaml");
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    validate_all(&l.objects)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

/// Istio's webhook: claim keys (`jwt.ToRoutingClaim`: the prefix in any case, then `.a.b`
/// or `[a][b]`) only on VirtualServices bound to gateways and not to `mesh`; anything else
/// starting with `@` is no header name. Envoy rejects a claim matcher without a value.
#[test]
fn claim_keys_are_validated_as_istio_does() {
    let ok = [
        ("[gw]", "@request.auth.claims.groups", "{exact: group1}"),
        ("[gw]", "@request.auth.claims[nested][key]", "{prefix: v}"),
        (
            "[gw]",
            "@Request.Auth.Claims.groups",
            "{regex: 'group[0-9]'}",
        ),
    ];
    for (gws, key, m) in ok {
        let errs = vs(gws, key, m);
        assert!(errs.is_empty(), "{gws} {key} {m}: {errs:#?}");
    }
    let bad = [
        (
            "[]",
            "@request.auth.claims.groups",
            "{exact: g}",
            "JWT claim based routing (key: @request.auth.claims.groups) is only supported for gateway, found no gateways: []",
        ),
        (
            "[gw, mesh]",
            "@request.auth.claims[groups]",
            "{exact: g}",
            "JWT claim based routing (key: @request.auth.claims[groups]) is only supported for gateway, found no gateways: [gw mesh]",
        ),
        (
            "[gw]",
            "@request.auth.claims",
            "{exact: g}",
            "is not a valid header name",
        ),
        (
            "[gw]",
            "@request.auth.claims[groups",
            "{exact: g}",
            "is not a valid header name",
        ),
        (
            "[gw]",
            "@request.auth.claims.groups",
            "{}",
            "needs exact, prefix or regex",
        ),
        (
            "[gw]",
            "@request.auth.claims.groups",
            "{regex: '*'}",
            "needs exact, prefix or regex",
        ),
        (
            "[gw]",
            "@request.auth.claims.groups",
            "{regex: '(x'}",
            "RE2",
        ),
    ];
    for (gws, key, m, want) in bad {
        let errs = vs(gws, key, m);
        assert!(
            errs.iter().any(|d| d.message.contains(want)),
            "{gws} {key} {m}: want {want:?} in {errs:#?}"
        );
    }
}
