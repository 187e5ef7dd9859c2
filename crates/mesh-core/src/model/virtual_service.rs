//! `VirtualService` (networking.istio.io): ordered HTTP, TLS and TCP routing rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, Labels, Percent, PortSelector, StringMatch};

/// `VirtualService.spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to (short names resolve in the VS's namespace).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways (and `mesh`) the rules apply to; empty means `mesh`.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Ordered HTTP routes; first match wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Ordered routes for unterminated TLS (SNI).
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Ordered routes for opaque TCP.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this VS is visible to; empty means all (`*`).
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// `Destination`: a service host, optional subset and port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service host (registry name; short names resolve in the VS's namespace).
    #[serde(default)]
    pub host: String,
    /// Subset name defined by a DestinationRule for `host`.
    pub subset: Option<String>,
    /// Port on the host; needed when the service has several ports.
    pub port: Option<PortSelector>,
}

/// `HTTPRoute`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name (logged, concatenated with match names).
    pub name: Option<String>,
    /// Match blocks, OR'd; none means match everything.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Reply with a redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Reply with a fixed response instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Delegate to another VirtualService.
    pub delegate: Option<Delegate>,
    /// Rewrite the URI/authority before forwarding.
    pub rewrite: Option<HttpRewrite>,
    /// Request timeout; default: none.
    pub timeout: Option<Duration>,
    /// Retry policy; default: Istio's implicit policy.
    pub retries: Option<HttpRetry>,
    /// Client-side fault injection.
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to this destination.
    pub mirror: Option<Destination>,
    /// Several mirror destinations with their own percentages.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer mirror percentage.
    #[serde(alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// Percentage of traffic mirrored by `mirror` (default 100).
    pub mirror_percentage: Option<Percent>,
    /// CORS policy.
    pub cors_policy: Option<CorsPolicy>,
    /// Header operations.
    pub headers: Option<Headers>,
}

/// `Delegate`: a reference to a delegate VirtualService.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default)]
    pub name: String,
    /// Namespace of the delegate (default: the root VS's namespace).
    pub namespace: Option<String>,
}

/// `Headers`: operations on request and response headers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Operations on the request headers.
    pub request: Option<HeaderOperations>,
    /// Operations on the response headers.
    pub response: Option<HeaderOperations>,
}

/// `HeaderOperations`: `set` overwrites, `add` appends, `remove` deletes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Append these headers.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `TLSRoute`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Match conditions (required, at least one).
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TCPRoute`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Match conditions; none means catch-all.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `HTTPMatchRequest`: conditions AND'd within one block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Match name (concatenated with the route name).
    pub name: Option<String>,
    /// Path match (exact/prefix/regex); absent means prefix `/`.
    pub uri: Option<StringMatch>,
    /// `:scheme` match.
    pub scheme: Option<StringMatch>,
    /// `:method` match.
    pub method: Option<StringMatch>,
    /// `:authority` match.
    pub authority: Option<StringMatch>,
    /// Header matches (header name → matcher); `{}` is a presence check.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Destination port the request arrived on.
    pub port: Option<u32>,
    /// Client workload labels (static pre-filter).
    #[serde(default)]
    pub source_labels: Labels,
    /// Gateways this match applies to (replaces the top-level list).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameter matches.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Make `uri` exact/prefix matching case-insensitive.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Client namespace (static pre-filter).
    pub source_namespace: Option<String>,
    /// Stat prefix for this route.
    pub stat_prefix: Option<String>,
}

/// `HTTPRouteDestination`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request (required).
    #[serde(default)]
    pub destination: Destination,
    /// Relative weight; unset is 0 (and a lone destination gets 100%).
    pub weight: Option<i32>,
    /// Header operations applied when this destination is chosen.
    pub headers: Option<Headers>,
}

/// `RouteDestination` (TLS and TCP routes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to send the connection (required).
    #[serde(default)]
    pub destination: Destination,
    /// Relative weight.
    pub weight: Option<i32>,
}

/// `L4MatchAttributes` (TCP routes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or CIDRs.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    pub port: Option<u32>,
    /// Hidden/deprecated source subnet.
    pub source_subnet: Option<String>,
    /// Client workload labels.
    #[serde(default)]
    pub source_labels: Labels,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Client namespace.
    pub source_namespace: Option<String>,
}

/// `TLSMatchAttributes` (TLS routes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (required, at least one).
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination IPs or CIDRs.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Destination port.
    pub port: Option<u32>,
    /// Client workload labels.
    #[serde(default)]
    pub source_labels: Labels,
    /// Gateways this match applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Client namespace.
    pub source_namespace: Option<String>,
}

/// `HTTPRedirect`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the whole path.
    pub uri: Option<String>,
    /// Replace the authority/Host.
    pub authority: Option<String>,
    /// Redirect port (exclusive with `derivePort`).
    pub port: Option<u32>,
    /// Derive the port from the protocol or the request.
    pub derive_port: Option<RedirectPortSelection>,
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// Status code; default 301.
    pub redirect_code: Option<u32>,
    /// Replace the matched prefix.
    pub prefix_rewrite: Option<String>,
}

/// `HTTPRedirect.RedirectPortSelection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RedirectPortSelection {
    /// Port 80 for http, 443 for https (the default).
    #[default]
    #[serde(rename = "FROM_PROTOCOL_DEFAULT")]
    FromProtocolDefault,
    /// The port the request arrived on.
    #[serde(rename = "FROM_REQUEST_PORT")]
    FromRequestPort,
}

