//! IST0145 ConflictingGateways on real Istio YAML and our own.

use std::path::{Path, PathBuf};

use mesh_core::analyze::analyze;
use mesh_core::diag::{codes, Diagnostic, Severity};
use mesh_core::load::{load_str, LoadOptions, Loader};

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples")
}

/// The IST0145 findings as (file, path, message).
fn conflicts(ds: &[Diagnostic]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = ds
        .iter()
        .filter(|d| d.code == codes::CONFLICTING_GATEWAYS)
        .inspect(|d| assert_eq!(d.severity, Severity::Error))
        .map(|d| (d.file.to_string(), d.path.clone(), d.message.clone()))
        .collect();
    v.sort();
    v
}

fn run(yaml: &str) -> Vec<(String, String, String)> {
    let l = load_str(yaml, "gw.yaml");
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    conflicts(&analyze(&l.objects))
}

fn gateway(name: &str, selector: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  {selector}\n  servers:\n{servers}---\n"
    )
}

fn server(port: u32, proto: &str, hosts: &str) -> String {
    format!(
        "  - port: {{number: {port}, name: {}-{port}, protocol: {proto}}}\n    hosts: {hosts}\n",
        proto.to_ascii_lowercase()
    )
}

#[test]
fn istioctl_testdata_alpha_and_beta() {
    // istioctl's own case: the same selector, port 80, host foo.bar (protocols differ)
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: beta
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: tcp
      protocol: TCP
    hosts:
    - "foo.bar"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: alpha
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "foo.bar"
"#;
    let l = load_str(yaml, "conflicting-gateways.yaml");
    let ds = analyze(&l.objects);
    let found: Vec<&Diagnostic> = ds.iter().filter(|d| d.code == "IST0145").collect();
    assert_eq!(found.len(), 2, "{ds:#?}");
    // reported on beta (first in the file) and on alpha, each naming the other
    assert_eq!(
        found[0].message,
        "Conflict with gateways default/alpha (workload selector istio=ingressgateway, port 80, hosts foo.bar)."
    );
    assert_eq!(found[0].line, 15); // the hosts list
    assert_eq!(found[0].path, "spec.servers[0].hosts");
    assert_eq!(
        found[1].message,
        "Conflict with gateways default/beta (workload selector istio=ingressgateway, port 80, hosts foo.bar)."
    );
}

#[test]
fn istio_samples_httpbin_and_cert_manager_gateways_conflict() {
    let loader = Loader::new(LoadOptions::default());
    let loaded = loader
        .load_paths(
            [
                "httpbin/httpbin-gateway.yaml",
                "bookinfo/networking/certmanager-gateway.yaml",
                "bookinfo/networking/bookinfo-gateway.yaml",
            ]
            .iter()
            .map(|f| samples().join(f)),
        )
        .unwrap();
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let found: Vec<(String, String)> = conflicts(&analyze(&loaded.objects))
        .into_iter()
        .map(|(f, _, m)| {
            (
                Path::new(&f)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                m,
            )
        })
        .collect();
    // both take every host on port 80 of the istio=ingressgateway workloads; bookinfo's
    // gateway is on 8080
    assert_eq!(
        found,
        [
            (
                "certmanager-gateway.yaml".to_owned(),
                "Conflict with gateways default/httpbin-gateway (workload selector istio=ingressgateway, port 80, hosts *).".to_owned()
            ),
            (
                "httpbin-gateway.yaml".to_owned(),
                "Conflict with gateways istio-system/cert-manager-gateway (workload selector istio=ingressgateway, port 80, hosts *).".to_owned()
            ),
        ]
    );
}

