//! Per-destination state: the endpoint set with its load balancer, outlier detector,
//! circuit breakers, TLS policy and pooled client, for one `(host, subset, port)` (and, for
//! a `resolution: NONE` service or an `https` request, the request's own host and port:
//! [`DestKey::for_request`]).
//!
//! An endpoint may be known by name only: the original destination of a `resolution: NONE`
//! (or `DYNAMIC_DNS`) ServiceEntry, which is the request's host and port, and a DNS name the
//! mesh's refresher has not answered yet (the refresher is started on first use,
//! [`Mesh::ensure_dns_refresh`](mesh_core::mesh::Mesh::ensure_dns_refresh)). The balancer
//! and pools know it by a placeholder address; the connector resolves the name with the
//! system resolver each time it connects.
//!
//! A [`Destination`] is created lazily on first use and kept across snapshots: when a new
//! snapshot arrives, the first request to the destination compares its endpoints and merged
//! policy with what the state was built from (a comparison, no allocation), and only if they
//! differ builds a new state, carrying endpoint ejection and outlier counters over
//! ([`LoadBalancer::with_state_from`]). Connections stay pooled while the policy is unchanged.

use mesh_core::model::TcpKeepalive;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use mesh_core::model::{
    ClientTlsMode as CoreTlsMode, ClientTlsSettings as CoreTls, ConnectionPoolSettings,
    LoadBalancerSettings, MtlsMode, OutlierDetection, Resolution, ServiceLocation, SimpleLb,
};
use mesh_core::names::labels_match;
use mesh_core::policy::EffectivePolicy;
use mesh_core::registry::{EndpointAddress, Service, ServiceOrigin};
use mesh_core::snapshot::Snapshot;
use mesh_tls::{ClientContext, ClientTlsMode, ClientTlsSettings, Identity};
use rustc_hash::FxBuildHasher;

use super::connector::{DialName, MeshConnector, TlsPolicy};
use super::upstream::Upstream;
use super::ClientShared;
use crate::lb::{
    CookieKey, Distribute, Failover, HashKey, LbAlgorithm, LbConfig, LoadBalancer, Locality,
    LocalityContext, LocalityLbSetting,
};
use crate::metrics::{ServiceInfo, WorkloadInfo};
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::pool::{CircuitBreaker, PoolLimits};

/// Istio's default connect timeout (MeshConfig `connectTimeout`).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What identifies a destination.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DestKey {
    pub(crate) host: Arc<str>,
    pub(crate) subset: Option<Arc<str>>,
    pub(crate) port: u16,
    /// The request's own host (lower case, no brackets) and port, for a destination that
    /// depends on them (see [`DestKey::for_request`]); `None` for every other one.
    pub(crate) request: Option<(Arc<str>, u16)>,
    /// The application asked for `https`: the client originates TLS to the request's host.
    pub(crate) https: bool,
}

impl DestKey {
    /// This key, for a destination whose TLS origination names the request's host (see
    /// [`DestState::names_request_host`]), when that host is not the service's own name
    /// (a Kubernetes short name, `reviews.prod`): `None` when it is.
    pub(crate) fn naming_request_host(&self, request: RequestTarget<'_>) -> Option<DestKey> {
        let h = request.authority.host();
        let h = h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h);
        if h.eq_ignore_ascii_case(&self.host) {
            return None;
        }
        Some(DestKey {
            request: Some((Arc::from(h.to_ascii_lowercase()), request.port)),
            ..self.clone()
        })
    }
}

/// What of a request decides its destination besides the routed service.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestTarget<'a> {
    /// The authority the request is for (its host is read only for destinations keyed
    /// by it: `Authority::host` scans the authority).
    pub(crate) authority: &'a http::uri::Authority,
    /// The port the request is for.
    pub(crate) port: u16,
    /// The application's URI has the `https` scheme (a mesh client's request, never a
    /// gateway's: a gateway terminated the client's TLS).
    pub(crate) https: bool,
}

impl DestKey {
    /// The destination `(host, subset, port)`, the same for every request.
    pub(crate) fn new(host: Arc<str>, subset: Option<Arc<str>>, port: u16) -> DestKey {
        DestKey {
            host,
            subset,
            port,
            request: None,
            https: false,
        }
    }

    /// The destination of `request` routed to `service`: as [`DestKey::new`], and keyed
    /// by the request's host and port as well when they decide where and how to connect:
    /// - a `resolution: NONE` (or `DYNAMIC_DNS`) service forwards to the original
    ///   destination, the address the application's own host name resolves to (spec §4.2;
    ///   a wildcard host is the usual case), and its TLS origination uses that host as SNI;
    /// - an `https` request: the application originates TLS to its host (SNI and
    ///   certificate name), as it would with the sidecar passing its TLS through; its
    ///   connections are not shared with `http` ones.
    pub(crate) fn for_request(
        service: &Service,
        subset: Option<Arc<str>>,
        port: u16,
        request: RequestTarget<'_>,
    ) -> DestKey {
        // the host, read only when it decides (`Authority::host` scans the authority, some
        // 370 instructions of every request to an ordinary service)
        let raw = || {
            let raw = request.authority.host();
            raw.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(raw)
        };
        // (a headless Service's pod by its own name: `pod_name` compares in any case, so
        // the host is copied only for a pod)
        let by_request = (request.https
            || is_passthrough(service)
            || service.headless && service.pod_name(raw()).is_some())
        .then(|| raw().to_ascii_lowercase());
        DestKey {
            host: Arc::clone(&service.hostname),
            subset,
            port,
            request: by_request.map(|h| (Arc::from(h), request.port)),
            https: request.https,
        }
    }
}

/// The service of a destination outside the registry under `outboundTrafficPolicy:
/// ALLOW_ANY`: Envoy's `PassthroughCluster`, an ORIGINAL_DST cluster with no
/// DestinationRule, no mTLS and no endpoints of its own. Each request goes to its own host
/// and port (its [`DestKey::for_request`] carries them), plaintext unless the application
/// asked for `https`.
pub(crate) fn passthrough_service() -> &'static Service {
    static SERVICE: std::sync::OnceLock<Service> = std::sync::OnceLock::new();
    SERVICE.get_or_init(|| Service {
        hostname: Arc::from(PASSTHROUGH_CLUSTER),
        namespace: Arc::from(""),
        object: Arc::from(""),
        origin: ServiceOrigin::ServiceEntry,
        ports: Vec::new(),
        addresses: Vec::new(),
        resolution: Resolution::None,
        location: ServiceLocation::MeshExternal,
        export_to: mesh_core::names::ExportTo::All,
        subject_alt_names: Vec::new(),
        endpoints: Vec::new(),
        default_destinations: Box::default(),
        headless: false,
        alias_of: None,
        traffic_distribution: mesh_core::registry::TrafficDistribution::Any,
        node_local: false,
    })
}

/// The placeholder address (`0.0.0.n`) of an endpoint dialed by name: not where it is.
pub(crate) fn is_placeholder(addr: SocketAddr) -> bool {
    matches!(addr.ip(), std::net::IpAddr::V4(v4) if v4.octets()[0] == 0)
}

/// The name Envoy's passthrough cluster has in Istio (and in its metrics).
pub(crate) const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// `service` is [`passthrough_service`].
pub(crate) fn is_passthrough_cluster(service: &Service) -> bool {
    std::ptr::eq(service, passthrough_service())
}

/// Resolution NONE (or DYNAMIC_DNS): Envoy's ORIGINAL_DST (or dynamic forward proxy)
/// cluster, which connects where the application's request was going.
fn is_passthrough(service: &Service) -> bool {
    matches!(
        service.resolution,
        Resolution::None | Resolution::DynamicDns
    )
}

/// The label istiod gives endpoints and proxies from the name of their node (`AugmentLabels`).
const NODE_LABEL: &str = "kubernetes.io/hostname";

/// One endpoint as the registry gives it (what a state was built from).
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndpointSpec {
    /// The address, or for an endpoint dialed by name a placeholder (`0.0.0.n:port`, unique
    /// in the destination) the balancer and pools know it by.
    addr: SocketAddr,
    /// Dialed by resolving this name when connecting.
    name: Option<DialName>,
    weight: u32,
    locality: Option<Box<str>>,
    service_account: Option<Box<str>>,
    labels: BTreeMap<String, String>,
    mtls: bool,
    /// The endpoint runs the mesh's mTLS (`security.istio.io/tlsMode: istio`, or a
    /// service account), whatever this client's credentials.
    istio_tls: bool,
    /// The workload's name for the metrics (`destination_workload`), if known.
    workload: Option<Box<str>>,
}

impl EndpointSpec {
    /// Connections to `self` serve `other` as they are: everything but its weight, which
    /// only the balancer reads, is the same (Envoy updates such a host in place on an
    /// endpoint update, connections kept; a locality change replaces the host, as Envoy's
    /// `support_locality_update_on_eds_cluster_endpoints` does).
    fn same_connections(&self, other: &EndpointSpec) -> bool {
        let EndpointSpec {
            addr,
            name,
            weight: _,
            locality,
            service_account,
            labels,
            mtls,
            istio_tls,
            workload,
        } = self;
        *addr == other.addr
            && *name == other.name
            && *locality == other.locality
            && *service_account == other.service_account
            && *labels == other.labels
            && *mtls == other.mtls
            && *istio_tls == other.istio_tls
            && *workload == other.workload
    }
}

