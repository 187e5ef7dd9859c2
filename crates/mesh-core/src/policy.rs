//! DestinationRule lookup and traffic-policy merging (spec §3.2-§3.3).
//!
//! Lookup for a client in namespace C and a service of namespace N: DestinationRules in C,
//! then in N (exported to C), then in the root namespace (exported to C); within one
//! namespace the exact host wins over the most specific wildcard; the first namespace with a
//! hit wins, with no merging across namespaces. Several DestinationRules for one host in one
//! namespace (same workload selector) are merged as istiod merges them: union of subsets
//! (first definition of a name wins), first top-level `trafficPolicy` wins.
//!
//! The effective policy for (subset, port) is computed without allocating: the base is the
//! DR's `trafficPolicy`, replaced **as a whole** by its `portLevelSettings` entry for the port
//! (no inheritance from the top level); a subset's policy (or its port-level entry) then
//! replaces whole blocks (`loadBalancer`, `connectionPool`, `outlierDetection`, `tls`), a
//! subset port-level entry replacing them even by nothing.
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::SimpleLb;
//! use mesh_core::names::MeshOptions;
//! use mesh_core::policy::DestinationRules;
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec:
//!   host: reviews
//!   trafficPolicy:
//!     loadBalancer: {simple: RANDOM}
//!     connectionPool: {tcp: {maxConnections: 100}}
//!     portLevelSettings:
//!     - port: {number: 9443}
//!       loadBalancer: {simple: ROUND_ROBIN}
//!   subsets: [{name: v1, labels: {version: v1}}]
//! ", "dr.yaml");
//! let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
//! let host = "reviews.default.svc.cluster.local";
//! let p = drs.effective(host, Some("v1"), 9080, "default", None, Some("default"));
//! assert_eq!(p.simple_lb(), Some(SimpleLb::Random));
//! assert!(p.connection_pool.is_some());
//! // the port-level entry replaces the whole top-level policy: no connection pool on 9443
//! let p = drs.effective(host, Some("v1"), 9443, "default", None, Some("default"));
//! assert_eq!(p.simple_lb(), Some(SimpleLb::RoundRobin));
//! assert!(p.connection_pool.is_none());
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{
    ClientTlsSettings, ConfigObject, ConnectionPoolSettings, Labels, LoadBalancerSettings,
    OutlierDetection, ProxyProtocol, RetryBudget, SimpleLb, Spec, Subset, TrafficPolicy,
    TunnelSettings,
};

fn boxed<T: Clone>(v: &Option<T>) -> Option<Box<T>> {
    v.as_ref().map(|v| Box::new(v.clone()))
}

/// One `portLevelSettings` entry, compact.
///
/// # Examples
///
/// ```
/// use mesh_core::model::ClientTlsMode;
/// use mesh_core::policy::CompactPolicy;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: googleapis}
/// spec:
///   host: www.googleapis.com
///   trafficPolicy:
///     portLevelSettings:
///     - port: {number: 443}
///       tls: {mode: SIMPLE}
/// ", "dr.yaml");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let compact = CompactPolicy::from(dr.traffic_policy.as_ref().unwrap());
/// let p = &compact.port_level_settings[0];
/// assert_eq!(p.port, 443);
/// assert_eq!(p.tls.as_ref().map(|t| t.mode), Some(ClientTlsMode::Simple));
/// assert!(p.load_balancer.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CompactPortPolicy {
    /// The port.
    pub port: u32,
    /// Load balancing.
    pub load_balancer: Option<Box<LoadBalancerSettings>>,
    /// Connection pool.
    pub connection_pool: Option<Box<ConnectionPoolSettings>>,
    /// Outlier detection.
    pub outlier_detection: Option<Box<OutlierDetection>>,
    /// TLS origination.
    pub tls: Option<Box<ClientTlsSettings>>,
}

/// A `TrafficPolicy` whose blocks are boxed, so only what is set takes memory (the model's
/// struct holds every block inline, about 1 KiB).
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
/// use mesh_core::policy::CompactPolicy;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer: {simple: LEAST_REQUEST}
///     connectionPool: {tcp: {maxConnections: 100}}
/// ", "dr.yaml");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let compact = CompactPolicy::from(dr.traffic_policy.as_ref().unwrap());
/// assert_eq!(compact.load_balancer.as_ref().and_then(|lb| lb.simple), Some(SimpleLb::LeastRequest));
/// let tcp = compact.connection_pool.as_ref().and_then(|cp| cp.tcp.as_ref()).unwrap();
/// assert_eq!(tcp.max_connections, Some(100));
/// assert!(compact.outlier_detection.is_none() && compact.tls.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompactPolicy {
    /// Load balancing.
    pub load_balancer: Option<Box<LoadBalancerSettings>>,
    /// Connection pool.
    pub connection_pool: Option<Box<ConnectionPoolSettings>>,
    /// Outlier detection.
    pub outlier_detection: Option<Box<OutlierDetection>>,
    /// TLS origination.
    pub tls: Option<Box<ClientTlsSettings>>,
    /// Per-port policies.
    pub port_level_settings: Box<[CompactPortPolicy]>,
    /// Tunnel.
    pub tunnel: Option<Box<TunnelSettings>>,
    /// PROXY protocol.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget.
    pub retry_budget: Option<Box<RetryBudget>>,
}

