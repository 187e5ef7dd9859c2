//! Routing against real Istio YAML (bookinfo tasks) and our own table of match rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderMap;
use mesh_core::load::{LoadOptions, Loader};
use mesh_core::mesh::Mesh;
use mesh_core::model::{Labels, SimpleLb};
use mesh_core::names::MeshOptions;
use mesh_core::registry::Workload;
use mesh_core::route::{
    AbortStatus, HttpRequestAttrs, L4Attrs, RouteOutcome, WeightedDestination, DEFAULT_RETRY_ON,
};
use mesh_core::snapshot::Snapshot;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples")
}

fn snapshot_of(files: &[&str], extra: &str) -> Snapshot {
    let loader = Loader::new(LoadOptions::default());
    let mut loaded = loader
        .load_paths(files.iter().map(|f| samples().join(f)))
        .unwrap();
    loaded.extend(loader.load_str(extra, "extra.yaml"));
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
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// SplitMix64: a deterministic uniform generator for the statistical tests.
struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn subset(d: &WeightedDestination) -> &str {
    d.subset.as_deref().unwrap_or("-")
}

#[test]
fn request_routing_for_jason() {
    let snap = snapshot_of(
        &[
            "bookinfo/platform-kube/bookinfo.yaml",
            "bookinfo/networking/destination-rule-all.yaml",
            "bookinfo/networking/virtual-service-reviews-test-v2.yaml",
        ],
        "",
    );
    let jason = headers(&[("end-user", "jason")]);
    let other = headers(&[("end-user", "mary")]);
    let none = HeaderMap::new();
    // (authority, headers, route index, subset)
    let table = [
        ("reviews:9080", &jason, 0, "v2"),
        ("reviews", &jason, 0, "v2"),
        ("reviews.default", &jason, 0, "v2"),
        ("reviews.default.svc.cluster.local:9080", &jason, 0, "v2"),
        ("REVIEWS:9080", &jason, 0, "v2"),
        ("reviews:9080", &other, 1, "v1"),
        ("reviews:9080", &none, 1, "v1"),
    ];
    for (authority, h, route, want) in table {
        let d = snap.route_http(&HttpRequestAttrs::new(
            "default",
            authority,
            "/reviews/0",
            h,
        ));
        assert_eq!(d.host, "reviews.default.svc.cluster.local", "{authority}");
        assert_eq!(d.virtual_service_name(), Some("default/reviews"));
        assert_eq!(d.route_index(), Some(route), "{authority} {h:?}");
        assert_eq!(d.destinations().len(), 1);
        assert_eq!(subset(&d.destinations()[0]), want);
        assert_eq!(d.destinations()[0].weight, 100);
        assert_eq!(d.status(), None);
        // Istio's implicit retry policy, no timeout
        assert_eq!(d.retries().attempts, 2);
        assert_eq!(&*d.retries().retry_on, DEFAULT_RETRY_ON);
        assert_eq!(d.timeout(), None);
        // the subset is defined, with its labels
        let p = snap.traffic_policy(&d.destinations()[0].host, Some(want), 9080, "default");
        assert!(p.subset_found);
        assert_eq!(p.subset_labels().unwrap()["version"], want);
        assert_eq!(
            p.destination_rule.map(|d| &*d.name),
            Some("default/reviews")
        );
    }
    // header values are case-sensitive; header names are not
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews",
        "/",
        &headers(&[("End-User", "Jason")]),
    ));
    assert_eq!(d.route_index(), Some(1));
    // no port in the route: the service's only port, whatever port the request used
    let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &jason));
    assert_eq!(
        snap.destination_port(&d.destinations()[0], "default", 80),
        9080
    );
    // ratings has no VirtualService: it goes to the service itself
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "ratings:9080",
        "/",
        &none,
    ));
    assert_eq!(d.virtual_service_name(), None);
    assert_eq!(d.host, "ratings.default.svc.cluster.local");
    assert_eq!(d.destinations()[0].subset, None);
    assert_eq!(d.retries().attempts, 2);
    // from another namespace the short name is that namespace's service
    let d = snap.route_http(&HttpRequestAttrs::new("other", "reviews", "/", &jason));
    assert_eq!(d.host, "reviews.other.svc.cluster.local");
    assert_eq!(d.virtual_service_name(), None);
    // but the namespaced name reaches the VirtualService
    let d = snap.route_http(&HttpRequestAttrs::new(
        "other",
        "reviews.default:9080",
        "/",
        &jason,
    ));
    assert_eq!(d.route_index(), Some(0));
}