/// The built state of a destination for one endpoint set and policy.
pub(crate) struct DestState {
    /// Last snapshot generation this state was checked against.
    seen: AtomicU64,
    subset_found: bool,
    lb_settings: Option<LoadBalancerSettings>,
    pool_settings: Option<ConnectionPoolSettings>,
    /// The DestinationRule's top-level `connectionPool.tcp`, which alone sets a TCP proxy's
    /// timeouts (see [`DestState::tcp_timeouts`]).
    top_tcp: Option<mesh_core::model::TcpSettings>,
    outlier_settings: Option<OutlierDetection>,
    pub(crate) tls_settings: Option<CoreTls>,
    /// What the connections are opened with beside the policy (MeshConfig's part).
    conn: ConnSettings,
    endpoints: Vec<EndpointSpec>,
    /// What the TLS identity check was built from: the service's `subjectAltNames` and its
    /// endpoints' service accounts (a change to either rebuilds the TLS config).
    identities: Vec<Box<str>>,

    pub(crate) lb: Arc<LoadBalancer>,
    pub(crate) outlier: Option<Arc<OutlierDetector>>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) hash_key: Option<HashKey>,
    pub(crate) upstream: Upstream,
    /// The metrics' view of each endpoint (same order as the balancer's endpoints).
    pub(crate) peers: Vec<Arc<WorkloadInfo>>,
    /// The same without the principal, for an answer made without an upstream connection
    /// (istio_stats reads the principals from the upstream TLS connection; same order).
    pub(crate) peers_unconnected: Vec<Arc<WorkloadInfo>>,
    /// Whether the connection to each endpoint is mutual TLS with the mesh certificates
    /// (auto mTLS or `ISTIO_MUTUAL`; same order).
    pub(crate) mutual_tls: Vec<bool>,
    /// Whether each endpoint runs the mesh's mTLS itself (same order): the only ones an
    /// `AUTO_PASSTHROUGH` gateway forwards to, as istiod's EDS for its SNI-DNAT clusters.
    pub(crate) istio_tls: Vec<bool>,
    /// Each endpoint's address as a URI authority (same order), built once.
    pub(crate) authorities: Vec<http::uri::Authority>,
    pub(crate) service: Arc<ServiceInfo>,
    /// Envoy's cluster name, `outbound|<port>|<subset>|<host>` (for the access log).
    pub(crate) cluster_name: Arc<str>,
    /// Each request goes upstream in its own HTTP version (Envoy's
    /// `use_downstream_protocol`): see [`uses_downstream_protocol`].
    pub(crate) downstream_protocol: bool,
}

impl std::fmt::Debug for DestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestState")
            .field("endpoints", &self.endpoints.len())
            .field("subset_found", &self.subset_found)
            .finish_non_exhaustive()
    }
}

impl DestState {
    /// Endpoint `i`'s address, unless it is the placeholder (`0.0.0.n`) of an endpoint
    /// dialed by name.
    pub(crate) fn addr(&self, i: usize) -> Option<std::net::SocketAddr> {
        self.lb
            .endpoints()
            .get(i)
            .map(|e| e.addr())
            .filter(|a| !is_placeholder(*a))
    }

    /// SIMPLE or MUTUAL origination without `sni`: Istio's auto SNI and auto SAN validation
    /// (`ENABLE_AUTO_SNI`, `VERIFY_CERTIFICATE_AT_CLIENT`, on by default) give the request's
    /// Host as SNI and, without `subjectAltNames`, as the name the server's certificate is
    /// checked against.
    pub(crate) fn names_request_host(&self) -> bool {
        self.tls_settings.as_ref().is_some_and(|t| {
            matches!(t.mode, CoreTlsMode::Simple | CoreTlsMode::Mutual) && t.sni.is_none()
        })
    }

    /// False when the route names a subset no DestinationRule defines (503 NC).
    pub(crate) fn subset_found(&self) -> bool {
        self.subset_found
    }

    /// The TCP proxy timeouts of an opaque connection to this destination: the
    /// DestinationRule's `connectionPool.tcp.idleTimeout` (when unset, the proxy's
    /// `proxy_idle`, MeshConfig's `ISTIO_META_IDLE_TIMEOUT` or 1 h, as Envoy's TCP proxy;
    /// `0s` disables it) and `maxConnectionDuration` (none when unset), from its top-level
    /// traffic policy only: istiod builds the TCP proxy from
    /// `GetTrafficPolicy().GetConnectionPool().GetTcp()`, subsets and port-level settings
    /// aside.
    pub(crate) fn tcp_timeouts(
        &self,
        proxy_idle: Duration,
    ) -> (Option<Duration>, Option<Duration>) {
        tcp_timeouts_of(self.top_tcp.as_ref(), proxy_idle)
    }
}

/// A TCP proxy's idle timeout and maximum duration from a DestinationRule's top-level
/// `connectionPool.tcp` (see [`DestState::tcp_timeouts`]).
pub(crate) fn tcp_timeouts_of(
    tcp: Option<&mesh_core::model::TcpSettings>,
    proxy_idle: Duration,
) -> (Option<Duration>, Option<Duration>) {
    // istiod sets the TCP proxy's `idle_timeout` from the proxy's `ISTIO_META_IDLE_TIMEOUT`
    // (`MeshOptions::idle_timeout`: Envoy's 1 h when unset), the DestinationRule's over it
    let idle = tcp
        .and_then(|t| t.idle_timeout)
        .map_or(proxy_idle, |d| d.as_std());
    let idle = Some(idle).filter(|d| !d.is_zero());
    let max = tcp
        .and_then(|t| t.max_connection_duration)
        .map(|d| d.as_std())
        .filter(|d| !d.is_zero());
    (idle, max)
}

/// A destination: its current state, replaced when endpoints or policy change.
#[derive(Debug)]
pub(crate) struct Destination {
    current: ArcSwap<DestState>,
    rebuild: Mutex<()>,
    /// Used since the last eviction pass (destinations keyed by the request's host only).
    used: AtomicBool,
}

/// How many destinations keyed by the request's own host (passthrough, `resolution: NONE`,
/// `https` requests) a client keeps before it looks for ones to forget: those not used
/// since it last looked, with nothing in flight, whatever their DestinationRule (their
/// outlier state goes with them, as Envoy's original destination cluster lets its unused
/// hosts go). A client calling an unbounded set of outside hosts (at an egress gateway,
/// its clients choose them) does not grow without bound.
const MAX_BY_REQUEST: usize = 512;

/// The destinations a client has used, found by hash lookup without locks.
#[derive(Debug, Default)]
pub(crate) struct DestCache {
    map: ArcSwap<HashMap<DestKey, Arc<Destination>, FxBuildHasher>>,
    insert: Mutex<ByRequest>,
    /// The snapshot generation the destinations of services gone were last looked for at
    /// (written under the insert lock; read by every request, one load).
    pruned: AtomicU64,
    /// Some destinations of services gone were kept for their requests in flight: looked
    /// at again every [`ORPHAN_RECHECK`]th request of a thread until they are idle.
    orphans: AtomicBool,
}

/// How often (in requests, per thread) destinations of services gone that were busy are
/// looked at again (see [`DestCache::prune`]).
const ORPHAN_RECHECK: u32 = 256;

/// Whether this request of the thread is the one to look at busy destinations of services
/// gone again (a thread-local count: no write shared between threads).
fn orphan_tick() -> bool {
    thread_local!(static TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % ORPHAN_RECHECK == 0
    })
}

/// The request-keyed destinations' count and when to look for ones to forget (under the
/// insert lock).
#[derive(Debug, Default)]
struct ByRequest {
    count: usize,
    next_pass: usize,
    /// Destinations of services gone that had requests in flight when they were looked
    /// for (see [`DestCache::prune`]).
    orphans: Vec<DestKey>,
}

impl Destination {
    /// Forgetting it loses idle connections and the outlier state of an unused host only:
    /// not used since the last pass, nothing in flight on it.
    fn forgettable(&self) -> bool {
        if self.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        !self.in_flight()
    }

    /// Requests pending, in flight or retrying on it.
    fn in_flight(&self) -> bool {
        let cur = self.current.load();
        let (_, pending, requests, retries) = cur.breaker.in_use();
        pending != 0 || requests != 0 || retries != 0
    }
}

/// Locks `m`, also when a panicking holder poisoned it (the data stays consistent: every
/// critical section here is a plain read or a single assignment).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The endpoints and policy of a destination in a snapshot.
struct Inputs<'a> {
    policy: EffectivePolicy<'a>,
    endpoints: Vec<EndpointSpec>,
    identities: Vec<Box<str>>,
}

