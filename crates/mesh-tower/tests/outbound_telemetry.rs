//! The mesh client's telemetry as Istio's client sidecar reports it (istio_stats.cc
//! `populatePeerInfo`, `reporter="source"`), scraped from its metrics over real loopback
//! servers: local replies keep the destination service (the route's cluster, else the Host
//! header, `BlackHoleCluster` for the black hole), the destination workload is the
//! endpoint's real workload, a ServiceEntry's service name is its whole host, principals
//! come only from mutual TLS, the cluster id is settable, and the response code details of
//! per-try timeouts, direct responses and redirects are Envoy's.

mod outbound_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_tower::envoy::ResponseCodeDetails;
use mesh_tower::metrics::IstioMetrics;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use outbound_support::*;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn requests(metrics: &IstioMetrics) -> Vec<BTreeMap<String, String>> {
    let text = metrics.render();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("istio_requests_total{") else {
            continue;
        };
        let (labels, _) = rest.rsplit_once("} ").unwrap();
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, after) = rest.split_once("=\"").unwrap();
            let end = after.find('"').unwrap();
            map.insert(k.to_string(), after[..end].to_string());
            rest = after[end + 1..].trim_start_matches(',');
        }
        out.push(map);
    }
    out
}

/// The one series with `code`, waiting for it to be recorded (at the end of the body).
async fn series(metrics: &IstioMetrics, code: &str) -> BTreeMap<String, String> {
    for _ in 0..200 {
        let found: Vec<_> = requests(metrics)
            .into_iter()
            .filter(|l| l.get("response_code").map(String::as_str) == Some(code))
            .collect();
        if let [labels] = found.as_slice() {
            return labels.clone();
        }
        assert!(found.len() <= 1, "several series with {code}: {found:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no series with {code} in\n{}", metrics.render());
}

fn assert_labels(labels: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (k, v) in want {
        assert_eq!(
            labels.get(*k).map(String::as_str),
            Some(*v),
            "{k} in {labels:?}"
        );
    }
}

/// Sends `uri` and reads the answer: status and response code details.
async fn details_of(client: &MeshClient, uri: &str) -> (u16, Option<String>) {
    let req = http::Request::get(uri).body(Empty::<Bytes>::new()).unwrap();
    let resp = client.request(req).await.expect("request");
    let status = resp.status().as_u16();
    let details = resp
        .extensions()
        .get::<ResponseCodeDetails>()
        .map(|d| d.0.clone());
    let _ = resp.into_body().collect().await;
    (status, details)
}

/// A client of its own metrics, each test scraping only its own series.
fn fresh_client(mesh: &mesh_core::mesh::Mesh, pki: &Pki) -> MeshClient {
    client(mesh, pki, "default", "productpage")
}

#[tokio::test]
async fn upstream_failures_keep_the_destination_service_and_workload() {
    let pki = Pki::new();
    let dead = dead_addr().await;
    let yaml = format!(
        "{}{}",
        service_yaml("reviews", "default"),
        service_yaml("ratings", "default")
    );
    let mesh = mesh(&yaml);
    // a workload whose name is not `{app}-{version}`: the name the server itself reports
    register(
        &mesh,
        "reviews-v1-7f9c",
        "default",
        "reviews",
        "reviews",
        "v1",
        dead,
    );

    // UF: the endpoint refuses the connection (retried by Istio's default policy: URX)
    let c = fresh_client(&mesh, &pki);
    let (status, _) = details_of(&c, "http://reviews:9080/").await;
    assert_eq!(status, 503);
    let l = series(c.metrics(), "503").await;
    assert_labels(
        &l,
        &[
            ("reporter", "source"),
            ("response_flags", "UF,URX"),
            ("destination_service", REVIEWS),
            ("destination_service_name", "reviews"),
            ("destination_service_namespace", "default"),
            ("destination_workload", "reviews-v1-7f9c"),
            ("destination_app", "reviews"),
            // no upstream TLS connection: no certificates to read principals from
            ("destination_principal", "unknown"),
            ("source_principal", "unknown"),
        ],
    );

    // UH: a service without endpoints
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://ratings:9080/").await;
    assert_eq!(
        (status, details.as_deref()),
        (503, Some("no_healthy_upstream"))
    );
    let l = series(c.metrics(), "503").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "UH"),
            ("destination_service", "ratings.default.svc.cluster.local"),
            ("destination_service_name", "ratings"),
            ("destination_workload", "unknown"),
        ],
    );
}

#[tokio::test]
async fn route_local_replies_name_the_service_or_the_host() {
    let pki = Pki::new();
    let yaml = format!(
        "{}{}",
        service_yaml("reviews", "default"),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /direct}}]
    directResponse: {status: 429}
  - match: [{uri: {prefix: /moved}}]
    redirect: {uri: /elsewhere}
  - match: [{uri: {prefix: /missing-subset}}]
    route: [{destination: {host: reviews, subset: nope}}]
