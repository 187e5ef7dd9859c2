//! Request-path costs of mesh-tower's building blocks, as ratios against baselines measured
//! in the same run:
//!
//! - `lb/*`: one endpoint pick (and release) per iteration over 100 endpoints of mixed
//!   weights, for each algorithm, against `baseline`: a weighted random pick over a plain
//!   `Vec` (cumulative weights + binary search, no health, no counters);
//! - `layers/*`: one request through a ready `service_fn` wrapped in the metrics layer, the
//!   trace propagation layer, and the access log (no subscriber), against the bare service.
//!
//! After criterion's report, an interleaved run prints operations/s and the ratios.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use mesh_tower::accesslog::AccessLogLayer;
use mesh_tower::lb::{Endpoint, LbAlgorithm, LbConfig, LoadBalancer};
use mesh_tower::metrics::{IstioMetrics, MetricsContext, MetricsLayer, ServiceInfo, WorkloadInfo};
use mesh_tower::trace::{PropagateTraceLayer, TraceConfig};
use rand::Rng;
use tower::{Layer, Service};

const N: usize = 100;

fn weights() -> Vec<u32> {
    (0..N).map(|i| 1 + (i % 5) as u32).collect()
}

fn balancers() -> Vec<(&'static str, LoadBalancer)> {
    let algos = [
        ("round_robin", LbAlgorithm::RoundRobin),
        ("least_request", LbAlgorithm::LeastRequest),
        ("random", LbAlgorithm::Random),
        (
            "ring_hash",
            LbAlgorithm::RingHash {
                minimum_ring_size: 1024,
            },
        ),
        ("maglev", LbAlgorithm::Maglev { table_size: 65537 }),
    ];
    algos
        .into_iter()
        .map(|(name, algo)| {
            let eps = weights()
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    Endpoint::new(
                        format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
                            .parse()
                            .unwrap(),
                    )
                    .with_weight(w)
                })
                .collect();
            (name, LoadBalancer::new(eps, LbConfig::new(algo)))
        })
        .collect()
}

struct Baseline {
    cumulative: Vec<u64>,
    addrs: Vec<std::net::SocketAddr>,
}

impl Baseline {
    fn new() -> Self {
        let mut acc = 0;
        let cumulative = weights()
            .into_iter()
            .map(|w| {
                acc += u64::from(w);
                acc
            })
            .collect();
        let addrs = (0..N)
            .map(|i| format!("10.0.0.{}:8080", i + 1).parse().unwrap())
            .collect();
        Baseline { cumulative, addrs }
    }

    fn pick(&self, rng: &mut impl Rng) -> std::net::SocketAddr {
        let total = *self.cumulative.last().unwrap();
        let point = rng.random_range(0..total);
        self.addrs[self.cumulative.partition_point(|&c| c <= point)]
    }
}

fn pick_once(lb: &LoadBalancer, hash: u64) {
    let g = lb.pick(Some(hash)).unwrap();
    black_box(g.endpoint().addr());
}

/// Polls a future that is ready at once (our services are).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("service not ready at once"),
    }
}

type Req = Request<Full<Bytes>>;

