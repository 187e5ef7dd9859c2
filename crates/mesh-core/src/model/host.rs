//! Host names as Istio treats them: wildcard matching and short-name resolution (spec §1.4).
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::host::{matches, resolve_short_name, subset_of};
//!
//! // a DestinationRule for `reviews` written in namespace `prod`...
//! let dr_host = resolve_short_name("reviews", "prod", "cluster.local");
//! assert_eq!(dr_host, "reviews.prod.svc.cluster.local");
//! // ...applies to a VirtualService host `*.prod.svc.cluster.local`
//! assert!(matches("*.prod.svc.cluster.local", &dr_host));
//! assert!(subset_of(&dr_host, "*.svc.cluster.local"));
//! ```

/// The default cluster domain suffix.
///
/// # Examples
///
/// ```
/// use mesh_core::model::host::{resolve_short_name, DEFAULT_DOMAIN_SUFFIX};
///
/// assert_eq!(DEFAULT_DOMAIN_SUFFIX, "cluster.local");
/// assert_eq!(
///     resolve_short_name("ratings", "default", DEFAULT_DOMAIN_SUFFIX),
///     "ratings.default.svc.cluster.local"
/// );
/// ```
pub const DEFAULT_DOMAIN_SUFFIX: &str = "cluster.local";

/// Resolves a config host the way istiod does (`ResolveShortnameToFQDN`): `*` and names with
/// a dot are kept, an IP is kept, a name without a dot becomes
/// `name.<namespace>.svc.<domain_suffix>` — with the **config object's** namespace.
/// ServiceEntry hosts are never resolved: do not call this for them.
///
/// # Examples
///
/// ```
/// use mesh_core::model::host::{resolve_short_name, DEFAULT_DOMAIN_SUFFIX};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews, namespace: prod}
/// spec:
///   host: reviews
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let obj = &loaded.objects[0];
/// let host = &obj.spec.as_destination_rule().unwrap().host;
/// // A short name resolves in the namespace of the object that wrote it.
/// assert_eq!(
///     resolve_short_name(host, &obj.metadata.namespace, DEFAULT_DOMAIN_SUFFIX),
///     "reviews.prod.svc.cluster.local"
/// );
/// // Names with a dot, `*` and IPs are kept as written.
/// assert_eq!(
///     resolve_short_name("reviews.prod", "default", DEFAULT_DOMAIN_SUFFIX),
///     "reviews.prod"
/// );
/// assert_eq!(resolve_short_name("*", "default", DEFAULT_DOMAIN_SUFFIX), "*");
/// ```
pub fn resolve_short_name(host: &str, namespace: &str, domain_suffix: &str) -> String {
    if host == "*" || host.contains('.') || host.contains(':') || host.is_empty() {
        return host.to_owned();
    }
    format!("{host}.{namespace}.svc.{domain_suffix}")
}

/// True when the host starts with `*` (only a leading `*` is a wildcard).
///
/// # Examples
///
/// ```
/// use mesh_core::model::host::is_wildcard;
///
/// assert!(is_wildcard("*.example.com"));
/// assert!(is_wildcard("*"));
/// assert!(!is_wildcard("api.example.com"));
/// ```
pub fn is_wildcard(host: &str) -> bool {
    host.starts_with('*')
}

/// Istio's `host.Name.Matches`: true when the two hosts overlap (either may be a wildcard).
/// `*.foo.com` matches `a.b.foo.com` but not `foo.com`; `*` matches everything; `*foo.com`
/// matches `foo.com` and `barfoo.com`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::host::matches;
///
/// assert!(matches("*.foo.com", "a.b.foo.com"));
/// assert!(!matches("*.foo.com", "foo.com"));
/// assert!(matches("*", "anything.com"));
/// assert!(matches("*.com", "*.foo.com")); // two wildcards overlap
/// assert!(!matches("a.com", "b.com"));
/// ```
pub fn matches(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => {
            if a.len() < b.len() {
                b[1..].ends_with(&a[1..])
            } else {
                a[1..].ends_with(&b[1..])
            }
        }
        (true, false) => b.ends_with(&a[1..]),
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: true when every name `a` covers is also covered by `b`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::host::subset_of;
///
/// assert!(subset_of("a.foo.com", "*.foo.com"));
/// assert!(subset_of("*.a.foo.com", "*.foo.com"));
/// assert!(!subset_of("*.foo.com", "*.a.foo.com"));
/// assert!(!subset_of("*.foo.com", "a.foo.com"));
/// ```
pub fn subset_of(a: &str, b: &str) -> bool {
    match (is_wildcard(a), is_wildcard(b)) {
        (true, true) => a[1..].ends_with(&b[1..]),
        (true, false) => false,
        (false, true) => a.ends_with(&b[1..]),
        (false, false) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_config_namespace() {
        let table = [
            ("reviews", "default", "reviews.default.svc.cluster.local"),
            ("reviews.prod", "default", "reviews.prod"),
            ("*", "default", "*"),
            ("10.0.0.1", "default", "10.0.0.1"),
            ("::1", "default", "::1"),
            ("*.example.com", "x", "*.example.com"),
        ];
        for (h, ns, want) in table {
            assert_eq!(
                resolve_short_name(h, ns, DEFAULT_DOMAIN_SUFFIX),
                want,
                "{h}"
            );
        }
    }

    #[test]
    fn wildcard_matching() {
        let table = [
            ("*.foo.com", "a.b.foo.com", true),
            ("*.foo.com", "foo.com", false),
            ("*", "anything.com", true),
            ("*foo.com", "foo.com", true),
            ("*foo.com", "barfoo.com", true),
            ("*.foo.com", "*.com", true),
            ("*.com", "*.foo.com", true),
            ("*.bar.com", "*.foo.com", false),
            ("a.com", "a.com", true),
            ("a.com", "b.com", false),
        ];
        for (a, b, want) in table {
            assert_eq!(matches(a, b), want, "{a} ~ {b}");
            assert_eq!(matches(b, a), want, "{b} ~ {a}");
        }
    }

    #[test]
    fn subset() {
        let table = [
            ("a.foo.com", "*.foo.com", true),
            ("*.a.foo.com", "*.foo.com", true),
            ("*.foo.com", "*.a.foo.com", false),
            ("*.foo.com", "a.foo.com", false),
            ("wikipedia.org", "wikipedia.org", true),
            ("x.com", "*", true),
        ];
        for (a, b, want) in table {
            assert_eq!(subset_of(a, b), want, "{a} ⊆ {b}");
        }
    }
}
