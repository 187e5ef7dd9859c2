//! The access log of opaque TCP connections, end to end over loopback (in a test binary of
//! its own: it listens with a thread-local `tracing` subscriber, which tests running in
//! parallel in the same process would race with for the callsites' interest cache).

use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tower::metrics::IstioMetrics;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::net::TcpListener;

mod tcp_support;
use tcp_support::*;

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
    // Envoy's inbound TCP proxy: the application as its upstream host, `inbound|9000||`,
    // and the SNI of the client's mesh mTLS
    assert!(
        server.contains(&format!("\"{}\" inbound|9000|| ", addrs[&9000])),
        "{server}"
    );
    assert!(
        server.ends_with(" outbound_.9000_._.tcp-echo.foo.svc.cluster.local -"),
        "{server}"
    );
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
