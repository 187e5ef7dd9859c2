//! Cross-object analysis against istioctl's analyzer test grid (`analyzers_test.go` and its
//! testdata), where a replay found meshctl diverging.

use mesh_core::analyze::analyze;
use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;

fn run(yaml: &str) -> Vec<Diagnostic> {
    let l = load_str(yaml, "a.yaml");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    analyze(&l.objects)
}

fn codes<'a>(ds: &'a [Diagnostic], code: &str) -> Vec<&'a Diagnostic> {
    ds.iter().filter(|d| d.code == code).collect()
}

/// istioctl's `ProtocolAddressesAnalyzer` compares the protocol case-insensitively.
#[test]
fn a_lower_case_tcp_port_needs_addresses_too() {
    let ds = run("apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: pg, protocol: tcp}]
  resolution: DNS
");
    assert_eq!(codes(&ds, "IST0134").len(), 1, "{ds:#?}");
}

/// istioctl's `CaCertificateAnalyzer`: a `credentialName` exempts only a DestinationRule with
/// a `workloadSelector`; `insecureSkipVerify` does not exempt.
#[test]
fn ca_certificates_findings_follow_istioctl() {
    let dr = |selector: &str, tls: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db-tls, namespace: default}}
spec:
  host: db.example.com
{selector}  trafficPolicy:
    tls: {tls}
    portLevelSettings: [{{port: {{number: 443}}, tls: {tls}}}]
"
        )
    };
    let ds = run(&dr("", "{mode: SIMPLE, credentialName: db-cred}"));
    let found: Vec<&str> = ds.iter().map(|d| d.code).collect();
    assert_eq!(found, ["IST0128", "IST0129"], "{ds:#?}");
    assert!(
        ds[0].message.starts_with(
            "DestinationRule default/db-tls in namespace default has TLS mode set to SIMPLE"
        ),
        "{}",
        ds[0].message
    );
    let ds = run(&dr(
        "  workloadSelector: {matchLabels: {app: gw}}\n",
        "{mode: SIMPLE, credentialName: db-cred}",
    ));
    assert!(
        ds.iter()
            .all(|d| d.code != "IST0128" && d.code != "IST0129"),
        "{ds:#?}"
    );
    let ds = run(&dr("", "{mode: SIMPLE, insecureSkipVerify: true}"));
    assert_eq!(codes(&ds, "IST0128").len(), 1, "{ds:#?}");
}

/// istioctl's `vsHostInGateway`: one VirtualService host among the Gateway's is enough;
/// when none is, the finding lists them all.
#[test]
fn one_host_in_the_gateway_is_enough() {
    let gw = "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['a.example.com']}]
---
";
    let vs = |hosts: &str| {
        format!(
            "{gw}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: default}}
spec:
  hosts: {hosts}
  gateways: [gw]
  http: [{{route: [{{destination: {{host: a.example.com}}}}]}}]
"
        )
    };
    let ds = run(&vs("[a.example.com, b.example.com]"));
    assert!(codes(&ds, "IST0132").is_empty(), "{ds:#?}");
    let ds = run(&vs("[b.example.com, c.example.com]"));
    let found = codes(&ds, "IST0132");
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert_eq!(
        found[0].message,
        "one or more host [b.example.com c.example.com] defined in VirtualService default/vs not found in Gateway default/gw."
    );
}

