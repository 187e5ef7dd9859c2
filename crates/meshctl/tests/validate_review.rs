//! `meshctl validate` on partial input: what istiod accepts is not refused (exit 0), and
//! references to objects outside the given files are warnings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn meshctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .expect("run meshctl")
}

/// `shared/istio-samples` in the nearest ancestor of the crate that has it (the repository's
/// sibling, from a checkout or a worktree).
fn samples() -> Option<PathBuf> {
    let found = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/istio-samples"))
        .find(|d| d.is_dir());
    if found.is_none() {
        eprintln!(
            "skipping: no shared/istio-samples above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    found
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Every sample, validated on its own (as `kubectl apply -f` one file at a time), has no
/// error: its Gateway, DestinationRule or delegate may be in another file. The folder's
/// README lists no deliberately invalid file (those are in `istio-validation-fixtures`).
#[test]
fn every_istio_sample_alone_has_no_error() {
    let Some(dir) = samples() else { return };
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    assert!(files.len() >= 30, "{files:?}");
    let mut failed = Vec::new();
    for f in &files {
        let out = meshctl(&["validate", "--output", "json", f.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let errors: Vec<_> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["severity"] == "error")
            .cloned()
            .collect();
        if out.status.code() != Some(0) || !errors.is_empty() {
            failed.push(format!("{}: {errors:#?}", f.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // the subset references of a routing sample are still reported, as warnings
    let out = meshctl(&[
        "validate",
        "--output",
        "json",
        dir.join("bookinfo/networking/virtual-service-reviews-80-20.yaml")
            .to_str()
            .unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap(), d["severity"].as_str().unwrap()))
        .collect();
    assert_eq!(codes, [("IST0101", "warning"), ("IST0101", "warning")]);
    // with the DestinationRules the subsets resolve
    let out = meshctl(&[
        "validate",
        "--output",
        "json",
        dir.join("bookinfo/networking/virtual-service-reviews-80-20.yaml")
            .to_str()
            .unwrap(),
        dir.join("bookinfo/networking/destination-rule-all.yaml")
            .to_str()
            .unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v.as_array().unwrap().iter().any(|d| d["code"] == "IST0101"),
        "{v:#?}"
    );
}

#[test]
fn partial_input_exits_0_and_a_missing_subset_of_a_loaded_rule_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let vs = dir.path().join("vs.yaml");
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews.example.com]
  gateways: [istio-system/ingressgateway]
  http:
  - match: [{uri: {prefix: /api}}]
    delegate: {name: api, namespace: team}
  - route: [{destination: {host: reviews, subset: v3}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orphan}
spec:
  http: [{route: [{destination: {host: reviews}}]}]
",
    )
    .unwrap();
    let out = meshctl(&["validate", vs.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("0 errors, 3 warnings"), "{text}");
    assert!(text.contains("info[IM0203]"), "{text}");

    let dr = dir.path().join("dr.yaml");
    std::fs::write(
        &dr,
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
",
    )
    .unwrap();
    let out = meshctl(&["validate", vs.to_str().unwrap(), dr.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            r#"error[IST0101]: Referenced host+subset in destinationrule not found: "reviews+v3""#
        ),
        "{text}"
    );
}
