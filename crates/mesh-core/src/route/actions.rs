//! Compiled route actions: destinations and weights, redirect, direct response, rewrite,
//! retries (with Istio's defaults), fault, mirrors, header operations (spec §2.4-§2.5).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use mesh_core::route::{AbortStatus, HttpRequestAttrs, PerMillion};
//!
//! let snap = mesh_core::mesh::Mesh::from_yaml("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: ratings}
//! spec:
//!   hosts: [ratings]
//!   http:
//!   - route: [{destination: {host: ratings}}]
//!     fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
//!     retries: {attempts: 3, retryOn: 5xx}
//!     timeout: 2s
//! ").unwrap().snapshot();
//! let h = http::HeaderMap::new();
//! let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/ratings/0", &h));
//! let action = d.action().unwrap();
//! assert_eq!(action.fault.as_ref().unwrap().abort, Some((AbortStatus::Http(503), PerMillion(100_000))));
//! assert_eq!((action.retries.attempts, &*action.retries.retry_on), (3, "5xx"));
//! assert_eq!(action.timeout, Some(Duration::from_secs(2)));
//! assert_eq!(d.destinations()[0].weight, 100);
//! ```

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use regex::Regex;

pub use super::format::{HeaderContext, HeaderTemplate, HeaderVar};
use crate::model;

/// One weighted destination of a route.
///
/// # Examples
///
/// ```
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews, subset: v1, port: {number: 9080}}
///       weight: 3
///     - destination: {host: reviews, subset: v2}
///       weight: 1
///       headers: {request: {set: {x-canary: 'true'}}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
/// let [v1, v2] = d.destinations() else { panic!() };
/// assert_eq!(&*v1.host, "reviews.default.svc.cluster.local");
/// assert_eq!((v1.port, v1.weight), (Some(9080), 3));
/// assert_eq!((v2.port, v2.weight), (None, 1));
/// assert!(v1.headers.is_none());
/// assert_eq!(v2.headers.as_ref().unwrap().request.set[0].0, "x-canary");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedDestination {
    /// Service host (FQDN after short-name resolution).
    pub host: Arc<str>,
    /// DestinationRule subset.
    pub subset: Option<Arc<str>>,
    /// Port as written in the route (`None`: the service's only port, else the request's).
    pub port: Option<u16>,
    /// Relative weight (a lone destination has 100).
    pub weight: u32,
    /// Header operations for this destination.
    pub headers: Option<Arc<HeaderOps>>,
}

impl WeightedDestination {
    /// The cluster-like key Istio would use: `outbound|<port>|<subset>|<host>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v2}}]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsets: [{name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/", &h));
    /// assert_eq!(
    ///     d.destinations()[0].cluster_name(9080),
    ///     "outbound|9080|v2|reviews.default.svc.cluster.local"
    /// );
    /// ```
    pub fn cluster_name(&self, port: u16) -> String {
        format!(
            "outbound|{port}|{}|{}",
            self.subset.as_deref().unwrap_or(""),
            self.host
        )
    }
}

/// Picks among weighted destinations with a caller-supplied uniform random `u64`.
///
/// Weights are relative: `random % total` selects the destination. All-zero weights pick
/// the first.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{pick, WeightedDestination};
///
/// let dest = |subset: &str, weight| WeightedDestination {
///     host: "reviews.default.svc.cluster.local".into(),
///     subset: Some(subset.into()),
///     port: None,
///     weight,
///     headers: None,
/// };
/// let dests = [dest("v1", 1), dest("v3", 3)];
/// let subset = |r| pick(&dests, r).unwrap().subset.as_deref().unwrap();
/// assert_eq!([subset(0), subset(1), subset(3), subset(4)], ["v1", "v3", "v3", "v1"]);
/// assert!(pick(&[], 7).is_none());
/// ```
pub fn pick(dests: &[WeightedDestination], random: u64) -> Option<&WeightedDestination> {
    let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return dests.first();
    }
    let mut x = random % total;
    for d in dests {
        let w = u64::from(d.weight);
        if x < w {
            return Some(d);
        }
        x -= w;
    }
    dests.last()
}

pub(crate) fn compile_destinations<'a>(
    items: impl Iterator<
        Item = (
            &'a model::Destination,
            Option<i32>,
            Option<&'a model::Headers>,
        ),
    >,
    resolve: &dyn Fn(&str) -> String,
    cache: &mut super::matcher::RegexCache,
    errors: &mut Vec<String>,
) -> Box<[WeightedDestination]> {
    let mut out: Vec<WeightedDestination> = items
        .map(|(d, w, h)| WeightedDestination {
            host: cache.intern(&resolve(&d.host)),
            subset: d.subset.as_deref().map(|s| cache.intern(s)),
            port: d.port.and_then(|p| u16::try_from(p.number).ok()),
            weight: w.unwrap_or(0).max(0) as u32,
            headers: h.map(|h| Arc::new(HeaderOps::compile(h, errors))),
        })
        .collect();
    if out.len() == 1 {
        out[0].weight = 100;
    } else if out.iter().any(|d| d.weight > 0) {
        out.retain(|d| d.weight > 0);
    } else {
        // all zero: rejected by validation (`total destination weight = 0`); share equally
        for d in &mut out {
            d.weight = 1;
        }
    }
    out.into_boxed_slice()
}

/// A percentage as parts per million (Envoy's `FractionalPercent` precision).
///
/// # Examples
///
/// ```
/// use mesh_core::route::PerMillion;
///
/// let share = PerMillion::from_percent(0.5); // Istio `percentage: {value: 0.5}`
/// assert_eq!(share, PerMillion(5_000));
/// assert_eq!(share.percent(), 0.5);
/// assert!(share.fires(4_999)); // random % 1_000_000 below the share
/// assert!(!share.fires(5_000));
/// assert!(PerMillion::from_percent(100.0).fires(u64::MAX));
/// assert_eq!(PerMillion::from_percent(250.0), PerMillion(1_000_000)); // clamped
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMillion(pub u32);

impl PerMillion {
    /// From a percentage in [0, 100].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::PerMillion;
    ///
    /// assert_eq!(PerMillion::from_percent(10.0), PerMillion(100_000));
    /// assert_eq!(PerMillion::from_percent(0.0001), PerMillion(1)); // the finest step
    /// assert_eq!(PerMillion::from_percent(12.34567), PerMillion(123_456)); // truncated, as istiod
    /// assert_eq!(PerMillion::from_percent(-5.0), PerMillion(0)); // clamped to [0, 100]
    /// ```
    pub fn from_percent(p: f64) -> Self {
        // istiod's `translatePercentToFractionalPercent`: `uint32(p * 10000)`, truncated
        PerMillion((p.clamp(0.0, 100.0) * 10_000.0).trunc() as u32)
    }

    /// True when a uniform random `u64` falls inside the share.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::PerMillion;
    ///
    /// let ten = PerMillion::from_percent(10.0);
    /// // exactly 100_000 of any 1_000_000 consecutive random numbers fire
    /// assert_eq!((0..1_000_000u64).filter(|r| ten.fires(*r)).count(), 100_000);
    /// assert!(!PerMillion(0).fires(0));
    /// ```
    pub fn fires(self, random: u64) -> bool {
        self.0 >= 1_000_000 || (random % 1_000_000) < u64::from(self.0)
    }

    /// As a percentage.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::PerMillion;
    ///
    /// assert_eq!(PerMillion(250_000).percent(), 25.0);
    /// assert_eq!(PerMillion::from_percent(0.1).percent(), 0.1);
    /// ```
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
}

