//! Authorization against the Istio documentation's tasks (authz-http, authz-deny, authz-tcp,
//! authz-jwt, mtls-migration) and a table of every field's semantics.

use std::path::{Path, PathBuf};

use http::HeaderMap;
use mesh_core::authz::{AuthzReason, AuthzRequest, HttpAuthzAttrs, RequestAuth};
use mesh_core::load::{LoadOptions, Loader};
use mesh_core::model::{Labels, MtlsMode};
use mesh_core::names::MeshOptions;
use mesh_core::snapshot::Snapshot;

fn task(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/istio-io-tasks")
        .join(f)
}

fn snap(files: &[&str], extra: &str, ns: &str) -> Snapshot {
    let loader = Loader::new(LoadOptions {
        default_namespace: ns.into(),
        ..LoadOptions::default()
    });
    let mut loaded = loader.load_paths(files.iter().map(|f| task(f))).unwrap();
    loaded.extend(loader.load_str(extra, "extra.yaml"));
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, MeshOptions::default())
}

fn labels(app: &str) -> Labels {
    [("app".to_string(), app.to_string())].into()
}

fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

struct Req<'a> {
    principal: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    headers: &'a HeaderMap,
}

fn http<'a>(r: &'a Req<'a>, port: u16) -> AuthzRequest<'a> {
    let mut a = AuthzRequest::http(
        port,
        HttpAuthzAttrs {
            method: r.method,
            path: r.path,
            host: "httpbin.foo:8000",
            headers: r.headers,
        },
    );
    a.principal = r.principal;
    a
}

const PRODUCTPAGE: &str = "cluster.local/ns/default/sa/bookinfo-productpage";
const REVIEWS: &str = "cluster.local/ns/default/sa/bookinfo-reviews";

#[test]
fn authz_http_task() {
    let none = HeaderMap::new();
    // step 1: allow-nothing denies everything in the namespace
    let s = snap(&["authz-http-allow-nothing.yaml"], "", "default");
    for app in ["productpage", "details", "reviews", "ratings"] {
        let w = s.authz_for_workload("default", &labels(app));
        let r = Req {
            principal: Some(PRODUCTPAGE),
            method: "GET",
            path: "/",
            headers: &none,
        };
        let d = w.evaluate(&http(&r, 9080));
        assert!(!d.allowed, "{app}");
        assert_eq!(d.reason, AuthzReason::NoAllowMatched);
    }
    // other namespaces are not affected
    let w = s.authz_for_workload("foo", &labels("productpage"));
    assert!(w.is_empty());
    let r = Req {
        principal: None,
        method: "GET",
        path: "/",
        headers: &none,
    };
    assert!(w.evaluate(&http(&r, 9080)).allowed);

    // steps 2-4: viewers
    let s = snap(
        &[
            "authz-http-allow-nothing.yaml",
            "authz-http-productpage-viewer.yaml",
            "authz-http-details-viewer.yaml",
            "authz-http-reviews-viewer.yaml",
            "authz-http-ratings-viewer.yaml",
        ],
        "",
        "default",
    );
    // (app, principal, method, allowed, policy)
    let table = [
        (
            "productpage",
            None,
            "GET",
            true,
            Some("default/productpage-viewer"),
        ),
        ("productpage", None, "POST", false, None),
        (
            "details",
            Some(PRODUCTPAGE),
            "GET",
            true,
            Some("default/details-viewer"),
        ),
        ("details", Some(REVIEWS), "GET", false, None),
        ("details", None, "GET", false, None),
        ("details", Some(PRODUCTPAGE), "DELETE", false, None),
        (
            "reviews",
            Some(PRODUCTPAGE),
            "GET",
            true,
            Some("default/reviews-viewer"),
        ),
        (
            "ratings",
            Some(REVIEWS),
            "GET",
            true,
            Some("default/ratings-viewer"),
        ),
        ("ratings", Some(PRODUCTPAGE), "GET", false, None),
        // spiffe:// given by the caller is accepted and stripped
        (
            "ratings",
            Some("spiffe://cluster.local/ns/default/sa/bookinfo-reviews"),
            "GET",
            true,
            Some("default/ratings-viewer"),
        ),
    ];
    for (app, principal, method, allowed, policy) in table {
        let w = s.authz_for_workload("default", &labels(app));
        let r = Req {
            principal,
            method,
            path: "/",
            headers: &none,
        };
        let d = w.evaluate(&http(&r, 9080));
        assert_eq!(d.allowed, allowed, "{app} {principal:?} {method}");
        assert_eq!(d.policy.as_deref(), policy, "{app} {principal:?} {method}");
    }
}

