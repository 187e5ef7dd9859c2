//! What Envoy does to a request before any filter, over real sockets on loopback: the path
//! normalized as the MeshConfig's `pathNormalization` says (Istio's default `BASE`, or
//! `MERGE_SLASHES`, `DECODE_AND_MERGE_SLASHES`, `NONE`) in the request itself, so an
//! AuthorizationPolicy and the application see the same path (the access log too:
//! `normalization_accesslog.rs`); a method not
//! in upper case refused with 400.
//! Requests are written as raw HTTP/1.1 bytes, so the client cannot tidy them up first.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_tls::{CaSource, CertManager, Identity, MeshCa, RotationOptions};
use mesh_tower::inbound::MeshServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `DENY` on `/admin*` for httpbin (PERMISSIVE mTLS, the default: plaintext is served).
const DENY_ADMIN: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin*]}}]}]
";

/// A MeshServer for httpbin whose application answers with the method and URI it got.
async fn start(yaml: &str) -> (SocketAddr, CertManager) {
    start_mesh(Mesh::from_yaml(yaml).unwrap()).await
}

/// [`start`] in a mesh with this MeshConfig.
async fn start_with(mesh_config: &str, yaml: &str) -> (SocketAddr, CertManager) {
    let config = MeshConfig::from_yaml(mesh_config).unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    mesh.reload_objects(mesh_core::load::load_str(yaml, "policy.yaml").objects)
        .unwrap();
    start_mesh(mesh).await
}

async fn start_mesh(mesh: Mesh) -> (SocketAddr, CertManager) {
    let ca = Arc::new(MeshCa::self_signed("cluster.local").unwrap());
    let id = Identity::new("cluster.local", "foo", "httpbin").unwrap();
    let certs = CertManager::start(id, Arc::new(CaSource::new(ca)), RotationOptions::default())
        .await
        .unwrap();
    let labels = [("app".to_string(), "httpbin".to_string())].into();
    let server = MeshServer::builder(mesh, "foo", "httpbin", labels, certs.credentials().clone())
        .port(8000)
        .build()
        .unwrap();
    let app = Router::new().fallback(|req: http::Request<axum::body::Body>| async move {
        format!("{} {}", req.method(), req.uri())
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener, app).await });
    (addr, certs)
}

/// Sends `method target` as raw HTTP/1.1; the status and the body.
async fn raw(addr: SocketAddr, method: &str, target: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nhost: httpbin.foo:8000\r\nconnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // chunked bodies: the one chunk's data
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split("\r\n").nth(1).unwrap_or("").to_owned()
    } else {
        body.to_owned()
    };
    (status, body)
}

/// `/%61dmin` is `/admin` for the DENY policy, and an allowed request reaches the
/// application with the normalized path (the query as sent).
#[tokio::test]
async fn the_normalized_path_is_authorized_and_served() {
    let (addr, _certs) = start(DENY_ADMIN).await;
    for target in [
        "/admin",
        "/%61dmin",
        "/%61%64%6D%69%6E/users",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/x/..\\admin",
    ] {
        let (status, body) = raw(addr, "GET", target).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{target}"
        );
    }
    for (target, seen) in [
        ("/%70ublic", "GET /public"),
        ("/%70ublic/./a/../b?q=%61/../x", "GET /public/b?q=%61/../x"),
        ("/public\\x", "GET /public/x"),
        // kept as sent under BASE: escaped slashes, repeated slashes
        ("/a%2Fb//c", "GET /a%2Fb//c"),
        ("//admin", "GET //admin"),
    ] {
        let (status, body) = raw(addr, "GET", target).await;
        assert_eq!((status, body.as_str()), (200, seen), "{target}");
    }
    // Envoy refuses an escaped NUL: 400, empty body
    let (status, body) = raw(addr, "GET", "/public%00").await;
    assert_eq!((status, body.as_str()), (400, ""));
}

