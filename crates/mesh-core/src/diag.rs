//! Diagnostics: what loading, validation and analysis report, with a rustc-like renderer and
//! a JSON form.
//!
//! # Codes
//!
//! Analyzer findings use `istioctl analyze` codes where one fits (`IST0101`
//! ReferencedResourceNotFound, `IST0109`, `IST0128`, ...). Per-object validation (the checks
//! istiod's validating webhook makes) uses `IST0106` (SchemaValidationError, which is how
//! `istioctl analyze` reports webhook failures) for errors and webhook warnings alike, with
//! Istio's own message. Problems Istio has no code for use our own `IM` codes:
//!
//! | code | severity | meaning |
//! | --- | --- | --- |
//! | `IM0001` | error | YAML/JSON syntax error |
//! | `IM0002` | error | a document is not a Kubernetes object (not a mapping, no `kind`/`apiVersion`) |
//! | `IM0003` | error | unknown field (with "did you mean") |
//! | `IM0004` | error | wrong type or invalid value for a field (schema) |
//! | `IM0005` | error | wrong `apiVersion` for an Istio kind (group typo, unserved version) |
//! | `IM0006` | error | unknown kind in an Istio API group |
//! | `IM0007` | warning | an Istio kind inmesh does not model (EnvoyFilter, Telemetry, ...): skipped |
//! | `IM0008` | error | duplicate key in a mapping |
//! | `IM0009` | error | input limits exceeded (nesting depth, alias expansion) |
//! | `IM0010` | error | unreadable file or directory |
//! | `IM0011` | error | missing `metadata.name` |
//! | `IM0012` | warning | a Kubernetes object we keep for the registry could not be read: ignored |
//! | `IM0100` | info | lint: valid for Istio but probably not what was meant |

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::Serialize;

use crate::model::Location;

/// How bad a diagnostic is.
///
/// Severities order from worst to mildest, so sorting puts errors first; they display in
/// lower case, as in rendered diagnostics.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::Severity;
///
/// // an unknown field is an error; an unmodelled Istio kind is skipped with a warning
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1alpha3
/// kind: EnvoyFilter
/// metadata: {name: lua}
/// spec: {}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsetz: []}
/// ",
///     "mixed.yaml",
/// );
/// let severities: Vec<Severity> = loaded.diagnostics.iter().map(|d| d.severity).collect();
/// assert_eq!(severities, [Severity::Warning, Severity::Error]);
/// assert!(Severity::Error < Severity::Warning && Severity::Warning < Severity::Info);
/// assert_eq!(Severity::Warning.to_string(), "warning");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is rejected (Istio would reject it, or it cannot work).
    Error,
    /// Accepted, but Istio warns or it probably does not do what was meant.
    Warning,
    /// A hint.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// Diagnostic codes used by this crate (see the module docs).