fn shares(snap: &Snapshot, picks: u32) -> Vec<(String, f64)> {
    let none = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "reviews:9080",
        "/",
        &none,
    ));
    let mut rng = SplitMix(42);
    let mut counts: Vec<(String, u32)> = d
        .destinations()
        .iter()
        .map(|d| (subset(d).to_owned(), 0))
        .collect();
    for _ in 0..picks {
        let p = d.pick(rng.next()).unwrap();
        counts.iter_mut().find(|(s, _)| s == subset(p)).unwrap().1 += 1;
    }
    counts
        .into_iter()
        .map(|(s, c)| (s, f64::from(c) * 100.0 / f64::from(picks)))
        .collect()
}

#[test]
fn traffic_shifting_weights_hold_over_100000_picks() {
    let table: &[(&str, &[(&str, f64)])] = &[
        (
            "virtual-service-reviews-80-20.yaml",
            &[("v1", 80.0), ("v2", 20.0)],
        ),
        (
            "virtual-service-reviews-90-10.yaml",
            &[("v1", 90.0), ("v2", 10.0)],
        ),
        (
            "virtual-service-reviews-50-v3.yaml",
            &[("v1", 50.0), ("v3", 50.0)],
        ),
        (
            "virtual-service-reviews-v2-v3.yaml",
            &[("v2", 50.0), ("v3", 50.0)],
        ),
        ("virtual-service-reviews-v3.yaml", &[("v3", 100.0)]),
    ];
    for (file, want) in table {
        let snap = snapshot_of(
            &[
                "bookinfo/platform-kube/bookinfo.yaml",
                "bookinfo/networking/destination-rule-all.yaml",
                &format!("bookinfo/networking/{file}"),
            ],
            "",
        );
        let got = shares(&snap, 100_000);
        assert_eq!(got.len(), want.len(), "{file}");
        for ((s, share), (ws, wshare)) in got.iter().zip(want.iter()) {
            assert_eq!(s, ws, "{file}");
            assert!(
                (share - wshare).abs() < 0.5,
                "{file}: {s} got {share:.3}% want {wshare}%"
            );
        }
    }
    // weights are relative: 1:3 is 25/75; a destination without weight gets nothing
    let snap = snapshot_of(
        &["bookinfo/platform-kube/bookinfo.yaml"],
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: a}, weight: 1}
    - {destination: {host: reviews, subset: b}, weight: 3}
    - {destination: {host: reviews, subset: c}}
"#,
    );
    let got = shares(&snap, 100_000);
    assert_eq!(got.len(), 2);
    assert!((got[0].1 - 25.0).abs() < 0.5, "{got:?}");
    assert!((got[1].1 - 75.0).abs() < 0.5, "{got:?}");
}

#[test]
fn fault_injection_tasks() {
    let snap = snapshot_of(
        &[
            "bookinfo/platform-kube/bookinfo.yaml",
            "bookinfo/networking/virtual-service-ratings-test-abort.yaml",
        ],
        "",
    );
    let jason = headers(&[("end-user", "jason")]);
    let none = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "ratings:9080",
        "/ratings/0",
        &jason,
    ));
    assert_eq!(d.route_index(), Some(0));
    let f = d.action().unwrap().fault.as_ref().unwrap();
    assert_eq!(f.abort.unwrap().0, AbortStatus::Http(500));
    assert_eq!(f.abort.unwrap().1.percent(), 100.0);
    assert_eq!(d.status(), Some(500));
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "ratings:9080",
        "/ratings/0",
        &none,
    ));
    assert_eq!(d.route_index(), Some(1));
    assert!(d.action().unwrap().fault.is_none());
    assert_eq!(d.status(), None);

    let snap = snapshot_of(
        &[
            "bookinfo/platform-kube/bookinfo.yaml",
            "bookinfo/networking/virtual-service-ratings-test-delay.yaml",
        ],
        "",
    );
    let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &jason));
    let (delay, share) = d.action().unwrap().fault.as_ref().unwrap().delay.unwrap();
    assert_eq!(delay, Duration::from_secs(7));
    assert!(share.fires(123_456_789));
    assert_eq!(d.status(), None); // a delay does not answer

    // abort 555 on a match-less first route: every request, second route unreachable
    let snap = snapshot_of(
        &[
            "bookinfo/platform-kube/bookinfo.yaml",
            "bookinfo/networking/fault-injection-details-v1.yaml",
        ],
        "",
    );
    for path in ["/details/0", "/", "/x"] {
        let d = snap.route_http(&HttpRequestAttrs::new(
            "default",
            "details:9080",
            path,
            &none,
        ));
        assert_eq!(d.route_index(), Some(0));
        assert_eq!(d.status(), Some(555));
    }
}

