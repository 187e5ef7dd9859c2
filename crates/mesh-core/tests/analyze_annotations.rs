//! istioctl's annotation analyzer (`annotations.K8sAnalyzer`: IST0107 MisplacedAnnotation,
//! IST0108 UnknownAnnotation, IST0125 InvalidAnnotation, IST0135 DeprecatedAnnotation)
//! through the public API: load, then analyze.

use mesh_core::analyze::analyze;
use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;

/// Istio's own test data: istio/istio `pkg/config/analysis/analyzers/testdata/misannotated.yaml`
/// (Apache-2.0, Copyright Istio Authors), verbatim.
const MISANNOTATED: &str = r#"# K8s object with unknown Istio annotations
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  labels:
    app: httpbin
  annotations:
    # no such Istio annotation
    networking.istio.io/exportThree: bar
    # Valid Istio annotation
    networking.istio.io/exportTo: baz
spec:
  ports:
  - name: http
    port: 8000
    targetPort: 80
  selector:
    app: httpbin
---
# K8s object with invalid Istio annotations
apiVersion: v1
kind: Pod
metadata:
  name: invalid-annotations
  annotations:
    # Validation checks this is an int - this should be invalid
    readiness.status.sidecar.istio.io/initialDelaySeconds: bar
    # Validation checks this is an int - this should be valid
    readiness.status.sidecar.istio.io/periodSeconds: "10"
spec:
  containers:
    - name: "foo"
      command: ['curl']
---
apiVersion: v1
kind: Service
metadata:
  name: details
  labels:
    app: details
  annotations:
    # Annotation that Istio doesn't know about, but isn't an Istio annotation, thus ignored
    kubernetes.io/psp: my-privileged-psp
spec:
  ports:
  - name: http
    port: 80
    targetPort: 9080
  selector:
    app: details
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: gateway
  annotations:
    # Not valid, should be kubernetes.io/ingress.class, the only non-istio.io annotation we document
    istio.io/ingress.class: "istio"
spec:
  rules:
  - http:
      paths:
      - path: /productpage
        backend:
          serviceName: productpage
          servicePort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: grafana-test
  labels:
    app: grafana-test
    istio: grafana
  annotations:
    # valid here
    proxy.istio.io/config: "{}"
    # analyzer ignores, not ours
    helm.sh/hook: test-success
    # invalid here
    kubernetes.io/ingress.class: "istio"
spec:
  containers:
    - name: "grafana-test"
      command: ['curl']
      args: ['http://grafana:{{ .Values.grafana.service.externalPort }}']
  restartPolicy: Never
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fortio-deploy
  annotations:
     # This annotation belongs on the spec/template so it can be applied to a pod, not here
     sidecar.istio.io/statsInclusionPrefixes: cluster.outbound
spec:
  replicas: 1
  selector:
    matchLabels:
      app: fortio
  template:
    metadata:
      annotations:
        # sidecar.istio.io/statsInclusionPrefixes should be here
      labels:
        app: fortio
    spec:
      containers:
      - name: fortio
---
apiVersion: v1
kind: Namespace
metadata:
  name: staging
  annotations:
    # Annotation does not belong to Namespace
    kubernetes.io/ingress.class: "foo"
spec: {}"#;

/// The codes of the annotation analyzer.
const CODES: [&str; 4] = ["IST0107", "IST0108", "IST0125", "IST0135"];

/// One finding: code, severity, the object (`Kind/name`), message, line, path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    /// The code.
    code: &'static str,
    /// `Kind/name` of the object.
    object: String,
    /// `warning`, `info`, ...
    severity: String,
    /// The message.
    message: String,
    /// The line.
    line: u32,
    /// The field path.
    path: String,
}

/// The annotation findings of `yaml`, sorted, each with the object it is about (the last one
/// starting at or before its line).
fn findings(yaml: &str) -> Vec<Finding> {
    let loaded = load_str(yaml, "annotations.yaml");
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let found: Vec<Diagnostic> = analyze(&loaded.objects)
        .into_iter()
        .filter(|d| CODES.contains(&d.code))
        .collect();
    let mut out: Vec<Finding> = found
        .into_iter()
        .map(|d| {
            let o = loaded
                .objects
                .iter()
                .filter(|o| o.source.location.line <= d.line)
                .max_by_key(|o| o.source.location.line)
                .expect("an object before the finding");
            Finding {
                code: d.code,
                object: format!("{}/{}", o.kind, o.metadata.name),
                severity: d.severity.to_string(),
                message: d.message,
                line: d.line,
                path: d.path,
            }
        })
        .collect();
    out.sort();
    out
}

