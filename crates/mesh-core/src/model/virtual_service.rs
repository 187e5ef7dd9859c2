//! `VirtualService` (networking.istio.io): ordered HTTP, TLS and TCP routing rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, Labels, Percent, PortSelector, StringMatch};

/// `VirtualService.spec`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match:
///     - headers:
///         end-user: {exact: jason}
///     route:
///     - destination: {host: reviews-canary}
///   - route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// assert_eq!(vs.hosts, ["reviews"]);
/// assert!(vs.gateways.is_empty()); // applies to the mesh
/// assert_eq!(vs.http.len(), 2);
/// assert_eq!(vs.http[1].route[0].destination.host, "reviews");
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews, subset: v1, port: {number: 9080}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - {name: v1, labels: {version: v1}}
/// ", "reviews.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let dest = &vs.http[0].route[0].destination;
/// assert_eq!(dest.host, "reviews");
/// assert_eq!(dest.subset.as_deref(), Some("v1"));
/// assert_eq!(dest.port.map(|p| p.number), Some(9080));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - name: api
///     match:
///     - uri: {prefix: /api}
///     route:
///     - destination: {host: reviews}
///     timeout: 5s
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let route = &loaded.objects[0].spec.as_virtual_service().unwrap().http[0];
/// assert_eq!(route.name.as_deref(), Some("api"));
/// assert_eq!(route.matches.len(), 1);
/// assert_eq!(route.timeout, Some(Duration::from_secs(5)));
/// assert!(route.redirect.is_none() && route.retries.is_none());
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: bookinfo}
/// spec:
///   hosts: [bookinfo]
///   http:
///   - match:
///     - uri: {prefix: /reviews}
///     delegate: {name: reviews, namespace: default}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   http:
///   - route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let root = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let delegate = root.http[0].delegate.as_ref().unwrap();
/// assert_eq!(delegate.name, "reviews");
/// assert_eq!(delegate.namespace.as_deref(), Some("default"));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///     headers:
///       request:
///         set: {x-env: prod}
///       response:
///         remove: [x-internal]
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let headers = loaded.objects[0].spec.as_virtual_service().unwrap().http[0]
///     .headers
///     .as_ref()
///     .unwrap();
/// assert_eq!(headers.request.as_ref().unwrap().set["x-env"], "prod");
/// assert_eq!(headers.response.as_ref().unwrap().remove, ["x-internal"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Operations on the request headers.
    pub request: Option<HeaderOperations>,
    /// Operations on the response headers.
    pub response: Option<HeaderOperations>,
}

