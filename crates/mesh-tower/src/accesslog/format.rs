//! Access-log formats: Istio's default TEXT line, its default JSON object
//! (`accessLogEncoding: JSON`), and custom formats (`accessLogFormat`) written with Envoy's
//! command operators.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use http::header::{HeaderName, HOST};
use http::{HeaderMap, HeaderValue};
use mesh_core::meshconfig::{AccessLogEncoding, MeshConfig};
use mesh_core::route::{HeaderContext, HeaderTemplate};

use super::{protocol, LogEntry, PathAndQuery};
use crate::envoy::ResponseFlags;

/// Istio's default JSON access log (pilot `EnvoyJSONLogFormatIstio`): the fields of its
/// default TEXT format, by these keys.
const ISTIO_JSON: [(&str, &str); 24] = [
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

/// How access-log lines are written: Istio's default TEXT format, its default JSON object,
/// or a custom format with Envoy's command operators (MeshConfig `accessLogEncoding` and
/// `accessLogFormat`).
///
/// The process-wide format ([`set_default_format`]) applies to every access log (sidecar
/// stacks, gateways, mesh clients); [`AccessLogLayer::with_format`](super::AccessLogLayer::with_format)
/// overrides it for one layer.
///
/// Custom formats take the operators of Istio's default format and those of header values:
/// `%START_TIME(...)%`, `%REQ(...)%` / `%REQUEST_HEADER(...)%` (pseudo-headers `:METHOD`,
/// `:PATH`, `:AUTHORITY`, `:SCHEME` too), `%RESP(...)%` / `%RESPONSE_HEADER(...)%`,
/// `%PROTOCOL%`, `%RESPONSE_CODE%`, `%RESPONSE_FLAGS%`, `%RESPONSE_CODE_DETAILS%`,
/// `%CONNECTION_TERMINATION_DETAILS%`, `%UPSTREAM_TRANSPORT_FAILURE_REASON%`,
/// `%BYTES_RECEIVED%`, `%BYTES_SENT%`, `%DURATION%`, `%UPSTREAM_HOST%`,
/// `%UPSTREAM_REMOTE_ADDRESS%`, `%UPSTREAM_CLUSTER%`, `%UPSTREAM_LOCAL_ADDRESS%`,
/// `%DOWNSTREAM_LOCAL_ADDRESS%`, `%DOWNSTREAM_REMOTE_ADDRESS%` (and their `_WITHOUT_PORT`
/// and `_PORT` forms), `%REQUESTED_SERVER_NAME%`, `%ROUTE_NAME%`, `%HOSTNAME%`,
/// `%ENVIRONMENT(...)%`, `%UPSTREAM_CLUSTER_RAW%`, Istio's `%REQ_WITHOUT_QUERY(...)%`,
/// `%GRPC_STATUS(CAMEL_STRING|SNAKE_STRING|NUMBER)%` and `%GRPC_STATUS_NUMBER%`, each with
/// an optional `:N` length limit. Envoy's other operators (part durations, TLS details,
/// metadata, `%CEL(...)%`, ...) are written `-` ([`LogFormat::operators_not_written`],
/// warned about when a MeshConfig's format is loaded); an operator Envoy does not know
/// makes the format an error. A value not known is `-` in text, `null` in JSON.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{AccessLogEncoding, MeshConfig};
/// use mesh_tower::accesslog::LogFormat;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(LogFormat::json().encoding(), AccessLogEncoding::Json);
///
/// let config = MeshConfig::from_yaml("accessLogEncoding: JSON")?;
/// assert_eq!(LogFormat::from_mesh_config(&config)?.encoding(), AccessLogEncoding::Json);
///
/// let custom = LogFormat::text_format("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\n")?;
/// assert!(!custom.is_istio_default());
/// assert!(LogFormat::text_format("%UPSTREAM_ATTEMPT%").is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LogFormat {
    kind: Kind,
    /// Request headers the format reads that the access log does not capture anyway.
    request_headers: Box<[HeaderName]>,
    /// Response headers the format reads (but `x-envoy-upstream-service-time`).
    response_headers: Box<[HeaderName]>,
    /// The format writes a gRPC status: the response trailers' `grpc-status` is kept.
    grpc_status: bool,
    /// Envoy's operators it uses that are written `-` ([`NOT_WRITTEN`]).
    unwritten: Box<[Box<str>]>,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Istio's default text format (written without parsing a template).
    IstioText,
    Text(Box<[Part]>),
    Json {
        fields: Box<[(Box<str>, JsonValue)]>,
        istio_default: bool,
    },
}

