//! The inbound listener's security details as an Istio sidecar has them, end to end over
//! loopback with certificates from our CA: `x-forwarded-client-cert` (APPEND_FORWARD on
//! mTLS, removed on plaintext), `connection.sni` on HTTP and TCP, `request.headers[:path]`
//! with the query and `[:scheme]`, several jwtRules and Envoy's audience comparison, and
//! HTTP/1.0 refused with 426.

mod httpbin_client;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use httpbin_client::{tls_to_httpbin, HTTPBIN_HOST};
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::rustls::crypto::hash::HashAlgorithm;
use mesh_tls::rustls::SupportedCipherSuite;
use mesh_tls::{Alpn, Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
";

struct Pki {
    ca: MeshCa,
}

impl Pki {
    fn new() -> Self {
        Pki {
            ca: MeshCa::self_signed("cluster.local").unwrap(),
        }
    }

    fn creds(&self, ns: &str, sa: &str, dns: &[&str]) -> Arc<WorkloadCredentials> {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        WorkloadCredentials::new(self.ca.issue(&id, Duration::from_secs(3600), dns).unwrap())
            .unwrap()
    }
}

fn reload(mesh: &Mesh, yaml: &str) {
    let mut all = SERVICE.to_string();
    if !yaml.is_empty() {
        all.push_str("---\n");
        all.push_str(yaml);
    }
    mesh.reload_loaded(mesh_core::load::load_str(&all, "test.yaml"))
        .expect("config accepted");
}

/// httpbin: `/headers` echoes the XFCC header (`-` when absent), `/jwt` the request
/// principal; every request is counted.
fn app(calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/headers",
            get(|headers: http::HeaderMap| async move {
                let all: Vec<&str> = headers
                    .get_all("x-forwarded-client-cert")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                if all.is_empty() {
                    "-".to_owned()
                } else {
                    all.join("|")
                }
            }),
        )
        .route(
            "/slow",
            get(|headers: http::HeaderMap| async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                headers
                    .get("grpc-timeout")
                    .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
            }),
        )
        .route(
            "/deadline",
            get(|headers: http::HeaderMap| async move {
                headers
                    .get("grpc-timeout")
                    .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
            }),
        )
        .route(
            "/trickle",
            get(|| async {
                // the headers at once, the rest of the body 1.5 s later
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from_static(b"a"))).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let _ = tx.send(Ok(Bytes::from_static(b"b"))).await;
                });
                axum::body::Body::new(Chunks(rx))
            }),
        )
        .route(
            "/envoy",
            get(|headers: http::HeaderMap| async move {
                let mut names: Vec<&str> = headers
                    .keys()
                    .map(|k| k.as_str())
                    .filter(|k| k.starts_with("x-envoy-"))
                    .collect();
                names.sort();
                names.join(",")
            }),
        )
        .route(
            "/jwt",
            get(
                |auth: Option<Extension<mesh_core::authz::RequestAuth>>| async move {
                    auth.map_or("-".to_owned(), |a| a.0.principal)
                },
            ),
        )
        .route(
            "/named",
            get(|| async { ([(http::header::SERVER, "httpbin/1.0")], "named") }),
        )
        .fallback(|| async { "ok" })
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                calls.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            },
        ))
}

struct Httpbin {
    mesh: Mesh,
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
}

async fn start(pki: &Pki, yaml: &str) -> Httpbin {
    start_with(pki, yaml, "{}").await
}

