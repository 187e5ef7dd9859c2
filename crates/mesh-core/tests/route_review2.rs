//! Route table against Istio/Envoy where a second review found it diverging: delegate
//! matches merged as istiod's `mergeHTTPMatchRequests`/`hasConflict` do, root-inherited
//! fields resolved in the root's namespace, explicit redirect authorities, and RE2's ASCII
//! character classes.

use http::HeaderMap;
use mesh_core::names::MeshOptions;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "review2.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let snap = Snapshot::build(&loaded.objects, MeshOptions::default());
    assert!(
        snap.compile_errors().is_empty(),
        "{:?}",
        snap.compile_errors()
    );
    snap
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

const DELEGATION: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [bookinfo.com]
  http:
  - match: [{uri: {prefix: /reviews}}]
    rewrite: {uri: /r}
    delegate: {name: reviews}
  - match: [{uri: {exact: /ratings}}, {uri: {prefix: /details}, headers: {x-a: {exact: "1"}}}]
    delegate: {name: mixed}
  - match: [{uri: {regex: "/re.*"}}]
    delegate: {name: regexes}
  - directResponse: {status: 404}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  http:
  # not within the root's /reviews: istiod drops this route
  - match: [{uri: {prefix: /re}}]
    directResponse: {status: 500}
  - match: [{uri: {prefix: /reviews/v2}}]
    directResponse: {status: 201}
  # one of its matches conflicts: the whole route is dropped
  - match: [{uri: {prefix: /reviews/v3}}, {uri: {prefix: /other}}]
    directResponse: {status: 501}
  - match: [{headers: {x-user: {exact: jason}}}]
    directResponse: {status: 202}
  - directResponse: {status: 200}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed, namespace: default}
spec:
  http:
  # exact /ratings: compatible with the root's first match only
  - match: [{uri: {exact: /ratings}}]
    directResponse: {status: 203}
  # the delegate's header value wins over the root's for the same header (merged, not AND-ed)
  - match: [{uri: {prefix: /details/x}, headers: {x-b: {exact: "2"}}}]
    directResponse: {status: 204}
  - match: [{uri: {exact: /ratingsx}}]
    directResponse: {status: 502}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: regexes, namespace: default}
spec:
  http:
  # a regex on both sides conflicts
  - match: [{uri: {regex: "/rex"}}]
    directResponse: {status: 503}
  - match: [{method: {exact: GET}}]
    directResponse: {status: 205}
"#;

/// A delegate route whose match is not within the root's (istiod `hasConflict` /
/// `stringMatchConflict`) is dropped; compatible ones are merged field by field
/// (`mergeHTTPMatchRequest`), and a prefix rewrite cuts the merged (delegate's) prefix.
#[test]
fn delegate_matches_follow_istiod_merge_rules() {
    let s = snap(DELEGATION);
    let none = HeaderMap::new();
    let status = |path: &str, h: &HeaderMap| {
        s.route_http(&HttpRequestAttrs::new("default", "bookinfo.com", path, h))
            .status()
    };
    // /re is not a subset of /reviews: the route is gone, not AND-ed into /reviews
    assert_eq!(status("/reviews", &none), Some(200));
    assert_eq!(status("/reviews/v2/a", &none), Some(201));
    assert_eq!(status("/reviews/v3", &none), Some(200));
    assert_eq!(status("/other", &none), Some(404));
    assert_eq!(
        status("/reviews/x", &headers(&[("x-user", "jason")])),
        Some(202)
    );
    assert_eq!(status("/ratings", &none), Some(203));
    assert_eq!(status("/ratingsx", &none), Some(404));
    // root header x-a and delegate header x-b are both required (different keys)
    assert_eq!(
        status("/details/x", &headers(&[("x-a", "1"), ("x-b", "2")])),
        Some(204)
    );
    assert_eq!(status("/details/x", &headers(&[("x-b", "2")])), Some(404));
    // regex root: a delegate uri regex conflicts, a method-only match merges
    let with_method = |m| {
        let mut a = HttpRequestAttrs::new("default", "bookinfo.com", "/rex", &none);
        a.method = m;
        s.route_http(&a).status()
    };
    assert_eq!(with_method("POST"), Some(404));
    assert_eq!(with_method("GET"), Some(205));
}

/// The merged match is the delegate's where it sets a field, so a root prefix rewrite cuts
/// the delegate's (longer) prefix, as Envoy's `prefix_rewrite` on the merged route does.
#[test]
fn delegate_prefix_rewrite_cuts_the_merged_prefix() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [bookinfo.com]
  http:
  - match: [{uri: {prefix: /reviews}}]
    rewrite: {uri: /r}
    delegate: {name: reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  http:
  - match: [{uri: {prefix: /re}}]
    route: [{destination: {host: wrong}}]
  - match: [{uri: {prefix: /reviews/v2}}]
    route: [{destination: {host: reviews}}]
"#,
    );
    let none = HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "bookinfo.com",
        "/reviews/v2/a",
        &none,
    ));
    assert_eq!(
        &*d.destinations()[0].host,
        "reviews.default.svc.cluster.local"
    );
    let rw = d.action().unwrap().rewrite.as_deref().unwrap();
    assert_eq!(
        rw.path("/reviews/v2/a", d.prefix_len).as_deref(),
        Some("/r/a")
    );
}

/// istiod resolves each VirtualService's short names in its own namespace before merging
/// (push_context `initVirtualServices`): a mirror a delegate inherits from its root names
/// a service in the root's namespace; the delegate's own destinations stay in its own.
#[test]
fn inherited_mirror_resolves_in_the_root_namespace() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [bookinfo.com]
  http:
  - mirror: {host: shadow}
    mirrors: [{destination: {host: shadow2}}]
    delegate: {name: reviews, namespace: nsa}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: nsa}
