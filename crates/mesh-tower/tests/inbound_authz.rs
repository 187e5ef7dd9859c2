//! Istio's HTTP authorization task (httpbin and sleep in namespace `foo`) end to end over
//! real mTLS on loopback: a `MeshServer` serving an axum `Router`, clients with their own
//! SPIFFE certificates (hyper over tokio-rustls, and `curl`), PeerAuthentication STRICT and
//! PERMISSIVE, policy changes on the next request, gRPC denial, and the metrics scraped.

mod httpbin_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use httpbin_client::{mtls, plain, HTTPBIN_HOST};
use hyper_util::rt::TokioIo;
use mesh_core::mesh::Mesh;
use mesh_tls::{
    CaSource, CertManager, Identity, MeshCa, PeerAuthnMode, RotationOptions, WorkloadCredentials,
};
use mesh_tower::inbound::{ConnectionInfo, MeshServer};
use mesh_tower::metrics::IstioMetrics;
use tokio::net::{TcpListener, TcpStream};

/// The task's policies: PeerAuthentication STRICT for `foo`, `allow-nothing`, and
/// `httpbin-viewer` allowing GET from sleep (istio.io "Authorization on HTTP traffic").
fn config(pa_mode: &str, viewer: bool) -> String {
    let mut s = format!(
        "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec: {{mtls: {{mode: {pa_mode}}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-nothing, namespace: foo}}
spec: {{}}
"
    );
    if viewer {
        s.push_str(
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-viewer, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]
    to: [{operation: {methods: [GET]}}]
",
        );
    }
    s
}

fn reload(mesh: &Mesh, yaml: &str) {
    mesh.reload_loaded(mesh_core::load::load_str(yaml, "test.yaml"))
        .expect("config accepted");
}

struct Pki {
    ca: Arc<MeshCa>,
    _managers: Vec<CertManager>,
}

impl Pki {
    async fn workload(&mut self, ns: &str, sa: &str, dns: &[&str]) -> Arc<WorkloadCredentials> {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        let source = CaSource::new(self.ca.clone())
            .with_dns_sans(dns.iter().map(|s| s.to_string()).collect());
        let m = CertManager::start(id, Arc::new(source), RotationOptions::default())
            .await
            .unwrap();
        let c = m.credentials().clone();
        self._managers.push(m);
        c
    }
}

fn app() -> Router {
    async fn whoami(Extension(c): Extension<ConnectionInfo>) -> String {
        format!("principal={}", c.principal().unwrap_or(""))
    }
    /// What RequestAuthentication left for the application: the verified identity, the
    /// token header (removed unless forwarded), and the claim copied into a header.
    async fn jwt(
        auth: Option<Extension<mesh_core::authz::RequestAuth>>,
        headers: http::HeaderMap,
    ) -> String {
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        format!(
            "request_principal={} authorization={} x-jwt-sub={}",
            auth.map_or("-".to_owned(), |a| a.0.principal),
            h("authorization"),
            h("x-jwt-sub")
        )
    }
    /// The `Host` and the request target the application was handed.
    async fn host(headers: http::HeaderMap, uri: http::Uri) -> String {
        let host = headers.get("host").and_then(|v| v.to_str().ok());
        format!("host={} uri={uri}", host.unwrap_or("-"))
    }
    Router::new()
        .route("/headers", get(whoami).post(whoami))
        .route("/host", get(host))
        .route("/jwt", get(jwt))
        .route("/pkg.Echo/Say", post(|| async { "grpc body" }))
}

async fn start(
    mesh: &Mesh,
    creds: Arc<WorkloadCredentials>,
    metrics: Arc<IstioMetrics>,
) -> (SocketAddr, MeshServer) {
    let labels = [
        ("app".to_string(), "httpbin".to_string()),
        ("version".to_string(), "v1".to_string()),
    ]
    .into();
    let server = MeshServer::builder(mesh.clone(), "foo", "httpbin", labels, creds)
        .service_host(HTTPBIN_HOST)
        .metrics(metrics)
        .port(8000)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener, app()).await });
    (addr, server)
}