impl From<&TrafficPolicy> for CompactPolicy {
    fn from(tp: &TrafficPolicy) -> Self {
        CompactPolicy {
            load_balancer: boxed(&tp.load_balancer),
            connection_pool: boxed(&tp.connection_pool),
            outlier_detection: boxed(&tp.outlier_detection),
            tls: boxed(&tp.tls),
            port_level_settings: tp
                .port_level_settings
                .iter()
                .filter_map(|p| {
                    Some(CompactPortPolicy {
                        port: p.port?.number,
                        load_balancer: boxed(&p.load_balancer),
                        connection_pool: boxed(&p.connection_pool),
                        outlier_detection: boxed(&p.outlier_detection),
                        tls: boxed(&p.tls),
                    })
                })
                .collect(),
            tunnel: boxed(&tp.tunnel),
            proxy_protocol: tp.proxy_protocol,
            retry_budget: boxed(&tp.retry_budget),
        }
    }
}

/// A subset: name, endpoint labels, policy.
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - name: v2
///     labels: {version: v2}
///     trafficPolicy: {loadBalancer: {simple: RANDOM}}
/// ").unwrap().snapshot();
/// let dr = snap.destination_rule("reviews.default.svc.cluster.local", "default").unwrap();
/// let v2 = dr.subset("v2").unwrap();
/// assert_eq!(&*v2.name, "v2");
/// assert_eq!(v2.labels["version"], "v2");
/// let lb = v2.traffic_policy.as_ref().and_then(|p| p.load_balancer.as_ref());
/// assert_eq!(lb.and_then(|lb| lb.simple), Some(SimpleLb::Random));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSubset {
    /// Name.
    pub name: Box<str>,
    /// Endpoint labels.
    pub labels: Labels,
    /// Policy replacing the DestinationRule's block by block.
    pub traffic_policy: Option<Box<CompactPolicy>>,
}

impl From<&Subset> for CompiledSubset {
    fn from(s: &Subset) -> Self {
        CompiledSubset {
            name: s.name.as_str().into(),
            labels: s.labels.clone(),
            traffic_policy: s
                .traffic_policy
                .as_ref()
                .map(|t| Box::new(CompactPolicy::from(t))),
        }
    }
}
use crate::names::{labels_match, ExportTo, HostMap, MeshOptions};

/// One or several DestinationRules of a namespace for one host, merged.
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews-a}
/// spec:
///   host: reviews
///   trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
///   subsets: [{name: v1, labels: {version: v1}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews-b}
/// spec:
///   host: reviews
///   trafficPolicy: {loadBalancer: {simple: RANDOM}}
///   subsets: [{name: v1, labels: {version: old}}, {name: v2, labels: {version: v2}}]
/// ").unwrap().snapshot();
/// let dr = snap.destination_rule("reviews.default.svc.cluster.local", "default").unwrap();
/// assert_eq!(&*dr.name, "default/reviews-a");
/// assert_eq!(dr.merged.iter().map(|n| &**n).collect::<Vec<_>>(), ["default/reviews-a", "default/reviews-b"]);
/// assert_eq!(&*dr.host, "reviews.default.svc.cluster.local");
/// // first top-level policy wins; subsets are united, first definition of a name wins
/// let lb = dr.traffic_policy.as_ref().and_then(|p| p.load_balancer.as_ref()).and_then(|lb| lb.simple);
/// assert_eq!(lb, Some(SimpleLb::RoundRobin));
/// assert_eq!(dr.subset("v1").unwrap().labels["version"], "v1");
/// assert!(dr.subset("v2").is_some());
/// ```
#[derive(Debug, Clone)]
pub struct MergedDestinationRule {
    /// `ns/name` of the first DestinationRule.
    pub name: Arc<str>,
    /// `ns/name` of every merged DestinationRule.
    pub merged: Vec<Arc<str>>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Resolved host.
    pub host: Arc<str>,
    /// Visibility (the first rule's: istiod keeps it when it merges another in).
    pub export_to: ExportTo,
    /// `exportTo` as written (sorted, distinct; `[.]` for a rule with a workload selector,
    /// empty when unset): istiod merges two rules for one host only when these agree (or
    /// the newer one's is a superset), since Istio 1.24's
    /// `ENABLE_ENHANCED_DESTINATIONRULE_MERGE`.
    pub export_set: Vec<Box<str>>,
    /// Client workload selector (same namespace only).
    pub workload_selector: Option<Labels>,
    /// The first top-level traffic policy.
    pub traffic_policy: Option<CompactPolicy>,
    /// Subsets (first definition of a name wins).
    pub subsets: Vec<CompiledSubset>,
}

impl MergedDestinationRule {
    /// The subset named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec:
    ///   host: reviews
    ///   subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
    /// ").unwrap().snapshot();
    /// let dr = snap.destination_rule("reviews.default.svc.cluster.local", "default").unwrap();
    /// assert_eq!(dr.subset("v2").unwrap().labels["version"], "v2");
    /// assert!(dr.subset("v3").is_none());
    /// ```
    pub fn subset(&self, name: &str) -> Option<&CompiledSubset> {
        self.subsets.iter().find(|s| &*s.name == name)
    }
}