/// `HeaderOperations`: `set` overwrites, `add` appends, `remove` deletes.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///       headers:
///         request:
///           add: {x-route: primary}
///           remove: [cookie]
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let ops = vs.http[0].route[0].headers.as_ref().unwrap().request.as_ref().unwrap();
/// assert_eq!(ops.add["x-route"], "primary");
/// assert_eq!(ops.remove, ["cookie"]);
/// assert!(ops.set.is_empty());
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: login}
/// spec:
///   hosts: [login.example.com]
///   tls:
///   - match:
///     - sniHosts: [login.example.com]
///       port: 443
///     route:
///     - destination: {host: login.prod.svc.cluster.local}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let tls = &loaded.objects[0].spec.as_virtual_service().unwrap().tls[0];
/// assert_eq!(tls.matches[0].sni_hosts, ["login.example.com"]);
/// assert_eq!(tls.route[0].destination.host, "login.prod.svc.cluster.local");
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: mongo}
/// spec:
///   hosts: [mongo]
///   tcp:
///   - match:
///     - port: 27017
///     route:
///     - destination: {host: mongo-backup, port: {number: 5555}}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let tcp = &loaded.objects[0].spec.as_virtual_service().unwrap().tcp[0];
/// assert_eq!(tcp.matches[0].port, Some(27017));
/// assert_eq!(tcp.route[0].destination.host, "mongo-backup");
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::StringMatchKind;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match:
///     - uri: {prefix: /reviews}
///       method: {exact: GET}
///       queryParams:
///         debug: {exact: '1'}
///       ignoreUriCase: true
///     route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let m = &loaded.objects[0].spec.as_virtual_service().unwrap().http[0].matches[0];
/// assert_eq!(m.method.as_ref().unwrap().kind(), Some(StringMatchKind::Exact("GET")));
/// assert_eq!(m.query_params["debug"].exact.as_deref(), Some("1"));
/// assert!(m.ignore_uri_case);
/// assert!(m.headers.is_empty());
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///       weight: 75
///     - destination: {host: reviews-canary}
///       weight: 25
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let route = &loaded.objects[0].spec.as_virtual_service().unwrap().http[0].route;
/// let weights: Vec<_> = route.iter().map(|d| (d.destination.host.as_str(), d.weight)).collect();
/// assert_eq!(weights, [("reviews", Some(75)), ("reviews-canary", Some(25))]);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: mongo}
/// spec:
///   hosts: [mongo]
///   tcp:
///   - route:
///     - destination: {host: mongo}
///       weight: 80
///     - destination: {host: mongo-next}
///       weight: 20
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let route = &loaded.objects[0].spec.as_virtual_service().unwrap().tcp[0].route;
/// assert_eq!(route[1].destination.host, "mongo-next");
/// assert_eq!(route[1].weight, Some(20));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: mongo}
/// spec:
///   hosts: [mongo]
///   tcp:
///   - match:
///     - destinationSubnets: [10.0.0.0/8]
///       port: 27017
///       sourceLabels: {app: reporting}
///     route:
///     - destination: {host: mongo-replica}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let m = &loaded.objects[0].spec.as_virtual_service().unwrap().tcp[0].matches[0];
/// assert_eq!(m.destination_subnets, ["10.0.0.0/8"]);
/// assert_eq!(m.port, Some(27017));
/// assert_eq!(m.source_labels["app"], "reporting");
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: login}
/// spec:
///   hosts: [login.example.com]
///   tls:
///   - match:
///     - sniHosts: [login.example.com]
///       port: 443
///       sourceNamespace: frontend
///     route:
///     - destination: {host: login.prod.svc.cluster.local}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let m = &loaded.objects[0].spec.as_virtual_service().unwrap().tls[0].matches[0];
/// assert_eq!(m.sni_hosts, ["login.example.com"]);
/// assert_eq!(m.port, Some(443));
/// assert_eq!(m.source_namespace.as_deref(), Some("frontend"));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - match:
///     - uri: {exact: /v1/getProductRatings}
///     redirect:
///       uri: /v1/bookRatings
///       authority: newratings.default.svc.cluster.local
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let redirect = vs.http[0].redirect.as_ref().unwrap();
/// assert_eq!(redirect.uri.as_deref(), Some("/v1/bookRatings"));
/// assert_eq!(redirect.authority.as_deref(), Some("newratings.default.svc.cluster.local"));
/// assert_eq!(redirect.redirect_code, None); // 301
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::RedirectPortSelection;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: web}
/// spec:
///   hosts: [web]
///   http:
///   - redirect:
///       scheme: https
///       derivePort: FROM_REQUEST_PORT
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let redirect = vs.http[0].redirect.as_ref().unwrap();
/// assert_eq!(redirect.derive_port, Some(RedirectPortSelection::FromRequestPort));
/// assert_eq!(RedirectPortSelection::default(), RedirectPortSelection::FromProtocolDefault);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - match:
///     - uri: {prefix: /unavailable}
///     directResponse:
///       status: 503
///       body: {string: unknown path}
///   - route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let response = vs.http[0].direct_response.as_ref().unwrap();
/// assert_eq!(response.status, 503);
/// assert!(response.body.is_some());
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: maintenance}
/// spec:
///   hosts: [shop]
///   http:
///   - directResponse:
///       status: 503
///       body:
///         bytes: bWFpbnRlbmFuY2U=
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let body = vs.http[0].direct_response.as_ref().unwrap().body.as_ref().unwrap();
/// assert_eq!(body.bytes.as_deref(), Some("bWFpbnRlbmFuY2U=")); // "maintenance"
/// assert_eq!(body.string, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    /// Body as text.
    pub string: Option<String>,
    /// Body as base64-encoded bytes.
    pub bytes: Option<String>,
}