fn inputs<'a>(
    snap: &'a Snapshot,
    shared: &ClientShared,
    service: &Service,
    key: &DestKey,
) -> Inputs<'a> {
    let ns = &shared.workload.namespace;
    // the passthrough cluster is no service: no DestinationRule applies to it
    let policy = if is_passthrough_cluster(service) {
        EffectivePolicy {
            subset_found: true,
            ..EffectivePolicy::default()
        }
    } else {
        snap.traffic_policy_for(
            &key.host,
            key.subset.as_deref(),
            key.port,
            ns,
            Some(&shared.workload.labels),
        )
    };
    // an undefined subset selects nothing (the request gets 503 NC anyway)
    let undefined_subset = key.subset.is_some() && !policy.subset_found;
    let subset_labels = policy.subset_labels();
    // (an `https` request carries the application's own TLS instead; MeshConfig
    // `enableAutoMtls: false` leaves mTLS to DestinationRules)
    let auto_mtls = snap.options().enable_auto_mtls
        && policy.tls.is_none()
        && !key.https
        && shared.credentials.is_some()
        && service.location == ServiceLocation::MeshInternal;
    // istiod's per-endpoint mTLS check (`mtls_checker.go`): a DestinationRule TLS mode for
    // the port (the subset's own policy for a subset, else the top-level one, its port
    // entry's `tls` first) decides it even where the cluster took auto mTLS (a port entry
    // without `tls` does not inherit the top-level one for the cluster)
    let dr_mode = if auto_mtls {
        dr_tls_mode_for_port(&policy, key.subset.as_deref(), key.port)
    } else {
        None
    };
    let spec = |e: &mesh_core::registry::Endpoint, port: u16, addr, name| {
        let mtls = auto_mtls
            && e.istio_tls()
            && match dr_mode {
                Some(mode) => mode == CoreTlsMode::IstioMutual,
                None => {
                    snap.peer_authentication(&service.namespace, &e.labels, port)
                        != MtlsMode::Disable
                }
            };
        EndpointSpec {
            addr,
            name,
            weight: e.weight,
            locality: e.locality.clone(),
            service_account: e.service_account.clone(),
            labels: e.labels.clone(),
            mtls,
            istio_tls: e.istio_tls(),
            workload: workload_name(e),
        }
    };
    // A pod of a headless Service asked for by its own name: that pod alone, whatever the
    // subset (istiod's clusters of such a Service are ORIGINAL_DST: the address the pod's
    // name resolves to).
    let pod = key.request.as_ref().and_then(|(h, _)| service.pod_name(h));
    // `internalTrafficPolicy: Local` (istiod's `filterIstioEndpoint`: `NodeLocal` and the
    // endpoint's node is not the proxy's): the endpoints on this client's node alone
    // (not a headless Service's: Kubernetes does not apply the policy to one, and istiod's
    // clusters for it are ORIGINAL_DST, without the EDS endpoints the filter runs on)
    let node_local =
        service.node_local && service.resolution == Resolution::Static && !service.headless;
    let node = node_local
        .then(|| shared.workload.labels.get(NODE_LABEL))
        .flatten();
    let mut endpoints: Vec<EndpointSpec> = service
        .targets(key.port, if pod.is_some() { None } else { subset_labels })
        .filter(|t| match pod {
            Some(pod) => workload_name(t.endpoint).as_deref() == Some(pod),
            None => !undefined_subset,
        })
        .filter(|t| !node_local || t.endpoint.labels.get(NODE_LABEL) == node)
        .filter_map(|t| Some(spec(t.endpoint, t.port, t.addr?, None)))
        .collect();
    if undefined_subset && pod.is_none() {
        return Inputs {
            policy,
            endpoints,
            identities: Vec::new(),
        };
    }
    // Endpoints dialed by name, at placeholder addresses `0.0.0.n`.
    let mut named = 0u32;
    let mut placeholder = |port: u16| {
        named += 1;
        SocketAddr::new(std::net::Ipv4Addr::from(named - 1).into(), port)
    };
    if matches!(
        service.resolution,
        Resolution::Dns | Resolution::DnsRoundRobin
    ) {
        // A DNS name the refresher has not answered yet: resolved when connecting, as
        // Envoy uses a DNS cluster only once its first resolution is in.
        for e in service.endpoints.iter() {
            let EndpointAddress::Hostname(h) = &e.address else {
                continue;
            };
            if subset_labels.is_some_and(|sel| !labels_match(sel, &e.labels)) {
                continue;
            }
            let port = service.endpoint_port(e, key.port);
            let name = DialName {
                host: Arc::from(&**h),
                port,
            };
            endpoints.push(spec(e, port, placeholder(port), Some(name)));
        }
    }
    if endpoints.is_empty() && is_passthrough(service) {
        // The original destination: the request's own host and port, resolved when
        // connecting (the application would have connected there); a ServiceEntry port's
        // `targetPort` replaces the port (istiod's `PassthroughTargetPorts`, Envoy's
        // `upstream_port_override`; `ENABLE_RESOLUTION_NONE_TARGET_PORT`, on since 1.22)
        if let Some((host, port)) = &key.request {
            let port = match service.origin {
                ServiceOrigin::ServiceEntry => service
                    .port(key.port)
                    .and_then(|p| p.target_port)
                    .unwrap_or(*port),
                _ => *port,
            };
            endpoints.push(EndpointSpec {
                addr: placeholder(port),
                name: Some(DialName {
                    host: Arc::clone(host),
                    port,
                }),
                weight: 1,
                locality: None,
                service_account: None,
                labels: BTreeMap::new(),
                mtls: false,
                istio_tls: false,
                workload: None,
            });
        }
    }
    let mut identities: Vec<Box<str>> = service.subject_alt_names.clone();
    let mut accounts: Vec<&str> = service
        .endpoints
        .iter()
        .filter_map(|e| e.service_account.as_deref())
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    identities.extend(accounts.into_iter().map(Box::from));
    Inputs {
        policy,
        endpoints,
        identities,
    }
}

/// istiod's `tlsModeForDestinationRule`: the TLS mode the DestinationRule in `p` sets for
/// `port`, in the subset's own traffic policy for a subset, else in the top-level one (a
/// port entry's `tls`, else the policy's own).
fn dr_tls_mode_for_port(
    p: &EffectivePolicy<'_>,
    subset: Option<&str>,
    port: u16,
) -> Option<CoreTlsMode> {
    let dr = p.destination_rule?;
    let tp = match subset {
        None => dr.traffic_policy.as_ref()?,
        Some(name) => dr
            .subsets
            .iter()
            .find(|s| &*s.name == name)?
            .traffic_policy
            .as_deref()?,
    };
    tp.port_level_settings
        .iter()
        .find(|pl| pl.port == u32::from(port) && pl.tls.is_some())
        .and_then(|pl| pl.tls.as_deref())
        .or(tp.tls.as_deref())
        .map(|t| t.mode)
}

/// The top-level `connectionPool.tcp` of the DestinationRule in `p`.
fn top_tcp<'a>(p: &EffectivePolicy<'a>) -> Option<&'a mesh_core::model::TcpSettings> {
    dr_top_tcp(p.destination_rule?)
}

/// A DestinationRule's top-level `connectionPool.tcp`.
pub(crate) fn dr_top_tcp(
    dr: &mesh_core::policy::MergedDestinationRule,
) -> Option<&mesh_core::model::TcpSettings> {
    dr.traffic_policy
        .as_ref()?
        .connection_pool
        .as_deref()?
        .tcp
        .as_ref()
}

/// What a destination's connections are opened with beside its DestinationRule and
/// endpoints: MeshConfig's share, and the protocol its service port asks for.
#[derive(Clone, Debug, PartialEq)]
struct ConnSettings {
    connect_timeout: Duration,
    h2c: bool,
    alpn: mesh_tls::Alpn,
    downstream_protocol: bool,
    keepalive: Option<TcpKeepalive>,
}

impl ConnSettings {
    fn of(
        snap: &Snapshot,
        shared: &ClientShared,
        service: &Service,
        key: &DestKey,
        p: &EffectivePolicy<'_>,
    ) -> ConnSettings {
        let tcp = p.connection_pool.and_then(|c| c.tcp.as_ref());
        let http = p.connection_pool.and_then(|c| c.http.as_ref());
        let connect_timeout = tcp
            .and_then(|t| t.connect_timeout)
            .map(|d| d.as_std())
            .filter(|d| !d.is_zero())
            .or(snap.options().connect_timeout)
            .unwrap_or(shared.options.connect_timeout);
        let h2_upgrade = h2_upgrade_policy(service, key.port, http, snap.options().h2_upgrade);
        let downstream_protocol =
            uses_downstream_protocol(service, key.port, http, h2_upgrade, !shared.gateway);
        ConnSettings {
            connect_timeout,
            h2c: downstream_protocol || plaintext_h2(service, key.port, h2_upgrade),
            alpn: upstream_alpn(service, key.port, h2_upgrade, downstream_protocol),
            downstream_protocol,
            keepalive: TcpKeepalive::merged(
                snap.options().tcp_keepalive.as_ref(),
                tcp.and_then(|t| t.tcp_keepalive.as_ref()),
            ),
        }
    }
}

impl DestState {
    /// Rebuilt for `i` with `conn` only because its endpoint set changed (Envoy's endpoint
    /// update, not a cluster update): the endpoints that stay keep their connections.
    fn only_endpoints_changed(&self, i: &Inputs<'_>, conn: &ConnSettings) -> bool {
        self.same_policy(i) && self.conn == *conn && self.endpoints != i.endpoints
    }

