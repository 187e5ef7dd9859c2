//! How the mesh client connects to ServiceEntry destinations, over real loopback sockets:
//! HTTP/2 ports speak h2c with prior knowledge, `resolution: NONE` forwards to the original
//! destination (the request's own host), DNS ServiceEntries work without the program
//! starting a resolver, and TLS origination takes its SNI from the request.

mod egress_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::{Identity, MeshCa};
use mesh_tower::outbound::{ClientWorkload, MeshClient};

use egress_support::get;

type Answer = http::Response<Full<Bytes>>;

fn answer(text: String) -> Result<Answer, std::convert::Infallible> {
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

/// A plaintext server that speaks HTTP/2 only (a gRPC server without TLS); it answers with
/// the request's version and `Host`/`:authority`.
async fn h2_only_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    answer(format!("{:?}", req.version()))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A plaintext HTTP/1.1-only server answering with the request's version and `Host`.
async fn http1_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    answer(format!("{:?} {host}", req.version()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// [`egress_support::tls_server`] with a certificate from `ca` for `localhost`, and `ca`'s
/// root (PEM).
async fn tls_server(ca: &MeshCa) -> (SocketAddr, Arc<Mutex<Vec<String>>>, String) {
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["localhost"])
        .unwrap();
    let (addr, snis) = egress_support::tls_server(&cert).await;
    (addr, snis, cert.root_pem().to_owned())
}

fn client(mesh: &Mesh) -> MeshClient {
    MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "default", "app")).build()
}

// 1. HTTP/2 ports -----------------------------------------------------------------------

#[tokio::test]
async fn http2_ports_speak_h2c_with_prior_knowledge() {
    let h2 = h2_only_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: grpc-backend}}
spec:
  hosts: [grpc.example.internal]
  ports:
  - {{number: 50051, name: grpc, protocol: GRPC}}
  - {{number: 8081, name: h2, protocol: HTTP2}}
  - {{number: 8082, name: web, protocol: GRPC-WEB}}
  - {{number: 8083, name: up, protocol: HTTP}}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {h2}, h2: {h2}, web: {h2}, up: {h2}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: grpc-backend}}
spec:
  host: grpc.example.internal
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 8083}}
      connectionPool: {{http: {{h2UpgradePolicy: UPGRADE}}}}
"
    ))
    .unwrap();
    let c = client(&mesh);
    for port in [50051, 8081, 8082, 8083] {
        let uri = format!("http://grpc.example.internal:{port}/pkg.Svc/Method");
        let (status, body, failure) = get(&c, &uri).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "HTTP/2.0"),
            "{uri}: {failure}"
        );
    }
}

#[tokio::test]
async fn http_and_sniffed_ports_stay_http1_on_plaintext_unless_upgraded() {
    let h1 = http1_server().await.port();
    let h2 = h2_only_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: legacy}}
spec:
  hosts: [legacy.example.internal]
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  - {{number: 8080, name: other}}
  - {{number: 9090, name: sniffed}}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {h1}, other: {h1}, sniffed: {h2}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: legacy}}
spec:
  host: legacy.example.internal
  trafficPolicy:
    portLevelSettings:
    # istiod's shouldH2Upgrade: a rule's UPGRADE upgrades a sniffed port too (the user
    # says it is HTTP)
    - port: {{number: 9090}}
      connectionPool: {{http: {{h2UpgradePolicy: UPGRADE}}}}
"
    ))
    .unwrap();
    let c = client(&mesh);
    for port in [80, 8080] {
        let uri = format!("http://legacy.example.internal:{port}/");
        let (status, body, failure) = get(&c, &uri).await;
        assert_eq!(status, 200, "{uri}: {failure}");
        assert!(body.starts_with("HTTP/1.1 "), "{uri}: {body}");
    }
    let uri = "http://legacy.example.internal:9090/";
    let (status, body, failure) = get(&c, uri).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "HTTP/2.0"),
        "{uri}: {failure}"
    );
}

// 2. resolution: NONE ------------------------------------------------------------------

#[tokio::test]
async fn resolution_none_forwards_to_the_request_host() {
    let port = http1_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: NONE
"
    ))
    .unwrap();
    let (status, body, failure) = get(&client(&mesh), &format!("http://localhost:{port}/x")).await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(body, format!("HTTP/1.1 localhost:{port}"));
}

/// A Kubernetes Service of `type: ExternalName` is a DNS name for another host: the
/// request goes there (resolved when connecting), with its Host as written, plaintext.
#[tokio::test]
async fn an_external_name_service_reaches_its_external_name() {
    let port = http1_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: default}}
