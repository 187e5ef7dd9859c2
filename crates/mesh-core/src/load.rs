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
//!   and `ReplicaSet`, read leniently for the registry ([`Spec::Service`],
//!   [`Spec::ServiceAccount`], [`Spec::Workload`]);
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

use crate::diag::{codes, did_you_mean, Diagnostic, Severity, Sources};
use crate::model::{
    kube_raw, ConfigObject, FieldMap, FieldSpan, Kind, KubeService, Location, ObjectMeta, Source,
    Spec,
};

/// Istio kinds that exist but that inmesh does not model: skipped with a warning.
const OTHER_ISTIO_KINDS: &[&str] = &[
    "EnvoyFilter",
    "WorkloadGroup",
    "ProxyConfig",
    "Telemetry",
    "WasmPlugin",
    "IstioOperator",
];

/// Options of a [`Loader`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace given to objects without `metadata.namespace` (like `kubectl -n`).
    pub default_namespace: String,
    /// Maximum nesting depth of a document.
    pub max_depth: usize,
    /// Maximum number of nodes in a document, alias expansions included (alias-bomb guard).
    pub max_nodes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_owned(),
            max_depth: 100,
            max_nodes: 1_000_000,
        }
    }
}

/// What a load produced: the objects that loaded cleanly, the diagnostics, and the file texts
/// for rendering.
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
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Appends another load's results.
    pub fn extend(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.diagnostics.extend(other.diagnostics);
        self.sources.extend(other.sources);
    }
}

/// An I/O failure while loading (a missing or unreadable path).
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
#[derive(Debug, Clone, Default)]
pub struct Loader {
    options: LoadOptions,
}

/// Loads YAML or JSON text with default options; `file` names it in diagnostics.
pub fn load_str(text: &str, file: &str) -> Loaded {
    Loader::default().load_str(text, file)
}

/// Loads one file with default options.
pub fn load_file(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    Loader::default().load_file(path.as_ref())
}

/// Loads a file, or a directory recursively (`.yaml`, `.yml`, `.json`), with default options.
pub fn load_path(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    Loader::default().load_path(path.as_ref())
}

/// Loads several files or directories with default options.
pub fn load_paths<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Loaded, LoadError> {
    Loader::default().load_paths(paths)
}

impl Loader {
    /// A loader with these options.
    pub fn new(options: LoadOptions) -> Self {
        Loader { options }
    }

    /// The options.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// Loads text; `file` names it in diagnostics.
    pub fn load_str(&self, text: &str, file: &str) -> Loaded {
        let file: Arc<str> = Arc::from(file);
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut out = Loaded::default();
        out.sources.insert(file.clone(), Arc::from(text));
        let mut docs = Vec::new();
        let parse_err = parse_documents(text, &self.options, &mut docs);
        for (index, doc) in docs.into_iter().enumerate() {
            if let Some(root) = doc {
                self.process_document(root, &file, index, &mut out);
            }
        }
        if let Some((msg, at, code)) = parse_err {
            out.diagnostics
                .push(Diagnostic::error(code, msg, file.clone(), at, ""));
        }
        out
    }