    fn same_policy(&self, i: &Inputs<'_>) -> bool {
        self.subset_found == i.policy.subset_found
            && self.lb_settings.as_ref() == i.policy.load_balancer
            && self.pool_settings.as_ref() == i.policy.connection_pool
            && self.top_tcp.as_ref() == top_tcp(&i.policy)
            && self.outlier_settings.as_ref() == i.policy.outlier_detection
            && self.tls_settings.as_ref() == i.policy.tls
            && self.identities == i.identities
    }

    /// Nothing to rebuild for: the same policy, endpoints and connection settings (the
    /// service port's protocol among them).
    fn same_as(&self, i: &Inputs<'_>, conn: &ConnSettings) -> bool {
        self.same_policy(i) && self.endpoints == i.endpoints && self.conn == *conn
    }
}

impl DestCache {
    /// The state of `key` for this snapshot, building or refreshing it when needed.
    pub(crate) fn get(
        &self,
        snap: &Snapshot,
        shared: &ClientShared,
        service: &Service,
        key: &DestKey,
    ) -> Arc<DestState> {
        let generation = snap.generation();
        if generation > self.pruned.load(Ordering::Relaxed) {
            self.prune(snap);
        } else if self.orphans.load(Ordering::Relaxed) && orphan_tick() {
            self.prune_orphans();
        }
        let dest = match self.map.load().get(key) {
            Some(d) => Arc::clone(d),
            None => self.insert(snap, shared, service, key),
        };
        // (read first: no write to a line every core reads, once marked)
        if key.request.is_some() && !dest.used.load(Ordering::Relaxed) {
            dest.used.store(true, Ordering::Relaxed);
        }
        let cur = dest.current.load_full();
        if cur.seen.load(Ordering::Acquire) == generation {
            return cur;
        }
        // A new snapshot: check the inputs once, rebuild only when they changed.
        let _g = lock(&dest.rebuild);
        let cur = dest.current.load_full();
        if cur.seen.load(Ordering::Acquire) == generation {
            return cur;
        }
        let i = inputs(snap, shared, service, key);
        if cur.same_as(&i, &ConnSettings::of(snap, shared, service, key, &i.policy)) {
            cur.seen.store(generation, Ordering::Release);
            return cur;
        }
        let next = Arc::new(build(snap, shared, service, key, i, Some(&cur)));
        dest.current.store(Arc::clone(&next));
        next
    }

    /// Forgets every destination (their pools and TLS configs are built again on the next
    /// request): after credentials the configs were built from changed.
    pub(crate) fn clear(&self) {
        let mut g = lock(&self.insert);
        *g = ByRequest::default();
        self.orphans.store(false, Ordering::Relaxed);
        self.map.store(Arc::new(HashMap::default()));
    }

    fn insert(
        &self,
        snap: &Snapshot,
        shared: &ClientShared,
        service: &Service,
        key: &DestKey,
    ) -> Arc<Destination> {
        let mut by_request = lock(&self.insert);
        if let Some(d) = self.map.load().get(key) {
            return Arc::clone(d);
        }
        if matches!(
            service.resolution,
            Resolution::Dns | Resolution::DnsRoundRobin
        ) {
            // keep DNS answers fresh without the program having to ask (once per mesh)
            shared.mesh.ensure_dns_refresh();
        }
        let i = inputs(snap, shared, service, key);
        let dest = Arc::new(Destination {
            current: ArcSwap::from_pointee(build(snap, shared, service, key, i, None)),
            rebuild: Mutex::new(()),
            used: AtomicBool::new(true),
        });
        let mut map = HashMap::clone(&self.map.load());
        if key.request.is_some() {
            by_request.count += 1;
            if by_request.count > MAX_BY_REQUEST.max(by_request.next_pass) {
                // second chance: forget what was not used since the last pass; the next
                // pass comes after half as many new ones again, so that what is in use has
                // the time to be marked
                map.retain(|k, d| k.request.is_none() || !d.forgettable());
                by_request.count = map.keys().filter(|k| k.request.is_some()).count() + 1;
                by_request.next_pass = by_request.count + MAX_BY_REQUEST / 2;
            }
        }
        map.insert(key.clone(), Arc::clone(&dest));
        self.map.store(Arc::new(map));
        dest
    }

    /// After a config change, the destinations of services the config no longer has go
    /// (and their pools, sweepers and outlier detectors with them): looked for once per
    /// snapshot, at its first request (a newer snapshot only: a request may still carry an
    /// older one; a wildcard host, which the registry does not look up literally, stays).
    /// One with requests in flight is kept until they are done, looked at again every
    /// [`ORPHAN_RECHECK`]th request of a thread ([`DestCache::prune_orphans`]).
    fn prune(&self, snap: &Snapshot) {
        let mut g = lock(&self.insert);
        if snap.generation() <= self.pruned.load(Ordering::Relaxed) {
            return;
        }
        self.pruned.store(snap.generation(), Ordering::Relaxed);
        let gone = |k: &DestKey| {
            k.request.is_none() && !k.host.starts_with('*') && !snap.registry().has_host(&k.host)
        };
        let current = self.map.load();
        let mut removed = Vec::new();
        g.orphans.clear();
        for (k, d) in current.iter().filter(|(k, _)| gone(k)) {
            if d.in_flight() {
                g.orphans.push(k.clone());
            } else {
                removed.push(k);
            }
        }
        self.orphans.store(!g.orphans.is_empty(), Ordering::Relaxed);
        if removed.is_empty() {
            return;
        }
        let mut map = HashMap::clone(&current);
        for k in removed {
            map.remove(k);
        }
        self.map.store(Arc::new(map));
    }

    /// Lets go the destinations of services gone that [`DestCache::prune`] kept for their
    /// requests in flight, once those are done (skipped when another request holds the
    /// insert lock: the next tick looks again).
    fn prune_orphans(&self) {
        let mut g = match self.insert.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let current = self.map.load();
        let (busy, done): (Vec<DestKey>, Vec<DestKey>) = std::mem::take(&mut g.orphans)
            .into_iter()
            .partition(|k| current.get(k).is_some_and(|d| d.in_flight()));
        g.orphans = busy;
        self.orphans.store(!g.orphans.is_empty(), Ordering::Relaxed);
        if done.iter().any(|k| current.contains_key(k)) {
            let mut map = HashMap::clone(&current);
            for k in &done {
                map.remove(k);
            }
            self.map.store(Arc::new(map));
        }
    }

    /// Number of destinations known.
    pub(crate) fn len(&self) -> usize {
        self.map.load().len()
    }
}

fn lb_config(
    lb: Option<&LoadBalancerSettings>,
    od: Option<&OutlierDetection>,
    shared: &ClientShared,
    service: &Service,
) -> (LbConfig, Option<HashKey>) {
    let mut hash_key = None;
    let algorithm = match lb {
        Some(s) if s.consistent_hash.is_some() => {
            let ch = s.consistent_hash.as_ref().expect("checked");
            hash_key = if let Some(h) = &ch.http_header_name {
                // (Envoy looks pseudo-headers up as any other header)
                match h.to_ascii_lowercase().as_str() {
                    ":authority" | "host" => Some(HashKey::Authority),
                    ":path" => Some(HashKey::Path),
                    name => HeaderName::from_bytes(name.as_bytes())
                        .ok()
                        .map(HashKey::Header),
                }
            } else if let Some(c) = &ch.http_cookie {
                Some(HashKey::Cookie(CookieKey {
                    name: c.name.clone(),
                    path: c.path.clone().unwrap_or_default(),
                    ttl: c.ttl.map(|d| d.as_std()),
                    attributes: c
                        .attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.value.clone().unwrap_or_default()))
                        .collect(),
                }))
            } else if ch.use_source_ip == Some(true) {
                Some(HashKey::SourceIp)
            } else {
                ch.http_query_parameter_name
                    .clone()
                    .map(HashKey::QueryParameter)
            };
            match (ch.maglev, ch.ring_hash, ch.minimum_ring_size) {
                // istiod sets these only when not 0: 0 is Envoy's default
                (Some(m), _, _) => LbAlgorithm::Maglev {
                    table_size: m
                        .table_size
                        .filter(|t| *t != 0)
                        .unwrap_or(crate::lb::DEFAULT_MAGLEV_TABLE_SIZE),
                },
                (None, Some(r), _) => LbAlgorithm::RingHash {
                    minimum_ring_size: r
                        .minimum_ring_size
                        .filter(|n| *n != 0)
                        .unwrap_or(crate::lb::DEFAULT_MIN_RING_SIZE),
                },
                (None, None, m) => LbAlgorithm::RingHash {
                    minimum_ring_size: m
                        .filter(|n| *n != 0)
                        .unwrap_or(crate::lb::DEFAULT_MIN_RING_SIZE),
                },
            }
        }
        Some(s) => match s.simple.unwrap_or_default() {
            SimpleLb::RoundRobin => LbAlgorithm::RoundRobin,
            SimpleLb::Random => LbAlgorithm::Random,
            // PASSTHROUGH (original destination) has no meaning in-process: balance instead.
            _ => LbAlgorithm::LeastRequest,
        },
        None => LbAlgorithm::LeastRequest,
    };
    // the DestinationRule's, else the Service's `trafficDistribution` (a failover that
    // needs no outlier detection), else the MeshConfig's (istiod `GetLocalityLbSetting`)
    let options = shared.mesh.options();
    let dr_setting = lb.and_then(|s| s.locality_lb_setting.as_ref());
    let preferred = service.traffic_distribution.failover_priority();
    let forced_failover = dr_setting.is_none() && !preferred.is_empty();
    let setting = dr_setting
        .or(options
            .locality_lb_setting
            .as_ref()
            .filter(|_| !forced_failover))
        .map(|l| LocalityLbSetting {
            enabled: l.enabled,
            distribute: l
                .distribute
                .iter()
                .map(|d| Distribute {
                    from: d.from.clone(),
                    to: d.to.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                })
                .collect(),
            failover: l
                .failover
                .iter()
                .map(|f| Failover {
                    from: f.from.clone(),
                    to: f.to.clone(),
                })
                .collect(),
            failover_priority: l.failover_priority.clone(),
        })
        .or_else(|| {
            forced_failover.then(|| LocalityLbSetting {
                enabled: Some(true),
                distribute: Vec::new(),
                failover: Vec::new(),
                failover_priority: preferred.iter().map(|k| (*k).to_owned()).collect(),
            })
        });
    // `warmup` (or the older `warmupDurationSecs`), as istiod `applyRoundRobinLoadBalancer`
    // / `applyLeastRequestLoadBalancer` turn it into Envoy's slow start
    let slow_start = lb.and_then(|s| {
        let (window, aggression, min_pct) = match (&s.warmup, s.warmup_duration_secs) {
            (Some(w), _) => (w.duration?, w.aggression, w.minimum_percent),
            (None, Some(d)) => (d, None, None),
            (None, None) => return None,
        };
        Some(crate::lb::SlowStart {
            window: window.as_std(),
            aggression: aggression.unwrap_or(1.0),
            min_weight_percent: min_pct.unwrap_or(10.0),
        })
    });
    // the client's locality and labels as istiod sees a proxy's (its topology labels and
    // cluster, which `failoverPriority` compares with the endpoints')
    let w = &shared.workload;
    let cluster = w
        .cluster_id
        .as_deref()
        .unwrap_or(crate::metrics::DEFAULT_CLUSTER_ID);
    let (client_locality, client_labels) =
        mesh_core::registry::proxy_topology(&w.labels, w.locality.as_deref(), cluster);
    let config = LbConfig {
        slow_start,
        algorithm,
        panic_threshold_percent: od
            .and_then(|o| o.min_health_percent)
            .map(|p| p.clamp(0, 100) as u32)
            .unwrap_or(0),
        locality: LocalityContext {
            client: client_locality
                .as_deref()
                .map(Locality::parse)
                .unwrap_or_default(),
            client_labels,
            setting,
            outlier_detection: od.is_some() || forced_failover,
        },
    };
    (config, hash_key)
}

