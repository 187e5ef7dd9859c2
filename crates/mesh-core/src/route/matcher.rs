//! Compiled HTTP match conditions (spec §2.3): string matchers, header/query conditions and
//! the static pre-filters (port, source labels, source namespace, gateways).

use std::collections::HashMap;

use http::header::HeaderName;
use regex::Regex;

use crate::authz::RequestAuth;
use crate::model::{HttpMatchRequest, Labels, StringMatch, StringMatchKind};
use crate::names::labels_match;

/// Compiles regexes once per snapshot, sharing identical patterns.
#[derive(Debug, Default)]
pub(crate) struct RegexCache {
    map: HashMap<String, Regex>,
    strings: std::collections::HashSet<std::sync::Arc<str>>,
    headers: HashMap<Box<str>, HeaderName>,
}

impl RegexCache {
    /// Shares identical strings (hosts, subsets, matcher values) across the snapshot.
    pub(crate) fn intern(&mut self, s: &str) -> std::sync::Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: std::sync::Arc<str> = s.into();
        self.strings.insert(a.clone());
        a
    }

    /// A header name, lower-cased, shared across the snapshot.
    pub(crate) fn header_name(&mut self, name: &str) -> Option<HeaderName> {
        if let Some(h) = self.headers.get(name) {
            return Some(h.clone());
        }
        let h = HeaderName::from_bytes(name.as_bytes()).ok()?;
        self.headers.insert(name.into(), h.clone());
        Some(h)
    }

    /// An anchored (full match, RE2-style) regex: [`re2_regex`], shared per pattern.
    pub(crate) fn full(&mut self, pattern: &str) -> Result<Regex, String> {
        if let Some(r) = self.map.get(pattern) {
            return Ok(r.clone());
        }
        let r = re2_regex(pattern, true).map_err(|e| format!("regex {pattern:?}: {e}"))?;
        self.map.insert(pattern.to_owned(), r.clone());
        Ok(r)
    }

    /// An unanchored regex (for `uriRegexRewrite`, which substitutes matches).
    pub(crate) fn raw(&mut self, pattern: &str) -> Result<Regex, String> {
        let key = format!("\u{0}{pattern}");
        if let Some(r) = self.map.get(&key) {
            return Ok(r.clone());
        }
        let r = re2_regex(pattern, false).map_err(|e| format!("regex {pattern:?}: {e}"))?;
        self.map.insert(key, r.clone());
        Ok(r)
    }
}

/// RE2's largest repeat count (`kMaxRepeat`): `a{1001}` does not parse there.
const RE2_MAX_REPEAT: u64 = 1000;

/// The compiled-program size one pattern may take.
const RE2_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `pattern` in RE2's dialect, as Envoy's `safe_regex` (and istiod's Go `regexp`
/// validation) reads it: Perl classes and `\b` ASCII-only, `\Q...\E` literal text, a `{`
/// that does not start a repeat literal ([`re2_classes`]), repeat counts at most 1000 (nested
/// ones too: at most 1000 copies in all) and no repetition of a repetition
/// ([`check_repeats`]).
/// `anchored` = the whole value must match (Envoy's `StringMatcher.safe_regex`). This is the
/// one place the data plane (routes, CORS origins, `uriRegexRewrite`) and the validator
/// compile regexes, so both accept the same patterns. The error is one line.
pub(crate) fn re2_regex(pattern: &str, anchored: bool) -> Result<Regex, String> {
    let translated = re2_classes(pattern);
    check_repeats(&translated)?;
    let source = if anchored {
        format!("^(?:{translated})$")
    } else {
        translated
    };
    regex::RegexBuilder::new(&source)
        .size_limit(RE2_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let msg = e.to_string();
            msg.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .or(msg.lines().next())
                .unwrap_or("")
                .trim()
                .to_owned()
        })
}

/// RE2's checks on repetition operators that `regex` does not make, on a translated
/// pattern: a count over 1000 (`a{1001}`); counts whose nesting makes more than 1000
/// copies of what they repeat (`(a{10}){200}`: RE2's `RepetitionWalker`, Go's
/// `repeatIsValid`, both with `invalid repeat count`); and a repetition of a repetition
/// (`a**`, `a+{2}`, `a*??`), which Perl syntax (RE2, Go) rejects and `regex` reads as
/// nesting. Escapes, bracket classes and the `?` of `(?` are not operators.
fn check_repeats(re: &str) -> Result<(), String> {
    let b = re.as_bytes();
    let mut in_class = false;
    // the previous token was a repetition operator (with its `?` if lazy): where it began
    let mut last_repeat: Option<usize> = None;
    // the parse tree as far as counted repeats need it: groups and the `{n,m}` repeats
    // around them; `frames` holds the atoms of each open group, outermost first
    let mut nodes: Vec<RepeatNode> = Vec::new();
    let mut frames: Vec<Vec<usize>> = vec![Vec::new()];
    // whether the last atom of the innermost group is what a repeat would apply to (not
    // after `|`, `(` or a flag group `(?i)`)
    let mut operand = false;
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let mut repeat = false;
        let mut atom = false;
        match b[i] {
            b'\\' => {
                i += 1;
                let e = b.get(i).copied();
                i += re[i..].chars().next().map_or(0, char::len_utf8);
                // `\x{41}`, `\p{Greek}`: the braces belong to the escape, not a repeat
                if matches!(e, Some(b'x' | b'p' | b'P')) && b.get(i) == Some(&b'{') {
                    i += re[i..].find('}').map_or(b.len() - i, |p| p + 1);
                }
                atom = !in_class;
            }
            b'[' if !in_class => {
                in_class = true;
                // `[]` and `[^]` take their `]` literally
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
            }
            // a POSIX class `[:name:]` inside a bracket class
            b'[' if b.get(i + 1) == Some(&b':') => {
                i += b[i..]
                    .iter()
                    .position(|&c| c == b']')
                    .map_or(b.len(), |p| p + 1);
            }
            b']' if in_class => {
                in_class = false;
                i += 1;
                atom = true;
            }
            _ if in_class => i += re[i..].chars().next().map_or(1, char::len_utf8),
            b'(' => {
                i += 1;
                let mut group = true;
                if b.get(i) == Some(&b'?') {
                    // `(?P<name>`, `(?<name>`, `(?flags:` open a group; `(?flags)` does not
                    let end = if matches!(b.get(i + 1), Some(b'P' | b'<')) {
                        b[i..].iter().position(|&c| c == b'>')
                    } else {
                        b[i..].iter().position(|&c| c == b':' || c == b')')
                    };
                    let end = end.map_or(b.len(), |p| i + p);
                    group = b.get(end) != Some(&b')');
                    i = (end + 1).min(b.len());
                }
                if group {
                    // Go's parser refuses nesting deeper than 1000 (`ErrNestingDepth`);
                    // the walk over the nesting below is recursive, so it is refused
                    // before it gets that deep
                    if frames.len() > 1000 {
                        return Err("expression nests too deeply".into());
                    }
                    frames.push(Vec::new());
                }
                operand = false;
            }
            b')' => {
                i += 1;
                if frames.len() > 1 {
                    let children = frames.pop().unwrap_or_default();
                    nodes.push(RepeatNode::Group(children));
                    if let Some(f) = frames.last_mut() {
                        f.push(nodes.len() - 1);
                    }
                    operand = true;
                }
            }
            b'|' => {
                i += 1;
                operand = false;
            }
            b'*' | b'+' | b'?' => {
                // no count: `repeatIsValid` looks through them
                repeat = true;
                i += 1;
            }
            b'{' => match repeat_bounds(&re[i..]) {
                Some((min, max)) => {
                    let n = max.unwrap_or(min).max(min);
                    if n > RE2_MAX_REPEAT {
                        return Err(format!(
                            "invalid repeat count {n} (RE2 allows at most {RE2_MAX_REPEAT})"
                        ));
                    }
                    repeat = true;
                    i += re[i..].find('}').map_or(b.len() - i, |p| p + 1);
                    let frame = frames.last_mut().expect("the outermost frame stays");
                    if let (true, Some(&sub)) = (operand, frame.last()) {
                        nodes.push(RepeatNode::Repeat {
                            count: max.unwrap_or(min),
                            op: start..i,
                            sub,
                        });
                        let id = nodes.len() - 1;
                        *frame.last_mut().expect("checked") = id;
                        // RE2 and Go walk the operand of each repeat that can copy it
                        // (after another repetition operator, that is the error)
                        if last_repeat.is_none()
                            && (min >= 2 || max.is_some_and(|m| m >= 2))
                            && let Some(chain) = too_many_copies(&nodes, id, RE2_MAX_REPEAT)
                        {
                            return Err(nested_repeat_error(re, &nodes, &chain));
                        }
                    }
                }
                None => {
                    i += 1;
                    atom = true;
                }
            },
            _ => {
                i += re[i..].chars().next().map_or(1, char::len_utf8);
                atom = true;
            }
        }
        if atom {
            nodes.push(RepeatNode::Leaf);
            if let Some(f) = frames.last_mut() {
                f.push(nodes.len() - 1);
            }
            operand = true;
        }
        if repeat {
            if let Some(from) = last_repeat {
                return Err(format!(
                    "invalid nested repetition operator: `{}`",
                    &re[from..i]
                ));
            }
            // a lazy operator's `?` belongs to it
            if b.get(i) == Some(&b'?') {
                i += 1;
            }
            last_repeat = Some(start);
        } else {
            last_repeat = None;
        }
    }
    Ok(())
}