/// [`start`] on a mesh whose MeshConfig is `mesh_config`.
async fn start_with(pki: &Pki, yaml: &str, mesh_config: &str) -> Httpbin {
    let config = mesh_core::meshconfig::MeshConfig::from_yaml(mesh_config).unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    reload(&mesh, yaml);
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels,
        pki.creds("foo", "httpbin", &[]),
    )
    .service_host(HTTPBIN_HOST)
    .port(8000)
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let s = server.clone();
    let a = app(Arc::clone(&calls));
    tokio::spawn(async move { s.serve(listener, a).await });
    mesh.register(Workload {
        name: "httpbin".to_string(),
        namespace: "foo".to_string(),
        service_account: "httpbin".to_string(),
        labels: [("app".to_string(), "httpbin".to_string())].into(),
        address: addr.ip(),
        ports: [("http".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    Httpbin { mesh, addr, calls }
}

type Resp = (StatusCode, Bytes);

/// [`httpbin_client::mtls`], status and body.
async fn mtls(
    addr: SocketAddr,
    client: &WorkloadCredentials,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> std::io::Result<Resp> {
    let (status, _, body) = httpbin_client::mtls(addr, client, h2, req).await?;
    Ok((status, body))
}

/// [`httpbin_client::plain`], status and body.
async fn plain(addr: SocketAddr, req: Request<Full<Bytes>>) -> std::io::Result<Resp> {
    let (status, _, body) = httpbin_client::plain(addr, req).await?;
    Ok((status, body))
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", "httpbin.foo:8000");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// SHA-256 of the peer certificate, lower-case hex (Envoy's `Hash=`), with the TLS
/// provider's hash.
fn sha256_hex(der: &[u8]) -> String {
    let provider = mesh_tls::provider();
    let hash = provider
        .cipher_suites
        .iter()
        .find_map(|s| match s {
            SupportedCipherSuite::Tls13(s)
                if s.common.hash_provider.algorithm() == HashAlgorithm::SHA256 =>
            {
                Some(s.common.hash_provider)
            }
            _ => None,
        })
        .unwrap();
    hash.hash(der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Istio's sidecar inbound: APPEND_FORWARD with Subject, URI and DNS; a plaintext caller's
/// header removed before authorization and the application see the request.
#[tokio::test]
async fn xfcc_append_forward_on_mtls_removed_on_plaintext() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &["sleep.foo.svc.cluster.local"]);
    let leaf = sleep.current().chain_der().unwrap()[0].clone();
    let ours = format!(
        "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={};Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep;DNS=sleep.foo.svc.cluster.local",
        sha256_hex(leaf.as_ref())
    );
    let spoof = "URI=spiffe://cluster.local/ns/admin/sa/root";
    for h2 in [false, true] {
        let (status, body) = mtls(h.addr, &sleep, h2, get_req("/headers", &[]))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, ours.as_str(), "h2={h2}");
        // what the caller sent stays, ours is the rightmost element
        let (_, body) = mtls(
            h.addr,
            &sleep,
            h2,
            get_req("/headers", &[("x-forwarded-client-cert", spoof)]),
        )
        .await
        .unwrap();
        assert_eq!(body, format!("{spoof},{ours}").as_str(), "h2={h2}");
    }
    // several headers are joined into one, as Envoy's header map joins them
    let (_, body) = mtls(
        h.addr,
        &sleep,
        false,
        get_req(
            "/headers",
            &[
                ("x-forwarded-client-cert", "URI=a"),
                ("x-forwarded-client-cert", "URI=b"),
            ],
        ),
    )
    .await
    .unwrap();
    assert_eq!(body, format!("URI=a,URI=b,{ours}").as_str());
    // plaintext (PERMISSIVE): the caller's header never arrives
    let (status, body) = plain(
        h.addr,
        get_req("/headers", &[("x-forwarded-client-cert", spoof)]),
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"-"[..]));

    // authorization sees the header as mutated: a DENY on its presence denies mTLS callers
    // only
    reload(
        &h.mesh,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-xfcc, namespace: foo}
spec:
  action: DENY
  rules: [{when: [{key: 'request.headers[x-forwarded-client-cert]', values: ['*']}]}]
",
    );
    let (status, _) = plain(
        h.addr,
        get_req("/headers", &[("x-forwarded-client-cert", spoof)]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = mtls(h.addr, &sleep, false, get_req("/headers", &[]))
        .await
        .unwrap();
    assert_eq!(status, 403);
}

/// MeshConfig `proxyHeaders.forwardedClientCert` on a mesh server, as Envoy's
/// `mutateXfccRequestHeader` with that mode: SANITIZE removes the header, FORWARD_ONLY
/// passes the caller's on mTLS only, SANITIZE_SET replaces it, ALWAYS_FORWARD_ONLY passes it
/// even in plaintext.
#[tokio::test]
async fn xfcc_modes_from_proxy_headers() {
    let pki = Pki::new();
    let sleep = pki.creds("foo", "sleep", &[]);
    let leaf = sleep.current().chain_der().unwrap()[0].clone();
    let ours = format!(
        "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash={};Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep",
        sha256_hex(leaf.as_ref())
    );
    let spoof = "URI=spiffe://cluster.local/ns/admin/sa/root";
    // (mode, what the app sees over mTLS, in plaintext)
    let cases = [
        ("SANITIZE", "-".to_owned(), "-"),
        ("FORWARD_ONLY", spoof.to_owned(), "-"),
        ("SANITIZE_SET", ours.clone(), "-"),
        ("APPEND_FORWARD", format!("{spoof},{ours}"), "-"),
        ("ALWAYS_FORWARD_ONLY", spoof.to_owned(), spoof),
    ];
    for (mode, over_mtls, in_plaintext) in cases {
        let config = format!("defaultConfig: {{proxyHeaders: {{forwardedClientCert: {mode}}}}}");
        let h = start_with(&pki, "", &config).await;
        let req = || get_req("/headers", &[("x-forwarded-client-cert", spoof)]);
        let (status, body) = mtls(h.addr, &sleep, false, req()).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, over_mtls.as_str(), "{mode} over mTLS");
        let (status, body) = plain(h.addr, req()).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, in_plaintext, "{mode} in plaintext");
    }
    // an unknown mode is refused with a suggestion
    let err = mesh_core::meshconfig::MeshConfig::from_yaml(
        "defaultConfig: {proxyHeaders: {forwardedClientCert: APPEND_FORWARDS}}",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("APPEND_FORWARD"), "{err}");
}

/// A sidecar's inbound listener writes `server: istio-envoy` on every response, replacing
/// the application's, its own local replies too (istiod's `GetProxyHeadersFromProxyConfig`:
/// `istio-envoy` with Envoy's OVERWRITE); `proxyHeaders.server` names another, or none
/// (PASS_THROUGH: the application's passes).
#[tokio::test]
async fn the_server_header_is_the_inbound_listeners() {
    let pki = Pki::new();
    let sleep = pki.creds("foo", "sleep", &[]);
    let server_of = |h: &http::HeaderMap| {
        h.get_all(http::header::SERVER)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let deny = policy(
        "deny-admin",
        "DENY",
        "[{to: [{operation: {paths: [/admin]}}]}]",
    );
    for (mesh_config, want) in [
        ("{}", "istio-envoy"),
        (
            "defaultConfig: {proxyHeaders: {server: {value: shop}}}",
            "shop",
        ),
        (
            "defaultConfig: {proxyHeaders: {server: {disabled: true}}}",
            "httpbin/1.0",
        ),
    ] {
        let h = start_with(&pki, &deny, mesh_config).await;
        let (status, headers, body) =
            httpbin_client::mtls(h.addr, &sleep, false, get_req("/named", &[]))
                .await
                .unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"named"[..]));
        assert_eq!(server_of(&headers), [want], "{mesh_config}");
        // a local reply: the authorization's 403
        let (status, headers, _) =
            httpbin_client::mtls(h.addr, &sleep, false, get_req("/admin", &[]))
                .await
                .unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN);
        let local: Vec<String> = match want {
            "httpbin/1.0" => Vec::new(),
            w => vec![w.to_owned()],
        };
        assert_eq!(server_of(&headers), local, "{mesh_config}: the 403");
    }
}

