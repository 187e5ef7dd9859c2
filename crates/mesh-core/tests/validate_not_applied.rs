//! Valid config inmesh does not apply as Istio would is said (IM0013, IM0007), not
//! silently dropped: the README's "not yet" column, checked.

use mesh_core::diag::Severity;

/// (code, path, line) of the warnings of `yaml`.
fn warnings(yaml: &str) -> Vec<(String, String, usize)> {
    let loaded = mesh_core::load::load_str(yaml, "w.yaml");
    let mut out: Vec<_> = loaded
        .diagnostics
        .iter()
        .cloned()
        .chain(mesh_core::check(&loaded))
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| (d.code.to_string(), d.path.clone(), d.line as usize))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn destination_rule_fields_not_applied_are_warned() {
    let w = warnings(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: r
  trafficPolicy:
    loadBalancer: {simple: PASSTHROUGH}
    outlierDetection:
      consecutive5xxErrors: 5
      outlierDetectionHttpErrorCodes: [429]
",
    );
    assert!(
        w.contains(&(
            "IM0013".into(),
            "spec.trafficPolicy.loadBalancer.simple".into(),
            7
        )),
        "{w:?}"
    );
    assert!(
        w.iter().any(|(c, p, _)| c == "IM0013"
            && p == "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes"),
        "{w:?}"
    );
}

#[test]
fn gateway_protocols_not_served_are_warned() {
    let w = warnings(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 53, name: dns, protocol: UDP}
    hosts: ['*']
  - port: {number: 8080, name: grpc-web, protocol: GRPC-WEB}
    hosts: ['*']
",
    );
    assert!(
        w.iter()
            .any(|(c, p, _)| c == "IM0013" && p == "spec.servers[0].port.protocol"),
        "{w:?}"
    );
    // gRPC-Web is translated as Envoy's grpc_web filter does it
    assert!(
        !w.iter()
            .any(|(_, p, _)| p == "spec.servers[1].port.protocol"),
        "{w:?}"
    );
}

#[test]
fn gateway_api_kinds_not_read_are_warned() {
    let w = warnings(
        "apiVersion: v1
kind: Service
metadata: {name: s, namespace: default}
spec:
  selector: {app: s}
  internalTrafficPolicy: Local
  ports: [{name: http, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec: {gatewayClassName: istio, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec: {parentRefs: [{name: gw}]}
",
    );
    // applied as istiod applies it (node-local endpoints): no warning
    assert!(
        !w.iter().any(|(_, p, _)| p == "spec.internalTrafficPolicy"),
        "{w:?}"
    );
    let kinds: Vec<usize> = w
        .iter()
        .filter(|(c, p, _)| c == "IM0007" && p == "kind")
        .map(|(_, _, l)| *l)
        .collect();
    assert_eq!(kinds, [10, 15], "{w:?}");
}

#[test]
fn zone_aware_routing_and_egress_listener_addresses_are_warned() {
    let w = warnings(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r, namespace: default}
spec:
  host: r
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      zoneAwareLbSetting: {enabled: true}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.0.1
    hosts: [./*]
",
    );
    for path in [
        "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting",
        "spec.egress",
    ] {
        assert!(
            w.iter().any(|(c, p, _)| c == "IM0013" && p == path),
            "{path}: {w:?}"
        );
    }
    // a Sidecar whose egress listeners set neither: no warning
    let w = warnings(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: [./*]}]
",
    );
    assert!(!w.iter().any(|(c, _, _)| c == "IM0013"), "{w:?}");
}