/// The effective traffic policy for (host, subset, port) from a client's point of view.
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     connectionPool: {tcp: {maxConnections: 100}}
///     outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
///   subsets:
///   - name: v3
///     labels: {version: v3}
///     trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
/// ").unwrap().snapshot();
/// let p = snap.traffic_policy("reviews.default.svc.cluster.local", Some("v3"), 9080, "default");
/// assert_eq!(p.destination_rule.map(|d| &*d.name), Some("default/reviews"));
/// assert_eq!(p.subset.map(|s| &*s.name), Some("v3"));
/// assert!(p.connection_pool.is_some()); // from the top level
/// assert_eq!(p.outlier_detection.and_then(|o| o.consecutive_5xx_errors), Some(5));
/// assert_eq!(p.simple_lb(), None); // consistent hashing, from the subset
/// assert!(p.tls.is_none()); // auto mTLS
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct EffectivePolicy<'a> {
    /// The DestinationRule(s) that applied.
    pub destination_rule: Option<&'a MergedDestinationRule>,
    /// The subset, when one was asked for and is defined.
    pub subset: Option<&'a CompiledSubset>,
    /// False when a subset was asked for and no DestinationRule defines it (Envoy: cluster
    /// not found, 503 with an empty body).
    pub subset_found: bool,
    /// Load balancing (`None`: LEAST_REQUEST).
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    /// Connection pool.
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    /// Outlier detection (active only when set).
    pub outlier_detection: Option<&'a OutlierDetection>,
    /// TLS origination (`None`: auto mTLS).
    pub tls: Option<&'a ClientTlsSettings>,
    /// Tunnel.
    pub tunnel: Option<&'a TunnelSettings>,
    /// PROXY protocol.
    pub proxy_protocol: Option<&'a ProxyProtocol>,
    /// Retry budget.
    pub retry_budget: Option<&'a RetryBudget>,
}

impl<'a> EffectivePolicy<'a> {
    /// The subset's endpoint labels.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsets: [{name: v2, labels: {version: v2, track: stable}}]}
    /// ").unwrap().snapshot();
    /// let host = "reviews.default.svc.cluster.local";
    /// let p = snap.traffic_policy(host, Some("v2"), 9080, "default");
    /// assert_eq!(p.subset_labels().map(|l| l.len()), Some(2));
    /// assert_eq!(p.subset_labels().unwrap()["track"], "stable");
    /// assert!(snap.traffic_policy(host, None, 9080, "default").subset_labels().is_none());
    /// ```
    pub fn subset_labels(&self) -> Option<&'a Labels> {
        self.subset.map(|s| &s.labels)
    }

    /// The simple algorithm in force (`UNSPECIFIED` and `LEAST_CONN` are LEAST_REQUEST;
    /// `None` when consistent hashing is configured).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::SimpleLb;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings}
    /// spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}}
    /// ").unwrap().snapshot();
    /// let lb = |host: &str| snap.traffic_policy(host, None, 9080, "default").simple_lb();
    /// assert_eq!(lb("ratings.default.svc.cluster.local"), Some(SimpleLb::LeastRequest)); // alias
    /// assert_eq!(lb("details.default.svc.cluster.local"), Some(SimpleLb::LeastRequest)); // default
    /// ```
    pub fn simple_lb(&self) -> Option<SimpleLb> {
        match self.load_balancer {
            Some(lb) if lb.consistent_hash.is_some() => None,
            Some(lb) => Some(match lb.simple.unwrap_or_default() {
                SimpleLb::Unspecified | SimpleLb::LeastConn => SimpleLb::LeastRequest,
                s => s,
            }),
            None => Some(SimpleLb::LeastRequest),
        }
    }
}

struct Blocks<'a> {
    lb: Option<&'a LoadBalancerSettings>,
    cp: Option<&'a ConnectionPoolSettings>,
    od: Option<&'a OutlierDetection>,
    tls: Option<&'a ClientTlsSettings>,
}

fn port_level(tp: &CompactPolicy, port: u16) -> Option<&CompactPortPolicy> {
    tp.port_level_settings
        .iter()
        .find(|p| p.port == u32::from(port))
}

/// `GetPortLevelTrafficPolicy`: the port entry alone, or the top level; and whether it was a
/// port entry.
fn blocks(tp: &CompactPolicy, port: u16) -> (Blocks<'_>, bool) {
    match port_level(tp, port) {
        Some(p) => (
            Blocks {
                lb: p.load_balancer.as_deref(),
                cp: p.connection_pool.as_deref(),
                od: p.outlier_detection.as_deref(),
                tls: p.tls.as_deref(),
            },
            true,
        ),
        None => (
            Blocks {
                lb: tp.load_balancer.as_deref(),
                cp: tp.connection_pool.as_deref(),
                od: tp.outlier_detection.as_deref(),
                tls: tp.tls.as_deref(),
            },
            false,
        ),
    }
}

