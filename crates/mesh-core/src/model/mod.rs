//! The typed Istio configuration model.
//!
//! Plain data mirroring Istio's API field for field: YAML names are the proto JSON names
//! (lowerCamelCase), enums are spelled as Istio spells them and default to their proto3
//! zero value, durations are [`Duration`], percentages [`Percent`]. Optional scalars and
//! messages are `Option`, lists and maps default to empty. Unknown fields are rejected
//! (`deny_unknown_fields`), which is what `kubectl apply` does with strict field validation.
//! Nothing here is compiled (no regexes, no host indexes): the engines build that from
//! these values.
//!
//! Every [`ConfigObject`] keeps its [`Source`]: the file, the object's position and the
//! position of every field, so any check can point at `spec.http[0].timeout`.
//!
//! Besides the nine Istio kinds, the loader keeps the Kubernetes objects the registry can
//! use: `Service` ([`KubeService`]), `ServiceAccount`, and workloads (`Pod`, `Deployment`,
//! `StatefulSet`, `DaemonSet`, `ReplicaSet` as [`KubeWorkload`]), and `Secret` names and key
//! names (never their values: [`KubeSecret`]) for Gateway credential checks, as extra [`Spec`]
//! variants.
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::{Kind, Spec};
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec:
//!   host: reviews
//!   trafficPolicy: {connectionPool: {http: {idleTimeout: 90s}}}
//!   subsets: [{name: v1, labels: {version: v1}}]
//! ", "dr.yaml");
//! # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
//! let obj = &loaded.objects[0];
//! assert_eq!(obj.kind, Kind::DestinationRule);
//! let Spec::DestinationRule(dr) = &obj.spec else { panic!("not a DestinationRule") };
//! assert_eq!(dr.subsets[0].labels["version"], "v1");
//! let idle = dr.traffic_policy.as_ref().unwrap().connection_pool.as_ref().unwrap();
//! assert_eq!(idle.http.as_ref().unwrap().idle_timeout, Some(mesh_core::model::Duration::from_secs(90)));
//! assert_eq!(obj.source.locate("spec.subsets[0].name").map(|l| l.line), Some(8));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod common;
mod destination_rule;
mod gateway;
pub mod host;
mod kube;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use common::*;
pub use destination_rule::*;
pub use gateway::*;
pub(crate) use kube::raw as kube_raw;
pub use kube::{
    certificate_problem, ContainerPort, IntOrString, KubeSecret, KubeService, KubeServicePort,
    KubeWorkload,
};
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;

/// The API group of the networking kinds.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Kind, NETWORKING_GROUP};
///
/// assert_eq!(NETWORKING_GROUP, "networking.istio.io");
/// assert_eq!(Kind::Gateway.group(), NETWORKING_GROUP);
/// ```
pub const NETWORKING_GROUP: &str = "networking.istio.io";
/// The API group of the security kinds.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Kind, SECURITY_GROUP};
///
/// assert_eq!(SECURITY_GROUP, "security.istio.io");
/// assert_eq!(Kind::AuthorizationPolicy.group(), SECURITY_GROUP);
/// ```
pub const SECURITY_GROUP: &str = "security.istio.io";
/// Served versions of the networking kinds (identical schemas; `v1` is the storage version).
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Kind, NETWORKING_VERSIONS};
///
/// assert_eq!(NETWORKING_VERSIONS[0], "v1");
/// assert!(NETWORKING_VERSIONS.contains(&"v1alpha3"));
/// assert_eq!(Kind::VirtualService.versions(), NETWORKING_VERSIONS);
/// ```
pub const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
/// Served versions of the security kinds.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Kind, SECURITY_VERSIONS};
///
/// assert_eq!(SECURITY_VERSIONS, ["v1", "v1beta1"]);
/// assert_eq!(Kind::PeerAuthentication.versions(), SECURITY_VERSIONS);
/// // security.istio.io/v1alpha3 does not exist
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1alpha3
/// kind: PeerAuthentication
/// metadata: {name: default}
/// spec: {mtls: {mode: STRICT}}
/// ", "pa.yaml");
/// assert_eq!(loaded.diagnostics[0].code, mesh_core::diag::codes::API_VERSION);
/// ```
pub const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// The kinds the model knows.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Kind;
///
/// let kind = Kind::from_kind_str("VirtualService").unwrap();
/// assert_eq!(kind, Kind::VirtualService);
/// assert_eq!(kind.group(), "networking.istio.io");
/// assert_eq!(kind.versions(), ["v1", "v1beta1", "v1alpha3"]);
/// assert_eq!(kind.preferred_api_version(), "networking.istio.io/v1");
/// assert!(kind.is_istio());
///
/// assert_eq!(Kind::Deployment.preferred_api_version(), "apps/v1");
/// assert!(!Kind::Deployment.is_istio());
/// assert_eq!(Kind::from_kind_str("EnvoyFilter"), None);
///
/// // Every loaded object carries its kind.
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: istio-system}
/// spec:
///   mtls: {mode: STRICT}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// assert_eq!(loaded.objects[0].kind, Kind::PeerAuthentication);
/// assert_eq!(loaded.objects[0].kind.to_string(), "PeerAuthentication");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// networking.istio.io VirtualService.
    VirtualService,
    /// networking.istio.io DestinationRule.
    DestinationRule,
    /// networking.istio.io ServiceEntry.
    ServiceEntry,
    /// networking.istio.io WorkloadEntry.
    WorkloadEntry,
    /// networking.istio.io Gateway.
    Gateway,
    /// networking.istio.io Sidecar.
    Sidecar,
    /// security.istio.io PeerAuthentication.
    PeerAuthentication,
    /// security.istio.io AuthorizationPolicy.
    AuthorizationPolicy,
    /// security.istio.io RequestAuthentication.
    RequestAuthentication,
    /// Kubernetes v1 Service.
    Service,
    /// Kubernetes v1 ServiceAccount.
    ServiceAccount,
    /// Kubernetes v1 Pod.
    Pod,
    /// Kubernetes apps/v1 Deployment.
    Deployment,
    /// Kubernetes apps/v1 StatefulSet.
    StatefulSet,
    /// Kubernetes apps/v1 DaemonSet.
    DaemonSet,
    /// Kubernetes apps/v1 ReplicaSet.
    ReplicaSet,
    /// Kubernetes v1 Secret (names only).
    Secret,
    /// Kubernetes v1 Namespace (cluster-scoped: its labels and annotations).
    Namespace,
}

