//! Cross-object analysis on real multi-document YAML.

use mesh_core::analyze::analyze;
use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;

fn run(yaml: &str) -> Vec<Diagnostic> {
    let l = load_str(yaml, "a.yaml");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    analyze(&l.objects)
}

fn has(ds: &[Diagnostic], code: &str, sev: Severity, msg: &str) -> bool {
    ds.iter()
        .any(|d| d.code == code && d.severity == sev && d.message.contains(msg))
}

const VS_REVIEWS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
";

#[test]
fn dangling_subset_is_ist0101_with_position() {
    let ds = run(VS_REVIEWS);
    let d = ds
        .iter()
        .find(|d| {
            d.message == "Referenced host+subset in destinationrule not found: \"reviews+v1\""
        })
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert_eq!(d.code, "IST0101");
    // no DestinationRule for reviews is loaded: it may be in a file not given
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(d.path, "spec.http[0].route[0].destination.subset");
    assert_eq!(d.line, 8);
    assert!(has(&ds, "IST0101", Severity::Warning, "\"reviews+v2\""));
}

#[test]
fn seed_typo_in_destination_rule_leaves_subsets_dangling() {
    // The seed's DR with `subnets:` is rejected, so the VS's subsets point nowhere: exactly
    // what a lenient API server causes (every request 503).
    let yaml = format!(
        "{VS_REVIEWS}---\napiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  subnets: [{{name: v1, labels: {{version: v1}}}}]\n"
    );
    let l = load_str(&yaml, "a.yaml");
    assert!(l.has_errors());
    let ds = analyze(&l.objects);
    assert!(has(&ds, "IST0101", Severity::Warning, "reviews+v1"));
}

#[test]
fn subsets_defined_resolve_across_short_and_full_names() {
    let yaml = format!(
        "{VS_REVIEWS}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews.default.svc.cluster.local\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n"
    );
    let ds = run(&yaml);
    assert!(!ds.iter().any(|d| d.is_error()), "{ds:#?}");
}

#[test]
fn subset_in_other_namespace_dr_not_exported_is_missing() {
    let yaml = format!(
        "{VS_REVIEWS}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: other}}\nspec:\n  host: reviews.default.svc.cluster.local\n  exportTo: ['.']\n  subsets: [{{name: v1}}, {{name: v2}}]\n"
    );
    let ds = run(&yaml);
    // the loaded DestinationRule is not visible from default: another may be
    assert!(
        has(&ds, "IST0101", Severity::Warning, "reviews+v1"),
        "{ds:#?}"
    );
}

#[test]
fn missing_gateway_and_host_not_in_gateway() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a.example.com]
  gateways: [missing-gw]
  http: [{route: [{destination: {host: a}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [b.example.com]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b}
spec:
  hosts: [c.example.com]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: b}}]}]
";
    let ds = run(yaml);
    assert!(
        has(
            &ds,
            "IST0101",
            Severity::Warning,
            "Referenced gateway not found: \"default/missing-gw\""
        ),
        "{ds:#?}"
    );
    assert!(has(&ds, "IST0132", Severity::Warning, "one or more host [c.example.com] defined in VirtualService default/b not found in Gateway istio-system/gw."), "{ds:#?}");
}

#[test]
fn conflicting_mesh_virtual_services() {
    let yaml = format!(
        "{VS_REVIEWS}---\n{}",
        VS_REVIEWS.replace("name: reviews}", "name: reviews-2}")
    );
    let ds = run(&yaml);
    let hits: Vec<_> = ds.iter().filter(|d| d.code == "IST0109").collect();
    assert_eq!(hits.len(), 2, "{ds:#?}");
    assert!(hits[0]
        .message
        .contains("define the same host reviews.default.svc.cluster.local"));
}

#[test]
fn same_name_redefinition_is_a_warning_not_a_conflict() {
    let yaml = format!("{VS_REVIEWS}---\n{VS_REVIEWS}");
    let ds = run(&yaml);
    assert!(has(
        &ds,
        "IM0202",
        Severity::Warning,
        "defined more than once"
    ));
    assert!(!ds.iter().any(|d| d.code == "IST0109"));
}