/// A node of the tree [`check_repeats`] builds.
enum RepeatNode {
    /// A character, class or escape.
    Leaf,
    /// A group (its alternatives' atoms together: each is walked alike).
    Group(Vec<usize>),
    /// A counted repeat `{n}`, `{n,}` or `{n,m}` of `sub`: its largest count (`n` when
    /// unbounded, as RE2 and Go count it) and where the operator is.
    Repeat {
        count: u64,
        op: std::ops::Range<usize>,
        sub: usize,
    },
}

/// RE2's `RepetitionWalker` and Go's `repeatIsValid(re, 1000)`: each counted repeat
/// divides the copies left to what it repeats; a `{0}` ends the walk. Returns the chain
/// of repeats, outermost first, that asks for more than `left` copies.
fn too_many_copies(nodes: &[RepeatNode], id: usize, left: u64) -> Option<Vec<usize>> {
    match &nodes[id] {
        RepeatNode::Leaf => None,
        RepeatNode::Group(children) => children
            .iter()
            .find_map(|&c| too_many_copies(nodes, c, left)),
        RepeatNode::Repeat { count, sub, .. } => {
            if *count == 0 {
                None
            } else if *count > left {
                Some(vec![id])
            } else {
                let mut chain = too_many_copies(nodes, *sub, left / count)?;
                chain.insert(0, id);
                Some(chain)
            }
        }
    }
}

/// `invalid repeat count `{200}` around `{10}`: 2000 copies (...)`.
fn nested_repeat_error(re: &str, nodes: &[RepeatNode], chain: &[usize]) -> String {
    let mut ops = Vec::new();
    let mut copies: u64 = 1;
    for &id in chain {
        if let RepeatNode::Repeat { count, op, .. } = &nodes[id] {
            copies = copies.saturating_mul(*count);
            if *count > 1 {
                ops.push(format!("`{}`", &re[op.clone()]));
            }
        }
    }
    format!(
        "invalid repeat count {}: {copies} copies (RE2 allows at most {RE2_MAX_REPEAT})",
        ops.join(" around ")
    )
}

