//! Outbound routing against real mTLS servers on loopback: the bookinfo request-routing
//! and traffic-shifting tasks with Istio's own YAML, load-balancing policies, local answers.

mod outbound_support;

use std::collections::HashMap;

use outbound_support::*;

const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/istio-samples/bookinfo"
);

fn sample(path: &str) -> String {
    std::fs::read_to_string(format!("{SAMPLES}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bookinfo(vs: &str) -> String {
    format!(
        "{}\n---\n{}\n---\n{}",
        sample("platform-kube/bookinfo.yaml"),
        sample("networking/destination-rule-all.yaml"),
        sample(&format!("networking/{vs}"))
    )
}

struct Reviews {
    _servers: Vec<Server>,
}

async fn reviews(pki: &Pki, mesh: &mesh_core::mesh::Mesh) -> Reviews {
    let mut servers = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let name = format!("reviews-{v}");
        let s = start(pki, &name, "default", "bookinfo-reviews", Behaviour::Ok).await;
        register(
            mesh,
            &name,
            "default",
            "bookinfo-reviews",
            "reviews",
            v,
            s.addr,
        );
        servers.push(s);
    }
    Reviews { _servers: servers }
}

#[tokio::test]
async fn bookinfo_request_routing_jason_to_v2_others_to_v1() {
    let pki = Pki::new();
    let mesh = mesh(&bookinfo("virtual-service-reviews-test-v2.yaml"));
    let r = reviews(&pki, &mesh).await;
    let client = client(&mesh, &pki, "default", "bookinfo-productpage");
    for _ in 0..15 {
        let (st, by, _, _) = send(
            &client,
            get_with("http://reviews:9080/reviews/0", &[("end-user", "jason")]),
        )
        .await;
        assert_eq!((st, by.as_str()), (200, "reviews-v2"));
        let (st, by, _, _) = send(&client, get("http://reviews:9080/reviews/0")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-v1"));
        let (st, by, _, _) = send(
            &client,
            get_with(
                "http://reviews.default.svc.cluster.local:9080/",
                &[("end-user", "alice")],
            ),
        )
        .await;
        assert_eq!((st, by.as_str()), (200, "reviews-v1"), "FQDN");
    }
    // without a port in the URL: the service's only port
    let (st, by, _, h) = send(
        &client,
        get_with("http://reviews/reviews/1", &[("end-user", "jason")]),
    )
    .await;
    assert_eq!((st, by.as_str()), (200, "reviews-v2"));
    assert_eq!(h["x-seen-host"], "reviews", "Host is the authority as sent");
    assert_eq!(h["x-seen-path"], "/reviews/1");
    // the Service port is named `http`: HTTP/1.1 upstream, as Istio (HTTP/2 needs
    // `http2`/`grpc` or h2UpgradePolicy UPGRADE)
    assert_eq!(h["x-seen-version"], "HTTP/1.1", "port protocol HTTP");
    // every server saw the client's SPIFFE identity (auto mTLS)
    for s in &r._servers {
        for p in s.peers.lock().unwrap().iter() {
            assert_eq!(p, "cluster.local/ns/default/sa/bookinfo-productpage");
        }
    }
    assert_eq!(r._servers[2].hits(), 0, "v3 never used");
    // Istio metrics, reporter=source
    let text = client.metrics().render();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{") && l.contains("destination_version=\"v2\"")
        })
        .unwrap_or_else(|| panic!("no v2 series in\n{text}"));
    for want in [
        "reporter=\"source\"",
        "destination_service=\"reviews.default.svc.cluster.local\"",
        "destination_service_name=\"reviews\"",
        "destination_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-reviews\"",
        "source_workload=\"bookinfo-productpage\"",
        "response_code=\"200\"",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
    // trace context propagated on the client side
    let (_, _, _, h) = send(&client, get("http://reviews:9080/")).await;
    // no tracer by default (Istio's default install): no trace headers, a request id
    assert!(
        !h.contains_key("x-echo-x-b3-traceid"),
        "no B3 without a tracer"
    );
    assert!(h.contains_key("x-echo-x-request-id"), "x-request-id sent");
}

#[tokio::test]
// Envoy picks a weighted cluster at random per request: over 10,000 requests the share of v1
// has a standard deviation of 0.4 points, so a one-point bound (2.5 sigma) failed about one
// run in 80; two points is 5 sigma (one run in millions)
async fn traffic_shifting_80_20_within_two_points_over_10000_requests() {
    let pki = Pki::new();
    let mesh = mesh(&bookinfo("virtual-service-reviews-80-20.yaml"));
    let _r = reviews(&pki, &mesh).await;
    let client = client(&mesh, &pki, "default", "bookinfo-productpage");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, u32> = HashMap::new();
            for _ in 0..1250 {
                let (st, by, _, _) = send(&c, get("http://reviews:9080/reviews/0")).await;
                assert_eq!(st, 200);
                *counts.entry(by).or_default() += 1;
            }
            counts
        }));
    }
    let mut total: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let v1 = f64::from(total.get("reviews-v1").copied().unwrap_or(0)) / 100.0;
    let v2 = f64::from(total.get("reviews-v2").copied().unwrap_or(0)) / 100.0;
    assert!((v1 - 80.0).abs() <= 2.0, "v1 {v1}% ({total:?})");
    assert!((v2 - 20.0).abs() <= 2.0, "v2 {v2}% ({total:?})");
    assert_eq!(total.get("reviews-v3"), None);
}

