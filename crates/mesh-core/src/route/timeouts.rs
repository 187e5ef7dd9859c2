//! A request's timeouts as Envoy's router works them out on the routes istiod writes: the
//! route's `timeout` and `perTryTimeout` and a gRPC caller's `grpc-timeout` (Envoy's
//! `max_grpc_timeout`, which istiod sets to the route's timeout); and what each attempt
//! tells the upstream (`x-envoy-expected-rq-timeout-ms`, `grpc-timeout`).
//! Pure: mesh clients and gateways apply it, `meshctl route` explains it.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;

/// True for gRPC requests: `content-type` exactly `application/grpc` or
/// `application/grpc+...`, as Envoy's `Grpc::Common::hasGrpcContentType` (case-sensitive,
/// no parameters: `application/grpc-web` and `application/grpc; charset=utf-8` are not).
///
/// # Examples
///
/// ```
/// use http::HeaderMap;
/// use mesh_core::route::is_grpc;
///
/// let with = |ct: &str| {
///     let mut h = HeaderMap::new();
///     h.insert("content-type", ct.parse().unwrap());
///     h
/// };
/// assert!(is_grpc(&with("application/grpc")));
/// assert!(is_grpc(&with("application/grpc+proto")));
/// assert!(!is_grpc(&with("application/grpc-web")));
/// assert!(!is_grpc(&with("application/grpc; charset=utf-8")));
/// assert!(!is_grpc(&with("Application/gRPC")));
/// assert!(!is_grpc(&with("application/json")));
/// assert!(!is_grpc(&HeaderMap::new()));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let ct = v.as_bytes();
        ct.strip_prefix(b"application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'+')
    })
}

/// The largest number a `grpc-timeout` value may have (8 digits, gRPC's
/// `TimeoutValue`).
const MAX_GRPC_TIMEOUT_VALUE: u64 = 99_999_999;

/// A request's `grpc-timeout`, as Envoy's `Grpc::Common::getGrpcTimeout` reads it: at most
/// 8 digits followed by a unit (`H`, `M`, `S`, `m`, `u`, `n`), in whole milliseconds
/// (`u` and `n` rounded up); `None` when absent or malformed. `0` stands for no timeout
/// where Envoy uses it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use mesh_core::route::grpc_timeout;
///
/// let of = |v: &str| {
///     let mut h = HeaderMap::new();
///     h.insert("grpc-timeout", v.parse().unwrap());
///     grpc_timeout(&h)
/// };
/// assert_eq!(of("2S"), Some(Duration::from_secs(2)));
/// assert_eq!(of("1500m"), Some(Duration::from_millis(1500)));
/// assert_eq!(of("1500u"), Some(Duration::from_millis(2))); // rounded up
/// assert_eq!(of("1H"), Some(Duration::from_secs(3600)));
/// assert_eq!(of("123456789m"), None); // nine digits
/// assert_eq!(of("5s"), None); // no such unit
/// assert_eq!(grpc_timeout(&HeaderMap::new()), None);
/// ```
pub fn grpc_timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    // (a name made once: a `&str` key would be parsed and checked on every lookup)
    static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let ms = match unit {
        b'H' => n * 3_600_000,
        b'M' => n * 60_000,
        b'S' => n * 1000,
        b'm' => n,
        b'u' => n.div_ceil(1000),
        b'n' => n.div_ceil(1_000_000),
        _ => return None,
    };
    Some(std::time::Duration::from_millis(ms))
}

