//! `meshctl authz` end to end: the real binary on the istio.io authorization tasks.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn task(f: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples/istio-io-tasks")
        .join(f)
        .display()
        .to_string()
}

/// An ALLOW AuthorizationPolicy `foo/<name>` for `app: httpbin` with `rules`, written in
/// `dir`; its path. `metadata` adds to the policy's metadata (`annotations: {...}`).
fn httpbin_policy(dir: &tempfile::TempDir, name: &str, metadata: &str, rules: &str) -> String {
    let f = dir.path().join(format!("{name}.yaml"));
    std::fs::write(
        &f,
        format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: foo, {metadata}}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  rules: {rules}
"
        ),
    )
    .unwrap();
    f.to_str().unwrap().to_owned()
}

fn decide(args: &[&str]) -> Value {
    let mut a = vec!["authz"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output", "json"]);
    let out = meshctl(&a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.trim().lines().count(), 1, "{s}");
    serde_json::from_str(&s).unwrap()
}

#[test]
fn httpbin_sleep_tasks() {
    let deny = task("authz-deny-method-get-unless-x-token-admin.yaml");
    let allow = task("authz-deny-allow-path-ip.yaml");
    let base = [
        "--config",
        &deny,
        "--config",
        &allow,
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--principal",
        "cluster.local/ns/foo/sa/sleep",
        "--port",
        "8000",
    ];
    // (path, token, decision, policy)
    let table = [
        ("/ip", "guest", "DENY", Some("foo/deny-method-get")),
        ("/ip", "admin", "ALLOW", Some("foo/allow-path-ip")),
        ("/get", "admin", "DENY", None),
    ];
    for (path, token, want, policy) in table {
        let h = format!("x-token: {token}");
        let mut a = base.to_vec();
        a.extend_from_slice(&["--path", path, "--header", &h]);
        let v = decide(&a);
        assert_eq!(v["decision"], want, "{path} {token}");
        assert_eq!(v["policy"].as_str(), policy, "{path} {token}");
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));
    }
    let mut a = base.to_vec();
    a.extend_from_slice(&["--method", "POST", "--path", "/ip"]);
    assert_eq!(decide(&a)["decision"], "ALLOW");
    // a method not in upper case does not slip past `methods: [GET]`: Envoy's codec
    // refuses it with 400 before any policy is looked at
    // (the method as `m` with an admin token: 400 before any policy, for `why`)
    let refused = |m: &str, why: &str| {
        let mut a = base.to_vec();
        a.extend_from_slice(&["--method", m, "--path", "/ip", "--header", "x-token: admin"]);
        let v = decide(&a);
        assert_eq!(
            (
                v["decision"].as_str(),
                v["status"].as_u64(),
                v["policy"].as_str()
            ),
            (Some("DENY"), Some(400), None),
            "{m}: {v}"
        );
        assert!(v["reason"].as_str().unwrap().contains(why), "{v}");
    };
    refused("get", "not upper case");
    refused("Get", "not upper case");
    // and so is, over HTTP/1.1, a method Envoy's codec does not know
    refused("FROBNICATE", "HTTP/1.1 codec");
    let mut a = base.to_vec();
    a.extend_from_slice(&["--method", "PROPFIND", "--path", "/ip"]);
    // (an extension method the codec knows reaches the policies: allow-path-ip allows it)
    assert_eq!(decide(&a)["status"], 200);
    let mut a = base.to_vec();
    a.extend_from_slice(&["--method", "get", "--path", "/ip"]);
    a.insert(0, "authz");
    let out = meshctl(&a);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("400 `Bad Request`"), "{text}");

    // seed: ALLOW only from sleep
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.yaml");
    std::fs::write(&f, "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: httpbin-policy, namespace: default}\nspec:\n  selector: {matchLabels: {app: httpbin}}\n  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/default/sa/sleep\"]}}]\n").unwrap();
    let f = f.to_str().unwrap();
    let v = decide(&[
        "--config",
        f,
        "--namespace",
        "default",
        "--labels",
        "app=httpbin",
        "--principal",
        "cluster.local/ns/default/sa/sleep",
    ]);
    assert_eq!(
        (v["decision"].as_str(), v["policy"].as_str()),
        (Some("ALLOW"), Some("default/httpbin-policy"))
    );
    let v = decide(&[
        "--config",
        f,
        "--namespace",
        "default",
        "--labels",
        "app=httpbin",
    ]);
    assert_eq!(v["decision"], "DENY");
    assert_eq!(v["policy"], Value::Null);
    let v = decide(&[
        "--config",
        f,
        "--namespace",
        "default",
        "--labels",
        "app=other",
    ]);
    assert_eq!(v["decision"], "ALLOW");
}