/// `HTTPDirectResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Status code (required, 200..=599).
    #[serde(default)]
    pub status: u32,
    /// Optional body.
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: exactly one of `string` or `bytes` (base64).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Body as text.
    pub string: Option<String>,
    /// Body as base64-encoded bytes.
    pub bytes: Option<String>,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replace the matched prefix (or whole path for exact/regex matches).
    pub uri: Option<String>,
    /// Replace the authority/Host.
    pub authority: Option<String>,
    /// Regex rewrite of the path.
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`: RE2 `match` and substitution `rewrite` (`\1` groups).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 regex.
    #[serde(default, rename = "match")]
    pub matcher: String,
    /// Substitution.
    #[serde(default)]
    pub rewrite: String,
}

/// `HTTPRetry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries (0 disables).
    #[serde(default)]
    pub attempts: i32,
    /// Timeout per attempt.
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy retry conditions and status codes.
    pub retry_on: Option<String>,
    /// Retry to other localities.
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts (default true).
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the exponential back-off (default 25 ms).
    pub backoff: Option<Duration>,
}

/// `CorsPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration (seconds precision).
    pub max_age: Option<Duration>,
    /// Allow credentials.
    pub allow_credentials: Option<bool>,
    /// What to do with preflights that do not match.
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

/// `CorsPolicy.UnmatchedPreflights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    /// Default: forward.
    #[default]
    Unspecified,
    /// Forward the preflight upstream.
    Forward,
    /// Answer the preflight without CORS headers.
    Ignore,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    pub delay: Option<FaultDelay>,
    /// Abort requests.
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// Fixed delay.
    pub fixed_delay: Option<Duration>,
    /// Exponential delay (not supported by Istio).
    pub exponential_delay: Option<Duration>,
    /// Share of requests delayed; absent means none.
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    pub percent: Option<i32>,
}

/// `HTTPFaultInjection.Abort`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// HTTP status to return.
    pub http_status: Option<i32>,
    /// gRPC status name to return (`UNAVAILABLE`).
    pub grpc_status: Option<String>,
    /// HTTP/2 error (not supported by Istio).
    pub http2_error: Option<String>,
    /// Share of requests aborted; absent means none.
    pub percentage: Option<Percent>,
}

/// `HTTPMirrorPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Mirror destination (required).
    #[serde(default)]
    pub destination: Destination,
    /// Share mirrored (default 100).
    pub percentage: Option<Percent>,
}