/// Merges a DR's policy with a subset's for a port (§3.3).
///
/// # Examples
///
/// ```
/// use mesh_core::model::SimpleLb;
/// use mesh_core::policy::{merge, CompactPolicy};
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   trafficPolicy:
///     loadBalancer: {simple: ROUND_ROBIN}
///     connectionPool: {tcp: {maxConnections: 100}}
///   subsets:
///   - name: v1
///     labels: {version: v1}
///     trafficPolicy: {loadBalancer: {simple: RANDOM}}
///   - name: v2
///     labels: {version: v2}
///     trafficPolicy:
///       portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: LEAST_REQUEST}}]
/// ", "dr.yaml");
/// let dr = loaded.objects[0].spec.as_destination_rule().unwrap();
/// let top = CompactPolicy::from(dr.traffic_policy.as_ref().unwrap());
/// let v1 = CompactPolicy::from(dr.subsets[0].traffic_policy.as_ref().unwrap());
/// let v2 = CompactPolicy::from(dr.subsets[1].traffic_policy.as_ref().unwrap());
///
/// // a subset block replaces the DestinationRule's block; the others stay
/// let e = merge(Some(&top), Some(&v1), 9080);
/// assert_eq!(e.simple_lb(), Some(SimpleLb::Random));
/// assert!(e.connection_pool.is_some());
/// // a subset's port-level entry replaces every block, even by nothing
/// let e = merge(Some(&top), Some(&v2), 9080);
/// assert_eq!(e.simple_lb(), Some(SimpleLb::LeastRequest));
/// assert!(e.connection_pool.is_none());
/// // on another port the subset's top level (empty) keeps the DestinationRule's blocks
/// let e = merge(Some(&top), Some(&v2), 9443);
/// assert_eq!(e.simple_lb(), Some(SimpleLb::RoundRobin));
/// ```
pub fn merge<'a>(
    dr: Option<&'a CompactPolicy>,
    subset: Option<&'a CompactPolicy>,
    port: u16,
) -> EffectivePolicy<'a> {
    let mut e = EffectivePolicy {
        subset_found: true,
        ..EffectivePolicy::default()
    };
    if let Some(tp) = dr {
        let (b, _) = blocks(tp, port);
        e.load_balancer = b.lb;
        e.connection_pool = b.cp;
        e.outlier_detection = b.od;
        e.tls = b.tls;
        e.tunnel = tp.tunnel.as_deref();
        e.proxy_protocol = tp.proxy_protocol.as_ref();
        e.retry_budget = tp.retry_budget.as_deref();
    }
    if let Some(sp) = subset {
        let (b, port_level) = blocks(sp, port);
        let replace_all = port_level || dr.is_none();
        if b.lb.is_some() || replace_all {
            e.load_balancer = b.lb;
        }
        if b.cp.is_some() || replace_all {
            e.connection_pool = b.cp;
        }
        if b.od.is_some() || replace_all {
            e.outlier_detection = b.od;
        }
        if b.tls.is_some() || replace_all {
            e.tls = b.tls;
        }
        if sp.tunnel.is_some() {
            e.tunnel = sp.tunnel.as_deref();
        }
        if sp.proxy_protocol.is_some() {
            e.proxy_protocol = sp.proxy_protocol.as_ref();
        }
        if sp.retry_budget.is_some() {
            e.retry_budget = sp.retry_budget.as_deref();
        }
    }
    e
}

/// DestinationRules indexed by namespace and host.
///
/// Part of every snapshot: [`Snapshot::destination_rule`](crate::snapshot::Snapshot::destination_rule)
/// and [`Snapshot::traffic_policy`](crate::snapshot::Snapshot::traffic_policy) call it with
/// the service's namespace from the registry.
///
/// # Examples
///
/// ```
/// use mesh_core::names::MeshOptions;
/// use mesh_core::policy::DestinationRules;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: all-mtls, namespace: istio-system}
/// spec: {host: '*.local', trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews, namespace: bookinfo}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
/// ", "drs.yaml");
/// let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
/// let host = "reviews.bookinfo.svc.cluster.local";
/// let name = |client_ns, service_ns| drs.lookup(host, client_ns, None, service_ns).map(|d| d.name.to_string());
/// // the service's namespace before the root namespace
/// assert_eq!(name("default", Some("bookinfo")).as_deref(), Some("bookinfo/reviews"));
/// // without the service's namespace only the mesh-wide rule is found
/// assert_eq!(name("default", None).as_deref(), Some("istio-system/all-mtls"));
///
/// let p = drs.effective(host, Some("v1"), 9080, "default", None, Some("bookinfo"));
/// assert!(p.subset_found);
/// let p = drs.effective(host, Some("v1"), 9080, "default", None, None);
/// assert!(!p.subset_found); // the root rule defines no subsets
/// ```
#[derive(Debug, Default)]
pub struct DestinationRules {
    /// Per namespace, the rules its own clients look at first (istiod's `namespaceLocal`).
    local: HashMap<Box<str>, HostMap<Vec<MergedDestinationRule>>>,
    /// Per namespace, the rules not private to it (istiod's `exportedByNamespace`).
    exported: HashMap<Box<str>, HostMap<Vec<MergedDestinationRule>>>,
    /// The root namespace's private rules (istiod's `rootNamespaceLocal`).
    root_local: HostMap<Vec<MergedDestinationRule>>,
    root: Box<str>,
}

/// istiod SidecarScope.DestinationRule: among the visible rules for one host of one pool, the
/// one whose selector matches the client (same namespace), else the one without selector,
/// else none.
fn select<'a>(
    list: &'a [MergedDestinationRule],
    client_ns: &str,
    client_labels: Option<&Labels>,
    visible: impl Fn(&MergedDestinationRule) -> bool,
) -> Option<&'a MergedDestinationRule> {
    let mut catch_all = None;
    for m in list.iter().filter(|m| visible(m)) {
        match &m.workload_selector {
            None => catch_all = Some(m),
            Some(sel) => {
                if *m.namespace == *client_ns && client_labels.is_some_and(|l| labels_match(sel, l))
                {
                    return Some(m);
                }
            }
        }
    }
    catch_all
}

