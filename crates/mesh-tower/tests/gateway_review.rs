//! The ingress gateway against Envoy as Istio configures it, on loopback with real TLS
//! clients: `x-forwarded-client-cert` (SANITIZE_SET), client certificate principals in
//! gateway AuthorizationPolicies, authorization before `httpsRedirect`, the redirect's
//! Host kept as sent, and `server: istio-envoy` on every response.
//!
//! Expected XFCC values are built from `openssl` (PEM as `PEM_write_bio_X509` writes it,
//! the subject with `-nameopt RFC2253`, as Envoy prints it) and `sha256sum`, not from the
//! gateway's own code.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tls::{Credential, Identity, MeshCa, WorkloadCert};
use mesh_tower::gateway::GatewayServer;
use tokio::net::TcpListener;

mod secrets_support;
use secrets_support::Secrets;

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("version").output().is_ok()
        || Command::new(cmd).arg("--version").output().is_ok()
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A backend answering with the XFCC it received (`-`: none) and its own `server` header.
async fn echo_backend() -> SocketAddr {
    let app = Router::new().fallback(|req: Request| async move {
        let xfcc = req
            .headers()
            .get("x-forwarded-client-cert")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| "-".into());
        ([("server", "backend")], xfcc)
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

fn labels() -> mesh_core::model::Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

const GATEWAY: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-mtls, protocol: HTTPS}
    hosts: [mtls.example.com]
    tls: {mode: MUTUAL, credentialName: gw-cred}
  - port: {number: 443, name: https-opt, protocol: HTTPS}
    hosts: [opt.example.com]
    tls: {mode: OPTIONAL_MUTUAL, credentialName: gw-cred}
  - port: {number: 443, name: https-simple, protocol: HTTPS}
    hosts: [simple.example.com]
    tls: {mode: SIMPLE, credentialName: gw-cred}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [plain.example.com]
  - port: {number: 80, name: http-redirect, protocol: HTTP}
    hosts: [secure.example.com]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: istio-system}
spec:
  hosts: [mtls.example.com, opt.example.com, simple.example.com, plain.example.com, secure.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: echo.default.svc.cluster.local, port: {number: 8000}}}]
";

struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    ca: MeshCa,
    https: SocketAddr,
    http: SocketAddr,
    gw: GatewayServer,
}

/// A gateway (MUTUAL, OPTIONAL_MUTUAL and SIMPLE on 443, plain and redirecting HTTP on 80)
/// in front of the echo backend, with `extra` config; the gateway's certificate carries a
/// SPIFFE URI SAN (its XFCC `By`).
async fn setup(extra: &str) -> Setup {
    setup_with(extra, None).await
}

/// [`setup`] with the gateway's `forward_client_cert_details`.
async fn setup_with(
    extra: &str,
    mode: Option<mesh_core::meshconfig::ForwardClientCertDetails>,
) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // a second organisation's root and a client certificate with a subject and no URI SAN
    let script = r#"
set -e
openssl req -x509 -sha256 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -subj "/O=Other Inc./CN=Other Root" -keyout other.key -out other.crt 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout carol.key \
  -subj "/C=US/O=Client\, Inc./CN=carol.example.com" -out carol.csr 2>/dev/null
printf "subjectAltName=DNS:carol.example.com,DNS:www.carol.example.com\nextendedKeyUsage=clientAuth\n" > carol.ext
openssl x509 -req -sha256 -days 2 -CA other.crt -CAkey other.key -set_serial 0x1234abcd \
  -in carol.csr -out carol.crt -extfile carol.ext 2>/dev/null
# a subject with what RFC 2253 escapes, a multi-valued RDN and a non-ASCII character
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout dan.key -utf8 \
  -multivalue-rdn -subj "/DC=com/DC=example/O=A;B <x>/CN=Dan É+UID=#1/emailAddress=dan@example.com/street= lead" \
  -out dan.csr 2>/dev/null