    /// Loads bytes (UTF-8 required; invalid UTF-8 is a diagnostic, not an error).
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
    pub fn load_file(&self, path: &Path) -> Result<Loaded, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError {
            path: path.to_owned(),
            source,
        })?;
        Ok(self.load_bytes(&bytes, &path.display().to_string()))
    }

    /// Loads a file, or a directory recursively (`.yaml`, `.yml`, `.json`, sorted by name;
    /// hidden entries skipped).
    pub fn load_path(&self, path: &Path) -> Result<Loaded, LoadError> {
        let meta = std::fs::metadata(path).map_err(|source| LoadError {
            path: path.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return self.load_file(path);
        }
        let mut files = Vec::new();
        collect_files(path, 0, &mut files)?;
        let mut out = Loaded::default();
        for f in files {
            out.extend(self.load_file(&f)?);
        }
        Ok(out)
    }

    /// Loads several files or directories.
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

    fn process_document(&self, root: Node, file: &Arc<str>, doc: usize, out: &mut Loaded) {
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
        node: Node,
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
        let scalar_str = |n: &Node| match &n.kind {
            NodeKind::Str(s) => Some(s.clone()),
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
                if group == kind.group() {
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
                let istio_group = group.ends_with(".istio.io")
                    || is_near_istio_group(group, crate::model::NETWORKING_GROUP)
                    || is_near_istio_group(group, crate::model::SECURITY_GROUP);
                if !istio_group {
                    return;
                }
                let names = Kind::ISTIO.iter().map(|k| k.as_str());
                if OTHER_ISTIO_KINDS.contains(&kind_str.as_str()) {
                    out.diagnostics.push(Diagnostic::new(
                        Severity::Warning,
                        codes::UNSUPPORTED_KIND,
                        format!("{kind_str} is an Istio kind inmesh does not support: skipped"),
                        file.clone(),
                        kind_loc,
                        join(prefix, "kind"),
                    ));
                } else if let Some(s) = did_you_mean(&kind_str, names) {
                    out.diagnostics.push(
                        err(
                            codes::UNKNOWN_KIND,
                            format!("unknown kind `{kind_str}` in API group `{group}`"),
                            kind_loc,
                            &join(prefix, "kind"),
                        )
                        .with_help(format!("did you mean `{s}`?")),
                    );
                } else if group == crate::model::NETWORKING_GROUP
                    || group == crate::model::SECURITY_GROUP
                {
                    out.diagnostics.push(
                        err(
                            codes::UNKNOWN_KIND,
                            format!("unknown kind `{kind_str}` in API group `{group}`"),
                            kind_loc,
                            &join(prefix, "kind"),
                        )
                        .with_help(format!(
                            "known kinds: {}",
                            Kind::ISTIO.map(|k| k.as_str()).join(", ")
                        )),
                    );
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
        node: Node,
        file: &Arc<str>,
        doc: usize,
        out: &mut Loaded,
        prefix: &str,
    ) {
        let at = node.at;
        let mut fields = FieldMap::new();
        let mut path = String::new();
        let mut value = to_value(&node, &mut path, &mut fields);
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
        let Value::Object(map) = &mut value else {
            return;
        };
        const TOP: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
        for key in map.keys() {
            if !TOP.contains(&key.as_str()) {
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_FIELD,
                    format!("unknown field `{key}` at the top level of {kind}"),
                    file.clone(),
                    source.locate(key).unwrap_or(at),
                    key.clone(),
                );
                d = match did_you_mean(key, TOP) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(
                        "an object has only apiVersion, kind, metadata, spec and status",
                    ),
                };
                push(d);
            }
        }
        let meta_value = map.remove("metadata").unwrap_or(Value::Null);
        let metadata = if meta_value.is_null() {
            push(Diagnostic::error(
                codes::MISSING_NAME,
                format!("{kind} has no `metadata`; `metadata.name` is required"),
                file.clone(),
                at,
                "metadata",
            ));
            None
        } else {
            match deserialize_at::<ObjectMeta>(&meta_value, "metadata", &source) {
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
            }
        };
        let spec_value = match map.remove("spec") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v) => v,
        };
        let spec = match kind {
            Kind::VirtualService => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::VirtualService)
            }
            Kind::DestinationRule => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::DestinationRule)
            }
            Kind::ServiceEntry => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::ServiceEntry)
            }
            Kind::WorkloadEntry => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::WorkloadEntry)
            }
            Kind::Gateway => deserialize_at(&spec_value, "spec", &source).map(Spec::Gateway),
            Kind::Sidecar => deserialize_at(&spec_value, "spec", &source).map(Spec::Sidecar),
            Kind::PeerAuthentication => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::PeerAuthentication)
            }
            Kind::AuthorizationPolicy => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::AuthorizationPolicy)
            }
            Kind::RequestAuthentication => {
                deserialize_at(&spec_value, "spec", &source).map(Spec::RequestAuthentication)
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
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn parse_kube(
        &self,
        kind: Kind,
        api_version: String,
        node: Node,
        file: &Arc<str>,
        doc: usize,
        out: &mut Loaded,
        prefix: &str,
    ) {
        let at = node.at;
        let mut fields = FieldMap::new();
        let mut path = String::new();
        let value = to_value(&node, &mut path, &mut fields);
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
        let meta = value.get("metadata").cloned().unwrap_or(Value::Null);
        let mut metadata: ObjectMeta = match lenient(meta) {
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
        if metadata.namespace.is_empty() {
            metadata
                .namespace
                .clone_from(&self.options.default_namespace);
        }
        let spec_v = value.get("spec").cloned().unwrap_or(Value::Null);
        let spec = match kind {
            Kind::Service => lenient::<KubeService>(spec_v).map(Spec::Service),
            Kind::ServiceAccount => Ok(Spec::ServiceAccount),
            Kind::Pod => lenient::<kube_raw::PodSpec>(spec_v)
                .map(|p| Spec::Workload(p.into_workload(metadata.labels.clone(), None))),
            _ => lenient::<kube_raw::ControllerSpec>(spec_v).map(|c| {
                Spec::Workload(
                    c.template
                        .spec
                        .into_workload(c.template.metadata.labels, c.replicas),
                )
            }),
        };
        match spec {
            Ok(spec) => out.objects.push(ConfigObject {
                api_version,
                kind,
                metadata,
                spec,
                source,
            }),
            Err(e) => out.diagnostics.push(ignored(format!("spec: {e}"))),
        }
    }
}

/// Deserializes leniently: null is the default.
fn lenient<T: DeserializeOwned + Default>(v: Value) -> Result<T, serde_json::Error> {
    if v.is_null() {
        Ok(T::default())
    } else {
        serde_json::from_value(v)
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

/// True when `group` is not `expected` but plausibly meant it: it mentions istio, or is within
/// a small edit distance.
fn is_near_istio_group(group: &str, expected: &str) -> bool {
    group != expected && (group.contains("istio") || strsim::levenshtein(group, expected) <= 3)
}

/// Deserializes `value` as `T`, mapping failures to diagnostics at `base` (`spec`). Unknown
/// fields are all reported (each is removed and deserialization retried); any other error
/// stops at the first.
fn deserialize_at<T: DeserializeOwned>(
    value: &Value,
    base: &str,
    source: &Source,
) -> Result<T, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut owned: Option<Value> = None;
    for _ in 0..64 {
        let current = owned.as_ref().unwrap_or(value);
        match serde_path_to_error::deserialize::<_, T>(current) {
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
                let d = serde_error_diagnostic(&msg, path, source);
                let unknown = d.0;
                diags.push(d.1);
                if let Some(field_path) = unknown {
                    let mut v = owned.take().unwrap_or_else(|| value.clone());
                    let rel = field_path.strip_prefix(base).unwrap_or(&field_path);
                    if remove_at(&mut v, rel) {
                        owned = Some(v);
                        continue;
                    }
                }
                return Err(diags);
            }
        }
    }
    Err(diags)
}

/// Removes the field at a relative path like `.http[0].route[0].destination.subnet`.
fn remove_at(v: &mut Value, rel: &str) -> bool {
    let segs = split_path(rel);
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = v;
    for s in parents {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(*k) {
                Some(n) => n,
                None => return false,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Key(k), Value::Object(m)) => m.remove(*k).is_some(),
        _ => false,
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(p: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(Seg::Key(&r[..end]));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            out.push(Seg::Index(r[..end].parse().unwrap_or(usize::MAX)));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Seg::Key(&rest[..end]));
            rest = &rest[end..];
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
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.with_help(format!(
                "did you mean `{s}`? (a lenient API server would silently drop `{name}`; {known_list})"
            )),
            None => d.with_help(known_list),
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
    if msg.contains("invalid type") && msg.contains("expected a string") {
        d = d.with_help("quote the value to make it a string");
    }
    (None, d)
}

// ---------------------------------------------------------------------------------------------
// The spanned YAML tree.

#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    at: Location,
}

#[derive(Debug, Clone)]
enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone)]
struct Key {
    text: String,
    at: Location,
}

