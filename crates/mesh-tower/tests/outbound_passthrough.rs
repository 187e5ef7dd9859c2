//! `outboundTrafficPolicy`: under `ALLOW_ANY` (Istio's default) a destination the mesh has
//! no cluster for (a host outside the registry, a port a service does not declare, a
//! service the client's Sidecar does not import) passes through to the request's own host
//! and port, as Envoy's `PassthroughCluster` forwards to the original destination: no
//! DestinationRule, no mTLS, no retries, metrics naming `PassthroughCluster`. Under
//! `REGISTRY_ONLY` (MeshConfig's, or the Sidecar's, which wins) it is black-holed: 502 for
//! HTTP, a refused TCP connection. Real loopback servers throughout.

mod outbound_support;

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::model::OutboundMode;
use mesh_core::names::MeshOptions;
use mesh_tower::tcp::TcpConnectError;
use outbound_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plaintext HTTP server outside the mesh answering `outside` and what it was sent.
async fn outside_server() -> SocketAddr {
    use axum::http::HeaderMap;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|h: HeaderMap| async move {
        let host = h
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut resp = axum::http::Response::new(axum::body::Body::from("outside"));
        resp.headers_mut().insert(
            "x-served-by",
            axum::http::HeaderValue::from_static("outside"),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&host) {
            resp.headers_mut().insert("x-seen-host", v);
        }
        resp
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A plaintext TCP echo server outside the mesh.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The client's metrics once a series with `needle` shows (they are recorded when the
/// response body ends).
async fn metrics_with(client: &mesh_tower::outbound::MeshClient, needle: &str) -> String {
    for _ in 0..100 {
        let text = client.metrics().render();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {needle} in {}", client.metrics().render());
}

/// A mesh-wide ISTIO_MUTUAL DestinationRule, which must not reach the passthrough cluster.
const MESH_WIDE_MTLS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: default, namespace: istio-system}\nspec: {host: '*', trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n---\n";

#[tokio::test]
async fn allow_any_passes_an_unknown_host_through_to_the_request_host() {
    let pki = Pki::new();
    let outside = outside_server().await;
    let mesh = mesh(&format!(
        "{MESH_WIDE_MTLS}{}",
        service_yaml("reviews", "default")
    ));
    let c = client(&mesh, &pki, "default", "productpage");
    let uri = format!("http://localhost:{}/x", outside.port());
    let (st, by, body, _) = send(&c, get(&uri)).await;
    assert_eq!(
        (st, by.as_str(), body.as_str()),
        (200, "outside", "outside")
    );
    let text = metrics_with(&c, "PassthroughCluster").await;
    let line = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total") && l.contains("PassthroughCluster"))
        .unwrap_or_else(|| panic!("{text}"));
    // istio_stats' host header fallback: the request's host as written
    let want = format!(r#"destination_service="localhost:{}""#, outside.port());
    assert!(line.contains(&want), "{want} in {line}");
    assert!(line.contains(r#"response_code="200""#), "{line}");
    assert!(
        line.contains(r#"destination_service_namespace="unknown""#),
        "{line}"
    );
}

/// The access log names Envoy's passthrough cluster and route, and the address reached;
/// an IP literal outside every VIP passes through.
#[tokio::test]
async fn the_access_log_names_the_passthrough_cluster_and_route() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let outside = outside_server().await;
    let mesh = mesh(&service_yaml("reviews", "default"));
    let c = logging_client(&mesh, &pki);
    let (st, by, _, _) = send(&c, get(&format!("http://{outside}/logged"))).await;
    assert_eq!((st, by.as_str()), (200, "outside"));
    let line = logs.line_with("\"GET /logged HTTP/1.1\" 200").await;
    // the upstream host is the address the original destination's name reached
    let want = format!("\"{outside}\" PassthroughCluster ");
    assert!(line.contains(&want), "{want} in {line}");
    assert!(
        line.contains(&format!("upstream_host={outside} ")),
        "{line}"
    );
    assert!(
        line.contains("upstream_cluster=PassthroughCluster "),
        "{line}"
    );
    assert!(line.contains("route_name=allow_any"), "{line}");
    // a name: the address it resolved to and reached
    let uri = format!("http://localhost:{}/named", outside.port());
    assert_eq!(send(&c, get(&uri)).await.0, 200);
    let line = logs.line_with("\"GET /named HTTP/1.1\" 200").await;
    assert!(
        line.contains(&format!("upstream_host={outside} ")),
        "{line}"
    );
}

/// A request without a port to a single-port service the client's Sidecar does not import
/// goes to its scheme's port, the original destination, not to the service's port.
#[tokio::test]
async fn a_passed_through_request_without_a_port_goes_to_the_scheme_port() {
    let (logs, _guard) = Logs::capture();
    let pki = Pki::new();
    let outside = outside_server().await;
    let mesh = mesh(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: local, namespace: other}}\nspec: {{hosts: [localhost], ports: [{{number: {}, name: http, protocol: HTTP}}], resolution: DNS}}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{egress: [{{hosts: ['./*']}}]}}\n",
        outside.port()
    ));
    let c = logging_client(&mesh, &pki);
    // (whatever answers on port 80 here, if anything, it is not the service's port)
    let (_, by, _, _) = send(&c, get("http://localhost/portless")).await;
    assert_ne!(by, "outside");
    let line = logs.line_with("\"GET /portless HTTP/1.1\"").await;
    assert!(
        line.contains("upstream_cluster=PassthroughCluster "),
        "{line}"
    );
}

/// An HTTP request to a service's VIP routes to the service, as istiod lists the VIP among
/// its virtual host's domains; it never passes through to the VIP itself.
#[tokio::test]
async fn a_service_vip_as_the_host_routes_to_the_service() {
    let pki = Pki::new();
    let mesh = mesh("apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  clusterIP: 10.96.0.10\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080}]\n---\n");
    let server = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");
    let (st, by, _, _) = send(&c, get("http://10.96.0.10:9080/")).await;
    assert_eq!((st, by.as_str()), (200, "reviews-v1"));
    assert_eq!(server.hits(), 1);
    let text = metrics_with(&c, "reviews.default.svc.cluster.local").await;
    assert!(!text.contains("PassthroughCluster"), "{text}");
}

#[tokio::test]
async fn registry_only_black_holes_and_a_sidecar_overrides_the_mesh_config() {
    let pki = Pki::new();
    let outside = outside_server().await;
    let mesh = Mesh::new(MeshOptions {
        outbound_traffic_policy: OutboundMode::RegistryOnly,
        ..MeshOptions::default()
    });
    let services = service_yaml("reviews", "default");
    reload(&mesh, &services);
    let c = client(&mesh, &pki, "default", "productpage");
    let uri = format!("http://localhost:{}/", outside.port());
    let (st, _, body, _) = send(&c, get(&uri)).await;
    assert_eq!((st, body.as_str()), (502, ""), "MeshConfig REGISTRY_ONLY");
    metrics_with(&c, "BlackHoleCluster").await;

    // the client's Sidecar says ALLOW_ANY: it wins over MeshConfig
    reload(
        &mesh,
        &format!("{services}apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY}}}}\n"),
    );
    let (st, by, _, _) = send(&c, get(&uri)).await;
    assert_eq!((st, by.as_str()), (200, "outside"), "Sidecar ALLOW_ANY");

    // a Sidecar whose block has no mode is REGISTRY_ONLY (the proto's zero value)
    let allow_any_mesh = self::mesh(&format!(
        "{services}apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{outboundTrafficPolicy: {{}}}}\n"
    ));
    let c = client(&allow_any_mesh, &pki, "default", "productpage");
    assert_eq!(send(&c, get(&uri)).await.0, 502, "the block without a mode");

    // an `egressProxy` the registry does not have is a cluster Envoy does not have: 503 NC,
    // never around it
    reload(
        &allow_any_mesh,
        &format!("{services}apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY, egressProxy: {{host: egress.istio-system.svc.cluster.local, port: {{number: 80}}}}}}}}\n"),
    );
    let (st, by, _, headers) = send(&c, get(&uri)).await;
    assert_eq!((st, by.as_str()), (503, ""), "egressProxy: never around it");
    assert!(headers.get("x-served-by").is_none());
}

/// A Sidecar's `egressProxy` takes what would pass through: the request goes to the proxy
/// service (mutual TLS, its identity), Host kept, as istiod's catch-all route names the
/// proxy's cluster; a TCP connection too. What the registry knows is not affected.
#[tokio::test]
async fn the_egress_proxy_takes_what_has_no_cluster() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let yaml = format!(
        "{}{}apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY, egressProxy: {{host: egress.default.svc.cluster.local, port: {{number: 9080}}}}}}}}\n",
        service_yaml("egress", "default"),
        service_yaml("reviews", "default"),
    );
    let mesh = mesh(&yaml);
    let egress = start(&pki, "egress-v1", "default", "egress", Behaviour::Ok).await;
    register(
        &mesh,
        "egress-v1",
        "default",
        "egress",
        "egress",
        "v1",
        egress.addr,
    );
    let reviews = start_reviews_v1(&pki, &mesh, Behaviour::Ok).await;
    let c = client(&mesh, &pki, "default", "productpage");

    let (st, by, _, headers) = send(&c, get("http://api.outside.example/v1/items")).await;
    assert_eq!((st, by.as_str()), (200, "egress-v1"));
    assert_eq!(headers["x-seen-host"], "api.outside.example");
    assert_eq!(headers["x-seen-path"], "/v1/items");
    assert_eq!(
        egress.peers.lock().unwrap().as_slice(),
        ["cluster.local/ns/default/sa/productpage"],
        "mutual TLS to the proxy"
    );
    let text = metrics_with(&c, "egress-v1").await;
    assert!(!text.contains("PassthroughCluster"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("istio_requests_total")
            && l.contains(r#"destination_service="egress.default.svc.cluster.local""#)),
        "the proxy is the destination service: {text}"
    );

    // a service the registry knows goes where it goes
    assert_eq!(send(&c, get("http://reviews:9080/")).await.1, "reviews-v1");
    assert_eq!(reviews.hits(), 1);

    // a port the known service does not declare goes to the proxy too
    let (st, by, _, headers) = send(&c, get("http://reviews:7000/")).await;
    assert_eq!((st, by.as_str()), (200, "egress-v1"));
    assert_eq!(headers["x-seen-host"], "reviews:7000");

    // an https request through a proxy whose DestinationRule sets TLS: the application's
    // own TLS cannot be tunneled inside the proxy's, refused
    reload(
        &mesh,
        &format!("{yaml}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: egress, namespace: default}}\nspec: {{host: egress, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}\n"),
    );
    let (st, by, _, _) = send(&c, get("https://api.outside.example/")).await;
    assert_eq!((st, by.as_str()), (503, ""));
    reload(&mesh, &yaml);

    // a TCP connection with no cluster goes to the proxy too
    let mut s = c
        .connect("db.outside.example:5432")
        .await
        .expect("to the proxy");
    s.write_all(b"GET /tcp HTTP/1.1\r\nHost: db.outside.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("x-served-by: egress-v1"), "{answer}");
}

/// A service the client's Sidecar does not import, and a port a service does not declare,
/// are no clusters either: passed through under ALLOW_ANY, as plaintext to the host and
/// port the request names, whatever the service's own endpoints.
#[tokio::test]
async fn unimported_services_and_undeclared_ports_pass_through() {
    let pki = Pki::new();
    let outside = outside_server().await;
    let port = outside.port();
    // `localhost` as a ServiceEntry of namespace `other` whose endpoint is a dead address
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: local, namespace: other}}\nspec:\n  hosts: [localhost]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}, {{number: 1, name: http-one, protocol: HTTP}}]\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints: [{{address: 127.0.0.2, ports: {{http: {dead}, http-one: {dead}}}}}]\n---\n",
        dead = dead_addr().await.port(),
    );
    let sidecar = |mode: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{egress: [{{hosts: ['./*']}}]{mode}}}\n---\n")
    };
    let mesh = mesh(&format!("{entry}{}", sidecar("")));
    let c = client(&mesh, &pki, "default", "productpage");
    let uri = format!("http://localhost:{port}/");
    let (st, by, _, _) = send(&c, get(&uri)).await;
    assert_eq!(
        (st, by.as_str()),
        (200, "outside"),
        "not imported: passthrough"
    );
    metrics_with(&c, "PassthroughCluster").await;

    // imported, the entry's (dead) endpoint is the destination
    reload(&mesh, &entry);
    let (st, _, _, _) = send(&c, get(&uri)).await;
    assert_eq!(st, 503, "imported: the entry's endpoint");

    // a port the entry does not declare passes through
    let other = outside_server().await;
    let (st, by, _, _) = send(&c, get(&format!("http://localhost:{}/", other.port()))).await;
    assert_eq!(
        (st, by.as_str()),
        (200, "outside"),
        "undeclared port: passthrough"
    );

    // REGISTRY_ONLY: both are black-holed
    reload(
        &mesh,
        &format!(
            "{entry}{}",
            sidecar(", outboundTrafficPolicy: {mode: REGISTRY_ONLY}")
        ),
    );
    assert_eq!(send(&c, get(&uri)).await.0, 502);
    let (st, _, _, _) = send(&c, get(&format!("http://localhost:{}/", other.port()))).await;
    assert_eq!(st, 502);
}

