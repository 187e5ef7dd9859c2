//! The ingress gateway on loopback with real clients (`curl` from Debian, hyper over
//! tokio-rustls): Istio's "secure gateways" task (two hosts, two certificates chosen by
//! SNI, made with `openssl` as the task does), MUTUAL TLS, `httpsRedirect`, PASSTHROUGH by
//! SNI to a TLS backend the gateway holds no certificate for, and the httpbin-gateway
//! sample for plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use axum::extract::Request;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tower::gateway::{GatewayError, GatewayServer};
use tokio::net::TcpListener;

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("version").output().is_ok()
        || Command::new(cmd).arg("--version").output().is_ok()
}

/// Certificates as in istio.io "Secure Gateways": a root per organisation, a leaf per host
/// (with a DNS SAN, which rustls-based clients need), and a client certificate.
fn make_certs(dir: &Path) {
    let script = r#"
set -e
ca() { openssl req -x509 -sha256 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -subj "/O=$1 Inc./CN=$1" -keyout "$1.key" -out "$1.crt" 2>/dev/null; }
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" \
    -subj "/CN=$1/O=$1 organization" -out "$1.csr" 2>/dev/null
  printf "subjectAltName=DNS:$1\nextendedKeyUsage=serverAuth,clientAuth\n" > "$1.ext"
  openssl x509 -req -sha256 -days 2 -CA "$2.crt" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
    -in "$1.csr" -out "$1.crt" -extfile "$1.ext" 2>/dev/null
}
cred() { mkdir -p "creds/$1"; cp "$2.crt" "creds/$1/tls.crt"; cp "$2.key" "creds/$1/tls.key"; }
ca example.com; ca helloworld-ca; ca nginx-ca
leaf httpbin.example.com example.com
leaf helloworld.example.com helloworld-ca
leaf mtls.example.com example.com
leaf nginx.example.com nginx-ca
leaf client.example.com example.com
cred httpbin-credential httpbin.example.com
cred helloworld-credential helloworld.example.com
cred mtls-credential mtls.example.com
mkdir -p creds/mtls-credential-cacert; cp example.com.crt creds/mtls-credential-cacert/ca.crt
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {out:?}");
}