enum Frame {
    Seq {
        at: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        at: Location,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
    },
}

fn loc(m: saphyr_parser::Marker) -> Location {
    Location {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

type ParseFailure = (String, Location, &'static str);

/// Parses all documents of `text`; documents parsed before a syntax error are kept.
fn parse_documents(
    text: &str,
    opts: &LoadOptions,
    docs: &mut Vec<Option<Node>>,
) -> Option<ParseFailure> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes: usize = 0;
    let mut root: Option<Node> = None;
    let mut duplicate: Option<ParseFailure> = None;
    loop {
        let (ev, span) = match parser.next_event() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => return Some(scan_failure(&e)),
        };
        let at = loc(span.start);
        let mut complete: Option<(Node, usize)> = None;
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                stack.clear();
                anchors.clear();
                nodes = 0;
                root = None;
            }
            Event::DocumentEnd => {
                docs.push(root.take());
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    nodes = nodes.saturating_add(*size);
                    if nodes > opts.max_nodes {
                        return Some((
                            format!(
                                "document too large after alias expansion (more than {} nodes): possible alias bomb",
                                opts.max_nodes
                            ),
                            at,
                            codes::LIMITS,
                        ));
                    }
                    let mut n = n.clone();
                    n.at = at;
                    complete = Some((n, 0));
                }
                None => return Some(("unknown alias".to_owned(), at, codes::SYNTAX)),
            },
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style == ScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&value)
                } else {
                    NodeKind::Str(value.into_owned())
                };
                complete = Some((Node { kind, at }, anchor));
            }
            Event::SequenceStart(anchor, _) => {
                nodes += 1;
                stack.push(Frame::Seq {
                    at,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                nodes += 1;
                stack.push(Frame::Map {
                    at,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { at, anchor, items }) = stack.pop() {
                    complete = Some((
                        Node {
                            kind: NodeKind::Seq(items),
                            at,
                        },
                        anchor,
                    ));
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    at,
                    anchor,
                    entries,
                    ..
                }) = stack.pop()
                {
                    complete = Some((
                        Node {
                            kind: NodeKind::Map(entries),
                            at,
                        },
                        anchor,
                    ));
                }
            }
        }
        if stack.len() > opts.max_depth {
            return Some((
                format!("nesting deeper than {} levels", opts.max_depth),
                at,
                codes::LIMITS,
            ));
        }
        if nodes > opts.max_nodes {
            return Some((
                format!("document has more than {} nodes", opts.max_nodes),
                at,
                codes::LIMITS,
            ));
        }
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor != 0 {
            let size = count_nodes(&node);
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = match node.kind {
                        NodeKind::Str(s) => s,
                        NodeKind::Null => String::new(),
                        NodeKind::Bool(b) => b.to_string(),
                        NodeKind::Int(i) => i.to_string(),
                        NodeKind::UInt(u) => u.to_string(),
                        NodeKind::Float(f) => f.to_string(),
                        NodeKind::Seq(_) | NodeKind::Map(_) => {
                            return Some((
                                "complex mapping keys are not supported".to_owned(),
                                node.at,
                                codes::SYNTAX,
                            ))
                        }
                    };
                    *key = Some(Key { text, at: node.at });
                }
                Some(k) => {
                    if entries.iter().any(|(e, _)| e.text == k.text) {
                        duplicate.get_or_insert((
                            format!("duplicate key `{}` in a mapping", k.text),
                            k.at,
                            codes::DUPLICATE_KEY,
                        ));
                    } else {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
    duplicate
}

fn scan_failure(e: &ScanError) -> ParseFailure {
    (
        format!("YAML syntax error: {}", e.info()),
        loc(*e.marker()),
        codes::SYNTAX,
    )
}

fn count_nodes(n: &Node) -> usize {
    // Iterative to stay safe on deep trees.
    let mut count = 0usize;
    let mut todo: Vec<&Node> = vec![n];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.kind {
            NodeKind::Seq(items) => todo.extend(items.iter()),
            NodeKind::Map(entries) => todo.extend(entries.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    count
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> NodeKind {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" => return NodeKind::Bool(true),
        "false" | "False" | "FALSE" => return NodeKind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return NodeKind::Str(s.to_owned()),
        _ => {}
    }
    let b = s.as_bytes();
    let digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    let unsigned = b
        .strip_prefix(b"-")
        .or_else(|| b.strip_prefix(b"+"))
        .unwrap_or(b);
    if digits(unsigned) {
        if let Ok(i) = s.parse::<i64>() {
            return NodeKind::Int(i);
        }
        if let Ok(u) = s.trim_start_matches('+').parse::<u64>() {
            return NodeKind::UInt(u);
        }
        return NodeKind::Str(s.to_owned());
    }
    if let Some(h) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(h, 16) {
            return NodeKind::Int(i);
        }
    }
    if let Some(o) = s.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(o, 8) {
            return NodeKind::Int(i);
        }
    }
    // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    if is_float(unsigned) {
        if let Ok(f) = s.parse::<f64>() {
            if f.is_finite() {
                return NodeKind::Float(f);
            }
        }
    }
    NodeKind::Str(s.to_owned())
}

fn is_float(b: &[u8]) -> bool {
    let mut i = 0;
    let int = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac;
    }
    if int == 0 && frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if e == 0 {
            return false;
        }
        i += e;
    }
    i == b.len()
}

