//! Request hash keys for consistent-hash load balancing (DestinationRule
//! `loadBalancer.consistentHash`): header, cookie, query parameter or source IP, hashed with
//! xxHash64 as Envoy's `HashPolicy` does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, COOKIE};
use http::{HeaderMap, Uri};
use xxhash_rust::xxh64::xxh64;

/// What a consistent-hash policy hashes (Istio's `consistentHash` hash key).
///
/// # Examples
///
/// ```
/// use http::{HeaderMap, Uri};
/// use mesh_tower::lb::{ConnectionAddrs, HashKey};
///
/// // consistentHash: {httpQueryParameterName: user}
/// let key = HashKey::QueryParameter("user".into());
/// let headers = HeaderMap::new();
/// let conn = ConnectionAddrs::default();
/// let jason = key.hash(&headers, &Uri::from_static("/api?user=jason"), conn);
/// let again = key.hash(&headers, &Uri::from_static("/other?page=2&user=jason"), conn);
/// assert!(jason.hash.is_some());
/// assert_eq!(jason.hash, again.hash);
/// // No such parameter: no hash, the balancer picks at random.
/// assert_eq!(key.hash(&headers, &Uri::from_static("/api"), conn).hash, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// `httpHeaderName`: the value of this header (all values, order-independent).
    Header(HeaderName),
    /// `httpCookie`: the value of this cookie; generated when absent if `ttl` is set.
    Cookie(CookieKey),
    /// `useSourceIp`: the client's IP address.
    SourceIp,
    /// `httpQueryParameterName`: the value of this query parameter (first occurrence).
    QueryParameter(String),
    /// `httpHeaderName: ":authority"`: the request's host (Envoy's header hash reads
    /// pseudo-headers as any other).
    Authority,
    /// `httpHeaderName: ":path"`: the request's path and query.
    Path,
}

/// Istio's `httpCookie {name, path, ttl, attributes}`.
///
/// # Examples
///
/// `consistentHash: {httpCookie: {name: session, path: /, ttl: 3600s}}`: a request without
/// the cookie gets one generated, returned as a `Set-Cookie` value.
///
/// ```
/// use std::time::Duration;
/// use http::{HeaderMap, Uri};
/// use mesh_tower::lb::{ConnectionAddrs, CookieKey, HashKey};
///
/// let key = HashKey::Cookie(CookieKey {
///     name: "session".into(),
///     path: "/".into(),
///     ttl: Some(Duration::from_secs(3600)),
///     attributes: Vec::new(),
/// });
/// let conn = ConnectionAddrs {
///     remote: Some("10.1.2.3:40000".parse().unwrap()),
///     local: Some("10.0.0.1:8080".parse().unwrap()),
/// };
/// let first = key.hash(&HeaderMap::new(), &Uri::from_static("/"), conn);
/// let set_cookie = first.set_cookie.unwrap();
/// let set_cookie = set_cookie.to_str().unwrap();
/// assert!(set_cookie.starts_with("session=\""));
/// assert!(set_cookie.ends_with("\"; Max-Age=3600; Path=/; HttpOnly"));
///
/// // The client sends it back: same hash, no new cookie.
/// let value = set_cookie.split(';').next().unwrap();
/// let mut headers = HeaderMap::new();
/// headers.insert("cookie", value.parse().unwrap());
/// let next = key.hash(&headers, &Uri::from_static("/"), conn);
/// assert_eq!(next.hash, first.hash);
/// assert_eq!(next.set_cookie, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieKey {
    /// Cookie name (required).
    pub name: String,
    /// `Path` attribute of a generated cookie (omitted when empty).
    pub path: String,
    /// `None`: never generate a cookie; `Some(0s)`: generate a session cookie; otherwise a
    /// cookie with `Max-Age` in whole seconds.
    pub ttl: Option<Duration>,
    /// Extra attributes of a generated cookie (`name` or `name=value`).
    pub attributes: Vec<(String, String)>,
}