///
/// Compare a [`Diagnostic::code`] against these constants rather than against literals.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::codes;
///
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}, weight: -1}]}]}
/// ",
///     "vs.yaml",
/// );
/// assert!(loaded.diagnostics.is_empty()); // the schema is fine...
/// let found = mesh_core::validate::validate_all(&loaded.objects);
/// // ...but istiod's webhook rejects a negative weight
/// assert_eq!(found[0].code, codes::VALIDATION);
/// assert_eq!(codes::VALIDATION, "IST0106");
/// ```
pub mod codes {
    /// YAML/JSON syntax error.
    pub const SYNTAX: &str = "IM0001";
    /// Not a Kubernetes object.
    pub const NOT_AN_OBJECT: &str = "IM0002";
    /// Unknown field.
    pub const UNKNOWN_FIELD: &str = "IM0003";
    /// Wrong type or invalid value.
    pub const INVALID_VALUE: &str = "IM0004";
    /// Wrong apiVersion for an Istio kind.
    pub const API_VERSION: &str = "IM0005";
    /// Unknown kind in an Istio group.
    pub const UNKNOWN_KIND: &str = "IM0006";
    /// Istio kind not modelled; skipped.
    pub const UNSUPPORTED_KIND: &str = "IM0007";
    /// Duplicate key.
    pub const DUPLICATE_KEY: &str = "IM0008";
    /// Input limits exceeded.
    pub const LIMITS: &str = "IM0009";
    /// Unreadable path.
    pub const IO: &str = "IM0010";
    /// Missing metadata.name.
    pub const MISSING_NAME: &str = "IM0011";
    /// A Kubernetes object could not be read; ignored.
    pub const KUBE_IGNORED: &str = "IM0012";
    /// Lint hint.
    pub const LINT: &str = "IM0100";
    /// istiod webhook validation (IST0106 SchemaValidationError).
    pub const VALIDATION: &str = "IST0106";
    /// ReferencedResourceNotFound.
    pub const REFERENCED_RESOURCE_NOT_FOUND: &str = "IST0101";
    /// GatewayPortNotOnWorkload.
    pub const GATEWAY_PORT_NOT_ON_WORKLOAD: &str = "IST0104";
    /// ConflictingMeshGatewayVirtualServiceHosts.
    pub const CONFLICTING_MESH_GATEWAY_VS_HOSTS: &str = "IST0109";
    /// ConflictingSidecarWorkloadSelectors.
    pub const CONFLICTING_SIDECAR_SELECTORS: &str = "IST0110";
    /// MultipleSidecarsWithoutWorkloadSelectors.
    pub const MULTIPLE_SIDECARS_WITHOUT_SELECTOR: &str = "IST0111";
    /// VirtualServiceDestinationPortSelectorRequired.
    pub const DESTINATION_PORT_REQUIRED: &str = "IST0112";
    /// NoMatchingWorkloadsFound.
    pub const NO_MATCHING_WORKLOADS: &str = "IST0127";
    /// NoServerCertificateVerificationDestinationLevel.
    pub const NO_SERVER_CERT_VERIFICATION_DR: &str = "IST0128";
    /// NoServerCertificateVerificationPortLevel.
    pub const NO_SERVER_CERT_VERIFICATION_PORT: &str = "IST0129";
    /// VirtualServiceUnreachableRule.
    pub const VS_UNREACHABLE_RULE: &str = "IST0130";
    /// VirtualServiceIneffectiveMatch.
    pub const VS_INEFFECTIVE_MATCH: &str = "IST0131";
    /// VirtualServiceHostNotFoundInGateway.
    pub const VS_HOST_NOT_IN_GATEWAY: &str = "IST0132";
    /// ConflictingGateways.
    pub const CONFLICTING_GATEWAYS: &str = "IST0145";
    /// InvalidGatewayCredential.
    pub const INVALID_GATEWAY_CREDENTIAL: &str = "IST0161";
    /// IneffectivePolicy.
    pub const INEFFECTIVE_POLICY: &str = "IST0167";
    /// UnknownDestinationRuleHost.
    pub const UNKNOWN_DR_HOST: &str = "IST0174";
    /// MultipleDestinationRulesForHost (inmesh code; Istio merges them, see §3.2).
    pub const MULTIPLE_DRS_FOR_HOST: &str = "IM0201";
}

