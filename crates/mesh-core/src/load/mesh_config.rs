//! Positioned parsing of an Istio MeshConfig for [`crate::meshconfig`]: the same spanned
//! tree and serde path tracking as the object loader, so MeshConfig errors carry file, line,
//! field path and "did you mean" like every other diagnostic.
//!
//! Three shapes are accepted: a bare MeshConfig document (as in the `istio` ConfigMap's
//! `mesh` key, or a file given to istiod with `--meshConfig`), the `istio` ConfigMap itself
//! (`data.mesh`, a YAML string: its positions are mapped back into the file when it is a
//! `|` block), and an IstioOperator (`spec.meshConfig`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::node::{parse_documents, Key, Node, NodeKind};
use super::{deserialize_at, LoadOptions};
use crate::diag::{codes, Diagnostic, Sources};
use crate::model::{FieldMap, Location, Source};

/// A MeshConfig found in a file: the value (`None` after a schema error), where it sits
/// (`base`: the field path of the MeshConfig object, e.g. `data.mesh`), and the problems.
#[derive(Debug)]
pub(crate) struct FoundMeshConfig<T> {
    pub(crate) value: Option<T>,
    pub(crate) base: String,
    pub(crate) source: Source,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) sources: Sources,
}

/// Parses the first MeshConfig-bearing document of `text`.
pub(crate) fn load_mesh_config<T: DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> FoundMeshConfig<T> {
    let file: Arc<str> = Arc::from(file);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sources = Sources::default();
    sources.insert(file.clone(), Arc::from(text));
    let opts = LoadOptions::default();
    let mut docs = Vec::new();
    let parse_err = parse_documents(text, &opts, &mut docs, &mut Vec::new());
    let mut diagnostics = Vec::new();
    if let Some((msg, at, code)) = parse_err {
        diagnostics.push(Diagnostic::error(code, msg, file.clone(), at, ""));
    }
    let empty_source = |at: Location| Source {
        file: file.clone(),
        location: at,
        document: 0,
        fields: Arc::new(FieldMap::new()),
    };
    let mut found: Option<(Node<'_>, String, usize)> = None;
    for (doc, root) in docs.into_iter().enumerate() {
        let Some(root) = root else { continue };
        match &root.kind {
            NodeKind::Null => continue,
            NodeKind::Map(_) => {}
            _ => {
                diagnostics.push(Diagnostic::error(
                    codes::NOT_AN_OBJECT,
                    "a MeshConfig must be a mapping",
                    file.clone(),
                    root.at,
                    "",
                ));
                continue;
            }
        }
        let kind = match root.get("kind").map(|k| &k.kind) {
            Some(NodeKind::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        match kind.as_deref() {
            None => {
                found = Some((wrap("mesh", root), "mesh".to_owned(), doc));
                break;
            }
            Some("ConfigMap") => {
                let Some(mesh) = root.get("data").and_then(|d| d.get("mesh")) else {
                    continue; // another ConfigMap (istio-sidecar-injector, ...)
                };
                let NodeKind::Str(inner_text) = &mesh.kind else {
                    diagnostics.push(Diagnostic::error(
                        codes::INVALID_VALUE,
                        "`data.mesh` must be a string holding the MeshConfig YAML",
                        file.clone(),
                        mesh.at,
                        "data.mesh",
                    ));
                    return FoundMeshConfig {
                        value: None,
                        base: "data.mesh".to_owned(),
                        source: empty_source(mesh.at),
                        diagnostics,
                        sources,
                    };
                };
                let inner_text = inner_text.to_string();
                let shift = block_shift(text, mesh.at);
                let mut inner_docs = Vec::new();
                if let Some((msg, at, code)) =
                    parse_documents(&inner_text, &opts, &mut inner_docs, &mut Vec::new())
                {
                    diagnostics.push(Diagnostic::error(
                        code,
                        format!("in `data.mesh`: {msg}"),
                        file.clone(),
                        shift.map_or(mesh.at, |s| s.apply(at)),
                        "data.mesh",
                    ));
                    return FoundMeshConfig {
                        value: None,
                        base: "data.mesh".to_owned(),
                        source: empty_source(mesh.at),
                        diagnostics,
                        sources,
                    };
                }
                let mut inner = inner_docs
                    .into_iter()
                    .flatten()
                    .next()
                    .unwrap_or(Node {
                        kind: NodeKind::Null,
                        at: mesh.at,
                    })
                    .into_owned();
                match shift {
                    Some(s) => s.shift_node(&mut inner),
                    None => pin_node(&mut inner, mesh.at),
                }
                let data = wrap("mesh", inner);
                found = Some((wrap("data", data), "data.mesh".to_owned(), doc));
                break;
            }
            Some("IstioOperator") => {
                if root.get("spec").and_then(|s| s.get("meshConfig")).is_none() {
                    continue;
                }
                found = Some((root.into_owned(), "spec.meshConfig".to_owned(), doc));
                break;
            }
            Some(_) => continue,
        }
    }
    let Some((node, base, doc)) = found else {
        if !diagnostics.is_empty() || text.trim().is_empty() {
            // an empty file is the default MeshConfig
            let value = diagnostics.is_empty().then(T::default);
            return FoundMeshConfig {
                value,
                base: "mesh".to_owned(),
                source: empty_source(Location { line: 1, column: 1 }),
                diagnostics,
                sources,
            };
        }
        diagnostics.push(Diagnostic::error(
            codes::NOT_AN_OBJECT,
            "no MeshConfig found: expected a MeshConfig document (`trustDomain`, \
             `extensionProviders`, ...), the `istio` ConfigMap (`data.mesh`) or an \
             IstioOperator (`spec.meshConfig`)",
            file.clone(),
            Location { line: 1, column: 1 },
            "",
        ));
        return FoundMeshConfig {
            value: None,
            base: "mesh".to_owned(),
            source: empty_source(Location { line: 1, column: 1 }),
            diagnostics,
            sources,
        };
    };
    let mut fields = FieldMap::new();
    node.record_fields(&mut fields, FieldMap::ROOT);
    let source = Source {
        file: file.clone(),
        location: node.at,
        document: doc,
        fields: Arc::new(fields),
    };
    let mut target = &node;
    for seg in base.split('.') {
        match target.get(seg) {
            Some(n) => target = n,
            None => break,
        }
    }
    let value = match deserialize_at::<T>(target, &base, &source) {
        Ok(v) => Some(v),
        Err(ds) => {
            diagnostics.extend(ds);
            None
        }
    };
    FoundMeshConfig {
        value,
        base,
        source,
        diagnostics,
        sources,
    }
}

/// `{key: node}`, positioned at the node.
fn wrap<'a>(key: &str, node: Node<'a>) -> Node<'a> {
    let at = node.at;
    Node {
        kind: NodeKind::Map(vec![(
            Key {
                text: Cow::Owned(key.to_owned()),
                at,
            },
            node,
        )]),
        at,
    }
}

/// How positions inside a `|` block scalar map to the file: inner line `l` is file line
/// `first_line + l - 1`, inner column `c` is file column `c + indent`.
#[derive(Debug, Clone, Copy)]
struct Shift {
    first_line: u32,
    indent: u32,
}

impl Shift {
    fn apply(self, at: Location) -> Location {
        Location {
            line: self.first_line + at.line.saturating_sub(1),
            column: at.column + self.indent,
        }
    }

    fn shift_node(self, n: &mut Node<'_>) {
        n.at = self.apply(n.at);
        match &mut n.kind {
            NodeKind::Seq(items) => items.iter_mut().for_each(|i| self.shift_node(i)),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    k.at = self.apply(k.at);
                    self.shift_node(v);
                }
            }
            _ => {}
        }
    }
}

