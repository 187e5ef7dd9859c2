//! `meshctl route` end to end: the real binary on the Istio samples and our own files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

fn sample(f: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/istio-samples")
        .join(f)
        .display()
        .to_string()
}

fn json(args: &[&str]) -> Value {
    let mut a = vec!["route"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output", "json"]);
    let out = meshctl(&a);
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn request_routing_for_jason() {
    let vs = sample("bookinfo/networking/virtual-service-reviews-test-v2.yaml");
    let dr = sample("bookinfo/networking/destination-rule-all.yaml");
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let base = [
        "http://reviews:9080/reviews/0",
        "--config",
        &vs,
        "--config",
        &dr,
        "--config",
        &kube,
    ];
    let mut a = base.to_vec();
    a.extend_from_slice(&["--header", "end-user: jason"]);
    let v = json(&a);
    assert_eq!(v["host"], "reviews.default.svc.cluster.local");
    assert_eq!(v["virtual_service"], "default/reviews");
    assert_eq!(v["route"], 0);
    assert_eq!(v["status"], Value::Null);
    let d = &v["destinations"][0];
    assert_eq!(d["host"], "reviews.default.svc.cluster.local");
    assert_eq!(d["subset"], "v2");
    assert_eq!(d["weight"], 100);
    assert_eq!(v["retries"]["attempts"], 2);
    assert_eq!(v["timeout"], Value::Null);

    let v = json(&base);
    assert_eq!(v["route"], 1);
    assert_eq!(v["destinations"][0]["subset"], "v1");

    // text: a short explanation
    let mut a = vec!["route"];
    a.extend_from_slice(&base);
    let out = meshctl(&a);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("VirtualService default/reviews, http route 1 matched"),
        "{text}"
    );
    assert!(text.contains("subset v1 100.0%"), "{text}");
}

#[test]
fn traffic_shifting_and_faults() {
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let v = json(&[
        "http://reviews:9080/",
        "--config",
        &sample("bookinfo/networking/virtual-service-reviews-80-20.yaml"),
        "-f",
        &kube,
    ]);
    let d = v["destinations"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0]["subset"].as_str(), d[0]["weight"].as_u64()),
        (Some("v1"), Some(80))
    );
    assert_eq!(
        (d[1]["subset"].as_str(), d[1]["weight"].as_u64()),
        (Some("v2"), Some(20))
    );

    let abort = sample("bookinfo/networking/virtual-service-ratings-test-abort.yaml");
    let v = json(&[
        "http://ratings:9080/ratings/0",
        "--config",
        &abort,
        "-f",
        &kube,
        "-H",
        "end-user: jason",
    ]);
    assert_eq!(v["status"], 500);
    assert_eq!(v["fault"]["abort"]["http_status"], 500);
    assert_eq!(v["fault"]["abort"]["percentage"], 100.0);
    let v = json(&[
        "http://ratings:9080/ratings/0",
        "--config",
        &abort,
        "-f",
        &kube,
    ]);
    assert_eq!(v["status"], Value::Null);
    assert_eq!(v["route"], 1);

    let delay = sample("bookinfo/networking/virtual-service-ratings-test-delay.yaml");
    let v = json(&[
        "http://ratings:9080/",
        "--config",
        &delay,
        "-f",
        &kube,
        "-H",
        "end-user: jason",
    ]);
    assert_eq!(v["fault"]["delay"]["fixed_delay"], "7s");
    assert_eq!(v["status"], Value::Null);
}

