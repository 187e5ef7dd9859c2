//! Outbound behaviours a review found diverging from Istio/Envoy, against real loopback
//! servers: connection limits below the endpoint count, retry overflow, undeclared
//! destination ports, route response headers on local replies, and consistent hashing by
//! source IP and generated cookie.

mod outbound_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use outbound_support::*;

/// A plaintext server (HTTP/1.1 and h2c) on loopback answering with `handler`, counting
/// the connections it accepted.
async fn serve_fn<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicU32>)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let svc = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, conns)
}

/// A plaintext server answering `status` with its name after `delay`, counting the
/// connections it accepted.
async fn plain(name: &'static str, status: u16, delay: Duration) -> (SocketAddr, Arc<AtomicU32>) {
    serve_fn(move |_req| async move {
        tokio::time::sleep(delay).await;
        let mut r = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert("x-served-by", name.parse().unwrap());
        r
    })
    .await
}

/// A plaintext client of `mesh`'s reviews, whose one endpoint is a `plain` server
/// answering 200 after `delay`; with that server's connection count.
async fn reviews_v1_behind(
    mesh: &mesh_core::mesh::Mesh,
    delay: Duration,
) -> (MeshClient, Arc<AtomicU32>) {
    let (a, conns) = plain("reviews-v1", 200, delay).await;
    register(mesh, "reviews-v1", "default", "reviews", "reviews", "v1", a);
    (plaintext_client(mesh), conns)
}

/// A client without mesh credentials: it talks plaintext to the endpoints.
fn plaintext_client(mesh: &mesh_core::mesh::Mesh) -> MeshClient {
    MeshClient::builder(
        mesh.clone(),
        ClientWorkload::new("productpage", "default", "productpage"),
    )
    .build()
}

fn with_dr(policy: &str) -> String {
    format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n{policy}",
        service_yaml("reviews", "default")
    )
}

/// Sends with a deadline: a request that hangs is a test failure, not a stuck test.
async fn send_within(client: &MeshClient, uri: &str) -> (u16, String, String, http::HeaderMap) {
    tokio::time::timeout(Duration::from_secs(5), send(client, get(uri)))
        .await
        .unwrap_or_else(|_| panic!("{uri}: no answer within 5 s"))
}

// --- 1. maxConnections below the number of endpoints ---------------------------------

