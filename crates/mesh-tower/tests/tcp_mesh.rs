//! Opaque TCP through the mesh, end to end over loopback: `MeshClient::connect` and
//! `MeshServer::serve_tcp` with certificates from our CA, Istio's "Authorization for TCP
//! traffic" task with its own YAML, TCP traffic shifting, the `istio_tcp_*` metrics, and
//! the failures (STRICT plaintext, a dead endpoint, a wrong identity, maxConnections).

use std::sync::Arc;
use std::time::Duration;

use mesh_core::mesh::Mesh;
use mesh_core::registry::Workload;
use mesh_tower::inbound::MeshServer;
use mesh_tower::metrics::IstioMetrics;
use mesh_tower::outbound::{ClientWorkload, ConnectError, MeshClient};
use mesh_tower::tcp::TcpConnectError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod tcp_support;
use tcp_support::*;

/// istio.io "Authorization for TCP traffic", with the task's own policies: the verdicts
/// the task shows for ports 9000, 9001 and 9002.
#[tokio::test]
async fn istio_tcp_authorization_task() {
    let cases: [(&str, [bool; 3]); 5] = [
        // no policy: everything connects
        ("", [true, true, true]),
        ("authz-tcp-allow-ports.yaml", [true, true, false]),
        // an HTTP-only field in an ALLOW rule: the rule never matches a TCP connection
        (
            "authz-tcp-allow-methods-and-port.yaml",
            [false, false, false],
        ),
        // in a DENY rule the HTTP-only field is dropped: port 9000 is denied
        ("authz-tcp-deny-methods-and-port.yaml", [false, true, true]),
        // a DENY with only HTTP-only fields denies all TCP
        ("authz-tcp-deny-methods.yaml", [false, false, false]),
    ];
    let pki = Pki::new();
    for (policy, want) in cases {
        let mut yaml = TCP_ECHO.to_string();
        if !policy.is_empty() {
            yaml.push_str("---\n");
            yaml.push_str(&task_yaml(policy));
        }
        let mesh = Mesh::from_yaml(&yaml).unwrap();
        let metrics = Arc::new(IstioMetrics::new());
        start_echo(&mesh, &pki, "v1", &metrics).await;
        let sleep = sleep_client(&mesh, &pki);
        for (port, allowed) in [9000, 9001, 9002].into_iter().zip(want) {
            let got = talk(&sleep, &format!("tcp-echo:{port}")).await;
            if allowed {
                assert_eq!(got.as_deref(), Ok("hello world"), "{policy} port {port}");
            } else {
                assert!(got.is_err(), "{policy} port {port}: {got:?}");
            }
        }
        // denied connections were opened and closed on the server, and moved no byte
        let text = metrics.render();
        let opened: u64 = metric_lines(&text, "istio_tcp_connections_opened_total")
            .iter()
            .map(|l| value(l))
            .sum();
        assert_eq!(opened, 3, "{policy}\n{text}");
        let received: u64 = metric_lines(&text, "istio_tcp_received_bytes_total")
            .iter()
            .map(|l| value(l))
            .sum();
        let allowed = want.iter().filter(|a| **a).count() as u64;
        assert_eq!(received, 5 * allowed, "{policy}\n{text}");
    }
}

