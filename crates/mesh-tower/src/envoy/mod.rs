//! Envoy's local replies and response flags: the one place that turns a mesh failure into
//! the exact response an Istio sidecar would send.
//!
//! | failure | status | body | flag |
//! | --- | --- | --- | --- |
//! | no route matched | 404 | empty | NR |
//! | route to an unknown cluster (undefined subset) | 503 | empty | NC |
//! | no endpoint available | 503 | `no healthy upstream` | UH |
//! | route or per-try timeout | 504 | `upstream request timeout` | UT |
//! | connect failure / reset before headers | 503 | `upstream connect error or disconnect/reset before headers. reset reason: ...` | UF, UC, UR, LR |
//! | circuit breaker overflow | 503 | same, reset reason `overflow`, header `x-envoy-overloaded: true` | UO |
//! | fault abort | configured | `fault filter abort` | FI |
//! | AuthorizationPolicy deny | 403 | `RBAC: access denied` | none |
//! | JWT rejected | 401 | the verifier's message | none |
//!
//! gRPC requests (`content-type: application/grpc...`) get what Envoy sends them: HTTP 200,
//! `content-type: application/grpc`, `grpc-status` mapped from the HTTP status (403 ⇒ 7
//! PERMISSION_DENIED, 503/502/504/429 ⇒ 14 UNAVAILABLE, 404 ⇒ 12 UNIMPLEMENTED, 401 ⇒ 16
//! UNAUTHENTICATED, 400 ⇒ 13 INTERNAL, else 2 UNKNOWN) or the configured fault `grpcStatus`,
//! and `grpc-message` carrying the body text, percent-encoded (trailers-only response).
//!
//! The reply carries its [`ResponseFlags`] in the response extensions, so the metrics and
//! access-log layers report them.
//!
//! # Examples
//!
//! An AuthorizationPolicy deny, as a sidecar answers an HTTP client and a gRPC client:
//!
//! ```
//! use bytes::Bytes;
//! use http::HeaderMap;
//! use mesh_tower::envoy::{is_grpc, LocalReply, ResponseFlags};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("content-type", "application/grpc".parse().unwrap());
//! assert!(is_grpc(&headers));
//!
//! let http = LocalReply::RbacDenied.to_response::<Bytes>(false);
//! assert_eq!(http.status(), 403);
//! assert_eq!(http.body(), "RBAC: access denied");
//!
//! let grpc = LocalReply::RbacDenied.to_response::<Bytes>(is_grpc(&headers));
//! assert_eq!(grpc.status(), 200);
//! assert_eq!(grpc.headers()["grpc-status"], "7"); // PERMISSION_DENIED
//! assert_eq!(grpc.headers()["grpc-message"], "RBAC: access denied");
//! assert_eq!(grpc.extensions().get::<ResponseFlags>(), Some(&ResponseFlags::NONE));
//! ```

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use mesh_core::authz::PathNormalization;

/// gRPC requests and deadlines as Envoy's router reads them (pure logic, in mesh-core so
/// `meshctl route` explains the same timeouts).
pub use mesh_core::route::{grpc_timeout, grpc_timeout_value, is_grpc, Timeouts};

/// The request headers through which an internal client steers Envoy (retries, timeouts,
/// tracing, stats), which its connection manager removes from every request it does not
/// take for internal (`ConnectionManagerUtility::cleanInternalHeaders`; `x-envoy-internal`
/// from every request). As Istio configures them, that is every request: a sidecar's
/// outbound listener has no `use_remote_address`, and without an `X-Forwarded-For` a
/// request "will be assumed to be external"; gateways trust no internal addresses.
pub(crate) const CONTROL_HEADERS: [&str; 15] = [
    "x-envoy-internal",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-ip-tags",
    "x-envoy-original-url",
    "x-envoy-hedge-on-per-try-timeout",
];

/// Envoy's default `max_concurrent_streams` for a connection manager's downstream HTTP/2
/// connections (`Http2ProtocolOptions`, which istiod leaves unset on sidecars' and
/// gateways' listeners): 2^31 - 1, where hyper's server would advertise 200 and leave the
/// client's 201st stream waiting (a gRPC client's long-lived streams past it would never
/// start).
pub(crate) const DOWNSTREAM_MAX_CONCURRENT_STREAMS: u32 = (1 << 31) - 1;

/// Envoy's default `max_request_headers_kb` (and `max_response_headers_kb`), 60 KiB, as the
/// HTTP/2 header list size mesh servers, gateways and mesh clients accept, where hyper's
/// HTTP/2 would refuse more than 16 KiB (a large cookie or token).
pub(crate) const MAX_HEADER_LIST_SIZE: u32 = 60 * 1024;

/// The most an HTTP/1.1 request head (request line and headers, as they came) may take on
/// a mesh server's or gateway's connection before it is answered 431: Envoy's 60 KiB of
/// `max_request_headers_kb` (which counts the names' and values' bytes, the method and the
/// path) plus 1 KiB for the separators it does not count (4 bytes a header, at most 100
/// headers, as `max_headers_count`). hyper's own limit is about 400 KB.
pub(crate) const MAX_HTTP1_HEAD: usize = 61 * 1024;

/// The HTTP/1.1 and HTTP/2 server of a mesh server's or gateway's connections, set up as
/// Envoy's connection manager is (see [`DOWNSTREAM_MAX_CONCURRENT_STREAMS`],
/// [`MAX_HEADER_LIST_SIZE`] and [`MAX_HTTP1_HEAD`]; hyper's limit of 100 HTTP/1.1 headers is
/// Envoy's `max_headers_count` already).
pub(crate) fn downstream_server(
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HTTP1_HEAD);
    builder
        .http2()
        .max_concurrent_streams(DOWNSTREAM_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE);
    builder
}

/// Removes [`CONTROL_HEADERS`] from a request, as a sidecar's listeners do: one pass over
/// the names (a handful) first, since they are almost never there (a mesh request does
/// carry `x-envoy-attempt-count`, which is not one of them) and hashing fifteen long names
/// is not free.
/// Envoy's `:authority` of a request taken off the wire: an absolute-form request line's
/// (or HTTP/2's) authority over a `Host` header that names another (the HTTP/1 codec's
/// `handlePath`), else the `Host` header; `""` with neither.
pub(crate) fn authority<B>(req: &http::Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// Envoy's HTTP/1 codec on an absolute-form request line (`handlePath`, with istiod's
/// `allow_absolute_url`): the URL's authority becomes the `Host`, whatever `Host` the
/// client sent, so the application (and the upstream) see what routing and authorization
/// saw. Over HTTP/2 a `host` header beside `:authority` takes its value too (Envoy's
/// codec discards such a `host`). `origin_form`: an HTTP/1 request line becomes
/// origin-form too, as the next hop receives it (`GET /path`).
pub(crate) fn absolute_form<B>(req: &mut http::Request<B>, origin_form: bool) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    let http1 = req.version() <= http::Version::HTTP_11;
    let host = req.headers().get(http::header::HOST);
    // (HTTP/2 always has an authority in its URI: only a differing `host` is rewritten)
    if (http1 || host.is_some())
        && host.is_none_or(|h| h.as_bytes() != authority.as_str().as_bytes())
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    if http1
        && origin_form
        && let Some(pq) = req.uri().path_and_query().cloned()
    {
        *req.uri_mut() = http::Uri::from(pq);
    }
}

pub(crate) fn clean_control_headers(headers: &mut HeaderMap) {
    remove_envoy_headers(headers, &[&CONTROL_HEADERS]);
}

