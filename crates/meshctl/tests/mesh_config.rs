//! `--mesh-config FILE` for `meshctl validate`, `route` and `authz`: the MeshConfig's own
//! problems are reported like other config errors; `validate` checks CUSTOM policies
//! against its `extensionProviders`; `route` and `authz` take its root namespace (and trust
//! domain); `authz` names the external authorizer a matched CUSTOM policy would ask.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--output", "json"]);
    let out = meshctl(&a);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const MESH: &str = "
trustDomain: corp.example
rootNamespace: mesh-root
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
";

/// Istio's "External Authorization" task, plus a DENY policy and a mesh-wide ALLOW in the
/// MeshConfig's root namespace.
const POLICIES: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: CUSTOM
  provider: {name: sample-ext-authz-http}
  rules: [{to: [{operation: {paths: ["/headers"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-sleep, namespace: mesh-root}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: ["corp.example/ns/foo/sa/sleep"]}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: foo}
spec:
  selector: {app: ext-authz}
  ports: [{name: http, port: 8000}, {name: grpc, port: 9000}]
"#;

#[test]
fn validate_reports_undefined_providers_and_the_mesh_configs_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    let policies = write(dir.path(), "ap.yaml", POLICIES);
    let mesh = write(dir.path(), "mesh.yaml", MESH);
    // the provider is defined: no error
    let out = meshctl(&["validate", &policies, "--mesh-config", &mesh]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 errors"), "{stdout}");

    // it is not: istiod's message, at the policy's provider name
    let other = write(
        dir.path(),
        "other.yaml",
        &MESH.replace("name: sample-ext-authz-http", "name: opa"),
    );
    let out = meshctl(&["validate", &policies, "--mesh-config", &other]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(r#"available providers are [opa] but found "sample-ext-authz-http""#),
        "{stdout}"
    );
    assert!(stdout.contains("ap.yaml:7:"), "{stdout}");
    // without --mesh-config nothing is known about providers: not reported
    let out = meshctl(&["validate", &policies]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);

    // the MeshConfig's own error, rendered at its line like any config error; JSON too
    let broken = write(
        dir.path(),
        "broken.yaml",
        "extensionProviders:\n- name: x\n  envoyExtAuthzHttp: {service: x.foo.svc.cluster.local, port: 0}\n",
    );
    let out = meshctl(&["validate", &policies, "--mesh-config", &broken]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("port must be in the range [1, 65535], found: 0"),
        "{stdout}"
    );
    assert!(stdout.contains("broken.yaml:3:"), "{stdout}");
    let out = meshctl(&[
        "validate",
        &policies,
        "--mesh-config",
        &broken,
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|d| d["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.yaml"))),
        "{v}"
    );

    // an unreadable MeshConfig is a usage error
    let missing = dir.path().join("missing.yaml").display().to_string();
    let out = meshctl(&["validate", &policies, "--mesh-config", &missing]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn authz_names_the_provider_a_custom_policy_asks() {
    let dir = tempfile::tempdir().unwrap();
    let policies = write(dir.path(), "ap.yaml", POLICIES);
    let mesh = write(dir.path(), "mesh.yaml", MESH);
    let base = [
        "authz",
        "-f",
        &policies,
        "-n",
        "foo",
        "--labels",
        "app=httpbin",
        "--principal",
        "corp.example/ns/foo/sa/sleep",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        json(&a)
    };

    // the CUSTOM policy matches: its external authorizer decides
    let v = with(&["--path", "/headers", "--mesh-config", &mesh]);
    assert_eq!(v["decision"], "CUSTOM", "{v}");
    assert_eq!(v["status"], Value::Null);
    assert_eq!(v["custom"]["policy"], "foo/ext-authz");
    assert_eq!(v["custom"]["rule"], 0);
    assert_eq!(v["custom"]["provider"], "sample-ext-authz-http");
    assert_eq!(
        v["custom"]["service"],
        "envoyExtAuthzHttp ext-authz.foo.svc.cluster.local:8000"
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("cannot ask offline"), "{reason}");
    // ... and should it allow, the root namespace's ALLOW policy lets sleep in
    assert!(reason.contains("mesh-root/only-sleep"), "{reason}");

    // without the authorizer's Service istiod builds no authorizer (`LookupCluster`): the
    // CUSTOM rules deny what they match, whatever `failOpen` says
    let (without, _) = POLICIES
        .split_once("---\napiVersion: v1\nkind: Service")
        .unwrap();
    let no_service = write(dir.path(), "no-service.yaml", without);
    let mut a = base.to_vec();
    a[2] = &no_service;
    a.extend_from_slice(&["--path", "/headers", "--mesh-config", &mesh]);
    let v = json(&a);
    assert_eq!(
        (&v["decision"], &v["status"]),
        (&serde_json::json!("DENY"), &serde_json::json!(403)),
        "{v}"
    );
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "could not find service ext-authz.foo.svc.cluster.local in Istio service registry"
        ),
        "{reason}"
    );

    // a DENY policy denies whatever the authorizer answers
    let v = with(&["--path", "/headers", "-X", "DELETE", "--mesh-config", &mesh]);
    assert_eq!(
        (&v["decision"], &v["policy"], &v["status"]),
        (
            &Value::from("DENY"),
            &Value::from("foo/no-delete"),
            &Value::from(403)
        )
    );
    assert_eq!(v["custom"]["provider"], "sample-ext-authz-http");

    // the CUSTOM policy does not match: not asked
    let v = with(&["--path", "/ip", "--mesh-config", &mesh]);
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["custom"], Value::Null);

    // without the MeshConfig the provider is undefined: istiod builds the CUSTOM policies'
    // rules as DENY rules, so what they match is denied by that policy and rule ...
    let v = with(&["--path", "/headers"]);
    assert_eq!(
        (&v["decision"], &v["policy"], &v["rule"], &v["status"]),
        (
            &Value::from("DENY"),
            &Value::from("foo/ext-authz"),
            &Value::from(0),
            &Value::from(403)
        ),
        "{v}"
    );
    assert_eq!(v["custom"]["policy"], "foo/ext-authz");
    assert_eq!(
        v["custom"]["error"],
        r#"available providers are [] but found "sample-ext-authz-http""#
    );
    assert!(
        v["reason"].as_str().unwrap().contains("no --mesh-config"),
        "{v}"
    );
    // ... and the rest is decided by the other policies (no ALLOW policy applies: the
    // root namespace is istio-system)
    let v = with(&["--path", "/ip"]);
    assert_eq!(
        (&v["decision"], &v["policy"], &v["status"]),
        (&Value::from("ALLOW"), &Value::Null, &Value::from(200)),
        "{v}"
    );
    assert_eq!(v["custom"]["policy"], Value::Null);
    assert_eq!(v["custom"]["provider"], "sample-ext-authz-http");
    // a MeshConfig that defines other providers: the same, with its root namespace's ALLOW
    // policy and the DENY policy deciding what the CUSTOM rules do not match
    let opa = write(
        dir.path(),
        "opa.yaml",
        &MESH.replace("name: sample-ext-authz-http", "name: opa"),
    );
    let v = with(&["--path", "/headers", "--mesh-config", &opa]);
    assert_eq!(v["policy"], "foo/ext-authz", "{v}");
    assert_eq!(
        v["custom"]["error"],
        r#"available providers are [opa] but found "sample-ext-authz-http""#
    );
    let v = with(&["--path", "/ip", "--mesh-config", &opa]);
    assert_eq!(
        (&v["decision"], &v["policy"]),
        (&Value::from("ALLOW"), &Value::from("mesh-root/only-sleep")),
        "{v}"
    );
    let v = with(&["--path", "/ip", "-X", "DELETE", "--mesh-config", &opa]);
    assert_eq!(
        (&v["decision"], &v["policy"]),
        (&Value::from("DENY"), &Value::from("foo/no-delete")),
        "{v}"
    );
    // (another caller)
    let mut a = base[..base.len() - 1].to_vec();
    a.push("corp.example/ns/foo/sa/other");
    a.extend_from_slice(&["--path", "/ip", "--mesh-config", &opa]);
    let v = json(&a);
    assert_eq!(
        (&v["decision"], &v["policy"]),
        (&Value::from("DENY"), &Value::Null),
        "{v}"
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("mesh-root/only-sleep"),
        "{v}"
    );

    // text: the provider that would be asked
    let mut a = base.to_vec();
    a.extend_from_slice(&["--path", "/headers", "--mesh-config", &mesh]);
    let out = meshctl(&a);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("CUSTOM GET /headers"), "{stdout}");
    assert!(
        stdout.contains(
            "CUSTOM: the external authorizer sample-ext-authz-http (envoyExtAuthzHttp ext-authz.foo.svc.cluster.local:8000) decides"
        ),
        "{stdout}"
    );
}

/// On a TCP connection a CUSTOM policy's HTTP provider does not apply (istiod leaves it out
/// of TCP filter chains); a gRPC provider is asked.
#[test]
fn authz_custom_on_tcp_by_provider_kind() {
    let dir = tempfile::tempdir().unwrap();
    let policies = write(dir.path(), "ap.yaml", POLICIES);
    let mesh = write(dir.path(), "mesh.yaml", MESH);
    let grpc = write(
        dir.path(),
        "grpc.yaml",
        "
trustDomain: corp.example
rootNamespace: mesh-root
extensionProviders:
- name: sample-ext-authz-http
  envoyExtAuthzGrpc: {service: ext-authz.foo.svc.cluster.local, port: 9000}
",
    );
    let args = |mc: &str| {
        json(&[
            "authz",
            "-f",
            &policies,
            "-n",
            "foo",
            "--labels",
            "app=httpbin",
            "--principal",
            "corp.example/ns/foo/sa/sleep",
            "--tcp",
            "--port",
            "8000",
            "--mesh-config",
            mc,
        ])
    };
    // (the DENY policy's HTTP-only `methods` is dropped on TCP: it denies every connection)
    let v = args(&mesh);
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["policy"], "foo/no-delete", "{v}");
    assert_eq!(v["custom"]["ignored"], true, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("does not apply to TCP"), "{v}");
    let v = args(&grpc);
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["custom"]["ignored"], Value::Null, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("is asked first"), "{v}");
    assert_eq!(
        v["custom"]["service"],
        "envoyExtAuthzGrpc ext-authz.foo.svc.cluster.local:9000"
    );
}

