//! Per-destination state: the endpoint set with its load balancer, outlier detector,
//! circuit breakers, TLS policy and pooled client, for one `(host, subset, port)`.
//!
//! A [`Destination`] is created lazily on first use and kept across snapshots: when a new
//! snapshot arrives, the first request to the destination compares its endpoints and merged
//! policy with what the state was built from (a comparison, no allocation), and only if they
//! differ builds a new state, carrying endpoint ejection and outlier counters over
//! ([`LoadBalancer::with_state_from`]). Connections stay pooled while the policy is unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use mesh_core::model::{
    ClientTlsMode as CoreTlsMode, ClientTlsSettings as CoreTls, ConnectionPoolSettings,
    LoadBalancerSettings, MtlsMode, OutlierDetection, ServiceLocation, SimpleLb,
};
use mesh_core::policy::EffectivePolicy;
use mesh_core::registry::Service;
use mesh_core::snapshot::Snapshot;
use mesh_tls::{ClientContext, ClientTlsMode, ClientTlsSettings, Identity};
use rustc_hash::FxBuildHasher;

use super::connector::{MeshConnector, TlsPolicy};
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
}

/// One endpoint as the registry gives it (what a state was built from).
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndpointSpec {
    addr: SocketAddr,
    weight: u32,
    locality: Option<Box<str>>,
    service_account: Option<Box<str>>,
    labels: BTreeMap<String, String>,
    mtls: bool,
}

/// The built state of a destination for one endpoint set and policy.
pub(crate) struct DestState {
    /// Last snapshot generation this state was checked against.
    seen: AtomicU64,
    subset_found: bool,
    lb_settings: Option<LoadBalancerSettings>,
    pool_settings: Option<ConnectionPoolSettings>,
    outlier_settings: Option<OutlierDetection>,
    tls_settings: Option<CoreTls>,
    endpoints: Vec<EndpointSpec>,

    pub(crate) lb: Arc<LoadBalancer>,
    pub(crate) outlier: Option<Arc<OutlierDetector>>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) hash_key: Option<HashKey>,
    pub(crate) upstream: Upstream,
    /// The metrics' view of each endpoint (same order as the balancer's endpoints).
    pub(crate) peers: Vec<Arc<WorkloadInfo>>,
    /// Each endpoint's address as a URI authority (same order), built once.
    pub(crate) authorities: Vec<http::uri::Authority>,
    pub(crate) service: Arc<ServiceInfo>,
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
    /// False when the route names a subset no DestinationRule defines (503 NC).
    pub(crate) fn subset_found(&self) -> bool {
        self.subset_found
    }
}

/// A destination: its current state, replaced when endpoints or policy change.
#[derive(Debug)]
pub(crate) struct Destination {
    current: ArcSwap<DestState>,
    rebuild: Mutex<()>,
}

/// The destinations a client has used, found by hash lookup without locks.
#[derive(Debug, Default)]
pub(crate) struct DestCache {
    map: ArcSwap<HashMap<DestKey, Arc<Destination>, FxBuildHasher>>,
    insert: Mutex<()>,
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
}

fn inputs<'a>(
    snap: &'a Snapshot,
    shared: &ClientShared,
    service: &Service,
    key: &DestKey,
) -> Inputs<'a> {
    let ns = &shared.workload.namespace;
    let policy = snap.traffic_policy_for(
        &key.host,
        key.subset.as_deref(),
        key.port,
        ns,
        Some(&shared.workload.labels),
    );
    // an undefined subset selects nothing (the request gets 503 NC anyway)
    let undefined_subset = key.subset.is_some() && !policy.subset_found;
    let subset_labels = policy.subset_labels();
    let auto_mtls = policy.tls.is_none()
        && shared.credentials.is_some()
        && service.location == ServiceLocation::MeshInternal;
    let endpoints = service
        .targets(key.port, subset_labels)
        .filter(|_| !undefined_subset)
        .filter_map(|t| {
            let addr = t.addr?;
            let e = t.endpoint;
            let mtls = auto_mtls
                && e.service_account.is_some()
                && snap.peer_authentication(&service.namespace, &e.labels, t.port)
                    != MtlsMode::Disable;
            Some(EndpointSpec {
                addr,
                weight: e.weight,
                locality: e.locality.clone(),
                service_account: e.service_account.clone(),
                labels: e.labels.clone(),
                mtls,
            })
        })
        .collect();
    Inputs { policy, endpoints }
}

