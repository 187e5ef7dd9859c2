//! Outbound resilience against real mTLS servers on loopback: retries, timeouts, fault
//! injection, outlier detection, circuit breaking, server identity checks, config reload
//! under load, and the OutboundLayer around hyper-util's client.

mod outbound_support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outbound_support::*;

fn with_vs(http: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n{http}",
        service_yaml("reviews", "default")
    )
}

fn with_dr(policy: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n{policy}",
        service_yaml("reviews", "default")
    )
}

/// `reviews` (v1) failing its first `fails` requests, retried on 5xx (2 attempts): the
/// server and a client of it.
async fn retried_reviews(fails: u32) -> (Server, mesh_tower::outbound::MeshClient) {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 2, retryOn: 5xx}\n",
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::FailFirst(fails)).await;
    (s, client(&mesh, &pki, "default", "productpage"))
}

#[tokio::test]
async fn retry_recovers_from_an_endpoint_that_fails_once_and_replays_the_body() {
    let (s, client) = retried_reviews(1).await;
    let (st, _, body, _) = send(&client, post("http://reviews:9080/", "payload")).await;
    assert_eq!(
        (st, body.as_str()),
        (200, "reviews-v1:payload"),
        "retried with the same body"
    );
    assert_eq!(s.hits(), 2);
}

/// A body of unknown length (a gRPC call's, a chunked upload) is kept as it is sent, as
/// Envoy's router keeps it, and a retry sends it whole again.
#[tokio::test]
async fn a_streaming_body_is_replayed_on_retry_within_the_buffer_limit() {
    let (s, client) = retried_reviews(1).await;
    let body = Chunks(vec![
        bytes::Bytes::from_static(b"str"),
        bytes::Bytes::from_static(b"eam"),
    ]);
    let req = http::Request::post("http://reviews:9080/")
        .body(body)
        .unwrap();
    let (st, _, body, _) = send(&client, req).await;
    assert_eq!(
        (st, body.as_str()),
        (200, "reviews-v1:stream"),
        "retried with the whole body"
    );
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn a_streaming_body_read_past_the_buffer_limit_is_not_retried() {
    let (s, client) = retried_reviews(2).await;
    // the endpoint reads it all (1.4 MiB) and fails: the 503 stands
    let big = bytes::Bytes::from(vec![b'x'; 700 * 1024]);
    let req = http::Request::post("http://reviews:9080/")
        .body(Chunks(vec![big.clone(), big]))
        .unwrap();
    let (st, _, _, _) = send(&client, req).await;
    assert_eq!(
        st, 503,
        "a body past the buffer limit (1 MiB) is not sent again"
    );
    assert_eq!(s.hits(), 1);
    // and within it, the same is retried (the endpoint fails once more, then answers)
    let req = http::Request::post("http://reviews:9080/")
        .body(Chunks(vec![bytes::Bytes::from(vec![b'x'; 1000])]))
        .unwrap();
    let (st, _, _, _) = send(&client, req).await;
    assert_eq!(st, 200);
    assert_eq!(s.hits(), 3);
}

/// A body of unknown length (no size hint): chunks, streamed.
struct Chunks(Vec<bytes::Bytes>);

impl http_body::Body for Chunks {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.0.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let c = self.0.remove(0);
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(c))))
    }
}

#[tokio::test]
async fn default_policy_does_not_retry_a_plain_503_but_retries_connect_failures() {
    let pki = Pki::new();
    // no VirtualService: Istio's default retry policy
    let mesh = mesh(&with_dr("    loadBalancer: {simple: ROUND_ROBIN}\n"));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::FailFirst(1)).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503, "a plain 503 is not retried by default");
    assert_eq!(s.hits(), 1);

    // a dead endpoint next to a live one: every request succeeds (connect-failure retried
    // on another host)
    let dead = dead_addr().await;
    register(
        &mesh,
        "reviews-dead",
        "default",
        "reviews",
        "reviews",
        "v1",
        dead,
    );
    for _ in 0..10 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-v1"));
    }
}

#[tokio::test]
async fn connect_failure_without_retries_is_envoys_503() {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n",
    ));
    let dead = dead_addr().await;
    register(
        &mesh,
        "reviews-dead",
        "default",
        "reviews",
        "reviews",
        "v1",
        dead,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    let resp = client.request(get("http://reviews:9080/")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let flags = resp
        .extensions()
        .get::<mesh_tower::envoy::ResponseFlags>()
        .copied()
        .unwrap();
    assert_eq!(flags.to_string(), "UF");
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert!(
        body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error"),
        "{body}"
    );
}

#[tokio::test]
async fn route_timeout_fires_504() {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - route: [{destination: {host: reviews}}]\n    timeout: 300ms\n",
    ));
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_secs(3))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let t0 = Instant::now();
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    let took = t0.elapsed();
    assert_eq!((st, body.as_str()), (504, "upstream request timeout"));
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn per_try_timeout_is_retried_on_gateway_error() {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 2, perTryTimeout: 200ms, retryOn: gateway-error}\n",
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_secs(3))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let t0 = Instant::now();
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (504, "upstream request timeout"));
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "three tries of 200 ms"
    );
    // each try reached the server unless the machine was too slow to finish a handshake
    assert!((1..=3).contains(&s.hits()), "{}", s.hits());
}