fn get_req(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "httpbin.foo:8000")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn httpbin_sleep_authorization_task_over_mtls() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &["localhost"]).await;
    let sleep = pki.workload("foo", "sleep", &[]).await;
    let other = pki.workload("bar", "other", &[]).await;
    let mesh = Mesh::from_yaml(&config("STRICT", true)).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    let (addr, server) = start(&mesh, httpbin, metrics.clone()).await;
    assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Strict);
    // the callers' workloads, as the registry knows them (the server's `source_*` labels
    // come from here): one runs as sleep, two versions of one app run as other
    for (name, ns, sa, version) in [
        ("sleep-v1", "foo", "sleep", "v1"),
        ("other-v1", "bar", "other", "v1"),
        ("other-v2", "bar", "other", "v2"),
    ] {
        mesh.register(mesh_core::registry::Workload {
            name: name.into(),
            namespace: ns.into(),
            service_account: sa.into(),
            labels: [
                ("app".to_string(), sa.to_string()),
                ("version".to_string(), version.to_string()),
            ]
            .into(),
            address: "127.0.0.1".parse().unwrap(),
            ports: Default::default(),
            locality: None,
            weight: 1,
        });
    }

    // sleep is allowed, and the app sees its principal
    let (status, _, body) = mtls(addr, &sleep, false, get_req("/headers"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"principal=cluster.local/ns/foo/sa/sleep");
    // over HTTP/2 too
    let (status, _, _) = mtls(addr, &sleep, true, get_req("/headers")).await.unwrap();
    assert_eq!(status, 200);
    // but only GET
    let mut post = get_req("/headers");
    *post.method_mut() = http::Method::POST;
    let (status, _, body) = mtls(addr, &sleep, false, post).await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(&body[..], b"RBAC: access denied");

    // another identity: 403 RBAC: access denied, as Envoy answers
    let (status, headers, body) = mtls(addr, &other, false, get_req("/headers"))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(&body[..], b"RBAC: access denied");
    assert_eq!(headers["content-type"], "text/plain");

    // gRPC over HTTP/2, denied: HTTP 200 with grpc-status 7 (PERMISSION_DENIED)
    let grpc = Request::post("/pkg.Echo/Say")
        .header("host", "httpbin.foo:8000")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let (status, headers, _) = mtls(addr, &other, true, grpc).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["grpc-status"], "7");
    assert_eq!(headers["content-type"], "application/grpc");

    // plaintext under STRICT: the connection is reset, no HTTP answer
    let e = plain(addr, get_req("/headers")).await;
    assert!(e.is_err(), "plaintext must be refused under STRICT: {e:?}");

    // a policy change applies to the next request, without a restart
    reload(&mesh, &config("STRICT", false));
    let (status, _, body) = mtls(addr, &sleep, false, get_req("/headers"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{body:?}");

    // PERMISSIVE: plaintext accepted, with no principal: the principal-based ALLOW does not
    // match it...
    reload(&mesh, &config("PERMISSIVE", true));
    assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Permissive);
    let (status, _, body) = plain(addr, get_req("/headers")).await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(&body[..], b"RBAC: access denied");
    // ...while mTLS still works on the same port
    let (status, _, _) = mtls(addr, &sleep, false, get_req("/headers"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // with no policy at all, plaintext reaches the app, which sees no principal
    reload(
        &mesh,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: PERMISSIVE}}\n",
    );
    let (status, _, body) = plain(addr, get_req("/headers")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"principal=");

    // the metrics endpoint, scraped over HTTP
    let mlistener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = mlistener.local_addr().unwrap();
    tokio::spawn(mesh_tower::metrics::serve_metrics(mlistener, metrics));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _, body) = plain(maddr, get_req("/stats/prometheus")).await.unwrap();
    assert_eq!(status, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let series = |must: &[&str]| {
        text.lines()
            .any(|l| l.starts_with("istio_requests_total{") && must.iter().all(|m| l.contains(m)))
    };
    let common = [
        "reporter=\"destination\"",
        "destination_workload=\"httpbin\"",
        "destination_workload_namespace=\"foo\"",
        "destination_app=\"httpbin\"",
        "destination_version=\"v1\"",
        "destination_principal=\"spiffe://cluster.local/ns/foo/sa/httpbin\"",
        "destination_service=\"httpbin.foo.svc.cluster.local\"",
        "destination_service_name=\"httpbin\"",
        "destination_service_namespace=\"foo\"",
    ];
    let mut sleep_ok = common.to_vec();
    sleep_ok.extend([
        "source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\"",
        "source_workload=\"sleep-v1\"",
        "source_workload_namespace=\"foo\"",
        "source_app=\"sleep\"",
        "source_version=\"v1\"",
        "source_canonical_service=\"sleep\"",
        "source_canonical_revision=\"v1\"",
        "response_code=\"200\"",
        "connection_security_policy=\"mutual_tls\"",
        "request_protocol=\"http\"",
    ]);
    assert!(series(&sleep_ok), "{text}");
    let mut other_denied = common.to_vec();
    other_denied.extend([
        "source_principal=\"spiffe://cluster.local/ns/bar/sa/other\"",
        // two workloads run as other: what they share is known, the rest is not
        "source_workload=\"unknown\"",
        "source_app=\"other\"",
        "source_version=\"unknown\"",
        "source_canonical_service=\"other\"",
        "response_code=\"403\"",
    ]);
    assert!(series(&other_denied), "{text}");
    let grpc_denied = ["request_protocol=\"grpc\"", "grpc_response_status=\"7\""];
    assert!(series(&grpc_denied), "{text}");
    let plaintext = [
        "source_principal=\"unknown\"",
        "connection_security_policy=\"none\"",
        "response_code=\"200\"",
    ];
    assert!(series(&plaintext), "{text}");
    for name in [
        "istio_request_duration_milliseconds_bucket{",
        "istio_request_bytes_bucket{",
        "istio_response_bytes_bucket{",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

/// `curl` from Debian with the sleep certificate against a STRICT server.
#[tokio::test]
async fn curl_with_client_certificate_under_strict() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed: skipping");
        return;
    }
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &["localhost"]).await;
    let sleep = pki.workload("foo", "sleep", &[]).await;
    let other = pki.workload("bar", "other", &[]).await;
    let mesh = Mesh::from_yaml(&config("STRICT", true)).unwrap();
    let (addr, _server) = start(&mesh, httpbin, Arc::new(IstioMetrics::new())).await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let root = write("root.pem", sleep.current().root_pem());
    let curl = |creds: Option<&WorkloadCredentials>, scheme: &str| {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]);
        if let Some(c) = creds {
            let cert = c.current();
            let sa = cert.identity().service_account().to_owned();
            cmd.args([
                "--cert",
                &write(&format!("{sa}.pem"), cert.chain_pem()),
                "--key",
                &write(&format!("{sa}-key.pem"), cert.key_pem()),
                "--cacert",
                &root,
            ]);
        }
        cmd.arg(format!("{scheme}://localhost:{}/headers", addr.port()));
        cmd.output()
    };
    let out = curl(Some(&sleep), "https").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.ends_with("\n200"), "{stdout}");
    assert!(
        stdout.contains("principal=cluster.local/ns/foo/sa/sleep"),
        "{stdout}"
    );

    let out = curl(Some(&other), "https").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "RBAC: access denied\n403");

    // plaintext: reset, curl exit 56 and status 000 (as with Istio's sidecar)
    let out = curl(None, "http").await.unwrap();
    assert_eq!(out.status.code(), Some(56), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\n000");
}