impl Kind {
    /// The nine Istio kinds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert!(Kind::ISTIO.iter().all(|k| k.is_istio()));
    /// assert!(Kind::ISTIO.contains(&Kind::Sidecar));
    /// assert!(!Kind::ISTIO.contains(&Kind::Service));
    /// ```
    pub const ISTIO: [Kind; 9] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::WorkloadEntry,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
    ];

    /// The Kubernetes kinds kept for the registry.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert!(Kind::KUBERNETES.iter().all(|k| !k.is_istio()));
    /// assert!(Kind::KUBERNETES.contains(&Kind::Deployment));
    /// assert!(!Kind::KUBERNETES.contains(&Kind::Gateway));
    /// ```
    pub const KUBERNETES: [Kind; 9] = [
        Kind::Service,
        Kind::ServiceAccount,
        Kind::Pod,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::Secret,
        Kind::Namespace,
    ];

    /// The kind as written in `kind:`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert_eq!(Kind::WorkloadEntry.as_str(), "WorkloadEntry");
    /// assert_eq!(Kind::StatefulSet.to_string(), Kind::StatefulSet.as_str());
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Service => "Service",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Secret => "Secret",
            Kind::Namespace => "Namespace",
        }
    }

    /// The API group (`""` for the Kubernetes core group).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert_eq!(Kind::Sidecar.group(), "networking.istio.io");
    /// assert_eq!(Kind::RequestAuthentication.group(), "security.istio.io");
    /// assert_eq!(Kind::Deployment.group(), "apps");
    /// assert_eq!(Kind::Service.group(), "");
    /// ```
    pub const fn group(self) -> &'static str {
        match self {
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::WorkloadEntry
            | Kind::Gateway
            | Kind::Sidecar => NETWORKING_GROUP,
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            Kind::Service | Kind::ServiceAccount | Kind::Pod | Kind::Secret | Kind::Namespace => "",
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::ReplicaSet => "apps",
        }
    }

    /// The versions served for this kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert_eq!(Kind::ServiceEntry.versions(), ["v1", "v1beta1", "v1alpha3"]);
    /// assert_eq!(Kind::AuthorizationPolicy.versions(), ["v1", "v1beta1"]);
    /// assert_eq!(Kind::Pod.versions(), ["v1"]);
    /// ```
    pub const fn versions(self) -> &'static [&'static str] {
        match self.group().as_bytes() {
            b"networking.istio.io" => NETWORKING_VERSIONS,
            b"security.istio.io" => SECURITY_VERSIONS,
            _ => &["v1"],
        }
    }

    /// True for the nine Istio kinds.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert!(Kind::PeerAuthentication.is_istio());
    /// assert!(!Kind::Deployment.is_istio());
    /// assert!(!Kind::Secret.is_istio());
    /// ```
    pub const fn is_istio(self) -> bool {
        !self.group().is_empty() && !matches!(self.group().as_bytes(), b"apps")
    }

    /// The preferred `apiVersion` for this kind (`networking.istio.io/v1`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert_eq!(Kind::Gateway.preferred_api_version(), "networking.istio.io/v1");
    /// assert_eq!(Kind::AuthorizationPolicy.preferred_api_version(), "security.istio.io/v1");
    /// assert_eq!(Kind::Deployment.preferred_api_version(), "apps/v1");
    /// assert_eq!(Kind::Service.preferred_api_version(), "v1");
    /// ```
    pub fn preferred_api_version(self) -> String {
        if self.group().is_empty() {
            "v1".to_owned()
        } else {
            format!("{}/{}", self.group(), self.versions()[0])
        }
    }

    /// Looks a kind up by its exact `kind:` spelling.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Kind;
    ///
    /// assert_eq!(Kind::from_kind_str("DestinationRule"), Some(Kind::DestinationRule));
    /// assert_eq!(Kind::from_kind_str("Pod"), Some(Kind::Pod));
    /// assert_eq!(Kind::from_kind_str("destinationrule"), None); // exact spelling only
    /// assert_eq!(Kind::from_kind_str("EnvoyFilter"), None);
    /// ```
    pub fn from_kind_str(kind: &str) -> Option<Kind> {
        Kind::ISTIO
            .iter()
            .chain(Kind::KUBERNETES.iter())
            .copied()
            .find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded object: Istio config or a Kubernetes object kept for the registry.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Kind;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1beta1
/// kind: DestinationRule
/// metadata: {name: reviews, namespace: prod}
/// spec:
///   host: reviews
/// ", "dr.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let obj = &loaded.objects[0];
/// assert_eq!(obj.api_version, "networking.istio.io/v1beta1");
/// assert_eq!(obj.kind, Kind::DestinationRule);
/// assert_eq!(obj.key(), "prod/reviews");
/// assert_eq!(obj.spec.as_destination_rule().unwrap().host, "reviews");
/// assert_eq!(&*obj.source.file, "dr.yaml");
/// ```
#[derive(Debug, Clone)]
pub struct ConfigObject {
    /// `apiVersion` as written (`networking.istio.io/v1alpha3`).
    pub api_version: String,
    /// The kind.
    pub kind: Kind,
    /// Metadata; `namespace` is filled with the loader's default namespace when absent.
    pub metadata: ObjectMeta,
    /// The typed spec.
    pub spec: Spec,
    /// Where the object came from, with field positions.
    pub source: Source,
    /// The `Healthy` condition of its `status`, when it has one (`status.conditions`, as
    /// istiod writes it on a WorkloadEntry whose health checks are enabled).
    pub healthy: Option<bool>,
}

impl ConfigObject {
    /// `namespace/name`.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: bookinfo-gateway, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "config.yaml");
    /// let keys: Vec<String> = loaded.objects.iter().map(|o| o.key()).collect();
    /// // without a namespace the loader's default namespace is used
    /// assert_eq!(keys, ["istio-system/bookinfo-gateway", "default/reviews"]);
    /// ```
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.namespace, self.metadata.name)
    }

    /// Istio's order among objects that conflict (`sortConfigByCreationTime` in istiod's
    /// push context): the oldest `creationTimestamp` first, then by name, then by
    /// namespace. An object without a timestamp (or with one that is not RFC 3339) is as
    /// old as Go's zero time, older than any real one: objects loaded from files, which
    /// have none, are ordered by name, as `istioctl analyze` orders them.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: zz, namespace: foo}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: aa, namespace: foo}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: old, namespace: foo, creationTimestamp: '2024-01-01T00:00:00Z'}
    /// ", "pa.yaml");
    /// let mut objects: Vec<_> = loaded.objects.iter().collect();
    /// objects.sort_by(|a, b| a.istio_order(b));
    /// let names: Vec<&str> = objects.iter().map(|o| o.metadata.name.as_str()).collect();
    /// assert_eq!(names, ["aa", "zz", "old"]);
    /// ```
    pub fn istio_order(&self, other: &ConfigObject) -> std::cmp::Ordering {
        self.creation_time()
            .cmp(&other.creation_time())
            .then_with(|| self.metadata.name.cmp(&other.metadata.name))
            .then_with(|| self.metadata.namespace.cmp(&other.metadata.namespace))
    }
}