/// `HTTPRedirect`.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - match: [{uri: {prefix: /old}}]
///     redirect: {authority: httpbin.example.com, scheme: https, redirectCode: 308}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/old/page", &h));
/// let RouteOutcome::Redirect(r) = d.outcome else { panic!("not a redirect") };
/// assert_eq!(r.code, 308);
/// assert_eq!(r.scheme.as_deref(), Some("https"));
/// assert_eq!(r.uri, None); // the path is kept
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Replacement path.
    pub uri: Option<Box<str>>,
    /// Replacement authority.
    pub authority: Option<Box<str>>,
    /// Explicit port.
    pub port: Option<u16>,
    /// `derivePort: FROM_REQUEST_PORT`.
    pub port_from_request: bool,
    /// `http` / `https`.
    pub scheme: Option<Box<str>>,
    /// Status code (default 301).
    pub code: u16,
    /// Replacement for the matched prefix.
    pub prefix_rewrite: Option<Box<str>>,
}

impl Redirect {
    fn compile(r: &model::HttpRedirect) -> Redirect {
        Redirect {
            // (an empty `uri` is unset: Envoy keeps the request's path)
            uri: r.uri.as_deref().filter(|u| !u.is_empty()).map(Into::into),
            // (an empty `authority` is unset: Envoy's `newUri` keeps the request's host)
            authority: r
                .authority
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(Into::into),
            // (0 reaches Envoy's `port_redirect` as its unset value: no port redirect)
            port: r
                .port
                .filter(|p| *p != 0)
                .and_then(|p| u16::try_from(p).ok()),
            port_from_request: r.derive_port == Some(model::RedirectPortSelection::FromRequestPort),
            // (an empty `scheme` is unset: the request's)
            scheme: r
                .scheme
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            // (proto3: 0 is unset; istiod's ApplyRedirect `case 0, 301`)
            code: r
                .redirect_code
                .filter(|c| *c != 0)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
            prefix_rewrite: r.prefix_rewrite.as_deref().map(Into::into),
        }
    }

    /// The `location` header for a request (`scheme`, `authority`, listener `port`, `path`
    /// without query, `query`, and the matched prefix length).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: httpbin, namespace: default}
    /// spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: httpbin}
    /// spec:
    ///   hosts: [httpbin]
    ///   http:
    ///   - match: [{uri: {prefix: /v1}}]
    ///     redirect: {prefixRewrite: /v2, authority: api.example.com}
    ///   - match: [{uri: {exact: /login}}]
    ///     redirect: {scheme: https}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let location = |authority, path_and_query| {
    ///     let a = HttpRequestAttrs::new("default", authority, path_and_query, &h);
    ///     let d = snap.route_http(&a);
    ///     let RouteOutcome::Redirect(r) = d.outcome else { panic!("not a redirect") };
    ///     r.location(a.scheme, a.authority, a.effective_port(), a.path, a.query, d.prefix_len)
    /// };
    /// assert_eq!(location("httpbin:8000", "/v1/users?page=2"), "http://api.example.com/v2/users?page=2");
    /// // a scheme change drops the request's port only when it is the old scheme's default
    /// assert_eq!(location("httpbin:80", "/login"), "https://httpbin/login");
    /// assert_eq!(location("httpbin:8000", "/login"), "https://httpbin:8000/login");
    /// ```
    pub fn location(
        &self,
        scheme: &str,
        authority: &str,
        port: u16,
        path: &str,
        query: Option<&str>,
        prefix_len: usize,
    ) -> String {
        let new_scheme = self.scheme.as_deref().unwrap_or(scheme);
        let (req_host, req_port) = crate::names::split_authority(authority);
        let is_default =
            |scheme: &str, p: u16| (scheme == "http" && p == 80) || (scheme == "https" && p == 443);
        // the port istiod gives Envoy's `port_redirect`: the configured one, or the
        // listener's for `derivePort: FROM_REQUEST_PORT`; istiod leaves out the new
        // scheme's default port, which then behaves as no port redirect at all
        let port_redirect = self
            .port
            .or(self.port_from_request.then_some(port))
            .filter(|p| !is_default(new_scheme, *p));
        let out_port = match (port_redirect, &self.authority) {
            (Some(p), _) => Some(p),
            // a new authority brings its own port, if any
            (None, Some(_)) => None,
            // Envoy processRequestHost: the request's Host as sent, its port dropped only
            // on a scheme change from that port's scheme
            (None, None)
                if new_scheme != scheme && req_port.is_some_and(|p| is_default(scheme, p)) =>
            {
                None
            }
            (None, None) => req_port,
        };
        let new_path = if let Some(u) = &self.uri {
            u.to_string()
        } else if let Some(pr) = &self.prefix_rewrite {
            let cut = prefix_len.min(path.len());
            format!("{pr}{}", &path[cut..])
        } else {
            path.to_owned()
        };
        // Envoy newUri: a path that does not start with `/` gets one
        let new_path = if new_path.starts_with('/') {
            new_path
        } else {
            format!("/{new_path}")
        };
        let mut loc = format!("{new_scheme}://");
        match &self.authority {
            // Envoy newUri: `host_redirect` is written as configured, with any port in it
            // (only the port redirect is appended after it)
            Some(a) => loc.push_str(a),
            None if req_host.contains(':') => {
                loc.push('[');
                loc.push_str(req_host);
                loc.push(']');
            }
            None => loc.push_str(req_host),
        }
        if let Some(p) = out_port {
            loc.push(':');
            loc.push_str(&p.to_string());
        }
        loc.push_str(&new_path);
        if let Some(q) = query
            && !new_path.contains('?')
        {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

/// `HTTPDirectResponse`.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - match: [{uri: {prefix: /maintenance}}]
///     directResponse: {status: 503, body: {string: "down for maintenance"}}
/// "#).unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/maintenance", &h));
/// let RouteOutcome::DirectResponse(r) = d.outcome else { panic!() };
/// assert_eq!(r.status, 503);
/// assert_eq!(r.body.as_deref(), Some(&b"down for maintenance"[..]));
/// assert_eq!(d.status(), Some(503));
/// assert!(d.destinations().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// Status.
    pub status: u16,
    /// Body, if any.
    pub body: Option<Arc<[u8]>>,
}

/// `HTTPRewrite`.
///
/// # Examples
///
/// ```
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - match: [{uri: {prefix: /api/v1}}]
///     rewrite: {uri: /v2, authority: api.internal}
///     route: [{destination: {host: httpbin}}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/api/v1/users", &h));
/// let rw = d.action().unwrap().rewrite.as_deref().unwrap();
/// assert_eq!(rw.authority.as_deref(), Some("api.internal"));
/// assert_eq!(rw.path("/api/v1/users", d.prefix_len).as_deref(), Some("/v2/users"));
/// ```
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// Replacement for the matched prefix (whole path for exact/regex matches).
    pub uri: Option<Box<str>>,
    /// New authority.
    pub authority: Option<Box<str>>,
    /// Regex rewrite: pattern and substitution (`\1` converted to `${1}`).
    pub uri_regex: Option<(Regex, Box<str>)>,
}

impl Rewrite {
    /// The rewritten path (without query), or `None` when the path is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: httpbin}
    /// spec:
    ///   hosts: [httpbin]
    ///   http:
    ///   - match: [{uri: {regex: "/service/[^/]+/.*"}}]
    ///     rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: '\2/instance/\1'}}
    ///     route: [{destination: {host: httpbin}}]
    ///   - match: [{headers: {x-host-only: {exact: "1"}}}]
    ///     rewrite: {authority: httpbin.internal}
    ///     route: [{destination: {host: httpbin}}]
    /// "#).unwrap().snapshot();
    /// let path = |p: &str, h: &http::HeaderMap| {
    ///     let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", p, h));
    ///     d.action().unwrap().rewrite.as_deref().unwrap().path(p, d.prefix_len)
    /// };
    /// let none = http::HeaderMap::new();
    /// assert_eq!(path("/service/foo/v1/api", &none).as_deref(), Some("/v1/api/instance/foo"));
    /// let mut only_host = http::HeaderMap::new();
    /// only_host.insert("x-host-only", "1".parse().unwrap());
    /// assert_eq!(path("/status", &only_host), None); // only the authority changes
    /// ```
    pub fn path(&self, path: &str, prefix_len: usize) -> Option<String> {
        if let Some(u) = &self.uri {
            let cut = prefix_len.min(path.len());
            return Some(format!("{u}{}", &path[cut..]));
        }
        if let Some((re, rep)) = &self.uri_regex {
            return Some(re.replace_all(path, &**rep).into_owned());
        }
        None
    }
}

/// A retry policy (Istio's defaults when the route sets none).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - match: [{uri: {prefix: /no-retries}}]
///     retries: {attempts: 0}
///     route: [{destination: {host: ratings}}]
///   - retries: {attempts: 3, perTryTimeout: 2s, retryOn: 'gateway-error,503'}
///     route: [{destination: {host: ratings}}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/ratings/0", &h));
/// let r = d.retries();
/// assert_eq!(r.attempts, 3);
/// assert_eq!(r.per_try_timeout, Some(Duration::from_secs(2)));
/// // status codes in `retryOn` become `retriable-status-codes`
/// assert_eq!(&*r.retry_on, "gateway-error,retriable-status-codes");
/// assert_eq!(&*r.retriable_status_codes, [503]);
/// assert_eq!(r.backoff, Duration::from_millis(25));
///
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/no-retries", &h));
/// assert!(!d.retries().enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables).
    pub attempts: u32,
    /// Timeout per attempt.
    pub per_try_timeout: Option<Duration>,
    /// Envoy retry conditions, comma-separated.
    pub retry_on: Arc<str>,
    /// Status codes retried by `retriable-status-codes`.
    pub retriable_status_codes: Arc<[u16]>,
    /// Retry in other localities.
    pub retry_remote_localities: bool,
    /// `retryIgnorePreviousHosts` as written. Unset (`None`), istiod avoids the hosts
    /// already tried unless the route's only destination hashes consistently
    /// (`retry.ConvertPolicy` with a hash policy); set, it is honoured either way.
    pub ignore_previous_hosts: Option<bool>,
    /// Base back-off interval (default 25 ms).
    pub backoff: Duration,
}

