//! Which services and VirtualServices a client workload's `Sidecar` imports (its `egress`
//! hosts).
//!
//! Istio picks one Sidecar per workload: the oldest Sidecar of its namespace whose
//! `workloadSelector` matches its labels, else its namespace's Sidecar without a selector,
//! else the selector-less Sidecar of the root namespace (the mesh default). Its `egress`
//! listeners import hosts as `namespace/dnsName`: the namespace `*` (any), `.` (the
//! workload's own: for the root namespace's default too, as istiod converts it per
//! namespace), `~` (none) or a name; the name `*`, a `*.suffix` wildcard or an exact host.
//! A listener with a `port` imports its hosts on that port only; one without, on every
//! port. A workload without any Sidecar imports everything.
//!
//! VirtualServices are imported per port by the listener for that port (the one with the
//! port, else the one without), by their own namespace (where the VirtualService object
//! lives) and their hosts, wildcards on either side ([`SidecarScope::imports_virtual_service`]);
//! [`Snapshot::route_http`](crate::snapshot::Snapshot::route_http) and the L4 routes apply
//! only those, and a request whose VirtualService is not imported takes the default route.
//! A Sidecar without `egress` imports `*/*`, as istiod gives it.
//!
//! A Sidecar also imports the services its imported VirtualServices route to, as istiod's
//! SidecarScope does: importing `istio-system/*` brings in a VirtualService of
//! `istio-system` that sends traffic to `ratings.prod.svc.cluster.local`, and with it the
//! ratings service, though `prod/*` is not listed. For each egress listener and each
//! VirtualService it imports (whatever the port; exported to the client), every destination
//! host of its routes (HTTP routes and mirrors, TLS, TCP; an HTTP route whose matches name
//! only other source namespaces does not count) names one service of that exact host: the
//! one in the client's namespace, else the one in the alphabetically first namespace that
//! exports it to the client. A listener with a port imports it on that port only, and only
//! when the service has it; one without, on the ports the destinations name (every port
//! when one names none; none of the service's: not imported). Services the egress hosts
//! import by name take priority: a destination host they import from another namespace
//! adds nothing. This is computed when the snapshot is built, per client namespace for the
//! root namespace's default; [`SidecarScope::imports`] answers for both kinds of import.
//!
//! A service a Sidecar does not import is, for Envoy, not a cluster at all: under
//! `REGISTRY_ONLY` its traffic is black-holed (502), under `ALLOW_ANY` it passes through to
//! the original destination (for an in-process client, the host and port the request
//! names; see [`Snapshot::outbound_mode`](crate::snapshot::Snapshot::outbound_mode)).
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::Labels;
//!
//! let snap = mesh_core::mesh::Mesh::from_yaml(r#"
//! apiVersion: networking.istio.io/v1
//! kind: Sidecar
//! metadata: {name: default, namespace: prod}
//! spec:
//!   egress:
//!   - hosts: ["./*", "istio-system/*"]
//! "#).unwrap().snapshot();
//! let web: Labels = [("app".to_string(), "web".to_string())].into();
//! let scope = snap.sidecar_for("prod", &web).unwrap();
//! assert_eq!(scope.name(), "prod/default");
//! assert!(scope.imports("prod", "prod", "db.prod.svc.cluster.local", 5432));
//! assert!(!scope.imports("prod", "dev", "db.dev.svc.cluster.local", 5432));
//! assert!(snap.sidecar_for("dev", &web).is_none(), "dev has no Sidecar: everything");
//! ```
//!
//! A VirtualService the Sidecar imports brings in the services it routes to:
//!
//! ```
//! use mesh_core::model::Labels;
//!
//! let snap = mesh_core::mesh::Mesh::from_yaml(r#"
//! apiVersion: networking.istio.io/v1
//! kind: Sidecar
//! metadata: {name: default, namespace: istio-system}
//! spec:
//!   egress:
//!   - hosts: ["./*", "istio-system/*"]
//! ---
//! apiVersion: v1
//! kind: Service
//! metadata: {name: ratings, namespace: prod}
//! spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
//! ---
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: ratings, namespace: istio-system}
//! spec:
//!   hosts: [ratings.example.com]
//!   http: [{route: [{destination: {host: ratings.prod.svc.cluster.local}}]}]
//! "#).unwrap().snapshot();
//! let scope = snap.sidecar_for("shop", &Labels::default()).unwrap();
//! assert!(scope.imports("shop", "prod", "ratings.prod.svc.cluster.local", 9080));
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::model::{ConfigObject, ConnectionPoolSettings, Labels, OutboundMode, Spec};
use crate::names::{labels_match, ExportTo, MeshOptions};
use crate::registry::{DnsCache, Registry, Service, ServiceDefs, ServiceOrigin};
use crate::route::RouteTable;

/// The namespace part of an egress host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NsSel {
    /// `*`
    Any,
    /// `.`: the workload's namespace.
    Own,
    /// `~`: no namespace.
    Nothing,
    /// A namespace by name.
    Named(Box<str>),
}

/// One egress listener: its port (`None`: every port) and the hosts it imports.
#[derive(Debug, Clone)]
struct Listener {
    port: Option<u16>,
    /// The port services must have to be imported (istiod's `needsPortMatch`): the port,
    /// unless the listener is an `HTTP_PROXY`.
    match_port: Option<u16>,
    hosts: Vec<(NsSel, Box<str>)>,
}