/// Graceful shutdown: the server stops accepting and returns once connections finish.
#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &[]).await;
    let mesh = Mesh::from_yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: DISABLE}}\n",
    )
    .unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, httpbin)
        .drain_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, app(), async {
                let _ = rx.await;
            })
            .await
    });
    let (status, _, body) = plain(addr, get_req("/headers")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"principal=");
    tx.send(()).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), task).await;
    // serve_with_shutdown returned Ok: the listener is closed (not checked by connecting:
    // a test running in parallel may already have been given the same ephemeral port)
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
}

/// HTTP/1.1 WebSocket upgrades (the one Istio configures) pass through the mesh server's
/// stack.
#[tokio::test]
async fn http_upgrade_passes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &[]).await;
    let mesh = Mesh::from_yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: DISABLE}}\n",
    )
    .unwrap();
    let app = tower::service_fn(
        |mut req: Request<mesh_tower::inbound::ServerBody>| async move {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on.await.unwrap());
                let mut buf = [0u8; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(&buf).await.unwrap();
            });
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(101)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .body(http_body_util::Empty::<Bytes>::new())
                    .unwrap(),
            )
        },
    );
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, httpbin)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: httpbin\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
}

/// reqwest (rustls) with the sleep workload's certificate as its client identity.
#[tokio::test]
async fn reqwest_client_with_workload_identity() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &["localhost"]).await;
    let sleep = pki.workload("foo", "sleep", &[]).await;
    let other = pki.workload("bar", "other", &[]).await;
    let mesh = Mesh::from_yaml(&config("STRICT", true)).unwrap();
    let (addr, _server) = start(&mesh, httpbin, Arc::new(IstioMetrics::new())).await;
    let client = |creds: &WorkloadCredentials| {
        let cert = creds.current();
        let pem = format!("{}{}", cert.key_pem(), cert.chain_pem());
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(cert.root_pem().as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{}/headers", addr.port());
    let r = client(&sleep).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(
        r.text().await.unwrap(),
        "principal=cluster.local/ns/foo/sa/sleep"
    );
    let r = client(&other).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "RBAC: access denied");
    // without a client certificate the STRICT handshake fails
    let anon = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(sleep.current().root_pem().as_bytes()).unwrap(),
        ])
        .build()
        .unwrap();
    assert!(anon.get(&url).send().await.is_err());
}