#[test]
fn authz_deny_task() {
    let s = snap(&["authz-deny-method-get.yaml"], "", "foo");
    let w = s.authz_for_workload("foo", &labels("httpbin"));
    let none = HeaderMap::new();
    let get = Req {
        principal: None,
        method: "GET",
        path: "/get",
        headers: &none,
    };
    let post = Req {
        principal: None,
        method: "POST",
        path: "/post",
        headers: &none,
    };
    let d = w.evaluate(&http(&get, 8000));
    assert!(!d.allowed);
    assert_eq!(d.policy.as_deref(), Some("foo/deny-method-get"));
    assert_eq!(d.rule, Some(0));
    assert_eq!(d.reason, AuthzReason::DeniedByPolicy);
    assert!(w.evaluate(&http(&post, 8000)).allowed);

    let s = snap(
        &["authz-deny-method-get-unless-x-token-admin.yaml"],
        "",
        "foo",
    );
    let w = s.authz_for_workload("foo", &labels("httpbin"));
    let admin = hdrs(&[("x-token", "admin")]);
    let guest = hdrs(&[("x-token", "guest")]);
    let table = [(&admin, true), (&guest, false), (&none, false)];
    for (h, allowed) in table {
        let r = Req {
            principal: None,
            method: "GET",
            path: "/get",
            headers: h,
        };
        assert_eq!(w.evaluate(&http(&r, 8000)).allowed, allowed, "{h:?}");
    }

    let s = snap(
        &[
            "authz-deny-method-get-unless-x-token-admin.yaml",
            "authz-deny-allow-path-ip.yaml",
        ],
        "",
        "foo",
    );
    let w = s.authz_for_workload("foo", &labels("httpbin"));
    let table = [
        ("/ip", &guest, false, Some("foo/deny-method-get")),
        ("/ip", &admin, true, Some("foo/allow-path-ip")),
        ("/ip?x=1", &admin, true, Some("foo/allow-path-ip")),
        ("/get", &admin, false, None),
    ];
    for (path, h, allowed, policy) in table {
        let r = Req {
            principal: None,
            method: "GET",
            path,
            headers: h,
        };
        let d = w.evaluate(&http(&r, 8000));
        assert_eq!(
            (d.allowed, d.policy.as_deref()),
            (allowed, policy),
            "{path} {h:?}"
        );
    }
}

#[test]
fn authz_tcp_task() {
    let tcp_echo = labels("tcp-echo");
    let table: &[(&str, &[(u16, bool)])] = &[
        (
            "authz-tcp-allow-ports.yaml",
            &[(9000, true), (9001, true), (9002, false)],
        ),
        // HTTP-only `methods` in an ALLOW rule: the rule never matches TCP
        (
            "authz-tcp-allow-methods-and-port.yaml",
            &[(9000, false), (9001, false)],
        ),
        // HTTP-only `methods` in a DENY rule: dropped, so everything is denied
        (
            "authz-tcp-deny-methods.yaml",
            &[(9000, false), (9001, false), (9002, false)],
        ),
        (
            "authz-tcp-deny-methods-and-port.yaml",
            &[(9000, false), (9001, true)],
        ),
    ];
    for (file, cases) in table {
        let s = snap(&[file], "", "foo");
        let w = s.authz_for_workload("foo", &tcp_echo);
        for (port, allowed) in cases.iter() {
            let d = w.evaluate(&AuthzRequest::tcp(*port));
            assert_eq!(d.allowed, *allowed, "{file} port {port}: {d:?}");
        }
    }
    // the same HTTP-only ALLOW rule does match HTTP on that port
    let s = snap(&["authz-tcp-allow-methods-and-port.yaml"], "", "foo");
    let w = s.authz_for_workload("foo", &tcp_echo);
    let none = HeaderMap::new();
    let r = Req {
        principal: None,
        method: "GET",
        path: "/",
        headers: &none,
    };
    assert!(w.evaluate(&http(&r, 9000)).allowed);
}