/// The addresses of the connection a request came in on (source IP, generated cookies).
///
/// # Examples
///
/// `consistentHash: {useSourceIp: true}` hashes the remote IP, not the port:
///
/// ```
/// use http::{HeaderMap, Uri};
/// use mesh_tower::lb::{ConnectionAddrs, HashKey};
///
/// let from = |remote: &str| ConnectionAddrs { remote: Some(remote.parse().unwrap()), local: None };
/// let hash = |conn| HashKey::SourceIp.hash(&HeaderMap::new(), &Uri::from_static("/"), conn).hash;
/// assert_eq!(hash(from("10.1.2.3:40000")), hash(from("10.1.2.3:40001")));
/// assert_ne!(hash(from("10.1.2.3:40000")), hash(from("10.1.2.4:40000")));
/// assert_eq!(hash(ConnectionAddrs::default()), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionAddrs {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// Our own address on that connection.
    pub local: Option<SocketAddr>,
}

/// The result of hashing a request.
///
/// # Examples
///
/// Header values hash the same in any order:
///
/// ```
/// use http::{HeaderMap, HeaderName, Uri};
/// use mesh_tower::lb::{ConnectionAddrs, HashKey, RequestHash};
///
/// let key = HashKey::Header(HeaderName::from_static("x-user"));
/// let mut ab = HeaderMap::new();
/// ab.append("x-user", "a".parse().unwrap());
/// ab.append("x-user", "b".parse().unwrap());
/// let mut ba = HeaderMap::new();
/// ba.append("x-user", "b".parse().unwrap());
/// ba.append("x-user", "a".parse().unwrap());
///
/// let uri = Uri::from_static("/");
/// let RequestHash { hash, set_cookie } = key.hash(&ab, &uri, ConnectionAddrs::default());
/// assert_eq!(hash, key.hash(&ba, &uri, ConnectionAddrs::default()).hash);
/// assert!(hash.is_some() && set_cookie.is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestHash {
    /// The hash, or `None` when the key is absent (the balancer then picks at random, as
    /// Envoy does).
    pub hash: Option<u64>,
    /// A `Set-Cookie` value to add to the response when a cookie was generated.
    pub set_cookie: Option<HeaderValue>,
}

impl HashKey {
    /// Hashes a request. Allocation-free except when several header values must be sorted
    /// or a cookie is generated.
    ///
    /// # Examples
    ///
    /// A cookie value is hashed as Envoy hashes it (xxHash64, seed 0), so the same session picks
    /// the same endpoint as a sidecar would:
    ///
    /// ```
    /// use http::{HeaderMap, Uri};
    /// use mesh_tower::lb::{ConnectionAddrs, CookieKey, HashKey};
    /// use xxhash_rust::xxh64::xxh64;
    ///
    /// let key = HashKey::Cookie(CookieKey { name: "session".into(), path: String::new(), ttl: None, attributes: Vec::new() });
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cookie", "theme=dark; session=abc123".parse().unwrap());
    /// let h = key.hash(&headers, &Uri::from_static("/"), ConnectionAddrs::default());
    /// assert_eq!(h.hash, Some(xxh64(b"abc123", 0)));
    /// // No cookie and no `ttl`: nothing to hash, no cookie generated.
    /// let none = key.hash(&HeaderMap::new(), &Uri::from_static("/"), ConnectionAddrs::default());
    /// assert_eq!((none.hash, none.set_cookie), (None, None));
    /// ```
    pub fn hash(&self, headers: &HeaderMap, uri: &Uri, conn: ConnectionAddrs) -> RequestHash {
        match self {
            HashKey::Header(name) => RequestHash {
                hash: hash_header(headers, name),
                set_cookie: None,
            },
            HashKey::Cookie(cookie) => match cookie_value(headers, &cookie.name) {
                Some(v) => RequestHash {
                    hash: Some(xxh64(v.as_bytes(), 0)),
                    set_cookie: None,
                },
                None => match cookie.ttl {
                    Some(ttl) => {
                        let value = generated_cookie_value(conn);
                        let set_cookie = make_set_cookie(cookie, &value, ttl);
                        RequestHash {
                            hash: Some(xxh64(value.as_bytes(), 0)),
                            set_cookie,
                        }
                    }
                    None => RequestHash::default(),
                },
            },
            HashKey::SourceIp => RequestHash {
                hash: conn.remote.map(|a| hash_ip(a.ip())),
                set_cookie: None,
            },
            HashKey::QueryParameter(name) => RequestHash {
                hash: query_param(uri, name).map(|v| xxh64(v.as_bytes(), 0)),
                set_cookie: None,
            },
            HashKey::Authority => RequestHash {
                hash: headers
                    .get(http::header::HOST)
                    .map(HeaderValue::as_bytes)
                    .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()))
                    .map(|v| xxh64(v, 0)),
                set_cookie: None,
            },
            HashKey::Path => RequestHash {
                hash: uri
                    .path_and_query()
                    .map(|p| xxh64(p.as_str().as_bytes(), 0)),
                set_cookie: None,
            },
        }
    }
}