/// Removes the `x-envoy-*` headers of `lists` that `headers` has, looking them up by name
/// only when one of them is there (one pass over the request's few names).
pub(crate) fn remove_envoy_headers(headers: &mut HeaderMap, lists: &[&[&str]]) {
    let listed = |k: &str| k.starts_with("x-envoy-") && lists.iter().any(|l| l.contains(&k));
    if headers.keys().any(|k| listed(k.as_str())) {
        for h in lists.iter().flat_map(|l| l.iter()) {
            headers.remove(*h);
        }
    }
}

/// Envoy's response flags (`%RESPONSE_FLAGS%`, Istio's `response_flags` label).
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::ResponseFlags;
///
/// let mut flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
/// flags.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
/// assert_eq!(flags.to_string(), "UH,URX");
/// assert!(flags.contains(ResponseFlags::NO_HEALTHY_UPSTREAM));
/// assert_eq!(ResponseFlags::parse("UH,URX"), Some(flags));
///
/// assert_eq!(ResponseFlags::NONE.to_string(), "-");
/// assert_eq!(ResponseFlags::parse("-"), Some(ResponseFlags::NONE));
/// assert_eq!(ResponseFlags::parse("XX"), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $code:literal;)*) => {
        impl ResponseFlags {
            $($(#[$doc])* pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $code)),*];
        }
    };
}

flags! {
    /// LH: failed local health check.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::FAILED_LOCAL_HEALTH_CHECK.to_string(), "LH");
    /// assert_eq!(ResponseFlags::parse("LH"), Some(ResponseFlags::FAILED_LOCAL_HEALTH_CHECK));
    /// ```
    FAILED_LOCAL_HEALTH_CHECK = 0, "LH";
    /// UH: no healthy upstream.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::NO_HEALTHY_UPSTREAM.to_string(), "UH");
    /// assert_eq!(ResponseFlags::parse("UH"), Some(ResponseFlags::NO_HEALTHY_UPSTREAM));
    /// ```
    NO_HEALTHY_UPSTREAM = 1, "UH";
    /// UT: upstream request timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT.to_string(), "UT");
    /// assert_eq!(ResponseFlags::parse("UT"), Some(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT));
    /// ```
    UPSTREAM_REQUEST_TIMEOUT = 2, "UT";
    /// LR: connection local reset.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::LOCAL_RESET.to_string(), "LR");
    /// assert_eq!(ResponseFlags::parse("LR"), Some(ResponseFlags::LOCAL_RESET));
    /// ```
    LOCAL_RESET = 3, "LR";
    /// UR: upstream remote reset.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_REMOTE_RESET.to_string(), "UR");
    /// assert_eq!(ResponseFlags::parse("UR"), Some(ResponseFlags::UPSTREAM_REMOTE_RESET));
    /// ```
    UPSTREAM_REMOTE_RESET = 4, "UR";
    /// UF: upstream connection failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_CONNECTION_FAILURE.to_string(), "UF");
    /// assert_eq!(ResponseFlags::parse("UF"), Some(ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
    /// ```
    UPSTREAM_CONNECTION_FAILURE = 5, "UF";
    /// UC: upstream connection termination.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION.to_string(), "UC");
    /// assert_eq!(ResponseFlags::parse("UC"), Some(ResponseFlags::UPSTREAM_CONNECTION_TERMINATION));
    /// ```
    UPSTREAM_CONNECTION_TERMINATION = 6, "UC";
    /// UO: upstream overflow (circuit breaking).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_OVERFLOW.to_string(), "UO");
    /// assert_eq!(ResponseFlags::parse("UO"), Some(ResponseFlags::UPSTREAM_OVERFLOW));
    /// ```
    UPSTREAM_OVERFLOW = 7, "UO";
    /// NR: no route configured.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::NO_ROUTE_FOUND.to_string(), "NR");
    /// assert_eq!(ResponseFlags::parse("NR"), Some(ResponseFlags::NO_ROUTE_FOUND));
    /// ```
    NO_ROUTE_FOUND = 8, "NR";
    /// DI: the request was delayed by fault injection.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DELAY_INJECTED.to_string(), "DI");
    /// assert_eq!(ResponseFlags::parse("DI"), Some(ResponseFlags::DELAY_INJECTED));
    /// ```
    DELAY_INJECTED = 9, "DI";
    /// FI: the request was aborted by fault injection.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::FAULT_INJECTED.to_string(), "FI");
    /// assert_eq!(ResponseFlags::parse("FI"), Some(ResponseFlags::FAULT_INJECTED));
    /// ```
    FAULT_INJECTED = 10, "FI";
    /// RL: rate limited.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::RATE_LIMITED.to_string(), "RL");
    /// assert_eq!(ResponseFlags::parse("RL"), Some(ResponseFlags::RATE_LIMITED));
    /// ```
    RATE_LIMITED = 11, "RL";
    /// UAEX: denied by an external authorization service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE.to_string(), "UAEX");
    /// assert_eq!(ResponseFlags::parse("UAEX"), Some(ResponseFlags::UNAUTHORIZED_EXTERNAL_SERVICE));
    /// ```
    UNAUTHORIZED_EXTERNAL_SERVICE = 12, "UAEX";
    /// RLSE: rate limit service error.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::RATE_LIMIT_SERVICE_ERROR.to_string(), "RLSE");
    /// assert_eq!(ResponseFlags::parse("RLSE"), Some(ResponseFlags::RATE_LIMIT_SERVICE_ERROR));
    /// ```
    RATE_LIMIT_SERVICE_ERROR = 13, "RLSE";
    /// DC: downstream connection termination.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION.to_string(), "DC");
    /// assert_eq!(ResponseFlags::parse("DC"), Some(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION));
    /// ```
    DOWNSTREAM_CONNECTION_TERMINATION = 14, "DC";
    /// URX: upstream retry limit exceeded.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED.to_string(), "URX");
    /// assert_eq!(ResponseFlags::parse("URX"), Some(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED));
    /// ```
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 15, "URX";
    /// SI: stream idle timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::STREAM_IDLE_TIMEOUT.to_string(), "SI");
    /// assert_eq!(ResponseFlags::parse("SI"), Some(ResponseFlags::STREAM_IDLE_TIMEOUT));
    /// ```
    STREAM_IDLE_TIMEOUT = 16, "SI";
    /// IH: invalid Envoy request headers.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::INVALID_ENVOY_REQUEST_HEADERS.to_string(), "IH");
    /// assert_eq!(ResponseFlags::parse("IH"), Some(ResponseFlags::INVALID_ENVOY_REQUEST_HEADERS));
    /// ```
    INVALID_ENVOY_REQUEST_HEADERS = 17, "IH";
    /// DPE: downstream protocol error.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR.to_string(), "DPE");
    /// assert_eq!(ResponseFlags::parse("DPE"), Some(ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR));
    /// ```
    DOWNSTREAM_PROTOCOL_ERROR = 18, "DPE";
    /// UMSDR: upstream max stream duration reached.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_MAX_STREAM_DURATION_REACHED.to_string(), "UMSDR");
    /// assert_eq!(ResponseFlags::parse("UMSDR"), Some(ResponseFlags::UPSTREAM_MAX_STREAM_DURATION_REACHED));
    /// ```
    UPSTREAM_MAX_STREAM_DURATION_REACHED = 19, "UMSDR";
    /// DT: duration timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DURATION_TIMEOUT.to_string(), "DT");
    /// assert_eq!(ResponseFlags::parse("DT"), Some(ResponseFlags::DURATION_TIMEOUT));
    /// ```
    DURATION_TIMEOUT = 22, "DT";
    /// UPE: upstream protocol error.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::UPSTREAM_PROTOCOL_ERROR.to_string(), "UPE");
    /// assert_eq!(ResponseFlags::parse("UPE"), Some(ResponseFlags::UPSTREAM_PROTOCOL_ERROR));
    /// ```
    UPSTREAM_PROTOCOL_ERROR = 23, "UPE";
    /// NC: no cluster found.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::NO_CLUSTER_FOUND.to_string(), "NC");
    /// assert_eq!(ResponseFlags::parse("NC"), Some(ResponseFlags::NO_CLUSTER_FOUND));
    /// ```
    NO_CLUSTER_FOUND = 24, "NC";
    /// OM: overload manager.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::OVERLOAD_MANAGER.to_string(), "OM");
    /// assert_eq!(ResponseFlags::parse("OM"), Some(ResponseFlags::OVERLOAD_MANAGER));
    /// ```
    OVERLOAD_MANAGER = 25, "OM";
    /// DF: DNS resolution failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DNS_RESOLUTION_FAILED.to_string(), "DF");
    /// assert_eq!(ResponseFlags::parse("DF"), Some(ResponseFlags::DNS_RESOLUTION_FAILED));
    /// ```
    DNS_RESOLUTION_FAILED = 26, "DF";
    /// DR: downstream remote reset.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(ResponseFlags::DOWNSTREAM_REMOTE_RESET.to_string(), "DR");
    /// assert_eq!(ResponseFlags::parse("DR"), Some(ResponseFlags::DOWNSTREAM_REMOTE_RESET));
    /// ```
    DOWNSTREAM_REMOTE_RESET = 28, "DR";
}