#[test]
fn egress_tasks() {
    let snap = snapshot_of(
        &[
            "istio-io-tasks/egress-control-httpbin-ext-serviceentry.yaml",
            "istio-io-tasks/egress-control-httpbin-ext-timeout.yaml",
            "bookinfo/networking/egress-rule-google-apis.yaml",
        ],
        "",
    );
    let none = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "httpbin.org",
        "/delay/5",
        &none,
    ));
    assert_eq!(d.host, "httpbin.org");
    assert_eq!(d.timeout(), Some(Duration::from_secs(3)));
    assert_eq!(d.destinations()[0].host.as_ref(), "httpbin.org");
    // port 80 is routed to 443, where the DR's port-level TLS SIMPLE applies
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "www.googleapis.com",
        "/",
        &none,
    ));
    assert_eq!(d.route_index(), Some(0));
    assert_eq!(d.destinations()[0].port, Some(443));
    let p = snap.traffic_policy("www.googleapis.com", None, 443, "default");
    assert_eq!(p.tls.unwrap().mode, mesh_core::model::ClientTlsMode::Simple);
    // port-level settings replace the top level: no ROUND_ROBIN on 443
    assert_eq!(p.simple_lb(), Some(SimpleLb::LeastRequest));
    let p = snap.traffic_policy("www.googleapis.com", None, 80, "default");
    assert_eq!(p.simple_lb(), Some(SimpleLb::RoundRobin));
    assert!(p.tls.is_none());
    // on 443 the VS's only route (`port: 80`) is dropped: istiod builds no virtual host
    // for it there and the service keeps its default route
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "www.googleapis.com:443",
        "/",
        &none,
    ));
    assert_eq!(d.status(), None);
    assert_eq!(d.outcome, RouteOutcome::Forward);
    assert_eq!(d.virtual_service_name(), None);
    assert_eq!(d.destinations()[0].host.as_ref(), "www.googleapis.com");
}

const MATCHES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: m, namespace: default}
spec: {ports: [{port: 80, name: http}, {port: 8080, name: http-alt}, {port: 443, name: http-443}], selector: {app: m}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: m, namespace: default}
spec:
  hosts: [m]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: m, subset: r0}}]
  - match: [{uri: {prefix: /Pre}, ignoreUriCase: true}]
    route: [{destination: {host: m, subset: r1}}]
  - match: [{uri: {regex: "/re/[0-9]+"}}]
    route: [{destination: {host: m, subset: r2}}]
  - match: [{method: {exact: POST}, uri: {prefix: /m}}]
    route: [{destination: {host: m, subset: r3}}]
  - match: [{headers: {x-a: {prefix: ab}}}, {headers: {x-b: {regex: "v[0-9]"}}}]
    route: [{destination: {host: m, subset: r4}}]
  - match: [{headers: {x-present: {}}}]
    route: [{destination: {host: m, subset: r5}}]
  - match: [{uri: {prefix: /without}, withoutHeaders: {x-deny: {exact: "yes"}}}]
    route: [{destination: {host: m, subset: r6}}]
  - match: [{queryParams: {q: {exact: "1"}}}, {queryParams: {"n": {regex: "\\d+"}}}]
    route: [{destination: {host: m, subset: r7}}]
  - match: [{port: 8080}]
    route: [{destination: {host: m, subset: r8}}]
  - match: [{sourceLabels: {app: sleep}, uri: {prefix: /src}}]
    route: [{destination: {host: m, subset: r9}}]
  - match: [{sourceNamespace: prod, uri: {prefix: /src}}]
    route: [{destination: {host: m, subset: r10}}]
  - match: [{scheme: {exact: https}}]
    route: [{destination: {host: m, subset: r11}}]
  - match: [{authority: {prefix: "m.default"}}]
    route: [{destination: {host: m, subset: r12}}]
  - match: [{headers: {":method": {exact: DELETE}}}]
    route: [{destination: {host: m, subset: r13}}]
  - match: [{queryParams: {flag: {exact: ""}}}]
    route: [{destination: {host: m, subset: r14}}]
  - match: [{uri: {prefix: /redirect}}]
    redirect: {uri: /new, authority: other.example.com, redirectCode: 302}
  - match: [{uri: {prefix: /direct}}]
    directResponse: {status: 503, body: {string: "unavailable"}}
  - match: [{uri: {prefix: /api/v1}}]
    rewrite: {uri: /v2, authority: api.internal}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: "503,reset"}
    mirror: {host: shadow}
    mirrorPercentage: {value: 25}
    headers:
      request: {set: {x-set: "1"}, add: {x-add: "2"}, remove: [x-remove]}
      response: {set: {x-resp: "3"}}
    route:
    - destination: {host: m, subset: r17}
      headers: {request: {set: {x-dest: d}}}
  - match: [{uri: {prefix: /norretries}}]
    retries: {attempts: 0}
    route: [{destination: {host: m, subset: r18}}]