pub(crate) fn outlier_config(od: &OutlierDetection) -> OutlierConfig {
    let d = OutlierConfig::default();
    let c = OutlierConfig {
        consecutive_5xx: od.consecutive_5xx_errors.unwrap_or(d.consecutive_5xx),
        consecutive_gateway_errors: od.consecutive_gateway_errors.unwrap_or(0),
        interval: od.interval.map(|x| x.as_std()).unwrap_or(d.interval),
        base_ejection_time: od
            .base_ejection_time
            .map(|x| x.as_std())
            .unwrap_or(d.base_ejection_time),
        max_ejection_percent: match od.max_ejection_percent {
            Some(p) if p > 0 => p.min(100) as u32,
            _ => d.max_ejection_percent,
        },
        split_external_local_origin_errors: od.split_external_local_origin_errors,
        // istiod sets it only when > 0: 0 leaves Envoy's default (5)
        consecutive_local_origin_failures: od
            .consecutive_local_origin_failures
            .filter(|n| *n > 0)
            .unwrap_or(d.consecutive_local_origin_failures),
        ..d
    };
    // the deprecated `consecutiveErrors` is not read by istiod any more (istio/istio#24087
    // "Stop using OutlierDetection.ConsecutiveErrors"): Envoy's defaults apply
    let _ = od.consecutive_errors;
    c
}

fn tls_settings(t: &CoreTls) -> ClientTlsSettings {
    ClientTlsSettings {
        mode: match t.mode {
            CoreTlsMode::Disable => ClientTlsMode::Disable,
            CoreTlsMode::Simple => ClientTlsMode::Simple,
            CoreTlsMode::Mutual => ClientTlsMode::Mutual,
            CoreTlsMode::IstioMutual => ClientTlsMode::IstioMutual,
        },
        client_certificate: t.client_certificate.as_ref().map(Into::into),
        private_key: t.private_key.as_ref().map(Into::into),
        ca_certificates: t.ca_certificates.as_ref().map(Into::into),
        ca_crl: t.ca_crl.as_ref().map(Into::into),
        credential_name: t.credential_name.clone(),
        subject_alt_names: t.subject_alt_names.clone(),
        sni: t.sni.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    }
}

/// The `h2UpgradePolicy` in force for a destination port, as istiod's `shouldH2Upgrade`:
/// none with the DestinationRule's `useClientProtocol`; the rule's `UPGRADE` or
/// `DO_NOT_UPGRADE` (its `UPGRADE` on any port, a sniffed one too: the user says it is
/// HTTP); else (unset or `DEFAULT`) MeshConfig's `UPGRADE` for a port declared `HTTP` (a
/// sniffed port keeps the downstream's protocol; `HTTP2` and gRPC ports speak HTTP/2
/// anyway); else none.
fn h2_upgrade_policy(
    service: &Service,
    port: u16,
    http: Option<&mesh_core::model::HttpSettings>,
    mesh_upgrade: bool,
) -> Option<mesh_core::model::H2UpgradePolicy> {
    use mesh_core::model::H2UpgradePolicy;
    if http.and_then(|h| h.use_client_protocol) == Some(true) {
        return None;
    }
    match http.and_then(|h| h.h2_upgrade_policy) {
        Some(p @ (H2UpgradePolicy::Upgrade | H2UpgradePolicy::DoNotUpgrade)) => Some(p),
        _ if mesh_upgrade && service.port(port).is_some_and(|p| &*p.protocol == "HTTP") => {
            Some(H2UpgradePolicy::Upgrade)
        }
        _ => None,
    }
}

/// Whether requests to this destination port go upstream in their own HTTP version, as
/// istiod sets `use_downstream_protocol`: a DestinationRule's `useClientProtocol`
/// (`applyConnectionPool`), or a port whose protocol is not declared (sniffed: istiod's
/// `setUpstreamProtocol` for `IsUnsupported` ports), unless `h2UpgradePolicy: UPGRADE`
/// makes it HTTP/2. A gRPC application's HTTP/2 request then stays HTTP/2 (h2c in
/// plaintext), and an HTTP/1.1 request HTTP/1.1, on the mesh's mTLS too.
pub(crate) fn uses_downstream_protocol(
    service: &Service,
    port: u16,
    http: Option<&mesh_core::model::HttpSettings>,
    h2_upgrade: Option<mesh_core::model::H2UpgradePolicy>,
    sidecar: bool,
) -> bool {
    if http.and_then(|h| h.use_client_protocol) == Some(true) {
        return true;
    }
    // (a sniffed port's only at sidecars: "use_downstream_protocol should be disabled for
    // gateway")
    let sniffed = sidecar && service.port(port).is_some_and(|p| p.protocol.is_empty());
    sniffed && h2_upgrade != Some(mesh_core::model::H2UpgradePolicy::Upgrade)
}

/// The upstream protocol, offered by ALPN, as Istio picks it for an outbound cluster: a
/// port declared `HTTP2`/`GRPC`/`GRPC-WEB`, or `h2UpgradePolicy: UPGRADE`, speaks HTTP/2;
/// a port declared `HTTP` speaks HTTP/1.1 (unless upgraded); an undeclared port (protocol
/// sniffing) or `useClientProtocol` offers both, and each request asks for its own version
/// ([`uses_downstream_protocol`]). Multiplexing every HTTP/1.1 request of a busy client
/// onto one h2 connection would also serialize them on one connection task.
fn upstream_alpn(
    service: &Service,
    port: u16,
    h2_upgrade: Option<mesh_core::model::H2UpgradePolicy>,
    downstream: bool,
) -> mesh_tls::Alpn {
    if downstream {
        return mesh_tls::Alpn::Http2AndHttp1;
    }
    use mesh_core::model::H2UpgradePolicy;
    let protocol = service
        .ports
        .iter()
        .find(|p| p.number == port)
        .map(|p| &*p.protocol)
        .unwrap_or("");
    match (protocol, h2_upgrade) {
        ("HTTP2" | "GRPC" | "GRPC-WEB", _) => mesh_tls::Alpn::Http2AndHttp1,
        (_, Some(H2UpgradePolicy::Upgrade)) => mesh_tls::Alpn::Http2AndHttp1,
        ("HTTP" | "HTTP_PROXY", _) => mesh_tls::Alpn::Http1,
        _ => mesh_tls::Alpn::Http2AndHttp1,
    }
}