spec:
  http:
  - route: [{destination: {host: reviews}}]
"#,
    );
    let none = HeaderMap::new();
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "bookinfo.com",
        "/",
        &none,
    ));
    assert_eq!(&*d.destinations()[0].host, "reviews.nsa.svc.cluster.local");
    let mirrors: Vec<&str> = d
        .action()
        .unwrap()
        .mirrors
        .iter()
        .map(|m| &*m.destination.host)
        .collect();
    assert_eq!(
        mirrors,
        [
            "shadow.default.svc.cluster.local",
            "shadow2.default.svc.cluster.local"
        ]
    );
}

/// istiod's `mergeHTTPRoute` names a delegate route `root-delegate`, and an empty name
/// counts as unset there (Go's zero string): `name: ""` on either side takes the other's
/// name alone, not `-d` or `r-`.
#[test]
fn delegate_route_names_treat_empty_as_unset() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [bookinfo.com]
  http:
  - name: ""
    match: [{uri: {prefix: /a}}]
    delegate: {name: child}
  - name: r
    match: [{uri: {prefix: /b}}]
    delegate: {name: child}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http:
  - name: d
    match: [{uri: {prefix: /a/d}}]
    route: [{destination: {host: reviews}}]
  - name: ""
    route: [{destination: {host: reviews}}]
"#,
    );
    let none = HeaderMap::new();
    let name = |path: &str| {
        s.route_http(&HttpRequestAttrs::new(
            "default",
            "bookinfo.com",
            path,
            &none,
        ))
        .rule
        .and_then(|r| r.name.as_deref().map(str::to_owned))
    };
    assert_eq!(name("/a/d").as_deref(), Some("d"));
    assert_eq!(name("/b").as_deref(), Some("r"));
}

/// Envoy's `newUri` writes `host_redirect` as configured: a port written in the redirect
/// `authority` stays even when it is the scheme's default; only the request's own port is
/// dropped on a scheme change, and a configured default redirect port is left out.
#[test]
fn redirect_authority_keeps_an_explicit_port() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8080, name: http-alt, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - match: [{uri: {prefix: /a}}]
    redirect: {authority: "other.example.com:80"}
  - match: [{uri: {prefix: /b}}]
    redirect: {authority: "other.example.com:443", scheme: https}
  - match: [{uri: {prefix: /c}}]
    redirect: {authority: other.example.com}
  - match: [{uri: {prefix: /d}}]
    redirect: {authority: other.example.com, port: 80}
"#,
    );
    let none = HeaderMap::new();
    let location = |authority: &str, path: &str| {
        let a = HttpRequestAttrs::new("default", authority, path, &none);
        let d = s.route_http(&a);
        let mesh_core::route::RouteOutcome::Redirect(r) = d.outcome else {
            panic!("not a redirect: {path}")
        };
        r.location(
            a.scheme,
            a.authority,
            a.effective_port(),
            a.path,
            a.query,
            d.prefix_len,
        )
    };
    assert_eq!(
        location("web.example.com", "/a"),
        "http://other.example.com:80/a"
    );
    assert_eq!(
        location("web.example.com", "/b"),
        "https://other.example.com:443/b"
    );
    // the request's port is not carried over to a new authority
    assert_eq!(
        location("web.example.com:8080", "/c"),
        "http://other.example.com/c"
    );
    assert_eq!(
        location("web.example.com", "/d"),
        "http://other.example.com/d"
    );
}

/// istiod validateHTTPRetry: a retryOn entry that is an integer must be a status code Go's
/// `http.StatusText` knows; the message is istiod's.
#[test]
fn retry_on_integers_must_be_known_status_codes() {
    let vs = |on: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x, namespace: ns1}}\nspec:\n  hosts: [r]\n  http: [{{route: [{{destination: {{host: r}}}}], retries: {{attempts: 2, retryOn: '{on}'}}}}]\n"
        )
    };
    let errors = |on: &str| -> Vec<String> {
        mesh_core::check(&mesh_core::load::load_str(&vs(on), "t.yaml"))
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.message)
            .collect()
    };
    assert!(errors("5xx,503,429,418,reset").is_empty());
    assert_eq!(errors("599"), ["\"599\" is not a valid retryOn policy"]);
    assert_eq!(errors("306"), ["\"306\" is not a valid retryOn policy"]);
    assert_eq!(errors("-503"), ["\"-503\" is not a valid retryOn policy"]);
}

/// Envoy's regexes are RE2: `\d`, `\w`, `\s` are ASCII classes there, while `.` still
/// matches one UTF-8 character.
#[test]
fn regex_perl_classes_are_ascii_as_in_re2() {
    let s = snap(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.example.com]
  http:
  - match: [{uri: {regex: "/v\\d+/\\w+"}}]
    directResponse: {status: 201}
  - match: [{uri: {regex: "/u/.{4}"}}]
    directResponse: {status: 202}
  - directResponse: {status: 404}
"#,
    );
    let none = HeaderMap::new();
    let status = |path: &str| {
        s.route_http(&HttpRequestAttrs::new(
            "default",
            "web.example.com",
            path,
            &none,
        ))
        .status()
    };
    assert_eq!(status("/v12/abc_1"), Some(201));
    assert_eq!(status("/v\u{0661}\u{0662}/abc"), Some(404));
    assert_eq!(status("/v1/caf\u{e9}"), Some(404));
    assert_eq!(status("/u/caf\u{e9}"), Some(202));
}