/// Istio's default retry conditions [retry defaultRetryOn].
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HttpRequestAttrs, DEFAULT_RETRY_ON};
///
/// // `retries` without `retryOn` uses Istio's default conditions
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}], retries: {attempts: 5}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
/// assert_eq!(d.retries().attempts, 5);
/// assert_eq!(&*d.retries().retry_on, DEFAULT_RETRY_ON);
/// assert!(DEFAULT_RETRY_ON.contains("connect-failure"));
/// ```
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

static DEFAULT_RETRY: LazyLock<RetryPolicy> = LazyLock::new(|| RetryPolicy {
    attempts: 2,
    per_try_timeout: None,
    retry_on: DEFAULT_RETRY_ON.into(),
    retriable_status_codes: Arc::new([]),
    retry_remote_localities: false,
    ignore_previous_hosts: None,
    backoff: Duration::from_millis(25),
});

impl RetryPolicy {
    /// Istio's implicit policy: 2 retries on connect-failure, refused-stream, unavailable,
    /// cancelled, retriable-status-codes (none listed: a plain 503 is not retried).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HttpRequestAttrs, RetryPolicy, DEFAULT_RETRY_ON};
    ///
    /// let d = RetryPolicy::istio_default();
    /// assert_eq!(d.attempts, 2);
    /// assert_eq!(&*d.retry_on, DEFAULT_RETRY_ON);
    /// assert!(d.retriable_status_codes.is_empty());
    ///
    /// // what a request gets when no VirtualService applies
    /// let snap = mesh_core::mesh::Mesh::new(Default::default()).snapshot();
    /// let h = http::HeaderMap::new();
    /// let decision = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
    /// assert_eq!(decision.retries(), d);
    /// ```
    pub fn istio_default() -> &'static RetryPolicy {
        &DEFAULT_RETRY
    }

    /// No retries: the policy of Istio's passthrough route (`allow_any`), which sets none.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mesh_core::route::RetryPolicy::disabled().enabled());
    /// ```
    pub fn disabled() -> &'static RetryPolicy {
        static DISABLED: LazyLock<RetryPolicy> = LazyLock::new(|| RetryPolicy {
            attempts: 0,
            ..DEFAULT_RETRY.clone()
        });
        &DISABLED
    }

    pub(crate) fn compile(
        r: Option<&model::HttpRetry>,
        cache: &mut super::matcher::RegexCache,
    ) -> RetryPolicy {
        let Some(r) = r else {
            return DEFAULT_RETRY.clone();
        };
        if r.attempts <= 0 {
            return RetryPolicy {
                attempts: 0,
                retry_on: "".into(),
                ..DEFAULT_RETRY.clone()
            };
        }
        let (retry_on, codes) = match r.retry_on.as_deref() {
            None | Some("") => (DEFAULT_RETRY_ON.to_owned(), Vec::new()),
            Some(s) => {
                let mut tokens = Vec::new();
                let mut codes = Vec::new();
                for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    match t.parse::<u16>() {
                        Ok(c) => codes.push(c),
                        Err(_) => tokens.push(t),
                    }
                }
                if !codes.is_empty() && !tokens.contains(&"retriable-status-codes") {
                    tokens.push("retriable-status-codes");
                }
                (tokens.join(","), codes)
            }
        };
        RetryPolicy {
            attempts: r.attempts as u32,
            per_try_timeout: r.per_try_timeout.map(|d| d.as_std()),
            retry_on: if retry_on == DEFAULT_RETRY_ON {
                DEFAULT_RETRY.retry_on.clone()
            } else {
                cache.intern(&retry_on)
            },
            retriable_status_codes: codes.into(),
            retry_remote_localities: r.retry_remote_localities.unwrap_or(false),
            ignore_previous_hosts: r.retry_ignore_previous_hosts,
            backoff: r
                .backoff
                .map(|d| d.as_std())
                .unwrap_or(Duration::from_millis(25)),
        }
    }

    /// True when retries are enabled.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HttpRequestAttrs, RetryPolicy};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}], retries: {attempts: 0}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
    /// assert!(!d.retries().enabled()); // `attempts: 0` turns Istio's default retries off
    /// assert!(RetryPolicy::istio_default().enabled());
    /// ```
    pub fn enabled(&self) -> bool {
        self.attempts > 0
    }
}

/// How an abort answers.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{AbortStatus, HttpRequestAttrs};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - match: [{uri: {prefix: /grpc}}]
///     fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
///     route: [{destination: {host: ratings}}]
///   - fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
///     route: [{destination: {host: ratings}}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let abort = |path| {
///     let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", path, &h));
///     d.action().unwrap().fault.as_ref().unwrap().abort.unwrap().0
/// };
/// assert_eq!(abort("/grpc/Ratings/Get"), AbortStatus::Grpc(14));
/// assert_eq!(abort("/ratings/0"), AbortStatus::Http(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    /// HTTP status (body `fault filter abort`).
    Http(u16),
    /// gRPC status code number (from the name, `UNAVAILABLE` = 14).
    Grpc(u8),
}