/// istioctl's `ConflictingMeshGatewayHostsAnalyzer`: one finding per VirtualService, and a
/// host exported to few namespaces conflicts with an overlapping wildcard exported to all.
#[test]
fn conflicting_mesh_hosts_as_istioctl() {
    let vs = |name: &str, ns: &str, hosts: &str, export: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: {hosts}
  exportTo: {export}
  http: [{{route: [{{destination: {{host: x.default.svc.cluster.local}}}}]}}]
"
        )
    };
    // two hosts in common: still one finding each
    let ds = run(&format!(
        "{}{}",
        vs("a", "default", "[r1.example.com, r2.example.com]", "['*']"),
        vs("b", "default", "[r1.example.com, r2.example.com]", "['*']")
    ));
    assert_eq!(codes(&ds, "IST0109").len(), 2, "{ds:#?}");
    // a namespace-local host under a wildcard exported everywhere
    let ds = run(&format!(
        "{}{}",
        vs("local", "foo", "['*.productpage.d']", "['.']"),
        vs("global", "bar", "['*.d']", "['*']")
    ));
    assert_eq!(codes(&ds, "IST0109").len(), 2, "{ds:#?}");
    // two wildcards both exported everywhere do not conflict (istioctl keys them apart)
    let ds = run(&format!(
        "{}{}",
        vs("g1", "foo", "['*.productpage.d']", "['*']"),
        vs("g2", "bar", "['*.d']", "['*']")
    ));
    assert!(codes(&ds, "IST0109").is_empty(), "{ds:#?}");
}

const PODS: &str = "apiVersion: v1
kind: Pod
metadata: {name: httpbin-1, namespace: httpbin, labels: {app: httpbin}}
spec: {containers: [{name: httpbin}]}
";

/// istioctl's `AuthorizationPoliciesAnalyzer`: a namespace-wide policy of a namespace with
/// no workload matches nothing.
#[test]
fn a_namespace_wide_policy_of_an_empty_namespace() {
    let ds = run(&format!(
        "{PODS}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: httpbin-empty-namespace-wide, namespace: httpbin-empty}}
spec: {{rules: [{{}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ok, namespace: httpbin}}
spec: {{rules: [{{}}]}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: mesh-wide, namespace: istio-system}}
spec: {{rules: [{{}}]}}
"
    ));
    let found = codes(&ds, "IST0127");
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert_eq!(
        found[0].message,
        "No matching workloads for this resource with the following labels: "
    );
    assert_eq!(found[0].severity, Severity::Warning);
    // without any workload in the files, nothing is known: no finding
    let ds = run("apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: httpbin-empty}
spec: {rules: [{}]}
");
    assert!(codes(&ds, "IST0127").is_empty(), "{ds:#?}");
}

/// A waypoint's `mesh` port (`appProtocol: hbone`) has a protocol: no IST0118.
#[test]
fn an_hbone_port_is_named() {
    let ds = run("apiVersion: v1
kind: Service
metadata: {name: reviews-istio-waypoint, namespace: ambient}
spec:
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
  ports: [{name: mesh, port: 15008, appProtocol: hbone}]
");
    assert!(codes(&ds, "IST0118").is_empty(), "{ds:#?}");
}

/// istioctl analyze on files adds a stand-in ingress gateway (a Pod labelled
/// `istio: ingressgateway` and its Service on 80, 443, 31400 and 15443 in istio-system), so
/// Gateways are checked against it.
#[test]
fn gateways_are_checked_against_istioctls_stand_in_ingress() {
    let gw = |name: &str, selector: &str, port: u32| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {selector}
  servers: [{{port: {{number: {port}, name: http, protocol: HTTP}}, hosts: ['*']}}]
"
        )
    };
    let ds = run(&gw("ok", "{istio: ingressgateway}", 80));
    assert!(ds.is_empty(), "{ds:#?}");
    let ds = run(&gw("bad-port", "{istio: ingressgateway}", 8004));
    let found = codes(&ds, "IST0162");
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert!(
        found[0].message.contains("port 8004"),
        "{}",
        found[0].message
    );
    assert!(
        found[0].help.as_deref().unwrap_or("").contains("stand-in"),
        "{:?}",
        found[0].help
    );
    let ds = run(&gw("no-workload", "{app: nothing}", 80));
    let found = codes(&ds, "IST0101");
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert_eq!(
        found[0].message,
        "Referenced selector not found: \"app=nothing\""
    );
    // a gateway Service in the files replaces the stand-in; its ports and target ports are
    // the gateway's (a UDP port is not)
    let ds = run(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  ports:
  - {{name: http2, port: 80, targetPort: 8080}}
  - {{name: dns, port: 53, protocol: UDP}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gw-1, namespace: istio-system, labels: {{istio: ingressgateway}}}}
spec: {{containers: [{{name: istio-proxy}}]}}
{}{}{}",
        gw("service-port", "{istio: ingressgateway}", 80),
        gw("target-port", "{istio: ingressgateway}", 8080),
        gw("udp", "{istio: ingressgateway}", 53)
    ));
    let found = codes(&ds, "IST0162");
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert!(found[0].message.contains("port 53"), "{}", found[0].message);
    assert!(found[0].help.is_none());
}

