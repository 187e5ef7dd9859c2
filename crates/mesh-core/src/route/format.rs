//! Envoy's `%COMMAND%` substitutions in VirtualService header values.
//!
//! Istio hands `headers.request/response.set/add` values to Envoy as they are, and Envoy
//! expands command operators in them per request: `%DOWNSTREAM_REMOTE_ADDRESS%`,
//! `%REQ(x-user)%`, `%START_TIME(%s)%`, … (`%%` is a literal `%`). The operators supported
//! here are those with a meaning in-process ([`HeaderVar`]); a value is computed from a
//! [`HeaderContext`] the caller fills, and an operator whose value is unknown expands to
//! nothing (Envoy's `-` placeholder is for access logs; a header whose value comes out
//! empty is not written, as Envoy does).
//!
//! # Examples
//!
//! ```
//! use mesh_core::route::{HeaderContext, HeaderTemplate};
//!
//! let t = HeaderTemplate::parse("client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%%").unwrap();
//! let cx = HeaderContext {
//!     downstream_remote: Some("10.0.0.7:51234".parse().unwrap()),
//!     ..Default::default()
//! };
//! assert_eq!(t.render(&cx), "client=10.0.0.7 100%");
//! assert_eq!(HeaderTemplate::parse("%NOPE%").unwrap_err(), "Not supported field in StreamInfo: NOPE");
//! ```

use std::net::SocketAddr;
use std::time::SystemTime;

use http::header::HeaderName;
use http::HeaderMap;

