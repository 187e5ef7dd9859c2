//! Route table against istiod where a fourth review (replaying istio.io's traffic tasks)
//! found it diverging.

use mesh_core::names::MeshOptions;
use mesh_core::route::HttpRequestAttrs;
use mesh_core::snapshot::Snapshot;

fn snap(yaml: &str) -> Snapshot {
    let loaded = mesh_core::load::load_str(yaml, "review4.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    Snapshot::build(&loaded.objects, MeshOptions::default())
}

/// istio.io "Egress using Wildcard Hosts": an `https` request to a host of the wildcard
/// (`en.wikipedia.org`) that the registry does not know takes the `tls` route whose
/// `sniHosts` cover it, to the egress gateway, as Envoy's `*.wikipedia.org` filter chain
/// on port 443 does; it neither goes straight out nor to the `http` routes.
#[test]
fn https_to_a_host_of_a_wildcard_takes_its_tls_route() {
    let s = snap(
        "apiVersion: v1
kind: Service
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  ports: [{name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: www-wikipedia, namespace: default}
spec:
  hosts: [www.wikipedia.org]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wikipedia-through-egress-gateway, namespace: default}
spec:
  hosts: ['*.wikipedia.org']
  gateways: [mesh]
  tls:
  - match: [{gateways: [mesh], port: 443, sniHosts: ['*.wikipedia.org']}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, port: {number: 443}}
",
    );
    let h = http::HeaderMap::new();
    for host in ["en.wikipedia.org", "de.wikipedia.org", "www.wikipedia.org"] {
        let attrs = HttpRequestAttrs::new("default", host, "/wiki/Main_Page", &h)
            .with_scheme("https")
            .with_port(443);
        let d = s.route_http(&attrs);
        assert_eq!(
            d.virtual_service_name(),
            Some("default/wikipedia-through-egress-gateway"),
            "{host}"
        );
        assert_eq!(d.tls_route, Some(0), "{host}");
        assert_eq!(
            d.destinations()[0].host.as_ref(),
            "istio-egressgateway.istio-system.svc.cluster.local"
        );
    }
    // outside the wildcard: no route
    let attrs = HttpRequestAttrs::new("default", "example.org", "/", &h)
        .with_scheme("https")
        .with_port(443);
    assert_eq!(s.route_http(&attrs).virtual_service_name(), None);
}
