//! Istio's bookinfo in one process: `cargo run --example bookinfo`.
//!
//! productpage, details, reviews v1/v2/v3 and ratings run as axum servers on loopback, each
//! a mesh workload with its own SPIFFE identity and certificate from an in-process CA, all
//! traffic mTLS (PeerAuthentication STRICT), configured by the Istio YAML in
//! `examples/bookinfo/` (check it with `cargo run -p meshctl -- validate examples/bookinfo`).
//! The demo sends requests to /productpage and prints what a user should see: the reviews
//! traffic split, jason's requests on v2, a call refused by an AuthorizationPolicy, and the
//! Prometheus endpoint with a few of its `istio_requests_total` lines.
//!
//! `RUST_LOG=inmesh=info` shows the mesh's own logs (access log, authorization decisions).
//! `cargo run --example bookinfo -- --serve` keeps the workloads and the metrics endpoint
//! up after the report, until Ctrl-C.

#[path = "bookinfo/demo.rs"]
mod demo;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The denial log sees every event; RUST_LOG only filters what is printed.
    let denials = demo::DenialLog::default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(denials.clone())
        .with(tracing_subscriber::fmt::layer().with_filter(filter))
        .init();

    println!(
        "bookinfo: 6 workloads on loopback, STRICT mTLS, config from {}",
        demo::config_dir().display()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(demo::run(1000, 16, &denials))?;
    println!("{report}");
    if std::env::args().any(|a| a == "--serve") {
        // the servers are tasks of this runtime: they serve while it runs
        println!(
            "serving: curl http://{}/stats/prometheus  (Ctrl-C stops)",
            report.metrics_addr
        );
        runtime.block_on(tokio::signal::ctrl_c())?;
    }
    Ok(())
}
