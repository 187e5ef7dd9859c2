//! Loader tests: real YAML text, positions, errors, limits.

use mesh_core::diag::{codes, Severity};
use mesh_core::load::{load_path, load_str, LoadOptions, Loader};
use mesh_core::model::{Kind, Location, Spec};

const VS: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - timeout: 3s
    route:
    - destination:
        host: reviews
        subset: v1
";

#[test]
fn loads_a_virtual_service_with_positions() {
    let l = load_str(VS, "vs.yaml");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    assert_eq!(l.objects.len(), 1);
    let o = &l.objects[0];
    assert_eq!(o.kind, Kind::VirtualService);
    assert_eq!(o.metadata.namespace, "default");
    assert_eq!(o.source.location, Location { line: 1, column: 1 });
    assert_eq!(
        o.source.locate("spec.http[0].timeout"),
        Some(Location { line: 9, column: 5 })
    );
    assert_eq!(
        o.source.locate_value("spec.http[0].timeout"),
        Some(Location {
            line: 9,
            column: 14
        })
    );
    assert_eq!(
        o.source.locate("spec.http[0].route[0].destination.subset"),
        Some(Location {
            line: 13,
            column: 9
        })
    );
    let Spec::VirtualService(vs) = &o.spec else {
        panic!("not a VS")
    };
    assert_eq!(
        vs.http[0].route[0].destination.subset.as_deref(),
        Some("v1")
    );
    assert_eq!(
        vs.http[0].timeout.unwrap().as_std(),
        std::time::Duration::from_secs(3)
    );
}

#[test]
fn default_namespace_is_configurable() {
    let l = Loader::new(LoadOptions {
        default_namespace: "prod".into(),
        ..LoadOptions::default()
    })
    .load_str(VS, "vs.yaml");
    assert_eq!(l.objects[0].metadata.namespace, "prod");
}

/// (name, yaml, expected code, expected line, expected path, help contains)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    u32,
    &'static str,
    &'static str,
);

#[test]
fn schema_errors_point_at_the_field() {
    let cases: &[Case] = &[
        (
            "unknown field with suggestion",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  subnets: []\n",
            codes::UNKNOWN_FIELD, 6, "spec.subnets", "did you mean `subsets`?",
        ),
        (
            "unknown enum value",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUNDROBIN\n",
            codes::INVALID_VALUE, 8, "spec.trafficPolicy.loadBalancer.simple", "did you mean `ROUND_ROBIN`?",
        ),
        (
            "bad duration",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - timeout: 5\n    route: [{destination: {host: r}}]\n",
            codes::INVALID_VALUE, 7, "spec.http[0].timeout", "",
        ),
        (
            "bad duration unit",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - timeout: 5sec\n    route: [{destination: {host: r}}]\n",
            codes::INVALID_VALUE, 7, "spec.http[0].timeout", "",
        ),
        (
            "wrong type",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: reviews\n",
            codes::INVALID_VALUE, 5, "spec.hosts", "",
        ),
        (
            "unknown top-level key",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspex:\n  hosts: [r]\n",
            codes::UNKNOWN_FIELD, 4, "spex", "did you mean `spec`?",
        ),
        (
            "unknown metadata field",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n  namespce: x\nspec:\n  hosts: [r]\n",
            codes::UNKNOWN_FIELD, 5, "metadata.namespce", "did you mean `namespace`?",
        ),
        (
            "missing name",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  namespace: x\nspec:\n  hosts: [r]\n",
            codes::MISSING_NAME, 3, "metadata.name", "",
        ),
        (
            "group typo",
            "apiVersion: networking.istio/v1alpha3\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r]}\n",
            codes::API_VERSION, 1, "apiVersion", "did you mean `networking.istio.io/v1alpha3`?",
        ),
        (
            "group missing",
            "apiVersion: v1alpha3\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n",
            codes::API_VERSION, 1, "apiVersion", "did you mean `networking.istio.io/v1alpha3`?",
        ),
        (
            "unserved version",
            "apiVersion: security.istio.io/v1alpha3\nkind: AuthorizationPolicy\nmetadata: {name: r}\nspec: {}\n",
            codes::API_VERSION, 1, "apiVersion", "security.istio.io/v1",
        ),
        (
            "kind under the wrong istio group",
            "apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: [r]}\n",
            codes::API_VERSION, 1, "apiVersion", "networking.istio.io/v1",
        ),
        (
            "kind typo",
            "apiVersion: networking.istio.io/v1\nkind: VirtualSevice\nmetadata: {name: r}\nspec: {hosts: [r]}\n",
            codes::UNKNOWN_KIND, 2, "kind", "did you mean `VirtualService`?",
        ),
        (
            "not a mapping",
            "- a\n- b\n",
            codes::NOT_AN_OBJECT, 1, "", "",
        ),
        (
            "missing kind",
            "apiVersion: v1\nmetadata: {name: x}\n",
            codes::NOT_AN_OBJECT, 1, "kind", "",
        ),
        (
            "syntax error",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r\nspec: {}\n",
            codes::SYNTAX, 4, "", "",
        ),
        (
            "duplicate key",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  hosts: [b]\n",
            codes::DUPLICATE_KEY, 6, "", "",
        ),
        (
            "negative uint",
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: -1, name: http, protocol: HTTP}\n    hosts: ['*']\n",
            codes::INVALID_VALUE, 6, "spec.servers[0].port.number", "",
        ),
    ];
    for (name, yaml, code, line, path, help) in cases {
        let l = load_str(yaml, "t.yaml");
        let d = l
            .diagnostics
            .iter()
            .find(|d| d.code == *code)
            .unwrap_or_else(|| panic!("{name}: no {code} in {:#?}", l.diagnostics));
        assert_eq!(d.severity, Severity::Error, "{name}");
        assert_eq!(d.line, *line, "{name}: {d:?}");
        assert!(d.column >= 1, "{name}");
        assert_eq!(d.path, *path, "{name}");
        assert!(
            d.help.as_deref().unwrap_or("").contains(help),
            "{name}: help {:?}",
            d.help
        );
        assert!(l.has_errors(), "{name}");
    }
}

