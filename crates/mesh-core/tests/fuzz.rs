//! Property tests: the loader, validation and analysis never panic, whatever the input.

use mesh_core::load::Loader;
use proptest::prelude::*;

fn check_everything(text_or_bytes: &[u8]) {
    let loaded = Loader::default().load_bytes(text_or_bytes, "fuzz.yaml");
    let diags = mesh_core::check(&loaded);
    for d in &diags {
        // Rendering must not panic either, with or without the source.
        let _ = loaded.sources.render(d);
        let _ = d.render(None);
    }
}

const FRAGMENTS: &[&str] = &[
    "apiVersion: networking.istio.io/v1\n",
    "apiVersion: security.istio.io/v1beta1\n",
    "apiVersion: networking.istio/v1alpha3\n",
    "apiVersion: v1\n",
    "apiVersion: apps/v1\n",
    "kind: VirtualService\n",
    "kind: DestinationRule\n",
    "kind: Gateway\n",
    "kind: ServiceEntry\n",
    "kind: Sidecar\n",
    "kind: AuthorizationPolicy\n",
    "kind: PeerAuthentication\n",
    "kind: RequestAuthentication\n",
    "kind: WorkloadEntry\n",
    "kind: List\n",
    "kind: Service\n",
    "kind: Deployment\n",
    "items:\n",
    "metadata:\n",
    "  name: x\n",
    "  namespace: ",
    "spec:\n",
    "  hosts: [",
    "  host: ",
    "  http:\n",
    "  - route:\n",
    "    - destination: {host: r, subset: ",
    "      weight: ",
    "  subsets:\n",
    "  - name: v1\n",
    "  servers:\n",
    "  - port: {number: ",
    "    hosts: ['*']\n",
    "  rules:\n",
    "  - from: [{source: {principals: [",
    "  - when: [{key: ",
    "  selector: {matchLabels: {app: a}}\n",
    "  portLevelMtls: {",
    "  trafficPolicy: {tls: {mode: ",
    "  timeout: ",
    "  match: [{uri: {regex: ",
    "  jwtRules: [{issuer: a, jwks: ",
    "ISTIO_MUTUAL",
    "SIMPLE",
    "MUTUAL",
    "STRICT",
    "1s",
    "0.5ms",
    "-3h",
    "99999999999h",
    "1e999",
    "0x1F",
    "-1",
    "65536",
    "0",
    "3.5",
    "~",
    "null",
    "'(unclosed'",
    "'a{2000}'",
    "\"\\u0000\"",
    "'\\'",
    "*",
    "/",
    "[",
    "]",
    "{",
    "}",
    ",",
    ": ",
    "- ",
    "&a ",
    "*a",
    "&b [*a, *a, *a]\n",
    "!!str ",
    "!!binary ",
    "? ",
    "|\n  text\n",
    ">\n",
    "---\n",
    "...\n",
    "\n",
    "  ",
    "\t",
    "#c\n",
    "é",
    "\u{feff}",
    "%YAML 1.2\n",
    "request.headers[",
    "source.ip",
    "spiffe://",
    "unix:///",
    "10.0.0.0/8",
    "::1",
];

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
            1 => "[a-zA-Z0-9_./:*{}\\[\\]'\" -]{0,12}",
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..80,
    )
    .prop_map(|v| v.concat())
}

/// A real, valid document to mutate.
const BASE: &str = include_str!("fixtures/seed/seed-valid.yaml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
    ))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_everything(&bytes);
    }

    #[test]
    fn arbitrary_yamlish_text_never_panics(text in yamlish()) {
        check_everything(text.as_bytes());
    }

    #[test]
    fn mutated_real_config_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(FRAGMENTS)), 1..8)
    ) {
        let mut text = BASE.to_owned();
        for (at, op, frag) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            match op {
                0 => text.insert_str(i, frag),
                1 => {
                    let mut end = (i + frag.len()).min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.replace_range(i..end, "");
                }
                _ => {
                    let mut end = (i + 1).min(text.len());
                    while !text.is_char_boundary(end) {
                        end += 1;
                    }
                    text.replace_range(i..end, frag);
                }
            }
        }
        check_everything(text.as_bytes());
    }

    #[test]
    fn structured_values_never_panic(
        host in "[a-zA-Z0-9.*/_:-]{0,20}",
        subset in "[a-zA-Z0-9._-]{0,10}",
        weight in any::<i64>(),
        timeout in "[0-9.]{0,6}(ns|us|ms|s|m|h|x|)",
        header in "[a-zA-Z0-9:@\\[\\]._-]{0,20}",
        regex in "[a-z()\\[\\]{}*+?|\\\\0-9,^$.]{0,20}",
        key in "[a-z.\\[\\]]{0,25}",
        port in any::<i64>(),
    ) {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v}}\nspec:\n  hosts: [{h}]\n  http:\n  - match: [{{headers: {{{hd}: {{regex: {re}}}}}}}]\n    timeout: {t}\n    route:\n    - destination: {{host: {h}, subset: {s}, port: {{number: {port}}}}}\n      weight: {weight}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec:\n  host: {h}\n  subsets: [{{name: {s}}}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a}}\nspec:\n  rules: [{{when: [{{key: {k}, values: [{h}]}}], to: [{{operation: {{paths: [{h}], ports: [{ps}]}}}}]}}]\n",
            h = q(&host), s = q(&subset), t = q(&timeout), hd = q(&header), re = q(&regex), k = q(&key), ps = q(&port.to_string()),
        );
        check_everything(yaml.as_bytes());
    }
}
