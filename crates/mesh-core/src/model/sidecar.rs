//! `Sidecar` (networking.istio.io): the config a workload's proxy sees.

use serde::{Deserialize, Serialize};

use super::common::{LabelsSelector, Port};
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTlsSettings;
use super::virtual_service::Destination;

/// `Sidecar.spec`.
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