impl Listener {
    /// Whether it imports a VirtualService of `vs_ns` with `vs_hosts` for a client of
    /// `client_ns`.
    fn imports_virtual_service<H: AsRef<str>>(
        &self,
        client_ns: &str,
        vs_ns: &str,
        vs_hosts: &[H],
    ) -> bool {
        self.hosts.iter().any(|(ns, name)| {
            ns.selects(vs_ns, client_ns)
                && vs_hosts
                    .iter()
                    .any(|h| crate::model::host::matches(name, h.as_ref()))
        })
    }

    /// Whether its hosts import the service `s` for a client of `client_ns`.
    fn imports_service(&self, client_ns: &str, s: &Service) -> bool {
        self.match_port.is_none_or(|p| s.port(p).is_some())
            && self.hosts.iter().any(|(ns, name)| {
                ns.selects(&s.namespace, client_ns) && host_matches(name, &s.hostname)
            })
    }
}

/// A service imported because an imported VirtualService routes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoutedService {
    /// The namespace of the service chosen for the host.
    namespace: Arc<str>,
    /// The ports it is imported on (`None`: every port).
    ports: Option<Box<[u16]>>,
}

/// Services imported as VirtualService destinations, by host.
type RoutedServices = HashMap<Box<str>, RoutedService>;

/// The client namespace standing for every namespace the config does not name (no
/// namespace, exportTo list or sourceNamespace is `*`): they all import the same.
const OTHER_NAMESPACES: &str = "*";

/// A compiled `Sidecar`: the services it imports.
///
/// # Examples
///
/// A listener with a port imports its hosts on that port only:
///
/// ```
/// use mesh_core::model::Labels;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
/// apiVersion: networking.istio.io/v1
/// kind: Sidecar
/// metadata: {name: ratings, namespace: prod}
/// spec:
///   workloadSelector: {labels: {app: ratings}}
///   egress:
///   - port: {number: 9080, protocol: HTTP, name: http}
///     hosts: ["prod/reviews.prod.svc.cluster.local"]
///   - hosts: ["*/*.example.com"]
///   outboundTrafficPolicy: {mode: REGISTRY_ONLY}
/// "#).unwrap().snapshot();
/// let ratings: Labels = [("app".to_string(), "ratings".to_string())].into();
/// let scope = snap.sidecar_for("prod", &ratings).unwrap();
/// assert!(scope.imports("prod", "prod", "reviews.prod.svc.cluster.local", 9080));
/// assert!(!scope.imports("prod", "prod", "reviews.prod.svc.cluster.local", 8080));
/// assert!(scope.imports("prod", "external", "api.example.com", 443));
/// assert!(scope.registry_only());
/// ```
#[derive(Debug, Clone)]
pub struct SidecarScope {
    name: Arc<str>,
    listeners: Vec<Listener>,
    outbound_mode: Option<OutboundMode>,
    egress_proxy: Option<crate::model::Destination>,
    /// Services imported as VirtualService destinations, for the client namespaces where
    /// they differ from `routed_other`.
    routed: HashMap<Box<str>, RoutedServices>,
    /// ... and for every other client namespace.
    routed_other: RoutedServices,
    /// `ingress` listeners' ports, declared protocols and connection pools, in order.
    ingress: Vec<(u16, Box<str>, Option<ConnectionPoolSettings>)>,
    /// `inboundConnectionPool`.
    inbound_pool: Option<ConnectionPoolSettings>,
}

