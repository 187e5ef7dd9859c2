//! The `envoyExtAuthzHttp` client: Envoy's ext_authz filter with an HTTP service, as Istio
//! configures it for a CUSTOM AuthorizationPolicy.
//!
//! The check request goes to `service:port` through the mesh ([`MeshClient`]: the registry
//! resolves the Kubernetes service or ServiceEntry host, mTLS when the authorizer is a mesh
//! workload), with the original method, `pathPrefix` + the original path and query, the
//! original `Host`, `Authorization`, `Content-Length: 0` and the headers
//! `includeRequestHeadersInCheck` selects, plus `includeAdditionalHeadersInCheck`. No
//! body. A 200 allows (the `headersToUpstreamOnAllow` response headers are set on the
//! request, the `headersToDownstreamOnAllow` ones added to the response); another 1xx-4xx
//! answer denies with the authorizer's status, body and headers (all of them but `Host`,
//! or those `headersToDownstreamOnDeny` selects plus `Location`, `WWW-Authenticate` and
//! the framing); a 5xx, a transport failure or the timeout is an error: `statusOnError`
//! (default 403), or allowed with `failOpen`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST, LOCATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mesh_core::meshconfig::{ExtAuthzHttp, RequestBodyInCheck};

use crate::outbound::MeshClient;

/// Largest authorizer response body kept (Envoy buffers the whole answer too).
const MAX_RESPONSE_BODY: usize = 1 << 20;

/// A header name pattern: exact, `prefix*` or `*suffix`, compared case-insensitively
/// (names are lower case in `http`).
#[derive(Debug, Clone)]
enum NamePat {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
}

#[derive(Debug, Clone, Default)]
struct Names(Box<[NamePat]>);

impl Names {
    fn new(list: &[String]) -> Names {
        Names(
            list.iter()
                .map(|v| {
                    let v = v.to_ascii_lowercase();
                    if let Some(s) = v.strip_prefix('*') {
                        NamePat::Suffix(s.into())
                    } else if let Some(p) = v.strip_suffix('*') {
                        NamePat::Prefix(p.into())
                    } else {
                        NamePat::Exact(v.into())
                    }
                })
                .collect(),
        )
    }

    fn matches(&self, name: &HeaderName) -> bool {
        let n = name.as_str();
        self.0.iter().any(|p| match p {
            NamePat::Exact(e) => n == &**e,
            NamePat::Prefix(p) => n.starts_with(&**p),
            NamePat::Suffix(s) => n.ends_with(&**s),
        })
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The authorizer's answer, up to [`MAX_RESPONSE_BODY`].
async fn read_limited(body: crate::outbound::ClientBody) -> Result<Bytes, String> {
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the authorizer's response: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_RESPONSE_BODY {
                return Err("the authorizer's response is larger than 1 MiB".to_owned());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// What an authorizer that allowed a request changes in it before it goes on (Envoy's
/// ext_authz `headers_to_set`, `_append`, `_add`, `_overwrite_if_exists` and
/// `_remove`).
#[derive(Debug, Default)]
pub(crate) struct Edits {
    /// Replace any value of the name.
    pub(crate) set: HeaderMap,
    /// Add to the values of the name.
    pub(crate) append: HeaderMap,
    /// Add only when the request has no value of the name.
    pub(crate) add_if_absent: HeaderMap,
    /// Replace only when the request has a value of the name.
    pub(crate) overwrite_if_exists: HeaderMap,
    /// Remove (never `host` nor a pseudo-header).
    pub(crate) remove: Vec<HeaderName>,
}

impl Edits {
    /// Applies the edits to a request's headers: removals, then replacements, then
    /// additions.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            if name != HOST {
                headers.remove(name);
            }
        }
        for (names, only_existing) in [(&self.set, false), (&self.overwrite_if_exists, true)] {
            for name in names.keys() {
                if only_existing && !headers.contains_key(name) {
                    continue;
                }
                headers.remove(name);
                for v in names.get_all(name) {
                    headers.append(name.clone(), v.clone());
                }
            }
        }
        for (k, v) in &self.add_if_absent {
            if !headers.contains_key(k) {
                headers.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &self.append {
            headers.append(k.clone(), v.clone());
        }
    }
}

/// What the authorizer said.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Let the request through.
    Allowed {
        /// Changes to the request (HTTP: `headersToUpstreamOnAllow`).
        upstream: Box<Edits>,
        /// Added to the response (HTTP: `headersToDownstreamOnAllow`).
        downstream: HeaderMap,
    },
    /// Any other answer below 500: this is the response.
    Denied(Response<Bytes>),
    /// 5xx, transport failure, timeout.
    Error(String),
}

/// One compiled `envoyExtAuthzHttp` provider.
#[derive(Debug)]
pub(crate) struct ExtAuthzClient {
    pub(crate) name: Box<str>,
    pub(crate) config: Arc<ExtAuthzHttp>,
    base: String,
    request_headers: Names,
    additional: Vec<(HeaderName, HeaderValue)>,
    upstream: Names,
    downstream_allow: Names,
    downstream_deny: Names,
}

impl ExtAuthzClient {
    pub(crate) fn new(name: &str, config: Arc<ExtAuthzHttp>) -> Self {
        let additional = config
            .include_additional_headers_in_check
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        ExtAuthzClient {
            name: name.into(),
            base: format!("http://{}:{}", config.host(), config.port),
            request_headers: Names::new(&config.include_request_headers_in_check),
            additional,
            upstream: Names::new(&config.headers_to_upstream_on_allow),
            downstream_allow: Names::new(&config.headers_to_downstream_on_allow),
            downstream_deny: Names::new(&config.headers_to_downstream_on_deny),
            config,
        }
    }