#[tokio::test]
async fn a_grpc_status_abort_is_in_grpc_form_for_grpc_requests_only() {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: {host: reviews}}]\n",
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let grpc = get_with(
        "http://reviews:9080/pkg.Svc/Call",
        &[("content-type", "application/grpc")],
    );
    let (st, _, body, headers) = send(&client, grpc).await;
    assert_eq!((st, body.as_str()), (200, ""));
    assert_eq!(headers["grpc-status"], "14");
    assert_eq!(headers["grpc-message"], "fault filter abort");
    let (st, _, body, headers) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (200, "fault filter abort"));
    assert!(!headers.contains_key("grpc-status"), "{headers:?}");
    assert_eq!(s.hits(), 0);
}

#[tokio::test]
async fn direct_responses_and_redirects_answer_grpc_requests_in_grpc_form() {
    // Envoy's router sends both through `sendLocalReply`, which answers a gRPC request
    // with 200, the mapped `grpc-status` and the body as `grpc-message`
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        "  - match: [{uri: {prefix: /moved}}]\n    redirect: {authority: elsewhere}\n  - directResponse: {status: 503, body: {string: maintenance}}\n",
    ));
    let client = client(&mesh, &pki, "default", "productpage");
    let grpc = |path: &str| {
        get_with(
            &format!("http://reviews:9080{path}"),
            &[("content-type", "application/grpc")],
        )
    };
    let (st, _, body, headers) = send(&client, grpc("/pkg.Svc/Call")).await;
    assert_eq!((st, body.as_str()), (200, ""));
    assert_eq!(headers["grpc-status"], "14");
    assert_eq!(headers["grpc-message"], "maintenance");
    let (st, _, _, headers) = send(&client, grpc("/moved/x")).await;
    assert_eq!(st, 200);
    assert_eq!(headers["grpc-status"], "2"); // 301: UNKNOWN
    assert_eq!(headers["location"], "http://elsewhere/moved/x");
    // plain requests get the plain answers
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (503, "maintenance"));
    let (st, _, _, headers) = send(&client, get("http://reviews:9080/moved/x")).await;
    assert_eq!(st, 301);
    assert!(!headers.contains_key("grpc-status"));
}

#[tokio::test]
async fn fault_abort_and_delay_fire_at_their_percentages() {
    let pki = Pki::new();
    let mesh = mesh(&with_vs(
        r#"  - match: [{headers: {x-test-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 555, percentage: {value: 50}}}
    route: [{destination: {host: reviews}}]
  - match: [{headers: {x-test-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 150ms, percentage: {value: 30}}}
    route: [{destination: {host: reviews}}]
  - match: [{headers: {x-test-fault: {exact: never}}}]
    fault: {abort: {httpStatus: 500}}
    route: [{destination: {host: reviews}}]
"#,
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");

    let n = 600;
    let mut aborted = 0;
    for _ in 0..n {
        let (st, _, body, _) = send(
            &client,
            get_with("http://reviews:9080/", &[("x-test-fault", "abort")]),
        )
        .await;
        match st {
            555 => {
                assert_eq!(body, "fault filter abort");
                aborted += 1;
            }
            200 => {}
            other => panic!("status {other}"),
        }
    }
    let pct = f64::from(aborted) * 100.0 / f64::from(n);
    assert!((pct - 50.0).abs() < 7.0, "abort share {pct}%");
    assert_eq!(
        s.hits(),
        n - aborted,
        "aborted requests never reach the server"
    );

    // delays: flagged DI by the stack, and really delayed
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let resp = c
                .request(get_with(
                    "http://reviews:9080/",
                    &[("x-test-fault", "delay")],
                ))
                .await
                .unwrap();
            let took = t0.elapsed();
            assert_eq!(resp.status(), 200);
            let di = resp
                .extensions()
                .get::<mesh_tower::envoy::ResponseFlags>()
                .is_some_and(|f| f.contains(mesh_tower::envoy::ResponseFlags::DELAY_INJECTED));
            if di {
                assert!(took >= Duration::from_millis(150), "DI after {took:?}");
            }
            di
        }));
    }
    let mut delayed = 0;
    for t in tasks {
        delayed += u32::from(t.await.unwrap());
    }
    assert!((15..=45).contains(&delayed), "delayed {delayed}/100 at 30%");

    // no percentage: never fires
    for _ in 0..20 {
        let (st, _, _, _) = send(
            &client,
            get_with("http://reviews:9080/", &[("x-test-fault", "never")]),
        )
        .await;
        assert_eq!(st, 200);
    }
}

