//! Loading Istio configuration from strings, files and directories.
//!
//! YAML (multi-document, `---`) and JSON are parsed with `saphyr-parser` into a small tree
//! that keeps every node's line and column; each document becomes a `serde_json::Value` while
//! the position of every field path is recorded, then the typed spec is deserialized with
//! `serde_path_to_error` so a failure names its field path, file, line and column.
//!
//! What is kept:
//! - the nine Istio kinds (networking.istio.io v1/v1beta1/v1alpha3, security.istio.io
//!   v1/v1beta1), typed;
//! - Kubernetes `Service`, `ServiceAccount`, `Pod`, `Deployment`, `StatefulSet`, `DaemonSet`
//!   `ReplicaSet` and `Secret` (key names only), read leniently for the registry ([`Spec::Service`],
//!   [`Spec::ServiceAccount`], [`Spec::Workload`]), and `Namespace` (its labels and
//!   annotations, for the analyzers; [`Spec::Namespace`]);
//! - `kind: List` (and `*List`) items.
//!
//! Everything else is skipped silently (users keep Deployments beside their Istio YAML), except
//! what looks like an Istio object gone wrong: an Istio kind under a near-miss group
//! (`networking.istio/v1alpha3`) or an unserved version is an error naming the right
//! `apiVersion` (stricter than `istioctl validate`, which skips it); an unknown kind in an
//! Istio group is an error with a suggestion; Istio kinds we do not model (EnvoyFilter,
//! Telemetry, ...) are skipped with a warning.
//!
//! Loading never panics: nesting depth and alias expansion are bounded, and every problem is
//! a [`Diagnostic`]. Only I/O failures are `Err`.
//!
//! An object with a schema error is not in [`Loaded::objects`]. One exception: an Istio kind
//! under a near-miss API group is reported and still loaded as that kind, so that validation
//! reports its other problems too. Build nothing from a load that [`Loaded::has_errors`].
//!
//! # Examples
//!
//! ```
//! use mesh_core::diag::codes;
//! use mesh_core::model::Kind;
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
//! ---
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: reviews-v1}
//! spec: {template: {metadata: {labels: {app: reviews, version: v1}}}}
//! ---
//! apiVersion: telemetry.istio.io/v1
//! kind: Telemetry
//! metadata: {name: mesh-default}
//! spec: {}
//! ", "bookinfo.yaml");
//! let kinds: Vec<Kind> = loaded.objects.iter().map(|o| o.kind).collect();
//! assert_eq!(kinds, [Kind::DestinationRule, Kind::Deployment]);
//! // Telemetry is an Istio kind we do not model: skipped with a warning
//! assert_eq!(loaded.diagnostics.len(), 1);
//! assert_eq!(loaded.diagnostics[0].code, codes::UNSUPPORTED_KIND);
//! assert!(!loaded.has_errors());
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diag::{codes, did_you_mean, Diagnostic, Severity, Sources};
use crate::model::{
    kube_raw, ConfigObject, FieldMap, Kind, KubeService, Location, ObjectMeta, Source, Spec,
};

mod de;
pub(crate) mod mesh_config;
mod node;

use de::{De, DeError};
use node::{parse_documents, Node, NodeKind};

/// Istio kinds that exist but that inmesh does not model, with the API group and versions
/// their CRDs serve: skipped with a warning; under another group/version, an error like
/// kubectl's "no matches for kind".
/// The Kubernetes Gateway API's group: its kinds (Gateway, HTTPRoute, ...) are not read.
const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// The warning for a Kubernetes Gateway API object: said, not silently skipped.
fn gateway_api_skipped(kind: &str, file: &Arc<str>, at: Location, path: &str) -> Diagnostic {
    Diagnostic::new(
        Severity::Warning,
        codes::UNSUPPORTED_KIND,
        format!("{kind} ({GATEWAY_API_GROUP}) is not supported by inmesh: skipped"),
        file.clone(),
        at,
        path.to_owned(),
    )
    .with_help("the Kubernetes Gateway API is not read; describe the same traffic with Istio's Gateway and VirtualService")
}

const OTHER_ISTIO_KINDS: &[(&str, &str, &[&str])] = &[
    ("EnvoyFilter", "networking.istio.io", &["v1alpha3"]),
    (
        "WorkloadGroup",
        "networking.istio.io",
        &["v1", "v1beta1", "v1alpha3"],
    ),
    ("ProxyConfig", "networking.istio.io", &["v1beta1"]),
    ("Telemetry", "telemetry.istio.io", &["v1", "v1alpha1"]),
    ("WasmPlugin", "extensions.istio.io", &["v1alpha1"]),
    ("IstioOperator", "install.istio.io", &["v1alpha1"]),
];

/// Istio kinds that were removed, with their group and what replaced them.
const REMOVED_ISTIO_KINDS: &[(&str, &str, &str)] = &[
    (
        "ServiceRole",
        "rbac.istio.io",
        "AuthorizationPolicy (security.istio.io/v1)",
    ),
    (
        "ServiceRoleBinding",
        "rbac.istio.io",
        "AuthorizationPolicy (security.istio.io/v1)",
    ),
    (
        "RbacConfig",
        "rbac.istio.io",
        "AuthorizationPolicy (security.istio.io/v1)",
    ),
    (
        "ClusterRbacConfig",
        "rbac.istio.io",
        "AuthorizationPolicy (security.istio.io/v1)",
    ),
    (
        "Policy",
        "authentication.istio.io",
        "PeerAuthentication and RequestAuthentication (security.istio.io/v1)",
    ),
    (
        "MeshPolicy",
        "authentication.istio.io",
        "PeerAuthentication and RequestAuthentication (security.istio.io/v1)",
    ),
    (
        "RouteRule",
        "config.istio.io",
        "VirtualService (networking.istio.io/v1)",
    ),
    (
        "DestinationPolicy",
        "config.istio.io",
        "DestinationRule (networking.istio.io/v1)",
    ),
    (
        "EgressRule",
        "config.istio.io",
        "ServiceEntry (networking.istio.io/v1)",
    ),
];

/// Options of a [`Loader`].
///
/// # Examples
///
/// ```
/// use mesh_core::load::{LoadOptions, Loader};
///
/// // like `kubectl apply -n bookinfo`: objects without a namespace land in `bookinfo`
/// let loader = Loader::new(LoadOptions {
///     default_namespace: "bookinfo".into(),
///     ..LoadOptions::default()
/// });
/// let loaded = loader.load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
/// ",
///     "dr.yaml",
/// );
/// assert_eq!(loaded.objects[0].metadata.namespace, "bookinfo");
///
/// // nesting deeper than `max_depth` is refused with IM0009, never a stack overflow
/// let tight = Loader::new(LoadOptions { max_depth: 3, ..LoadOptions::default() });
/// let loaded = tight.load_str("a: {b: {c: {d: {e: 1}}}}", "deep.yaml");
/// assert_eq!(loaded.diagnostics[0].code, mesh_core::diag::codes::LIMITS);
/// ```
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace given to objects without `metadata.namespace` (like `kubectl -n`).
    pub default_namespace: String,
    /// Maximum nesting depth of a document.
    pub max_depth: usize,
    /// Maximum number of nodes that aliases may add to a document (alias-bomb guard). Nodes
    /// written out in the text are bounded by its size and not counted.
    pub max_alias_nodes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_owned(),
            max_depth: 100,
            max_alias_nodes: 1_000_000,
        }
    }
}