/// `HTTPFaultInjection`.
///
/// Delays and aborts fire per request: draw a random number and ask
/// [`PerMillion::fires`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::route::{AbortStatus, HttpRequestAttrs, PerMillion};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - fault:
///       delay: {fixedDelay: 7s, percentage: {value: 10}}
///       abort: {httpStatus: 503, percentage: {value: 0.5}}
///     route: [{destination: {host: ratings}}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
/// let fault = d.action().unwrap().fault.as_deref().unwrap();
/// assert_eq!(fault.delay, Some((Duration::from_secs(7), PerMillion(100_000))));
/// assert_eq!(fault.abort, Some((AbortStatus::Http(503), PerMillion(5_000))));
/// assert_eq!(d.status(), None); // not every request is aborted
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Delay and its share.
    pub delay: Option<(Duration, PerMillion)>,
    /// Abort and its share.
    pub abort: Option<(AbortStatus, PerMillion)>,
}

/// The gRPC status codes' names, by code (`OK` is 0, `UNAUTHENTICATED` 16).
///
/// # Examples
///
/// ```
/// use mesh_core::route::actions::GRPC_CODE_NAMES;
///
/// assert_eq!(GRPC_CODE_NAMES[14], "UNAVAILABLE");
/// ```
pub const GRPC_CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// gRPC status names to codes.
///
/// # Examples
///
/// ```
/// use mesh_core::route::actions::grpc_code;
///
/// assert_eq!(grpc_code("OK"), Some(0));
/// assert_eq!(grpc_code("UNAVAILABLE"), Some(14));
/// assert_eq!(grpc_code("UNAUTHENTICATED"), Some(16));
/// assert_eq!(grpc_code("unavailable"), None); // names are upper case
/// ```
pub fn grpc_code(name: &str) -> Option<u8> {
    GRPC_CODE_NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u8)
}

impl Fault {
    fn compile(f: &model::HttpFaultInjection, errors: &mut Vec<String>) -> Fault {
        let delay = f.delay.as_ref().and_then(|d| {
            let dur = d.fixed_delay?.as_std();
            // no `percentage`: the deprecated integer `percent`, else 0 (never fires)
            let pm = match (&d.percentage, d.percent) {
                (Some(p), _) => PerMillion::from_percent(p.value),
                (None, Some(p)) => PerMillion::from_percent(f64::from(p)),
                (None, None) => PerMillion(0),
            };
            Some((dur, pm))
        });
        let abort = f.abort.as_ref().and_then(|a| {
            let pm = a
                .percentage
                .map(|p| PerMillion::from_percent(p.value))
                .unwrap_or(PerMillion(0));
            let st = if let Some(s) = a.http_status {
                AbortStatus::Http(u16::try_from(s).ok()?)
            } else if let Some(g) = &a.grpc_status {
                match grpc_code(g) {
                    Some(c) => AbortStatus::Grpc(c),
                    None => {
                        errors.push(format!("unknown gRPC status {g:?}"));
                        return None;
                    }
                }
            } else {
                return None;
            };
            Some((st, pm))
        });
        Fault { delay, abort }
    }
}

/// A mirror destination and its share.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HttpRequestAttrs, PerMillion};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: httpbin, namespace: default}
/// spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - route: [{destination: {host: httpbin, subset: v1}}]
///     mirror: {host: httpbin, subset: v2}
///     mirrorPercentage: {value: 25}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: httpbin}
/// spec: {host: httpbin, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin:8000", "/get", &h));
/// let m = &d.action().unwrap().mirrors[0];
/// assert_eq!(m.destination.subset.as_deref(), Some("v2"));
/// assert_eq!(m.share, PerMillion(250_000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// Where copies go.
    pub destination: WeightedDestination,
    /// Share of requests mirrored.
    pub share: PerMillion,
}

/// Header operations for one direction.
///
/// # Examples
///
/// ```
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - route: [{destination: {host: httpbin}}]
///     headers:
///       request:
///         set: {x-api-version: v2}
///         add: {x-via: mesh}
///         remove: [x-debug]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/get", &h));
/// let ops = &d.action().unwrap().headers.request;
/// assert_eq!(ops.set[0].0, "x-api-version");
/// assert_eq!(ops.remove[0], "x-debug");
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-debug", "1".parse().unwrap());
/// headers.insert("x-api-version", "v1".parse().unwrap());
/// headers.insert("x-via", "client".parse().unwrap());
/// ops.apply(&mut headers);
/// assert!(headers.get("x-debug").is_none());
/// assert_eq!(headers["x-api-version"], "v2"); // set overwrites
/// assert_eq!(headers.get_all("x-via").iter().count(), 2); // add appends
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOpList {
    /// Overwrite.
    pub set: Box<[(HeaderName, HeaderValue)]>,
    /// Append.
    pub add: Box<[(HeaderName, HeaderValue)]>,
    /// Remove.
    pub remove: Box<[HeaderName]>,
    /// Values with Envoy command operators (`%DOWNSTREAM_REMOTE_ADDRESS%`, `%REQ(x)%`, …),
    /// expanded per request by [`HeaderOpList::apply_in`]: `(name, value, append)`.
    pub formatted: Box<[(HeaderName, HeaderTemplate, bool)]>,
}

