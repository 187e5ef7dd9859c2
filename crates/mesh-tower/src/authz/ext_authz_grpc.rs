//! The `envoyExtAuthzGrpc` client: Envoy's ext_authz filter with a gRPC service, as Istio
//! configures it for a CUSTOM AuthorizationPolicy (OPA's Envoy plugin, Istio's `ext-authz`
//! sample on its gRPC port).
//!
//! The check is the unary call `envoy.service.auth.v3.Authorization/Check` to
//! `service:port` through the mesh ([`MeshClient`]: HTTP/2, mTLS when the authorizer is a
//! mesh workload), carrying an `AttributeContext` as Envoy fills it: the source (the
//! caller's address and SPIFFE principal), the destination (this workload's address and
//! principal), the request time, and the HTTP request (`x-request-id`, method, every
//! header lower case with duplicates joined by `,` plus `:authority`, `:method` and
//! `:path`, the path with its query, host, scheme, size, protocol). No body.
//!
//! The answer, as Envoy reads a `CheckResponse`:
//! - `status.code` OK: allowed; `ok_response.headers` change the request (`append: true`
//!   adds, otherwise the value replaces; `append_action` when `append` is unset),
//!   `headers_to_remove` are removed (not `host` nor pseudo-headers), and
//!   `response_headers_to_add` go on the response;
//! - any other code: denied, with `denied_response`'s status (403 when unset), headers and
//!   body;
//! - a call that fails (transport, HTTP status, a non-OK `grpc-status`, a malformed
//!   answer, the timeout) is an error: `statusOnError`, or allowed with `failOpen`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use mesh_core::meshconfig::ExtAuthzGrpc;

use super::ext_authz::{CheckBody, Edits, Outcome, PARTIAL_BODY};
use super::proto::{fields, Value, Writer};
use crate::inbound::ConnectionInfo;
use crate::outbound::MeshClient;

/// The gRPC method Envoy calls.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Largest `CheckResponse` read.
const MAX_RESPONSE: usize = 1 << 20;

/// One compiled `envoyExtAuthzGrpc` provider.
#[derive(Debug)]
pub(crate) struct GrpcAuthzClient {
    pub(crate) name: Box<str>,
    pub(crate) config: Arc<ExtAuthzGrpc>,
    uri: String,
}

impl GrpcAuthzClient {
    pub(crate) fn new(name: &str, config: Arc<ExtAuthzGrpc>) -> Self {
        GrpcAuthzClient {
            name: name.into(),
            uri: format!("http://{}:{}{CHECK_PATH}", config.host(), config.port),
            config,
        }
    }

    /// The `Check` call for `req`; `local_principal`: this workload's SPIFFE identity.
    pub(crate) fn check_request<B>(
        &self,
        req: &Request<B>,
        local_principal: Option<&str>,
        body: Option<&CheckBody>,
    ) -> Option<Request<Full<Bytes>>> {
        let conn = req.extensions().get::<ConnectionInfo>();
        let message =
            check_request_message(Some((req, body)), conn, local_principal, SystemTime::now());
        self.call(&message)
    }

    /// The `Check` call for a TCP connection (Envoy's network ext_authz filter: the peers
    /// only, no request).
    pub(crate) fn connection_check(
        &self,
        conn: &ConnectionInfo,
        local_principal: Option<&str>,
    ) -> Option<Request<Full<Bytes>>> {
        let message =
            check_request_message::<()>(None, Some(conn), local_principal, SystemTime::now());
        self.call(&message)
    }