/// (code, object) of each finding.
fn codes(found: &[Finding]) -> Vec<(&'static str, &str)> {
    found.iter().map(|f| (f.code, f.object.as_str())).collect()
}

/// A Pod named `name` with these annotations (YAML flow mapping entries) and labels.
fn pod(name: &str, labels: &str, annotations: &[&str]) -> String {
    let mut y = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n  annotations:\n");
    for a in annotations {
        y.push_str(&format!("    {a}\n"));
    }
    y.push_str("spec: {containers: [{name: app, image: app}]}\n---\n");
    y
}

#[test]
fn istio_misannotated_testdata() {
    let found = findings(MISANNOTATED);
    // istioctl's expectations for this file (analyzers_test.go)
    let mut want = vec![
        ("IST0108", "Service/httpbin"),
        ("IST0125", "Pod/invalid-annotations"),
        ("IST0107", "Pod/grafana-test"),
        ("IST0107", "Deployment/fortio-deploy"),
        ("IST0107", "Namespace/staging"),
        ("IST0135", "Deployment/fortio-deploy"),
    ];
    want.sort();
    assert_eq!(codes(&found), want, "{found:#?}");

    let f = |code: &str, object: &str| {
        found
            .iter()
            .find(|f| f.code == code && f.object == object)
            .unwrap()
    };
    let unknown = f("IST0108", "Service/httpbin");
    assert_eq!(
        unknown.message,
        "Unknown annotation: networking.istio.io/exportThree"
    );
    assert_eq!((unknown.severity.as_str(), unknown.line), ("warning", 10));
    assert_eq!(
        unknown.path,
        "metadata.annotations.networking.istio.io/exportThree"
    );
    let invalid = f("IST0125", "Pod/invalid-annotations");
    assert_eq!(
        invalid.message,
        r#"Invalid annotation readiness.status.sidecar.istio.io/initialDelaySeconds: strconv.ParseUint: parsing "bar": invalid syntax"#
    );
    assert_eq!((invalid.severity.as_str(), invalid.line), ("warning", 28));
    let grafana = f("IST0107", "Pod/grafana-test");
    assert_eq!(
        grafana.message,
        "Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress"
    );
    assert_eq!((grafana.severity.as_str(), grafana.line), ("warning", 82));
    let fortio = f("IST0107", "Deployment/fortio-deploy");
    assert_eq!(
        fortio.message,
        "Misplaced annotation: sidecar.istio.io/statsInclusionPrefixes can only be applied to Pod"
    );
    assert_eq!(fortio.line, 96);
    let deprecated = f("IST0135", "Deployment/fortio-deploy");
    assert_eq!(
        deprecated.message,
        r#"Annotation "sidecar.istio.io/statsInclusionPrefixes" has been deprecated and may not work in future Istio versions."#
    );
    assert_eq!(
        (deprecated.severity.as_str(), deprecated.line),
        ("info", 96)
    );
    let staging = f("IST0107", "Namespace/staging");
    assert_eq!(
        staging.message,
        "Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress"
    );
    assert_eq!(staging.line, 118);
}

#[test]
fn misplaced_deployment_annotation_has_a_hint() {
    let loaded = load_str(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
  annotations: {sidecar.istio.io/inject: 'false', proxy.istio.io/config: 'bad'}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata:
      labels: {app: reviews}
      annotations: {sidecar.istio.io/proxyCPU: 100m, sidecar.istio.io/nope: x}
    spec: {containers: [{name: reviews, image: reviews}]}
",
        "d.yaml",
    );
    let found: Vec<Diagnostic> = analyze(&loaded.objects)
        .into_iter()
        .filter(|d| CODES.contains(&d.code))
        .collect();
    // the template's annotations are not looked at; the Deployment's own are misplaced
    // (not validated: the bad proxy config is not reported), the inject one also deprecated
    let got: Vec<(&str, &str)> = found.iter().map(|d| (d.code, d.path.as_str())).collect();
    assert_eq!(
        got,
        [
            ("IST0107", "metadata.annotations.proxy.istio.io/config"),
            ("IST0135", "metadata.annotations.sidecar.istio.io/inject"),
            ("IST0107", "metadata.annotations.sidecar.istio.io/inject"),
        ]
    );
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(
        found[0].help.as_deref(),
        Some(
            "annotations for the pods go in the pod template: `spec.template.metadata.annotations`"
        )
    );
    assert_eq!(
        found[1].message,
        r#"Annotation "sidecar.istio.io/inject" has been deprecated in favor of the "sidecar.istio.io/inject" label and may not work in future Istio versions."#
    );
}