/// A command operator Envoy expands in a header value.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HeaderContext, HeaderTemplate};
///
/// // %ENVIRONMENT(NAME)% reads this process's environment
/// let t = HeaderTemplate::parse("%ENVIRONMENT(PATH)%").unwrap();
/// assert_eq!(t.render(&HeaderContext::default()), std::env::var("PATH").unwrap_or_default());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderVar {
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`: the client's address and port.
    DownstreamRemoteAddress,
    /// `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    DownstreamRemoteAddressWithoutPort,
    /// `%DOWNSTREAM_REMOTE_PORT%`.
    DownstreamRemotePort,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`: the address the request came in on.
    DownstreamLocalAddress,
    /// `%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%`.
    DownstreamLocalAddressWithoutPort,
    /// `%DOWNSTREAM_LOCAL_PORT%`.
    DownstreamLocalPort,
    /// `%UPSTREAM_REMOTE_ADDRESS%`: the address of the upstream connection the answer came
    /// on. Known only in response headers (Envoy evaluates request headers before it picks
    /// a host) and only when a connection was made (not after a connect failure).
    UpstreamRemoteAddress,
    /// `%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`.
    UpstreamRemoteAddressWithoutPort,
    /// `%UPSTREAM_REMOTE_PORT%`.
    UpstreamRemotePort,
    /// `%UPSTREAM_HOST%`: the endpoint the router picked, even when connecting to it
    /// failed (response headers only).
    UpstreamHost,
    /// `%HOSTNAME%`: the host's name.
    Hostname,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
    Protocol,
    /// `%START_TIME%` or `%START_TIME(format)%` (strftime-like: `%Y %m %d %H %M %S %s`,
    /// `%E3S`/`%E6S`/`%E9S` seconds with fractions, `%f` nine fraction digits, `%%`).
    StartTime(Option<Box<str>>),
    /// `%REQ(name)%` or `%REQ(name?alternative)%`: a request header's value.
    Req(HeaderName, Option<HeaderName>),
    /// `%RESP(name)%` or `%RESP(name?alternative)%`: a response header's value.
    Resp(HeaderName, Option<HeaderName>),
    /// `%ENVIRONMENT(NAME)%`: an environment variable of this process.
    Environment(Box<str>),
    /// `%DOWNSTREAM_PEER_URI_SAN%`: the client certificate's URI SANs, `,`-separated (a
    /// gateway's MUTUAL / OPTIONAL_MUTUAL listener).
    DownstreamPeerUriSan,
    /// `%DOWNSTREAM_LOCAL_URI_SAN%`: the URI SANs of the certificate this side presented
    /// to the client, `,`-separated.
    DownstreamLocalUriSan,
    /// `%DOWNSTREAM_PEER_SUBJECT%`: the client certificate's subject, RFC 2253 form
    /// (`CN=client,O=example`).
    DownstreamPeerSubject,
    /// `%REQUESTED_SERVER_NAME%`: the TLS SNI the client sent.
    RequestedServerName,
    /// `%UPSTREAM_CLUSTER%`: Istio's cluster name, `outbound|9080|v1|reviews.default.svc.cluster.local`.
    UpstreamCluster,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<str>),
    Var(HeaderVar, Option<usize>),
}

/// A header value with command operators, parsed once ([`HeaderTemplate::parse`]).
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HeaderContext, HeaderTemplate};
///
/// let t = HeaderTemplate::parse("%UPSTREAM_CLUSTER%").unwrap();
/// let cx = HeaderContext { upstream_cluster: Some("outbound|9080|v1|reviews.default.svc.cluster.local"), ..Default::default() };
/// assert_eq!(t.render(&cx), "outbound|9080|v1|reviews.default.svc.cluster.local");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    parts: Box<[Part]>,
}

/// What the command operators of a header value are computed from; unknown fields leave
/// their operators empty.
///
/// # Examples
///
/// ```
/// use mesh_core::route::{HeaderContext, HeaderTemplate};
///
/// let mut req = http::HeaderMap::new();
/// req.insert("x-user", "jason".parse().unwrap());
/// let cx = HeaderContext { request_headers: Some(&req), protocol: Some("HTTP/1.1"), ..Default::default() };
/// assert_eq!(HeaderTemplate::parse("%REQ(X-USER)% over %PROTOCOL%").unwrap().render(&cx), "jason over HTTP/1.1");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HeaderContext<'a> {
    /// The client's address (a gateway's downstream; a mesh client's own workload).
    pub downstream_remote: Option<SocketAddr>,
    /// The address the request came in on.
    pub downstream_local: Option<SocketAddr>,
    /// The address of the upstream connection the answer came on.
    pub upstream_remote: Option<SocketAddr>,
    /// The endpoint the router picked (`%UPSTREAM_HOST%`).
    pub upstream_host: Option<SocketAddr>,
    /// This host's name.
    pub hostname: Option<&'a str>,
    /// The request's protocol (`HTTP/1.1`).
    pub protocol: Option<&'a str>,
    /// When the request started (`None`: now).
    pub start_time: Option<SystemTime>,
    /// The request's headers, for `%REQ()%`.
    pub request_headers: Option<&'a HeaderMap>,
    /// The response's headers, for `%RESP()%`.
    pub response_headers: Option<&'a HeaderMap>,
    /// The client certificate's URI SANs, `,`-separated.
    pub downstream_peer_uri_san: Option<&'a str>,
    /// The URI SANs of our certificate on the downstream connection, `,`-separated.
    pub downstream_local_uri_san: Option<&'a str>,
    /// The client certificate's subject (RFC 2253).
    pub downstream_peer_subject: Option<&'a str>,
    /// The TLS SNI.
    pub requested_server_name: Option<&'a str>,
    /// Istio's name of the destination cluster.
    pub upstream_cluster: Option<&'a str>,
}