/// A body of the chunks a channel sends.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|r| r.map(http_body::Frame::data)))
    }
}

/// Istio's inbound route has `max_stream_duration` with `grpc_timeout_header_max: 0`: a
/// request's `grpc-timeout` bounds its stream on the server side too (Envoy's connection
/// manager), and a gRPC application sees it in Envoy's form.
#[tokio::test]
async fn a_grpc_timeout_bounds_the_stream_at_the_server() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &[]);
    let grpc = |path: &str, timeout: &'static str| {
        get_req(
            path,
            &[
                ("content-type", "application/grpc"),
                ("grpc-timeout", timeout),
            ],
        )
    };
    for h2 in [false, true] {
        // the app sees the deadline in milliseconds
        let (status, _, body) = httpbin_client::mtls(h.addr, &sleep, h2, grpc("/deadline", "1S"))
            .await
            .unwrap();
        assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"1000m"[..]));
        // too slow: DEADLINE_EXCEEDED, in time
        let started = std::time::Instant::now();
        let (status, headers, _) = httpbin_client::mtls(h.addr, &sleep, h2, grpc("/slow", "300m"))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["grpc-status"], "4", "h2={h2}");
        assert_eq!(headers["grpc-message"], "downstream duration timeout");
        assert!(started.elapsed() < Duration::from_millis(1300));
    }
    // not gRPC: the header bounds it all the same, with a plain 504
    let (status, _, body) = httpbin_client::mtls(
        h.addr,
        &sleep,
        false,
        get_req("/slow", &[("grpc-timeout", "300m")]),
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body.as_ref()),
        (
            StatusCode::GATEWAY_TIMEOUT,
            &b"downstream duration timeout"[..]
        )
    );
    // a deadline of 0 has passed already: Envoy's timer of 0 fires at once
    let (status, headers, _) = httpbin_client::mtls(h.addr, &sleep, true, grpc("/deadline", "0m"))
        .await
        .unwrap();
    assert_eq!(
        (status, headers["grpc-status"].to_str().unwrap()),
        (StatusCode::OK, "4")
    );
    // no header, no bound
    let (status, _, body) = httpbin_client::mtls(h.addr, &sleep, false, get_req("/slow", &[]))
        .await
        .unwrap();
    assert_eq!((status, body.as_ref()), (StatusCode::OK, &b"-"[..]));
    // an answer already begun is cut when the time is over (the stream reset)
    let cut = httpbin_client::mtls(h.addr, &sleep, true, grpc("/trickle", "300m")).await;
    assert!(cut.is_err(), "{cut:?}");
}