impl ResponseFlags {
    /// No flag (`-` in logs and metrics).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::{LocalReply, ResponseFlags};
    ///
    /// assert!(ResponseFlags::NONE.is_empty());
    /// assert_eq!(ResponseFlags::NONE, ResponseFlags::default());
    /// // A deny by AuthorizationPolicy sets no flag.
    /// assert_eq!(LocalReply::RbacDenied.flags(), ResponseFlags::NONE);
    /// ```
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// True when no flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert!(ResponseFlags::NONE.is_empty());
    /// assert!(!ResponseFlags::NO_ROUTE_FOUND.is_empty());
    /// ```
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when `other` names at least one flag and every one of them is set (so
    /// `contains(ResponseFlags::NONE)` is false: no flag is not a flag that was raised).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
    /// assert!(flags.contains(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED));
    /// assert!(flags.contains(flags));
    /// assert!(!flags.contains(ResponseFlags::NONE));
    /// assert!(!flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::NO_HEALTHY_UPSTREAM));
    /// ```
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Sets the flags of `other`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// let mut flags = ResponseFlags::NONE;
    /// flags.insert(ResponseFlags::DELAY_INJECTED);
    /// flags.insert(ResponseFlags::FAULT_INJECTED);
    /// assert_eq!(flags.to_string(), "DI,FI");
    /// ```
    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    /// The flags as Envoy's short codes.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// let flags = ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED | ResponseFlags::UPSTREAM_REMOTE_RESET;
    /// // In Envoy's order, whatever the insertion order.
    /// assert_eq!(flags.codes().collect::<Vec<_>>(), ["UR", "URX"]);
    /// assert_eq!(ResponseFlags::NONE.codes().count(), 0);
    /// ```
    pub fn codes(self) -> impl Iterator<Item = &'static str> {
        ResponseFlags::ALL
            .iter()
            .filter(move |(f, _)| self.0 & f.0 != 0)
            .map(|(_, c)| *c)
    }

    /// Parses `UH,URX` (or `-`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResponseFlags;
    ///
    /// assert_eq!(
    ///     ResponseFlags::parse("UF,URX"),
    ///     Some(ResponseFlags::UPSTREAM_CONNECTION_FAILURE | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED),
    /// );
    /// assert_eq!(ResponseFlags::parse("-"), Some(ResponseFlags::NONE));
    /// assert_eq!(ResponseFlags::parse("UF, URX"), None); // no spaces in Envoy's format
    /// ```
    pub fn parse(s: &str) -> Option<ResponseFlags> {
        if s == "-" || s.is_empty() {
            return Some(ResponseFlags::NONE);
        }
        let mut out = ResponseFlags::NONE;
        for code in s.split(',') {
            let (f, _) = ResponseFlags::ALL.iter().find(|(_, c)| *c == code)?;
            out.insert(*f);
        }
        Some(out)
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for ResponseFlags {
    /// Envoy's format: comma-separated short codes, `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for (i, code) in self.codes().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(code)?;
        }
        Ok(())
    }
}

/// Envoy's response code details of a route's direct response or redirect (its router
/// answers both through `sendLocalReply` with `ResponseCodeDetails::DirectResponse`).
pub const DIRECT_RESPONSE: &str = "direct_response";

/// Envoy's response code details of an upgrade the connection manager does not allow.
pub const UPGRADE_FAILED: &str = "upgrade_failed";

/// Envoy's `%RESPONSE_CODE_DETAILS%` of a response, carried in its extensions (local
/// replies set it; a response from upstream is `via_upstream`).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use mesh_tower::envoy::{LocalReply, ResponseCodeDetails};
///
/// let response = LocalReply::NoHealthyUpstream.to_response::<Bytes>(false);
/// let details = response.extensions().get::<ResponseCodeDetails>().unwrap();
/// assert_eq!(details.0, "no_healthy_upstream");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseCodeDetails(pub String);

/// Why an upstream stream was reset (Envoy's `StreamResetReason`, as its text).
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::{ResetReason, ResponseFlags};
///
/// let reason = ResetReason::RemoteConnectionFailure;
/// assert_eq!(reason.to_string(), "remote connection failure");
/// assert_eq!(reason.flag(), ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
/// assert_eq!(ResetReason::ConnectionTermination.flag().to_string(), "UC");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// `local connection failure`.
    LocalConnectionFailure,
    /// `remote connection failure` (refused, unreachable, TLS handshake failed).
    RemoteConnectionFailure,
    /// `connection timeout`.
    ConnectionTimeout,
    /// `connection termination` (closed before the response headers).
    ConnectionTermination,
    /// `local reset`.
    LocalReset,
    /// `local refused stream reset`.
    LocalRefusedStreamReset,
    /// `overflow` (circuit breaker).
    Overflow,
    /// `remote reset`.
    RemoteReset,
    /// `remote refused stream reset` (HTTP/2 REFUSED_STREAM).
    RemoteRefusedStreamReset,
    /// `protocol error`.
    ProtocolError,
}