impl HeaderTemplate {
    /// Parses a header value; `Ok(None)`-like literal values are templates without
    /// operators ([`HeaderTemplate::literal`]). Errors are Envoy's messages for a value it
    /// would reject (an unknown operator, a bad argument).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HeaderTemplate;
    ///
    /// assert_eq!(HeaderTemplate::parse("50%% off").unwrap().literal(), Some("50% off".to_owned()));
    /// assert_eq!(HeaderTemplate::parse("%HOSTNAME%").unwrap().literal(), None);
    /// assert!(HeaderTemplate::parse("%REQ()%").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<HeaderTemplate, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = value;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(r) = after.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            // the operator runs to the next `%` outside its parentheses
            let end = operator_end(after).ok_or_else(|| {
                format!("Invalid header configuration. Un-terminated variable expression '{after}'")
            })?;
            let (var, max) = parse_operator(&after[..end])?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit).into()));
            }
            parts.push(Part::Var(var, max));
            rest = &after[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit.into()));
        }
        Ok(HeaderTemplate {
            parts: parts.into(),
        })
    }

    /// The value when it has no operators (`%%` unescaped).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HeaderTemplate;
    ///
    /// assert_eq!(HeaderTemplate::parse("v2").unwrap().literal().as_deref(), Some("v2"));
    /// assert_eq!(HeaderTemplate::parse("%PROTOCOL%").unwrap().literal(), None);
    /// ```
    pub fn literal(&self) -> Option<String> {
        match &*self.parts {
            [] => Some(String::new()),
            [Part::Lit(s)] => Some(s.to_string()),
            _ => None,
        }
    }

    /// The value for a request.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use mesh_core::route::{HeaderContext, HeaderTemplate};
    ///
    /// let cx = HeaderContext {
    ///     start_time: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
    ///     ..Default::default()
    /// };
    /// let t = HeaderTemplate::parse("%START_TIME%").unwrap();
    /// assert_eq!(t.render(&cx), "2023-11-14T22:13:20.123Z");
    /// let t = HeaderTemplate::parse("%START_TIME(%s)%").unwrap();
    /// assert_eq!(t.render(&cx), "1700000000");
    /// ```
    pub fn render(&self, cx: &HeaderContext<'_>) -> String {
        let mut out = String::new();
        for p in self.parts.iter() {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v, max) => {
                    let start = out.len();
                    render_var(v, cx, &mut out);
                    if let Some(max) = *max {
                        truncate_at(&mut out, start + max);
                    }
                }
            }
        }
        out
    }
}