/// A caller's Envoy control headers never reach the application: the inbound listener
/// takes every request for external (`cleanInternalHeaders`); the others pass.
#[tokio::test]
async fn envoy_control_headers_are_removed_before_the_application() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &[]);
    let steer = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-expected-rq-timeout-ms", "300"),
        ("x-envoy-internal", "true"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-attempt-count", "2"),
        ("x-envoy-original-path", "/before"),
    ];
    let (status, body) = mtls(h.addr, &sleep, false, get_req("/envoy", &steer))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "x-envoy-attempt-count,x-envoy-original-path");
    let (_, body) = plain(h.addr, get_req("/envoy", &steer)).await.unwrap();
    assert_eq!(body, "x-envoy-attempt-count,x-envoy-original-path");
}

/// The finding's scenario through our own client: sleep's MeshClient calls httpbin; the
/// application reads the rightmost element's `URI`.
#[tokio::test]
async fn xfcc_from_a_mesh_client() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let client = MeshClient::builder(h.mesh.clone(), ClientWorkload::new("sleep", "foo", "sleep"))
        .credentials(pki.creds("foo", "sleep", &[]))
        .build();
    let req = Request::get("http://httpbin.foo:8000/headers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&body).unwrap();
    let last = text.rsplit(',').next().unwrap();
    assert!(
        last.starts_with("By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash="),
        "{text}"
    );
    assert!(
        last.ends_with(";Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep"),
        "{text}"
    );
}

fn policy(name: &str, action: &str, rules: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: {action}
  rules: {rules}
"
    )
}

/// `connection.sni` is the server name the client sent: mesh clients send
/// `outbound_.8000_._.httpbin.foo.svc.cluster.local`; plaintext has none.
#[tokio::test]
async fn connection_sni_on_http() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &[]);
    let cases = [
        // (policy, mTLS status, plaintext status)
        (
            policy(
                "deny-sni",
                "DENY",
                "[{when: [{key: connection.sni, values: ['*httpbin.foo.svc.cluster.local']}]}]",
            ),
            403,
            200,
        ),
        (
            policy(
                "allow-sni",
                "ALLOW",
                "[{when: [{key: connection.sni, values: ['outbound_.8000_._.httpbin.foo.svc.cluster.local']}]}]",
            ),
            200,
            403,
        ),
        (
            policy(
                "deny-other-sni",
                "DENY",
                "[{when: [{key: connection.sni, notValues: ['*httpbin.foo.svc.cluster.local']}]}]",
            ),
            200,
            403,
        ),
    ];
    for (yaml, want_mtls, want_plain) in cases {
        reload(&h.mesh, &yaml);
        for h2 in [false, true] {
            let (status, _) = mtls(h.addr, &sleep, h2, get_req("/ip", &[])).await.unwrap();
            assert_eq!(status, want_mtls, "{yaml} h2={h2}");
        }
        let (status, _) = plain(h.addr, get_req("/ip", &[])).await.unwrap();
        assert_eq!(status, want_plain, "{yaml} plaintext");
    }
}

