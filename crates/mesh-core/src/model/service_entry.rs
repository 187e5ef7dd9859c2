//! `ServiceEntry` and `WorkloadEntry` (networking.istio.io): services and endpoints added by hand.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{Labels, LabelsSelector, Port};

/// `ServiceEntry.spec`.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Resolution, ServiceLocation};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: external-svc-https}
/// spec:
///   hosts: [api.dropboxapi.com, www.googleapis.com]
///   location: MESH_EXTERNAL
///   ports:
///   - {number: 443, name: https, protocol: TLS}
///   resolution: DNS
/// ", "se.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let se = loaded.objects[0].spec.as_service_entry().unwrap();
/// assert_eq!(se.hosts, ["api.dropboxapi.com", "www.googleapis.com"]);
/// assert_eq!(se.ports[0].number, 443);
/// assert_eq!(se.location, ServiceLocation::MeshExternal);
/// assert_eq!(se.resolution, Resolution::Dns);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::ServiceLocation;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: vm-mysql}
/// spec:
///   hosts: [mysql.vms.internal]
///   addresses: [240.240.0.12]
///   location: MESH_INTERNAL
///   ports:
///   - {number: 3306, name: mysql, protocol: TCP}
///   resolution: STATIC
///   endpoints:
///   - address: 10.1.0.12
/// ", "se.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let se = loaded.objects[0].spec.as_service_entry().unwrap();
/// assert_eq!(se.location, ServiceLocation::MeshInternal);
/// assert_eq!(ServiceLocation::default(), ServiceLocation::MeshExternal);
/// ```
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
///
/// # Examples
///
/// ```
/// use mesh_core::model::Resolution;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: external-db}
/// spec:
///   hosts: [db.example.com]
///   addresses: [240.240.0.13]
///   ports:
///   - {number: 5432, name: tcp-postgres, protocol: TCP}
///   resolution: DNS_ROUND_ROBIN
/// ", "se.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let se = loaded.objects[0].spec.as_service_entry().unwrap();
/// assert_eq!(se.resolution, Resolution::DnsRoundRobin);
/// assert_eq!(Resolution::default(), Resolution::None);
/// ```
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
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: WorkloadEntry
/// metadata: {name: details-vm1, namespace: bookinfo}
/// spec:
///   address: 10.2.0.7
///   labels: {app: details-legacy}
///   serviceAccount: details-legacy
///   ports: {http: 8080}
/// ", "we.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let we = loaded.objects[0].spec.as_workload_entry().unwrap();
/// assert_eq!(we.address, "10.2.0.7");
/// assert_eq!(we.labels["app"], "details-legacy");
/// assert_eq!(we.ports["http"], 8080);
/// assert_eq!(we.service_account.as_deref(), Some("details-legacy"));
/// ```
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