impl SidecarScope {
    fn compile(o: &ConfigObject, sc: &crate::model::Sidecar) -> SidecarScope {
        let mut listeners: Vec<Listener> = sc
            .egress
            .iter()
            .map(|l| {
                let port = l
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok())
                    .filter(|p| *p != 0);
                let http_proxy = l
                    .port
                    .as_ref()
                    .is_some_and(|p| p.protocol.eq_ignore_ascii_case("HTTP_PROXY"));
                Listener {
                    port,
                    match_port: port.filter(|_| !http_proxy),
                    hosts: l
                        .hosts
                        .iter()
                        .filter_map(|h| {
                            let (ns, name) = h.split_once('/')?;
                            let ns = match ns {
                                "*" => NsSel::Any,
                                "." => NsSel::Own,
                                "~" => NsSel::Nothing,
                                n => NsSel::Named(n.into()),
                            };
                            Some((ns, name.to_ascii_lowercase().into()))
                        })
                        .collect(),
                }
            })
            .collect();
        if listeners.is_empty() {
            // no egress: istiod gives the scope one listener importing `*/*`
            listeners.push(Listener {
                port: None,
                match_port: None,
                hosts: vec![(NsSel::Any, "*".into())],
            });
        }
        SidecarScope {
            name: o.key().into(),
            listeners,
            // the block present without a mode is REGISTRY_ONLY (the proto's zero value)
            outbound_mode: sc.outbound_traffic_policy.as_ref().map(|p| p.mode),
            egress_proxy: sc
                .outbound_traffic_policy
                .as_ref()
                .and_then(|p| p.egress_proxy.clone()),
            routed: HashMap::new(),
            routed_other: HashMap::new(),
            ingress: sc
                .ingress
                .iter()
                .filter_map(|l| {
                    let p = l.port.as_ref()?;
                    Some((
                        u16::try_from(p.number).ok()?,
                        p.protocol.as_str().into(),
                        l.connection_pool.clone(),
                    ))
                })
                .collect(),
            inbound_pool: sc.inbound_connection_pool.clone(),
        }
    }

    /// The connection pool of the workload's inbound `port` this Sidecar sets, as istiod's
    /// `InboundConnectionPoolForPort`: the first `ingress` listener for that port with a
    /// `connectionPool`, else its `inboundConnectionPool` (the whole block, not merged
    /// field by field); `None` leaves it to the DestinationRule. A Sidecar with `ingress`
    /// listeners, none of them for `port`, sets nothing there: istiod sends that port's
    /// traffic through its passthrough cluster, with no limits (see
    /// [`SidecarScope::has_ingress`]).
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
    /// spec:
    ///   ingress:
    ///   - port: {number: 9080, protocol: HTTP, name: http}
    ///     connectionPool: {http: {http2MaxRequests: 10}}
    ///   - port: {number: 9090, protocol: GRPC, name: grpc}
    ///   inboundConnectionPool: {tcp: {maxConnections: 5}}
    /// "#).unwrap().snapshot();
    /// let scope = snap.sidecar_for("prod", &Labels::new()).unwrap();
    /// let http = scope.inbound_connection_pool(9080).unwrap().http.as_ref().unwrap();
    /// assert_eq!(http.http2_max_requests, Some(10));
    /// let grpc = scope.inbound_connection_pool(9090).unwrap();
    /// assert_eq!(grpc.tcp.as_ref().unwrap().max_connections, Some(5));
    /// assert!(scope.inbound_connection_pool(8080).is_none(), "not an ingress port");
    /// ```
    pub fn inbound_connection_pool(&self, port: u16) -> Option<&ConnectionPoolSettings> {
        let mut listeners = self.ingress.iter().filter(|(p, ..)| *p == port).peekable();
        if !self.ingress.is_empty() && listeners.peek().is_none() {
            return None;
        }
        listeners
            .find_map(|(_, _, pool)| pool.as_ref())
            .or(self.inbound_pool.as_ref())
    }

    /// Whether this Sidecar declares `ingress` listeners: then they alone are the
    /// workload's inbound ports (istiod builds its inbound clusters from them, not from
    /// the services that select the workload).
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
    /// spec: {inboundConnectionPool: {tcp: {maxConnections: 5}}}
    /// "#).unwrap().snapshot();
    /// assert!(!snap.sidecar_for("prod", &Labels::new()).unwrap().has_ingress());
    /// ```
    pub fn has_ingress(&self) -> bool {
        !self.ingress.is_empty()
    }

    /// The protocol an `ingress` listener of this Sidecar declares for `port`, if one does.
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
    /// spec:
    ///   ingress: [{port: {number: 9090, protocol: GRPC, name: grpc}}]
    /// "#).unwrap().snapshot();
    /// let scope = snap.sidecar_for("prod", &Labels::new()).unwrap();
    /// assert_eq!(scope.ingress_protocol(9090), Some("GRPC"));
    /// assert_eq!(scope.ingress_protocol(9080), None);
    /// ```
    pub fn ingress_protocol(&self, port: u16) -> Option<&str> {
        self.ingress
            .iter()
            .find(|(p, ..)| *p == port)
            .map(|(_, proto, _)| &**proto)
    }

    /// Computes the services its VirtualServices route to, for the client namespaces
    /// `client_namespaces` and for any other.
    fn import_destinations<'a>(
        &mut self,
        index: &DestinationIndex<'_>,
        client_namespaces: impl IntoIterator<Item = &'a str>,
    ) {
        self.routed_other = self.routed_services(OTHER_NAMESPACES, index);
        for ns in client_namespaces {
            let routed = self.routed_services(ns, index);
            if routed != self.routed_other {
                self.routed.insert(ns.into(), routed);
            }
        }
    }

    /// The services the VirtualServices it imports route to, for a client of `client_ns`
    /// (istiod's SidecarScope services inferred from VirtualService destinations).
    fn routed_services(&self, client_ns: &str, index: &DestinationIndex<'_>) -> RoutedServices {
        let mut out = RoutedServices::new();
        let mut dests: Vec<(&str, Option<u16>)> = Vec::new();
        for l in &self.listeners {
            for (i, vs) in index.routes.mesh_virtual_services() {
                if !vs.export_to.visible_to(client_ns)
                    || !l.imports_virtual_service(client_ns, &vs.namespace, &vs.hosts)
                {
                    continue;
                }
                dests.clear();
                index
                    .routes
                    .for_each_destination(i, client_ns, |h, p| dests.push((h, p)));
                dests.sort_unstable();
                dests.dedup();
                for group in dests.chunk_by(|a, b| a.0 == b.0) {
                    let host = group[0].0;
                    let Some(svc) = index.pick(host, client_ns) else {
                        continue;
                    };
                    // the egress hosts' own choice of a namespace for the host wins
                    if index.hosts(host).iter().any(|t| {
                        t.namespace != svc.namespace
                            && (*t.namespace == *client_ns || t.export_to.visible_to(client_ns))
                            && self
                                .listeners
                                .iter()
                                .any(|l| l.imports_service(client_ns, t))
                    }) {
                        continue;
                    }
                    let ports = match l.match_port {
                        Some(p) if svc.port(p).is_some() => Some(vec![p]),
                        Some(_) => continue,
                        None if svc.ports.is_empty() || group.iter().any(|d| d.1.is_none()) => None,
                        None => {
                            let named: Vec<u16> = svc
                                .ports
                                .iter()
                                .map(|p| p.number)
                                .filter(|n| group.iter().any(|d| d.1 == Some(*n)))
                                .collect();
                            if named.is_empty() {
                                // none of the service's ports: istiod leaves it out
                                continue;
                            }
                            (named.len() < svc.ports.len()).then_some(named)
                        }
                    };
                    match out.get_mut(host) {
                        None => {
                            let namespace = svc.namespace.clone();
                            let ports = ports.map(Vec::into_boxed_slice);
                            out.insert(host.into(), RoutedService { namespace, ports });
                        }
                        // the first namespace chosen for a host stays; ports add up
                        Some(have) if have.namespace == svc.namespace => {
                            have.ports = match (have.ports.take(), ports) {
                                (Some(had), Some(more)) => {
                                    let mut all = had.into_vec();
                                    all.extend(more);
                                    all.sort_unstable();
                                    all.dedup();
                                    Some(all.into_boxed_slice())
                                }
                                _ => None,
                            };
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        out
    }

    /// The Sidecar's `namespace/name`.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec: {egress: [{hosts: ['./*']}]}\n",
    /// ).unwrap().snapshot();
    /// // the root namespace's Sidecar is every namespace's default
    /// let scope = snap.sidecar_for("shop", &Default::default()).unwrap();
    /// assert_eq!(scope.name(), "istio-system/default");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its `outboundTrafficPolicy` is `REGISTRY_ONLY` (a mesh-wide default is not
    /// known here).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {egress: [{hosts: ['./*']}], outboundTrafficPolicy: {mode: ALLOW_ANY}}\n",
    /// ).unwrap().snapshot();
    /// assert!(!snap.sidecar_for("shop", &Default::default()).unwrap().registry_only());
    /// ```
    pub fn registry_only(&self) -> bool {
        self.outbound_mode == Some(OutboundMode::RegistryOnly)
    }

    /// Its `outboundTrafficPolicy.mode`, if it has the block (`None`: the MeshConfig's
    /// mode applies, see [`Snapshot::outbound_mode`](crate::snapshot::Snapshot::outbound_mode)).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::OutboundMode;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {egress: [{hosts: ['./*']}]}\n",
    /// ).unwrap().snapshot();
    /// assert_eq!(snap.sidecar_for("shop", &Default::default()).unwrap().outbound_traffic_policy(), None);
    /// ```
    pub fn outbound_traffic_policy(&self) -> Option<OutboundMode> {
        self.outbound_mode
    }

    /// Its `outboundTrafficPolicy.egressProxy`: where Envoy sends, under `ALLOW_ANY`, the
    /// traffic it has no cluster for, instead of passing it through (mesh-tower's client
    /// does the same: the proxy's cluster, the Host kept).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: egress.istio-system.svc.cluster.local, port: {number: 443}}}}\n",
    /// ).unwrap().snapshot();
    /// let scope = snap.sidecar_for("shop", &Default::default()).unwrap();
    /// assert_eq!(scope.egress_proxy().unwrap().host, "egress.istio-system.svc.cluster.local");
    /// ```
    pub fn egress_proxy(&self) -> Option<&crate::model::Destination> {
        self.egress_proxy.as_ref()
    }

    /// Whether a workload of `client_ns` using this Sidecar imports the service `host`
    /// (an FQDN or a ServiceEntry host, lower case as the registry has it) defined in
    /// `service_ns`, on `port`: its egress hosts import it, or a VirtualService it imports
    /// routes to it (see the [module docs](crate::sidecar)).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {egress: [{hosts: ['./*', 'payments/*.payments.svc.cluster.local', '~/*']}]}\n",
    /// ).unwrap().snapshot();
    /// let scope = snap.sidecar_for("shop", &Default::default()).unwrap();
    /// assert!(scope.imports("shop", "shop", "cart.shop.svc.cluster.local", 80));
    /// assert!(scope.imports("shop", "payments", "card.payments.svc.cluster.local", 443));
    /// assert!(!scope.imports("shop", "audit", "log.audit.svc.cluster.local", 80));
    ///
    /// // a port with an egress listener of its own takes only what that listener imports
    /// let snap = mesh_core::mesh::Mesh::from_yaml(
    ///     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec: {egress: [{port: {number: 9080, protocol: HTTP, name: http}, hosts: ['./reviews.shop.svc.cluster.local']}, {hosts: ['*/*']}]}\n",
    /// ).unwrap().snapshot();
    /// let scope = snap.sidecar_for("shop", &Default::default()).unwrap();
    /// assert!(scope.imports("shop", "shop", "reviews.shop.svc.cluster.local", 9080));
    /// assert!(!scope.imports("shop", "shop", "ratings.shop.svc.cluster.local", 9080));
    /// assert!(scope.imports("shop", "shop", "ratings.shop.svc.cluster.local", 8080));
    /// ```
    pub fn imports(&self, client_ns: &str, service_ns: &str, host: &str, port: u16) -> bool {
        // a port with an egress listener of its own is that listener's alone: istiod's
        // catch-all listener leaves it out
        let own = self.listeners.iter().any(|l| l.port == Some(port));
        self.listeners
            .iter()
            .filter(|l| {
                if own {
                    l.port == Some(port)
                } else {
                    l.port.is_none()
                }
            })
            .any(|l| {
                l.hosts
                    .iter()
                    .any(|(ns, name)| ns.selects(service_ns, client_ns) && host_matches(name, host))
            })
            || self.routes_to(client_ns, service_ns, host, port)
    }

    /// Whether a VirtualService it imports for a client of `client_ns` routes to the
    /// service `host` of `service_ns` on `port` (computed when the snapshot was built).
    fn routes_to(&self, client_ns: &str, service_ns: &str, host: &str, port: u16) -> bool {
        let routed = if self.routed.is_empty() {
            &self.routed_other
        } else {
            self.routed.get(client_ns).unwrap_or(&self.routed_other)
        };
        routed.get(host).is_some_and(|s| {
            *s.namespace == *service_ns && s.ports.as_deref().is_none_or(|p| p.contains(&port))
        })
    }

    /// Whether a workload of `client_ns` using this Sidecar sees, on `port`, the
    /// VirtualService of namespace `vs_ns` (where the VirtualService object lives, not its
    /// services) with the (resolved) `vs_hosts`.
    ///
    /// As istiod builds a sidecar's routes: the egress listener for the port is the first
    /// one with that port, else the one without a port; the VirtualService is imported when
    /// one of that listener's hosts names its namespace (`*`, `.` for the workload's own, or
    /// the name) and a dnsName that overlaps one of its hosts (either side may be a
    /// wildcard: `*.example.com` imports a VirtualService for `api.example.com`, and `*/*`
    /// one for `*.example.com`). `exportTo` is checked apart, as without a Sidecar.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml(r#"
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: default, namespace: shop}
    /// spec:
    ///   egress:
    ///   - port: {number: 9080, protocol: HTTP, name: http}
    ///     hosts: ["*/reviews.bookinfo.svc.cluster.local"]
    ///   - hosts: ["./*"]
    /// "#).unwrap().snapshot();
    /// let scope = snap.sidecar_for("shop", &Default::default()).unwrap();
    /// let reviews = ["reviews.bookinfo.svc.cluster.local"];
    /// // on 9080 the first listener imports a VirtualService for reviews from any namespace
    /// assert!(scope.imports_virtual_service("shop", "bookinfo", &reviews, 9080));
    /// assert!(scope.imports_virtual_service("shop", "shop", &reviews, 9080));
    /// // on other ports the catch-all listener imports only the shop namespace's
    /// assert!(!scope.imports_virtual_service("shop", "bookinfo", &reviews, 80));
    /// assert!(scope.imports_virtual_service("shop", "shop", &reviews, 80));
    /// ```
    pub fn imports_virtual_service<H: AsRef<str>>(
        &self,
        client_ns: &str,
        vs_ns: &str,
        vs_hosts: &[H],
        port: u16,
    ) -> bool {
        self.listener_for(port)
            .is_some_and(|l| l.imports_virtual_service(client_ns, vs_ns, vs_hosts))
    }

    /// The egress listener routing `port`: the first with that port, else the first
    /// without a port (istiod's `GetEgressListenerForRDS`).
    fn listener_for(&self, port: u16) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| l.port == Some(port))
            .or_else(|| self.listeners.iter().find(|l| l.port.is_none()))
    }
}

impl NsSel {
    /// Whether it selects config or services of namespace `ns` for a workload of
    /// `client_ns`.
    fn selects(&self, ns: &str, client_ns: &str) -> bool {
        match self {
            NsSel::Any => true,
            NsSel::Own => ns == client_ns,
            NsSel::Nothing => false,
            NsSel::Named(n) => **n == *ns,
        }
    }
}

/// An egress `dnsName` against a service host: `*`, `*.suffix` (the host ends with it),
/// or the same name (ASCII case-insensitively).
fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            host.len() > suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// What the services a Sidecar's VirtualServices route to are looked up in, built once per
/// snapshot (when it has a Sidecar).
struct DestinationIndex<'a> {
    routes: &'a RouteTable,
    /// Services by exact host, in load order.
    services: HashMap<&'a str, Vec<&'a Service>>,
}

