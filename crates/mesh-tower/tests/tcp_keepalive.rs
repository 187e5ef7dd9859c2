//! `tcpKeepalive` (DestinationRule `connectionPool.tcp.tcpKeepalive`, MeshConfig
//! `tcpKeepalive`): the mesh client's upstream sockets get `SO_KEEPALIVE` with the
//! configured idle time, as Envoy's cluster `upstream_connection_options`. Checked from the
//! kernel's side: an idle keepalive socket has its keepalive timer armed (`/proc/net/tcp`,
//! timer 2) for the configured time; a socket without keepalive has no timer.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use mesh_core::load::load_str;
use mesh_core::mesh::Mesh;
use mesh_core::meshconfig::MeshConfig;
use mesh_core::registry::Workload;
use mesh_tower::outbound::{ClientWorkload, MeshClient};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: foo}
spec:
  selector: {app: redis}
  ports: [{name: tcp-redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: foo}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080}]
";

/// The kernel's timer for the established IPv4 connection from `local` to `remote`:
/// (kind, seconds left), kind 2 being the keepalive timer, 0 none (`/proc/net/tcp` `tr`
/// and `tm->when`, the latter in USER_HZ ticks of 1/100 s).
fn timer_of(local: SocketAddr, remote: SocketAddr) -> Option<(u8, u64)> {
    let local = format!("0100007F:{:04X}", local.port());
    let remote = format!("0100007F:{:04X}", remote.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local, remote, state 01 (ESTABLISHED)
        if fields.get(1..4) != Some(&[local.as_str(), remote.as_str(), "01"][..]) {
            return None;
        }
        let (kind, when) = fields.get(5)?.split_once(':')?;
        Some((
            u8::from_str_radix(kind, 16).ok()?,
            u64::from_str_radix(when, 16).ok()? / 100,
        ))
    })
}

/// A mesh on `mesh_config` with `dr` (may be empty), a plain TCP server for `redis` and an
/// HTTP server for `web`; returns the mesh and, for each server, its connections as they
/// come (the client socket's local address, the server's).
async fn setup(
    mesh_config: &str,
    dr: &str,
) -> (
    Mesh,
    tokio::sync::mpsc::UnboundedReceiver<(SocketAddr, SocketAddr)>,
    tokio::sync::mpsc::UnboundedReceiver<(SocketAddr, SocketAddr)>,
) {
    let config = MeshConfig::from_yaml(mesh_config).unwrap();
    let mesh = Mesh::with_mesh_config(&config);
    mesh.reload_loaded(load_str(&format!("{SERVICES}---\n{dr}"), "mesh.yaml"))
        .unwrap();
    let (tcp_tx, tcp_rx) = tokio::sync::mpsc::unbounded_channel();
    let redis = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redis_addr = redis.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = redis.accept().await {
            let _ = tcp_tx.send((peer, redis_addr));
            tokio::spawn(async move {
                let _ = s.write_all(b"+OK\r\n").await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let (http_tx, http_rx) = tokio::sync::mpsc::unbounded_channel();
    let web = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = web.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, peer)) = web.accept().await {
            let _ = http_tx.send((peer, web_addr));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    for (app, port_name, addr) in [
        ("redis", "tcp-redis", redis_addr),
        ("web", "http", web_addr),
    ] {
        mesh.register(Workload {
            name: format!("{app}-0"),
            namespace: "foo".to_string(),
            service_account: app.to_string(),
            labels: [("app".to_string(), app.to_string())].into(),
            address: addr.ip(),
            ports: [(port_name.to_string(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
    }
    (mesh, tcp_rx, http_rx)
}

/// The keepalive timers of a TCP connection and an (idle, pooled) HTTP connection the
/// mesh client opens.
async fn timers(mesh_config: &str, dr: &str) -> [Option<(u8, u64)>; 2] {
    let (mesh, mut tcp_peers, mut http_peers) = setup(mesh_config, dr).await;
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    let _conn = client.connect("redis:6379").await.unwrap();
    let (tcp_local, tcp_remote) = tcp_peers.recv().await.unwrap();
    let resp = client
        .request(
            http::Request::get("http://web:8080/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    let (http_local, http_remote) = http_peers.recv().await.unwrap();
    [
        timer_of(tcp_local, tcp_remote),
        timer_of(http_local, http_remote),
    ]
}

#[tokio::test]
async fn destination_rule_tcp_keepalive_arms_the_keepalive_timer() {
    let dr = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: keepalive, namespace: foo}
spec:
  host: '*.foo.svc.cluster.local'
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 600s, interval: 30s, probes: 4}
";
    for t in timers("", dr).await {
        let (kind, secs) = t.expect("socket in /proc/net/tcp");
        assert_eq!(kind, 2, "keepalive timer: {t:?}");
        assert!((590..=600).contains(&secs), "about 600 s left: {t:?}");
    }
}

#[tokio::test]
async fn mesh_config_tcp_keepalive_applies_under_the_destination_rule() {
    // mesh-wide only
    for t in timers("tcpKeepalive: {time: 900s}", "").await {
        let (kind, secs) = t.unwrap();
        assert_eq!(kind, 2, "{t:?}");
        assert!((890..=900).contains(&secs), "{t:?}");
    }
    // a DestinationRule's time wins over the mesh's
    let dr = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: redis, namespace: foo}
spec:
  host: redis
  trafficPolicy:
    connectionPool:
      tcp:
        tcpKeepalive: {time: 120s}
";
    let [tcp, http] = timers("tcpKeepalive: {time: 900s, probes: 3}", dr).await;
    let (kind, secs) = tcp.unwrap();
    assert_eq!(kind, 2);
    assert!((110..=120).contains(&secs), "{tcp:?}");
    let (_, secs) = http.unwrap();
    assert!(
        (890..=900).contains(&secs),
        "web keeps the mesh's: {http:?}"
    );
}

#[tokio::test]
async fn an_empty_tcp_keepalive_uses_the_systems_times() {
    // `tcpKeepalive: {}`: SO_KEEPALIVE with the operating system's idle time
    let os_time: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for t in timers("tcpKeepalive: {}", "").await {
        let (kind, secs) = t.expect("socket in /proc/net/tcp");
        assert_eq!(kind, 2, "keepalive timer: {t:?}");
        assert!(
            (os_time - 10..=os_time).contains(&secs),
            "{t:?}, system {os_time}"
        );
    }
}

#[tokio::test]
async fn without_tcp_keepalive_no_timer_is_armed() {
    for t in timers("", "").await {
        let (kind, _) = t.expect("socket in /proc/net/tcp");
        assert_eq!(kind, 0, "no keepalive: {t:?}");
    }
}