impl DestState {
    fn same_as(&self, i: &Inputs<'_>) -> bool {
        self.subset_found == i.policy.subset_found
            && self.lb_settings.as_ref() == i.policy.load_balancer
            && self.pool_settings.as_ref() == i.policy.connection_pool
            && self.outlier_settings.as_ref() == i.policy.outlier_detection
            && self.tls_settings.as_ref() == i.policy.tls
            && self.endpoints == i.endpoints
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
        let dest = match self.map.load().get(key) {
            Some(d) => Arc::clone(d),
            None => self.insert(snap, shared, service, key),
        };
        let generation = snap.generation();
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
        if cur.same_as(&i) {
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
        let _g = lock(&self.insert);
        self.map.store(Arc::new(HashMap::default()));
    }

    fn insert(
        &self,
        snap: &Snapshot,
        shared: &ClientShared,
        service: &Service,
        key: &DestKey,
    ) -> Arc<Destination> {
        let _g = lock(&self.insert);
        if let Some(d) = self.map.load().get(key) {
            return Arc::clone(d);
        }
        let i = inputs(snap, shared, service, key);
        let dest = Arc::new(Destination {
            current: ArcSwap::from_pointee(build(snap, shared, service, key, i, None)),
            rebuild: Mutex::new(()),
        });
        let mut map = HashMap::clone(&self.map.load());
        map.insert(key.clone(), Arc::clone(&dest));
        self.map.store(Arc::new(map));
        dest
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
) -> (LbConfig, Option<HashKey>) {
    let mut hash_key = None;
    let algorithm = match lb {
        Some(s) if s.consistent_hash.is_some() => {
            let ch = s.consistent_hash.as_ref().expect("checked");
            hash_key = if let Some(h) = &ch.http_header_name {
                HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                    .ok()
                    .map(HashKey::Header)
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
                (Some(m), _, _) => LbAlgorithm::Maglev {
                    table_size: m.table_size.unwrap_or(crate::lb::DEFAULT_MAGLEV_TABLE_SIZE),
                },
                (None, Some(r), _) => LbAlgorithm::RingHash {
                    minimum_ring_size: r
                        .minimum_ring_size
                        .unwrap_or(crate::lb::DEFAULT_MIN_RING_SIZE),
                },
                (None, None, m) => LbAlgorithm::RingHash {
                    minimum_ring_size: m.unwrap_or(crate::lb::DEFAULT_MIN_RING_SIZE),
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
    let setting = lb
        .and_then(|s| s.locality_lb_setting.as_ref())
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
        });
    let config = LbConfig {
        algorithm,
        panic_threshold_percent: od
            .and_then(|o| o.min_health_percent)
            .map(|p| p.clamp(0, 100) as u32)
            .unwrap_or(0),
        locality: LocalityContext {
            client: shared
                .workload
                .locality
                .as_deref()
                .map(Locality::parse)
                .unwrap_or_default(),
            client_labels: shared.workload.labels.clone(),
            setting,
            outlier_detection: od.is_some(),
        },
    };
    (config, hash_key)
}

pub(crate) fn outlier_config(od: &OutlierDetection) -> OutlierConfig {
    let d = OutlierConfig::default();
    let mut c = OutlierConfig {
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
        consecutive_local_origin_failures: od
            .consecutive_local_origin_failures
            .unwrap_or(d.consecutive_local_origin_failures),
        ..d
    };
    // deprecated `consecutiveErrors`: gateway errors only (istio/api#617)
    if let Some(n) = od.consecutive_errors.filter(|n| *n > 0) {
        c.consecutive_gateway_errors = n as u32;
        c.consecutive_5xx = 0;
    }
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

/// The upstream protocol, offered by ALPN, as Istio picks it for an outbound cluster: a
/// port declared `HTTP2`/`GRPC`/`GRPC-WEB`, or `h2UpgradePolicy: UPGRADE`, speaks HTTP/2;
/// a port declared `HTTP` speaks HTTP/1.1 (unless upgraded); an undeclared port (protocol
/// sniffing) lets the server choose. Multiplexing every HTTP/1.1 request of a busy client
/// onto one h2 connection would also serialize them on one connection task.
fn upstream_alpn(
    service: &Service,
    port: u16,
    h2_upgrade: Option<mesh_core::model::H2UpgradePolicy>,
) -> mesh_tls::Alpn {
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
        ("HTTP", _) => mesh_tls::Alpn::Http1,
        _ => mesh_tls::Alpn::Http2AndHttp1,
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
    let auto = tls.is_none();
    if auto && !endpoints.iter().any(|e| e.mtls) {
        return TlsPolicy::Plaintext;
    }
    let mut settings = match tls {
        Some(t) => tls_settings(t),
        None => ClientTlsSettings {
            mode: ClientTlsMode::IstioMutual,
            ..Default::default()
        },
    };
    if settings.mode == ClientTlsMode::IstioMutual && settings.subject_alt_names.is_empty() {
        settings.subject_alt_names = service
            .subject_alt_names
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    // The service's identities: the service accounts of all its endpoints.
    let td = &snap.options().trust_domain;
    let mut accounts: Vec<Identity> = Vec::new();
    for e in service.endpoints.iter() {
        if let Some(sa) = e.service_account.as_deref() {
            if let Ok(id) = Identity::new(td, &service.namespace, sa) {
                if !accounts.contains(&id) {
                    accounts.push(id);
                }
            }
        }
    }
    let dest = mesh_tls::Destination {
        host: &key.host,
        port: key.port,
        subset: key.subset.as_deref(),
        service_accounts: &accounts,
    };
    let ctx = ClientContext {
        workload: shared.credentials.as_deref(),
        credentials: shared.credential_lookup.as_deref(),
        alpn,
    };
    match mesh_tls::client_config(&settings, &dest, &ctx) {
        Ok(None) => TlsPolicy::Plaintext,
        Ok(Some(cfg)) => TlsPolicy::Tls {
            config: Arc::new(cfg),
            http1: Arc::default(),
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
    let (config, hash_key) = lb_config(p.load_balancer, p.outlier_detection, shared);
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
    let lb = Arc::new(match previous {
        Some(prev) => LoadBalancer::with_state_from(eps, config, &prev.lb),
        None => LoadBalancer::new(eps, config),
    });
    let outlier = p.outlier_detection.map(|od| {
        let cfg = outlier_config(od);
        let det = Arc::new(match previous.and_then(|x| x.outlier.as_ref()) {
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
    let limits = PoolLimits::from_istio(
        tcp.and_then(|t| t.max_connections).map(i64::from),
        http.and_then(|h| h.http1_max_pending_requests)
            .map(i64::from),
        http.and_then(|h| h.http2_max_requests).map(i64::from),
        http.and_then(|h| h.max_retries).map(i64::from),
        http.and_then(|h| h.max_requests_per_connection)
            .map(i64::from),
    );
    let breaker = CircuitBreaker::new(limits);
    let connect_timeout = tcp
        .and_then(|t| t.connect_timeout)
        .map(|d| d.as_std())
        .filter(|d| !d.is_zero())
        .unwrap_or(shared.options.connect_timeout);
    let alpn = upstream_alpn(service, key.port, http.and_then(|h| h.h2_upgrade_policy));
    let tls = tls_policy(snap, shared, service, key, p.tls, &i.endpoints, alpn);
    let idle = http
        .and_then(|h| h.idle_timeout)
        .or_else(|| tcp.and_then(|t| t.idle_timeout))
        .map(|d| d.as_std())
        .unwrap_or(Duration::from_secs(3600));
    let upstream = Upstream::new(
        MeshConnector::new(tls, connect_timeout, breaker.clone()),
        breaker.clone(),
        idle,
        i.endpoints.iter().map(|e| e.addr),
    );
    let td = &snap.options().trust_domain;
    let peers = i
        .endpoints
        .iter()
        .map(|e| {
            let principal = e
                .service_account
                .as_deref()
                .filter(|_| e.mtls || p.tls.is_some())
                .map(|sa| format!("spiffe://{td}/ns/{}/sa/{sa}", service.namespace))
                .unwrap_or_default();
            let workload = e
                .labels
                .get("app")
                .map(|a| match e.labels.get("version") {
                    Some(v) => format!("{a}-{v}"),
                    None => a.clone(),
                })
                .unwrap_or_default();
            Arc::new(WorkloadInfo::from_labels(
                &workload,
                &service.namespace,
                &principal,
                &e.labels,
            ))
        })
        .collect();
    let authorities = i
        .endpoints
        .iter()
        .map(|e| {
            http::uri::Authority::try_from(e.addr.to_string())
                .expect("a socket address is a URI authority")
        })
        .collect();
    DestState {
        authorities,
        seen: AtomicU64::new(snap.generation()),
        subset_found: p.subset_found,
        lb_settings: p.load_balancer.cloned(),
        pool_settings: p.connection_pool.cloned(),
        outlier_settings: p.outlier_detection.cloned(),
        tls_settings: p.tls.cloned(),
        endpoints: i.endpoints,
        lb,
        outlier,
        breaker,
        hash_key,
        upstream,
        peers,
        service: Arc::new(ServiceInfo {
            host: service.hostname.to_string(),
            name: service
                .hostname
                .split('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
            namespace: service.namespace.to_string(),
        }),
    }
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
            (
                serde_json::json!({"consecutiveErrors": 7}),
                0,
                7,
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
