//! `ServiceEntry` and `WorkloadEntry` (networking.istio.io): services and endpoints added by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Labels, LabelsSelector, Port};

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Hosts (required; used literally, never namespace-expanded).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// MESH_EXTERNAL (default) or MESH_INTERNAL.
    #[serde(default)]
    pub location: ServiceLocation,
    /// How endpoints are found; default NONE.
    #[serde(default)]
    pub resolution: Resolution,
    /// Static endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    /// Select pods / WorkloadEntries (exclusive with `endpoints`).
    pub workload_selector: Option<LabelsSelector>,
    /// Visibility.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// SANs to verify on the server certificate.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// `ServiceEntry.Location` (named `ServiceLocation` here to keep `Location` for source positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceLocation {
    /// Outside the mesh (zero value).
    #[default]
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `ServiceEntry.Resolution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the original destination (zero value).
    #[default]
    None,
    /// Static endpoint IPs.
    Static,
    /// DNS, all addresses.
    Dns,
    /// DNS, first address per connection.
    DnsRoundRobin,
    /// Resolve Host/SNI per request (wildcard hosts).
    DynamicDns,
}

/// `WorkloadEntry` (standalone kind and ServiceEntry endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP, FQDN (DNS resolution) or `unix://` path.
    #[serde(default)]
    pub address: String,
    /// Port name → endpoint port.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: Labels,
    /// Network name.
    pub network: Option<String>,
    /// `region/zone/subzone`.
    pub locality: Option<String>,
    /// Load-balancing weight.
    pub weight: Option<u32>,
    /// Service account (same namespace).
    pub service_account: Option<String>,
}