#[test]
fn multiple_destination_rules_for_one_host() {
    let dr = |name: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: reviews\n  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}\n")
    };
    let ds = run(&format!("{}---\n{}", dr("a"), dr("b")));
    assert!(has(&ds, "IM0201", Severity::Warning, "DestinationRules a, b in namespace default all apply to host reviews.default.svc.cluster.local"), "{ds:#?}");
}

#[test]
fn tls_origination_without_ca() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}
";
    let ds = run(yaml);
    assert!(has(
        &ds,
        "IST0128",
        Severity::Warning,
        "has TLS mode set to SIMPLE but no caCertificates"
    ));
    assert!(has(&ds, "IST0129", Severity::Warning, "at port 443"));
}

const WORKLOADS: &str = "apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec:
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      serviceAccountName: httpbin
      containers: [{name: httpbin, ports: [{containerPort: 8080}]}]
";

#[test]
fn workload_aware_checks() {
    let yaml = format!(
        "{WORKLOADS}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p}}
spec:
  selector: {{matchLabels: {{app: htpbin}}}}
  rules: [{{}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{app: httpbin}}
  servers: [{{port: {{number: 9090, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw2}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: d}}
spec:
  host: nothere
  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}
"
    );
    let ds = run(&yaml);
    assert!(
        has(
            &ds,
            "IST0127",
            Severity::Warning,
            "No matching workloads for this resource with the following labels: app=htpbin"
        ),
        "{ds:#?}"
    );
    assert!(
        has(&ds, "IST0162", Severity::Warning, "port 9090"),
        "{ds:#?}"
    );
    // `istio: ingressgateway` is istioctl's stand-in ingress gateway (files-only analysis),
    // whose Service has port 80: nothing to report for gw2
    assert!(
        !ds.iter()
            .any(|d| d.message.contains("istio=ingressgateway")),
        "{ds:#?}"
    );
    assert!(has(&ds, "IST0174", Severity::Warning, "The host nothere defined in the DestinationRule does not match any services in the mesh."), "{ds:#?}");
    assert!(!ds.iter().any(|d| d.is_error()), "{ds:#?}");
    // without the stand-in, no loaded workload has the labels
    let l = mesh_core::load::load_str(&yaml, "a.yaml");
    let opts = mesh_core::analyze::AnalyzeOptions {
        default_ingress: false,
        ..Default::default()
    };
    let ds = mesh_core::analyze::analyze_with(&l.objects, &opts);
    assert!(
        has(
            &ds,
            "IST0101",
            Severity::Warning,
            "Referenced selector not found: \"istio=ingressgateway\""
        ),
        "{ds:#?}"
    );
}

#[test]
fn seed_short_host_service_entry_and_destination_rule_do_not_meet() {
    let yaml = "apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: se-postgres}
spec:
  hosts: [my-postgres-my-ns-1]
  ports: [{name: postgres-5432, number: 5432, protocol: tcp}]
  resolution: DNS
  endpoints: [{address: 10.10.10.10}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: mtls-mongocluster}
spec:
  host: my-postgres-my-ns-1
  trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k, caCertificates: /ca}}
";
    let ds = run(yaml);
    let d = ds
        .iter()
        .find(|d| d.code == "IST0174")
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert!(
        d.help.as_deref().unwrap().contains("used literally"),
        "{d:?}"
    );
}

#[test]
fn sidecars_without_selector_conflict() {
    let sc = |n: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {n}}}\nspec:\n  egress: [{{hosts: ['./*']}}]\n")
    };
    let ds = run(&format!("{}---\n{}", sc("a"), sc("b")));
    assert_eq!(
        ds.iter().filter(|d| d.code == "IST0111").count(),
        2,
        "{ds:#?}"
    );
}