/// Istio's "TCP traffic shifting" task, in the mesh: 80/20 between v1 and v2 by a
/// VirtualService `tcp` route; both reporters count the connections and the bytes.
#[tokio::test]
async fn tcp_traffic_shifting_and_metrics() {
    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo-destination, namespace: foo}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{{port: 9000}}]
    route:
    - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v1}}, weight: 80}}
    - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v2}}, weight: 20}}
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let server_metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &server_metrics).await;
    start_echo(&mesh, &pki, "v2", &server_metrics).await;
    let sleep = sleep_client(&mesh, &pki);
    const N: usize = 200;
    for _ in 0..N {
        assert_eq!(
            talk(&sleep, "tcp-echo:9000").await.as_deref(),
            Ok("hello world")
        );
    }
    // the server counts closes as the client's drops reach it
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client_text = sleep.metrics().render();
    let opened = metric_lines(&client_text, "istio_tcp_connections_opened_total");
    let by_version = |v: &str| {
        opened
            .iter()
            .filter(|l| l.contains(&format!("destination_version=\"{v}\"")))
            .map(|l| value(l))
            .sum::<u64>()
    };
    let (v1, v2) = (by_version("v1"), by_version("v2"));
    assert_eq!(v1 + v2, N as u64, "{client_text}");
    assert!((120..=190).contains(&v1), "80/20 split: v1 {v1}, v2 {v2}");
    let line = opened[0];
    for label in [
        r#"reporter="source""#,
        r#"source_workload="sleep""#,
        r#"source_principal="spiffe://cluster.local/ns/foo/sa/sleep""#,
        r#"destination_principal="spiffe://cluster.local/ns/foo/sa/tcp-echo""#,
        r#"destination_service="tcp-echo.foo.svc.cluster.local""#,
        r#"destination_service_name="tcp-echo""#,
        r#"request_protocol="tcp""#,
        r#"response_flags="-""#,
        r#"connection_security_policy="unknown""#,
    ] {
        assert!(line.contains(label), "{label} in {line}");
    }
    assert!(!line.contains("response_code"), "{line}");
    let sum =
        |text: &str, name: &str| -> u64 { metric_lines(text, name).iter().map(|l| value(l)).sum() };
    // "world" to the server, "hello world" back, per connection
    assert_eq!(
        sum(&client_text, "istio_tcp_received_bytes_total"),
        5 * N as u64
    );
    assert_eq!(
        sum(&client_text, "istio_tcp_sent_bytes_total"),
        11 * N as u64
    );
    assert_eq!(
        sum(&client_text, "istio_tcp_connections_closed_total"),
        N as u64
    );

    let server_text = server_metrics.render();
    let line = metric_lines(&server_text, "istio_tcp_connections_opened_total")[0];
    for label in [
        r#"reporter="destination""#,
        // (sleep is not in the registry: the server knows it by its certificate only)
        r#"source_principal="spiffe://cluster.local/ns/foo/sa/sleep""#,
        r#"destination_workload="tcp-echo-v"#,
        r#"connection_security_policy="mutual_tls""#,
        r#"request_protocol="tcp""#,
    ] {
        assert!(line.contains(label), "{label} in {line}");
    }
    assert_eq!(
        sum(&server_text, "istio_tcp_connections_opened_total"),
        N as u64
    );
    assert_eq!(
        sum(&server_text, "istio_tcp_received_bytes_total"),
        5 * N as u64
    );
    assert_eq!(
        sum(&server_text, "istio_tcp_sent_bytes_total"),
        11 * N as u64
    );
    assert_eq!(
        sum(&server_text, "istio_tcp_connections_closed_total"),
        N as u64
    );
}

/// STRICT: a plaintext client (no certificate, or a raw socket) is refused before the
/// handler sees a byte; PERMISSIVE takes it as plaintext.
#[tokio::test]
async fn strict_refuses_plaintext_permissive_takes_it() {
    let pki = Pki::new();
    for (mode, plaintext_ok) in [("STRICT", false), ("PERMISSIVE", true)] {
        let yaml = format!(
            "{TCP_ECHO}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec: {{mtls: {{mode: {mode}}}}}
"
        );
        let mesh = Mesh::from_yaml(&yaml).unwrap();
        let metrics = Arc::new(IstioMetrics::new());
        let addrs = start_echo(&mesh, &pki, "v1", &metrics).await;
        // a client without credentials connects in plaintext
        let anonymous =
            MeshClient::builder(mesh.clone(), ClientWorkload::new("web", "foo", "web")).build();
        let got = talk(&anonymous, "tcp-echo:9000").await;
        assert_eq!(got.is_ok(), plaintext_ok, "{mode}: {got:?}");
        // a raw socket to the port
        let mut raw = tokio::net::TcpStream::connect(addrs[&9000]).await.unwrap();
        raw.write_all(b"world").await.unwrap();
        let mut buf = [0u8; 32];
        let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n > 0, plaintext_ok, "{mode}");
        // the mesh client still gets through with mTLS
        let sleep = sleep_client(&mesh, &pki);
        assert_eq!(
            talk(&sleep, "tcp-echo:9000").await.as_deref(),
            Ok("hello world")
        );
        if plaintext_ok {
            let text = metrics.render();
            assert!(
                text.contains(r#"connection_security_policy="none""#),
                "{text}"
            );
        }
    }
}