"#;

#[test]
fn every_match_rule() {
    let snap = snapshot_of(&[], MATCHES);
    let sleep: Labels = [("app".to_string(), "sleep".to_string())].into();
    let none = Labels::new();
    struct Case<'a> {
        ns: &'a str,
        labels: &'a Labels,
        authority: &'a str,
        method: &'a str,
        scheme: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        want: Option<usize>,
    }
    let c = |path: &'static str, headers: &'static [(&'static str, &'static str)], want| Case {
        ns: "default",
        labels: &none,
        authority: "m",
        method: "GET",
        scheme: "http",
        path,
        headers,
        want,
    };
    let table = vec![
        c("/exact", &[], Some(0)),
        c("/exact/", &[], None),
        c("/EXACT", &[], None),
        c("/prefix/x", &[], Some(1)),
        c("/PREFIX", &[], Some(1)),
        c("/re/123", &[], Some(2)),
        c("/re/12a", &[], None),
        c("/re/123/x", &[], None), // full match only
        Case {
            method: "POST",
            ..c("/m/x", &[], Some(3))
        },
        c("/m/x", &[], None),
        c("/h", &[("x-a", "abc")], Some(4)),
        c("/h", &[("X-A", "abc")], Some(4)),
        c("/h", &[("x-a", "Abc")], None),
        c("/h", &[("x-b", "v7")], Some(4)),
        c("/h", &[("x-b", "v77")], None),
        c("/h", &[("x-present", "")], Some(5)),
        c("/without", &[], Some(6)),
        c("/without", &[("x-deny", "no")], Some(6)),
        c("/without", &[("x-deny", "yes")], None),
        c("/q?q=1", &[], Some(7)),
        c("/q?q=2", &[], None),
        c("/q?a=b&n=42", &[], Some(7)),
        c("/q?n=4x", &[], None),
        Case {
            authority: "m:8080",
            ..c("/port", &[], Some(8))
        },
        c("/port", &[], None),
        Case {
            labels: &sleep,
            ..c("/src", &[], Some(9))
        },
        Case {
            ns: "prod",
            authority: "m.default",
            ..c("/src", &[], Some(10))
        },
        Case {
            ns: "prod",
            authority: "m.default",
            ..c("/nomatch", &[], Some(12))
        },
        Case {
            scheme: "https",
            ..c("/s", &[], Some(11))
        },
        Case {
            method: "DELETE",
            ..c("/d", &[], Some(13))
        },
        c("/f?flag", &[], Some(14)),
        c("/f?flag=", &[], Some(14)),
        c("/f?flag=x", &[], None),
    ];
    for case in table {
        let h = headers(case.headers);
        let mut a = HttpRequestAttrs::new(case.ns, case.authority, case.path, &h)
            .with_source_labels(case.labels)
            .with_method(case.method)
            .with_scheme(case.scheme);
        if case.scheme == "https" {
            a = a.with_port(443);
        }
        let d = snap.route_http(&a);
        assert_eq!(
            d.route_index(),
            case.want,
            "{} {} {:?} ns={} labels={:?}",
            case.method,
            case.path,
            case.headers,
            case.ns,
            case.labels
        );
        match case.want {
            Some(i) => {
                assert_eq!(subset(&d.destinations()[0]), format!("r{i}"));
                assert_eq!(d.status(), None);
            }
            None => {
                assert_eq!(d.status(), Some(404), "{}", case.path);
                assert!(d.destinations().is_empty());
            }
        }
    }

    let none_h = HeaderMap::new();
    // redirect
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "m",
        "/redirect/x?a=1",
        &none_h,
    ));
    let RouteOutcome::Redirect(r) = d.outcome else {
        panic!("{:?}", d.outcome)
    };
    assert_eq!(d.status(), Some(302));
    assert_eq!(
        r.location("http", "m", 80, "/redirect/x", Some("a=1"), d.prefix_len),
        "http://other.example.com/new?a=1"
    );
    // direct response
    let d = snap.route_http(&HttpRequestAttrs::new("default", "m", "/direct", &none_h));
    let RouteOutcome::DirectResponse(r) = d.outcome else {
        panic!()
    };
    assert_eq!(
        (r.status, r.body.as_deref()),
        (503, Some(&b"unavailable"[..]))
    );
    assert_eq!(d.status(), Some(503));
    // every action of a forwarding route
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "m",
        "/api/v1/items",
        &none_h,
    ));
    let a = d.action().unwrap();
    let rw = a.rewrite.as_ref().unwrap();
    assert_eq!(
        rw.path("/api/v1/items", d.prefix_len).as_deref(),
        Some("/v2/items")
    );
    assert_eq!(rw.authority.as_deref(), Some("api.internal"));
    assert_eq!(a.timeout, Some(Duration::from_secs(2)));
    assert_eq!(a.retries.attempts, 3);
    assert_eq!(a.retries.per_try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(&*a.retries.retry_on, "reset,retriable-status-codes");
    assert_eq!(&*a.retries.retriable_status_codes, &[503]);
    assert_eq!(a.mirrors.len(), 1);
    assert_eq!(
        &*a.mirrors[0].destination.host,
        "shadow.default.svc.cluster.local"
    );
    assert_eq!(a.mirrors[0].share.percent(), 25.0);
    let mut req = headers(&[("x-remove", "1"), ("x-set", "0")]);
    a.headers.request.apply(&mut req);
    d.destinations()[0]
        .headers
        .as_ref()
        .unwrap()
        .request
        .apply(&mut req);
    assert_eq!(req.get("x-set").unwrap(), "1");
    assert_eq!(req.get("x-add").unwrap(), "2");
    assert_eq!(req.get("x-dest").unwrap(), "d");
    assert!(req.get("x-remove").is_none());
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "m",
        "/norretries",
        &none_h,
    ));
    assert!(!d.retries().enabled());
}