    /// The unary call carrying `message`.
    fn call(&self, message: &[u8]) -> Option<Request<Full<Bytes>>> {
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0); // not compressed
        frame.put_u32(u32::try_from(message.len()).ok()?);
        frame.put_slice(message);
        // Envoy's gRPC client sends the deadline as `grpc-timeout`
        let millis = self.config.timeout.as_millis().clamp(1, 99_999_999);
        Request::post(&self.uri)
            .version(Version::HTTP_2)
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", format!("{millis}m"))
            .body(Full::new(frame.freeze()))
            .ok()
    }

    /// Makes the call and reads the answer, within the provider's timeout.
    pub(crate) async fn check(
        self: Arc<Self>,
        client: MeshClient,
        req: Request<Full<Bytes>>,
    ) -> Outcome {
        let call = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            if resp.status() != StatusCode::OK {
                return Err(format!("the authorizer answered HTTP {}", resp.status()));
            }
            let (parts, body) = resp.into_parts();
            let collected = body
                .collect()
                .await
                .map_err(|e| format!("reading the authorizer's answer: {e}"))?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            // trailers-only answers carry the status in the headers
            let status = trailers
                .get("grpc-status")
                .or_else(|| parts.headers.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if status != "0" {
                let message = trailers
                    .get("grpc-message")
                    .or_else(|| parts.headers.get("grpc-message"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                return Err(format!(
                    "the Check call failed: grpc-status {status:?} {message}"
                ));
            }
            let body = collected.to_bytes();
            if body.len() > MAX_RESPONSE + 5 {
                return Err("the authorizer's answer is larger than 1 MiB".to_owned());
            }
            let message = unframe(&body)?;
            decode_check_response(message)
        };
        match tokio::time::timeout(self.config.timeout, call).await {
            Err(_) => Outcome::Error(format!(
                "no answer within the timeout ({:?})",
                self.config.timeout
            )),
            Ok(Err(e)) => Outcome::Error(e),
            Ok(Ok(o)) => o,
        }
    }
}

/// The one message of a unary gRPC answer.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let [flag, a, b, c, d, rest @ ..] = body else {
        return Err("the authorizer's answer has no gRPC message".to_owned());
    };
    if *flag != 0 {
        return Err("the authorizer's answer is compressed (not negotiated)".to_owned());
    }
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    rest.get(..len)
        .ok_or_else(|| "the authorizer's gRPC message is truncated".to_owned())
}

/// `config.core.v3.Address` of a socket address: `socket_address` (1) with `address` (2)
/// and `port_value` (3).
fn address(w: &mut Writer, field: u32, addr: std::net::SocketAddr) {
    w.message(field, |a| {
        a.message(1, |s| {
            s.string(2, &addr.ip().to_string());
            s.int(3, i64::from(addr.port()));
        })
    });
}

/// The `CheckRequest` Envoy's ext_authz filter sends for `req` (the network filter, for a
/// connection: no `req`).
pub(crate) fn check_request_message<B>(
    req: Option<(&Request<B>, Option<&CheckBody>)>,
    conn: Option<&ConnectionInfo>,
    local_principal: Option<&str>,
    now: SystemTime,
) -> Vec<u8> {
    let mut w = Writer::default();
    w.message(1, |attrs| {
        // source: the downstream peer
        attrs.message(1, |peer| {
            if let Some(a) = conn.and_then(ConnectionInfo::remote_addr) {
                address(peer, 1, a);
            }
            if let Some(p) = conn.and_then(ConnectionInfo::peer) {
                peer.string(4, p.identity().as_uri());
            }
        });
        // destination: this workload
        attrs.message(2, |peer| {
            if let Some(a) = conn.and_then(ConnectionInfo::local_addr) {
                address(peer, 1, a);
            }
            if let Some(p) = local_principal {
                peer.string(4, p);
            }
        });
        attrs.message(4, |r| {
            let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            r.message(1, |t| {
                t.int(1, since.as_secs() as i64);
                t.int(2, i64::from(since.subsec_nanos()));
            });
            if let Some((req, body)) = req {
                r.message(2, |h| http_request(h, req, body));
            }
        });
    });
    w.0
}