const RR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"#;

async fn three_endpoints(pki: &Pki, mesh: &mesh_core::mesh::Mesh) -> Vec<Server> {
    let mut v = Vec::new();
    for i in 1..=3 {
        let name = format!("reviews-{i}");
        let s = start(pki, &name, "default", "reviews", Behaviour::Ok).await;
        register(mesh, &name, "default", "reviews", "reviews", "v1", s.addr);
        v.push(s);
    }
    v
}

#[tokio::test]
async fn round_robin_visits_endpoints_in_turn() {
    let pki = Pki::new();
    let mesh = mesh(&format!("{}{RR}", service_yaml("reviews", "default")));
    let _s = three_endpoints(&pki, &mesh).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let mut seq = Vec::new();
    for _ in 0..12 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!(st, 200);
        seq.push(by);
    }
    for (i, by) in seq.iter().enumerate() {
        assert_eq!(by, &seq[i % 3], "period 3: {seq:?}");
    }
    let mut first: Vec<_> = seq[..3].to_vec();
    first.sort();
    assert_eq!(first, ["reviews-1", "reviews-2", "reviews-3"], "{seq:?}");
}

#[tokio::test]
async fn consistent_hash_keeps_a_user_on_one_endpoint() {
    let pki = Pki::new();
    let mut servers = Vec::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
"#
    ));
    for i in 1..=4 {
        let name = format!("reviews-{i}");
        let s = start(&pki, &name, "default", "reviews", Behaviour::Ok).await;
        register(&mesh, &name, "default", "reviews", "reviews", "v1", s.addr);
        servers.push(s);
    }
    let client = client(&mesh, &pki, "default", "productpage");
    let mut used = std::collections::HashSet::new();
    for u in 0..12 {
        let user = format!("user-{u}");
        let (_, first, _, _) = send(
            &client,
            get_with("http://reviews:9080/", &[("x-user", &user)]),
        )
        .await;
        for _ in 0..6 {
            let (st, by, _, _) = send(
                &client,
                get_with("http://reviews:9080/", &[("x-user", &user)]),
            )
            .await;
            assert_eq!((st, &by), (200, &first), "{user} moved");
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "12 users all on one endpoint: {used:?}");
}

