//! A VirtualService route's `corsPolicy`, enforced where the route is evaluated as Envoy's
//! CORS filter does: by the mesh client (over STRICT mTLS to a real mesh server) and by the
//! ingress gateway (a real HTTP listener, a plain backend answering with its own CORS
//! header). Preflights are answered without reaching the application; answers to requests
//! from an allowed origin carry the route's CORS headers. istiod places the fault filter
//! before CORS: a fault's abort answers a preflight too, without CORS headers.

mod outbound_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioExecutor;
use mesh_core::mesh::Mesh;
use mesh_tower::gateway::GatewayServer;
use outbound_support::*;
use tokio::net::TcpListener;

const ROUTES: &str = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /strict}}]
    corsPolicy:
      allowOrigins: [{exact: 'https://app.example'}]
      allowMethods: [GET]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /broken}}]
    corsPolicy: {allowOrigins: [{prefix: 'https://'}]}
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: reviews}}]
  - corsPolicy:
      allowOrigins: [{exact: 'https://app.example'}, {regex: 'https://[a-z]+\\.partner\\.test'}]
      allowMethods: [GET, POST, PUT]
      allowHeaders: ['*']
      exposeHeaders: [x-served-by, x-seen-path]
      maxAge: 90s
      allowCredentials: true
    route: [{destination: {host: reviews}}]
";

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn options(uri: &str, headers: &[(&str, &str)]) -> http::Request<Empty<Bytes>> {
    let mut b = http::Request::builder().method("OPTIONS").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

#[tokio::test]
async fn mesh_client_answers_preflights_and_decorates_allowed_origins() {
    let pki = Pki::new();
    let mesh = mesh(&format!("{}{ROUTES}", service_yaml("reviews", "default")));
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let client = client(&mesh, &pki, "default", "productpage");

    // a preflight from an allowed origin: answered by the client, never sent
    let (status, by, body, h) = send(
        &client,
        options(
            "http://reviews:9080/reviews/1",
            &[
                ("origin", "https://shop.partner.test"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-token,content-type"),
            ],
        ),
    )
    .await;
    assert_eq!((status, by.as_str(), body.as_str()), (200, "", ""));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://shop.partner.test")
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&h, "access-control-allow-methods"),
        Some("GET,POST,PUT")
    );
    // allowHeaders `*` echoes what the browser asked for
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("x-token,content-type")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("90"));
    // Envoy's CORS filter encodes its own reply as any answer to an allowed origin
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("x-served-by,x-seen-path")
    );
    assert_eq!(
        server.hits(),
        0,
        "a preflight answered here is not forwarded"
    );

    // the actual request from that origin: forwarded, its answer decorated
    let (status, by, _, h) = send(
        &client,
        get_with(
            "http://reviews:9080/reviews/1",
            &[("origin", "https://shop.partner.test")],
        ),
    )
    .await;
    assert_eq!((status, by.as_str()), (200, "reviews-v1"));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://shop.partner.test")
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&h, "access-control-expose-headers"),
        Some("x-served-by,x-seen-path")
    );
    assert_eq!(header(&h, "access-control-allow-methods"), None);
    assert_eq!(server.hits(), 1);

    // from an origin the policy does not allow, or without an origin: untouched
    for origin in [Some("https://evil.example"), None] {
        let headers: Vec<_> = origin.iter().map(|o| ("origin", *o)).collect();
        let (status, _, _, h) = send(&client, get_with("http://reviews:9080/r", &headers)).await;
        assert_eq!(status, 200);
        assert!(
            h.keys().all(|k| !k.as_str().starts_with("access-control-")),
            "{origin:?}: {h:?}"
        );
    }
    assert_eq!(server.hits(), 3);

    // a preflight from an origin not allowed: forwarded by default (FORWARD)...
    let (status, by, _, h) = send(
        &client,
        options(
            "http://reviews:9080/r",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        ),
    )
    .await;
    assert_eq!((status, by.as_str()), (200, "reviews-v1"));
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert_eq!(server.hits(), 4);

    // ...and answered here without allow-origin under IGNORE
    let (status, by, _, h) = send(
        &client,
        options(
            "http://reviews:9080/strict",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
        ),
    )
    .await;
    assert_eq!((status, by.as_str()), (200, ""));
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET"));
    assert_eq!(server.hits(), 4);

    // an OPTIONS without access-control-request-method is no preflight: forwarded
    let (status, by, _, h) = send(
        &client,
        options(
            "http://reviews:9080/strict",
            &[("origin", "https://app.example")],
        ),
    )
    .await;
    assert_eq!((status, by.as_str()), (200, "reviews-v1"));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(server.hits(), 5);

    // the fault filter runs before CORS: its abort carries no CORS headers, and answers a
    // preflight as well
    let (status, _, _, h) = send(
        &client,
        get_with(
            "http://reviews:9080/broken",
            &[("origin", "https://x.example")],
        ),
    )
    .await;
    assert_eq!(status, 418);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    let preflight = http::Request::options("http://reviews:9080/broken")
        .header("origin", "https://x.example")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let (status, _, _, h) = send(&client, preflight).await;
    assert_eq!(status, 418);
    assert_eq!(header(&h, "access-control-allow-methods"), None);
    assert_eq!(server.hits(), 5);
}