#[test]
fn delegate_must_exist() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http: [{delegate: {name: child}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
";
    let ds = run(yaml);
    assert!(
        has(
            &ds,
            "IST0101",
            Severity::Warning,
            "Referenced VirtualService not found: \"default/child\""
        ),
        "{ds:#?}"
    );
}

#[test]
fn hostless_virtual_service_is_a_delegate() {
    let child = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: child}
spec:
  http: [{route: [{destination: {host: r}}]}]
";
    let ds = run(child);
    // istiod accepts a delegate on its own: only a hint
    let d = ds
        .iter()
        .find(|d| d.code == "IM0203")
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert_eq!(d.severity, Severity::Info);
    assert_eq!(d.path, "spec");
    let root = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [r]
  http: [{delegate: {name: child}}]
";
    let ds = run(&format!("{child}---\n{root}"));
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn conflicting_hosts_respect_export_to() {
    let vs = |ns: &str, host: &str, export: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ratings, namespace: {ns}}}\nspec:\n  hosts: [{host}]\n  exportTo: {export}\n  http: [{{route: [{{destination: {{host: ratings}}}}]}}]\n")
    };
    let ds = run(&format!(
        "{}---\n{}",
        vs("team1", "ratings", "['.']"),
        vs("team2", "ratings.team1.svc.cluster.local", "['.']")
    ));
    assert!(!ds.iter().any(|d| d.code == "IST0109"), "{ds:#?}");
    let ds = run(&format!(
        "{}---\n{}",
        vs("team3", "ratings", "['*']"),
        vs("team4", "ratings.team3.svc.cluster.local", "[]")
    ));
    assert_eq!(
        ds.iter().filter(|d| d.code == "IST0109").count(),
        2,
        "{ds:#?}"
    );
}

#[test]
fn destination_ports_checked_against_loaded_services() {
    let yaml = "apiVersion: v1
kind: Service
metadata: {name: two}
spec:
  ports: [{port: 80, name: http}, {port: 443, name: https}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a.example.com]
  http:
  - route: [{destination: {host: two}}]
  - route: [{destination: {host: two, port: {number: 999}}}]
";
    let ds = run(yaml);
    // errors, as istioctl reports them: the loaded Service lists all of its ports
    assert!(
        has(&ds, "IST0112", Severity::Error, "exposes multiple ports"),
        "{ds:#?}"
    );
    assert!(
        has(
            &ds,
            "IST0101",
            Severity::Error,
            "Referenced host:port not found: \"two:999\""
        ),
        "{ds:#?}"
    );
}

#[test]
fn gateway_credentials_checked_against_loaded_secrets() {
    let cert = mesh_core::names::base64_encode(
        include_bytes!("../../../../shared/istio-samples/certs/workload-foo-cert.pem"),
        false,
    );
    let yaml = &format!(
        "apiVersion: v1
kind: Secret
metadata: {{name: good-cert, namespace: istio-system}}
type: kubernetes.io/tls
data: {{tls.crt: {cert}, tls.key: BBBB}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bad-cert, namespace: istio-system}}
stringData: {{password: hunter2}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https-good, protocol: HTTPS}}
    hosts: [a.example.com]
    tls: {{mode: SIMPLE, credentialName: good-cert}}
  - port: {{number: 444, name: https-bad, protocol: HTTPS}}
    hosts: [b.example.com]
    tls: {{mode: SIMPLE, credentialName: bad-cert}}
  - port: {{number: 445, name: https-missing, protocol: HTTPS}}
    hosts: [c.example.com]
    tls: {{mode: SIMPLE, credentialName: demo-tls-cert}}
"
    );
    let l = load_str(yaml, "s.yaml");
    let secret = l.objects[1].spec.as_secret().unwrap();
    assert_eq!(secret.keys, ["password"], "values are never kept");
    assert!(!format!("{:?}", l.objects).contains("hunter2"));
    let ds = analyze(&l.objects);
    let missing = ds
        .iter()
        .find(|d| d.message == "Referenced credentialName not found: \"demo-tls-cert\"")
        .unwrap_or_else(|| panic!("{ds:#?}"));
    // the Secret may exist in the cluster without being in the files
    assert_eq!(missing.severity, Severity::Warning);
    assert_eq!(missing.path, "spec.servers[2].tls.credentialName");
    assert!(
        has(
            &ds,
            "IST0161",
            Severity::Error,
            "Secret istio-system/bad-cert holds neither"
        ),
        "{ds:#?}"
    );
    assert!(
        !ds.iter().any(|d| d.message.contains("good-cert")),
        "{ds:#?}"
    );
}