/// Plaintext connections speak HTTP/2 with prior knowledge (h2c): the port is declared
/// `HTTP2`/`GRPC`/`GRPC-WEB`, or declared `HTTP` or sniffed and upgraded (see
/// [`h2_upgrade_policy`]: a sniffed port only by a DestinationRule's `UPGRADE`). Otherwise
/// a mesh client's attempts go out as HTTP/1.1.
fn plaintext_h2(
    service: &Service,
    port: u16,
    h2_upgrade: Option<mesh_core::model::H2UpgradePolicy>,
) -> bool {
    use mesh_core::model::H2UpgradePolicy;
    let Some(declared) = service.port(port) else {
        return false;
    };
    match &*declared.protocol {
        "HTTP2" | "GRPC" | "GRPC-WEB" => true,
        "HTTP" | "HTTP_PROXY" | "" => h2_upgrade == Some(H2UpgradePolicy::Upgrade),
        _ => false,
    }
}

fn tls_policy(
    snap: &Snapshot,
    shared: &ClientShared,
    service: &Service,
    key: &DestKey,
    tls: Option<&CoreTls>,
    endpoints: &[EndpointSpec],
    alpn: mesh_tls::Alpn,
) -> TlsPolicy {
    // An `https` request with no DestinationRule TLS, or one whose mode is DISABLE (the
    // sidecar adds no TLS of its own): the application's own TLS, as the sidecar would pass
    // it through (SIMPLE to the request's host, verified against the platform's roots). An
    // https request is never sent in plaintext. SIMPLE, MUTUAL or ISTIO_MUTUAL settings take
    // precedence (the mesh originates that TLS in the application's place).
    let app_tls = key.https && tls.is_none_or(|t| t.mode == CoreTlsMode::Disable);
    let auto = tls.is_none() && !app_tls;
    if auto && !endpoints.iter().any(|e| e.mtls) {
        return TlsPolicy::Plaintext;
    }
    let mut settings = match tls {
        Some(_) if app_tls => ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ..Default::default()
        },
        Some(t) => tls_settings(t),
        None if app_tls => ClientTlsSettings {
            mode: ClientTlsMode::Simple,
            ..Default::default()
        },
        None => ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        },
    };
    // The service's identities: the service accounts of all its endpoints.
    let td = &snap.options().trust_domain;
    let mut accounts: Vec<Identity> = Vec::new();
    for e in service.endpoints.iter() {
        if let Some(sa) = e.service_account.as_deref()
            && let Ok(id) = Identity::new(td, &service.namespace, sa)
            && !accounts.contains(&id)
        {
            accounts.push(id);
        }
    }
    // istiod's service accounts of a ServiceEntry: its `subjectAltNames` and its endpoints'
    // service accounts together
    let service_sans = || -> Vec<String> {
        let mut v: Vec<String> = service
            .subject_alt_names
            .iter()
            .map(|s| s.to_string())
            .collect();
        for id in &accounts {
            if !v.iter().any(|s| s == id.as_uri()) {
                v.push(id.as_uri().to_owned());
            }
        }
        v
    };
    if settings.subject_alt_names.is_empty() {
        match settings.mode {
            // DestinationRule SANs, else the service's (the endpoints' identities alone
            // when the ServiceEntry names none)
            ClientTlsMode::IstioMutual if !service.subject_alt_names.is_empty() => {
                settings.subject_alt_names = service_sans();
            }
            // `constructUpstreamTLS`: a ServiceEntry's SANs when the DestinationRule names
            // none; with no `sni`, Envoy's auto SAN validation checks the request's host
            // instead (as below)
            ClientTlsMode::Simple | ClientTlsMode::Mutual
                if !app_tls
                    && settings.sni.is_some()
                    && service.origin == mesh_core::registry::ServiceOrigin::ServiceEntry =>
            {
                settings.subject_alt_names = service_sans();
            }
            _ => {}
        }
    }
    // SIMPLE/MUTUAL without `sni`: SNI (and, without `subjectAltNames`, the name to verify)
    // from the request's host when the destination is keyed by it (Istio's auto SNI and
    // auto SAN validation: the Host/authority); ISTIO_MUTUAL names the service.
    let host = match (&key.request, settings.mode) {
        (Some((h, _)), ClientTlsMode::Simple | ClientTlsMode::Mutual) => h,
        _ => &key.host,
    };
    let dest = mesh_tls::Destination {
        host,
        port: key.port,
        subset: key.subset.as_deref(),
        service_accounts: &accounts,
    };
    let ctx = ClientContext {
        workload: shared.credentials.as_deref(),
        credentials: shared.credential_lookup.as_deref(),
        alpn,
        opaque: false,
    };
    // Opaque TCP under SIMPLE or MUTUAL: no auto SNI nor auto SAN validation (HTTP
    // options in Envoy), so a config of its own: no SNI without `sni`, and the
    // ServiceEntry's SANs (`constructUpstreamTLS`) or else the chain alone
    // (built where opaque connections are expected: not for a port declared HTTP, nor
    // for a destination keyed by a request's host, built on the request path)
    let http_port = service.port(key.port).is_some_and(|p| {
        matches!(
            &*p.protocol,
            "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY"
        )
    });
    let opaque = match settings.mode {
        ClientTlsMode::Simple | ClientTlsMode::Mutual
            if !app_tls && !http_port && key.request.is_none() =>
        {
            let mut tcp = settings.clone();
            if tcp.subject_alt_names.is_empty()
                && service.origin == mesh_core::registry::ServiceOrigin::ServiceEntry
            {
                tcp.subject_alt_names = service_sans();
            }
            let ctx = ClientContext {
                alpn: mesh_tls::Alpn::None,
                opaque: true,
                ..ctx
            };
            let dest = mesh_tls::Destination {
                host: &key.host,
                ..dest
            };
            match mesh_tls::client_config(&tcp, &dest, &ctx) {
                Ok(Some(c)) => OnceLock::from(Arc::clone(c.config())),
                // the same settings as below: their error is reported there
                _ => OnceLock::new(),
            }
        }
        _ => OnceLock::new(),
    };
    match mesh_tls::client_config(&settings, &dest, &ctx) {
        Ok(None) => TlsPolicy::Plaintext,
        Ok(Some(cfg)) => TlsPolicy::Tls {
            config: Arc::new(cfg),
            http1: Arc::default(),
            opaque: Arc::new(opaque),
            plaintext: Arc::new(if auto {
                endpoints
                    .iter()
                    .filter(|e| !e.mtls)
                    .map(|e| e.addr)
                    .collect()
            } else {
                HashSet::new()
            }),
        },
        Err(e) => {
            tracing::warn!(host = %key.host, error = %e, "outbound TLS settings refused; requests fail closed");
            TlsPolicy::Broken(e.to_string().into())
        }
    }
}