/// What a load produced: the objects that loaded cleanly, the diagnostics, and the file texts
/// for rendering.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Kind;
///
/// let mut loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
/// ",
///     "reviews.yaml",
/// );
/// assert!(!loaded.has_errors());
/// let kinds: Vec<Kind> = loaded.objects.iter().map(|o| o.kind).collect();
/// assert_eq!(kinds, [Kind::VirtualService, Kind::DestinationRule]);
///
/// // a second file with a typo: its object is left out, its diagnostic kept
/// loaded.extend(mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: gw}
/// spec: {selectr: {istio: ingressgateway}}
/// ",
///     "gw.yaml",
/// ));
/// assert_eq!(loaded.objects.len(), 2);
/// assert!(loaded.has_errors());
/// assert_eq!(&*loaded.diagnostics[0].file, "gw.yaml");
/// assert!(loaded.sources.get("gw.yaml").is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Objects, in file and document order.
    pub objects: Vec<ConfigObject>,
    /// Problems found while loading.
    pub diagnostics: Vec<Diagnostic>,
    /// The text of each file read.
    pub sources: Sources,
}

impl Loaded {
    /// True if any diagnostic is an error.
    ///
    /// # Examples
    ///
    /// ```
    /// let ok = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1alpha3
    /// kind: EnvoyFilter
    /// metadata: {name: lua}
    /// spec: {}
    /// ", "ef.yaml");
    /// assert_eq!(ok.diagnostics.len(), 1); // a warning only
    /// assert!(!ok.has_errors());
    /// let bad = mesh_core::load::load_str("kind: [", "bad.yaml");
    /// assert!(bad.has_errors());
    /// ```
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Appends another load's results.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::load_str;
    ///
    /// let mut all = load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "dr.yaml");
    /// all.extend(load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
    /// ", "vs.yaml"));
    /// assert_eq!(all.objects.len(), 2);
    /// assert!(all.sources.get("dr.yaml").is_some() && all.sources.get("vs.yaml").is_some());
    /// ```
    pub fn extend(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.diagnostics.extend(other.diagnostics);
        self.sources.extend(other.sources);
    }

    /// Keeps only the last definition of each kind/namespace/name, as `kubectl apply` of
    /// the same files would leave the cluster, and returns a warning (`IM0202`) for every
    /// definition replaced. Objects named by `generateName` (no name) are all kept.
    ///
    /// [`Mesh`](crate::mesh::Mesh) does this before it compiles a reload, and the analyzer
    /// reports the same warnings, so `meshctl validate` and a running mesh agree on which
    /// definition is in force.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: gate, namespace: foo}
    /// spec: {action: DENY, rules: [{}]}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: gate, namespace: foo}
    /// spec: {action: ALLOW, rules: [{}]}
    /// ", "ap.yaml");
    /// let warnings = loaded.keep_last_definitions();
    /// assert_eq!(loaded.objects.len(), 1);
    /// assert_eq!(loaded.objects[0].source.location.line, 7); // the ALLOW
    /// assert_eq!(warnings[0].code, "IM0202");
    /// assert!(warnings[0].message.contains("replaces the one at ap.yaml:2"));
    /// ```
    pub fn keep_last_definitions(&mut self) -> Vec<Diagnostic> {
        let (kept, warnings) = last_definitions(&self.objects);
        if kept.len() < self.objects.len() {
            let mut slots: Vec<Option<ConfigObject>> = std::mem::take(&mut self.objects)
                .into_iter()
                .map(Some)
                .collect();
            self.objects = kept.iter().filter_map(|&i| slots[i].take()).collect();
        }
        warnings
    }
}

/// The objects that stand when the same kind/namespace/name is defined more than once, as
/// indexes into `objects`: the last definition, in the place of the first (as `kubectl
/// apply` replaces an object, which keeps its creation time); and a warning for each
/// definition replaced.
pub(crate) fn last_definitions(objects: &[ConfigObject]) -> (Vec<usize>, Vec<Diagnostic>) {
    let mut last: std::collections::HashMap<(Kind, &str, &str), usize> =
        std::collections::HashMap::new();
    let mut first: std::collections::HashSet<(Kind, &str, &str)> = std::collections::HashSet::new();
    let mut warnings = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        if o.metadata.name.is_empty() {
            continue;
        }
        if let Some(prev) = last.insert((o.kind, &o.metadata.namespace, &o.metadata.name), i) {
            let p = &objects[prev];
            let path = "metadata.name";
            let at = o
                .source
                .locate_value(path)
                .unwrap_or_else(|| o.source.locate_nearest(path));
            warnings.push(Diagnostic::new(
                Severity::Warning,
                codes::REDEFINED,
                format!(
                    "{} {}/{} is defined more than once; this definition replaces the one at {}:{}",
                    o.kind,
                    o.metadata.namespace,
                    o.metadata.name,
                    p.source.file,
                    p.source.location.line
                ),
                o.source.file.clone(),
                at,
                path,
            ));
        }
    }
    let kept = objects
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            if o.metadata.name.is_empty() {
                return Some(i);
            }
            let key = (
                o.kind,
                o.metadata.namespace.as_str(),
                o.metadata.name.as_str(),
            );
            // the first definition's place, the last definition's text
            first.insert(key).then(|| last[&key])
        })
        .collect();
    (kept, warnings)
}

/// An I/O failure while loading (a missing or unreadable path).
///
/// Problems in the text are never `LoadError`s: they are diagnostics in [`Loaded`].
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let missing = dir.path().join("nope.yaml");
/// let err = mesh_core::load::load_file(&missing).unwrap_err();
/// assert_eq!(err.path, missing);
/// assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
/// assert!(err.to_string().starts_with("cannot read "));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct LoadError {
    /// The path.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// A configured loader.
///
/// The free functions ([`load_str`], [`load_path`], ...) use a default loader; build one
/// with [`Loader::new`] to change the [`LoadOptions`].
///
/// # Examples
///
/// ```
/// use mesh_core::load::{LoadOptions, Loader};
///
/// let loader = Loader::new(LoadOptions {
///     default_namespace: "foo".into(),
///     ..LoadOptions::default()
/// });
/// assert_eq!(loader.options().default_namespace, "foo");
/// let loaded = loader.load_str(
///     r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
///         "metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
///     "pa.json",
/// );
/// assert!(!loaded.has_errors());
/// assert_eq!(loaded.objects[0].key(), "foo/default");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Loader {
    options: LoadOptions,
}