#[derive(Clone, Debug)]
enum JsonValue {
    Format(Box<[Part]>),
    /// A value that is not a string (a number, a boolean, null), written as it is.
    Literal(serde_json::Value),
}

#[derive(Clone, Debug)]
enum Part {
    Lit(Box<str>),
    Op(Op, Option<usize>),
}

#[derive(Clone, Debug)]
enum Op {
    Req(Box<[Name]>),
    /// `%REQ_WITHOUT_QUERY(...)%` (Istio's formatter extension): the value up to its `?`.
    ReqWithoutQuery(Box<[Name]>),
    Resp(Box<[HeaderName]>),
    /// `%GRPC_STATUS(...)%`, `%GRPC_STATUS_NUMBER%`: a gRPC request's status, from the
    /// trailers, else the headers, else the HTTP status (Envoy's `getGrpcStatus`).
    GrpcStatus(GrpcForm),
    /// An operator of Envoy's this access log does not know the value of: `-`.
    Unwritten(Box<str>),
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamLocalAddress,
    RouteName,
    /// An operator header values have too, computed by [`HeaderTemplate`].
    Stream(HeaderTemplate),
}

/// How `%GRPC_STATUS(...)%` writes a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GrpcForm {
    /// `CAMEL_STRING` (the default): `Ok`, `Unavailable`.
    Camel,
    /// `SNAKE_STRING`: `OK`, `UNAVAILABLE`.
    Snake,
    /// `NUMBER`: `14`.
    Number,
}

/// Envoy's command operators (stream info, HTTP and Istio's formatter extensions) this
/// access log writes as `-`: a format using them still logs everything else, with a
/// warning at load, where an operator Envoy does not know is an error.
const NOT_WRITTEN: &[&str] = &[
    "REQUEST_DURATION",
    "REQUEST_TX_DURATION",
    "RESPONSE_DURATION",
    "RESPONSE_TX_DURATION",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "ROUNDTRIP_DURATION",
    "UPSTREAM_CONNECTION_POOL_READY_DURATION",
    "COMMON_DURATION",
    "BYTES_RETRANSMITTED",
    "PACKETS_RETRANSMITTED",
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT",
    "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILERS_BYTES",
    "UPSTREAM_PROTOCOL",
    "RESPONSE_FLAGS_LONG",
    "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    "UPSTREAM_CONNECTION_ID",
    "CONNECTION_ID",
    "STREAM_ID",
    "UNIQUE_ID",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_LOCAL_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_REMOTE_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS",
    "DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT",
    "DOWNSTREAM_DIRECT_LOCAL_PORT",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_LOCAL_IP_SAN",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_PEER_IP_SAN",
    "DOWNSTREAM_PEER_EMAIL_SAN",
    "DOWNSTREAM_PEER_OTHERNAME_SAN",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_TLS_VERSION",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_CERT_V_START",
    "UPSTREAM_PEER_CERT_V_END",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_SESSION_ID",
    "FILTER_CHAIN_NAME",
    "VIRTUAL_CLUSTER_NAME",
    "TLS_JA3_FINGERPRINT",
    "TLS_JA4_FINGERPRINT",
    "START_TIME_LOCAL",
    "EMIT_TIME",
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "TRACE_ID",
    "TRAILER",
    "LOCAL_REPLY_BODY",
    "ACCESS_LOG_TYPE",
    "STREAM_INFO_REQ",
    "METADATA",
    "CEL",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Method,
    Path,
    Authority,
    Scheme,
    Header(HeaderName),
}

/// Request headers [`RequestFacts`](super::RequestFacts) keeps anyway.
const CAPTURED: [&str; 5] = [
    "x-envoy-original-path",
    "x-forwarded-for",
    "user-agent",
    "x-request-id",
    "host",
];

static DEFAULT: LazyLock<ArcSwap<LogFormat>> =
    LazyLock::new(|| ArcSwap::from_pointee(LogFormat::text()));

