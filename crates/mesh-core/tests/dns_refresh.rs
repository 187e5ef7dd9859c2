//! DNS answers of ServiceEntries: a failed refresh keeps the last good answer (Envoy's
//! STRICT_DNS), an empty answer empties, and the automatic refresher starts once.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

use mesh_core::mesh::Mesh;
use mesh_core::registry::{EndpointAddress, Resolver};

/// Answers from a table the test changes; a missing name fails like NXDOMAIN/SERVFAIL.
#[derive(Default)]
struct Table(Mutex<HashMap<&'static str, Vec<IpAddr>>>);

impl Table {
    fn set(&self, host: &'static str, ips: &[&str]) {
        let ips = ips.iter().map(|i| i.parse().unwrap()).collect();
        self.0.lock().unwrap().insert(host, ips);
    }
    fn fail(&self, host: &str) {
        self.0.lock().unwrap().remove(host);
    }
}

impl Resolver for Table {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.0
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::other("SERVFAIL"))
    }
}

fn mesh() -> Mesh {
    Mesh::from_yaml(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com, db.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
",
    )
    .unwrap()
}

fn targets(m: &Mesh, host: &str) -> Vec<String> {
    let snap = m.snapshot();
    let svc = snap.registry().service(host, "default").unwrap();
    svc.targets(443, None)
        .map(|t| t.addr.unwrap().to_string())
        .collect()
}

#[test]
fn failed_lookup_keeps_the_last_answer() {
    let m = mesh();
    let dns = Table::default();
    dns.set("api.example.com", &["192.0.2.1", "192.0.2.2"]);
    dns.set("db.example.com", &["192.0.2.9"]);
    assert_eq!(m.refresh_dns(&dns), 2);
    assert_eq!(
        targets(&m, "api.example.com"),
        ["192.0.2.1:443", "192.0.2.2:443"]
    );

    // api fails, db changes: api keeps its endpoints, db takes the new answer
    dns.fail("api.example.com");
    dns.set("db.example.com", &["192.0.2.10"]);
    assert_eq!(m.refresh_dns(&dns), 1);
    assert_eq!(
        targets(&m, "api.example.com"),
        ["192.0.2.1:443", "192.0.2.2:443"]
    );
    assert_eq!(targets(&m, "db.example.com"), ["192.0.2.10:443"]);

    // an answer without addresses is an answer: the endpoints go
    dns.set("api.example.com", &[]);
    m.refresh_dns(&dns);
    assert!(targets(&m, "api.example.com").is_empty());
}

#[test]
fn a_name_never_resolved_stays_a_name() {
    let m = mesh();
    let dns = Table::default();
    m.refresh_dns(&dns);
    let snap = m.snapshot();
    let svc = snap
        .registry()
        .service("api.example.com", "default")
        .unwrap();
    assert_eq!(svc.targets(443, None).count(), 0);
    let addrs: Vec<&EndpointAddress> = svc.endpoints.iter().map(|e| &e.address).collect();
    assert_eq!(
        addrs,
        [&EndpointAddress::Hostname("api.example.com".into())]
    );
}

#[test]
fn the_automatic_refresher_resolves_localhost() {
    let m = Mesh::from_yaml(
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local}
spec:
  hosts: [localhost]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
",
    )
    .unwrap();
    // read before the refresher starts: it may publish before this thread runs again
    let generation = m.snapshot().generation();
    m.ensure_dns_refresh();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while targets(&m, "localhost").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(targets(&m, "localhost").iter().any(|a| a
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .ip()
        .is_loopback()));
    // idempotent: no second refresher republishing
    m.ensure_dns_refresh();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(m.snapshot().generation(), generation + 1);
}

/// istiod asks Envoy for IPv4 answers only on an IPv4 single-stack workload
/// (`dns_lookup_family: V4_ONLY`), so an AAAA answer (`localhost` as `::1`) is no
/// endpoint; a dual-stack workload takes both.
#[test]
fn ipv6_answers_are_endpoints_only_for_a_dual_stack_workload() {
    let m = mesh();
    let dns = Table::default();
    dns.set("api.example.com", &["::1", "127.0.0.1"]);
    dns.set("db.example.com", &["::1"]);
    m.refresh_dns(&dns);
    assert_eq!(targets(&m, "api.example.com"), ["127.0.0.1:443"]);
    assert!(targets(&m, "db.example.com").is_empty());

    let opts = mesh_core::names::MeshOptions {
        dns_lookup_family: mesh_core::names::DnsLookupFamily::All,
        ..Default::default()
    };
    let dual = Mesh::new(opts);
    dual.reload_loaded(mesh_core::load::load_str(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [api.example.com, db.example.com]\n  ports: [{number: 443, name: https, protocol: HTTPS}]\n  resolution: DNS\n",
        "se.yaml",
    ))
    .unwrap();
    dual.refresh_dns(&dns);
    assert_eq!(
        targets(&dual, "api.example.com"),
        ["[::1]:443", "127.0.0.1:443"]
    );
}