/// One finding, tied to a file position and a field path.
///
/// Loading ([`crate::load`]), validation ([`crate::validate`]) and analysis
/// ([`crate::analyze`]) all report `Diagnostic`s. Show one with [`Diagnostic::render`] (or
/// [`Sources::render`]), as a one-liner with `Display`, or as JSON with `serde`.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::{codes, Severity};
///
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews, subnet: v1}
/// ",
///     "reviews.yaml",
/// );
/// let d = &loaded.diagnostics[0];
/// assert_eq!(d.severity, Severity::Error);
/// assert_eq!(d.code, codes::UNKNOWN_FIELD);
/// assert_eq!((&*d.file, d.line, d.column), ("reviews.yaml", 8, 36));
/// assert_eq!(d.path, "spec.http[0].route[0].destination.subnet");
/// assert!(d.help.as_deref().unwrap().starts_with("did you mean `subset`?"));
/// assert!(d.is_error());
/// assert_eq!(
///     d.to_string(),
///     "error[IM0003]: unknown field `subnet` in `spec.http[0].route[0].destination` \
///      (reviews.yaml:8:36 spec.http[0].route[0].destination.subnet)"
/// );
/// let json = serde_json::to_value(d).unwrap();
/// assert_eq!(json["severity"], "error");
/// assert_eq!(json["line"], 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Severity.
    pub severity: Severity,
    /// Code (`IST0101`, `IM0003`, ...).
    pub code: &'static str,
    /// What is wrong, in words a user acts on.
    pub message: String,
    /// File name as given to the loader.
    #[serde(serialize_with = "ser_arc_str")]
    pub file: Arc<str>,
    /// Line (1-based; 0 when unknown).
    pub line: u32,
    /// Column (1-based; 0 when unknown).
    pub column: u32,
    /// Field path (`spec.http[0].route[1].destination.subset`); empty for file-level problems.
    pub path: String,
    /// A hint ("did you mean `subset`?").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

fn ser_arc_str<S: serde::Serializer>(s: &Arc<str>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

impl Diagnostic {
    /// A diagnostic at a position.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Diagnostic, Severity};
    /// use mesh_core::model::Location;
    ///
    /// let d = Diagnostic::new(
    ///     Severity::Warning,
    ///     codes::LINT,
    ///     "timeout is longer than the retry budget",
    ///     "vs.yaml".into(),
    ///     Location { line: 12, column: 14 },
    ///     "spec.http[0].timeout",
    /// );
    /// assert!(!d.is_error());
    /// assert_eq!(d.help, None);
    /// assert_eq!(
    ///     d.to_string(),
    ///     "warning[IM0100]: timeout is longer than the retry budget (vs.yaml:12:14 spec.http[0].timeout)"
    /// );
    /// ```
    pub fn new(
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
        file: Arc<str>,
        at: Location,
        path: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            file,
            line: at.line,
            column: at.column,
            path: path.into(),
            help: None,
        }
    }

    /// An error at a position.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::diag::{codes, Diagnostic};
    /// use mesh_core::model::Location;
    ///
    /// let d = Diagnostic::error(
    ///     codes::UNKNOWN_FIELD,
    ///     "unknown field `subnet`",
    ///     "vs.yaml".into(),
    ///     Location { line: 3, column: 9 },
    ///     "spec.http[0].route[0].destination.subnet",
    /// )
    /// .with_help("did you mean `subset`?");
    /// assert!(d.is_error());
    /// assert_eq!(d.help.as_deref(), Some("did you mean `subset`?"));
    /// ```
    pub fn error(
        code: &'static str,
        message: impl Into<String>,
        file: Arc<str>,
        at: Location,
        path: impl Into<String>,
    ) -> Self {
        Self::new(Severity::Error, code, message, file, at, path)
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders like rustc:
    ///
    /// ```text
    /// error[IM0003]: unknown field `subnet`
    ///   --> reviews.yaml:14:9
    ///    |
    /// 14 |         subnet: v1
    ///    |         ^^^^^^ spec.http[0].route[0].destination.subnet
    ///    = help: did you mean `subset`?
    /// ```
    ///
    /// `source` is the file's text, when available, for the source line.
    ///
    /// # Examples
    ///
    /// ```
    /// let text = "\
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - route:
    ///     - destination:
    ///         host: reviews
    ///         subnet: v1
    /// ";
    /// let loaded = mesh_core::load::load_str(text, "reviews.yaml");
    /// let d = &loaded.diagnostics[0];
    /// let out = d.render(Some(text));
    /// let mut lines = out.lines();
    /// assert_eq!(
    ///     lines.next(),
    ///     Some("error[IM0003]: unknown field `subnet` in `spec.http[0].route[0].destination`")
    /// );
    /// assert_eq!(lines.next(), Some("  --> reviews.yaml:10:9"));
    /// assert_eq!(lines.next(), Some("   |"));
    /// assert_eq!(lines.next(), Some("10 |         subnet: v1"));
    /// assert_eq!(
    ///     lines.next(),
    ///     Some("   |         ^^^^^^ spec.http[0].route[0].destination.subnet")
    /// );
    /// assert!(lines.next().unwrap().starts_with("   = help: did you mean `subset`?"));
    ///
    /// // without the text: the position and the field path only
    /// let short = d.render(None);
    /// assert!(short.contains(" --> reviews.yaml:10:9\n"));
    /// assert!(short.contains(" = at: spec.http[0].route[0].destination.subnet\n"));
    /// ```
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}[{}]: {}", self.severity, self.code, self.message);
        let line_text = source
            .filter(|_| self.line > 0)
            .and_then(|s| s.lines().nth(self.line as usize - 1));
        let gutter = if line_text.is_some() {
            self.line.to_string().len()
        } else {
            1
        };
        let pad = " ".repeat(gutter);
        if self.line > 0 {
            let _ = writeln!(out, "{pad}--> {}:{}:{}", self.file, self.line, self.column);
        } else {
            let _ = writeln!(out, "{pad}--> {}", self.file);
        }
        if let Some(text) = line_text {
            let text = text.trim_end_matches('\r');
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", self.line, text);
            let col = (self.column.max(1) - 1) as usize;
            let prefix: String = text
                .chars()
                .take(col)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let width = text
                .chars()
                .skip(col)
                .take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | ']' | '}'))
                .count()
                .max(1);
            let label = if self.path.is_empty() {
                String::new()
            } else {
                format!(" {}", self.path)
            };
            let _ = writeln!(out, "{pad} | {prefix}{}{label}", "^".repeat(width));
        } else if !self.path.is_empty() {
            let _ = writeln!(out, "{pad} = at: {}", self.path);
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: {} ({}:{}:{}",
            self.severity, self.code, self.message, self.file, self.line, self.column
        )?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        f.write_str(")")
    }
}

