//! Property tests: the decision engines never panic on arbitrary request attributes, and
//! name helpers round-trip.

use http::HeaderMap;
use mesh_core::authz::{normalize_path, AuthzRequest, HttpAuthzAttrs};
use mesh_core::mesh::Mesh;
use mesh_core::model::Labels;
use mesh_core::names::{parse_principal, split_authority};
use mesh_core::route::{HttpRequestAttrs, L4Attrs};
use proptest::prelude::*;

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r, namespace: default}
spec:
  hosts: [reviews, "*.example.com"]
  http:
  - match: [{uri: {regex: "/a/[0-9]+"}, queryParams: {q: {prefix: x}}}]
    rewrite: {uriRegexRewrite: {match: "^/a/(.*)$", rewrite: "/b/\\1"}}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /r}}]
    redirect: {prefixRewrite: /s, derivePort: FROM_REQUEST_PORT}
  - match: [{headers: {x: {regex: ".*"}}, withoutHeaders: {y: {exact: ""}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  tls:
  - match: [{sniHosts: ["*.example.com"]}]
    route: [{destination: {host: a.example.com}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  rules:
  - from: [{source: {principals: ["*/sa/x"], namespaces: ["d*"]}}]
    to: [{operation: {paths: ["/a/{*}/b"], hosts: ["*.example.com"]}}]
    when: [{key: "request.headers[x]", values: ["*"]}]
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn routing_and_authz_never_panic(
        authority in "[a-zA-Z0-9.:\\[\\]*-]{0,40}",
        path in "[/a-z0-9%.?=&\\\\]{0,40}",
        header in "[ -~]{0,20}",
        ns in "[a-z]{0,8}",
        principal in proptest::option::of("[a-z./*]{0,30}"),
        port in any::<u16>(),
    ) {
        let mesh = Mesh::from_yaml(CONFIG).unwrap();
        let snap = mesh.snapshot();
        let mut h = HeaderMap::new();
        if let Ok(v) = header.parse() {
            h.insert("x", v);
        }
        let labels = Labels::new();
        let a = HttpRequestAttrs::new(&ns, &authority, &path, &h).with_port(port);
        let d = snap.route_http(&a);
        let _ = d.status();
        if let Some(r) = d.action().and_then(|a| a.rewrite.as_ref()) {
            let _ = r.path(a.path, d.prefix_len);
        }
        if let mesh_core::route::RouteOutcome::Redirect(r) = d.outcome {
            let _ = r.location("http", &authority, port, a.path, a.query, d.prefix_len);
        }
        let l4 = L4Attrs { sni: Some(&authority), ..L4Attrs::new(&ns, port) };
        let _ = snap.route_tls(&l4);
        let _ = snap.route_tcp(&l4);
        let w = snap.authz_for_workload(&ns, &labels);
        let norm = normalize_path(&path).unwrap_or(std::borrow::Cow::Borrowed("/"));
        let mut req = AuthzRequest::http(port, HttpAuthzAttrs { method: "GET", path: &norm, host: &authority, headers: &h });
        req.principal = principal.as_deref();
        let _ = w.evaluate(&req);
    }

    #[test]
    fn authority_split_round_trips(host in "[a-z][a-z0-9.-]{0,30}", port in proptest::option::of(any::<u16>())) {
        let a = match port { Some(p) => format!("{host}:{p}"), None => host.clone() };
        prop_assert_eq!(split_authority(&a), (host.as_str(), port));
    }

    #[test]
    fn principals_parse_their_own_format(td in "[a-z.]{1,12}", ns in "[a-z0-9-]{1,12}", sa in "[a-z0-9-]{1,12}") {
        let p = format!("{td}/ns/{ns}/sa/{sa}");
        prop_assert_eq!(parse_principal(&p), Some((td.as_str(), ns.as_str(), sa.as_str())));
        let spiffe = format!("spiffe://{p}");
        prop_assert_eq!(parse_principal(&spiffe), Some((td.as_str(), ns.as_str(), sa.as_str())));
    }

    #[test]
    fn normalized_paths_have_no_dot_segments(path in "(/(\\.|\\.\\.|[a-z]{1,3}|%2e)){1,8}") {
        let n = normalize_path(&path).unwrap();
        prop_assert!(n.starts_with('/'));
        prop_assert!(!n.split('/').any(|s| s == "." || s == ".."));
    }
}