impl ConfigObject {
    /// The `creationTimestamp` as (seconds, nanoseconds) since the Unix epoch; Go's zero
    /// time (older than any) when absent or not RFC 3339.
    pub(crate) fn creation_time(&self) -> (i64, u32) {
        self.metadata
            .creation_timestamp
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or((i64::MIN, 0))
    }
}

/// An RFC 3339 time (`2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.5+01:00`) as seconds and
/// nanoseconds since the Unix epoch; `None` when it is not one.
fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        nanos,
    ))
}

/// Kubernetes `ObjectMeta` (the fields a user may write; server-managed ones are accepted and
/// kept opaque).
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str(r#"
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata:
///   name: allow-nothing
///   labels: {team: payments}
///   annotations: {istio.io/dry-run: "true"}
/// spec: {}
/// "#, "ap.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let meta = &loaded.objects[0].metadata;
/// assert_eq!(meta.name, "allow-nothing");
/// // No namespace written: the loader's default namespace is filled in.
/// assert_eq!(meta.namespace, "default");
/// assert_eq!(meta.labels["team"], "payments");
/// assert_eq!(meta.annotations["istio.io/dry-run"], "true");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Name prefix for generated names.
    pub generate_name: Option<String>,
    /// Namespace; the loader fills in its default (`default`) when absent.
    #[serde(default)]
    pub namespace: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`istio.io/dry-run`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time ("oldest wins" rules use it).
    pub creation_timestamp: Option<String>,
    /// Server-managed.
    pub resource_version: Option<String>,
    /// Server-managed.
    pub uid: Option<String>,
    /// Server-managed.
    pub generation: Option<i64>,
    /// Server-managed.
    pub self_link: Option<String>,
    /// Server-managed.
    pub deletion_timestamp: Option<String>,
    /// Server-managed.
    pub deletion_grace_period_seconds: Option<i64>,
    /// Owner references (opaque).
    pub owner_references: Option<serde_json::Value>,
    /// Finalizers.
    #[serde(default)]
    pub finalizers: Vec<String>,
    /// Managed fields (opaque).
    pub managed_fields: Option<serde_json::Value>,
}