#[tokio::test]
async fn max_connections_below_endpoint_count_does_not_hang_http1() {
    let mesh = mesh(&with_dr(
        "    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 1}}\n",
    ));
    let (a, a_conns) = plain("reviews-v1", 200, Duration::ZERO).await;
    let (b, b_conns) = plain("reviews-v2", 200, Duration::ZERO).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        a,
    );
    register(
        &mesh,
        "reviews-v2",
        "default",
        "reviews",
        "reviews",
        "v2",
        b,
    );
    let client = plaintext_client(&mesh);
    let mut served = Vec::new();
    for _ in 0..4 {
        let (st, by, _, _) = send_within(&client, "http://reviews:9080/").await;
        assert_eq!(st, 200);
        served.push(by);
    }
    // round robin over both endpoints; each keeps its one pooled connection
    assert_ne!(served[0], served[1], "{served:?}");
    assert_eq!(served[0], served[2], "{served:?}");
    assert_eq!(served[1], served[3], "{served:?}");
    assert_eq!(a_conns.load(Ordering::SeqCst), 1);
    assert_eq!(b_conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_connections_below_endpoint_count_does_not_hang_http2() {
    let pki = Pki::new();
    // an HTTP2 port: the client speaks h2 to it (one shared connection per endpoint)
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http2, port: 9080, targetPort: http}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 1}}\n",
    );
    let a = start(&pki, "reviews-v1", "default", "reviews", Behaviour::Ok).await;
    let b = start(&pki, "reviews-v2", "default", "reviews", Behaviour::Ok).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        a.addr,
    );
    register(
        &mesh,
        "reviews-v2",
        "default",
        "reviews",
        "reviews",
        "v2",
        b.addr,
    );
    let client = client(&mesh, &pki, "default", "productpage");
    for _ in 0..4 {
        let (st, _, _, h) = send_within(&client, "http://reviews:9080/").await;
        assert_eq!(st, 200);
        assert_eq!(h["x-seen-version"], "HTTP/2.0");
    }
    assert_eq!((a.hits(), b.hits()), (2, 2));
    assert_eq!(a.conns.load(Ordering::SeqCst), 1);
    assert_eq!(b.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_connections_pending_requests_still_overflow_with_503_uo() {
    let mesh = mesh(&with_dr(
        "    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}\n",
    ));
    let (a, a_conns) = plain("reviews-v1", 200, Duration::from_millis(400)).await;
    let (b, b_conns) = plain("reviews-v2", 200, Duration::from_millis(400)).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        a,
    );
    register(
        &mesh,
        "reviews-v2",
        "default",
        "reviews",
        "reviews",
        "v2",
        b,
    );
    let client = plaintext_client(&mesh);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let (st, by, body, h) = send_within(&c, "http://reviews:9080/").await;
            (st, by, body, h.get("x-envoy-overloaded").cloned())
        }));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    // 1st: endpoint A, the only slot; 2nd: endpoint B has no connection, opens one past
    // the limit; 3rd: A again, busy: waits as the one pending request; 4th: B, busy, and
    // the pending queue is full: 503 UO
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 200, 200, 503], "{results:?}");
    assert_eq!(results[0].1, results[2].1, "{results:?}");
    assert_eq!(results[3].3.as_ref().unwrap(), "true", "{results:?}");
    assert!(
        results[3].2.ends_with("reset reason: overflow"),
        "{results:?}"
    );
    assert_eq!(a_conns.load(Ordering::SeqCst), 1);
    assert_eq!(b_conns.load(Ordering::SeqCst), 1);
}

// --- 2. maxRetries overflow keeps the upstream's answer --------------------------------