#[test]
fn validators_good_and_bad_values() {
    let good = pod(
        "good",
        "",
        &[
            "sidecar.istio.io/interceptionMode: TPROXY",
            "status.sidecar.istio.io/port: '15020'",
            "readiness.status.sidecar.istio.io/initialDelaySeconds: '0'",
            "readiness.status.sidecar.istio.io/periodSeconds: '10'",
            "readiness.status.sidecar.istio.io/failureThreshold: '4294967295'",
            "traffic.sidecar.istio.io/includeOutboundIPRanges: '*'",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges: '10.0.0.0/8,fd00::/8'",
            "traffic.sidecar.istio.io/includeInboundPorts: '*'",
            "traffic.sidecar.istio.io/excludeInboundPorts: '8080, 9090'",
            "traffic.sidecar.istio.io/excludeOutboundPorts: ''",
            "prometheus.istio.io/merge-metrics: 'false'",
            "proxy.istio.io/config: '{holdApplicationUntilProxyStarts: true, concurrency: 4}'",
            // not validated by Istio
            "traffic.sidecar.istio.io/includeOutboundPorts: 'nonsense'",
        ],
    );
    assert_eq!(findings(&good), []);

    let bad = pod(
        "bad",
        "",
        &[
            "sidecar.istio.io/interceptionMode: tproxy",
            "status.sidecar.istio.io/port: '*'",
            "readiness.status.sidecar.istio.io/initialDelaySeconds: '-1'",
            "readiness.status.sidecar.istio.io/periodSeconds: '1.5'",
            "readiness.status.sidecar.istio.io/failureThreshold: '4294967296'",
            "traffic.sidecar.istio.io/includeOutboundIPRanges: '10.0.0.0'",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges: '*'",
            "traffic.sidecar.istio.io/includeInboundPorts: '80,'",
            "traffic.sidecar.istio.io/excludeInboundPorts: '65536'",
            "traffic.sidecar.istio.io/excludeOutboundPorts: 'x'",
            "prometheus.istio.io/merge-metrics: 'yes'",
            "proxy.istio.io/config: 'discoveryAddress: istiod'",
        ],
    );
    let found = findings(&bad);
    assert!(found
        .iter()
        .all(|f| f.code == "IST0125" && f.severity == "warning"));
    let messages: Vec<&str> = found.iter().map(|f| f.message.as_str()).collect();
    let mut want = vec![
        "Invalid annotation sidecar.istio.io/interceptionMode: interceptionMode invalid, use REDIRECT,TPROXY,NONE: tproxy",
        r#"Invalid annotation status.sidecar.istio.io/port: excludeInboundPorts invalid: failed parsing port '*': strconv.ParseUint: parsing "*": invalid syntax"#,
        r#"Invalid annotation readiness.status.sidecar.istio.io/initialDelaySeconds: strconv.ParseUint: parsing "-1": invalid syntax"#,
        r#"Invalid annotation readiness.status.sidecar.istio.io/periodSeconds: strconv.ParseUint: parsing "1.5": invalid syntax"#,
        r#"Invalid annotation readiness.status.sidecar.istio.io/failureThreshold: strconv.ParseUint: parsing "4294967296": value out of range"#,
        r#"Invalid annotation traffic.sidecar.istio.io/includeOutboundIPRanges: includeIPRanges invalid: failed parsing cidr '10.0.0.0': netip.ParsePrefix("10.0.0.0"): no '/'"#,
        r#"Invalid annotation traffic.sidecar.istio.io/excludeOutboundIPRanges: excludeIPRanges invalid: failed parsing cidr '*': netip.ParsePrefix("*"): no '/'"#,
        r#"Invalid annotation traffic.sidecar.istio.io/includeInboundPorts: includeInboundPorts invalid: failed parsing port '': failed parsing port '': strconv.ParseUint: parsing "": invalid syntax"#,
        r#"Invalid annotation traffic.sidecar.istio.io/excludeInboundPorts: excludeInboundPorts invalid: failed parsing port '65536': failed parsing port '65536': strconv.ParseUint: parsing "65536": value out of range"#,
        r#"Invalid annotation traffic.sidecar.istio.io/excludeOutboundPorts: excludeOutboundPorts invalid: failed parsing port 'x': failed parsing port 'x': strconv.ParseUint: parsing "x": invalid syntax"#,
        r#"Invalid annotation prometheus.istio.io/merge-metrics: strconv.ParseBool: parsing "yes": invalid syntax"#,
        "Invalid annotation proxy.istio.io/config: 1 error occurred:\n\t* invalid discovery address: unable to split \"istiod\": address istiod: missing port in address\n\n",
    ];
    let mut messages = messages;
    messages.sort();
    want.sort();
    assert_eq!(messages, want);
    // each finding points at its annotation's line
    for f in &found {
        let key = f.path.trim_start_matches("metadata.annotations.");
        let line = bad
            .lines()
            .position(|l| l.contains(&format!("{key}:")))
            .unwrap()
            + 1;
        assert_eq!(f.line as usize, line, "{key}");
    }
}