fn hash_ip(ip: IpAddr) -> u64 {
    // Envoy hashes the address string; format into a stack buffer.
    let mut buf = [0u8; 48];
    let len = {
        use std::io::Write;
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cursor, "{ip}");
        cursor.position() as usize
    };
    xxh64(&buf[..len], 0)
}

fn hash_header(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(xxh64(first.as_bytes(), 0));
    };
    // Several values: sorted so the order does not matter, hashed as one stream (Envoy's
    // `HashUtil::xxHash64` of a span: the values' concatenation, seed 0)
    let mut all: Vec<&[u8]> = vec![first.as_bytes(), second.as_bytes()];
    all.extend(values.map(HeaderValue::as_bytes));
    all.sort_unstable();
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for v in all {
        h.update(v);
    }
    Some(h.digest())
}

/// The value of cookie `name` in the request's `cookie` headers, without surrounding quotes.
///
/// # Examples
///
/// ```
/// use http::HeaderMap;
/// use mesh_tower::lb::cookie_value;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("cookie", "theme=dark; session=\"abc123\"".parse().unwrap());
/// assert_eq!(cookie_value(&headers, "session"), Some("abc123"));
/// assert_eq!(cookie_value(&headers, "theme"), Some("dark"));
/// assert_eq!(cookie_value(&headers, "user"), None);
/// ```
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for header in headers.get_all(COOKIE) {
        let Ok(s) = header.to_str() else { continue };
        for pair in s.split(';') {
            let pair = pair.trim_start_matches(' ');
            if let Some((k, v)) = pair.split_once('=')
                && k.trim() == name
            {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v);
                if v.is_empty() {
                    return None;
                }
                return Some(v);
            }
        }
    }
    None
}

/// The value of query parameter `name` (first occurrence, not percent-decoded).
///
/// # Examples
///
/// ```
/// use http::Uri;
/// use mesh_tower::lb::query_param;
///
/// let uri = Uri::from_static("/search?q=a%20b&user=jason&user=other&flag");
/// assert_eq!(query_param(&uri, "user"), Some("jason"));
/// assert_eq!(query_param(&uri, "q"), Some("a%20b"));
/// assert_eq!(query_param(&uri, "flag"), Some(""));
/// assert_eq!(query_param(&uri, "page"), None);
/// ```
pub fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    let query = uri.query()?;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return Some(v);
        }
    }
    None
}

/// Envoy's generated cookie value (router `addDownstreamSetCookie`): hex of xxHash64 over
/// the downstream connection's remote and local addresses, so every request on one
/// connection gets the same cookie and clients on distinct connections distinct ones.
///
/// Without a downstream connection (a mesh client's own requests: its `remote` is the
/// workload's address with port 0, or none) Envoy's formula would give every user the same
/// value (the hash of nothing); each generated cookie gets a random value instead, so two
/// users never share one.
fn generated_cookie_value(conn: ConnectionAddrs) -> String {
    let hash = match conn.remote {
        Some(r) if r.port() != 0 => {
            use std::fmt::Write;
            let mut seed = String::with_capacity(64);
            let _ = write!(seed, "{r}");
            if let Some(l) = conn.local {
                let _ = write!(seed, "{l}");
            }
            xxh64(seed.as_bytes(), 0)
        }
        _ => rand::random::<u64>(),
    };
    format!("{hash:016x}")
}