/// A dead endpoint: the connect fails with Envoy's UF, counted with the flag; with outlier
/// detection the endpoint is ejected and the next connections go to the live one.
#[tokio::test]
async fn dead_endpoint_fails_uf_then_is_ejected() {
    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  host: tcp-echo.foo.svc.cluster.local
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &metrics).await;
    // a second endpoint whose process died: its port refuses connections
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    mesh.register(Workload {
        name: "tcp-echo-dead".to_string(),
        namespace: "foo".to_string(),
        service_account: "tcp-echo".to_string(),
        labels: labels(&[("app", "tcp-echo"), ("version", "v1")]),
        address: dead_addr.ip(),
        ports: [("tcp".to_string(), dead_addr.port())].into(),
        locality: None,
        weight: 0,
    });
    let sleep = sleep_client(&mesh, &pki);
    let mut failures = 0;
    for _ in 0..10 {
        match sleep.connect("tcp-echo:9000").await {
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                assert!(
                    matches!(
                        &e,
                        TcpConnectError::Connect {
                            error,
                            endpoint,
                            ..
                        } if *endpoint == dead_addr && matches!(**error, ConnectError::Tcp(_))
                    ),
                    "{e}"
                );
                assert_eq!(e.flags().to_string(), "UF,URX");
                assert!(
                    e.to_string()
                        .contains("outbound|9000||tcp-echo.foo.svc.cluster.local"),
                    "{e}"
                );
            }
        }
    }
    assert_eq!(failures, 1, "ejected after its first failure");
    let text = sleep.metrics().render();
    let uf = metric_lines(&text, "istio_tcp_connections_opened_total")
        .into_iter()
        .find(|l| l.contains(r#"response_flags="UF,URX""#))
        .expect("a UF series");
    assert_eq!(value(uf), 1, "{uf}");
}

/// A server presenting another identity than the endpoint's service account: the client's
/// handshake refuses it (auto mTLS checks the SPIFFE identity), nothing is sent.
#[tokio::test]
async fn wrong_server_identity_is_refused() {
    let pki = Pki::new();
    let mesh = Mesh::from_yaml(TCP_ECHO).unwrap();
    let impostor = MeshServer::builder(
        mesh.clone(),
        "foo",
        "impostor",
        labels(&[("app", "tcp-echo")]),
        pki.creds("foo", "impostor"),
    )
    .port(9000)
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { impostor.serve_tcp(listener, echo).await });
    mesh.register(Workload {
        name: "tcp-echo-v1".to_string(),
        namespace: "foo".to_string(),
        service_account: "tcp-echo".to_string(),
        labels: labels(&[("app", "tcp-echo")]),
        address: addr.ip(),
        ports: [("tcp".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    let sleep = sleep_client(&mesh, &pki);
    let err = sleep.connect("tcp-echo:9000").await.unwrap_err();
    match &err {
        TcpConnectError::Connect { error, .. } => match &**error {
            ConnectError::Tls { verify, .. } => {
                let v = verify.as_ref().expect("a verification failure").to_string();
                assert!(v.contains("tcp-echo") && v.contains("impostor"), "{v}");
            }
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
    assert_eq!(err.flags().to_string(), "UF,URX");
}

/// `tcp.maxConnections: 1`: a second connection is refused at once with UO, as Envoy's TCP
/// proxy refuses it (it checks the circuit breaker before its pool, which would queue the
/// connection); once the first closes, a new one goes through.
#[tokio::test]
async fn max_connections_overflow_at_once() {
    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  host: tcp-echo
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: 1}}
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &metrics).await;
    let sleep = sleep_client(&mesh, &pki);
    let first = sleep.connect("tcp-echo:9000").await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(2), sleep.connect("tcp-echo:9000"))
        .await
        .expect("refused at once, not queued")
        .unwrap_err();
    assert_eq!(second.flags().to_string(), "UO", "{second}");
    drop(first);
    assert_eq!(
        talk(&sleep, "tcp-echo:9000").await.as_deref(),
        Ok("hello world")
    );
    // the overflow is counted with no destination workload (no host was chosen)
    let text = sleep.metrics().render();
    let uo = metric_lines(&text, "istio_tcp_connections_opened_total")
        .into_iter()
        .find(|l| l.contains(r#"response_flags="UO""#))
        .expect("a UO series");
    assert!(uo.contains(r#"destination_workload="unknown""#), "{uo}");
}

/// Names and addresses: the short name, the FQDN, the service's only port, an address
/// that is no service, a host nobody declared (black-holed: the mesh is REGISTRY_ONLY), a
/// route to an undefined subset.
#[tokio::test]
async fn targets_resolve_like_http() {
    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: v1
kind: Service
metadata: {{name: redis, namespace: foo}}
spec:
  selector: {{app: tcp-echo}}
  ports: [{{name: tcp, port: 9000}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: broken, namespace: foo}}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{{port: 9002}}]
    route: [{{destination: {{host: tcp-echo, subset: nope}}}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: istio-system}}
spec: {{outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}}}
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &metrics).await;
    let sleep = sleep_client(&mesh, &pki);
    for ok in [
        "tcp-echo:9000",
        "tcp-echo.foo:9001",
        "TCP-ECHO.foo.svc.cluster.local:9000",
        "redis",
    ] {
        assert_eq!(talk(&sleep, ok).await.as_deref(), Ok("hello world"), "{ok}");
    }
    let err = sleep.connect("tcp-echo:9002").await.unwrap_err();
    assert!(
        matches!(err, TcpConnectError::ClusterNotFound { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("outbound|9002|nope|tcp-echo.foo.svc.cluster.local"),
        "{err}"
    );
    let err = sleep.connect("db.example.com:5432").await.unwrap_err();
    assert!(matches!(err, TcpConnectError::BlackHole { .. }), "{err}");
    let err = sleep.connect("tcp-echo").await.unwrap_err();
    assert!(
        matches!(err, TcpConnectError::InvalidTarget { .. }),
        "several ports: {err}"
    );
    let err = sleep.connect("tcp-echo:9999").await.unwrap_err();
    assert!(
        matches!(err, TcpConnectError::BlackHole { .. }),
        "undeclared port: {err}"
    );
    let text = sleep.metrics().render();
    assert!(
        text.contains(r#"destination_service_name="BlackHoleCluster""#),
        "{text}"
    );
    assert!(text.contains(r#"response_flags="NC""#), "{text}");
    // a TCP connection has no Host: istio_stats leaves the black hole's service unknown
    assert!(
        text.lines()
            .filter(|l| l.contains("BlackHoleCluster"))
            .all(|l| l.contains(r#"destination_service="unknown""#)),
        "{text}"
    );
}

/// Istio's "TCP Traffic Shifting" task through the ingress gateway: a Gateway `TCP` server
/// on 31400 routing to the STRICT tcp-echo workload. The gateway originates mutual TLS with
/// its own identity (auto mTLS), which the workload's AuthorizationPolicy allows; the
/// gateway counts the connection in its `istio_tcp_*` metrics.
#[tokio::test]
async fn ingress_gateway_tcp_server_to_strict_workload() {
    use mesh_tower::gateway::GatewayServer;
    let pki = Pki::new();
    let yaml = format!(
        "{TCP_ECHO}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: tcp-echo}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account]}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-echo-gateway, namespace: foo}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 31400, name: tcp, protocol: TCP}}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  # a named host: a TCP server has no SNI, every VirtualService bound to it applies
  hosts: [tcp-echo.example.com]
  gateways: [tcp-echo-gateway]
  tcp:
  - match: [{{port: 31400}}]
    route: [{{destination: {{host: tcp-echo, port: {{number: 9000}}}}}}]
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &metrics).await;
    let ingress = labels(&[("istio", "ingressgateway")]);
    let gw = GatewayServer::builder(mesh.clone(), "istio-system", ingress)
        .workload_credentials(pki.creds("istio-system", "istio-ingressgateway-service-account"))
        .listener(31400, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .start()
        .await
        .unwrap();
    let mut conn = tokio::net::TcpStream::connect(gw.local_addr(31400).unwrap())
        .await
        .unwrap();
    conn.write_all(b"world").await.unwrap();
    let mut buf = [0u8; 32];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"hello world");
    drop(conn);
    let text = metrics.render();
    let line = metric_lines(&text, "istio_tcp_connections_opened_total")[0];
    assert!(
        line.contains(r#"source_principal="spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account""#),
        "{line}"
    );
    assert!(
        line.contains(r#"connection_security_policy="mutual_tls""#),
        "{line}"
    );
    let gw_text = gw.metrics().render();
    let line = metric_lines(&gw_text, "istio_tcp_connections_opened_total")[0];
    assert!(line.contains(r#"reporter="source""#), "{line}");
    assert!(
        line.contains(r#"destination_service="tcp-echo.foo.svc.cluster.local""#),
        "{line}"
    );
}

/// `serve_tcp_with_shutdown`: after the signal no connection is accepted; an open one
/// finishes within the drain timeout, or is closed at its end.
#[tokio::test]
async fn tcp_shutdown_drains_then_closes() {
    let pki = Pki::new();
    let mesh = Mesh::from_yaml(TCP_ECHO).unwrap();
    let server = MeshServer::builder(
        mesh.clone(),
        "foo",
        "tcp-echo",
        labels(&[("app", "tcp-echo")]),
        pki.creds("foo", "tcp-echo"),
    )
    .port(9000)
    .drain_timeout(Duration::from_millis(300))
    .build()
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve_tcp_with_shutdown(listener, echo, async {
                let _ = stopped.await;
            })
            .await
    });
    mesh.register(Workload {
        name: "tcp-echo".into(),
        namespace: "foo".into(),
        service_account: "tcp-echo".into(),
        labels: labels(&[("app", "tcp-echo")]),
        address: addr.ip(),
        ports: [("tcp".to_string(), addr.port())].into(),
        locality: None,
        weight: 0,
    });
    let sleep = sleep_client(&mesh, &pki);
    let mut open = sleep.connect("tcp-echo:9000").await.unwrap();
    open.write_all(b"one").await.unwrap();
    let mut buf = [0u8; 32];
    let n = open.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello one");
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // still served during the drain
    open.write_all(b"two").await.unwrap();
    let n = open.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello two");
    // no new connection
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // the drain timeout ends the serve future and closes what is left
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap()
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// A port declared TLS carries the application's own TLS: `connect` routes it by the
/// VirtualService `tls` routes on the SNI (the host as written), as Istio's egress TLS
/// routing does; the bytes pass untouched.
#[tokio::test]
async fn tls_ports_follow_tls_routes_by_sni() {
    // two external endpoints that name themselves on accept
    let mut addrs = vec![];
    for name in ["primary", "mirror"] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
    }
    let se = |name: &str, host: &str, port: u16| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: foo}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {port}}}}}]
---
"
        )
    };
    let yaml = format!(
        "{}{}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: foo}}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{{port: 443, sniHosts: [api.example.com]}}]
    route: [{{destination: {{host: mirror.example.com, port: {{number: 443}}}}}}]
",
        se("api", "api.example.com", addrs[0].port()),
        se("mirror", "mirror.example.com", addrs[1].port())
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep")).build();
    let first = |target: &'static str| {
        let client = client.clone();
        async move {
            let mut conn = client.connect(target).await.unwrap();
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    assert_eq!(first("api.example.com:443").await, "mirror");
    assert_eq!(first("mirror.example.com:443").await, "mirror");

    // a Kubernetes service by its short name: the SNI `api`, the service (and its
    // VirtualService) `api.foo.svc.cluster.local`
    let kube = format!(
        "{}apiVersion: v1
kind: Service
metadata: {{name: api, namespace: foo}}
spec: {{clusterIP: 10.96.0.50, selector: {{app: api}}, ports: [{{name: tls, port: {p}}}]}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: api, namespace: foo}}
spec:
  hosts: [api]
  tls:
  - match: [{{port: {p}, sniHosts: [api]}}]
    route: [{{destination: {{host: mirror.example.com, port: {{number: 443}}}}}}]
  tcp:
  - route: [{{destination: {{host: mirror.example.com, port: {{number: 443}}}}}}]
",
        se("mirror", "mirror.example.com", addrs[1].port()),
        p = addrs[0].port()
    );
    let mesh = Mesh::from_yaml(&kube).unwrap();
    mesh.register(mesh_core::registry::Workload {
        name: "api-1".into(),
        namespace: "foo".into(),
        service_account: "api".into(),
        labels: [("app".to_string(), "api".to_string())].into(),
        address: "127.0.0.1".parse().unwrap(),
        ports: Default::default(),
        locality: None,
        weight: 0,
    });
    let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "foo", "sleep")).build();
    let mut conn = client
        .connect(&format!("api:{}", addrs[0].port()))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = conn.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"mirror");
    // an SNI no `tls` route takes (`api.foo`): no chain of the service's (its `tls` routes
    // name others), the passthrough chain: under ALLOW_ANY to the original destination,
    // the service's address, so its endpoints
    let mut conn = client
        .connect(&format!("api.foo:{}", addrs[0].port()))
        .await
        .unwrap();
    let n = conn.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"primary");
    // by the service's address: a TLS port has no `tcp` routes at a sidecar, and with no
    // SNI known no `tls` route matches: the service itself
    let mut conn = client
        .connect(&format!("10.96.0.50:{}", addrs[0].port()))
        .await
        .unwrap();
    let n = conn.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"primary");
}

/// DestinationRule `connectionPool.tcp.idleTimeout` and `maxConnectionDuration`, as Envoy's
/// TCP proxy applies them: a connection idle for longer, or open for longer, is closed.
#[tokio::test]
async fn tcp_idle_timeout_and_max_duration() {
    let pki = Pki::new();
    let dr = |tcp: &str| {
        format!(
            "{TCP_ECHO}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo, namespace: foo}}
spec:
  host: tcp-echo
  trafficPolicy: {{connectionPool: {{tcp: {tcp}}}}}
"
        )
    };
    // idle: bytes keep it open, silence closes it; from the top level even with a
    // port-level policy (istiod builds the TCP proxy from the top level alone)
    let with_port_level = dr("{idleTimeout: 300ms}").replace(
        "trafficPolicy: {",
        "trafficPolicy: {portLevelSettings: [{port: {number: 9000}, connectionPool: {tcp: {connectTimeout: 5s}}}], ",
    );
    let mesh = Mesh::from_yaml(&with_port_level).unwrap();
    let metrics = Arc::new(IstioMetrics::new());
    start_echo(&mesh, &pki, "v1", &metrics).await;
    let sleep = sleep_client(&mesh, &pki);
    let mut conn = sleep.connect("tcp-echo:9000").await.unwrap();
    let mut buf = [0u8; 32];
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        conn.write_all(b"ping").await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello ping");
    }
    let start = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("the idle timeout fires")
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );

    // max duration: closed even while bytes move
    let mesh = Mesh::from_yaml(&dr("{maxConnectionDuration: 400ms}")).unwrap();
    start_echo(&mesh, &pki, "v1", &metrics).await;
    let sleep = sleep_client(&mesh, &pki);
    let mut conn = sleep.connect("tcp-echo:9000").await.unwrap();
    let start = std::time::Instant::now();
    let failed = loop {
        assert!(start.elapsed() < Duration::from_secs(5), "never closed");
        if conn.write_all(b"ping").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => break true,
            Err(_) => {}
        }
    };
    assert!(
        failed && start.elapsed() >= Duration::from_millis(350),
        "{:?}",
        start.elapsed()
    );
}