#[test]
fn every_unknown_field_of_an_object_is_reported() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subnet: v1}\n    - destination: {host: r, subnet: v2}\n";
    let l = load_str(yaml, "t.yaml");
    let paths: Vec<_> = l.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.http[0].route[0].destination.subnet",
            "spec.http[0].route[1].destination.subnet"
        ]
    );
    assert!(l.objects.is_empty());
}

#[test]
fn multi_document_list_json_and_empty_documents() {
    let yaml = "---\n---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.istio.io/v1beta1\n  kind: Gateway\n  metadata: {name: g, namespace: istio-system}\n  spec:\n    selector: {istio: ingressgateway}\n    servers:\n    - port: {number: 80, name: http, protocol: HTTP}\n      hosts: ['*']\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata: {name: d}\n  spec: {host: d, subnet: x}\n---\n{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"AuthorizationPolicy\", \"metadata\": {\"name\": \"deny\"}, \"spec\": {}}\n---\n";
    let l = load_str(yaml, "t.yaml");
    let kinds: Vec<_> = l.objects.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [Kind::Gateway, Kind::AuthorizationPolicy]);
    assert_eq!(l.objects[0].metadata.namespace, "istio-system");
    assert_eq!(l.objects[0].source.document, 2);
    assert_eq!(l.objects[1].source.document, 3);
    assert_eq!(l.diagnostics.len(), 1);
    assert_eq!(l.diagnostics[0].path, "items[1].spec.subnet");
    assert_eq!(l.diagnostics[0].line, 19);
}

#[test]
fn json_file_loads() {
    let json = r#"{
  "apiVersion": "networking.istio.io/v1alpha3",
  "kind": "ServiceEntry",
  "metadata": {"name": "ext"},
  "spec": {"hosts": ["api.example.com"], "ports": [{"number": 443, "name": "https", "protocol": "TLS"}], "resolution": "DNS"}
}"#;
    let l = load_str(json, "se.json");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    assert_eq!(l.objects[0].kind, Kind::ServiceEntry);
    assert_eq!(
        l.objects[0].source.locate("spec.resolution").unwrap().line,
        5
    );
}

#[test]
fn kubernetes_objects_are_kept_leniently_and_others_skipped() {
    let yaml = "\
apiVersion: v1
kind: Service
metadata:
  name: reviews
  labels: {app: reviews}
spec:
  ports:
  - port: 9080
    name: http
    targetPort: 9080
  selector:
    app: reviews
  someFutureField: 1
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: bookinfo-reviews
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
spec:
  replicas: 1
  selector:
    matchLabels: {app: reviews}
  template:
    metadata:
      labels: {app: reviews, version: v1}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        image: x
        ports:
        - containerPort: 9080
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {a: b}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: k8s-gw}
spec: {gatewayClassName: istio, listeners: []}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef}
spec: {}
";
    let l = load_str(yaml, "k.yaml");
    let kinds: Vec<_> = l.objects.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [Kind::Service, Kind::ServiceAccount, Kind::Deployment]
    );
    let Spec::Service(svc) = &l.objects[0].spec else {
        panic!()
    };
    assert_eq!(svc.ports[0].port, 9080);
    assert_eq!(svc.selector.as_ref().unwrap()["app"], "reviews");
    let Spec::Workload(w) = &l.objects[2].spec else {
        panic!()
    };
    assert_eq!(w.labels["version"], "v1");
    assert_eq!(w.service_account_name, "bookinfo-reviews");
    assert_eq!(w.container_ports[0].container_port, 9080);
    // the Gateway API's Gateway and the EnvoyFilter: skipped, each said
    assert_eq!(l.diagnostics.len(), 2, "{:?}", l.diagnostics);
    for d in &l.diagnostics {
        assert_eq!(d.code, codes::UNSUPPORTED_KIND);
        assert_eq!(d.severity, Severity::Warning);
    }
    assert!(!l.has_errors());
}