spec: {{type: ExternalName, externalName: localhost, ports: [{{name: http, port: {port}}}]}}
"
    ))
    .unwrap();
    let (status, body, failure) = get(&client(&mesh), &format!("http://ext:{port}/a")).await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(body, format!("HTTP/1.1 ext:{port}"));
}

/// Istio 1.22+ (`ENABLE_RESOLUTION_NONE_TARGET_PORT`): a NONE ServiceEntry port's
/// `targetPort` replaces the original destination's port (Envoy's
/// `upstream_port_override`); the Host stays as the application wrote it.
#[tokio::test]
async fn resolution_none_goes_to_the_target_port() {
    let target = http1_server().await.port();
    // a port nothing listens on: the one the application asks for
    let asked = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [localhost]
  ports: [{{number: {asked}, name: http, protocol: HTTP, targetPort: {target}}}]
  resolution: NONE
"
    ))
    .unwrap();
    let (status, body, failure) = get(&client(&mesh), &format!("http://localhost:{asked}/x")).await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(body, format!("HTTP/1.1 localhost:{asked}"));
}

#[tokio::test]
async fn resolution_none_wildcard_resolves_the_concrete_host() {
    let port = http1_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild}}
spec:
  hosts: ['*.example.invalid']
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: NONE
"
    ))
    .unwrap();
    // the name the application asked for is looked up (and, being `.invalid`, does not
    // resolve): not `no healthy upstream`
    let (status, body, failure) = get(
        &client(&mesh),
        &format!("http://api.example.invalid:{port}/"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        failure.contains("DNS resolution failed for api.example.invalid"),
        "{failure} / {body}"
    );
}

#[tokio::test]
async fn a_routed_destination_needs_its_own_host_not_a_wildcard_above_it() {
    // istio#49482: a VirtualService destination is the cluster `outbound|port||host` of
    // that very host; a wildcard ServiceEntry has a cluster for `*.example.test` only, so
    // a route to `api.example.test` finds none (503 NC), as istio.io's wildcard egress
    // task warns, until a ServiceEntry names the host itself.
    let port = http1_server().await.port();
    let wildcard = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild}}
spec:
  hosts: ['*.example.test']
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: front}}
spec:
  hosts: [front.internal]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front}}
spec:
  hosts: [front.internal]
  http: [{{route: [{{destination: {{host: api.example.test, port: {{number: {port}}}}}}}]}}]
"
    );
    let mesh = Mesh::from_yaml(&wildcard).unwrap();
    let c = client(&mesh);
    let url = format!("http://front.internal:{port}/");
    let (status, body, _) = get(&c, &url).await;
    assert_eq!(status, 503, "{body}");
    // the wildcard's own hosts still reach it without a route
    let (status, body, _) = get(&c, &format!("http://api.example.test:{port}/")).await;
    assert_eq!(status, 200, "{body}");
    // a ServiceEntry for the host itself is the cluster the route names
    let exact = format!(
        "{wildcard}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api}}
spec:
  hosts: [api.example.test]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
"
    );
    mesh.reload_loaded(mesh_core::load::load_str(&exact, "se.yaml"))
        .unwrap();
    let (status, body, _) = get(&c, &url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("HTTP/1.1 front.internal:{port}"));
}

// 3. DNS ServiceEntries ----------------------------------------------------------------

#[tokio::test]
async fn dns_service_entry_works_without_starting_a_resolver() {
    let port = http1_server().await.port();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: DNS
"
    ))
    .unwrap();
    let c = client(&mesh);
    // the very first request: answered (resolved when connecting if need be)
    let (status, body, failure) = get(&c, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure} / {body}");
    // and the mesh's own refresher fills the registry, without `start_dns`
    let resolved = || {
        let snap = mesh.snapshot();
        let svc = snap.registry().service("localhost", "default").unwrap();
        svc.targets(port, None)
            .filter_map(|t| t.addr)
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while resolved().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        resolved().contains(&SocketAddr::from(([127, 0, 0, 1], port))),
        "{:?}",
        resolved()
    );
    let (status, _, failure) = get(&c, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure}");
}

// 4. TLS origination: SNI from the request ---------------------------------------------

#[tokio::test]
async fn simple_tls_without_sni_uses_the_request_host() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (addr, snis, root) = tls_server(&ca).await;
    let port = addr.port();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, root).unwrap();
    let ca_file = ca_file.display();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: local}}
