//! TCP and TLS routes as Envoy picks among the filter chains istiod builds of them
//! (`buildSidecarOutboundTCPFilterChainOpts`, `buildSidecarOutboundTLSFilterChainOpts`):
//! the most specific destination range first, then the most specific server name; and a
//! TLS port whose `tls` routes name other SNIs has no chain of the service's own.

use mesh_core::names::MeshOptions;
use mesh_core::route::L4Attrs;
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "l4.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, MeshOptions::default())
}

const DB: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.internal]
  addresses: [240.240.0.1]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.7}]
---
";

fn to_db(ip: &str) -> L4Attrs<'static> {
    L4Attrs {
        destination_ip: Some(ip.parse().unwrap()),
        ..L4Attrs::new("default", 5432)
    }
}

#[test]
fn the_most_specific_destination_subnet_wins_until_a_catch_all() {
    let s = snap(&format!(
        "{DB}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{{destinationSubnets: [240.240.0.0/16]}}]
    route: [{{destination: {{host: wide.internal}}}}]
  - match: [{{destinationSubnets: [240.240.0.1/32]}}]
    route: [{{destination: {{host: narrow.internal}}}}]
  - route: [{{destination: {{host: rest.internal}}}}]
  - match: [{{destinationSubnets: [240.240.0.1/32]}}]
    route: [{{destination: {{host: never.internal}}}}]
"
    ));
    let d = s.route_tcp(&to_db("240.240.0.1"));
    assert_eq!(
        (d.route_index, &*d.destinations[0].host),
        (Some(1), "narrow.internal")
    );
}

#[test]
fn a_catch_all_before_the_subnets_takes_everything() {
    let s = snap(&format!(
        "{DB}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.internal]
  tcp:
  - match: [{{port: 5432}}]
    route: [{{destination: {{host: first.internal}}}}]
  - match: [{{destinationSubnets: [240.240.0.1/32]}}]
    route: [{{destination: {{host: narrow.internal}}}}]
"
    ));
    let d = s.route_tcp(&to_db("240.240.0.1"));
    assert_eq!(&*d.destinations[0].host, "first.internal");
}

#[test]
fn tls_chains_rank_the_destination_range_before_the_server_name() {
    let s = snap(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  addresses: [240.240.0.2]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: ['*.example.com']
  tls:
  - match: [{sniHosts: [api.example.com]}]
    route: [{destination: {host: by-sni.internal}}]
  - match: [{sniHosts: ['*.example.com'], destinationSubnets: [240.240.0.2/32]}]
    route: [{destination: {host: by-subnet.internal}}]
",
    );
    let mut a = L4Attrs::new("default", 443);
    a.sni = Some("api.example.com");
    a.destination_ip = Some("240.240.0.2".parse().unwrap());
    let d = s.route_tls_to(&a, "api.example.com");
    assert_eq!(&*d.destinations[0].host, "by-subnet.internal");
    // another address: only the name's chain is left
    a.destination_ip = Some("240.240.0.9".parse().unwrap());
    let d = s.route_tls_to(&a, "api.example.com");
    assert_eq!(&*d.destinations[0].host, "by-sni.internal");
}

#[test]
fn a_tls_port_whose_routes_name_other_snis_has_no_chain_of_the_service() {
    let yaml = "apiVersion: v1
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
    route: [{destination: {host: api-v2.default.svc.cluster.local, port: {number: 443}}}]
";
    let s = snap(yaml);
    let mut a = L4Attrs::new("default", 443);
    // the name the VirtualService's route names: routed
    a.sni = Some("api.default.svc.cluster.local");
    let d = s.route_tls_to(&a, "api.default.svc.cluster.local");
    assert_eq!((d.route_index, d.passthrough), (Some(0), false));
    // the short name: no chain of the service takes it, the passthrough chain does
    a.sni = Some("api");
    let d = s.route_tls_to(&a, "api.default.svc.cluster.local");
    assert_eq!((d.route_index, d.passthrough), (None, true));
    assert_eq!(&*d.destinations[0].host, "api.default.svc.cluster.local");
    // a route for another port builds no chain here: the service's own cluster
    let s = snap(&yaml.replace("port: 443, sniHosts", "port: 8443, sniHosts"));
    let d = s.route_tls_to(&a, "api.default.svc.cluster.local");
    assert_eq!((d.route_index, d.passthrough), (None, false));
    assert_eq!(&*d.destinations[0].host, "api.default.svc.cluster.local");
}