#[test]
fn authz_jwt_task() {
    let s = snap(&["authz-jwt-require-jwt.yaml"], "", "foo");
    let w = s.authz_for_workload("foo", &labels("httpbin"));
    let none = HeaderMap::new();
    let r = Req {
        principal: None,
        method: "GET",
        path: "/headers",
        headers: &none,
    };
    assert!(!w.evaluate(&http(&r, 8000)).allowed);
    let jwt = RequestAuth {
        principal: "testing@secure.istio.io/testing@secure.istio.io".into(),
        claims: serde_json::json!({"groups": ["group1", "group2"], "scope": "read write"}),
        ..Default::default()
    };
    let mut a = http(&r, 8000);
    a.request_auth = Some(&jwt);
    assert!(w.evaluate(&a).allowed);

    let s = snap(&["authz-jwt-require-jwt-groups.yaml"], "", "foo");
    let w = s.authz_for_workload("foo", &labels("httpbin"));
    assert!(w.evaluate(&a).allowed);
    let jwt2 = RequestAuth {
        claims: serde_json::json!({"groups": ["group2"]}),
        ..jwt.clone()
    };
    a.request_auth = Some(&jwt2);
    assert!(!w.evaluate(&a).allowed);
}

#[test]
fn mtls_migration_task() {
    let s = snap(&["mtls-migration-strict-namespace.yaml"], "", "foo");
    assert_eq!(
        s.peer_authentication("foo", &labels("httpbin"), 8000),
        MtlsMode::Strict
    );
    assert_eq!(
        s.peer_authentication("bar", &labels("httpbin"), 8000),
        MtlsMode::Permissive
    );
    let s = snap(&["mtls-migration-strict-mesh.yaml"], "", "istio-system");
    assert_eq!(
        s.peer_authentication("bar", &labels("httpbin"), 8000),
        MtlsMode::Strict
    );
    let d = s.peer_authentication_detail("legacy", &Labels::new(), 80);
    assert_eq!(d.policy.as_deref(), Some("istio-system/default"));
}

const FIELDS: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: fields, namespace: ns}
spec:
  selector: {matchLabels: {app: target}}
  rules:
  - from: [{source: {namespaces: [trusted], notPrincipals: ["cluster.local/ns/trusted/sa/banned"]}}]
    to: [{operation: {paths: ["/ns/*"]}}]
  - from: [{source: {principals: ["*/sa/admin"]}}]
    to: [{operation: {paths: ["/admin/{*}/edit"], methods: ["PUT"]}}]
  - from: [{source: {ipBlocks: ["10.0.0.0/8"], notIpBlocks: ["10.9.0.0/16"]}}]
    to: [{operation: {paths: ["/ip"]}}]
  - from: [{source: {remoteIpBlocks: ["203.0.113.7"]}}]
    to: [{operation: {paths: ["/remote"]}}]
  - to: [{operation: {hosts: ["*.Example.com"], notPaths: ["/private*"], ports: ["8080"]}}]
  - from: [{source: {serviceAccounts: ["ops/robot"]}}]
    to: [{operation: {paths: ["/sa"]}}]
  - from: [{source: {trustDomains: ["td.other"]}}]
    to: [{operation: {paths: ["/td"]}}]
  - to: [{operation: {paths: ["/when"]}}]
    when:
    - {key: source.ip, values: ["192.168.0.0/16"]}
    - {key: source.namespace, notValues: [evil]}
    - {key: destination.port, values: ["8000"]}
    - {key: connection.sni, values: ["*.svc"]}
  - to: [{operation: {paths: ["/aud"]}}]
    when:
    - {key: request.auth.audiences, values: [web]}
    - {key: "request.auth.claims[realm][role]", values: [admin]}
    - {key: "request.auth.claims[scope]", values: [write]}
  - to: [{operation: {paths: ["/meta"]}}]
    when:
    - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}
    - {key: destination.ip, values: ["127.0.0.1"]}
"#;