/// Without a DestinationRule `tcp.idleTimeout`, the TCP proxies' idle timeout is the
/// proxy's `ISTIO_META_IDLE_TIMEOUT` (MeshConfig `defaultConfig.proxyMetadata`), as istiod
/// sets it on inbound and outbound TCP proxies (`0s`: none).
#[tokio::test]
async fn tcp_idle_timeout_from_the_proxy_metadata() {
    let pki = Pki::new();
    for (idle, closes) in [("300ms", true), ("0s", false)] {
        let config = mesh_core::meshconfig::MeshConfig::from_yaml(&format!(
            "defaultConfig: {{proxyMetadata: {{ISTIO_META_IDLE_TIMEOUT: {idle}}}}}"
        ))
        .unwrap();
        let mesh = Mesh::with_mesh_config(&config);
        mesh.reload_loaded(mesh_core::load::load_str(TCP_ECHO, "tcp-echo.yaml"))
            .unwrap();
        let metrics = Arc::new(IstioMetrics::new());
        start_echo(&mesh, &pki, "v1", &metrics).await;
        let sleep = sleep_client(&mesh, &pki);
        let mut conn = sleep.connect("tcp-echo:9000").await.unwrap();
        let mut buf = [0u8; 32];
        conn.write_all(b"ping").await.unwrap();
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello ping");
        let start = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await;
        if closes {
            assert!(read.is_ok(), "{idle}: still open after 1 s");
            assert!(
                start.elapsed() >= Duration::from_millis(250),
                "{:?}",
                start.elapsed()
            );
        } else {
            assert!(read.is_err(), "{idle}: closed: {read:?}");
        }
    }
}

