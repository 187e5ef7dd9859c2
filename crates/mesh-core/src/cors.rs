//! A VirtualService route's `corsPolicy`, as Envoy's CORS filter enforces it where the
//! route is evaluated (the ingress gateway, the client side).
//!
//! Istio turns a `corsPolicy` into Envoy's route `CorsPolicy` (filter enabled for every
//! request; `allowMethods`, `allowHeaders` and `exposeHeaders` joined with `,`; `maxAge` in
//! whole seconds; `allowOrigin` entries as exact matches; `unmatchedPreflights: IGNORE` as
//! `forward_not_matching_preflights: false`), and the filter then decides per request:
//!
//! - without an `Origin` header (or an empty one) nothing happens;
//! - a **preflight** (`OPTIONS` with `Access-Control-Request-Method`) whose origin is allowed
//!   is answered by the proxy itself: `200`, no body, `access-control-allow-origin: <the
//!   origin>`, `access-control-allow-credentials: true` when allowed, the allowed methods
//!   (`*` echoes the requested method), the allowed headers (`*` echoes
//!   `Access-Control-Request-Headers`), `access-control-max-age` and
//!   `access-control-expose-headers` (the filter encodes its own reply too);
//! - a preflight whose origin is not allowed is forwarded to the application as any request
//!   (`unmatchedPreflights: FORWARD`, the default), or answered `200` as above but without
//!   `access-control-allow-origin` (`IGNORE`);
//! - any other request from an allowed origin is forwarded, and its response gets
//!   `access-control-allow-origin: <the origin>`, `access-control-allow-credentials: true`
//!   when allowed and `access-control-expose-headers`, replacing what the application set;
//!   from an origin that is not allowed, the response is left alone.
//!
//! An origin is allowed when one of the `allowOrigins` matchers matches it, or matches the
//! string `*` (so `exact: "*"` or `prefix: "*"` allows any origin). The reply names the
//! request's origin, never `*`.
//!
//! # Examples
//!
//! ```
//! use mesh_core::cors::{Cors, CorsVerdict};
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: ratings}
//! spec:
//!   hosts: [ratings]
//!   http:
//!   - route:
//!     - destination: {host: ratings}
//!     corsPolicy:
//!       allowOrigins:
//!       - exact: https://example.com
//!       allowMethods: [POST, GET]
//!       allowCredentials: false
//!       allowHeaders: [X-Foo-Bar]
//!       maxAge: 24h
//! ", "vs.yaml");
//! let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
//! let cors = Cors::compile(vs.http[0].cors_policy.as_ref().unwrap());
//!
//! // a preflight from the allowed origin is answered here
//! let v = cors.evaluate("OPTIONS", Some("https://example.com"), Some("POST"));
//! assert_eq!(v, CorsVerdict::Preflight { origin_allowed: true });
//! let reply: Vec<_> = cors.preflight_headers(v, "https://example.com", "POST", None).collect();
//! assert_eq!(reply, [
//!     ("access-control-allow-origin", "https://example.com"),
//!     ("access-control-allow-methods", "POST,GET"),
//!     ("access-control-allow-headers", "X-Foo-Bar"),
//!     ("access-control-max-age", "86400"),
//! ]);
//!
//! // a request from another origin goes on untouched (no CORS headers on its response)
//! assert_eq!(cors.evaluate("GET", Some("https://evil.example"), None), CorsVerdict::NotAllowed);
//! assert_eq!(cors.evaluate("GET", None, None), CorsVerdict::NotCors);
//! ```

use std::sync::Arc;

use crate::model::{self, StringMatchKind, UnmatchedPreflights};
use crate::route::StrMatcher;

/// A compiled `corsPolicy` (see the [module docs](self) for the semantics).
///
/// # Examples
///
/// ```
/// use mesh_core::cors::{Cors, CorsVerdict};
/// use mesh_core::model::{CorsPolicy, StringMatch};
///
/// let origin = StringMatch { exact: Some("https://app.example".into()), ..Default::default() };
/// let cors = Cors::compile(&CorsPolicy { allow_origins: vec![origin], ..Default::default() });
/// assert_eq!(cors.evaluate("GET", Some("https://app.example"), None), CorsVerdict::Allowed);
/// ```
#[derive(Debug, Clone)]
pub struct Cors {
    policy: Arc<model::CorsPolicy>,
    origins: Box<[StrMatcher]>,
    allow_methods: Box<str>,
    allow_headers: Box<str>,
    expose_headers: Box<str>,
    max_age: Box<str>,
    allow_credentials: bool,
    forward_unmatched_preflights: bool,
}