impl<'a> DestinationIndex<'a> {
    fn new(routes: &'a RouteTable, registry: &'a Registry) -> Self {
        let mut services: HashMap<&str, Vec<&Service>> = HashMap::new();
        for s in registry.services() {
            services.entry(&s.hostname).or_default().push(s);
        }
        DestinationIndex { routes, services }
    }

    /// The services of exactly `host`.
    fn hosts(&self, host: &str) -> &[&'a Service] {
        self.services.get(host).map_or(&[], Vec::as_slice)
    }

    /// The service a VirtualService destination `host` names for a client of `client_ns`,
    /// as istiod picks it: the one in the client's namespace, else the one in the
    /// alphabetically first namespace exporting it to the client (a Kubernetes Service
    /// before a ServiceEntry of the same namespace, then load order).
    fn pick(&self, host: &str, client_ns: &str) -> Option<&'a Service> {
        let list = self.hosts(host);
        let kube_first = |s: &&&Service| s.origin != ServiceOrigin::Kubernetes;
        list.iter()
            .filter(|s| *s.namespace == *client_ns)
            .min_by_key(kube_first)
            .or_else(|| {
                list.iter()
                    .filter(|s| s.export_to.visible_to(client_ns))
                    .min_by_key(|s| (&*s.namespace, kube_first(s)))
            })
            .copied()
    }
}