#[tokio::test]
async fn retry_overflow_returns_the_upstream_response_not_a_local_503() {
    let mesh = mesh(&format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews}}}}]\n    retries: {{attempts: 3, retryOn: 5xx}}\n",
        with_dr("    connectionPool: {http: {maxRetries: 1}}\n")
    ));
    let (a, _) = plain("boom", 500, Duration::from_millis(300)).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        a,
    );
    let client = plaintext_client(&mesh);
    let first = {
        let c = client.clone();
        tokio::spawn(async move { send_within(&c, "http://reviews:9080/").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    // the first request's retry holds the only maxRetries slot when this one fails: the
    // answer is given back flagged UO (Envoy's `NoOverflow`)
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(get("http://reviews:9080/")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((r.status().as_u16(), flags_of(&r)), (500, "UO".to_owned()));
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "not retried"
    );
    let (st, _, body, _) = first.await.unwrap();
    assert_eq!((st, body.as_str()), (500, "boom"));
}

// --- 3. a destination port the service does not declare --------------------------------

/// `reviews` declares `ports`; one endpoint listens on every port the test uses.
async fn two_port_reviews(ports: &str, vs_http: &str) -> (mesh_core::mesh::Mesh, Arc<AtomicU32>) {
    let (addr, conns) = plain("reviews-v1", 200, Duration::ZERO).await;
    let mesh = mesh(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  selector: {{app: reviews}}\n  ports: {ports}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n{vs_http}",
    ));
    // the endpoint's container port for every service port: the test server
    mesh.register(mesh_core::registry::Workload {
        name: "reviews-v1".into(),
        namespace: "default".into(),
        service_account: "reviews".into(),
        labels: [("app".to_owned(), "reviews".to_owned())].into(),
        address: addr.ip(),
        ports: [
            ("http".to_owned(), addr.port()),
            ("http-b".to_owned(), addr.port()),
        ]
        .into(),
        locality: None,
        weight: 0,
    });
    (mesh, conns)
}

#[tokio::test]
async fn a_route_to_an_undeclared_service_port_is_cluster_not_found() {
    let (mesh, conns) = two_port_reviews(
        "[{name: http, port: 9080}]",
        "  - route: [{destination: {host: reviews, port: {number: 8080}}}]\n",
    )
    .await;
    let client = plaintext_client(&mesh);
    let resp = client.request(get("http://reviews:9080/")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let flags = resp
        .extensions()
        .get::<mesh_tower::envoy::ResponseFlags>()
        .copied()
        .unwrap();
    assert_eq!(flags.to_string(), "NC");
    let (st, _, body, _) = send_within(&client, "http://reviews:9080/").await;
    assert_eq!((st, body.as_str()), (503, ""));
    assert_eq!(conns.load(Ordering::SeqCst), 0, "nothing dialed");
}

#[tokio::test]
async fn no_route_port_on_a_multi_port_service_takes_the_request_port_if_declared() {
    let (mesh, conns) = two_port_reviews(
        "[{name: http, port: 9080}, {name: http-b, port: 9090}]",
        "  - route: [{destination: {host: reviews}}]\n",
    )
    .await;
    let client = plaintext_client(&mesh);
    for port in [9080, 9090] {
        let (st, by, _, _) = send_within(&client, &format!("http://reviews:{port}/")).await;
        assert_eq!((st, by.as_str()), (200, "reviews-v1"), "{port}");
    }
    // the request's port is not a service port: istiod builds the VirtualService into the
    // route configs of the service's ports only, so on 8080 nothing routes it and the
    // request is the unknown destination's: passed through (ALLOW_ANY) to `reviews:8080`,
    // which does not resolve here (503, connect failure); none of the service's endpoints
    // is dialed
    let (st, _, body, _) = send_within(&client, "http://reviews:8080/").await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "one per cluster, none for 8080"
    );
}

// --- 4. route response headers on answers made by the mesh ------------------------------

#[tokio::test]
async fn route_response_headers_apply_to_redirects_aborts_and_cluster_not_found() {
    let mesh = mesh(&format!(
        "{}apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n{}",
        service_yaml("reviews", "default"),
        concat!(
            "  - match: [{uri: {prefix: /old}}]\n",
            "    redirect: {uri: /new}\n",
            "    headers: {response: {set: {x-route: redirect}}}\n",
            "  - match: [{uri: {prefix: /abort}}]\n",
            "    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n",
            "    headers: {response: {set: {x-route: abort, x-cluster: '%UPSTREAM_CLUSTER%'}}}\n",
            "    route:\n",
            "    - destination: {host: reviews}\n",
            "      headers: {response: {set: {x-dest: reviews}}}\n",
            "  - match: [{uri: {prefix: /nosubset}}]\n",
            "    headers: {response: {add: {x-route: nc}, remove: [x-gone]}}\n",
            "    route:\n",
            "    - destination: {host: reviews, subset: v9}\n",
            "      headers: {response: {set: {x-dest: v9}}}\n",
            "  - route: [{destination: {host: reviews}}]\n",
            "    headers: {response: {set: {x-route: default}}}\n",
        )
    ));
    let (addr, _) = plain("reviews-v1", 200, Duration::ZERO).await;
    register(
        &mesh,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        addr,
    );
    let client = plaintext_client(&mesh);

    let (st, _, _, h) = send_within(&client, "http://reviews:9080/old").await;
    assert_eq!(st, 301);
    assert_eq!(h["location"], "http://reviews:9080/new");
    assert_eq!(h["x-route"], "redirect");

    let (st, _, body, h) = send_within(&client, "http://reviews:9080/abort").await;
    assert_eq!((st, body.as_str()), (418, "fault filter abort"));
    assert_eq!(h["x-route"], "abort");
    assert_eq!(
        h["x-dest"], "reviews",
        "the destination's, picked with the route"
    );
    assert_eq!(
        h["x-cluster"],
        "outbound|9080||reviews.default.svc.cluster.local"
    );

    let (st, _, body, h) = send_within(&client, "http://reviews:9080/nosubset").await;
    assert_eq!((st, body.as_str()), (503, ""));
    assert_eq!(h["x-route"], "nc");
    assert_eq!(h["x-dest"], "v9");

    let (st, by, _, h) = send_within(&client, "http://reviews:9080/").await;
    assert_eq!((st, by.as_str()), (200, "reviews-v1"));
    assert_eq!(h["x-route"], "default");
}

// --- 5 and 6. consistent hashing by source IP and generated cookie ----------------------

/// `reviews` with four plaintext endpoints, DestinationRule `loadBalancer: {lb}`.
async fn four_reviews(lb: &str) -> mesh_core::mesh::Mesh {
    let mesh = mesh(&with_dr(&format!("    loadBalancer: {lb}\n")));
    for (i, name) in ["reviews-a", "reviews-b", "reviews-c", "reviews-d"]
        .into_iter()
        .enumerate()
    {
        let (addr, _) = plain(name, 200, Duration::ZERO).await;
        register(
            &mesh,
            name,
            "default",
            "reviews",
            "reviews",
            &format!("v{i}"),
            addr,
        );
    }
    mesh
}

#[tokio::test]
async fn use_source_ip_keeps_a_mesh_client_without_an_address_on_one_endpoint() {
    let mesh = four_reviews("{consistentHash: {useSourceIp: true}}").await;
    let client = plaintext_client(&mesh);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (st, by, _, _) = send_within(&client, "http://reviews:9080/").await;
        assert_eq!(st, 200);
        seen.insert(by);
    }
    assert_eq!(seen.len(), 1, "one source, one endpoint: {seen:?}");
    // another client of the same workload in this process: the same "pod", the same endpoint
    let again = plaintext_client(&mesh);
    for _ in 0..5 {
        let (_, by, _, _) = send_within(&again, "http://reviews:9080/").await;
        assert!(seen.contains(&by), "{by} {seen:?}");
    }
}