#[tokio::test]
async fn local_answers_no_route_redirect_direct_response_undefined_subset() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /nosubset}}]
    route: [{destination: {host: reviews, subset: v9}}]
  - match: [{uri: {prefix: /empty}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v1/api, authority: reviews-internal}
    headers:
      request: {set: {x-test-set: "yes"}, remove: [x-test-drop]}
      response: {add: {x-route: api}}
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");

    let (st, _, body, _) = send(&client, get("http://reviews:9080/nothing")).await;
    assert_eq!((st, body.as_str()), (404, ""), "no route: 404, empty body");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/old/x?q=1")).await;
    assert_eq!(st, 302);
    assert_eq!(h["location"], "http://reviews:9080/new?q=1");
    let (st, _, body, h) = send(&client, get("http://reviews:9080/teapot")).await;
    assert_eq!((st, body.as_str()), (418, "short and stout"));
    assert_eq!(h["content-type"], "text/plain");
    let (st, _, body, _) = send(&client, get("http://reviews:9080/nosubset")).await;
    assert_eq!(
        (st, body.as_str()),
        (503, ""),
        "undefined subset: 503 NC, empty body"
    );
    let (st, _, body, _) = send(&client, get("http://reviews:9080/empty")).await;
    assert_eq!((st, body.as_str()), (503, "no healthy upstream"));
    let (st, by, _, h) = send(
        &client,
        get_with(
            "http://reviews:9080/api/items?x=1",
            &[("x-test-drop", "1"), ("x-test-keep", "1")],
        ),
    )
    .await;
    assert_eq!((st, by.as_str()), (200, "reviews-v1"));
    assert_eq!(h["x-seen-path"], "/v1/api/items");
    assert_eq!(h["x-seen-host"], "reviews-internal");
    assert_eq!(h["x-echo-x-test-set"], "yes");
    assert_eq!(h["x-echo-x-test-keep"], "1");
    assert!(!h.contains_key("x-echo-x-test-drop"));
    assert_eq!(h["x-route"], "api");
    assert_eq!(s.hits(), 1, "local answers never reach the server");
}

#[tokio::test]
async fn mirror_sends_a_copy_and_ignores_its_answer() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#
    ));
    let v1 = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let v2 = start(
        &pki,
        "reviews-v2",
        "default",
        "reviews",
        Behaviour::Always500,
    )
    .await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        v1.addr,
    );
    register(
        &mesh,
        "reviews-v2",
        "default",
        "reviews",
        "reviews",
        "v2",
        v2.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    for _ in 0..5 {
        let (st, by, body, _) = send(&client, post("http://reviews:9080/", "hello")).await;
        assert_eq!(
            (st, by.as_str(), body.as_str()),
            (200, "reviews-v1", "reviews-v1:hello")
        );
    }
    for _ in 0..100 {
        if v2.hits() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (v1.hits(), v2.hits()),
        (5, 5),
        "every request mirrored to v2"
    );
}