#[test]
fn no_conflict_without_same_port_bind_host_or_workloads() {
    let sel = "selector: {istio: ingressgateway}";
    let cases: &[(&str, String)] = &[
        (
            "another port",
            gateway("a", sel, &server(80, "HTTP", "[foo.bar]"))
                + &gateway("b", sel, &server(443, "HTTPS", "[foo.bar]")),
        ),
        (
            "other hosts (wildcards are not expanded, as istioctl)",
            gateway("a", sel, &server(80, "HTTP", "[foo.bar]"))
                + &gateway("b", sel, &server(80, "HTTP", "['*.bar', baz.bar]")),
        ),
        (
            "the same host written with a namespace",
            gateway("a", sel, &server(80, "HTTP", "[foo.bar]"))
                + &gateway("b", sel, &server(80, "HTTP", "['*/foo.bar']")),
        ),
        (
            "another selector, no workload loaded",
            gateway("a", sel, &server(80, "HTTP", "[foo.bar]"))
                + &gateway(
                    "b",
                    "selector: {istio: egressgateway}",
                    &server(80, "HTTP", "[foo.bar]"),
                ),
        ),
        (
            "servers of one gateway",
            gateway(
                "a",
                sel,
                &(server(80, "HTTP", "[foo.bar]") + &server(80, "HTTP2", "[foo.bar]")),
            ),
        ),
    ];
    for (why, yaml) in cases {
        assert_eq!(run(yaml), [] as [(String, String, String); 0], "{why}");
    }
    // another bind address
    let bound = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: b}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    bind: 10.0.0.1\n    hosts: [foo.bar]\n";
    let yaml = gateway("a", sel, &server(80, "HTTP", "[foo.bar]")) + bound;
    assert!(run(&yaml).is_empty());
}

#[test]
fn selectors_overlapping_on_a_loaded_workload_conflict() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: ingress-1, namespace: istio-system, labels: {istio: ingressgateway, app: istio-ingressgateway}}\nspec: {containers: [{name: istio-proxy, image: proxyv2}]}\n---\n";
    let a = gateway(
        "a",
        "selector: {istio: ingressgateway}",
        &server(80, "HTTP", "[foo.bar, a.bar]"),
    );
    let b = gateway(
        "b",
        "selector: {app: istio-ingressgateway}",
        &server(80, "HTTP", "[foo.bar]"),
    );
    // no loaded workload carries both: no conflict
    assert!(run(&(a.clone() + &b)).is_empty());
    // the pod carries both labels: both gateways apply to it
    let found = run(&format!("{pod}{a}{b}"));
    let messages: Vec<&str> = found.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "Conflict with gateways default/a (workload selector app=istio-ingressgateway, port 80, hosts foo.bar).",
            "Conflict with gateways default/b (workload selector istio=ingressgateway, port 80, hosts foo.bar,a.bar).",
        ]
    );
    // a gateway without a selector applies to every workload
    let c = gateway("c", "selector: {}", &server(80, "HTTP", "[a.bar]"));
    let found = run(&format!("{pod}{a}{c}"));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0]
            .2
            .contains("(workload selector , port 80, hosts a.bar)"),
        "{found:#?}"
    );
}

#[test]
fn several_conflicting_gateways_are_named_sorted_per_server() {
    let sel = "selector: {istio: ingressgateway}";
    let yaml = gateway(
        "main",
        sel,
        &(server(80, "HTTP", "[shop.example.com]") + &server(443, "HTTPS", "[api.example.com]")),
    ) + &gateway("zeta", sel, &server(80, "HTTP", "[shop.example.com]"))
        + &gateway(
            "beta",
            sel,
            &server(80, "HTTP", "[other.example.com, shop.example.com]"),
        );
    let found = run(&yaml);
    let shop_only: Vec<_> = found
        .iter()
        .filter(|(_, _, m)| m.contains("hosts shop.example.com)"))
        .collect();
    // main's first server conflicts with both others; its 443 server with none
    assert!(
        found.iter().any(|(_, p, m)| p == "spec.servers[0].hosts"
            && m == "Conflict with gateways default/beta,default/zeta (workload selector istio=ingressgateway, port 80, hosts shop.example.com)."),
        "{found:#?}"
    );
    assert!(!found.iter().any(|(_, p, _)| p == "spec.servers[1].hosts"));
    assert_eq!(shop_only.len(), 2, "main and zeta: {found:#?}");
    assert_eq!(found.len(), 3, "{found:#?}");
}