#[tokio::test]
async fn generated_cookies_differ_between_requests_of_a_mesh_client() {
    let mesh =
        four_reviews("{consistentHash: {httpCookie: {name: session, path: /, ttl: 60s}}}").await;
    let client = plaintext_client(&mesh);
    let cookie = |h: &http::HeaderMap| {
        let v = h["set-cookie"].to_str().unwrap().to_owned();
        assert!(v.starts_with("session=\""), "{v}");
        v.split('"').nth(1).unwrap().to_owned()
    };
    let (_, first_by, _, h) = send_within(&client, "http://reviews:9080/").await;
    let first = cookie(&h);
    let (_, _, _, h) = send_within(&client, "http://reviews:9080/").await;
    let second = cookie(&h);
    // not one cookie for every user of the client (Envoy's hash of no connection)
    assert_ne!(first, second);
    assert_ne!(first, "ef46db3751d8e999");
    // sent back, a cookie keeps its user on its endpoint
    for _ in 0..5 {
        let req = get_with(
            "http://reviews:9080/",
            &[("cookie", &format!("session={first}"))],
        );
        let (st, by, _, h) = send(&client, req).await;
        assert_eq!((st, by.as_str()), (200, first_by.as_str()));
        assert!(h.get("set-cookie").is_none());
    }
}

/// A gateway on port 80 routing every host to `reviews` (four plaintext endpoints) with
/// DestinationRule `loadBalancer: {lb}`.
async fn gateway_to_four_reviews(lb: &str) -> (mesh_tower::gateway::GatewayServer, SocketAddr) {
    gateway_to_four_reviews_behind(lb, 0).await
}