#[test]
fn pod_defaults_to_default_service_account() {
    let l = load_str(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\nspec: {containers: [{name: c}]}\n",
        "p.yaml",
    );
    let Spec::Workload(w) = &l.objects[0].spec else {
        panic!()
    };
    assert_eq!(w.service_account_name, "default");
    assert_eq!(w.labels["app"], "a");
}

#[test]
fn anchors_and_aliases_expand() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  subsets:\n  - name: v1\n    labels: &l {version: v1}\n  - name: v1b\n    labels: *l\n";
    let l = load_str(yaml, "a.yaml");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let Spec::DestinationRule(dr) = &l.objects[0].spec else {
        panic!()
    };
    assert_eq!(dr.subsets[1].labels["version"], "v1");
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='k' {
        bomb.push_str(&format!(
            "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
        prev = c;
    }
    let start = std::time::Instant::now();
    let l = load_str(&bomb, "bomb.yaml");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        l.diagnostics.iter().any(|d| d.code == codes::LIMITS),
        "{:?}",
        l.diagnostics
    );

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let l = load_str(&deep, "deep.yaml");
    // saphyr's own flow-nesting guard (256) or ours, whichever comes first.
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.code == codes::LIMITS || d.code == codes::SYNTAX),
        "{:?}",
        l.diagnostics
    );
    let deep = "a:\n".to_owned()
        + &(1..300)
            .map(|i| format!("{}b:\n", " ".repeat(i)))
            .collect::<String>();
    let l = load_str(&deep, "deep2.yaml");
    assert!(l.diagnostics.iter().any(|d| d.code == codes::LIMITS));
}

#[test]
fn invalid_utf8_is_a_diagnostic() {
    let l = Loader::default().load_bytes(b"kind: \xff\xfe\n", "bin.yaml");
    assert_eq!(l.diagnostics[0].code, codes::SYNTAX);
    assert_eq!(l.diagnostics[0].line, 1);
}

#[test]
fn directories_load_recursively_and_missing_paths_fail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("a.yaml"), VS).unwrap();
    std::fs::write(
        dir.path().join("sub/b.yml"),
        VS.replace("reviews\n", "ratings\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("sub/c.json"), "{}").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not: yaml: at: all:").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "- broken").unwrap();
    let l = load_path(dir.path()).unwrap();
    assert_eq!(l.objects.len(), 2);
    // `{}` has no kind: not config, skipped by the walk (as `istioctl validate` passes
    // non-Istio YAML); named alone it is reported
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let alone = load_path(dir.path().join("sub/c.json")).unwrap();
    assert_eq!(alone.diagnostics.len(), 1);
    assert!(load_path(dir.path().join("nope")).is_err());
    let err =
        mesh_core::load::load_paths([dir.path().join("a.yaml"), dir.path().join("missing.yaml")])
            .unwrap_err();
    assert!(err.to_string().contains("missing.yaml"));
}

#[test]
fn merge_keys_merge() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  subsets:\n  - name: v1\n    labels: &base {app: r, version: v1}\n  - name: v2\n    labels:\n      <<: *base\n      version: v2\n";
    let l = load_str(yaml, "m.yaml");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let dr = l.objects[0].spec.as_destination_rule().unwrap();
    assert_eq!(dr.subsets[1].labels["app"], "r");
    assert_eq!(dr.subsets[1].labels["version"], "v2");
}

#[test]
fn null_collections_are_absent() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, labels: null}\nspec:\n  hosts: [r]\n  gateways:\n  http:\n  - route:\n    - destination: {host: r}\n";
    let l = load_str(yaml, "n.yaml");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let vs = l.objects[0].spec.as_virtual_service().unwrap();
    assert!(vs.gateways.is_empty());
    assert!(l.objects[0].spec.as_gateway().is_none());
}