/// istioctl's deployment `ServiceAssociationAnalyzer` checks Deployments in the mesh only:
/// one with `sidecar.istio.io/inject: "false"`, or in a loaded Namespace without injection,
/// is skipped; one whose namespace the files do not hold is checked.
#[test]
fn deployments_outside_the_mesh_are_not_checked() {
    let deployment = |name: &str, ns: &str, template_meta: &str| {
        format!(
            "---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  template:
    metadata: {template_meta}
    spec: {{containers: [{{name: app}}]}}
"
        )
    };
    let services = |ns: &str| {
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: a, namespace: {ns}}}
spec: {{selector: {{app: x}}, ports: [{{port: 8080, protocol: TCP}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: b, namespace: {ns}}}
spec: {{selector: {{app: x}}, ports: [{{port: 8080, protocol: UDP}}]}}
"
        )
    };
    let yaml = format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: plain}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: injected, labels: {{istio-injection: enabled}}}}
{}{}{}{}{}{}{}",
        services("bookinfo"),
        services("plain"),
        services("injected"),
        deployment(
            "out",
            "bookinfo",
            "{labels: {app: x}, annotations: {sidecar.istio.io/inject: 'false'}}"
        ),
        deployment("unknown-ns", "bookinfo", "{labels: {app: x}}"),
        deployment("plain-ns", "plain", "{labels: {app: x}}"),
        deployment("injected-ns", "injected", "{labels: {app: x}}"),
    );
    let ds = run(&yaml);
    let mut found: Vec<String> = codes(&ds, "IST0116")
        .iter()
        .map(|d| d.message.clone())
        .collect();
    found.sort();
    assert_eq!(found.len(), 2, "{ds:#?}");
    assert!(found.iter().any(|m| m.contains("unknown-ns")), "{found:#?}");
    assert!(
        found.iter().any(|m| m.contains("injected-ns")),
        "{found:#?}"
    );
}