"
    );
    let mesh = mesh(&yaml);

    // FI: the route's cluster names the service
    let c = fresh_client(&mesh, &pki);
    let (status, _) = details_of(&c, "http://reviews:9080/fault").await;
    assert_eq!(status, 418);
    let l = series(c.metrics(), "418").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "FI"),
            ("destination_service", REVIEWS),
            ("destination_service_name", "reviews"),
        ],
    );

    // NR: no route matches: the Host header
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://reviews:9080/other").await;
    assert_eq!((status, details.as_deref()), (404, Some("route_not_found")));
    let l = series(c.metrics(), "404").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "NR"),
            ("destination_service", "reviews:9080"),
            ("destination_service_name", "reviews:9080"),
        ],
    );

    // NC: an undefined subset
    let c = fresh_client(&mesh, &pki);
    let (status, _) = details_of(&c, "http://reviews:9080/missing-subset").await;
    assert_eq!(status, 503);
    let l = series(c.metrics(), "503").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "NC"),
            ("destination_service", "reviews:9080"),
        ],
    );

    // direct responses and redirects: Envoy's `direct_response` details, not `via_upstream`
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://reviews:9080/direct").await;
    assert_eq!((status, details.as_deref()), (429, Some("direct_response")));
    let l = series(c.metrics(), "429").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "-"),
            ("destination_service", "reviews:9080"),
        ],
    );
    let (status, details) = details_of(&c, "http://reviews:9080/moved").await;
    assert_eq!((status, details.as_deref()), (301, Some("direct_response")));

    // a refused upgrade
    let req = http::Request::get("http://reviews:9080/")
        .header("connection", "upgrade")
        .header("upgrade", "spdy/3")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.extensions()
            .get::<ResponseCodeDetails>()
            .map(|d| d.0.as_str()),
        Some("upgrade_failed")
    );
}

#[tokio::test]
async fn the_black_hole_is_a_direct_response_to_black_hole_cluster() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}{REGISTRY_ONLY}",
        service_yaml("reviews", "default")
    ));
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://unknown.example.com/").await;
    // istiod's `block_all` route: a 502 direct response, no flag
    assert_eq!((status, details.as_deref()), (502, Some("direct_response")));
    let l = series(c.metrics(), "502").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "-"),
            ("destination_service", "unknown.example.com"),
            ("destination_service_name", "BlackHoleCluster"),
        ],
    );
}

#[tokio::test]
async fn per_try_timeout_has_its_own_details_and_keeps_the_service() {
    let pki = Pki::new();
    let yaml = format!(
        "{}{}",
        service_yaml("reviews", "default"),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 1, perTryTimeout: 100ms, retryOn: gateway-error}
"
    );
    let mesh = mesh(&yaml);
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Slow(Duration::from_secs(3))).await;
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://reviews:9080/").await;
    assert_eq!(
        (status, details.as_deref()),
        (504, Some("upstream_per_try_timeout"))
    );
    let l = series(c.metrics(), "504").await;
    // the last attempt's per-try timeout with no retry left: Envoy's `maybeRetryReset`
    // sets URX (`NoRetryLimitExceeded`) beside UT
    assert_labels(
        &l,
        &[
            ("response_flags", "UT,URX"),
            ("destination_service_name", "reviews"),
            ("destination_workload", "reviews-v1"),
        ],
    );

    // the route timeout keeps Envoy's `response_timeout`
    let yaml = format!(
        "{}{}",
        service_yaml("reviews", "default"),
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    timeout: 100ms
"
    );
    reload(&mesh, &yaml);
    let c = fresh_client(&mesh, &pki);
    let (status, details) = details_of(&c, "http://reviews:9080/").await;
    assert_eq!(
        (status, details.as_deref()),
        (504, Some("response_timeout"))
    );
    let l = series(c.metrics(), "504").await;
    // the endpoint the attempt went to stays the destination (Envoy's upstream host)
    assert_labels(
        &l,
        &[
            ("response_flags", "UT"),
            ("destination_service", REVIEWS),
            ("destination_workload", "reviews-v1"),
        ],
    );
}

/// A plaintext server answering 200.
async fn plain_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_service_entry_is_named_by_its_whole_host() {
    let pki = Pki::new();
    let addr = plain_server().await;
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {}}}]
  endpoints: [{{address: 127.0.0.1}}]
",
        addr.port()
    );
    let mesh = mesh(&yaml);
    let c = fresh_client(&mesh, &pki);
    let (status, _) = details_of(&c, "http://api.example.com/").await;
    assert_eq!(status, 200);
    let l = series(c.metrics(), "200").await;
    assert_labels(
        &l,
        &[
            ("destination_service", "api.example.com"),
            ("destination_service_name", "api.example.com"),
            // plaintext: no principal on either side
            ("source_principal", "unknown"),
            ("destination_principal", "unknown"),
            ("connection_security_policy", "unknown"),
        ],
    );
}

