//! Each mistake marked [typo] in shared/mission/seed-notes-en.md is reported with its line and
//! a helpful message; the seed's valid snippets load and validate without errors.

use mesh_core::diag::{codes, Diagnostic, Severity};
use mesh_core::load::load_file;
use mesh_core::validate::validate_all;

fn diagnostics(file: &str) -> (Vec<Diagnostic>, usize) {
    let path = format!("{}/tests/fixtures/seed/{file}", env!("CARGO_MANIFEST_DIR"));
    let loaded = load_file(&path).unwrap();
    let mut all = loaded.diagnostics.clone();
    all.extend(validate_all(&loaded.objects));
    (all, loaded.objects.len())
}

fn find<'a>(ds: &'a [Diagnostic], code: &str, path: &str) -> &'a Diagnostic {
    ds.iter()
        .find(|d| d.code == code && d.path == path)
        .unwrap_or_else(|| panic!("no {code} at {path} in {ds:#?}"))
}

#[test]
fn subnet_instead_of_subset_in_virtual_service() {
    let (ds, objects) = diagnostics("vs-subnet.yaml");
    assert_eq!(objects, 0, "an object with an unknown field is not loaded");
    for (path, line) in [
        ("spec.http[0].route[0].destination.subnet", 12),
        ("spec.http[0].route[1].destination.subnet", 16),
    ] {
        let d = find(&ds, codes::UNKNOWN_FIELD, path);
        assert_eq!(d.severity, Severity::Error);
        assert_eq!((d.line, d.column), (line, 9));
        assert!(
            d.message.contains("unknown field `subnet`"),
            "{}",
            d.message
        );
        assert!(d
            .help
            .as_deref()
            .unwrap()
            .starts_with("did you mean `subset`?"));
    }
    assert_eq!(ds.len(), 2, "{ds:#?}");
}

#[test]
fn subnets_instead_of_subsets_in_destination_rule() {
    let (ds, _) = diagnostics("dr-subnets.yaml");
    let d = find(&ds, codes::UNKNOWN_FIELD, "spec.subnets");
    assert_eq!((d.line, d.column), (7, 3));
    assert!(d
        .help
        .as_deref()
        .unwrap()
        .starts_with("did you mean `subsets`?"));
    assert_eq!(ds.len(), 1, "{ds:#?}");
}

#[test]
fn wrong_api_group_names_the_right_one() {
    let (ds, _) = diagnostics("vs-apiversion.yaml");
    let d = find(&ds, codes::API_VERSION, "apiVersion");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!((d.line, d.column), (1, 13));
    assert!(d.message.contains("networking.istio.io"), "{}", d.message);
    assert_eq!(
        d.help.as_deref(),
        Some("did you mean `networking.istio.io/v1alpha3`?")
    );
    // The same snippet's invalid host is reported too (Istio: webhook rejects it).
    let h = find(
        &ds,
        codes::VALIDATION,
        "spec.http[0].route[0].destination.host",
    );
    assert_eq!(h.message, r#"domain name "/" invalid (label "/" invalid)"#);
    assert_eq!(h.line, 15);
    // And the header value that looks like a path gets a hint, not an error.
    let lint = find(
        &ds,
        codes::LINT,
        "spec.http[0].match[0].headers.end-user.exact",
    );
    assert_eq!(lint.severity, Severity::Info);
    assert_eq!(lint.line, 12);
}

#[test]
fn services_instead_of_servers_in_gateway() {
    let (ds, _) = diagnostics("gateway-services.yaml");
    let d = find(&ds, codes::UNKNOWN_FIELD, "spec.services");
    assert_eq!((d.line, d.column), (8, 3));
    assert!(d
        .help
        .as_deref()
        .unwrap()
        .starts_with("did you mean `servers`?"));
    assert_eq!(ds.len(), 1, "{ds:#?}");
}

#[test]
fn fixed_gateway_and_valid_snippets_have_no_errors() {
    for f in ["gateway-fixed.yaml", "seed-valid.yaml"] {
        let (ds, objects) = diagnostics(f);
        assert!(objects > 0);
        let errors: Vec<_> = ds.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{f}: {errors:#?}");
    }
}

#[test]
fn russian_original_weight_inside_destination() {
    let (ds, _) = diagnostics("vs-subnet-ru.yaml");
    let w = find(
        &ds,
        codes::UNKNOWN_FIELD,
        "spec.http[0].route[0].destination.weight",
    );
    assert_eq!(w.line, 13);
    assert!(w.help.as_deref().unwrap().contains("beside `destination:`"));
    let s = find(
        &ds,
        codes::UNKNOWN_FIELD,
        "spec.http[0].route[1].destination.subnet",
    );
    assert_eq!(s.line, 19);
    assert!(s
        .help
        .as_deref()
        .unwrap()
        .starts_with("did you mean `subset`?"));
    assert_eq!(ds.len(), 4, "{ds:#?}");
}