/// A backend answering with its name and what it received.
async fn backend(name: &'static str) -> SocketAddr {
    let app = Router::new().fallback(move |req: Request| async move {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let gw = req
            .headers()
            .get("x-gw")
            .map(|v| format!(" gw={}", v.to_str().unwrap_or("?")))
            .unwrap_or_default();
        format!(
            "{name} host={} proto={} path={}{gw}",
            h("host"),
            h("x-forwarded-proto"),
            req.uri()
        )
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

/// A TLS backend (nginx in Istio's passthrough task) with its own certificate.
async fn tls_backend(dir: &Path) -> SocketAddr {
    let chain = std::fs::read(dir.join("nginx.example.com.crt")).unwrap();
    let key = std::fs::read(dir.join("nginx.example.com.key")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(mesh_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            mesh_tls::certs_from_pem("nginx", &chain).unwrap(),
            mesh_tls::key_from_pem("nginx", &key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from("Welcome to nginx!")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn service_entry(name: &str, host: &str, port: u16, protocol: &str, at: SocketAddr) -> String {
    format!(
        "
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: p, protocol: {protocol}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{p: {}}}}}]
",
        at.port()
    )
}

const GATEWAY: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-httpbin, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
    hosts: [httpbin.example.com]
  - port: {number: 443, name: https-helloworld, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: helloworld-credential}
    hosts: [helloworld.example.com]
  - port: {number: 443, name: https-mtls, protocol: HTTPS}
    tls: {mode: MUTUAL, credentialName: mtls-credential}
    hosts: [mtls.example.com]
  - port: {number: 443, name: tls-nginx, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [nginx.example.com]
  - port: {number: 80, name: http, protocol: HTTP}
    tls: {httpsRedirect: true}
    hosts: [httpbin.example.com, helloworld.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.example.com, mtls.example.com]
  gateways: [mygateway]
  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: helloworld, namespace: default}
spec:
  hosts: [helloworld.example.com]
  gateways: [mygateway]
  http:
  - match: [{uri: {prefix: /hello}}]
    route: [{destination: {host: helloworld, port: {number: 5000}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx, namespace: default}
spec:
  hosts: [nginx.example.com]
  gateways: [mygateway]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: my-nginx.mesh-external.svc.cluster.local, port: {number: 443}}}]
";

fn ingress_labels() -> mesh_core::model::Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

struct Curl {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn curl(args: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    Curl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

struct Setup {
    mesh: Mesh,
    yaml: String,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    https: SocketAddr,
    http: SocketAddr,
    _gw: GatewayServer,
}

async fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    make_certs(&dir);
    let httpbin = backend("httpbin").await;
    let helloworld = backend("helloworld").await;
    let nginx = tls_backend(&dir).await;
    let mut yaml = GATEWAY.to_owned();
    yaml.push_str(&service_entry(
        "httpbin",
        "httpbin.default.svc.cluster.local",
        8000,
        "HTTP",
        httpbin,
    ));
    yaml.push_str(&service_entry(
        "helloworld",
        "helloworld.default.svc.cluster.local",
        5000,
        "HTTP",
        helloworld,
    ));
    yaml.push_str(&service_entry(
        "nginx",
        "my-nginx.mesh-external.svc.cluster.local",
        443,
        "TLS",
        nginx,
    ));
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress_labels())
        .credential_dir(dir.join("creds"))
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    Setup {
        mesh,
        yaml,
        _dir: tmp,
        https: gw.local_addr(443).unwrap(),
        http: gw.local_addr(80).unwrap(),
        dir,
        _gw: gw,
    }
}

// curl runs as a blocking child process: keep a second worker for the gateway
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_two_certificates_by_sni_mutual_redirect_and_passthrough() {
    if !have("curl") || !have("openssl") {
        eprintln!("curl or openssl missing: skipping");
        return;
    }
    let s = setup().await;
    let p = s.https.port();
    let file = |n: &str| s.dir.join(n).display().to_string();
    let resolve = |host: &str| format!("{host}:{p}:127.0.0.1");

    // httpbin.example.com: its certificate (example.com root), routed to httpbin
    let r = curl(&[
        "--resolve",
        &resolve("httpbin.example.com"),
        "--cacert",
        &file("example.com.crt"),
        &format!("https://httpbin.example.com:{p}/status/418"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(
        r.stdout,
        format!("httpbin host=httpbin.example.com:{p} proto=https path=/status/418")
    );

    // helloworld.example.com: another certificate from another root, chosen by SNI
    let r = curl(&[
        "--resolve",
        &resolve("helloworld.example.com"),
        "--cacert",
        &file("helloworld-ca.crt"),
        &format!("https://helloworld.example.com:{p}/hello"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with("helloworld "), "{}", r.stdout);
    // the helloworld certificate does not chain to the example.com root: curl exit 60
    let r = curl(&[
        "--resolve",
        &resolve("helloworld.example.com"),
        "--cacert",
        &file("example.com.crt"),
        &format!("https://helloworld.example.com:{p}/hello"),
    ]);
    assert_eq!(r.code, Some(60), "{} {}", r.stdout, r.stderr);
    // a path no route matches: 404 from the gateway
    let r = curl(&[
        "--resolve",
        &resolve("helloworld.example.com"),
        "--cacert",
        &file("helloworld-ca.crt"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://helloworld.example.com:{p}/other"),
    ]);
    assert_eq!(r.stdout, "404");
    // an SNI no server takes: the connection is closed during the handshake (curl 35)
    let r = curl(&[
        "--resolve",
        &resolve("unknown.example.com"),
        "--cacert",
        &file("example.com.crt"),
        &format!("https://unknown.example.com:{p}/"),
    ]);
    assert_eq!(r.code, Some(35), "{} {}", r.stdout, r.stderr);

    // MUTUAL: without a client certificate the handshake fails; with one, routed
    let url = format!("https://mtls.example.com:{p}/get");
    let r = curl(&[
        "--resolve",
        &resolve("mtls.example.com"),
        "--cacert",
        &file("example.com.crt"),
        &url,
    ]);
    assert_ne!(r.code, Some(0), "MUTUAL must require a client certificate");
    let r = curl(&[
        "--resolve",
        &resolve("mtls.example.com"),
        "--cacert",
        &file("example.com.crt"),
        "--cert",
        &file("client.example.com.crt"),
        "--key",
        &file("client.example.com.key"),
        &url,
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.starts_with("httpbin host=mtls.example.com"),
        "{}",
        r.stdout
    );

    // PASSTHROUGH: the client talks TLS to the backend itself (nginx's own certificate,
    // which the gateway does not have), the gateway only splices by SNI
    let r = curl(&[
        "--resolve",
        &resolve("nginx.example.com"),
        "--cacert",
        &file("nginx-ca.crt"),
        &format!("https://nginx.example.com:{p}/"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, "Welcome to nginx!");
    // an AuthorizationPolicy on the gateway denying that SNI closes the connection
    let deny_sni = "
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-nginx, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - when: [{key: connection.sni, values: [nginx.example.com]}]
";
    s.mesh
        .reload_loaded(mesh_core::load::load_str(
            &format!("{}{deny_sni}", s.yaml),
            "x.yaml",
        ))
        .unwrap();
    let r = curl(&[
        "--resolve",
        &resolve("nginx.example.com"),
        "--cacert",
        &file("nginx-ca.crt"),
        &format!("https://nginx.example.com:{p}/"),
    ]);
    assert_eq!(r.code, Some(35), "{} {}", r.stdout, r.stderr);
    // other hosts are unaffected
    let r = curl(&[
        "--resolve",
        &resolve("httpbin.example.com"),
        "--cacert",
        &file("example.com.crt"),
        &format!("https://httpbin.example.com:{p}/ok"),
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);

    // httpsRedirect on the plain HTTP server: 301 to https, path and query kept
    let h = s.http.port();
    let r = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "-H",
        "Host: httpbin.example.com",
        &format!("http://127.0.0.1:{h}/status/200?a=b"),
    ]);
    assert_eq!(r.stdout, "301 https://httpbin.example.com/status/200?a=b");
    let r = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        "--resolve",
        &format!("helloworld.example.com:{h}:127.0.0.1"),
        &format!("http://helloworld.example.com:{h}/hello"),
    ]);
    assert_eq!(
        r.stdout,
        format!("301 https://helloworld.example.com:{h}/hello")
    );
    // a host no HTTP server takes: 404
    let r = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: other.example.com",
        &format!("http://127.0.0.1:{h}/"),
    ]);
    assert_eq!(r.stdout, "404");
}

/// The same gateway through a Rust client (hyper over tokio-rustls, HTTP/2 by ALPN).
#[tokio::test]
async fn rust_client_over_http2_picks_certificates_by_sni() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup().await;
    for (host, ca, want) in [
        ("httpbin.example.com", "example.com.crt", "httpbin "),
        ("helloworld.example.com", "helloworld-ca.crt", "helloworld "),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(s.dir.join(ca)).unwrap();
        for c in mesh_tls::certs_from_pem(ca, &pem).unwrap() {
            roots.add(c).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap(),
                tcp,
            )
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{host}/hello"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with(want), "{body}");
        assert!(body.contains(&format!("host={host}")), "{body}");
    }
}

/// A client whose ALPN offer has nothing in common with the server's `h2, http/1.1` (an
/// Istio sidecar's `istio-peer-exchange, istio`, `http/1.0`): Envoy's ALPN callback
/// answers NOACK and the handshake goes on without ALPN, as it does here; HTTP/1.1 then.
#[tokio::test]
async fn a_client_offering_no_common_alpn_still_handshakes() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup().await;
    let host = "httpbin.example.com";
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(s.dir.join("example.com.crt")).unwrap();
    for c in mesh_tls::certs_from_pem("ca", &pem).unwrap() {
        roots.add(c).unwrap();
    }
    for offer in [
        vec![b"istio-peer-exchange".to_vec(), b"istio".to_vec()],
        vec![b"http/1.0".to_vec()],
    ] {
        let mut cfg = rustls::ClientConfig::builder_with_provider(mesh_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = offer.clone();
        let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap(),
                tcp,
            )
            .await
            .unwrap_or_else(|e| panic!("{offer:?}: {e}"));
        assert_eq!(tls.get_ref().1.alpn_protocol(), None);
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/hello")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{offer:?}");
    }
}

/// reqwest (rustls) through the gateway: each host's certificate verifies against its own
/// root only.
#[tokio::test]
async fn reqwest_client_sees_per_host_certificates() {
    if !have("openssl") {
        eprintln!("openssl missing: skipping");
        return;
    }
    let s = setup().await;
    let p = s.https.port();
    let client = |ca: &str, host: &str| {
        let pem = std::fs::read(s.dir.join(ca)).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .resolve(host, s.https)
            .build()
            .unwrap()
    };
    let url = |host: &str, path: &str| format!("https://{host}:{p}{path}");
    let r = client("example.com.crt", "httpbin.example.com")
        .get(url("httpbin.example.com", "/anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("httpbin "));
    let r = client("helloworld-ca.crt", "helloworld.example.com")
        .get(url("helloworld.example.com", "/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("helloworld "));
    // the wrong root for that host: certificate verification fails
    let e = client("example.com.crt", "helloworld.example.com")
        .get(url("helloworld.example.com", "/hello"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");
}

/// The upstream httpbin-gateway sample (port 80, hosts `*`) routing plain HTTP.
#[tokio::test]
async fn httpbin_gateway_sample_routes_plain_http() {
    let httpbin = backend("httpbin").await;
    let sample = [
        "../../../shared/istio-samples",
        "/work/shared/istio-samples",
    ]
    .iter()
    .map(|d| Path::new(d).join("httpbin/httpbin-gateway.yaml"))
    .find(|p| p.exists())
    .expect("httpbin-gateway.yaml");
    let mut yaml = std::fs::read_to_string(sample).unwrap();
    yaml.push_str(&service_entry(
        "httpbin",
        "httpbin.default.svc.cluster.local",
        8000,
        "HTTP",
        httpbin,
    ));
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let (_gw, addr, client) = http_gateway(mesh.clone()).await;
    let get = |path: &str| {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header("host", "httpbin.example.com")
            .body(http_body_util::Empty::new())
            .unwrap();
        client.request(req)
    };
    use http_body_util::BodyExt;
    let resp = get("/headers?x=1").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &body[..],
        b"httpbin host=httpbin.example.com proto=http path=/headers?x=1"
    );

    // the endpoint goes away: 503 with Envoy's connect-failure body, after the gateway
    // retried (Istio's default retry policy: 2 retries on connect failure)
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut yaml = std::fs::read_to_string(
        [
            "../../../shared/istio-samples",
            "/work/shared/istio-samples",
        ]
        .iter()
        .map(|d| Path::new(d).join("httpbin/httpbin-gateway.yaml"))
        .find(|p| p.exists())
        .unwrap(),
    )
    .unwrap();
    yaml.push_str(&service_entry(
        "httpbin",
        "httpbin.default.svc.cluster.local",
        8000,
        "HTTP",
        dead_addr,
    ));
    mesh.reload_loaded(mesh_core::load::load_str(&yaml, "x.yaml"))
        .unwrap();
    let resp = get("/headers").await.unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        body.starts_with(b"upstream connect error or disconnect/reset before headers. retried and the latest reset reason: remote connection failure"),
        "{body:?}"
    );
}

/// The gateway forwards through the outbound stack: a request that fails to connect to
/// one endpoint is retried on another (Istio's default retry policy, the previous host
/// avoided), and the DestinationRule's round robin spreads requests over the endpoints
/// (the gateway used to pick an endpoint at random and not retry).
#[tokio::test]
async fn gateway_retries_on_another_endpoint_and_balances() {
    let (a, b) = (backend("httpbin-a").await, backend("httpbin-b").await);
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let yaml = format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: httpbin-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http: [{{route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin, namespace: default}}
spec:
  host: httpbin
  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: default}}
spec:
  hosts: [httpbin.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
  - {{address: 127.0.0.1, ports: {{http: {}}}}}
"#,
        a.port(),
        dead_addr.port(),
        b.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let (_gw, addr, client) = http_gateway(mesh).await;
    use http_body_util::BodyExt;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let req = http::Request::get(format!("http://{addr}/get"))
            .header("host", "httpbin.example.com")
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "every request lands on a live endpoint");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let name = String::from_utf8_lossy(&body)
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        *seen.entry(name).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both live endpoints serve: {seen:?}");
    assert!(seen.values().all(|&n| n >= 10), "round robin: {seen:?}");
}

/// A gateway for `mesh` with its port 80 on a loopback listener, the listener's address,
/// and a plain HTTP client.
async fn http_gateway(
    mesh: Mesh,
) -> (
    GatewayServer,
    SocketAddr,
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
) {
    let gw = GatewayServer::builder(mesh, "istio-system", ingress_labels())
        .listener(80, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(80).unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    (gw, addr, client)
}

#[tokio::test]
async fn startup_errors_are_clear() {
    let labels = ingress_labels();
    let none = Mesh::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: other}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n",
    )
    .unwrap();
    let e = GatewayServer::builder(none, "istio-system", labels.clone())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, GatewayError::NoServers(_)), "{e}");

    let missing = Mesh::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [a.example.com], tls: {mode: SIMPLE, credentialName: nope}}]\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = GatewayServer::builder(missing, "istio-system", labels.clone())
        .credential_dir(dir.path())
        .listener(443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("default/g") && msg.contains("nope"), "{msg}");

    // MONGO is proxied as TCP (by the `tcp` routes); UDP is not proxied at all
    let mongo = Mesh::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 27017, name: mongo, protocol: MONGO}, hosts: ['*']}]\n",
    )
    .unwrap();
    let gw = GatewayServer::builder(mongo, "istio-system", labels.clone())
        .listener(27017, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    assert!(gw.local_addr(27017).is_some());
    let udp = Mesh::from_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 53, name: udp-dns, protocol: UDP}, hosts: ['*']}]\n",
    )
    .unwrap();
    let e = GatewayServer::builder(udp, "istio-system", labels)
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}

