//! Load balancing, outlier detection and circuit breaking against real loopback servers:
//! the pieces wired together the way the outbound client will use them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_tower::envoy::{LocalReply, ResetReason, ResponseFlags};
use mesh_tower::lb::{ConnectionAddrs, Endpoint, HashKey, LbAlgorithm, LbConfig, LoadBalancer};
use mesh_tower::outlier::{Outcome, OutlierConfig, OutlierDetector};
use mesh_tower::pool::{CircuitBreaker, PoolLimits};
use tokio::net::TcpListener;

/// A server answering `status` with its own name in the body, after `delay`.
async fn server(name: &'static str, status: u16, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(
                move |_req: Request<hyper::body::Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    let mut r = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
                    *r.status_mut() = StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(r)
                },
            );
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request through the balancer, reporting the outcome to outlier detection; local
/// failures become Envoy's replies.
async fn send(
    client: &HttpClient,
    lb: &LoadBalancer,
    od: &OutlierDetector,
    hash: Option<u64>,
) -> (u16, String) {
    let guard = match lb.pick(hash) {
        Ok(g) => g,
        Err(e) => {
            let reply = LocalReply::from(e);
            return (reply.status().as_u16(), reply.body());
        }
    };
    let uri: Uri = format!("http://{}/", guard.endpoint().addr())
        .parse()
        .unwrap();
    match client.get(uri).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            od.record(guard.index(), Outcome::Status(status), Instant::now());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        }
        Err(e) => {
            assert!(e.is_connect(), "{e}");
            od.record(guard.index(), Outcome::ConnectFailed, Instant::now());
            let reply = LocalReply::UpstreamReset {
                reason: ResetReason::RemoteConnectionFailure,
                transport_failure: None,
                retried: false,
            };
            (reply.status().as_u16(), reply.body())
        }
    }
}

#[tokio::test]
async fn outlier_detection_ejects_failing_and_dead_endpoints() {
    let good = server("good", 200, Duration::ZERO).await;
    let bad = server("bad", 503, Duration::ZERO).await;
    let dead = dead_port().await;
    let lb = Arc::new(LoadBalancer::new(
        vec![Endpoint::new(good), Endpoint::new(bad), Endpoint::new(dead)],
        LbConfig::new(LbAlgorithm::RoundRobin),
    ));
    let t0 = Instant::now();
    let od = OutlierDetector::new(
        OutlierConfig {
            consecutive_5xx: 3,
            max_ejection_percent: 100,
            ..Default::default()
        },
        Arc::clone(&lb),
        t0,
    );
    let client = client();
    let mut failures = 0;
    for _ in 0..9 {
        let (status, _) = send(&client, &lb, &od, None).await;
        if status != 200 {
            failures += 1;
        }
    }
    // Round robin: each of the two failing endpoints fails three times, then is ejected.
    assert_eq!(failures, 6);
    assert_eq!(od.ejected_count(), 2);
    for _ in 0..20 {
        let (status, body) = send(&client, &lb, &od, None).await;
        assert_eq!((status, body.as_str()), (200, "good"));
    }
    // After the base ejection time they come back, and fail again.
    assert_eq!(od.tick(t0 + Duration::from_secs(31)), 2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&client, &lb, &od, None).await.0);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 503, 503]);
}

#[tokio::test]
async fn everything_ejected_is_no_healthy_upstream() {
    let bad = server("bad", 500, Duration::ZERO).await;
    let lb = Arc::new(LoadBalancer::new(
        vec![Endpoint::new(bad)],
        LbConfig::new(LbAlgorithm::LeastRequest),
    ));
    let od = OutlierDetector::new(
        OutlierConfig {
            consecutive_5xx: 2,
            max_ejection_percent: 100,
            ..Default::default()
        },
        Arc::clone(&lb),
        Instant::now(),
    );
    let client = client();
    assert_eq!(send(&client, &lb, &od, None).await.0, 500);
    assert_eq!(send(&client, &lb, &od, None).await.0, 500);
    assert_eq!(
        send(&client, &lb, &od, None).await,
        (503, "no healthy upstream".to_string())
    );
}

#[tokio::test]
async fn consistent_hash_keeps_a_user_on_one_endpoint() {
    let names = ["a", "b", "c", "d"];
    let mut eps = Vec::new();
    for n in names {
        eps.push(Endpoint::new(server(n, 200, Duration::ZERO).await));
    }
    let lb = Arc::new(LoadBalancer::new(
        eps,
        LbConfig::new(LbAlgorithm::RingHash {
            minimum_ring_size: 1024,
        }),
    ));
    let od = OutlierDetector::new(OutlierConfig::default(), Arc::clone(&lb), Instant::now());
    let key = HashKey::Header(http::HeaderName::from_static("end-user"));
    let client = client();
    let uri: Uri = "/".parse().unwrap();
    let mut seen_users = std::collections::BTreeSet::new();
    for user in ["jason", "alice", "bob", "carol", "dave", "erin"] {
        let mut h = HeaderMap::new();
        h.insert("end-user", user.parse().unwrap());
        let hash = key.hash(&h, &uri, ConnectionAddrs::default()).hash;
        let (_, first) = send(&client, &lb, &od, hash).await;
        for _ in 0..10 {
            assert_eq!(send(&client, &lb, &od, hash).await.1, first, "{user}");
        }
        seen_users.insert(first);
    }
    assert!(
        seen_users.len() >= 2,
        "users spread over endpoints: {seen_users:?}"
    );
}

#[tokio::test]
async fn circuit_breaker_overflows_with_503_uo() {
    let slow = server("slow", 200, Duration::from_millis(300)).await;
    let cb = CircuitBreaker::new(PoolLimits {
        max_requests: 2,
        ..Default::default()
    });
    let client = client();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let cb = cb.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let permit = match cb.try_request() {
                Ok(p) => p,
                Err(overflow) => {
                    let resp: Response<Bytes> = LocalReply::from(overflow).to_response(false);
                    return (
                        resp.status().as_u16(),
                        resp.headers().get("x-envoy-overloaded").cloned(),
                        resp.extensions().get::<ResponseFlags>().copied(),
                    );
                }
            };
            let uri: Uri = format!("http://{slow}/").parse().unwrap();
            let resp = client.get(uri).await.unwrap();
            let status = resp.status().as_u16();
            resp.into_body().collect().await.unwrap();
            drop(permit);
            (status, None, None)
        }));
        // Let the first requests take their permits.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let overflowed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!(ok, 2, "{results:?}");
    assert_eq!(overflowed.len(), 3);
    for r in overflowed {
        assert_eq!(r.1.as_ref().unwrap(), "true");
        assert_eq!(r.2.unwrap().to_string(), "UO");
    }
    // All permits returned.
    assert_eq!(cb.in_use(), (0, 0, 0, 0));
}