/// Merges `new` into the rules for one host of one pool, as istiod's
/// `mergeDestinationRule` with `ENABLE_ENHANCED_DESTINATIONRULE_MERGE` (on since 1.24):
/// against each rule already there, in order,
/// - the same `exportTo` (as written): merged into it; kept apart as well unless both have
///   no selector or the same one;
/// - an `exportTo` that is a superset of its (non-empty) one: merged into it and kept
///   apart, unless both have no selector or the same one (then only merged);
/// - otherwise, or different selectors: not merged.
///
/// Merging adds the subsets it does not have (the first definition of a name wins) and the
/// top-level policy when it has none; its `exportTo` stays. Whether `new` is also kept
/// apart is what the last rule compared decided, as in istiod.
fn merge_into(list: &mut Vec<MergedDestinationRule>, new: MergedDestinationRule) {
    let mut apart = true;
    for m in list.iter_mut() {
        let both_without = m.workload_selector.is_none() && new.workload_selector.is_none();
        let both_with = m.workload_selector.is_some() && new.workload_selector.is_some();
        let same_selector = both_with && m.workload_selector == new.workload_selector;
        if new.export_set == m.export_set {
            apart = !(both_without || same_selector);
        } else if !m.export_set.is_empty()
            && m.export_set.iter().all(|e| new.export_set.contains(e))
        {
            apart = true;
        } else {
            apart = true;
            continue;
        }
        if both_with && !same_selector {
            apart = true;
            continue;
        }
        if both_without || same_selector {
            apart = false;
        }
        m.merged.push(Arc::clone(&new.name));
        if m.traffic_policy.is_none() {
            m.traffic_policy = new.traffic_policy.clone();
        }
        for s in &new.subsets {
            if m.subset(&s.name).is_none() {
                m.subsets.push(s.clone());
            }
        }
    }
    if apart {
        list.push(new);
    }
}

impl DestinationRules {
    /// Indexes every DestinationRule, merging same-host ones per namespace.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::policy::DestinationRules;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews-subsets, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews-tls, namespace: bookinfo}
    /// spec: {host: reviews.bookinfo.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
    /// ", "drs.yaml");
    /// let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
    /// // the short and the full name resolve to the same host: the two rules are merged
    /// let dr = drs.lookup("reviews.bookinfo.svc.cluster.local", "bookinfo", None, None).unwrap();
    /// assert_eq!(dr.merged.len(), 2);
    /// assert!(dr.subset("v1").is_some() && dr.traffic_policy.is_some());
    /// ```
    pub fn build(objects: &[ConfigObject], opts: &MeshOptions) -> DestinationRules {
        let root = opts.root_namespace.as_str();
        let mut drs = DestinationRules {
            root: root.into(),
            ..DestinationRules::default()
        };
        // istiod sortConfigBySelectorAndCreationTime: rules with a workload selector first,
        // then the oldest first
        let mut rules: Vec<(&ConfigObject, &crate::model::DestinationRule)> = objects
            .iter()
            .filter_map(|o| match &o.spec {
                Spec::DestinationRule(dr) => Some((o, dr)),
                _ => None,
            })
            .collect();
        rules.sort_by(|(a, da), (b, db)| {
            db.workload_selector
                .is_some()
                .cmp(&da.workload_selector.is_some())
                .then_with(|| a.istio_order(b))
        });
        for (o, dr) in rules {
            let ns = o.metadata.namespace.as_str();
            let host = opts.resolve_host(&dr.host, ns);
            let selector = dr
                .workload_selector
                .as_ref()
                .map(|s| s.match_labels.clone());
            // istiod: a rule with a workload selector is never exported (as if `exportTo: [.]`)
            let dot = [".".to_string()];
            let raw: &[String] = if selector.is_some() {
                &dot
            } else if dr.export_to.is_empty() {
                // MeshConfig defaultDestinationRuleExportTo (§1.5; empty: `*`)
                &opts.default_destination_rule_export_to
            } else {
                &dr.export_to
            };
            let has = |e: &str| raw.iter().any(|x| x == e);
            let mut distinct: Vec<&str> = raw.iter().map(String::as_str).collect();
            distinct.sort_unstable();
            distinct.dedup();
            // istiod SetDestinationRules: the namespace-local pool takes rules exported to
            // everyone, to `.` or to their own namespace ...
            let local = raw.is_empty() || has("*") || has(".") || has(ns);
            // ... the exported pool every rule that is not private to its namespace ...
            let private_only = distinct.len() == 1 && (distinct[0] == "." || distinct[0] == ns);
            let mut new = MergedDestinationRule {
                name: o.key().into(),
                merged: vec![o.key().into()],
                namespace: ns.into(),
                host: host.as_str().into(),
                export_to: ExportTo::compile_or_default(
                    &dr.export_to,
                    ns,
                    &opts.default_destination_rule_export_to,
                ),
                export_set: if selector.is_some() {
                    vec![".".into()]
                } else {
                    let mut v: Vec<Box<str>> =
                        dr.export_to.iter().map(|e| e.as_str().into()).collect();
                    v.sort();
                    v.dedup();
                    v
                },
                workload_selector: selector,
                traffic_policy: dr.traffic_policy.as_ref().map(CompactPolicy::from),
                subsets: dr.subsets.iter().map(CompiledSubset::from).collect(),
            };
            if local {
                let index = drs.local.entry(ns.into()).or_default();
                merge_into(index.entry(&host), new.clone());
            }
            if !private_only {
                // ... where a client sees it when the list is empty, has `*` or names the
                // client's namespace literally (`.` does not count there)
                new.export_to = if raw.is_empty() || has("*") {
                    ExportTo::All
                } else {
                    let mut v: Vec<Box<str>> = distinct
                        .iter()
                        .filter(|e| **e != "." && **e != "~")
                        .map(|e| (*e).into())
                        .collect();
                    v.dedup();
                    ExportTo::Namespaces(v.into())
                };
                let index = drs.exported.entry(ns.into()).or_default();
                merge_into(index.entry(&host), new);
            } else if ns == root {
                // ... and the root namespace's private rules apply to its own proxies first
                merge_into(drs.root_local.entry(&host), new);
            }
        }
        for m in drs.local.values_mut().chain(drs.exported.values_mut()) {
            m.finish();
        }
        drs.root_local.finish();
        drs
    }