#[test]
fn inject_annotation_with_the_label_is_not_deprecated() {
    let yaml = pod(
        "with-label",
        "sidecar.istio.io/inject: 'true'",
        &["sidecar.istio.io/inject: 'true'"],
    ) + &pod(
        "without-label",
        "app: x",
        &["sidecar.istio.io/inject: 'true'"],
    );
    let found = findings(&yaml);
    assert_eq!(codes(&found), [("IST0135", "Pod/without-label")]);
    assert_eq!(found[0].severity, "info");
    assert_eq!(
        found[0].message,
        r#"Annotation "sidecar.istio.io/inject" has been deprecated in favor of the "sidecar.istio.io/inject" label and may not work in future Istio versions."#
    );
}

#[test]
fn any_annotations_go_anywhere_and_others_are_ignored() {
    let annotations = "annotations:
    galley.istio.io/analyze-suppress: IST0102
    gateway.istio.io/controller-version: '5'
    istio.io/rev: canary
    sidecar.istio.io/status: '{}'
    kubernetes.io/psp: privileged
    helm.sh/hook: test-success
    example.com/owner.istio.io: me";
    let yaml = format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: ns
  {annotations}
---
apiVersion: v1
kind: Service
metadata:
  name: svc
  {annotations}
spec: {{ports: [{{name: http, port: 80}}], selector: {{app: x}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: pod
  labels: {{app: x}}
  {annotations}
spec: {{containers: [{{name: app, image: app}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: deploy
  {annotations}
spec:
  selector: {{matchLabels: {{app: y}}}}
  template:
    metadata: {{labels: {{app: y}}}}
    spec: {{containers: [{{name: app, image: app}}]}}
"
    );
    assert_eq!(findings(&yaml), []);
}

#[test]
fn ingress_class_on_a_service_is_misplaced() {
    let found = findings(
        "apiVersion: v1
kind: Service
metadata:
  name: web
  annotations:
    kubernetes.io/ingress.class: istio
    networking.istio.io/traffic-distribution: PreferClose
    networking.istio.io/exportTo: '.'
spec: {ports: [{name: http, port: 80}], selector: {app: web}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
  annotations:
    networking.istio.io/traffic-distribution: PreferClose
    topology.istio.io/controlPlaneClusters: c1
spec: {containers: [{name: app, image: app}]}
",
    );
    let got: Vec<(&str, &str, &str, u32)> = found
        .iter()
        .map(|f| (f.code, f.object.as_str(), f.message.as_str(), f.line))
        .collect();
    assert_eq!(
        got,
        [
            (
                "IST0107",
                "Pod/web",
                "Misplaced annotation: networking.istio.io/traffic-distribution can only be applied to Service, ServiceEntry",
                17
            ),
            (
                "IST0107",
                "Pod/web",
                "Misplaced annotation: topology.istio.io/controlPlaneClusters can only be applied to Namespace",
                18
            ),
            (
                "IST0107",
                "Service/web",
                "Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress",
                6
            ),
        ]
    );
}

#[test]
fn unknown_annotations_suggest_the_known_one() {
    let loaded = load_str(
        &pod(
            "p",
            "",
            &["sidecar.istio.io/proxyCpu: 100m", "istio.io/dryrun: 'true'"],
        ),
        "p.yaml",
    );
    let found: Vec<Diagnostic> = analyze(&loaded.objects)
        .into_iter()
        .filter(|d| d.code == "IST0108")
        .collect();
    let got: Vec<(&str, Option<&str>)> = found
        .iter()
        .map(|d| (d.message.as_str(), d.help.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "Unknown annotation: istio.io/dryrun",
                Some("did you mean `istio.io/dry-run`?")
            ),
            (
                "Unknown annotation: sidecar.istio.io/proxyCpu",
                Some("did you mean `sidecar.istio.io/proxyCPU`?")
            ),
        ]
    );
}