/// `timeout` as Envoy writes it into a `grpc-timeout` header (`Grpc::Common::toGrpcTimeout`):
/// milliseconds, or seconds, minutes, hours when the number would need more than 8
/// digits.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mesh_core::route::grpc_timeout_value;
///
/// assert_eq!(grpc_timeout_value(Duration::from_secs(2)), "2000m");
/// assert_eq!(grpc_timeout_value(Duration::from_secs(200_000)), "200000S");
/// assert_eq!(grpc_timeout_value(Duration::from_secs(1 << 40)), "99999999H");
/// ```
pub fn grpc_timeout_value(timeout: std::time::Duration) -> HeaderValue {
    let mut time = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut unit = 'm';
    if time > MAX_GRPC_TIMEOUT_VALUE {
        time /= 1000;
        unit = 'S';
    }
    while time > MAX_GRPC_TIMEOUT_VALUE {
        if unit == 'H' {
            time = MAX_GRPC_TIMEOUT_VALUE;
        } else {
            time /= 60;
            unit = if unit == 'S' { 'M' } else { 'H' };
        }
    }
    HeaderValue::try_from(format!("{time}{unit}")).unwrap_or(HeaderValue::from_static("0m"))
}

/// `x-envoy-expected-rq-timeout-ms`: the time the upstream has to answer.
const EXPECTED_RQ_TIMEOUT_MS: http::HeaderName =
    http::HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `grpc-timeout`.
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The timeouts Envoy's router gives a request (`FilterUtility::finalTimeout`) on a route
/// as istiod writes it: `timeout` the VirtualService's (0, none, when unset) and
/// `max_grpc_timeout` the same, so that
///
/// - a gRPC request (`content-type: application/grpc...`) is bounded by its own
///   `grpc-timeout`, capped at the route's timeout (the route's alone when the header is
///   absent, malformed or `0`);
/// - a per-try timeout not shorter than the whole timeout is dropped.
///
/// Envoy's router would also take `x-envoy-upstream-rq-timeout-ms` and
/// `x-envoy-upstream-rq-per-try-timeout-ms` from an internal request; as Istio configures
/// sidecars and gateways no application request is internal, so its connection manager
/// removes them first (mesh clients and gateways do too), and they are not read here.
///
/// [`Timeouts::write_headers`] then tells the upstream how long it has, as Envoy's
/// `setTimeoutHeaders` does on every attempt.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use mesh_core::route::Timeouts;
///
/// let grpc = |timeout: &str| {
///     let mut h = HeaderMap::new();
///     h.insert("content-type", "application/grpc".parse().unwrap());
///     h.insert("grpc-timeout", timeout.parse().unwrap());
///     h
/// };
/// let secs = |s| Some(Duration::from_secs(s));
/// // no VirtualService timeout: the caller's deadline
/// assert_eq!(Timeouts::for_request(None, None, true, &grpc("2S")).global, secs(2));
/// // the route's timeout caps it
/// assert_eq!(Timeouts::for_request(secs(1), None, true, &grpc("2S")).global, secs(1));
/// assert_eq!(Timeouts::for_request(secs(5), None, true, &grpc("2S")).global, secs(2));
/// // not gRPC: the header means nothing
/// let mut plain = HeaderMap::new();
/// plain.insert("grpc-timeout", "2S".parse().unwrap());
/// assert_eq!(Timeouts::for_request(None, None, false, &plain).global, None);
///
/// // the upstream learns its deadline
/// let mut h = grpc("2S");
/// let t = Timeouts::for_request(None, None, true, &h);
/// t.write_headers(Duration::from_millis(300), true, true, &mut h);
/// assert_eq!(h["grpc-timeout"], "1700m");
/// assert_eq!(h["x-envoy-expected-rq-timeout-ms"], "1700");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request's timeout, retries included (`None`: none).
    pub global: Option<std::time::Duration>,
    /// Each attempt's (`None`: none).
    pub per_try: Option<std::time::Duration>,
}