/// Envoy's `makeSetCookieValue`: `name="value"; Max-Age=N; Path=p; attrs; HttpOnly`.
fn make_set_cookie(cookie: &CookieKey, value: &str, ttl: Duration) -> Option<HeaderValue> {
    let mut s = format!("{}=\"{}\"", cookie.name, value);
    if ttl.as_secs() != 0 {
        s.push_str(&format!("; Max-Age={}", ttl.as_secs()));
    }
    if !cookie.path.is_empty() {
        s.push_str("; Path=");
        s.push_str(&cookie.path);
    }
    for (name, value) in &cookie.attributes {
        s.push_str("; ");
        s.push_str(name);
        if !value.is_empty() {
            s.push('=');
            s.push_str(value);
        }
    }
    s.push_str("; HttpOnly");
    HeaderValue::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    proptest::proptest! {
        #[test]
        fn hashing_never_panics(cookie in ".{0,60}", query in "[ -~]{0,60}", name in "[a-z_]{1,8}") {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.insert(COOKIE, v);
            }
            let uri: Uri = match format!("/p?{}", query.replace(['#', ' '], "")).parse() {
                Ok(u) => u,
                Err(_) => "/".parse().unwrap(),
            };
            let conn = ConnectionAddrs { remote: Some("[::1]:1".parse().unwrap()), local: None };
            for key in [
                HashKey::Cookie(CookieKey { name: name.clone(), path: "/".into(), ttl: Some(Duration::from_secs(1)), attributes: vec![] }),
                HashKey::QueryParameter(name.clone()),
                HashKey::SourceIp,
                HashKey::Header(HeaderName::from_static("cookie")),
            ] {
                let _ = key.hash(&h, &uri, conn);
            }
        }
    }

    #[test]
    fn cookie_value_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("cookie", "a=1; user=jason; b=2")], "user", Some("jason")),
            (&[("cookie", "user=\"quoted\"")], "user", Some("quoted")),
            (
                &[("cookie", "a=1"), ("cookie", "user=x")],
                "user",
                Some("x"),
            ),
            (&[("cookie", "username=x")], "user", None),
            (&[("cookie", "user=")], "user", None),
            (&[], "user", None),
        ];
        for (h, name, want) in cases {
            assert_eq!(cookie_value(&headers(h), name), *want, "{h:?}");
        }
    }

    #[test]
    fn query_param_table() {
        let cases = [
            ("/p?user=jason&x=1", "user", Some("jason")),
            ("/p?x=1&user=a&user=b", "user", Some("a")),
            ("/p?user", "user", Some("")),
            ("/p?username=x", "user", None),
            ("/p", "user", None),
        ];
        for (uri, name, want) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(query_param(&uri, name), want, "{uri}");
        }
    }

    #[test]
    fn header_hash_is_stable_and_order_independent() {
        let key = HashKey::Header(HeaderName::from_static("end-user"));
        let uri: Uri = "/".parse().unwrap();
        let conn = ConnectionAddrs::default();
        let a = key.hash(&headers(&[("end-user", "jason")]), &uri, conn);
        let b = key.hash(&headers(&[("end-user", "jason")]), &uri, conn);
        assert_eq!(a.hash, Some(xxh64(b"jason", 0)));
        assert_eq!(a, b);
        let c = key.hash(
            &headers(&[("end-user", "x"), ("end-user", "y")]),
            &uri,
            conn,
        );
        let d = key.hash(
            &headers(&[("end-user", "y"), ("end-user", "x")]),
            &uri,
            conn,
        );
        assert_eq!(c, d);
        // Envoy: the sorted values hashed as one stream, their concatenation
        assert_eq!(c.hash, Some(xxh64(b"xy", 0)));
        assert_eq!(key.hash(&headers(&[]), &uri, conn).hash, None);
    }

    #[test]
    fn pseudo_header_keys_hash_the_authority_and_the_path() {
        let conn = ConnectionAddrs::default();
        let uri: Uri = "http://reviews:9080/r/1?u=2".parse().unwrap();
        let h = HashKey::Authority.hash(&headers(&[]), &uri, conn).hash;
        assert_eq!(h, Some(xxh64(b"reviews:9080", 0)));
        let h = HashKey::Authority
            .hash(&headers(&[("host", "reviews")]), &uri, conn)
            .hash;
        assert_eq!(h, Some(xxh64(b"reviews", 0)));
        let h = HashKey::Path.hash(&headers(&[]), &uri, conn).hash;
        assert_eq!(h, Some(xxh64(b"/r/1?u=2", 0)));
    }

    #[test]
    fn source_ip_hash_ignores_port() {
        let uri: Uri = "/".parse().unwrap();
        let h = HeaderMap::new();
        let at = |s: &str| ConnectionAddrs {
            remote: Some(s.parse().unwrap()),
            local: None,
        };
        let a = HashKey::SourceIp.hash(&h, &uri, at("10.0.0.1:1000"));
        let b = HashKey::SourceIp.hash(&h, &uri, at("10.0.0.1:2000"));
        let c = HashKey::SourceIp.hash(&h, &uri, at("10.0.0.2:1000"));
        assert_eq!(a.hash, Some(xxh64(b"10.0.0.1", 0)));
        assert_eq!(a, b);
        assert_ne!(a.hash, c.hash);
        assert_eq!(
            HashKey::SourceIp
                .hash(&h, &uri, ConnectionAddrs::default())
                .hash,
            None
        );
    }

    #[test]
    fn generated_cookie_is_per_connection_or_unique() {
        let at = |remote: &str, local: Option<&str>| ConnectionAddrs {
            remote: Some(remote.parse().unwrap()),
            local: local.map(|l| l.parse().unwrap()),
        };
        // Envoy's value: the connection's addresses
        let a = at("10.1.2.3:40000", Some("10.0.0.1:8080"));
        assert_eq!(
            generated_cookie_value(a),
            format!("{:016x}", xxh64(b"10.1.2.3:4000010.0.0.1:8080", 0))
        );
        assert_eq!(generated_cookie_value(a), generated_cookie_value(a));
        // another connection of the same client IP: another cookie
        let b = at("10.1.2.3:40001", Some("10.0.0.1:8080"));
        assert_ne!(generated_cookie_value(a), generated_cookie_value(b));
        // no downstream connection: never the same value twice (not the hash of "")
        for conn in [at("10.1.2.3:0", None), ConnectionAddrs::default()] {
            let one = generated_cookie_value(conn);
            assert_ne!(one, generated_cookie_value(conn));
            assert_ne!(one, format!("{:016x}", xxh64(b"", 0)));
            assert_eq!(one.len(), 16);
        }
    }

    #[test]
    fn cookie_generation_follows_ttl() {
        let uri: Uri = "/".parse().unwrap();
        let conn = ConnectionAddrs {
            remote: Some("10.0.0.1:5555".parse().unwrap()),
            local: Some("10.0.0.2:80".parse().unwrap()),
        };
        let mut key = CookieKey {
            name: "user".into(),
            path: "/".into(),
            ttl: None,
            attributes: vec![],
        };
        // No ttl: nothing generated, no hash.
        let r = HashKey::Cookie(key.clone()).hash(&HeaderMap::new(), &uri, conn);
        assert_eq!(r, RequestHash::default());
        // ttl 0: session cookie (no Max-Age).
        key.ttl = Some(Duration::ZERO);
        let r = HashKey::Cookie(key.clone()).hash(&HeaderMap::new(), &uri, conn);
        let sc = r.set_cookie.unwrap();
        let sc = sc.to_str().unwrap();
        assert!(sc.starts_with("user=\""), "{sc}");
        assert!(sc.ends_with("\"; Path=/; HttpOnly"), "{sc}");
        assert!(!sc.contains("Max-Age"));
        // The generated cookie, sent back, hashes the same.
        let value = sc.split('"').nth(1).unwrap();
        let again = HashKey::Cookie(key.clone()).hash(
            &headers(&[("cookie", &format!("user={value}"))]),
            &uri,
            conn,
        );
        assert_eq!(again.hash, r.hash);
        assert_eq!(again.set_cookie, None);
        // ttl 60s and attributes.
        key.ttl = Some(Duration::from_secs(60));
        key.attributes = vec![
            ("SameSite".into(), "Strict".into()),
            ("Secure".into(), "".into()),
        ];
        let r = HashKey::Cookie(key).hash(&HeaderMap::new(), &uri, conn);
        let sc = r.set_cookie.unwrap();
        assert!(
            sc.to_str()
                .unwrap()
                .ends_with("; Max-Age=60; Path=/; SameSite=Strict; Secure; HttpOnly"),
            "{sc:?}"
        );
    }
}