impl HeaderOpList {
    fn compile(o: &model::HeaderOperations, errors: &mut Vec<String>) -> HeaderOpList {
        let mut formatted = Vec::new();
        let mut pair = |k: &str, v: &str, append: bool| {
            let name = if k == ":authority" { "host" } else { k };
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                errors.push(format!("invalid header operation {k:?}: {v:?}"));
                return None;
            };
            // istiod turns `host`/`:authority` in `set` or `add` into the route's host
            // rewrite: one value, never a second Host
            let append = append && name != http::header::HOST;
            // Envoy expands `%COMMAND%` operators and unescapes `%%`
            let literal = if v.contains('%') {
                match HeaderTemplate::parse(v) {
                    Ok(t) => match t.literal() {
                        Some(l) => std::borrow::Cow::Owned(l),
                        None => {
                            formatted.push((name, t, append));
                            return None;
                        }
                    },
                    Err(e) => {
                        errors.push(format!("invalid header value {v:?} of {k:?}: {e}"));
                        return None;
                    }
                }
            } else {
                std::borrow::Cow::Borrowed(v)
            };
            // Envoy's HeaderParser skips an empty value (no `add_if_empty`): the header is
            // neither written nor replaced
            if literal.is_empty() {
                return None;
            }
            match HeaderValue::from_str(&literal) {
                Ok(v) => Some((name, v, append)),
                Err(_) => {
                    errors.push(format!("invalid header operation {k:?}: {v:?}"));
                    None
                }
            }
        };
        let mut set = Vec::new();
        let mut add = Vec::new();
        // istiod's `TranslateHeadersOperations`: with the authority in both `set` and `add`
        // (a non-empty value), `set`'s is the rewrite, whatever the values hold
        let is_authority =
            |k: &str| k.eq_ignore_ascii_case(":authority") || k.eq_ignore_ascii_case("host");
        let set_authority = o.set.iter().any(|(k, v)| is_authority(k) && !v.is_empty());
        let ops = o.set.iter().map(|(k, v)| (k, v, false));
        for (k, v, append) in ops.chain(o.add.iter().map(|(k, v)| (k, v, true))) {
            if append && set_authority && is_authority(k) {
                continue;
            }
            match pair(k, v, append) {
                Some((n, v, true)) => add.push((n, v)),
                Some((n, v, false)) => set.push((n, v)),
                None => {}
            }
        }
        let (set, add) = (set.into_boxed_slice(), add.into_boxed_slice());
        let remove = o
            .remove
            .iter()
            .filter_map(|k| HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok())
            .collect();
        HeaderOpList {
            set,
            add,
            remove,
            formatted: formatted.into(),
        }
    }

    /// True when there is nothing to do.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HeaderOpList, HttpRequestAttrs};
    ///
    /// assert!(HeaderOpList::default().is_empty());
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - route: [{destination: {host: reviews}}]
    ///     headers: {response: {remove: [server]}}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
    /// let headers = &d.action().unwrap().headers;
    /// assert!(headers.request.is_empty());
    /// assert!(!headers.response.is_empty());
    /// ```
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
            && self.add.is_empty()
            && self.remove.is_empty()
            && self.formatted.is_empty()
    }

    /// Applies the operations: remove, then set (overwrite), then add (append).
    ///
    /// # Examples
    ///
    /// ```
    /// use http::header::{HeaderName, HeaderValue};
    /// use mesh_core::route::HeaderOpList;
    ///
    /// let name = HeaderName::from_static("x-version");
    /// let ops = HeaderOpList {
    ///     set: Box::new([]),
    ///     add: Box::new([(name.clone(), HeaderValue::from_static("v2"))]),
    ///     remove: Box::new([name.clone()]),
    ///     formatted: Box::new([]),
    /// };
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(name.clone(), HeaderValue::from_static("v1"));
    /// ops.apply(&mut headers);
    /// // remove runs first, then add: only the new value is left
    /// let values: Vec<_> = headers.get_all(&name).iter().collect();
    /// assert_eq!(values, ["v2"]);
    /// ```
    #[inline]
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        if !self.is_empty() {
            self.apply_in(headers, &HeaderContext::default());
        }
    }

    /// Whether some value has command operators (then [`HeaderOpList::apply_in`] wants a
    /// [`HeaderContext`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: httpbin}
    /// spec:
    ///   hosts: [httpbin]
    ///   http:
    ///   - route: [{destination: {host: httpbin}}]
    ///     headers:
    ///       request: {set: {x-client-ip: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'}}
    ///       response: {set: {x-served-by: mesh}}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/", &h));
    /// let headers = &d.action().unwrap().headers;
    /// assert!(headers.request.has_formatted());
    /// assert!(!headers.response.has_formatted()); // a plain value: apply() is enough
    /// ```
    pub fn has_formatted(&self) -> bool {
        !self.formatted.is_empty()
    }

    /// [`HeaderOpList::apply`], with command operators expanded from `cx` (`%REQ()%` and
    /// `%RESP()%` read the map as it was before these operations when `cx` names none).
    /// A value that expands to nothing is not written, as in Envoy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HeaderContext, HttpRequestAttrs};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: httpbin}
    /// spec:
    ///   hosts: [httpbin]
    ///   http:
    ///   - route: [{destination: {host: httpbin}}]
    ///     headers:
    ///       request:
    ///         set:
    ///           x-client-ip: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%'
    ///           x-user-copy: '%REQ(x-user)%'
    ///           x-discount: '10%%'
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/", &h));
    /// let ops = &d.action().unwrap().headers.request;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("x-user", "jason".parse().unwrap());
    /// let cx = HeaderContext { downstream_remote: Some("10.0.0.9:4000".parse().unwrap()), ..Default::default() };
    /// ops.apply_in(&mut headers, &cx);
    /// assert_eq!(headers["x-client-ip"], "10.0.0.9");
    /// assert_eq!(headers["x-user-copy"], "jason");
    /// assert_eq!(headers["x-discount"], "10%");
    /// ```
    pub fn apply_in(&self, headers: &mut http::HeaderMap, cx: &HeaderContext<'_>) {
        self.apply_parts(headers, cx, Phases::ALL);
    }

    /// [`HeaderOpList::apply_in`], only the phases asked for (Envoy's header parser removes,
    /// then overwrites, then appends).
    fn apply_parts(&self, headers: &mut http::HeaderMap, cx: &HeaderContext<'_>, phases: Phases) {
        // values are computed from the headers as they came (Envoy evaluates the request's
        // headers before its own additions)
        let expanded: Vec<(&HeaderName, Option<HeaderValue>, bool)> =
            if self.formatted.is_empty() || !(phases.set || phases.add) {
                Vec::new()
            } else {
                let mut cx = *cx;
                let snapshot;
                if cx.request_headers.is_none() && cx.response_headers.is_none() {
                    snapshot = headers.clone();
                    cx.request_headers = Some(&snapshot);
                    cx.response_headers = Some(&snapshot);
                    self.expand(&cx)
                } else {
                    self.expand(&cx)
                }
            };
        if phases.remove {
            for n in self.remove.iter() {
                headers.remove(n);
            }
        }
        if phases.set {
            for (n, v) in self.set.iter() {
                headers.insert(n.clone(), v.clone());
            }
            for (n, v, append) in expanded.iter().filter(|e| !e.2) {
                set_expanded(headers, n, v, *append);
            }
        }
        if phases.add {
            for (n, v) in self.add.iter() {
                add_value(headers, n, v);
            }
            for (n, v, append) in expanded.iter().filter(|e| e.2) {
                set_expanded(headers, n, v, *append);
            }
        }
    }

    fn expand(&self, cx: &HeaderContext<'_>) -> Vec<(&HeaderName, Option<HeaderValue>, bool)> {
        self.formatted
            .iter()
            .map(|(n, t, append)| {
                let v = t.render(cx);
                let v = (!v.is_empty())
                    .then(|| HeaderValue::from_str(&v).ok())
                    .flatten();
                (n, v, *append)
            })
            .collect()
    }
}

/// Which steps of a header operation list to apply.
#[derive(Clone, Copy)]
struct Phases {
    remove: bool,
    set: bool,
    add: bool,
}

impl Phases {
    const ALL: Phases = Phases {
        remove: true,
        set: true,
        add: true,
    };
    const REMOVE: Phases = Phases {
        remove: true,
        set: false,
        add: false,
    };
    const SET: Phases = Phases {
        remove: false,
        set: true,
        add: false,
    };
    const ADD: Phases = Phases {
        remove: false,
        set: false,
        add: true,
    };
}