static ISTIO_JSON_FORMAT: LazyLock<LogFormat> = LazyLock::new(|| {
    let fields = ISTIO_JSON
        .iter()
        .map(|(k, v)| {
            (
                (*k).into(),
                JsonValue::Format(parse(v).expect("Istio's format")),
            )
        })
        .collect();
    LogFormat::new(Kind::Json {
        fields,
        istio_default: true,
    })
});

/// Sets the format of every access log in this process that was not given its own
/// ([`AccessLogLayer::with_format`](super::AccessLogLayer::with_format)): the sidecar
/// stacks, gateways and mesh clients. Requests already under way keep the format they
/// started with.
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::{AccessLogEncoding, MeshConfig};
/// use mesh_tower::accesslog::{default_format, set_default_format, LogFormat};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = MeshConfig::from_yaml("accessLogEncoding: JSON")?;
/// set_default_format(LogFormat::from_mesh_config(&config)?);
/// assert_eq!(default_format().encoding(), AccessLogEncoding::Json);
/// set_default_format(LogFormat::text());
/// assert!(default_format().is_istio_default());
/// # Ok(()) }
/// ```
pub fn set_default_format(format: LogFormat) {
    DEFAULT.store(Arc::new(format));
}

/// The process-wide access-log format (Istio's default TEXT format unless
/// [`set_default_format`] changed it).
///
/// # Examples
///
/// ```
/// use mesh_core::meshconfig::AccessLogEncoding;
/// use mesh_tower::accesslog::default_format;
///
/// assert_eq!(default_format().encoding(), AccessLogEncoding::Text);
/// ```
pub fn default_format() -> Arc<LogFormat> {
    DEFAULT.load_full()
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat::text()
    }
}