#[test]
fn no_virtual_service_gateway_and_404() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = sample("bookinfo/networking/bookinfo-gateway.yaml");
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    // no VirtualService: the host itself
    let v = json(&["http://details:9080/details/0", "--config", &kube]);
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["route"], Value::Null);
    assert_eq!(v["status"], Value::Null);
    assert_eq!(
        v["destinations"][0]["host"],
        "details.default.svc.cluster.local"
    );
    assert_eq!(v["destinations"][0]["subset"], Value::Null);
    assert_eq!(v["destinations"][0]["weight"], 100);
    // at the gateway
    let g = ["--gateway", "default/bookinfo-gateway", "--config", &cfg];
    let mut a = vec!["http://bookinfo.example.com:8080/productpage"];
    a.extend_from_slice(&g);
    let v = json(&a);
    assert_eq!(v["virtual_service"], "default/bookinfo");
    assert_eq!(
        v["destinations"][0]["host"],
        "productpage.default.svc.cluster.local"
    );
    assert_eq!(v["destinations"][0]["port"], 9080);
    let mut a = vec!["http://bookinfo.example.com:8080/nothing"];
    a.extend_from_slice(&g);
    let v = json(&a);
    assert_eq!(v["status"], 404);
    assert_eq!(v["route"], Value::Null);
    assert_eq!(v["destinations"], serde_json::json!([]));

    // our own: redirect, direct response, rewrite, mirror, sourceLabels, namespaces
    let own = write(
        dir.path(),
        "own.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: [api]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, redirectCode: 308}
  - match: [{uri: {exact: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - match: [{uri: {prefix: /v1}, sourceLabels: {app: web}}]
    rewrite: {uri: /v2}
    timeout: 1500ms
    retries: {attempts: 5, retryOn: "gateway-error,503"}
    mirror: {host: api-shadow}
    route: [{destination: {host: api, port: {number: 8080}}}]
"#,
    );
    let own = own.to_str().unwrap();
    let v = json(&["http://api.prod/old/x?q=1", "--config", own]);
    assert_eq!(v["status"], 308);
    assert_eq!(v["redirect"]["location"], "http://api.prod/new?q=1");
    let v = json(&["http://api.prod/health", "--config", own, "-n", "prod"]);
    assert_eq!(v["status"], 200);
    assert_eq!(v["direct_response"]["body"], "ok");
    let v = json(&[
        "http://api/v1/x",
        "--config",
        own,
        "-n",
        "prod",
        "--source-labels",
        "app=web,version=1",
    ]);
    assert_eq!(v["route"], 2);
    assert_eq!(v["rewrite"]["uri"], "/v2/x");
    assert_eq!(v["timeout"], "1.5s");
    assert_eq!(v["retries"]["attempts"], 5);
    assert_eq!(
        v["retries"]["retriable_status_codes"],
        serde_json::json!([503])
    );
    assert_eq!(v["mirrors"][0]["host"], "api-shadow.prod.svc.cluster.local");
    assert_eq!(v["destinations"][0]["port"], 8080);
    assert_eq!(v["route_timeout"], "1.5s");
    // a gRPC caller's shorter deadline is the request's timeout, as Envoy's
    // `max_grpc_timeout` (the route's timeout) caps `grpc-timeout`
    let grpc = |deadline: &str| {
        let h = format!("grpc-timeout: {deadline}");
        let out = meshctl(&[
            "route",
            "http://api/v1/x",
            "--config",
            own,
            "-n",
            "prod",
            "--source-labels",
            "app=web",
            "-H",
            "content-type: application/grpc",
            "-H",
            &h,
        ]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = grpc("500m");
    assert!(
        text.contains("timeout: 0.5s (this request's; the route's: 1.5s)"),
        "{text}"
    );
    assert!(grpc("10S").contains("timeout: 1.5s; retries"));
    // without the source labels the last route does not match: 404
    let v = json(&["http://api/v1/x", "--config", own, "-n", "prod"]);
    assert_eq!(v["status"], 404);
    // from another namespace `api` is another service
    let v = json(&["http://api/v1/x", "--config", own, "-n", "default"]);
    assert_eq!(v["host"], "api.default.svc.cluster.local");
    assert_eq!(v["virtual_service"], Value::Null);
}

#[test]
fn errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [a], htp: []}\n",
    );
    let out = meshctl(&[
        "route",
        "http://a/",
        "--config",
        bad.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("htp"));
    let out = meshctl(&["route", "http://a/", "--config", "/no/such/path"]);
    assert_eq!(out.status.code(), Some(2));
    let out = meshctl(&[
        "route",
        "http://a/",
        "--config",
        bad.to_str().unwrap(),
        "-H",
        "nocolon",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_whole_directory_last_definition_wins() {
    // every bookinfo networking file: `reviews` is defined by several files, the last one
    // loaded (virtual-service-reviews-v3.yaml, by file name) wins as with `kubectl apply`
    let dir = sample("bookinfo/networking");
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let v = json(&["http://reviews:9080/", "--config", &dir, "-f", &kube]);
    assert_eq!(v["virtual_service"], "default/reviews");
    assert_eq!(v["destinations"][0]["subset"], "v3");
    assert_eq!(v["destinations"][0]["subset_defined"], true);
    let v = json(&["http://details:9080/", "--config", &dir, "-f", &kube]);
    assert_eq!(v["virtual_service"], "default/details");
}

#[test]
fn sidecar_scopes_virtual_services_and_services() {
    let dir = tempfile::tempdir().unwrap();
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let dr = sample("bookinfo/networking/destination-rule-all.yaml");
    let vs = sample("bookinfo/networking/virtual-service-reviews-v3.yaml");
    let sc = write(
        dir.path(),
        "sidecars.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: checkout, namespace: shop}
spec:
  workloadSelector: {labels: {app: checkout}}
  egress:
  - hosts: ["./*", "default/*"]
"#,
    );
    let sc = sc.to_str().unwrap();
    let base = [
        "http://reviews.default:9080/reviews/0",
        "--config",
        &kube,
        "--config",
        &dr,
        "--config",
        &vs,
        "--config",
        sc,
        "-n",
        "shop",
    ];
    // shop's default Sidecar imports neither default's VirtualService nor its services
    let v = json(&base);
    assert_eq!(v["sidecar"], "shop/default");
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["not_imported"], "default/reviews");
    assert_eq!(v["destinations"][0]["subset"], Value::Null);
    assert_eq!(v["destinations"][0]["imported"], false);
    assert_eq!(v["destinations"][0]["cluster"], "PassthroughCluster");
    // the checkout workload's Sidecar imports both
    let mut a = base.to_vec();
    a.extend_from_slice(&["--source-labels", "app=checkout"]);
    let v = json(&a);
    assert_eq!(v["sidecar"], "shop/checkout");
    assert_eq!(v["virtual_service"], "default/reviews");
    assert_eq!(v["not_imported"], Value::Null);
    assert_eq!(v["destinations"][0]["subset"], "v3");
    assert_eq!(v["destinations"][0]["imported"], true);
    // no Sidecar in default: no sidecar fields
    let mut a = base.to_vec();
    let last = a.len() - 1;
    a[last] = "default";
    let v = json(&a);
    assert_eq!(v["sidecar"], Value::Null);
    assert_eq!(v["virtual_service"], "default/reviews");
    assert!(v["destinations"][0].get("imported").is_none());
    // the text says why
    let mut a = vec!["route"];
    a.extend_from_slice(&base);
    let out = meshctl(&a);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Sidecar shop/default applies to the client: it does not import VirtualService default/reviews"),
        "{text}"
    );
    // (under ALLOW_ANY, the mesh default, what is not imported passes through)
    assert!(
        text.contains(
            "(no cluster: ALLOW_ANY passes it through to reviews.default:9080, as the application sent it)"
        ),
        "{text}"
    );
    assert!(text.contains("retries: none"), "{text}");
}

/// What Envoy has no cluster for: passed through to the original destination (the
/// scheme's port when the request writes none), or black-holed, with the reason.
#[test]
fn no_cluster_names_the_original_destination_or_why_it_is_black_holed() {
    let dir = tempfile::tempdir().unwrap();
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let sidecar = |extra: &str| {
        let p = write(
            dir.path(),
            "sidecar.yaml",
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec: {{egress: [{{hosts: ['./*']}}]{extra}}}\n"
            ),
        );
        p.to_str().unwrap().to_owned()
    };
    // the first destination of `url` from namespace shop under that Sidecar
    let first = |url: &str, sc: &str| {
        json(&[url, "--config", &kube, "--config", sc, "-n", "shop"])["destinations"][0].clone()
    };
    let d = first("http://reviews.default/", &sidecar(""));
    assert_eq!(d["cluster"], "PassthroughCluster");
    assert_eq!(d["original_destination"], "reviews.default:80");

    let registry_only = sidecar(", outboundTrafficPolicy: {mode: REGISTRY_ONLY}");
    let d = first("http://reviews.default:9080/", &registry_only);
    assert_eq!(d["cluster"], "BlackHoleCluster");
    assert_eq!(d["black_hole_reason"], "registry_only");

    let sc = sidecar(", outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.example, port: {number: 80}}}");
    let d = first("http://reviews.default:9080/", &sc);
    // the Sidecar's egress proxy takes it: its cluster (not in this registry: 503 NC)
    assert_eq!(d["cluster"], "outbound|80||egress.example");
    assert_eq!(d["egress_proxy"], true);
    assert_eq!(d["cluster_found"], false);
    let out = meshctl(&[
        "route",
        "http://reviews.default:9080/",
        "--config",
        &kube,
        "--config",
        &sc,
        "-n",
        "shop",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("egressProxy outbound|80||egress.example is no cluster either: 503 NC"),
        "{text}"
    );

    // an egress proxy that is a cluster: its port, DestinationRule and subset shown
    let proxy = write(
        dir.path(),
        "proxy.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: egress, namespace: shop}\nspec: {ports: [{name: http, port: 8080}]}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: egress, namespace: shop}\nspec: {host: egress, subsets: [{name: v1, labels: {version: v1}}]}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.shop.svc.cluster.local, subset: v1, port: {number: 8080}}}}\n",
    );
    let v = json(&[
        "http://api.example.com/",
        "--config",
        proxy.to_str().unwrap(),
        "-n",
        "shop",
    ]);
    let d = &v["destinations"][0];
    assert_eq!(
        d["cluster"],
        "outbound|8080|v1|egress.shop.svc.cluster.local"
    );
    assert_eq!(d["cluster_found"], true);
    assert_eq!(d["target_port"], 8080);
    assert_eq!(d["destination_rule"], "shop/egress");
    assert_eq!(d["subset_defined"], true);

    // a service's VIP as the host routes to the service (istiod's virtual host domains)
    let svc = write(
        dir.path(),
        "vip.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: default}\nspec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 9080}]}\n",
    );
    let svc = svc.to_str().unwrap();
    let v = json(&["http://10.96.0.20:9080/", "--config", svc]);
    assert_eq!(v["host"], "ratings.default.svc.cluster.local");
    assert!(v["destinations"][0].get("cluster").is_none(), "{v}");
    // another port of the VIP is no virtual host: passed through as written
    let v = json(&["http://10.96.0.20:8080/", "--config", svc]);
    assert_eq!(v["destinations"][0]["cluster"], "PassthroughCluster");
    assert_eq!(
        v["destinations"][0]["original_destination"],
        "10.96.0.20:8080"
    );
}

#[test]
fn a_sidecar_imports_the_services_its_virtual_services_route_to() {
    let dir = tempfile::tempdir().unwrap();
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let cfg = write(
        dir.path(),
        "mesh.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: istio-system}
spec:
  hosts: [ratings.default.svc.cluster.local]
  http: [{route: [{destination: {host: ratings.default.svc.cluster.local}}]}]
"#,
    );
    let cfg = cfg.to_str().unwrap();
    let run = |url: &str| json(&[url, "--config", &kube, "--config", cfg, "-n", "shop"]);
    // istio-system's VirtualService routes shop's ratings traffic to default's ratings:
    // the service comes with it, though `default/*` is not imported
    let v = run("http://ratings.default:9080/ratings/0");
    assert_eq!(v["sidecar"], "istio-system/default");
    assert_eq!(v["virtual_service"], "istio-system/ratings");
    assert_eq!(
        v["destinations"][0]["host"],
        "ratings.default.svc.cluster.local"
    );
    assert_eq!(v["destinations"][0]["imported"], true);
    // nothing routes to reviews: outside the scope
    let v = run("http://reviews.default:9080/reviews/0");
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["destinations"][0]["imported"], false);
}

/// The route's `corsPolicy` explained for the request's `Origin`: a preflight answered
/// with its headers, an allowed origin's answer decorated, another origin untouched; `-f`
/// names config files as with kubectl.
#[test]
fn cors_policy_of_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let vs = write(
        dir.path(),
        "vs.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {ports: [{port: 9080, name: http}], selector: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - corsPolicy:
      allowOrigins: [{exact: 'https://app.example'}]
      allowMethods: [GET, POST]
      exposeHeaders: [x-quota]
      maxAge: 1m
    route: [{destination: {host: ratings}}]
",
    );
    let vs = vs.display().to_string();
    let v = json(&[
        "http://ratings:9080/",
        "-f",
        &vs,
        "-X",
        "OPTIONS",
        "-H",
        "origin: https://app.example",
        "-H",
        "access-control-request-method: POST",
    ]);
    assert_eq!(v["cors"]["forwarded"], false, "{v}");
    assert_eq!(
        v["cors"]["headers"],
        serde_json::json!({
            "access-control-allow-origin": "https://app.example",
            "access-control-allow-methods": "GET,POST",
            "access-control-max-age": "60",
            "access-control-expose-headers": "x-quota",
        })
    );
    let v = json(&[
        "http://ratings:9080/",
        "-f",
        &vs,
        "-H",
        "origin: https://app.example",
    ]);
    assert_eq!(v["cors"]["forwarded"], true);
    assert_eq!(
        v["cors"]["headers"]["access-control-expose-headers"],
        "x-quota"
    );
    let v = json(&[
        "http://ratings:9080/",
        "-f",
        &vs,
        "-H",
        "origin: https://b.example",
    ]);
    assert_eq!(v["cors"]["headers"], serde_json::json!({}));
    let v = json(&["http://ratings:9080/", "-f", &vs]);
    assert_eq!(v["cors"]["verdict"], "not a CORS request (no Origin)");
    // no corsPolicy: null
    let plain = sample("bookinfo/networking/virtual-service-reviews-test-v2.yaml");
    assert!(json(&["http://reviews:9080/", "-f", &plain])["cors"].is_null());

    let out = meshctl(&[
        "route",
        "http://ratings:9080/",
        "-f",
        &vs,
        "-H",
        "origin: https://app.example",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cors: origin allowed: forwarded, the answer gets these headers\n  access-control-allow-origin: https://app.example\n"),
        "{text}"
    );
}

#[test]
fn a_url_without_port_takes_the_only_port_of_the_service_as_the_mesh_client() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "port.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{port: 9080}]
    route: [{destination: {host: reviews}}]
"#,
    );
    let f = f.display().to_string();
    for url in [
        "http://reviews/",
        "http://reviews.default/",
        "http://reviews.default.svc/",
    ] {
        let v = json(&[url, "-f", &f]);
        assert_eq!(v["port"], 9080, "{url}");
        assert_eq!(v["virtual_service"], "default/reviews", "{url}");
        assert_eq!(v["route"], 0, "{url}");
    }
    // an explicit port, and a host that is no service: the scheme's port
    assert_eq!(json(&["http://reviews:80/", "-f", &f])["port"], 80);
    assert_eq!(json(&["http://example.com/", "-f", &f])["port"], 80);
    assert_eq!(json(&["https://example.com/", "-f", &f])["port"], 443);
}

