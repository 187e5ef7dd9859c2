//! SPIFFE workload identity: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
//! or any other SPIFFE ID with a path (`spiffe://<trust-domain>/<path>`, as SPIRE issues).
//!
//! Istio's form (`pkg/spiffe` `ParseIdentity`): after `spiffe://`, exactly five `/`-separated
//! parts with the literals `ns` and `sa` at positions 1 and 3; such an ID has a namespace and
//! a service account. Envoy accepts any SPIFFE ID of a trusted trust domain from a peer
//! (istiod's SAN matchers are `spiffe://<td>/` prefixes) and AuthorizationPolicy compares the
//! whole principal, so other paths are identities too, without a namespace or service
//! account. We are stricter than Envoy where it is silently lenient: no empty part, and the
//! characters allowed by the SPIFFE specification (trust domain: lower-case letters, digits,
//! `.`, `-`, `_`; path segments: letters, digits, `.`, `-`, `_`, but not `.` or `..`). A
//! string that fails any of this is not an identity, so it can never match a policy by
//! accident.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The URI scheme prefix of a SPIFFE ID.
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, SPIFFE_PREFIX};
///
/// let id = Identity::new("cluster.local", "default", "sleep")?;
/// assert_eq!(id.as_uri().strip_prefix(SPIFFE_PREFIX), Some(id.principal()));
/// # Ok::<(), mesh_tls::IdentityError>(())
/// ```
pub const SPIFFE_PREFIX: &str = "spiffe://";

/// Istio's default trust domain (MeshConfig `trustDomain`).
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, DEFAULT_TRUST_DOMAIN};
///
/// let id = Identity::new(DEFAULT_TRUST_DOMAIN, "default", "sleep")?;
/// assert_eq!(id.as_uri(), "spiffe://cluster.local/ns/default/sa/sleep");
/// # Ok::<(), mesh_tls::IdentityError>(())
/// ```
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A workload's SPIFFE identity: Istio's `/ns/<ns>/sa/<sa>` form, or any other path in a
/// trust domain (then [`namespace`](Self::namespace) and
/// [`service_account`](Self::service_account) are empty; [`is_istio_form`](Self::is_istio_form)).
///
/// Parsing and printing round-trip exactly. The string is stored once; the accessors
/// ([`trust_domain`](Self::trust_domain), [`namespace`](Self::namespace),
/// [`service_account`](Self::service_account), [`principal`](Self::principal)) borrow from
/// it, so they never allocate, and cloning is a reference-count increment.
///
/// # Examples
///
/// ```
/// use mesh_tls::Identity;
/// let id: Identity = "spiffe://cluster.local/ns/default/sa/sleep".parse().unwrap();
/// assert_eq!(id.principal(), "cluster.local/ns/default/sa/sleep");
/// assert_eq!(id.namespace(), "default");
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    uri: Arc<str>,
    // Byte offsets into `uri`: trust domain is [PREFIX, td_end), namespace [ns_start,
    // ns_end), service account [sa_start, len); all three at the end for other paths.
    td_end: u16,
    ns_start: u16,
    ns_end: u16,
    sa_start: u16,
}

/// Why a string is not a workload's SPIFFE identity.
///
/// # Examples
///
/// ```
/// use mesh_tls::{Identity, IdentityError};
///
/// let err = Identity::parse("cluster.local/ns/default/sa/sleep").unwrap_err();
/// assert!(matches!(err, IdentityError::MissingPrefix(_)));
///
/// let err = Identity::parse("spiffe://cluster.local").unwrap_err();
/// assert!(matches!(err, IdentityError::Shape(_)));
///
/// let err = Identity::parse("spiffe://Cluster.Local/ns/default/sa/sleep").unwrap_err();
/// assert!(matches!(err, IdentityError::InvalidPart { part: "trust domain", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The string does not start with `spiffe://`.
    #[error("identity {0:?} is not a spiffe format: missing the spiffe:// prefix")]
    MissingPrefix(String),
    /// No path after the trust domain (`spiffe://<td>` names a trust domain, not a workload).
    #[error("identity {0:?} is not a spiffe format: expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> or another path")]
    Shape(String),
    /// A part is empty or holds a character SPIFFE does not allow.
    #[error("identity {id:?} has an invalid {part}: {reason}")]
    InvalidPart {
        /// The whole string.
        id: String,
        /// Which part: `trust domain`, `namespace`, `service account` or `path`.
        part: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Longer than we store (a SPIFFE ID is at most 2048 bytes).
    #[error("identity is too long ({0} bytes; at most 2048)")]
    TooLong(usize),
}