impl LogFormat {
    fn new(kind: Kind) -> Self {
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        let mut grpc_status = false;
        let mut unwritten: Vec<Box<str>> = Vec::new();
        let mut visit = |parts: &[Part]| {
            for p in parts {
                match p {
                    Part::Op(Op::Unwritten(name), _) if !unwritten.contains(name) => {
                        unwritten.push(name.clone());
                    }
                    Part::Op(Op::GrpcStatus(_), _) => {
                        grpc_status = true;
                        for (list, name) in [
                            (&mut request_headers, http::header::CONTENT_TYPE),
                            (
                                &mut response_headers,
                                HeaderName::from_static("grpc-status"),
                            ),
                        ] {
                            if !list.contains(&name) {
                                list.push(name);
                            }
                        }
                    }
                    Part::Op(Op::Req(names) | Op::ReqWithoutQuery(names), _) => {
                        for n in names.iter() {
                            if let Name::Header(h) = n
                                && !CAPTURED.contains(&h.as_str())
                                && !request_headers.contains(h)
                            {
                                request_headers.push(h.clone());
                            }
                        }
                    }
                    Part::Op(Op::Resp(names), _) => {
                        for h in names.iter() {
                            if h != "x-envoy-upstream-service-time" && !response_headers.contains(h)
                            {
                                response_headers.push(h.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        };
        match &kind {
            Kind::IstioText => {}
            Kind::Text(parts) => visit(parts),
            Kind::Json { fields, .. } => {
                for (_, v) in fields.iter() {
                    if let JsonValue::Format(parts) = v {
                        visit(parts);
                    }
                }
            }
        }
        LogFormat {
            kind,
            request_headers: request_headers.into(),
            response_headers: response_headers.into(),
            grpc_status,
            unwritten: unwritten.into(),
        }
    }

    /// Whether the format writes a gRPC status (`%GRPC_STATUS%`): the entry keeps the
    /// trailers' `grpc-status` then.
    pub(super) fn writes_grpc_status(&self) -> bool {
        self.grpc_status
    }

    /// Envoy's operators the format uses that this access log writes as `-` (durations of
    /// parts of the exchange, TLS details, metadata, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// let f = LogFormat::text_format("%RESPONSE_CODE% %UPSTREAM_REQUEST_ATTEMPT_COUNT%").unwrap();
    /// assert_eq!(f.operators_not_written(), ["UPSTREAM_REQUEST_ATTEMPT_COUNT"]);
    /// ```
    pub fn operators_not_written(&self) -> Vec<&str> {
        self.unwritten.iter().map(|n| &**n).collect()
    }

    /// Istio's default TEXT format (`accessLogEncoding: TEXT`, no `accessLogFormat`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// let f = LogFormat::text();
    /// assert_eq!((f.encoding(), f.is_istio_default()), (AccessLogEncoding::Text, true));
    /// ```
    pub fn text() -> Self {
        LogFormat {
            kind: Kind::IstioText,
            request_headers: Box::default(),
            response_headers: Box::default(),
            grpc_status: false,
            unwritten: Box::default(),
        }
    }

    /// Istio's default JSON format (`accessLogEncoding: JSON`, no `accessLogFormat`): one
    /// object with the fields of the default TEXT format, keys sorted; numbers
    /// (`response_code`, `bytes_received`, `bytes_sent`, `duration`) as JSON numbers,
    /// values not known as `null`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// let f = LogFormat::json();
    /// assert_eq!((f.encoding(), f.is_istio_default()), (AccessLogEncoding::Json, true));
    /// ```
    pub fn json() -> Self {
        ISTIO_JSON_FORMAT.clone()
    }

    /// A custom text format (`accessLogFormat` with `accessLogEncoding: TEXT`): a format
    /// string with Envoy's command operators; a trailing newline is dropped (each
    /// `tracing` event is a line). Empty: Istio's default.
    ///
    /// # Errors
    ///
    /// An operator this access log does not know, or a malformed one (Envoy's messages).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// assert!(LogFormat::text_format("%REQ(:METHOD)% %DURATION%ms\n").is_ok());
    /// assert!(LogFormat::text_format("").unwrap().is_istio_default());
    /// let err = LogFormat::text_format("%RESPONSE_CODE").unwrap_err();
    /// assert!(err.contains("Un-terminated"), "{err}");
    /// ```
    pub fn text_format(format: &str) -> Result<Self, String> {
        if format.is_empty() {
            return Ok(LogFormat::text());
        }
        let format = format.strip_suffix('\n').unwrap_or(format);
        Ok(LogFormat::new(Kind::Text(parse(format)?)))
    }

    /// A custom JSON format (`accessLogFormat` with `accessLogEncoding: JSON`): a JSON
    /// object whose string values are formats (`{"status": "%RESPONSE_CODE%"}`); other
    /// values are written as they are. An empty object: Istio's default.
    ///
    /// # Errors
    ///
    /// Not a JSON object, a nested object or array, or an operator error as for
    /// [`LogFormat::text_format`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// assert!(LogFormat::json_format(r#"{"status": "%RESPONSE_CODE%", "v": 1}"#).is_ok());
    /// assert!(LogFormat::json_format("{}").unwrap().is_istio_default());
    /// assert!(LogFormat::json_format("[1]").is_err());
    /// ```
    pub fn json_format(format: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(format)
            .map_err(|e| format!("error parsing provided json log format: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err("error parsing provided json log format: not a JSON object".into());
        };
        if map.is_empty() {
            return Ok(LogFormat::json());
        }
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => JsonValue::Format(parse(&s)?),
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    return Err(format!(
                        "json log format key {k:?}: nested values are not supported"
                    ))
                }
                other => JsonValue::Literal(other),
            };
            fields.push((k.into_boxed_str(), v));
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(LogFormat::new(Kind::Json {
            fields: fields.into(),
            istio_default: false,
        }))
    }

    /// The format a MeshConfig asks for: `accessLogEncoding` with `accessLogFormat` (or
    /// Istio's default for the encoding). As istiod does, a JSON `accessLogFormat` that
    /// does not parse falls back to the default JSON format.
    ///
    /// # Errors
    ///
    /// A format with an operator this access log does not expand (Envoy would reject the
    /// configuration; a custom format using one is not supported here yet).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::MeshConfig;
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = MeshConfig::from_yaml(r#"
    /// accessLogEncoding: JSON
    /// accessLogFormat: '{"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%"}'
    /// "#)?;
    /// let format = LogFormat::from_mesh_config(&config)?;
    /// assert!(!format.is_istio_default());
    /// assert!(LogFormat::from_mesh_config(&MeshConfig::default())?.is_istio_default());
    /// # Ok(()) }
    /// ```
    pub fn from_mesh_config(config: &MeshConfig) -> Result<Self, String> {
        LogFormat::from_parts(
            config.access_log_encoding,
            config.access_log_format.as_deref(),
        )
    }

    /// The format for `encoding` with the custom `format` string (`None` or empty: Istio's
    /// default for the encoding), as [`from_mesh_config`](Self::from_mesh_config).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// let json = LogFormat::from_parts(AccessLogEncoding::Json, None)?;
    /// assert!(json.is_istio_default());
    /// assert!(LogFormat::from_parts(AccessLogEncoding::Text, Some("%NOT_AN_OPERATOR%")).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_parts(encoding: AccessLogEncoding, format: Option<&str>) -> Result<Self, String> {
        let format = format.unwrap_or("");
        match encoding {
            AccessLogEncoding::Text => LogFormat::text_format(format),
            AccessLogEncoding::Json if format.is_empty() => Ok(LogFormat::json()),
            AccessLogEncoding::Json => match LogFormat::json_format(format) {
                Err(e) if e.starts_with("error parsing") => Ok(LogFormat::json()),
                other => other,
            },
        }
    }

    /// TEXT or JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::AccessLogEncoding;
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// assert_eq!(LogFormat::text_format("%DURATION%")?.encoding(), AccessLogEncoding::Text);
    /// # Ok::<(), String>(())
    /// ```
    pub fn encoding(&self) -> AccessLogEncoding {
        match self.kind {
            Kind::IstioText | Kind::Text(_) => AccessLogEncoding::Text,
            Kind::Json { .. } => AccessLogEncoding::Json,
        }
    }

    /// Whether this is Istio's default format for its encoding.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_tower::accesslog::LogFormat;
    ///
    /// assert!(LogFormat::json().is_istio_default());
    /// assert!(!LogFormat::json_format(r#"{"d": "%DURATION%"}"#)?.is_istio_default());
    /// # Ok::<(), String>(())
    /// ```
    pub fn is_istio_default(&self) -> bool {
        matches!(
            self.kind,
            Kind::IstioText
                | Kind::Json {
                    istio_default: true,
                    ..
                }
        )
    }

    /// The request headers to keep for this format.
    pub(super) fn request_headers(&self, h: &HeaderMap) -> Option<HeaderMap> {
        keep(&self.request_headers, h)
    }

    /// The response headers to keep for this format.
    pub(super) fn response_headers(&self, h: &HeaderMap) -> Option<HeaderMap> {
        keep(&self.response_headers, h)
    }

    /// Whether the entry is written by the fixed Istio text line.
    pub(super) fn is_istio_text(&self) -> bool {
        matches!(self.kind, Kind::IstioText)
    }

    /// The line for an entry (not for the Istio text format, written directly).
    pub(super) fn render(&self, e: &LogEntry, duration_ms: u64) -> String {
        match &self.kind {
            Kind::IstioText => String::new(),
            Kind::Text(parts) => text(parts, e, duration_ms),
            Kind::Json { fields, .. } => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields.iter() {
                    let v = match v {
                        JsonValue::Literal(v) => v.clone(),
                        JsonValue::Format(parts) => match &**parts {
                            // a lone operator keeps its type: a number, `null` when not known
                            [Part::Op(op, max)] => match value(op, e, duration_ms) {
                                Val::None => serde_json::Value::Null,
                                Val::Num(n) if max.is_none() => n.into(),
                                v => serde_json::Value::String(v.text(*max).into_owned()),
                            },
                            parts => serde_json::Value::String(text(parts, e, duration_ms)),
                        },
                    };
                    map.insert(k.to_string(), v);
                }
                serde_json::Value::Object(map).to_string()
            }
        }
    }
}

fn keep(names: &[HeaderName], h: &HeaderMap) -> Option<HeaderMap> {
    if names.is_empty() {
        return None;
    }
    let mut out = HeaderMap::new();
    for n in names {
        if let Some(v) = h.get(n) {
            out.insert(n.clone(), v.clone());
        }
    }
    Some(out)
}

fn text(parts: &[Part], e: &LogEntry, duration_ms: u64) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Op(op, max) => out.push_str(&value(op, e, duration_ms).text(*max)),
        }
    }
    out
}

enum Val<'a> {
    None,
    Str(Cow<'a, str>),
    Num(u64),
}

impl Val<'_> {
    fn text(&self, max: Option<usize>) -> Cow<'_, str> {
        let s: Cow<'_, str> = match self {
            Val::None => return Cow::Borrowed("-"),
            Val::Str(s) => Cow::Borrowed(s),
            Val::Num(n) => Cow::Owned(n.to_string()),
        };
        match max {
            Some(mut at) if at < s.len() => {
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                Cow::Owned(s[..at].to_owned())
            }
            _ => s,
        }
    }
}