/// PeerAuthentication precedence per connection: a workload policy's `portLevelMtls` on
/// the server's workload port overrides the namespace's STRICT.
#[tokio::test]
async fn port_level_mtls_overrides_namespace_strict() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &[]).await;
    let ns_strict = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: STRICT}}\n";
    let mesh = Mesh::from_yaml(ns_strict).unwrap();
    let (addr, server) = start(&mesh, httpbin, Arc::new(IstioMetrics::new())).await;
    assert!(plain(addr, get_req("/headers")).await.is_err());
    let port_level = |port: u16| {
        format!(
            "{ns_strict}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: httpbin, namespace: foo}}\nspec:\n  selector: {{matchLabels: {{app: httpbin}}}}\n  portLevelMtls: {{{port}: {{mode: DISABLE}}}}\n"
        )
    };
    // another port: still STRICT
    reload(&mesh, &port_level(9000));
    assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Strict);
    assert!(plain(addr, get_req("/headers")).await.is_err());
    // this workload port (8000): DISABLE, plaintext served on the next connection
    reload(&mesh, &port_level(8000));
    assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Disable);
    let (status, _, body) = plain(addr, get_req("/headers")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"principal=");
}

/// A P-256 key made for these tests, and its public half as a JWKS.
const ES_KEY: &str = include_str!("../../mesh-core/tests/fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");