#[test]
fn the_root_namespace_comes_from_the_mesh_config() {
    let dir = tempfile::tempdir().unwrap();
    let policies = write(dir.path(), "ap.yaml", POLICIES);
    let mesh = write(dir.path(), "mesh.yaml", MESH);
    let args = |mesh: Option<&str>| {
        let mut a = vec![
            "authz",
            "-f",
            &policies,
            "-n",
            "bar",
            "--principal",
            "corp.example/ns/bar/sa/other",
            "--path",
            "/ip",
        ];
        if let Some(m) = mesh {
            a.extend_from_slice(&["--mesh-config", m]);
        }
        json(&a)
    };
    // mesh-root is the root namespace: its ALLOW policy applies to every workload
    let v = args(Some(&mesh));
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["policies"], serde_json::json!(["mesh-root/only-sleep"]));
    // by default (istio-system) it is an ordinary namespace's policy
    let v = args(None);
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["policies"], serde_json::json!([]));

    // route: the root namespace's Sidecar is the mesh's default
    let sidecar = write(
        dir.path(),
        "sidecar.yaml",
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: mesh-root}
spec:
  egress: [{hosts: ['./*']}]
",
    );
    let route = |mesh: Option<&str>| {
        let mut a = vec![
            "route",
            "http://reviews.bar:9080/",
            "-f",
            &sidecar,
            "-n",
            "foo",
        ];
        if let Some(m) = mesh {
            a.extend_from_slice(&["--mesh-config", m]);
        }
        json(&a)
    };
    assert_eq!(route(Some(&mesh))["sidecar"], "mesh-root/default");
    assert_eq!(route(None)["sidecar"], Value::Null);

    // a MeshConfig with errors: route and authz refuse to explain (exit 2), printing them
    let broken = write(dir.path(), "broken.yaml", "trustDomain: [a]\n");
    let out = meshctl(&[
        "route",
        "http://reviews:9080/",
        "-f",
        &sidecar,
        "--mesh-config",
        &broken,
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");
    assert!(
        stderr.contains("the MeshConfig cannot be loaded"),
        "{stderr}"
    );
}