/// [`gateway_to_four_reviews`] behind `proxies` trusted proxies (`numTrustedProxies`).
async fn gateway_to_four_reviews_behind(
    lb: &str,
    proxies: u32,
) -> (mesh_tower::gateway::GatewayServer, SocketAddr) {
    let mesh = four_reviews(lb).await;
    let yaml = format!(
        "{}apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {lb}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http: [{{route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]}}]\n",
        service_yaml("reviews", "default")
    );
    reload(&mesh, &yaml);
    let labels = [("istio".to_owned(), "ingressgateway".to_owned())].into();
    let gw = mesh_tower::gateway::GatewayServer::builder(mesh, "istio-system", labels)
        .num_trusted_proxies(proxies)
        .listener(
            80,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    (gw, addr)
}

/// An HTTP/1.1 connection to `gateway` from loopback address `from`.
async fn connect_from(
    from: &str,
    gateway: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(gateway).await.unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}

/// (served by, set-cookie value) of a GET on `tx`.
async fn gateway_get(
    tx: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
) -> (String, Option<String>) {
    gateway_get_with(tx, &[]).await
}

/// [`gateway_get`] with extra request headers.
async fn gateway_get_with(
    tx: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>,
    headers: &[(&str, &str)],
) -> (String, Option<String>) {
    use http_body_util::BodyExt;
    let mut req = http::Request::get("/")
        .header("host", "reviews.example.com")
        .body(http_body_util::Empty::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let by = resp.headers()["x-served-by"].to_str().unwrap().to_owned();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.into_body().collect().await;
    (by, cookie)
}

#[tokio::test]
async fn use_source_ip_at_the_gateway_hashes_the_downstream_client_ip() {
    let (_gw, addr) = gateway_to_four_reviews("{consistentHash: {useSourceIp: true}}").await;
    let mut endpoints = std::collections::BTreeSet::new();
    for i in 1..=8 {
        let from = format!("127.0.0.{i}");
        let mut seen = std::collections::BTreeSet::new();
        // new connections (new source ports) from one IP: one endpoint
        for _ in 0..3 {
            let mut tx = connect_from(&from, addr).await;
            seen.insert(gateway_get(&mut tx).await.0);
        }
        assert_eq!(seen.len(), 1, "{from}: {seen:?}");
        endpoints.extend(seen);
    }
    // the key is the client's IP, not one key for the whole gateway
    assert!(endpoints.len() > 1, "{endpoints:?}");
}

#[tokio::test]
async fn generated_cookie_at_the_gateway_is_per_downstream_connection() {
    let (_gw, addr) =
        gateway_to_four_reviews("{consistentHash: {httpCookie: {name: session, ttl: 0s}}}").await;
    let value = |c: Option<String>| c.expect("set-cookie").split('"').nth(1).unwrap().to_owned();
    let mut one = connect_from("127.0.0.1", addr).await;
    let (by1, c1) = gateway_get(&mut one).await;
    let (by1b, c1b) = gateway_get(&mut one).await;
    // Envoy: the same connection, the same cookie (and so the same endpoint)
    assert_eq!(value(c1.clone()), value(c1b));
    assert_eq!(by1, by1b);
    let mut two = connect_from("127.0.0.1", addr).await;
    let (_, c2) = gateway_get(&mut two).await;
    assert_ne!(value(c1), value(c2), "another connection, another user");
}

// Envoy's connection manager makes the address `X-Forwarded-For` gives past the trusted
// proxies the stream's remote address, which `useSourceIp` hashes: behind a load balancer,
// clients still spread, each kept on its endpoint.
#[tokio::test]
async fn use_source_ip_at_the_gateway_hashes_the_trusted_client_address() {
    let (_gw, addr) =
        gateway_to_four_reviews_behind("{consistentHash: {useSourceIp: true}}", 1).await;
    let mut tx = connect_from("127.0.0.1", addr).await;
    let mut endpoints = std::collections::BTreeSet::new();
    for i in 1..=16 {
        let xff = format!("203.0.113.{i}");
        let (first, _) = gateway_get_with(&mut tx, &[("x-forwarded-for", &xff)]).await;
        let (again, _) = gateway_get_with(&mut tx, &[("x-forwarded-for", &xff)]).await;
        assert_eq!(first, again, "{xff}");
        endpoints.insert(first);
    }
    assert!(
        endpoints.len() > 1,
        "one connection, many clients: {endpoints:?}"
    );
}

// --- maxRetries: the slot of a retry, and the flags of an answer given back -------------

/// Answers 500 to the first request for each path and 200 afterwards.
async fn fails_once_per_path() -> SocketAddr {
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    serve_fn(move |req| {
        let seen = Arc::clone(&seen);
        async move {
            let path = req.uri().path().to_owned();
            let first = {
                let mut s = seen.lock().unwrap();
                let first = !s.contains(&path);
                s.push(path);
                first
            };
            let mut r = Response::new(Full::new(Bytes::from_static(b"answer")));
            *r.status_mut() = if first {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            r
        }
    })
    .await
    .0
}

fn flags_of<B>(resp: &Response<B>) -> String {
    resp.extensions()
        .get::<mesh_tower::envoy::ResponseFlags>()
        .copied()
        .unwrap_or(mesh_tower::envoy::ResponseFlags::NONE)
        .to_string()
}

#[tokio::test]
async fn a_retry_slot_ends_with_the_retried_answers_headers() {
    let retried = mesh(&format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews}}}}]\n    retries: {{attempts: 1, retryOn: 5xx}}\n",
        with_dr("    connectionPool: {http: {maxRetries: 1}}\n")
    ));
    let addr = fails_once_per_path().await;
    register(
        &retried,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        addr,
    );
    let client = plaintext_client(&retried);
    // /a is retried once and answered; its body is not read yet
    let a = client.request(get("http://reviews:9080/a")).await.unwrap();
    assert_eq!(a.status(), 200);
    // the slot /a's retry took is free again (Envoy resets the retry state on the answer's
    // headers): /b is retried too
    let b = client.request(get("http://reviews:9080/b")).await.unwrap();
    assert_eq!(b.status(), 200, "{}", flags_of(&b));
    drop(a);
    let c = client.request(get("http://reviews:9080/c")).await.unwrap();
    assert_eq!(c.status(), 200);

    // retries run out: the last answer is given back flagged URX
    let exhausted = mesh(&format!(
        "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews}}}}]\n    retries: {{attempts: 2, retryOn: 5xx}}\n",
        with_dr("    connectionPool: {http: {maxRetries: 5}}\n")
    ));
    let (boom, _) = plain("boom", 500, Duration::ZERO).await;
    register(
        &exhausted,
        "reviews-v1",
        "default",
        "reviews",
        "reviews",
        "v1",
        boom,
    );
    let client = plaintext_client(&exhausted);
    let r = client.request(get("http://reviews:9080/")).await.unwrap();
    assert_eq!((r.status().as_u16(), flags_of(&r)), (500, "URX".to_owned()));
}