/// `tcp://` and `tls://` targets: the VirtualServices' `tcp` and `tls` routes, as mesh
/// traffic and at a gateway, with Envoy's cluster names.
#[test]
fn routes_tcp_and_tls_connections() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tcp.yaml"),
        "
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: foo}
spec: {selector: {app: tcp-echo}, ports: [{name: tcp, port: 9000}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: foo}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: foo}
spec:
  hosts: [tcp-echo]
  tcp:
  - match: [{port: 9000, sourceLabels: {app: sleep}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, subset: v2}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [nginx.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx, namespace: istio-system}
spec:
  hosts: [nginx.example.com]
  gateways: [tls-gw]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: tcp-echo.foo.svc.cluster.local, port: {number: 9000}}}]
",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let v = json(&["tcp://tcp-echo:9000", "-f", d, "-n", "foo"]);
    assert_eq!(v["protocol"], "tcp");
    assert_eq!(v["host"], "tcp-echo.foo.svc.cluster.local");
    assert_eq!(v["virtual_service"], "foo/tcp-echo");
    assert_eq!(v["route"], 1);
    let dests = v["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 2);
    assert_eq!(
        dests[0]["cluster"],
        "outbound|9000|v1|tcp-echo.foo.svc.cluster.local"
    );
    assert_eq!(dests[0]["weight"], 80);
    // sourceLabels pick the first route
    let v = json(&[
        "tcp://tcp-echo:9000",
        "-f",
        d,
        "-n",
        "foo",
        "--source-labels",
        "app=sleep",
    ]);
    assert_eq!(v["route"], 0);
    assert_eq!(v["destinations"][0]["subset"], "v2");
    // the service's only port when none is given
    let v = json(&["tcp://tcp-echo", "-f", d, "-n", "foo"]);
    assert_eq!(v["port"], 9000);
    // a host nobody declared: no route; passed through under ALLOW_ANY (Istio's
    // default), black-holed under REGISTRY_ONLY, as `MeshClient::connect` does
    let v = json(&["tcp://db.example.com:5432", "-f", d]);
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["destinations"][0]["in_registry"], false);
    assert_eq!(v["destinations"][0]["cluster"], "PassthroughCluster");
    let out = meshctl(&["route", "tls://db.example.com:5432", "-f", d]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ALLOW_ANY passes it through"), "{text}");
    let mc = dir.path().join("mesh-config.yaml.conf");
    std::fs::write(&mc, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n").unwrap();
    let mc = mc.to_str().unwrap();
    let v = json(&["tcp://db.example.com:5432", "-f", d, "--mesh-config", mc]);
    assert_eq!(v["destinations"][0]["cluster"], "BlackHoleCluster");
    // a NONE ServiceEntry without addresses takes any address on its TCP port
    let mongo = dir.path().join("mongo.yaml");
    std::fs::write(
        &mongo,
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mongo}
spec:
  hosts: [mongo.ext.example]
  ports: [{number: 27017, name: mongo, protocol: MONGO}]
  resolution: NONE
",
    )
    .unwrap();
    let m = mongo.to_str().unwrap();
    // a wildcard TLS entry's cluster is named by its host as written
    let wild = dir.path().join("wild.yaml");
    std::fs::write(
        &wild,
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: googleapis}
spec:
  hosts: ['*.googleapis.com']
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
",
    )
    .unwrap();
    let v = json(&[
        "tls://storage.googleapis.com:443",
        "-f",
        wild.to_str().unwrap(),
    ]);
    assert_eq!(
        v["destinations"][0]["cluster"],
        "outbound|443||*.googleapis.com"
    );
    let v = json(&["tcp://10.1.2.3:27017", "-f", m, "--mesh-config", mc]);
    assert_eq!(v["host"], "mongo.ext.example", "{v}");
    assert_eq!(
        v["destinations"][0]["cluster"],
        "outbound|27017||mongo.ext.example"
    );
    // an https URL at the gateway whose SNI reaches its PASSTHROUGH server: the client's
    // TLS is routed by its SNI, not answered 404
    let v = json(&[
        "https://nginx.example.com/",
        "-f",
        d,
        "-n",
        "istio-system",
        "--gateway",
        "tls-gw",
    ]);
    assert_eq!(v["protocol"], "tls");
    assert_eq!(v["virtual_service"], "istio-system/nginx");
    assert_eq!(v["route"], 0);
    // TLS passthrough at the gateway, by SNI
    let v = json(&[
        "tls://nginx.example.com:443",
        "-f",
        d,
        "-n",
        "istio-system",
        "--gateway",
        "tls-gw",
    ]);
    assert_eq!(v["virtual_service"], "istio-system/nginx");
    assert_eq!(
        v["destinations"][0]["cluster"],
        "outbound|9000||tcp-echo.foo.svc.cluster.local"
    );
    // text output
    let out = meshctl(&["route", "tcp://tcp-echo:9000", "-f", d, "-n", "foo"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("VirtualService foo/tcp-echo, tcp route 1 matched"),
        "{text}"
    );
    assert!(text.contains("subset v1 port 9000 80.0%"), "{text}");
    // a bad port is a usage error
    assert_eq!(
        meshctl(&["route", "tcp://tcp-echo:x", "-f", d])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn an_https_request_follows_tls_routes_and_a_gateway_redirects_plain_http() {
    // istio.io's wildcard egress: the application's own TLS to *.wikipedia.org, routed by
    // SNI (a sidecar cannot see the request inside)
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "wiki.yaml",
        "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ['*.wikipedia.org']
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: en-wikipedia}
spec:
  hosts: [en.wikipedia.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wikipedia}
spec:
  hosts: ['*.wikipedia.org']
  tls:
  - match: [{port: 443, sniHosts: ['*.wikipedia.org']}]
    route: [{destination: {host: en.wikipedia.org}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [httpbin.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ['*']
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: istio-system}
spec:
  hosts: ['*']
  gateways: [gw]
  tcp: [{match: [{port: 31400}], route: [{destination: {host: tcp-echo.default.svc.cluster.local, port: {number: 9000}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: istio-system}
spec:
  hosts: [httpbin.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: httpbin.default.svc.cluster.local, port: {number: 8000}}}]}]
",
    );
    let f = f.to_str().unwrap();
    let v = json(&["https://de.wikipedia.org/wiki/Istio", "-f", f]);
    assert_eq!(v["virtual_service"], "default/wikipedia");
    assert_eq!(v["tls_route"], 0);
    assert_eq!(v["destinations"][0]["host"], "en.wikipedia.org");
    assert_eq!(v["retries"]["attempts"], 0);
    let out = meshctl(&["route", "https://de.wikipedia.org/", "-f", f]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tls route 0 matched"), "{text}");
    assert!(text.contains("retries: none"), "{text}");
    // plain http to the same host is not TLS: no tls route, the host itself
    let v = json(&["http://de.wikipedia.org/", "-f", f]);
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["tls_route"], Value::Null);
    // a route naming a host only the wildcard covers has no cluster (istio#49482)
    let wild = write(
        dir.path(),
        "wild-route.yaml",
        "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front}
spec:
  hosts: [front.internal]
  http: [{route: [{destination: {host: fr.wikipedia.org, port: {number: 443}}}]}]
",
    );
    let wild = wild.to_str().unwrap();
    let v = json(&["http://front.internal/", "-f", f, "-f", wild]);
    assert_eq!(v["destinations"][0]["routed_cluster_found"], false);
    assert_eq!(
        v["destinations"][0]["cluster"],
        "outbound|443||fr.wikipedia.org"
    );
    let out = meshctl(&["route", "http://front.internal/", "-f", f, "-f", wild]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Envoy answers 503 NC"), "{text}");
    let wild_en = std::fs::read_to_string(wild).unwrap().replace("fr.", "en.");
    let wild_en = write(dir.path(), "wild-route.yaml", &wild_en);
    let v = json(&[
        "http://front.internal/",
        "-f",
        f,
        "-f",
        wild_en.to_str().unwrap(),
    ]);
    assert_eq!(v["destinations"][0]["routed_cluster_found"], true);

    // the gateway's plain HTTP server with httpsRedirect: 301 before any route
    let gw = ["-f", f, "-n", "istio-system", "--gateway", "gw"];
    let mut a = vec!["http://httpbin.example.com/status/418?x=1"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["status"], 301);
    assert_eq!(
        v["redirect"]["location"],
        "https://httpbin.example.com/status/418?x=1"
    );
    // over https the VirtualService routes it
    let mut a = vec!["https://httpbin.example.com/status/418"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["status"], Value::Null);
    assert_eq!(v["virtual_service"], "istio-system/httpbin");
    let mut a = vec!["route", "http://httpbin.example.com/"];
    a.extend_from_slice(&gw);
    let text = String::from_utf8(meshctl(&a).stdout).unwrap();
    assert!(text.contains("httpsRedirect"), "{text}");
    assert!(text.contains("301"), "{text}");
    // an SNI no HTTPS server lists: closed in the handshake, no request, no 404
    let mut a = vec!["https://httpbin.example.com/", "--sni", "other.example.com"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["connection"], "closed", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("filter_chain_not_found"),
        "{v}"
    );
    // a plain URL to the TCP server's port: proxied by the tcp routes, not an HTTP 404
    let mut a = vec!["http://1.2.3.4:31400/"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["protocol"], "tcp", "{v}");
    assert_eq!(v["virtual_service"], "istio-system/echo", "{v}");
    // the scheme the port's servers do not speak: no request at all
    let mut a = vec!["http://httpbin.example.com:443/status/418"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["connection"], "closed", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("all take TLS"),
        "{v}"
    );
    let mut a = vec!["https://httpbin.example.com:80/status/418"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["connection"], "closed", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("codec_error"), "{v}");
    // a port no server listens on: refused
    let mut a = vec!["http://httpbin.example.com:8080/"];
    a.extend_from_slice(&gw);
    let v = json(&a);
    assert_eq!(v["connection"], "refused", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("its ports: 80, 443"),
        "{v}"
    );
}

#[test]
fn the_destination_rule_that_shadows_a_subset_is_named() {
    // a DestinationRule in the client's namespace wins over the service's own (§3.2): its
    // missing subset is a 503, and the text says which rule applied
    let dir = tempfile::tempdir().unwrap();
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let all = sample("bookinfo/networking/destination-rule-all.yaml");
    let vs = sample("bookinfo/networking/virtual-service-all-v1.yaml");
    let client_dr = write(
        dir.path(),
        "client-dr.yaml",
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-client, namespace: foo}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
",
    );
    let out = meshctl(&[
        "route",
        "http://reviews.default:9080/",
        "-f",
        &kube,
        "-f",
        &all,
        "-f",
        &vs,
        "-f",
        client_dr.to_str().unwrap(),
        "-n",
        "foo",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("DestinationRule foo/reviews-client, the one that applies to this client, does not define this subset"),
        "{text}"
    );
}

/// `tls://` at a gateway follows the filter chain the runtime picks: a PASSTHROUGH
/// server's chains come from the `sniHosts` of every VirtualService bound to it whose hosts
/// overlap the server's (not only those whose hosts name the SNI); a TLS-terminating `TLS`
/// server takes the `tcp` route of the first overlapping VirtualService, whatever the SNI;
/// `sniHosts: ['*']` takes a client without SNI (`--sni ""`).
#[test]
fn gateway_tls_connections_follow_the_filter_chains() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "gw.yaml",
        "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
  - port: {number: 5443, name: tls-db, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE, credentialName: db-cred}
  - port: {number: 9443, name: tls-any, protocol: TLS}
    hosts: ['*']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-a, namespace: default}
spec:
  hosts: [a.example.com]
  gateways: [istio-system/gw]
  http: [{route: [{destination: {host: web-a}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-all, namespace: default}
spec:
  hosts: ['*.example.com']
  gateways: [istio-system/gw]
  tls:
  - match: [{port: 443, sniHosts: ['*.example.com']}]
    route: [{destination: {host: tls-backend, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db.example.com]
  gateways: [istio-system/gw]
  tcp: [{route: [{destination: {host: db, port: {number: 5432}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: default}
spec:
  hosts: ['*']
  gateways: [istio-system/gw]
  tls:
  - match: [{port: 9443, sniHosts: ['*']}]
    route: [{destination: {host: backend, port: {number: 8443}}}]
",
    );
    let f = f.display().to_string();
    let at = |url: &str, extra: &[&str]| {
        let mut args = vec![url, "-f", &f, "--gateway", "istio-system/gw"];
        args.extend_from_slice(extra);
        json(&args)
    };
    for sni in ["a.example.com", "b.example.com"] {
        let v = at(&format!("tls://{sni}:443"), &[]);
        assert_eq!(v["virtual_service"], "default/tls-all", "{sni}: {v}");
        assert_eq!(
            v["destinations"][0]["host"],
            "tls-backend.default.svc.cluster.local"
        );
    }
    let v = at("tls://example.org:443", &[]);
    assert_eq!(v["virtual_service"], Value::Null, "{v}");
    assert_eq!(v["destinations"], serde_json::json!([]), "{v}");
    // the https URL reaches the same PASSTHROUGH chain
    let v = at("https://a.example.com/", &[]);
    assert_eq!(v["protocol"], "tls", "{v}");
    assert_eq!(v["virtual_service"], "default/tls-all", "{v}");
    // terminated TLS: the server's tcp route, whatever the SNI
    let v = at("tls://db-primary.example.com:5443", &[]);
    assert_eq!(v["virtual_service"], "default/db", "{v}");
    assert_eq!(v["route_kind"], "tcp", "{v}");
    assert_eq!(v["destinations"][0]["port"], 5432, "{v}");
    // a catch-all chain, for a client without SNI
    let v = at("tls://10.0.0.1:9443", &["--sni", ""]);
    assert_eq!(v["virtual_service"], "default/any", "{v}");
    let v = at("tls://x.org:9443", &[]);
    assert_eq!(v["virtual_service"], "default/any", "{v}");
}

/// The DestinationRule that applies is the one the client's proxy gets (istiod's
/// `SidecarScope.DestinationRule`): a rule whose `workloadSelector` matches the client
/// (`--source-labels`) before the one without, for HTTP and TCP alike.
#[test]
fn a_destination_rule_for_the_client_s_labels_applies_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "ws.yaml",
        "apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}, {name: tcp-db, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-canary, namespace: bookinfo}
spec:
  host: ratings
  workloadSelector: {matchLabels: {track: canary}}
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings, subset: v2}}]}]
  tcp: [{route: [{destination: {host: ratings, subset: v2, port: {number: 5432}}}]}]
",
    );
    let f = f.to_str().unwrap();
    let run = |url: &str, labels: Option<&str>| {
        let mut a = vec![url, "-f", f, "-n", "bookinfo"];
        if let Some(l) = labels {
            a.extend_from_slice(&["--source-labels", l]);
        }
        let v = json(&a);
        let d = &v["destinations"][0];
        (
            d["destination_rule"].as_str().unwrap_or("").to_owned(),
            d["subset_defined"].as_bool().unwrap(),
        )
    };
    for url in ["http://ratings:9080/", "tcp://ratings:5432"] {
        assert_eq!(
            run(url, Some("track=canary,app=productpage")),
            ("bookinfo/ratings-canary".to_owned(), true),
            "{url}"
        );
        assert_eq!(
            run(url, Some("track=stable")),
            ("bookinfo/ratings".to_owned(), false),
            "{url}"
        );
        assert_eq!(
            run(url, None),
            ("bookinfo/ratings".to_owned(), false),
            "{url}"
        );
    }
}

/// A destination's own header operations are shown with it (JSON and text): a lone
/// destination's apply after the route's, and its `host`/`:authority` becomes the route's
/// authority rewrite when the route has none (istiod's processDestination); a weighted
/// destination's belong to its entry (processWeightedDestination).
#[test]
fn destination_header_operations_and_the_authority_sent() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "vs.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /h}}]
    headers:
      request: {set: {x-a: r}, add: {x-b: r}, remove: [x-c]}
      response: {set: {x-d: r}}
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {x-a: d}}
        response: {remove: [server]}
  - match: [{uri: {prefix: /a}}]
    headers: {request: {set: {host: route.example}}}
    route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {host: dest.example}}}
  - match: [{uri: {prefix: /b}}]
    route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {":authority": dest.example}}}
  - match: [{uri: {prefix: /c}}]
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers: {request: {set: {host: v1.example, x-v: "1"}}}
    - destination: {host: reviews, subset: v2}
      weight: 50