fn build(
    snap: &Snapshot,
    shared: &ClientShared,
    service: &Service,
    key: &DestKey,
    i: Inputs<'_>,
    previous: Option<&DestState>,
) -> DestState {
    let p = &i.policy;
    let (config, hash_key) = lb_config(p.load_balancer, p.outlier_detection, shared, service);
    let eps: Vec<crate::lb::Endpoint> = i
        .endpoints
        .iter()
        .map(|e| {
            crate::lb::Endpoint::new(e.addr)
                .with_weight(e.weight)
                .with_locality(
                    e.locality
                        .as_deref()
                        .map(Locality::parse)
                        .unwrap_or_default(),
                )
                .with_labels(e.labels.clone())
        })
        .collect();
    // an endpoint update keeps the hosts' state (Envoy's EDS update); a policy change is a
    // new cluster for Envoy, whose hosts start with no ejection (else an ejection would
    // outlive the `outlierDetection` that made it, with nothing left to end it)
    let same_cluster = previous.filter(|prev| prev.same_policy(&i));
    let lb = Arc::new(match (same_cluster, previous) {
        (Some(prev), _) => LoadBalancer::with_state_from(eps, config, &prev.lb),
        (None, Some(prev)) => LoadBalancer::with_joined_from(eps, config, &prev.lb),
        (None, None) => LoadBalancer::new(eps, config),
    });
    let outlier = p.outlier_detection.map(|od| {
        let cfg = outlier_config(od);
        let det = Arc::new(match same_cluster.and_then(|x| x.outlier.as_ref()) {
            Some(prev) => OutlierDetector::with_state_from(cfg, Arc::clone(&lb), prev),
            None => {
                OutlierDetector::new(cfg, Arc::clone(&lb), tokio::time::Instant::now().into_std())
            }
        });
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(Arc::clone(&det).run());
        }
        det
    });
    let cp = p.connection_pool;
    let tcp = cp.and_then(|c| c.tcp.as_ref());
    let http = cp.and_then(|c| c.http.as_ref());
    let mut limits = PoolLimits::from_istio(
        tcp.and_then(|t| t.max_connections).map(i64::from),
        http.and_then(|h| h.http1_max_pending_requests)
            .map(i64::from),
        http.and_then(|h| h.http2_max_requests).map(i64::from),
        http.and_then(|h| h.max_retries).map(i64::from),
        http.and_then(|h| h.max_requests_per_connection)
            .map(i64::from),
    );
    // Istio sets the cluster's `http2_protocol_options.max_concurrent_streams` from a
    // positive `maxConcurrentStreams` only (Envoy's default: 2^31 - 1)
    if let Some(n) = http
        .and_then(|h| h.max_concurrent_streams)
        .filter(|n| *n > 0)
    {
        limits.max_concurrent_streams = n as u32;
    }
    let conn = ConnSettings::of(snap, shared, service, key, p);
    let (connect_timeout, alpn, downstream_protocol) =
        (conn.connect_timeout, conn.alpn, conn.downstream_protocol);
    // Only the endpoint set changed (a workload registered or gone): as Envoy keeps its
    // hosts' connection pools across an endpoint update, the endpoints that stay keep
    // theirs, and the destination its circuit breaker's counts
    let carry = previous.filter(|prev| prev.only_endpoints_changed(&i, &conn));
    let breaker = match carry {
        Some(prev) => prev.breaker.clone(),
        None => CircuitBreaker::new(limits),
    };
    // for each endpoint, the same one in the previous state (each taken once; looked up by
    // address, so a service of thousands of endpoints is matched in one pass)
    let kept: Vec<Option<usize>> = match carry {
        None => Vec::new(),
        Some(prev) => {
            let mut by_addr: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
            for (k, e) in prev.endpoints.iter().enumerate().rev() {
                by_addr.entry(e.addr).or_default().push(k);
            }
            i.endpoints
                .iter()
                .map(|e| {
                    let same = by_addr.get_mut(&e.addr)?;
                    let at = same
                        .iter()
                        .rposition(|&k| prev.endpoints[k].same_connections(e))?;
                    Some(same.remove(at))
                })
                .collect()
        }
    };
    let tls = tls_policy(snap, shared, service, key, p.tls, &i.endpoints, alpn);
    // Istio's `applyConnectionPool` sets the cluster's HTTP idle timeout
    // (common_http_protocol_options.idle_timeout) from `http.idleTimeout`, and from
    // `tcp.idleTimeout` when that is unset (`if idleTimeout == nil { idleTimeout =
    // settings.Tcp.IdleTimeout }`); Envoy's default: 1 h
    let idle = http
        .and_then(|h| h.idle_timeout)
        .or_else(|| tcp.and_then(|t| t.idle_timeout))
        .map(|d| d.as_std())
        .unwrap_or(Duration::from_secs(3600));
    // (with the downstream's protocol, an HTTP/1.1 request asks for HTTP/1.1 itself)
    let names: HashMap<SocketAddr, DialName> = i
        .endpoints
        .iter()
        .filter_map(|e| Some((e.addr, e.name.clone()?)))
        .collect();
    let td = &snap.options().trust_domain;
    // mutual TLS with the mesh certificates: auto mTLS to this endpoint, or ISTIO_MUTUAL
    let istio_mutual = p.tls.is_some_and(|t| t.mode == CoreTlsMode::IstioMutual);
    let mutual_tls: Vec<bool> = i.endpoints.iter().map(|e| e.mtls || istio_mutual).collect();
    let istio_tls: Vec<bool> = i.endpoints.iter().map(|e| e.istio_tls).collect();
    let peers: Vec<Arc<WorkloadInfo>> = i
        .endpoints
        .iter()
        .zip(&mutual_tls)
        .map(|(e, &mutual)| {
            // Istio's client side reports the URI SAN of the upstream certificate: the mesh
            // transport takes it from each connection (upstream.rs `ConnPeer`); for a
            // user's transport, which cannot tell, the endpoint's service account that the
            // mesh TLS expects; SIMPLE TLS (no mesh certificate) and plaintext: `unknown`
            let principal = e
                .service_account
                .as_deref()
                .filter(|_| mutual)
                .map(|sa| format!("spiffe://{td}/ns/{}/sa/{sa}", service.namespace))
                .unwrap_or_default();
            Arc::new(WorkloadInfo::from_labels(
                e.workload.as_deref().unwrap_or(""),
                &service.namespace,
                &principal,
                &e.labels,
            ))
        })
        .collect();
    let peers_unconnected: Vec<Arc<WorkloadInfo>> = peers
        .iter()
        .map(|p: &Arc<WorkloadInfo>| {
            if p.principal.is_empty() {
                Arc::clone(p)
            } else {
                Arc::new(WorkloadInfo {
                    principal: String::new(),
                    ..(**p).clone()
                })
            }
        })
        .collect();
    let upstream = Upstream::new(
        MeshConnector::new(tls, connect_timeout, breaker.clone())
            .with_h2c(conn.h2c)
            .with_names(names)
            .with_keepalive(conn.keepalive.as_ref()),
        breaker.clone(),
        // Istio's `applyConnectionPool`: `tcp.maxConnectionDuration` is the HTTP
        // connections' `max_connection_duration` too
        (
            idle,
            tcp.and_then(|t| t.max_connection_duration)
                .map(|d| d.as_std()),
        ),
        i.endpoints
            .iter()
            .map(|e| e.addr)
            .zip(peers_unconnected.iter().cloned()),
        carry.map(|prev| (&prev.upstream, kept.as_slice())),
    )
    // `http.http2KeepAlive`: istiod's `connection_keepalive` of the cluster's HTTP/2
    // options (PINGs every `interval`; no answer within `timeout` closes the connection;
    // a zero interval sends none)
    .with_h2_keepalive(
        http.and_then(|h| h.http2_keep_alive.as_ref())
            .and_then(|k| Some((k.interval?.as_std(), k.timeout?.as_std())))
            .filter(|(interval, _)| !interval.is_zero()),
    );
    let authorities = i
        .endpoints
        .iter()
        .map(|e| {
            // an endpoint dialed by name: its name, for a transport of the user's own
            e.name
                .as_ref()
                .and_then(|n| {
                    let a = if n.host.contains(':') {
                        format!("[{}]:{}", n.host, n.port)
                    } else {
                        format!("{}:{}", n.host, n.port)
                    };
                    http::uri::Authority::try_from(a).ok()
                })
                .unwrap_or_else(|| {
                    http::uri::Authority::try_from(e.addr.to_string())
                        .expect("a socket address is a URI authority")
                })
        })
        .collect();
    DestState {
        downstream_protocol,
        authorities,
        seen: AtomicU64::new(snap.generation()),
        subset_found: p.subset_found,
        lb_settings: p.load_balancer.cloned(),
        pool_settings: p.connection_pool.cloned(),
        top_tcp: top_tcp(p).cloned(),
        outlier_settings: p.outlier_detection.cloned(),
        tls_settings: p.tls.cloned(),
        conn,
        endpoints: i.endpoints,
        identities: i.identities,
        lb,
        outlier,
        breaker,
        hash_key,
        upstream,
        peers,
        peers_unconnected,
        mutual_tls,
        istio_tls,
        // istio_stats names the passthrough cluster; with no cluster metadata the
        // destination service is `unknown` (an HTTP request's Host header takes its place:
        // the outbound layer sets it per request)
        service: Arc::new(if is_passthrough_cluster(service) {
            ServiceInfo {
                host: "unknown".to_owned(),
                name: PASSTHROUGH_CLUSTER.to_owned(),
                namespace: String::new(),
            }
        } else {
            service_info(service)
        }),
        cluster_name: if is_passthrough_cluster(service) {
            Arc::from(PASSTHROUGH_CLUSTER)
        } else {
            format!(
                "outbound|{}|{}|{}",
                key.port,
                key.subset.as_deref().unwrap_or(""),
                key.host
            )
            .into()
        },
    }
}

/// The metrics' destination service: istiod's cluster metadata names the service by its
/// `Attributes.Name`, the Kubernetes service's name, or for a ServiceEntry its whole host
/// (`api.example.com`), as istio_stats reads it.
pub(crate) fn service_info(service: &Service) -> ServiceInfo {
    let name = match service.origin {
        ServiceOrigin::Kubernetes => service.hostname.split('.').next().unwrap_or_default(),
        ServiceOrigin::ServiceEntry => &service.hostname,
    };
    ServiceInfo {
        host: service.hostname.to_string(),
        name: name.to_owned(),
        namespace: service.namespace.to_string(),
    }
}

