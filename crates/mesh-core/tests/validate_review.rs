//! Validation compared with istiod (webhook, CRD schema, istioctl analyze): valid config is
//! not refused, invalid config is, and messages are Istio's where Istio has one.

use mesh_core::diag::{Diagnostic, Severity};
use mesh_core::load::load_str;

/// Everything `meshctl validate` reports for `yaml` (load, validate, analyze).
fn check(yaml: &str) -> Vec<Diagnostic> {
    mesh_core::check(&load_str(yaml, "t.yaml"))
}

fn errors(ds: &[Diagnostic]) -> Vec<&Diagnostic> {
    ds.iter().filter(|d| d.is_error()).collect()
}

fn obj(kind: &str, spec: &str) -> String {
    let group = match kind {
        "AuthorizationPolicy" | "PeerAuthentication" | "RequestAuthentication" => {
            "security.istio.io/v1"
        }
        _ => "networking.istio.io/v1",
    };
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: {group}\nkind: {kind}\nmetadata: {{name: x, namespace: ns1}}\nspec:\n{spec}"
    )
}

/// Valid for istiod: no error (warnings and hints allowed).
#[track_caller]
fn accepted(kind: &str, spec: &str) -> Vec<Diagnostic> {
    let ds = check(&obj(kind, spec));
    assert!(errors(&ds).is_empty(), "{kind} `{spec}`: {ds:#?}");
    ds
}

/// Refused by istiod with `msg` (exact).
#[track_caller]
fn refused(kind: &str, spec: &str, msg: &str) {
    let ds = check(&obj(kind, spec));
    assert!(
        ds.iter().any(|d| d.is_error() && d.message == msg),
        "{kind} `{spec}`: want error {msg:?}, got {ds:#?}"
    );
}

// A. valid config that was refused

