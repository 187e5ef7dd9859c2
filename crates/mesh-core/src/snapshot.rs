//! The compiled, immutable configuration a request is decided against.
//!
//! A [`Snapshot`] is the compiled config (route table, DestinationRules, authorization
//! policies, PeerAuthentications, Gateways; shared by `Arc`) plus a [`Registry`] (services
//! and endpoints; rebuilt when workloads register or DNS answers change). A request loads one
//! snapshot ([`crate::mesh::Mesh::snapshot`]) and uses it for its whole life; every method
//! here is a pure function of the snapshot: no I/O, no locks.

use std::sync::Arc;

use crate::authz::{AuthzPolicies, WorkloadAuthz};
use crate::gateway::{GatewayServer, Gateways};
use crate::model::{ConfigObject, Labels, MtlsMode};
use crate::names::MeshOptions;
use crate::peerauthn::{EffectiveMtls, PeerAuthentications};
use crate::policy::{DestinationRules, EffectivePolicy, MergedDestinationRule};
use crate::registry::{DnsCache, Registry, ServiceDefs, Workload};
use crate::route::{HttpRequestAttrs, L4Attrs, L4Decision, RouteDecision, RouteTable};

/// Compiled configuration (everything but the registry).
#[derive(Debug)]
pub struct CompiledConfig {
    pub(crate) options: MeshOptions,
    pub(crate) routes: RouteTable,
    pub(crate) destination_rules: DestinationRules,
    pub(crate) authz: AuthzPolicies,
    pub(crate) peer_authn: PeerAuthentications,
    pub(crate) gateways: Gateways,
    pub(crate) services: ServiceDefs,
    pub(crate) object_count: usize,
}

impl CompiledConfig {
    /// Compiles the objects. When the same kind, namespace and name appears more than once,
    /// the last definition wins (as with `kubectl apply`).
    pub fn build(objects: &[ConfigObject], options: MeshOptions) -> CompiledConfig {
        let mut seen = std::collections::HashMap::with_capacity(objects.len());
        let mut dup = false;
        for (i, o) in objects.iter().enumerate() {
            let key = (
                o.kind,
                o.metadata.namespace.as_str(),
                o.metadata.name.as_str(),
            );
            dup |= seen.insert(key, i).is_some();
        }
        if dup {
            let mut keep: Vec<usize> = seen.into_values().collect();
            keep.sort_unstable();
            let deduped: Vec<ConfigObject> = keep.into_iter().map(|i| objects[i].clone()).collect();
            return Self::build_unique(&deduped, options);
        }
        Self::build_unique(objects, options)
    }

    fn build_unique(objects: &[ConfigObject], options: MeshOptions) -> CompiledConfig {
        CompiledConfig {
            routes: RouteTable::build(objects, &options),
            destination_rules: DestinationRules::build(objects, &options),
            authz: AuthzPolicies::build(objects, &options),
            peer_authn: PeerAuthentications::build(objects, &options),
            gateways: Gateways::build(objects),
            services: ServiceDefs::build(objects, &options),
            object_count: objects.len(),
            options,
        }
    }
}

/// Where a picked destination goes (see [`Snapshot::upstream`]).
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// The service, if the registry knows the host.
    pub service: Option<&'a crate::registry::Service>,
    /// The effective traffic policy; `policy.subset_found == false` means Envoy would answer
    /// 503 (cluster not found).
    pub policy: EffectivePolicy<'a>,
    /// The service port.
    pub port: u16,
}

impl<'a> Upstream<'a> {
    /// The endpoints to balance over (the subset's, when a subset is routed to). Empty when
    /// the subset is undefined or selects nothing (Envoy: 503 `no healthy upstream`).
    pub fn targets(&self) -> impl Iterator<Item = crate::registry::Target<'a>> + 'a {
        let ok = self.policy.subset_found;
        let labels = self.policy.subset_labels();
        let port = self.port;
        self.service
            .filter(move |_| ok)
            .into_iter()
            .flat_map(move |s| s.targets(port, labels))
    }
}

/// An immutable view of the mesh: compiled config plus registry.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) config: Arc<CompiledConfig>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) generation: u64,
}

impl Snapshot {
    /// Compiles a snapshot from objects, with no registered workloads.
    pub fn build(objects: &[ConfigObject], options: MeshOptions) -> Snapshot {
        let config = Arc::new(CompiledConfig::build(objects, options));
        Snapshot::with_registry(config, Arc::from(Vec::new()), &DnsCache::new(), 0)
    }

    pub(crate) fn with_registry(
        config: Arc<CompiledConfig>,
        workloads: Arc<[Workload]>,
        dns: &DnsCache,
        generation: u64,
    ) -> Snapshot {
        let registry = Arc::new(Registry::build(
            &config.services,
            workloads,
            dns,
            &config.options,
        ));
        Snapshot {
            config,
            registry,
            generation,
        }
    }

    /// Mesh options.
    pub fn options(&self) -> &MeshOptions {
        &self.config.options
    }