/// The typed spec, one variant per kind.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Spec;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: external-api}
/// spec:
///   hosts: [api.example.com]
///   ports: [{number: 443, name: https, protocol: TLS}]
///   resolution: DNS
/// ---
/// apiVersion: v1
/// kind: ServiceAccount
/// metadata: {name: sleep}
/// ", "objects.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// match &loaded.objects[0].spec {
///     Spec::ServiceEntry(se) => assert_eq!(se.hosts, ["api.example.com"]),
///     other => panic!("unexpected spec {other:?}"),
/// }
/// // The `as_*` accessors return the typed spec of the matching kind only.
/// assert!(loaded.objects[0].spec.as_service_entry().is_some());
/// assert!(loaded.objects[0].spec.as_virtual_service().is_none());
/// assert_eq!(loaded.objects[1].spec, Spec::ServiceAccount);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Spec {
    /// VirtualService.
    VirtualService(VirtualService),
    /// DestinationRule.
    DestinationRule(DestinationRule),
    /// ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// Gateway.
    Gateway(Gateway),
    /// Sidecar.
    Sidecar(Sidecar),
    /// PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// Kubernetes Service.
    Service(KubeService),
    /// Kubernetes ServiceAccount (the name is in the metadata).
    ServiceAccount,
    /// Kubernetes workload (Pod or a controller's pod template); the kind says which.
    Workload(KubeWorkload),
    /// Kubernetes Secret: its type and key names, never its values.
    Secret(KubeSecret),
    /// Kubernetes Namespace (the name, labels and annotations are in the metadata; its
    /// `metadata.namespace` is empty).
    Namespace,
}

macro_rules! spec_accessors {
    ($($fn:ident => $variant:ident($ty:ty)),* $(,)?) => {
        impl Spec {
            $(
                #[doc = concat!("The spec if this is a ", stringify!($variant), ".")]
                ///
                /// # Examples
                ///
                /// ```
                #[doc = concat!("use mesh_core::model::{Spec, ", stringify!($ty), "};")]
                ///
                #[doc = concat!("let spec = Spec::", stringify!($variant), "(", stringify!($ty), "::default());")]
                #[doc = concat!("assert_eq!(spec.", stringify!($fn), "(), Some(&", stringify!($ty), "::default()));")]
                /// // `None` for a spec of any other kind
                #[doc = concat!("assert_eq!(Spec::ServiceAccount.", stringify!($fn), "(), None);")]
                /// ```
                pub fn $fn(&self) -> Option<&$ty> {
                    match self {
                        Spec::$variant(s) => Some(s),
                        _ => None,
                    }
                }
            )*
        }
    };
}

