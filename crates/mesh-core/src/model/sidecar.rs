//! `Sidecar` (networking.istio.io): the config a workload's proxy sees.

use serde::{Deserialize, Serialize};

use super::common::{LabelsSelector, Port};
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTlsSettings;
use super::virtual_service::Destination;

/// `Sidecar.spec`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: prod}
/// spec:
///   egress:
///   - hosts: ["./*", "istio-system/*"]
/// "#, "sidecar.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let sidecar = loaded.objects[0].spec.as_sidecar().unwrap();
/// assert!(sidecar.workload_selector.is_none()); // the whole namespace
/// assert_eq!(sidecar.egress[0].hosts, ["./*", "istio-system/*"]);
/// assert!(sidecar.ingress.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// Workloads this Sidecar applies to; absent means the whole namespace.
    pub workload_selector: Option<LabelsSelector>,
    /// Inbound listeners.
    #[serde(default)]
    pub ingress: Vec<IstioIngressListener>,
    /// Outbound listeners (imported hosts).
    #[serde(default)]
    pub egress: Vec<IstioEgressListener>,
    /// Inbound connection pool for all ports.
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// Outbound policy for unknown destinations.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// `IstioIngressListener`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: ratings, namespace: prod}
/// spec:
///   workloadSelector:
///     labels: {app: ratings}
///   ingress:
///   - port: {number: 9080, protocol: HTTP, name: http}
///     defaultEndpoint: 127.0.0.1:8080
///   egress:
///   - hosts: ["./*"]
/// "#, "sidecar.yaml");
/// // valid, and said not to apply in-process (IM0013)
/// let diags = mesh_core::check(&loaded);
/// assert!(diags.iter().all(|d| d.code == "IM0013"), "{diags:?}");
/// let sidecar = loaded.objects[0].spec.as_sidecar().unwrap();
/// let ingress = &sidecar.ingress[0];
/// assert_eq!(ingress.port.as_ref().map(|p| p.number), Some(9080));
/// assert_eq!(ingress.default_endpoint.as_deref(), Some("127.0.0.1:8080"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// Port (required).
    pub port: Option<Port>,
    /// Bind address.
    pub bind: Option<String>,
    /// Capture mode.
    #[serde(default)]
    pub capture_mode: CaptureMode,
    /// Where to forward (`127.0.0.1:PORT`, `0.0.0.0:PORT`, `unix://...`).
    pub default_endpoint: Option<String>,
    /// TLS termination (SIMPLE/MUTUAL).
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool for this port.
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: prod}
/// spec:
///   egress:
///   - port: {number: 3306, protocol: MYSQL, name: egressmysql}
///     hosts: ["*/mysql.foo.com"]
///   - hosts: ["./*"]
/// "#, "sidecar.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let egress = &loaded.objects[0].spec.as_sidecar().unwrap().egress;
/// assert_eq!(egress[0].port.as_ref().map(|p| p.number), Some(3306));
/// assert_eq!(egress[0].hosts, ["*/mysql.foo.com"]);
/// assert!(egress[1].port.is_none()); // every other port
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// Port; absent means every port (must be last).
    pub port: Option<Port>,
    /// Bind address.
    pub bind: Option<String>,
    /// Capture mode.
    #[serde(default)]
    pub capture_mode: CaptureMode,
    /// `namespace/dnsName` entries (required).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `CaptureMode`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::CaptureMode;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: no-ip-tables, namespace: prod}
/// spec:
///   workloadSelector:
///     labels: {app: productpage}
///   egress:
///   - port: {number: 3306, protocol: MYSQL, name: egressmysql}
///     captureMode: NONE
///     bind: 127.0.0.1
///     hosts: ["*/mysql.foo.com"]
/// "#, "sidecar.yaml");
/// // valid Istio, which the in-process mesh has no listener for: warned (IM0013)
/// let diags = mesh_core::check(&loaded);
/// assert!(diags.iter().all(|d| d.code == "IM0013" && d.path == "spec.egress"), "{diags:?}");
/// let egress = &loaded.objects[0].spec.as_sidecar().unwrap().egress[0];
/// assert_eq!(egress.capture_mode, CaptureMode::None);
/// assert_eq!(CaptureMode::default(), CaptureMode::Default);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// Environment default.
    #[default]
    Default,
    /// iptables redirection.
    Iptables,
    /// No capture.
    None,
}

/// `OutboundTrafficPolicy`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::OutboundMode;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: prod}
/// spec:
///   egress:
///   - hosts: ["./*"]
///   outboundTrafficPolicy:
///     mode: ALLOW_ANY
/// "#, "sidecar.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let sidecar = loaded.objects[0].spec.as_sidecar().unwrap();
/// let policy = sidecar.outbound_traffic_policy.as_ref().unwrap();
/// assert_eq!(policy.mode, OutboundMode::AllowAny);
/// assert!(policy.egress_proxy.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Mode; REGISTRY_ONLY when the block is present without a mode.
    #[serde(default)]
    pub mode: OutboundMode,
    /// Egress proxy for unknown destinations (ALLOW_ANY only).
    pub egress_proxy: Option<Destination>,
}

/// `OutboundTrafficPolicy.Mode`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::OutboundMode;
///
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: prod}
/// spec:
///   egress:
///   - hosts: ["./*"]
///   outboundTrafficPolicy: {mode: REGISTRY_ONLY}
/// "#, "sidecar.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let sidecar = loaded.objects[0].spec.as_sidecar().unwrap();
/// assert_eq!(sidecar.outbound_traffic_policy.as_ref().unwrap().mode, OutboundMode::RegistryOnly);
/// assert_eq!(OutboundMode::default(), OutboundMode::RegistryOnly);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Only registered destinations (zero value).
    #[default]
    RegistryOnly,
    /// Anything; unknown destinations pass through.
    AllowAny,
    /// MeshConfig-only mode; rejected in a Sidecar.
    AllowAnyDynamicDns,
}