fn truncate_at(s: &mut String, mut at: usize) {
    if at >= s.len() {
        return;
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
}

/// Where an operator's closing `%` is, skipping `%` inside its parentheses (`s` starts
/// after the opening `%`). Also used by VirtualService validation.
pub(crate) fn operator_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '%' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_operator(op: &str) -> Result<(HeaderVar, Option<usize>), String> {
    // NAME, NAME(arg), NAME(arg):max
    let (head, max) = match op.rfind(')') {
        Some(close) => {
            let (h, tail) = op.split_at(close + 1);
            match tail.strip_prefix(':') {
                Some(n) => (h, Some(n)),
                None if tail.is_empty() => (h, None),
                None => return Err(format!("Incorrect position of ')' in {op}")),
            }
        }
        None => (op, None),
    };
    let max = match max {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| format!("Length must be an integer, given: {n}"))?,
        ),
        None => None,
    };
    let (name, arg) = match head.split_once('(') {
        Some((n, a)) => (
            n,
            Some(
                a.strip_suffix(')')
                    .ok_or_else(|| format!("Closing bracket is missing in {op}"))?,
            ),
        ),
        None => (head, None),
    };
    let header = |a: Option<&str>| -> Result<(HeaderName, Option<HeaderName>), String> {
        let a = a.filter(|a| !a.is_empty()).ok_or_else(|| {
            format!("Invalid header configuration. Expected format {name}(<main_header>?<alternative_header>)")
        })?;
        let (main, alt) = match a.split_once('?') {
            Some((m, alt)) => (m, Some(alt)),
            None => (a, None),
        };
        let hn = |s: &str| {
            HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes()).map_err(|_| {
                format!(
                    "Invalid header configuration. Format string contains invalid header name {s}"
                )
            })
        };
        Ok((hn(main)?, alt.map(hn).transpose()?))
    };
    let no_arg = |v: HeaderVar| match arg {
        None => Ok(v),
        Some(_) => Err(format!("{name} does not take parameters")),
    };
    let var = match name {
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(HeaderVar::DownstreamRemoteAddress)?,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(HeaderVar::DownstreamRemoteAddressWithoutPort)?
        }
        "DOWNSTREAM_REMOTE_PORT" => no_arg(HeaderVar::DownstreamRemotePort)?,
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(HeaderVar::DownstreamLocalAddress)?,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
            no_arg(HeaderVar::DownstreamLocalAddressWithoutPort)?
        }
        "DOWNSTREAM_LOCAL_PORT" => no_arg(HeaderVar::DownstreamLocalPort)?,
        "UPSTREAM_REMOTE_ADDRESS" => no_arg(HeaderVar::UpstreamRemoteAddress)?,
        "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(HeaderVar::UpstreamRemoteAddressWithoutPort)?
        }
        "UPSTREAM_REMOTE_PORT" => no_arg(HeaderVar::UpstreamRemotePort)?,
        "UPSTREAM_HOST" => no_arg(HeaderVar::UpstreamHost)?,
        "HOSTNAME" => no_arg(HeaderVar::Hostname)?,
        "PROTOCOL" => no_arg(HeaderVar::Protocol)?,
        "DOWNSTREAM_PEER_URI_SAN" => no_arg(HeaderVar::DownstreamPeerUriSan)?,
        "DOWNSTREAM_LOCAL_URI_SAN" => no_arg(HeaderVar::DownstreamLocalUriSan)?,
        "DOWNSTREAM_PEER_SUBJECT" => no_arg(HeaderVar::DownstreamPeerSubject)?,
        "REQUESTED_SERVER_NAME" => no_arg(HeaderVar::RequestedServerName)?,
        // (no `alt_stat_name` here: the raw name is the name)
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => no_arg(HeaderVar::UpstreamCluster)?,
        "START_TIME" => HeaderVar::StartTime(arg.filter(|a| !a.is_empty()).map(Into::into)),
        "REQ" => {
            let (m, a) = header(arg)?;
            HeaderVar::Req(m, a)
        }
        "RESP" => {
            let (m, a) = header(arg)?;
            HeaderVar::Resp(m, a)
        }
        "ENVIRONMENT" => HeaderVar::Environment(
            arg.filter(|a| !a.is_empty())
                .ok_or("ENVIRONMENT requires parameters")?
                .into(),
        ),
        other => return Err(format!("Not supported field in StreamInfo: {other}")),
    };
    Ok((var, max))
}

fn addr_without_port(a: SocketAddr) -> String {
    a.ip().to_string()
}