spec_accessors! {
    as_virtual_service => VirtualService(VirtualService),
    as_destination_rule => DestinationRule(DestinationRule),
    as_service_entry => ServiceEntry(ServiceEntry),
    as_workload_entry => WorkloadEntry(WorkloadEntry),
    as_gateway => Gateway(Gateway),
    as_sidecar => Sidecar(Sidecar),
    as_peer_authentication => PeerAuthentication(PeerAuthentication),
    as_authorization_policy => AuthorizationPolicy(AuthorizationPolicy),
    as_request_authentication => RequestAuthentication(RequestAuthentication),
    as_service => Service(KubeService),
    as_workload => Workload(KubeWorkload),
    as_secret => Secret(KubeSecret),
}

/// A position in a source file, 1-based line and column (columns count characters).
///
/// # Examples
///
/// ```
/// use mesh_core::model::Location;
///
/// let loaded = mesh_core::load::load_str("\
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let source = &loaded.objects[0].source;
/// assert_eq!(source.location, Location { line: 1, column: 1 });
/// let at = source.locate("spec.hosts").unwrap();
/// assert_eq!(at, Location { line: 5, column: 3 });
/// assert_eq!(at.to_string(), "5:3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Location {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where a field sits: its key (for mapping entries) and its value.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Location;
///
/// let loaded = mesh_core::load::load_str("\
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - timeout: 3s
///     route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let span = loaded.objects[0].source.fields.get("spec.http[0].timeout").unwrap();
/// assert_eq!(span.key, Location { line: 7, column: 5 });
/// assert_eq!(span.value, Location { line: 7, column: 14 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpan {
    /// Position of the key (`subset:`); for list items, the item's position.
    pub key: Location,
    /// Position of the value.
    pub value: Location,
}

/// Field path → position, for one object. Paths are relative to the object:
/// `spec.http[0].route[1].destination.host`, `metadata.name`, `spec.headers.end-user`
/// (keys that contain dots, such as `app.kubernetes.io/name`, are found too).
///
/// Stored compactly (one arena per object, built in one pass by the loader); a lookup walks
/// it, which is cheap for the occasional diagnostic and costs nothing when there is none.
///
/// # Examples
///
/// ```
/// let loaded = mesh_core::load::load_str("\
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: reviews}
/// spec:
///   selector:
///     matchLabels:
///       app.kubernetes.io/name: reviews
///   mtls: {mode: STRICT}
/// ", "pa.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let fields = &loaded.objects[0].source.fields;
/// assert!(!fields.is_empty());
/// // Keys that contain dots are found too.
/// let span = fields.get("spec.selector.matchLabels.app.kubernetes.io/name").unwrap();
/// assert_eq!((span.key.line, span.key.column), (7, 7));
/// assert!(fields.get("spec.portLevelMtls").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    entries: Vec<FieldEntry>,
    keys: String,
}

#[derive(Debug, Clone, Copy)]
struct FieldEntry {
    parent: u32,
    /// Mapping key (byte range in `keys`) or sequence index.
    seg: FieldSeg,
    span: FieldSpan,
}

#[derive(Debug, Clone, Copy)]
enum FieldSeg {
    Key(u32, u32),
    Index(u32),
}

/// The parent of top-level fields.
const FIELD_ROOT: u32 = u32::MAX;

impl FieldMap {
    /// An empty map.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::FieldMap;
    ///
    /// let fields = FieldMap::new();
    /// assert!(fields.is_empty());
    /// assert_eq!(fields.get("spec"), None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The root, parent of top-level fields, for [`FieldMap::push_key`] / [`FieldMap::push_index`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{FieldMap, FieldSpan, Location};
    ///
    /// let at = |line| FieldSpan {
    ///     key: Location { line, column: 1 },
    ///     value: Location { line, column: 8 },
    /// };
    /// let mut fields = FieldMap::new();
    /// // top-level fields have ROOT as their parent
    /// let spec = fields.push_key(FieldMap::ROOT, "spec", at(4));
    /// fields.push_key(spec, "host", at(5));
    /// assert_eq!(fields.get("spec.host"), Some(at(5)));
    /// ```
    pub const ROOT: u32 = FIELD_ROOT;

    /// Records a mapping entry `key` under `parent`; returns its id (a parent for children).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{FieldMap, FieldSpan, Location};
    ///
    /// let at = |line| FieldSpan {
    ///     key: Location { line, column: 1 },
    ///     value: Location { line, column: 8 },
    /// };
    /// let mut fields = FieldMap::new();
    /// let spec = fields.push_key(FieldMap::ROOT, "spec", at(4));
    /// let hosts = fields.push_key(spec, "hosts", at(5));
    /// fields.push_index(hosts, 0, at(6));
    /// assert_eq!(fields.len(), 3);
    /// assert_eq!(fields.get("spec.hosts[0]"), Some(at(6)));
    /// assert_eq!(fields.get("spec.hosts[1]"), None);
    /// ```
    pub fn push_key(&mut self, parent: u32, key: &str, span: FieldSpan) -> u32 {
        let start = self.keys.len() as u32;
        self.keys.push_str(key);
        self.push(parent, FieldSeg::Key(start, key.len() as u32), span)
    }