/// The TCP proxy's timers run on their own, as Envoy's dispatcher runs them: an idle
/// connection is closed toward the server at the idle timeout while the application neither
/// reads nor writes, and a write after it fails (it does not revive the connection).
#[tokio::test]
async fn tcp_idle_timeout_closes_the_upstream_without_the_application_waiting() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // the server: when did it see the connection end?
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(start.elapsed());
    });
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.internal]
  location: MESH_EXTERNAL
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: foo}}
spec:
  host: db.internal
  trafficPolicy: {{connectionPool: {{tcp: {{idleTimeout: 300ms}}}}}}
",
        addr.port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    let mut conn = client.connect("db.internal:5432").await.unwrap();
    conn.write_all(b"hello").await.unwrap();
    // the application does nothing with the stream; the server sees the close anyway
    let seen = tokio::time::timeout(Duration::from_secs(5), closed_rx)
        .await
        .expect("the server saw the close while the stream was still open")
        .unwrap();
    assert!(
        seen >= Duration::from_millis(250) && seen < Duration::from_secs(2),
        "{seen:?}"
    );
    let err = conn.write_all(b"late").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    drop(conn);
}

/// `destinationSubnets` match the address the application's sidecar would see it dial: the
/// service's own address when `connect` names it.
#[tokio::test]
async fn destination_subnets_match_the_service_address() {
    let mut addrs = vec![];
    for name in ["primary", "replica"] {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(l.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
    }
    let yaml = format!(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.internal]
  addresses: [240.240.0.1]
  location: MESH_EXTERNAL
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db-replica, namespace: foo}}
spec:
  hosts: [db-replica.internal]
  location: MESH_EXTERNAL
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{{destinationSubnets: [240.240.0.0/16]}}]
    route: [{{destination: {{host: db-replica.internal}}}}]