impl Identity {
    /// Parses `spiffe://<td>/ns/<ns>/sa/<sa>`, or `spiffe://<td>/<path>`, strictly.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::parse("spiffe://td/ns/istio-system/sa/istio-ingressgateway-service-account")?;
    /// assert_eq!(id.trust_domain(), "td");
    /// assert_eq!(id.service_account(), "istio-ingressgateway-service-account");
    ///
    /// // Another path: an identity of the trust domain, without namespace or account.
    /// let spire = Identity::parse("spiffe://cluster.local/ns/default/sa/sleep/x")?;
    /// assert_eq!((spire.namespace(), spire.service_account()), ("", ""));
    /// assert_eq!(spire.path(), "/ns/default/sa/sleep/x");
    ///
    /// // No path, no empty parts, no upper-case trust domain.
    /// assert!(Identity::parse("spiffe://cluster.local").is_err());
    /// assert!(Identity::parse("spiffe://cluster.local/ns//sa/sleep").is_err());
    /// assert!(Identity::parse("spiffe://Cluster.Local/ns/default/sa/sleep").is_err());
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        if s.len() > 2048 {
            return Err(IdentityError::TooLong(s.len()));
        }
        let rest = s
            .strip_prefix(SPIFFE_PREFIX)
            .ok_or_else(|| IdentityError::MissingPrefix(s.to_owned()))?;
        // a workload's ID has a path: `spiffe://<td>` alone names the trust domain
        let Some((td, path)) = rest.split_once('/') else {
            return Err(IdentityError::Shape(s.to_owned()));
        };
        check_trust_domain(td).map_err(|reason| IdentityError::InvalidPart {
            id: s.to_owned(),
            part: "trust domain",
            reason,
        })?;
        // Istio's form names its parts in messages; any other path is one part
        let mut segs = path.split('/');
        let istio = match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        };
        let p = SPIFFE_PREFIX.len();
        let td_end = p + td.len();
        let Some((ns, sa)) = istio else {
            for seg in path.split('/') {
                check_segment(seg).map_err(|reason| IdentityError::InvalidPart {
                    id: s.to_owned(),
                    part: "path",
                    reason,
                })?;
            }
            // no namespace, no service account: both are the empty tail
            let end = s.len() as u16;
            return Ok(Self {
                uri: Arc::from(s),
                td_end: td_end as u16,
                ns_start: end,
                ns_end: end,
                sa_start: end,
            });
        };
        check_segment(ns).map_err(|reason| IdentityError::InvalidPart {
            id: s.to_owned(),
            part: "namespace",
            reason,
        })?;
        check_segment(sa).map_err(|reason| IdentityError::InvalidPart {
            id: s.to_owned(),
            part: "service account",
            reason,
        })?;
        let ns_start = td_end + "/ns/".len();
        let ns_end = ns_start + ns.len();
        let sa_start = ns_end + "/sa/".len();
        Ok(Self {
            uri: Arc::from(s),
            td_end: td_end as u16,
            ns_start: ns_start as u16,
            ns_end: ns_end as u16,
            sa_start: sa_start as u16,
        })
    }

    /// Builds `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`, checking each part.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::new("cluster.local", "bookinfo", "bookinfo-reviews")?;
    /// assert_eq!(id.as_uri(), "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews");
    /// // A `/` would change the shape: refused.
    /// assert!(Identity::new("cluster.local", "a/b", "c").is_err());
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdentityError> {
        let id = Self::parse(&format!(
            "{SPIFFE_PREFIX}{trust_domain}/ns/{namespace}/sa/{service_account}"
        ))?;
        // a `/` in a part parses as another path: not the identity asked for
        if id.namespace() != namespace || id.service_account() != service_account {
            return Err(IdentityError::InvalidPart {
                id: id.to_string(),
                part: if id.namespace() != namespace {
                    "namespace"
                } else {
                    "service account"
                },
                reason: "only letters, digits, '.', '-' and '_' are allowed",
            });
        }
        Ok(id)
    }

    /// Parses Istio's principal form `<td>/ns/<ns>/sa/<sa>` (the SPIFFE ID without
    /// `spiffe://`, as AuthorizationPolicy `principals` are written).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::from_principal("cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")?;
    /// assert_eq!(id.namespace(), "istio-system");
    /// assert_eq!(id.principal(), "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn from_principal(principal: &str) -> Result<Self, IdentityError> {
        Self::parse(&format!("{SPIFFE_PREFIX}{principal}"))
    }

    /// The full SPIFFE ID, `spiffe://<td>/ns/<ns>/sa/<sa>` (or `spiffe://<td>/<path>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// assert_eq!(id.as_uri(), "spiffe://cluster.local/ns/default/sa/sleep");
    /// assert_eq!(id.as_uri(), id.to_string());
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn as_uri(&self) -> &str {
        &self.uri
    }

    /// Istio's principal form: `<td>/ns/<ns>/sa/<sa>` (what AuthorizationPolicy
    /// `principals` and `source.principal` compare against): the ID without `spiffe://`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// assert_eq!(id.principal(), "cluster.local/ns/default/sa/sleep");
    /// assert_eq!(Identity::from_principal(id.principal())?, id);
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn principal(&self) -> &str {
        &self.uri[SPIFFE_PREFIX.len()..]
    }

    /// The trust domain, e.g. `cluster.local`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::parse("spiffe://prod.example.com/ns/default/sa/sleep")?;
    /// assert_eq!(id.trust_domain(), "prod.example.com");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn trust_domain(&self) -> &str {
        &self.uri[SPIFFE_PREFIX.len()..self.td_end as usize]
    }

    /// The Kubernetes namespace; empty when the ID is not of Istio's form.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::parse("spiffe://cluster.local/ns/istio-system/sa/istiod")?;
    /// assert_eq!(id.namespace(), "istio-system");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn namespace(&self) -> &str {
        &self.uri[self.ns_start as usize..self.ns_end as usize]
    }

    /// The Kubernetes service account; empty when the ID is not of Istio's form.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::parse("spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews")?;
    /// assert_eq!(id.service_account(), "bookinfo-reviews");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn service_account(&self) -> &str {
        &self.uri[self.sa_start as usize..]
    }

    /// The same path (namespace and service account) in another trust domain (for
    /// trust-domain aliases).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::new("cluster.local", "default", "sleep")?;
    /// let alias = id.with_trust_domain("old.example.com")?;
    /// assert_eq!(alias.as_uri(), "spiffe://old.example.com/ns/default/sa/sleep");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn with_trust_domain(&self, trust_domain: &str) -> Result<Self, IdentityError> {
        Self::parse(&format!("{SPIFFE_PREFIX}{trust_domain}{}", self.path()))
    }

    /// The path after the trust domain, with its leading `/`: `/ns/<ns>/sa/<sa>` in Istio's
    /// form.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// let id = Identity::parse("spiffe://example.org/workload/billing")?;
    /// assert_eq!(id.path(), "/workload/billing");
    /// assert_eq!(id.principal(), "example.org/workload/billing");
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn path(&self) -> &str {
        &self.uri[self.td_end as usize..]
    }

    /// Whether the ID is Istio's `/ns/<ns>/sa/<sa>` form, so it has a namespace and a
    /// service account.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tls::Identity;
    ///
    /// assert!(Identity::new("cluster.local", "default", "sleep")?.is_istio_form());
    /// assert!(!Identity::parse("spiffe://example.org/workload/billing")?.is_istio_form());
    /// # Ok::<(), mesh_tls::IdentityError>(())
    /// ```
    pub fn is_istio_form(&self) -> bool {
        (self.sa_start as usize) < self.uri.len()
    }
}