fn token(claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn with_bearer(path: &str, token: &str) -> Request<Full<Bytes>> {
    let mut r = get_req(path);
    r.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Istio's "Authorization with JWT" task on the mesh server: RequestAuthentication with the
/// keys inline, then with a `jwksUri` served over HTTP; an AuthorizationPolicy requiring
/// the request principal and a group claim.
#[tokio::test]
async fn request_authentication_and_jwt_authorization() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &["localhost"]).await;
    let sleep = pki.workload("foo", "sleep", &[]).await;
    let issuer = "testing@secure.istio.io";
    let policies = |keys: &str| {
        format!(
            r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {issuer}
    {keys}
    outputClaimToHeaders: [{{header: x-jwt-sub, claim: sub}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{issuer}/{issuer}"]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [group1]}}]
"#
        )
    };
    let inline = format!("jwks: '{}'", JWKS.trim());
    let mesh = Mesh::from_yaml(&policies(&inline)).unwrap();
    let (addr, _server) = start(&mesh, httpbin, Arc::new(IstioMetrics::new())).await;
    let good = token(
        serde_json::json!({"iss": issuer, "sub": issuer, "exp": now() + 3600, "groups": ["group1"]}),
    );

    // a valid token with the group: allowed; the app sees the identity, not the token
    let (st, _, body) = mtls(addr, &sleep, false, with_bearer("/jwt", &good))
        .await
        .unwrap();
    assert_eq!(st, 200, "{body:?}");
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        format!("request_principal={issuer}/{issuer} authorization=- x-jwt-sub={issuer}")
    );
    // no token: RequestAuthentication lets it through, the policy does not (403)
    let (st, _, body) = mtls(addr, &sleep, false, get_req("/jwt")).await.unwrap();
    assert_eq!(
        (st, &body[..]),
        (StatusCode::FORBIDDEN, &b"RBAC: access denied"[..])
    );
    // an invalid token: 401 with Envoy's message, before authorization
    let expired = token(
        serde_json::json!({"iss": issuer, "sub": issuer, "exp": now() - 3600, "groups": ["group1"]}),
    );
    let (st, h, body) = mtls(addr, &sleep, false, with_bearer("/jwt", &expired))
        .await
        .unwrap();
    assert_eq!(
        (st, &body[..]),
        (StatusCode::UNAUTHORIZED, &b"Jwt is expired"[..])
    );
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm="));
    let (st, _, body) = mtls(addr, &sleep, false, with_bearer("/jwt", "not.a.jwt"))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{body:?}");
    // a valid token without the group claim: 403
    let no_group = token(serde_json::json!({"iss": issuer, "sub": issuer, "exp": now() + 3600}));
    let (st, _, _) = mtls(addr, &sleep, false, with_bearer("/jwt", &no_group))
        .await
        .unwrap();
    assert_eq!(st, StatusCode::FORBIDDEN);

    // the keys behind a jwksUri, served over HTTP: fetched in the background, then used
    let jwks_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = jwks_listener.local_addr().unwrap();
    tokio::spawn(
        axum::serve(
            jwks_listener,
            Router::new().route("/jwks.json", get(|| async { JWKS })),
        )
        .into_future(),
    );
    reload(
        &mesh,
        &policies(&format!("jwksUri: http://{jwks_addr}/jwks.json")),
    );
    let mut last = (StatusCode::OK, Bytes::new());
    for _ in 0..50 {
        let (st, _, body) = mtls(addr, &sleep, false, with_bearer("/jwt", &good))
            .await
            .unwrap();
        last = (st, body);
        if st == StatusCode::OK {
            break;
        }
        // until the keys arrive, tokens fail closed
        assert_eq!(
            (st, &last.1[..]),
            (
                StatusCode::UNAUTHORIZED,
                &b"Jwks remote fetch is failed"[..]
            )
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last.0, StatusCode::OK, "{:?}", last.1);

    // `presence: REQUIRED` (istio/istio#60823): a request without the token is refused by
    // the RequestAuthentication itself, 401 before the policy, as Envoy's bare provider
    // requirement does
    reload(
        &mesh,
        &policies(&format!("{inline}\n    presence: REQUIRED")),
    );
    let (st, h, body) = mtls(addr, &sleep, false, get_req("/jwt")).await.unwrap();
    assert_eq!(
        (st, &body[..]),
        (StatusCode::UNAUTHORIZED, &b"Jwt is missing"[..])
    );
    assert!(h.contains_key("www-authenticate"));
    let (st, _, body) = mtls(addr, &sleep, false, with_bearer("/jwt", &good))
        .await
        .unwrap();
    assert_eq!(st, 200, "{body:?}");
}

/// A plaintext keep-alive connection accepted under PERMISSIVE is drained once the port
/// becomes STRICT (Envoy drains the filter chain that accepted it); it is not served on.
#[tokio::test]
async fn plaintext_connection_is_drained_when_strict_applies() {
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let httpbin = pki.workload("foo", "httpbin", &["localhost"]).await;
    let permissive =
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: PERMISSIVE}}\n";
    let mesh = Mesh::from_yaml(permissive).unwrap();
    let (addr, server) = start(&mesh, httpbin, Arc::new(IstioMetrics::new())).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let resp = tx.send_request(get_req("/headers")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    reload(&mesh, &permissive.replace("PERMISSIVE", "STRICT"));
    assert_eq!(server.peer_authn_mode(8000), PeerAuthnMode::Strict);
    // the server closes the connection within the recheck interval
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(closed.is_ok(), "the plaintext connection is still open");
    // and a new plaintext connection is refused
    assert!(plain(addr, get_req("/headers")).await.is_err());
}

/// `hosts` (and `request.headers[:authority]`) see Envoy's `:authority`: an absolute-form
/// request line's authority wins over a `Host` header naming another host, as Envoy's
/// HTTP/1 codec sets it, so a DENY on a host cannot be dodged with a second name.
#[tokio::test]
async fn hosts_see_the_request_lines_authority_over_the_host_header() {
    let mesh = Mesh::from_yaml(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {hosts: [admin.example.com]}}]
  - when: [{key: 'request.headers[:authority]', values: [secret.example.com]}]
",
    )
    .unwrap();
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let creds = pki.workload("foo", "httpbin", &[]).await;
    let (addr, _server) = start(&mesh, creds, Arc::new(IstioMetrics::new())).await;
    let answer = |target: &'static str, host: &'static str| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut tcp, req.as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut out)
            .await
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let status = |target: &'static str, host: &'static str| async move {
        answer(target, host)
            .await
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(status("/headers", "admin.example.com").await, "403");
    assert_eq!(status("/headers", "public.example.com").await, "200");
    assert_eq!(
        status("http://admin.example.com/headers", "public.example.com").await,
        "403"
    );
    assert_eq!(
        status("http://secret.example.com/headers", "public.example.com").await,
        "403"
    );
    assert_eq!(
        status("http://public.example.com/headers", "admin.example.com").await,
        "200"
    );
    // and the application is handed what was decided on: the URL's authority as `Host`,
    // the request line in origin form (Envoy's codec, `handlePath`)
    let got = answer("http://public.example.com/host", "admin.example.com").await;
    assert!(got.ends_with("host=public.example.com uri=/host"), "{got}");
    // no `Host` at all: Envoy's 400 `missing_host_header`, before the application
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        b"GET /host HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(!out.contains("host="), "{out}");
    // HTTP/2: a `host` header beside `:authority` is the authority's, as Envoy's codec
    // discards it (the DENY sees `:authority`, and so does the application)
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, host, want) in [
        (
            "public.example.com",
            "admin.example.com",
            Some("host=public.example.com uri="),
        ),
        ("admin.example.com", "public.example.com", None),
    ] {
        let req = Request::get(format!("http://{authority}/host"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = h2.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        match want {
            Some(w) => {
                assert_eq!(status, StatusCode::OK, "{authority}: {body}");
                assert!(body.starts_with(w), "{authority}: {body}");
            }
            None => assert_eq!(status, StatusCode::FORBIDDEN, "{authority}: {body}"),
        }
    }
}

/// An upgrade Istio does not configure (only `websocket`) is Envoy's 403 `upgrade_failed`
/// at a mesh server, and the connection closes; `h2c` is dropped and the request served.
#[tokio::test]
async fn upgrades_other_than_websocket_are_refused_403() {
    let mesh = Mesh::from_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n").unwrap();
    let mut pki = Pki {
        ca: Arc::new(MeshCa::self_signed("cluster.local").unwrap()),
        _managers: Vec::new(),
    };
    let creds = pki.workload("foo", "httpbin", &[]).await;
    let (addr, _server) = start(&mesh, creds, Arc::new(IstioMetrics::new())).await;
    let send = |upgrade: &'static str| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /host HTTP/1.1\r\nHost: httpbin\r\nConnection: upgrade\r\nUpgrade: {upgrade}\r\n\r\n"
        );
        tokio::io::AsyncWriteExt::write_all(&mut tcp, req.as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut out),
        )
        .await;
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    };
    let refused = send("foo").await;
    assert!(refused.starts_with("http/1.1 403 "), "{refused}");
    assert!(refused.contains("connection: close"), "{refused}");
    let served = send("h2c").await;
    assert!(served.starts_with("http/1.1 200 "), "{served}");
}
