//! The compiled, immutable configuration a request is decided against.
//!
//! A [`Snapshot`] is the compiled config (route table, DestinationRules, authorization
//! policies, PeerAuthentications, Gateways; shared by `Arc`) plus a [`Registry`] (services
//! and endpoints; rebuilt when workloads register or DNS answers change). A request loads one
//! snapshot ([`crate::mesh::Mesh::snapshot`]) and uses it for its whole life; every method
//! here is a pure function of the snapshot: no I/O, no locks.
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::{Labels, MtlsMode};
//! use mesh_core::route::HttpRequestAttrs;
//!
//! let snap = mesh_core::mesh::Mesh::from_yaml("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: reviews}
//! spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: DestinationRule
//! metadata: {name: reviews}
//! spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
//! ---
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: default, namespace: istio-system}
//! spec: {mtls: {mode: STRICT}}
//! ").unwrap().snapshot();
//! // one snapshot answers every question about a request
//! let h = http::HeaderMap::new();
//! let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
//! let dest = d.pick(0).unwrap();
//! let up = snap.upstream(dest, "default", None, 9080);
//! assert_eq!(up.policy.subset.map(|s| &*s.name), Some("v1"));
//! assert_eq!(snap.peer_authentication("default", &Labels::new(), 9080), MtlsMode::Strict);
//! ```

use std::sync::Arc;

use crate::authz::{AuthzPolicies, WorkloadAuthz};
use crate::gateway::{GatewayServer, Gateways};
use crate::model::{ConfigObject, Labels, MtlsMode};
use crate::names::{kube_expansion, HostBuf, MeshOptions};
use crate::peerauthn::{EffectiveMtls, PeerAuthentications};
use crate::policy::{DestinationRules, EffectivePolicy, MergedDestinationRule};
use crate::registry::{DnsCache, Registry, Service, ServiceDefs, Workload};
use crate::route::{HttpRequestAttrs, L4Attrs, L4Decision, RouteDecision, RouteTable};

/// Compiled configuration (everything but the registry).
///
/// Its parts are internal: [`Snapshot::build`] compiles one and pairs it with a registry,
/// and [`Mesh`](crate::mesh::Mesh) shares one between the snapshots it publishes when only
/// workloads or DNS answers change.
///
/// # Examples
///
/// ```
/// use mesh_core::names::MeshOptions;
/// use mesh_core::snapshot::CompiledConfig;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
/// ", "dr.yaml");
/// let config = CompiledConfig::build(&loaded.objects, MeshOptions::default());
/// // the second `default/ratings` replaced the first, as `kubectl apply` would
/// let shown = format!("{config:?}");
/// assert!(shown.contains("object_count: 1"));
/// assert!(shown.contains("RoundRobin") && !shown.contains("Random"));
/// ```
#[derive(Debug)]
pub struct CompiledConfig {
    pub(crate) options: MeshOptions,
    pub(crate) routes: RouteTable,
    pub(crate) destination_rules: DestinationRules,
    pub(crate) authz: AuthzPolicies,
    pub(crate) peer_authn: PeerAuthentications,
    pub(crate) gateways: Gateways,
    pub(crate) services: ServiceDefs,
    pub(crate) sidecars: crate::sidecar::Sidecars,
    pub(crate) request_authn: crate::authn::RequestAuthentications,
    pub(crate) object_count: usize,
}

impl CompiledConfig {
    /// Compiles the objects. When the same kind, namespace and name appears more than once,
    /// the last definition wins (as with `kubectl apply`).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::snapshot::CompiledConfig;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings, namespace: other}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}
    /// ", "vs.yaml");
    /// let config = CompiledConfig::build(&loaded.objects, MeshOptions::default());
    /// // same name in two namespaces: two objects, nothing replaced
    /// assert!(format!("{config:?}").contains("object_count: 2"));
    /// ```
    pub fn build(objects: &[ConfigObject], options: MeshOptions) -> CompiledConfig {
        // The later definition replaces the earlier in place, as `kubectl apply` does (the
        // object keeps its creation time, which decides among conflicting objects: the
        // oldest wins).
        let (kept, _) = crate::load::last_definitions(objects);
        if kept.len() < objects.len() {
            let deduped: Vec<ConfigObject> = kept.iter().map(|&i| objects[i].clone()).collect();
            return Self::build_unique(&deduped, options);
        }
        Self::build_unique(objects, options)
    }

    fn build_unique(objects: &[ConfigObject], options: MeshOptions) -> CompiledConfig {
        // Among conflicting objects (two VirtualServices for one host, DestinationRules,
        // PeerAuthentications or Sidecars at one level, ...) istiod takes the oldest, ties
        // broken by name then namespace: every compiler below sees the objects in that order.
        if !objects.is_sorted_by(|a, b| a.istio_order(b).is_le()) {
            let mut sorted = objects.to_vec();
            sorted.sort_by(ConfigObject::istio_order);
            return Self::compile(&sorted, options);
        }
        Self::compile(objects, options)
    }

    fn compile(objects: &[ConfigObject], options: MeshOptions) -> CompiledConfig {
        let services = ServiceDefs::build(objects, &options);
        let routes = RouteTable::build_with_services(objects, &options, &services);
        // Sidecars import the services their VirtualServices route to
        let sidecars = crate::sidecar::Sidecars::build(objects, &options, &routes, &services);
        CompiledConfig {
            routes,
            destination_rules: DestinationRules::build(objects, &options),
            authz: AuthzPolicies::build(objects, &options),
            peer_authn: PeerAuthentications::build(objects, &options),
            gateways: Gateways::build(objects),
            services,
            sidecars,
            request_authn: crate::authn::RequestAuthentications::build(objects, &options),
            object_count: objects.len(),
            options,
        }
    }
}