    /// Records sequence item `index` under `parent`; returns its id.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{FieldMap, FieldSpan, Location};
    ///
    /// let at = |line| FieldSpan {
    ///     key: Location { line, column: 1 },
    ///     value: Location { line, column: 8 },
    /// };
    /// let mut fields = FieldMap::new();
    /// let hosts = fields.push_key(FieldMap::ROOT, "hosts", at(1));
    /// fields.push_index(hosts, 0, at(2));
    /// fields.push_index(hosts, 1, at(3));
    /// assert_eq!(fields.get("hosts[1]"), Some(at(3)));
    /// ```
    pub fn push_index(&mut self, parent: u32, index: usize, span: FieldSpan) -> u32 {
        let i = u32::try_from(index).unwrap_or(u32::MAX);
        self.push(parent, FieldSeg::Index(i), span)
    }

    fn push(&mut self, parent: u32, seg: FieldSeg, span: FieldSpan) -> u32 {
        let id = self.entries.len() as u32;
        self.entries.push(FieldEntry { parent, seg, span });
        id
    }

    /// Number of recorded fields.
    ///
    /// # Examples
    ///
    /// ```
    /// let loaded = mesh_core::load::load_str("\
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "dr.yaml");
    /// // apiVersion, kind, metadata, metadata.name, spec, spec.host
    /// assert_eq!(loaded.objects[0].source.fields.len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is recorded.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{FieldMap, FieldSpan, Location};
    ///
    /// let mut fields = FieldMap::new();
    /// assert!(fields.is_empty());
    /// let at = Location { line: 4, column: 1 };
    /// fields.push_key(FieldMap::ROOT, "spec", FieldSpan { key: at, value: at });
    /// assert!(!fields.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of the field at `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Location;
    ///
    /// let loaded = mesh_core::load::load_str("\
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - timeout: 2s
    ///     route: [{destination: {host: reviews}}]
    /// ", "vs.yaml");
    /// let fields = &loaded.objects[0].source.fields;
    /// let span = fields.get("spec.http[0].timeout").unwrap();
    /// assert_eq!(span.key, Location { line: 7, column: 5 });
    /// assert_eq!(span.value, Location { line: 7, column: 14 });
    /// assert_eq!(fields.get("spec.http[0].retries"), None);
    /// ```
    pub fn get(&self, path: &str) -> Option<FieldSpan> {
        self.find(FIELD_ROOT, path)
            .map(|i| self.entries[i as usize].span)
    }

    fn key_of(&self, e: &FieldEntry) -> Option<&str> {
        match e.seg {
            FieldSeg::Key(s, l) => self.keys.get(s as usize..(s + l) as usize),
            FieldSeg::Index(_) => None,
        }
    }

    fn find(&self, parent: u32, rest: &str) -> Option<u32> {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let idx: u32 = r[..end].parse().ok()?;
            let after = &r[end + 1..];
            let (i, _) = self.entries.iter().enumerate().find(|(_, e)| {
                e.parent == parent && matches!(e.seg, FieldSeg::Index(x) if x == idx)
            })?;
            return self.descend(i as u32, after);
        }
        let rest = if parent == FIELD_ROOT {
            rest
        } else {
            rest.strip_prefix('.')?
        };
        // Keys may contain dots: try every child key that is a prefix ending at a boundary.
        for (i, e) in self.entries.iter().enumerate() {
            if e.parent != parent {
                continue;
            }
            let Some(k) = self.key_of(e) else { continue };
            if let Some(after) = rest.strip_prefix(k)
                && (after.is_empty() || after.starts_with('.') || after.starts_with('['))
                && let Some(found) = self.descend(i as u32, after)
            {
                return Some(found);
            }
        }
        None
    }

    fn descend(&self, id: u32, after: &str) -> Option<u32> {
        if after.is_empty() {
            Some(id)
        } else {
            self.find(id, after)
        }
    }
}