",
        addrs[0].port(),
        addrs[1].port()
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    for target in ["db.internal:5432", "240.240.0.1:5432"] {
        let mut conn = client.connect(target).await.unwrap();
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"replica", "{target}");
    }
}

/// A port the service declares HTTP is not a TCP proxy's in Istio: `connect` refuses it
/// with a clear error instead of bypassing the HTTP routes.
#[tokio::test]
async fn http_ports_are_refused() {
    let mesh = Mesh::from_yaml(
        "
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}, {name: grpc-api, port: 9090}]}
",
    )
    .unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
    for target in ["reviews:9080", "reviews:9090"] {
        let err = client.connect(target).await.unwrap_err();
        assert!(
            matches!(err, TcpConnectError::InvalidTarget { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("MeshClient::request"), "{err}");
    }
}

/// A `resolution: NONE` ServiceEntry without `addresses` on a TCP port takes any address
/// on that port (istiod's `0.0.0.0:<port>` listener; IST0134): a connection to an IP the
/// registry does not know is that entry's traffic, which REGISTRY_ONLY lets through, and
/// it goes to the address the application asked for.
#[tokio::test]
async fn none_entries_without_addresses_take_any_address_on_their_port() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"db").await;
        }
    });
    let yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.ext.example]
  location: MESH_EXTERNAL
  ports: [{{number: {port}, name: tcp, protocol: TCP}}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: foo}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    let mut conn = client
        .connect(&format!("127.0.0.1:{port}"))
        .await
        .expect("the entry's traffic, not the black hole");
    let mut buf = [0u8; 8];
    let n = conn.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"db");
    // another port is no entry's: black-holed (REGISTRY_ONLY), not dialed
    assert!(matches!(
        client.connect("127.0.0.1:1").await,
        Err(TcpConnectError::BlackHole { .. })
    ));
}