    /// The DestinationRule for `host` as seen by a client in `client_ns` (with `labels`, for
    /// DestinationRules with a workload selector); `service_ns` is the namespace of the
    /// service (from the registry).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::policy::DestinationRules;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings, namespace: bookinfo}
    /// spec: {host: ratings}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings-from-canary, namespace: bookinfo}
    /// spec:
    ///   host: ratings
    ///   workloadSelector: {matchLabels: {track: canary}}
    /// ", "drs.yaml");
    /// let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
    /// let host = "ratings.bookinfo.svc.cluster.local";
    /// let name = |labels: Option<&Labels>| drs.lookup(host, "bookinfo", labels, None).map(|d| d.name.to_string());
    /// let canary: Labels = [("track".to_string(), "canary".to_string())].into();
    /// assert_eq!(name(Some(&canary)).as_deref(), Some("bookinfo/ratings-from-canary"));
    /// assert_eq!(name(None).as_deref(), Some("bookinfo/ratings"));
    /// // a client in another namespace needs the service's namespace to find it
    /// assert!(drs.lookup(host, "default", None, None).is_none());
    /// assert!(drs.lookup(host, "default", None, Some("bookinfo")).is_some());
    /// ```
    pub fn lookup(
        &self,
        host: &str,
        client_ns: &str,
        client_labels: Option<&Labels>,
        service_ns: Option<&str>,
    ) -> Option<&MergedDestinationRule> {
        // istiod destinationRule: the first pool with a rule for the most specific matching
        // host decides; within it, the rule whose selector matches the client, else the one
        // without selector, else none (no fallback to a less specific host or later pool)
        // 1. the client's namespace: its local pool; for the root namespace only its private rules
        let first = if client_ns == &*self.root {
            Some(&self.root_local)
        } else {
            self.local.get(client_ns)
        };
        if let Some(list) = first.and_then(|index| index.get(host)) {
            return select(list, client_ns, client_labels, |_| true);
        }
        // 2. the service's namespace, 3. the root namespace: rules exported to the client
        let exported = [service_ns, Some(&*self.root)];
        for (i, ns) in exported.iter().enumerate() {
            let Some(ns) = *ns else { continue };
            if i == 1 && service_ns == Some(ns) {
                continue;
            }
            let Some(list) = self.exported.get(ns).and_then(|index| index.get(host)) else {
                continue;
            };
            let visible = |m: &MergedDestinationRule| m.export_to.visible_to(client_ns);
            if list.iter().any(visible) {
                return select(list, client_ns, client_labels, visible);
            }
        }
        None
    }

    /// The effective policy for (host, subset, port).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::policy::DestinationRules;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec:
    ///   host: reviews
    ///   trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
    ///   subsets:
    ///   - name: v2
    ///     labels: {version: v2}
    ///     trafficPolicy: {tls: {mode: DISABLE}}
    /// ", "dr.yaml");
    /// let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
    /// let host = "reviews.default.svc.cluster.local";
    /// let tls = |subset| drs.effective(host, subset, 9080, "default", None, None).tls.map(|t| t.mode);
    /// assert_eq!(tls(None), Some(mesh_core::model::ClientTlsMode::IstioMutual));
    /// assert_eq!(tls(Some("v2")), Some(mesh_core::model::ClientTlsMode::Disable)); // the subset's block
    /// let missing = drs.effective(host, Some("v9"), 9080, "default", None, None);
    /// assert!(!missing.subset_found); // Envoy would answer 503
    /// ```
    pub fn effective<'a>(
        &'a self,
        host: &str,
        subset: Option<&str>,
        port: u16,
        client_ns: &str,
        client_labels: Option<&Labels>,
        service_ns: Option<&str>,
    ) -> EffectivePolicy<'a> {
        let Some(dr) = self.lookup(host, client_ns, client_labels, service_ns) else {
            return EffectivePolicy {
                subset_found: subset.is_none(),
                ..EffectivePolicy::default()
            };
        };
        let sub = subset.and_then(|s| dr.subset(s));
        let mut e = merge(
            dr.traffic_policy.as_ref(),
            sub.and_then(|s| s.traffic_policy.as_deref()),
            port,
        );
        e.destination_rule = Some(dr);
        e.subset = sub;
        e.subset_found = subset.is_none() || sub.is_some();
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClientTlsMode;

    fn tp(v: serde_json::Value) -> CompactPolicy {
        let t: TrafficPolicy = serde_json::from_value(v).unwrap();
        CompactPolicy::from(&t)
    }

    #[test]
    fn merge_table() {
        let top = tp(serde_json::json!({
            "loadBalancer": {"simple": "ROUND_ROBIN"},
            "connectionPool": {"tcp": {"maxConnections": 100}},
            "tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 80}, "loadBalancer": {"simple": "RANDOM"}}]
        }));
        let sub = tp(serde_json::json!({"loadBalancer": {"simple": "LEAST_REQUEST"}}));
        let sub_pl = tp(serde_json::json!({
            "portLevelSettings": [{"port": {"number": 9080}, "outlierDetection": {"consecutive5xxErrors": 1}}]
        }));
        // (dr, subset, port, lb, has cp, tls)
        let lb = |e: &EffectivePolicy<'_>| e.load_balancer.and_then(|l| l.simple);
        type Case<'a> = (
            Option<&'a CompactPolicy>,
            Option<&'a CompactPolicy>,
            u16,
            Option<SimpleLb>,
            bool,
            bool,
        );
        let table: Vec<Case<'_>> = vec![
            (
                Some(&top),
                None,
                9080,
                Some(SimpleLb::RoundRobin),
                true,
                true,
            ),
            // port level alone: nothing inherited from the top level
            (Some(&top), None, 80, Some(SimpleLb::Random), false, false),
            // subset replaces the lb block only
            (
                Some(&top),
                Some(&sub),
                9080,
                Some(SimpleLb::LeastRequest),
                true,
                true,
            ),
            (
                Some(&top),
                Some(&sub),
                80,
                Some(SimpleLb::LeastRequest),
                false,
                false,
            ),
            // subset port-level replaces every block, even by nothing
            (Some(&top), Some(&sub_pl), 9080, None, false, false),
            // subset policy without that port: top-level of the subset (empty) changes nothing
            (
                Some(&top),
                Some(&sub_pl),
                7000,
                Some(SimpleLb::RoundRobin),
                true,
                true,
            ),
            (
                None,
                Some(&sub),
                9080,
                Some(SimpleLb::LeastRequest),
                false,
                false,
            ),
            (None, None, 9080, None, false, false),
        ];
        for (i, (d, s, port, want_lb, want_cp, want_tls)) in table.into_iter().enumerate() {
            let e = merge(d, s, port);
            assert_eq!(lb(&e), want_lb, "case {i}");
            assert_eq!(e.connection_pool.is_some(), want_cp, "case {i}");
            assert_eq!(
                e.tls.map(|t| t.mode) == Some(ClientTlsMode::IstioMutual),
                want_tls,
                "case {i}"
            );
        }
        let e = merge(Some(&top), Some(&sub_pl), 9080);
        assert_eq!(e.outlier_detection.unwrap().consecutive_5xx_errors, Some(1));
        assert_eq!(
            merge(None, None, 1).simple_lb(),
            Some(SimpleLb::LeastRequest)
        );
    }

    #[test]
    fn lookup_order_and_merging() {
        let loaded = crate::load::load_str(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-ns, namespace: prod}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-ns-2, namespace: prod}