/// `connection.sni` on `serve_tcp`: a DENY on the SNI closes the connection before the
/// handler sees it.
#[tokio::test]
async fn connection_sni_on_tcp() {
    let pki = Pki::new();
    let mesh = Mesh::from_yaml(SERVICE).unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "httpbin",
        labels,
        pki.creds("foo", "httpbin", &[]),
    )
    .port(8000)
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Option<String>>::new()));
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        server
            .serve_tcp(listener, move |mut conn| {
                let s = Arc::clone(&s);
                async move {
                    s.lock().unwrap().push(
                        conn.connection_info()
                            .and_then(|i| i.sni().map(str::to_owned)),
                    );
                    let _ = conn.write_all(b"hello").await;
                }
            })
            .await
    });
    let sleep = pki.creds("foo", "sleep", &[]);
    let talk = || async {
        let tls = tls_to_httpbin(&sleep, Alpn::None);
        let mut stream = tls
            .connect(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        buf
    };
    assert_eq!(talk().await, b"hello");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [Some(
            "outbound_.8000_._.httpbin.foo.svc.cluster.local".to_owned()
        )]
    );
    reload(
        &mesh,
        &policy(
            "deny-sni",
            "DENY",
            "[{when: [{key: connection.sni, values: ['*httpbin.foo.svc.cluster.local']}]}]",
        ),
    );
    assert_eq!(talk().await, b"", "denied: closed without a byte");
    assert_eq!(seen.lock().unwrap().len(), 1, "the handler never ran");
    reload(
        &mesh,
        &policy(
            "deny-other",
            "DENY",
            "[{when: [{key: connection.sni, values: ['*.example.com']}]}]",
        ),
    );
    assert_eq!(talk().await, b"hello");
}

/// `request.headers[:path]` is Envoy's `:path`, query included, while `paths` ignore the
/// query; `request.headers[:scheme]` compiles and reads the scheme.
#[tokio::test]
async fn path_query_and_scheme_conditions() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &[]);
    // /tmp/sweep2/a2.yaml
    reload(
        &h.mesh,
        &policy(
            "deny-debug",
            "DENY",
            "[{when: [{key: 'request.headers[:path]', values: ['*debug=1']}]}]",
        ),
    );
    for (path, want) in [
        ("/x?debug=1", 403),
        ("/x?debug=0", 200),
        ("/a/../x?debug=1", 403),
    ] {
        let (status, _) = plain(h.addr, get_req(path, &[])).await.unwrap();
        assert_eq!(status, want, "{path}");
        let (status, _) = mtls(h.addr, &sleep, true, get_req(path, &[]))
            .await
            .unwrap();
        assert_eq!(status, want, "{path} h2");
    }
    reload(
        &h.mesh,
        &policy(
            "public",
            "ALLOW",
            "[{when: [{key: 'request.headers[:path]', values: [/public]}]}]",
        ),
    );
    for (path, want) in [("/public", 200), ("/public?a=1", 403)] {
        let (status, _) = plain(h.addr, get_req(path, &[])).await.unwrap();
        assert_eq!(status, want, "{path}");
    }
    // `paths` drop the query
    reload(
        &h.mesh,
        &policy(
            "public-paths",
            "ALLOW",
            "[{to: [{operation: {paths: [/public]}}]}]",
        ),
    );
    let (status, _) = plain(h.addr, get_req("/public?a=1", &[])).await.unwrap();
    assert_eq!(status, 200);

    // /tmp/sweep2/a3.yaml: compiles, and does not deny everything
    let deny_scheme = |scheme: &str| {
        policy(
            "deny-scheme",
            "DENY",
            &format!("[{{when: [{{key: 'request.headers[:scheme]', values: [{scheme}]}}]}}]"),
        )
    };
    reload(&h.mesh, &deny_scheme("ftp"));
    assert_eq!(plain(h.addr, get_req("/x", &[])).await.unwrap().0, 200);
    reload(&h.mesh, &deny_scheme("http"));
    assert_eq!(plain(h.addr, get_req("/x", &[])).await.unwrap().0, 403);
    // HTTP/1.1 over mTLS is `https`, unless the caller's x-forwarded-proto says otherwise
    assert_eq!(
        mtls(h.addr, &sleep, false, get_req("/x", &[]))
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        mtls(
            h.addr,
            &sleep,
            false,
            get_req("/x", &[("x-forwarded-proto", "http")])
        )
        .await
        .unwrap()
        .0,
        403
    );
    reload(&h.mesh, &deny_scheme("https"));
    assert_eq!(
        mtls(h.addr, &sleep, false, get_req("/x", &[]))
            .await
            .unwrap()
            .0,
        403
    );
    assert_eq!(plain(h.addr, get_req("/x", &[])).await.unwrap().0, 200);
}