// --- the downstream's protocol: sniffed ports and useClientProtocol ---------------------

/// A plaintext server (HTTP/1.1 and h2c with prior knowledge) answering the version it saw.
async fn version_echo() -> SocketAddr {
    serve_fn(
        |req| async move { Response::new(Full::new(Bytes::from(format!("{:?}", req.version())))) },
    )
    .await
    .0
}

fn get_version(uri: &str, version: http::Version) -> Request<http_body_util::Empty<Bytes>> {
    Request::get(uri)
        .version(version)
        .body(http_body_util::Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_sniffed_port_and_use_client_protocol_keep_the_requests_http_version() {
    use http::Version;
    let addr = version_echo().await;
    // an unnamed port (sniffed), and a port declared HTTP whose DestinationRule says
    // `useClientProtocol`
    let mesh = mesh(
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{port: 9080}, {name: http-b, port: 9090}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 9090}\n      connectionPool: {http: {useClientProtocol: true}}\n",
    );
    // both service ports reach the one test server
    let mut w = mesh_core::registry::Workload::new(
        "reviews-v1",
        "default",
        "reviews",
        [("app", "reviews")],
        addr.ip(),
    );
    w.ports = [
        (String::new(), addr.port()),
        ("http-b".to_owned(), addr.port()),
    ]
    .into();
    mesh.register(w);
    let client = plaintext_client(&mesh);
    for port in [9080, 9090] {
        let uri = format!("http://reviews:{port}/");
        // a gRPC application's HTTP/2 stays HTTP/2 (h2c), HTTP/1.1 stays HTTP/1.1
        for (version, seen) in [
            (Version::HTTP_2, "HTTP/2.0"),
            (Version::HTTP_11, "HTTP/1.1"),
        ] {
            let resp = client.request(get_version(&uri, version)).await.unwrap();
            assert_eq!(resp.status(), 200, "{port} {version:?}");
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], seen.as_bytes(), "{port} {version:?}");
        }
    }
    // a port declared HTTP without the rule: HTTP/1.1 whatever the request's version
    reload(
        &mesh,
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http-b, port: 9090}]\n",
    );
    let resp = client
        .request(get_version("http://reviews:9090/", Version::HTTP_2))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"HTTP/1.1");
}

