//! A gateway workload's servers merged as istiod's `mergeGateways` merges the Gateways
//! selecting it (pilot/pkg/model/gateway.go): a TLS server repeating a host already
//! served on its port is left out whole; on a port whose first server is plain HTTP only
//! HTTP servers join; after a TCP server nothing does; Gateways in load order.

use mesh_core::model::Labels;

fn servers(yaml: &str) -> Vec<(String, u32, String)> {
    let snap = mesh_core::mesh::Mesh::from_yaml(yaml).unwrap().snapshot();
    let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    snap.gateway_servers(&ingress)
        .iter()
        .map(|s| {
            (
                s.gateway.to_owned(),
                s.server.port.number,
                s.server.port.protocol.clone(),
            )
        })
        .collect()
}

fn gateway(name: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}
---
"
    )
}

fn s(gw: &str, port: u32, proto: &str) -> (String, u32, String) {
    (format!("istio-system/{gw}"), port, proto.to_owned())
}

/// `CheckDuplicates`: gw-b repeats gw-a's TLS host on 443, so the whole server goes, its
/// other host with it; an HTTP server with `httpsRedirect` counts as TLS here too.
#[test]
fn a_tls_server_repeating_a_host_is_left_out_whole() {
    let yaml = gateway(
        "gw-a",
        "  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: cert-a}
  - port: {number: 80, name: http-a, protocol: HTTP}
    hosts: [a.example.com]
    tls: {httpsRedirect: true}",
    ) + &gateway(
        "gw-b",
        "  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [a.example.com, b.example.com]
    tls: {mode: SIMPLE, credentialName: cert-b}
  - port: {number: 80, name: http-b, protocol: HTTP}
    hosts: [a.example.com, b.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https-c, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: SIMPLE, credentialName: cert-c}",
    );
    assert_eq!(
        servers(&yaml),
        [
            s("gw-a", 443, "HTTPS"),
            s("gw-a", 80, "HTTP"),
            s("gw-b", 443, "HTTPS"),
        ]
    );
    let snap = mesh_core::mesh::Mesh::from_yaml(&yaml).unwrap().snapshot();
    let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    let kept = snap.gateway_servers(&ingress);
    assert_eq!(kept[2].server.hosts, ["c.example.com"]);
}

/// `canMergeProtocols`: after a TCP server only nothing joins its port; after an HTTP one
/// an HTTPS (or TCP) server is left out; HTTP servers merge.
#[test]
fn the_first_protocol_on_a_port_decides() {
    let yaml = gateway(
        "gw",
        "  - port: {number: 8080, name: tcp, protocol: TCP}
    hosts: ['*']
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ['*']
  - port: {number: 443, name: http-443, protocol: HTTP}
    hosts: [a.example.com]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, credentialName: cert-b}
  - port: {number: 443, name: http2-443, protocol: HTTP2}
    hosts: [c.example.com]
  - port: {number: 9000, name: tcp-a, protocol: TCP}
    hosts: ['*']
  - port: {number: 9000, name: tcp-b, protocol: TCP}
    hosts: ['*']",
    );
    assert_eq!(
        servers(&yaml),
        [
            s("gw", 8080, "TCP"),
            s("gw", 443, "HTTP"),
            s("gw", 443, "HTTP2"),
            s("gw", 9000, "TCP"),
        ]
    );
}

/// HTTPS servers on one port, each with its own hosts (SNI): all kept.
#[test]
fn tls_servers_with_distinct_hosts_share_a_port() {
    let yaml = gateway(
        "gw-a",
        "  - port: {number: 443, name: https-a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: cert-a}
  - port: {number: 443, name: tls-p, protocol: TLS}
    hosts: [p.example.com]
    tls: {mode: PASSTHROUGH}",
    ) + &gateway(
        "gw-b",
        "  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, credentialName: cert-b}",
    );
    assert_eq!(
        servers(&yaml),
        [
            s("gw-a", 443, "HTTPS"),
            s("gw-a", 443, "TLS"),
            s("gw-b", 443, "HTTPS"),
        ]
    );
}

/// `servers_named` takes the Gateways in istiod's order, not the order they are named in.
#[test]
fn named_gateways_merge_in_load_order() {
    let yaml = gateway(
        "a-gw",
        "  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ['*']",
    ) + &gateway(
        "z-gw",
        "  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ['*']",
    );
    let snap = mesh_core::mesh::Mesh::from_yaml(&yaml).unwrap().snapshot();
    for names in [
        ["istio-system/z-gw", "istio-system/a-gw"],
        ["istio-system/a-gw", "istio-system/z-gw"],
    ] {
        let kept = snap.gateway_servers_named(&names);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].gateway, "istio-system/a-gw");
    }
}

/// On a port whose first server is TLS: later servers without TLS settings keep one per
/// bind ("TLS server without TLS options"), and route names carry the server's bind, so
/// HTTP servers on different binds are kept.
#[test]
fn a_tls_ports_later_servers_by_bind() {
    let yaml = gateway(
        "gw",
        "  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: cert-a}
  - port: {number: 443, name: tcp-a, protocol: TCP}
    hosts: ['*']
  - port: {number: 443, name: tcp-b, protocol: TCP}
    hosts: ['*']
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: [p.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8443, name: http-1, protocol: HTTP}
    hosts: [b.example.com]
    bind: 10.0.0.1
  - port: {number: 8443, name: http-2, protocol: HTTP}
    hosts: [c.example.com]
    bind: 10.0.0.2",
    );
    assert_eq!(
        servers(&yaml),
        [
            s("gw", 443, "HTTPS"),
            s("gw", 443, "TCP"),
            s("gw", 8443, "TLS"),
            s("gw", 8443, "HTTP"),
            s("gw", 8443, "HTTP"),
        ]
    );
}
