//! Throughput of the inbound stack over mTLS, as a ratio against the same handshake and
//! application without the mesh layers, and the cost of one authorization decision.
//! Ignored by default (timing); run in release:
//! `cargo test --release -p mesh-tower --test inbound_perf -- --ignored --nocapture`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::{
    client_config, Alpn, CaSource, CertManager, ClientContext, ClientTlsMode, ClientTlsSettings,
    Destination, Identity, InboundTls, MeshCa, PeerAuthnMode, RotationOptions, WorkloadCredentials,
};
use mesh_tower::authz::AuthorizationLayer;
use mesh_tower::inbound::{ConnectionInfo, MeshServer};
use tokio::net::{TcpListener, TcpStream};

const CONFIG: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-viewer, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]
    to: [{operation: {methods: [GET], paths: [/headers, /status/*]}}]
";

fn app() -> Router {
    Router::new().route("/headers", get(|| async { "ok" }))
}

async fn bare_server(creds: &WorkloadCredentials) -> SocketAddr {
    let inbound = InboundTls::from_credentials(PeerAuthnMode::Strict, creds, None).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let inbound = inbound.clone();
            tokio::spawn(async move {
                let a = inbound.accept(tcp).await.unwrap();
                let svc = hyper_util::service::TowerToHyperService::new(app());
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(a.stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Requests per second over one HTTP/2 mTLS connection with `streams` in flight.
async fn rate(addr: SocketAddr, client: &WorkloadCredentials, n: usize, streams: usize) -> f64 {
    let tls = client_config(
        &ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        },
        &Destination {
            host: "httpbin.foo.svc.cluster.local",
            port: 8000,
            subset: None,
            service_accounts: &[],
        },
        &ClientContext {
            workload: Some(client),
            credentials: None,
            alpn: Alpn::Http2,
            opaque: false,
        },
    )
    .unwrap()
    .unwrap();
    let stream = tls
        .connect(TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let (tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let one = |tx: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let req = Request::get("/headers")
            .header("host", "httpbin.foo:8000")
            .body(Empty::new())
            .unwrap();
        let f = tx.send_request(req);
        async move {
            let r = f.await.unwrap();
            assert_eq!(r.status(), 200);
            r.into_body().collect().await.unwrap();
        }
    };
    let run = |count: usize| {
        let tx = tx.clone();
        async move {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let mut tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in 0..count / streams {
                        one(&mut tx).await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    run(n / 5).await; // warm-up
    let start = Instant::now();
    run(n).await;
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing; run with --release --ignored --nocapture"]
async fn inbound_stack_throughput_and_authz_cost() {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let start = |sa: &'static str| {
        let ca = ca.clone();
        async move {
            CertManager::start(
                Identity::new("cluster.local", "foo", sa).unwrap(),
                Arc::new(CaSource::new(ca)),
                RotationOptions::default(),
            )
            .await
            .unwrap()
        }
    };
    let server_cert = start("httpbin").await;
    let client_cert = start("sleep").await;
    let mesh = Mesh::from_yaml(CONFIG).unwrap();
    let labels: mesh_core::model::Labels = [("app".to_string(), "httpbin".to_string())].into();

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mesh_addr = l.local_addr().unwrap();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels.clone(),
        server_cert.credentials().clone(),
    )
    .service_host("httpbin.foo.svc.cluster.local")
    .build()
    .unwrap();
    tokio::spawn(async move { server.serve(l, app()).await });
    let bare_addr = bare_server(server_cert.credentials()).await;

    let n = 40_000;
    for streams in [1, 16] {
        let mut bare = Vec::new();
        let mut meshed = Vec::new();
        for _ in 0..3 {
            bare.push(rate(bare_addr, client_cert.credentials(), n, streams).await);
            meshed.push(rate(mesh_addr, client_cert.credentials(), n, streams).await);
        }
        let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!(
            "h2 mTLS, {streams} stream(s): bare {:.0} req/s, MeshServer {:.0} req/s, ratio {:.2}",
            best(&bare),
            best(&meshed),
            best(&meshed) / best(&bare)
        );
    }

    // one authorization decision (DENY then ALLOW policies, cached per generation)
    let authz = AuthorizationLayer::new(mesh, "foo", labels);
    let mut req = Request::get("/status/200").body(()).unwrap();
    req.extensions_mut().insert(ConnectionInfo::new(
        Some(mesh_tls::PeerIdentity::new(
            Identity::new("cluster.local", "foo", "sleep").unwrap(),
        )),
        8000,
    ));
    let iters = 1_000_000u32;
    let t = Instant::now();
    for _ in 0..iters {
        assert!(std::hint::black_box(authz.decide(std::hint::black_box(&req))).allowed);
    }
    let per = t.elapsed() / iters;
    println!("authorization decision: {per:?} per request");
    assert!(per < Duration::from_millis(1));
}
