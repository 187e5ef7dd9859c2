//! The spanned YAML tree: `saphyr-parser` events → nodes that keep their line and column.
//! Scalars borrow from the input where the parser allows it.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use super::LoadOptions;
use crate::diag::codes;
use crate::model::{FieldMap, FieldSpan, Location};

#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    pub(super) kind: NodeKind<'a>,
    pub(super) at: Location,
}

#[derive(Debug, Clone)]
pub(super) enum NodeKind<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    Map(Vec<(Key<'a>, Node<'a>)>),
}

#[derive(Debug, Clone)]
pub(super) struct Key<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) at: Location,
}

impl<'a> Node<'a> {
    /// Moves the node, and everything under it, `lines` lines down (a document parsed from
    /// the middle of its file).
    pub(super) fn shift_lines(&mut self, lines: u32) {
        self.at.line = self.at.line.saturating_add(lines);
        match &mut self.kind {
            NodeKind::Seq(items) => items.iter_mut().for_each(|n| n.shift_lines(lines)),
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    k.at.line = k.at.line.saturating_add(lines);
                    v.shift_lines(lines);
                }
            }
            _ => {}
        }
    }

    /// The value of mapping entry `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Records the position of every field under `parent`.
    pub(super) fn record_fields(&self, fields: &mut FieldMap, parent: u32) {
        match &self.kind {
            NodeKind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let id = fields.push_index(
                        parent,
                        i,
                        FieldSpan {
                            key: item.at,
                            value: item.at,
                        },
                    );
                    item.record_fields(fields, id);
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    let id = fields.push_key(
                        parent,
                        &k.text,
                        FieldSpan {
                            key: k.at,
                            value: v.at,
                        },
                    );
                    v.record_fields(fields, id);
                }
            }
            _ => {}
        }
    }

    /// Removes the mapping entry at a relative path like `.http[0].route[0].destination.subnet`.
    pub(super) fn remove_at(&mut self, rel: &str) -> bool {
        let rest = rel.strip_prefix('.').unwrap_or(rel);
        if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return false };
            let Ok(i) = r[..end].parse::<usize>() else {
                return false;
            };
            return match &mut self.kind {
                NodeKind::Seq(items) => {
                    items.get_mut(i).is_some_and(|n| n.remove_at(&r[end + 1..]))
                }
                _ => false,
            };
        }
        let NodeKind::Map(entries) = &mut self.kind else {
            return false;
        };
        // The whole rest is a key of this mapping: remove it.
        if let Some(pos) = entries.iter().position(|(k, _)| k.text == rest) {
            entries.remove(pos);
            return true;
        }
        for (k, v) in entries.iter_mut() {
            if let Some(after) = rest.strip_prefix(&*k.text)
                && (after.starts_with('.') || after.starts_with('['))
                && v.remove_at(after)
            {
                return true;
            }
        }
        false
    }
}

enum Frame<'a> {
    Seq {
        at: Location,
        anchor: usize,
        items: Vec<Node<'a>>,
    },
    Map {
        at: Location,
        anchor: usize,
        entries: Vec<(Key<'a>, Node<'a>)>,
        key: Option<Key<'a>>,
    },
}