/// `HTTPRewrite`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - match:
///     - uri: {prefix: /ratings}
///     rewrite:
///       uri: /v1/bookRatings
///     route:
///     - destination: {host: ratings}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let rewrite = vs.http[0].rewrite.as_ref().unwrap();
/// assert_eq!(rewrite.uri.as_deref(), Some("/v1/bookRatings"));
/// assert_eq!(rewrite.authority, None);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: service}
/// spec:
///   hosts: [service]
///   http:
///   - rewrite:
///       uriRegexRewrite:
///         match: '^/service/([^/]+)(/.*)$'
///         rewrite: '\2/instance/\1'
///     route:
///     - destination: {host: service}
/// "#, "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let regex = vs.http[0].rewrite.as_ref().unwrap().uri_regex_rewrite.as_ref().unwrap();
/// assert_eq!(regex.matcher, "^/service/([^/]+)(/.*)$");
/// assert_eq!(regex.rewrite, r"\2/instance/\1");
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - route:
///     - destination: {host: ratings}
///     retries:
///       attempts: 3
///       perTryTimeout: 2s
///       retryOn: gateway-error,connect-failure,refused-stream
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let retries = vs.http[0].retries.as_ref().unwrap();
/// assert_eq!(retries.attempts, 3);
/// assert_eq!(retries.per_try_timeout, Some(Duration::from_secs(2)));
/// assert_eq!(retries.retry_on.as_deref(), Some("gateway-error,connect-failure,refused-stream"));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - route:
///     - destination: {host: ratings}
///     corsPolicy:
///       allowOrigins:
///       - exact: https://example.com
///       allowMethods: [POST, GET]
///       allowHeaders: [X-Foo-Bar]
///       maxAge: 24h
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let cors = vs.http[0].cors_policy.as_ref().unwrap();
/// assert_eq!(cors.allow_origins[0].exact.as_deref(), Some("https://example.com"));
/// assert_eq!(cors.allow_methods, ["POST", "GET"]);
/// assert_eq!(cors.max_age, Some(Duration::from_secs(24 * 3600)));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::UnmatchedPreflights;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - route:
///     - destination: {host: ratings}
///     corsPolicy:
///       allowOrigins:
///       - exact: https://example.com
///       unmatchedPreflights: IGNORE
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let cors = vs.http[0].cors_policy.as_ref().unwrap();
/// assert_eq!(cors.unmatched_preflights, Some(UnmatchedPreflights::Ignore));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - route:
///     - destination: {host: ratings}
///     fault:
///       abort:
///         httpStatus: 500
///         percentage: {value: 100}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let fault = vs.http[0].fault.as_ref().unwrap();
/// assert!(fault.delay.is_none());
/// assert_eq!(fault.abort.as_ref().unwrap().http_status, Some(500));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    pub delay: Option<FaultDelay>,
    /// Abort requests.
    pub abort: Option<FaultAbort>,
}

/// `HTTPFaultInjection.Delay`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Duration, Percent};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///     fault:
///       delay:
///         fixedDelay: 5s
///         percentage: {value: 0.1}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let delay = vs.http[0].fault.as_ref().unwrap().delay.as_ref().unwrap();
/// assert_eq!(delay.fixed_delay, Some(Duration::from_secs(5)));
/// assert_eq!(delay.percentage, Some(Percent { value: 0.1 }));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings}
/// spec:
///   hosts: [ratings]
///   http:
///   - route:
///     - destination: {host: ratings}
///     fault:
///       abort:
///         grpcStatus: UNAVAILABLE
///         percentage: {value: 50}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let abort = vs.http[0].fault.as_ref().unwrap().abort.as_ref().unwrap();
/// assert_eq!(abort.grpc_status.as_deref(), Some("UNAVAILABLE"));
/// assert_eq!(abort.http_status, None);
/// assert_eq!(abort.percentage.map(|p| p.value), Some(50.0));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
///     mirrors:
///     - destination: {host: reviews-shadow}
///       percentage: {value: 50}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let vs = loaded.objects[0].spec.as_virtual_service().unwrap();
/// let mirror = &vs.http[0].mirrors[0];
/// assert_eq!(mirror.destination.host, "reviews-shadow");
/// assert_eq!(mirror.percentage.map(|p| p.value), Some(50.0));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Mirror destination (required).
    #[serde(default)]
    pub destination: Destination,
    /// Share mirrored (default 100).
    pub percentage: Option<Percent>,
}