#[test]
fn a_delegate_virtual_service_alone_is_only_a_hint() {
    let ds = accepted(
        "VirtualService",
        "http: [{match: [{uri: {prefix: /a}}], route: [{destination: {host: a.ns1.svc.cluster.local}}]}]",
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!((ds[0].severity, ds[0].code), (Severity::Info, "IM0203"));
}

#[test]
fn references_outside_the_files_are_warnings() {
    // gateway in istio-system, subsets whose DestinationRule is elsewhere, a delegate
    let ds = accepted(
        "VirtualService",
        "hosts: [a.example.com]
gateways: [istio-system/ingressgateway]
http:
- match: [{uri: {prefix: /d}}]
  delegate: {name: child, namespace: other}
- route: [{destination: {host: reviews, subset: v1}}]",
    );
    let refs: Vec<&Diagnostic> = ds.iter().filter(|d| d.code == "IST0101").collect();
    assert_eq!(refs.len(), 3, "{ds:#?}");
    assert!(
        refs.iter().all(|d| d.severity == Severity::Warning),
        "{refs:#?}"
    );
}

#[test]
fn a_subset_missing_from_the_loaded_destination_rule_is_an_error() {
    let yaml = format!(
        "{}---\n{}",
        obj(
            "VirtualService",
            "hosts: [reviews]\nhttp: [{route: [{destination: {host: reviews, subset: v3}}]}]"
        ),
        obj(
            "DestinationRule",
            "host: reviews\nsubsets: [{name: v1, labels: {version: v1}}]"
        ),
    );
    let ds = check(&yaml);
    let e = errors(&ds);
    assert_eq!(e.len(), 1, "{ds:#?}");
    assert_eq!(e[0].code, "IST0101");
    assert_eq!(
        e[0].message,
        r#"Referenced host+subset in destinationrule not found: "reviews+v3""#
    );
}

#[test]
fn gateway_hosts_may_be_ips() {
    accepted(
        "Gateway",
        "servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['10.0.0.1', 'ns/192.168.1.1']}]",
    );
}

#[test]
fn auto_passthrough_sni_form_on_gateway_bound_tls_routes() {
    let host = "outbound_.8080_.v1_.reviews.default.svc.cluster.local";
    accepted(
        "VirtualService",
        &format!(
            "hosts: ['{host}']
gateways: [istio-system/eastwest]
tls:
- match: [{{sniHosts: ['{host}']}}]
  route: [{{destination: {{host: reviews.default.svc.cluster.local}}}}]"
        ),
    );
    // without TLS routes the host must be a domain
    refused(
        "VirtualService",
        &format!(
            "hosts: ['{host}']\ngateways: [istio-system/eastwest]\nhttp: [{{route: [{{destination: {{host: reviews}}}}]}}]"
        ),
        &format!(r#"domain name "{host}" invalid (label "outbound_" invalid)"#),
    );
}

#[test]
fn destination_rule_credential_name_checks_only_for_simple_and_mutual() {
    accepted(
        "DestinationRule",
        "host: a.example.com\ntrafficPolicy: {tls: {mode: DISABLE, credentialName: c, caCertificates: /ca.pem}}",
    );
    // an empty credentialName is unset: MUTUAL then needs the files
    refused(
        "DestinationRule",
        "host: a.example.com\ntrafficPolicy: {tls: {mode: MUTUAL, credentialName: ''}}",
        "client certificate required for mutual tls",
    );
    refused(
        "DestinationRule",
        "host: a.example.com\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: c, caCrl: /crl.pem}}",
        "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
    );
}

#[test]
fn port_zero_in_l4_matches_is_skipped() {
    accepted(
        "VirtualService",
        "hosts: [a.example.com]
tcp: [{match: [{port: 0}], route: [{destination: {host: a.example.com}}]}]
tls: [{match: [{port: 0, sniHosts: [a.example.com]}], route: [{destination: {host: a.example.com}}]}]",
    );
}

#[test]
fn authorization_policy_port_zero() {
    accepted(
        "AuthorizationPolicy",
        "rules:
- to: [{operation: {ports: ['0']}}]
  when: [{key: destination.port, values: ['0']}]",
    );
}

#[test]
fn header_operation_names_are_not_held_to_the_token_syntax() {
    let ds = accepted(
        "VirtualService",
        "hosts: [a.example.com]
http:
- route: [{destination: {host: a.example.com}}]
  headers:
    request: {set: {'x y': a}, remove: ['x/y']}
    response: {add: {'x y': b}}",
    );
    // inmesh cannot write them: a warning of its own, not IST0133
    assert_eq!(ds.len(), 3, "{ds:#?}");
    assert!(
        ds.iter()
            .all(|d| d.severity == Severity::Warning && d.code == "IM0013"),
        "{ds:#?}"
    );
    refused(
        "VirtualService",
        "hosts: [a.example.com]\nhttp: [{route: [{destination: {host: a.example.com}}], headers: {response: {set: {':path': a}}}}]",
        r#"invalid header ":path": header cannot have ":" prefix"#,
    );
    refused(
        "VirtualService",
        "hosts: [a.example.com]\nhttp: [{route: [{destination: {host: a.example.com}}], headers: {request: {remove: [Host]}}}]",
        r#"invalid header "Host": cannot set Host header"#,
    );
}

#[test]
fn duplicate_hosts_compare_case_sensitively_and_gateway_selectors_are_not_label_checked() {
    accepted(
        "VirtualService",
        "hosts: [Foo.com, foo.com]\nhttp: [{route: [{destination: {host: foo.com}}]}]",
    );
    let ds = accepted(
        "Gateway",
        "selector: {'': x, app: '*'}\nservers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]",
    );
    // (and IST0101: istioctl's stand-in ingress gateway does not have these labels)
    assert!(
        ds.iter().all(|d| d.code == "IM0100" || d.code == "IST0101"),
        "{ds:#?}"
    );
}

// B. invalid config that was accepted

#[test]
fn sidecar_egress_hosts() {
    refused(
        "Sidecar",
        "egress: [{hosts: [ns1/reviews]}]",
        "short names (non FQDN) are not allowed",
    );
    refused(
        "Sidecar",
        "egress: [{hosts: ['~ns/a.example.com']}]",
        r#"invalid namespace value "~ns" in sidecar"#,
    );
    accepted(
        "Sidecar",
        "egress: [{hosts: ['ns1/*', 'ns2/*.foo', '~/*', 'istio-system/*.svc.cluster.local']}]",
    );
}

#[test]
fn pseudo_header_matches() {
    refused(
        "VirtualService",
        "hosts: [a.example.com]\nhttp: [{match: [{headers: {':foo': {exact: a}}}], route: [{destination: {host: a.example.com}}]}]",
        "header name :foo is not a valid header name",
    );
    accepted(
        "VirtualService",
        "hosts: [a.example.com]\nhttp: [{match: [{headers: {':method': {exact: GET}, ':path': {prefix: /a}}}], route: [{destination: {host: a.example.com}}]}]",
    );
}

#[test]
fn metadata_namespace_and_labels() {
    let ds = check(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: x
  namespace: Prod
  labels: {'bad key': v, app: 'not ok!'}
spec: {host: a.example.com}
",
    );
    let paths: Vec<&str> = errors(&ds).iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "metadata.namespace",
            "metadata.labels.bad key",
            "metadata.labels.app"
        ],
        "{ds:#?}"
    );
}