spec:
  # (`localhost` would be a short name: expanded to localhost.default.svc.cluster.local)
  host: '*'
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{ca_file}'}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wild}}
spec:
  hosts: ['*.example.invalid']
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: wild}}
spec:
  host: '*.example.invalid'
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{ca_file}'}}}}
"
    ))
    .unwrap();
    let c = client(&mesh);
    let (status, body, failure) = get(&c, &format!("http://localhost:{port}/")).await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(body, format!("tls localhost:{port}"));
    assert_eq!(*snis.lock().unwrap(), ["localhost"]);

    // a wildcard host is no TLS server name: the request's host is (here it does not
    // resolve, which is as far as the test can take it)
    let (status, _, failure) = get(&c, &format!("http://api.example.invalid:{port}/")).await;
    assert_eq!(status, 503);
    assert!(failure.starts_with("DNS resolution failed"), "{failure}");
}

/// A DestinationRule's `caCrl` on SIMPLE origination: a server whose certificate the CRL
/// lists is refused (503, nothing sent), the same server with a CRL that does not list it
/// answers; a `caCrl` that cannot be read refuses too, never connects unchecked.
#[tokio::test]
async fn simple_tls_checks_the_destination_rule_ca_crl() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "egress-target").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["localhost"])
        .unwrap();
    let (addr, _snis) = egress_support::tls_server(&cert).await;
    let port = addr.port();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.root_pem()).unwrap();
    let hour = Duration::from_secs(3600);
    let crls = [
        ("good.crl", ca.revocation_list(&[], hour).unwrap()),
        ("revoked.crl", ca.revocation_list(&[&cert], hour).unwrap()),
        ("garbage.crl", "not a CRL".to_owned()),
    ];
    for (name, pem) in &crls {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let mesh = |crl: &str| {
        Mesh::from_yaml(&format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local}}
spec:
  hosts: [localhost]
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: local}}
spec:
  host: '*'
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{}', caCrl: '{}'}}}}
",
            ca_file.display(),
            dir.path().join(crl).display()
        ))
        .unwrap()
    };
    let url = format!("http://localhost:{port}/");
    let (status, body, failure) = get(&client(&mesh("good.crl")), &url).await;
    assert_eq!(
        (status, body),
        (200, format!("tls localhost:{port}")),
        "{failure}"
    );
    for (crl, why) in [
        (
            "revoked.crl",
            "certificate revoked: a configured CRL lists it",
        ),
        ("garbage.crl", "garbage.crl: no X509 CRL block found"),
    ] {
        let (status, _, failure) = get(&client(&mesh(crl)), &url).await;
        assert_eq!(status, 503, "{crl}: {failure}");
        assert!(failure.contains(why), "{crl}: {failure}");
    }
}

/// A TCP relay to `to` that waits `delay` before connecting each accepted connection
/// through (so a TLS handshake over it takes at least that long).
async fn slow_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut up = tokio::net::TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn per_try_timeout_starts_once_a_connection_took_the_request() {
    // Envoy starts the per-try timer in `onPoolReady`: a slow TLS handshake (300 ms) falls
    // under `connectTimeout`, not under a 100 ms `perTryTimeout`
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let (tls, _, root) = tls_server(&ca).await;
    let relay = slow_relay(tls, Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, root).unwrap();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: slow}}
spec:
  hosts: [slow.example.internal]
  ports: [{{number: 8443, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: slow}}
spec:
  host: slow.example.internal
  trafficPolicy: {{tls: {{mode: SIMPLE, sni: localhost, caCertificates: '{}'}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: slow}}
spec:
  hosts: [slow.example.internal]
  http:
  - route: [{{destination: {{host: slow.example.internal}}}}]
    retries: {{attempts: 1, perTryTimeout: 100ms, retryOn: connect-failure}}
",
        relay.port(),
        ca_file.display()
    ))
    .unwrap();
    let c = client(&mesh);
    let (status, body, failure) = get(&c, "http://slow.example.internal:8443/").await;
    assert_eq!(status, 200, "{failure}");
    assert_eq!(body, "tls slow.example.internal:8443");
}