/// A `Sidecar` scopes what a client imports: a service outside its egress hosts is no
/// destination (502, as Envoy's black hole under REGISTRY_ONLY), a workload-selected
/// Sidecar wins over the namespace's, and the root namespace's is every namespace's
/// default, with `.` meaning the client's own namespace.
#[tokio::test]
async fn sidecar_egress_hosts_scope_the_services_a_client_reaches() {
    let pki = Pki::new();
    let services = format!(
        "{}{}",
        service_yaml("reviews", "default"),
        service_yaml("ratings", "other")
    );
    let mesh = mesh(&services);
    let _reviews = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let ratings = start(&pki, "ratings-v1", "other", "ratings", Behaviour::Ok).await;
    register(
        &mesh,
        "ratings-v1",
        "other",
        "ratings",
        "ratings",
        "v1",
        ratings.addr,
    );
    let productpage = client(&mesh, &pki, "default", "productpage");
    let status = |uri: &'static str| {
        let c = &productpage;
        async move { send(c, get(uri)).await.0 }
    };

    // no Sidecar: everything
    assert_eq!(status("http://reviews:9080/").await, 200);
    assert_eq!(status("http://ratings.other:9080/").await, 200);

    // the mesh default imports the client's own namespace only
    let mesh_default = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec: {egress: [{hosts: ['./*', 'istio-system/*']}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\n---\n";
    reload(&mesh, &format!("{services}{mesh_default}"));
    assert_eq!(status("http://reviews:9080/").await, 200);
    let (st, _, body, _) = send(&productpage, get("http://ratings.other:9080/")).await;
    assert_eq!((st, body.as_str()), (502, ""), "not imported: black hole");

    // a Sidecar selecting the client imports ratings too; the namespace's would not
    let selected = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: productpage, namespace: default}\nspec:\n  workloadSelector: {labels: {app: productpage}}\n  egress: [{hosts: ['./*', 'other/ratings.other.svc.cluster.local']}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec: {egress: [{hosts: ['./*']}], outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\n---\n";
    reload(&mesh, &format!("{services}{mesh_default}{selected}"));
    assert_eq!(status("http://ratings.other:9080/").await, 200);
    let other_client = client(&mesh, &pki, "default", "details");
    let (st, _, _, _) = send(&other_client, get("http://ratings.other:9080/")).await;
    assert_eq!(
        st, 502,
        "the namespace's Sidecar applies to other workloads"
    );
}

#[tokio::test]
async fn a_url_without_port_goes_to_the_only_port_of_the_service_however_named() {
    let pki = Pki::new();
    let mesh = mesh(
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{port: 9080}]
    directResponse: {status: 200, body: {string: "port 9080"}}
  - directResponse: {status: 418}
"#,
    );
    let client = client(&mesh, &pki, "default", "sleep");
    for url in [
        "http://reviews/",
        "http://reviews.default/",
        "http://reviews.default.svc/",
        "http://Reviews.default.svc.cluster.local/",
    ] {
        let (st, _, body, _) = send(&client, get(url)).await;
        assert_eq!((st, body.as_str()), (200, "port 9080"), "{url}");
    }
    // a port in the URL is the port
    let (st, _, _, _) = send(&client, get("http://reviews.default:80/")).await;
    assert_eq!(st, 418);
}

/// Empty strings are unset, as istiod and Envoy take them: `rewrite.uri: ""` keeps the
/// path, `rewrite.authority: ""` the host, `redirect.authority: ""` and `scheme: ""` the
/// request's; and a response `add` of a header Envoy keeps inline joins the value there.
#[tokio::test]
async fn empty_rewrite_and_redirect_fields_are_unset() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /keep-path}}]
    rewrite: {uri: "", authority: reviews-internal}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /keep-host}}]
    rewrite: {uri: /v2, authority: ""}
    headers:
      response: {add: {content-type: x-extra, x-test-multi: b}}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /to-https}}]
    redirect: {authority: "", scheme: https}
  - match: [{uri: {prefix: /same-scheme}}]
    redirect: {uri: /n, authority: ""}
  - match: [{uri: {prefix: /no-scheme}}]
    redirect: {uri: /m, scheme: ""}
"#
    ));
    let _s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/keep-path/x")).await;
    assert_eq!(st, 200);
    assert_eq!(h["x-seen-path"], "/keep-path/x");
    assert_eq!(h["x-seen-host"], "reviews-internal");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/keep-host/x")).await;
    assert_eq!(st, 200);
    assert_eq!(h["x-seen-path"], "/v2/x");
    assert_eq!(h["x-seen-host"], "reviews:9080");
    let ct: Vec<_> = h.get_all("content-type").iter().collect();
    assert_eq!(ct.len(), 1, "{ct:?}");
    assert!(ct[0].to_str().unwrap().ends_with(",x-extra"), "{ct:?}");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/to-https/x?q=1")).await;
    assert_eq!(st, 301);
    assert_eq!(h["location"], "https://reviews:9080/to-https/x?q=1");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/same-scheme/x")).await;
    assert_eq!(st, 301);
    assert_eq!(h["location"], "http://reviews:9080/n");
    let (st, _, _, h) = send(&client, get("http://reviews:9080/no-scheme/x")).await;
    assert_eq!(st, 301);
    assert_eq!(h["location"], "http://reviews:9080/m");
}