fn hv(v: Option<&HeaderValue>) -> Val<'_> {
    match v.map(|v| String::from_utf8_lossy(v.as_bytes())) {
        Some(s) => Val::Str(s),
        None => Val::None,
    }
}

fn opt<T: fmt::Display>(v: Option<T>) -> Val<'static> {
    match v {
        Some(v) => Val::Str(Cow::Owned(v.to_string())),
        None => Val::None,
    }
}

fn value<'a>(op: &Op, e: &'a LogEntry, duration_ms: u64) -> Val<'a> {
    let r = &e.facts;
    let up = e.upstream.as_ref();
    match op {
        Op::Req(names) => request_header(names, e),
        Op::Resp(names) => names
            .iter()
            .map(|h| {
                hv(if h == "x-envoy-upstream-service-time" {
                    e.service_time.as_ref()
                } else {
                    e.extra_response.as_ref().and_then(|m| m.get(h))
                })
            })
            .find(|v| !matches!(v, Val::None))
            .unwrap_or(Val::None),
        Op::ReqWithoutQuery(names) => match request_header(names, e) {
            Val::Str(v) => match v.split_once('?') {
                Some((before, _)) => Val::Str(Cow::Owned(before.to_owned())),
                None => Val::Str(v),
            },
            v => v,
        },
        Op::GrpcStatus(form) => grpc_status(e, *form),
        Op::Unwritten(_) => Val::None,
        Op::ResponseCode => Val::Num(u64::from(e.status)),
        Op::ResponseFlags => Val::Str(Cow::Owned(e.flags.to_string())),
        Op::ResponseCodeDetails if r.tcp => Val::None,
        Op::ResponseCodeDetails => Val::Str(Cow::Borrowed(
            e.details.as_deref().unwrap_or("via_upstream"),
        )),
        Op::ConnectionTerminationDetails => Val::None,
        Op::UpstreamTransportFailureReason => match up.and_then(|u| u.transport_failure.as_deref())
        {
            Some(s) => Val::Str(Cow::Borrowed(s)),
            None => Val::None,
        },
        Op::BytesReceived => Val::Num(r.received.get()),
        Op::BytesSent => Val::Num(e.sent),
        Op::Duration => Val::Num(duration_ms),
        Op::UpstreamLocalAddress => opt(up.and_then(|u| u.local_address)),
        Op::RouteName => match up.and_then(|u| u.route_name.as_deref()) {
            Some(s) => Val::Str(Cow::Borrowed(s)),
            None => Val::None,
        },
        Op::Stream(t) => {
            // no upstream connection after a connect failure or an overflow (Envoy 1.31+
            // reads %UPSTREAM_REMOTE_ADDRESS% from the connection)
            let connected = !e.flags.contains(ResponseFlags::UPSTREAM_CONNECTION_FAILURE)
                && !e.flags.contains(ResponseFlags::UPSTREAM_OVERFLOW);
            let cx = HeaderContext {
                downstream_remote: r.downstream_remote(),
                downstream_local: r.downstream.local,
                requested_server_name: r.sni.as_deref(),
                upstream_remote: up.and_then(|u| u.host).filter(|_| connected),
                upstream_host: up.and_then(|u| u.host),
                upstream_cluster: up.and_then(|u| u.cluster.as_deref()),
                hostname: hostname(),
                protocol: Some(protocol(r.version)).filter(|p| *p != "-" && !r.tcp),
                start_time: Some(r.start_wall),
                ..HeaderContext::default()
            };
            let s = t.render(&cx);
            if s.is_empty() {
                Val::None
            } else {
                Val::Str(Cow::Owned(s))
            }
        }
    }
}