fn hs256(kid: &str, secret: &[u8], claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(kid.into()),
            ..Default::default()
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Several jwtRules as Istio's `requires_any`: a valid token for one rule passes even when
/// another rule's location holds a bad one; audiences compared as Envoy does.
#[tokio::test]
async fn several_jwt_rules_and_audiences() {
    let pki = Pki::new();
    // keys "secret-a" and "secret-b", base64url
    let h = start(
        &pki,
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: a.example.com
    audiences: [https://api.example.com]
    jwks: '{"keys": [{"kty": "oct", "kid": "a", "alg": "HS256", "k": "c2VjcmV0LWE"}]}'
    fromHeaders: [{name: x-a}]
  - issuer: b.example.com
    jwks: '{"keys": [{"kty": "oct", "kid": "b", "alg": "HS256", "k": "c2VjcmV0LWI"}]}'
    fromHeaders: [{name: x-b}]
"#,
    )
    .await;
    let a = |aud: &str| {
        hs256(
            "a",
            b"secret-a",
            serde_json::json!({"iss": "a.example.com", "sub": "alice", "aud": aud}),
        )
    };
    let b = hs256(
        "b",
        b"secret-b",
        serde_json::json!({"iss": "b.example.com", "sub": "bob"}),
    );
    // the common Auth0 form: a trailing `/`
    let good_a = a("https://api.example.com/");
    // (request headers, status, body)
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("x-a", &good_a), ("x-b", "garbage")],
            200,
            "a.example.com/alice",
        ),
        (
            vec![("x-a", "garbage"), ("x-b", &b)],
            200,
            "b.example.com/bob",
        ),
        (
            vec![("x-a", &good_a), ("x-b", &b)],
            200,
            "a.example.com/alice",
        ),
        (
            vec![("x-a", "garbage")],
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (vec![("x-a", "garbage"), ("x-b", "garbage")], 401, ""),
        (vec![], 200, "-"),
    ];
    for (headers, want, body) in cases {
        let (status, got) = plain(h.addr, get_req("/jwt", &headers)).await.unwrap();
        assert_eq!(status, want, "{headers:?}: {got:?}");
        if !body.is_empty() {
            assert_eq!(got, body, "{headers:?}");
        }
    }
    let other = a("https://other.example.com");
    let (status, got) = plain(h.addr, get_req("/jwt", &[("x-a", &other)]))
        .await
        .unwrap();
    assert_eq!(
        (status, got.as_ref()),
        (
            StatusCode::FORBIDDEN,
            &b"Audiences in Jwt are not allowed"[..]
        )
    );
    // istiod's `bypass_cors_preflight`: a preflight passes jwt_authn whatever its token,
    // with no identity; a plain OPTIONS with the same token does not
    let mut preflight = get_req(
        "/jwt",
        &[
            ("x-a", "garbage"),
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ],
    );
    *preflight.method_mut() = http::Method::OPTIONS;
    // (the application's own answer: its route takes GET only)
    let (status, _) = plain(h.addr, preflight).await.unwrap();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let mut options = get_req("/jwt", &[("x-a", "garbage")]);
    *options.method_mut() = http::Method::OPTIONS;
    let (status, _) = plain(h.addr, options).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let http_form = a("http://api.example.com");
    let (status, got) = plain(h.addr, get_req("/jwt", &[("x-a", &http_form)]))
        .await
        .unwrap();
    assert_eq!(
        (status, got.as_ref()),
        (StatusCode::OK, &b"a.example.com/alice"[..])
    );
}

