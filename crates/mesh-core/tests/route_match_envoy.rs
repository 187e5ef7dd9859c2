//! Route matching as Envoy reads a request, from a replay of its header matching: a `host`
//! header condition reads the authority (Envoy keeps `Host` as `:authority`), a value with
//! non-ASCII bytes is compared as it is (obs-text) and counts as present, and RE2's own
//! escapes (`\<`, octal, `\p{^X}`) mean what they mean in RE2.

use mesh_core::names::MeshOptions;
use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
use mesh_core::snapshot::Snapshot;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - match: [{uri: {prefix: /host}, headers: {host: {exact: web.example.com}}}]
    directResponse: {status: 200}
  - match: [{uri: {prefix: /user}, headers: {x-user: {}}}]
    directResponse: {status: 201}
  - match: [{uri: {prefix: /name}, headers: {x-name: {exact: "José"}}}]
    directResponse: {status: 202}
  - match: [{uri: {prefix: /nodeny}, withoutHeaders: {x-deny: {}}}]
    directResponse: {status: 203}
  - match: [{uri: {prefix: /angle}, headers: {x-a: {regex: 'a\<b\>'}}}]
    directResponse: {status: 204}
  - match: [{uri: {prefix: /octal}, headers: {x-o: {regex: '\101+'}}}]
    directResponse: {status: 205}
  - match: [{uri: {prefix: /greek}, headers: {x-g: {regex: '\p{^Greek}+'}}}]
    directResponse: {status: 206}
  - directResponse: {status: 404}
"#;

fn status(s: &Snapshot, path: &str, headers: &[(&str, &[u8])]) -> u16 {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    let d = s.route_http(&HttpRequestAttrs::new(
        "default",
        "web.example.com",
        path,
        &h,
    ));
    match d.outcome {
        RouteOutcome::DirectResponse(r) => r.status,
        _ => 0,
    }
}

#[test]
fn headers_are_read_as_envoy_reads_them() {
    let loaded = mesh_core::load::load_str(YAML, "match.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let s = Snapshot::build(&loaded.objects, MeshOptions::default());
    // `host` is the authority, with or without a Host header in the map
    assert_eq!(status(&s, "/host", &[]), 200);
    // UTF-8 (obs-text) values: present, and compared byte for byte
    assert_eq!(status(&s, "/user", &[("x-user", "José".as_bytes())]), 201);
    assert_eq!(status(&s, "/name", &[("x-name", "José".as_bytes())]), 202);
    assert_eq!(status(&s, "/name", &[("x-name", b"Jos\xe9")]), 404);
    assert_eq!(status(&s, "/nodeny", &[("x-deny", "é".as_bytes())]), 404);
    assert_eq!(status(&s, "/nodeny", &[]), 203);
    // RE2: `\<` is `<`, `\101` is `A`, `\p{^Greek}` is any non-Greek letter
    assert_eq!(status(&s, "/angle", &[("x-a", b"a<b>")]), 204);
    assert_eq!(status(&s, "/angle", &[("x-a", b"ab")]), 404);
    assert_eq!(status(&s, "/octal", &[("x-o", b"AAA")]), 205);
    assert_eq!(status(&s, "/greek", &[("x-g", b"abc")]), 206);
    assert_eq!(status(&s, "/greek", &[("x-g", "αβ".as_bytes())]), 404);
}