#[test]
fn gateway_credential_names_at_most_two() {
    refused(
        "Gateway",
        "servers:
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [a.example.com]
  tls: {mode: SIMPLE, credentialNames: [a, b, c]}",
        "spec.servers[0].tls.credentialNames: Too many: 3: must have at most 2 items",
    );
}

#[test]
fn unmodelled_istio_kinds_under_a_wrong_group_version() {
    let ds = check(
        "apiVersion: networking.istio.io/v1
kind: Telemetry
metadata: {name: x}
spec: {}
---
apiVersion: security.istio.io/v1
kind: EnvoyFilter
metadata: {name: x}
spec: {}
---
apiVersion: networking.istio.io/v1alpha3
kind: WasmPlugin
metadata: {name: x}
spec: {}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: x}
spec: {}
",
    );
    let e = errors(&ds);
    assert_eq!(e.len(), 3, "{ds:#?}");
    assert_eq!(
        e[0].message,
        r#"no matches for kind "Telemetry" in version "networking.istio.io/v1": Telemetry is served as telemetry.istio.io/v1, v1alpha1"#
    );
    // the right group/version is skipped with a warning
    assert!(
        ds.iter().any(|d| d.code == "IM0007" && d.line == 17),
        "{ds:#?}"
    );
}

#[test]
fn service_entry_target_port_with_none_and_export_to() {
    let ds = accepted(
        "ServiceEntry",
        "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]\nresolution: NONE",
    );
    // Istio 1.22+ sends NONE traffic to the targetPort (`ENABLE_RESOLUTION_NONE_TARGET_PORT`)
    assert!(ds.iter().all(|d| !d.path.contains("targetPort")), "{ds:#?}");
    let ds = check(&obj(
        "ServiceEntry",
        "hosts: [a.example.com]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS\nexportTo: ['~', '*']",
    ));
    let msgs: Vec<&str> = errors(&ds).iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "cannot have both public (*) and non-public exportTo values for a resource",
            "cannot export service entry to no one (~) and someone"
        ],
        "{ds:#?}"
    );
}

// C. messages

#[test]
fn api_version_without_version() {
    let ds = check(
        "apiVersion: networking.istio.io
kind: VirtualService
metadata: {name: x}
spec: {hosts: [a.com], http: [{route: [{destination: {host: a.com}}]}]}
",
    );
    assert_eq!(
        errors(&ds)[0].message,
        "apiVersion `networking.istio.io` has no version: VirtualService is served as networking.istio.io/v1, v1beta1, v1alpha3"
    );
}