impl ResetReason {
    /// Envoy's text for the reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::ResetReason;
    ///
    /// assert_eq!(ResetReason::RemoteRefusedStreamReset.as_str(), "remote refused stream reset");
    /// assert_eq!(ResetReason::Overflow.as_str(), ResetReason::Overflow.to_string());
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::LocalConnectionFailure => "local connection failure",
            ResetReason::RemoteConnectionFailure => "remote connection failure",
            ResetReason::ConnectionTimeout => "connection timeout",
            ResetReason::ConnectionTermination => "connection termination",
            ResetReason::LocalReset => "local reset",
            ResetReason::LocalRefusedStreamReset => "local refused stream reset",
            ResetReason::Overflow => "overflow",
            ResetReason::RemoteReset => "remote reset",
            ResetReason::RemoteRefusedStreamReset => "remote refused stream reset",
            ResetReason::ProtocolError => "protocol error",
        }
    }

    /// The response flag Envoy sets for this reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::{ResetReason, ResponseFlags};
    ///
    /// assert_eq!(ResetReason::ConnectionTimeout.flag(), ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
    /// assert_eq!(ResetReason::Overflow.flag(), ResponseFlags::UPSTREAM_OVERFLOW);
    /// assert_eq!(ResetReason::RemoteReset.flag().to_string(), "UR");
    /// ```
    pub fn flag(self) -> ResponseFlags {
        match self {
            ResetReason::LocalConnectionFailure
            | ResetReason::RemoteConnectionFailure
            | ResetReason::ConnectionTimeout => ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            ResetReason::ConnectionTermination => ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
            ResetReason::LocalReset | ResetReason::LocalRefusedStreamReset => {
                ResponseFlags::LOCAL_RESET
            }
            ResetReason::Overflow => ResponseFlags::UPSTREAM_OVERFLOW,
            ResetReason::RemoteReset | ResetReason::RemoteRefusedStreamReset => {
                ResponseFlags::UPSTREAM_REMOTE_RESET
            }
            ResetReason::ProtocolError => ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
        }
    }

    /// Envoy's snake-case name used in `response_code_details`.
    fn detail(self) -> &'static str {
        match self {
            ResetReason::LocalConnectionFailure => "local_connection_failure",
            ResetReason::RemoteConnectionFailure => "remote_connection_failure",
            ResetReason::ConnectionTimeout => "connection_timeout",
            ResetReason::ConnectionTermination => "connection_termination",
            ResetReason::LocalReset => "local_reset",
            ResetReason::LocalRefusedStreamReset => "local_refused_stream_reset",
            ResetReason::Overflow => "overflow",
            ResetReason::RemoteReset => "remote_reset",
            ResetReason::RemoteRefusedStreamReset => "remote_refused_stream_reset",
            ResetReason::ProtocolError => "protocol_error",
        }
    }
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response the mesh answers itself instead of the upstream, as Envoy would.
///
/// # Examples
///
/// The 503 for an endpoint that refused the connection, to an HTTP client and to a gRPC
/// client:
///
/// ```
/// use bytes::Bytes;
/// use mesh_tower::envoy::{LocalReply, ResetReason, ResponseFlags};
///
/// let reply = LocalReply::UpstreamReset {
///     reason: ResetReason::RemoteConnectionFailure,
///     transport_failure: Some("delayed connect error: Connection refused".into()),
///     retried: false,
/// };
/// assert_eq!(reply.status(), 503);
/// assert_eq!(
///     reply.body(),
///     "upstream connect error or disconnect/reset before headers. reset reason: remote \
///      connection failure, transport failure reason: delayed connect error: Connection refused",
/// );
/// assert_eq!(reply.flags().to_string(), "UF");
/// assert_eq!(
///     reply.details(),
///     "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}",
/// );
///
/// let http = reply.to_response::<Bytes>(false);
/// assert_eq!(http.status(), 503);
/// assert_eq!(http.headers()["content-type"], "text/plain");
/// assert_eq!(http.extensions().get::<ResponseFlags>(), Some(&ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
///
/// let grpc = reply.to_response::<Bytes>(true);
/// assert_eq!(grpc.status(), 200);
/// assert_eq!(grpc.headers()["grpc-status"], "14"); // UNAVAILABLE
/// assert!(grpc.body().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalReply {
    /// The VirtualService has no route matching the request: 404, empty body, NR.
    #[error("no route matched the request")]
    NoRoute,
    /// The route names a cluster that does not exist (undefined subset, unknown host):
    /// 503, empty body, NC.
    #[error("cluster not found")]
    ClusterNotFound,
    /// No endpoint available: 503 `no healthy upstream`, UH.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// Route timeout: 504 `upstream request timeout`, UT, details
    /// `response_timeout` (Envoy 1.23+; `upstream_response_timeout` before).
    #[error("upstream request timeout")]
    UpstreamTimeout,
    /// A retry policy's `perTryTimeout` expired on the last attempt: 504 `upstream request
    /// timeout`, UT, details `upstream_per_try_timeout` (Envoy's router `onPerTryTimeout`).
    #[error("upstream per-try timeout")]
    UpstreamPerTryTimeout,
    /// A route's direct response with no body (istiod's `block_all` route for a destination
    /// outside the registry answers 502 this way): no response flag, details
    /// `direct_response`.
    #[error("direct response")]
    DirectResponse {
        /// The configured status.
        status: StatusCode,
    },
    /// The upstream connection failed or was reset before response headers: 503.
    #[error("upstream connect error or disconnect/reset before headers: {reason}")]
    UpstreamReset {
        /// The reset reason.
        reason: ResetReason,
        /// Envoy's transport failure reason (e.g. a TLS error), if any.
        transport_failure: Option<String>,
        /// True when retries were attempted and exhausted (adds URX and Envoy's
        /// `retried and the latest reset reason:` wording).
        retried: bool,
    },
    /// A circuit breaker overflowed: 503 with reset reason `overflow`, UO,
    /// `x-envoy-overloaded: true`.
    #[error("upstream overflow (circuit breaker)")]
    Overflow,
    /// Fault injection abort: the configured status, body `fault filter abort`, FI.
    #[error("fault filter abort")]
    FaultAbort {
        /// `httpStatus` (for gRPC requests without `grpcStatus`, mapped as Envoy does).
        http_status: StatusCode,
        /// `grpcStatus` code, if configured.
        grpc_status: Option<u32>,
    },
    /// AuthorizationPolicy denied the request: 403 `RBAC: access denied`.
    #[error("RBAC: access denied")]
    RbacDenied,
    /// RequestAuthentication rejected the JWT: 401 with the verifier's message (e.g. `Jwt
    /// is expired`).
    #[error("{0}")]
    Unauthenticated(String),
    /// RequestAuthentication verified the JWT but not its audience: 403 `Audiences in Jwt
    /// are not allowed` (Envoy's jwt_authn `Filter::onComplete`).
    #[error("{0}")]
    JwtForbidden(String),
    /// Envoy's `normalize_path` refused the request path (it holds `%00`): 400, empty
    /// body, details `path_normalization_failed`, before routing and every filter.
    #[error("path normalization failed")]
    PathNormalizationFailed,
    /// A request with no `Host` (HTTP/1.1) or `:authority` (HTTP/2): Envoy's connection
    /// manager answers 400 with an empty body, details `missing_host_header`, before any
    /// filter.
    #[error("missing host header")]
    MissingHost,
    /// A request method that is not upper case (`delete`), or on HTTP/1 one its codec
    /// does not know (`FROBNICATE`; WebDAV's and the other registered methods pass):
    /// Envoy's HTTP/1 codec knows a fixed list of upper-case methods and answers 400
    /// `Bad Request`, DPE, details
    /// `http1.codec_error`, closing the connection (istio.io: "Istio will reject requests
    /// with HTTP 400 if the verb in the HTTP request is not in upper case").
    #[error("method not in upper case")]
    InvalidMethod,
    /// An HTTP/1.0 (or 0.9) request where Envoy's `accept_http_10` is off (Istio's default
    /// unless `PILOT_HTTP10` or the proxy's `HTTP10` metadata is set): the HTTP/1 codec's
    /// `checkProtocolVersion` answers 426 `Upgrade Required`, DPE, details `low_version`,
    /// and closes the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// let r = LocalReply::UpgradeRequired;
    /// assert_eq!((r.status().as_u16(), r.body().as_str()), (426, "Upgrade Required"));
    /// assert_eq!((r.details().as_str(), r.flags().to_string().as_str()), ("low_version", "DPE"));
    /// ```
    #[error("HTTP/1.0 is not accepted")]
    UpgradeRequired,
    /// The request's maximum stream duration passed before the answer began: on a mesh
    /// server, a request's `grpc-timeout` (Istio's inbound route has
    /// `max_stream_duration` with `grpc_timeout_header_max: 0`). Envoy's connection manager
    /// answers 504 `downstream duration timeout` (gRPC: `DEADLINE_EXCEEDED`), details
    /// `max_duration_timeout`, no flag.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// let r = LocalReply::MaxDurationTimeout;
    /// assert_eq!((r.status().as_u16(), r.body().as_str()), (504, "downstream duration timeout"));
    /// assert_eq!((r.details().as_str(), r.flags().to_string().as_str()), ("max_duration_timeout", "-"));
    /// assert_eq!(r.to_response::<Bytes>(true).headers()["grpc-status"], "4");
    /// ```
    #[error("downstream duration timeout")]
    MaxDurationTimeout,
}