/// Where a picked destination goes (see [`Snapshot::upstream`]).
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
/// use mesh_core::route::HttpRequestAttrs;
///
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v2}}]}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec:
///   host: reviews
///   subsets:
///   - {name: v1, labels: {version: v1}}
///   - {name: v2, labels: {version: v2}}
/// ").unwrap();
/// for (name, version, ip) in [("reviews-v1", "v1", "127.0.0.1"), ("reviews-v2", "v2", "127.0.0.2")] {
///     mesh.register(Workload {
///         name: name.into(),
///         namespace: "default".into(),
///         service_account: "bookinfo-reviews".into(),
///         labels: [("app", "reviews"), ("version", version)]
///             .map(|(k, v)| (k.to_string(), v.to_string()))
///             .into(),
///         address: ip.parse().unwrap(),
///         ports: Default::default(),
///         locality: None,
///         weight: 1,
///     });
/// }
/// let snap = mesh.snapshot();
/// let h = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
/// let up = snap.upstream(d.pick(0).unwrap(), "default", None, 80);
/// assert_eq!(up.port, 9080); // the service's only port
/// assert!(up.policy.subset_found);
/// let addrs: Vec<_> = up.targets().map(|t| t.addr.unwrap().to_string()).collect();
/// assert_eq!(addrs, ["127.0.0.2:9080"]); // only the v2 endpoint
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   ports: [{number: 5432, name: http, protocol: HTTP}]
    ///   location: MESH_INTERNAL
    ///   resolution: STATIC
    ///   endpoints: [{address: 10.1.0.7, labels: {role: primary}}, {address: 10.1.0.8, labels: {role: replica}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   http:
    ///   - match: [{uri: {prefix: /missing}}]
    ///     route: [{destination: {host: db.internal, subset: nope}}]
    ///   - route: [{destination: {host: db.internal, subset: replica}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: db}
    /// spec: {host: db.internal, subsets: [{name: replica, labels: {role: replica}}]}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let targets = |path| {
    ///     let d = snap.route_http(&HttpRequestAttrs::new("default", "db.internal:5432", path, &h));
    ///     let up = snap.upstream(d.pick(0).unwrap(), "default", None, 5432);
    ///     up.targets().map(|t| t.addr.unwrap().to_string()).collect::<Vec<_>>()
    /// };
    /// assert_eq!(targets("/"), ["10.1.0.8:5432"]); // the subset's endpoints only
    /// assert!(targets("/missing/x").is_empty()); // undefined subset: nothing to send to
    /// ```
    pub fn targets(&self) -> impl Iterator<Item = crate::registry::Target<'a>> + use<'a> {
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
///
/// Get one from [`Mesh::snapshot`](crate::mesh::Mesh::snapshot), or compile one directly
/// with [`Snapshot::build`] (no validation, no registered workloads).
///
/// # Examples
///
/// ```
/// use mesh_core::authz::{AuthzRequest, HttpAuthzAttrs};
/// use mesh_core::model::{Labels, MtlsMode};
/// use mesh_core::route::HttpRequestAttrs;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings, namespace: default}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: ratings, namespace: default}
/// spec:
///   hosts: [ratings]
///   http:
///   - match: [{headers: {end-user: {exact: jason}}}]
///     fault: {abort: {percentage: {value: 100}, httpStatus: 500}}
///     route: [{destination: {host: ratings, subset: v1}}]
///   - route: [{destination: {host: ratings, subset: v1}}]
/// ---
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: default}
/// spec: {mtls: {mode: STRICT}}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: AuthorizationPolicy
/// metadata: {name: ratings-viewer, namespace: default}
/// spec:
///   selector: {matchLabels: {app: ratings}}
///   action: ALLOW
///   rules:
///   - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-reviews]}}]
///     to: [{operation: {methods: [GET]}}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: ratings}
/// spec: {host: ratings, subsets: [{name: v1, labels: {version: v1}}]}
/// ").unwrap().snapshot();
///
/// // client side: the route, and the fault that answers 500 for jason
/// let mut h = http::HeaderMap::new();
/// h.insert("end-user", "jason".parse().unwrap());
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings:9080", "/ratings/0", &h));
/// assert_eq!((d.route_index(), d.status()), (Some(0), Some(500)));
///
/// // server side: mTLS is required, then authorization
/// let ratings: Labels = [("app".to_string(), "ratings".to_string())].into();
/// assert_eq!(snap.peer_authentication("default", &ratings, 9080), MtlsMode::Strict);
/// let authz = snap.authz_for_workload("default", &ratings);
/// let headers = http::HeaderMap::new();
/// let attrs = HttpAuthzAttrs { method: "GET", path: "/ratings/0", host: "ratings:9080", headers: &headers };
/// let mut req = AuthzRequest::http(9080, attrs);
/// req.principal = Some("cluster.local/ns/default/sa/bookinfo-reviews");
/// assert!(authz.evaluate(&req).allowed);
/// req.principal = Some("cluster.local/ns/default/sa/bookinfo-productpage");
/// assert!(!authz.evaluate(&req).allowed);
/// ```
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) config: Arc<CompiledConfig>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) generation: u64,
}

