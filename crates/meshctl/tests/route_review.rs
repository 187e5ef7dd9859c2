//! `meshctl route` on the cases a review found diverging from Istio: a VirtualService left
//! without routes for the client, merged gateway VirtualServices, raw query values, and the
//! MeshConfig defaults `--mesh-config` brings.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn route(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .arg("route")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run meshctl");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{port: 9080, name: http}], selector: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - match: [{queryParams: {q: {exact: "a b"}}}]
    directResponse: {status: 201}
  - directResponse: {status: 299}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a-frontend, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: frontend}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b-api, namespace: default}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: api}}]
"#;

#[test]
fn routes_as_istio_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);

    // the VirtualService keeps no route for this client: the service's default route
    let v = route(&[
        "-f",
        &config,
        "--source-labels",
        "app=other",
        "http://reviews:9080/",
    ]);
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["status"], Value::Null);
    assert_eq!(
        v["destinations"][0]["host"],
        "reviews.default.svc.cluster.local"
    );
    let v = route(&[
        "-f",
        &config,
        "--source-labels",
        "app=productpage",
        "http://reviews:9080/",
    ]);
    assert_eq!(v["virtual_service"], "default/reviews");

    // merged at the gateway, the catch-all goes last
    let v = route(&[
        "-f",
        &config,
        "--gateway",
        "istio-system/gw",
        "http://shop.example.com/api/x",
    ]);
    assert_eq!(v["virtual_service"], "default/b-api");

    // query values are not decoded
    let v = route(&["-f", &config, "http://web.example.com/?q=a%20b"]);
    assert_eq!(v["status"], 299);
}

#[test]
fn mesh_config_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "config.yaml", CONFIG);
    let mc = write(
        dir.path(),
        "mesh.yaml",
        "defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx}\ndefaultVirtualServiceExportTo: ['.']\n",
    );
    let v = route(&[
        "-f",
        &config,
        "--mesh-config",
        &mc,
        "--source-labels",
        "app=productpage",
        "http://reviews:9080/",
    ]);
    assert_eq!(v["virtual_service"], "default/reviews");
    assert_eq!(v["retries"]["attempts"], 5);
    // the VirtualService is exported to its own namespace only
    let v = route(&[
        "-f",
        &config,
        "--mesh-config",
        &mc,
        "-n",
        "other",
        "--source-labels",
        "app=productpage",
        "http://reviews.default:9080/",
    ]);
    assert_eq!(v["virtual_service"], Value::Null);
    assert_eq!(v["retries"]["attempts"], 5); // the default route's
}