/// What the CORS filter does with a request ([`Cors::evaluate`]).
///
/// # Examples
///
/// ```
/// use mesh_core::cors::{Cors, CorsVerdict};
/// use mesh_core::model::CorsPolicy;
///
/// // a policy allowing no origin: CORS requests go on untouched
/// let cors = Cors::compile(&CorsPolicy::default());
/// let v = cors.evaluate("OPTIONS", Some("https://a.example"), Some("GET"));
/// assert_eq!(v, CorsVerdict::NotAllowed);
/// assert!(v.forwards());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsVerdict {
    /// No `Origin` (or an empty one): not a CORS request; forward it, leave its response.
    NotCors,
    /// A CORS request (not a preflight) from an allowed origin: forward it, then add
    /// [`Cors::response_headers`] to its response.
    Allowed,
    /// A CORS request from an origin that is not allowed, or a preflight from one that the
    /// policy forwards (`unmatchedPreflights: FORWARD`): forward it, leave its response.
    NotAllowed,
    /// A preflight the proxy answers itself: `200`, no body, [`Cors::preflight_headers`].
    Preflight {
        /// Whether the origin was allowed (else the reply carries no
        /// `access-control-allow-origin`).
        origin_allowed: bool,
    },
}

impl CorsVerdict {
    /// Whether the request goes on to the destination (everything but a preflight answered
    /// here).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::CorsVerdict;
    ///
    /// assert!(CorsVerdict::Allowed.forwards());
    /// assert!(!CorsVerdict::Preflight { origin_allowed: true }.forwards());
    /// ```
    pub fn forwards(self) -> bool {
        !matches!(self, CorsVerdict::Preflight { .. })
    }
}

impl Cors {
    /// Compiles a route's `corsPolicy` as Istio translates it for Envoy. A regex that does
    /// not compile (validation rejects it first) matches nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::Cors;
    /// use mesh_core::model::CorsPolicy;
    ///
    /// // the deprecated `allowOrigin` list is matched exactly
    /// let policy = CorsPolicy { allow_origin: vec!["https://a.example".into()], ..Default::default() };
    /// let cors = Cors::compile(&policy);
    /// assert!(cors.origin_allowed("https://a.example"));
    /// assert!(!cors.origin_allowed("https://a.example.evil"));
    /// ```
    pub fn compile(policy: &model::CorsPolicy) -> Cors {
        let origins: Box<[StrMatcher]> = if !policy.allow_origins.is_empty() {
            policy
                .allow_origins
                .iter()
                .filter_map(|m| {
                    Some(match m.kind()? {
                        StringMatchKind::Exact(s) => StrMatcher::Exact(s.into()),
                        StringMatchKind::Prefix(s) => StrMatcher::Prefix(s.into()),
                        // Envoy's safe_regex is RE2: ASCII `\d`/`\w`/`\s`/`\b`, full match
                        StringMatchKind::Regex(r) => {
                            StrMatcher::Regex(crate::route::re2_regex(r, true).ok()?)
                        }
                    })
                })
                .collect()
        } else {
            policy
                .allow_origin
                .iter()
                .map(|s| StrMatcher::Exact(s.as_str().into()))
                .collect()
        };
        Cors {
            policy: Arc::new(policy.clone()),
            origins,
            allow_methods: policy.allow_methods.join(",").into(),
            allow_headers: policy.allow_headers.join(",").into(),
            expose_headers: policy.expose_headers.join(",").into(),
            max_age: policy
                .max_age
                .map(|d| (d.as_nanos() / 1_000_000_000).to_string())
                .unwrap_or_default()
                .into(),
            allow_credentials: policy.allow_credentials == Some(true),
            forward_unmatched_preflights: policy.unmatched_preflights
                != Some(UnmatchedPreflights::Ignore),
        }
    }

    /// The policy as written.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::Cors;
    /// use mesh_core::model::CorsPolicy;
    ///
    /// let policy = CorsPolicy { allow_methods: vec!["GET".into()], ..Default::default() };
    /// assert_eq!(Cors::compile(&policy).policy(), &policy);
    /// ```
    pub fn policy(&self) -> &model::CorsPolicy {
        &self.policy
    }

