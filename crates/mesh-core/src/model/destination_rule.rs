//! `DestinationRule` (networking.istio.io): policies applied after routing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Duration, FlexPercent, Labels, MatchLabelsSelector, PortSelector};

/// `DestinationRule.spec`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer: {simple: LEAST_REQUEST}
///   subsets:
///   - name: v1
///     labels: {version: v1}
///   - name: v2
///     labels: {version: v2}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// assert_eq!(dr.host, "reviews");
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// assert_eq!(lb.simple, Some(SimpleLb::LeastRequest));
/// let names: Vec<_> = dr.subsets.iter().map(|s| s.name.as_str()).collect();
/// assert_eq!(names, ["v1", "v2"]);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - name: v2
///     labels: {version: v2}
///     trafficPolicy:
///       loadBalancer: {simple: ROUND_ROBIN}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let subset = &dr.subsets[0];
/// assert_eq!(subset.name, "v2");
/// assert_eq!(subset.labels["version"], "v2");
/// let lb = subset.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// assert_eq!(lb.simple, Some(SimpleLb::RoundRobin));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::ClientTlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool:
///       http: {http1MaxPendingRequests: 10}
///     outlierDetection: {consecutive5xxErrors: 5, interval: 10s}
///     tls: {mode: ISTIO_MUTUAL}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let policy = dr.traffic_policy.as_ref().unwrap();
/// assert!(policy.connection_pool.is_some());
/// assert_eq!(policy.outlier_detection.as_ref().unwrap().consecutive_5xx_errors, Some(5));
/// assert_eq!(policy.tls.as_ref().unwrap().mode, ClientTlsMode::IstioMutual);
/// assert!(policy.load_balancer.is_none());
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::{PortSelector, SimpleLb};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     portLevelSettings:
///     - port: {number: 9080}
///       loadBalancer: {simple: RANDOM}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let port_policy = &dr.traffic_policy.as_ref().unwrap().port_level_settings[0];
/// assert_eq!(port_policy.port, Some(PortSelector { number: 9080 }));
/// assert_eq!(port_policy.load_balancer.as_ref().unwrap().simple, Some(SimpleLb::Random));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: egress-tunnel}
/// spec:
///   host: egressgateway.istio-system.svc.cluster.local
///   trafficPolicy:
///     tunnel:
///       protocol: CONNECT
///       targetHost: mysql.example.com
///       targetPort: 3306
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let tunnel = dr.traffic_policy.as_ref().unwrap().tunnel.as_ref().unwrap();
/// assert_eq!(tunnel.protocol.as_deref(), Some("CONNECT"));
/// assert_eq!((tunnel.target_host.as_str(), tunnel.target_port), ("mysql.example.com", 3306));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::ProxyProtocolVersion;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: legacy}
/// spec:
///   host: legacy.example.com
///   trafficPolicy:
///     proxyProtocol: {version: V2}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let proxy_protocol = dr.traffic_policy.as_ref().unwrap().proxy_protocol.unwrap();
/// assert_eq!(proxy_protocol.version, ProxyProtocolVersion::V2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// PROXY protocol version.
    #[serde(default)]
    pub version: ProxyProtocolVersion,
}

/// `ProxyProtocol.VERSION`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::ProxyProtocolVersion;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: legacy}
/// spec:
///   host: legacy.example.com
///   trafficPolicy:
///     proxyProtocol: {}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// // An empty block means version 1.
/// let proxy_protocol = dr.traffic_policy.as_ref().unwrap().proxy_protocol.unwrap();
/// assert_eq!(proxy_protocol.version, ProxyProtocolVersion::V1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProxyProtocolVersion {
    /// Version 1 (text), the default.
    #[default]
    V1,
    /// Version 2 (binary).
    V2,
}

