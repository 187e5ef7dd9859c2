//! Opaque TCP through the mesh: `cargo run --example tcp_echo`.
//!
//! The config is `examples/config/tcp-echo.yaml`, Istio's tcp-echo sample with its "TCP
//! Traffic Shifting" and "Authorization for TCP traffic" tasks: tcp-echo v1 and v2 as mesh
//! TCP servers (`MeshServer::serve_tcp`, STRICT mutual TLS), a VirtualService `tcp` route
//! sending 80 % of the connections to v1 and 20 % to v2, and an AuthorizationPolicy that
//! lets only `sleep` connect. The example opens connections as `sleep`
//! (`MeshClient::connect`), counts which version answered, shows that another identity is
//! refused, and prints the `istio_tcp_*` series the servers recorded.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use inmesh::core::mesh::Mesh;
use inmesh::core::names::MeshOptions;
use inmesh::core::registry::Workload;
use inmesh::tls::{Identity, MeshCa, WorkloadCredentials};
use inmesh::tower::inbound::MeshServer;
use inmesh::tower::metrics::IstioMetrics;
use inmesh::tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type BoxError = Box<dyn Error + Send + Sync>;

/// What the run saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Answers by prefix (`one`: v1, `two`: v2), of `sleep`'s connections.
    pub answers: BTreeMap<String, u32>,
    /// What a client with another identity got.
    pub other_identity: String,
    /// The servers' `istio_tcp_connections_opened_total` lines.
    pub metrics_lines: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u32 = self.answers.values().sum();
        writeln!(
            f,
            "tcp-echo through the mesh ({total} connections from sleep, mTLS):"
        )?;
        for (prefix, n) in &self.answers {
            let version = if prefix == "one" { "v1" } else { "v2" };
            let share = f64::from(*n) * 100.0 / f64::from(total.max(1));
            writeln!(f, "  {version} answered {n} ({share:.1}%)")?;
        }
        writeln!(f, "another identity (web): {}", self.other_identity)?;
        writeln!(
            f,
            "the servers' istio_tcp_connections_opened_total (some labels):"
        )?;
        for l in &self.metrics_lines {
            let label = |name: &str| {
                let at = l.find(&format!("{name}=\"")).map(|i| i + name.len() + 2);
                at.and_then(|i| l[i..].split('"').next()).unwrap_or("?")
            };
            let count = l.rsplit(' ').next().unwrap_or("?");
            writeln!(
                f,
                "  {} -> {} ({}): {count}",
                label("source_principal"),
                label("destination_workload"),
                label("connection_security_policy"),
            )?;
        }
        Ok(())
    }
}

/// The config file.
pub fn config_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/tcp-echo.yaml")
}

/// Starts tcp-echo `version` (answers each read with `<prefix> <bytes>`, as the sample).
async fn tcp_echo(
    mesh: &Mesh,
    ca: &MeshCa,
    version: &'static str,
    prefix: &'static str,
    metrics: &Arc<IstioMetrics>,
) -> Result<(), BoxError> {
    let id = Identity::new("cluster.local", "foo", "tcp-echo")?;
    let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
    let labels: BTreeMap<String, String> = [("app", "tcp-echo"), ("version", version)]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let server = MeshServer::builder(mesh.clone(), "foo", "tcp-echo", labels.clone(), creds)
        .workload_name(format!("tcp-echo-{version}"))
        .service_host("tcp-echo.foo.svc.cluster.local")
        .metrics(Arc::clone(metrics))
        .port(9000)
        .build()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        server
            .serve_tcp(listener, move |mut conn| async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    let mut out = format!("{prefix} ").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            })
            .await
    });
    mesh.register(Workload {
        name: format!("tcp-echo-{version}"),
        namespace: "foo".to_string(),
        service_account: "tcp-echo".to_string(),
        labels,
        address: addr.ip(),
        ports: [("tcp".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    Ok(())
}

/// One exchange over a new connection: the answer, or why there was none.
async fn talk(client: &MeshClient) -> Result<String, String> {
    let mut conn = client
        .connect("tcp-echo:9000")
        .await
        .map_err(|e| e.to_string())?;
    conn.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
        Ok(Ok(0)) => Err("connection closed by the server".into()),
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// Runs the example with `connections` connections from `sleep`.
pub async fn run(connections: u32) -> Result<Report, BoxError> {
    let mesh = Mesh::from_paths([config_file()], MeshOptions::default())?;
    let ca = MeshCa::self_signed("cluster.local")?;
    let metrics = Arc::new(IstioMetrics::new());
    tcp_echo(&mesh, &ca, "v1", "one", &metrics).await?;
    tcp_echo(&mesh, &ca, "v2", "two", &metrics).await?;
    let client = |sa: &str| -> Result<MeshClient, BoxError> {
        let id = Identity::new("cluster.local", "foo", sa)?;
        let creds = WorkloadCredentials::new(ca.issue(&id, Duration::from_secs(3600), &[])?)?;
        Ok(
            MeshClient::builder(mesh.clone(), ClientWorkload::new(sa, "foo", sa))
                .credentials(creds)
                .build(),
        )
    };
    let sleep = client("sleep")?;
    let mut report = Report::default();
    for _ in 0..connections {
        let answer = talk(&sleep).await.map_err(|e| format!("sleep: {e}"))?;
        let prefix = answer.split(' ').next().unwrap_or("").to_string();
        *report.answers.entry(prefix).or_default() += 1;
    }
    report.other_identity = match talk(&client("web")?).await {
        Ok(a) => format!("answered {a:?} (it should not have been)"),
        // (the client's TLS reports the close as an unexpected end of file)
        Err(e) if e.contains("close_notify") || e.contains("closed") => {
            "refused: the server closed the connection right after the TLS handshake (RBAC)"
                .to_string()
        }
        Err(e) => format!("refused: {e}"),
    };
    // the servers count a connection's close when they see it
    tokio::time::sleep(Duration::from_millis(100)).await;
    report.metrics_lines = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .map(String::from)
        .collect();
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let report = run(100).await?;
    print!("{report}");
    Ok(())
}