// --- http2MaxRequests counts requests a connection took, not those waiting for one ------

#[tokio::test]
async fn max_requests_counts_attached_requests_a_waiting_one_is_pending() {
    let mesh = mesh(&with_dr(
        "    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http2MaxRequests: 1, http1MaxPendingRequests: 10}\n",
    ));
    let (client, conns) = reviews_v1_behind(&mesh, Duration::from_millis(300)).await;
    // the second request waits for the one connection (pending), then takes it when the
    // first is answered: Envoy checks `max_requests` when a connection takes a stream
    let both: Vec<_> = (0..2)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { send_within(&c, "http://reviews:9080/").await })
        })
        .collect();
    for t in both {
        let (st, _, _, h) = t.await.unwrap();
        assert_eq!(st, 200, "{h:?}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

// --- a ServiceEntry for a Kubernetes Service's host adds its endpoints -------------------

#[tokio::test]
async fn a_service_entry_of_a_kubernetes_services_host_adds_its_endpoints() {
    let (pod, _) = plain("reviews-pod", 200, Duration::ZERO).await;
    let (vm, _) = plain("reviews-vm", 200, Duration::ZERO).await;
    // istiod's EDS for the Kubernetes Service holds the ServiceEntry's endpoints of the
    // same host and namespace, on the ports of the same name (`admin` is the Service's
    // alone)
    let mesh = mesh(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}, {{name: admin, port: 9901}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews-vm, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        vm.port()
    ));
    mesh.register(
        mesh_core::registry::Workload::new(
            "reviews-v1",
            "default",
            "reviews",
            [("app", "reviews")],
            pod.ip(),
        )
        .with_port("http", pod.port())
        .with_port("admin", pod.port()),
    );
    let client = plaintext_client(&mesh);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (st, by, _, _) = send_within(&client, "http://reviews:9080/").await;
        assert_eq!(st, 200);
        seen.insert(by);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["reviews-pod", "reviews-vm"]
    );
    // the port the ServiceEntry does not declare: the pod alone
    for _ in 0..10 {
        let (_, by, _, _) = send_within(&client, "http://reviews:9901/").await;
        assert_eq!(by, "reviews-pod");
    }
}

// --- maxConnectionDuration on HTTP connections ----------------------------------------

#[tokio::test]
async fn max_connection_duration_retires_http_connections() {
    // Istio's `applyConnectionPool` gives HTTP clusters `max_connection_duration` too: a
    // connection past it takes no new request and closes
    let mesh = mesh(&with_dr(
        "    connectionPool: {tcp: {maxConnectionDuration: 300ms}}\n",
    ));
    let (client, conns) = reviews_v1_behind(&mesh, Duration::ZERO).await;
    for _ in 0..5 {
        let (st, _, _, _) = send_within(&client, "http://reviews:9080/").await;
        assert_eq!(st, 200);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // 5 requests over about 600 ms: a new connection after each 300 ms
    let n = conns.load(Ordering::SeqCst);
    assert!((2..=3).contains(&n), "{n} connections");
}