printf "subjectAltName=URI:https://dan.example.com/x,URI:spiffe://other.example/dan\nextendedKeyUsage=clientAuth\n" > dan.ext
openssl x509 -req -sha256 -days 2 -CA other.crt -CAkey other.key -set_serial 0x5678 \
  -in dan.csr -out dan.crt -extfile dan.ext 2>/dev/null
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {out:?}");
    let other_root = std::fs::read_to_string(dir.join("other.crt")).unwrap();

    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca
        .issue(
            &gw_id,
            Duration::from_secs(3600),
            &["mtls.example.com", "opt.example.com", "simple.example.com"],
        )
        .unwrap();
    let mut secrets = Secrets::default();
    secrets.0.insert(
        "gw-cred".into(),
        Credential {
            cert_chain_pem: Some(gw_cert.chain_pem().to_owned()),
            key_pem: Some(gw_cert.key_pem().to_owned()),
            crl_pem: None,
            ca_pem: Some(format!("{}{other_root}", ca.trust_bundle().to_pem())),
        },
    );
    let echo = echo_backend().await;
    let yaml = format!(
        "{GATEWAY}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo, namespace: default}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
{extra}",
        echo.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let mut builder = GatewayServer::builder(mesh, "istio-system", labels())
        .credentials(Arc::new(secrets))
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap());
    if let Some(m) = mode {
        builder = builder.forward_client_cert_details(m);
    }
    let gw = builder.start().await.unwrap();
    Setup {
        _tmp: tmp,
        dir,
        ca,
        https: gw.local_addr(443).unwrap(),
        http: gw.local_addr(80).unwrap(),
        gw,
    }
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

/// A client certificate: chain and key, PEM.
type ClientCert = (String, String);

fn workload_cert(ca: &MeshCa, ns: &str, sa: &str, dns: &[&str]) -> (WorkloadCert, ClientCert) {
    let id = Identity::new("cluster.local", ns, sa).unwrap();
    let cert = ca.issue(&id, Duration::from_secs(3600), dns).unwrap();
    let pems = (cert.chain_pem().to_owned(), cert.key_pem().to_owned());
    (cert, pems)
}

