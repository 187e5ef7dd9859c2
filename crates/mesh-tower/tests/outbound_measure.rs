//! Cost of the outbound stack, as ratios against a plain hyper-util client in the same run.
//! Not part of the normal suite: `cargo test -p mesh-tower --release --test outbound_measure
//! -- --ignored --nocapture`.

mod outbound_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mesh_tower::outbound::{ClientWorkload, MeshBody, OutboundLayer};
use outbound_support::*;
use tower::{Layer, ServiceExt};

const N: u32 = 3000;

async fn time<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    for _ in 0..200 {
        assert_eq!(f().await, 200);
    }
    let t0 = Instant::now();
    for _ in 0..N {
        assert_eq!(f().await, 200);
    }
    t0.elapsed() / N
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run in release with --ignored --nocapture"]
async fn outbound_overhead() {
    // plaintext server for the baseline and the layer
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { "ok" });
        axum::serve(listener, app).await.unwrap();
    });
    let pki = Pki::new();
    let tls = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let yaml = format!(
        "{}{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n    route: [{{destination: {{host: reviews, subset: v2}}}}]\n  - route: [{{destination: {{host: reviews, subset: v1}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n---\n",
        service_yaml("reviews", "default"),
        service_yaml("ratings", "default"),
    );
    let mesh = mesh(&yaml);
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        tls.addr,
    );
    register(
        &mesh,
        "ratings-v1",
        "default",
        "ratings",
        "ratings",
        "v1",
        plain,
    );

    let hyper: Client<_, MeshBody> = Client::builder(TokioExecutor::new()).build_http();
    let base_uri = format!("http://{plain}/");
    let h = hyper.clone();
    let baseline = time(|| {
        let req = http::Request::get(&base_uri)
            .body(Empty::<Bytes>::new().map_err(|e| match e {}).boxed())
            .unwrap();
        let h = h.clone();
        async move {
            let r = h.request(req).await.unwrap();
            let st = r.status().as_u16();
            let _ = r.into_body().collect().await;
            st
        }
    })
    .await;

    let layer = OutboundLayer::builder(
        mesh.clone(),
        ClientWorkload::new("productpage", "default", "productpage"),
    )
    .layer();
    let svc = layer.layer(hyper.clone());
    let layered = time(|| {
        let svc = svc.clone();
        async move {
            let r = svc.oneshot(get("http://ratings:9080/")).await.unwrap();
            let st = r.status().as_u16();
            let _ = r.into_body().collect().await;
            st
        }
    })
    .await;

    let client = client(&mesh, &pki, "default", "productpage");
    let full = time(|| {
        let c = client.clone();
        async move {
            let r = c.request(get("http://reviews:9080/")).await.unwrap();
            let st = r.status().as_u16();
            let _ = r.into_body().collect().await;
            st
        }
    })
    .await;

    println!("per request, sequential, {N} requests after 200 warm-up:");
    println!("  hyper-util client, plaintext           {baseline:>10.2?}  1.00x");
    println!(
        "  OutboundLayer over it (route+LB+retry)  {layered:>10.2?}  {:.2}x",
        layered.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  MeshClient, mTLS h2, metrics, trace     {full:>10.2?}  {:.2}x",
        full.as_secs_f64() / baseline.as_secs_f64()
    );
}