/// istioctl's IST0140 (`analyzeSubset`): the request-routing task's own files, where the
/// gateway's VirtualService routes to `productpage` without a subset while
/// `virtual-service-all-v1` routes it by subset; none for a mesh-only VirtualService, nor
/// once the gateway's route names a subset.
#[test]
fn subsets_have_no_effect_on_gateway_routes() {
    let routes = |gateway_dest: &str, gateways: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo}}
spec:
  hosts: ['*']
  {gateways}
  http:
  - match: [{{uri: {{exact: /productpage}}}}]
    route: [{{destination: {gateway_dest}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: productpage}}
spec:
  hosts: [productpage]
  http: [{{route: [{{destination: {{host: productpage, subset: v1}}}}]}}]
"
        )
    };
    let ds = run(&routes(
        "{host: productpage, port: {number: 9080}}",
        "gateways: [bookinfo-gateway]",
    ));
    let found: Vec<_> = ds.iter().filter(|d| d.code == "IST0140").collect();
    assert_eq!(found.len(), 1, "{ds:#?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(
        found[0].message,
        "Subset in virtual service default/productpage has no effect on ingress gateway default/bookinfo requests"
    );
    assert_eq!(found[0].path, "spec.http[0].route[0].destination.host");
    for (dest, gateways) in [
        ("{host: productpage}", ""),
        (
            "{host: productpage, subset: v1}",
            "gateways: [bookinfo-gateway]",
        ),
    ] {
        let ds = run(&routes(dest, gateways));
        assert!(
            !ds.iter().any(|d| d.code == "IST0140"),
            "{dest} {gateways}: {ds:#?}"
        );
    }
}

/// istioctl's sidecar `SelectorAnalyzer`: a Sidecar selecting no loaded pod of its
/// namespace (a warning here: the files may not hold every pod); nothing when no pod or
/// controller is loaded.
#[test]
fn a_sidecar_selecting_no_loaded_workload_is_reported() {
    let sidecar = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: bogus, namespace: default}
spec:
  workloadSelector: {labels: {app: bogus}}
  egress: [{hosts: ['./*']}]
";
    let pod = "apiVersion: v1
kind: Pod
metadata: {name: reviews, namespace: default, labels: {app: reviews}}
spec: {containers: [{name: reviews, image: reviews}]}
---
";
    let ds = run(&format!("{pod}{sidecar}"));
    assert!(
        has(
            &ds,
            "IST0101",
            Severity::Warning,
            "Referenced selector not found: \"app=bogus\""
        ),
        "{ds:#?}"
    );
    assert!(!run(sidecar).iter().any(|d| d.code == "IST0101"));
    // pods of another namespace only: nothing known of the Sidecar's
    let elsewhere = pod.replace("namespace: default", "namespace: other");
    assert!(!run(&format!("{elsewhere}{sidecar}"))
        .iter()
        .any(|d| d.code == "IST0101"));
    let selecting = sidecar.replace("app: bogus", "app: reviews");
    assert!(!run(&format!("{pod}{selecting}"))
        .iter()
        .any(|d| d.code == "IST0101"));
}

/// A route to an ExternalName alias of a loaded service with one of that service's
/// subsets: istioctl's IST0101 stands, and the help says where inmesh routes it.
#[test]
fn an_alias_subset_is_reported_with_where_it_goes() {
    let ds = run("apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-alias, namespace: default}
spec: {type: ExternalName, externalName: reviews.default.svc.cluster.local, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-alias, namespace: default}
spec:
  hosts: [reviews-alias]
  http:
  - route:
    - destination: {host: reviews-alias, subset: v1}
    - destination: {host: reviews-alias, subset: v9}
");
    let found: Vec<_> = ds
        .iter()
        .filter(|d| d.code == "IST0101" && d.message.contains("reviews-alias+"))
        .collect();
    assert_eq!(found.len(), 2, "{ds:#?}");
    let v1 = found.iter().find(|d| d.message.contains("+v1")).unwrap();
    let help = v1.help.as_deref().unwrap();
    assert!(
        help.contains("ExternalName alias of reviews.default.svc.cluster.local")
            && help.contains("subset `v1`"),
        "{help}"
    );
    // a subset the target does not define either keeps the 503 help
    let v9 = found.iter().find(|d| d.message.contains("+v9")).unwrap();
    assert!(v9.help.as_deref().unwrap().contains("503"), "{v9:#?}");
}