/// `AttributeContext.HttpRequest`; `body`: what was read of the request's body for the
/// check (`body` 11, or `raw_body` 12 with `packAsBytes`, and Envoy's partial-body header).
fn http_request<B>(h: &mut Writer, req: &Request<B>, body: Option<&CheckBody>) {
    let headers = req.headers();
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    if let Some(id) = headers.get("x-request-id") {
        h.string(1, &text(id));
    }
    h.string(2, req.method().as_str());
    let authority = match req.uri().authority() {
        Some(a) => a.as_str().to_owned(),
        None => headers.get(HOST).map(text).unwrap_or_default(),
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    // the header map as Envoy holds it: pseudo-headers, then each name once, its values
    // joined by `,`
    h.map_entry(3, ":authority", &authority);
    h.map_entry(3, ":method", req.method().as_str());
    h.map_entry(3, ":path", &path);
    for name in headers.keys() {
        // a client's own partial-body header is not passed on (Envoy)
        if name == HOST || name == PARTIAL_BODY {
            continue;
        }
        let joined = headers
            .get_all(name)
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(",");
        h.map_entry(3, name.as_str(), &joined);
    }
    if let Some(b) = body {
        h.map_entry(3, PARTIAL_BODY, b.partial_str());
    }
    h.string(4, &path);
    h.string(5, &authority);
    h.string(6, req.uri().scheme_str().unwrap_or("http"));
    let size = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(-1);
    h.int(9, size);
    let protocol = match req.version() {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    h.string(10, protocol);
    if let Some(b) = body {
        if b.pack_as_bytes {
            h.bytes(12, &b.bytes);
        } else {
            // a protobuf `string`: valid UTF-8, as Envoy sanitizes it
            h.bytes(11, &b.utf8());
        }
    }
}

/// How one `HeaderValueOption` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Set,
    Append,
    AddIfAbsent,
    OverwriteIfExists,
}

/// A `config.core.v3.HeaderValueOption`: `header` (1: `key` 1, `value` 2, `raw_value` 3),
/// `append` (2, a `BoolValue`), `append_action` (3). In ext_authz answers an unset
/// `append` means replace.
fn header_option(buf: &[u8]) -> Result<Option<(HeaderName, HeaderValue, Action)>, String> {
    let malformed = |_| "malformed HeaderValueOption".to_owned();
    let (mut key, mut value, mut append, mut action) = (String::new(), Vec::new(), None, 0);
    for (f, v) in fields(buf).map_err(malformed)? {
        match f {
            1 => {
                for (hf, hv) in fields(v.bytes()).map_err(malformed)? {
                    match hf {
                        1 => key = hv.string(),
                        2 => value = hv.bytes().to_vec(),
                        3 if value.is_empty() => value = hv.bytes().to_vec(),
                        _ => {}
                    }
                }
            }
            2 => {
                let on = fields(v.bytes())
                    .map_err(malformed)?
                    .iter()
                    .any(|(bf, bv)| *bf == 1 && bv.int() != 0);
                append = Some(on);
            }
            3 => action = v.int(),
            _ => {}
        }
    }
    let how = match (append, action) {
        (Some(true), _) => Action::Append,
        (Some(false), _) | (None, 0 | 2) => Action::Set,
        (None, 1) => Action::AddIfAbsent,
        (None, 3) => Action::OverwriteIfExists,
        (None, _) => Action::Set,
    };
    let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes()),
        HeaderValue::from_bytes(&value),
    ) else {
        // Envoy skips a header it cannot hold
        return Ok(None);
    };
    Ok(Some((name, value, how)))
}