    /// The check request for `req` (built before the request moves on), with the body read
    /// ahead for it (`includeRequestBodyInCheck`).
    pub(crate) fn check_request<B>(
        &self,
        req: &Request<B>,
        body: Option<&CheckBody>,
    ) -> Option<Request<Full<Bytes>>> {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{}{}", self.base, self.config.path_prefix, pq);
        let mut out = Request::builder()
            .method(req.method().clone())
            .uri(uri)
            .body(Full::new(
                body.map(CheckBody::http_body).unwrap_or_default(),
            ))
            .ok()?;
        let len = http_body::Body::size_hint(out.body()).exact().unwrap_or(0);
        let h = out.headers_mut();
        // the checked request's `:authority` (see `envoy::authority`)
        let host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(HOST).cloned(),
        };
        if let Some(host) = host {
            h.insert(HOST, host);
        }
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        // to the authorizer, whatever `Host` the checked request had (Envoy's ext_authz
        // client sends to its cluster)
        out.extensions_mut().insert(crate::outbound::RouteByUri);
        let h = out.headers_mut();
        for name in req.headers().keys() {
            // a client's own partial-body header never reaches the authorizer (Envoy)
            if name == HOST || name == CONTENT_LENGTH || name == PARTIAL_BODY {
                continue;
            }
            if name != AUTHORIZATION && !self.request_headers.matches(name) {
                continue;
            }
            // Envoy hands the authorizer one value per header, duplicates joined by `,`
            let mut values = req.headers().get_all(name).iter();
            let Some(first) = values.next().cloned() else {
                continue;
            };
            let joined = values.fold(first, |acc, v| {
                let mut b = acc.as_bytes().to_vec();
                b.push(b',');
                b.extend_from_slice(v.as_bytes());
                HeaderValue::from_bytes(&b).unwrap_or(acc)
            });
            h.insert(name.clone(), joined);
        }
        // Envoy puts its partial-body header among the request's headers, which the HTTP
        // check carries when `includeRequestHeadersInCheck` selects them
        if let Some(b) = body {
            let name = HeaderName::from_static(PARTIAL_BODY);
            if self.request_headers.matches(&name) {
                h.insert(name, HeaderValue::from_static(b.partial_str()));
            }
        }
        for (k, v) in &self.additional {
            h.insert(k.clone(), v.clone());
        }
        Some(out)
    }

    /// [`check`](Self::check), boxed where the compiler sees its whole type (its `Send`
    /// proof does not go through in generic callers).
    pub(crate) fn check_boxed(
        self: Arc<Self>,
        client: MeshClient,
        req: Request<Full<Bytes>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        Box::pin(self.check(client, req))
    }

    /// Sends the check and reads the answer, within the provider's timeout.
    pub(crate) async fn check(
        self: Arc<Self>,
        client: MeshClient,
        req: Request<Full<Bytes>>,
    ) -> Outcome {
        let call = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = read_limited(body).await?;
            Ok::<_, String>(Response::from_parts(parts, body))
        };
        let resp = match tokio::time::timeout(self.config.timeout, call).await {
            Err(_) => {
                return Outcome::Error(format!(
                    "no answer within the timeout ({:?})",
                    self.config.timeout
                ));
            }
            Ok(Err(e)) => return Outcome::Error(e),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_server_error() {
            return Outcome::Error(format!("the authorizer answered {status}"));
        }
        if status == StatusCode::OK {
            let pick = |names: &Names| {
                let mut m = HeaderMap::new();
                for (k, v) in resp.headers() {
                    if names.matches(k) {
                        m.append(k.clone(), v.clone());
                    }
                }
                m
            };
            return Outcome::Allowed {
                upstream: Box::new(Edits {
                    set: pick(&self.upstream),
                    ..Edits::default()
                }),
                downstream: pick(&self.downstream_allow),
            };
        }
        let (parts, body) = resp.into_parts();
        let mut denied = Response::new(body);
        *denied.status_mut() = parts.status;
        for (k, v) in &parts.headers {
            let framing = k == CONTENT_LENGTH || k == TRANSFER_ENCODING || k == CONNECTION;
            let keep = if self.downstream_deny.is_empty() {
                k != HOST
            } else {
                self.downstream_deny.matches(k) || k == LOCATION || k == WWW_AUTHENTICATE
            };
            if keep && !framing {
                denied.headers_mut().append(k.clone(), v.clone());
            }
        }
        Outcome::Denied(denied)
    }
}