impl Snapshot {
    /// Compiles a snapshot from objects, with no registered workloads.
    ///
    /// Unlike [`Mesh`](crate::mesh::Mesh) reloads, this does not validate: check the objects
    /// first ([`crate::check`]) when they come from users.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::HttpRequestAttrs;
    /// use mesh_core::snapshot::Snapshot;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: details}
    /// spec:
    ///   hosts: [details]
    ///   http: [{route: [{destination: {host: details}}], timeout: 3s}]
    /// ", "details.yaml");
    /// assert!(mesh_core::check(&loaded).iter().all(|d| !d.is_error()));
    /// let snap = Snapshot::build(&loaded.objects, MeshOptions::default());
    /// assert_eq!(snap.generation(), 0);
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "details", "/details/0", &h));
    /// assert_eq!(d.timeout(), Some(std::time::Duration::from_secs(3)));
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::snapshot::Snapshot;
    ///
    /// let opts = MeshOptions { domain_suffix: "corp.internal".into(), ..MeshOptions::default() };
    /// let snap = Snapshot::build(&[], opts);
    /// assert_eq!(snap.options().domain_suffix, "corp.internal");
    /// assert_eq!(snap.options().resolve_host("ratings", "default"), "ratings.default.svc.corp.internal");
    /// ```
    pub fn options(&self) -> &MeshOptions {
        &self.config.options
    }

    /// Increases with every published snapshot (config reload, registration, DNS change).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// let first = mesh.snapshot().generation();
    /// mesh.reload_objects(Vec::new()).unwrap();
    /// assert!(mesh.snapshot().generation() > first);
    /// ```
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of config objects compiled.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings}
    /// spec: {host: ratings}
    /// ---
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ratings}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ").unwrap().snapshot();
    /// assert_eq!(snap.object_count(), 2); // Kubernetes objects count too
    /// ```
    pub fn object_count(&self) -> usize {
        self.config.object_count
    }

    /// The service registry.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ratings, namespace: bookinfo}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("ratings.bookinfo.svc.cluster.local", "default").unwrap();
    /// assert_eq!(svc.ports[0].number, 9080);
    /// ```
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The external authorizer of a workload whose CUSTOM policies name the providers
    /// `used`, as istiod builds it: the one provider they all name
    /// ([`resolve_ext_authz`](crate::meshconfig::resolve_ext_authz)), whose `service` the
    /// registry has ([`Registry::extension_provider_service`]). `Err` carries istiod's
    /// message: the CUSTOM policies then deny what they match, whatever `failOpen` says.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::meshconfig::{ExtAuthzHttp, ExtensionProvider};
    /// use mesh_core::names::MeshOptions;
    ///
    /// let options = MeshOptions::default().with_extension_provider(ExtensionProvider::ext_authz_http(
    ///     "authz",
    ///     ExtAuthzHttp::new("ext-authz.foo.svc.cluster.local", 8000),
    /// ));
    /// let mesh = mesh_core::mesh::Mesh::new(options);
    /// assert!(mesh.snapshot().ext_authz(&["authz"]).unwrap_err().contains("could not find service"));
    /// mesh.reload_loaded(mesh_core::load::load_str("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec: {ports: [{name: http, port: 8000}]}
    /// ", "svc.yaml")).unwrap();
    /// assert!(mesh.snapshot().ext_authz(&["authz"]).is_ok());
    /// ```
    pub fn ext_authz(&self, used: &[&str]) -> Result<crate::meshconfig::ExtAuthzRef<'_>, String> {
        use crate::meshconfig::ExtAuthzRef;
        let r = crate::meshconfig::resolve_ext_authz(&self.options().extension_providers, used)?;
        let service = match &r {
            ExtAuthzRef::Http(h) => &h.service,
            ExtAuthzRef::Grpc(g) => &g.service,
        };
        self.registry.extension_provider_service(service)?;
        Ok(r)
    }

    /// The port of a request whose URL has none: the only port of the service its host names,
    /// found as the route lookup finds it (the name as written, else its Kubernetes expansion
    /// for the client's namespace: `name`, `name.ns`, `name.ns.svc`). `None` when there is no
    /// such service or it has several ports (the scheme's port applies then).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ").unwrap().snapshot();
    /// for host in ["reviews", "Reviews.default", "reviews.default.svc", "reviews.default.svc.cluster.local"] {
    ///     assert_eq!(snap.default_port(host, "default"), Some(9080), "{host}");
    /// }
    /// assert_eq!(snap.default_port("reviews", "prod"), None); // reviews.prod does not exist
    /// assert_eq!(snap.default_port("example.com", "default"), None);
    /// ```
    pub fn default_port(&self, host: &str, client_ns: &str) -> Option<u16> {
        match self.resolve_service(host, client_ns)?.ports.as_slice() {
            [p] => Some(p.number),
            _ => None,
        }
    }

    /// The service a host name as an application writes it names for a client in
    /// `client_ns`, found as the route lookup finds it: the name as written (any case),
    /// else its Kubernetes expansion (`name`, `name.ns`, `name.ns.svc`).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: mongodb, namespace: shop}
    /// spec: {ports: [{name: mongo, port: 27017}]}
    /// ").unwrap().snapshot();
    /// let fqdn = |host: &str, ns: &str| snap.resolve_service(host, ns).map(|s| s.hostname.to_string());
    /// assert_eq!(fqdn("mongodb", "shop").as_deref(), Some("mongodb.shop.svc.cluster.local"));
    /// assert_eq!(fqdn("MongoDB.shop", "default").as_deref(), Some("mongodb.shop.svc.cluster.local"));
    /// assert_eq!(fqdn("mongodb", "default"), None); // mongodb.default does not exist
    /// ```
    ///
    /// A pod of a headless Service by its own name is that Service
    /// ([`Registry::headless_service_of_pod`](crate::registry::Registry::headless_service_of_pod)).
    pub fn resolve_service(&self, host: &str, client_ns: &str) -> Option<&Arc<Service>> {
        let mut buf = HostBuf::new();
        let lit = if buf.push_lower(host) {
            buf.as_str()
        } else {
            host
        };
        let reg = &self.registry;
        // an absolute name is its service's hostname, never expanded (as the route lookup)
        let (lit, absolute) = crate::names::absolute_name(lit);
        // Envoy's domain order: a name exactly (as written, then expanded), then the most
        // specific wildcard: a headless Service's `*.<name>` for its pods first
        let exact = |h: &str| reg.service(h, client_ns).filter(|s| *s.hostname == *h);
        if let Some(s) = exact(lit) {
            return Some(s);
        }
        let suffix = &self.config.options.domain_suffix;
        let mut exp = HostBuf::new();
        let exp =
            (!absolute && kube_expansion(lit, client_ns, suffix, &mut exp)).then(|| exp.as_str());
        exp.and_then(exact)
            .or_else(|| reg.headless_service_of_pod(lit, client_ns, suffix))
            .or_else(|| reg.service(lit, client_ns))
            .or_else(|| exp.and_then(|h| reg.service(h, client_ns)))
    }

    /// The route table.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}]}]}
    /// ").unwrap().snapshot();
    /// assert_eq!(snap.routes().len(), 1);
    /// assert!(snap.routes().errors.is_empty());
    /// ```
    pub fn routes(&self) -> &RouteTable {
        &self.config.routes
    }

    /// Problems met while compiling (route conditions that can never match, policies that
    /// deny because they could not be compiled).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::HttpRequestAttrs;
    /// use mesh_core::snapshot::Snapshot;
    ///
    /// // valid for istiod, but the delegate VirtualService was never applied
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: bookinfo, namespace: default}
    /// spec:
    ///   hosts: [bookinfo.example.com]
    ///   http:
    ///   - match: [{uri: {prefix: /reviews}}]
    ///     delegate: {name: reviews, namespace: team-reviews}
    ///   - match: [{uri: {prefix: /static}}]
    ///     route: [{destination: {host: static.example.com}}]
    /// ", "root.yaml");
    /// let snap = Snapshot::build(&loaded.objects, MeshOptions::default());
    /// assert_eq!(
    ///     snap.compile_errors(),
    ///     ["default/bookinfo: route 0: delegate VirtualService team-reviews/reviews not found"]
    /// );
    /// // the route is left out: requests get 404 (no route)
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "bookinfo.example.com", "/reviews/1", &h));
    /// assert_eq!(d.status(), Some(404));
    /// ```
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
    ///
    /// Mesh traffic from a client with a `Sidecar` (found by `client_namespace` and
    /// `source_labels`, see [`Snapshot::sidecar_for`]) sees only the VirtualServices the
    /// Sidecar's egress hosts import for the port (spec §6,
    /// [`SidecarScope::imports_virtual_service`](crate::sidecar::SidecarScope::imports_virtual_service));
    /// the others do not apply and the request takes the default route. A snapshot without
    /// Sidecars does no lookup.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::{HttpRequestAttrs, RouteOutcome};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{headers: {end-user: {exact: jason}}}]
    ///     route: [{destination: {host: reviews, subset: v2}}]
    ///   - match: [{uri: {prefix: /reviews}}]
    ///     route: [{destination: {host: reviews, subset: v1}}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// "#).unwrap().snapshot();
    /// let mut jason = http::HeaderMap::new();
    /// jason.insert("end-user", "jason".parse().unwrap());
    /// let anyone = http::HeaderMap::new();
    ///
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/reviews/0", &jason));
    /// assert_eq!(d.host, "reviews.default.svc.cluster.local");
    /// assert_eq!(d.virtual_service_name(), Some("default/reviews"));
    /// assert_eq!(d.route_index(), Some(0));
    /// assert_eq!(d.destinations()[0].subset.as_deref(), Some("v2"));
    ///
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/reviews/0", &anyone));
    /// assert_eq!(d.route_index(), Some(1));
    /// assert_eq!(d.destinations()[0].subset.as_deref(), Some("v1"));
    ///
    /// // no route matches: the mesh answers 404 itself
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/health", &anyone));
    /// assert_eq!(d.outcome, RouteOutcome::NoRoute);
    /// assert_eq!(d.status(), Some(404));
    ///
    /// // from another namespace `reviews` is that namespace's service, not this VirtualService
    /// let d = snap.route_http(&HttpRequestAttrs::new("prod", "reviews", "/reviews/0", &jason));
    /// assert_eq!(d.host, "reviews.prod.svc.cluster.local");
    /// assert_eq!(d.virtual_service_name(), None);
    /// ```
    ///
    /// A Sidecar importing only its own namespace hides another namespace's VirtualService:
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec:
    ///   hosts: [reviews]
    ///   http: [{route: [{destination: {host: reviews, subset: v2}}]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: default, namespace: shop}
    /// spec: {egress: [{hosts: ["./*", "istio-system/*"]}]}
    /// "#).unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let from = |ns| snap.route_http(&HttpRequestAttrs::new(ns, "reviews.bookinfo:9080", "/", &h));
    /// assert_eq!(from("shop").virtual_service_name(), None); // default routing
    /// assert_eq!(from("web").virtual_service_name(), Some("bookinfo/reviews")); // no Sidecar
    /// ```
    pub fn route_http(&self, attrs: &HttpRequestAttrs<'_>) -> RouteDecision<'_> {
        let sidecar = self.mesh_sidecar(attrs.gateway, attrs.client_namespace, attrs.source_labels);
        self.config
            .routes
            .route_http_scoped(&self.registry, &self.config.options, attrs, sidecar)
    }

    /// The Sidecar scoping mesh traffic from a client: none for gateway traffic, and no
    /// lookup at all when the snapshot has no Sidecar.
    #[inline]
    fn mesh_sidecar(
        &self,
        gateway: Option<&str>,
        namespace: &str,
        labels: &Labels,
    ) -> Option<&crate::sidecar::SidecarScope> {
        if gateway.is_some() || self.config.sidecars.is_empty() {
            return None;
        }
        self.config.sidecars.for_workload(namespace, labels)
    }

    /// Routes a TLS connection by SNI (§2.7).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: api}
    /// spec:
    ///   hosts: [api.example.com]
    ///   tls:
    ///   - match: [{port: 443, sniHosts: [api.example.com]}]
    ///     route: [{destination: {host: api-v2.example.com, port: {number: 443}}}]
    /// ").unwrap().snapshot();
    /// let attrs = L4Attrs { sni: Some("api.example.com"), ..L4Attrs::new("default", 443) };
    /// let d = snap.route_tls(&attrs);
    /// assert_eq!(d.route_index, Some(0));
    /// assert_eq!(&*d.destinations[0].host, "api-v2.example.com");
    ///
    /// // another SNI passes through to itself
    /// let attrs = L4Attrs { sni: Some("istio.io"), ..L4Attrs::new("default", 443) };
    /// let d = snap.route_tls(&attrs);
    /// assert!(d.virtual_service.is_none());
    /// assert_eq!(&*d.destinations[0].host, "istio.io");
    /// ```
    pub fn route_tls(&self, attrs: &L4Attrs<'_>) -> L4Decision<'_> {
        let sidecar = self.mesh_sidecar(attrs.gateway, attrs.client_namespace, attrs.source_labels);
        self.config.routes.route_tls_scoped(attrs, sidecar)
    }

    /// [`Snapshot::route_tls`] for a connection to the service `service_host` (its FQDN, as
    /// the registry names it): the VirtualServices of that service apply, their `sniHosts`
    /// matched against the SNI as the application sends it. A Kubernetes service reached
    /// by its short name (`reviews`, SNI `reviews`) finds the VirtualService of
    /// `reviews.<ns>.svc.cluster.local`, as a sidecar's filter chain for the service does.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews, namespace: default}
    /// spec:
    ///   hosts: [reviews]
    ///   tls:
    ///   - match: [{port: 9443, sniHosts: [reviews]}]
    ///     route: [{destination: {host: reviews-v2}}]
    /// ").unwrap().snapshot();
    /// let attrs = L4Attrs { sni: Some("reviews"), ..L4Attrs::new("default", 9443) };
    /// // by the SNI alone, `reviews` names no VirtualService host (they are FQDNs)
    /// assert!(snap.route_tls(&attrs).virtual_service.is_none());
    /// let d = snap.route_tls_to(&attrs, "reviews.default.svc.cluster.local");
    /// assert_eq!(&*d.destinations[0].host, "reviews-v2.default.svc.cluster.local");
    /// ```
    pub fn route_tls_to(&self, attrs: &L4Attrs<'_>, service_host: &str) -> L4Decision<'_> {
        let sidecar = self.mesh_sidecar(attrs.gateway, attrs.client_namespace, attrs.source_labels);
        self.config
            .routes
            .route_tls_to_scoped(attrs, Some(service_host), sidecar)
    }

    /// Routes a TCP connection by destination address and port (§2.8).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: tcp-echo, namespace: default}
    /// spec:
    ///   clusterIP: 10.96.0.20
    ///   selector: {app: tcp-echo}
    ///   ports: [{name: tcp, port: 9000}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: tcp-echo}
    /// spec:
    ///   hosts: [tcp-echo]
    ///   tcp:
    ///   - match: [{port: 9000}]
    ///     route:
    ///     - {destination: {host: tcp-echo, port: {number: 9000}, subset: v1}, weight: 80}
    ///     - {destination: {host: tcp-echo, port: {number: 9000}, subset: v2}, weight: 20}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: tcp-echo}
    /// spec: {host: tcp-echo, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
    /// ").unwrap().snapshot();
    /// // the connection's original destination finds the service by its cluster IP
    /// let attrs = L4Attrs {
    ///     destination_ip: Some("10.96.0.20".parse().unwrap()),
    ///     ..L4Attrs::new("default", 9000)
    /// };
    /// let d = snap.route_tcp(&attrs);
    /// assert_eq!(d.host, "tcp-echo.default.svc.cluster.local");
    /// assert_eq!(d.virtual_service.map(|v| &*v.name), Some("default/tcp-echo"));
    /// assert_eq!(d.pick(79).unwrap().subset.as_deref(), Some("v1"));
    /// assert_eq!(d.pick(80).unwrap().subset.as_deref(), Some("v2"));
    /// ```
    pub fn route_tcp(&self, attrs: &L4Attrs<'_>) -> L4Decision<'_> {
        let sidecar = self.mesh_sidecar(attrs.gateway, attrs.client_namespace, attrs.source_labels);
        self.config
            .routes
            .route_tcp_scoped(&self.registry, attrs, sidecar)
    }

    /// The service port a destination goes to (§2.4): the route's port, else the service's
    /// only port, else the port the request arrived on.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec:
    ///   hosts: [reviews]
    ///   http:
    ///   - match: [{uri: {prefix: /details}}]
    ///     route: [{destination: {host: details, port: {number: 9090}}}]
    ///   - route: [{destination: {host: reviews}}]
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let port = |authority: &str, path: &str, request_port: u16| {
    ///     let d = snap.route_http(&HttpRequestAttrs::new("default", authority, path, &h));
    ///     snap.destination_port(&d.destinations()[0], "default", request_port)
    /// };
    /// assert_eq!(port("reviews", "/details/0", 80), 9090); // the route's port
    /// assert_eq!(port("reviews", "/", 80), 9080); // the service's only port
    /// assert_eq!(port("httpbin.org:8080", "/", 8080), 8080); // unknown host: the request's
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::SimpleLb;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ratings}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: ratings}
    /// spec: {host: ratings, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
    /// ").unwrap().snapshot();
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/ratings/0", &h));
    /// let up = snap.upstream(d.pick(0).unwrap(), "default", None, 80);
    /// assert_eq!(up.service.map(|s| &*s.hostname), Some("ratings.default.svc.cluster.local"));
    /// assert_eq!(up.port, 9080); // the service's only port, not the request's
    /// assert_eq!(up.policy.simple_lb(), Some(SimpleLb::RoundRobin));
    /// assert_eq!(up.targets().count(), 0); // no workload registered yet
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews-from-qa, namespace: qa}
    /// spec: {host: reviews.bookinfo.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ").unwrap().snapshot();
    /// let host = "reviews.bookinfo.svc.cluster.local";
    /// let name = |ns: &str| snap.destination_rule(host, ns).map(|d| d.name.to_string());
    /// // the client's namespace first, then the service's
    /// assert_eq!(name("qa").as_deref(), Some("qa/reviews-from-qa"));
    /// assert_eq!(name("default").as_deref(), Some("bookinfo/reviews"));
    /// assert!(snap.destination_rule("ratings.bookinfo.svc.cluster.local", "default").is_none());
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{ClientTlsMode, SimpleLb};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec:
    ///   host: reviews
    ///   trafficPolicy:
    ///     loadBalancer: {simple: ROUND_ROBIN}
    ///     portLevelSettings:
    ///     - port: {number: 9443}
    ///       tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem}
    ///   subsets:
    ///   - {name: v1, labels: {version: v1}}
    /// ").unwrap().snapshot();
    /// let host = "reviews.default.svc.cluster.local";
    /// let p = snap.traffic_policy(host, Some("v1"), 9080, "default");
    /// assert_eq!(p.simple_lb(), Some(SimpleLb::RoundRobin));
    /// assert!(p.subset_found);
    /// // a port-level entry replaces the top level as a whole: no ROUND_ROBIN on 9443
    /// let p = snap.traffic_policy(host, None, 9443, "default");
    /// assert_eq!(p.tls.map(|t| t.mode), Some(ClientTlsMode::Simple));
    /// assert_eq!(p.simple_lb(), Some(SimpleLb::LeastRequest));
    /// // an undefined subset: Envoy would answer 503
    /// assert!(!snap.traffic_policy(host, Some("v9"), 9080, "default").subset_found);
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, SimpleLb};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews-for-canary-clients}
    /// spec:
    ///   host: reviews
    ///   workloadSelector: {matchLabels: {track: canary}}
    ///   trafficPolicy: {loadBalancer: {simple: RANDOM}}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
    /// ").unwrap().snapshot();
    /// let host = "reviews.default.svc.cluster.local";
    /// let canary: Labels = [("track".to_string(), "canary".to_string())].into();
    /// let p = snap.traffic_policy_for(host, None, 9080, "default", Some(&canary));
    /// assert_eq!(p.simple_lb(), Some(SimpleLb::Random));
    /// let p = snap.traffic_policy_for(host, None, 9080, "default", None);
    /// assert_eq!(p.simple_lb(), Some(SimpleLb::RoundRobin));
    /// ```
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

    /// The JWT providers (RequestAuthentication `jwtRules`) that apply to a workload in
    /// `namespace` with `labels`: the root namespace's, its namespace's, and those whose
    /// selector matches (see [`crate::authn`]), in issuer order, as istiod sorts them.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: security.istio.io/v1
    /// kind: RequestAuthentication
    /// metadata: {name: jwt-example, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   jwtRules: [{issuer: testing@secure.istio.io, jwksUri: "https://example.com/jwks.json"}]
    /// "#).unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// assert_eq!(snap.jwt_providers("foo", &httpbin)[0].issuer(), "testing@secure.istio.io");
    /// assert!(snap.jwt_providers("foo", &Labels::new()).is_empty());
    /// ```
    pub fn jwt_providers(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Vec<Arc<crate::authn::JwtProvider>> {
        self.config.request_authn.for_workload(namespace, labels)
    }

    /// The `Sidecar` that applies to a workload in `namespace` with `labels` (see
    /// [`crate::sidecar`]): `None` when none does, and the workload imports every service.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: default, namespace: prod}
    /// spec: {egress: [{hosts: ["./*"]}]}
    /// "#).unwrap().snapshot();
    /// let any = Labels::default();
    /// assert_eq!(snap.sidecar_for("prod", &any).map(|s| s.name()), Some("prod/default"));
    /// assert!(snap.sidecar_for("dev", &any).is_none());
    /// ```
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Option<&crate::sidecar::SidecarScope> {
        self.config.sidecars.for_workload(namespace, labels)
    }

    /// The connection pool of a workload's inbound `port` (Envoy's circuit breakers on the
    /// inbound cluster, between the sidecar and the application), as istiod builds that
    /// cluster:
    ///
    /// - with a Sidecar that declares `ingress` listeners, the listener for `port` (its
    ///   `connectionPool`, else the Sidecar's `inboundConnectionPool`, else the
    ///   DestinationRule's settings for the listener's port); a port no listener declares
    ///   goes through the passthrough cluster, without limits;
    /// - otherwise the service `service_host` (the service the workload serves, seen from
    ///   its namespace) on the service port whose target is `port`: the Sidecar's
    ///   `inboundConnectionPool`, else the service's DestinationRule (port-level settings
    ///   for that service port over the top level); a port no port of the service
    ///   targets goes through the passthrough cluster, without limits. Without
    ///   `service_host` only the Sidecar's settings can apply.
    ///
    /// Each source is taken whole, not merged field by field. The DestinationRule is the
    /// one the workload's namespace sees for the service, never one with a
    /// `workloadSelector` (istiod honours selectors for outbound traffic only), and only
    /// for a service its Sidecar imports.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: httpbin, namespace: foo}
    /// spec:
    ///   selector: {app: httpbin}
    ///   ports: [{name: http, port: 8000, targetPort: 80}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: httpbin, namespace: foo}
    /// spec:
    ///   host: httpbin
    ///   trafficPolicy:
    ///     connectionPool:
    ///       tcp: {maxConnections: 1}
    ///       http: {http1MaxPendingRequests: 1}
    /// ").unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// let host = Some("httpbin.foo.svc.cluster.local");
    /// let pool = snap.inbound_connection_pool("foo", &httpbin, 80, host);
    /// let tcp = pool.settings.unwrap().tcp.as_ref().unwrap();
    /// assert_eq!(tcp.max_connections, Some(1));
    /// assert_eq!(pool.protocol, Some("HTTP")); // the service port's
    /// // a port the service does not target, or no service: no DestinationRule applies
    /// assert!(snap.inbound_connection_pool("foo", &httpbin, 8000, host).settings.is_none());
    /// assert!(snap.inbound_connection_pool("foo", &httpbin, 80, None).settings.is_none());
    /// ```
    pub fn inbound_connection_pool(
        &self,
        namespace: &str,
        labels: &Labels,
        port: u16,
        service_host: Option<&str>,
    ) -> InboundPool<'_> {
        let sidecar = self.sidecar_for(namespace, labels);
        let ingress = sidecar.filter(|s| s.has_ingress());
        let listener_protocol = ingress.and_then(|s| s.ingress_protocol(port));
        if ingress.is_some() && listener_protocol.is_none() {
            return InboundPool::default();
        }
        // the service, by the port it sends to this one: its target port, or a named target
        // port as this workload's endpoint names it
        let service = service_host.and_then(|host| {
            let svc = self.registry.service(host, namespace)?;
            let own = svc.endpoints.iter().find(|e| {
                !labels.is_empty() && labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))
            });
            let sp = svc
                .ports
                .iter()
                .find(|p| match (&p.target_port_name, own) {
                    (Some(_), Some(e)) => svc.endpoint_port(e, p.number) == port,
                    _ => p.target_port.unwrap_or(p.number) == port,
                })?;
            Some((host, svc, sp))
        });
        if ingress.is_none() && service_host.is_some() && service.is_none() {
            return InboundPool::default();
        }
        let protocol = listener_protocol.or(service.map(|(_, _, sp)| &*sp.protocol));
        let settings = sidecar
            .and_then(|s| s.inbound_connection_pool(port))
            .or_else(|| {
                let (host, svc, sp) = service?;
                // istiod keys port-level settings by the ingress listener's port, else by
                // the service port
                let lookup = if ingress.is_some() { port } else { sp.number };
                if sidecar.is_some_and(|s| !s.imports(namespace, &svc.namespace, host, sp.number)) {
                    return None;
                }
                self.traffic_policy_for(host, None, lookup, namespace, None)
                    .connection_pool
            });
        let use_client_protocol = settings
            .and_then(|s| s.http.as_ref())
            .and_then(|h| h.use_client_protocol)
            .unwrap_or(false);
        InboundPool {
            settings,
            protocol,
            use_client_protocol,
        }
    }

    /// The outbound traffic policy of a workload in `namespace` with `labels`: its
    /// `Sidecar`'s `outboundTrafficPolicy` when it has one, else MeshConfig's
    /// ([`MeshOptions::outbound_traffic_policy`], `ALLOW_ANY` by default). Under `ALLOW_ANY`
    /// a destination outside the registry (or one the Sidecar does not import) passes
    /// through to the request's own host and port, as Envoy's `PassthroughCluster`; under
    /// `REGISTRY_ONLY` it is black-holed (502).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, OutboundMode};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: default, namespace: prod}
    /// spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
    /// "#).unwrap().snapshot();
    /// let any = Labels::default();
    /// assert_eq!(snap.outbound_mode("prod", &any), OutboundMode::RegistryOnly);
    /// assert_eq!(snap.outbound_mode("dev", &any), OutboundMode::AllowAny);
    /// ```
    pub fn outbound_mode(&self, namespace: &str, labels: &Labels) -> crate::model::OutboundMode {
        self.sidecar_for(namespace, labels)
            .and_then(|s| s.outbound_traffic_policy())
            .unwrap_or(self.options().outbound_traffic_policy)
    }

    /// The authorization policies for a workload (§8.2); evaluate each request with
    /// [`WorkloadAuthz::evaluate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::authz::{AuthzReason, AuthzRequest};
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: tcp-echo, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: tcp-echo}}
    ///   action: ALLOW
    ///   rules: [{to: [{operation: {ports: ['9000', '9001']}}]}]
    /// ").unwrap().snapshot();
    /// let tcp_echo: Labels = [("app".to_string(), "tcp-echo".to_string())].into();
    /// let authz = snap.authz_for_workload("foo", &tcp_echo);
    /// assert_eq!(authz.policies().collect::<Vec<_>>(), ["foo/tcp-echo"]);
    /// assert!(authz.evaluate(&AuthzRequest::tcp(9001)).allowed);
    /// let d = authz.evaluate(&AuthzRequest::tcp(9002));
    /// assert_eq!((d.allowed, d.reason), (false, AuthzReason::NoAllowMatched));
    /// // other workloads are not selected
    /// assert!(snap.authz_for_workload("foo", &Labels::new()).is_empty());
    /// ```
    pub fn authz_for_workload(&self, namespace: &str, labels: &Labels) -> WorkloadAuthz {
        self.config.authz.for_workload(namespace, labels)
    }

    /// The mTLS mode a workload's port requires (§7): STRICT, PERMISSIVE or DISABLE.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, MtlsMode};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: foo}
    /// spec: {mtls: {mode: STRICT}}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: httpbin-metrics, namespace: foo}
    /// spec:
    ///   selector: {matchLabels: {app: httpbin}}
    ///   mtls: {mode: UNSET}
    ///   portLevelMtls:
    ///     9090: {mode: DISABLE}
    /// ").unwrap().snapshot();
    /// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
    /// assert_eq!(snap.peer_authentication("foo", &httpbin, 8000), MtlsMode::Strict);
    /// assert_eq!(snap.peer_authentication("foo", &httpbin, 9090), MtlsMode::Disable);
    /// assert_eq!(snap.peer_authentication("bar", &httpbin, 8000), MtlsMode::Permissive);
    /// ```
    pub fn peer_authentication(&self, namespace: &str, labels: &Labels, port: u16) -> MtlsMode {
        self.config.peer_authn.mode(namespace, labels, port).mode
    }

    /// Like [`Snapshot::peer_authentication`], naming the deciding policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, MtlsMode};
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: istio-system}
    /// spec: {mtls: {mode: STRICT}}
    /// ").unwrap().snapshot();
    /// let e = snap.peer_authentication_detail("foo", &Labels::new(), 8000);
    /// assert_eq!(e.mode, MtlsMode::Strict);
    /// assert_eq!(e.policy.as_deref(), Some("istio-system/default")); // the mesh-wide policy
    /// ```
    pub fn peer_authentication_detail(
        &self,
        namespace: &str,
        labels: &Labels,
        port: u16,
    ) -> EffectiveMtls {
        self.config.peer_authn.mode(namespace, labels, port)
    }

    /// The Gateway servers a gateway workload with these labels serves (§5).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: bookinfo-gateway}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 8080, name: http, protocol: HTTP}
    ///     hosts: [bookinfo.example.com]
    ///   - port: {number: 8443, name: https, protocol: HTTPS}
    ///     hosts: [bookinfo.example.com]
    ///     tls: {mode: SIMPLE, credentialName: bookinfo-cert}
    /// ").unwrap().snapshot();
    /// let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let servers = snap.gateway_servers(&ingress);
    /// let ports: Vec<u32> = servers.iter().map(|s| s.server.port.number).collect();
    /// assert_eq!(ports, [8080, 8443]);
    /// assert_eq!(servers[1].gateway, "default/bookinfo-gateway");
    /// assert!(snap.gateway_servers(&Labels::new()).is_empty());
    /// ```
    pub fn gateway_servers(&self, labels: &Labels) -> Vec<GatewayServer<'_>> {
        self.config.gateways.servers_for(labels)
    }

    /// The servers of the Gateways named `names` (`ns/name`).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: bookinfo-gateway, namespace: default}
    /// spec:
    ///   servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ").unwrap().snapshot();
    /// let servers = snap.gateway_servers_named(&["default/bookinfo-gateway"]);
    /// assert_eq!(servers.len(), 1);
    /// assert_eq!(servers[0].server.port.number, 8080);
    /// ```
    pub fn gateway_servers_named(&self, names: &[&str]) -> Vec<GatewayServer<'_>> {
        self.config.gateways.servers_named(names)
    }
}
/// A workload port's inbound connection pool ([`Snapshot::inbound_connection_pool`]).
///
/// # Examples
///
/// ```
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: default, namespace: foo}
/// spec:
///   ingress:
///   - port: {number: 9090, protocol: GRPC, name: grpc}
///     connectionPool: {http: {http2MaxRequests: 100}}
/// ").unwrap().snapshot();
/// let pool = snap.inbound_connection_pool("foo", &Labels::new(), 9090, None);
/// assert_eq!(pool.protocol, Some("GRPC"));
/// assert_eq!(pool.settings.unwrap().http.as_ref().unwrap().http2_max_requests, Some(100));
/// // nothing for another port: Envoy's defaults (no limits)
/// assert_eq!(snap.inbound_connection_pool("foo", &Labels::new(), 8080, None).settings, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundPool<'a> {
    /// The settings that apply, if any source sets them.
    pub settings: Option<&'a crate::model::ConnectionPoolSettings>,
    /// The port's declared protocol (the Sidecar `ingress` listener's, else the service
    /// port's), which decides how Envoy's inbound cluster speaks to the application
    /// (`HTTP2`/`GRPC`: HTTP/2; `HTTP`: HTTP/1.1; unknown: the caller's protocol).
    pub protocol: Option<&'a str>,
    /// The settings' `http.useClientProtocol`: the caller's protocol whatever the port's.
    pub use_client_protocol: bool,
}
