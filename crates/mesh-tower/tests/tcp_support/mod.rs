//! Shared by the TCP tests (`tcp_mesh`, and `tcp_accesslog`, a binary of its own for its
//! thread-local `tracing` subscriber): a CA, Istio's tcp-echo service and workloads, a
//! `sleep` client and a one-exchange helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tls::{Identity, MeshCa, WorkloadCredentials};
use mesh_tower::inbound::MeshServer;
use mesh_tower::metrics::IstioMetrics;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use mesh_tower::tcp::MeshTcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn task_yaml(name: &str) -> String {
    let rel = format!("istio-io-tasks/{name}");
    [
        "../../../shared/istio-samples",
        "/work/shared/istio-samples",
    ]
    .iter()
    .map(|d| std::path::Path::new(d).join(&rel))
    .find(|p| p.exists())
    .map(|p| std::fs::read_to_string(p).unwrap())
    .expect(name)
}

pub struct Pki {
    pub ca: MeshCa,
}

impl Pki {
    pub fn new() -> Self {
        Pki {
            ca: MeshCa::self_signed("cluster.local").unwrap(),
        }
    }

    pub fn creds(&self, ns: &str, sa: &str) -> Arc<WorkloadCredentials> {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        WorkloadCredentials::new(self.ca.issue(&id, Duration::from_secs(3600), &[]).unwrap())
            .unwrap()
    }
}

/// The tcp-echo sample's service: ports 9000, 9001, 9002 in `foo`.
pub const TCP_ECHO: &str = "
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: foo, labels: {app: tcp-echo}}
spec:
  selector: {app: tcp-echo}
  ports:
  - {name: tcp, port: 9000}
  - {name: tcp-other, port: 9001}
  - {name: tcp-third, port: 9002}
";

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The tcp-echo app: answers every line with `hello <line>` (the sample's prefix).
pub async fn echo(mut conn: MeshTcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut out = b"hello ".to_vec();
                out.extend_from_slice(&buf[..n]);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Starts the tcp-echo workload (one server per port, sharing one metrics registry) with
/// `version`, registered in the mesh; returns its port addresses by service port.
pub async fn start_echo(
    mesh: &Mesh,
    pki: &Pki,
    version: &str,
    metrics: &Arc<IstioMetrics>,
) -> BTreeMap<u16, SocketAddr> {
    let mut addrs = BTreeMap::new();
    let mut ports = BTreeMap::new();
    let app_labels = labels(&[("app", "tcp-echo"), ("version", version)]);
    for (name, port) in [("tcp", 9000u16), ("tcp-other", 9001), ("tcp-third", 9002)] {
        let server = MeshServer::builder(
            mesh.clone(),
            "foo",
            "tcp-echo",
            app_labels.clone(),
            pki.creds("foo", "tcp-echo"),
        )
        .workload_name(format!("tcp-echo-{version}"))
        .service_host("tcp-echo.foo.svc.cluster.local")
        .metrics(Arc::clone(metrics))
        .port(port)
        .build()
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { server.serve_tcp(listener, echo).await });
        addrs.insert(port, addr);
        ports.insert(name.to_string(), addr.port());
    }
    mesh.register(Workload {
        name: format!("tcp-echo-{version}"),
        namespace: "foo".to_string(),
        service_account: "tcp-echo".to_string(),
        labels: app_labels,
        address: addrs[&9000].ip(),
        ports,
        locality: None,
        weight: 0,
    });
    addrs
}

pub fn sleep_client(mesh: &Mesh, pki: &Pki) -> MeshClient {
    MeshClient::builder(
        mesh.clone(),
        ClientWorkload::new("sleep", "foo", "sleep").with_label("app", "sleep"),
    )
    .credentials(pki.creds("foo", "sleep"))
    .build()
}

/// One exchange: `Ok(answer)` when the echo answered, `Err(why)` when the connection was
/// refused, closed or reset.
pub async fn talk(client: &MeshClient, target: &str) -> Result<String, String> {
    let mut conn = client.connect(target).await.map_err(|e| e.to_string())?;
    conn.write_all(b"world").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?;
    match read {
        Ok(0) => Err("closed".into()),
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

pub fn metric_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .collect()
}

pub fn value(line: &str) -> u64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