/// `MERGE_SLASHES`: `//admin` is `/admin` for the DENY policy; the application gets the
/// merged path. `DECODE_AND_MERGE_SLASHES` decodes `%2F` first; `NONE` leaves paths alone.
#[tokio::test]
async fn other_path_normalization_modes() {
    let (addr, _certs) = start_with(
        "pathNormalization: {normalization: MERGE_SLASHES}",
        DENY_ADMIN,
    )
    .await;
    for target in ["//admin", "///admin/users", "/x/..//admin", "/%61dmin"] {
        let (status, body) = raw(addr, "GET", target).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{target}"
        );
    }
    for (target, seen) in [
        ("//public//a?q=//", "GET /public/a?q=//"),
        // normalized, then merged: the `..` removes the empty segment, not `x`
        ("/app//../public", "GET /app/public"),
        ("/x//..//admin", "GET /x/admin"),
        ("/%2Fadmin", "GET /%2Fadmin"), // escaped slashes kept
    ] {
        let (status, body) = raw(addr, "GET", target).await;
        assert_eq!((status, body.as_str()), (200, seen), "{target}");
    }

    let (addr, _certs) = start_with(
        "pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}",
        DENY_ADMIN,
    )
    .await;
    for target in ["/%2Fadmin", "/%5cadmin", "/x%2F..%2Fadmin"] {
        let (status, body) = raw(addr, "GET", target).await;
        assert_eq!(
            (status, body.as_str()),
            (403, "RBAC: access denied"),
            "{target}"
        );
    }
    let (status, body) = raw(addr, "GET", "/a%2Fb%5Cc").await;
    assert_eq!((status, body.as_str()), (200, "GET /a/b/c"));

    let (addr, _certs) = start_with("pathNormalization: {normalization: NONE}", DENY_ADMIN).await;
    let (status, body) = raw(addr, "GET", "/%61dmin//./x").await;
    assert_eq!((status, body.as_str()), (200, "GET /%61dmin//./x"));
    let (status, _) = raw(addr, "GET", "/admin").await;
    assert_eq!(status, 403);
}

/// A DENY on `methods: [DELETE]` is not passed by `delete`: a method that is not upper case
/// is refused with 400 before authorization (Envoy's HTTP/1 codec).
#[tokio::test]
async fn methods_not_in_upper_case_are_refused() {
    let deny_delete = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
";
    let (addr, _certs) = start(deny_delete).await;
    let (status, body) = raw(addr, "DELETE", "/x").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    // and a well-formed method Envoy's HTTP/1 codec does not know, while WebDAV's passes
    for method in ["delete", "Delete", "get", "FROBNICATE"] {
        let (status, body) = raw(addr, method, "/x").await;
        assert_eq!((status, body.as_str()), (400, "Bad Request"), "{method}");
    }
    for method in ["GET", "PROPFIND"] {
        let (status, body) = raw(addr, method, "/x").await;
        assert_eq!((status, body), (200, format!("{method} /x")));
    }
}

/// A token RequestAuthentication rejects: 401 with Envoy's message for HTTP; for a gRPC
/// call, Envoy's local reply in gRPC form (200, `grpc-status: 16` UNAUTHENTICATED, the
/// message in `grpc-message`), as the RBAC denial's `grpc-status: 7`.
#[tokio::test]
async fn rejected_tokens_answer_grpc_calls_in_grpc() {
    let jwt = "
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{\"keys\": []}'
";
    let (addr, _certs) = start(jwt).await;
    let send = |grpc: bool| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let ct = if grpc {
            "content-type: application/grpc\r\n"
        } else {
            ""
        };
        let req = format!(
            "POST /pkg.Echo/Say HTTP/1.1\r\nhost: httpbin.foo:8000\r\n{ct}authorization: Bearer a.b.c\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).to_ascii_lowercase()
    };
    let http = send(false).await;
    assert!(http.starts_with("http/1.1 401"), "{http}");
    assert!(http.contains("www-authenticate: bearer realm="), "{http}");
    let grpc = send(true).await;
    assert!(grpc.starts_with("http/1.1 200"), "{grpc}");
    assert!(grpc.contains("grpc-status: 16\r\n"), "{grpc}");
    assert!(grpc.contains("grpc-message: jwt"), "{grpc}");
    assert!(
        grpc.contains("content-type: application/grpc\r\n"),
        "{grpc}"
    );
    assert!(grpc.contains("www-authenticate: bearer realm="), "{grpc}");
}