#[test]
fn names_visibility_wildcards_and_gateways() {
    let snap = snapshot_of(
        &[
            "bookinfo/platform-kube/bookinfo.yaml",
            "bookinfo/networking/bookinfo-gateway.yaml",
        ],
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: prod}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http: [{route: [{destination: {host: reviews, subset: private}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wide, namespace: default}
spec:
  hosts: ["*.example.com"]
  http: [{route: [{destination: {host: wide.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: narrow, namespace: default}
spec:
  hosts: ["*.api.example.com"]
  http: [{route: [{destination: {host: narrow.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: exact, namespace: default}
spec:
  hosts: ["v1.api.example.com"]
  http: [{route: [{destination: {host: exact.example.com}}]}]
"#,
    );
    let h = HeaderMap::new();
    // exportTo "." : visible only inside prod
    let d = snap.route_http(&HttpRequestAttrs::new("prod", "reviews", "/", &h));
    assert_eq!(d.virtual_service_name(), Some("prod/private"));
    let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews.prod", "/", &h));
    assert_eq!(d.virtual_service_name(), None);
    // most specific wildcard wins, exact first
    let table = [
        ("v1.api.example.com", "default/exact"),
        ("v2.api.example.com", "default/narrow"),
        ("a.b.api.example.com", "default/narrow"),
        ("www.example.com", "default/wide"),
    ];
    for (host, want) in table {
        let d = snap.route_http(&HttpRequestAttrs::new("default", host, "/", &h));
        assert_eq!(d.virtual_service_name(), Some(want), "{host}");
    }
    let d = snap.route_http(&HttpRequestAttrs::new("default", "example.com", "/", &h));
    assert_eq!(d.virtual_service_name(), None);

    // the bookinfo gateway VS applies at the gateway only
    let gw = Some("default/bookinfo-gateway");
    let gw_table = [
        ("/productpage", 8080, Some(9080)),
        ("/static/app.css", 8080, Some(9080)),
        ("/api/v1/products/1", 8080, Some(9080)),
        ("/login", 8080, Some(9080)),
        ("/other", 8080, None),
        ("/productpage", 80, None), // no server on that port
    ];
    for (path, port, want) in gw_table {
        let a = HttpRequestAttrs::new("istio-system", "bookinfo.example.com", path, &h)
            .with_gateway(gw)
            .with_port(port);
        let d = snap.route_http(&a);
        match want {
            Some(p) => {
                assert_eq!(d.virtual_service_name(), Some("default/bookinfo"), "{path}");
                assert_eq!(d.destinations()[0].port, Some(p));
                assert_eq!(
                    &*d.destinations()[0].host,
                    "productpage.default.svc.cluster.local"
                );
            }
            None => assert_eq!(d.status(), Some(404), "{path} {port}"),
        }
    }
    // mesh traffic to productpage is not routed by the gateway-bound VS
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "productpage:9080",
        "/other",
        &h,
    ));
    assert_eq!(d.virtual_service_name(), None);
    assert_eq!(d.status(), None);
    // an unknown gateway answers 404
    let a = HttpRequestAttrs::new("default", "x", "/", &h).with_gateway(Some("default/nope"));
    assert_eq!(snap.route_http(&a).status(), Some(404));
    // gateway servers for the ingress workload
    let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    assert_eq!(snap.gateway_servers(&ingress).len(), 1);
}

#[test]
fn delegates_are_flattened_into_their_root() {
    let snap = snapshot_of(
        &[],
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [bookinfo.com]
  http:
  - match: [{uri: {prefix: /productpage}}]
    timeout: 5s
    delegate: {name: productpage, namespace: nsa}
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews}
  - route: [{destination: {host: fallback}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage, namespace: nsa}
spec:
  http:
  - match: [{uri: {prefix: /productpage/v1}}]
    route: [{destination: {host: productpage-v1}}]
  - route: [{destination: {host: productpage}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let none = HeaderMap::new();
    let jason = headers(&[("end-user", "jason")]);
    let table = [
        (
            "/productpage/v1/x",
            &none,
            0,
            "productpage-v1.nsa.svc.cluster.local",
            "-",
        ),
        (
            "/productpage",
            &none,
            0,
            "productpage.nsa.svc.cluster.local",
            "-",
        ),
        (
            "/reviews/1",
            &jason,
            1,
            "reviews.default.svc.cluster.local",
            "v2",
        ),
        (
            "/reviews/1",
            &none,
            1,
            "reviews.default.svc.cluster.local",
            "v1",
        ),
        (
            "/other",
            &jason,
            2,
            "fallback.default.svc.cluster.local",
            "-",
        ),
    ];
    for (path, h, idx, host, sub) in table {
        let d = snap.route_http(&HttpRequestAttrs::new("default", "bookinfo.com", path, h));
        assert_eq!(d.route_index(), Some(idx), "{path}");
        assert_eq!(&*d.destinations()[0].host, host, "{path}");
        assert_eq!(subset(&d.destinations()[0]), sub, "{path}");
    }
    // the delegate route inherits the root's timeout; delegate is named
    let d = snap.route_http(&HttpRequestAttrs::new(
        "default",
        "bookinfo.com",
        "/productpage",
        &none,
    ));
    assert_eq!(d.timeout(), Some(Duration::from_secs(5)));
    assert_eq!(
        d.rule.unwrap().delegate.as_ref().map(|(n, i)| (&**n, *i)),
        Some(("nsa/productpage", 1))
    );
}

#[test]
fn tls_and_tcp_routes() {
    let snap = snapshot_of(
        &[],
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  tls:
  - match: [{port: 443, sniHosts: [en.wikipedia.org]}]
    route: [{destination: {host: en.wikipedia.org}}]
  - match: [{port: 443, sniHosts: ["*.wikipedia.org"]}]
    route: [{destination: {host: www.wikipedia.org}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.internal]
  addresses: [10.1.0.0/16]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 10.1.0.5}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{port: 5432, destinationSubnets: [10.1.1.0/24]}]
    route:
    - {destination: {host: db.internal, subset: replica}, weight: 70}
    - {destination: {host: db.internal, subset: primary}, weight: 30}
  - route: [{destination: {host: db.internal, subset: primary}}]
"#,
    );
    let tls = |sni: &'static str| L4Attrs {
        sni: Some(sni),
        ..L4Attrs::new("default", 443)
    };
    let d = snap.route_tls(&tls("en.wikipedia.org"));
    assert_eq!(
        (d.virtual_service.map(|v| &*v.name), d.route_index),
        (Some("default/wiki"), Some(0))
    );
    let d = snap.route_tls(&tls("de.wikipedia.org"));
    assert_eq!(d.route_index, Some(1));
    assert_eq!(&*d.destinations[0].host, "www.wikipedia.org");
    let d = snap.route_tls(&tls("example.org"));
    assert_eq!(d.virtual_service.map(|v| &*v.name), None);
    assert_eq!(&*d.destinations[0].host, "example.org");

    let tcp = |ip: &str, port| L4Attrs {
        destination_ip: Some(ip.parse().unwrap()),
        ..L4Attrs::new("default", port)
    };
    let d = snap.route_tcp(&tcp("10.1.1.9", 5432));
    assert_eq!(d.host, "db.internal");
    assert_eq!(d.route_index, Some(0));
    assert_eq!(d.destinations.len(), 2);
    assert_eq!(d.pick(69).unwrap().subset.as_deref(), Some("replica"));
    assert_eq!(d.pick(70).unwrap().subset.as_deref(), Some("primary"));
    let d = snap.route_tcp(&tcp("10.1.2.9", 5432));
    assert_eq!(d.route_index, Some(1));
    let d = snap.route_tcp(&tcp("192.168.9.9", 5432));
    assert_eq!(d.virtual_service.map(|v| &*v.name), None);
    assert_eq!(&*d.destinations[0].host, "192.168.9.9");
}

#[test]
fn registered_workloads_are_endpoints_of_subsets() {
    let mut loaded = Loader::new(LoadOptions::default())
        .load_paths([
            samples().join("bookinfo/platform-kube/bookinfo.yaml"),
            samples().join("bookinfo/networking/destination-rule-all.yaml"),
            samples().join("bookinfo/networking/virtual-service-reviews-80-20.yaml"),
        ])
        .unwrap();
    assert!(!loaded.has_errors());
    let mesh =
        Mesh::from_objects(std::mem::take(&mut loaded.objects), MeshOptions::default()).unwrap();
    let g0 = mesh.snapshot().generation();
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        mesh.register(Workload {
            name: format!("reviews-{v}"),
            namespace: "default".into(),
            service_account: "bookinfo-reviews".into(),
            labels: [("app", "reviews"), ("version", v)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            address: format!("127.0.0.{}", i + 1).parse().unwrap(),
            ports: [("http".to_string(), 40000 + i as u16)].into(),
            locality: None,
            weight: 1,
        });
    }
    let snap = mesh.snapshot();
    assert!(snap.generation() > g0);
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/", &h));
    let dest = d.pick(0).unwrap();
    let p = snap.traffic_policy(&dest.host, dest.subset.as_deref(), 9080, "default");
    let up = snap.upstream(dest, "default", None, 80);
    assert_eq!(up.port, 9080);
    let targets: Vec<_> = up.targets().map(|t| t.addr.unwrap().to_string()).collect();
    assert_eq!(targets, vec!["127.0.0.1:40000"]);
    // an undefined subset has no endpoints (Envoy: 503 cluster not found)
    let ghost = mesh_core::route::WeightedDestination {
        subset: Some("v9".into()),
        ..dest.clone()
    };
    let up = snap.upstream(&ghost, "default", None, 9080);
    assert!(!up.policy.subset_found);
    assert_eq!(up.targets().count(), 0);
    assert!(mesh.deregister("default", "reviews-v1"));
    let snap = mesh.snapshot();
    let svc = snap.registry().service(&dest.host, "default").unwrap();
    assert_eq!(svc.targets(9080, p.subset_labels()).count(), 0);
    assert_eq!(svc.targets(9080, None).count(), 2);
}

#[test]
fn duplicate_objects_last_one_wins_and_samples_compile_cleanly() {
    let snap = snapshot_of(
        &[
            "bookinfo/networking/virtual-service-reviews-test-v2.yaml",
            "bookinfo/networking/virtual-service-reviews-v3.yaml",
        ],
        "",
    );
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
    assert_eq!(subset(&d.destinations()[0]), "v3");
    assert_eq!(snap.routes().len(), 1);
    // every sample directory compiles without engine errors
    let all = snapshot_of(&["bookinfo", "istio-io-tasks", "httpbin", "sleep"], "");
    assert!(all.object_count() > 50);
}

#[test]
fn service_entry_hosts_are_literal_and_short_dr_hosts_do_not_meet_them() {
    // the seed's trap: SE host `my-postgres` is used literally, DR host `my-postgres` becomes
    // `my-postgres.db.svc.cluster.local`, so the DR never applies to the SE
    let snap = snapshot_of(
        &[],
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pg, namespace: db}
spec:
  hosts: [my-postgres]
  ports: [{number: 5432, name: tcp, protocol: tcp}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.10.10.10}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pg, namespace: db}
spec:
  host: my-postgres
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pg-fqdn, namespace: db}
spec:
  host: my-postgres.db.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
"#,
    );
    let svc = snap.registry().service("my-postgres", "db").unwrap();
    assert_eq!(&*svc.hostname, "my-postgres");
    assert!(snap
        .traffic_policy("my-postgres", None, 5432, "db")
        .destination_rule
        .is_none());
    let p = snap.traffic_policy("my-postgres.db.svc.cluster.local", None, 5432, "db");
    assert_eq!(p.destination_rule.map(|d| &*d.name), Some("db/pg"));
    // an HTTP request to the literal name goes to the SE host, not an expansion
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new("db", "my-postgres", "/", &h));
    assert_eq!(d.host, "my-postgres");
}

/// A sidecar's TCP filter chains consider every VirtualService whose hosts match the
/// service (istiod `getConfigsForHost`), not only the most specific: a wildcard
/// VirtualService's `tcp` routes apply to a service whose own VirtualService has only
/// `http` routes.
#[test]
fn tcp_routes_come_from_every_virtual_service_matching_the_host() {
    let snap = snapshot_of(
        &[],
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo, namespace: foo}
spec:
  hosts: [tcp-echo.foo.svc.cluster.local]
  addresses: [240.0.0.9]
  ports:
  - {number: 9000, name: tcp, protocol: TCP}
  - {number: 8080, name: http, protocol: HTTP}
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 10.9.0.1, labels: {version: v1}}, {address: 10.9.0.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo-http, namespace: foo}
spec:
  hosts: [tcp-echo.foo.svc.cluster.local]
  http: [{route: [{destination: {host: tcp-echo.foo.svc.cluster.local, port: {number: 8080}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: foo-tcp, namespace: foo}
spec:
  hosts: ['*.foo.svc.cluster.local']
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: tcp-echo.foo.svc.cluster.local, subset: v2}}]
"#,
    );
    let attrs = L4Attrs {
        destination_ip: Some("240.0.0.9".parse().unwrap()),
        ..L4Attrs::new("foo", 9000)
    };
    let d = snap.route_tcp(&attrs);
    assert_eq!(d.host, "tcp-echo.foo.svc.cluster.local");
    assert_eq!(
        (d.virtual_service.map(|v| &*v.name), d.route_index),
        (Some("foo/foo-tcp"), Some(0))
    );
    assert_eq!(d.destinations[0].subset.as_deref(), Some("v2"));
    // HTTP still belongs to the most specific VirtualService alone
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new(
        "foo",
        "tcp-echo.foo.svc.cluster.local:8080",
        "/",
        &h,
    ));
    assert_eq!(
        d.virtual_service.map(|v| &*v.name),
        Some("foo/tcp-echo-http")
    );
}

/// When several VirtualServices have a matching `tcp` route, the first in istiod's
/// `SelectVirtualServices` order wins: private to the client's namespace, then exported
/// to it by name, then public, each oldest first (not the client's namespace first).
#[test]
fn tcp_routes_follow_istiods_virtual_service_order() {
    let base = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: bar}
spec:
  hosts: [db.internal]
  addresses: [240.0.0.7]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints: [{address: 10.9.0.1, labels: {version: v1}}, {address: 10.9.0.2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: old, namespace: bar, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [db.internal]
  tcp: [{route: [{destination: {host: db.internal, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: new, namespace: foo, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  hosts: [db.internal]
  tcp: [{route: [{destination: {host: db.internal, subset: v2}}]}]
"#;
    let attrs = L4Attrs {
        destination_ip: Some("240.0.0.7".parse().unwrap()),
        ..L4Attrs::new("foo", 5432)
    };
    // both public: the older one, although the other is in the client's namespace
    let snap = snapshot_of(&[], base);
    let d = snap.route_tcp(&attrs);
    assert_eq!(d.virtual_service.map(|v| &*v.name), Some("bar/old"));
    // private to the client's namespace: first
    let private = base.replace(
        "  hosts: [db.internal]\n  tcp: [{route: [{destination: {host: db.internal, subset: v2}}]}]",
        "  hosts: [db.internal]\n  exportTo: [.]\n  tcp: [{route: [{destination: {host: db.internal, subset: v2}}]}]",
    );
    let snap = snapshot_of(&[], &private);
    let d = snap.route_tcp(&attrs);
    assert_eq!(d.virtual_service.map(|v| &*v.name), Some("foo/new"));
}