/// When `s` starts with an RE2 repeat `{n}`, `{n,}` or `{n,m}`: its counts, the largest
/// `None` when unbounded.
fn repeat_bounds(s: &str) -> Option<(u64, Option<u64>)> {
    let close = s.find('}')?;
    let inner = &s[1..close];
    let (lo, hi) = match inner.split_once(',') {
        Some((lo, hi)) => (lo, Some(hi)),
        None => (inner, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(lo) || hi.is_some_and(|h| !h.is_empty() && !digits(h)) {
        return None;
    }
    let n = |d: &str| {
        d.bytes().fold(0u64, |n, b| {
            n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        })
    };
    let min = n(lo);
    let max = match hi {
        None => Some(min),
        Some("") => None,
        Some(h) => Some(n(h)),
    };
    Some((min, max))
}

/// Rewrites RE2's Perl classes for the `regex` crate: in RE2 (Envoy) `\d`, `\w`, `\s` and
/// `\b` are ASCII-only, in `regex` they are Unicode-aware. Outside a bracket class they become
/// explicit ASCII classes (`\b`/`\B` the ASCII word boundary); inside one, their ranges (a
/// negated one as a nested class). `.` and everything else keep their meaning, so `.` still
/// matches any UTF-8 character. RE2's `\s` is `[\t\n\f\r ]` (no `\v`). Inside a bracket
/// class RE2 takes `[` (other than `[:alpha:]`), `&` and `~` literally where `regex` would
/// read a nested class or a set operation: they are escaped. Outside a class, `\Q...\E` is
/// RE2's literal text (escaped here), and a `{` that does not start a repeat (`{n}`, `{n,}`,
/// `{n,m}`) is a literal `{` in RE2 where `regex` would reject the pattern: it is escaped.
pub(crate) fn re2_classes(pattern: &str) -> String {
    const D: &str = "0-9";
    const W: &str = "0-9A-Za-z_";
    const S: &str = "\\t\\n\\f\\r ";
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    // inside a bracket class; `class_start` = just after `[` or `[^` (a `]` there is literal)
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        if c == '\\' {
            let Some(e) = chars.next() else {
                out.push(c);
                break;
            };
            if e == 'Q' && !in_class {
                // RE2's literal text: up to `\E` or the end of the pattern
                let mut lit = String::new();
                while let Some(l) = chars.next() {
                    if l == '\\' && chars.peek() == Some(&'E') {
                        chars.next();
                        break;
                    }
                    lit.push(l);
                }
                out.push_str(&regex::escape(&lit));
                continue;
            }
            let (set, negated) = match e {
                'd' => (D, false),
                'D' => (D, true),
                'w' => (W, false),
                'W' => (W, true),
                's' => (S, false),
                'S' => (S, true),
                'b' | 'B' if !in_class => {
                    out.push_str(if e == 'b' { "(?-u:\\b)" } else { "(?-u:\\B)" });
                    continue;
                }
                // RE2: an escaped punctuation character is itself (the regex crate reads
                // `\<` and `\>` as word boundaries)
                '<' | '>' => {
                    out.push(e);
                    continue;
                }
                // RE2's octal escapes: `\0` and up to two more octal digits, or `\1`-`\7`
                // followed by at least one (a lone `\1` is a backreference, refused)
                '0'..='7' if e == '0' || chars.peek().is_some_and(|d| ('0'..='7').contains(d)) => {
                    let mut value = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match chars.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                chars.next();
                            }
                            None => break,
                        }
                    }
                    // (two hex digits where they do: a braced `\x{..}` before a repeat
                    // reads as a repeat count to the repetition check)
                    if value <= 0xFF {
                        out.push_str(&format!("\\x{value:02X}"));
                    } else {
                        out.push_str(&format!("\\x{{{value:X}}}"));
                    }
                    continue;
                }
                // Go's negated Unicode class `\p{^Greek}` is `\P{Greek}` (and back)
                'p' | 'P' if chars.peek() == Some(&'{') => {
                    let mut name = String::new();
                    chars.next();
                    let mut closed = false;
                    for b in chars.by_ref() {
                        if b == '}' {
                            closed = true;
                            break;
                        }
                        name.push(b);
                    }
                    if !closed {
                        // unterminated: as written, for the compile to refuse it
                        out.push(c);
                        out.push(e);
                        out.push('{');
                        out.push_str(&name);
                        continue;
                    }
                    let (e, name) = match name.strip_prefix('^') {
                        Some(n) => (if e == 'p' { 'P' } else { 'p' }, n.to_owned()),
                        None => (e, name),
                    };
                    out.push(c);
                    out.push(e);
                    out.push('{');
                    out.push_str(&name);
                    out.push('}');
                    continue;
                }
                _ => {
                    out.push(c);
                    out.push(e);
                    if matches!(e, 'p' | 'P' | 'x') && chars.peek() == Some(&'{') {
                        // `\p{Greek}`, `\x{41}`: the braces belong to the escape
                        for b in chars.by_ref() {
                            out.push(b);
                            if b == '}' {
                                break;
                            }
                        }
                    }
                    continue;
                }
            };
            match (in_class, negated) {
                (true, false) => out.push_str(set),
                (false, false) => {
                    out.push('[');
                    out.push_str(set);
                    out.push(']');
                }
                (_, true) => {
                    out.push_str("[^");
                    out.push_str(set);
                    out.push(']');
                }
            }
            continue;
        }
        if !in_class {
            if c == '{' {
                // RE2 reads a `{` that does not start `{n}`, `{n,}` or `{n,m}` as a literal
                let brace: String = std::iter::once(c)
                    .chain(chars.clone().take_while(|&n| n != '}'))
                    .chain(Some('}'))
                    .collect();
                let closed = chars.clone().any(|n| n == '}');
                if !closed || repeat_bounds(&brace).is_none() {
                    out.push_str("\\{");
                    continue;
                }
            }
            out.push(c);
            if c == '[' {
                in_class = true;
                class_start = true;
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            continue;
        }
        match c {
            ']' if !at_start => {
                in_class = false;
                out.push(c);
            }
            '[' if chars.peek() == Some(&':') => {
                // a POSIX class `[:name:]`: copied whole
                out.push(c);
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A compiled `StringMatch`.
///
/// Routing compiles each `uri`, `headers`, `queryParams`, `method`, `scheme` and
/// `authority` condition into one; a regex must match the whole value, as in Envoy (RE2).
///
/// # Examples
///
/// ```
/// use mesh_core::route::StrMatcher;
///
/// let prefix = StrMatcher::Prefix("/api/".into());
/// assert!(prefix.matches("/api/v1"));
/// assert!(!prefix.matches("/API/v1"));
/// assert!(StrMatcher::PrefixIgnoreCase("/api/".into()).matches("/API/v1"));
///
/// let re = StrMatcher::Regex(regex::Regex::new("^(?:v[0-9]+)$").unwrap());
/// assert!(re.matches("v2"));
/// assert!(!re.matches("v2-beta"));
/// assert!(StrMatcher::Present.matches("")); // `{}`: the header only has to be there
/// ```
#[derive(Debug, Clone)]
pub enum StrMatcher {
    /// Whole value equals.
    Exact(std::sync::Arc<str>),
    /// Value starts with.
    Prefix(std::sync::Arc<str>),
    /// Whole value equals, ASCII case-insensitively (`ignoreUriCase`).
    ExactIgnoreCase(std::sync::Arc<str>),
    /// Value starts with, ASCII case-insensitively.
    PrefixIgnoreCase(std::sync::Arc<str>),
    /// A regex match: `matches` finds the pattern anywhere in the value, so routing
    /// compiles Istio's `regex` anchored (`^(?:pattern)$`), a full match as in Envoy (RE2).
    /// Anchor a hand-built one the same way.
    Regex(Regex),
    /// Presence only (`{}` or `regex: "*"` on headers and query parameters).
    Present,
}

impl StrMatcher {
    /// Compiles a `StringMatch`; `None` arms mean presence.
    pub(crate) fn compile(
        m: &StringMatch,
        ignore_case: bool,
        cache: &mut RegexCache,
    ) -> Result<StrMatcher, String> {
        Ok(match m.kind() {
            None => StrMatcher::Present,
            Some(StringMatchKind::Exact(s)) if ignore_case => {
                StrMatcher::ExactIgnoreCase(cache.intern(&s.to_ascii_lowercase()))
            }
            Some(StringMatchKind::Exact(s)) => StrMatcher::Exact(cache.intern(s)),
            Some(StringMatchKind::Prefix(s)) if ignore_case => {
                StrMatcher::PrefixIgnoreCase(cache.intern(&s.to_ascii_lowercase()))
            }
            Some(StringMatchKind::Prefix(s)) => StrMatcher::Prefix(cache.intern(s)),
            Some(StringMatchKind::Regex("*")) => StrMatcher::Present,
            Some(StringMatchKind::Regex(r)) => StrMatcher::Regex(cache.full(r)?),
        })
    }

    /// Matches a present value.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::StrMatcher;
    ///
    /// assert!(StrMatcher::Exact("/productpage".into()).matches("/productpage"));
    /// assert!(!StrMatcher::Exact("/productpage".into()).matches("/productpage/"));
    /// // the ignore-case variants hold the lower-cased pattern
    /// assert!(StrMatcher::ExactIgnoreCase("/login".into()).matches("/LogIn"));
    /// assert!(!StrMatcher::PrefixIgnoreCase("/static".into()).matches("/st"));
    /// ```
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StrMatcher::Exact(s) => v == &**s,
            StrMatcher::Prefix(s) => v.starts_with(&**s),
            StrMatcher::ExactIgnoreCase(s) => v.eq_ignore_ascii_case(s),
            StrMatcher::PrefixIgnoreCase(s) => {
                v.len() >= s.len() && v.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            }
            StrMatcher::Regex(r) => r.is_match(v),
            StrMatcher::Present => true,
        }
    }

    /// Length of the matched prefix for a prefix matcher (for `rewrite.uri`); the whole value
    /// otherwise.
    pub(crate) fn matched_len(&self, v: &str) -> usize {
        match self {
            StrMatcher::Prefix(s) | StrMatcher::PrefixIgnoreCase(s) => s.len().min(v.len()),
            _ => v.len(),
        }
    }
}

/// Which request attribute a header condition reads.
#[derive(Debug, Clone)]
pub(crate) enum HeaderKey {
    Name(HeaderName),
    Method,
    Authority,
    Scheme,
    Path,
}

/// The claim path of a JWT claim routing key (`@request.auth.claims.a.b` or
/// `@request.auth.claims[a][b]`), as istiod reads it (`jwt.ToRoutingClaim`): the prefix in
/// any case, then at least one claim name; `None` for any other key (a header name).
///
/// # Examples
///
/// ```
/// use mesh_core::route::jwt_claim_path;
///
/// assert_eq!(jwt_claim_path("@request.auth.claims.groups"), Some(vec!["groups"]));
/// assert_eq!(jwt_claim_path("@request.auth.claims.nested.key"), Some(vec!["nested", "key"]));
/// assert_eq!(jwt_claim_path("@Request.Auth.Claims[a.b][c]"), Some(vec!["a.b", "c"]));
/// assert_eq!(jwt_claim_path("@request.auth.claims"), None);
/// assert_eq!(jwt_claim_path("@request.auth.claims[]"), None);
/// assert_eq!(jwt_claim_path("x-user"), None);
/// ```
pub fn jwt_claim_path(key: &str) -> Option<Vec<&str>> {
    const PREFIX: &str = "@request.auth.claims";
    let head = key.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &key[PREFIX.len()..];
    if let Some(dotted) = rest.strip_prefix('.').filter(|r| !r.is_empty()) {
        return Some(dotted.split('.').collect());
    }
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    (!inner.is_empty()).then(|| inner.split("][").collect())
}

/// One runtime condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Uri(StrMatcher),
    Scheme(StrMatcher),
    Method(StrMatcher),
    Authority(StrMatcher),
    /// Header condition; `negate` for `withoutHeaders`.
    Header {
        key: HeaderKey,
        m: StrMatcher,
        negate: bool,
    },
    Query {
        name: Box<str>,
        m: StrMatcher,
    },
    /// A JWT claim condition (`@request.auth.claims..` keys, gateways only) over the
    /// verified token's claims; `negate` for `withoutHeaders`.
    Claim {
        path: Box<[Box<str>]>,
        m: StrMatcher,
        negate: bool,
    },
    /// A condition that could not be compiled: never matches.
    Never,
}