/// GET over TLS to the gateway with SNI `host`, optionally with a client certificate and
/// extra request headers.
async fn https_get(
    s: &Setup,
    host: &str,
    client: Option<&ClientCert>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    for c in s.ca.trust_bundle().certs() {
        roots.add(c.clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                mesh_tls::certs_from_pem("client", chain.as_bytes()).unwrap(),
                mesh_tls::key_from_pem("client", key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get("/xfcc").header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tx
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    reply(resp).await
}

async fn http_get(s: &Setup, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(format!("http://{}{path}", s.http)).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    reply(resp).await
}

async fn reply(resp: http::Response<hyper::body::Incoming>) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// What Envoy computes for a client certificate (DER in `der_file`), from openssl and
/// sha256sum: (Hash, url-encoded PEM, RFC 2253 subject).
fn expected_parts(dir: &Path, der_file: &str) -> (String, String, String) {
    let hash = run(dir, "sha256sum", &[der_file]);
    let hash = hash.split_whitespace().next().unwrap().to_owned();
    let pem = run(
        dir,
        "openssl",
        &["x509", "-inform", "DER", "-in", der_file, "-outform", "PEM"],
    );
    // Envoy's PercentEncoding::urlEncode: all but ALPHA, DIGIT and *-._
    let mut cert = String::new();
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || b"*-._".contains(&b) {
            cert.push(char::from(b));
        } else {
            cert.push_str(&format!("%{b:02X}"));
        }
    }
    let subject = run(
        dir,
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", der_file, "-noout", "-subject", "-nameopt", "RFC2253",
        ],
    );
    let subject = subject
        .trim_end()
        .strip_prefix("subject=")
        .unwrap()
        .trim_start()
        .to_owned();
    (hash, cert, subject)
}

const SPOOFED: &str = "By=spiffe://evil;Hash=00;URI=spiffe://cluster.local/ns/foo/sa/admin";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfcc_is_sanitized_and_set_from_the_client_certificate() {
    if !have("openssl") || !have("sha256sum") {
        eprintln!("openssl or sha256sum missing: skipping");
        return;
    }
    let s = setup("").await;
    let spoof = [("x-forwarded-client-cert", SPOOFED)];

    // plain HTTP: a client's XFCC is removed
    let r = http_get(&s, "plain.example.com", "/", &spoof).await;
    assert_eq!((r.status, r.body.as_str()), (200, "-"));
    // TLS without a client certificate (SIMPLE, OPTIONAL_MUTUAL): removed too
    for host in ["simple.example.com", "opt.example.com"] {
        let r = https_get(&s, host, None, &spoof).await;
        assert_eq!((r.status, r.body.as_str()), (200, "-"), "{host}");
    }

    // MUTUAL with a mesh client certificate: replaced by Envoy's element for it, `By` the
    // gateway certificate's URI SAN
    let (alice, alice_pems) = workload_cert(&s.ca, "foo", "alice", &["alice.example.com"]);
    std::fs::write(s.dir.join("alice.der"), &alice.chain_der().unwrap()[0]).unwrap();
    let (hash, cert, subject) = expected_parts(&s.dir, "alice.der");
    assert_eq!(
        subject, "",
        "Istio-shaped workload certificates have an empty subject"
    );
    let want = format!(
        "By=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway;Hash={hash};\
         Cert=\"{cert}\";Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/alice;\
         DNS=alice.example.com"
    );
    for host in ["mtls.example.com", "opt.example.com"] {
        let r = https_get(&s, host, Some(&alice_pems), &spoof).await;
        assert_eq!(r.status, 200, "{host}: {}", r.body);
        assert_eq!(r.body, want, "{host}");
        let r = https_get(&s, host, Some(&alice_pems), &[]).await;
        assert_eq!(r.body, want, "{host}, nothing sent");
    }

    // a certificate from another CA with a subject (RFC 2253, escaped comma), two DNS
    // SANs and no URI SAN: `URI=` stays, empty
    let carol_pems = (
        std::fs::read_to_string(s.dir.join("carol.crt")).unwrap(),
        std::fs::read_to_string(s.dir.join("carol.key")).unwrap(),
    );
    run(
        &s.dir,
        "openssl",
        &[
            "x509",
            "-in",
            "carol.crt",
            "-outform",
            "DER",
            "-out",
            "carol.der",
        ],
    );
    let (hash, cert, subject) = expected_parts(&s.dir, "carol.der");
    assert_eq!(subject, r"CN=carol.example.com,O=Client\, Inc.,C=US");
    let want = format!(
        "By=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway;Hash={hash};\
         Cert=\"{cert}\";Subject=\"{subject}\";URI=;DNS=carol.example.com;\
         DNS=www.carol.example.com"
    );
    let r = https_get(&s, "mtls.example.com", Some(&carol_pems), &spoof).await;
    assert_eq!((r.status, r.body.as_str()), (200, want.as_str()));

    // escapes, a multi-valued RDN, non-ASCII; two URI SANs (no DNS: no DNS key)
    let dan_pems = (
        std::fs::read_to_string(s.dir.join("dan.crt")).unwrap(),
        std::fs::read_to_string(s.dir.join("dan.key")).unwrap(),
    );
    run(
        &s.dir,
        "openssl",
        &[
            "x509", "-in", "dan.crt", "-outform", "DER", "-out", "dan.der",
        ],
    );
    let (hash, cert, subject) = expected_parts(&s.dir, "dan.der");
    assert_eq!(
        subject,
        r"street=\ lead,emailAddress=dan@example.com,UID=\#1+CN=Dan \C3\89,O=A\;B \<x\>,DC=example,DC=com"
    );
    let want = format!(
        "By=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway;Hash={hash};\
         Cert=\"{cert}\";Subject=\"{subject}\";URI=https://dan.example.com/x;\
         URI=spiffe://other.example/dan"
    );
    let r = https_get(&s, "mtls.example.com", Some(&dan_pems), &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, want.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_principals_match_client_certificates() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup(
        "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice-only, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/foo/sa/alice]}}]
  - from: [{source: {namespaces: [bar]}}]
",
    )
    .await;
    let (_, alice) = workload_cert(&s.ca, "foo", "alice", &[]);
    let (_, bob) = workload_cert(&s.ca, "foo", "bob", &[]);
    let (_, dave) = workload_cert(&s.ca, "bar", "dave", &[]);
    for host in ["mtls.example.com", "opt.example.com"] {
        let r = https_get(&s, host, Some(&alice), &[]).await;
        assert_eq!(r.status, 200, "alice at {host}: {}", r.body);
        // source.namespace from the same identity
        let r = https_get(&s, host, Some(&dave), &[]).await;
        assert_eq!(r.status, 200, "dave at {host}: {}", r.body);
        let r = https_get(&s, host, Some(&bob), &[]).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, "RBAC: access denied"),
            "bob at {host}"
        );
        assert_eq!(r.headers["server"], "istio-envoy");
    }
    // no certificate (OPTIONAL_MUTUAL, SIMPLE): no principal
    for host in ["opt.example.com", "simple.example.com"] {
        let r = https_get(&s, host, None, &[]).await;
        assert_eq!(r.status, 403, "{host}");
    }
    // a certificate without a SPIFFE URI SAN has no principal either
    let carol = (
        std::fs::read_to_string(s.dir.join("carol.crt")).unwrap(),
        std::fs::read_to_string(s.dir.join("carol.key")).unwrap(),
    );
    let r = https_get(&s, "mtls.example.com", Some(&carol), &[]).await;
    assert_eq!(r.status, 403);

    // the gateway reports as the source: the client is never the destination of its
    // metrics, not even for the gateway's own 403s
    let text = s.gw.metrics().render();
    assert!(text.contains(r#"response_code="403""#), "{text}");
    assert!(!text.contains("sa/bob"), "{text}");
}

const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_comes_before_https_redirect_which_keeps_the_host() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup(&format!(
        "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: [/admin]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules: [{{issuer: testing@secure.istio.io, jwks: '{}'}}]
",
        JWKS.trim().replace('\n', " ")
    ))
    .await;
    let host = "secure.example.com";
    // allowed: Envoy's require_tls redirect, the Host kept as sent
    let r = http_get(&s, host, "/ok?x=1", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://secure.example.com/ok?x=1");
    assert_eq!(r.headers["server"], "istio-envoy");
    let r = http_get(&s, "secure.example.com:80", "/ok", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "https://secure.example.com:80/ok");
    // RBAC runs before the router: 403, not a redirect
    let r = http_get(&s, host, "/admin", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (403, "RBAC: access denied"));
    assert!(r.headers.get("location").is_none());
    assert_eq!(r.headers["server"], "istio-envoy");
    // jwt_authn too: a token that does not verify gets 401
    let r = http_get(&s, host, "/ok", &[("authorization", "Bearer not-a-jwt")]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers.get("location").is_none());
    // and no virtual host for the Host: the router's 404, after RBAC
    let r = http_get(&s, "other.example.com", "/admin", &[]).await;
    assert_eq!(r.status, 403);
    let r = http_get(&s, "other.example.com", "/ok", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["server"], "istio-envoy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_says_server_istio_envoy() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup("").await;
    // the upstream's own `server: backend` is overwritten
    let r = http_get(&s, "plain.example.com", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get_all("server").iter().collect::<Vec<_>>(),
        ["istio-envoy"]
    );
    let r = https_get(&s, "simple.example.com", None, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["server"], "istio-envoy");
    // a local reply of the connection manager: an upgrade Istio's Envoy does not allow
    let r = http_get(
        &s,
        "plain.example.com",
        "/",
        &[("connection", "upgrade"), ("upgrade", "foo")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["server"], "istio-envoy");
}

/// gatewayTopology `forwardClientCertDetails` other than SANITIZE_SET, as Envoy's
/// `mutateXfccRequestHeader`: FORWARD_ONLY keeps the client's header on a mutual TLS
/// connection, APPEND_FORWARD appends this connection's element to it, SANITIZE drops it;
/// without a client certificate all three remove it.
#[tokio::test]
async fn xfcc_forward_only_append_forward_and_sanitize() {
    use mesh_core::meshconfig::ForwardClientCertDetails as F;
    if !have("openssl") || !have("sha256sum") {
        eprintln!("openssl or sha256sum missing: skipping");
        return;
    }
    let spoof = [("x-forwarded-client-cert", SPOOFED)];
    for mode in [F::ForwardOnly, F::AppendForward, F::Sanitize] {
        let s = setup_with("", Some(mode)).await;
        let r = http_get(&s, "plain.example.com", "/", &spoof).await;
        assert_eq!((r.status, r.body.as_str()), (200, "-"), "{mode:?}");
        let r = https_get(&s, "simple.example.com", None, &spoof).await;
        assert_eq!((r.status, r.body.as_str()), (200, "-"), "{mode:?}");

        let (alice, alice_pems) = workload_cert(&s.ca, "foo", "alice", &["alice.example.com"]);
        std::fs::write(s.dir.join("alice.der"), &alice.chain_der().unwrap()[0]).unwrap();
        let (hash, cert, _) = expected_parts(&s.dir, "alice.der");
        let mine = format!(
            "By=spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway;Hash={hash};\
             Cert=\"{cert}\";Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/alice;\
             DNS=alice.example.com"
        );
        let r = https_get(&s, "mtls.example.com", Some(&alice_pems), &spoof).await;
        assert_eq!(r.status, 200, "{mode:?}: {}", r.body);
        let want = match mode {
            F::ForwardOnly => SPOOFED.to_owned(),
            F::AppendForward => format!("{SPOOFED},{mine}"),
            _ => "-".to_owned(),
        };
        assert_eq!(r.body, want, "{mode:?}");
        // nothing sent: APPEND_FORWARD sets its own element alone
        let r = https_get(&s, "mtls.example.com", Some(&alice_pems), &[]).await;
        let want = match mode {
            F::AppendForward => mine.clone(),
            _ => "-".to_owned(),
        };
        assert_eq!(r.body, want, "{mode:?}, nothing sent");
    }
}