#[test]
fn misplaced_fields_get_a_hint() {
    let table: &[(&str, &str, &str)] = &[
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r, subset: v1, weight: 80}\n",
            "spec.http[0].route[0].destination.weight",
            "belongs to the route entry, beside `destination:`",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - host: r\n",
            "spec.http[0].route[0].host",
            "belongs inside `destination:`",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  loadBalancer: {simple: RANDOM}\n",
            "spec.loadBalancer",
            "belongs under `trafficPolicy:`",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n    retries: {attempts: 2, per_try_timeout: 1s}\n",
            "spec.http[0].retries.per_try_timeout",
            "write `perTryTimeout`",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - match: [{prefix: /api}]\n    route: [{destination: {host: r}}]\n",
            "spec.http[0].match[0].prefix",
            "`uri: {prefix: ...}`",
        ),
    ];
    for (yaml, path, hint) in table {
        let l = load_str(yaml, "h.yaml");
        let d = l
            .diagnostics
            .iter()
            .find(|d| d.path == *path)
            .unwrap_or_else(|| panic!("{path}: {:#?}", l.diagnostics));
        assert_eq!(d.code, codes::UNKNOWN_FIELD);
        assert!(
            d.help.as_deref().unwrap_or("").contains(hint),
            "{path}: {:?}",
            d.help
        );
    }
}

/// A syntax error ends its document only, as kubectl splits on `---` first: the documents
/// after it are loaded, at their own lines.
#[test]
fn a_syntax_error_does_not_hide_the_later_documents() {
    let text = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec: {host: [unclosed
--- # the third
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c}
spec: {host: c, trafficPolicy: {tls: {mode: MUTUL}}}
";
    let l = Loader::default().load_str(text, "three.yaml");
    let names: Vec<&str> = l.objects.iter().map(|o| o.metadata.name.as_str()).collect();
    assert_eq!(names, ["a"], "{:?}", l.diagnostics);
    let lines: Vec<(&str, u32)> = l.diagnostics.iter().map(|d| (d.code, d.line)).collect();
    assert_eq!(lines.len(), 2, "{:?}", l.diagnostics);
    assert_eq!(lines[0].0, codes::SYNTAX);
    // the third document's bad enum, at its own line
    assert_eq!(lines[1].1, 14, "{:?}", l.diagnostics);
}

/// A VirtualService `reviews` whose one HTTP route has the match `m` (flow YAML), at line 7.
fn vs_with_match(m: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - match: [{m}]
    route: [{{destination: {{host: reviews}}}}]
"
    )
}

#[test]
fn yaml_1_1_booleans_as_kubernetes_reads_them() {
    // `yes`/`on`/`y` are booleans to Kubernetes (go-yaml v2): a boolean field takes them...
    let l = load_str(
        &vs_with_match("{uri: {prefix: /api}, ignoreUriCase: yes}"),
        "vs.yaml",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let Spec::VirtualService(vs) = &l.objects[0].spec else {
        panic!("not a VirtualService")
    };
    assert!(vs.http[0].matches[0].ignore_uri_case);
    // ...and a string field refuses them, as the API server does ("must be of type
    // string"), with the reason and the fix
    let l = load_str(
        &vs_with_match("{headers: {x-debug: {exact: on}}}"),
        "vs.yaml",
    );
    let d = l
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .expect("an error");
    assert_eq!(d.code, codes::INVALID_VALUE, "{d:?}");
    assert_eq!(
        d.path, "spec.http[0].match[0].headers.x-debug.exact",
        "{d:?}"
    );
    assert_eq!(d.line, 7, "{d:?}");
    assert!(d.help.as_deref().unwrap().contains("YAML 1.1"), "{d:?}");
    // quoted, it is the string
    let l = load_str(
        &vs_with_match("{headers: {x-debug: {exact: \"on\"}}}"),
        "vs.yaml",
    );
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
}

#[test]
fn a_yaml_1_1_boolean_key_is_renamed_as_kubernetes_does_with_a_warning() {
    let l = load_str(
        &vs_with_match("{queryParams: {n: {exact: \"1\"}, \"y\": {exact: \"2\"}}}"),
        "vs.yaml",
    );
    // the key `n` is `false` to Kubernetes (and so to Istio); the quoted `y` stays `y`
    let Spec::VirtualService(vs) = &l.objects[0].spec else {
        panic!("not a VirtualService")
    };
    let keys: Vec<&str> = vs.http[0].matches[0]
        .query_params
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["false", "y"]);
    let w: Vec<_> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(w.len(), 1, "{:?}", l.diagnostics);
    assert_eq!(w[0].code, codes::LINT);
    assert_eq!(w[0].line, 7);
    assert!(
        w[0].message.contains("the key `n` is read as `false`"),
        "{}",
        w[0].message
    );
}