"#,
    );
    let f = f.to_str().unwrap();
    let route = |path: &str| json(&[&format!("http://reviews:9080{path}"), "-f", f]);
    let text = |path: &str| {
        let out = meshctl(&["route", &format!("http://reviews:9080{path}"), "-f", f]);
        String::from_utf8(out.stdout).unwrap()
    };

    let v = route("/h");
    let d = &v["destinations"][0];
    assert_eq!(
        d["headers"]["request"]["set"],
        serde_json::json!({"x-a": "d"})
    );
    assert_eq!(
        d["headers"]["response"]["remove"],
        serde_json::json!(["server"])
    );
    assert_eq!(
        v["headers"]["request"]["set"],
        serde_json::json!({"x-a": "r"})
    );
    assert_eq!(d["authority"], Value::Null);
    assert_eq!(v["rewrite"], Value::Null);
    let t = text("/h");
    assert!(
        t.contains("   request headers (after the route's): set x-a: d\n"),
        "{t}"
    );
    assert!(
        t.contains("   response headers (after the route's): remove server\n"),
        "{t}"
    );
    assert!(
        t.contains("request headers: remove x-c; set x-a: r; add x-b: r\n"),
        "{t}"
    );
    assert!(t.contains("response headers: set x-d: r\n"), "{t}");

    // the route's own host rewrite comes first
    let v = route("/a");
    assert_eq!(v["rewrite"]["authority"], "route.example");
    assert_eq!(v["destinations"][0]["authority"], "route.example");
    // a lone destination's host is the route's rewrite
    let v = route("/b");
    assert_eq!(v["rewrite"]["authority"], "dest.example", "{v}");
    assert_eq!(v["destinations"][0]["authority"], "dest.example");
    assert!(
        text("/b").contains("rewrite authority to dest.example\n"),
        "{}",
        text("/b")
    );
    // a weighted destination's is its own
    let v = route("/c");
    assert_eq!(v["rewrite"], Value::Null, "{v}");
    assert_eq!(v["destinations"][0]["authority"], "v1.example");
    assert_eq!(v["destinations"][1]["authority"], Value::Null);
    assert_eq!(v["destinations"][1]["headers"], Value::Null);
    let t = text("/c");
    assert!(
        t.contains("   request headers (this destination's): set x-v: 1\n   authority rewritten to v1.example\n"),
        "{t}"
    );
}