/// Loads YAML or JSON text with default options; `file` names it in diagnostics.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(
///     "apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: bookinfo-gateway}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 8080, name: http, protocol: HTTP}
///     hosts: ['*']
/// ---
/// apiVersion: v1
/// kind: ConfigMap
/// metadata: {name: unrelated}
/// ",
///     "gateway.yaml",
/// );
/// assert!(loaded.diagnostics.is_empty()); // other Kubernetes kinds are skipped silently
/// assert_eq!(loaded.objects.len(), 1);
/// let gw = loaded.objects[0].spec.as_gateway().unwrap();
/// assert_eq!(gw.servers[0].port.number, 8080);
/// assert_eq!(loaded.objects[0].source.location.line, 1);
/// ```
pub fn load_str(text: &str, file: &str) -> Loaded {
    Loader::default().load_str(text, file)
}

/// Loads one file with default options.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("pa.yaml");
/// std::fs::write(
///     &file,
///     "apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: istio-system}
/// spec: {mtls: {mode: STRICT}}
/// ",
/// )?;
/// let loaded = mesh_core::load::load_file(&file)?;
/// assert_eq!(loaded.objects[0].key(), "istio-system/default");
/// // diagnostics and sources are named by the path as given
/// assert_eq!(&*loaded.objects[0].source.file, file.display().to_string());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_file(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    Loader::default().load_file(path.as_ref())
}

/// Loads a file, or a directory recursively (`.yaml`, `.yml`, `.json`), with default options.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("networking"))?;
/// std::fs::write(
///     dir.path().join("networking/vs.yaml"),
///     "apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}
/// ",
/// )?;
/// std::fs::write(dir.path().join("README.md"), "not config")?; // skipped: not .yaml/.json
/// let loaded = mesh_core::load::load_path(dir.path())?;
/// assert!(!loaded.has_errors());
/// assert_eq!(loaded.objects.len(), 1);
/// assert_eq!(loaded.objects[0].key(), "default/ratings");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_path(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    Loader::default().load_path(path.as_ref())
}

/// Loads several files or directories with default options.
///
/// Any unreadable path fails the whole load.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let a = dir.path().join("a.yaml");
/// let b = dir.path().join("b.yaml");
/// std::fs::write(&a, "apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings}
/// ")?;
/// std::fs::write(&b, "apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: allow-nothing}
/// spec: {}
/// ")?;
/// let loaded = mesh_core::load::load_paths([&a, &b])?;
/// let keys: Vec<String> = loaded.objects.iter().map(|o| o.key()).collect();
/// assert_eq!(keys, ["default/ratings", "default/allow-nothing"]);
/// assert!(mesh_core::load::load_paths([a, dir.path().join("gone.yaml")]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_paths<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Loaded, LoadError> {
    Loader::default().load_paths(paths)
}

impl Loader {
    /// A loader with these options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let loader = Loader::new(LoadOptions { default_namespace: "bookinfo".into(), ..LoadOptions::default() });
    /// let loaded = loader.load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings}
    /// spec: {host: ratings}
    /// ", "dr.yaml");
    /// assert_eq!(loaded.objects[0].metadata.namespace, "bookinfo");
    /// ```
    pub fn new(options: LoadOptions) -> Self {
        Loader { options }
    }

    /// The options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let loader = Loader::new(LoadOptions { max_depth: 20, ..LoadOptions::default() });
    /// assert_eq!(loader.options().max_depth, 20);
    /// assert_eq!(Loader::default().options().default_namespace, "default");
    /// ```
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// Loads text; `file` names it in diagnostics.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let loader = Loader::new(LoadOptions { default_namespace: "prod".into(), ..LoadOptions::default() });
    /// let loaded = loader.load_str("\u{feff}apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default}
    /// spec: {mtls: {mode: STRICT}}
    /// ", "pa.yaml");
    /// assert!(loaded.diagnostics.is_empty()); // a UTF-8 BOM is accepted
    /// assert_eq!(loaded.objects[0].key(), "prod/default");
    /// assert_eq!(&*loaded.objects[0].source.file, "pa.yaml");
    /// ```
    pub fn load_str(&self, text: &str, file: &str) -> Loaded {
        let file: Arc<str> = Arc::from(file);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut out = Loaded::default();
        out.sources.insert(file.clone(), Arc::from(text));
        // A syntax error ends its document only: as kubectl splits the stream on `---`
        // lines before parsing, the documents after it are still read (from the next `---`
        // line past the error, their lines counted from the start of the file).
        let mut index = 0;
        let (mut start, mut first_line) = (0usize, 0u32);
        loop {
            let mut docs = Vec::new();
            let mut renamed = Vec::new();
            let parse_err = parse_documents(&text[start..], &self.options, &mut docs, &mut renamed);
            for (mut at, key) in renamed {
                at.line = at.line.saturating_add(first_line);
                let as_bool = matches!(key.as_bytes()[0], b'y' | b'Y' | b'o' | b'O')
                    && !key.eq_ignore_ascii_case("off");
                out.diagnostics.push(
                    Diagnostic::new(
                        Severity::Warning,
                        codes::LINT,
                        format!(
                            "the key `{key}` is read as `{as_bool}`: Kubernetes reads YAML 1.1, where an unquoted `{key}` is a boolean"
                        ),
                        file.clone(),
                        at,
                        "",
                    )
                    .with_help(format!("quote it (\"{key}\") to mean the name `{key}`")),
                );
            }
            for doc in docs {
                if let Some(mut root) = doc {
                    if first_line > 0 {
                        root.shift_lines(first_line);
                    }
                    self.process_document(root, &file, index, &mut out);
                }
                index += 1;
            }
            let Some((msg, mut at, code)) = parse_err else {
                break;
            };
            at.line = at.line.saturating_add(first_line);
            out.diagnostics
                .push(Diagnostic::error(code, msg, file.clone(), at, ""));
            // the next document separator at or after the error's line
            let Some((offset, line)) = next_separator(text, start, at.line) else {
                break;
            };
            start = offset + 3;
            first_line = line - 1;
            index += 1;
            // the rest of the separator line (`--- # comment`) belongs to no document
            match text[start..].find('\n') {
                Some(nl) => start += nl + 1,
                None => break,
            }
            first_line += 1;
        }
        out
    }