#[tokio::test]
async fn principals_come_from_mutual_tls_and_the_cluster_id_is_set() {
    let pki = Pki::new();
    let mesh = mesh(&service_yaml("reviews", "default"));
    let _server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let me = ClientWorkload::new("productpage-v1", "default", "productpage")
        .with_label("app", "productpage")
        .with_cluster_id("east");
    let c = MeshClient::builder(mesh.clone(), me)
        .credentials(pki.creds("default", "productpage"))
        .build();
    let (status, _) = details_of(&c, "http://reviews:9080/").await;
    assert_eq!(status, 200);
    let l = series(c.metrics(), "200").await;
    assert_labels(
        &l,
        &[
            (
                "source_principal",
                "spiffe://cluster.local/ns/default/sa/productpage",
            ),
            (
                "destination_principal",
                "spiffe://cluster.local/ns/default/sa/reviews",
            ),
            // the client reporter never writes a security policy (istio_stats.cc)
            ("connection_security_policy", "unknown"),
            ("source_cluster", "east"),
            ("destination_cluster", "east"),
            ("destination_workload", "reviews-v1"),
        ],
    );
}

#[tokio::test]
async fn gateway_local_replies_keep_the_destination_service() {
    use mesh_tower::gateway::GatewayServer;
    let yaml = format!(
        "{}{}",
        service_yaml("httpbin", "default"),
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: httpbin.default.svc.cluster.local, port: {number: 9080}}}]
"
    );
    let mesh = mesh(&yaml);
    let ingress: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress)
        .cluster_id("east")
        .listener(
            80,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let get = |path: &str| {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header("host", "httpbin.example.com")
            .body(Empty::new())
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await;
            status
        }
    };

    // UH: the routed service has no endpoint; the service is the route's cluster's
    assert_eq!(get("/api").await, 503);
    let l = series(gw.metrics(), "503").await;
    assert_labels(
        &l,
        &[
            ("reporter", "source"),
            ("response_flags", "UH"),
            ("destination_service", "httpbin.default.svc.cluster.local"),
            ("destination_service_name", "httpbin"),
            ("source_cluster", "east"),
        ],
    );
    // NR: no route for the path; the Host header
    assert_eq!(get("/other").await, 404);
    let l = series(gw.metrics(), "404").await;
    assert_labels(
        &l,
        &[
            ("response_flags", "NR"),
            ("destination_service", "httpbin.example.com"),
            ("destination_service_name", "httpbin.example.com"),
        ],
    );
}

#[tokio::test]
async fn the_gateway_access_log_names_the_upstream_host_cluster_and_route() {
    use mesh_tower::gateway::GatewayServer;
    let (logs, _guard) = Logs::capture();

    let dead = dead_addr().await;
    let yaml = format!(
        "{}{}",
        service_yaml("httpbin", "default"),
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com]
  gateways: [istio-system/gw]
  http:
  - name: api
    route: [{destination: {host: httpbin.default.svc.cluster.local, port: {number: 9080}}}]
"
    );
    let mesh = mesh(&yaml);
    register(
        &mesh,
        "httpbin-1",
        "default",
        "httpbin",
        "httpbin",
        "v1",
        dead,
    );
    let ingress: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress)
        .listener(
            80,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{addr}/get"))
        .header("host", "httpbin.example.com")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    let _ = resp.into_body().collect().await;

    let want = format!("\"{dead}\" outbound|9080||httpbin.default.svc.cluster.local ");
    for _ in 0..200 {
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        if let Some(line) = text.lines().find(|l| l.contains("\" 503 UF")) {
            assert!(line.contains(&want), "{want} in {line}");
            assert!(line.contains("route_name=api"), "route name in {line}");
            // the transport failure reason is logged, not `-`
            assert!(line.contains(" \"delayed connect error: "), "{line}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "no access log line in {}",
        String::from_utf8_lossy(&logs.0.lock().unwrap())
    );
}

#[tokio::test]
async fn the_client_access_log_is_opt_in_and_names_the_upstream() {
    let (logs, _guard) = Logs::capture();

    let pki = Pki::new();
    let mesh = mesh(&service_yaml("reviews", "default"));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();

    // off by default
    let quiet = fresh_client(&mesh, &pki);
    assert_eq!(details_of(&quiet, "http://reviews:9080/quiet").await.0, 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!text().contains("/quiet"), "{}", text());

    let c = logging_client(&mesh, &pki);
    assert_eq!(details_of(&c, "http://reviews:9080/logged").await.0, 200);
    let want = format!(
        "\"{}\" outbound|9080||reviews.default.svc.cluster.local ",
        server.addr
    );
    for _ in 0..200 {
        let t = text();
        if let Some(line) = t
            .lines()
            .find(|l| l.contains("\"GET /logged HTTP/1.1\" 200 - via_upstream"))
        {
            assert!(line.contains(&want), "{want} in {line}");
            assert!(line.contains("direction=\"outbound\""), "{line}");
            assert!(line.contains("route_name=default"), "{line}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no access log line in {}", text());
}
