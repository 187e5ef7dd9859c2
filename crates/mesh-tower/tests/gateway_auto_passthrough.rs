//! A Gateway server with `tls.mode: AUTO_PASSTHROUGH`: Istio's multi-network east-west
//! gateway (`samples/multicluster/expose-services.yaml`). Two meshes stand for two
//! networks: in the first, `httpbin`'s endpoint is the second network's gateway; the
//! client's sidecar speaks mutual TLS with SNI `outbound_.8000_.<subset>_.httpbin...`, the
//! gateway forwards the connection untouched to an endpoint of that service and subset in
//! its own network, and the STRICT workload there terminates the client's TLS and sees the
//! client's principal. Real sockets, certificates from one CA (one trust domain).

use std::time::Duration;

use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::gateway::GatewayServer;
use mesh_tower::inbound::{ConnectionInfo, MeshServer};
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HTTPBIN: &str = "
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: foo}
spec:
  host: httpbin.foo.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

/// The second network: httpbin v1 and v2 under STRICT, and the east-west gateway.
const NETWORK2: &str = "
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ['*.local']
";

/// In the first network, a client that always asks for subset v1.
const TO_V1: &str = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local]
  http: [{route: [{destination: {host: httpbin.foo.svc.cluster.local, subset: v1}}]}]
";

fn workload(version: &str, addr: std::net::SocketAddr) -> Workload {
    Workload {
        name: format!("httpbin-{version}"),
        namespace: "foo".into(),
        service_account: "httpbin".into(),
        labels: [
            ("app".to_string(), "httpbin".to_string()),
            ("version".to_string(), version.to_string()),
        ]
        .into(),
        address: addr.ip(),
        ports: [("http".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    }
}

#[tokio::test]
async fn east_west_gateway_forwards_by_sni_to_the_named_service_and_subset() {
    let ca = MeshCa::self_signed("cluster.local").unwrap();
    let creds = |ns: &str, sa: &str| {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[]).unwrap()).unwrap()
    };

    // network 2: httpbin v1 and v2, STRICT mesh servers answering with their version and
    // the caller's principal
    let network2 = Mesh::from_yaml(&format!("{HTTPBIN}{NETWORK2}")).unwrap();
    for version in ["v1", "v2"] {
        let labels = workload(version, "127.0.0.1:1".parse().unwrap()).labels;
        let server = MeshServer::builder(
            network2.clone(),
            "foo",
            "httpbin",
            labels,
            creds("foo", "httpbin"),
        )
        .port(8000)
        .build()
        .unwrap();
        let app =
            Router::new().fallback(move |Extension(c): Extension<ConnectionInfo>| async move {
                format!("{version} principal={}", c.principal().unwrap_or(""))
            });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { server.serve(listener, app).await });
        network2.register(workload(version, addr));
    }
    let ew_labels = [("istio".to_string(), "eastwestgateway".to_string())].into();
    let gw = GatewayServer::builder(network2.clone(), "istio-system", ew_labels)
        .listener(15443, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let gw_addr = gw.local_addr(15443).unwrap();

    // network 1: httpbin's endpoint is network 2's gateway (as istiod gives remote-network
    // endpoints the gateway's address)
    let network1 = Mesh::from_yaml(&format!("{HTTPBIN}{TO_V1}")).unwrap();
    network1.register(workload("v1", gw_addr));
    let sleep = MeshClient::builder(network1, ClientWorkload::new("sleep", "foo", "sleep"))
        .credentials(creds("foo", "sleep"))
        .build();
    for _ in 0..6 {
        let req = http::Request::get("http://httpbin.foo:8000/headers")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sleep.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        // the subset the SNI named, and the client's own identity end to end
        assert_eq!(body, "v1 principal=cluster.local/ns/foo/sa/sleep");
    }

    // destinations istiod builds no SNI-DNAT cluster for, each a listener that would hold
    // the connection open if the gateway forwarded to it: a MESH_EXTERNAL ServiceEntry, and
    // a service whose only endpoint runs no mesh mTLS (istiod's EDS filters it out)
    let holder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held = holder.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = holder.accept().await {
            open.push(s);
        }
    });
    let more = format!(
        "{HTTPBIN}{NETWORK2}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.corp.local]
  location: MESH_EXTERNAL
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: legacy, namespace: foo}}
spec:
  selector: {{app: legacy}}
  ports: [{{name: tls, port: 443}}]
",
        held.port()
    );
    network2
        .reload_loaded(mesh_core::load::load_str(&more, "more.yaml"))
        .unwrap();
    network2.register(Workload {
        name: "legacy-0".into(),
        namespace: "foo".into(),
        service_account: "legacy".into(),
        labels: [
            ("app".to_string(), "legacy".to_string()),
            (
                "security.istio.io/tlsMode".to_string(),
                "disabled".to_string(),
            ),
        ]
        .into(),
        address: held.ip(),
        ports: [("tls".to_string(), held.port())].into(),
        locality: None,
        weight: 0,
    });

    // istiod's SNI-DNAT chains match only Istio's mTLS ALPNs: a ClientHello naming httpbin
    // without one (a TLS client outside the mesh) is closed without an answer, the same
    // with `istio` reaches the workload (whose TLS answers it)
    let sni = "outbound_.8000_._.httpbin.foo.svc.cluster.local";
    for (alpn, forwarded) in [
        (&[][..], false),
        (&[&b"h2"[..], b"http/1.1"][..], false),
        (&[&b"ISTIO"[..]][..], false),
        (&[&b"istio"[..]][..], true),
        (&[&b"h2"[..], b"istio-h2"][..], true),
        (&[&b"istio-peer-exchange"[..], b"istio"][..], true),
    ] {
        let mut s = tokio::net::TcpStream::connect(gw_addr).await.unwrap();
        s.write_all(&client_hello_alpn(sni, alpn)).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered or closed, not hung")
            .unwrap_or(0);
        assert_eq!(n > 0, forwarded, "ALPN {alpn:?}: {n} bytes back");
    }

    // a ClientHello whose SNI names no destination: the gateway closes the connection
    for sni in [
        "www.example.com",
        "outbound_.8000_._.nope.foo.svc.cluster.local",
        "outbound_.8000_._.httpbin.foo.svc.cluster.example",
        "outbound_.443_._.db.corp.local",
        "outbound_.443_._.legacy.foo.svc.cluster.local",
    ] {
        let mut s = tokio::net::TcpStream::connect(gw_addr).await.unwrap();
        s.write_all(&client_hello_alpn(sni, &[b"istio"]))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed, not hung")
            .unwrap_or(0);
        assert_eq!(n, 0, "{sni}: closed without an answer");
    }
}

/// A minimal TLS 1.2 ClientHello carrying `sni` and offering `alpn` (what the gateway
/// peeks at).
fn client_hello_alpn(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut server_name = vec![0u8];
    server_name.extend_from_slice(&(name.len() as u16).to_be_bytes());
    server_name.extend_from_slice(name);
    let mut list = (server_name.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&server_name);
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend_from_slice(&list);
    if !alpn.is_empty() {
        let mut names = Vec::new();
        for a in alpn {
            names.push(a.len() as u8);
            names.extend_from_slice(a);
        }
        ext.extend_from_slice(&[0, 16]);
        ext.extend_from_slice(&(names.len() as u16 + 2).to_be_bytes());
        ext.extend_from_slice(&(names.len() as u16).to_be_bytes());
        ext.extend_from_slice(&names);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[1, 0]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}