/// A route's and its destination's header operations (`headers.request` or
/// `headers.response` of each) in the order Envoy applies them as istiod builds them:
/// - one destination (`processDestination`): the destination's operations are appended to
///   the route's lists, and Envoy's header parser (`evaluateHeaders`) does every removal,
///   then every overwrite (`set`), then every append (`add`): a destination's `set` wins
///   over the route's, its `remove` does not undo the route's `set`, and the route's `add`
///   is appended after it; but a `host` (the authority) of the destination is taken only
///   when the route sets none;
/// - several (`processWeightedDestination`): each is the weighted cluster's own, which
///   Envoy evaluates before the route's (`WeightedClusterEntry::finalizeRequestHeaders`):
///   the route's `set` wins.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{apply_route_and_destination, HeaderContext, HttpRequestAttrs};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - headers: {request: {set: {x-a: route}}}
///     route:
///     - destination: {host: httpbin}
///       headers: {request: {set: {x-a: dest}, remove: [x-a]}}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/", &h));
/// let route = &d.action().unwrap().headers.request;
/// let dest = d.destinations()[0].headers.as_deref().map(|o| &o.request);
/// let mut headers = http::HeaderMap::new();
/// apply_route_and_destination(Some(route), dest, false, &mut headers, &HeaderContext::default());
/// assert_eq!(headers["x-a"], "dest"); // removals first, then the sets in order
/// ```
pub fn apply_route_and_destination(
    route: Option<&HeaderOpList>,
    dest: Option<&HeaderOpList>,
    weighted: bool,
    headers: &mut http::HeaderMap,
    cx: &HeaderContext<'_>,
) {
    let route = route.filter(|o| !o.is_empty());
    let dest = dest.filter(|o| !o.is_empty());
    match (route, dest) {
        (Some(r), Some(d)) if weighted => {
            d.apply_in(headers, cx);
            r.apply_in(headers, cx);
        }
        (Some(r), Some(d)) => {
            for phase in [Phases::REMOVE, Phases::SET, Phases::ADD] {
                r.apply_parts(headers, cx, phase);
                d.apply_parts(headers, cx, phase);
            }
            // a destination's `host` is the route's host rewrite only when the route has
            // none (processDestination: "we only override if the top level rewrite is not
            // set")
            let host = |o: &HeaderOpList| {
                o.set
                    .iter()
                    .chain(o.add.iter())
                    .find(|(n, _)| n == http::header::HOST)
                    .map(|(_, v)| v.clone())
            };
            if let (Some(route_host), Some(_)) = (host(r), host(d)) {
                headers.insert(http::header::HOST, route_host);
            }
        }
        (r, d) => {
            for o in [r, d].into_iter().flatten() {
                o.apply_in(headers, cx);
            }
        }
    }
}

fn set_expanded(
    headers: &mut http::HeaderMap,
    name: &HeaderName,
    value: &Option<HeaderValue>,
    append: bool,
) {
    match (value, append) {
        (Some(v), true) => add_value(headers, name, v),
        (Some(v), false) => {
            headers.insert(name.clone(), v.clone());
        }
        // an empty value is not written, nor does it replace what was there (Envoy's
        // HeaderParser skips it)
        (None, _) => {}
    }
}

/// The headers Envoy keeps inline in its header maps (`INLINE_REQ_HEADERS`,
/// `INLINE_REQ_RESP_HEADERS`, `INLINE_RESP_HEADERS` and the response trailers' of
/// `header_map.h`; the pseudo-headers aside): one entry each, so an added value joins it.
const ENVOY_INLINE_HEADERS: [&str; 53] = [
    // request
    "x-client-trace-id",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-external-address",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-original-path",
    "x-envoy-original-url",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-alt-response",
    "expect",
    "x-forwarded-client-cert",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "grpc-timeout",
    "host",
    "te",
    "user-agent",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-max-retries",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-stream-duration-ms",
    // request and response
    "connection",
    "content-type",
    "x-envoy-decorator-operation",
    "keep-alive",
    "proxy-connection",
    "proxy-status",
    "x-request-id",
    "transfer-encoding",
    "upgrade",
    "via",
    "content-length",
    "x-envoy-attempt-count",
    // response
    "date",
    "x-envoy-degraded",
    "x-envoy-immediate-health-check-fail",
    "x-envoy-ratelimited",
    "x-envoy-upstream-canary",
    "x-envoy-upstream-healthchecked-cluster",
    "location",
    "server",
    "x-envoy-upstream-service-time",
    "grpc-status",
    "grpc-message",
];