/// A compiled `HTTPMatchRequest` (a delegate's merged with its root's, §2.6).
#[derive(Debug, Clone, Default)]
pub(crate) struct MatchBlock {
    pub(crate) conds: Vec<Cond>,
    pub(crate) port: Option<u16>,
    pub(crate) source_labels: Labels,
    pub(crate) source_namespaces: Vec<Box<str>>,
    /// Gateways replacing the VS's for this block (resolved `ns/name` or `mesh`).
    pub(crate) gateways: Option<Vec<Box<str>>>,
    /// [`MatchBlock::is_catch_all`], worked out once the block is final.
    pub(crate) catch_all: bool,
    /// The match's `name` (istiod names the route `<route>.<match>`).
    pub(crate) name: Option<Box<str>>,
}

impl Cond {
    /// True for the only condition a catch-all route has: `uri` prefix `/` (or `regex: "*"`,
    /// or `regex: ".*"`, as istiod's `IsCatchAllRoute` counts it).
    fn is_catch_all_uri(&self) -> bool {
        static ANY: std::sync::LazyLock<Option<String>> =
            std::sync::LazyLock::new(|| re2_regex(".*", true).ok().map(|r| r.as_str().to_owned()));
        match self {
            Cond::Uri(StrMatcher::Prefix(p) | StrMatcher::PrefixIgnoreCase(p)) => &**p == "/",
            Cond::Uri(StrMatcher::Present) => true,
            Cond::Uri(StrMatcher::Regex(r)) => ANY.as_deref() == Some(r.as_str()),
            _ => false,
        }
    }
}

/// What a match block reads from the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReqView<'a> {
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) method: &'a str,
    pub(crate) authority: &'a str,
    pub(crate) scheme: &'a str,
    pub(crate) headers: &'a http::HeaderMap,
    pub(crate) port: u16,
    pub(crate) client_ns: &'a str,
    pub(crate) source_labels: &'a Labels,
    /// `None` = mesh.
    pub(crate) gateway: Option<&'a str>,
    /// The verified JWT (gateways only).
    pub(crate) request_auth: Option<&'a RequestAuth>,
}