/// Checks a trust domain name as SPIFFE defines it (lower-case letters, digits, `.`, `-`,
/// `_`; not empty).
pub(crate) fn check_trust_domain(td: &str) -> Result<(), &'static str> {
    if td.is_empty() {
        return Err("it is empty");
    }
    if td.len() > 255 {
        return Err("it is longer than 255 bytes");
    }
    if !td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("only lower-case letters, digits, '.', '-' and '_' are allowed");
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), &'static str> {
    if seg.is_empty() {
        return Err("it is empty");
    }
    if seg == "." || seg == ".." {
        return Err("'.' and '..' are not allowed");
    }
    if !seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("only letters, digits, '.', '-' and '_' are allowed");
    }
    Ok(())
}

impl FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.uri)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.uri
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (input, Ok((td, ns, sa)) or Err(kind substring))
        type Want<'a> = Result<(&'a str, &'a str, &'a str), &'a str>;
        let cases: &[(&str, Want<'_>)] = &[
            (
                "spiffe://cluster.local/ns/default/sa/sleep",
                Ok(("cluster.local", "default", "sleep")),
            ),
            (
                "spiffe://trust-domain-foo/ns/foo/sa/foo",
                Ok(("trust-domain-foo", "foo", "foo")),
            ),
            (
                "spiffe://td/ns/istio-system/sa/istio-ingressgateway-service-account",
                Ok(("td", "istio-system", "istio-ingressgateway-service-account")),
            ),
            ("spiffe://td/ns/a.b/sa/c_d", Ok(("td", "a.b", "c_d"))),
            ("cluster.local/ns/default/sa/sleep", Err("prefix")),
            ("SPIFFE://cluster.local/ns/default/sa/sleep", Err("prefix")),
            // other paths: identities without namespace or service account
            (
                "spiffe://cluster.local/ns/default/sa",
                Ok(("cluster.local", "", "")),
            ),
            ("spiffe://cluster.local/ns/default/sa/sleep/", Err("path")),
            (
                "spiffe://cluster.local/ns/default/sa/sleep/x",
                Ok(("cluster.local", "", "")),
            ),
            (
                "spiffe://cluster.local/sa/default/ns/sleep",
                Ok(("cluster.local", "", "")),
            ),
            (
                "spiffe://cluster.local/namespace/default/sa/sleep",
                Ok(("cluster.local", "", "")),
            ),
            ("spiffe://example.org/workload", Ok(("example.org", "", ""))),
            ("spiffe://example.org/", Err("path")),
            ("spiffe://example.org", Err("format")),
            ("spiffe://example.org/a//b", Err("path")),
            ("spiffe://example.org/a/../b", Err("path")),
            ("spiffe://", Err("format")),
            ("spiffe:///ns/default/sa/sleep", Err("trust domain")),
            ("spiffe://cluster.local/ns//sa/sleep", Err("namespace")),
            (
                "spiffe://cluster.local/ns/default/sa/",
                Err("service account"),
            ),
            (
                "spiffe://Cluster.Local/ns/default/sa/sleep",
                Err("trust domain"),
            ),
            (
                "spiffe://cluster.local:8080/ns/default/sa/sleep",
                Err("trust domain"),
            ),
            ("spiffe://cluster.local/ns/../sa/sleep", Err("namespace")),
            (
                "spiffe://cluster.local/ns/default/sa/sl eep",
                Err("service account"),
            ),
            (
                "spiffe://cluster.local/ns/default/sa/sleep?x=1",
                Err("service account"),
            ),
            (
                "spiffe://cluster.local/ns/default/sa/sleep#f",
                Err("service account"),
            ),
            ("spiffe://cluster.local/ns/dé/sa/sleep", Err("namespace")),
        ];
        for (input, want) in cases {
            let got = Identity::parse(input);
            match (want, got) {
                (Ok((td, ns, sa)), Ok(id)) => {
                    assert_eq!(id.trust_domain(), *td, "{input}");
                    assert_eq!(id.namespace(), *ns, "{input}");
                    assert_eq!(id.service_account(), *sa, "{input}");
                    assert_eq!(id.is_istio_form(), !ns.is_empty(), "{input}");
                    assert_eq!(id.to_string(), *input, "round trip {input}");
                    assert_eq!(id.as_uri(), *input);
                    assert_eq!(format!("spiffe://{}", id.principal()), *input);
                    assert_eq!(Identity::parse(id.as_uri()).unwrap(), id);
                    assert_eq!(Identity::from_principal(id.principal()).unwrap(), id);
                }
                (Err(kind), Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(kind), "{input}: {msg} should mention {kind}");
                }
                (want, got) => panic!("{input}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn new_and_alias() {
        let id = Identity::new("cluster.local", "default", "sleep").unwrap();
        assert_eq!(id.principal(), "cluster.local/ns/default/sa/sleep");
        let alias = id.with_trust_domain("old.domain").unwrap();
        assert_eq!(alias.as_uri(), "spiffe://old.domain/ns/default/sa/sleep");
        assert!(Identity::new("cluster.local", "a/b", "c").is_err());
        assert!(Identity::new("cluster.local", "a", "b/c").is_err());
        assert!(Identity::new("cluster.local", "a/sa/b/ns", "c").is_err());
        let spire = Identity::parse("spiffe://cluster.local/workload/x").unwrap();
        let alias = spire.with_trust_domain("old.domain").unwrap();
        assert_eq!(alias.as_uri(), "spiffe://old.domain/workload/x");
        assert!(!alias.is_istio_form());
        assert!(Identity::new("", "a", "c").is_err());
    }

    #[test]
    fn too_long_is_an_error_not_a_panic() {
        let long = format!("spiffe://td/ns/{}/sa/x", "a".repeat(70_000));
        assert!(matches!(
            Identity::parse(&long),
            Err(IdentityError::TooLong(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz over short strings built from an alphabet that hits
        // the separators and the prefix.
        let alphabet = ["spiffe://", "/", "ns", "sa", "a", ".", "", "é", ":"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            if let Ok(id) = Identity::parse(&s) {
                assert_eq!(id.as_uri(), s);
            }
            seed = seed.wrapping_add(1);
        }
    }
}
