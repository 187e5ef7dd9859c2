//! The access log of opaque TCP connections, end to end over loopback (in a test binary of
//! its own: it listens with a thread-local `tracing` subscriber, which tests running in
//! parallel in the same process would race with for the callsites' interest cache).

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

struct Pki {
    ca: MeshCa,
}

impl Pki {
    fn new() -> Self {
        Pki {
            ca: MeshCa::self_signed("cluster.local").unwrap(),
        }
    }

    fn creds(&self, ns: &str, sa: &str) -> Arc<WorkloadCredentials> {
        let id = Identity::new("cluster.local", ns, sa).unwrap();
        WorkloadCredentials::new(self.ca.issue(&id, Duration::from_secs(3600), &[]).unwrap())
            .unwrap()
    }
}

/// The tcp-echo sample's service: ports 9000, 9001, 9002 in `foo`.
const TCP_ECHO: &str = "
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

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The tcp-echo app: answers every line with `hello <line>` (the sample's prefix).
async fn echo(mut conn: MeshTcpStream) {
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
async fn start_echo(
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

/// One exchange: `Ok(answer)` when the echo answered, `Err(why)` when the connection was
/// refused, closed or reset.
async fn talk(client: &MeshClient, target: &str) -> Result<String, String> {
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

/// The access log of TCP connections, as Envoy's TCP proxy writes it in Istio's default
/// format (`"- - -" 0 FLAGS`, bytes, upstream cluster, addresses): the server's entry, the
/// client's (with `access_log(true)`), and a failed connection with its flag.
#[tokio::test(flavor = "current_thread")]
async fn tcp_access_log_entries() {
    use std::sync::Mutex;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);
    struct Msg<'a>(&'a mut Option<String>);
    impl tracing::field::Visit for Msg<'_> {
        fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
            if f.name() == "message" {
                *self.0 = Some(format!("{v:?}"));
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(&self, e: &tracing::Event<'_>, _: Context<'_, S>) {
            if e.metadata().target() == mesh_tower::accesslog::TARGET {
                let mut m = None;
                e.record(&mut Msg(&mut m));
                self.0.lock().unwrap().extend(m);
            }
        }
    }
    let lines = Lines::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));

    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  host: tcp-echo
  subsets: [{{name: v1, labels: {{version: v1}}}}]
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    let addrs = start_echo(&mesh, &pki, "v1", &metrics).await;
    let sleep = MeshClient::builder(mesh.clone(), ClientWorkload::new("sleep", "foo", "sleep"))
        .credentials(pki.creds("foo", "sleep"))
        .access_log(true)
        .build();
    assert_eq!(
        talk(&sleep, "tcp-echo:9000").await.as_deref(),
        Ok("hello world")
    );
    // the server writes its entry when its side sees the close
    for _ in 0..500 {
        if lines.0.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = lines.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:#?}");
    let server = got
        .iter()
        .find(|l| l.contains(&format!(" {} ", addrs[&9000])))
        .expect("the server's entry names its own address");
    // received 5 ("world"), sent 11 ("hello world")
    assert!(server.contains("\"- - -\" 0 - - - \"-\" 5 11 "), "{server}");
    let client = got.iter().find(|l| *l != server).unwrap();
    assert!(client.contains("\"- - -\" 0 - - - \"-\" 5 11 "), "{client}");
    assert!(
        client.contains(&format!(
            "\"{}\" outbound|9000||tcp-echo.foo.svc.cluster.local ",
            addrs[&9000]
        )),
        "{client}"
    );
    // a refused connection: logged with UF
    lines.0.lock().unwrap().clear();
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    mesh.register(Workload {
        name: "tcp-echo-v1".into(),
        namespace: "foo".into(),
        service_account: "tcp-echo".into(),
        labels: labels(&[("app", "tcp-echo"), ("version", "v1")]),
        address: dead.ip(),
        ports: ["tcp", "tcp-other", "tcp-third"]
            .map(|n| (n.to_string(), dead.port()))
            .into(),
        locality: None,
        weight: 0,
    });
    let err = sleep.connect("tcp-echo:9002").await.unwrap_err();
    assert_eq!(err.flags().to_string(), "UF,URX", "{err}");
    let got = lines.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("\"- - -\" 0 UF,URX - - \"-\" 0 0 "),
        "{}",
        got[0]
    );
}