    /// Increases with every published snapshot (config reload, registration, DNS change).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of config objects compiled.
    pub fn object_count(&self) -> usize {
        self.config.object_count
    }

    /// The service registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The route table.
    pub fn routes(&self) -> &RouteTable {
        &self.config.routes
    }

    /// Problems met while compiling (route conditions that can never match, policies that
    /// deny because they could not be compiled).
    pub fn compile_errors(&self) -> Vec<String> {
        let mut v = self.config.routes.errors.clone();
        v.extend(
            self.config
                .authz
                .errors()
                .map(|(p, e)| format!("{p}: {e} (the policy denies every request it applies to)")),
        );
        v
    }

    /// Routes an HTTP request (§2.3).
    pub fn route_http(&self, attrs: &HttpRequestAttrs<'_>) -> RouteDecision<'_> {
        self.config
            .routes
            .route_http(&self.registry, &self.config.options, attrs)
    }

    /// Routes a TLS connection by SNI (§2.7).
    pub fn route_tls(&self, attrs: &L4Attrs<'_>) -> L4Decision<'_> {
        self.config.routes.route_tls(attrs)
    }

    /// Routes a TCP connection by destination address and port (§2.8).
    pub fn route_tcp(&self, attrs: &L4Attrs<'_>) -> L4Decision<'_> {
        self.config.routes.route_tcp(&self.registry, attrs)
    }

    /// The service port a destination goes to (§2.4): the route's port, else the service's
    /// only port, else the port the request arrived on.
    pub fn destination_port(
        &self,
        dest: &crate::route::WeightedDestination,
        client_ns: &str,
        request_port: u16,
    ) -> u16 {
        dest.port.unwrap_or_else(|| {
            self.registry
                .service(&dest.host, client_ns)
                .filter(|s| s.ports.len() == 1)
                .map(|s| s.ports[0].number)
                .unwrap_or(request_port)
        })
    }

    /// Everything needed to send to a picked destination: its service port, the effective
    /// traffic policy (subset, load balancer, pools, outlier detection, TLS) and the
    /// endpoints of its subset (via [`Upstream::targets`]).
    pub fn upstream<'a>(
        &'a self,
        dest: &'a crate::route::WeightedDestination,
        client_ns: &str,
        client_labels: Option<&Labels>,
        request_port: u16,
    ) -> Upstream<'a> {
        let port = self.destination_port(dest, client_ns, request_port);
        Upstream {
            service: self.registry.service(&dest.host, client_ns).map(|s| &**s),
            policy: self.traffic_policy_for(
                &dest.host,
                dest.subset.as_deref(),
                port,
                client_ns,
                client_labels,
            ),
            port,
        }
    }

    /// The DestinationRule for `host` seen from `client_ns` (§3.2).
    pub fn destination_rule(&self, host: &str, client_ns: &str) -> Option<&MergedDestinationRule> {
        let svc_ns = self
            .registry
            .service(host, client_ns)
            .map(|s| &*s.namespace);
        self.config
            .destination_rules
            .lookup(host, client_ns, None, svc_ns)
    }

    /// The effective traffic policy for (host, subset, port) from `client_ns` (§3.3).
    pub fn traffic_policy(
        &self,
        host: &str,
        subset: Option<&str>,
        port: u16,
        client_ns: &str,
    ) -> EffectivePolicy<'_> {
        self.traffic_policy_for(host, subset, port, client_ns, None)
    }

    /// Like [`Snapshot::traffic_policy`], for a client with labels (DestinationRules with a
    /// `workloadSelector`).
    pub fn traffic_policy_for(
        &self,
        host: &str,
        subset: Option<&str>,
        port: u16,
        client_ns: &str,
        client_labels: Option<&Labels>,
    ) -> EffectivePolicy<'_> {
        let svc_ns = self
            .registry
            .service(host, client_ns)
            .map(|s| &*s.namespace);
        self.config.destination_rules.effective(
            host,
            subset,
            port,
            client_ns,
            client_labels,
            svc_ns,
        )
    }

    /// The authorization policies for a workload (§8.2); evaluate each request with
    /// [`WorkloadAuthz::evaluate`].
    pub fn authz_for_workload(&self, namespace: &str, labels: &Labels) -> WorkloadAuthz {
        self.config.authz.for_workload(namespace, labels)
    }

    /// The mTLS mode a workload's port requires (§7): STRICT, PERMISSIVE or DISABLE.
    pub fn peer_authentication(&self, namespace: &str, labels: &Labels, port: u16) -> MtlsMode {
        self.config.peer_authn.mode(namespace, labels, port).mode
    }

    /// Like [`Snapshot::peer_authentication`], naming the deciding policy.
    pub fn peer_authentication_detail(
        &self,
        namespace: &str,
        labels: &Labels,
        port: u16,
    ) -> EffectiveMtls {
        self.config.peer_authn.mode(namespace, labels, port)
    }

    /// The Gateway servers a gateway workload with these labels serves (§5).
    pub fn gateway_servers(&self, labels: &Labels) -> Vec<GatewayServer<'_>> {
        self.config.gateways.servers_for(labels)
    }
}