impl MatchBlock {
    pub(crate) fn compile(
        m: &HttpMatchRequest,
        vs_ns: &str,
        cache: &mut RegexCache,
        errors: &mut Vec<String>,
    ) -> MatchBlock {
        let mut b = MatchBlock {
            // (proto3: a port of 0 and an empty namespace are unset to istiod)
            port: m
                .port
                .filter(|&p| p != 0)
                .and_then(|p| u16::try_from(p).ok()),
            source_labels: m.source_labels.clone(),
            source_namespaces: m
                .source_namespace
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str().into())
                .collect(),
            gateways: (!m.gateways.is_empty()).then(|| {
                m.gateways
                    .iter()
                    .map(|g| super::resolve_gateway_name(g, vs_ns).into())
                    .collect()
            }),
            name: m.name.as_deref().filter(|n| !n.is_empty()).map(Into::into),
            ..MatchBlock::default()
        };
        b.conds.reserve_exact(
            usize::from(m.uri.is_some())
                + usize::from(m.scheme.is_some())
                + usize::from(m.method.is_some())
                + usize::from(m.authority.is_some())
                + m.headers.len()
                + m.without_headers.len()
                + m.query_params.len(),
        );
        let mut push = |c: Result<Cond, String>, b: &mut MatchBlock| match c {
            Ok(c) => b.conds.push(c),
            Err(e) => {
                errors.push(e);
                b.conds.push(Cond::Never);
            }
        };
        if let Some(u) = &m.uri {
            let c = StrMatcher::compile(u, m.ignore_uri_case, cache).map(Cond::Uri);
            push(c, &mut b);
        }
        for (field, sm) in [
            ("scheme", &m.scheme),
            ("method", &m.method),
            ("authority", &m.authority),
        ] {
            if let Some(sm) = sm {
                let c = StrMatcher::compile(sm, false, cache).map(|m| match field {
                    "scheme" => Cond::Scheme(m),
                    "method" => Cond::Method(m),
                    _ => Cond::Authority(m),
                });
                push(c, &mut b);
            }
        }
        for (negate, map) in [(false, &m.headers), (true, &m.without_headers)] {
            for (name, sm) in map {
                if let Some(path) = jwt_claim_path(name) {
                    push(claim_cond(name, &path, sm, negate, cache), &mut b);
                    continue;
                }
                let lower;
                let name_l: &str = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    lower = name.to_ascii_lowercase();
                    &lower
                } else {
                    name
                };
                let key = match name_l {
                    ":method" => Ok(HeaderKey::Method),
                    // Envoy's header map keeps a request's `Host` as `:authority` (its
                    // lookup table maps the legacy name)
                    ":authority" | "host" => Ok(HeaderKey::Authority),
                    ":scheme" => Ok(HeaderKey::Scheme),
                    ":path" => Ok(HeaderKey::Path),
                    n => cache
                        .header_name(n)
                        .map(HeaderKey::Name)
                        .ok_or_else(|| format!("invalid header name {name:?}")),
                };
                let c = key.and_then(|key| {
                    Ok(Cond::Header {
                        key,
                        m: StrMatcher::compile(sm, false, cache)?,
                        negate,
                    })
                });
                push(c, &mut b);
            }
        }
        for (name, sm) in &m.query_params {
            let c = StrMatcher::compile(sm, false, cache).map(|m| Cond::Query {
                name: name.as_str().into(),
                m,
            });
            push(c, &mut b);
        }
        b
    }

    /// True when the Envoy route this block becomes is a catch-all, as istiod's
    /// `IsCatchAllRoute` says: path prefix `/` (also when no `uri` is given) or regex `*`,
    /// and no header (`method`, `authority`, `scheme`, `headers`, `withoutHeaders`), query
    /// or JWT claim (dynamic metadata) condition. The static pre-filters are not part of
    /// the Envoy route.
    pub(crate) fn is_catch_all(&self) -> bool {
        self.conds.iter().all(Cond::is_catch_all_uri)
    }

    /// True when a static pre-filter (port, source labels or namespace, gateways) can drop
    /// this block for some clients.
    pub(crate) fn statically_filtered(&self) -> bool {
        self.port.is_some()
            || !self.source_labels.is_empty()
            || !self.source_namespaces.is_empty()
            || self.gateways.is_some()
    }

    /// The static pre-filters of §2.3 step 3: port, gateways, source labels and namespace.
    pub(crate) fn static_ok(&self, r: &ReqView<'_>) -> bool {
        if self.port.is_some_and(|p| p != r.port) {
            return false;
        }
        // istiod's `sourceMatchHTTP`: with match `gateways`, neither `sourceLabels` nor
        // `sourceNamespace` is consulted
        match &self.gateways {
            Some(gws) => {
                let ctx = r.gateway.unwrap_or("mesh");
                gws.iter().any(|g| &**g == ctx)
            }
            None => {
                labels_match(&self.source_labels, r.source_labels)
                    && self.source_namespaces.iter().all(|n| &**n == r.client_ns)
            }
        }
    }

    /// All conditions; returns the matched path prefix length on success.
    pub(crate) fn matches(&self, r: &ReqView<'_>) -> Option<usize> {
        if !self.static_ok(r) {
            return None;
        }
        let mut prefix_len = 1.min(r.path.len()); // no uri: prefix "/"
        for c in &self.conds {
            let ok = match c {
                Cond::Uri(m) => {
                    let ok = m.matches(r.path);
                    if ok {
                        prefix_len = m.matched_len(r.path);
                    }
                    ok
                }
                Cond::Scheme(m) => m.matches(r.scheme),
                Cond::Method(m) => m.matches(r.method),
                Cond::Authority(m) => m.matches(r.authority),
                Cond::Header { key, m, negate } => {
                    let present_match = match key {
                        HeaderKey::Method => Some(m.matches(r.method)),
                        HeaderKey::Authority => Some(m.matches(r.authority)),
                        HeaderKey::Scheme => Some(m.matches(r.scheme)),
                        // Envoy's `:path` pseudo-header holds the query too (a string is
                        // built only for such a matcher on a request with a query)
                        HeaderKey::Path => Some(match r.query {
                            None => m.matches(r.path),
                            Some(q) => m.matches(&format!("{}?{q}", r.path)),
                        }),
                        HeaderKey::Name(n) => header_match(r.headers, n, m),
                    };
                    match (present_match, negate) {
                        (Some(ok), false) => ok,
                        (None, false) => false,
                        (Some(ok), true) => !ok,
                        // withoutHeaders: a missing header counts as "" unless presence.
                        (None, true) => match m {
                            StrMatcher::Present => true,
                            m => !m.matches(""),
                        },
                    }
                }
                // Envoy matches the raw value: its router parses the query without
                // decoding (`QueryParamsMulti::parseQueryString`, decode_params=false), so
                // `exact: "a b"` never matches `?q=a%20b` or `?q=a+b`.
                Cond::Query { name, m } => query_first(r.query, name).is_some_and(|v| m.matches(v)),
                Cond::Claim { path, m, negate } => claim_match(r.request_auth, path, m) != *negate,
                Cond::Never => false,
            };
            if !ok {
                return None;
            }
        }
        Some(prefix_len)
    }
}

/// Compiles a JWT claim condition. Istio turns it into an Envoy metadata matcher whose value
/// is a string matcher: an empty one (`{}`) or `regex: "*"` is no presence check there, Envoy
/// rejects it, so it is an error here.
fn claim_cond(
    key: &str,
    path: &[&str],
    sm: &StringMatch,
    negate: bool,
    cache: &mut RegexCache,
) -> Result<Cond, String> {
    let m = match sm.kind() {
        None | Some(StringMatchKind::Regex("*")) => {
            return Err(format!(
                "JWT claim match {key:?} needs exact, prefix or regex (Envoy has no presence match on claims)"
            ));
        }
        Some(_) => StrMatcher::compile(sm, false, cache)?,
    };
    Ok(Cond::Claim {
        path: path
            .iter()
            .map(|p| cache.intern(p).as_ref().into())
            .collect(),
        m,
        negate,
    })
}