/// Every namespace the config names where it can tell one client namespace from another:
/// objects' namespaces, `exportTo` lists and HTTP routes' `sourceNamespace`s.
fn named_namespaces<'a>(
    objects: &'a [ConfigObject],
    routes: &'a RouteTable,
    registry: &'a Registry,
    opts: &'a MeshOptions,
) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    out.insert(opts.root_namespace.as_str());
    for o in objects {
        out.insert(o.metadata.namespace.as_str());
        if let Spec::VirtualService(vs) = &o.spec {
            for r in &vs.http {
                out.extend(
                    r.matches
                        .iter()
                        .filter_map(|m| m.source_namespace.as_deref()),
                );
            }
        }
    }
    let exports = routes
        .mesh_virtual_services()
        .map(|(_, vs)| &vs.export_to)
        .chain(registry.services().map(|s| &s.export_to));
    for e in exports {
        if let ExportTo::Namespaces(list) = e {
            out.extend(list.iter().map(|n| &**n));
        }
    }
    out
}

/// A namespace's Sidecars: those with a selector (oldest first), and the one without.
#[derive(Debug, Clone, Default)]
struct NamespaceSidecars {
    selected: Vec<(Labels, Arc<SidecarScope>)>,
    default: Option<Arc<SidecarScope>>,
}