/// Mirrors as Envoy's router shadows: none when the route's own destination has no
/// endpoint (the 503 `no healthy upstream` comes first), and several mirrors decided by
/// one draw per request, so two 50 % mirrors fire together or not at all.
#[tokio::test]
async fn mirrors_need_a_primary_endpoint_and_share_one_draw() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /none}}]
    route: [{destination: {host: reviews, subset: v3}}]
    mirror: {host: reviews, subset: v2}
  - route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: reviews, subset: v2}
      percentage: {value: 50}
    - destination: {host: reviews, subset: v4}
      percentage: {value: 50}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
  - {name: v4, labels: {version: v4}}
"#
    ));
    let mut servers = Vec::new();
    for v in ["v1", "v2", "v4"] {
        let name = format!("reviews-{v}");
        let s = start(&pki, &name, "default", "reviews", Behaviour::Ok).await;
        register(&mesh, &name, "default", "reviews", "reviews", v, s.addr);
        servers.push(s);
    }
    let client = client(&mesh, &pki, "default", "productpage");
    // v3 has no endpoint: 503, and no copy to v2
    for _ in 0..5 {
        let (st, _, body, _) = send(&client, get("http://reviews:9080/none")).await;
        assert_eq!((st, body.as_str()), (503, "no healthy upstream"));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        servers[1].hits(),
        0,
        "nothing mirrored without a primary endpoint"
    );
    // the two 50 % mirrors: each request is copied to both or to neither
    const N: u32 = 200;
    for _ in 0..N {
        let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!(st, 200);
    }
    // (until the copies in flight have landed: the counts stay put for 100 ms)
    let mut last = (u32::MAX, u32::MAX);
    let (v2, v4) = loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = (servers[1].hits(), servers[2].hits());
        if now == last {
            break now;
        }
        last = now;
    };
    assert_eq!(servers[0].hits(), N);
    assert_eq!(v2, v4, "one draw for both mirrors");
    assert!((40..=160).contains(&v2), "about half mirrored: {v2}");
}

/// A local reply's content type is settled after the route's response header operations,
/// as Envoy's `prepareLocalReply` does: an added `content-type` is the only one, a removed
/// one comes back as `text/plain` for a body, and a reply without a body has none.
#[tokio::test]
async fn local_replies_settle_their_content_type_after_the_header_operations() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /json}}]
    directResponse: {status: 200, body: {string: '{"ok":true}'}}
    headers: {response: {add: {content-type: application/json}}}
  - match: [{uri: {exact: /removed}}]
    directResponse: {status: 200, body: {string: hello}}
    headers: {response: {remove: [content-type]}}
  - match: [{uri: {exact: /nobody}}]
    directResponse: {status: 204}
    headers: {response: {set: {content-type: application/json}}}
"#
    ));
    let client = client(&mesh, &pki, "default", "productpage");
    let (st, _, body, h) = send(&client, get("http://reviews:9080/json")).await;
    assert_eq!((st, body.as_str()), (200, r#"{"ok":true}"#));
    let ct: Vec<_> = h.get_all("content-type").iter().collect();
    assert_eq!(ct, ["application/json"]);
    let (st, _, _, h) = send(&client, get("http://reviews:9080/removed")).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "text/plain");
    let (st, _, body, h) = send(&client, get("http://reviews:9080/nobody")).await;
    assert_eq!((st, body.as_str()), (204, ""));
    assert!(!h.contains_key("content-type"), "{h:?}");
}