#[test]
fn unknown_and_removed_kinds_by_group() {
    let ds = check(
        "apiVersion: security.istio.io/v1
kind: Foo
metadata: {name: x}
spec: {}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: x}
spec: {}
---
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: x}
spec: {}
",
    );
    let e = errors(&ds);
    assert_eq!(e.len(), 3, "{ds:#?}");
    assert_eq!(
        e[0].help.as_deref(),
        Some("known kinds in security.istio.io: PeerAuthentication, AuthorizationPolicy, RequestAuthentication")
    );
    assert_eq!(
        e[1].message,
        "ServiceRole (rbac.istio.io) was removed from Istio"
    );
    assert_eq!(
        e[1].help.as_deref(),
        Some("it was replaced by AuthorizationPolicy (security.istio.io/v1)")
    );
    assert!(e[2]
        .help
        .as_deref()
        .unwrap()
        .contains("PeerAuthentication and RequestAuthentication"));
}

#[test]
fn envoy_formatters_inmesh_does_not_expand() {
    let ds = accepted(
        "VirtualService",
        r#"hosts: [a.example.com]
http:
- route: [{destination: {host: a.example.com}}]
  headers:
    request:
      set:
        x-a: '%UPSTREAM_METADATA(["a","b"])%'
        x-b: '%FILTER_STATE(x:PLAIN)%'
        x-c: '%NOT_AN_ENVOY_OPERATOR%'"#,
    );
    let by_header = |h: &str| {
        ds.iter()
            .find(|d| d.path.ends_with(h))
            .unwrap_or_else(|| panic!("{h}: {ds:#?}"))
    };
    for h in ["x-a", "x-b"] {
        let d = by_header(h);
        assert_eq!(d.code, "IM0013", "{d:#?}");
        assert!(d.message.contains("inmesh does not expand"), "{d:#?}");
        assert!(!d.message.contains("Envoy rejects"), "{d:#?}");
    }
    let d = by_header("x-c");
    assert!(d.message.contains("Envoy rejects it"), "{d:#?}");
    assert_eq!(d.code, "IM0100");
}

#[test]
fn lints_do_not_use_the_webhook_code() {
    let ds = accepted(
        "VirtualService",
        "hosts: [a.example.com]\nhttp: [{route: [{destination: {host: a.example.com}}], fault: {delay: {percentage: {value: 10}}}}]",
    );
    let d = ds
        .iter()
        .find(|d| {
            d.message
                .starts_with("delay configured, but fixedDelay not set")
        })
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert_eq!(d.code, "IM0100");
}

#[test]
fn istio_error_texts() {
    refused(
        "AuthorizationPolicy",
        "rules: [{to: [{operation: {ports: [abc]}}]}]",
        r#"invalid policy x.ns1: bad port (abc): strconv.ParseUint: parsing "abc": invalid syntax"#,
    );
    refused(
        "AuthorizationPolicy",
        "rules: [{from: [{source: {ipBlocks: [1.2.3.4/33]}}]}]",
        r#"invalid policy x.ns1: bad CIDR range (1.2.3.4/33): netip.ParsePrefix("1.2.3.4/33"): prefix length out of range"#,
    );
    refused(
        "AuthorizationPolicy",
        "rules: [{from: [{source: {ipBlocks: ['']}}]}]",
        "invalid policy x.ns1: empty value not allowed, found in IpBlocks",
    );
    refused(
        "Sidecar",
        "ingress: [{port: {number: 80, name: http, protocol: HTTP}, defaultEndpoint: 'unix://relative'}]",
        "relative is not an absolute path to a file",
    );
    let ds = check(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: x, namespace: ns1, annotations: {istio.io/dry-run: 'true'}}
spec: {host: a.example.com}
",
    );
    assert_eq!(
        errors(&ds)[0].message,
        "ns1/x has unsupported annotation istio.io/dry-run, please remove the annotation"
    );
}

