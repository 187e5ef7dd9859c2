//! Route actions as Envoy executes them, from a replay of Envoy's router and istiod's route
//! translation: a direct response of 201 or 3xx says where (`Location`, the request's own
//! URL), a local reply to `HEAD` has no body (but its length), and a mirror without a port on a service of
//! several ports goes to the request's port (istiod's `GetDestinationCluster`). Plain
//! backends on loopback behind ServiceEntries.

mod outbound_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use outbound_support::*;

/// A plain backend recording `<name> <path>` for every request it gets.
async fn backend(name: &'static str, seen: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(move |req: Request| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock()
                .unwrap()
                .push(format!("{name} {}", req.uri().path()));
            name
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn entry(name: &str, host: &str, p80: SocketAddr, p8080: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 8080, name: http-alt, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}, http-alt: {}}}}}]
---
",
        p80.port(),
        p8080.port()
    )
}

#[tokio::test]
async fn a_mirror_without_a_port_takes_the_requests_port() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api80 = backend("api-80", Arc::clone(&seen)).await;
    let api8080 = backend("api-8080", Arc::clone(&seen)).await;
    let shadow80 = backend("shadow-80", Arc::clone(&seen)).await;
    let shadow8080 = backend("shadow-8080", Arc::clone(&seen)).await;
    let yaml = format!(
        "{}{}
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.example.internal]
  http:
  - route: [{{destination: {{host: api.example.internal, port: {{number: 8080}}}}}}]
    mirror: {{host: shadow.example.internal}}
",
        entry("api", "api.example.internal", api80, api8080),
        entry("shadow", "shadow.example.internal", shadow80, shadow8080),
    );
    let mesh = mesh(&yaml);
    let pki = Pki::new();
    let client = client(&mesh, &pki, "default", "sleep");
    let (status, _, body, _) = send(&client, get("http://api.example.internal/m")).await;
    assert_eq!((status, body.as_str()), (200, "api-8080"));
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    // the route's port is 8080, the listener's (the request's) 80: the mirror's cluster is
    // `outbound|80||shadow.example.internal`
    assert_eq!(seen, ["api-8080 /m", "shadow-80 /m"]);
}

#[tokio::test]
async fn direct_responses_say_where_and_head_gets_no_body() {
    let yaml = "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.internal]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.internal]
  http:
  - match: [{uri: {prefix: /moved}}]
    directResponse: {status: 301}
  - match: [{uri: {prefix: /made}}]
    directResponse: {status: 201, body: {string: made}}
  - match: [{uri: {prefix: /broken}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: api.example.internal}}]
  - match: [{uri: {prefix: /empty}}]
    directResponse: {status: 200, body: {string: ''}}
  - directResponse: {status: 200, body: {string: hello}}
";
    let mesh = mesh(yaml);
    let pki = Pki::new();
    let client = client(&mesh, &pki, "default", "sleep");
    let (status, _, _, h) = send(&client, get("http://api.example.internal/moved/a?x=1")).await;
    assert_eq!(status, 301);
    assert_eq!(h["location"], "http://api.example.internal/moved/a?x=1");
    let (status, _, body, h) = send(&client, get("http://api.example.internal:80/made")).await;
    assert_eq!((status, body.as_str()), (201, "made"));
    assert_eq!(h["location"], "http://api.example.internal:80/made");
    let (status, _, body, h) = send(&client, get("http://api.example.internal/")).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    assert!(h.get("location").is_none());
    assert_eq!(h["content-type"], "text/plain");
    // an empty body: nothing to describe, no content-type (Envoy's `sendLocalReply`)
    let (status, _, body, h) = send(&client, get("http://api.example.internal/empty")).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(h.get("content-type").is_none(), "{h:?}");

    let head = |uri: &str| {
        http::Request::head(uri)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    // no body, but the length of the one a GET gets (Envoy's `sendLocalReply`)
    let (status, _, body, h) = send(&client, head("http://api.example.internal/")).await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(h["content-length"], "5");
    let (status, _, body, h) = send(&client, head("http://api.example.internal/broken")).await;
    assert_eq!((status, body.as_str()), (418, ""));
    assert_eq!(h["content-length"], "18");
    let (status, _, body, _) = send(&client, get("http://api.example.internal/broken")).await;
    assert_eq!((status, body.as_str()), (418, "fault filter abort"));
}
