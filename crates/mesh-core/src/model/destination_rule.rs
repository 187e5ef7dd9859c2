//! `DestinationRule` (networking.istio.io): policies applied after routing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, FlexPercent, Labels, MatchLabelsSelector, PortSelector};

/// `DestinationRule.spec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// Service host (required; short names resolve in the DR's namespace; wildcards allowed).
    #[serde(default)]
    pub host: String,
    /// Policies for the whole host.
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named subsets, selected by labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces this DR is visible to; empty means all.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Client workloads (same namespace) the DR applies to.
    pub workload_selector: Option<MatchLabelsSelector>,
}

/// `Subset`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// Subset name (required, DNS-1123 label).
    #[serde(default)]
    pub name: String,
    /// Endpoint labels selecting the subset.
    #[serde(default)]
    pub labels: Labels,
    /// Policies replacing the DR's, block by block.
    pub traffic_policy: Option<TrafficPolicy>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool (circuit breaking).
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection (ejection).
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination.
    pub tls: Option<ClientTlsSettings>,
    /// Per-port policies (not merged with the top level).
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnel settings.
    pub tunnel: Option<TunnelSettings>,
    /// PROXY protocol to upstream.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget.
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The destination port (required).
    pub port: Option<PortSelector>,
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS origination.
    pub tls: Option<ClientTlsSettings>,
}

/// `TrafficPolicy.TunnelSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    pub protocol: Option<String>,
    /// Host to tunnel to (required).
    #[serde(default)]
    pub target_host: String,
    /// Port to tunnel to (required).
    #[serde(default)]
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// PROXY protocol version.
    #[serde(default)]
    pub version: ProxyProtocolVersion,
}

/// `ProxyProtocol.VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProxyProtocolVersion {
    /// Version 1 (text), the default.
    #[default]
    V1,
    /// Version 2 (binary).
    V2,
}

/// `TrafficPolicy.RetryBudget`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Concurrent retries as a percentage of active requests (default 20).
    pub percent: Option<FlexPercent>,
    /// Floor of the retry concurrency (default 3).
    pub min_retry_concurrency: Option<u32>,
    /// Window over which requests count toward the budget.
    pub budget_interval: Option<Duration>,
}

/// `LoadBalancerSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// Simple algorithm; `UNSPECIFIED` means LEAST_REQUEST.
    pub simple: Option<SimpleLb>,
    /// Consistent hashing (instead of `simple`).
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality-weighted load balancing.
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Zone-aware load balancing (kept as data; not interpreted by inmesh).
    pub zone_aware_lb_setting: Option<serde_json::Value>,
    /// Deprecated slow-start window.
    pub warmup_duration_secs: Option<Duration>,
    /// Slow-start settings.
    pub warmup: Option<WarmupConfiguration>,
}

/// `LoadBalancerSettings.SimpleLB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// Zero value; Istio uses LEAST_REQUEST.
    #[default]
    Unspecified,
    /// Deprecated alias of LEAST_REQUEST.
    LeastConn,
    /// Random.
    Random,
    /// Forward to the caller's original destination.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least request (power of two choices).
    LeastRequest,
}

/// `LoadBalancerSettings.ConsistentHashLB`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on a header.
    pub http_header_name: Option<String>,
    /// Hash on a cookie.
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    pub use_source_ip: Option<bool>,
    /// Hash on a query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Ring hash algorithm.
    pub ring_hash: Option<RingHash>,
    /// Maglev algorithm.
    pub maglev: Option<MagLev>,
    /// Deprecated ring size.
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.HTTPCookie`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name (required).
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    pub path: Option<String>,
    /// Lifetime; 0 means a session cookie.
    pub ttl: Option<Duration>,
    /// Extra attributes.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// `HTTPCookie.Attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieAttribute {
    /// Attribute name.
    #[serde(default)]
    pub name: String,
    /// Attribute value.
    pub value: Option<String>,
}

/// `ConsistentHashLB.RingHash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum ring size (default 1024).
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Table size (prime, < 5000011).
    pub table_size: Option<u64>,
}