/// The Sidecars of a snapshot, by namespace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sidecars {
    by_ns: HashMap<String, NamespaceSidecars>,
    /// The root namespace's Sidecar without a selector: every namespace's default.
    mesh_default: Option<Arc<SidecarScope>>,
}

impl Sidecars {
    /// Compiles the Sidecars, with the services the VirtualServices of `routes` they import
    /// route to among `services`.
    pub(crate) fn build(
        objects: &[ConfigObject],
        opts: &MeshOptions,
        routes: &RouteTable,
        services: &ServiceDefs,
    ) -> Sidecars {
        let mut all: Vec<(&ConfigObject, &crate::model::Sidecar)> = objects
            .iter()
            .filter_map(|o| match &o.spec {
                Spec::Sidecar(sc) => Some((o, sc)),
                _ => None,
            })
            .collect();
        // the oldest first, ties by name then namespace, as istiod sorts them
        all.sort_by(|a, b| a.0.istio_order(b.0));
        let mut out = Sidecars::default();
        if all.is_empty() {
            return out;
        }
        // the services as the registry has them (ports, exportTo), without endpoints
        let registry = Registry::build(services, Arc::from(Vec::new()), &DnsCache::new(), opts);
        let index = DestinationIndex::new(routes, &registry);
        let mut namespaces = None;
        for (o, sc) in all {
            let ns = o.metadata.namespace.as_str();
            // a selector without labels is still a selector (istiod checks
            // `WorkloadSelector == nil`): it selects every workload of its own namespace,
            // ahead of the namespace's selector-less Sidecar, and is never the mesh default
            let selector = sc.workload_selector.as_ref().map(|s| &s.labels);
            let mut scope = SidecarScope::compile(o, sc);
            if selector.is_none() && ns == opts.root_namespace && out.mesh_default.is_none() {
                // the mesh default: every client namespace
                let names = namespaces
                    .get_or_insert_with(|| named_namespaces(objects, routes, &registry, opts));
                scope.import_destinations(&index, names.iter().copied());
            } else {
                scope.import_destinations(&index, [ns]);
            }
            let scope = Arc::new(scope);
            let entry = out.by_ns.entry(ns.to_owned()).or_default();
            match selector {
                Some(labels) => entry.selected.push((labels.clone(), scope)),
                None => {
                    // more than one is undefined (IST0111): the oldest stays
                    if entry.default.is_none() {
                        entry.default = Some(Arc::clone(&scope));
                    }
                    if ns == opts.root_namespace && out.mesh_default.is_none() {
                        out.mesh_default = Some(scope);
                    }
                }
            }
        }
        out
    }