/// `TrafficPolicy.RetryBudget`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::FlexPercent;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     retryBudget:
///       percent: 20
///       minRetryConcurrency: 5
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let budget = dr.traffic_policy.as_ref().unwrap().retry_budget.as_ref().unwrap();
/// assert_eq!(budget.percent, Some(FlexPercent(20.0)));
/// assert_eq!(budget.min_retry_concurrency, Some(5));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer:
///       consistentHash: {httpHeaderName: x-user}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// assert_eq!(lb.simple, None);
/// let hash = lb.consistent_hash.as_ref().unwrap();
/// assert_eq!(hash.http_header_name.as_deref(), Some("x-user"));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer: {simple: ROUND_ROBIN}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// assert_eq!(lb.simple, Some(SimpleLb::RoundRobin));
/// assert_eq!(SimpleLb::default(), SimpleLb::Unspecified); // LEAST_REQUEST in effect
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec:
///   host: ratings
///   trafficPolicy:
///     loadBalancer:
///       consistentHash:
///         useSourceIp: true
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let hash = lb.consistent_hash.as_ref().unwrap();
/// assert_eq!(hash.use_source_ip, Some(true));
/// assert_eq!(hash.http_header_name, None);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: cart}
/// spec:
///   host: cart
///   trafficPolicy:
///     loadBalancer:
///       consistentHash:
///         httpCookie: {name: user, ttl: 0s}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let cookie = lb.consistent_hash.as_ref().unwrap().http_cookie.as_ref().unwrap();
/// assert_eq!(cookie.name, "user");
/// assert_eq!(cookie.ttl, Some(Duration::ZERO)); // a session cookie
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: cart}
/// spec:
///   host: cart
///   trafficPolicy:
///     loadBalancer:
///       consistentHash:
///         httpCookie:
///           name: user
///           ttl: 3600s
///           attributes:
///           - {name: SameSite, value: Strict}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let cookie = lb.consistent_hash.as_ref().unwrap().http_cookie.as_ref().unwrap();
/// assert_eq!(cookie.attributes[0].name, "SameSite");
/// assert_eq!(cookie.attributes[0].value.as_deref(), Some("Strict"));
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec:
///   host: ratings
///   trafficPolicy:
///     loadBalancer:
///       consistentHash:
///         httpHeaderName: x-user
///         ringHash: {minimumRingSize: 2048}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let ring = lb.consistent_hash.as_ref().unwrap().ring_hash.unwrap();
/// assert_eq!(ring.minimum_ring_size, Some(2048));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum ring size (default 1024).
    pub minimum_ring_size: Option<u64>,
}

/// `ConsistentHashLB.MagLev`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec:
///   host: ratings
///   trafficPolicy:
///     loadBalancer:
///       consistentHash:
///         httpHeaderName: x-user
///         maglev: {tableSize: 65537}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let maglev = lb.consistent_hash.as_ref().unwrap().maglev.unwrap();
/// assert_eq!(maglev.table_size, Some(65537));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Table size (prime, < 5000011).
    pub table_size: Option<u64>,
}

/// `LocalityLoadBalancerSetting`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer:
///       localityLbSetting:
///         enabled: true
///         failoverPriority: [topology.kubernetes.io/region]
///     outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let locality = lb.locality_lb_setting.as_ref().unwrap();
/// assert_eq!(locality.enabled, Some(true));
/// assert_eq!(locality.failover_priority, ["topology.kubernetes.io/region"]);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer:
///       localityLbSetting:
///         distribute:
///         - from: us-west/zone1/*
///           to:
///             us-west/zone1/*: 80
///             us-west/zone2/*: 20
///     outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let distribute = &lb.locality_lb_setting.as_ref().unwrap().distribute[0];
/// assert_eq!(distribute.from, "us-west/zone1/*");
/// assert_eq!(distribute.to["us-west/zone2/*"], 20);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer:
///       localityLbSetting:
///         failover:
///         - {from: us-east, to: eu-west}
///     outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let failover = &lb.locality_lb_setting.as_ref().unwrap().failover[0];
/// assert_eq!((failover.from.as_str(), failover.to.as_str()), ("us-east", "eu-west"));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer:
///       simple: ROUND_ROBIN
///       warmup:
///         duration: 60s
///         minimumPercent: 20
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let lb = dr.traffic_policy.as_ref().unwrap().load_balancer.as_ref().unwrap();
/// let warmup = lb.warmup.as_ref().unwrap();
/// assert_eq!(warmup.duration, Some(Duration::from_secs(60)));
/// assert_eq!(warmup.minimum_percent, Some(20.0));
/// assert_eq!(warmup.aggression, None);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool:
///       tcp: {maxConnections: 100}
///       http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// assert_eq!(pool.tcp.as_ref().unwrap().max_connections, Some(100));
/// assert_eq!(pool.http.as_ref().unwrap().http2_max_requests, Some(1000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: redis}
/// spec:
///   host: redis
///   trafficPolicy:
///     connectionPool:
///       tcp:
///         maxConnections: 100
///         connectTimeout: 30ms
///         idleTimeout: 10m
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// let tcp = pool.tcp.as_ref().unwrap();
/// assert_eq!(tcp.max_connections, Some(100));
/// assert_eq!(tcp.connect_timeout, Some(Duration::from_millis(30)));
/// assert_eq!(tcp.idle_timeout, Some(Duration::from_secs(600)));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: redis}
/// spec:
///   host: redis
///   trafficPolicy:
///     connectionPool:
///       tcp:
///         tcpKeepalive: {time: 7200s, interval: 75s}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// let keepalive = pool.tcp.as_ref().unwrap().tcp_keepalive.as_ref().unwrap();
/// assert_eq!(keepalive.time, Some(Duration::from_secs(7200)));
/// assert_eq!(keepalive.interval, Some(Duration::from_secs(75)));
/// assert_eq!(keepalive.probes, None);
/// ```
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