impl LocalReply {
    /// The HTTP status Envoy answers with (for HTTP requests).
    ///
    /// # Examples
    ///
    /// ```
    /// use http::StatusCode;
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// assert_eq!(LocalReply::NoRoute.status(), StatusCode::NOT_FOUND);
    /// assert_eq!(LocalReply::UpstreamTimeout.status(), StatusCode::GATEWAY_TIMEOUT);
    /// let abort = LocalReply::FaultAbort { http_status: StatusCode::IM_A_TEAPOT, grpc_status: None };
    /// assert_eq!(abort.status(), 418);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            LocalReply::NoRoute => StatusCode::NOT_FOUND,
            LocalReply::ClusterNotFound
            | LocalReply::NoHealthyUpstream
            | LocalReply::UpstreamReset { .. }
            | LocalReply::Overflow => StatusCode::SERVICE_UNAVAILABLE,
            LocalReply::UpstreamTimeout | LocalReply::UpstreamPerTryTimeout => {
                StatusCode::GATEWAY_TIMEOUT
            }
            LocalReply::DirectResponse { status } => *status,
            LocalReply::FaultAbort { http_status, .. } => *http_status,
            LocalReply::RbacDenied => StatusCode::FORBIDDEN,
            LocalReply::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            LocalReply::JwtForbidden(_) => StatusCode::FORBIDDEN,
            LocalReply::PathNormalizationFailed
            | LocalReply::MissingHost
            | LocalReply::InvalidMethod => StatusCode::BAD_REQUEST,
            LocalReply::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            LocalReply::MaxDurationTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The body text Envoy sends (empty for 404 NR and 503 NC).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::{LocalReply, ResetReason};
    ///
    /// assert_eq!(LocalReply::NoHealthyUpstream.body(), "no healthy upstream");
    /// assert_eq!(LocalReply::ClusterNotFound.body(), "");
    /// let reset = LocalReply::UpstreamReset {
    ///     reason: ResetReason::ConnectionTermination,
    ///     transport_failure: None,
    ///     retried: true,
    /// };
    /// assert_eq!(
    ///     reset.body(),
    ///     "upstream connect error or disconnect/reset before headers. retried and the latest \
    ///      reset reason: connection termination",
    /// );
    /// ```
    pub fn body(&self) -> String {
        match self {
            LocalReply::NoRoute
            | LocalReply::ClusterNotFound
            | LocalReply::PathNormalizationFailed
            | LocalReply::MissingHost
            | LocalReply::DirectResponse { .. } => String::new(),
            LocalReply::NoHealthyUpstream => "no healthy upstream".to_owned(),
            LocalReply::UpstreamTimeout | LocalReply::UpstreamPerTryTimeout => {
                "upstream request timeout".to_owned()
            }
            LocalReply::UpstreamReset {
                reason,
                transport_failure,
                retried,
            } => {
                let mut s =
                    String::from("upstream connect error or disconnect/reset before headers. ");
                s.push_str(if *retried {
                    "retried and the latest reset reason: "
                } else {
                    "reset reason: "
                });
                s.push_str(reason.as_str());
                if let Some(t) = transport_failure.as_deref().filter(|t| !t.is_empty()) {
                    s.push_str(", transport failure reason: ");
                    s.push_str(t);
                }
                s
            }
            LocalReply::Overflow => {
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
                    .to_owned()
            }
            LocalReply::FaultAbort { .. } => "fault filter abort".to_owned(),
            LocalReply::RbacDenied => "RBAC: access denied".to_owned(),
            LocalReply::InvalidMethod => "Bad Request".to_owned(),
            // CodeUtility::toString(426)
            LocalReply::UpgradeRequired => "Upgrade Required".to_owned(),
            LocalReply::MaxDurationTimeout => "downstream duration timeout".to_owned(),
            LocalReply::Unauthenticated(msg) | LocalReply::JwtForbidden(msg) => msg.clone(),
        }
    }

