//! `meshctl route --gateway ... --claims '{json}'`: explain JWT claim based routing at a
//! gateway as a request whose verified token has those claims (none: no token).

use std::process::{Command, Output};

use serde_json::Value;

const CONFIG: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: foo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: ['*']
  gateways: [httpbin-gateway]
  http:
  - match: [{headers: {"@request.auth.claims.groups": {exact: group1}}}]
    route: [{destination: {host: httpbin, subset: v2}}]
  - match: [{headers: {"@request.auth.claims[nested][key]": {exact: value1}}}]
    route: [{destination: {host: httpbin, subset: v3}}]
  - route: [{destination: {host: httpbin, subset: v1}}]
"#;

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

#[test]
fn claims_explain_jwt_claim_based_routing_at_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vs.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.display().to_string();
    let route = |claims: Option<&str>, output: &str| {
        let mut a = vec![
            "route",
            "http://httpbin.example.com/headers",
            "--gateway",
            "foo/httpbin-gateway",
            "--config",
            &cfg,
            "--output",
            output,
        ];
        if let Some(c) = claims {
            a.extend_from_slice(&["--claims", c]);
        }
        let out = meshctl(&a);
        assert!(
            out.status.success(),
            "{claims:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let subset = |claims: Option<&str>| -> Value {
        let v: Value = serde_json::from_str(&route(claims, "json")).unwrap();
        v["destinations"][0]["subset"].clone()
    };
    let table = [
        (Some(r#"{"groups": ["group1", "group2"]}"#), "v2"),
        (Some(r#"{"groups": "group1"}"#), "v2"),
        (Some(r#"{"groups": ["group2"]}"#), "v1"),
        (Some(r#"{"nested": {"key": "value1"}}"#), "v3"),
        (Some("{}"), "v1"),
        (None, "v1"),
    ];
    for (claims, want) in table {
        assert_eq!(subset(claims), want, "{claims:?}");
    }
    let text = route(Some(r#"{"groups": ["group1"]}"#), "text");
    assert!(
        text.contains(r#"with a verified JWT whose claims are {"groups":["group1"]}"#),
        "{text}"
    );
    assert!(text.contains("http route 0 matched"), "{text}");
}

#[test]
fn claims_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vs.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.display().to_string();
    let base = ["route", "http://httpbin.example.com/", "--config", &cfg];
    // claims come from a token a gateway verified: --gateway is required
    let mut a = base.to_vec();
    a.extend_from_slice(&["--claims", "{}"]);
    let out = meshctl(&a);
    assert_eq!(out.status.code(), Some(2));
    for bad in ["[1]", "{groups"] {
        let mut a = base.to_vec();
        a.extend_from_slice(&["--gateway", "foo/httpbin-gateway", "--claims", bad]);
        let out = meshctl(&a);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--claims"), "{bad}: {err}");
    }
}