/// `LocalityLoadBalancerSetting`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLbSetting {
    /// Weighted distribution between localities.
    #[serde(default)]
    pub distribute: Vec<LocalityDistribute>,
    /// Failover between regions.
    #[serde(default)]
    pub failover: Vec<LocalityFailover>,
    /// Label keys ordering failover priority.
    #[serde(default)]
    pub failover_priority: Vec<String>,
    /// Enable or disable locality load balancing.
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Origin locality (`region/zone/subzone`, wildcards allowed).
    #[serde(default)]
    pub from: String,
    /// Destination localities and weights.
    #[serde(default)]
    pub to: BTreeMap<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// Origin region.
    #[serde(default)]
    pub from: String,
    /// Failover region.
    #[serde(default)]
    pub to: String,
}

/// `WarmupConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// Warm-up window (required).
    pub duration: Option<Duration>,
    /// Starting percentage of traffic (default 10).
    pub minimum_percent: Option<f64>,
    /// Ramp curve (default 1.0).
    pub aggression: Option<f64>,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Max connections (default 2^32-1).
    pub max_connections: Option<i32>,
    /// Connect timeout (default 10 s).
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive.
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Max connection lifetime.
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout (default 1 h; `0s` disables).
    pub idle_timeout: Option<Duration>,
}

/// `TCPSettings.TcpKeepalive`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Probes before the connection is dead.
    pub probes: Option<u32>,
    /// Idle time before probes.
    pub time: Option<Duration>,
    /// Interval between probes.
    pub interval: Option<Duration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Max pending requests.
    pub http1_max_pending_requests: Option<i32>,
    /// Max active requests.
    pub http2_max_requests: Option<i32>,
    /// Requests per connection (0 unlimited, 1 disables keep-alive).
    pub max_requests_per_connection: Option<i32>,
    /// Max concurrent retries.
    pub max_retries: Option<i32>,
    /// Idle timeout.
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 upgrade policy.
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Use the client's protocol upstream.
    pub use_client_protocol: Option<bool>,
    /// Max concurrent HTTP/2 streams.
    pub max_concurrent_streams: Option<i32>,
    /// HTTP/2 keepalive pings.
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// `HTTPSettings.H2UpgradePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// Mesh default.
    #[default]
    Default,
    /// Do not upgrade.
    DoNotUpgrade,
    /// Upgrade to HTTP/2.
    Upgrade,
}

/// `HTTPSettings.Http2KeepAlive`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2KeepAlive {
    /// Ping interval (required).
    pub interval: Option<Duration>,
    /// Ping timeout (required).
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Split local-origin from external errors.
    #[serde(default)]
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures before ejection.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive 502/503/504 before ejection.
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx before ejection (default 5).
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Ejection analysis interval (default 10 s).
    pub interval: Option<Duration>,
    /// Base ejection time (default 30 s).
    pub base_ejection_time: Option<Duration>,
    /// Max ejected percentage (default 10).
    pub max_ejection_percent: Option<i32>,
    /// Panic threshold (default 0).
    pub min_health_percent: Option<i32>,
    /// Deprecated: consecutive errors.
    pub consecutive_errors: Option<i32>,
    /// Status codes counted as errors (replace "5xx").
    #[serde(default)]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// `ClientTLSSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// TLS mode; default DISABLE.
    #[serde(default)]
    pub mode: ClientTlsMode,
    /// Client certificate file (MUTUAL).
    pub client_certificate: Option<String>,
    /// Client private key file (MUTUAL).
    pub private_key: Option<String>,
    /// CA bundle file to verify the server.
    pub ca_certificates: Option<String>,
    /// Secret holding the client credentials.
    pub credential_name: Option<String>,
    /// SANs the server certificate must carry.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// SNI to present.
    pub sni: Option<String>,
    /// Skip server verification.
    pub insecure_skip_verify: Option<bool>,
    /// CRL file.
    pub ca_crl: Option<String>,
}

/// `ClientTLSSettings.TLSmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    /// No TLS (zero value).
    #[default]
    Disable,
    /// TLS, server verified.
    Simple,
    /// mTLS with given client certificate.
    Mutual,
    /// mTLS with the mesh's certificates.
    IstioMutual,
}