#[test]
fn the_path_is_normalized_before_routing() {
    // every connection manager istiod builds normalizes the path (BASE by default) before
    // the route is chosen
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "vs.yaml",
        "apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
",
    );
    let f = f.to_str().unwrap();
    for url in [
        "http://reviews:9080/%61pi/foo",
        "http://reviews:9080/x/../api/foo",
    ] {
        let v = json(&["-f", f, url]);
        assert_eq!(v["route"], 0, "{url}: {v}");
        assert_eq!(v["normalized_path"], "/api/foo", "{url}");
        assert_eq!(v["rewrite"]["uri"], "/v2/foo", "{url}: {v}");
    }
    let v = json(&["-f", f, "http://reviews:9080/api/foo"]);
    assert_eq!(v["normalized_path"], Value::Null);
    let v = json(&["-f", f, "http://reviews:9080/api/%00"]);
    assert_eq!(v["status"], 400);
}

/// istio.io TCP traffic shifting: an HTTP request to the port `tcp-echo` declares TCP is a
/// connection a sidecar proxies by the `tcp` routes (80/20), with no timeout or retry,
/// whatever `http` routes say.
#[test]
fn a_request_to_a_port_declared_tcp_follows_the_tcp_routes() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "tcp-echo.yaml",
        "apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo, namespace: default}
