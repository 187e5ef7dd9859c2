//! Which VirtualServices a request at the ingress gateway reaches, as istiod builds the
//! gateway's route configurations (`buildGatewayHTTPRouteConfig`), on loopback with real
//! clients:
//! - each TLS-terminating HTTPS server has its own routes
//!   (`https.<port>.<portName>.<gateway>.<ns>`): the SNI's server alone routes, so a Host
//!   of another server on the port (a MUTUAL one) is not reachable through it;
//! - plain HTTP servers on a port are merged across every Gateway of the workload
//!   (`http.<port>`);
//! - a VirtualService binds only for `NamesForNamespace(server.hosts, vs.ns) ∩ vs.hosts`;
//! - VirtualService exportTo is checked against the gateway workload's namespace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::mesh::Mesh;
use mesh_tls::rustls;
use mesh_tls::{Credential, Identity, MeshCa};
use mesh_tower::gateway::GatewayServer;
use tokio::net::TcpListener;

mod secrets_support;
use secrets_support::Secrets;

/// A backend answering its name.
async fn backend(name: &'static str) -> u16 {
    let app = Router::new().fallback(move || async move { name });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    port
}

/// ServiceEntries `<name>.<ns>.svc.cluster.local:8000` for backends answering `<name>`.
async fn backends(list: &[(&'static str, &str)]) -> String {
    let mut yaml = String::new();
    for (name, ns) in list {
        let port = backend(name).await;
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}.{ns}.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"
        ));
    }
    yaml
}

fn labels() -> mesh_core::model::Labels {
    [("istio".to_string(), "ingressgateway".to_string())].into()
}

/// A gateway workload in `namespace` serving `ports` (server port → local listener).
async fn gateway(yaml: &str, namespace: &str, ports: &[u16], secrets: Secrets) -> GatewayServer {
    let mesh = Mesh::from_yaml(yaml).unwrap();
    let mut b = GatewayServer::builder(mesh, namespace, labels()).credentials(Arc::new(secrets));
    for p in ports {
        b = b.listener(*p, TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    b.start().await.unwrap()
}

/// GET `http://addr/` with this Host: (status, body).
async fn http_get(addr: SocketAddr, host: &str) -> (u16, String) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GET over TLS with SNI `sni` and Host `host`, optionally with a client certificate.
async fn https_get(
    addr: SocketAddr,
    ca: &MeshCa,
    sni: &str,
    host: &str,
    client: Option<(&str, &str)>,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for c in ca.trust_bundle().certs() {
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
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_servers_route_only_their_own_hosts() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let gw_id = Identity::new("cluster.local", "istio-system", "istio-ingressgateway").unwrap();
    let gw_cert = ca
        .issue(
            &gw_id,
            Duration::from_secs(3600),
            &["secure.example.com", "public.example.com"],
        )
        .unwrap();
    let cred = Credential {
        cert_chain_pem: Some(gw_cert.chain_pem().to_owned()),
        key_pem: Some(gw_cert.key_pem().to_owned()),
        crl_pem: None,
        ca_pem: Some(ca.trust_bundle().to_pem()),
    };
    let mut secrets = Secrets::default();
    secrets.0.insert("secure-cred".into(), cred.clone());
    secrets.0.insert("public-cred".into(), cred);
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https-secure, protocol: HTTPS}}
    hosts: [secure.example.com]
    tls: {{mode: MUTUAL, credentialName: secure-cred}}
  - port: {{number: 443, name: https-public, protocol: HTTPS}}
    hosts: [public.example.com]
    tls: {{mode: SIMPLE, credentialName: public-cred}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: secure, namespace: default}}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: admin.default.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: public, namespace: default}}