/// Where an object came from.
///
/// # Examples
///
/// ```
/// use mesh_core::model::Location;
///
/// let loaded = mesh_core::load::load_str("\
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - destination: {host: reviews}
/// ", "vs.yaml");
/// # let diags = mesh_core::check(&loaded); assert!(diags.is_empty(), "{diags:?}");
/// let src = &loaded.objects[0].source;
/// assert_eq!(&*src.file, "vs.yaml");
/// assert_eq!(src.document, 0);
/// assert_eq!(src.locate("spec.hosts"), Some(Location { line: 5, column: 3 }));
/// assert_eq!(src.locate_value("spec.hosts"), Some(Location { line: 5, column: 10 }));
/// // `timeout` is not written: point at the nearest field that is, the route.
/// assert_eq!(src.locate("spec.http[0].timeout"), None);
/// assert_eq!(src.locate_nearest("spec.http[0].timeout"), Location { line: 7, column: 5 });
/// ```
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file name as given to the loader (`<string>` style names for in-memory text).
    pub file: Arc<str>,
    /// Position of the object (its first key).
    pub location: Location,
    /// Index of the YAML document in the file (0-based).
    pub document: usize,
    /// Field positions.
    pub fields: Arc<FieldMap>,
}

impl Source {
    /// The position of the field at `path` (its key, so an error points at `timeout:`), if the
    /// field was written in the file.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Location;
    ///
    /// let loaded = mesh_core::load::load_str("\
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - timeout: 2s
    ///     route: [{destination: {host: reviews}}]
    /// ", "vs.yaml");
    /// let src = &loaded.objects[0].source;
    /// assert_eq!(src.locate("spec.http[0].timeout"), Some(Location { line: 7, column: 5 }));
    /// assert_eq!(src.locate("spec.http[0].retries"), None);
    /// ```
    pub fn locate(&self, path: &str) -> Option<Location> {
        self.fields.get(path).map(|s| s.key)
    }

    /// The position of the value of the field at `path`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Location;
    ///
    /// let loaded = mesh_core::load::load_str("\
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - timeout: 2s
    ///     route: [{destination: {host: reviews}}]
    /// ", "vs.yaml");
    /// let src = &loaded.objects[0].source;
    /// // the value `2s`, not the key `timeout:`
    /// assert_eq!(src.locate_value("spec.http[0].timeout"), Some(Location { line: 7, column: 14 }));
    /// ```
    pub fn locate_value(&self, path: &str) -> Option<Location> {
        self.fields.get(path).map(|s| s.value)
    }