spec:
  hosts: [tcp-echo]
  http: [{timeout: 1s, route: [{destination: {host: tcp-echo, subset: v2}}]}]
  tcp:
  - match: [{port: 9000}]
    route:
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 20}
",
    );
    let v = json(&[
        "http://tcp-echo:9000/",
        "--config",
        f.to_str().unwrap(),
        "-H",
        "grpc-timeout: 2S",
        "-H",
        "content-type: application/grpc",
    ]);
    assert_eq!(v["opaque_tcp"], true, "{v}");
    assert_eq!(v["tcp_route"], 0);
    assert_eq!(v["route"], Value::Null);
    assert_eq!(v["timeout"], Value::Null);
    assert_eq!(v["retries"]["attempts"], 0);
    let split: Vec<(&str, u64)> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["subset"].as_str().unwrap(), d["weight"].as_u64().unwrap()))
        .collect();
    assert_eq!(split, [("v1", 80), ("v2", 20)]);
}

/// istiod gives a redirect or direct response no route action: the explanation shows no
/// mirror, timeout, retries nor rewrite for it, whatever else the route sets.
#[test]
fn a_direct_response_has_no_mirror_timeout_or_retries() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(
        &f,
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: acme, namespace: default}
spec:
  hosts: [reviews]
  http:
  - directResponse: {status: 503}
    mirror: {host: foo.example.org}
    timeout: 5s
    retries: {attempts: 3}
    rewrite: {uri: /x}