/// Whether the verified token's claim at `path` matches, as Istio's metadata matcher on
/// Envoy's `jwt_authn` payload: a string claim, or any string element of a list claim; a
/// top-level space-delimited claim (`scope`, `permission`, the provider's
/// `spaceDelimitedClaims`) is the list of its parts, as Envoy normalizes it. No token, no such
/// claim, or a claim of another type: no match.
fn claim_match(auth: Option<&RequestAuth>, path: &[Box<str>], m: &StrMatcher) -> bool {
    let Some(auth) = auth else {
        return false;
    };
    let mut v = &auth.claims;
    for k in path {
        match v.get(&**k) {
            Some(next) => v = next,
            None => return false,
        }
    }
    match v {
        serde_json::Value::String(s) => {
            let split = path.len() == 1 && auth.is_space_delimited(&path[0]);
            if split && s.split(' ').any(|t| !t.is_empty()) {
                s.split(' ').filter(|t| !t.is_empty()).any(|t| m.matches(t))
            } else {
                m.matches(s)
            }
        }
        serde_json::Value::Array(items) => items
            .iter()
            .any(|i| i.as_str().is_some_and(|s| m.matches(s))),
        _ => false,
    }
}

/// `Some(matched)` when the header is present (several values joined with `,` as Envoy
/// does), `None` when absent.
fn header_match(headers: &http::HeaderMap, name: &HeaderName, m: &StrMatcher) -> Option<bool> {
    // Envoy compares a value's bytes, obs-text (UTF-8 in practice) included: read as
    // UTF-8, else with its other bytes replaced (they can equal no configured text)
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return Some(match first.to_str() {
            Ok(v) => m.matches(v),
            Err(_) => m.matches(&text(first)),
        });
    };
    if matches!(m, StrMatcher::Present) {
        return Some(true);
    }
    let mut joined = String::new();
    for v in [first, second].into_iter().chain(all) {
        if !joined.is_empty() {
            joined.push(',');
        }
        match v.to_str() {
            Ok(t) => joined.push_str(t),
            Err(_) => joined.push_str(&text(v)),
        }
    }
    Some(m.matches(&joined))
}