#[test]
fn generate_name_objects_are_named_in_messages() {
    let dr = |meta: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {meta}\nspec: {{host: a.example.com}}\n")
    };
    let ds = check(&format!(
        "{}---\n{}---\n{}",
        dr("{name: a}"),
        dr("{generateName: b-}"),
        dr("{generateName: c-}")
    ));
    let d = ds
        .iter()
        .find(|d| d.code == "IM0201")
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert!(
        d.message.starts_with("DestinationRules a, b-*, c-* "),
        "{d:#?}"
    );
    // two generateName objects are not one object defined twice
    assert!(!ds.iter().any(|d| d.code == "IM0202"), "{ds:#?}");
}

#[test]
fn fourth_sweep_against_istiod_s_validation() {
    // ParseJwksURI: Go's url.Parse refuses these, with its messages
    refused(
        "RequestAuthentication",
        "jwtRules: [{issuer: a, jwksUri: 'https://example.com:abc/jwks'}]",
        "parse \"https://example.com:abc/jwks\": invalid port \":abc\" after host",
    );
    refused(
        "RequestAuthentication",
        "jwtRules: [{issuer: a, jwksUri: 'https://exa mple.com/jwks'}]",
        "parse \"https://exa mple.com/jwks\": invalid character \" \" in host name",
    );
    refused(
        "RequestAuthentication",
        "jwtRules: [{issuer: a, jwksUri: 'https://example.com/%zz'}]",
        "parse \"https://example.com/%zz\": invalid URL escape \"%zz\"",
    );
    accepted(
        "RequestAuthentication",
        "jwtRules: [{issuer: a, jwksUri: 'https://example.com:8443/a%20b/jwks?x=1'}]",
    );
    // a proto `bytes` field is base64
    refused(
        "VirtualService",
        "hosts: [r]\nhttp: [{directResponse: {status: 200, body: {bytes: 'not base64!!'}}}]",
        "invalid value for bytes field: \"not base64!!\" is not base64",
    );
    accepted(
        "VirtualService",
        "hosts: [r]\nhttp: [{directResponse: {status: 200, body: {bytes: aGVsbG8=}}}]",
    );
    // sourceNamespace is checked on HTTP matches only
    accepted(
        "VirtualService",
        "hosts: [r]\ntcp: [{match: [{sourceNamespace: bad_ns}], route: [{destination: {host: r}}]}]",
    );
    refused(
        "VirtualService",
        "hosts: [r]\nhttp: [{match: [{sourceNamespace: bad_ns}], route: [{destination: {host: r}}]}]",
        "sourceNamespace match bad_ns is invalid",
    );
    // ValidateDuration checks the minimum before the precision
    refused(
        "VirtualService",
        "hosts: [r]\nhttp: [{route: [{destination: {host: r}}], retries: {attempts: 1, perTryTimeout: 0.5ms}}]",
        "duration must be greater than 1ms",
    );
    // validateExportTo works on the set of entries, `.` standing for the namespace
    refused(
        "DestinationRule",
        "host: details\nworkloadSelector: {matchLabels: {app: x}}\nexportTo: [., ns1]",
        "duplicate entries in exportTo for entry ns1",
    );
    refused(
        "DestinationRule",
        "host: details\nexportTo: [ns1, .]",
        "duplicate entries in exportTo: . and current namespace ns1",
    );
    // validateAuthorityRewrite starts from the rewrite's authority
    refused(
        "VirtualService",
        "hosts: [r]\nhttp: [{rewrite: {authority: foo}, headers: {request: {set: {host: bar}}}, route: [{destination: {host: r}}]}]",
        "authority header cannot be set multiple times: have \"foo\", attempting to set \"bar\"",
    );
}

#[test]
fn an_entry_opting_out_of_ip_autoallocation_needs_addresses_for_tcp() {
    let se = |labels: &str| {
        check(&format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: ns1{labels}}}
spec:
  hosts: [db.example.com]
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  resolution: DNS
"
        ))
    };
    let warned = |ds: &[Diagnostic]| {
        ds.iter()
            .any(|d| d.message.starts_with("addresses are required"))
    };
    assert!(!warned(&se("")));
    assert!(warned(&se(
        ", labels: {networking.istio.io/enable-autoallocate-ip: \"false\"}"
    )));
}