/// `%REQ(...)%`: the first of `names` the request had.
fn request_header<'a>(names: &[Name], e: &'a LogEntry) -> Val<'a> {
    let r = &e.facts;
    names
        .iter()
        .map(|n| match n {
            _ if r.tcp && !matches!(n, Name::Header(_)) => Val::None,
            Name::Method => Val::Str(Cow::Borrowed(r.method.as_str())),
            Name::Path => Val::Str(Cow::Owned(
                PathAndQuery(r.normalized.path().unwrap_or(&r.uri)).to_string(),
            )),
            Name::Authority => hv(r.authority.as_ref()),
            Name::Scheme => match r.uri.scheme_str() {
                Some(s) => Val::Str(Cow::Borrowed(s)),
                None => Val::None,
            },
            Name::Header(h) => hv(match h.as_str() {
                "x-envoy-original-path" => r.original_path.as_ref(),
                "x-forwarded-for" => r.forwarded_for(),
                "user-agent" => r.user_agent.as_ref(),
                "x-request-id" => r.request_id(),
                "host" => r.authority.as_ref(),
                _ => r.extra_request.as_ref().and_then(|m| m.get(h)),
            }),
        })
        .find(|v| !matches!(v, Val::None))
        .unwrap_or(Val::None)
}

/// `%GRPC_STATUS%` of a gRPC request (none for others, Envoy's
/// `validate_grpc_header_before_log_grpc_status`): the trailers' `grpc-status`, else the
/// headers', else the HTTP status as gRPC maps it; none without a response.
fn grpc_status(e: &LogEntry, form: GrpcForm) -> Val<'static> {
    let r = &e.facts;
    let grpc = r.extra_request.as_ref().is_some_and(crate::envoy::is_grpc);
    if !grpc || r.tcp {
        return Val::None;
    }
    let parse = |v: &HeaderValue| v.to_str().ok().and_then(|s| s.parse::<u32>().ok());
    let code = e
        .trailer_grpc_status
        .as_ref()
        .and_then(parse)
        .or_else(|| {
            e.extra_response
                .as_ref()
                .and_then(|h| h.get("grpc-status"))
                .and_then(parse)
        })
        .or_else(|| (e.status != 0).then(|| crate::envoy::http_to_grpc_status(e.status)));
    let Some(code) = code else {
        return Val::None;
    };
    const CAMEL: [&str; 17] = [
        "Ok",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    let named = match form {
        GrpcForm::Camel => CAMEL.get(code as usize),
        GrpcForm::Snake => mesh_core::route::actions::GRPC_CODE_NAMES.get(code as usize),
        GrpcForm::Number => None,
    };
    match named {
        Some(n) => Val::Str(Cow::Borrowed(n)),
        None => Val::Num(u64::from(code)),
    }
}