/// Envoy's `addReferenceKey` (istiod's `APPEND_IF_EXISTS_OR_ADD`): a header Envoy keeps
/// inline ([`ENVOY_INLINE_HEADERS`]: `user-agent`, `x-forwarded-for`, `content-type`,
/// `location`, ...) that is there gets the value joined to it with `,`, in one line; any
/// other header gets a line of its own.
fn add_value(headers: &mut http::HeaderMap, name: &HeaderName, value: &HeaderValue) {
    if !ENVOY_INLINE_HEADERS.contains(&name.as_str()) || !headers.contains_key(name) {
        headers.append(name.clone(), value.clone());
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(name).iter().chain(std::iter::once(value)) {
        if !joined.is_empty() {
            joined.push(b',');
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // (joined valid values with `,` make a valid value)
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(name.clone(), v);
    }
}

/// Request and response header operations.
///
/// Found on a route ([`HttpAction::headers`]) and on each destination
/// ([`WeightedDestination::headers`]).
///
/// # Examples
///
/// ```
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route: [{destination: {host: reviews}}]
///     headers:
///       response: {set: {cache-control: no-store}}
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
/// let ops = &d.action().unwrap().headers;
/// assert!(ops.request.is_empty());
/// let mut response = http::HeaderMap::new();
/// ops.response.apply(&mut response);
/// assert_eq!(response["cache-control"], "no-store");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// On the request.
    pub request: HeaderOpList,
    /// On the response.
    pub response: HeaderOpList,
}

impl HeaderOps {
    pub(crate) fn compile(h: &model::Headers, errors: &mut Vec<String>) -> HeaderOps {
        HeaderOps {
            request: h
                .request
                .as_ref()
                .map(|o| HeaderOpList::compile(o, errors))
                .unwrap_or_default(),
            response: h
                .response
                .as_ref()
                .map(|o| HeaderOpList::compile(o, errors))
                .unwrap_or_default(),
        }
    }
}

/// Everything a matched HTTP route does.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: httpbin}
/// spec:
///   hosts: [httpbin]
///   http:
///   - match: [{uri: {prefix: /api/}}]
///     rewrite: {uri: /}
///     timeout: 2s
///     corsPolicy: {allowOrigins: [{exact: 'https://example.com'}], allowMethods: [GET]}
///     route: [{destination: {host: httpbin}}]
/// ").unwrap().snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin", "/api/get", &h));
/// let a = d.action().unwrap();
/// assert_eq!(a.destinations.len(), 1);
/// assert!(a.redirect.is_none() && a.direct_response.is_none());
/// assert_eq!(a.timeout, Some(Duration::from_secs(2)));
/// assert_eq!(a.rewrite.as_deref().unwrap().path("/api/get", d.prefix_len).as_deref(), Some("/get"));
/// assert_eq!(a.retries.attempts, 2); // Istio's default
/// assert!(a.fault.is_none() && a.mirrors.is_empty());
/// assert_eq!(a.cors.as_ref().unwrap().policy().allow_methods, ["GET"]);
/// ```
#[derive(Debug, Clone)]
pub struct HttpAction {
    /// Weighted destinations (empty for redirect / direct response).
    pub destinations: Box<[WeightedDestination]>,
    /// The route names several destinations (some may be dropped for a zero weight):
    /// istiod makes them Envoy's weighted clusters, whose header operations come before
    /// the route's ([`apply_route_and_destination`]).
    pub weighted: bool,
    /// Redirect instead of forwarding.
    pub redirect: Option<Box<Redirect>>,
    /// Fixed reply instead of forwarding.
    pub direct_response: Option<Box<DirectResponse>>,
    /// Rewrite before forwarding.
    pub rewrite: Option<Box<Rewrite>>,
    /// Route timeout (`None`: disabled, Istio's default).
    pub timeout: Option<Duration>,
    /// Retry policy (Istio's default when unset).
    pub retries: RetryPolicy,
    /// Fault injection.
    pub fault: Option<Box<Fault>>,
    /// Mirrors.
    pub mirrors: Box<[Mirror]>,
    /// Route-level header operations.
    pub headers: HeaderOps,
    /// CORS policy, compiled ([`crate::cors`]): enforced where the route is evaluated.
    pub cors: Option<Arc<crate::cors::Cors>>,
}

impl HttpAction {
    /// Compiles a route; `default_retries` is the policy of a route without `retries` (the
    /// mesh's `defaultHttpRetryPolicy`, else Istio's default).
    pub(crate) fn compile(
        r: &model::HttpRoute,
        resolve: &dyn Fn(&str) -> String,
        default_retries: &RetryPolicy,
        cache: &mut super::matcher::RegexCache,
        errors: &mut Vec<String>,
    ) -> HttpAction {
        let destinations = compile_destinations(
            r.route
                .iter()
                .map(|d| (&d.destination, d.weight, d.headers.as_ref())),
            resolve,
            cache,
            errors,
        );
        let rewrite = r.rewrite.as_ref().map(|rw| {
            Box::new(Rewrite {
                // (empty is unset: istiod writes a prefix or host rewrite only for a
                // non-empty value)
                uri: rw.uri.as_deref().filter(|u| !u.is_empty()).map(Into::into),
                authority: rw
                    .authority
                    .as_deref()
                    .filter(|a| !a.is_empty())
                    .map(Into::into),
                uri_regex: rw.uri_regex_rewrite.as_ref().and_then(|rr| {
                    match cache.raw(&rr.matcher) {
                        Ok(re) => Some((re, convert_substitution(&rr.rewrite).into())),
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    }
                }),
            })
        });
        let mut mirrors: Vec<Mirror> = Vec::new();
        let one = |d: &model::Destination,
                   cache: &mut super::matcher::RegexCache,
                   errors: &mut Vec<String>| {
            compile_destinations(std::iter::once((d, None, None)), resolve, cache, errors)
                .into_vec()
                .remove(0)
        };
        if let Some(m) = &r.mirror {
            let pct = r
                .mirror_percentage
                .map(|p| p.value)
                .or(r.mirror_percent.map(f64::from))
                .unwrap_or(100.0);
            mirrors.push(Mirror {
                destination: one(m, cache, errors),
                share: PerMillion::from_percent(pct),
            });
        }
        for m in &r.mirrors {
            mirrors.push(Mirror {
                destination: one(&m.destination, cache, errors),
                share: PerMillion::from_percent(m.percentage.map(|p| p.value).unwrap_or(100.0)),
            });
        }
        mirrors.retain(|m| m.share.0 > 0);
        HttpAction {
            destinations,
            weighted: r.route.len() > 1,
            redirect: r.redirect.as_ref().map(|r| Box::new(Redirect::compile(r))),
            direct_response: r.direct_response.as_ref().map(|d| {
                Box::new(DirectResponse {
                    status: u16::try_from(d.status).unwrap_or(500),
                    body: d.body.as_ref().and_then(|b| {
                        if let Some(s) = &b.string {
                            Some(Arc::from(s.as_bytes()))
                        } else {
                            b.bytes.as_deref().and_then(|s| {
                                match crate::names::base64_decode(s, false) {
                                    Some(v) => Some(Arc::from(v)),
                                    None => {
                                        errors.push(
                                            "directResponse body bytes are not base64".into(),
                                        );
                                        None
                                    }
                                }
                            })
                        }
                    }),
                })
            }),
            rewrite,
            timeout: r.timeout.map(|d| d.as_std()).filter(|d| !d.is_zero()),
            // istiod applyHTTPRouteDestination: no `retries` takes
            // mesh.GetDefaultHttpRetryPolicy() (nil: Istio's default)
            retries: match &r.retries {
                Some(rr) => RetryPolicy::compile(Some(rr), cache),
                None => default_retries.clone(),
            },
            fault: r
                .fault
                .as_ref()
                .map(|f| Box::new(Fault::compile(f, errors))),
            mirrors: mirrors.into(),
            headers: r
                .headers
                .as_ref()
                .map(|h| HeaderOps::compile(h, errors))
                .unwrap_or_default(),
            cors: r
                .cors_policy
                .as_ref()
                .map(|c| Arc::new(crate::cors::Cors::compile(c))),
        }
    }
}

/// `\1` → `${1}` (RE2/Envoy substitution to the regex crate's syntax); `$` escaped.
fn convert_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str("${");
                    out.push(*d);
                    out.push('}');
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_header_values_are_skipped_and_host_is_one_value() {
        let ops = |set: &[(&str, &str)], add: &[(&str, &str)]| {
            let o = model::HeaderOperations {
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                add: add
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                remove: Vec::new(),
            };
            let mut errors = Vec::new();
            let l = HeaderOpList::compile(&o, &mut errors);
            assert!(errors.is_empty(), "{errors:?}");
            l
        };
        let mut h = http::HeaderMap::new();
        h.insert("x-user", "a".parse().unwrap());
        h.insert("host", "svc:8080".parse().unwrap());
        // Envoy's HeaderParser: an empty value (literal or expanded) is neither written
        // nor does it replace the header
        let l = ops(
            &[
                ("x-user", ""),
                ("x-empty", ""),
                ("x-copy", "%REQ(x-missing)%"),
            ],
            &[("x-added", "")],
        );
        l.apply_in(&mut h, &HeaderContext::default());
        assert_eq!(h["x-user"], "a");
        for absent in ["x-empty", "x-copy", "x-added"] {
            assert!(!h.contains_key(absent), "{absent}");
        }
        // `add: {host: b}` is a host rewrite in istiod: one Host, the new one
        let l = ops(&[], &[("host", "b"), ("x-multi", "2")]);
        h.insert("x-multi", "1".parse().unwrap());
        l.apply(&mut h);
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(h.get_all("x-multi").iter().count(), 2);
        let l = ops(&[], &[(":authority", "%REQ(x-user)%")]);
        l.apply_in(&mut h, &HeaderContext::default());
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["a"]);
        // in both `set` and `add`, `set`'s value is the rewrite (an empty one is none)
        let l = ops(&[("host", "from-set")], &[(":authority", "from-add")]);
        l.apply(&mut h);
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["from-set"]);
        let l = ops(&[("host", "")], &[("host", "from-add")]);
        l.apply(&mut h);
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["from-add"]);
        let l = ops(&[("host", "from-set")], &[("host", "%REQ(x-user)%")]);
        l.apply_in(&mut h, &HeaderContext::default());
        assert_eq!(h.get_all("host").iter().collect::<Vec<_>>(), ["from-set"]);
    }

    /// `add` as Envoy's header map does it: a header Envoy keeps inline (`user-agent`,
    /// `x-forwarded-for`, `content-type`, ...) is one line with the values joined by `,`;
    /// any other gets a line per value.
    #[test]
    fn add_joins_the_headers_envoy_keeps_inline() {
        let o = model::HeaderOperations {
            set: Default::default(),
            add: [
                ("user-agent", "mesh"),
                ("x-forwarded-for", "10.0.0.9"),
                ("content-type", "%REQ(x-ct)%"),
                ("x-custom", "2"),
                ("via", "proxy"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            remove: Vec::new(),
        };
        let mut errors = Vec::new();
        let l = HeaderOpList::compile(&o, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let mut h = http::HeaderMap::new();
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("x-ct", "application/json".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        l.apply_in(&mut h, &HeaderContext::default());
        let all = |n: &str| h.get_all(n).iter().cloned().collect::<Vec<_>>();
        assert_eq!(all("user-agent"), ["curl/8,mesh"]);
        assert_eq!(all("x-forwarded-for"), ["1.1.1.1,2.2.2.2,10.0.0.9"]);
        assert_eq!(all("content-type"), ["text/plain,application/json"]);
        assert_eq!(all("x-custom"), ["1", "2"]);
        // absent: added as it is
        assert_eq!(all("via"), ["proxy"]);
    }

    #[test]
    fn retry_policies() {
        let r = |attempts, on: Option<&str>| model::HttpRetry {
            attempts,
            retry_on: on.map(Into::into),
            ..Default::default()
        };
        let d = RetryPolicy::compile(None, &mut Default::default());
        assert_eq!(d.attempts, 2);
        assert_eq!(&*d.retry_on, DEFAULT_RETRY_ON);
        assert!(d.retriable_status_codes.is_empty());
        assert!(!RetryPolicy::compile(Some(&r(0, None)), &mut Default::default()).enabled());
        let p = RetryPolicy::compile(Some(&r(3, None)), &mut Default::default());
        assert_eq!((p.attempts, &*p.retry_on), (3, DEFAULT_RETRY_ON));
        let p = RetryPolicy::compile(Some(&r(3, Some("503,reset"))), &mut Default::default());
        assert_eq!(&*p.retry_on, "reset,retriable-status-codes");
        assert_eq!(&*p.retriable_status_codes, &[503]);
        let p = RetryPolicy::compile(Some(&r(1, Some("5xx"))), &mut Default::default());
        assert_eq!(&*p.retry_on, "5xx");
    }

    #[test]
    fn faults_without_percentage_never_fire() {
        let f: model::HttpFaultInjection = serde_json::from_value(serde_json::json!({
            "abort": {"httpStatus": 500},
            "delay": {"fixedDelay": "7s"}
        }))
        .unwrap();
        let c = Fault::compile(&f, &mut vec![]);
        assert_eq!(c.abort, Some((AbortStatus::Http(500), PerMillion(0))));
        assert_eq!(c.delay, Some((Duration::from_secs(7), PerMillion(0))));
        assert!(!c.abort.unwrap().1.fires(0));
        let f: model::HttpFaultInjection = serde_json::from_value(serde_json::json!({
            "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 0.1}},
            "delay": {"fixedDelay": "1s", "percent": 50}
        }))
        .unwrap();
        let c = Fault::compile(&f, &mut vec![]);
        assert_eq!(c.abort, Some((AbortStatus::Grpc(14), PerMillion(1000))));
        assert_eq!(c.delay.unwrap().1, PerMillion(500_000));
        assert!(PerMillion(1000).fires(999));
        assert!(!PerMillion(1000).fires(1000));
        assert!(PerMillion::from_percent(100.0).fires(u64::MAX));
    }

    #[test]
    fn redirect_locations() {
        let base = Redirect {
            uri: None,
            authority: None,
            port: None,
            port_from_request: false,
            scheme: None,
            code: 301,
            prefix_rewrite: None,
        };
        let table = [
            (
                Redirect {
                    uri: Some("/v1/bookRatings".into()),
                    authority: Some("newratings.default.svc.cluster.local".into()),
                    ..base.clone()
                },
                "http://newratings.default.svc.cluster.local/v1/bookRatings?x=1",
            ),
            (
                Redirect {
                    scheme: Some("https".into()),
                    ..base.clone()
                },
                "https://reviews:9080/a/b?x=1",
            ),
            (
                Redirect {
                    prefix_rewrite: Some("/new".into()),
                    port_from_request: true,
                    ..base.clone()
                },
                "http://reviews:9080/new/b?x=1",
            ),
            (
                Redirect {
                    port: Some(8443),
                    scheme: Some("https".into()),
                    ..base.clone()
                },
                "https://reviews:8443/a/b?x=1",
            ),
            // istiod leaves out a redirect port that is the scheme's default: Envoy then
            // keeps the request's Host as sent
            (
                Redirect {
                    port: Some(80),
                    ..base.clone()
                },
                "http://reviews:9080/a/b?x=1",
            ),
            (
                Redirect {
                    port: Some(443),
                    scheme: Some("https".into()),
                    ..base.clone()
                },
                "https://reviews:9080/a/b?x=1",
            ),
            (
                Redirect {
                    port: Some(8080),
                    authority: Some("other".into()),
                    ..base.clone()
                },
                "http://other:8080/a/b?x=1",
            ),
        ];
        for (r, want) in table {
            assert_eq!(
                r.location("http", "reviews:9080", 9080, "/a/b", Some("x=1"), 2),
                want,
                "{r:?}"
            );
        }
    }

    #[test]
    fn scheme_redirect_keeps_a_port_that_is_not_the_old_schemes_default() {
        let to = |scheme: &str| Redirect {
            uri: None,
            authority: None,
            port: None,
            port_from_request: false,
            scheme: Some(scheme.into()),
            code: 301,
            prefix_rewrite: None,
        };
        // (redirect scheme, request scheme, request authority, Location)
        let table = [
            ("https", "http", "web:8080", "https://web:8080/r"),
            ("https", "http", "web:80", "https://web/r"),
            ("https", "http", "web", "https://web/r"),
            ("http", "https", "web:443", "http://web/r"),
            ("http", "https", "web:8443", "http://web:8443/r"),
            // the same scheme: the Host as sent (Envoy's processRequestHost)
            ("http", "http", "web:8080", "http://web:8080/r"),
            ("http", "http", "web:80", "http://web:80/r"),
        ];
        for (new, old, authority, want) in table {
            let port = crate::names::split_authority(authority).1.unwrap_or(80);
            assert_eq!(
                to(new).location(old, authority, port, "/r", None, 0),
                want,
                "{old}://{authority} -> {new}"
            );
        }
    }

    #[test]
    fn rewrites() {
        let rw = Rewrite {
            uri: Some("/v2".into()),
            authority: None,
            uri_regex: None,
        };
        assert_eq!(rw.path("/v1/items", 3).as_deref(), Some("/v2/items"));
        let rw = Rewrite {
            uri: None,
            authority: None,
            uri_regex: Some((
                Regex::new("^/service/([^/]+)(/.*)$").unwrap(),
                convert_substitution("\\2/instance/\\1").into(),
            )),
        };
        assert_eq!(
            rw.path("/service/foo/v1/api", 0).as_deref(),
            Some("/v1/api/instance/foo")
        );
    }

    #[test]
    fn weights_and_pick() {
        let d = |w: u32| WeightedDestination {
            host: "h".into(),
            subset: Some(w.to_string().into()),
            port: None,
            weight: w,
            headers: None,
        };
        let dests = [d(80), d(20)];
        assert_eq!(pick(&dests, 0).unwrap().weight, 80);
        assert_eq!(pick(&dests, 79).unwrap().weight, 80);
        assert_eq!(pick(&dests, 80).unwrap().weight, 20);
        assert_eq!(pick(&dests, 199).unwrap().weight, 20);
        assert!(pick(&[], 1).is_none());
    }

    #[test]
    fn base64_and_substitution() {
        assert_eq!(
            crate::names::base64_decode("aGVsbG8=", false).unwrap(),
            b"hello"
        );
        assert_eq!(crate::names::base64_decode("aGk", false).unwrap(), b"hi");
        assert!(crate::names::base64_decode("a*b", false).is_none());
        assert!(crate::names::base64_decode("aGk=x", false).is_none());
        assert!(crate::names::base64_decode("a", false).is_none());
        assert!(crate::names::base64_decode("a+/b", true).is_none());
        assert_eq!(convert_substitution("\\1-$x"), "${1}-$$x");
    }
}