/// The text of loaded files, for rendering source lines.
///
/// Every load fills [`Loaded::sources`](crate::load::Loaded::sources); keep it to render
/// diagnostics found later (validation, analysis) with their source lines.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], timeout: 500us}]}
/// ",
///     "vs.yaml",
/// );
/// assert_eq!(loaded.sources.get("vs.yaml").map(|t| t.lines().count()), Some(4));
/// // istiod rejects sub-millisecond timeouts
/// let found = mesh_core::validate::validate_all(&loaded.objects);
/// let out = loaded.sources.render(&found[0]);
/// assert!(out.starts_with("error[IST0106]: "), "{out}");
/// assert!(out.contains("4 | spec: {hosts: [reviews]"), "{out}");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: HashMap<Arc<str>, Arc<str>>,
}

impl Sources {
    /// Records a file's text.
    pub fn insert(&mut self, file: Arc<str>, text: Arc<str>) {
        self.files.insert(file, text);
    }

    /// The text of `file`.
    pub fn get(&self, file: &str) -> Option<&str> {
        self.files.get(file).map(|t| &**t)
    }

    /// Adds all files of `other`.
    pub fn extend(&mut self, other: Sources) {
        self.files.extend(other.files);
    }

    /// Renders `diag` with its source line.
    pub fn render(&self, diag: &Diagnostic) -> String {
        diag.render(self.get(&diag.file))
    }
}