/// Converts a node to JSON, recording each field path's position.
fn to_value(node: &Node, path: &mut String, fields: &mut FieldMap) -> Value {
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Bool(b) => Value::Bool(*b),
        NodeKind::Int(i) => Value::Number((*i).into()),
        NodeKind::UInt(u) => Value::Number((*u).into()),
        NodeKind::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        NodeKind::Str(s) => Value::String(s.clone()),
        NodeKind::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                use std::fmt::Write as _;
                let _ = write!(path, "[{i}]");
                fields.insert(
                    path.as_str().into(),
                    FieldSpan {
                        key: item.at,
                        value: item.at,
                    },
                );
                out.push(to_value(item, path, fields));
                path.truncate(len);
            }
            Value::Array(out)
        }
        NodeKind::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&k.text);
                fields.insert(
                    path.as_str().into(),
                    FieldSpan {
                        key: k.at,
                        value: v.at,
                    },
                );
                let value = to_value(v, path, fields);
                path.truncate(len);
                out.insert(k.text.clone(), value);
            }
            Value::Object(out)
        }
    }
}

fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    if depth > 32 {
        return Ok(());
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
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let meta = std::fs::metadata(&path).map_err(|source| LoadError {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_files(&path, depth + 1, out)?;
        } else if matches!(
            path.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}