fn loc(m: saphyr_parser::Marker) -> Location {
    Location {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

pub(super) type ParseFailure = (String, Location, &'static str);

/// Parses all documents of `text`; documents parsed before a syntax error are kept.
pub(super) fn parse_documents<'a>(
    text: &'a str,
    opts: &LoadOptions,
    docs: &mut Vec<Option<Node<'a>>>,
    renamed_keys: &mut Vec<(Location, String)>,
) -> Option<ParseFailure> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame<'a>> = Vec::new();
    let mut anchors: HashMap<usize, (Node<'a>, usize)> = HashMap::new();
    let mut alias_nodes: usize = 0;
    let mut root: Option<Node<'a>> = None;
    let mut duplicate: Option<ParseFailure> = None;
    loop {
        let (ev, span) = match parser.next_event() {
            None => break,
            Some(Ok(x)) => x,
            Some(Err(e)) => return Some(scan_failure(&e)),
        };
        let at = loc(span.start);
        let mut complete: Option<(Node<'a>, usize)> = None;
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                stack.clear();
                anchors.clear();
                alias_nodes = 0;
                root = None;
            }
            Event::DocumentEnd => docs.push(root.take()),
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    alias_nodes = alias_nodes.saturating_add(*size);
                    if alias_nodes > opts.max_alias_nodes {
                        return Some((
                            format!(
                                "aliases expand to more than {} nodes: possible alias bomb",
                                opts.max_alias_nodes
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
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !is_str_tag;
                // a mapping key only YAML 1.1 reads as a boolean (`n`, `on`, ...): Kubernetes
                // renames it `true`/`false`; worth a warning
                if plain
                    && is_yaml11_only_bool(&value)
                    && matches!(stack.last(), Some(Frame::Map { key: None, .. }))
                {
                    renamed_keys.push((at, value.to_string()));
                }
                let kind = if plain {
                    resolve_plain(value)
                } else {
                    NodeKind::Str(value)
                };
                complete = Some((Node { kind, at }, anchor));
            }
            Event::SequenceStart(anchor, _) => stack.push(Frame::Seq {
                at,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => stack.push(Frame::Map {
                at,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
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
                    mut entries,
                    ..
                }) = stack.pop()
                {
                    apply_merge_keys(&mut entries);
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
                    let text: Cow<'a, str> = match node.kind {
                        NodeKind::Str(s) => s,
                        NodeKind::Null => Cow::Borrowed(""),
                        NodeKind::Bool(b) => Cow::Owned(b.to_string()),
                        NodeKind::Int(i) => Cow::Owned(i.to_string()),
                        NodeKind::UInt(u) => Cow::Owned(u.to_string()),
                        NodeKind::Float(f) => Cow::Owned(f.to_string()),
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

/// YAML merge keys (`<<: *base` or `<<: [*a, *b]`), as Kubernetes' YAML reader supports:
/// entries of the merged mappings are added unless the mapping already has the key.
fn apply_merge_keys<'a>(entries: &mut Vec<(Key<'a>, Node<'a>)>) {
    let Some(pos) = entries.iter().position(|(k, _)| k.text == "<<") else {
        return;
    };
    let (_, merged) = entries.remove(pos);
    let sources: Vec<Node<'a>> = match merged.kind {
        NodeKind::Map(_) => vec![merged],
        NodeKind::Seq(items) => items,
        _ => return,
    };
    for src in sources {
        if let NodeKind::Map(extra) = src.kind {
            for (k, v) in extra {
                if !entries.iter().any(|(e, _)| e.text == k.text) {
                    entries.push((k, v));
                }
            }
        }
    }
}

fn scan_failure(e: &ScanError) -> ParseFailure {
    (
        format!("YAML syntax error: {}", e.info()),
        loc(*e.marker()),
        codes::SYNTAX,
    )
}

fn count_nodes(n: &Node<'_>) -> usize {
    let mut count = 0usize;
    let mut todo: Vec<&Node<'_>> = vec![n];
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

/// A boolean of YAML 1.1 (go-yaml v2) that YAML 1.2 reads as a string.
fn is_yaml11_only_bool(s: &str) -> bool {
    matches!(
        s,
        "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "y"
            | "Y"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
            | "n"
            | "N"
    )
}

/// Resolution of a plain scalar: YAML 1.2's core schema, plus YAML 1.1's other booleans
/// (`yes`/`no`, `on`/`off`, `y`/`n`), as Kubernetes reads YAML (`sigs.k8s.io/yaml`, go-yaml
/// v2): `ignoreUriCase: yes` is `true`, and `exact: on` is a boolean where a string is
/// expected, which the API server refuses.
fn resolve_plain(cow: Cow<'_, str>) -> NodeKind<'_> {
    let s: &str = &cow;
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return NodeKind::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            return NodeKind::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return NodeKind::Bool(false)
        }
        _ => {}
    }
    let b = s.as_bytes();
    let first = b[0];
    // Fast path: most scalars are names, not numbers.
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return NodeKind::Str(cow);
    }
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
        return NodeKind::Str(cow);
    }
    if let Some(h) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(h, 16)
    {
        return NodeKind::Int(i);
    }
    if let Some(o) = s.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(o, 8)
    {
        return NodeKind::Int(i);
    }
    if is_float(unsigned)
        && let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return NodeKind::Float(f);
    }
    NodeKind::Str(cow)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_like_kubernetes() {
        let table: &[(&str, &str)] = &[
            ("", "null"),
            ("~", "null"),
            ("true", "bool"),
            ("False", "bool"),
            ("yes", "bool"),
            ("Off", "bool"),
            ("n", "bool"),
            ("yess", "str"),
            ("oN", "str"),
            ("42", "int"),
            ("-7", "int"),
            ("0x1F", "int"),
            ("0o17", "int"),
            ("18446744073709551615", "uint"),
            ("99999999999999999999999", "str"),
            ("1.5", "float"),
            (".5", "float"),
            ("1e3", "float"),
            ("1e999", "str"),
            (".inf", "str"),
            ("1.2.3", "str"),
            ("5s", "str"),
            ("v1", "str"),
        ];
        for (input, want) in table {
            let got = match resolve_plain(Cow::Borrowed(input)) {
                NodeKind::Null => "null",
                NodeKind::Bool(_) => "bool",
                NodeKind::Int(_) => "int",
                NodeKind::UInt(_) => "uint",
                NodeKind::Float(_) => "float",
                NodeKind::Str(_) => "str",
                _ => "other",
            };
            assert_eq!(got, *want, "{input:?}");
        }
    }
}