    /// Whether `origin` is allowed: a matcher matches it, or matches `*`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::Cors;
    /// use mesh_core::model::{CorsPolicy, StringMatch};
    ///
    /// let any = StringMatch { exact: Some("*".into()), ..Default::default() };
    /// let cors = Cors::compile(&CorsPolicy { allow_origins: vec![any], ..Default::default() });
    /// assert!(cors.origin_allowed("https://anything.example"));
    /// ```
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|m| m.matches("*") || m.matches(origin))
    }

    /// What to do with a request: its method, its `Origin` and its
    /// `Access-Control-Request-Method` headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::{Cors, CorsVerdict};
    /// use mesh_core::model::{CorsPolicy, StringMatch, UnmatchedPreflights};
    ///
    /// let origin = StringMatch { prefix: Some("https://".into()), ..Default::default() };
    /// let mut policy = CorsPolicy { allow_origins: vec![origin], ..Default::default() };
    /// let cors = Cors::compile(&policy);
    /// assert_eq!(cors.evaluate("GET", Some("https://a.example"), None), CorsVerdict::Allowed);
    /// // an OPTIONS without Access-Control-Request-Method is no preflight
    /// assert_eq!(cors.evaluate("OPTIONS", Some("https://a.example"), None), CorsVerdict::Allowed);
    /// // a preflight from an origin not allowed is forwarded by default...
    /// assert_eq!(cors.evaluate("OPTIONS", Some("http://a.example"), Some("PUT")), CorsVerdict::NotAllowed);
    /// // ...and answered here with IGNORE
    /// policy.unmatched_preflights = Some(UnmatchedPreflights::Ignore);
    /// assert_eq!(
    ///     Cors::compile(&policy).evaluate("OPTIONS", Some("http://a.example"), Some("PUT")),
    ///     CorsVerdict::Preflight { origin_allowed: false },
    /// );
    /// ```
    pub fn evaluate(
        &self,
        method: &str,
        origin: Option<&str>,
        request_method: Option<&str>,
    ) -> CorsVerdict {
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return CorsVerdict::NotCors;
        };
        let allowed = self.origin_allowed(origin);
        let preflight = method == "OPTIONS" && request_method.is_some_and(|m| !m.is_empty());
        match (preflight, allowed) {
            (true, false) if self.forward_unmatched_preflights => CorsVerdict::NotAllowed,
            (true, origin_allowed) => CorsVerdict::Preflight { origin_allowed },
            (false, true) => CorsVerdict::Allowed,
            (false, false) => CorsVerdict::NotAllowed,
        }
    }

    /// The headers of the reply to a preflight ([`CorsVerdict::Preflight`]), in Envoy's
    /// order: its `origin`, `Access-Control-Request-Method` and
    /// `Access-Control-Request-Headers`, then `exposeHeaders` for an allowed origin (Envoy's
    /// CORS filter encodes its own reply too). Any other verdict gives none.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::{Cors, CorsVerdict};
    /// use mesh_core::model::{CorsPolicy, StringMatch};
    ///
    /// let origin = StringMatch { exact: Some("https://a.example".into()), ..Default::default() };
    /// let cors = Cors::compile(&CorsPolicy {
    ///     allow_origins: vec![origin],
    ///     allow_methods: vec!["*".into()],
    ///     allow_headers: vec!["*".into()],
    ///     allow_credentials: Some(true),
    ///     ..Default::default()
    /// });
    /// let v = cors.evaluate("OPTIONS", Some("https://a.example"), Some("PATCH"));
    /// let reply: Vec<_> = cors.preflight_headers(v, "https://a.example", "PATCH", Some("x-token")).collect();
    /// assert_eq!(reply, [
    ///     ("access-control-allow-origin", "https://a.example"),
    ///     ("access-control-allow-credentials", "true"),
    ///     ("access-control-allow-methods", "PATCH"),
    ///     ("access-control-allow-headers", "x-token"),
    /// ]);
    /// ```
    pub fn preflight_headers<'a>(
        &'a self,
        verdict: CorsVerdict,
        origin: &'a str,
        request_method: &'a str,
        request_headers: Option<&'a str>,
    ) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
        let origin_allowed = match verdict {
            CorsVerdict::Preflight { origin_allowed } => Some(origin_allowed),
            _ => None,
        };
        let on = origin_allowed.is_some();
        let methods = match &*self.allow_methods {
            "*" => request_method,
            m => m,
        };
        let headers = match &*self.allow_headers {
            "*" => request_headers.unwrap_or(""),
            h => h,
        };
        [
            (origin_allowed == Some(true)).then_some(("access-control-allow-origin", origin)),
            (on && self.allow_credentials).then_some(("access-control-allow-credentials", "true")),
            (on && !methods.is_empty()).then_some(("access-control-allow-methods", methods)),
            (on && !headers.is_empty()).then_some(("access-control-allow-headers", headers)),
            (on && !self.max_age.is_empty()).then_some(("access-control-max-age", &*self.max_age)),
            // the filter's own encoding of its reply adds them, as to any answer to an
            // allowed origin
            (origin_allowed == Some(true) && !self.expose_headers.is_empty())
                .then_some(("access-control-expose-headers", &*self.expose_headers)),
        ]
        .into_iter()
        .flatten()
    }

    /// The headers set on the response to a request from an allowed origin
    /// ([`CorsVerdict::Allowed`]), replacing the application's; any other verdict gives
    /// none.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::cors::{Cors, CorsVerdict};
    /// use mesh_core::model::{CorsPolicy, StringMatch};
    ///
    /// let origin = StringMatch { regex: Some(r"https://.*\.example".into()), ..Default::default() };
    /// let cors = Cors::compile(&CorsPolicy {
    ///     allow_origins: vec![origin],
    ///     expose_headers: vec!["x-trace".into(), "x-quota".into()],
    ///     ..Default::default()
    /// });
    /// let v = cors.evaluate("GET", Some("https://a.example"), None);
    /// let set: Vec<_> = cors.response_headers(v, "https://a.example").collect();
    /// assert_eq!(set, [
    ///     ("access-control-allow-origin", "https://a.example"),
    ///     ("access-control-expose-headers", "x-trace,x-quota"),
    /// ]);
    /// assert_eq!(cors.response_headers(CorsVerdict::NotAllowed, "https://b.test").count(), 0);
    /// ```
    pub fn response_headers<'a>(
        &'a self,
        verdict: CorsVerdict,
        origin: &'a str,
    ) -> impl Iterator<Item = (&'static str, &'a str)> + 'a {
        let on = verdict == CorsVerdict::Allowed;
        [
            on.then_some(("access-control-allow-origin", origin)),
            (on && self.allow_credentials).then_some(("access-control-allow-credentials", "true")),
            (on && !self.expose_headers.is_empty())
                .then_some(("access-control-expose-headers", &*self.expose_headers)),
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Duration, StringMatch};

    fn exact(s: &str) -> StringMatch {
        StringMatch {
            exact: Some(s.into()),
            ..Default::default()
        }
    }

    fn policy() -> model::CorsPolicy {
        model::CorsPolicy {
            allow_origins: vec![exact("https://a.example")],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["x-token".into(), "content-type".into()],
            expose_headers: vec!["x-quota".into()],
            max_age: Some(Duration::from_millis(90_900)),
            allow_credentials: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn preflight_from_allowed_origin_is_answered_with_every_header() {
        let cors = Cors::compile(&policy());
        let v = cors.evaluate("OPTIONS", Some("https://a.example"), Some("POST"));
        assert_eq!(
            v,
            CorsVerdict::Preflight {
                origin_allowed: true
            }
        );
        assert!(!v.forwards());
        let h: Vec<_> = cors
            .preflight_headers(v, "https://a.example", "POST", Some("x-token"))
            .collect();
        assert_eq!(
            h,
            [
                ("access-control-allow-origin", "https://a.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET,POST"),
                ("access-control-allow-headers", "x-token,content-type"),
                // seconds, truncated
                ("access-control-max-age", "90"),
                // added when the filter encodes its own reply (`encodeHeaders`)
                ("access-control-expose-headers", "x-quota"),
            ]
        );
        // the actual response gets them too
        assert_eq!(
            cors.response_headers(CorsVerdict::Allowed, "https://a.example")
                .collect::<Vec<_>>(),
            [
                ("access-control-allow-origin", "https://a.example"),
                ("access-control-allow-credentials", "true"),
                ("access-control-expose-headers", "x-quota"),
            ]
        );
    }

    #[test]
    fn ignored_unmatched_preflight_gets_no_allow_origin() {
        let mut p = policy();
        p.unmatched_preflights = Some(UnmatchedPreflights::Ignore);
        let cors = Cors::compile(&p);
        let v = cors.evaluate("OPTIONS", Some("https://b.example"), Some("GET"));
        assert_eq!(
            v,
            CorsVerdict::Preflight {
                origin_allowed: false
            }
        );
        let h: Vec<_> = cors
            .preflight_headers(v, "https://b.example", "GET", None)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            h,
            [
                "access-control-allow-credentials",
                "access-control-allow-methods",
                "access-control-allow-headers",
                "access-control-max-age",
            ]
        );
        // FORWARD (explicit or by default) forwards it
        p.unmatched_preflights = Some(UnmatchedPreflights::Forward);
        let v = Cors::compile(&p).evaluate("OPTIONS", Some("https://b.example"), Some("GET"));
        assert_eq!(v, CorsVerdict::NotAllowed);
        assert!(v.forwards());
    }

    #[test]
    fn requests_without_origin_or_from_other_origins_are_left_alone() {
        let cors = Cors::compile(&policy());
        assert_eq!(cors.evaluate("GET", None, None), CorsVerdict::NotCors);
        assert_eq!(cors.evaluate("GET", Some(""), None), CorsVerdict::NotCors);
        assert_eq!(
            cors.evaluate("OPTIONS", None, Some("GET")),
            CorsVerdict::NotCors
        );
        let v = cors.evaluate("POST", Some("https://A.example"), None);
        assert_eq!(v, CorsVerdict::NotAllowed, "origins match case-sensitively");
        assert_eq!(cors.response_headers(v, "https://A.example").count(), 0);
        assert_eq!(cors.preflight_headers(v, "x", "GET", None).count(), 0);
    }

    #[test]
    fn origin_matchers_follow_string_match_arms() {
        let p = model::CorsPolicy {
            allow_origins: vec![
                StringMatch::default(), // no arm: skipped, as Istio does
                StringMatch {
                    prefix: Some("https://app.".into()),
                    ..Default::default()
                },
                StringMatch {
                    regex: Some(r"https://[a-z]+\.test".into()),
                    ..Default::default()
                },
            ],
            // ignored when allowOrigins is set
            allow_origin: vec!["https://legacy.example".into()],
            ..Default::default()
        };
        let cors = Cors::compile(&p);
        assert!(cors.origin_allowed("https://app.example"));
        assert!(cors.origin_allowed("https://abc.test"));
        assert!(
            !cors.origin_allowed("https://abc.test.evil"),
            "regex is anchored"
        );
        assert!(!cors.origin_allowed("https://legacy.example"));
        // a prefix of "*" allows everything, as Envoy tests each matcher against "*"
        let any = Cors::compile(&model::CorsPolicy {
            allow_origins: vec![StringMatch {
                prefix: Some("*".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(any.origin_allowed("null"));
        // no origins at all: nothing is allowed
        let none = Cors::compile(&model::CorsPolicy::default());
        assert_eq!(
            none.evaluate("GET", Some("https://a.example"), None),
            CorsVerdict::NotAllowed
        );
    }

    /// `allowOrigins` regexes are RE2 (Envoy's safe_regex): `\d`, `\w` and `\b` are ASCII, so
    /// an origin spelled with non-ASCII digits or letters does not match them; RE2-only
    /// syntax (`\Q...\E`, a literal `{`) compiles as it does in Envoy.
    #[test]
    fn origin_regexes_use_re2_ascii_classes() {
        let regex = |r: &str| StringMatch {
            regex: Some(r.into()),
            ..Default::default()
        };
        let cors = Cors::compile(&model::CorsPolicy {
            allow_origins: vec![
                regex(r"https://app\d\.example"),
                regex(r"https://\w+\.test"),
                regex(r"\Qhttps://q.example\E"),
                regex(r"https://{[a-z]+}\.example"),
            ],
            ..Default::default()
        });
        assert!(cors.origin_allowed("https://app7.example"));
        // ARABIC-INDIC DIGIT THREE, FULLWIDTH DIGIT ONE: Unicode digits, not RE2's `\d`
        assert!(!cors.origin_allowed("https://app\u{663}.example"));
        assert!(!cors.origin_allowed("https://app\u{ff11}.example"));
        assert!(cors.origin_allowed("https://abc_1.test"));
        assert!(!cors.origin_allowed("https://caf\u{e9}.test"));
        assert!(cors.origin_allowed("https://q.example"));
        assert!(
            !cors.origin_allowed("https://qxexample"),
            "\\Q...\\E is literal"
        );
        assert!(cors.origin_allowed("https://{abc}.example"));
    }
}