/// AuthorizationPolicy on the gateway, and the route's rewrite, header operations and
/// fault abort applied before forwarding.
#[tokio::test]
async fn gateway_authz_rewrite_headers_and_faults() {
    let httpbin = backend("httpbin").await;
    let mut yaml = String::from(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /, authority: internal.example.com}
    headers:
      request: {set: {x-gw: rewritten}}
      response: {set: {x-resp: done}, remove: [server]}
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
  - match: [{uri: {prefix: /broken}}]
    fault: {abort: {httpStatus: 555, percentage: {value: 100}}}
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
  - match: [{uri: {prefix: /nowhere}}]
    route: [{destination: {host: nowhere, port: {number: 8000}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/api/admin*]}}]
",
    );
    yaml.push_str(&service_entry(
        "httpbin",
        "httpbin.default.svc.cluster.local",
        8000,
        "HTTP",
        httpbin,
    ));
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let (gw, addr, client) = http_gateway(mesh).await;
    use http_body_util::BodyExt;
    let get = |path: &str| {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header("host", "api.example.com")
            .body(http_body_util::Empty::new())
            .unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (parts, body) = get("/api/v1/items?x=1").await;
    assert_eq!(parts.status, 200);
    assert_eq!(
        body,
        "httpbin host=internal.example.com proto=http path=/v1/items?x=1 gw=rewritten"
    );
    assert_eq!(parts.headers["x-resp"], "done");

    let (parts, body) = get("/api/admin/users").await;
    assert_eq!(parts.status, 403);
    assert_eq!(body, "RBAC: access denied");

    let (parts, body) = get("/broken").await;
    assert_eq!(parts.status, 555);
    assert_eq!(body, "fault filter abort");

    // a destination that is not in the registry: 503 with an empty body (Envoy NC)
    let (parts, body) = get("/nowhere").await;
    assert_eq!(parts.status, 503);
    assert_eq!(body, "");

    // a route-less path on a host with a VirtualService: 404
    let (parts, _) = get("/other").await;
    assert_eq!(parts.status, 404);

    // the gateway's metrics, as Istio's gateway reports them (reporter="source")
    let text = gw.metrics().render();
    let series = |must: &[&str]| {
        text.lines()
            .any(|l| l.starts_with("istio_requests_total{") && must.iter().all(|m| l.contains(m)))
    };
    let gw_labels = [
        "reporter=\"source\"",
        "source_workload=\"istio-ingressgateway\"",
        "source_workload_namespace=\"istio-system\"",
    ];
    let mut ok = gw_labels.to_vec();
    ok.extend([
        "destination_service=\"httpbin.default.svc.cluster.local\"",
        // a ServiceEntry's service name is its whole host (istiod: `Attributes.Name`)
        "destination_service_name=\"httpbin.default.svc.cluster.local\"",
        "response_code=\"200\"",
    ]);
    assert!(series(&ok), "{text}");
    let mut denied = gw_labels.to_vec();
    // the route's cluster is known before the gateway's RBAC filter runs (Envoy resolves
    // the route first): the 403 names the routed service
    denied.extend([
        "response_code=\"403\"",
        "destination_service=\"httpbin.default.svc.cluster.local\"",
    ]);
    assert!(series(&denied), "{text}");
    let mut fault = gw_labels.to_vec();
    fault.extend(["response_code=\"555\"", "response_flags=\"FI\""]);
    assert!(series(&fault), "{text}");
    let mut no_route = gw_labels.to_vec();
    no_route.extend(["response_code=\"404\"", "response_flags=\"NR\""]);
    assert!(series(&no_route), "{text}");
}

/// A server's `bind` address is honoured; a Unix socket `bind` is refused at start.
#[tokio::test]
async fn server_bind_address() {
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw_yaml = |bind: &str, port: u16| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, bind: '{bind}', hosts: ['*']}}]\n"
        )
    };
    let mesh = Mesh::from_yaml(&gw_yaml("127.0.0.1", free)).unwrap();
    let gw = GatewayServer::builder(mesh, "istio-system", ingress_labels())
        .start()
        .await
        .unwrap();
    let addr = gw.local_addr(free).unwrap();
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], free)));
    // reachable: no VirtualService binds it, so the gateway answers 404
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(format!("http://{addr}/").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    drop(gw);

    let mesh = Mesh::from_yaml(&gw_yaml("unix:///tmp/gw.sock", 0)).unwrap();
    let e = GatewayServer::builder(mesh, "istio-system", ingress_labels())
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}