/// Every position at `at` (a string scalar that is not a `|` block: no finer mapping).
fn pin_node(n: &mut Node<'_>, at: Location) {
    n.at = at;
    match &mut n.kind {
        NodeKind::Seq(items) => items.iter_mut().for_each(|i| pin_node(i, at)),
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                k.at = at;
                pin_node(v, at);
            }
        }
        _ => {}
    }
}

/// The shift of a `|` block scalar whose content starts at `at` (where the parser puts a
/// block scalar); `None` for other styles.
fn block_shift(text: &str, at: Location) -> Option<Shift> {
    let lines: Vec<&str> = text.lines().collect();
    let content = at.line.checked_sub(1)? as usize;
    // the indicator ends the nearest non-blank line above the content
    let (indicator_line, line) = lines[..content.min(lines.len())]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| !l.trim().is_empty())?;
    let tail = line.split(" #").next().unwrap_or(line).trim_end();
    let ind = tail.rsplit([' ', ':']).next().unwrap_or("");
    if !ind.starts_with('|') || ind.contains('>') {
        return None;
    }
    Some(Shift {
        first_line: u32::try_from(indicator_line).ok()? + 2,
        indent: at.column.checked_sub(1)?,
    })
}

impl Node<'_> {
    /// The same tree, owning its strings.
    fn into_owned(self) -> Node<'static> {
        let kind = match self.kind {
            NodeKind::Null => NodeKind::Null,
            NodeKind::Bool(b) => NodeKind::Bool(b),
            NodeKind::Int(i) => NodeKind::Int(i),
            NodeKind::UInt(u) => NodeKind::UInt(u),
            NodeKind::Float(f) => NodeKind::Float(f),
            NodeKind::Str(s) => NodeKind::Str(Cow::Owned(s.into_owned())),
            NodeKind::Seq(items) => {
                NodeKind::Seq(items.into_iter().map(Node::into_owned).collect())
            }
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            Key {
                                text: Cow::Owned(k.text.into_owned()),
                                at: k.at,
                            },
                            v.into_owned(),
                        )
                    })
                    .collect(),
            ),
        };
        Node { kind, at: self.at }
    }
}