    /// Loads bytes (UTF-8 required; invalid UTF-8 is a diagnostic, not an error).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::Loader;
    ///
    /// let loaded = Loader::default().load_bytes(b"kind: Gateway\nname: caf\xe9\n", "bad.yaml");
    /// let d = &loaded.diagnostics[0];
    /// assert_eq!(d.code, mesh_core::diag::codes::SYNTAX);
    /// assert_eq!((d.line, d.column), (2, 10));
    /// assert!(loaded.objects.is_empty());
    /// ```
    pub fn load_bytes(&self, bytes: &[u8], file: &str) -> Loaded {
        match std::str::from_utf8(bytes) {
            Ok(text) => self.load_str(text, file),
            Err(e) => {
                let prefix = &bytes[..e.valid_up_to()];
                let line = prefix.iter().filter(|b| **b == b'\n').count() as u32 + 1;
                let col = prefix.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
                let mut out = Loaded::default();
                out.diagnostics.push(Diagnostic::error(
                    codes::SYNTAX,
                    format!(
                        "file is not valid UTF-8 (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                    Arc::from(file),
                    Location { line, column: col },
                    "",
                ));
                out
            }
        }
    }

    /// Loads one file.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("se.yaml");
    /// std::fs::write(&file, "
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: httpbin-ext}
    /// spec: {hosts: [httpbin.org], ports: [{number: 443, name: https, protocol: TLS}], resolution: DNS}
    /// ")?;
    /// let loader = Loader::new(LoadOptions { default_namespace: "egress".into(), ..LoadOptions::default() });
    /// let loaded = loader.load_file(&file)?;
    /// assert_eq!(loaded.objects[0].key(), "egress/httpbin-ext");
    /// assert!(loader.load_file(&dir.path().join("missing.yaml")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_file(&self, path: &Path) -> Result<Loaded, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError {
            path: path.to_owned(),
            source,
        })?;
        Ok(self.load_bytes(&bytes, &path.display().to_string()))
    }

    /// Loads a file, or a directory recursively (`.yaml`, `.yml`, `.json`, sorted by name;
    /// hidden entries and files holding no Kubernetes object, such as a Helm chart's
    /// `Chart.yaml`, skipped). Links are followed, each real directory and file read once: a
    /// ConfigMap volume's items, nested ones too, are read through their visible links, and
    /// a link back up the tree ends the walk there; a link to a directory outside the
    /// directory is not followed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::Loader;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let dr = |name: &str| format!("apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {{name: {name}}}
    /// spec: {{host: {name}}}
    /// ");
    /// std::fs::write(dir.path().join("b.yaml"), dr("reviews"))?;
    /// std::fs::write(dir.path().join("a.yml"), dr("ratings"))?;
    /// std::fs::write(dir.path().join(".hidden.yaml"), dr("details"))?;
    /// let loaded = Loader::default().load_path(dir.path())?;
    /// let names: Vec<&str> = loaded.objects.iter().map(|o| o.metadata.name.as_str()).collect();
    /// assert_eq!(names, ["ratings", "reviews"]); // sorted by file name; hidden files skipped
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_path(&self, path: &Path) -> Result<Loaded, LoadError> {
        let meta = std::fs::metadata(path).map_err(|source| LoadError {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return self.load_file(path);
        }
        let files = config_files(path)?;
        let mut out = Loaded::default();
        for f in files {
            let loaded = self.load_file(&f)?;
            // a file of the walk holding no Kubernetes object at all (a Helm `Chart.yaml`,
            // `values.yaml`, a `package.json`) is not config: skipped, as `istioctl
            // validate` passes non-Istio YAML. Named explicitly, it is still reported.
            let not_config = loaded.objects.is_empty()
                && !loaded.diagnostics.is_empty()
                && loaded.diagnostics.iter().all(|d| {
                    d.code == codes::NOT_AN_OBJECT
                        && (d.message.starts_with("missing `kind`")
                            || d.message.starts_with("a document must be a mapping"))
                });
            if !not_config {
                out.extend(loaded);
            }
        }
        Ok(out)
    }

    /// Loads several files or directories.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::load::{LoadOptions, Loader};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let a = dir.path().join("a.yaml");
    /// let b = dir.path().join("b.yaml");
    /// std::fs::write(&a, "apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings}
    /// spec: {host: ratings}
    /// ")?;
    /// std::fs::write(&b, "apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing}
    /// spec: {}
    /// ")?;
    /// let loader = Loader::new(LoadOptions { default_namespace: "foo".into(), ..LoadOptions::default() });
    /// let loaded = loader.load_paths([&b, &a])?;
    /// let keys: Vec<String> = loaded.objects.iter().map(|o| o.key()).collect();
    /// assert_eq!(keys, ["foo/allow-nothing", "foo/ratings"]); // in the order given
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_paths<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Loaded, LoadError> {
        let mut out = Loaded::default();
        for p in paths {
            out.extend(self.load_path(p.as_ref())?);
        }
        Ok(out)
    }

    fn process_document(&self, root: Node<'_>, file: &Arc<str>, doc: usize, out: &mut Loaded) {
        match root.kind {
            NodeKind::Null => {}
            NodeKind::Map(_) => self.process_object(root, file, doc, out, ""),
            _ => out.diagnostics.push(Diagnostic::error(
                codes::NOT_AN_OBJECT,
                "a document must be a mapping with `apiVersion`, `kind`, `metadata` and `spec`",
                file.clone(),
                root.at,
                "",
            )),
        }
    }

    fn process_object(
        &self,
        node: Node<'_>,
        file: &Arc<str>,
        doc: usize,
        out: &mut Loaded,
        prefix: &str,
    ) {
        let at = node.at;
        let err = |code, msg: String, at, path: &str| {
            Diagnostic::error(code, msg, file.clone(), at, path.to_owned())
        };
        let NodeKind::Map(entries) = &node.kind else {
            out.diagnostics.push(err(
                codes::NOT_AN_OBJECT,
                "expected a Kubernetes object (a mapping with `apiVersion` and `kind`)".to_owned(),
                at,
                prefix,
            ));
            return;
        };
        let field = |name: &str| entries.iter().find(|(k, _)| k.text == name);
        let scalar_str = |n: &Node<'_>| match &n.kind {
            NodeKind::Str(s) => Some(s.to_string()),
            _ => None,
        };
        let kind_entry = field("kind");
        let api_entry = field("apiVersion");
        let kind_str = kind_entry.and_then(|(_, v)| scalar_str(v));
        let api_str = api_entry.and_then(|(_, v)| scalar_str(v));
        let Some(kind_str) = kind_str else {
            let (msg, loc) = match kind_entry {
                Some((k, _)) => ("`kind` must be a string".to_owned(), k.at),
                None => ("missing `kind`: not a Kubernetes object".to_owned(), at),
            };
            out.diagnostics
                .push(err(codes::NOT_AN_OBJECT, msg, loc, &join(prefix, "kind")));
            return;
        };
        let kind_loc = kind_entry.map(|(_, v)| v.at).unwrap_or(at);

        // Lists.
        if kind_str == "List" || (kind_str.ends_with("List") && field("items").is_some()) {
            let NodeKind::Map(entries) = node.kind else {
                return;
            };
            for (k, v) in entries {
                if k.text != "items" {
                    continue;
                }
                match v.kind {
                    NodeKind::Seq(items) => {
                        for (i, item) in items.into_iter().enumerate() {
                            let p =
                                format!("{}items[{i}]", if prefix.is_empty() { "" } else { "." });
                            let p = format!("{prefix}{p}");
                            self.process_object(item, file, doc, out, &p);
                        }
                    }
                    NodeKind::Null => {}
                    _ => out.diagnostics.push(err(
                        codes::NOT_AN_OBJECT,
                        "`items` of a List must be a sequence".to_owned(),
                        v.at,
                        &join(prefix, "items"),
                    )),
                }
            }
            return;
        }

        let api_version = api_str.unwrap_or_default();
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version.as_str()),
        };
        let api_loc = api_entry.map(|(_, v)| v.at).unwrap_or(at);

        match Kind::from_kind_str(&kind_str) {
            Some(kind) if kind.is_istio() => {
                if api_version.is_empty() {
                    out.diagnostics.push(
                        err(
                            codes::API_VERSION,
                            format!("missing `apiVersion` for {kind}"),
                            at,
                            &join(prefix, "apiVersion"),
                        )
                        .with_help(format!(
                            "add `apiVersion: {}`",
                            kind.preferred_api_version()
                        )),
                    );
                    return;
                }
                if !api_version.contains('/')
                    && (api_version == kind.group()
                        || (api_version.contains('.')
                            && is_near_istio_group(&api_version, kind.group())))
                {
                    // `apiVersion: networking.istio.io`: a group without a version
                    out.diagnostics.push(
                        err(
                            codes::API_VERSION,
                            format!(
                                "apiVersion `{api_version}` has no version: {kind} is served as {}/{}",
                                kind.group(),
                                kind.versions().join(", ")
                            ),
                            api_loc,
                            &join(prefix, "apiVersion"),
                        )
                        .with_help(format!("use `apiVersion: {}`", kind.preferred_api_version())),
                    );
                } else if group == kind.group() {
                    if !kind.versions().contains(&version) {
                        out.diagnostics.push(
                            err(
                                codes::API_VERSION,
                                format!(
                                    "apiVersion `{api_version}` is not served for {kind}: {} serves {}",
                                    kind.group(),
                                    kind.versions().join(", ")
                                ),
                                api_loc,
                                &join(prefix, "apiVersion"),
                            )
                            .with_help(format!("use `apiVersion: {}`", kind.preferred_api_version())),
                        );
                        return;
                    }
                } else if is_near_istio_group(group, kind.group()) {
                    let v = if kind.versions().contains(&version) {
                        version
                    } else {
                        kind.versions()[0]
                    };
                    out.diagnostics.push(
                        err(
                            codes::API_VERSION,
                            format!(
                                "unknown apiVersion `{api_version}` for {kind}: the API group of {kind} is `{}`",
                                kind.group()
                            ),
                            api_loc,
                            &join(prefix, "apiVersion"),
                        )
                        .with_help(format!("did you mean `{}/{v}`?", kind.group())),
                    );
                    // Still read it as the kind it names, so its other problems are reported
                    // too; the error above makes the load fail.
                } else {
                    // Another API's kind of the same name (e.g. gateway.networking.k8s.io Gateway).
                    if group == GATEWAY_API_GROUP {
                        out.diagnostics.push(gateway_api_skipped(
                            kind.as_str(),
                            file,
                            kind_loc,
                            &join(prefix, "kind"),
                        ));
                    }
                    return;
                }
                self.parse_istio(kind, api_version, node, file, doc, out, prefix);
            }
            Some(kind) => {
                let expected_group = kind.group();
                if group == expected_group && version == "v1" {
                    self.parse_kube(kind, api_version, node, file, doc, out, prefix);
                }
            }
            None => {
                // `apiVersion: telemetry.istio.io` (no version) names a group too
                let (group, version) = if group.is_empty() && api_version.contains('.') {
                    (api_version.as_str(), "")
                } else {
                    (group, version)
                };
                let istio_group = !group.is_empty()
                    && (group.ends_with(".istio.io")
                        || is_near_istio_group(group, crate::model::NETWORKING_GROUP)
                        || is_near_istio_group(group, crate::model::SECURITY_GROUP));
                if !istio_group {
                    if group == GATEWAY_API_GROUP {
                        out.diagnostics.push(gateway_api_skipped(
                            &kind_str,
                            file,
                            kind_loc,
                            &join(prefix, "kind"),
                        ));
                    }
                    return;
                }
                let unknown_kind = |help: String| {
                    err(
                        codes::UNKNOWN_KIND,
                        format!("unknown kind `{kind_str}` in API group `{group}`"),
                        kind_loc,
                        &join(prefix, "kind"),
                    )
                    .with_help(help)
                };
                if let Some((_, g, versions)) =
                    OTHER_ISTIO_KINDS.iter().find(|(k, _, _)| *k == kind_str)
                {
                    if group == *g && versions.contains(&version) {
                        out.diagnostics.push(Diagnostic::new(
                            Severity::Warning,
                            codes::UNSUPPORTED_KIND,
                            format!("{kind_str} is an Istio kind inmesh does not support: skipped"),
                            file.clone(),
                            kind_loc,
                            join(prefix, "kind"),
                        ));
                    } else {
                        // kubectl: no CRD serves this kind under that group/version
                        out.diagnostics.push(
                            err(
                                codes::API_VERSION,
                                format!(
                                    "no matches for kind {kind_str:?} in version {api_version:?}: {kind_str} is served as {g}/{}",
                                    versions.join(", ")
                                ),
                                api_loc,
                                &join(prefix, "apiVersion"),
                            )
                            .with_help(format!("use `apiVersion: {g}/{}`", versions[0])),
                        );
                    }
                    return;
                }
                if let Some((_, g, replacement)) =
                    REMOVED_ISTIO_KINDS.iter().find(|(k, _, _)| *k == kind_str)
                {
                    out.diagnostics.push(
                        err(
                            codes::UNKNOWN_KIND,
                            format!("{kind_str} ({g}) was removed from Istio"),
                            kind_loc,
                            &join(prefix, "kind"),
                        )
                        .with_help(format!("it was replaced by {replacement}")),
                    );
                    return;
                }
                // the kinds of this group (or of the Istio group it is a typo of)
                let group_of = |g: &str| {
                    g == group
                        || ((group != crate::model::NETWORKING_GROUP
                            && group != crate::model::SECURITY_GROUP)
                            && is_near_istio_group(group, g)
                            && strsim::levenshtein(group, g) <= 3)
                };
                let mut names: Vec<&str> = Kind::ISTIO
                    .iter()
                    .filter(|k| group_of(k.group()))
                    .map(|k| k.as_str())
                    .collect();
                names.extend(
                    OTHER_ISTIO_KINDS
                        .iter()
                        .filter(|(_, g, _)| group_of(g))
                        .map(|(k, _, _)| *k),
                );
                if let Some(s) = did_you_mean(&kind_str, names.iter().copied()) {
                    out.diagnostics
                        .push(unknown_kind(format!("did you mean `{s}`?")));
                } else if !names.is_empty() {
                    out.diagnostics.push(unknown_kind(format!(
                        "known kinds in {group}: {}",
                        names.join(", ")
                    )));
                } else {
                    out.diagnostics.push(Diagnostic::new(
                        Severity::Warning,
                        codes::UNSUPPORTED_KIND,
                        format!("{kind_str} ({api_version}) is not supported by inmesh: skipped"),
                        file.clone(),
                        kind_loc,
                        join(prefix, "kind"),
                    ));
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn parse_istio(
        &self,
        kind: Kind,
        api_version: String,
        node: Node<'_>,
        file: &Arc<str>,
        doc: usize,
        out: &mut Loaded,
        prefix: &str,
    ) {
        let at = node.at;
        let mut fields = FieldMap::new();
        node.record_fields(&mut fields, FieldMap::ROOT);
        let source = Source {
            file: file.clone(),
            location: at,
            document: doc,
            fields: Arc::new(fields),
        };
        let mut ok = true;
        let mut push = |d: Diagnostic| {
            if d.is_error() {
                ok = false;
            }
            out.diagnostics.push(d.with_prefix(prefix));
        };
        let NodeKind::Map(entries) = &node.kind else {
            return;
        };
        const TOP: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
        for (key, _) in entries {
            if !TOP.contains(&&*key.text) {
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_FIELD,
                    format!("unknown field `{}` at the top level of {kind}", key.text),
                    file.clone(),
                    key.at,
                    key.text.to_string(),
                );
                d = match did_you_mean(&key.text, TOP) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(
                        "an object has only apiVersion, kind, metadata, spec and status",
                    ),
                };
                push(d);
            }
        }
        let metadata = match node.get("metadata") {
            None
            | Some(Node {
                kind: NodeKind::Null,
                ..
            }) => {
                push(Diagnostic::error(
                    codes::MISSING_NAME,
                    format!("{kind} has no `metadata`; `metadata.name` is required"),
                    file.clone(),
                    at,
                    "metadata",
                ));
                None
            }
            Some(meta) => match deserialize_at::<ObjectMeta>(meta, "metadata", &source) {
                Ok(mut m) => {
                    if m.name.is_empty() && m.generate_name.is_none() {
                        push(Diagnostic::error(
                            codes::MISSING_NAME,
                            format!("{kind} has no `metadata.name`"),
                            file.clone(),
                            source.locate_nearest("metadata.name"),
                            "metadata.name",
                        ));
                    }
                    if m.namespace.is_empty() {
                        m.namespace.clone_from(&self.options.default_namespace);
                    }
                    Some(m)
                }
                Err(ds) => {
                    for d in ds {
                        push(d);
                    }
                    None
                }
            },
        };
        let empty = Node {
            kind: NodeKind::Null,
            at,
        };
        let spec_node = node.get("spec").unwrap_or(&empty);
        let spec = match kind {
            Kind::VirtualService => {
                deserialize_at(spec_node, "spec", &source).map(Spec::VirtualService)
            }
            Kind::DestinationRule => {
                deserialize_at(spec_node, "spec", &source).map(Spec::DestinationRule)
            }
            Kind::ServiceEntry => {
                deserialize_at(spec_node, "spec", &source).map(Spec::ServiceEntry)
            }
            Kind::WorkloadEntry => {
                deserialize_at(spec_node, "spec", &source).map(Spec::WorkloadEntry)
            }
            Kind::Gateway => deserialize_at(spec_node, "spec", &source).map(Spec::Gateway),
            Kind::Sidecar => deserialize_at(spec_node, "spec", &source).map(Spec::Sidecar),
            Kind::PeerAuthentication => {
                deserialize_at(spec_node, "spec", &source).map(Spec::PeerAuthentication)
            }
            Kind::AuthorizationPolicy => {
                deserialize_at(spec_node, "spec", &source).map(Spec::AuthorizationPolicy)
            }
            Kind::RequestAuthentication => {
                deserialize_at(spec_node, "spec", &source).map(Spec::RequestAuthentication)
            }
            _ => return,
        };
        let spec = match spec {
            Ok(s) => Some(s),
            Err(ds) => {
                for d in ds {
                    push(d);
                }
                None
            }
        };
        if let (true, Some(metadata), Some(spec)) = (ok, metadata, spec) {
            out.objects.push(ConfigObject {
                api_version,
                kind,
                metadata,
                spec,
                source,
                healthy: healthy_condition(&node),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn parse_kube(
        &self,
        kind: Kind,
        api_version: String,
        node: Node<'_>,
        file: &Arc<str>,
        doc: usize,
        out: &mut Loaded,
        prefix: &str,
    ) {
        let at = node.at;
        let mut fields = FieldMap::new();
        node.record_fields(&mut fields, FieldMap::ROOT);
        let source = Source {
            file: file.clone(),
            location: at,
            document: doc,
            fields: Arc::new(fields),
        };
        let ignored = |why: String| {
            Diagnostic::new(
                Severity::Warning,
                codes::KUBE_IGNORED,
                format!("{kind} ignored: {why}"),
                file.clone(),
                at,
                prefix.to_owned(),
            )
        };
        let mut metadata: ObjectMeta = match lenient(node.get("metadata")) {
            Ok(m) => m,
            Err(e) => {
                out.diagnostics.push(ignored(format!("metadata: {e}")));
                return;
            }
        };
        if metadata.name.is_empty() {
            out.diagnostics.push(ignored("no metadata.name".to_owned()));
            return;
        }
        if kind == Kind::Namespace {
            // cluster-scoped: a namespace written in its metadata means nothing
            metadata.namespace.clear();
        } else if metadata.namespace.is_empty() {
            metadata
                .namespace
                .clone_from(&self.options.default_namespace);
        }
        let spec_n = node.get("spec");
        let spec = match kind {
            Kind::Secret => {
                lenient::<kube_raw::Secret>(Some(&node)).map(|s| Spec::Secret(s.into_model()))
            }
            Kind::Service => lenient::<KubeService>(spec_n).map(Spec::Service),
            Kind::ServiceAccount => Ok(Spec::ServiceAccount),
            Kind::Namespace => Ok(Spec::Namespace),
            Kind::Pod => lenient::<kube_raw::PodSpec>(spec_n).map(|p| {
                Spec::Workload(p.into_workload(
                    metadata.labels.clone(),
                    metadata.annotations.clone(),
                    None,
                ))
            }),
            _ => lenient::<kube_raw::ControllerSpec>(spec_n).map(|c| {
                Spec::Workload(c.template.spec.into_workload(
                    c.template.metadata.labels,
                    c.template.metadata.annotations,
                    c.replicas,
                ))
            }),
        };
        match spec {
            Ok(spec) => out.objects.push(ConfigObject {
                api_version,
                kind,
                metadata,
                spec,
                source,
                healthy: None,
            }),
            Err(e) => out.diagnostics.push(ignored(format!("spec: {e}"))),
        }
    }
}

/// The `Healthy` condition of an object's `status` (istiod's, on a WorkloadEntry whose
/// health checks are on): `Some(status == "True")` when the condition is there.
fn healthy_condition(node: &Node<'_>) -> Option<bool> {
    let NodeKind::Seq(conditions) = &node.get("status")?.get("conditions")?.kind else {
        return None;
    };
    let text = |n: Option<&Node<'_>>| match n.map(|n| &n.kind) {
        Some(NodeKind::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    conditions
        .iter()
        .find(|c| text(c.get("type")).as_deref() == Some("Healthy"))
        .map(|c| text(c.get("status")).as_deref() == Some("True"))
}

/// Deserializes leniently: absent or null is the default.
fn lenient<T: DeserializeOwned + Default>(n: Option<&Node<'_>>) -> Result<T, DeError> {
    match n {
        None => Ok(T::default()),
        Some(n) => T::deserialize(De(n)),
    }
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

impl Diagnostic {
    fn with_prefix(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.path = if self.path.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", self.path)
            };
        }
        self
    }
}

/// True when `group` is not `expected` but plausibly meant it: it is empty (no core-group kind
/// has an Istio kind's name), mentions istio, or is within a small edit distance.
fn is_near_istio_group(group: &str, expected: &str) -> bool {
    group != expected
        && (group.is_empty()
            || group.contains("istio")
            || strsim::levenshtein(group, expected) <= 3)
}

/// Deserializes `node` as `T`, mapping failures to diagnostics at `base` (`spec`). Unknown
/// fields are all reported (each is removed from a copy and deserialization retried); any
/// other error stops at the first.
fn deserialize_at<T: DeserializeOwned>(
    node: &Node<'_>,
    base: &str,
    source: &Source,
) -> Result<T, Vec<Diagnostic>> {
    // Fast path: most objects are valid; track field paths only to explain a failure.
    if let Ok(v) = T::deserialize(De(node)) {
        return Ok(v);
    }
    let mut diags = Vec::new();
    let mut owned: Option<Node<'_>> = None;
    for _ in 0..64 {
        let current = owned.as_ref().unwrap_or(node);
        match serde_path_to_error::deserialize::<_, T>(De(current)) {
            Ok(v) if diags.is_empty() => return Ok(v),
            Ok(_) => return Err(diags),
            Err(e) => {
                let mut path = base.to_owned();
                for seg in e.path().iter() {
                    match seg {
                        serde_path_to_error::Segment::Seq { index } => {
                            path.push_str(&format!("[{index}]"))
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            path.push('.');
                            path.push_str(key);
                        }
                        _ => {}
                    }
                }
                let msg = e.inner().to_string();
                let (unknown, d) = serde_error_diagnostic(&msg, path, source);
                diags.push(d);
                if let Some(field_path) = unknown {
                    let mut n = owned.take().unwrap_or_else(|| node.clone());
                    let rel = field_path.strip_prefix(base).unwrap_or(&field_path);
                    if n.remove_at(rel) {
                        owned = Some(n);
                        continue;
                    }
                }
                return Err(diags);
            }
        }
    }
    Err(diags)
}

/// Hints for fields written at the wrong level (the mistakes people make most often).
fn misplaced_hint(parent: &str, name: &str) -> Option<String> {
    let last = parent.rsplit('.').next().unwrap_or(parent);
    let is_item_of = |list: &str| {
        last.strip_prefix(list)
            .is_some_and(|r| r.starts_with('[') && r.ends_with(']'))
    };
    let in_route = is_item_of("route") || is_item_of("mirrors");
    match name {
        "weight" | "headers" if last == "destination" => Some(format!(
            "`{name}` belongs to the route entry, beside `destination:`, not inside it"
        )),
        "host" | "subset" | "port" if in_route => Some(format!(
            "`{name}` belongs inside `destination:` (`- destination: {{host: ..., subset: ...}}`)"
        )),
        "exact" | "prefix" | "regex" if is_item_of("match") => Some(format!(
            "a string match needs the attribute it applies to, e.g. `uri: {{{name}: ...}}` or `headers: {{end-user: {{{name}: ...}}}}`"
        )),
        "loadBalancer" | "connectionPool" | "outlierDetection" | "tls" | "portLevelSettings"
            if parent == "spec" || is_item_of("subsets") =>
        {
            Some(format!("`{name}` belongs under `trafficPolicy:`"))
        }
        "route" | "match" | "timeout" | "retries" | "fault" | "rewrite" | "redirect"
            if parent == "spec" =>
        {
            Some(format!(
                "`{name}` belongs to a route rule: `http: [{{{name}: ...}}]` (or `tcp:`/`tls:`)"
            ))
        }
        _ => {
            // snake_case spelling of a camelCase field (istioctl accepts it, the API server
            // does not).
            if name.contains('_') {
                let camel = snake_to_camel(name);
                if camel != name {
                    return Some(format!(
                        "Kubernetes only accepts the camelCase name: write `{camel}`"
                    ));
                }
            }
            None
        }
    }
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Extracts the backtick-quoted names of serde's "expected one of `a`, `b`" list.
fn expected_names(msg: &str) -> Vec<&str> {
    let Some(i) = msg.find("expected") else {
        return Vec::new();
    };
    msg[i..].split('`').skip(1).step_by(2).collect()
}

/// Turns a serde message into a diagnostic. Returns the unknown field's path when the error
/// is an unknown field (so the caller can remove it and look for more).
fn serde_error_diagnostic(
    msg: &str,
    path: String,
    source: &Source,
) -> (Option<String>, Diagnostic) {
    let file = source.file.clone();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let field_path = if path.ends_with(&format!(".{name}")) {
            path
        } else {
            format!("{path}.{name}")
        };
        let parent = field_path
            .strip_suffix(&format!(".{name}"))
            .unwrap_or(&field_path)
            .to_owned();
        let known = expected_names(msg);
        let at = source
            .locate(&field_path)
            .unwrap_or_else(|| source.locate_nearest(&parent));
        let mut d = Diagnostic::error(
            codes::UNKNOWN_FIELD,
            format!("unknown field `{name}` in `{parent}`"),
            file,
            at,
            field_path.clone(),
        );
        let known_list = if known.is_empty() {
            "this object has no fields".to_owned()
        } else {
            format!("known fields: {}", known.join(", "))
        };
        d = match (did_you_mean(name, known.iter().copied()), misplaced_hint(&parent, name)) {
            (_, Some(hint)) => d.with_help(format!("{hint} ({known_list})")),
            (Some(s), None) => d.with_help(format!(
                "did you mean `{s}`? (a lenient API server would silently drop `{name}`; {known_list})"
            )),
            (None, None) => d.with_help(known_list),
        };
        return (Some(field_path), d);
    }
    let at = source
        .locate_value(&path)
        .unwrap_or_else(|| source.locate_nearest(&path));
    if let Some(rest) = msg.strip_prefix("unknown variant `") {
        let name = rest.split('`').next().unwrap_or("");
        let known = expected_names(msg);
        let mut d = Diagnostic::error(
            codes::INVALID_VALUE,
            format!("unknown value `{name}` for `{path}`"),
            file,
            at,
            path,
        );
        let list = format!("allowed values: {}", known.join(", "));
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`? ({list})")),
            None => d.with_help(list),
        };
        return (None, d);
    }
    let mut d = Diagnostic::error(
        codes::INVALID_VALUE,
        format!("invalid value for `{path}`: {msg}"),
        file,
        at,
        path,
    );
    if msg.contains("invalid type: boolean") && msg.contains("expected a string") {
        d = d.with_help(
            "quote the value to make it a string (Kubernetes reads YAML 1.1: unquoted yes/no, on/off, y/n are booleans)",
        );
    } else if msg.contains("invalid type") && msg.contains("expected a string") {
        d = d.with_help("quote the value to make it a string");
    }
    (None, d)
}

/// The byte offset and (1-based) line of the first `---` document separator in `text`
/// past byte `from` whose line is `line` or later.
fn next_separator(text: &str, from: usize, line: u32) -> Option<(usize, u32)> {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        if offset > from
            && n >= line
            && l.starts_with("---")
            && l[3..].chars().next().is_none_or(char::is_whitespace)
        {
            return Some((offset, n));
        }
        offset += l.len();
    }
    None
}

/// The config files of a path: the path itself when it is not a directory, else the
/// directory's `.yaml`, `.yml` and `.json` files, recursively, sorted by name within each
/// directory (see [`Loader::load_path`]).
pub(crate) fn config_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError {
        path: path.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        let root = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let mut seen = std::collections::HashSet::new();
        seen.insert(root.clone());
        let walk = Walk {
            root: &root,
            seen: &mut seen,
            out: &mut files,
        };
        walk.dir(path, &root, 0)?;
    } else {
        files.push(path.to_owned());
    }
    Ok(files)
}

/// A directory walk: `seen`, the real paths of the directories walked and of the files
/// taken, so a link to a directory (a ConfigMap item with a `path` in a subdirectory is
/// one) is followed once, a link back up the tree ends, and a file reached by two names is
/// read once. A link to a directory outside the walk's `root` is not followed (a link to
/// `/` would be walked on every look of a watch); a link to a file is followed anywhere.
struct Walk<'a> {
    root: &'a Path,
    seen: &'a mut std::collections::HashSet<PathBuf>,
    out: &'a mut Vec<PathBuf>,
}

impl Walk<'_> {
    /// Walks `dir`, whose real path is `real`.
    fn dir(mut self, dir: &Path, real: &Path, depth: usize) -> Result<Self, LoadError> {
        if depth > 32 {
            return Ok(self);
        }
        let io = |source| LoadError {
            path: dir.to_owned(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            // hidden entries: a ConfigMap volume's `..data` and `..<timestamp>` directories
            // (whose files its visible links name), an editor's swap files, `.git`
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = e.path();
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                // a link to nothing, or an entry gone since the listing (a ConfigMap update
                // replacing its links): nothing to read there
                Err(source) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(LoadError {
                        path: path.clone(),
                        source,
                    })
                }
            };
            let config = meta.is_dir()
                || matches!(
                    path.extension().and_then(|x| x.to_str()),
                    Some("yaml" | "yml" | "json")
                );
            if !config {
                continue;
            }
            // the real path: a link's resolved (a path that cannot be resolved is taken as
            // it is), anything else's from its directory's
            let link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let entry_real = if link {
                std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone())
            } else {
                real.join(&name)
            };
            if meta.is_dir() && link && !entry_real.starts_with(self.root) {
                continue;
            }
            if !self.seen.insert(entry_real.clone()) {
                continue;
            }
            if meta.is_dir() {
                self = self.dir(&path, &entry_real, depth + 1)?;
            } else {
                self.out.push(path);
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews}
";

    /// A repository's other YAML and JSON (a Helm chart's `Chart.yaml` and `values.yaml`,
    /// a `package.json`) is skipped by the directory walk; named alone it is reported.
    #[test]
    fn directory_walk_skips_files_that_hold_no_object() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dr.yaml"), DR).unwrap();
        std::fs::write(dir.path().join("Chart.yaml"), "apiVersion: v2\nname: app\n").unwrap();
        std::fs::write(dir.path().join("values.yaml"), "replicas: 2\n").unwrap();
        std::fs::write(dir.path().join("package.json"), "{\"name\": \"x\"}").unwrap();
        std::fs::write(dir.path().join("list.yaml"), "- a\n- b\n").unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.objects.len(), 1);
        let alone = Loader::default()
            .load_path(&dir.path().join("values.yaml"))
            .unwrap();
        assert!(alone.diagnostics.iter().any(|d| d.is_error()));
        // an Istio object with a mistake next to a kind-less document is still reported
        std::fs::write(
            dir.path().join("mixed.yaml"),
            format!("{DR}---\nfoo: bar\n"),
        )
        .unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert!(loaded.diagnostics.iter().any(|d| d.is_error()));
    }

    /// Links to directories are followed once: a link back up the tree loads nothing twice
    /// and the walk ends.
    #[cfg(unix)]
    #[test]
    fn directory_walk_follows_each_directory_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dr.yaml"), DR).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("again")).unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("twice")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("dr.yaml"), dir.path().join("same.yaml"))
            .unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert_eq!(loaded.objects.len(), 1);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    }

    /// A link to a directory outside the walked one is not followed (a link to `/` would be
    /// walked on every look of a watch); a link to a file outside it is read.
    #[cfg(unix)]
    #[test]
    fn directory_links_leaving_the_tree_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("dr.yaml"), DR).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("elsewhere")).unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert!(loaded.objects.is_empty());
        std::os::unix::fs::symlink(outside.path().join("dr.yaml"), dir.path().join("dr.yaml"))
            .unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert_eq!(loaded.objects.len(), 1);
    }

    /// A ConfigMap volume as the kubelet writes it: the data in a hidden timestamped
    /// directory, `..data` a link to it, and a visible link per item, an item with a
    /// `path` in a subdirectory (`policies/deny.yaml`) reached through a directory link.
    #[cfg(unix)]
    #[test]
    fn configmap_volume_with_nested_items() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2026_11_28_10_00_00.123");
        std::fs::create_dir_all(data.join("policies")).unwrap();
        std::fs::write(data.join("dr.yaml"), DR).unwrap();
        std::fs::write(
            data.join("policies/deny.yaml"),
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: foo}
spec: {action: DENY, rules: [{}]}
",
        )
        .unwrap();
        symlink("..2026_11_28_10_00_00.123", dir.path().join("..data")).unwrap();
        symlink("..data/dr.yaml", dir.path().join("dr.yaml")).unwrap();
        symlink("..data/policies", dir.path().join("policies")).unwrap();
        let loaded = Loader::default().load_path(dir.path()).unwrap();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let names: Vec<String> = loaded.objects.iter().map(ConfigObject::key).collect();
        assert_eq!(names, ["default/reviews", "foo/deny"]);
    }
}