    /// The response flags Envoy records.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::{LocalReply, ResetReason};
    ///
    /// assert_eq!(LocalReply::Overflow.flags().to_string(), "UO");
    /// let retried = LocalReply::UpstreamReset {
    ///     reason: ResetReason::RemoteReset,
    ///     transport_failure: None,
    ///     retried: true,
    /// };
    /// // (URX is the router's to add, when the failure would have been retried but no
    /// // attempt was left: the reply alone does not know)
    /// assert_eq!(retried.flags().to_string(), "UR");
    /// ```
    pub fn flags(&self) -> ResponseFlags {
        match self {
            LocalReply::NoRoute => ResponseFlags::NO_ROUTE_FOUND,
            LocalReply::ClusterNotFound => ResponseFlags::NO_CLUSTER_FOUND,
            LocalReply::NoHealthyUpstream => ResponseFlags::NO_HEALTHY_UPSTREAM,
            LocalReply::UpstreamTimeout | LocalReply::UpstreamPerTryTimeout => {
                ResponseFlags::UPSTREAM_REQUEST_TIMEOUT
            }
            LocalReply::UpstreamReset { reason, .. } => reason.flag(),
            LocalReply::Overflow => ResponseFlags::UPSTREAM_OVERFLOW,
            LocalReply::InvalidMethod | LocalReply::UpgradeRequired => {
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR
            }
            LocalReply::FaultAbort { .. } => ResponseFlags::FAULT_INJECTED,
            LocalReply::RbacDenied
            | LocalReply::Unauthenticated(_)
            | LocalReply::JwtForbidden(_)
            | LocalReply::PathNormalizationFailed
            | LocalReply::MissingHost
            | LocalReply::MaxDurationTimeout
            | LocalReply::DirectResponse { .. } => ResponseFlags::NONE,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// assert_eq!(LocalReply::NoRoute.details(), "route_not_found");
    /// assert_eq!(LocalReply::UpstreamPerTryTimeout.details(), "upstream_per_try_timeout");
    /// let black_hole = LocalReply::DirectResponse { status: http::StatusCode::BAD_GATEWAY };
    /// assert_eq!((black_hole.details().as_str(), black_hole.flags().to_string().as_str()), ("direct_response", "-"));
    /// assert_eq!(
    ///     LocalReply::Unauthenticated("Jwt is expired".into()).details(),
    ///     "jwt_authn_access_denied{Jwt_is_expired}",
    /// );
    /// ```
    pub fn details(&self) -> String {
        match self {
            LocalReply::NoRoute => "route_not_found".into(),
            LocalReply::ClusterNotFound => "cluster_not_found".into(),
            LocalReply::NoHealthyUpstream => "no_healthy_upstream".into(),
            LocalReply::UpstreamTimeout => "response_timeout".into(),
            LocalReply::UpstreamPerTryTimeout => "upstream_per_try_timeout".into(),
            LocalReply::DirectResponse { .. } => DIRECT_RESPONSE.into(),
            LocalReply::UpstreamReset {
                reason,
                transport_failure,
                ..
            } => match transport_failure {
                Some(t) if !t.is_empty() => format!(
                    "upstream_reset_before_response_started{{{}|{}}}",
                    reason.detail(),
                    t.replace(' ', "_")
                ),
                _ => format!(
                    "upstream_reset_before_response_started{{{}}}",
                    reason.detail()
                ),
            },
            LocalReply::Overflow => "upstream_reset_before_response_started{overflow}".into(),
            LocalReply::FaultAbort { .. } => "fault_filter_abort".into(),
            LocalReply::RbacDenied => "rbac_access_denied_matched_policy[none]".into(),
            LocalReply::Unauthenticated(msg) | LocalReply::JwtForbidden(msg) => {
                format!("jwt_authn_access_denied{{{}}}", msg.replace(' ', "_"))
            }
            LocalReply::PathNormalizationFailed => "path_normalization_failed".into(),
            LocalReply::MissingHost => "missing_host_header".into(),
            LocalReply::InvalidMethod => "http1.codec_error".into(),
            LocalReply::UpgradeRequired => "low_version".into(),
            LocalReply::MaxDurationTimeout => "max_duration_timeout".into(),
        }
    }

    /// The `grpc-status` sent to gRPC clients.
    ///
    /// # Examples
    ///
    /// ```
    /// use http::StatusCode;
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// assert_eq!(LocalReply::NoRoute.grpc_status(), 12); // UNIMPLEMENTED
    /// assert_eq!(LocalReply::Unauthenticated("Jwt is missing".into()).grpc_status(), 16);
    /// // A fault abort with `grpcStatus` sends that code.
    /// let abort = LocalReply::FaultAbort { http_status: StatusCode::SERVICE_UNAVAILABLE, grpc_status: Some(8) };
    /// assert_eq!(abort.grpc_status(), 8);
    /// ```
    pub fn grpc_status(&self) -> u32 {
        match self {
            LocalReply::FaultAbort {
                grpc_status: Some(code),
                ..
            } => *code,
            // Envoy names the code itself: DEADLINE_EXCEEDED
            LocalReply::MaxDurationTimeout => 4,
            other => http_to_grpc_status(other.status().as_u16()),
        }
    }

    /// Builds the reply. `grpc` selects the gRPC form (see [`is_grpc`]). The response
    /// extensions carry the [`ResponseFlags`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use mesh_tower::envoy::{LocalReply, ResponseFlags};
    ///
    /// let response = LocalReply::Overflow.to_response::<Bytes>(false);
    /// assert_eq!(response.status(), 503);
    /// assert_eq!(response.headers()["x-envoy-overloaded"], "true");
    /// assert_eq!(response.extensions().get::<ResponseFlags>(), Some(&ResponseFlags::UPSTREAM_OVERFLOW));
    ///
    /// // A 404 NR has an empty body and no content-type.
    /// let not_found = LocalReply::NoRoute.to_response::<Bytes>(false);
    /// assert!(not_found.body().is_empty());
    /// assert!(not_found.headers().get("content-type").is_none());
    /// ```
    pub fn to_response<B: From<Bytes>>(&self, grpc: bool) -> Response<B> {
        self.to_response_with(grpc, B::from)
    }

    /// [`LocalReply::to_response`] for body types without `From<Bytes>` (e.g. a boxed
    /// body): `make_body` turns the body bytes into the body.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::combinators::UnsyncBoxBody;
    /// use http_body_util::{BodyExt, Full};
    /// use mesh_tower::envoy::LocalReply;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;
    /// let response = LocalReply::RbacDenied.to_response_with(false, |b| -> Body { Full::new(b).boxed_unsync() });
    /// assert_eq!(response.status(), 403);
    /// let body = response.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "RBAC: access denied");
    /// # }
    /// ```
    pub fn to_response_with<B>(
        &self,
        grpc: bool,
        make_body: impl FnOnce(Bytes) -> B,
    ) -> Response<B> {
        let body = self.body();
        let mut response = if grpc {
            let mut r = Response::new(make_body(Bytes::new()));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(self.grpc_status()));
            if !body.is_empty()
                && let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&body))
            {
                h.insert("grpc-message", v);
            }
            r
        } else {
            let mut r = Response::new(make_body(Bytes::from(body.clone())));
            *r.status_mut() = self.status();
            if !body.is_empty() {
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            r
        };
        if matches!(self, LocalReply::Overflow)
            || matches!(
                self,
                LocalReply::UpstreamReset {
                    reason: ResetReason::Overflow,
                    ..
                }
            )
        {
            response
                .headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        response.extensions_mut().insert(self.flags());
        response
            .extensions_mut()
            .insert(ResponseCodeDetails(self.details()));
        response
    }
}

impl From<crate::lb::NoHealthyUpstream> for LocalReply {
    fn from(_: crate::lb::NoHealthyUpstream) -> Self {
        LocalReply::NoHealthyUpstream
    }
}

/// The `date` header Envoy's connection manager gives every response that has none
/// (`encodeHeaders`: the upstream's own is kept), as its cached date provider makes it:
/// the current second in IMF-fixdate, formatted once per second per thread.
///
/// # Examples
///
/// ```
/// let v = mesh_tower::envoy::date_header();
/// let when = httpdate::parse_http_date(v.to_str().unwrap()).unwrap();
/// let age = std::time::SystemTime::now().duration_since(when).unwrap();
/// assert!(age.as_secs() <= 1);
/// ```
pub fn date_header() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, value)| match value {
        Some(v) if *at == second => v.clone(),
        _ => {
            let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .expect("an HTTP date is a valid header value");
            *at = second;
            *value = Some(v.clone());
            v
        }
    })
}

/// Envoy's connection manager before any filter (`mutateRequestHeaders`): the hop-by-hop
/// headers of a request go (`keep-alive`, `proxy-connection`, `transfer-encoding`, and
/// `connection` and `upgrade` unless it is a WebSocket upgrade, the one Istio lets
/// through), so that AuthorizationPolicy conditions and the application never see them.
/// One pass over the header names when none is there.
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    let any = headers.keys().any(|n| {
        *n == CONNECTION
            || *n == TRANSFER_ENCODING
            || *n == UPGRADE
            || n.as_str() == "keep-alive"
            || n.as_str() == "proxy-connection"
    });
    if !any {
        return;
    }
    let websocket = matches!(
        crate::outbound::upgrade_of(headers),
        Some(crate::outbound::UpgradeRequest::WebSocket)
    );
    remove_hop_by_hop(headers, websocket);
}