/// A TLS port whose VirtualService's `tls` routes name other SNIs: a connection by another
/// name takes the listener's passthrough chain, closed under REGISTRY_ONLY (istiod builds
/// no chain to the service's own cluster then).
#[tokio::test]
async fn an_sni_no_tls_route_names_takes_the_passthrough_chain() {
    let mesh = Mesh::from_yaml(
        "
apiVersion: v1
kind: Service
metadata: {name: api, namespace: default}
spec:
  selector: {app: api}
  ports: [{name: tls, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.default.svc.cluster.local]
  tls:
  - match: [{port: 443, sniHosts: [api.default.svc.cluster.local]}]
    route: [{destination: {host: api.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
",
    )
    .unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("web", "default", "web")).build();
    let err = client.connect("api:443").await.unwrap_err();
    assert!(matches!(err, TcpConnectError::BlackHole { .. }), "{err}");
    // the name the route names is routed (to a service without endpoints here)
    let err = client
        .connect("api.default.svc.cluster.local:443")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TcpConnectError::NoHealthyUpstream { .. }),
        "{err}"
    );
}

/// Weighted `tcp` destinations are one TCP proxy in istiod
/// (`buildOutboundNetworkFiltersWithWeightedClusters`): its idle timeout comes from the
/// first destination's DestinationRule, whichever destination a connection goes to.
#[tokio::test]
async fn weighted_tcp_destinations_take_the_first_ones_idle_timeout() {
    let mut ports = Vec::new();
    for _ in 0..2 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports.push(l.local_addr().unwrap().port());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
    }
    let se = |name: &str, port: u16| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: foo}}
spec:
  hosts: [{name}.internal]
  location: MESH_EXTERNAL
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {port}}}}}]
---
"
        )
    };
    let yaml = format!(
        "{}{}{}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db-b, namespace: foo}}
spec:
  host: db-b.internal
  trafficPolicy: {{connectionPool: {{tcp: {{idleTimeout: 300ms}}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.internal]
  tcp:
  - route:
    - {{destination: {{host: db-b.internal}}, weight: 50}}
    - {{destination: {{host: db-a.internal}}, weight: 50}}
",
        se("db", ports[0]),
        se("db-a", ports[0]),
        se("db-b", ports[1])
    );
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    let client = MeshClient::builder(mesh, ClientWorkload::new("app", "foo", "app")).build();
    for _ in 0..6 {
        let mut conn = client.connect("db.internal:5432").await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .expect("every connection has db-b's idle timeout")
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    }
}

/// PERMISSIVE on a TCP port passes a client's own TLS (no Istio mTLS ALPN: an HTTPS or
/// database client outside the mesh) through to the application untouched, as istiod's
/// "plain TLS" filter chain does; the application terminates it. The mesh client's mTLS
/// still terminates at the mesh, and STRICT refuses the outside client.
#[tokio::test]
async fn permissive_passes_the_applications_own_tls_through() {
    use mesh_tls::rustls;
    let app_cert = rcgen::generate_simple_self_signed(vec!["db.example.com".into()]).unwrap();
    let cert_der = app_cert.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::try_from(app_cert.signing_key.serialize_der()).unwrap();
    let server_config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key_der)
            .unwrap(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let mut client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let pki = Pki::new();
    for (mode, own_tls_ok) in [("PERMISSIVE", true), ("STRICT", false)] {
        let mesh = Mesh::from_yaml(&format!(
            "{TCP_ECHO}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec: {{mtls: {{mode: {mode}}}}}
"
        ))
        .unwrap();
        let server = MeshServer::builder(
            mesh.clone(),
            "foo",
            "tcp-echo",
            labels(&[("app", "tcp-echo")]),
            pki.creds("foo", "tcp-echo"),
        )
        .service_host("tcp-echo.foo.svc.cluster.local")
        .port(9000)
        .build()
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        mesh.register(Workload {
            name: "tcp-echo".into(),
            namespace: "foo".into(),
            service_account: "tcp-echo".into(),
            labels: labels(&[("app", "tcp-echo")]),
            address: addr.ip(),
            ports: [("tcp".to_string(), addr.port())].into(),
            locality: None,
            weight: 0,
        });
        // the application: TLS of its own when the mesh hands it TLS, else the echo
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&server_config));
        tokio::spawn(async move {
            server
                .serve_tcp(listener, move |conn| {
                    let acceptor = acceptor.clone();
                    async move {
                        let seen = format!(
                            "peer={:?} sni={:?}",
                            conn.peer().map(|p| p.identity().as_uri().to_owned()),
                            conn.connection_info()
                                .and_then(|c| c.sni().map(str::to_owned)),
                        );
                        if conn.peer().is_some() {
                            return echo(conn).await;
                        }
                        let Ok(mut tls) = acceptor.accept(conn).await else {
                            return;
                        };
                        let mut buf = [0u8; 64];
                        if let Ok(n) = tls.read(&mut buf).await {
                            let answer = format!("{} {seen}", String::from_utf8_lossy(&buf[..n]));
                            let _ = tls.write_all(answer.as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                    }
                })
                .await
        });
        // a client outside the mesh, speaking TLS to the application itself
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("db.example.com").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"ping").await?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        })
        .await
        .unwrap();
        match own_tls_ok {
            true => assert_eq!(
                got.as_deref().ok(),
                Some("ping peer=None sni=Some(\"db.example.com\")"),
                "{mode}: {got:?}"
            ),
            false => assert!(got.is_err(), "{mode}: {got:?}"),
        }
        // the mesh's own client is mTLS whatever the mode
        let sleep = sleep_client(&mesh, &pki);
        assert_eq!(
            talk(&sleep, "tcp-echo:9000").await.as_deref(),
            Ok("hello world"),
            "{mode}"
        );
    }
}