spec:
  host: reviews.prod.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets: [{name: v1, labels: {version: other}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: client, namespace: client}
spec:
  host: reviews.prod.svc.cluster.local
  exportTo: ["."]
  subsets: [{name: c, labels: {version: c}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: istio-system}
spec:
  host: "*.local"
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: private, namespace: prod}
spec:
  host: "*.prod.svc.cluster.local"
  exportTo: ["."]
"#,
            "dr.yaml",
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let drs = DestinationRules::build(&loaded.objects, &MeshOptions::default());
        let h = "reviews.prod.svc.cluster.local";
        let table = [
            ("client", Some("prod"), "client/client"),
            ("prod", Some("prod"), "prod/svc-ns"),
            ("other", Some("prod"), "prod/svc-ns"),
            ("other", None, "istio-system/mesh"),
        ];
        for (client, svc_ns, want) in table {
            assert_eq!(
                drs.lookup(h, client, None, svc_ns).map(|m| &*m.name),
                Some(want),
                "{client}"
            );
        }
        let m = drs.lookup(h, "prod", None, Some("prod")).unwrap();
        assert_eq!(m.merged.len(), 2);
        assert_eq!(m.subset("v1").unwrap().labels["version"], "v1");
        assert!(m.subset("v2").is_some());
        let e = drs.effective(h, Some("v2"), 9080, "prod", None, Some("prod"));
        assert_eq!(e.simple_lb(), Some(SimpleLb::Random));
        assert!(e.subset_found);
        let e = drs.effective(h, Some("v9"), 9080, "prod", None, Some("prod"));
        assert!(!e.subset_found);
        // the private wildcard in prod is not visible from other: root namespace applies
        assert_eq!(
            drs.lookup("x.prod.svc.cluster.local", "other", None, Some("prod"))
                .map(|m| &*m.name),
            Some("istio-system/mesh")
        );
        assert_eq!(
            drs.lookup("x.prod.svc.cluster.local", "prod", None, Some("prod"))
                .map(|m| &*m.name),
            Some("prod/private")
        );
    }

    fn drs(yaml: &str) -> DestinationRules {
        let loaded = crate::load::load_str(yaml, "dr.yaml");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        DestinationRules::build(&loaded.objects, &MeshOptions::default())
    }

    const ROOT_DRS: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: istio-system}
spec: {host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-gw, namespace: istio-system}
spec:
  host: ratings.default.svc.cluster.local
  exportTo: ["."]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec: {host: ratings}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dot-and-b, namespace: istio-system}
spec:
  host: "*.b.svc.cluster.local"
  exportTo: [".", "b"]