fn request() -> Req {
    let mut r = Request::get("http://httpbin.foo.svc.cluster.local/get")
        .header("user-agent", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap();
    r.extensions_mut().insert(MetricsContext {
        peer: Some(Arc::new(WorkloadInfo::from_principal(
            "spiffe://cluster.local/ns/foo/sa/sleep",
        ))),
        service: Some(Arc::new(ServiceInfo::from_host(
            "httpbin.foo.svc.cluster.local",
        ))),
        mutual_tls: Some(true),
    });
    r
}

async fn app<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn run_layers(name: &str, metrics: &Arc<IstioMetrics>) -> impl FnMut() {
    let bare = tower::service_fn(app::<Full<Bytes>>);
    let me = WorkloadInfo::from_labels("httpbin", "foo", "", &Default::default());
    let mut metrics_svc =
        MetricsLayer::inbound(Arc::clone(metrics), me).layer(tower::service_fn(app));
    let mut trace_svc = PropagateTraceLayer::inbound(TraceConfig::default())
        .layer(tower::service_fn(app::<Full<Bytes>>));
    let mut log_svc = AccessLogLayer::inbound().layer(tower::service_fn(app));
    let mut bare = bare;
    let name = name.to_owned();
    move || match name.as_str() {
        "bare" => drop(black_box(now(bare.call(request())).unwrap())),
        "metrics" => drop(black_box(now(metrics_svc.call(request())).unwrap())),
        "trace" => drop(black_box(now(trace_svc.call(request())).unwrap())),
        "accesslog_off" => drop(black_box(now(log_svc.call(request())).unwrap())),
        _ => unreachable!(),
    }
}

fn rate(f: &mut dyn FnMut(), n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    f64::from(n) / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let lbs = balancers();
    let baseline = Baseline::new();
    let metrics = Arc::new(IstioMetrics::new());
    let layer_names = ["bare", "metrics", "trace", "accesslog_off"];

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    {
        let mut g = c.benchmark_group("lb");
        let mut rng = rand::rng();
        g.bench_function("baseline", |b| {
            b.iter(|| black_box(baseline.pick(&mut rng)))
        });
        for (name, lb) in &lbs {
            let mut k = 0u64;
            g.bench_function(*name, |b| {
                b.iter(|| {
                    k = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    pick_once(lb, k)
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group("layers");
        for name in layer_names {
            let mut f = run_layers(name, &metrics);
            g.bench_function(name, |b| b.iter(&mut f));
        }
        g.finish();
    }
    c.final_summary();

    // Interleaved rounds, so machine load drifts hit every case alike.
    let (rounds, per_round) = if test_mode { (1, 100) } else { (15, 200_000) };
    let mut rng = rand::rng();
    let mut base_rates = Vec::new();
    let mut lb_rates: Vec<Vec<f64>> = vec![Vec::new(); lbs.len()];
    for _ in 0..rounds {
        base_rates.push(rate(
            &mut || {
                black_box(baseline.pick(&mut rng));
            },
            per_round,
        ));
        for (i, (_, lb)) in lbs.iter().enumerate() {
            let mut k = 0u64;
            lb_rates[i].push(rate(
                &mut || {
                    k = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    pick_once(lb, k)
                },
                per_round,
            ));
        }
    }
    let base = median(base_rates);
    println!(
        "lb baseline          {:>12.0} picks/s (weighted random over a Vec, {N} endpoints)",
        base
    );
    for ((name, _), r) in lbs.iter().zip(lb_rates) {
        let r = median(r);
        println!(
            "lb {name:<17} {r:>12.0} picks/s  ratio to baseline {:.3}",
            r / base
        );
    }

    // Two threads picking from one shared balancer (lock-free: they should add up, up to
    // the machine's free cores).
    for (name, lb) in lbs
        .iter()
        .filter(|(n, _)| *n == "least_request" || *n == "round_robin")
    {
        let single = {
            let mut k = 0u64;
            rate(
                &mut || {
                    k = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    pick_once(lb, k)
                },
                per_round * 2,
            )
        };
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..2u64 {
                s.spawn(move || {
                    let mut k = th;
                    for _ in 0..per_round {
                        k = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        pick_once(lb, k);
                    }
                });
            }
        });
        let both = f64::from(per_round * 2) / t.elapsed().as_secs_f64();
        println!(
            "lb {name:<17} {both:>12.0} picks/s on 2 threads  ratio to 1 thread {:.2}",
            both / single
        );
    }

    let per_round = per_round / 4;
    let mut fs: Vec<_> = layer_names
        .iter()
        .map(|n| run_layers(n, &metrics))
        .collect();
    let mut layer_rates: Vec<Vec<f64>> = vec![Vec::new(); fs.len()];
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            layer_rates[i].push(rate(f, per_round));
        }
    }
    let med: Vec<f64> = layer_rates.into_iter().map(median).collect();
    for (name, r) in layer_names.iter().zip(&med) {
        println!(
            "layers {name:<14} {r:>12.0} requests/s  ratio to bare {:.3}  (+{:.0} ns/request)",
            r / med[0],
            (1e9 / r) - (1e9 / med[0])
        );
    }
}