/// Removes the hop-by-hop headers of a request, `connection` and `upgrade` but for a
/// `websocket` upgrade (see [`strip_hop_by_hop`]).
pub(crate) fn remove_hop_by_hop(headers: &mut http::HeaderMap, websocket: bool) {
    use http::header::{CONNECTION, TRANSFER_ENCODING, UPGRADE};
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove(TRANSFER_ENCODING);
    if !websocket {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// What Envoy does to a request before routing and before any filter (RequestAuthentication,
/// authorization): a method not in upper case refused (400, as its HTTP/1 codec; over
/// HTTP/2 as well, so a DENY on `methods: [DELETE]` cannot be passed by `delete`), and on
/// HTTP/1 a method its codec does not know; the
/// path normalized as the mesh's `pathNormalization` says (`mode`, from the snapshot's
/// [`MeshOptions`](mesh_core::names::MeshOptions); `BASE` by default,
/// [`normalize_path`](mesh_core::authz::normalize_path)) and the request rewritten with it (the query kept), so authorization, routing and the
/// application all see the same path. An ordinary path is left untouched without
/// allocating. The access log, when listening, is told the new path (Envoy logs
/// `%REQ(:PATH)%` after normalization).
///
/// `Err`: the local reply (400 `http1.codec_error` for the method, 400
/// `path_normalization_failed` for a `%00`).
pub(crate) fn sanitize_request<B, R: From<Bytes>>(
    req: &mut Request<B>,
    mode: PathNormalization,
) -> Result<(), Response<R>> {
    let http1 = req.version() <= http::Version::HTTP_11;
    // (the standard methods, upper case and known, without looking at their letters)
    let standard = matches!(
        *req.method(),
        http::Method::GET
            | http::Method::POST
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PATCH
    );
    if !standard
        && ((http1 && !mesh_core::authz::http1_method_known(req.method()))
            || req
                .method()
                .as_str()
                .bytes()
                .any(|b| b.is_ascii_lowercase()))
    {
        tracing::debug!(method = %req.method(), "method Envoy's HTTP/1 codec refuses: 400");
        let mut resp = LocalReply::InvalidMethod.to_response(is_grpc(req.headers()));
        // a codec error ends an HTTP/1 connection
        if http1 {
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Err(resp);
    }
    let fail =
        |req: &Request<B>| LocalReply::PathNormalizationFailed.to_response(is_grpc(req.headers()));
    let path = match mode.normalize(req.uri().path()) {
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(p)) => p,
        Err(_) => {
            tracing::debug!(path = req.uri().path(), "path normalization failed");
            return Err(fail(req));
        }
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri().clone().into_parts();
    let uri = PathAndQuery::try_from(pq).ok().and_then(|pq| {
        parts.path_and_query = Some(pq);
        Uri::from_parts(parts).ok()
    });
    match uri {
        Some(uri) => {
            if let Some(seen) = req.extensions().get::<crate::accesslog::LateFacts>() {
                seen.set_path(&uri);
            }
            *req.uri_mut() = uri;
            Ok(())
        }
        None => Err(fail(req)),
    }
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::http_to_grpc_status;
///
/// assert_eq!(http_to_grpc_status(403), 7); // PERMISSION_DENIED
/// assert_eq!(http_to_grpc_status(503), 14); // UNAVAILABLE
/// assert_eq!(http_to_grpc_status(418), 2); // UNKNOWN
/// ```
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// Envoy's `Grpc::Utility::grpcToHttpStatus`: the HTTP status a gRPC status stands for
/// (what the router reports to outlier detection for a gRPC answer that carries its
/// `grpc-status` in the response headers).
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::grpc_to_http_status;
///
/// assert_eq!(grpc_to_http_status(0), 200); // OK
/// assert_eq!(grpc_to_http_status(14), 503); // UNAVAILABLE
/// assert_eq!(grpc_to_http_status(4), 504); // DEADLINE_EXCEEDED
/// assert_eq!(grpc_to_http_status(99), 500); // not a gRPC status
/// ```
pub fn grpc_to_http_status(status: u32) -> u16 {
    match status {
        0 => 200,  // OK
        1 => 499,  // CANCELLED
        2 => 500,  // UNKNOWN
        3 => 400,  // INVALID_ARGUMENT
        4 => 504,  // DEADLINE_EXCEEDED
        5 => 404,  // NOT_FOUND
        6 => 409,  // ALREADY_EXISTS
        7 => 403,  // PERMISSION_DENIED
        8 => 429,  // RESOURCE_EXHAUSTED
        9 => 400,  // FAILED_PRECONDITION
        10 => 409, // ABORTED
        11 => 400, // OUT_OF_RANGE
        12 => 501, // UNIMPLEMENTED
        13 => 500, // INTERNAL
        14 => 503, // UNAVAILABLE
        15 => 500, // DATA_LOSS
        16 => 401, // UNAUTHENTICATED
        _ => 500,  // InvalidCode
    }
}

/// gRPC status names (as Istio's fault `grpcStatus` takes them) to codes: mesh-core's
/// table ([`mesh_core::route::actions::grpc_code`]), widened for `grpc-status` values.
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::grpc_status_from_name;
///
/// assert_eq!(grpc_status_from_name("UNAVAILABLE"), Some(14));
/// assert_eq!(grpc_status_from_name("NOT_FOUND"), Some(5));
/// assert_eq!(grpc_status_from_name("BOGUS"), None);
/// ```
pub fn grpc_status_from_name(name: &str) -> Option<u32> {
    mesh_core::route::actions::grpc_code(name).map(u32::from)
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII and `%` become `%XX`.
///
/// # Examples
///
/// ```
/// use mesh_tower::envoy::grpc_percent_encode;
///
/// assert_eq!(grpc_percent_encode("RBAC: access denied"), "RBAC: access denied");
/// assert_eq!(grpc_percent_encode("100% done\n"), "100%25 done%0A");
/// assert_eq!(grpc_percent_encode("é"), "%C3%A9");
/// assert_eq!(grpc_percent_encode("down~now"), "down%7Enow");
/// ```
pub fn grpc_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        // Envoy's `PercentEncoding::encode`: below ' ', from '~' on, and '%'
        if (0x20..0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request itself carries the normalized path (the query as sent); ordinary
    /// paths are not rebuilt; `%00` is a 400.
    #[test]
    fn requests_are_normalized_in_place() {
        let run = |uri: &str| {
            let mut req = Request::get(uri).body(()).unwrap();
            sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base)
                .map(|()| req.uri().to_string())
                .map_err(Box::new)
        };
        assert_eq!(run("/%61dmin/./x?q=%2e/..").unwrap(), "/admin/x?q=%2e/..");
        assert_eq!(run("/a/../b").unwrap(), "/b");
        assert_eq!(
            run("http://h.example:8080/a/%2e%2e/b?x").unwrap(),
            "http://h.example:8080/b?x"
        );
        assert_eq!(run("/a%2Fb//c?y").unwrap(), "/a%2Fb//c?y");
        let bad = run("/x%00y").unwrap_err();
        assert_eq!(bad.status(), 400);
        assert!(bad.body().is_empty());
        assert_eq!(
            bad.extensions().get::<ResponseCodeDetails>().unwrap().0,
            "path_normalization_failed"
        );
        // a method not in upper case is a codec error, before the path is looked at
        let mut req = Request::builder()
            .method("delete")
            .uri("/x%00")
            .body(())
            .unwrap();
        let bad = sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base).unwrap_err();
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.body(), "Bad Request");
        assert_eq!(bad.headers()["connection"], "close");
        assert_eq!(
            bad.extensions().get::<ResponseCodeDetails>().unwrap().0,
            "http1.codec_error"
        );
        for m in ["Get", "pOST", "get"] {
            let mut req = Request::builder().method(m).uri("/").body(()).unwrap();
            assert!(
                sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base).is_err(),
                "{m}"
            );
        }
        for m in [
            "GET",
            "DELETE",
            "PURGE",
            "M-SEARCH",
            "PROPFIND",
            "UNSUBSCRIBE",
        ] {
            let mut req = Request::builder().method(m).uri("/").body(()).unwrap();
            assert!(
                sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base).is_ok(),
                "{m}"
            );
        }
        // a well-formed method no Envoy HTTP/1 codec knows: refused on HTTP/1 only
        for (version, refused) in [
            (http::Version::HTTP_10, true),
            (http::Version::HTTP_11, true),
            (http::Version::HTTP_2, false),
        ] {
            let mut req = Request::builder()
                .method("FROBNICATE")
                .version(version)
                .uri("/")
                .body(())
                .unwrap();
            let r = sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base);
            assert_eq!(r.is_err(), refused, "{version:?}");
            if let Err(bad) = r {
                assert_eq!(bad.status(), 400);
                assert_eq!(bad.headers()["connection"], "close");
            }
        }
        // the mode decides
        let with = |mode: PathNormalization, uri: &str| {
            let mut req = Request::get(uri).body(()).unwrap();
            sanitize_request::<_, Bytes>(&mut req, mode)
                .map(|()| req.uri().to_string())
                .map_err(|r| r.status())
        };
        assert_eq!(
            with(PathNormalization::None, "/a/../b//c%00?q").unwrap(),
            "/a/../b//c%00?q"
        );
        assert_eq!(
            with(PathNormalization::Base, "/a//b%2Fc?q").unwrap(),
            "/a//b%2Fc?q"
        );
        assert_eq!(
            with(PathNormalization::MergeSlashes, "/a//b%2Fc?q").unwrap(),
            "/a/b%2Fc?q"
        );
        assert_eq!(
            with(PathNormalization::DecodeAndMergeSlashes, "/a//b%2Fc?q=%2F").unwrap(),
            "/a/b/c?q=%2F"
        );
        // an ordinary path keeps its very bytes (no new allocation)
        let mut req = Request::get("/status/200?x=1").body(()).unwrap();
        let before = req.uri().path().as_ptr();
        sanitize_request::<_, Bytes>(&mut req, PathNormalization::Base).unwrap();
        assert_eq!(req.uri().path().as_ptr(), before);
    }

    fn http(r: &LocalReply) -> (u16, String, ResponseFlags, HeaderMap) {
        let resp: Response<Bytes> = r.to_response(false);
        let flags = *resp.extensions().get::<ResponseFlags>().unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = String::from_utf8(resp.into_body().to_vec()).unwrap();
        (status, body, flags, headers)
    }

    #[test]
    fn http_replies_table() {
        let upstream = "upstream connect error or disconnect/reset before headers. ";
        let cases: Vec<(LocalReply, u16, String, &str)> = vec![
            (LocalReply::NoRoute, 404, String::new(), "NR"),
            (LocalReply::ClusterNotFound, 503, String::new(), "NC"),
            (LocalReply::NoHealthyUpstream, 503, "no healthy upstream".into(), "UH"),
            (LocalReply::UpstreamTimeout, 504, "upstream request timeout".into(), "UT"),
            (
                LocalReply::UpstreamReset {
                    reason: ResetReason::RemoteConnectionFailure,
                    transport_failure: Some("delayed connect error: Connection refused".into()),
                    retried: false,
                },
                503,
                format!("{upstream}reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"),
                "UF",
            ),
            (
                LocalReply::UpstreamReset {
                    reason: ResetReason::ConnectionTermination,
                    transport_failure: None,
                    retried: true,
                },
                503,
                format!("{upstream}retried and the latest reset reason: connection termination"),
                "UC",
            ),
            (
                LocalReply::Overflow,
                503,
                format!("{upstream}reset reason: overflow"),
                "UO",
            ),
            (
                LocalReply::FaultAbort {
                    http_status: StatusCode::from_u16(555).unwrap(),
                    grpc_status: None,
                },
                555,
                "fault filter abort".into(),
                "FI",
            ),
            (LocalReply::RbacDenied, 403, "RBAC: access denied".into(), "-"),
            (
                LocalReply::Unauthenticated("Jwt is expired".into()),
                401,
                "Jwt is expired".into(),
                "-",
            ),
        ];
        for (reply, status, body, flags) in cases {
            let (s, b, f, h) = http(&reply);
            assert_eq!(s, status, "{reply:?}");
            assert_eq!(b, body, "{reply:?}");
            assert_eq!(f.to_string(), flags, "{reply:?}");
            assert_eq!(reply.flags(), f);
            assert_eq!(
                reply
                    .to_response::<Bytes>(false)
                    .extensions()
                    .get::<ResponseCodeDetails>(),
                Some(&ResponseCodeDetails(reply.details()))
            );
            assert_eq!(
                h.get(CONTENT_TYPE).is_some(),
                !body.is_empty(),
                "content-type only with a body: {reply:?}"
            );
            assert_eq!(
                h.get("x-envoy-overloaded").map(|v| v.to_str().unwrap()),
                (flags == "UO").then_some("true"),
                "{reply:?}"
            );
        }
    }

    #[test]
    fn grpc_replies_table() {
        let cases = [
            (LocalReply::RbacDenied, 7, Some("RBAC: access denied")),
            (LocalReply::NoHealthyUpstream, 14, Some("no healthy upstream")),
            (LocalReply::UpstreamTimeout, 14, Some("upstream request timeout")),
            (LocalReply::Overflow, 14, Some("upstream connect error or disconnect/reset before headers. reset reason: overflow")),
            (LocalReply::NoRoute, 12, None),
            (LocalReply::Unauthenticated("Jwt is expired".into()), 16, Some("Jwt is expired")),
            (
                LocalReply::FaultAbort {
                    http_status: StatusCode::SERVICE_UNAVAILABLE,
                    grpc_status: grpc_status_from_name("UNAVAILABLE"),
                },
                14,
                Some("fault filter abort"),
            ),
            (
                LocalReply::FaultAbort {
                    http_status: StatusCode::from_u16(500).unwrap(),
                    grpc_status: None,
                },
                2,
                Some("fault filter abort"),
            ),
        ];
        for (reply, code, message) in cases {
            let resp: Response<Bytes> = reply.to_response(true);
            assert_eq!(resp.status(), 200, "{reply:?}");
            let h = resp.headers();
            assert_eq!(h["content-type"], "application/grpc");
            assert_eq!(h["grpc-status"], code.to_string().as_str(), "{reply:?}");
            assert_eq!(
                h.get("grpc-message").map(|v| v.to_str().unwrap()),
                message,
                "{reply:?}"
            );
            assert!(resp.body().is_empty());
        }
    }

    #[test]
    fn http_to_grpc_table() {
        for (http, grpc) in [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (418, 2),
        ] {
            assert_eq!(http_to_grpc_status(http), grpc, "{http}");
        }
    }

    #[test]
    fn grpc_names() {
        assert_eq!(grpc_status_from_name("OK"), Some(0));
        assert_eq!(grpc_status_from_name("PERMISSION_DENIED"), Some(7));
        assert_eq!(grpc_status_from_name("UNAUTHENTICATED"), Some(16));
        assert_eq!(grpc_status_from_name("unavailable"), None);
    }

    #[test]
    fn is_grpc_table() {
        let cases = [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            // Envoy's hasGrpcContentType: case-sensitive, no parameters
            ("Application/GRPC", false),
            ("application/grpc; charset=utf-8", false),
            ("application/grpc-web", false),
            ("application/json", false),
        ];
        for (ct, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), want, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn flags_display_and_parse() {
        let f = ResponseFlags::UPSTREAM_CONNECTION_FAILURE
            | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
        assert_eq!(f.to_string(), "UF,URX");
        assert_eq!(ResponseFlags::parse("UF,URX"), Some(f));
        assert_eq!(ResponseFlags::parse("-"), Some(ResponseFlags::NONE));
        assert_eq!(ResponseFlags::parse("XX"), None);
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        assert!(f.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE));
        assert!(!f.contains(ResponseFlags::NO_ROUTE_FOUND));
        let all: Vec<_> = ResponseFlags::ALL.iter().map(|(_, c)| *c).collect();
        for code in [
            "UH", "UT", "NR", "UO", "UF", "URX", "DI", "FI", "UAEX", "NC", "UC", "UR", "LR",
        ] {
            assert!(all.contains(&code), "{code}");
        }
    }

    proptest::proptest! {
        #[test]
        fn flags_parse_never_panics_and_round_trips(s in "[A-Z,-]{0,30}", bits in 0u32..(1 << 29)) {
            if let Some(f) = ResponseFlags::parse(&s) {
                proptest::prop_assert_eq!(ResponseFlags::parse(&f.to_string()), Some(f));
            }
            // Any combination of known flags renders and parses back.
            let mut f = ResponseFlags::NONE;
            for (flag, _) in ResponseFlags::ALL {
                if bits & flag.0 != 0 {
                    f.insert(*flag);
                }
            }
            proptest::prop_assert_eq!(ResponseFlags::parse(&f.to_string()), Some(f));
        }

        #[test]
        fn grpc_message_is_always_a_header_value(s in ".{0,40}") {
            proptest::prop_assert!(HeaderValue::from_str(&grpc_percent_encode(&s)).is_ok());
        }
    }

    #[test]
    fn grpc_message_encoding() {
        assert_eq!(grpc_percent_encode("a b%c"), "a b%25c");
        assert_eq!(grpc_percent_encode("é"), "%C3%A9");
    }
}