spec:
  hosts: [public.example.com]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: web.default.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
{}",
        backends(&[("admin", "default"), ("web", "default")]).await
    );
    let gw = gateway(&yaml, "istio-system", &[443], secrets).await;
    let addr = gw.local_addr(443).unwrap();

    // the public server's own host
    let r = https_get(addr, &ca, "public.example.com", "public.example.com", None).await;
    assert_eq!(r, (200, "web".into()));
    // no client certificate, SNI of the SIMPLE server, Host of the MUTUAL server: the
    // SIMPLE server's route configuration has no virtual host for it (Envoy's 404)
    let r = https_get(addr, &ca, "public.example.com", "secure.example.com", None).await;
    assert_eq!(r.0, 404, "{r:?}");
    // through the MUTUAL server, with a client certificate
    let id = Identity::new("cluster.local", "default", "client").unwrap();
    let client = ca.issue(&id, Duration::from_secs(3600), &[]).unwrap();
    let pems = Some((client.chain_pem(), client.key_pem()));
    let r = https_get(addr, &ca, "secure.example.com", "secure.example.com", pems).await;
    assert_eq!(r, (200, "admin".into()));
    // and the MUTUAL server does not route the public host either
    let r = https_get(addr, &ca, "secure.example.com", "public.example.com", pems).await;
    assert_eq!(r.0, 404, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_servers_on_a_port_merge_across_gateways() {
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-a, namespace: team-a}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [a.example.com]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-b, namespace: team-b}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*.example.com']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-b, namespace: team-b}}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [gw-b]
  http: [{{route: [{{destination: {{host: b.team-b.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-other, namespace: team-c}}
spec:
  selector: {{istio: other-gateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs-other, namespace: team-c}}
spec:
  hosts: [c.example.com]
  gateways: [gw-other]
  http: [{{route: [{{destination: {{host: b.team-b.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
{}",
        backends(&[("b", "team-b")]).await
    );
    let gw = gateway(&yaml, "istio-system", &[80], Secrets::default()).await;
    let addr = gw.local_addr(80).unwrap();
    // gw-a's exact server host does not hide gw-b's virtual host for it
    assert_eq!(http_get(addr, "a.example.com").await, (200, "b".into()));
    assert_eq!(http_get(addr, "b.example.com:80").await, (200, "b".into()));
    // a Gateway that does not select this workload contributes nothing
    assert_eq!(http_get(addr, "c.example.com").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_services_bind_by_namespace_scoped_host_intersection() {
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['ns1/*', '*.example.com']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs2, namespace: ns2}}
spec:
  hosts: ['*']
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: two.ns2.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs3, namespace: ns2}}
spec:
  hosts: ['*.wild.com']
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: three.ns2.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs1, namespace: ns1}}
spec:
  hosts: [foo.org]
  gateways: [istio-system/gw]
  http: [{{route: [{{destination: {{host: one.ns1.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
{}",
        backends(&[("one", "ns1"), ("two", "ns2"), ("three", "ns2")]).await
    );
    let gw = gateway(&yaml, "istio-system", &[80], Secrets::default()).await;
    let addr = gw.local_addr(80).unwrap();
    // vs2 (ns2) binds only for `*` ∩ `*.example.com`; `ns1/*` admits ns1 only
    assert_eq!(http_get(addr, "x.example.com").await, (200, "two".into()));
    assert_eq!(http_get(addr, "foo.com").await.0, 404);
    assert_eq!(http_get(addr, "x.wild.com").await.0, 404);
    assert_eq!(http_get(addr, "foo.org").await, (200, "one".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_is_checked_against_the_gateway_workload_namespace() {
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: private-app, namespace: app}}
spec:
  hosts: [a.example.com]
  exportTo: ['.']
  gateways: [gw]
  http: [{{route: [{{destination: {{host: a.app.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: private-sys, namespace: istio-system}}
spec:
  hosts: [b.example.com]
  exportTo: ['.']
  gateways: [app/gw]
  http: [{{route: [{{destination: {{host: a.app.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
{}",
        backends(&[("a", "app")]).await
    );
    // the gateway workload runs in istio-system, its Gateway object is in app
    let gw = gateway(&yaml, "istio-system", &[80], Secrets::default()).await;
    let addr = gw.local_addr(80).unwrap();
    assert_eq!(http_get(addr, "a.example.com").await.0, 404);
    assert_eq!(http_get(addr, "b.example.com").await, (200, "a".into()));
}