/// The first value of query parameter `name` (`?a=1&b`, `b` has value `""`).
pub(crate) fn query_first<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re2_perl_classes_are_ascii() {
        let table = [
            (r"\d+", "[0-9]+"),
            (r"\D", "[^0-9]"),
            (r"[\d_]", "[0-9_]"),
            (r"[^\w]", "[^0-9A-Za-z_]"),
            (r"[a\S]", r"[a[^\t\n\f\r ]]"),
            (r"\\d", r"\\d"),
            (r"\bv\B", r"(?-u:\b)v(?-u:\B)"),
            (r"[]\d]", "[]0-9]"),
            (r"[[:digit:]\s]", r"[[:digit:]\t\n\f\r ]"),
            (r"[[&&~]", r"[\[\&\&\~]"),
            (r"\p{L}.", r"\p{L}."),
            (r"\x{41}{2}", r"\x{41}{2}"),
            (r"a{b", r"a\{b"),
            (r"\Q.{\E", r"\.\{"),
            // RE2 escapes the regex crate reads otherwise or refuses
            (r"a\<b\>", "a<b>"),
            (r"\101\0\12\777", r"\x41\x00\x0A\x{1FF}"),
            (r"\1", r"\1"), // a backreference: refused, as RE2 does
            (r"\p{^Greek}\P{^L}", r"\P{Greek}\p{L}"),
            (r"\p{^Greek", r"\p{^Greek"), // unterminated: refused by the compile
        ];
        for (re2, want) in table {
            assert_eq!(re2_classes(re2), want, "{re2}");
        }
        let mut cache = RegexCache::default();
        let full = |p: &str, s: &str, cache: &mut RegexCache| cache.full(p).unwrap().is_match(s);
        // Arabic-Indic digits, a non-ASCII letter, a no-break space: not RE2 classes
        assert!(!full(r"/v\d", "/v\u{0663}", &mut cache));
        assert!(full(r"/v\d", "/v3", &mut cache));
        assert!(!full(r"\w+", "caf\u{e9}", &mut cache));
        assert!(full(r"\W", "\u{e9}", &mut cache));
        assert!(!full(r"a\sb", "a\u{a0}b", &mut cache));
        assert!(!full(r"a\sb", "a\u{b}b", &mut cache)); // RE2's \s has no \v
        assert!(full(r"a\sb", "a\tb", &mut cache));
        // `.` still matches one UTF-8 character
        assert!(full("caf.", "caf\u{e9}", &mut cache));
        // ASCII word boundary: `é` is not a word character for RE2
        assert!(full(r".*\bx", "\u{e9}x", &mut cache));
        assert!(full("[[]", "[", &mut cache));
        assert!(full("[a&&b~~]+", "a&b~", &mut cache));
        assert!(full(r"a\Bb", "ab", &mut cache));
        let raw = cache.raw(r"\d").unwrap();
        assert_eq!(raw.replace_all("1\u{0663}2", "#"), "#\u{0663}#");
    }

    fn sm(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>) -> StringMatch {
        StringMatch {
            exact: exact.map(Into::into),
            prefix: prefix.map(Into::into),
            regex: regex.map(Into::into),
        }
    }

    #[test]
    fn string_matchers() {
        let mut c = RegexCache::default();
        let table: &[(StringMatch, bool, &str, bool)] = &[
            (sm(Some("/a"), None, None), false, "/a", true),
            (sm(Some("/a"), None, None), false, "/A", false),
            (sm(Some("/a"), None, None), true, "/A", true),
            (sm(None, Some("/api"), None), false, "/api/v1", true),
            (sm(None, Some("/api"), None), false, "/ap", false),
            (sm(None, Some("/api"), None), true, "/API/x", true),
            (sm(None, Some(""), None), false, "/anything", true),
            // regex is a full match, never case-folded
            (sm(None, None, Some("\\d+")), false, "123", true),
            (sm(None, None, Some("\\d+$")), false, "a123", false),
            (sm(None, None, Some("/v[0-9]")), true, "/V1", false),
            (sm(None, None, Some("a|b")), false, "ab", false),
            (sm(None, None, Some("a|b")), false, "b", true),
            (sm(None, None, Some("*")), false, "", true),
            (sm(None, None, None), false, "x", true),
        ];
        for (m, ci, v, want) in table {
            let cm = StrMatcher::compile(m, *ci, &mut c).unwrap();
            assert_eq!(cm.matches(v), *want, "{m:?} ci={ci} {v}");
        }
        assert!(StrMatcher::compile(&sm(None, None, Some("(")), false, &mut c).is_err());
        // RE2's literal text
        let q = StrMatcher::compile(&sm(None, None, Some("\\Qa.b\\E+")), false, &mut c).unwrap();
        assert!(q.matches("a.bbb") && !q.matches("axb"));
    }

    /// The RE2 dialect the data plane and the validator share: what RE2 parses compiles
    /// (literal `{`, `\Q...\E`, `[[]`), what RE2 rejects does not (repeats over 1000,
    /// backreferences, lookaround), and Perl classes stay ASCII.
    /// Nesting deeper than Go's 1000 is refused before the (recursive) walk over it, not
    /// a stack overflow.
    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = format!("{}a{}{{2}}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            check_repeats(&deep).unwrap_err(),
            "expression nests too deeply"
        );
        let fine = format!("{}a{}{{2}}", "(".repeat(100), ")".repeat(100));
        assert!(check_repeats(&fine).is_ok());
    }

    #[test]
    fn re2_regex_accepts_what_re2_accepts() {
        // (pattern, compiles, matching inputs, non-matching inputs)
        let table: &[(&str, bool, &[&str], &[&str])] = &[
            (r"\d+", true, &["0129"], &["\u{663}", "\u{ff11}"]),
            (r"\w", true, &["_"], &["\u{e9}"]),
            (r"a{", true, &["a{"], &["a"]),
            (r"a{x}", true, &["a{x}"], &["ax"]),
            (r"a{,2}", true, &["a{,2}"], &["aa"]),
            (r"{", true, &["{"], &[]),
            (r"a{2}", true, &["aa"], &["a{2}"]),
            (r"a{2,}", true, &["aaa"], &["a"]),
            (r"a{1,1000}", true, &["a"], &[]),
            (r"a{1001}", false, &[], &[]),
            (r"a{1,1001}", false, &[], &[]),
            (r"[{]{1001}", false, &[], &[]),
            (r"\Q{1001}\E", true, &["{1001}"], &[]),
            (r"\Qa.b", true, &["a.b"], &["axb"]),
            (r"\Q\d\E\d", true, &["\\d7"], &["77"]),
            (r"[a{1001}]", true, &["{"], &[]),
            (r"\{1001}", true, &["{1001}"], &[]),
            (r"[[]", true, &["["], &[]),
            (r"(a)\1", false, &[], &[]),
            (r"(?=a)", false, &[], &[]),
            (r"(", false, &[], &[]),
            (r"a**", false, &[], &[]),
            (r"a+{2}", false, &[], &[]),
            (r"a{2}*", false, &[], &[]),
            (r"a*??", false, &[], &[]),
            (r"a*?", true, &["aa"], &[]),
            (r"a??b", true, &["ab", "b"], &[]),
            (r"(a*)*", true, &["aaa"], &[]),
            (r"(?:a+)+", true, &["aa"], &[]),
            (r"(?i)a+", true, &["AA"], &[]),
            (r"(?P<x>a)+", true, &["aa"], &[]),
            (r"[*+]+", true, &["*+"], &[]),
            (r"\*+", true, &["**"], &[]),
            (r"é+", true, &["éé"], &[]),
            // nested counts multiply (RE2's RepetitionWalker, Go's repeatIsValid): at most
            // 1000 copies of what the innermost repeats
            (r"(a{10}){200}", false, &[], &[]),
            (r"((ab){40}){30}", false, &[], &[]),
            (r"(x{100}y){11}", false, &[], &[]),
            (r"(?:a{2}|b{501}){2}", false, &[], &[]),
            (r"(?i:(a{10}){3,}){50}", false, &[], &[]),
            (r"(x{100}y){10}", true, &[], &[]),
            (r"(a{10}){100}", true, &[], &[]),
            (r"((ab){40}){25}", true, &[], &[]),
            (r"(a{10})*{2}", false, &[], &[]),
            // `*`, `+`, `?` and `{1}` do not count; `{0}` ends the walk
            (r"((a{10})+){100}", true, &[], &[]),
            (r"((a{1000}){1}){1}", true, &[], &[]),
            (r"((a{1000}){0}){2}", true, &[], &[]),
            // groups and repeats side by side do not multiply
            (r"(a{500})(b{500}){2}", true, &[], &[]),
            (r"(a{600}|b){1}(c){600}", true, &[], &[]),
            // a flag group is not a group
            (r"(?i)(a{10}){100}", true, &[], &[]),
            (r"(?i)(a{10}){101}", false, &[], &[]),
            // braces of an escape are not a repeat
            (r"\x{1001}", true, &["\u{1001}"], &[]),
            (r"(\x{41}{10}){100}", true, &[], &[]),
            (r"[(]{1000}", true, &[], &[]),
        ];
        for (p, ok, yes, no) in table {
            let re = re2_regex(p, true);
            assert_eq!(re.is_ok(), *ok, "{p}: {re:?}");
            if let Ok(re) = re {
                for v in *yes {
                    assert!(re.is_match(v), "{p} should match {v:?}");
                }
                for v in *no {
                    assert!(!re.is_match(v), "{p} should not match {v:?}");
                }
            }
        }
        assert_eq!(
            re2_regex("a{1001}", true).unwrap_err(),
            "invalid repeat count 1001 (RE2 allows at most 1000)"
        );
        for (p, e) in [
            (
                r"(a{10}){200}",
                "invalid repeat count `{200}` around `{10}`: 2000 copies (RE2 allows at most 1000)",
            ),
            (
                r"((ab){40}){30}",
                "invalid repeat count `{30}` around `{40}`: 1200 copies (RE2 allows at most 1000)",
            ),
            (
                r"(((a){2,}){20}){30}",
                "invalid repeat count `{30}` around `{20}` around `{2,}`: 1200 copies (RE2 allows at most 1000)",
            ),
        ] {
            assert_eq!(re2_regex(p, true).unwrap_err(), e, "{p}");
        }
        // another operator right before a repeat is the error, as in RE2 and Go
        assert_eq!(
            re2_regex(r"(a{40}){30}{2}", true).unwrap_err(),
            "invalid repeat count `{30}` around `{40}`: 1200 copies (RE2 allows at most 1000)"
        );
        assert_eq!(
            re2_regex(r"a{40}{30}", true).unwrap_err(),
            "invalid nested repetition operator: `{40}{30}`"
        );
        // an escaped non-ASCII character (which RE2 and Go refuse) is an error, not a panic
        assert!(re2_regex(r"\é{2}", true).is_err());
        let e = re2_regex("(", true).unwrap_err();
        assert!(!e.contains('\n') && e.starts_with("error:"), "{e}");
        // unanchored (uriRegexRewrite)
        assert!(re2_regex(r"\d", false).unwrap().is_match("a1b"));
    }

    /// JWT claim conditions as Istio's metadata matcher over Envoy's `jwt_authn` payload:
    /// strings, any string element of a list, nested paths, space-delimited top-level
    /// claims; no token or no claim matches no `headers` condition and every
    /// `withoutHeaders` one.
    #[test]
    fn jwt_claim_conditions() {
        let mut c = RegexCache::default();
        let no_labels = Labels::new();
        let h = http::HeaderMap::new();
        let claims = serde_json::json!({
            "groups": ["group1", "group2", 7],
            "role": "admin",
            "scope": "read write",
            "roles": "editor viewer",
            "n": 3,
            "nested": {"key": "value1", "list": ["a", "b"], "deeper": {"k": "x"}},
            "a.b": "dotted",
        });
        let auth = RequestAuth::from_claims(claims);
        // (key, matcher, negate, with a token, matches)
        let table: &[(&str, StringMatch, bool, bool, bool)] = &[
            (
                "@request.auth.claims.groups",
                sm(Some("group1"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("group2"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("group3"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("7"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims[groups]",
                sm(None, Some("group"), None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.role",
                sm(Some("admin"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.role",
                sm(Some("Admin"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.role",
                sm(None, None, Some("ad.*")),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.role",
                sm(None, None, Some("ad")),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.n",
                sm(Some("3"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.nested.key",
                sm(Some("value1"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims[nested][key]",
                sm(Some("value1"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims[nested][list]",
                sm(Some("b"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.nested.deeper.k",
                sm(Some("x"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.nested",
                sm(Some("value1"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.nested.missing",
                sm(Some("x"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims[a.b]",
                sm(Some("dotted"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.a.b",
                sm(Some("dotted"), None, None),
                false,
                true,
                false,
            ),
            // Envoy splits `scope` (and the provider's spaceDelimitedClaims) into a list
            (
                "@request.auth.claims.scope",
                sm(Some("write"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.scope",
                sm(Some("read write"), None, None),
                false,
                true,
                false,
            ),
            (
                "@request.auth.claims.roles",
                sm(Some("editor viewer"), None, None),
                false,
                true,
                true,
            ),
            (
                "@request.auth.claims.roles",
                sm(Some("viewer"), None, None),
                false,
                true,
                false,
            ),
            // no token: no claim condition matches, every withoutHeaders one does
            (
                "@request.auth.claims.groups",
                sm(Some("group1"), None, None),
                false,
                false,
                false,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("group1"), None, None),
                true,
                false,
                true,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("group1"), None, None),
                true,
                true,
                false,
            ),
            (
                "@request.auth.claims.groups",
                sm(Some("group3"), None, None),
                true,
                true,
                true,
            ),
            (
                "@request.auth.claims.missing",
                sm(Some("x"), None, None),
                true,
                true,
                true,
            ),
            (
                "@request.auth.claims.n",
                sm(Some("3"), None, None),
                true,
                true,
                true,
            ),
        ];
        for (key, m, negate, with_token, want) in table {
            let mut req = HttpMatchRequest::default();
            if *negate {
                req.without_headers.insert((*key).to_owned(), m.clone());
            } else {
                req.headers.insert((*key).to_owned(), m.clone());
            }
            let mut errors = Vec::new();
            let b = MatchBlock::compile(&req, "default", &mut c, &mut errors);
            assert!(errors.is_empty(), "{key}: {errors:?}");
            let view = ReqView {
                path: "/",
                query: None,
                method: "GET",
                authority: "a",
                scheme: "http",
                headers: &h,
                port: 80,
                client_ns: "default",
                source_labels: &no_labels,
                gateway: Some("istio-system/gw"),
                request_auth: with_token.then_some(&auth),
            };
            assert_eq!(
                b.matches(&view).is_some(),
                *want,
                "{key} {m:?} negate={negate} token={with_token}"
            );
        }
        // the provider's spaceDelimitedClaims
        let listed = RequestAuth {
            space_delimited_claims: Some(vec!["roles".to_string()].into()),
            ..auth.clone()
        };
        let mut req = HttpMatchRequest::default();
        req.headers.insert(
            "@request.auth.claims.roles".into(),
            sm(Some("viewer"), None, None),
        );
        let b = MatchBlock::compile(&req, "default", &mut c, &mut Vec::new());
        let view = ReqView {
            path: "/",
            query: None,
            method: "GET",
            authority: "a",
            scheme: "http",
            headers: &h,
            port: 80,
            client_ns: "default",
            source_labels: &no_labels,
            gateway: Some("istio-system/gw"),
            request_auth: Some(&listed),
        };
        assert!(b.matches(&view).is_some());
        // Envoy has no presence match on a claim: an error, and the block never matches
        for m in [sm(None, None, None), sm(None, None, Some("*"))] {
            let mut req = HttpMatchRequest::default();
            req.headers.insert("@request.auth.claims.role".into(), m);
            let mut errors = Vec::new();
            let b = MatchBlock::compile(&req, "default", &mut c, &mut errors);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(b
                .matches(&ReqView {
                    request_auth: Some(&auth),
                    ..view
                })
                .is_none());
        }
    }

    #[test]
    fn query_params() {
        let table = [
            (Some("a=1&b=2"), "b", Some("2")),
            (Some("a=1&b"), "b", Some("")),
            (Some("a=1&a=2"), "a", Some("1")),
            (Some("ab=1"), "a", None),
            (None, "a", None),
        ];
        for (q, name, want) in table {
            assert_eq!(query_first(q, name), want, "{q:?} {name}");
        }
    }

    #[test]
    fn path_header_match_sees_the_query_as_envoys_path_pseudo_header() {
        let snap = crate::mesh::Mesh::from_yaml(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - match: [{headers: {":path": {exact: "/a?x=1"}}}]
    directResponse: {status: 418}
  - match: [{headers: {":path": {regex: "/b\\?.*"}}}]
    directResponse: {status: 419}
  - match: [{headers: {":path": {prefix: "/c"}}}]
    directResponse: {status: 420}
  - directResponse: {status: 200}
"#,
        )
        .unwrap()
        .snapshot();
        let h = http::HeaderMap::new();
        let status = |path| {
            let a = crate::route::HttpRequestAttrs::new("default", "web.example.com", path, &h);
            match snap.route_http(&a).outcome {
                crate::route::RouteOutcome::DirectResponse(d) => d.status,
                o => panic!("{o:?}"),
            }
        };
        let table = [
            ("/a?x=1", 418),
            ("/a", 200),
            ("/a?x=2", 200),
            ("/b?y", 419),
            ("/b", 200),
            ("/c?z=1", 420),
        ];
        for (path, want) in table {
            assert_eq!(status(path), want, "{path}");
        }
    }
}