#[tokio::test]
async fn tcp_connections_pass_through_under_allow_any_only() {
    let pki = Pki::new();
    let echo = echo_server().await;
    let mesh = mesh(&service_yaml("reviews", "default"));
    let c = client(&mesh, &pki, "default", "productpage");
    let target = format!("localhost:{}", echo.port());
    let mut s = c.connect(&target).await.expect("passthrough");
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    drop(s);
    // istio_stats has no service for the passthrough cluster, and no Host header for TCP
    let text = metrics_with(&c, "istio_tcp_connections_opened_total").await;
    let line = text
        .lines()
        .find(|l| l.starts_with("istio_tcp_connections_opened_total"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(r#"destination_service="unknown""#)
            && line.contains(r#"destination_service_name="PassthroughCluster""#),
        "{line}"
    );

    reload(
        &mesh,
        &format!("{}{REGISTRY_ONLY}", service_yaml("reviews", "default")),
    );
    let err = c.connect(&target).await.unwrap_err();
    assert!(matches!(err, TcpConnectError::BlackHole { .. }), "{err}");
}

/// A client calling ever new outside hosts keeps a bounded number of passthrough
/// destinations (and their connection pools): those not used since the last pass go, and
/// one in use between passes stays (its pooled connection is reused throughout).
#[tokio::test]
async fn passthrough_destinations_stay_bounded() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let pki = Pki::new();
    // one server answering on every loopback address (Linux routes 127/8 to lo), counting
    // the connections made to 127.0.0.1
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let to_first = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&to_first);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            if tcp
                .local_addr()
                .is_ok_and(|a| a.ip() == std::net::Ipv4Addr::LOCALHOST)
            {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"outside")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let mesh = mesh(&service_yaml("reviews", "default"));
    let c = client(&mesh, &pki, "default", "productpage");
    let destinations = |c: &mesh_tower::outbound::MeshClient| -> usize {
        let text = format!("{c:?}");
        let at = text.find("destinations: ").expect("the count in Debug") + 14;
        text[at..]
            .split(|ch: char| !ch.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let busy = format!("http://127.0.0.1:{port}/");
    let mut most = 0;
    for i in 0..1500u32 {
        if i % 20 == 0 {
            let (st, _, body, _) = send(&c, get(&busy)).await;
            assert_eq!((st, body.as_str()), (200, "outside"));
        }
        let host = format!("127.0.{}.{}", 1 + i / 250, 1 + i % 250);
        let (st, _, body, _) = send(&c, get(&format!("http://{host}:{port}/"))).await;
        assert_eq!((st, body.as_str()), (200, "outside"), "{host}");
        if i % 100 == 99 {
            most = most.max(destinations(&c));
        }
    }
    // the reviews service's destination is not among them; 512 plus half as many again
    assert!(most <= 512 + 256 + 1, "{most} destinations kept");
    assert!(destinations(&c) < 1500, "nothing was forgotten");
    assert_eq!(
        to_first.load(Ordering::SeqCst),
        1,
        "the busy destination kept its pooled connection"
    );
}

/// An egress proxy that is no cluster for the client: a port its service does not declare,
/// a service the Sidecar does not import, none at all: 503 NC, never around it.
#[tokio::test]
async fn an_egress_proxy_that_is_no_cluster_answers_503() {
    let pki = Pki::new();
    let sidecar = |egress: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{egress: [{{hosts: ['./*']}}], outboundTrafficPolicy: {{mode: ALLOW_ANY, egressProxy: {{{egress}}}}}}}\n---\n")
    };
    let services = format!(
        "{}{}",
        service_yaml("egress", "default"),
        service_yaml("egress", "istio-system")
    );
    for (egress, why) in [
        (
            "host: egress.default.svc.cluster.local, port: {number: 8443}",
            "undeclared port",
        ),
        (
            "host: egress.istio-system.svc.cluster.local, port: {number: 9080}",
            "not imported",
        ),
        (
            "host: nowhere.default.svc.cluster.local, port: {number: 9080}",
            "no service",
        ),
        (
            "host: egress.default.svc.cluster.local, subset: v9, port: {number: 9080}",
            "no subset",
        ),
    ] {
        let mesh = mesh(&format!("{services}{}", sidecar(egress)));
        let c = client(&mesh, &pki, "default", "productpage");
        let (st, by, _, _) = send(&c, get("http://api.outside.example/")).await;
        assert_eq!((st, by.as_str()), (503, ""), "{why}");
        let err = c.connect("db.outside.example:5432").await.unwrap_err();
        assert!(
            matches!(err, TcpConnectError::ClusterNotFound { .. }),
            "{why}: {err}"
        );
    }
}

/// The catch-all route to the egress proxy has no retry policy: a 503 from the proxy is the
/// answer, sent once.
#[tokio::test]
async fn the_egress_proxy_route_does_not_retry() {
    let pki = Pki::new();
    let mesh = mesh(&format!(
        "{}apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY, egressProxy: {{host: egress.default.svc.cluster.local, port: {{number: 9080}}}}}}}}\n",
        service_yaml("egress", "default"),
    ));
    let egress = start(
        &pki,
        "egress-v1",
        "default",
        "egress",
        Behaviour::FailFirst(1),
    )
    .await;
    register(
        &mesh,
        "egress-v1",
        "default",
        "egress",
        "egress",
        "v1",
        egress.addr,
    );
    let c = client(&mesh, &pki, "default", "productpage");
    let (st, by, _, _) = send(&c, get("http://api.outside.example/")).await;
    assert_eq!((st, by.as_str()), (503, "egress-v1"));
    assert_eq!(egress.hits(), 1, "not retried");
}
