//! Every file under shared/istio-samples loads and validates with no error.

use std::path::PathBuf;

use mesh_core::diag::Diagnostic;
use mesh_core::load::load_path;
use mesh_core::model::Kind;
use mesh_core::validate::validate_all;

fn samples() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent", dir.display());
        None
    }
}

#[test]
fn istio_samples_load_and_validate_without_errors() {
    let Some(dir) = samples() else { return };
    let loaded = load_path(&dir).unwrap();
    let load_errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert!(load_errors.is_empty(), "{load_errors:#?}");
    let diags = validate_all(&loaded.objects);
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Warnings Istio itself emits on these files (README): deprecated consecutiveErrors,
    // the unreachable second rule of fault-injection-details-v1, DENY with only HTTP fields.
    assert!(diags
        .iter()
        .any(|d| d.message.contains("consecutive errors is deprecated")));
    assert!(diags
        .iter()
        .any(|d| d.code == "IST0130" && d.file.ends_with("fault-injection-details-v1.yaml")));
    assert!(diags
        .iter()
        .any(|d| d.message.contains("will deny all traffic to TCP ports")));

    // Analysed together (alternatives of the same object included), nothing is an error but
    // what istioctl analyze reports on them too: the httpbin and cert-manager Gateways both
    // claim every host on port 80 of the istio=ingressgateway workloads (IST0145).
    let analysis = mesh_core::analyze::analyze(&loaded.objects);
    let errors: Vec<_> = analysis.iter().filter(|d| d.is_error()).collect();
    let (conflicts, others): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        errors.into_iter().partition(|d| d.code == "IST0145");
    // ...and the ratings subsets of destination-rule-all.yaml that no sample Deployment
    // runs (`v2`, and the MySQL ones): istioctl's IST0173, which its users meet with
    // this very file (istio/istio.io#17329)
    let (no_pods, others): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        others.into_iter().partition(|d| d.code == "IST0173");
    assert!(others.is_empty(), "{others:#?}");
    let mut subsets: Vec<&str> = no_pods
        .iter()
        .filter(|d| d.file.ends_with("destination-rule-all.yaml"))
        .filter_map(|d| d.message.split(' ').nth(2))
        .collect();
    subsets.sort_unstable();
    assert_eq!(subsets, ["v2", "v2-mysql", "v2-mysql-vm"], "{no_pods:#?}");
    assert_eq!(no_pods.len(), 3, "{no_pods:#?}");
    let mut files: Vec<_> = conflicts
        .iter()
        .map(|d| d.file.rsplit('/').next().unwrap_or_default())
        .collect();
    files.sort_unstable();
    assert_eq!(
        files,
        ["certmanager-gateway.yaml", "httpbin-gateway.yaml"],
        "{conflicts:#?}"
    );

    let count = |k: Kind| loaded.objects.iter().filter(|o| o.kind == k).count();
    assert!(count(Kind::VirtualService) >= 20);
    assert!(count(Kind::DestinationRule) >= 10);
    assert!(count(Kind::AuthorizationPolicy) >= 10);
    assert!(
        count(Kind::Service) >= 4,
        "Kubernetes Services kept for the registry"
    );
    assert!(count(Kind::Deployment) >= 6);
}

#[test]
fn every_sample_file_loads_on_its_own() {
    let Some(dir) = samples() else { return };
    let mut stack = vec![dir];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files += 1;
                let l = mesh_core::load::load_file(&p).unwrap();
                assert!(!l.has_errors(), "{}: {:#?}", p.display(), l.diagnostics);
                assert!(!l.objects.is_empty(), "{}: no objects", p.display());
            }
        }
    }
    assert!(files > 40);
}