"#;

    #[test]
    fn root_namespace_client_sees_the_services_rule_before_public_root_rules() {
        let drs = drs(ROOT_DRS);
        let name = |host, client, svc| drs.lookup(host, client, None, svc).map(|m| &*m.name);
        let reviews = "reviews.default.svc.cluster.local";
        let ratings = "ratings.default.svc.cluster.local";
        // (host, client namespace, service namespace, want)
        let table = [
            // a gateway in istio-system: the service's rule, not the public *.local one
            (
                reviews,
                "istio-system",
                Some("default"),
                Some("default/reviews"),
            ),
            // a private root rule is meant for the root namespace's own proxies
            (
                ratings,
                "istio-system",
                Some("default"),
                Some("istio-system/ratings-gw"),
            ),
            (ratings, "default", Some("default"), Some("default/ratings")),
            (ratings, "other", Some("default"), Some("default/ratings")),
            // no rule in the service's namespace: the public root rule
            (
                "x.c.svc.cluster.local",
                "istio-system",
                Some("c"),
                Some("istio-system/mesh"),
            ),
            // exportTo [., b] is not private: b sees it; `.` does not name the root client, and
            // the less specific *.local is not consulted for it
            (
                "x.b.svc.cluster.local",
                "b",
                Some("b"),
                Some("istio-system/dot-and-b"),
            ),
            ("x.b.svc.cluster.local", "istio-system", Some("b"), None),
        ];
        for (host, client, svc, want) in table {
            assert_eq!(name(host, client, svc), want, "{host} from {client}");
        }
    }

    #[test]
    fn client_namespace_pool_is_local_rules_only() {
        let drs = drs(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: to-b, namespace: a}
spec: {host: reviews.prod.svc.cluster.local, exportTo: [b]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: prod}
spec: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: narrow, namespace: prod}
spec: {host: "*.prod.svc.cluster.local", exportTo: [c]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wide, namespace: prod}
spec: {host: "*.svc.cluster.local"}
"#);
        let name = |host, client| {
            drs.lookup(host, client, None, Some("prod"))
                .map(|m| &*m.name)
        };
        // a rule exported only to b is not in a's own pool
        assert_eq!(
            name("reviews.prod.svc.cluster.local", "a"),
            Some("prod/reviews")
        );
        // the most specific exported host decides; it is not visible to d, and the less
        // specific one is not consulted: the root namespace is next (none here)
        assert_eq!(name("x.prod.svc.cluster.local", "d"), None);
        assert_eq!(name("x.prod.svc.cluster.local", "c"), Some("prod/narrow"));
    }

    #[test]
    fn workload_selector_rule_never_falls_back() {
        let drs = drs(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh, namespace: istio-system}
spec: {host: "*.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-pp, namespace: default}
spec:
  host: reviews
  workloadSelector: {matchLabels: {app: productpage}}
  exportTo: ["."]
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all-default, namespace: default}
spec: {host: "*.default.svc.cluster.local"}
"#);
        let h = "reviews.default.svc.cluster.local";
        let pp: Labels = [("app".to_string(), "productpage".to_string())].into();
        let other: Labels = [("app".to_string(), "ratings".to_string())].into();
        let name = |ns, l: Option<&Labels>| drs.lookup(h, ns, l, Some("default")).map(|m| &*m.name);
        assert_eq!(name("default", Some(&pp)), Some("default/reviews-pp"));
        // the most specific host has only a selector rule that does not match: no rule at
        // all, neither the namespace wildcard nor the root namespace's
        assert_eq!(name("default", Some(&other)), None);
        assert_eq!(name("default", None), None);
        // a selector rule is private to its namespace
        assert_eq!(name("other", Some(&pp)), Some("default/all-default"));
    }

    #[test]
    fn rules_with_different_export_to_are_not_merged() {
        // Istio 1.24 ENABLE_ENHANCED_DESTINATIONRULE_MERGE (istio/istio#52519): two rules for
        // one host in one namespace merge only when their exportTo agree
        let drs = drs(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-a, namespace: prod}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-b, namespace: prod}
spec:
  host: reviews
  exportTo: ["."]
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-c, namespace: prod}
spec:
  host: reviews
  subsets: [{name: v3, labels: {version: v3}}]
"#);
        let h = "reviews.prod.svc.cluster.local";
        // in prod: a, then b apart (its exportTo differs); c is merged into a, and, since
        // the last rule compared (b) could not take it, kept apart too: a+c, b, c. The
        // last one without a selector applies (SidecarScope.DestinationRule)
        let local = drs.lookup(h, "prod", None, Some("prod")).unwrap();
        assert_eq!(&*local.name, "prod/reviews-c");
        assert_eq!(local.merged.len(), 1);
        assert!(local.subset("v3").is_some() && local.subset("v1").is_none());
        assert!(local.traffic_policy.is_none());
        // elsewhere only the exported pair, merged
        let exported = drs.lookup(h, "default", None, Some("prod")).unwrap();
        assert_eq!(&*exported.name, "prod/reviews-a");
        let merged: Vec<&str> = exported.merged.iter().map(|m| &**m).collect();
        assert_eq!(merged, ["prod/reviews-a", "prod/reviews-c"]);
        assert!(exported.subset("v3").is_some() && exported.subset("v2").is_none());
    }

    #[test]
    fn a_selector_rule_and_a_private_catch_all_share_subsets() {
        // the same exportTo (`.`: a selector rule is private), different selectors: istiod
        // merges the newer into the older and keeps it apart as well
        let drs = drs(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-canary, namespace: bookinfo}
spec:
  host: ratings
  workloadSelector: {matchLabels: {track: canary}}
  subsets: [{name: v2, labels: {version: v2}}]
"#);
        let h = "ratings.bookinfo.svc.cluster.local";
        let canary: Labels = [("track".to_string(), "canary".to_string())].into();
        // the selector rule comes first (sortConfigBySelectorAndCreationTime): the catch-all
        // is merged into it, and kept apart
        let c = drs.lookup(h, "bookinfo", Some(&canary), None).unwrap();
        assert_eq!(&*c.name, "bookinfo/ratings-canary");
        assert!(c.subset("v1").is_some() && c.subset("v2").is_some());
        let plain = drs.lookup(h, "bookinfo", None, None).unwrap();
        assert_eq!(&*plain.name, "bookinfo/ratings");
        assert!(plain.subset("v2").is_none());
    }
}