/// Sorts diagnostics by file, line, column, then severity (stable for equal keys).
///
/// # Examples
///
/// ```
/// use mesh_core::diag::{codes, sort, Diagnostic, Severity};
/// use mesh_core::model::Location;
///
/// let at = |line, column| Location { line, column };
/// let mut diags = vec![
///     Diagnostic::new(Severity::Info, codes::LINT, "b", "b.yaml".into(), at(1, 1), ""),
///     Diagnostic::new(Severity::Warning, codes::LINT, "late", "a.yaml".into(), at(9, 3), ""),
///     Diagnostic::new(Severity::Warning, codes::LINT, "warn", "a.yaml".into(), at(2, 5), ""),
///     Diagnostic::error(codes::SYNTAX, "err", "a.yaml".into(), at(2, 5), ""),
/// ];
/// sort(&mut diags);
/// let order: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
/// assert_eq!(order, ["err", "warn", "late", "b"]);
/// ```
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.severity).cmp(&(&b.file, b.line, b.column, b.severity))
    });
}

/// Suggests the candidate closest to `word` (Jaro-Winkler ≥ 0.8 or Levenshtein ≤ 2, and
/// never the word itself), for "did you mean" help.
///
/// # Examples
///
/// ```
/// use mesh_core::diag::did_you_mean;
///
/// let fields = ["host", "subset", "port"];
/// assert_eq!(did_you_mean("subnet", fields), Some("subset"));
/// assert_eq!(did_you_mean("Host", fields), Some("host")); // case differs
/// assert_eq!(did_you_mean("weight", fields), None); // nothing close
/// assert_eq!(did_you_mean("ROUNDROBIN", ["ROUND_ROBIN", "RANDOM"]), Some("ROUND_ROBIN"));
/// ```
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    let mut best: Option<(&'a str, f64)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let lc = c.to_ascii_lowercase();
        let score = if lc == lw {
            2.0
        } else {
            let lev = strsim::levenshtein(&lw, &lc);
            let jw = strsim::jaro_winkler(&lw, &lc);
            if lev <= 2 && lev < lc.len().max(1) || jw >= 0.85 {
                jw + if lev <= 2 { 0.5 } else { 0.0 }
            } else {
                continue;
            }
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag() -> Diagnostic {
        Diagnostic::error(
            codes::UNKNOWN_FIELD,
            "unknown field `subnet`",
            "vs.yaml".into(),
            Location { line: 3, column: 9 },
            "spec.http[0].route[0].destination.subnet",
        )
        .with_help("did you mean `subset`?")
    }

    #[test]
    fn renders_like_rustc() {
        let src = "a: 1\nb:\n        subnet: v1\n";
        let out = diag().render(Some(src));
        let expected = "error[IM0003]: unknown field `subnet`\n --> vs.yaml:3:9\n  |\n3 |         subnet: v1\n  |         ^^^^^^ spec.http[0].route[0].destination.subnet\n  = help: did you mean `subset`?\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn renders_without_source() {
        let out = diag().render(None);
        assert!(out.contains("--> vs.yaml:3:9"));
        assert!(out.contains("= at: spec.http[0].route[0].destination.subnet"));
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v = serde_json::to_value(diag()).unwrap();
        for key in [
            "severity", "code", "message", "file", "line", "column", "path",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["severity"], "error");
        assert_eq!(v["line"], 3);
    }

    #[test]
    fn suggestions() {
        let table: &[(&str, &[&str], Option<&str>)] = &[
            ("subnet", &["host", "subset", "port"], Some("subset")),
            (
                "subnets",
                &["host", "trafficPolicy", "subsets", "exportTo"],
                Some("subsets"),
            ),
            ("services", &["servers", "selector"], Some("servers")),
            ("zzzz", &["host", "subset", "port"], None),
            ("Hosts", &["hosts", "gateways"], Some("hosts")),
            (
                "ROUNDROBIN",
                &["ROUND_ROBIN", "RANDOM"],
                Some("ROUND_ROBIN"),
            ),
        ];
        for (word, cands, want) in table {
            assert_eq!(did_you_mean(word, cands.iter().copied()), *want, "{word}");
        }
    }
}