/// A plain backend that counts its requests and sets its own permissive CORS header,
/// which the gateway's policy replaces.
async fn backend(hits: Arc<AtomicU32>) -> SocketAddr {
    let app = Router::new().fallback(move |req: Request| {
        let hits = Arc::clone(&hits);
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            (
                [("access-control-allow-origin", "*"), ("x-backend", "web")],
                format!("{} {}", req.method(), req.uri().path()),
            )
        }
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

#[tokio::test]
async fn ingress_gateway_enforces_the_route_cors_policy() {
    let hits = Arc::new(AtomicU32::new(0));
    let web = backend(Arc::clone(&hits)).await;
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/gw]
  http:
  - corsPolicy:
      allowOrigin: [https://app.example]
      allowMethods: [GET, DELETE]
      allowHeaders: [authorization]
      maxAge: 10m
    route: [{{destination: {{host: web, port: {{number: 8080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: default}}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8080, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
",
        web.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let labels: mesh_core::model::Labels =
        [("istio".to_string(), "ingressgateway".to_string())].into();
    let gw = GatewayServer::builder(mesh, "istio-system", labels)
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let call = |method: &str, headers: &[(&str, &str)]| {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}/items/7"))
            .header("host", "api.example.com");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Empty::new()).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts, String::from_utf8_lossy(&body).into_owned())
        }
    };

    let (p, body) = call(
        "OPTIONS",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "DELETE"),
        ],
    )
    .await;
    assert_eq!((p.status.as_u16(), body.as_str()), (200, ""));
    assert_eq!(
        header(&p.headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        header(&p.headers, "access-control-allow-methods"),
        Some("GET,DELETE")
    );
    assert_eq!(
        header(&p.headers, "access-control-allow-headers"),
        Some("authorization")
    );
    assert_eq!(header(&p.headers, "access-control-max-age"), Some("600"));
    assert_eq!(header(&p.headers, "access-control-allow-credentials"), None);
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // the policy's origin replaces the backend's `*`
    let (p, body) = call("DELETE", &[("origin", "https://app.example")]).await;
    assert_eq!((p.status.as_u16(), body.as_str()), (200, "DELETE /items/7"));
    assert_eq!(
        p.headers
            .get_all("access-control-allow-origin")
            .iter()
            .collect::<Vec<_>>(),
        ["https://app.example"]
    );
    assert_eq!(header(&p.headers, "x-backend"), Some("web"));

    // another origin: the backend's answer as it is
    let (p, _) = call("GET", &[("origin", "https://other.example")]).await;
    assert_eq!(p.status, 200);
    assert_eq!(header(&p.headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