#[tokio::test]
async fn outlier_detection_ejects_a_dead_endpoint_so_later_requests_succeed() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}---\n{}",
        with_dr(
            "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}\n"
        ),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n"
    ));
    let live = start(&pki, "reviews-live", "default", "reviews", Behaviour::Ok).await;
    let bad = start(
        &pki,
        "reviews-bad",
        "default",
        "reviews",
        Behaviour::Always500,
    )
    .await;
    let dead = dead_addr().await;
    register(
        &mesh,
        "reviews-live",
        "default",
        "reviews",
        "reviews",
        "v1",
        live.addr,
    );
    register(
        &mesh,
        "reviews-bad",
        "default",
        "reviews",
        "reviews",
        "v1",
        bad.addr,
    );
    register(
        &mesh,
        "reviews-dead",
        "default",
        "reviews",
        "reviews",
        "v1",
        dead,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    let mut failures = 0;
    for _ in 0..9 {
        let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
        failures += u32::from(st != 200);
    }
    assert!(failures <= 4, "two errors each before ejection: {failures}");
    assert_eq!(
        bad.hits(),
        2,
        "the failing endpoint was ejected after 2 errors"
    );
    for _ in 0..20 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-live"));
    }
    assert_eq!(bad.hits(), 2);
}

/// Two reviews endpoints, `reviews-near` (behaving as `near`) in the client's zone
/// `us-east/zone1/a` and `reviews-far` (answering 200) in `us-west/zone2/b`, and a
/// productpage client in that zone.
async fn near_and_far(
    pki: &Pki,
    mesh: &mesh_core::mesh::Mesh,
    near: Behaviour,
) -> (Server, Server, mesh_tower::outbound::MeshClient) {
    let near = start(pki, "reviews-near", "default", "reviews", near).await;
    let far = start(pki, "reviews-far", "default", "reviews", Behaviour::Ok).await;
    let zones = [
        ("reviews-near", "us-east/zone1/a", near.addr),
        ("reviews-far", "us-west/zone2/b", far.addr),
    ];
    for (name, zone, addr) in zones {
        register_in(mesh, name, "reviews", "reviews", zone, addr);
    }
    let me = mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage")
        .with_locality("us-east/zone1/a");
    let client = mesh_tower::outbound::MeshClient::builder(mesh.clone(), me)
        .credentials(pki.creds("default", "productpage"))
        .build();
    (near, far, client)
}

#[tokio::test]
async fn locality_failover_stays_local_then_fails_over() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}---\n{}",
        with_dr("    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}\n"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n"
    ));
    let (near, _far, client) = near_and_far(&pki, &mesh, Behaviour::FailFirst(3)).await;
    // the local endpoint takes everything; its first 503 ejects it and traffic fails over
    let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, by.as_str()), (503, "reviews-near"));
    for _ in 0..10 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-far"));
    }
    assert_eq!(near.hits(), 1);
}

#[tokio::test]
async fn retry_remote_localities_tries_another_locality_from_the_third_attempt() {
    // the local endpoint always fails (but is never ejected): the retries stay local
    // unless `retryRemoteLocalities` (Envoy's previous_priorities, update frequency 2)
    // sends the third attempt to the next priority
    for (remote, want, near_hits) in [
        (true, (200, "reviews-far"), 2),
        (false, (500, "reviews-near"), 3),
    ] {
        let pki = Pki::new();
        let vs = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews}}}}]\n    retries: {{attempts: 2, retryOn: 5xx, retryRemoteLocalities: {remote}}}\n"
        );
        let mesh = mesh(&format!(
            "{}---\n{vs}",
            with_dr("    outlierDetection: {consecutive5xxErrors: 100, interval: 1m}\n"),
        ));
        let (near, _far, client) = near_and_far(&pki, &mesh, Behaviour::Always500).await;
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), want, "retryRemoteLocalities: {remote}");
        assert_eq!(near.hits(), near_hits, "retryRemoteLocalities: {remote}");
    }
}

#[tokio::test]
async fn locality_keeps_traffic_in_the_clients_zone() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(
        "    outlierDetection: {consecutive5xxErrors: 5}\n",
    ));
    let (_near, far, client) = near_and_far(&pki, &mesh, Behaviour::Ok).await;
    for _ in 0..20 {
        let (st, by, _, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-near"));
    }
    assert_eq!(far.hits(), 0);
}