",
    )
    .unwrap();
    let v = json(&["http://reviews/", "-f", f.to_str().unwrap()]);
    assert_eq!(v["direct_response"]["status"], 503, "{v}");
    assert_eq!(v["mirrors"], serde_json::json!([]), "{v}");
    assert_eq!(v["timeout"], Value::Null, "{v}");
    assert_eq!(v["route_timeout"], Value::Null, "{v}");
    assert_eq!(v["retries"]["attempts"], 0, "{v}");
    assert_eq!(v["rewrite"], Value::Null, "{v}");
}

/// With a Sidecar, a host defined in two namespaces is the copy its egress imports
/// (istiod's `selectServices`): `b/*` reaches b's port 8000, not the client namespace's
/// 8001, which has no cluster under REGISTRY_ONLY.
#[test]
fn the_sidecar_picks_the_imported_copy_of_a_host() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sc.yaml");
    std::fs::write(
        &f,
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc, namespace: a}
spec:
  egress: [{hosts: ['b/*']}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b-host, namespace: b}
spec: {hosts: [host.example.com], resolution: DNS, ports: [{name: http, number: 8000, protocol: HTTP}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a-host, namespace: a}
spec: {hosts: [host.example.com], resolution: DNS, ports: [{name: http, number: 8001, protocol: HTTP}]}
",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let v = json(&["http://host.example.com:8000/", "-f", f, "-n", "a"]);
    assert_eq!(v["destinations"][0]["imported"], true, "{v}");
    assert_eq!(v["destinations"][0]["cluster"], Value::Null, "{v}");
    let v = json(&["http://host.example.com:8001/", "-f", f, "-n", "a"]);
    assert_eq!(v["destinations"][0]["cluster"], "BlackHoleCluster", "{v}");
}