/// An endpoint's workload name for the metrics: the workload a Kubernetes endpoint belongs
/// to (origin `workload/<ns>/<name>`, the name the workload's own server reports), else the
/// `service.istio.io/workload-name` label, else the WorkloadEntry's name; unknown for
/// other endpoints (a ServiceEntry's addresses).
fn workload_name(e: &mesh_core::registry::Endpoint) -> Option<Box<str>> {
    let origin = &*e.origin;
    if let Some(rest) = origin.strip_prefix("workload/") {
        return rest.rsplit('/').next().map(Into::into);
    }
    if let Some(name) = e.labels.get("service.istio.io/workload-name") {
        return Some(name.as_str().into());
    }
    origin
        .strip_prefix("WorkloadEntry/")
        .and_then(|rest| rest.rsplit('/').next())
        .map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn od(v: serde_json::Value) -> OutlierDetection {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn outlier_config_table() {
        // (outlierDetection, consecutive5xx, gateway, interval, base, maxPercent)
        let cases = [
            (serde_json::json!({}), 5, 0, 10_000, 30_000, 10),
            (
                serde_json::json!({"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "3m", "maxEjectionPercent": 100}),
                1,
                0,
                1_000,
                180_000,
                100,
            ),
            (
                serde_json::json!({"consecutiveGatewayErrors": 3}),
                5,
                3,
                10_000,
                30_000,
                10,
            ),
            // the deprecated consecutiveErrors is ignored, as istiod ignores it
            (
                serde_json::json!({"consecutiveErrors": 7}),
                5,
                0,
                10_000,
                30_000,
                10,
            ),
            (
                serde_json::json!({"consecutive5xxErrors": 0}),
                0,
                0,
                10_000,
                30_000,
                10,
            ),
        ];
        for (v, c5, gw, interval, base, pct) in cases {
            let c = outlier_config(&od(v.clone()));
            assert_eq!(c.consecutive_5xx, c5, "{v}");
            assert_eq!(c.consecutive_gateway_errors, gw, "{v}");
            assert_eq!(c.interval, Duration::from_millis(interval), "{v}");
            assert_eq!(c.base_ejection_time, Duration::from_millis(base), "{v}");
            assert_eq!(c.max_ejection_percent, pct, "{v}");
        }
    }

    fn snapshot() -> Arc<Snapshot> {
        mesh_core::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports:
  - {number: 1, name: grpc, protocol: GRPC}
  - {number: 2, name: h2, protocol: HTTP2}
  - {number: 3, name: web, protocol: GRPC-WEB}
  - {number: 4, name: http, protocol: HTTP}
  - {number: 5, name: other}
  - {number: 6, name: tls, protocol: TLS}
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ['*.example.org']
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
",
        )
        .unwrap()
        .snapshot()
    }

    #[test]
    fn h2c_for_declared_http2_ports_only() {
        use mesh_core::model::H2UpgradePolicy::{DoNotUpgrade, Upgrade};
        let snap = snapshot();
        let svc = snap
            .registry()
            .service("api.example.com", "default")
            .unwrap();
        // (port, h2UpgradePolicy, h2c)
        let cases = [
            (1, None, true),
            (2, None, true),
            (3, None, true),
            (2, Some(DoNotUpgrade), true),
            (4, None, false),
            (4, Some(Upgrade), true),
            (4, Some(DoNotUpgrade), false),
            (5, Some(Upgrade), true), // sniffed: the rule says it is HTTP (istiod)
            (6, Some(Upgrade), false),
            (99, None, false),
        ];
        for (port, policy, want) in cases {
            assert_eq!(plaintext_h2(svc, port, policy), want, "{port} {policy:?}");
        }
    }

    #[test]
    fn mesh_wide_h2_upgrade_for_declared_http_ports_only() {
        use mesh_core::model::H2UpgradePolicy::{Default, DoNotUpgrade, Upgrade};
        let snap = snapshot();
        let svc = snap
            .registry()
            .service("api.example.com", "default")
            .unwrap();
        let protocol = |port: u16| svc.port(port).map(|p| p.protocol.to_string());
        assert_eq!(protocol(4).as_deref(), Some("HTTP"));
        // (port, DestinationRule's policy, MeshConfig UPGRADE, policy in force)
        let cases = [
            (4, None, false, None),
            (4, None, true, Some(Upgrade)),
            (4, Some(Default), true, Some(Upgrade)),
            (4, Some(DoNotUpgrade), true, Some(DoNotUpgrade)),
            (4, Some(Upgrade), false, Some(Upgrade)),
            (5, None, true, None), // sniffed
            (6, None, true, None),
            (99, None, true, None),
        ];
        let rule = |p| mesh_core::model::HttpSettings {
            h2_upgrade_policy: p,
            ..std::default::Default::default()
        };
        for (port, policy, mesh, want) in cases {
            let got = h2_upgrade_policy(svc, port, Some(&rule(policy)), mesh);
            assert_eq!(got, want, "{port} {policy:?} {mesh}");
        }
        // useClientProtocol: never upgraded, by the mesh or by the rule
        let client_protocol = mesh_core::model::HttpSettings {
            use_client_protocol: Some(true),
            ..std::default::Default::default()
        };
        assert_eq!(
            h2_upgrade_policy(svc, 4, Some(&client_protocol), true),
            None
        );
        // in force, it makes the port's plaintext connections h2c
        assert!(plaintext_h2(svc, 4, h2_upgrade_policy(svc, 4, None, true)));
        let keep = rule(Some(DoNotUpgrade));
        assert!(!plaintext_h2(
            svc,
            4,
            h2_upgrade_policy(svc, 4, Some(&keep), true)
        ));
    }

    #[test]
    fn keys_by_request_for_passthrough_and_https() {
        let snap = snapshot();
        let reg = snap.registry();
        let api = reg.service("api.example.com", "default").unwrap();
        let wild = reg.service("en.example.org", "default").unwrap();
        let authorities: Vec<http::uri::Authority> =
            ["api.example.com", "API.example.com", "EN.example.org:8080"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        let target = |authority, https| RequestTarget {
            authority,
            port: 8080,
            https,
        };
        let k = DestKey::for_request(api, None, 4, target(&authorities[0], false));
        assert_eq!(k, DestKey::new("api.example.com".into(), None, 4));
        let k = DestKey::for_request(api, None, 4, target(&authorities[1], true));
        assert_eq!(k.request, Some(("api.example.com".into(), 8080)));
        assert!(k.https);
        let k = DestKey::for_request(wild, None, 80, target(&authorities[2], false));
        assert_eq!(&*k.host, "*.example.org");
        assert_eq!(k.request, Some(("en.example.org".into(), 8080)));
        assert!(!k.https);
    }

    /// The test workload's client of `mesh`.
    fn client_of(mesh: &mesh_core::mesh::Mesh) -> crate::outbound::MeshClient {
        crate::outbound::MeshClient::builder(
            mesh.clone(),
            crate::outbound::ClientWorkload::new("app", "default", "app"),
        )
        .build()
    }

    /// Destinations keyed by the request's own host stay bounded also when a
    /// DestinationRule gives them circuit-breaker limits and outlier detection: one not
    /// used since the last pass, with nothing in flight, is forgotten whatever its policy
    /// (Envoy's original destination cluster lets its unused hosts go the same way).
    /// Outside hosts choose their names (at an egress gateway, the client's `Host`).
    #[tokio::test]
    async fn request_keyed_destinations_with_a_policy_stay_bounded() {
        let mesh = mesh_core::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ['*.example.org']
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild, namespace: default}
spec:
  host: '*.example.org'
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
    outlierDetection: {consecutive5xxErrors: 3}
",
        )
        .unwrap();
        let client = client_of(&mesh);
        let shared = &client.shared;
        let snap = mesh.snapshot();
        let wild = snap
            .registry()
            .service("h0.example.org", "default")
            .unwrap();
        let mut most = 0;
        for i in 0..2000 {
            let authority: http::uri::Authority = format!("h{i}.example.org").parse().unwrap();
            let target = RequestTarget {
                authority: &authority,
                port: 80,
                https: false,
            };
            let key = DestKey::for_request(wild, None, 80, target);
            let dest = shared.cache.get(&snap, shared, wild, &key);
            assert!(dest.outlier.is_some(), "the DestinationRule applies");
            most = most.max(shared.cache.len());
        }
        assert!(
            most <= MAX_BY_REQUEST + MAX_BY_REQUEST / 2 + 1,
            "{most} kept"
        );
    }

    /// The destinations of services a new config no longer has are forgotten (at the next
    /// destination made), with their pools and tasks; the others stay.
    #[tokio::test]
    async fn destinations_of_services_gone_are_forgotten() {
        let entry = |name: &str| {
            format!(
                "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.example.com]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 10.0.0.1}}]
---
"
            )
        };
        // a wildcard host stays too (the registry does not look it up literally)
        let wild = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ['*.wild.org']
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.2}]
---
";
        let mesh = mesh_core::mesh::Mesh::from_yaml(&format!("{}{}{wild}", entry("a"), entry("b")))
            .unwrap();
        let client = client_of(&mesh);
        let shared = &client.shared;
        let get = |host: &str| {
            let snap = mesh.snapshot();
            let svc = snap.registry().service(host, "default").unwrap().clone();
            let key = DestKey::new(Arc::clone(&svc.hostname), None, 80);
            shared.cache.get(&snap, shared, &svc, &key);
        };
        get("a.example.com");
        get("b.example.com");
        get("x.wild.org");
        assert_eq!(shared.cache.len(), 3);
        mesh.reload_loaded(mesh_core::load::load_str(
            &format!("{}{}{wild}", entry("a"), entry("c")),
            "entries.yaml",
        ))
        .unwrap();
        // the first request after the reload, to a destination the client has
        get("a.example.com");
        let kept: Vec<String> = shared
            .cache
            .map
            .load()
            .keys()
            .map(|k| k.host.to_string())
            .collect();
        assert_eq!(shared.cache.len(), 2, "{kept:?}");
        assert!(!kept.contains(&"b.example.com".to_string()), "{kept:?}");
        assert!(kept.contains(&"*.wild.org".to_string()), "{kept:?}");
    }

    #[test]
    fn tls_settings_convert() {
        let t: CoreTls = serde_json::from_value(serde_json::json!({
            "mode": "SIMPLE", "sni": "a.example", "subjectAltNames": ["x"], "caCertificates": "/ca.pem"
        }))
        .unwrap();
        let s = tls_settings(&t);
        assert_eq!(s.mode, ClientTlsMode::Simple);
        assert_eq!(s.sni.as_deref(), Some("a.example"));
        assert_eq!(s.subject_alt_names, vec!["x".to_owned()]);
        assert_eq!(
            s.ca_certificates.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert!(!s.insecure_skip_verify);
    }
}