    /// The position of `path`, or of its nearest written ancestor (`spec.http[0].timeout`
    /// falls back to `spec.http[0]`, then `spec.http`, ...), or of the object.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Location;
    ///
    /// let loaded = mesh_core::load::load_str("\
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - timeout: 2s
    ///     route: [{destination: {host: reviews}}]
    /// ", "vs.yaml");
    /// let src = &loaded.objects[0].source;
    /// // `retries` is not written: fall back to the rule it belongs to
    /// assert_eq!(src.locate_nearest("spec.http[0].retries.attempts"), Location { line: 7, column: 5 });
    /// // nothing written under `spec.tcp`: the nearest is `spec`
    /// assert_eq!(src.locate_nearest("spec.tcp[0]"), Location { line: 4, column: 1 });
    /// ```
    pub fn locate_nearest(&self, path: &str) -> Location {
        let mut p = path;
        loop {
            if let Some(l) = self.locate(p) {
                return l;
            }
            match p.rfind(['.', '[']) {
                Some(i) if i > 0 => p = &p[..i],
                _ => return self.location,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_groups() {
        for k in Kind::ISTIO.iter().chain(Kind::KUBERNETES.iter()) {
            assert_eq!(Kind::from_kind_str(k.as_str()), Some(*k));
        }
        assert!(Kind::VirtualService.is_istio());
        assert!(!Kind::Deployment.is_istio());
        assert!(!Kind::Service.is_istio());
        assert_eq!(
            Kind::AuthorizationPolicy.preferred_api_version(),
            "security.istio.io/v1"
        );
        assert_eq!(Kind::Gateway.versions(), NETWORKING_VERSIONS);
        assert_eq!(Kind::from_kind_str("List"), None);
    }

    #[test]
    fn locate_nearest_walks_up() {
        let mut fields = FieldMap::new();
        let at = |line| FieldSpan {
            key: Location { line, column: 3 },
            value: Location { line, column: 9 },
        };
        let spec = fields.push_key(FieldMap::ROOT, "spec", at(5));
        let http = fields.push_key(spec, "http", at(6));
        let r0 = fields.push_index(http, 0, at(7));
        let sel = fields.push_key(r0, "sel", at(8));
        fields.push_key(sel, "app.kubernetes.io/name", at(9));
        fields.push_key(sel, "app", at(10));
        let src = Source {
            file: "f.yaml".into(),
            location: Location { line: 1, column: 1 },
            document: 0,
            fields: Arc::new(fields),
        };
        assert_eq!(src.locate("spec.http").unwrap().line, 6);
        assert_eq!(src.locate_value("spec.http").unwrap().column, 9);
        assert_eq!(src.locate("spec.http[0].timeout"), None);
        assert_eq!(src.locate_nearest("spec.http[0].timeout").line, 7);
        assert_eq!(src.locate_nearest("spec.http[3].route").line, 6);
        assert_eq!(src.locate_nearest("nothing").line, 1);
        assert_eq!(
            src.locate("spec.http[0].sel.app.kubernetes.io/name")
                .unwrap()
                .line,
            9
        );
        assert_eq!(src.locate("spec.http[0].sel.app").unwrap().line, 10);
        assert_eq!(src.locate("spec.http[1]"), None);
        assert_eq!(src.locate("spec.htt"), None);
        assert_eq!(src.locate("spec.http[x]"), None);
    }

    #[test]
    fn enums_default_to_proto3_zero_values() {
        assert_eq!(ServerTlsMode::default(), ServerTlsMode::Passthrough);
        assert_eq!(ClientTlsMode::default(), ClientTlsMode::Disable);
        assert_eq!(SimpleLb::default(), SimpleLb::Unspecified);
        assert_eq!(ServiceLocation::default(), ServiceLocation::MeshExternal);
        assert_eq!(Resolution::default(), Resolution::None);
        assert_eq!(AuthorizationAction::default(), AuthorizationAction::Allow);
        assert_eq!(MtlsMode::default(), MtlsMode::Unset);
        assert_eq!(OutboundMode::default(), OutboundMode::RegistryOnly);
    }

    #[test]
    fn typed_specs_deserialize_istio_spelling() {
        let vs: VirtualService = serde_json::from_value(serde_json::json!({
            "hosts": ["reviews"],
            "http": [{
                "match": [{"headers": {"end-user": {"exact": "jason"}}, "ignoreUriCase": true}],
                "route": [{"destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}}, "weight": 80}],
                "timeout": "10s",
                "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100.0}}},
                "mirror_percent": 5
            }]
        }))
        .unwrap();
        let r = &vs.http[0];
        assert_eq!(
            r.matches[0].headers["end-user"].exact.as_deref(),
            Some("jason")
        );
        assert_eq!(
            r.route[0].destination.port,
            Some(PortSelector { number: 9080 })
        );
        assert_eq!(r.timeout, Some(Duration::from_secs(10)));
        assert_eq!(r.mirror_percent, Some(5));

        let dr: DestinationRule = serde_json::from_value(serde_json::json!({
            "host": "reviews",
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}, "tls": {"mode": "ISTIO_MUTUAL"},
                "outlierDetection": {"consecutive5xxErrors": 7, "interval": "1s"}},
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}]
        }))
        .unwrap();
        let tp = dr.traffic_policy.unwrap();
        assert_eq!(tp.load_balancer.unwrap().simple, Some(SimpleLb::RoundRobin));
        assert_eq!(tp.tls.unwrap().mode, ClientTlsMode::IstioMutual);
        assert_eq!(
            tp.outlier_detection.unwrap().consecutive_5xx_errors,
            Some(7)
        );

        let pa: PeerAuthentication = serde_json::from_value(serde_json::json!({
            "selector": {"matchLabels": {"app": "x"}},
            "portLevelMtls": {"8080": {"mode": "DISABLE"}}
        }))
        .unwrap();
        assert_eq!(pa.port_level_mtls[&8080].mode, MtlsMode::Disable);

        let gw: Gateway = serde_json::from_value(serde_json::json!({
            "servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["a.example.com"], "tls": {"mode": "SIMPLE", "credentialName": "c",
                "minProtocolVersion": "TLSV1_3"}}]
        }))
        .unwrap();
        assert_eq!(
            gw.servers[0].tls.as_ref().unwrap().min_protocol_version,
            Some(TlsProtocol::TlsV1_3)
        );
    }

    #[test]
    fn unknown_fields_and_variants_are_rejected() {
        let table = [
            serde_json::json!({"host": "reviews", "subnets": []}),
            serde_json::json!({"host": "reviews", "trafficPolicy": {"loadBalancer": {"simple": "ROUNDROBIN"}}}),
        ];
        for v in table {
            assert!(serde_json::from_value::<DestinationRule>(v).is_err());
        }
        assert!(serde_json::from_value::<Destination>(
            serde_json::json!({"host": "r", "subnet": "v1"})
        )
        .is_err());
    }
}

#[cfg(test)]
mod creation_order_tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339_times_compare_as_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05Z"),
            Some((1_704_164_645, 0))
        );
        // the same instant written with an offset and a fraction
        assert_eq!(
            parse_rfc3339("2024-01-02T04:04:05.25+01:00"),
            Some((1_704_164_645, 250_000_000))
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T00:00:00-00:30"),
            Some((1_709_253_000, 0))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00Z"),
            Some((951_825_600, 0))
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05+0100",
            "2024-01-02T03:04:05.",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