/// `meshctl route tcp://` as `MeshClient::connect`: a service the client's Sidecar does
/// not import, or a port the service does not declare, is no cluster of the client's.
#[test]
fn tcp_routes_follow_the_sidecar_and_declared_ports() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("db.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1
kind: Service
metadata: {name: db, namespace: ns2}
spec: {ports: [{name: tcp, port: 5432}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ns1}
spec:
  egress: [{hosts: ['./*']}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let url = |p: u16| format!("tcp://db.ns2.svc.cluster.local:{p}");
    let v = json(&[&url(5432), "-f", f, "-n", "ns1"]);
    assert_eq!(v["destinations"][0]["imported"], false, "{v}");
    assert_eq!(v["destinations"][0]["cluster"], "BlackHoleCluster", "{v}");
    let v = json(&[&url(9999), "-f", f, "-n", "ns2"]);
    assert_eq!(v["destinations"][0]["target_port"], 9999, "{v}");
    assert_eq!(v["destinations"][0]["cluster"], "PassthroughCluster", "{v}");
    let v = json(&[&url(5432), "-f", f, "-n", "ns2"]);
    assert_eq!(
        v["destinations"][0]["cluster"], "outbound|5432||db.ns2.svc.cluster.local",
        "{v}"
    );
}

/// istiod's `separateVSHostsAndServices` for a Sidecar-scoped client: a wildcard
/// VirtualService host covering services the Sidecar imports routes those services only;
/// another host under the wildcard is not routed by it.
#[test]
fn a_wildcard_virtual_service_routes_only_the_imported_services_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("wild.yaml");
    let se = |name: &str| {
        format!(
            "---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: b}}
spec: {{hosts: [{name}.foo.com], resolution: DNS, ports: [{{name: http, number: 80, protocol: HTTP}}]}}
"
        )
    };
    std::fs::write(
        &f,
        format!(
            "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: sc, namespace: a}}
spec: {{egress: [{{hosts: [b/a.foo.com, b/dest.internal]}}]}}
{}{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: wild, namespace: b}}
spec:
  hosts: ['*.foo.com']
  http: [{{route: [{{destination: {{host: dest.internal}}}}]}}]
",
            se("a"),
            se("z")
        ),
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let vs = |host: &str| {
        json(&[&format!("http://{host}/"), "-f", f, "-n", "a"])["virtual_service"].clone()
    };
    assert_eq!(vs("a.foo.com"), "b/wild");
    assert_eq!(vs("z.foo.com"), Value::Null);
    assert_eq!(vs("q.foo.com"), Value::Null);
    // without a Sidecar, the wildcard routes every host under it
    let v = json(&["http://z.foo.com/", "-f", f, "-n", "other"]);
    assert_eq!(v["virtual_service"], "b/wild", "{v}");
}

/// istiod uses a VirtualService for a host no service has on port 80 only (or on a port of
/// a service another of its hosts names): on another port the explanation names the
/// VirtualService it leaves out and why, and loading the host's Service makes it route.
#[test]
fn a_virtual_service_for_an_unknown_host_is_named_where_it_does_not_route() {
    let vs = sample("bookinfo/networking/virtual-service-reviews-80-20.yaml");
    let v = json(&["http://reviews:9080/", "-f", &vs]);
    assert_eq!(v["virtual_service"], Value::Null, "{v}");
    assert_eq!(
        v["unused_virtual_services"],
        serde_json::json!(["default/reviews"]),
        "{v}"
    );
    let out = meshctl(&["route", "http://reviews:9080/", "-f", &vs]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "VirtualService default/reviews covers the host, but no Service or ServiceEntry"
        ),
        "{text}"
    );
    // port 80: istiod's route configuration `80` takes VirtualService hosts of no service
    let v = json(&["http://reviews/", "-f", &vs]);
    assert_eq!(v["virtual_service"], "default/reviews", "{v}");
    assert_eq!(v["unused_virtual_services"], serde_json::json!([]), "{v}");
    // with the Service loaded, 9080 is its port
    let kube = sample("bookinfo/platform-kube/bookinfo.yaml");
    let v = json(&["http://reviews:9080/", "-f", &vs, "-f", &kube]);
    assert_eq!(v["virtual_service"], "default/reviews", "{v}");
}

/// A `resolution: NONE` ServiceEntry port with a `targetPort`: the original destination on
/// that port (Istio 1.22+).
#[test]
fn resolution_none_shows_the_target_port() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "se.yaml",
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.internal]
  ports: [{number: 8080, name: http, protocol: HTTP, targetPort: 18081}]
  resolution: NONE
",
    );
    let f = f.display().to_string();
    let v = json(&["http://api.internal:8080/", "-f", &f]);
    let d = &v["destinations"][0];
    assert_eq!(d["original_destination"], "api.internal:18081", "{v}");
    assert_eq!(d["port_override"], 18081, "{v}");
}

/// `x-forwarded-proto` is written before routing, as Envoy's connection manager does: a
/// sidecar's `http` when the application sent none, a gateway's the connection's scheme
/// (a client's replaced: no trusted proxies in front).
#[test]
fn forwarded_proto_is_written_before_routing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "xfp.yaml",
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  gateways: [mesh, gw]
  http:
  - match: [{headers: {x-forwarded-proto: {exact: http}}}]
    directResponse: {status: 200}
  - directResponse: {status: 418}
",
    )
    .display()
    .to_string();
    let base = ["http://api.example.com/", "--config", &cfg];
    assert_eq!(json(&base)["status"], 200, "a sidecar writes http");
    let mut a = base.to_vec();
    a.extend_from_slice(&["--header", "X-Forwarded-Proto: https"]);
    assert_eq!(
        json(&a)["status"],
        418,
        "the application's own value is kept"
    );
    let mut a = a.clone();
    a.extend_from_slice(&["--gateway", "default/gw"]);
    assert_eq!(json(&a)["status"], 200, "a gateway writes its connection's");
}

/// `destinationSubnets` match the address the application dials: for a service's name, its
/// cluster IP (what a sidecar sees), as the mesh client matches them.
#[test]
fn destination_subnets_match_a_named_service_by_its_cluster_ip() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "config.yaml",
        "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  clusterIP: 10.0.0.5
  ports: [{name: https, port: 443}, {name: tcp-db, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web2, namespace: default}
spec:
  selector: {app: web2}
  ports: [{name: https, port: 443}, {name: tcp-db, port: 5432}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v, namespace: default}
spec:
  hosts: [web]
  tls:
  - match: [{sniHosts: [web], destinationSubnets: [10.0.0.0/24]}]
    route: [{destination: {host: web2, port: {number: 443}}}]
  tcp:
  - match: [{destinationSubnets: [10.0.0.5]}]
    route: [{destination: {host: web2, port: {number: 5432}}}]
",
    );
    let config = dir.path().display().to_string();
    for url in ["tcp://web:5432", "tcp://10.0.0.5:5432", "tls://web:443"] {
        let out = meshctl(&["route", "-f", &config, url]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{url}: {text}");
        assert!(text.contains("route 0 matched"), "{url}: {text}");
        assert!(
            text.contains("web2.default.svc.cluster.local"),
            "{url}: {text}"
        );
    }
}