/// A DestinationRule policy ejecting an endpoint at its first 5xx for a minute.
const EJECT_AT_FIRST_5XX: &str = "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}\n";

/// A VirtualService for `reviews` without retries.
const REVIEWS_NO_RETRIES: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews}}]\n    retries: {attempts: 0}\n";

/// `config` loaded, and `reviews`' only endpoint always answering 500: its server and a
/// client of it.
async fn always_500_reviews(
    pki: &Pki,
    config: &str,
) -> (
    mesh_core::mesh::Mesh,
    Server,
    mesh_tower::outbound::MeshClient,
) {
    let mesh = mesh(config);
    let bad = start(
        pki,
        "reviews-bad",
        "default",
        "reviews",
        Behaviour::Always500,
    )
    .await;
    register(
        &mesh,
        "reviews-bad",
        "default",
        "reviews",
        "reviews",
        "v1",
        bad.addr,
    );
    let client = client(&mesh, pki, "default", "productpage");
    (mesh, bad, client)
}

#[tokio::test]
async fn no_healthy_upstream_when_every_endpoint_is_ejected() {
    let pki = Pki::new();
    let config = format!("{}---\n{REVIEWS_NO_RETRIES}", with_dr(EJECT_AT_FIRST_5XX));
    let (_mesh, _bad, client) = always_500_reviews(&pki, &config).await;
    let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 500);
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (503, "no healthy upstream"));
}

/// An ejection belongs to the destination's cluster as Envoy builds it: a reload that
/// leaves the DestinationRule's policy as it was keeps it (an EDS update keeps the hosts),
/// one that changes the policy (here drops `outlierDetection`) is a new cluster whose
/// hosts start with none; before, the ejection outlived the detector that would end it.
#[tokio::test]
async fn a_policy_change_ends_ejections_an_unrelated_reload_keeps_them() {
    let pki = Pki::new();
    let outlier = with_dr(EJECT_AT_FIRST_5XX);
    let vs = REVIEWS_NO_RETRIES;
    let (mesh, _bad, client) = always_500_reviews(&pki, &format!("{outlier}---\n{vs}")).await;
    assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 500);
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (503, "no healthy upstream"));

    // another object changes: the same cluster, still ejected
    let other = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: other, namespace: default}\nspec:\n  hosts: [other.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n";
    reload(&mesh, &format!("{outlier}---\n{vs}---\n{other}"));
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!((st, body.as_str()), (503, "no healthy upstream"));

    // the DestinationRule no longer detects outliers: a new cluster, the endpoint is back
    reload(
        &mesh,
        &format!(
            "{}---\n{vs}",
            with_dr("    loadBalancer: {simple: ROUND_ROBIN}\n")
        ),
    );
    for _ in 0..3 {
        assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 500);
    }
}