#[tokio::test]
async fn simple_tls_to_a_service_by_its_short_name_names_the_short_name() {
    // Istio's auto SNI and auto SAN validation: without `sni`, the request's Host is the
    // SNI and the name the certificate must carry, here a Kubernetes short name
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "backend").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["backend"])
        .unwrap();
    let (addr, snis) = egress_support::tls_server(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.root_pem()).unwrap();
    let mesh = Mesh::from_yaml(&format!(
        "
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  selector: {{app: backend}}
  ports: [{{name: http, port: 8443}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: backend-1, namespace: default}}
spec:
  address: 127.0.0.1
  labels: {{app: backend}}
  ports: {{http: {}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend, namespace: default}}
spec:
  host: backend
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{}'}}}}
",
        addr.port(),
        ca_file.display()
    ))
    .unwrap();
    let c = client(&mesh);
    let (status, body, failure) = get(&c, "http://backend:8443/").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "tls backend:8443"),
        "{failure}"
    );
    // by its full name, the full name is the SNI, which the certificate does not carry
    let (status, _, failure) = get(&c, "http://backend.default.svc.cluster.local:8443/").await;
    assert_eq!(status, 503, "{failure}");
    let snis = snis.lock().unwrap().clone();
    assert_eq!(snis[0], "backend");
    // (the default retry policy tries the handshake again on connect failure)
    assert!(
        snis.len() > 1
            && snis[1..]
                .iter()
                .all(|s| s == "backend.default.svc.cluster.local"),
        "{snis:?}"
    );
}

/// Envoy's auto SNI and auto SAN validation read the host after the route's
/// `rewrite.authority` (`getRequestHostValue`, `host_rewrite_literal`): the rewritten name
/// is the SNI and the name the certificate must carry, and the `Host` sent. istiod makes a
/// `host` set by the route's request headers, or by its only destination's, the same
/// rewrite.
#[tokio::test]
async fn simple_tls_names_the_host_a_route_rewrote_to() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let id = Identity::new("cluster.local", "default", "api").unwrap();
    let cert = ca
        .issue(&id, Duration::from_secs(3600), &["api.example.com"])
        .unwrap();
    let (addr, snis) = egress_support::tls_server(&cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.root_pem()).unwrap();
    let routes = [
        "{rewrite: {authority: api.example.com}, route: [{destination: {host: api.internal}}]}",
        "{headers: {request: {set: {host: api.example.com}}}, route: [{destination: {host: api.internal}}]}",
        "{route: [{destination: {host: api.internal}, headers: {request: {add: {':authority': api.example.com}}}}]}",
    ];
    for route in routes {
        let mesh = Mesh::from_yaml(&format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.internal]
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: default}}
spec:
  hosts: [api.internal]
  http: [{route}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: api, namespace: default}}
spec:
  host: api.internal
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{}'}}}}
",
            addr.port(),
            ca_file.display()
        ))
        .unwrap();
        snis.lock().unwrap().clear();
        let c = client(&mesh);
        let (status, body, failure) = get(&c, "http://api.internal/").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "tls api.example.com"),
            "{route}: {failure}"
        );
        assert_eq!(*snis.lock().unwrap(), ["api.example.com"], "{route}");
    }
}

#[tokio::test]
async fn connect_timeout_covers_the_tls_handshake_from_the_rule_or_mesh_config() {
    // a server that accepts TCP and never answers the ClientHello: Envoy's connect timer
    // runs until the TLS handshake is done, so the request fails at `connectTimeout`
    // (the DestinationRule's, else MeshConfig's) instead of hanging
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let objects = |pool: &str| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: mute}}
spec:
  hosts: [mute.example.internal]
  ports: [{{number: 8443, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: mute}}
spec:
  host: mute.example.internal
  trafficPolicy: {{tls: {{mode: SIMPLE, insecureSkipVerify: true}}{pool}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: mute}}
spec:
  hosts: [mute.example.internal]
  http: [{{route: [{{destination: {{host: mute.example.internal}}}}], retries: {{attempts: 0}}}}]
"
        )
    };
    let by_rule =
        Mesh::from_yaml(&objects(", connectionPool: {tcp: {connectTimeout: 200ms}}")).unwrap();
    let config = mesh_core::meshconfig::MeshConfig::from_yaml("connectTimeout: 300ms").unwrap();
    let by_mesh_config = Mesh::with_mesh_config(&config);
    by_mesh_config
        .reload_objects(mesh_core::load::load_str(&objects(""), "mute.yaml").objects)
        .unwrap();
    for (mesh, want) in [(by_rule, "200ms"), (by_mesh_config, "300ms")] {
        let c = client(&mesh);
        let started = std::time::Instant::now();
        let (status, _, failure) = tokio::time::timeout(
            Duration::from_secs(5),
            get(&c, "http://mute.example.internal:8443/"),
        )
        .await
        .expect("the connect timeout ends the handshake");
        assert_eq!(status, 503, "{failure}");
        assert!(failure.contains(want), "{want}: {failure}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