    /// True when the snapshot has no Sidecar at all: the request path skips the lookup.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.mesh_default.is_none() && self.by_ns.is_empty()
    }

    /// The Sidecar of a workload in `namespace` with `labels`, if any applies.
    pub(crate) fn for_workload(&self, namespace: &str, labels: &Labels) -> Option<&SidecarScope> {
        if let Some(ns) = self.by_ns.get(namespace) {
            if let Some((_, s)) = ns
                .selected
                .iter()
                .find(|(sel, _)| labels_match(sel, labels))
            {
                return Some(s);
            }
            if let Some(s) = &ns.default {
                return Some(s);
            }
        }
        self.mesh_default.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[(&str, &str)]) -> Labels {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_selector_is_a_selector() {
        // istiod: `WorkloadSelector == nil` makes the root namespace's default; an empty
        // one selects every workload of its own namespace, ahead of the selector-less one
        let loaded = crate::load::load_str(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: empty, namespace: istio-system}
spec:
  workloadSelector: {labels: {}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec: {egress: [{hosts: ["*/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: all, namespace: shop}
spec:
  workloadSelector: {labels: {}}
  egress: [{hosts: ["./*"]}]
"#,
            "sc.yaml",
        );
        let opts = MeshOptions::default();
        let sc = Sidecars::build(
            &loaded.objects,
            &opts,
            &RouteTable::build(&loaded.objects, &opts),
            &ServiceDefs::build(&loaded.objects, &opts),
        );
        let web = labels(&[("app", "web")]);
        assert!(sc.for_workload("blog", &web).is_none(), "no mesh default");
        assert_eq!(sc.for_workload("shop", &web).unwrap().name(), "shop/all");
        let root = sc.for_workload("istio-system", &web).unwrap();
        assert_eq!(root.name(), "istio-system/empty");
    }

    #[test]
    fn selection_order_and_host_matching() {
        let loaded = crate::load::load_str(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mesh, namespace: istio-system}
spec: {egress: [{hosts: ["./*", "istio-system/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec: {egress: [{hosts: ["*/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: cart, namespace: shop}
spec:
  workloadSelector: {labels: {app: cart}}
  egress: [{hosts: ["~/*"]}]
"#,
            "sc.yaml",
        );
        assert!(crate::check(&loaded).iter().all(|d| !d.is_error()));
        let opts = MeshOptions::default();
        let sc = Sidecars::build(
            &loaded.objects,
            &opts,
            &RouteTable::build(&loaded.objects, &opts),
            &ServiceDefs::build(&loaded.objects, &opts),
        );
        let cart = labels(&[("app", "cart")]);
        let web = labels(&[("app", "web")]);
        assert_eq!(sc.for_workload("shop", &cart).unwrap().name(), "shop/cart");
        assert_eq!(
            sc.for_workload("shop", &web).unwrap().name(),
            "shop/default"
        );
        let mesh = sc.for_workload("blog", &web).unwrap();
        assert_eq!(mesh.name(), "istio-system/mesh");
        // `.` in the mesh default is the workload's own namespace
        assert!(mesh.imports("blog", "blog", "db.blog.svc.cluster.local", 5432));
        assert!(!mesh.imports("blog", "shop", "cart.shop.svc.cluster.local", 80));
        assert!(mesh.imports(
            "blog",
            "istio-system",
            "zipkin.istio-system.svc.cluster.local",
            9411
        ));
        // `~` imports nothing
        let none = sc.for_workload("shop", &cart).unwrap();
        assert!(!none.imports("shop", "shop", "cart.shop.svc.cluster.local", 80));
        assert!(!none.registry_only());

        for (pattern, host, want) in [
            ("*", "a.b", true),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "API.Example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "api.example.org", false),
            ("api.example.com", "API.example.com", true),
            ("api.example.com", "web.example.com", false),
        ] {
            assert_eq!(host_matches(pattern, host), want, "{pattern} {host}");
        }
    }

    fn scope_of(yaml: &str) -> SidecarScope {
        let loaded = crate::load::load_str(yaml, "sc.yaml");
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let o = &loaded.objects[0];
        let Spec::Sidecar(sc) = &o.spec else {
            panic!("not a Sidecar")
        };
        SidecarScope::compile(o, sc)
    }

    #[test]
    fn virtual_service_imports() {
        let sc = scope_of(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["bookinfo/reviews.bookinfo.svc.cluster.local"]
  - port: {number: 9080, protocol: HTTP, name: http-again}
    hosts: ["*/*"]
  - hosts: ["./*", "~/*", "ext/*.example.com", "*/api.corp.org", "Mixed/API.Example.org"]
"#,
        );
        let reviews = ["reviews.bookinfo.svc.cluster.local"];
        // (client ns, VirtualService ns, VirtualService hosts, port, imported)
        let table: &[(&str, &str, &[&str], u16, bool)] = &[
            // port 9080: the first listener with the port, and only it
            ("shop", "bookinfo", &reviews, 9080, true),
            ("shop", "shop", &reviews, 9080, false),
            ("shop", "other", &reviews, 9080, false),
            // any other port: the catch-all listener
            ("shop", "bookinfo", &reviews, 80, false),
            ("shop", "shop", &reviews, 80, true),
            ("shop", "shop", &["*"], 80, true),
            // `.` is the client's namespace
            ("blog", "shop", &reviews, 80, false),
            ("blog", "blog", &reviews, 80, true),
            // wildcards on either side (Istio's bidirectional host match)
            ("shop", "ext", &["api.example.com"], 80, true),
            ("shop", "ext", &["*.example.com"], 80, true),
            ("shop", "ext", &["*.com"], 80, true),
            ("shop", "ext", &["example.com"], 80, false),
            ("shop", "ext", &["api.example.org"], 80, false),
            // any of the VirtualService's hosts will do
            ("shop", "ext", &["a.org", "b.example.com"], 80, true),
            ("shop", "anywhere", &["api.corp.org"], 80, true),
            ("shop", "anywhere", &["*.corp.org"], 80, true),
            ("shop", "anywhere", &["web.corp.org"], 80, false),
            // egress hosts are compared lower-cased; namespaces as written
            ("shop", "Mixed", &["api.example.org"], 80, true),
            ("shop", "mixed", &["api.example.org"], 80, false),
        ];
        for (client, vs_ns, hosts, port, want) in table {
            assert_eq!(
                sc.imports_virtual_service(client, vs_ns, hosts, *port),
                *want,
                "{client} {vs_ns} {hosts:?} {port}"
            );
        }
    }

    #[test]
    fn only_port_listeners_import_nothing_on_other_ports_and_no_egress_imports_all() {
        let ports_only = scope_of(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["*/*"]
"#,
        );
        assert!(ports_only.imports_virtual_service("shop", "x", &["a.x.svc.cluster.local"], 9080));
        assert!(!ports_only.imports_virtual_service("shop", "x", &["a.x.svc.cluster.local"], 80));

        let ingress_only = scope_of(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#,
        );
        assert!(ingress_only.imports("shop", "x", "a.x.svc.cluster.local", 80));
        assert!(ingress_only.imports_virtual_service("shop", "x", &["a.x.svc.cluster.local"], 80));
        assert!(ingress_only.registry_only());
    }
}

#[cfg(test)]
mod destination_tests {
    use super::*;

    const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec: {egress: [{hosts: ["./*", "istio-system/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["istio-system/*"]
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: pay}
spec: {egress: [{hosts: ["team-b/api.example.com", "istio-system/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: proxy}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP_PROXY, name: proxy}
    hosts: ["istio-system/*"]
  - hosts: ["./*"]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: prod}
spec: {ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: mirror, namespace: prod}
spec: {ports: [{name: http, port: 80}, {name: http-alt, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: prod}
spec: {ports: [{name: tcp, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: prod}
spec: {ports: [{name: http, port: 80}, {name: http-alt, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: unused, namespace: prod}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: team-b}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: team-a}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: team-c}
spec:
  hosts: [api.example.com]
  exportTo: [.]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: istio-system}
spec:
  hosts: [ratings.example.com]
  http:
  - match: [{sourceNamespace: blog}]
    route: [{destination: {host: reviews.prod.svc.cluster.local}}]
  - route: [{destination: {host: ratings.prod.svc.cluster.local, port: {number: 9080}}}]
    mirror: {host: mirror.prod.svc.cluster.local}
  tcp:
  - route: [{destination: {host: db.prod.svc.cluster.local, port: {number: 5432}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: istio-system}
spec:
  hosts: [details.example.com]
  exportTo: [blog]
  http: [{route: [{destination: {host: details.prod.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: istio-system}
spec:
  hosts: [legacy.example.com]
  http: [{route: [{destination: {host: legacy.prod.svc.cluster.local, port: {number: 7000}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: istio-system}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [api.example.com]}]
    route: [{destination: {host: api.example.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend, namespace: blog}
spec:
  hosts: [backend.example.com]
  http: [{route: [{destination: {host: backend.prod.svc.cluster.local}}]}]
"#;

    #[test]
    fn virtual_service_destinations_are_imported() {
        let loaded = crate::load::load_str(CONFIG, "config.yaml");
        assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
        let opts = MeshOptions::default();
        let routes = RouteTable::build(&loaded.objects, &opts);
        assert!(routes.errors.is_empty(), "{:?}", routes.errors);
        let sc = Sidecars::build(
            &loaded.objects,
            &opts,
            &routes,
            &ServiceDefs::build(&loaded.objects, &opts),
        );
        let svc = |name: &str| format!("{name}.prod.svc.cluster.local");
        let api = "api.example.com".to_owned();
        // (client namespace, service namespace, host, port, imported)
        let table: &[(&str, &str, String, u16, bool)] = &[
            // the mesh default, for a namespace the config names
            ("blog", "prod", svc("ratings"), 9080, true),
            ("blog", "prod", svc("ratings"), 9090, false), // the route names 9080 only
            ("blog", "prod", svc("mirror"), 80, true),     // a mirror, no port: every port
            ("blog", "prod", svc("mirror"), 9080, true),
            ("blog", "prod", svc("reviews"), 9080, true), // sourceNamespace: blog
            ("blog", "prod", svc("db"), 5432, true),      // TCP routes count
            ("blog", "prod", svc("details"), 9080, true), // exported to blog
            ("blog", "prod", svc("legacy"), 80, false),   // port 7000: none of its ports
            ("blog", "prod", svc("legacy"), 7000, false),
            ("blog", "prod", svc("backend"), 9080, true), // blog's own VirtualService (`.`)
            ("blog", "prod", svc("unused"), 9080, false), // no route to it
            ("blog", "team-a", api.clone(), 443, true),   // first namespace alphabetically
            ("blog", "team-b", api.clone(), 443, false),
            ("blog", "team-c", api.clone(), 443, false), // not exported to blog
            ("team-c", "team-c", api.clone(), 443, true), // the client's own first
            ("team-c", "team-a", api.clone(), 443, false),
            ("team-b", "team-b", api.clone(), 443, true),
            ("istio-system", "prod", svc("ratings"), 9080, true),
            // the mesh default, for a namespace the config does not name
            ("web", "prod", svc("ratings"), 9080, true),
            ("web", "prod", svc("reviews"), 9080, false),
            ("web", "prod", svc("details"), 9080, false),
            ("web", "prod", svc("backend"), 9080, false),
            ("web", "team-a", api.clone(), 443, true),
            // a listener with a port: that port, on services that have it
            ("shop", "prod", svc("ratings"), 9080, true),
            ("shop", "prod", svc("ratings"), 9090, false),
            ("shop", "prod", svc("mirror"), 9080, true),
            ("shop", "prod", svc("mirror"), 80, false),
            ("shop", "prod", svc("db"), 5432, false),
            ("shop", "prod", svc("reviews"), 9080, false),
            ("shop", "team-a", api.clone(), 443, false),
            // HTTP_PROXY listeners do not match ports
            ("proxy", "prod", svc("mirror"), 80, true),
            ("proxy", "prod", svc("db"), 5432, true),
            // a host the egress hosts import from another namespace stays theirs
            ("pay", "team-b", api.clone(), 443, true),
            ("pay", "team-a", api.clone(), 443, false),
            ("pay", "prod", svc("ratings"), 9080, true),
        ];
        for (client, ns, host, port, want) in table {
            let scope = sc.for_workload(client, &Labels::new()).unwrap();
            assert_eq!(
                scope.imports(client, ns, host, *port),
                *want,
                "{client} ({}) -> {ns}/{host}:{port}",
                scope.name()
            );
        }
        // only namespaces that differ from the rest keep their own answers
        let mesh = sc.for_workload("web", &Labels::new()).unwrap();
        assert_eq!(mesh.name(), "istio-system/default");
        let mut differ: Vec<&str> = mesh.routed.keys().map(|k| &**k).collect();
        differ.sort_unstable();
        // (team-b sees its own api.example.com)
        assert_eq!(differ, ["blog", "team-b", "team-c"]);
    }
}