#[tokio::test]
async fn circuit_breaker_overflow_answers_503_uo() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(
        "    connectionPool: {http: {http2MaxRequests: 1}}\n",
    ));
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_millis(400))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let c2 = client.clone();
    let first = tokio::spawn(async move { send(&c2, get("http://reviews:9080/")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, _, body, h) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert_eq!(h["x-envoy-overloaded"], "true");
    assert!(body.ends_with("reset reason: overflow"), "{body}");
    assert_eq!(first.await.unwrap().0, 200);
    let (st, _, _, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 200, "the permit came back");
}

/// With MeshConfig `proxyHeaders.envoyDebugHeaders.disabled` (Envoy's
/// `suppress_envoy_headers`) the overflow answer has no `x-envoy-overloaded`.
#[tokio::test]
async fn an_overflow_answer_has_no_envoy_header_when_they_are_suppressed() {
    let pki = Pki::new();
    let config = mesh_core::meshconfig::MeshConfig::from_yaml(
        "defaultConfig: {proxyHeaders: {envoyDebugHeaders: {disabled: true}}}",
    )
    .unwrap();
    let mesh = mesh_core::mesh::Mesh::with_mesh_config(&config);
    reload(
        &mesh,
        &with_dr("    connectionPool: {http: {http2MaxRequests: 1}}\n"),
    );
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_millis(400))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let c2 = client.clone();
    let first = tokio::spawn(async move { send(&c2, get("http://reviews:9080/")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (st, _, body, h) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert!(body.ends_with("reset reason: overflow"), "{body}");
    assert!(!h.contains_key("x-envoy-overloaded"), "{h:?}");
    assert_eq!(first.await.unwrap().0, 200);
}

#[tokio::test]
async fn connections_are_kept_alive_and_max_requests_per_connection_recycles_them() {
    let pki = Pki::new();
    let s = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    // no DestinationRule: one keep-alive connection carries every sequential request
    let plain = mesh(&service_yaml("reviews", "default"));
    register(
        &plain,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        s.addr,
    );
    let c = client(&plain, &pki, "default", "productpage");
    for _ in 0..10 {
        assert_eq!(send(&c, get("http://reviews:9080/")).await.0, 200);
    }
    assert_eq!(s.conns.load(Ordering::SeqCst), 1, "one connection, reused");

    // maxRequestsPerConnection: 3 -> ten requests need four connections
    let s = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let mesh = mesh(&with_dr(
        "    connectionPool: {http: {maxRequestsPerConnection: 3}}\n",
    ));
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        s.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    for _ in 0..10 {
        assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    }
    assert_eq!(s.hits(), 10);
    assert_eq!(s.conns.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn max_connections_queues_pending_requests_and_overflows_beyond_them() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(
        "    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n",
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_millis(300))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (st, _, body, h) = send(&c, get("http://reviews:9080/")).await;
            (
                st,
                body,
                h.get("x-envoy-overloaded").cloned(),
                started.elapsed(),
            )
        }));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // the first holds the only connection; the second waits for it (pending) and is served
    // after it; the third finds the pending queue full: 503 UO
    assert_eq!(results[0].0, 200, "{results:?}");
    assert_eq!(results[1].0, 200, "{results:?}");
    assert!(
        results[1].3 >= Duration::from_millis(450),
        "the pending request waited for the connection: {results:?}"
    );
    assert_eq!(results[2].0, 503, "{results:?}");
    assert_eq!(results[2].2.as_ref().unwrap(), "true");
    assert!(
        results[2].1.ends_with("reset reason: overflow"),
        "{results:?}"
    );
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "never more than maxConnections"
    );
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn server_with_the_wrong_identity_is_refused_with_a_clear_error() {
    let pki = Pki::new();
    let mesh = mesh(&service_yaml("reviews", "default"));
    // registered as service account `reviews`, but presents `ratings`
    let s = start(&pki, "impostor", "default", "ratings", Behaviour::Ok).await;
    register(
        &mesh, "impostor", "default", "reviews", "reviews", "v1", s.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    let resp = client.request(get("http://reviews:9080/")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let failure = resp
        .extensions()
        .get::<mesh_tower::outbound::UpstreamFailure>()
        .cloned()
        .expect("failure detail");
    assert_eq!(failure.endpoint, s.addr);
    assert!(
        failure
            .message
            .contains("spiffe://cluster.local/ns/default/sa/reviews"),
        "{}",
        failure.message
    );
    assert!(
        failure
            .message
            .contains("spiffe://cluster.local/ns/default/sa/ratings"),
        "{}",
        failure.message
    );
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert!(body.contains("CERTIFICATE_VERIFY_FAILED"), "{body}");
    assert_eq!(s.hits(), 0, "nothing reached the impostor");
}

#[tokio::test]
async fn istio_mutual_without_credentials_fails_closed() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr("    tls: {mode: ISTIO_MUTUAL}\n"));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = mesh_tower::outbound::MeshClient::builder(
        mesh.clone(),
        mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage"),
    )
    .build();
    let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 503);
    assert!(
        body.contains("ISTIO_MUTUAL needs the workload's mesh credentials"),
        "{body}"
    );
    assert_eq!(s.hits(), 0);
}

#[tokio::test]
async fn config_reload_under_load_shifts_traffic_without_a_failed_request() {
    let pki = Pki::new();
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\n";
    let vs = |w1: u32, w2: u32| {
        format!(
            "{}{dr}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {{destination: {{host: reviews, subset: v1}}, weight: {w1}}}\n    - {{destination: {{host: reviews, subset: v2}}, weight: {w2}}}\n",
            service_yaml("reviews", "default")
        )
    };
    let mesh = mesh(&vs(100, 0));
    let v1 = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let v2 = start(&pki, "reviews-v2", "default", "reviews", Behaviour::Ok).await;
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

    let reloading = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, reloading, reloaded, stop, failed) = (
            client.clone(),
            reloading.clone(),
            reloaded.clone(),
            stop.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut before, mut after_v1, mut after_v2, mut total) = (0u32, 0u32, 0u32, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let reloaded_at_start = reloaded.load(Ordering::SeqCst);
                let (st, by, _, _) = send(&c, get("http://reviews:9080/")).await;
                let reloading_at_end = reloading.load(Ordering::SeqCst);
                total += 1;
                if st != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                // requests that straddle the reload may go either way
                match (reloading_at_end, reloaded_at_start, by.as_str()) {
                    (false, _, "reviews-v2") => before += 1,
                    (_, true, "reviews-v1") => after_v1 += 1,
                    (_, true, "reviews-v2") => after_v2 += 1,
                    _ => {}
                }
            }
            (before, after_v1, after_v2, total)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    reloading.store(true, Ordering::SeqCst);
    reload(&mesh, &vs(0, 100));
    reloaded.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut before_v2, mut after_v1, mut after_v2, mut total) = (0, 0, 0, 0);
    for t in tasks {
        let (a, b, c, d) = t.await.unwrap();
        before_v2 += a;
        after_v1 += b;
        after_v2 += c;
        total += d;
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no failed request out of {total}"
    );
    assert_eq!(before_v2, 0, "v2 got traffic before the reload");
    assert_eq!(after_v1, 0, "v1 got traffic after the reload");
    assert!(
        after_v2 > 10,
        "traffic follows the new weights ({after_v2} after)"
    );
    assert!(v1.hits() > 10, "v1 served before the reload");
}

