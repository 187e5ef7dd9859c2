//! Loads and validates 10,000 generated VirtualServices and 10,000 DestinationRules.
//!
//! `cargo bench --bench config_load` prints the time of each phase (load, validate, analyze)
//! and the total, best of several runs, and the ratio against a baseline from the same run:
//! parsing the same objects, written as JSON, into `serde_json::Value` (no positions, no
//! typing, no checks). Target: total under 1 s.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

const N: usize = 10_000;
const RUNS: usize = 5;

fn generate_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 1200);
    for i in 0..n {
        let ns = format!("ns-{}", i % 100);
        let _ = write!(
            s,
            "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  hosts:
  - svc-{i}
  http:
  - name: canary
    match:
    - headers:
        end-user:
          exact: user-{i}
      uri:
        prefix: /api/v1/
    route:
    - destination:
        host: svc-{i}
        subset: v2
    timeout: 3s
  - route:
    - destination:
        host: svc-{i}
        subset: v1
        port:
          number: 9080
      weight: 90
    - destination:
        host: svc-{i}
        subset: v2
        port:
          number: 9080
      weight: 10
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: gateway-error,connect-failure,refused-stream
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: svc-{i}
  namespace: {ns}
spec:
  host: svc-{i}
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    connectionPool:
      tcp:
        maxConnections: 100
      http:
        http1MaxPendingRequests: 10
    outlierDetection:
      consecutive5xxErrors: 5
      interval: 10s
      baseEjectionTime: 30s
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"
        );
    }
    s
}

fn generate_json(n: usize) -> String {
    let mut items = Vec::with_capacity(2 * n);
    for i in 0..n {
        let ns = format!("ns-{}", i % 100);
        items.push(serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"hosts": [format!("svc-{i}")], "http": [
                {"name": "canary", "match": [{"headers": {"end-user": {"exact": format!("user-{i}")}}, "uri": {"prefix": "/api/v1/"}}],
                 "route": [{"destination": {"host": format!("svc-{i}"), "subset": "v2"}}], "timeout": "3s"},
                {"route": [
                    {"destination": {"host": format!("svc-{i}"), "subset": "v1", "port": {"number": 9080}}, "weight": 90},
                    {"destination": {"host": format!("svc-{i}"), "subset": "v2", "port": {"number": 9080}}, "weight": 10}],
                 "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "gateway-error,connect-failure,refused-stream"}}]}
        }));
        items.push(serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": format!("svc-{i}"), "namespace": ns},
            "spec": {"host": format!("svc-{i}"), "trafficPolicy": {
                "loadBalancer": {"simple": "LEAST_REQUEST"},
                "connectionPool": {"tcp": {"maxConnections": 100}, "http": {"http1MaxPendingRequests": 10}},
                "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s"},
                "tls": {"mode": "ISTIO_MUTUAL"}},
              "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}
        }));
    }
    serde_json::to_string(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
        .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 200 } else { N };
    let runs = if quick { 1 } else { RUNS };

    let yaml = generate_yaml(n);
    let json = generate_json(n);
    println!(
        "config_load: {n} VirtualServices + {n} DestinationRules, {:.1} MB of YAML",
        yaml.len() as f64 / 1e6
    );

    let (mut load_t, mut validate_t, mut analyze_t, mut total_t, mut json_load_t, mut baseline_t) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let t0 = Instant::now();
        let loaded = mesh_core::load::load_str(&yaml, "generated.yaml");
        let t1 = Instant::now();
        let diags = mesh_core::validate::validate_all(&loaded.objects);
        let t2 = Instant::now();
        let analysis = mesh_core::analyze::analyze(&loaded.objects);
        let t3 = Instant::now();
        assert_eq!(loaded.objects.len(), 2 * n);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics.first());
        assert!(!diags.iter().any(|d| d.is_error()), "{:?}", diags.first());
        assert!(
            !analysis.iter().any(|d| d.is_error()),
            "{:?}",
            analysis.first()
        );
        load_t.push(t1 - t0);
        validate_t.push(t2 - t1);
        analyze_t.push(t3 - t2);
        total_t.push(t3 - t0);

        let t4 = Instant::now();
        let from_json = mesh_core::load::load_str(&json, "generated.json");
        json_load_t.push(t4.elapsed());
        assert_eq!(from_json.objects.len(), 2 * n);

        let t5 = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        baseline_t.push(t5.elapsed());
        assert!(v.is_object());
        drop(loaded);
    }
    let best_total = *total_t.iter().min().unwrap();
    let (load, validate, analyze, total, json_load, baseline) = (
        median(load_t),
        median(validate_t),
        median(analyze_t),
        median(total_t),
        median(json_load_t),
        median(baseline_t),
    );
    println!("  load (YAML, typed, positions)  {:>8.1} ms", ms(load));
    println!("  validate (per object)          {:>8.1} ms", ms(validate));
    println!("  analyze (cross object)         {:>8.1} ms", ms(analyze));
    println!(
        "  total                          {:>8.1} ms (median of {runs}; best {:.1} ms){}",
        ms(total),
        ms(best_total),
        if quick {
            ""
        } else if total < Duration::from_secs(1) {
            "  [target < 1 s: met]"
        } else {
            "  [target < 1 s: MISSED]"
        }
    );
    println!("  load of the same as JSON       {:>8.1} ms", ms(json_load));
    println!(
        "  baseline serde_json::Value     {:>8.1} ms   (total / baseline = {:.1}x)",
        ms(baseline),
        total.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