#[test]
fn allow_nothing_tcp_and_strict_mtls() {
    let v = decide(&[
        "--config",
        &task("authz-http-allow-nothing.yaml"),
        "--namespace",
        "default",
        "--labels",
        "app=productpage",
    ]);
    assert_eq!(v["decision"], "DENY");
    let tcp = task("authz-tcp-allow-ports.yaml");
    for (port, want) in [("9000", "ALLOW"), ("9002", "DENY")] {
        let v = decide(&[
            "--config",
            &tcp,
            "--namespace",
            "foo",
            "--labels",
            "app=tcp-echo",
            "--tcp",
            "--port",
            port,
        ]);
        assert_eq!(v["decision"], want, "{port}");
    }
    let strict = task("mtls-migration-strict-namespace.yaml");
    let v = decide(&[
        "--config",
        &strict,
        "--config-namespace",
        "foo",
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
    ]);
    assert_eq!(v["decision"], "DENY");
    assert_eq!(v["policy"], "foo/default");
    assert_eq!(v["mtls_mode"], "STRICT");
    let v = decide(&[
        "--config",
        &strict,
        "--config-namespace",
        "foo",
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--principal",
        "cluster.local/ns/foo/sa/sleep",
    ]);
    assert_eq!(v["decision"], "ALLOW");

    let out = meshctl(&[
        "authz",
        "--config",
        &tcp,
        "--namespace",
        "foo",
        "--labels",
        "app=tcp-echo",
        "--tcp",
        "--port",
        "9002",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("DENY TCP connection to port 9002"),
        "{text}"
    );
    let out = meshctl(&[
        "authz",
        "--config",
        &tcp,
        "--namespace",
        "foo",
        "--labels",
        "broken",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn jwt_task() {
    let groups = task("authz-jwt-require-jwt-groups.yaml");
    let base = [
        "--config",
        &groups,
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
    ];
    let v = decide(&base);
    assert_eq!(v["decision"], "DENY");
    let mut a = base.to_vec();
    a.extend_from_slice(&[
        "--request-principal",
        "testing@secure.istio.io/testing@secure.istio.io",
        "--claims",
        r#"{"groups": ["group1", "group2"]}"#,
    ]);
    let v = decide(&a);
    assert_eq!(v["decision"], "ALLOW");
    assert_eq!(v["policy"], "foo/require-jwt");
    let mut a = base.to_vec();
    a.extend_from_slice(&[
        "--request-principal",
        "testing@secure.istio.io/testing@secure.istio.io",
        "--claims",
        r#"{"groups": ["group2"]}"#,
    ]);
    assert_eq!(decide(&a)["decision"], "DENY");
}

/// A P-256 key made for the JWT tests, and its public half as a JWKS.
const ES_KEY: &str = include_str!("../../mesh-core/tests/fixtures/jwt/es256-key.pem");
const JWKS: &str = include_str!("../../mesh-core/tests/fixtures/jwt/jwks.json");

fn token(claims: Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some("k1".into());
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ES_KEY.as_bytes()).unwrap();
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The request's token is verified as the workload would before authorization: a valid one
/// supplies the request principal and claims, a bad one is Envoy's 401, none passes with no
/// identity; a `jwksUri` is not fetched offline and says so.
#[test]
fn tokens_in_the_request_are_verified_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jwt.yaml");
    let jwks = JWKS.replace('\n', "");
    std::fs::write(
        &config,
        format!(
            r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: issuer.example.com
    audiences: [httpbin]
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-group, namespace: foo}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  rules:
  - from: [{{source: {{requestPrincipals: [issuer.example.com/*]}}}}]
    when: [{{key: "request.auth.claims[scope]", values: [write]}}]
"#
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let run = |tok: Option<&str>| {
        let bearer = tok.map(|t| format!("authorization: Bearer {t}"));
        let mut a = vec![
            "--config",
            &config,
            "--namespace",
            "foo",
            "--labels",
            "app=httpbin",
            "--principal",
            "cluster.local/ns/foo/sa/sleep",
        ];
        if let Some(b) = &bearer {
            a.extend_from_slice(&["-H", b]);
        }
        decide(&a)
    };
    let claims = |exp: u64, scope: &str| {
        serde_json::json!({
            "iss": "issuer.example.com", "sub": "alice", "aud": "httpbin",
            "exp": exp, "scope": scope,
        })
    };

    // verified: principal and a space-delimited scope claim decide
    let v = run(Some(&token(claims(now() + 600, "read write"))));
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["status"], 200);
    assert_eq!(v["request_authentication"]["result"], "verified");
    assert_eq!(v["request_authentication"]["policy"], "foo/jwt");
    assert_eq!(
        v["request_authentication"]["principal"],
        "issuer.example.com/alice"
    );
    let v = run(Some(&token(claims(now() + 600, "read"))));
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("DENY"), Some(403))
    );

    // rejected before authorization: Envoy's 401 messages
    let v = run(Some(&token(claims(now() - 3600, "write"))));
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("DENY"), Some(401))
    );
    assert_eq!(v["request_authentication"]["error"], "Jwt is expired");
    assert!(v["reason"].as_str().unwrap().contains("foo/jwt"), "{v}");
    let mut other = claims(now() + 600, "write");
    other["aud"] = "other".into();
    let v = run(Some(&token(other)));
    assert_eq!(
        v["request_authentication"]["error"],
        "Audiences in Jwt are not allowed"
    );
    let v = run(Some("not-a-jwt"));
    assert_eq!(v["status"], 401);

    // no token: no request principal, so the ALLOW policy does not match
    let v = run(None);
    assert_eq!(v["request_authentication"]["result"], "no token");
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("DENY"), Some(403))
    );

    // text output says which provider verified the token
    let tok = token(claims(now() + 600, "write"));
    let bearer = format!("authorization: Bearer {tok}");
    let out = meshctl(&[
        "authz",
        "--config",
        &config,
        "-n",
        "foo",
        "--labels",
        "app=httpbin",
        "--principal",
        "cluster.local/ns/foo/sa/sleep",
        "-H",
        &bearer,
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("token: verified by RequestAuthentication foo/jwt, request principal issuer.example.com/alice"),
        "{text}"
    );

    // Istio's task: the keys are at a jwksUri, which meshctl does not fetch
    let ra = task("authz-jwt-request-authentication.yaml");
    let v = decide(&[
        "--config",
        &ra,
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "-H",
        &format!(
            "authorization: Bearer {}",
            token(serde_json::json!({"iss": "testing@secure.istio.io", "sub": "x"}))
        ),
    ]);
    assert_eq!(v["status"], 401);
    assert_eq!(
        v["request_authentication"]["error"],
        "Jwks remote fetch is failed"
    );
    assert!(
        v["reason"].as_str().unwrap().contains("does not fetch"),
        "{v}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_meshctl_quietly() {
    // `meshctl authz ... | head -0`: the pipe is closed before meshctl writes
    let allow = task("authz-deny-allow-path-ip.yaml");
    // (the reading end closed before meshctl starts: it cannot write before the reader
    // goes; a socket pair, whose closed peer gives SIGPIPE as a pipe's does)
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let writer = std::os::fd::OwnedFd::from(writer);
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args([
            "authz",
            "--config",
            &allow,
            "--namespace",
            "foo",
            "--labels",
            "app=httpbin",
        ])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

#[test]
fn remote_ip_is_the_rightmost_forwarded_address_as_a_sidecar_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = httpbin_policy(
        &dir,
        "rip",
        "",
        "[{from: [{source: {remoteIpBlocks: [192.168.5.0/24]}}]}]",
    );
    let f = f.as_str();
    let base = [
        "--config",
        f,
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--source-ip",
        "10.0.0.1",
    ];
    let with = |xff: &str| {
        let h = format!("X-Forwarded-For: {xff}");
        let mut a = base.to_vec();
        a.extend_from_slice(&["--header", &h]);
        decide(&a)["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(with("1.1.1.1, 192.168.5.5"), "ALLOW");
    assert_eq!(with("192.168.5.5, 1.1.1.1"), "DENY");
    // without the header, the caller's own address
    assert_eq!(decide(&base)["decision"], "DENY");
    // --remote-ip decides when given
    let mut a = base.to_vec();
    a.extend_from_slice(&[
        "--remote-ip",
        "192.168.5.9",
        "--header",
        "X-Forwarded-For: 1.1.1.1",
    ]);
    assert_eq!(decide(&a)["decision"], "ALLOW");
}

/// istio.io authz-ingress's `remoteIpBlocks`: at a gateway, whose connection manager uses
/// the remote address, `remote.ip` is the peer unless MeshConfig `gatewayTopology` trusts
/// proxies in front of it, then the `numTrustedProxies`-th `X-Forwarded-For` address from
/// the right; a forged header passes nothing.
#[test]
fn remote_ip_at_a_gateway_follows_num_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("ingress.yaml");
    std::fs::write(
        &policy,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-policy, namespace: istio-system}
spec:
  selector: {matchLabels: {app: istio-ingressgateway}}
  rules: [{from: [{source: {remoteIpBlocks: [1.2.3.4]}}]}]
",
    )
    .unwrap();
    let trusting = dir.path().join("mesh.yaml");
    std::fs::write(
        &trusting,
        "defaultConfig: {gatewayTopology: {numTrustedProxies: 2}}\n",
    )
    .unwrap();
    let (policy, trusting) = (policy.to_str().unwrap(), trusting.to_str().unwrap());
    let decision = |labels: &str, mesh_config: Option<&str>, xff: &str| {
        let h = format!("X-Forwarded-For: {xff}");
        let mut a = vec![
            "--config",
            policy,
            "--namespace",
            "istio-system",
            "--labels",
            labels,
            "--source-ip",
            "10.0.0.9",
            "--header",
            &h,
        ];
        if let Some(m) = mesh_config {
            a.extend_from_slice(&["--mesh-config", m]);
        }
        decide(&a)["decision"].as_str().unwrap().to_owned()
    };
    let gateway = "istio=ingressgateway,app=istio-ingressgateway";
    // no trusted proxies: the peer, 10.0.0.9, whatever the header says
    assert_eq!(decision(gateway, None, "1.2.3.4"), "DENY");
    // two trusted proxies: the second address from the right
    assert_eq!(
        decision(gateway, Some(trusting), "1.2.3.4, 9.9.9.9"),
        "ALLOW"
    );
    assert_eq!(
        decision(gateway, Some(trusting), "9.9.9.9, 1.2.3.4"),
        "DENY"
    );
    // a sidecar workload with the same labels but no gateway's: the rightmost address
    assert_eq!(
        decision("app=istio-ingressgateway", None, "1.2.3.4"),
        "ALLOW"
    );
}

#[test]
fn a_dry_run_policy_that_would_decide_otherwise_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let f = httpbin_policy(
        &dir,
        "allow-dry",
        "annotations: {istio.io/dry-run: \"true\"}",
        "[{to: [{operation: {paths: [/only]}}]}]",
    );
    let f = f.as_str();
    let base = [
        "--config",
        f,
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
    ];
    let mut a = base.to_vec();
    a.extend_from_slice(&["--path", "/x"]);
    let v = decide(&a);
    // enforced: nothing applies, allowed; the ALLOW filter's shadow engine (the dry-run
    // ALLOW policy alone) matches nothing: "denied", with no effective policy
    assert_eq!(v["decision"], "ALLOW");
    assert_eq!(v["dry_run"], Value::Null);
    assert_eq!(
        v["dry_run_results"],
        serde_json::json!([{"engine": "allow", "result": "denied", "policy": null, "rule": null}])
    );
    let mut a = base.to_vec();
    a.extend_from_slice(&["--path", "/only"]);
    let v = decide(&a);
    assert_eq!(v["dry_run"], Value::Null);
    assert_eq!(v["dry_run_results"][0]["result"], "allowed");
    assert_eq!(v["dry_run_results"][0]["policy"], "foo/allow-dry");
    let mut a = vec!["authz"];
    a.extend_from_slice(&base);
    a.extend_from_slice(&["--path", "/x"]);
    let text = String::from_utf8(meshctl(&a).stdout).unwrap();
    assert!(
        text.contains("dry run (ALLOW policies with istio.io/dry-run): denied (no dry-run policy matched), unlike the decision"),
        "{text}"
    );
}

/// istiod's `dry-run-mix` golden (pilot/pkg/security/authz/builder/testdata/http): the
/// enforced and the dry-run policies are separate engines (`rules`, `shadow_rules`), so a
/// request the enforced ALLOW policy takes is "denied" by the shadow engine when no dry-run
/// ALLOW policy matches it, and a dry-run DENY is reported even when the decision agrees.
#[test]
fn dry_run_policies_are_a_shadow_engine_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mix.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-1, namespace: foo, annotations: {istio.io/dry-run: \"true\"}}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{to: [{operation: {paths: [/allow]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-2, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules: [{to: [{operation: {paths: [/another]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-headers, namespace: foo, annotations: {istio.io/dry-run: \"true\"}}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/headers]}}]}]
",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let at = |path: &str| {
        decide(&[
            "--config",
            f,
            "--namespace",
            "foo",
            "--labels",
            "app=httpbin",
            "--path",
            path,
        ])
    };
    let v = at("/another");
    assert_eq!(v["decision"], "ALLOW");
    assert_eq!(
        v["dry_run_results"],
        serde_json::json!([
            {"engine": "deny", "result": "allowed", "policy": null, "rule": null},
            {"engine": "allow", "result": "denied", "policy": null, "rule": null},
        ])
    );
    // enforced: no ALLOW matches /headers (DENY); the shadow DENY engine denies it too,
    // by deny-headers; the ALLOW filter is reached (the enforced DENY filter let it on)
    let v = at("/headers");
    assert_eq!(v["decision"], "DENY");
    assert_eq!(v["dry_run_results"][0]["result"], "denied");
    assert_eq!(v["dry_run_results"][0]["policy"], "foo/deny-headers");
    assert_eq!(v["dry_run_results"][1]["engine"], "allow");
}

#[test]
fn service_accounts_match_as_istiod_s_regex() {
    let dir = tempfile::tempdir().unwrap();
    let f = httpbin_policy(
        &dir,
        "sa",
        "",
        "[{from: [{source: {serviceAccounts: [bar/sleep]}}]}]",
    );
    let f = f.as_str();
    let as_peer = |p: &str| {
        decide(&[
            "--config",
            f,
            "--namespace",
            "foo",
            "--labels",
            "app=httpbin",
            "--principal",
            p,
        ])["decision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // `spiffe://.+/ns/bar/(.+/|)sa/sleep(/.+)?`
    assert_eq!(as_peer("cluster.local/ns/bar/sa/sleep"), "ALLOW");
    assert_eq!(as_peer("other.td/ns/bar/x/sa/sleep"), "ALLOW");
    assert_eq!(as_peer("cluster.local/ns/bar/sa/sleep/extra"), "ALLOW");
    assert_eq!(as_peer("cluster.local/ns/bar/sa/sleepy"), "DENY");
    assert_eq!(as_peer("cluster.local/ns/baz/sa/sleep"), "DENY");
}

/// `request.headers[:path]` is Envoy's `:path`, query included (`paths` ignore the query);
/// `request.headers[:scheme]` compiles and reads the request's scheme.
#[test]
fn path_and_scheme_pseudo_headers() {
    let dir = tempfile::tempdir().unwrap();
    let deny = |name: &str, when: &str| {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &f,
            format!(
                "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: foo}}
spec:
  action: DENY
  rules: [{{when: [{when}]}}]
"
            ),
        )
        .unwrap();
        f.to_str().unwrap().to_owned()
    };
    let debug = deny(
        "deny-debug",
        "{key: 'request.headers[:path]', values: ['*debug=1']}",
    );
    let run = |f: &str, extra: &[&str]| {
        let mut a = vec!["--config", f, "--namespace", "foo"];
        a.extend_from_slice(extra);
        decide(&a)
    };
    let d = run(&debug, &["--path", "/x?debug=1"]);
    assert_eq!(d["decision"], "DENY", "{d}");
    assert_eq!(d["path"], "/x?debug=1");
    assert_eq!(
        run(&debug, &["--path", "/x/../y?debug=1"])["path"],
        "/y?debug=1"
    );
    assert_eq!(run(&debug, &["--path", "/x?debug=0"])["decision"], "ALLOW");

    let ftp = deny(
        "deny-ftp",
        "{key: 'request.headers[:scheme]', values: [ftp]}",
    );
    let d = run(&ftp, &["--path", "/x"]);
    assert_eq!(d["decision"], "ALLOW", "{d}");
    let http = deny(
        "deny-http",
        "{key: 'request.headers[:scheme]', values: [http]}",
    );
    assert_eq!(run(&http, &["--path", "/x"])["decision"], "DENY");
    // over mTLS (a principal) an HTTP/1.1 request is `https`, unless x-forwarded-proto says
    let mtls = ["--principal", "cluster.local/ns/foo/sa/sleep"];
    assert_eq!(run(&http, &mtls)["decision"], "ALLOW");
    let mut a = mtls.to_vec();
    a.extend_from_slice(&["--header", "X-Forwarded-Proto: http"]);
    assert_eq!(run(&http, &a)["decision"], "DENY");
}

/// Envoy's jwt_authn runs before RBAC: the headers its rules write are first removed from
/// the request (a caller cannot forge them), a verified token's claim and payload headers
/// are added, and its header is removed unless `forwardOriginalToken`.
#[test]
fn jwt_output_headers_are_what_policies_see() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = JWKS.replace('\n', "");
    let config = |forward: bool| {
        let f = dir.path().join(format!("fwd-{forward}.yaml"));
        std::fs::write(
            &f,
            format!(
                r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ra, namespace: foo}}
spec:
  jwtRules:
  - issuer: issuer.example.com
    jwks: '{jwks}'
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
    outputPayloadToHeader: x-payload
    forwardOriginalToken: {forward}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: hdr, namespace: foo}}
spec:
  rules:
  - when: [{{key: "request.headers[authorization]", values: ["Bearer *"]}}]
    to: [{{operation: {{paths: ["/a"]}}}}]
  - when: [{{key: "request.headers[x-sub]", values: ["alice"]}}]
    to: [{{operation: {{paths: ["/b"]}}}}]
  - when: [{{key: "request.headers[x-payload]", values: ["*"]}}]
    to: [{{operation: {{paths: ["/c"]}}}}]
"#
            ),
        )
        .unwrap();
        f.display().to_string()
    };
    let (dropped, forwarded) = (config(false), config(true));
    let tok = token(serde_json::json!({
        "iss": "issuer.example.com", "sub": "alice", "exp": now() + 600,
    }));
    let bearer = format!("authorization: Bearer {tok}");
    let run = |config: &str, path: &str, headers: &[&str]| {
        let mut a = vec!["--config", config, "-n", "foo", "--path", path];
        for h in headers {
            a.extend_from_slice(&["-H", h]);
        }
        decide(&a)["decision"].as_str().unwrap().to_owned()
    };
    // the token's header is gone by the time RBAC looks
    assert_eq!(run(&dropped, "/a", &[&bearer]), "DENY");
    assert_eq!(run(&forwarded, "/a", &[&bearer]), "ALLOW");
    // the claim and payload headers are written
    assert_eq!(run(&dropped, "/b", &[&bearer]), "ALLOW");
    assert_eq!(run(&dropped, "/c", &[&bearer]), "ALLOW");
    // ... and a caller's own are removed, token or not
    assert_eq!(run(&dropped, "/b", &["x-sub: alice"]), "DENY");
    assert_eq!(run(&dropped, "/c", &["x-payload: e30"]), "DENY");
    let other = token(serde_json::json!({
        "iss": "issuer.example.com", "sub": "bob", "exp": now() + 600,
    }));
    let other = format!("authorization: Bearer {other}");
    assert_eq!(run(&dropped, "/b", &[&other, "x-sub: alice"]), "DENY");

    // an identity given instead of a token: its issuer's rule writes the claim headers
    let given = |path: &str, claims: &str| {
        decide(&[
            "--config",
            &dropped,
            "-n",
            "foo",
            "--path",
            path,
            "-H",
            "x-sub: alice",
            "--request-principal",
            "issuer.example.com/bob",
            "--claims",
            claims,
        ])["decision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        given("/b", r#"{"iss": "issuer.example.com", "sub": "bob"}"#),
        "DENY"
    );
    assert_eq!(
        given("/b", r#"{"iss": "issuer.example.com", "sub": "alice"}"#),
        "ALLOW"
    );
    assert_eq!(
        given("/c", r#"{"iss": "issuer.example.com", "sub": "bob"}"#),
        "ALLOW"
    );
}

/// An identity given with `--request-principal` and `--claims` is read as the jwtRule of its
/// issuer would have verified it: that rule's `spaceDelimitedClaims` split the claims.
#[test]
fn given_claims_are_split_by_their_issuer_s_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jwt.yaml");
    std::fs::write(
        &config,
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: foo}
spec:
  jwtRules:
  - issuer: issuer.example.com
    jwks: '{"keys": []}'
    spaceDelimitedClaims: [roles]
  - issuer: other.example.com
    jwks: '{"keys": []}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-guest, namespace: foo}
spec:
  action: DENY
  rules: [{when: [{key: "request.auth.claims[roles]", values: [guest]}]}]
"#,
    )
    .unwrap();
    let config = config.display().to_string();
    let run = |principal: &str, claims: &str| {
        decide(&[
            "--config",
            &config,
            "-n",
            "foo",
            "--request-principal",
            principal,
            "--claims",
            claims,
        ])["decision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let roles = r#"{"iss": "issuer.example.com", "sub": "alice", "roles": "admin guest"}"#;
    assert_eq!(run("issuer.example.com/alice", roles), "DENY");
    // without `iss` in the claims: the principal's issuer
    assert_eq!(
        run("issuer.example.com/alice", r#"{"roles": "admin guest"}"#),
        "DENY"
    );
    // another issuer's rule does not split `roles`
    let other = r#"{"iss": "other.example.com", "sub": "alice", "roles": "admin guest"}"#;
    assert_eq!(run("other.example.com/alice", other), "ALLOW");
}

/// The token's header is gone by the time authorization reads the request, as the runtime
/// removes it (`forwardOriginalToken` unset), for a given identity too: a rule on
/// `request.headers[authorization]` does not see it.
#[test]
fn a_given_identity_s_token_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("jwt.yaml");
    std::fs::write(
        &config,
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: foo}
spec:
  jwtRules:
  - issuer: issuer.example.com
    jwks: '{"keys": []}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-raw-tokens, namespace: foo}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[authorization]", values: ["*"]}]}]
"#,
    )
    .unwrap();
    let config = config.display().to_string();
    let v = decide(&[
        "--config",
        &config,
        "-n",
        "foo",
        "--request-principal",
        "issuer.example.com/alice",
        "--claims",
        r#"{"iss": "issuer.example.com", "sub": "alice"}"#,
        "-H",
        "Authorization: Bearer x.y.z",
    ]);
    assert_eq!(v["decision"], "ALLOW", "{v}");
}

/// An HTTP/1.1 request's Host header is its `:authority`: `-H 'Host: x'` is read by `hosts`
/// and `request.headers[host]` as `--host x` is; the two saying different things is an
/// error.
#[test]
fn the_host_header_is_the_authority() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("host.yaml");
    std::fs::write(
        &config,
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin-host, namespace: foo}
spec:
  action: DENY
  rules: [{to: [{operation: {hosts: ["admin.example.com", "admin.example.com:*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-evil, namespace: foo}
spec:
  action: DENY
  rules: [{when: [{key: "request.headers[Host]", values: ["evil*"]}]}]
"#,
    )
    .unwrap();
    let config = config.display().to_string();
    let run = |extra: &[&str]| {
        let mut a = vec!["--config", &config, "-n", "foo"];
        a.extend_from_slice(extra);
        decide(&a)
    };
    let v = run(&["-H", "Host: admin.example.com"]);
    assert_eq!(
        (v["decision"].as_str(), v["policy"].as_str()),
        (Some("DENY"), Some("foo/deny-admin-host")),
        "{v}"
    );
    let v = run(&["-H", "host: evil.example.com:8080"]);
    assert_eq!(v["policy"], "foo/deny-evil", "{v}");
    assert_eq!(run(&["-H", "Host: ok.example.com"])["decision"], "ALLOW");
    // the same authority both ways (names are case-insensitive): fine
    let v = run(&[
        "--host",
        "Admin.example.com",
        "-H",
        "Host: admin.example.com",
    ]);
    assert_eq!(v["decision"], "DENY", "{v}");
    // different ones: which would the request carry?
    let out = meshctl(&[
        "authz",
        "--config",
        &config,
        "-n",
        "foo",
        "--host",
        "ok.example.com",
        "-H",
        "Host: admin.example.com",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differ"), "{err}");
}

/// A TCP connection has no HTTP headers: no `X-Forwarded-For` to take `remote.ip` from, so
/// `--header` with `--tcp` is refused; `remoteIpBlocks` see the peer (or `--remote-ip`).
#[test]
fn a_tcp_connection_has_no_headers() {
    let dir = tempfile::tempdir().unwrap();
    let f = httpbin_policy(
        &dir,
        "rip",
        "",
        "[{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}]",
    );
    let base = [
        "authz",
        "--config",
        f.as_str(),
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--tcp",
        "--source-ip",
        "10.0.0.1",
    ];
    let mut a = base.to_vec();
    a.extend_from_slice(&["-H", "X-Forwarded-For: 203.0.113.5"]);
    let out = meshctl(&a);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tcp") && err.contains("--header"), "{err}");
    assert_eq!(decide(&base[1..])["decision"], "DENY");
    let mut a = base[1..].to_vec();
    a.extend_from_slice(&["--remote-ip", "203.0.113.5"]);
    assert_eq!(decide(&a)["decision"], "ALLOW");
}

/// A rejected token's 401 names each RequestAuthentication once, however many of its
/// jwtRules apply, in their order.
#[test]
fn the_401_names_each_request_authentication_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ra.yaml");
    let rules = |name: &str, a: &str, b: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: foo}}
spec:
  jwtRules:
  - {{issuer: {a}, jwks: '{{\"keys\": []}}'}}
  - {{issuer: {b}, jwks: '{{\"keys\": []}}', fromHeaders: [{{name: x-jwt}}]}}
"
        )
    };
    std::fs::write(
        &config,
        format!(
            "{}---\n{}",
            rules("ra", "a.example.com", "b.example.com"),
            rules("rb", "c.example.com", "d.example.com")
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let v = decide(&[
        "--config",
        &config,
        "-n",
        "foo",
        "-H",
        "authorization: Bearer not-a-jwt",
    ]);
    assert_eq!(v["status"], 401, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.contains("(jwtRules of foo/ra, foo/rb)"), "{reason}");
}

/// istio.io security issues, "HTTP-only fields on TCP ports": the workload's Service
/// declares 3306 `tcp-mysql`, so a sidecar proxies a connection there and an ALLOW rule
/// with `paths` is dropped, whatever request `meshctl authz` is asked about.
#[test]
fn a_port_the_service_declares_tcp_is_authorized_as_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("db.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1
kind: Service
metadata: {name: db, namespace: foo}
spec:
  selector: {app: db}
  ports: [{name: tcp-mysql, port: 3306}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-path, namespace: foo}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - to: [{operation: {paths: [/public], ports: ['3306']}}]
  - from: [{source: {principals: [cluster.local/ns/foo/sa/app]}}]
    to: [{operation: {ports: ['3306']}}]
",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let ask = |principal: &str, port: &str| {
        decide(&[
            "--config",
            f,
            "--namespace",
            "foo",
            "--labels",
            "app=db",
            "--port",
            port,
            "--path",
            "/public",
            "--principal",
            principal,
        ])
    };
    let v = ask("cluster.local/ns/foo/sa/other", "3306");
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["declared_tcp"], "foo/db");
    assert_eq!(
        ask("cluster.local/ns/foo/sa/app", "3306")["decision"],
        "ALLOW"
    );
    // a named targetPort, resolved through the workload's loaded pod
    let named = dir.path().join("named.yaml");
    let text = std::fs::read_to_string(f).unwrap().replace(
        "ports: [{name: tcp-mysql, port: 3306}]",
        "ports: [{name: tcp-mysql, port: 3306, targetPort: mysql}]",
    ) + "---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: foo, labels: {app: db}}
spec: {containers: [{name: db, image: mysql, ports: [{name: mysql, containerPort: 3306}]}]}
";
    std::fs::write(&named, text).unwrap();
    let v = decide(&[
        "--config",
        named.to_str().unwrap(),
        "--namespace",
        "foo",
        "--labels",
        "app=db",
        "--port",
        "3306",
        "--path",
        "/public",
        "--principal",
        "cluster.local/ns/foo/sa/other",
    ]);
    assert_eq!(
        (v["decision"].as_str(), v["declared_tcp"].as_str()),
        (Some("DENY"), Some("foo/db"))
    );
    // a port the Service does not declare is not taken as a connection
    let v = ask("cluster.local/ns/foo/sa/other", "8080");
    assert_eq!(
        (v["decision"].as_str(), &v["declared_tcp"]),
        (Some("DENY"), &Value::Null)
    );
}

/// `jwtRules[].presence: REQUIRED`: a request without the token is refused by the
/// RequestAuthentication itself, 401 `Jwt is missing`, before any policy.
#[test]
fn a_required_token_that_is_missing_is_a_401() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("ra.yaml");
    std::fs::write(
        &f,
        r#"apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{"keys": []}'
    presence: REQUIRED
"#,
    )
    .unwrap();
    let out = meshctl(&[
        "authz",
        "-f",
        f.to_str().unwrap(),
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--path",
        "/",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["decision"].as_str(), v["status"].as_u64()),
        (Some("DENY"), Some(401)),
        "{v}"
    );
    assert_eq!(v["request_authentication"]["error"], "Jwt is missing");
    assert!(
        v["reason"].as_str().unwrap().contains("presence: REQUIRED"),
        "{v}"
    );
}

/// PeerAuthentication applies to sidecars' inbound listeners only: a gateway workload's
/// listeners come from its Gateway servers, so a mesh-wide STRICT does not reset a
/// plaintext client of a plain HTTP server.
#[test]
fn peer_authentication_does_not_apply_to_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gw.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]
",
    )
    .unwrap();
    let run = |labels: &str| -> Value {
        let out = meshctl(&[
            "authz",
            "-f",
            f.to_str().unwrap(),
            "-n",
            "istio-system",
            "--labels",
            labels,
            "--port",
            "8080",
            "--host",
            "foo.example.com",
            "-o",
            "json",
        ]);
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let v = run("istio=ingressgateway");
    assert_eq!(v["decision"], "ALLOW", "{v}");
    assert_eq!(v["mtls_mode"], "NOT_APPLIED", "{v}");
    // a sidecar workload of the same namespace is held to it
    let v = run("app=other");
    assert_eq!(v["decision"], "DENY", "{v}");
    assert_eq!(v["mtls_mode"], "STRICT", "{v}");
}

// A port whose PeerAuthentication is DISABLE takes plaintext: the text output says the
// principal given is not seen, rather than naming the caller by it.
#[test]
fn a_disable_port_says_the_principal_is_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pa.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sleep-only, namespace: foo}
spec:
  rules: [{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}]
",
    )
    .unwrap();
    let out = meshctl(&[
        "authz",
        "--config",
        f.to_str().unwrap(),
        "--namespace",
        "foo",
        "--labels",
        "app=httpbin",
        "--principal",
        "cluster.local/ns/foo/sa/sleep",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DENY"), "{text}");
    assert!(
        text.contains(
            "a plaintext caller (port 80 is DISABLE: cluster.local/ns/foo/sa/sleep is not seen)"
        ),
        "{text}"
    );
}

/// A path's `#fragment` does not get a request past a DENY on its path: Envoy drops the
/// fragment before any filter (Istio turns `http_reject_path_with_fragment` off).
#[test]
fn a_fragment_does_not_get_past_a_deny_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("deny.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: d, namespace: foo}
spec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}
",
    )
    .unwrap();
    for path in ["/admin", "/admin#top", "/admin#"] {
        let v = decide(&["--config", f.to_str().unwrap(), "-n", "foo", "--path", path]);
        assert_eq!(v["decision"], "DENY", "{path}: {v}");
        assert_eq!(v["policy"], "foo/d", "{path}");
    }
    let v = decide(&[
        "--config",
        f.to_str().unwrap(),
        "-n",
        "foo",
        "--path",
        "/a#/admin",
    ]);
    assert_eq!(v["decision"], "ALLOW", "{v}");
}