#[tokio::test]
async fn outbound_layer_wraps_a_hyper_util_client() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use mesh_tower::outbound::{ClientWorkload, MeshBody, OutboundLayer};
    use tower::{Layer, ServiceExt};

    // plaintext servers: TLS is the wrapped client's business under the layer
    let mesh = mesh(&format!(
        "{}{}",
        service_yaml("reviews", "default"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n  - route: [{destination: {host: reviews, subset: v1}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n"
    ));
    let mut servers = Vec::new();
    for v in ["v1", "v2"] {
        let s = start_plain(&format!("reviews-{v}")).await;
        register(
            &mesh,
            &format!("reviews-{v}"),
            "default",
            "reviews",
            "reviews",
            v,
            s.1,
        );
        servers.push(s);
    }
    let hyper_client: Client<_, MeshBody> = Client::builder(TokioExecutor::new()).build_http();
    let layer = OutboundLayer::builder(
        mesh.clone(),
        ClientWorkload::new("productpage", "default", "productpage"),
    )
    .layer();
    let svc = layer.layer(hyper_client);
    for (user, want) in [("jason", "reviews-v2"), ("bob", "reviews-v1")] {
        let resp = svc
            .clone()
            .oneshot(get_with("http://reviews:9080/r", &[("end-user", user)]))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-served-by"], want);
        assert_eq!(resp.headers()["x-seen-host"], "reviews:9080");
    }
    // a host outside the registry passes through (ALLOW_ANY) to the request's own host
    // and port, through the wrapped client
    let outside = start_plain("outside").await;
    let resp = svc
        .clone()
        .oneshot(get(&format!("http://localhost:{}/", outside.1.port())))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "unknown host, no VirtualService: passthrough"
    );
    assert_eq!(resp.headers()["x-served-by"], "outside");
}

/// A plaintext axum server answering with its name.
async fn start_plain(name: &str) -> (tokio::task::JoinHandle<()>, std::net::SocketAddr) {
    use axum::http::HeaderMap;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let name = name.clone();
        async move {
            let mut h = HeaderMap::new();
            h.insert("x-served-by", name.parse().unwrap());
            h.insert("x-seen-host", req.headers()["host"].clone());
            (h, name).into_response()
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (task, addr)
}

/// A plaintext server that closes every connection after one response
/// (`Connection: close`), counting the connections it accepted.
async fn start_closing() -> (
    tokio::task::JoinHandle<()>,
    std::net::SocketAddr,
    Arc<AtomicU32>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&conns);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"closing")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (task, addr, conns)
}

#[tokio::test]
async fn a_server_closing_its_connections_costs_no_request() {
    // plaintext: a client without mesh credentials talks plaintext to in-mesh endpoints
    let mesh = mesh(&service_yaml("reviews", "default"));
    let (_server, addr, conns) = start_closing().await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        addr,
    );
    let client = mesh_tower::outbound::MeshClient::builder(
        mesh.clone(),
        mesh_tower::outbound::ClientWorkload::new("productpage", "default", "productpage"),
    )
    .build();
    for i in 0..5 {
        let (st, _, body, _) = send(&client, get("http://reviews:9080/")).await;
        assert_eq!((st, body.as_str()), (200, "closing"), "request {i}");
    }
    // each response closed its connection: none was reused, none failed
    assert_eq!(conns.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn an_http2_port_multiplexes_concurrent_requests_on_one_connection() {
    let pki = Pki::new();
    // the Service port is declared HTTP2: Istio's client speaks h2 to it
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http2, port: 9080, targetPort: http}]\n",
    );
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_millis(100))).await;
    let client = client(&mesh, &pki, "default", "productpage");
    // one request first, so the connection exists; then ten at once share it
    let (st, _, body, h) = send(&client, get("http://reviews:9080/")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(h["x-seen-version"].to_str().unwrap(), "HTTP/2.0");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            send(&c, get("http://reviews:9080/")).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(s.hits(), 11);
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
}