/// SIMPLE TLS origination on a TCP port, as istiod's TCP clusters do it: Envoy's auto SNI
/// and auto SAN validation are HTTP options, so without `sni` no SNI is sent and the chain
/// alone is checked (the server's certificate need not name the ServiceEntry's host);
/// `sni` is sent when set; `subjectAltNames` of the DestinationRule, else of the
/// ServiceEntry, are checked.
#[tokio::test]
async fn simple_tls_on_tcp_sends_no_auto_sni_and_checks_the_service_entry_sans() {
    use mesh_tls::rustls;
    use std::sync::Mutex;
    // a TLS echo server whose certificate names `db.internal`, recording each SNI
    let pki = Pki::new();
    let id = mesh_tls::Identity::new("cluster.local", "default", "db").unwrap();
    let cert = pki
        .ca
        .issue(&id, Duration::from_secs(3600), &["db.internal"])
        .unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(cert.chain_der().unwrap(), cert.key_der().unwrap())
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let snis = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
    let seen = Arc::clone(&snis);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (cfg, seen) = (Arc::clone(&cfg), Arc::clone(&seen));
            tokio::spawn(async move {
                let lazy =
                    tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = lazy.await else { return };
                let sni = start.client_hello().server_name().map(str::to_owned);
                seen.lock().unwrap().push(sni);
                let Ok(mut tls) = start.into_stream(cfg).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                if let Ok(n) = tls.read(&mut buf).await {
                    let mut out = b"hello ".to_vec();
                    out.extend_from_slice(&buf[..n]);
                    let _ = tls.write_all(&out).await;
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, cert.root_pem()).unwrap();
    let ca_file = ca_file.display();
    let config = |se_sans: &str, tls: &str| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: foo}}
spec:
  hosts: [db.example.com]
  ports: [{{number: {port}, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]{se_sans}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: foo}}
spec:
  host: db.example.com
  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: '{ca_file}'{tls}}}}}
"
        )
    };
    let cases = [
        // no `sni`, no SANs: no SNI, the chain alone
        ("", "", Ok(None)),
        ("", ", sni: db.internal", Ok(Some("db.internal"))),
        ("", ", subjectAltNames: [other.example]", Err(())),
        ("", ", subjectAltNames: [db.internal]", Ok(None)),
        // the ServiceEntry's SANs when the DestinationRule names none
        ("\n  subjectAltNames: [other.example]", "", Err(())),
        ("\n  subjectAltNames: [db.internal]", "", Ok(None)),
    ];
    for (se_sans, tls, want) in cases {
        let mesh = Mesh::from_yaml(&config(se_sans, tls)).unwrap();
        let client =
            MeshClient::builder(mesh.clone(), ClientWorkload::new("app", "foo", "app")).build();
        snis.lock().unwrap().clear();
        let got = talk(&client, &format!("db.example.com:{port}")).await;
        let case = format!("SE {se_sans:?}, DR {tls:?}");
        match want {
            Ok(sni) => {
                assert_eq!(got.as_deref(), Ok("hello world"), "{case}");
                assert_eq!(*snis.lock().unwrap(), [sni.map(str::to_owned)], "{case}");
            }
            Err(()) => assert!(got.is_err(), "{case}: {got:?}"),
        }
    }
}