#[test]
fn every_source_operation_and_condition_field() {
    let s = snap(&[], FIELDS, "ns");
    let w = s.authz_for_workload("ns", &labels("target"));
    let none = HeaderMap::new();
    let ip = |s: &str| Some(s.parse().unwrap());
    let jwt = RequestAuth {
        principal: "iss/sub".into(),
        audiences: vec!["web".into()],
        claims: serde_json::json!({"realm": {"role": "admin"}, "scope": "read write"}),
        ..Default::default()
    };
    let jwt_bad = RequestAuth {
        claims: serde_json::json!({"realm": {"role": "user"}, "scope": "read write"}),
        ..jwt.clone()
    };
    struct C<'a> {
        principal: Option<&'a str>,
        method: &'a str,
        path: &'a str,
        host: &'a str,
        port: u16,
        src: Option<std::net::IpAddr>,
        remote: Option<std::net::IpAddr>,
        sni: Option<&'a str>,
        jwt: Option<&'a RequestAuth>,
        meta: &'a [(&'a str, &'a str)],
        dst: Option<std::net::IpAddr>,
        want: Option<usize>,
    }
    let c = |path: &'static str, want| C {
        principal: None,
        method: "GET",
        path,
        host: "target.ns",
        port: 8000,
        src: None,
        remote: None,
        sni: None,
        jwt: None,
        meta: &[],
        dst: None,
        want,
    };
    let table = vec![
        C {
            principal: Some("cluster.local/ns/trusted/sa/x"),
            ..c("/ns/a", Some(0))
        },
        C {
            principal: Some("cluster.local/ns/trusted/sa/banned"),
            ..c("/ns/a", None)
        },
        C {
            principal: Some("cluster.local/ns/other/sa/x"),
            ..c("/ns/a", None)
        },
        c("/ns/a", None), // plaintext never matches namespaces
        C {
            principal: Some("td/ns/a/sa/admin"),
            method: "PUT",
            ..c("/admin/x/edit", Some(1))
        },
        C {
            principal: Some("td/ns/a/sa/admin"),
            method: "PUT",
            ..c("/admin/x/y/edit", None)
        },
        C {
            principal: Some("td/ns/a/sa/admin"),
            method: "GET",
            ..c("/admin/x/edit", None)
        },
        C {
            src: ip("10.1.2.3"),
            ..c("/ip", Some(2))
        },
        C {
            src: ip("10.9.2.3"),
            ..c("/ip", None)
        },
        C {
            src: ip("11.1.2.3"),
            ..c("/ip", None)
        },
        C {
            src: ip("10.1.2.3"),
            remote: ip("203.0.113.7"),
            ..c("/remote", Some(3))
        },
        C {
            src: ip("203.0.113.7"),
            ..c("/remote", Some(3))
        },
        C {
            src: ip("10.1.2.3"),
            remote: ip("203.0.113.8"),
            ..c("/remote", None)
        },
        C {
            host: "api.EXAMPLE.com",
            port: 8080,
            ..c("/x", Some(4))
        },
        // Istio's HostMatcher sees the whole `:authority`: with its port it is another host
        C {
            host: "api.example.com:8080",
            port: 8080,
            ..c("/x", None)
        },
        C {
            host: "api.example.com",
            port: 8080,
            ..c("/private/x", None)
        },
        C {
            host: "api.example.com",
            port: 8000,
            ..c("/x", None)
        },
        C {
            principal: Some("cluster.local/ns/ops/sa/robot"),
            ..c("/sa", Some(5))
        },
        C {
            principal: Some("cluster.local/ns/ops/sa/robot2"),
            ..c("/sa", None)
        },
        C {
            principal: Some("td.other/ns/a/sa/b"),
            ..c("/td", Some(6))
        },
        C {
            principal: Some("cluster.local/ns/a/sa/b"),
            ..c("/td", None)
        },
        C {
            src: ip("192.168.1.1"),
            sni: Some("x.svc"),
            ..c("/when", Some(7))
        },
        C {
            src: ip("192.168.1.1"),
            sni: Some("x.svc"),
            principal: Some("cluster.local/ns/evil/sa/b"),
            ..c("/when", None)
        },
        C {
            src: ip("192.168.1.1"),
            sni: Some("x.svc"),
            port: 9000,
            ..c("/when", None)
        },
        C {
            src: ip("192.168.1.1"),
            ..c("/when", None)
        },
        C {
            jwt: Some(&jwt),
            ..c("/aud", Some(8))
        },
        C {
            jwt: Some(&jwt_bad),
            ..c("/aud", None)
        },
        c("/aud", None),
        C {
            meta: &[(
                "experimental.envoy.filters.network.mysql_proxy[db.table]",
                "[update]",
            )],
            dst: ip("127.0.0.1"),
            ..c("/meta", Some(9))
        },
        C {
            meta: &[],
            dst: ip("127.0.0.1"),
            ..c("/meta", None)
        },
    ];
    for case in table {
        let mut a = AuthzRequest::http(
            case.port,
            HttpAuthzAttrs {
                method: case.method,
                path: case.path,
                host: case.host,
                headers: &none,
            },
        );
        a.principal = case.principal;
        a.source_ip = case.src;
        a.remote_ip = case.remote;
        a.sni = case.sni;
        a.request_auth = case.jwt;
        a.filter_metadata = case.meta;
        a.destination_ip = case.dst;
        let d = w.evaluate(&a);
        assert_eq!(
            d.allowed,
            case.want.is_some(),
            "{} {:?}: {d:?}",
            case.path,
            case.principal
        );
        assert_eq!(d.rule, case.want, "{} {:?}", case.path, case.principal);
        if case.want.is_some() {
            assert_eq!(d.policy.as_deref(), Some("ns/fields"));
        }
    }
}