/// Envoy's header telling the authorizer whether the body it got is cut short.
pub(crate) const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";

/// The request body read ahead for a check (`includeRequestBodyInCheck`).
#[derive(Debug, Clone)]
pub(crate) struct CheckBody {
    /// At most `maxRequestBytes` of it.
    pub(crate) bytes: Bytes,
    /// More was read than `bytes` holds.
    pub(crate) partial: bool,
    /// `packAsBytes`: the gRPC check's `raw_body` rather than `body`.
    pub(crate) pack_as_bytes: bool,
}

impl CheckBody {
    /// The body as Envoy puts it in `AttributeContext.HttpRequest.body`, a protobuf
    /// `string`: valid UTF-8, each byte of an invalid sequence replaced by `!`
    /// (`MessageUtil::sanitizeUtf8String`). The body as read when it is UTF-8 already.
    pub(crate) fn utf8(&self) -> Bytes {
        let mut rest: &[u8] = &self.bytes;
        if std::str::from_utf8(rest).is_ok() {
            return self.bytes.clone();
        }
        let mut out = Vec::with_capacity(rest.len());
        loop {
            match std::str::from_utf8(rest) {
                Ok(_) => {
                    out.extend_from_slice(rest);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.extend_from_slice(good);
                    let n = e.error_len().unwrap_or(bad.len());
                    out.extend(std::iter::repeat_n(b'!', n));
                    rest = &bad[n..];
                }
            }
        }
        Bytes::from(out)
    }

    /// What the HTTP check carries, as Envoy's raw HTTP client sends it: the `body` field
    /// (sanitized), none with `packAsBytes` (that goes to `raw_body`, which it does not send).
    pub(crate) fn http_body(&self) -> Bytes {
        if self.pack_as_bytes {
            Bytes::new()
        } else {
            self.utf8()
        }
    }

    pub(crate) fn partial_str(&self) -> &'static str {
        if self.partial {
            "true"
        } else {
            "false"
        }
    }
}

/// A workload's external authorizer, HTTP or gRPC.
#[derive(Debug, Clone)]
pub(crate) enum Authorizer {
    /// `envoyExtAuthzHttp`.
    Http(Arc<ExtAuthzClient>),
    /// `envoyExtAuthzGrpc`.
    Grpc(Arc<super::ext_authz_grpc::GrpcAuthzClient>),
}

/// A check ready to be sent.
#[derive(Debug)]
pub(crate) enum Prepared {
    /// The HTTP check request.
    Http(Request<Full<Bytes>>),
    /// The gRPC `Check` call.
    Grpc(Request<http_body_util::Full<Bytes>>),
}