/// istioctl's sidecar `SelectorAnalyzer`: Sidecars where no sidecar runs (an ambient
/// namespace, an ambient pod) have no effect (IST0167), instead of conflicting.
#[test]
fn sidecars_in_ambient_mode_have_no_effect() {
    let ds = run("apiVersion: v1
kind: Namespace
metadata: {name: ns-ambient, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns-not-ambient, labels: {istio.io/dataplane-mode: ambient, istio.io/rev: canary}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: namespace-not-ambient, namespace: ns-not-ambient}
spec: {egress: [{hosts: ['./*']}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: namespace-scoped, namespace: ns-ambient}
spec: {egress: [{hosts: ['./*']}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: namespace-scoped-2, namespace: ns-ambient}
spec: {egress: [{hosts: ['./*']}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: ambient-pod
  namespace: pods
  labels: {app: a}
  annotations: {ambient.istio.io/redirection: enabled}
spec: {containers: [{name: app}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: pod-scoped, namespace: pods}
spec: {workloadSelector: {labels: {app: a}}, egress: [{hosts: ['./*']}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: pod-scoped-2, namespace: pods}
spec: {workloadSelector: {labels: {app: a}}, egress: [{hosts: ['./*']}]}
");
    let found: Vec<&str> = codes(&ds, "IST0167")
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        found.iter().filter(|m| **m == "The policy has no impact: namespace is in ambient mode, the policy has no impact.").count(),
        2,
        "{ds:#?}"
    );
    assert_eq!(
        found.iter().filter(|m| **m == "The policy has no impact: selected workload is in ambient mode, the policy has no impact.").count(),
        2,
        "{ds:#?}"
    );
    assert!(
        codes(&ds, "IST0110").is_empty() && codes(&ds, "IST0111").is_empty(),
        "{ds:#?}"
    );
}

/// istioctl's destination-host lookup (`GetDestinationHost`): a host is found only where it
/// is exported (a ServiceEntry's `exportTo`, a Service's `networking.istio.io/exportTo`
/// annotation) to the VirtualService's namespace, or to one it is exported to.
#[test]
fn destination_hosts_are_looked_up_where_exported() {
    let vs = |name: &str, ns: &str, export: &str, http: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}.example.com]
  exportTo: {export}
  http: [{http}]
"
        )
    };
    let route = |host: &str| format!("{{route: [{{destination: {{host: {host}}}}}]}}");
    let yaml = format!(
        "apiVersion: v1
kind: Service
metadata: {{name: details, namespace: default, annotations: {{networking.istio.io/exportTo: banana}}}}
spec: {{selector: {{app: details}}, ports: [{{port: 9080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: hello, namespace: hello, annotations: {{networking.istio.io/exportTo: 'hello1,hello2,.'}}}}
spec: {{selector: {{app: hello}}, ports: [{{port: 9080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec: {{selector: {{app: reviews}}, ports: [{{port: 9080}}]}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: other, namespace: other}}
spec: {{hosts: [other.bookinfo.com], exportTo: ['.'], ports: [{{number: 80, name: http, protocol: HTTP}}], resolution: DNS}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: abc, namespace: other}}
spec: {{hosts: [abc.bookinfo.com], exportTo: [default], ports: [{{number: 80, name: http, protocol: HTTP}}], resolution: DNS}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: eu, namespace: default}}
spec: {{hosts: ['*.eu.bookinfo.com'], ports: [{{number: 80, name: http, protocol: HTTP}}], resolution: NONE}}
{}{}{}{}{}{}{}{}",
        vs("cross-namespace-details", "istio-system", "[]", &route("details.default.svc.cluster.local")),
        vs("banana-details", "banana", "[]", &route("details.default.svc.cluster.local")),
        vs("bookinfo-other", "default", "[]", &route("other.bookinfo.com")),
        vs("export-to-bogus", "hello", "[bogus]", &route("hello")),
        vs("hello", "hello", "[]", &route("hello")),
        vs("abc", "default", "[]", &route("abc.bookinfo.com")),
        vs("eu", "default", "[]", &route("reviews.eu.bookinfo.com")),
        vs(
            "mirror-bogus",
            "default",
            "[]",
            "{route: [{destination: {host: reviews}}], mirror: {host: reviews-bogus}}"
        ),
    );
    let ds = run(&yaml);
    let mut found: Vec<(String, &str)> = codes(&ds, "IST0101")
        .iter()
        .map(|d| {
            let line = d.line;
            let name = yaml
                .lines()
                .take(line as usize)
                .filter_map(|l| l.strip_prefix("metadata: {name: "))
                .last()
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap()
                .to_owned();
            (name, d.message.as_str())
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "bookinfo-other".to_owned(),
                "Referenced host not found: \"other.bookinfo.com\""
            ),
            (
                "cross-namespace-details".to_owned(),
                "Referenced host not found: \"details.default.svc.cluster.local\""
            ),
            (
                "export-to-bogus".to_owned(),
                "Referenced host not found: \"hello\""
            ),
            (
                "mirror-bogus".to_owned(),
                "Referenced mirror host not found: \"reviews-bogus\""
            ),
        ],
        "{ds:#?}"
    );
}

/// istioctl's gateway `SecretAnalyzer` stops at a selector that matches no workload: the
/// Gateway's credential is not looked for (one finding, not two).
#[test]
fn a_gateway_without_workload_has_no_credential_finding() {
    let ds = run("apiVersion: v1
kind: Secret
metadata: {name: other-cert, namespace: istio-system}
type: kubernetes.io/tls
data: {tls.crt: Y2VydA==, tls.key: a2V5}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bogusgateway, namespace: default}
spec:
  selector: {istio: bogus}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: missing-cert}
");
    let found: Vec<&str> = codes(&ds, "IST0101")
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        found,
        ["Referenced selector not found: \"istio=bogus\""],
        "{ds:#?}"
    );
}

/// istioctl's gateway `SecretAnalyzer` (`isValidSecret`): the Secret's certificate must be
/// PEM X.509 within its validity window (istiod's `ValidateCertificate`), else IST0161.
#[test]
fn gateway_credentials_are_parsed_and_dated() {
    const EXPIRED: &str = include_str!("fixtures/certs/expired-2023.pem");
    const VALID: &str =
        include_str!("../../../../shared/istio-samples/certs/workload-foo-cert.pem");
    let b64 = |pem: &str| mesh_core::names::base64_encode(pem.as_bytes(), false);
    let secret = |name: &str, data: &str| {
        format!(
            "---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: istio-system}}
type: kubernetes.io/tls
data: {data}
"
        )
    };
    let gateway = |name: &str, cred: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https-{name}, protocol: HTTPS}}
    hosts: ['{name}.example.com']
    tls: {{mode: SIMPLE, credentialName: {cred}}}
"
        )
    };
    let yaml = format!(
        "{}{}{}{}{}{}{}",
        secret(
            "valid",
            &format!("{{tls.crt: {}, tls.key: a2V5}}", b64(VALID))
        ),
        secret(
            "expired",
            &format!("{{tls.crt: {}, tls.key: a2V5}}", b64(EXPIRED))
        ),
        secret(
            "junk",
            "{cert: aHVzaCBodXNoIGh1c2gK, key: c2VjcmV0IHNlY3JldAo=}"
        ),
        gateway("valid", "valid"),
        gateway("expired", "expired"),
        gateway("junk", "junk"),
        // the certificate as plain `stringData` counts too
        "---
apiVersion: v1
kind: Secret
metadata: {name: plain, namespace: istio-system}
stringData: {cert: not a pem, key: k}
",
    );
    let ds = run(&format!("{yaml}{}", gateway("plain", "plain")));
    let mut found: Vec<&str> = codes(&ds, "IST0161")
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    found.sort_unstable();
    assert_eq!(found.len(), 3, "{ds:#?}");
    assert!(
        found[0].contains("Secret istio-system/expired")
            && found[0].contains("certificate is expired"),
        "{found:#?}"
    );
    assert!(
        found[1].contains("Secret istio-system/junk") && found[1].contains("pem decode failed"),
        "{found:#?}"
    );
    assert!(
        found[2].contains("Secret istio-system/plain") && found[2].contains("pem decode failed"),
        "{found:#?}"
    );
    // istiod's ExtractCertInfo prefers `cert`/`key` to `tls.crt`/`tls.key`
    let both = format!(
        "{}{}",
        secret(
            "both",
            &format!(
                "{{tls.crt: {}, tls.key: a2V5, cert: {}, key: a2V5}}",
                b64(VALID),
                b64(EXPIRED)
            )
        ),
        gateway("both", "both")
    );
    let ds = run(&both);
    assert_eq!(codes(&ds, "IST0161").len(), 1, "{ds:#?}");
    // the model keeps the finding, not the values
    let l = load_str(&yaml, "a.yaml");
    let s = l
        .objects
        .iter()
        .find(|o| o.metadata.name == "valid")
        .unwrap();
    assert_eq!(s.spec.as_secret().unwrap().cert_problem, None);
}