#[tokio::test]
async fn an_idle_connection_past_the_idle_timeout_is_not_reused() {
    let pki = Pki::new();
    let mesh = mesh(&with_dr(
        "    connectionPool: {http: {idleTimeout: 100ms}}\n",
    ));
    let s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");
    assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        1,
        "reused within the idle timeout"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    assert_eq!(
        s.conns.load(Ordering::SeqCst),
        2,
        "a new connection after it"
    );
}

/// istiod's `retry.ConvertPolicy`: a route whose only destination hashes consistently
/// retries on the same host (no previous-hosts predicate), unless the route sets
/// `retryIgnorePreviousHosts: true`, which is honoured.
#[tokio::test]
async fn consistent_hash_retries_stay_on_the_host_unless_told_otherwise() {
    let pki = Pki::new();
    let yaml = |flag: &str| {
        format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}\n",
            with_vs(&format!(
                "  - route: [{{destination: {{host: reviews}}}}]\n    retries: {{attempts: 5, retryOn: 5xx{flag}}}\n"
            ))
        )
    };
    let mesh = mesh(&yaml(""));
    let bad = start(
        &pki,
        "reviews-a",
        "default",
        "reviews",
        Behaviour::Always500,
    )
    .await;
    let good = start(&pki, "reviews-b", "default", "reviews", Behaviour::Ok).await;
    register(
        &mesh,
        "reviews-a",
        "default",
        "reviews",
        "reviews",
        "v1",
        bad.addr,
    );
    register(
        &mesh,
        "reviews-b",
        "default",
        "reviews",
        "reviews",
        "v1",
        good.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    // a user the ring puts on the failing endpoint: every attempt goes there
    let mut user = None;
    for i in 0..64 {
        let u = format!("user-{i}");
        let (st, _, _, _) =
            send(&client, get_with("http://reviews:9080/", &[("x-user", &u)])).await;
        if st == 500 {
            user = Some(u);
            break;
        }
    }
    let user = user.expect("some user hashes to the failing endpoint");
    let before = bad.hits();
    let (st, _, _, _) = send(
        &client,
        get_with("http://reviews:9080/", &[("x-user", &user)]),
    )
    .await;
    assert_eq!(st, 500);
    assert_eq!(
        bad.hits() - before,
        6,
        "the first attempt and 5 retries, all on one host"
    );
    // told to avoid the hosts already tried, the retry goes to the other endpoint
    reload(&mesh, &yaml(", retryIgnorePreviousHosts: true"));
    let (st, _, body, _) = send(
        &client,
        get_with("http://reviews:9080/", &[("x-user", &user)]),
    )
    .await;
    assert_eq!((st, body.as_str()), (200, "reviews-b"));
}

/// Without a VirtualService, istiod's default route converts the mesh's default retry
/// policy without the hash (`BuildDefaultHTTPOutboundRoute`): the previous-hosts predicate
/// stays, so under a DestinationRule's consistent hash a connect failure is retried on
/// another endpoint, whichever the key hashes to.
#[tokio::test]
async fn default_route_retries_move_off_a_dead_hashed_endpoint() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}\n",
        service_yaml("reviews", "default")
    ));
    let good = start(&pki, "reviews-b", "default", "reviews", Behaviour::Ok).await;
    let dead = dead_addr().await;
    register(
        &mesh,
        "reviews-a",
        "default",
        "reviews",
        "reviews",
        "v1",
        dead,
    );
    register(
        &mesh,
        "reviews-b",
        "default",
        "reviews",
        "reviews",
        "v1",
        good.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    for i in 0..16 {
        let u = format!("user-{i}");
        let (st, _, body, _) =
            send(&client, get_with("http://reviews:9080/", &[("x-user", &u)])).await;
        assert_eq!((st, body.as_str()), (200, "reviews-b"), "{u}");
    }
}

/// Without a VirtualService a service is reached on the ports it declares (istiod builds
/// its default route on those listeners only): a port written in the request that the
/// service does not declare gets no cluster (502 under REGISTRY_ONLY), while a request
/// without a port takes a single-port service's port (the in-process client's convenience).
#[tokio::test]
async fn default_route_keeps_a_port_written_in_the_request() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{REGISTRY_ONLY}",
        service_yaml("reviews", "default")
    ));
    let _s = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");
    assert_eq!(send(&client, get("http://reviews/")).await.0, 200);
    assert_eq!(send(&client, get("http://reviews:9080/")).await.0, 200);
    assert_eq!(send(&client, get("http://reviews:8080/")).await.0, 502);
}