impl Authorizer {
    /// The provider's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Authorizer::Http(c) => &c.name,
            Authorizer::Grpc(c) => &c.name,
        }
    }

    /// `failOpen`.
    pub(crate) fn fail_open(&self) -> bool {
        match self {
            Authorizer::Http(c) => c.config.fail_open,
            Authorizer::Grpc(c) => c.config.fail_open,
        }
    }

    /// `statusOnError`.
    pub(crate) fn status_on_error(&self) -> u16 {
        match self {
            Authorizer::Http(c) => c.config.status_on_error,
            Authorizer::Grpc(c) => c.config.status_on_error,
        }
    }

    /// The check for `req` (built before the request moves on); `local_principal`: this
    /// workload's SPIFFE identity (the gRPC check's destination principal); `body`: what
    /// was read of the request's body (`includeRequestBodyInCheck`).
    pub(crate) fn prepare<B>(
        &self,
        req: &Request<B>,
        local_principal: Option<&str>,
        body: Option<&CheckBody>,
    ) -> Option<Prepared> {
        match self {
            Authorizer::Http(c) => c.check_request(req, body).map(Prepared::Http),
            Authorizer::Grpc(c) => c
                .check_request(req, local_principal, body)
                .map(Prepared::Grpc),
        }
    }

    /// `includeRequestBodyInCheck`: how much of the request body the check carries.
    pub(crate) fn body_in_check(&self) -> Option<RequestBodyInCheck> {
        match self {
            Authorizer::Http(c) => c.config.include_request_body_in_check,
            Authorizer::Grpc(c) => c.config.include_request_body_in_check,
        }
    }

    /// Asks the authorizer, boxed where the compiler sees the whole future's type.
    pub(crate) fn check(
        &self,
        client: MeshClient,
        check: Prepared,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>> {
        match (self, check) {
            (Authorizer::Http(c), Prepared::Http(r)) => Arc::clone(c).check_boxed(client, r),
            (Authorizer::Grpc(c), Prepared::Grpc(r)) => Box::pin(Arc::clone(c).check(client, r)),
            _ => Box::pin(async { Outcome::Error("check prepared for another provider".into()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_envoys_order() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.append("x-tag", HeaderValue::from_static("1"));
        h.append("x-tag", HeaderValue::from_static("2"));
        h.insert("x-keep", HeaderValue::from_static("old"));
        let mut e = Edits {
            remove: vec![HOST, AUTHORIZATION],
            ..Edits::default()
        };
        e.set.insert("x-tag", HeaderValue::from_static("set"));
        e.overwrite_if_exists
            .insert("x-missing", HeaderValue::from_static("no"));
        e.overwrite_if_exists
            .insert("x-keep", HeaderValue::from_static("new"));
        e.add_if_absent
            .insert("x-keep", HeaderValue::from_static("no"));
        e.add_if_absent
            .insert("x-user", HeaderValue::from_static("alice"));
        e.append.insert("x-tag", HeaderValue::from_static("more"));
        e.apply(&mut h);
        assert_eq!(h["host"], "a", "host is never removed");
        assert!(h.get("authorization").is_none());
        let tags: Vec<_> = h.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["set", "more"]);
        assert_eq!(h["x-keep"], "new");
        assert!(h.get("x-missing").is_none());
        assert_eq!(h["x-user"], "alice");
    }

    #[test]
    fn check_request_selects_headers() {
        let mut cfg = ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000);
        cfg.path_prefix = "/check".into();
        cfg.include_request_headers_in_check = vec!["x-ext-authz".into(), "X-Forwarded-*".into()];
        cfg.include_additional_headers_in_check =
            [("x-from".to_string(), "mesh".to_string())].into();
        let c = ExtAuthzClient::new("p", Arc::new(cfg));
        let req = Request::post("/admin/users?x=1")
            .header("host", "httpbin.foo:8000")
            .header("authorization", "Bearer t")
            .header("x-ext-authz", "allow")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2")
            .header("cookie", "secret")
            .header("content-length", "12")
            .body(())
            .unwrap();
        let check = c.check_request(&req, None).unwrap();
        assert_eq!(check.method(), "POST");
        assert_eq!(
            check.uri().to_string(),
            "http://ext-authz.foo.svc.cluster.local:8000/check/admin/users?x=1"
        );
        let h = check.headers();
        assert_eq!(h["host"], "httpbin.foo:8000");
        assert_eq!(h["authorization"], "Bearer t");
        assert_eq!(h["x-ext-authz"], "allow");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1,10.0.0.2");
        assert_eq!(h["content-length"], "0");
        assert_eq!(h["x-from"], "mesh");
        assert!(h.get("cookie").is_none());
    }

    #[test]
    fn check_bodies_as_envoy_sends_them() {
        let body = |b: &'static [u8], pack_as_bytes| CheckBody {
            bytes: Bytes::from_static(b),
            partial: false,
            pack_as_bytes,
        };
        // UTF-8 as it is; each byte of an invalid sequence becomes `!`
        assert_eq!(body("héllo".as_bytes(), false).utf8(), "héllo");
        assert_eq!(body(b"a\xff\xfeb\xe2\x82", false).utf8(), "a!!b!!");
        // the HTTP check: the sanitized body, none with packAsBytes
        assert_eq!(body(b"\x00\x01\xff", false).http_body(), "\0\u{1}!");
        assert!(body(b"\x00\x01\xff", true).http_body().is_empty());
        let c = ExtAuthzClient::new(
            "p",
            Arc::new(ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000)),
        );
        let req = Request::post("/").body(()).unwrap();
        let check = c.check_request(&req, Some(&body(b"{}", false))).unwrap();
        assert_eq!(check.headers()["content-length"], "2");
        // the partial-body header only when includeRequestHeadersInCheck selects it
        assert!(check.headers().get(PARTIAL_BODY).is_none());
        let check = c.check_request(&req, Some(&body(b"{}", true))).unwrap();
        assert_eq!(check.headers()["content-length"], "0");
    }

    #[test]
    fn name_patterns() {
        let n = Names::new(&["X-Auth-*".into(), "*-token".into(), "cookie".into()]);
        for (name, want) in [
            ("x-auth-request-user", true),
            ("x-access-token", true),
            ("cookie", true),
            ("set-cookie", false),
            ("x-auth", false),
        ] {
            assert_eq!(n.matches(&HeaderName::from_static(name)), want, "{name}");
        }
    }
}