fn header_value(
    h: Option<&HeaderMap>,
    main: &HeaderName,
    alt: &Option<HeaderName>,
) -> Option<String> {
    let h = h?;
    let v = h
        .get(main)
        .or_else(|| alt.as_ref().and_then(|a| h.get(a)))?;
    Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn render_var(v: &HeaderVar, cx: &HeaderContext<'_>, out: &mut String) {
    use std::fmt::Write as _;
    let _ = match v {
        HeaderVar::DownstreamRemoteAddress => cx.downstream_remote.map(|a| write!(out, "{a}")),
        HeaderVar::DownstreamRemoteAddressWithoutPort => cx
            .downstream_remote
            .map(|a| out.push_str(&addr_without_port(a)))
            .map(Ok),
        HeaderVar::DownstreamRemotePort => {
            cx.downstream_remote.map(|a| write!(out, "{}", a.port()))
        }
        HeaderVar::DownstreamLocalAddress => cx.downstream_local.map(|a| write!(out, "{a}")),
        HeaderVar::DownstreamLocalAddressWithoutPort => cx
            .downstream_local
            .map(|a| out.push_str(&addr_without_port(a)))
            .map(Ok),
        HeaderVar::DownstreamLocalPort => cx.downstream_local.map(|a| write!(out, "{}", a.port())),
        HeaderVar::UpstreamRemoteAddress => cx.upstream_remote.map(|a| write!(out, "{a}")),
        HeaderVar::UpstreamRemoteAddressWithoutPort => cx
            .upstream_remote
            .map(|a| out.push_str(&addr_without_port(a)))
            .map(Ok),
        HeaderVar::UpstreamRemotePort => cx.upstream_remote.map(|a| write!(out, "{}", a.port())),
        HeaderVar::UpstreamHost => cx.upstream_host.map(|a| write!(out, "{a}")),
        HeaderVar::Hostname => cx.hostname.map(|h| out.push_str(h)).map(Ok),
        HeaderVar::Protocol => cx.protocol.map(|p| out.push_str(p)).map(Ok),
        HeaderVar::DownstreamPeerUriSan => {
            cx.downstream_peer_uri_san.map(|p| out.push_str(p)).map(Ok)
        }
        HeaderVar::DownstreamLocalUriSan => {
            cx.downstream_local_uri_san.map(|p| out.push_str(p)).map(Ok)
        }
        HeaderVar::DownstreamPeerSubject => {
            cx.downstream_peer_subject.map(|p| out.push_str(p)).map(Ok)
        }
        HeaderVar::RequestedServerName => cx.requested_server_name.map(|p| out.push_str(p)).map(Ok),
        HeaderVar::UpstreamCluster => cx.upstream_cluster.map(|p| out.push_str(p)).map(Ok),
        HeaderVar::StartTime(fmt) => {
            let t = cx.start_time.unwrap_or_else(SystemTime::now);
            format_time(t, fmt.as_deref(), out);
            None
        }
        HeaderVar::Req(m, a) => header_value(cx.request_headers, m, a)
            .map(|v| out.push_str(&v))
            .map(Ok),
        HeaderVar::Resp(m, a) => header_value(cx.response_headers, m, a)
            .map(|v| out.push_str(&v))
            .map(Ok),
        HeaderVar::Environment(name) => std::env::var(&**name)
            .ok()
            .map(|v| out.push_str(&v))
            .map(Ok),
    };
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Envoy's start-time formatting: the default is `%Y-%m-%dT%H:%M:%E3SZ` (UTC).
fn format_time(t: SystemTime, fmt: Option<&str>, out: &mut String) {
    use std::fmt::Write as _;
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let nanos = since.subsec_nanos();
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let fmt = fmt.unwrap_or("%Y-%m-%dT%H:%M:%E3SZ");
    let mut it = fmt.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match it.next() {
            Some('Y') => write!(out, "{y:04}"),
            Some('m') => write!(out, "{mo:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('H') => write!(out, "{h:02}"),
            Some('M') => write!(out, "{mi:02}"),
            Some('S') => write!(out, "{s:02}"),
            Some('s') => write!(out, "{secs}"),
            Some('f') => write!(out, "{nanos:09}"),
            Some('%') => write!(out, "%"),
            Some('E') => {
                // %E3S, %E6S, %E9S: seconds with 3, 6 or 9 fraction digits
                let digits = it.next().and_then(|n| n.to_digit(10)).unwrap_or(0) as usize;
                if it.peek() == Some(&'S') {
                    it.next();
                }
                let frac = format!("{nanos:09}");
                write!(out, "{s:02}.{}", &frac[..digits.min(9)])
            }
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn operators_and_literals() {
        let t = HeaderTemplate::parse("a%%b%DOWNSTREAM_REMOTE_PORT%c").unwrap();
        let cx = HeaderContext {
            downstream_remote: Some("[::1]:8080".parse().unwrap()),
            downstream_local: Some("10.1.2.3:443".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(t.render(&cx), "a%b8080c");
        let all = HeaderTemplate::parse(
            "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%:%DOWNSTREAM_LOCAL_PORT%",
        )
        .unwrap();
        assert_eq!(all.render(&cx), "[::1]:8080 ::1 10.1.2.3:443");
        // unknown values expand to nothing
        assert_eq!(
            HeaderTemplate::parse("x%HOSTNAME%y")
                .unwrap()
                .render(&HeaderContext::default()),
            "xy"
        );
    }

    #[test]
    fn upstream_and_certificate_operators() {
        let t = HeaderTemplate::parse(
            "%UPSTREAM_REMOTE_ADDRESS%|%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|%UPSTREAM_REMOTE_PORT%|%UPSTREAM_HOST%",
        )
        .unwrap();
        let cx = HeaderContext {
            upstream_remote: Some("10.0.0.7:9080".parse().unwrap()),
            upstream_host: Some("10.0.0.7:9080".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(t.render(&cx), "10.0.0.7:9080|10.0.0.7|9080|10.0.0.7:9080");
        // a connect failure: the host was picked, no connection was made
        let failed = HeaderContext {
            upstream_host: Some("10.0.0.7:9080".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(t.render(&failed), "|||10.0.0.7:9080");
        let t = HeaderTemplate::parse(
            "%DOWNSTREAM_PEER_URI_SAN%;%DOWNSTREAM_LOCAL_URI_SAN%;%DOWNSTREAM_PEER_SUBJECT%",
        )
        .unwrap();
        let cx = HeaderContext {
            downstream_peer_uri_san: Some("spiffe://cluster.local/ns/a/sa/b"),
            downstream_local_uri_san: Some("spiffe://cluster.local/ns/istio-system/sa/gw"),
            downstream_peer_subject: Some("CN=client,O=example"),
            ..Default::default()
        };
        assert_eq!(
            t.render(&cx),
            "spiffe://cluster.local/ns/a/sa/b;spiffe://cluster.local/ns/istio-system/sa/gw;CN=client,O=example"
        );
        assert_eq!(t.render(&HeaderContext::default()), ";;");
        assert!(HeaderTemplate::parse("%UPSTREAM_HOST(x)%").is_err());
    }

    #[test]
    fn req_with_alternative_and_max_length() {
        let mut h = HeaderMap::new();
        h.insert("x-b", "bravo".parse().unwrap());
        let cx = HeaderContext {
            request_headers: Some(&h),
            ..Default::default()
        };
        assert_eq!(
            HeaderTemplate::parse("%REQ(x-a?X-B)%").unwrap().render(&cx),
            "bravo"
        );
        assert_eq!(
            HeaderTemplate::parse("%REQ(x-b):3%").unwrap().render(&cx),
            "bra"
        );
        assert_eq!(
            HeaderTemplate::parse("[%REQ(x-a)%]").unwrap().render(&cx),
            "[]"
        );
    }

    #[test]
    fn errors_are_envoys() {
        for (v, e) in [
            ("%FOO%", "Not supported field in StreamInfo: FOO"),
            ("%HOSTNAME", "Un-terminated variable expression"),
            ("%REQ()%", "Expected format REQ"),
            ("%HOSTNAME(x)%", "does not take parameters"),
            ("%REQ(a):x%", "Length must be an integer"),
        ] {
            let err = HeaderTemplate::parse(v).unwrap_err();
            assert!(err.contains(e), "{v}: {err}");
        }
    }

    #[test]
    fn start_time_formats() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(951_782_400 + 3661, 5_000_000); // 2000-02-29 01:01:01.005
        let cx = HeaderContext {
            start_time: Some(t),
            ..Default::default()
        };
        let r = |f: &str| HeaderTemplate::parse(f).unwrap().render(&cx);
        assert_eq!(r("%START_TIME%"), "2000-02-29T01:01:01.005Z");
        assert_eq!(
            r("%START_TIME(%Y/%m/%d %H:%M:%E6S)%"),
            "2000/02/29 01:01:01.005000"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