#[tokio::test]
async fn consistent_hash_reads_the_request_before_the_route_header_operations() {
    // Envoy's router picks the host before `finalizeRequestHeaders`: a route that
    // overwrites the hashed header does not put every user on one endpoint
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy: {{loadBalancer: {{consistentHash: {{httpHeaderName: x-user}}}}}}\n",
        with_vs("  - route: [{destination: {host: reviews}}]\n    headers: {request: {set: {x-user: anonymous}}}\n")
    ));
    let mut servers = Vec::new();
    for name in ["reviews-a", "reviews-b", "reviews-c", "reviews-d"] {
        let s = start(&pki, name, "default", "reviews", Behaviour::Ok).await;
        register(&mesh, name, "default", "reviews", "reviews", "v1", s.addr);
        servers.push(s);
    }
    let client = client(&mesh, &pki, "default", "productpage");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..24 {
        let u = format!("user-{i}");
        let mut by_user = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let (st, by, _, _) =
                send(&client, get_with("http://reviews:9080/", &[("x-user", &u)])).await;
            assert_eq!(st, 200);
            by_user.insert(by);
        }
        assert_eq!(by_user.len(), 1, "{u} stays on one endpoint: {by_user:?}");
        seen.extend(by_user);
    }
    assert!(seen.len() > 1, "users spread over the endpoints: {seen:?}");
}

/// A request body of unknown length streamed in `chunks` pieces, one every `every`.
struct Trickle {
    left: u32,
    every: tokio::time::Interval,
}

impl Trickle {
    fn new(chunks: u32, every: Duration) -> Trickle {
        let mut every = tokio::time::interval(every);
        every.reset(); // the first chunk after one period
        Trickle {
            left: chunks,
            every,
        }
    }
}

impl http_body::Body for Trickle {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.every.poll_tick(cx));
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"x",
        )))))
    }
}

/// The route timeout and `perTryTimeout` start once the request has ended, as Envoy's
/// router starts them (`onRequestComplete`, `setupPerTryTimeout`): a slow upload longer
/// than either is not cut, and the timeouts still bound the wait for the answer after it.
#[tokio::test]
async fn timeouts_start_when_a_streamed_request_has_ended() {
    let pki = Pki::new();
    let upload = |n| {
        http::Request::post("http://reviews:9080/upload")
            .body(Trickle::new(n, Duration::from_millis(150)))
            .unwrap()
    };
    for policy in [
        "timeout: 400ms",
        "retries: {attempts: 1, perTryTimeout: 400ms}",
    ] {
        let vs = with_vs(&format!(
            "  - route: [{{destination: {{host: reviews}}}}]\n    {policy}\n"
        ));
        let m = mesh(&vs);
        // a 1.2 s upload, answered at once once it has ended
        let s = start_reviews_v1(&pki, &m, Behaviour::Ok).await;
        let c = client(&m, &pki, "default", "productpage");
        let (st, _, body, _) = send(&c, upload(8)).await;
        assert_eq!(
            (st, body.as_str()),
            (200, "reviews-v1:xxxxxxxx"),
            "{policy}"
        );
        drop(s);
        // answered 1 s after a 0.3 s upload: the timeout still fires, 0.4 s after the end
        let m = mesh(&vs);
        let _s = start_reviews_v1(&pki, &m, Behaviour::Slow(Duration::from_secs(1))).await;
        let c = client(&m, &pki, "default", "productpage");
        let t0 = Instant::now();
        let (st, _, body, _) = send(&c, upload(2)).await;
        let took = t0.elapsed();
        assert_eq!(
            (st, body.as_str()),
            (504, "upstream request timeout"),
            "{policy}"
        );
        // (0.3 s of upload, then 0.4 s: the 504 itself says it came before the answer)
        assert!(took >= Duration::from_millis(650), "{policy}: {took:?}");
    }
}

/// Istio's default retry policy retries an answer whose `grpc-status` is `UNAVAILABLE`
/// whatever the request's content type, as Envoy's retry state reads the status of any
/// answer: a gRPC-Web call to a plain HTTP port is retried too.
#[tokio::test]
async fn grpc_statuses_are_retried_on_any_request() {
    let hits = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if n == 0 { "14" } else { "0" };
            ([("grpc-status", status)], "")
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    let mesh = mesh(&format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web.example.com]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
    ));
    let client = mesh_tower::outbound::MeshClient::builder(
        mesh,
        mesh_tower::outbound::ClientWorkload::new("app", "default", "app"),
    )
    .build();
    let req = http::Request::post(format!("http://web.example.com:{port}/pkg.Svc/Call"))
        .header("content-type", "application/grpc-web+proto")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (st, _, _, h) = send(&client, req).await;
    assert_eq!((st, h["grpc-status"].to_str().unwrap()), (200, "0"));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "retried once");
}