/// Reads a `CheckResponse`: `status` (1, a `google.rpc.Status` whose `code` is 1),
/// `denied_response` (2) or `ok_response` (3).
pub(crate) fn decode_check_response(buf: &[u8]) -> Result<Outcome, String> {
    let malformed = |_| "malformed CheckResponse".to_owned();
    let mut code = 0i64;
    let mut denied: Option<&[u8]> = None;
    let mut ok: Option<&[u8]> = None;
    for (f, v) in fields(buf).map_err(malformed)? {
        match (f, v) {
            (1, Value::Bytes(b)) => {
                for (sf, sv) in fields(b).map_err(malformed)? {
                    if sf == 1 {
                        code = sv.int() as i32 as i64;
                    }
                }
            }
            (2, Value::Bytes(b)) => denied = Some(b),
            (3, Value::Bytes(b)) => ok = Some(b),
            _ => {}
        }
    }
    if code == 0 {
        let mut edits = Edits::default();
        let mut downstream = HeaderMap::new();
        for (f, v) in fields(ok.unwrap_or_default()).map_err(malformed)? {
            match f {
                2 => {
                    if let Some((name, value, how)) = header_option(v.bytes())? {
                        let map = match how {
                            Action::Set => &mut edits.set,
                            Action::Append => &mut edits.append,
                            Action::AddIfAbsent => &mut edits.add_if_absent,
                            Action::OverwriteIfExists => &mut edits.overwrite_if_exists,
                        };
                        map.append(name, value);
                    }
                }
                5 => {
                    let name = v.string().to_ascii_lowercase();
                    // pseudo-headers cannot be removed
                    if let (false, Ok(n)) = (
                        name.starts_with(':'),
                        HeaderName::from_bytes(name.as_bytes()),
                    ) {
                        edits.remove.push(n);
                    }
                }
                6 => {
                    if let Some((name, value, _)) = header_option(v.bytes())? {
                        downstream.append(name, value);
                    }
                }
                _ => {}
            }
        }
        return Ok(Outcome::Allowed {
            upstream: Box::new(edits),
            downstream,
        });
    }
    let mut status = StatusCode::FORBIDDEN;
    let mut headers = HeaderMap::new();
    let mut body = Bytes::new();
    for (f, v) in fields(denied.unwrap_or_default()).map_err(malformed)? {
        match f {
            1 => {
                for (sf, sv) in fields(v.bytes()).map_err(malformed)? {
                    if sf == 1
                        && let Ok(s) = StatusCode::from_u16(sv.int() as u16)
                        && sv.int() > 0
                    {
                        status = s;
                    }
                }
            }
            2 => {
                if let Some((name, value, _)) = header_option(v.bytes())? {
                    headers.insert(name, value);
                }
            }
            3 => body = Bytes::copy_from_slice(v.bytes()),
            _ => {}
        }
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(Outcome::Denied(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(w: &mut Writer, field: u32, k: &str, v: &str, append: Option<bool>, action: i64) {
        w.message(field, |o| {
            o.message(1, |h| {
                h.string(1, k);
                h.string(2, v);
            });
            if let Some(a) = append {
                o.message(2, |b| b.int(1, i64::from(a)));
            }
            o.int(3, action);
        });
    }

    #[test]
    fn ok_response_edits_the_request() {
        let mut w = Writer::default();
        w.message(1, |_| {}); // status OK
        w.message(3, |ok| {
            header(ok, 2, "X-User", "alice", None, 0);
            header(ok, 2, "x-tag", "more", Some(true), 0);
            header(ok, 2, "x-default", "d", None, 1);
            ok.string(5, "authorization");
            ok.string(5, ":path");
            header(ok, 6, "x-ext-authz-check-result", "allowed", None, 0);
        });
        let Outcome::Allowed {
            upstream,
            downstream,
        } = decode_check_response(&w.0).unwrap()
        else {
            panic!()
        };
        assert_eq!(upstream.set["x-user"], "alice");
        assert_eq!(upstream.append["x-tag"], "more");
        assert_eq!(upstream.add_if_absent["x-default"], "d");
        assert_eq!(upstream.remove, [http::header::AUTHORIZATION]);
        assert_eq!(downstream["x-ext-authz-check-result"], "allowed");
    }

    #[test]
    fn denied_response_is_the_reply() {
        let mut w = Writer::default();
        w.message(1, |s| {
            s.int(1, 7); // PERMISSION_DENIED
            s.string(2, "denied by policy");
        });
        w.message(2, |d| {
            d.message(1, |st| st.int(1, 401));
            header(d, 2, "www-authenticate", "Bearer", None, 0);
            d.string(3, "denied by ext_authz");
        });
        let Outcome::Denied(resp) = decode_check_response(&w.0).unwrap() else {
            panic!()
        };
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(resp.body(), "denied by ext_authz");
        // a non-OK status without a denied_response: 403, empty
        let mut w = Writer::default();
        w.message(1, |s| s.int(1, 16));
        let Outcome::Denied(resp) = decode_check_response(&w.0).unwrap() else {
            panic!()
        };
        assert_eq!(
            (resp.status(), resp.body().len()),
            (StatusCode::FORBIDDEN, 0)
        );
        // an empty message is OK with nothing to change
        assert!(matches!(
            decode_check_response(&[]).unwrap(),
            Outcome::Allowed { .. }
        ));
        assert!(decode_check_response(&[0x0a, 0x09]).is_err());
    }

    #[test]
    fn check_request_carries_envoys_attributes() {
        use mesh_tls::{Identity, PeerIdentity};
        let peer = PeerIdentity::new(Identity::new("cluster.local", "foo", "sleep").unwrap());
        let conn = ConnectionInfo::new(Some(peer), 8000).with_addrs(
            Some("10.0.0.7:41000".parse().unwrap()),
            Some("10.0.0.9:8000".parse().unwrap()),
        );
        let req = Request::post("/admin?x=1")
            .header("host", "httpbin.foo:8000")
            .header("x-request-id", "abc")
            .header("x-forwarded-for", "1.1.1.1")
            .header("x-forwarded-for", "2.2.2.2")
            .header("content-length", "12")
            .body(())
            .unwrap();
        let at = UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        let msg = check_request_message(
            Some((&req, None)),
            Some(&conn),
            Some("spiffe://cluster.local/ns/foo/sa/httpbin"),
            at,
        );
        let attrs = fields(&msg).unwrap()[0].1.bytes();
        let attrs = fields(attrs).unwrap();
        let field = |n: u32| attrs.iter().find(|(f, _)| *f == n).unwrap().1.bytes();
        let peer_of = |b: &[u8]| {
            let p = fields(b).unwrap();
            let addr = fields(p[0].1.bytes()).unwrap()[0].1.bytes();
            let sock = fields(addr).unwrap();
            (sock[0].1.string(), sock[1].1.int(), p[1].1.string())
        };
        assert_eq!(
            peer_of(field(1)),
            (
                "10.0.0.7".into(),
                41000,
                "spiffe://cluster.local/ns/foo/sa/sleep".into()
            )
        );
        assert_eq!(
            peer_of(field(2)),
            (
                "10.0.0.9".into(),
                8000,
                "spiffe://cluster.local/ns/foo/sa/httpbin".into()
            )
        );
        let request = fields(field(4)).unwrap();
        let time = fields(request[0].1.bytes()).unwrap();
        assert_eq!((time[0].1.int(), time[1].1.int()), (1_700_000_000, 5));
        let http = fields(request[1].1.bytes()).unwrap();
        let mut headers = std::collections::BTreeMap::new();
        let mut scalars = std::collections::BTreeMap::new();
        for (f, v) in &http {
            if *f == 3 {
                let e = fields(v.bytes()).unwrap();
                headers.insert(e[0].1.string(), e[1].1.string());
            } else if *f == 9 {
                scalars.insert(*f, v.int().to_string());
            } else {
                scalars.insert(*f, v.string());
            }
        }
        assert_eq!(headers[":authority"], "httpbin.foo:8000");
        assert_eq!(headers[":method"], "POST");
        assert_eq!(headers[":path"], "/admin?x=1");
        assert_eq!(headers["x-forwarded-for"], "1.1.1.1,2.2.2.2");
        assert!(!headers.contains_key("host"));
        assert_eq!(scalars[&1], "abc");
        assert_eq!(scalars[&2], "POST");
        assert_eq!(scalars[&4], "/admin?x=1");
        assert_eq!(scalars[&5], "httpbin.foo:8000");
        assert_eq!(scalars[&6], "http");
        assert_eq!(scalars[&9], "12");
        assert_eq!(scalars[&10], "HTTP/1.1");
        assert!(!scalars.contains_key(&11), "no body unless asked for");
        assert!(!headers.contains_key(PARTIAL_BODY));
    }

    /// `includeRequestBodyInCheck`: the body in `body` (11), or `raw_body` (12) with
    /// `packAsBytes`, and Envoy's partial-body header in place of a client's own.
    #[test]
    fn check_request_carries_the_body() {
        let req = Request::post("/upload")
            .header("host", "httpbin.foo:8000")
            .header(PARTIAL_BODY, "1")
            .body(())
            .unwrap();
        for (pack_as_bytes, field) in [(false, 11), (true, 12)] {
            let body = CheckBody {
                bytes: Bytes::from_static(b"{\"a\": 1}"),
                partial: true,
                pack_as_bytes,
            };
            let msg = check_request_message(Some((&req, Some(&body))), None, None, UNIX_EPOCH);
            let attrs = fields(fields(&msg).unwrap()[0].1.bytes()).unwrap();
            let request = attrs.iter().find(|(f, _)| *f == 4).unwrap().1.bytes();
            let http = fields(fields(request).unwrap()[1].1.bytes()).unwrap();
            let partial: Vec<String> = http
                .iter()
                .filter(|(f, _)| *f == 3)
                .map(|(_, v)| fields(v.bytes()).unwrap())
                .filter(|e| e[0].1.string() == PARTIAL_BODY)
                .map(|e| e[1].1.string())
                .collect();
            assert_eq!(partial, ["true"], "only Envoy's own");
            let got: Vec<&[u8]> = http
                .iter()
                .filter(|(f, _)| *f == 11 || *f == 12)
                .map(|(f, v)| {
                    assert_eq!(*f, field);
                    v.bytes()
                })
                .collect();
            assert_eq!(got, [&b"{\"a\": 1}"[..]]);
        }
    }
}
