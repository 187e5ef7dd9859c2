//! Decision engines: route and authorization decisions against a large config, snapshot
//! compile time and memory.
//!
//! `cargo bench --bench decisions` builds 1,000 VirtualServices of 10 HTTP routes each,
//! 1,000 AuthorizationPolicies, 1,000 DestinationRules and 1,000 Kubernetes Services, then
//! measures (criterion, plus a printed summary of medians over batches):
//! - `route/first`: a request matching route 0 (header match) of its VirtualService;
//! - `route/last`: a request falling through 9 routes to the catch-all (weighted 90/10);
//! - `route/no-vs`: a host without a VirtualService;
//! - `authz/allow`, `authz/deny`, `authz/no-match`: a workload with 3 applicable policies
//!   (namespace-wide DENY and ALLOW, its own ALLOW) among the 1,000;
//! - a snapshot of 10,000 objects (2,500 each of VirtualService, DestinationRule,
//!   AuthorizationPolicy, Service): compile time (best of 5) and heap held (counting
//!   allocator), against the baseline of the same objects as loaded (the typed model).
//!
//! Targets: decisions < 1 µs median (300 ns ideal); compile < 100 ms; memory < 50 MiB.
//! `BREAKDOWN=1` also prints compile time and memory per engine (routes, DestinationRules,
//! authorization).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::HeaderMap;
use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
use mesh_core::load::load_str;
use mesh_core::model::{ConfigObject, Labels};
use mesh_core::names::MeshOptions;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::snapshot::Snapshot;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static CALLS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// `n` services, ten per namespace: VS (10 routes), DR, AP, Service each. In each
/// namespace policy 0 is a namespace-wide DENY, policy 1 a namespace-wide ALLOW, the others
/// ALLOW policies selecting their own workload.
fn generate(n: usize) -> String {
    let mut s = String::with_capacity(n * 4000);
    for i in 0..n {
        let ns = format!("ns-{}", i / 10);
        let _ = write!(
            s,
            r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [svc-{i}]
  http:
  - match: [{{headers: {{end-user: {{exact: user-{i}}}}}}}]
    route: [{{destination: {{host: svc-{i}, subset: v2}}}}]
  - match: [{{uri: {{prefix: /api/v1/admin}}, method: {{exact: POST}}}}]
    route: [{{destination: {{host: admin-{i}}}}}]
  - match: [{{uri: {{regex: "/items/[0-9]+/edit"}}}}]
    route: [{{destination: {{host: svc-{i}, subset: v3}}}}]
  - match: [{{queryParams: {{debug: {{exact: "1"}}}}}}]
    route: [{{destination: {{host: svc-{i}, subset: debug}}}}]
  - match: [{{headers: {{x-canary: {{prefix: "yes"}}}}}}, {{headers: {{x-beta: {{}}}}}}]
    route: [{{destination: {{host: svc-{i}, subset: canary}}}}]
  - match: [{{uri: {{exact: /healthz}}}}]
    directResponse: {{status: 200, body: {{string: ok}}}}
  - match: [{{uri: {{prefix: /old}}}}]
    redirect: {{uri: /new}}
  - match: [{{sourceLabels: {{app: batch}}}}]
    route: [{{destination: {{host: svc-{i}, subset: batch}}}}]
  - match: [{{uri: {{prefix: /v2/}}, ignoreUriCase: true}}]
    rewrite: {{uri: /}}
    route: [{{destination: {{host: svc-{i}, subset: v2}}}}]
  - timeout: 3s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: "5xx,reset"}}
    route:
    - {{destination: {{host: svc-{i}, subset: v1}}, weight: 90}}
    - {{destination: {{host: svc-{i}, subset: v2}}, weight: 10}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: svc-{i}
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}, tls: {{mode: ISTIO_MUTUAL}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}, trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  {selector}
  action: {action}
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/{ns}/sa/client-{i}", "cluster.local/ns/ops/sa/*"]}}}}]
    to: [{{operation: {{methods: [GET, HEAD], paths: ["/api/*", "/items/{{*}}"]}}}}]
  - from: [{{source: {{namespaces: [monitoring], notIpBlocks: [10.99.0.0/16]}}}}]
    to: [{{operation: {{paths: [/metrics], ports: ["9080"]}}}}]
    when: [{{key: "request.headers[x-scrape]", values: ["true"]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  selector: {{app: svc-{i}}}
  ports: [{{name: http, port: 9080}}]
"#,
            selector = if i % 10 <= 1 {
                String::new()
            } else {
                format!("selector: {{matchLabels: {{app: svc-{i}}}}}")
            },
            action = if i % 10 == 0 { "DENY" } else { "ALLOW" },
        );
    }
    s
}

fn objects(n: usize) -> Vec<ConfigObject> {
    let loaded = load_str(&generate(n), "generated.yaml");
    assert!(!loaded.has_errors(), "{:?}", &loaded.diagnostics[..1]);
    loaded.objects
}

/// Median of `samples` batches of `batch` calls, per call.
fn median_ns(samples: usize, batch: u32, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(batch)
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let opts = MeshOptions::default();
    let objs = objects(1_000);
    let snap = Snapshot::build(&objs, opts.clone());
    drop(objs);

    let jason = {
        let mut h = HeaderMap::new();
        h.insert("end-user", "user-517".parse().unwrap());
        h.insert("user-agent", "curl/8".parse().unwrap());
        h
    };
    let plain = {
        let mut h = HeaderMap::new();
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        h
    };
    let first = HttpRequestAttrs::new("ns-51", "svc-517:9080", "/api/v1/items", &jason);
    let last = HttpRequestAttrs::new("ns-51", "svc-517:9080", "/api/v1/items", &plain);
    let no_vs = HttpRequestAttrs::new("ns-51", "other-svc:9080", "/", &plain);
    // sanity: the decisions are the intended ones
    assert_eq!(snap.route_http(&first).route_index(), Some(0));
    let d = snap.route_http(&last);
    assert_eq!((d.route_index(), d.destinations().len()), (Some(9), 2));
    assert_eq!(snap.route_http(&no_vs).virtual_service_name(), None);

    let labels: Labels = [
        ("app".to_string(), "svc-517".to_string()),
        ("version".to_string(), "v1".to_string()),
    ]
    .into();
    let authz = snap.authz_for_workload("ns-51", &labels);
    let n_policies = authz.policies().count();
    let http_req = |path: &'static str, h: &'static HeaderMap| HttpAuthzAttrs {
        method: "GET",
        path,
        host: "svc-517.ns-51:9080",
        headers: h,
    };
    let plain: &'static HeaderMap = Box::leak(Box::new(plain.clone()));
    let mut allow = AuthzRequest::http(9080, http_req("/api/v1/items", plain));
    allow.principal = Some("cluster.local/ns/ns-51/sa/client-517");
    allow.source_ip = Some("10.1.2.3".parse().unwrap());
    let mut no_match = allow;
    no_match.principal = Some("cluster.local/ns/ns-51/sa/stranger");
    // the namespace-wide DENY policy (svc-510) matches its own client's principal
    let mut deny = allow;
    deny.principal = Some("cluster.local/ns/ns-51/sa/client-510");
    assert!(authz.evaluate(&allow).allowed);
    assert!(!authz.evaluate(&no_match).allowed);
    assert!(!authz.evaluate(&deny).allowed);

    // allocations on the decision path
    let before = CALLS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        black_box(snap.route_http(black_box(&first)));
        black_box(snap.route_http(black_box(&last)));
        black_box(authz.evaluate(black_box(&allow)));
    }
    let route_alloc = CALLS.load(Ordering::Relaxed) - before;

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    c.bench_function("route/first", |b| {
        b.iter(|| black_box(snap.route_http(black_box(&first))))
    });
    c.bench_function("route/last", |b| {
        b.iter(|| black_box(snap.route_http(black_box(&last))))
    });
    c.bench_function("route/no-vs", |b| {
        b.iter(|| black_box(snap.route_http(black_box(&no_vs))))
    });
    c.bench_function("authz/allow", |b| {
        b.iter(|| black_box(authz.evaluate(black_box(&allow))))
    });
    c.bench_function("authz/deny", |b| {
        b.iter(|| black_box(authz.evaluate(black_box(&deny))))
    });
    c.bench_function("authz/no-match", |b| {
        b.iter(|| black_box(authz.evaluate(black_box(&no_match))))
    });

    let m = |f: &mut dyn FnMut()| median_ns(201, 2000, f);
    let r_first = m(&mut || {
        black_box(snap.route_http(black_box(&first)));
    });
    let r_last = m(&mut || {
        black_box(snap.route_http(black_box(&last)));
    });
    let r_novs = m(&mut || {
        black_box(snap.route_http(black_box(&no_vs)));
    });
    let a_allow = m(&mut || {
        black_box(authz.evaluate(black_box(&allow)));
    });
    let a_deny = m(&mut || {
        black_box(authz.evaluate(black_box(&deny)));
    });
    let a_none = m(&mut || {
        black_box(authz.evaluate(black_box(&no_match)));
    });
    // baseline from the same run: one hash lookup of the host in a 1,000-entry map
    let map: std::collections::HashMap<String, usize> = (0..1000)
        .map(|i| (format!("svc-{i}.ns-{}.svc.cluster.local", i / 10), i))
        .collect();
    let base = m(&mut || {
        black_box(map.get(black_box("svc-517.ns-51.svc.cluster.local")));
    });
    drop(snap);

    // 10,000 objects: compile time and memory
    let objs = objects(2_500);
    assert_eq!(objs.len(), 10_000);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let s = Snapshot::build(&objs, opts.clone());
        best = best.min(t.elapsed());
        black_box(&s);
    }
    if std::env::var("BREAKDOWN").is_ok() {
        let b = live();
        let t = Instant::now();
        let r = mesh_core::route::RouteTable::build(&objs, &opts);
        eprintln!(
            "routes {:.1} MiB {:?}",
            (live() - b) as f64 / 1048576.0,
            t.elapsed()
        );
        let b = live();
        let t = Instant::now();
        let d = mesh_core::policy::DestinationRules::build(&objs, &opts);
        eprintln!(
            "drs {:.1} MiB {:?}",
            (live() - b) as f64 / 1048576.0,
            t.elapsed()
        );
        let b = live();
        let t = Instant::now();
        let a = mesh_core::authz::AuthzPolicies::build(&objs, &opts);
        eprintln!(
            "authz {:.1} MiB {:?}",
            (live() - b) as f64 / 1048576.0,
            t.elapsed()
        );
        black_box((r, d, a));
    }
    let before = live();
    let s = Snapshot::build(&objs, opts.clone());
    let held = live() - before;
    black_box(&s);
    drop(s);
    let before = live();
    let model = objects(2_500);
    let model_bytes = live() - before;
    drop(model);

    let mib = |b: isize| b as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "decisions (median per call over 201 batches of 2000; 1,000 VS x 10 routes, 1,000 AP):"
    );
    println!("  route, match on route 0 (header)        {r_first:8.1} ns");
    println!("  route, fall through to route 9 (weights) {r_last:7.1} ns");
    println!("  route, host without VirtualService       {r_novs:7.1} ns");
    println!("  authz, ALLOW ({n_policies} policies apply)          {a_allow:7.1} ns");
    println!("  authz, DENY policy matches                {a_deny:7.1} ns");
    println!("  authz, no ALLOW matches                   {a_none:7.1} ns");
    println!(
        "  baseline: one HashMap<String,_> lookup    {base:7.1} ns (route/last = {:.1}x)",
        r_last / base
    );
    println!("  heap allocations made by 3,000 decisions (route first, route last, authz allow): {route_alloc}");
    println!("snapshot of 10,000 objects (2,500 each VS/DR/AP/Service):");
    println!(
        "  compile (best of 5)  {:8.1} ms",
        best.as_secs_f64() * 1000.0
    );
    println!(
        "  heap held            {:8.1} MiB (the loaded typed model of the same objects: {:.1} MiB)",
        mib(held),
        mib(model_bytes)
    );
}