impl Timeouts {
    /// The timeouts of a request (its `headers`) on a route with `route_timeout` and
    /// `per_try_timeout`; `grpc`: the request is gRPC ([`is_grpc`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use mesh_core::route::Timeouts;
    ///
    /// let ms = |n| Some(Duration::from_millis(n));
    /// let t = Timeouts::for_request(ms(1000), ms(300), false, &HeaderMap::new());
    /// assert_eq!(t, Timeouts { global: ms(1000), per_try: ms(300) });
    /// // a per-try timeout not shorter than the whole one is dropped
    /// let t = Timeouts::for_request(ms(1000), ms(1000), false, &HeaderMap::new());
    /// assert_eq!(t.per_try, None);
    /// ```
    pub fn for_request(
        route_timeout: Option<std::time::Duration>,
        per_try_timeout: Option<std::time::Duration>,
        grpc: bool,
        headers: &HeaderMap,
    ) -> Timeouts {
        use std::time::Duration;
        // 0 is no timeout, as in Envoy (validation keeps it out of VirtualServices)
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let route_timeout = route_timeout.and_then(nonzero);
        let global = if grpc {
            // `max_grpc_timeout` is the route's timeout: the caller's deadline (none when
            // absent or 0), capped at the route's when that is set
            match (grpc_timeout(headers).and_then(nonzero), route_timeout) {
                (Some(g), Some(max)) => Some(g.min(max)),
                (g, max) => g.or(max),
            }
        } else {
            route_timeout
        };
        let mut per_try = per_try_timeout.and_then(nonzero);
        if let (Some(p), Some(g)) = (per_try, global)
            && p >= g
        {
            per_try = None;
        }
        Timeouts { global, per_try }
    }

    /// The time the upstream has to answer an attempt made `elapsed` after the request
    /// began (Envoy's expected timeout): the per-try timeout, else the whole one, never
    /// past what is left of the whole one (1 ms at least); `None` without a timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_core::route::Timeouts;
    ///
    /// let ms = Duration::from_millis;
    /// let t = Timeouts { global: Some(ms(1000)), per_try: Some(ms(300)) };
    /// assert_eq!(t.expected(ms(0)), Some(ms(300)));
    /// assert_eq!(t.expected(ms(800)), Some(ms(200)));
    /// assert_eq!(t.expected(ms(1200)), Some(ms(1)));
    /// assert_eq!(Timeouts::default().expected(ms(5)), None);
    /// ```
    pub fn expected(&self, elapsed: std::time::Duration) -> Option<std::time::Duration> {
        use std::time::Duration;
        let expected = self.per_try.or(self.global)?;
        let expected = u64::try_from(expected.as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(match self.global {
            Some(g) => {
                let (g, e) = (
                    u64::try_from(g.as_millis()).unwrap_or(u64::MAX),
                    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                );
                if e >= g {
                    1
                } else {
                    expected.min(g - e)
                }
            }
            None => expected,
        }))
    }

    /// Writes the attempt's deadline into its request headers, as Envoy's
    /// `setTimeoutHeaders`: `x-envoy-expected-rq-timeout-ms` (when `debug_headers`: the
    /// router's `suppress_envoy_headers` off, Istio's default) and, for a gRPC request,
    /// `grpc-timeout` (in milliseconds), both [`Timeouts::expected`]. Nothing without a
    /// timeout: the caller's `grpc-timeout` then goes on as it came.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use mesh_core::route::Timeouts;
    ///
    /// let t = Timeouts { global: Some(Duration::from_secs(2)), per_try: None };
    /// let mut h = HeaderMap::new();
    /// t.write_headers(Duration::ZERO, false, true, &mut h);
    /// assert_eq!(h["x-envoy-expected-rq-timeout-ms"], "2000");
    /// assert!(!h.contains_key("grpc-timeout")); // not a gRPC request
    /// // with Envoy's debug headers suppressed, only a gRPC request's deadline is written
    /// let mut h = HeaderMap::new();
    /// t.write_headers(Duration::ZERO, true, false, &mut h);
    /// assert_eq!(h.len(), 1);
    /// assert_eq!(h["grpc-timeout"], "2000m");
    /// ```
    pub fn write_headers(
        &self,
        elapsed: std::time::Duration,
        grpc: bool,
        debug_headers: bool,
        headers: &mut HeaderMap,
    ) {
        let Some(expected) = self.expected(elapsed) else {
            return;
        };
        if debug_headers {
            let ms = u64::try_from(expected.as_millis()).unwrap_or(u64::MAX);
            headers.insert(EXPECTED_RQ_TIMEOUT_MS, HeaderValue::from(ms));
        }
        if grpc {
            headers.insert(GRPC_TIMEOUT, grpc_timeout_value(expected));
        }
    }
}