impl TcpKeepalive {
    /// The keepalive istiod gives a cluster (`applyTCPKeepalive`): MeshConfig's
    /// `tcpKeepalive` first, then each field the DestinationRule sets (`probes` when above
    /// 0) over it; `None` when neither sets one (no `SO_KEEPALIVE`). A field neither sets
    /// is the operating system's default.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Duration, TcpKeepalive};
    ///
    /// let mesh = TcpKeepalive { time: Some(Duration::from_secs(600)), probes: Some(3), interval: None };
    /// let dr = TcpKeepalive { time: Some(Duration::from_secs(30)), probes: Some(0), interval: None };
    /// let k = TcpKeepalive::merged(Some(&mesh), Some(&dr)).unwrap();
    /// assert_eq!(k.time, Some(Duration::from_secs(30))); // the DestinationRule's
    /// assert_eq!(k.probes, Some(3)); // 0 is unset
    /// assert_eq!(TcpKeepalive::merged(None, None), None);
    /// ```
    pub fn merged(mesh: Option<&TcpKeepalive>, dr: Option<&TcpKeepalive>) -> Option<TcpKeepalive> {
        if mesh.is_none() && dr.is_none() {
            return None;
        }
        let mut out = TcpKeepalive::default();
        for k in [mesh, dr].into_iter().flatten() {
            if let Some(p) = k.probes.filter(|p| *p > 0) {
                out.probes = Some(p);
            }
            if k.time.is_some() {
                out.time = k.time;
            }
            if k.interval.is_some() {
                out.interval = k.interval;
            }
        }
        Some(out)
    }
}

/// `ConnectionPoolSettings.HTTPSettings`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool:
///       http:
///         http1MaxPendingRequests: 10
///         maxRetries: 3
///         useClientProtocol: true
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// let http = pool.http.as_ref().unwrap();
/// assert_eq!(http.http1_max_pending_requests, Some(10));
/// assert_eq!(http.max_retries, Some(3));
/// assert_eq!(http.use_client_protocol, Some(true));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::H2UpgradePolicy;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool:
///       http: {h2UpgradePolicy: UPGRADE}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// let http = pool.http.as_ref().unwrap();
/// assert_eq!(http.h2_upgrade_policy, Some(H2UpgradePolicy::Upgrade));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: grpc-backend}
/// spec:
///   host: grpc-backend
///   trafficPolicy:
///     connectionPool:
///       http:
///         http2KeepAlive: {interval: 30s, timeout: 5s}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let pool = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
/// let keepalive = pool.http.as_ref().unwrap().http2_keep_alive.as_ref().unwrap();
/// assert_eq!(keepalive.interval, Some(Duration::from_secs(30)));
/// assert_eq!(keepalive.timeout, Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2KeepAlive {
    /// Ping interval (required).
    pub interval: Option<Duration>,
    /// Ping timeout (required).
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Duration;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     outlierDetection:
///       consecutive5xxErrors: 7
///       interval: 5m
///       baseEjectionTime: 15m
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let outlier = dr.traffic_policy.as_ref().unwrap().outlier_detection.as_ref().unwrap();
/// assert_eq!(outlier.consecutive_5xx_errors, Some(7));
/// assert_eq!(outlier.interval, Some(Duration::from_secs(300)));
/// assert_eq!(outlier.base_ejection_time, Some(Duration::from_secs(900)));
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::ClientTlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: db-mtls}
/// spec:
///   host: mydbserver.prod.svc.cluster.local
///   trafficPolicy:
///     tls:
///       mode: MUTUAL
///       clientCertificate: /etc/certs/myclientcert.pem
///       privateKey: /etc/certs/client_private_key.pem
///       caCertificates: /etc/certs/rootcacerts.pem
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let tls = dr.traffic_policy.as_ref().unwrap().tls.as_ref().unwrap();
/// assert_eq!(tls.mode, ClientTlsMode::Mutual);
/// assert_eq!(tls.client_certificate.as_deref(), Some("/etc/certs/myclientcert.pem"));
/// assert_eq!(tls.sni, None);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::ClientTlsMode;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     tls: {mode: ISTIO_MUTUAL}
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let tls = dr.traffic_policy.as_ref().unwrap().tls.as_ref().unwrap();
/// assert_eq!(tls.mode, ClientTlsMode::IstioMutual);
/// assert_eq!(ClientTlsMode::default(), ClientTlsMode::Disable);
/// ```
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