/// Raw HTTP/1.x on a stream: the whole reply (the server closes after it).
async fn raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

/// HTTP/1.0 gets Envoy's `426 Upgrade Required` (Istio leaves `accept_http_10` off), on
/// plaintext and mTLS, before authorization and the application.
#[tokio::test]
async fn http10_is_refused_with_426() {
    let pki = Pki::new();
    let h = start(&pki, "").await;
    let sleep = pki.creds("foo", "sleep", &[]);
    let req10 = "GET /headers HTTP/1.0\r\nHost: httpbin.foo:8000\r\n\r\n";
    let check = |reply: &str| {
        // (Envoy writes its status line as `HTTP/1.1`; hyper answers an HTTP/1.0 request
        // in HTTP/1.0: same status, reason and body)
        assert!(
            reply.starts_with("HTTP/1.0 426 Upgrade Required\r\n"),
            "{reply}"
        );
        let lower = reply.to_ascii_lowercase();
        assert!(lower.contains("\r\nconnection: close\r\n"), "{reply}");
        assert!(
            lower.contains("\r\ncontent-type: text/plain\r\n"),
            "{reply}"
        );
        assert!(reply.ends_with("\r\n\r\nUpgrade Required"), "{reply}");
    };
    check(&raw(TcpStream::connect(h.addr).await.unwrap(), req10).await);
    let tls = tls_to_httpbin(&sleep, Alpn::Http1);
    let stream = tls
        .connect(TcpStream::connect(h.addr).await.unwrap())
        .await
        .unwrap();
    check(&raw(stream, req10).await);
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        0,
        "the application never saw them"
    );
    // even a policy that denies everything is not asked
    reload(&h.mesh, &policy("deny-all", "DENY", "[{}]"));
    check(&raw(TcpStream::connect(h.addr).await.unwrap(), req10).await);
    reload(&h.mesh, "");
    // HTTP/1.1 is served
    let reply = raw(
        TcpStream::connect(h.addr).await.unwrap(),
        "GET /ip HTTP/1.1\r\nHost: httpbin.foo:8000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert_eq!(h.calls.load(Ordering::SeqCst), 1);
}

/// Envoy's connection manager removes a request's hop-by-hop headers before any filter
/// (`mutateRequestHeaders`): an AuthorizationPolicy condition on them never matches, and
/// the application does not see them.
#[tokio::test]
async fn hop_by_hop_headers_are_gone_before_authorization() {
    let pki = Pki::new();
    let rules = "[{when: [{key: 'request.headers[connection]', values: ['*']}]}, {when: [{key: 'request.headers[keep-alive]', values: ['*']}]}, {when: [{key: 'request.headers[transfer-encoding]', values: ['*']}]}, {when: [{key: 'request.headers[proxy-connection]', values: ['*']}]}]";
    let h = start(&pki, &policy("deny-hop", "DENY", rules)).await;
    for extra in [
        "Connection: close\r\n",
        "Keep-Alive: timeout=5\r\nConnection: close\r\n",
        "Proxy-Connection: keep-alive\r\nConnection: close\r\n",
    ] {
        let reply = raw(
            TcpStream::connect(h.addr).await.unwrap(),
            &format!("GET /headers HTTP/1.1\r\nHost: httpbin.foo:8000\r\n{extra}\r\n"),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200 "), "{extra}: {reply}");
    }
    let reply = raw(
        TcpStream::connect(h.addr).await.unwrap(),
        "POST /headers HTTP/1.1\r\nHost: httpbin.foo:8000\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    )
    .await;
    // (the application has `/headers` for GET only: its 405 shows the request got there)
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
}