/// This host's name, for `%HOSTNAME%`.
fn hostname() -> Option<&'static str> {
    static NAME: LazyLock<Option<String>> = LazyLock::new(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
    });
    NAME.as_deref()
}

/// Where an operator's closing `%` is, skipping `%` inside its parentheses.
fn operator_end(s: &str) -> Option<usize> {
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

fn parse(format: &str) -> Result<Box<[Part]>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('%') {
            lit.push('%');
            rest = r;
            continue;
        }
        let end = operator_end(after).ok_or_else(|| {
            format!("Invalid access log format. Un-terminated variable expression '{after}'")
        })?;
        let part = parse_operator(&after[..end])?;
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(&mut lit).into()));
        }
        parts.push(part);
        rest = &after[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Lit(lit.into()));
    }
    Ok(parts.into())
}

fn parse_operator(op: &str) -> Result<Part, String> {
    let name_end = op.find(['(', ':']).unwrap_or(op.len());
    let name = &op[..name_end];
    let simple = match name {
        "RESPONSE_CODE" => Some(Op::ResponseCode),
        "RESPONSE_FLAGS" => Some(Op::ResponseFlags),
        "RESPONSE_CODE_DETAILS" => Some(Op::ResponseCodeDetails),
        "CONNECTION_TERMINATION_DETAILS" => Some(Op::ConnectionTerminationDetails),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => Some(Op::UpstreamTransportFailureReason),
        "BYTES_RECEIVED" => Some(Op::BytesReceived),
        "BYTES_SENT" => Some(Op::BytesSent),
        "DURATION" => Some(Op::Duration),
        "UPSTREAM_LOCAL_ADDRESS" => Some(Op::UpstreamLocalAddress),
        "ROUTE_NAME" => Some(Op::RouteName),
        _ => None,
    };
    let max = |tail: &str| -> Result<Option<usize>, String> {
        match tail.strip_prefix(':') {
            Some(n) => n
                .parse::<usize>()
                .map(Some)
                .map_err(|_| format!("Length must be an integer, given: {n}")),
            None if tail.is_empty() => Ok(None),
            None => Err(format!("Invalid operator {op}")),
        }
    };
    if let Some(o) = simple {
        if op[name_end..].starts_with('(') {
            return Err(format!("{name} does not take parameters"));
        }
        return Ok(Part::Op(o, max(&op[name_end..])?));
    }
    match name {
        "GRPC_STATUS" | "GRPC_STATUS_NUMBER" => {
            let arg = op[name_end..]
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'));
            let form =
                match (name, arg) {
                    ("GRPC_STATUS_NUMBER", None) => GrpcForm::Number,
                    ("GRPC_STATUS", None | Some("" | "CAMEL_STRING")) => GrpcForm::Camel,
                    ("GRPC_STATUS", Some("SNAKE_STRING")) => GrpcForm::Snake,
                    ("GRPC_STATUS", Some("NUMBER")) => GrpcForm::Number,
                    ("GRPC_STATUS", Some(_)) => return Err(
                        "GrpcStatusFormatter only supports CAMEL_STRING, SNAKE_STRING or NUMBER."
                            .into(),
                    ),
                    _ => return Err(format!("{name} does not take parameters")),
                };
            return Ok(Part::Op(Op::GrpcStatus(form), None));
        }
        _ if NOT_WRITTEN.contains(&name) => {
            return Ok(Part::Op(Op::Unwritten(name.into()), None));
        }
        _ => {}
    }
    let header_op = matches!(
        name,
        "REQ" | "REQUEST_HEADER" | "RESP" | "RESPONSE_HEADER" | "REQ_WITHOUT_QUERY"
    );
    if !header_op {
        // the operators header values have too (START_TIME, PROTOCOL, addresses, ...)
        let t = HeaderTemplate::parse(&format!("%{op}%"))?;
        return Ok(Part::Op(Op::Stream(t), None));
    }
    let close = op
        .rfind(')')
        .filter(|_| op[name_end..].starts_with('('))
        .ok_or_else(|| {
            format!("Invalid header configuration. Expected format {name}(<main_header>?<alternative_header>)")
        })?;
    let arg = &op[name_end + 1..close];
    let max = max(&op[close + 1..])?;
    if arg.is_empty() {
        return Err(format!(
            "Invalid header configuration. Expected format {name}(<main_header>?<alternative_header>)"
        ));
    }
    let mut names = Vec::new();
    for h in arg.split('?') {
        let lower = h.to_ascii_lowercase();
        let n = match lower.as_str() {
            ":method" => Name::Method,
            ":path" => Name::Path,
            ":authority" => Name::Authority,
            ":scheme" => Name::Scheme,
            other => Name::Header(HeaderName::from_bytes(other.as_bytes()).map_err(|_| {
                format!(
                    "Invalid header configuration. Format string contains invalid header name {h}"
                )
            })?),
        };
        names.push(n);
    }
    let op = if name == "REQ_WITHOUT_QUERY" {
        Op::ReqWithoutQuery(names.into())
    } else if name.starts_with("REQ") {
        Op::Req(names.into())
    } else {
        let names = names
            .into_iter()
            .map(|n| match n {
                Name::Header(h) => Ok(h),
                Name::Authority => Ok(HOST),
                _ => Err(format!("{name}: a response has no pseudo-header {arg}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Op::Resp(names.into())
    };
    Ok(Part::Op(op, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_json_keys_are_the_text_fields() {
        let keys: Vec<&str> = ISTIO_JSON.iter().map(|(k, _)| *k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "kept sorted, as Envoy writes them");
        for (_, v) in ISTIO_JSON {
            parse(v).unwrap();
        }
    }

    #[test]
    fn parse_errors() {
        for (f, e) in [
            ("%REQ()%", "Expected format REQ"),
            ("%DURATION(x)%", "does not take parameters"),
            ("%BYTES_SENT:x%", "Length must be an integer"),
            ("%NOPE%", "Not supported field in StreamInfo: NOPE"),
            ("%REQ(a b)%", "invalid header name"),
            ("%RESPONSE_CODE", "Un-terminated"),
        ] {
            let err = LogFormat::text_format(f).unwrap_err();
            assert!(err.contains(e), "{f}: {err}");
        }
    }
}