#[test]
fn policy_scope_actions_and_fail_closed() {
    let s = snap(
        &[],
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny-plaintext, namespace: istio-system}
spec:
  action: DENY
  rules: [{from: [{source: {notPrincipals: ["*"]}}], to: [{operation: {paths: ["/secure*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: root-selector, namespace: istio-system}
spec:
  selector: {matchLabels: {tier: locked}}
  rules: []
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: open}
spec:
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: open}
spec:
  action: AUDIT
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: custom}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{to: [{operation: {paths: ["/ext*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: shadow
  namespace: dry
  annotations: {istio.io/dry-run: "true"}
spec:
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: open}
spec:
  selector: {matchLabels: {app: other}}
  action: DENY
  rules: [{}]
"#,
        "default",
    );
    let none = HeaderMap::new();
    let req = |path: &'static str, method: &'static str, principal| {
        let mut a = AuthzRequest::http(
            80,
            HttpAuthzAttrs {
                method,
                path,
                host: "h",
                headers: &none,
            },
        );
        a.principal = principal;
        a
    };
    let app = labels("app");
    // root namespace DENY applies mesh-wide; notPrincipals ["*"] = plaintext
    let w = s.authz_for_workload("open", &app);
    let d = w.evaluate(&req("/secure/x", "GET", None));
    assert_eq!(
        (d.allowed, d.policy.as_deref()),
        (false, Some("istio-system/mesh-deny-plaintext"))
    );
    let d = w.evaluate(&req("/secure/x", "GET", Some("cluster.local/ns/a/sa/b")));
    assert_eq!(
        (d.allowed, d.policy.as_deref()),
        (true, Some("open/allow-all"))
    );
    // AUDIT never changes the decision but is reported
    let d = w.evaluate(&req("/x", "DELETE", None));
    assert!(d.allowed);
    assert_eq!(d.audit.as_deref(), Some("open/audit"));
    // a root-namespace selector applies in every namespace; empty rules = allow nothing
    let locked: Labels = [("tier".to_string(), "locked".to_string())].into();
    let d = s.authz_for_workload("anywhere", &locked).evaluate(&req(
        "/",
        "GET",
        Some("cluster.local/ns/a/sa/b"),
    ));
    assert!(!d.allowed);
    // no ALLOW policy: allow
    let d = s
        .authz_for_workload("anywhere", &app)
        .evaluate(&req("/", "GET", None));
    assert_eq!(
        (d.allowed, d.reason.clone()),
        (true, AuthzReason::NoAllowPolicy)
    );
    // CUSTOM: denied without a provider, provider decides otherwise
    let w = s.authz_for_workload("custom", &app);
    let d = w.evaluate(&req("/ext/1", "GET", None));
    assert_eq!(
        (d.allowed, d.reason.clone()),
        (false, AuthzReason::CustomDenied)
    );
    assert!(
        w.evaluate_with(&req("/ext/1", "GET", None), &|p, _| p == "opa")
            .allowed
    );
    assert!(w.evaluate(&req("/other", "GET", None)).allowed);
    // dry-run: not enforced, reported
    let d = s
        .authz_for_workload("dry", &app)
        .evaluate(&req("/", "GET", None));
    assert!(d.allowed);
    assert_eq!(d.dry_run.as_deref(), Some("dry/shadow"));
}

#[test]
fn uncompilable_policy_denies() {
    // built directly from objects (a reload would refuse this config at validation)
    let loaded = mesh_core::load::load_str(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: ns}
spec:
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["10.0.0.0/33"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad-key, namespace: other}
spec:
  rules: [{when: [{key: destination.namespace, values: [x]}]}]
"#,
        "bad.yaml",
    );
    assert!(!loaded.has_errors());
    let s = Snapshot::build(&loaded.objects, MeshOptions::default());
    assert_eq!(s.compile_errors().len(), 2, "{:?}", s.compile_errors());
    for ns in ["ns", "other"] {
        let w = s.authz_for_workload(ns, &labels("x"));
        let d = w.evaluate(&AuthzRequest::tcp(80));
        assert!(!d.allowed, "{ns}");
        assert!(matches!(d.reason, AuthzReason::Uncompilable(_)), "{d:?}");
        assert!(d.reason.to_string().contains("fail closed"));
    }
}

/// `requestPrincipals` as Istio compiles them: issuer and subject matched apart against
/// the token's `iss` and `sub` (a token without `sub` matches nothing, not even `*`);
/// string matchers only see string claims; `istio.io/dry-run` is Go's `ParseBool`.
#[test]
fn request_principals_claim_types_and_dry_run() {
    let allow = |values: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n  rules: [{{from: [{{source: {{requestPrincipals: {values}}}}}]}}]\n"
        )
    };
    let token = |c: serde_json::Value| RequestAuth::from_claims(c);
    let none = HeaderMap::new();
    let decide = |yaml: &str, jwt: &RequestAuth| {
        let s = snap(&[], yaml, "ns");
        let w = s.authz_for_workload("ns", &labels("target"));
        let mut r = AuthzRequest::http(
            80,
            HttpAuthzAttrs {
                method: "GET",
                path: "/",
                host: "target",
                headers: &none,
            },
        );
        r.request_auth = Some(jwt);
        w.evaluate(&r).allowed
    };
    let alice =
        token(serde_json::json!({"iss": "https://idp.example.com/realms/a", "sub": "alice"}));
    let no_sub = token(serde_json::json!({"iss": "https://idp.example.com/realms/a"}));
    for (values, who, want) in [
        (r#"["*"]"#, &alice, true),
        (r#"["*"]"#, &no_sub, false),
        (r#"["https://idp.example.com/realms/a/*"]"#, &alice, true),
        (r#"["https://idp.example.com/realms/a/*"]"#, &no_sub, false),
        (
            r#"["https://idp.example.com/realms/a/alice"]"#,
            &alice,
            true,
        ),
        (r#"["https://idp.example.com/realms/*"]"#, &alice, false), // issuer exact "…/realms"
        (r#"["*/alice"]"#, &alice, true),
        (r#"["*/realms/a/alice"]"#, &alice, true), // issuer suffix "/realms/a"
        (r#"["*lice"]"#, &alice, true),            // no `/`: subject suffix
        (r#"["https://idp.example.com/realms/a/al*"]"#, &alice, true),
        (r#"["https://idp*"]"#, &alice, false), // `/` present: issuer exact "https:/"…
    ] {
        assert_eq!(
            decide(&allow(values), who),
            want,
            "{values} for {:?}",
            who.claims
        );
    }

    // a boolean or number claim matches no string value
    let claim = |key: &str, values: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n  rules: [{{when: [{{key: 'request.auth.claims[{key}]', values: {values}}}]}}]\n"
        )
    };
    let admin = token(
        serde_json::json!({"iss": "i", "sub": "s", "admin": true, "level": 3, "role": "true"}),
    );
    assert!(!decide(&claim("admin", r#"["true"]"#), &admin));
    assert!(!decide(&claim("level", r#"["3"]"#), &admin));
    assert!(decide(&claim("role", r#"["true"]"#), &admin));

    // dry-run: "1" is true, as strconv.ParseBool
    let dry = |v: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: ns, annotations: {{istio.io/dry-run: '{v}'}}}}\nspec: {{action: DENY, rules: [{{}}]}}\n"
        )
    };
    assert!(decide(&dry("1"), &alice), "dry-run: not enforced");
    assert!(decide(&dry("True"), &alice));
    assert!(!decide(&dry("0"), &alice), "not dry-run: enforced");
    let loaded = mesh_core::load::load_str(&dry("yes"), "d.yaml");
    let diags = mesh_core::validate::validate_all(&loaded.objects);
    assert!(
        diags.iter().any(|d| d.message
            == "ns/deny-all has annotation istio.io/dry-run with invalid value (yes): strconv.ParseBool: parsing \"yes\": invalid syntax"),
        "{diags:#?}"
    );
    let loaded = mesh_core::load::load_str(&dry("1"), "d.yaml");
    assert!(mesh_core::validate::validate_all(&loaded.objects).is_empty());
}
