//! The service registry: services and their endpoints (spec §4).
//!
//! Sources, merged into one [`Registry`] per snapshot:
//! - Kubernetes `Service` objects from the config (`name.ns.svc.<suffix>`), whose endpoints
//!   are the registered [`Workload`]s of the same namespace matching the selector;
//! - `ServiceEntry` objects (hosts used literally): inline `endpoints`, or `workloadSelector`
//!   over `WorkloadEntry` objects and registered workloads of the same namespace; DNS and
//!   DNS_ROUND_ROBIN endpoints come from a [`DnsCache`] filled off the request path;
//! - workloads the program registers at run time with [`crate::mesh::Mesh::register`].
//!
//! Kubernetes Deployments/Pods in the config carry no addresses, so they are not endpoints;
//! a program registers its real listeners instead (ephemeral ports included).
//!
//! Registration and DNS answers change at run time while config does not, so the registry is
//! rebuilt (cheaply: no regexes, no policies) and published as a new snapshot sharing the
//! compiled config; readers still load one snapshot per request and see one consistent view.
//!
//! # Examples
//!
//! ```
//! use mesh_core::mesh::Mesh;
//! use mesh_core::registry::Workload;
//!
//! let mesh = Mesh::from_yaml("
//! apiVersion: v1
//! kind: Service
//! metadata: {name: ratings, namespace: default}
//! spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
//! ").unwrap();
//! let ratings = Workload {
//!     name: "ratings-0".into(),
//!     namespace: "default".into(),
//!     service_account: "bookinfo-ratings".into(),
//!     labels: [("app".to_string(), "ratings".to_string())].into(),
//!     address: "127.0.0.1".parse().unwrap(),
//!     ports: Default::default(),
//!     locality: None,
//!     weight: 1,
//! };
//! mesh.register(ratings);
//! let snap = mesh.snapshot();
//! let svc = snap.registry().service("ratings.default.svc.cluster.local", "default").unwrap();
//! let dial: Vec<String> = svc.targets(9080, None).map(|t| t.addr.unwrap().to_string()).collect();
//! assert_eq!(dial, ["127.0.0.1:9080"]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use ipnet::IpNet;

use crate::model::{ConfigObject, Labels, Resolution, ServiceLocation, Spec};
use crate::names::{labels_match, ExportTo, HostMap, MeshOptions};

/// A workload the program runs (a server it started), registered at run time.
///
/// Registered with [`Mesh::register`](crate::mesh::Mesh::register), it becomes an endpoint
/// of every Kubernetes Service (same namespace) and `workloadSelector` ServiceEntry whose
/// selector matches its labels.
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Workload;
///
/// let mesh = Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http, port: 9080}]
/// ").unwrap();
/// mesh.register(Workload {
///     name: "reviews-v1-0".into(),
///     namespace: "default".into(),
///     service_account: "bookinfo-reviews".into(),
///     labels: [("app", "reviews"), ("version", "v1")]
///         .map(|(k, v)| (k.to_string(), v.to_string()))
///         .into(),
///     address: "127.0.0.1".parse().unwrap(),
///     ports: [("http".to_string(), 40123)].into(), // the port it really listens on
///     locality: None,
///     weight: 0,
/// });
/// let snap = mesh.snapshot();
/// let svc = snap.registry().service("reviews.default.svc.cluster.local", "default").unwrap();
/// let target = svc.targets(9080, None).next().unwrap();
/// assert_eq!(target.addr, Some("127.0.0.1:40123".parse().unwrap()));
/// assert_eq!(target.endpoint.service_account.as_deref(), Some("bookinfo-reviews"));
/// assert_eq!(target.endpoint.weight, 1); // 0 means 1
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Workload (instance) name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (its SPIFFE identity is `<td>/ns/<namespace>/sa/<service_account>`).
    pub service_account: String,
    /// Pod-style labels (`app`, `version`).
    pub labels: Labels,
    /// Address the workload listens on.
    pub address: IpAddr,
    /// Port name (the Service's port name or `targetPort` name) → listening port. A service
    /// port without an entry uses its `targetPort`, else its number.
    pub ports: BTreeMap<String, u16>,
    /// `region/zone/subzone`.
    pub locality: Option<String>,
    /// Load-balancing weight (0 means 1).
    pub weight: u32,
}

impl Workload {
    /// A workload of `namespace` running as `service_account` at `address`, with pod-style
    /// `labels` (`app`, `version`), no named ports, no locality and weight 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::registry::Workload;
    ///
    /// let w = Workload::new("httpbin-1", "default", "httpbin", [("app", "httpbin")], "127.0.0.1".parse().unwrap())
    ///     .with_port("http", 40123);
    /// assert_eq!(w.labels["app"], "httpbin");
    /// assert_eq!(w.ports["http"], 40123);
    /// assert_eq!(w.weight, 1);
    /// ```
    pub fn new<'a>(
        name: &str,
        namespace: &str,
        service_account: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        address: IpAddr,
    ) -> Workload {
        Workload {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            address,
            ports: BTreeMap::new(),
            locality: None,
            weight: 1,
        }
    }

    /// The port the workload listens on for the service port (or `targetPort`) named `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::registry::Workload;
    ///
    /// let w = Workload::new("db-0", "default", "db", [], "10.0.0.7".parse().unwrap()).with_port("tcp", 5432);
    /// assert_eq!(w.ports["tcp"], 5432);
    /// ```
    pub fn with_port(mut self, name: &str, port: u16) -> Workload {
        self.ports.insert(name.to_owned(), port);
        self
    }
}

/// Where an endpoint is.
///
/// # Examples
///
/// ```
/// use mesh_core::registry::EndpointAddress;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: local-socket}
/// spec:
///   hosts: [uds.local]
///   ports: [{number: 80, name: http, protocol: HTTP}]
///   resolution: STATIC
///   endpoints: [{address: 'unix:///var/run/app.sock'}, {address: 10.1.0.7}]
/// ").unwrap().snapshot();
/// let svc = snap.registry().service("uds.local", "default").unwrap();
/// let addrs: Vec<&EndpointAddress> = svc.endpoints.iter().map(|e| &e.address).collect();
/// assert_eq!(
///     addrs,
///     [
///         &EndpointAddress::Unix("/var/run/app.sock".into()),
///         &EndpointAddress::Ip("10.1.0.7".parse().unwrap()),
///     ]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EndpointAddress {
    /// An IP address.
    Ip(IpAddr),
    /// A host name still to be resolved (DNS resolution).
    Hostname(Box<str>),
    /// A Unix domain socket path (`unix:///path` or `unix://@abstract`).
    Unix(Box<str>),
}

/// An endpoint of a service.
///
/// # Examples
///
/// ```
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: db, namespace: default}
/// spec:
///   hosts: [db.internal]
///   ports: [{number: 5432, name: tcp, protocol: TCP}]
///   location: MESH_INTERNAL
///   resolution: STATIC
///   endpoints:
///   - address: 10.1.0.8
///     ports: {tcp: 15432}
///     labels: {version: v2}
///     locality: us-east1/us-east1-b
///     weight: 3
/// ").unwrap().snapshot();
/// let svc = snap.registry().service("db.internal", "default").unwrap();
/// let e = &svc.endpoints[0];
/// assert_eq!(e.ports["tcp"], 15432);
/// assert_eq!(e.labels["version"], "v2");
/// assert_eq!(e.weight, 3);
/// assert_eq!(e.locality.as_deref(), Some("us-east1/us-east1-b"));
/// assert_eq!(&*e.origin, "default/db");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Address.
    pub address: EndpointAddress,
    /// Port name → endpoint port (overrides the service port's `targetPort`).
    pub ports: BTreeMap<String, u16>,
    /// Labels (subset selection).
    pub labels: Labels,
    /// Load-balancing weight (≥ 1).
    pub weight: u32,
    /// `region/zone/subzone`.
    pub locality: Option<Box<str>>,
    /// Service account name (same namespace as the service).
    pub service_account: Option<Box<str>>,
    /// Network.
    pub network: Option<Box<str>>,
    /// Where it came from: `workload/<name>`, `WorkloadEntry/<ns>/<name>`, `ServiceEntry/...`.
    pub origin: Box<str>,
    /// It serves only the service ports `ports` names: an endpoint a ServiceEntry adds to
    /// the Kubernetes Service of the same host, for the ports of the same name (istiod's
    /// EDS merges the registries' endpoints by port name).
    pub only_named_ports: bool,
}

impl Endpoint {
    /// Whether the endpoint speaks Istio mTLS, so that auto mTLS sends it mTLS: its
    /// `security.istio.io/tlsMode` label when it has one (`istio`; `disabled` or anything
    /// else: plaintext), else whether it has a service account, as istiod decides for
    /// WorkloadEntries and ServiceEntry endpoints (`getTLSModeFromWorkloadEntry`).
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: vms, namespace: default}
    /// spec:
    ///   hosts: [vms.example.internal]
    ///   location: MESH_INTERNAL
    ///   resolution: STATIC
    ///   ports: [{number: 80, name: http, protocol: HTTP}]
    ///   endpoints:
    ///   - {address: 10.0.0.1, serviceAccount: vm}
    ///   - {address: 10.0.0.2, serviceAccount: vm, labels: {security.istio.io/tlsMode: disabled}}
    ///   - {address: 10.0.0.3, labels: {security.istio.io/tlsMode: istio}}
    ///   - {address: 10.0.0.4}
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("vms.example.internal", "default").unwrap();
    /// let tls: Vec<bool> = svc.endpoints.iter().map(|e| e.istio_tls()).collect();
    /// assert_eq!(tls, [true, false, true, false]);
    /// ```
    pub fn istio_tls(&self) -> bool {
        match self.labels.get("security.istio.io/tlsMode") {
            Some(mode) => mode == "istio",
            None => self.service_account.is_some(),
        }
    }
}

/// A port of a service.
///
/// # Examples
///
/// ```
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec:
///   selector: {app: reviews}
///   ports: [{name: http-web, port: 9080, targetPort: web}]
/// ").unwrap().snapshot();
/// let svc = snap.registry().service("reviews.default.svc.cluster.local", "default").unwrap();
/// let p = svc.port(9080).unwrap();
/// assert_eq!(&*p.name, "http-web");
/// assert_eq!(&*p.protocol, "HTTP"); // Istio's protocol from the port name's prefix
/// assert_eq!(p.target_port, None);
/// assert_eq!(p.target_port_name.as_deref(), Some("web"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Name (`http`, `http-web`).
    pub name: Box<str>,
    /// Service port number.
    pub number: u16,
    /// Protocol (`HTTP`, `TCP`, ... upper-cased; empty for sniffing).
    pub protocol: Box<str>,
    /// Endpoint port by number.
    pub target_port: Option<u16>,
    /// Endpoint port by container port name (Kubernetes named `targetPort`).
    pub target_port_name: Option<Box<str>>,
}

/// Where a service came from.
///
/// # Examples
///
/// ```
/// use mesh_core::registry::ServiceOrigin;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings, namespace: default}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: httpbin-ext}
/// spec:
///   hosts: [httpbin.org]
///   ports: [{number: 80, name: http, protocol: HTTP}]
///   resolution: DNS
/// ").unwrap().snapshot();
/// let reg = snap.registry();
/// let origin = |h: &str| reg.service(h, "default").unwrap().origin;
/// assert_eq!(origin("ratings.default.svc.cluster.local"), ServiceOrigin::Kubernetes);
/// assert_eq!(origin("httpbin.org"), ServiceOrigin::ServiceEntry);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceOrigin {
    /// A Kubernetes Service.
    Kubernetes,
    /// A ServiceEntry.
    ServiceEntry,
}

/// A service: a host name with ports and endpoints.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Resolution, ServiceLocation};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: db, namespace: data}
/// spec:
///   hosts: [db.internal]
///   addresses: [240.240.0.1]
///   ports: [{number: 5432, name: tcp, protocol: TCP}]
///   location: MESH_INTERNAL
///   resolution: STATIC
///   endpoints: [{address: 10.1.0.7}, {address: 10.1.0.8}]
/// ").unwrap().snapshot();
/// let svc = snap.registry().service("db.internal", "default").unwrap();
/// assert_eq!(&*svc.object, "data/db");
/// assert_eq!(&*svc.namespace, "data");
/// assert_eq!(svc.resolution, Resolution::Static);
/// assert_eq!(svc.location, ServiceLocation::MeshInternal);
/// assert_eq!(svc.addresses[0].to_string(), "240.240.0.1/32");
/// assert_eq!(svc.endpoints.len(), 2);
/// // with no VirtualService, requests go to the service itself
/// assert_eq!(&*svc.default_destinations[0].host, "db.internal");
/// ```
#[derive(Debug, Clone)]
pub struct Service {
    /// Host name (FQDN for Kubernetes services, literal for ServiceEntries).
    pub hostname: Arc<str>,
    /// Namespace of the defining object.
    pub namespace: Arc<str>,
    /// `ns/name` of the defining object.
    pub object: Arc<str>,
    /// Kind of the defining object.
    pub origin: ServiceOrigin,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// VIPs / CIDRs.
    pub addresses: Vec<IpNet>,
    /// Resolution (Kubernetes services: STATIC).
    pub resolution: Resolution,
    /// Mesh internal or external.
    pub location: ServiceLocation,
    /// Visibility.
    pub export_to: ExportTo,
    /// SANs to expect on its certificates.
    pub subject_alt_names: Vec<Box<str>>,
    /// Endpoints (DNS names already replaced by resolved addresses when known).
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The route to the service itself when no VirtualService applies.
    pub default_destinations: Box<[crate::route::WeightedDestination]>,
    /// A Kubernetes Service's `trafficDistribution` (or its
    /// `networking.istio.io/traffic-distribution` annotation): the locality preference its
    /// clients get when no DestinationRule sets `localityLbSetting`.
    pub traffic_distribution: TrafficDistribution,
    /// A Kubernetes Service's `internalTrafficPolicy: Local` (istiod's `NodeLocal`): a
    /// client reaches only the endpoints on its own node (the `kubernetes.io/hostname`
    /// label, which istiod gives every endpoint and proxy from its node's name), none if
    /// there is none there.
    ///
    /// # Examples
    ///
    /// ```
    /// let mesh = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: node-agent, namespace: default}
    /// spec:
    ///   selector: {app: node-agent}
    ///   ports: [{name: http, port: 8080}]
    ///   internalTrafficPolicy: Local
    /// ")?;
    /// let snap = mesh.snapshot();
    /// assert!(snap.registry().service("node-agent.default.svc.cluster.local", "default").unwrap().node_local);
    /// # Ok::<(), mesh_core::mesh::ReloadError>(())
    /// ```
    pub node_local: bool,
    /// A headless Kubernetes Service (`clusterIP: None`), istiod's `Passthrough` resolution:
    /// its pods are reached by their own names as well (`web-0.db.ns.svc.cluster.local`,
    /// StatefulSets), routed by the Service (see [`Service::pod_name`]).
    pub headless: bool,
    /// A Kubernetes `ExternalName` Service's target (`externalName`, lower case, no final
    /// dot). When the registry knows that host, requests to this one are routed as requests
    /// to it (istiod's alias mode, on by default since Istio 1.21: the alias is one more
    /// name of the target's virtual hosts); otherwise the name is resolved by DNS and
    /// dialed outside the mesh.
    pub alias_of: Option<Arc<str>>,
}

/// A Kubernetes Service's `trafficDistribution`, as istiod reads it
/// (`GetTrafficDistribution`): the field (`PreferClose` and `PreferSameZone`,
/// `PreferSameNode`), else the `networking.istio.io/traffic-distribution` annotation (any
/// case). Without a DestinationRule `localityLbSetting`, a preference is a
/// `failoverPriority` that needs no outlier detection: `[topology.istio.io/network,
/// topology.kubernetes.io/region, topology.kubernetes.io/zone]` (same zone), with
/// `topology.istio.io/subzone` and `kubernetes.io/hostname` after them (same node).
///
/// # Examples
///
/// ```
/// use mesh_core::registry::TrafficDistribution;
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: reviews, namespace: default}
/// spec: {trafficDistribution: PreferClose, selector: {app: reviews}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: v1
/// kind: Service
/// metadata:
///   name: ratings
///   namespace: default
///   annotations: {networking.istio.io/traffic-distribution: PreferSameNode}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ").unwrap().snapshot();
/// let td = |h| snap.registry().service(h, "default").unwrap().traffic_distribution;
/// assert_eq!(td("reviews.default.svc.cluster.local"), TrafficDistribution::PreferSameZone);
/// assert_eq!(td("ratings.default.svc.cluster.local"), TrafficDistribution::PreferSameNode);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrafficDistribution {
    /// No preference.
    #[default]
    Any,
    /// `PreferSameZone` (and `PreferClose`): the client's zone, then region, then network.
    PreferSameZone,
    /// `PreferSameNode`: the client's node, then subzone, zone, region, network.
    PreferSameNode,
}

impl TrafficDistribution {
    /// The `failoverPriority` labels istiod gives the preference (`GetLocalityLbSetting`);
    /// empty for [`TrafficDistribution::Any`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::registry::TrafficDistribution;
    ///
    /// assert_eq!(TrafficDistribution::PreferSameZone.failover_priority().len(), 3);
    /// assert!(TrafficDistribution::Any.failover_priority().is_empty());
    /// ```
    pub fn failover_priority(self) -> &'static [&'static str] {
        match self {
            TrafficDistribution::Any => &[],
            TrafficDistribution::PreferSameZone => &[
                "topology.istio.io/network",
                "topology.kubernetes.io/region",
                "topology.kubernetes.io/zone",
            ],
            TrafficDistribution::PreferSameNode => &[
                "topology.istio.io/network",
                "topology.kubernetes.io/region",
                "topology.kubernetes.io/zone",
                "topology.istio.io/subzone",
                "kubernetes.io/hostname",
            ],
        }
    }

    fn of_kube(spec: Option<&str>, annotation: Option<&str>) -> Self {
        match spec {
            Some("PreferSameZone" | "PreferClose") => return TrafficDistribution::PreferSameZone,
            Some("PreferSameNode") => return TrafficDistribution::PreferSameNode,
            _ => {}
        }
        match annotation.map(str::to_ascii_lowercase).as_deref() {
            Some("preferclose" | "prefersamezone") => TrafficDistribution::PreferSameZone,
            Some("prefersamenode") => TrafficDistribution::PreferSameNode,
            _ => TrafficDistribution::Any,
        }
    }
}

/// An endpoint ready to dial for one service port.
///
/// # Examples
///
/// ```
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: db}
/// spec:
///   hosts: [db.internal]
///   ports: [{number: 5432, name: tcp, protocol: TCP, targetPort: 6432}]
///   location: MESH_INTERNAL
///   resolution: STATIC
///   endpoints: [{address: 10.1.0.7}, {address: 10.1.0.8, ports: {tcp: 15432}}]
/// ").unwrap().snapshot();
/// let svc = snap.registry().service("db.internal", "default").unwrap();
/// let dial: Vec<String> = svc
///     .targets(5432, None)
///     .map(|t| t.addr.unwrap().to_string())
///     .collect();
/// // the service's targetPort, unless the endpoint names its own port
/// assert_eq!(dial, ["10.1.0.7:6432", "10.1.0.8:15432"]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// Socket address (`None` for Unix sockets and unresolved names).
    pub addr: Option<SocketAddr>,
    /// Endpoint port.
    pub port: u16,
}

impl Service {
    /// The port with this number.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: httpbin-ext}
    /// spec:
    ///   hosts: [httpbin.org]
    ///   ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
    ///   resolution: DNS
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("httpbin.org", "default").unwrap();
    /// assert_eq!(svc.port(443).map(|p| &*p.protocol), Some("HTTPS"));
    /// assert!(svc.port(8080).is_none());
    /// ```
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        // (a UDP port, which Istio serves no listener for, does not hide the TCP one of
        // the same number: kube-dns's `dns` and `dns-tcp` on 53)
        let mut ports = self.ports.iter().filter(|p| p.number == number);
        let first = ports.next()?;
        match &*first.protocol {
            "UDP" => ports.find(|p| &*p.protocol != "UDP").or(Some(first)),
            _ => Some(first),
        }
    }

    /// The pod `host` names when it is one of this headless Service's pods by the DNS
    /// name Kubernetes gives it (`<hostname>.<service>.<namespace>.svc.<domain>`, or the
    /// shorter forms `<hostname>.<service>[.<namespace>[.svc]]`): its first label, else
    /// `None` (also for a Service that is not headless). `host` is lower case, without a
    /// port. A registered [`Workload`]'s name is its pod's host name.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: db, namespace: data}
    /// spec: {clusterIP: None, selector: {app: db}, ports: [{name: http, port: 8080}]}
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("db.data.svc.cluster.local", "data").unwrap();
    /// assert!(svc.headless);
    /// assert_eq!(svc.pod_name("db-0.db.data.svc.cluster.local"), Some("db-0"));
    /// assert_eq!(svc.pod_name("db-1.db.data"), Some("db-1"));
    /// assert_eq!(svc.pod_name("db.data.svc.cluster.local"), None); // the Service itself
    /// assert_eq!(svc.pod_name("db.data"), None); // by another of its names
    /// assert_eq!(svc.pod_name("db-0.other.data.svc.cluster.local"), None);
    /// ```
    pub fn pod_name<'h>(&self, host: &'h str) -> Option<&'h str> {
        if !self.headless {
            return None;
        }
        // a name of the Service itself (its hostname, or the hostname cut at a label:
        // `db.ns`), in any case
        let names_it = |name: &str| {
            let full = self.hostname.as_bytes();
            !name.is_empty()
                && full.len() >= name.len()
                && full[..name.len()].eq_ignore_ascii_case(name.as_bytes())
                && full.get(name.len()).is_none_or(|b| *b == b'.')
        };
        // one of the Service's own names (`redis.redis` for Service `redis` in namespace
        // `redis`) is the Service: Envoy's exact domain wins over `*.<name>`
        if names_it(host) {
            return None;
        }
        let (pod, rest) = host.split_once('.')?;
        (!pod.is_empty() && names_it(rest)).then_some(pod)
    }

    /// The port `endpoint` listens on for the service port `port`: the endpoint's own port
    /// for the port's name, else the port's `targetPort`, else `port`.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api}
    /// spec:
    ///   hosts: [api.internal]
    ///   ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
    ///   resolution: DNS
    ///   endpoints: [{address: a.api.internal}, {address: b.api.internal, ports: {http: 9090}}]
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("api.internal", "default").unwrap();
    /// let ports: Vec<u16> = svc.endpoints.iter().map(|e| svc.endpoint_port(e, 80)).collect();
    /// assert_eq!(ports, [8080, 9090]);
    /// ```
    pub fn endpoint_port(&self, endpoint: &Endpoint, port: u16) -> u16 {
        self.port(port)
            .map(|sp| {
                let e = endpoint;
                e.ports
                    .get(&*sp.name)
                    .or_else(|| sp.target_port_name.as_ref().and_then(|n| e.ports.get(&**n)))
                    .copied()
                    .or(sp.target_port)
                    .unwrap_or(sp.number)
            })
            .unwrap_or(port)
    }

    /// The endpoints serving `port`, optionally restricted to a subset's labels. Skips
    /// unresolved DNS names.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::Labels;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   ports: [{number: 5432, name: tcp, protocol: TCP}]
    ///   location: MESH_INTERNAL
    ///   resolution: STATIC
    ///   endpoints:
    ///   - {address: 10.1.0.7, labels: {version: v1}}
    ///   - {address: 10.1.0.8, labels: {version: v2}}
    /// ").unwrap().snapshot();
    /// let svc = snap.registry().service("db.internal", "default").unwrap();
    /// assert_eq!(svc.targets(5432, None).count(), 2);
    /// // a subset's labels restrict the endpoints
    /// let v2: Labels = [("version".to_string(), "v2".to_string())].into();
    /// let only: Vec<_> = svc.targets(5432, Some(&v2)).map(|t| t.addr.unwrap()).collect();
    /// assert_eq!(only, ["10.1.0.8:5432".parse().unwrap()]);
    /// ```
    pub fn targets<'a>(
        &'a self,
        port: u16,
        subset: Option<&'a Labels>,
    ) -> impl Iterator<Item = Target<'a>> + 'a {
        self.endpoints.iter().filter_map(move |e| {
            if let Some(sel) = subset
                && !labels_match(sel, &e.labels)
            {
                return None;
            }
            if e.only_named_ports
                && !self
                    .port(port)
                    .is_some_and(|sp| e.ports.contains_key(&*sp.name))
            {
                return None;
            }
            let ep_port = self.endpoint_port(e, port);
            match &e.address {
                EndpointAddress::Ip(ip) => Some(Target {
                    endpoint: e,
                    addr: Some(SocketAddr::new(*ip, ep_port)),
                    port: ep_port,
                }),
                EndpointAddress::Unix(_) => Some(Target {
                    endpoint: e,
                    addr: None,
                    port: ep_port,
                }),
                EndpointAddress::Hostname(_) => None,
            }
        })
    }
}

/// Resolved DNS names: host → addresses.
///
/// This is what [`Mesh::refresh_dns`](crate::mesh::Mesh::refresh_dns) builds from a
/// [`Resolver`]'s answers; the registry turns each name into one endpoint per address.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use mesh_core::registry::DnsCache;
///
/// let mut cache = DnsCache::new();
/// let ips: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()];
/// cache.insert("api.example.com".into(), ips.into());
/// assert_eq!(cache["api.example.com"].len(), 2);
/// ```
pub type DnsCache = HashMap<Box<str>, Arc<[IpAddr]>>;

/// Resolves host names for DNS-resolution services, off the request path.
///
/// [`StdResolver`] asks the system; tests and programs with their own DNS implement it.
///
/// # Examples
///
/// ```
/// use std::net::IpAddr;
/// use mesh_core::mesh::Mesh;
/// use mesh_core::registry::Resolver;
///
/// struct Fixed;
/// impl Resolver for Fixed {
///     fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
///         match host {
///             "api.example.com" => Ok(vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()]),
///             _ => Err(std::io::Error::other("NXDOMAIN")),
///         }
///     }
/// }
///
/// let mesh = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: api}
/// spec:
///   hosts: [api.example.com]
///   ports: [{number: 443, name: tls, protocol: TLS}]
///   resolution: DNS
/// ").unwrap();
/// let targets = |m: &Mesh| {
///     let snap = m.snapshot();
///     let svc = snap.registry().service("api.example.com", "default").unwrap();
///     svc.targets(443, None).map(|t| t.addr.unwrap().to_string()).collect::<Vec<_>>()
/// };
/// assert!(targets(&mesh).is_empty()); // not resolved yet
/// assert_eq!(mesh.refresh_dns(&Fixed), 1);
/// assert_eq!(targets(&mesh), ["192.0.2.1:443", "192.0.2.2:443"]);
/// ```
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host`.
    ///
    /// # Examples
    ///
    /// What the mesh makes of each answer: addresses replace the host's endpoints, an error
    /// keeps the last good answer, and an answer without addresses leaves the host none:
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use std::sync::Mutex;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Resolver;
    ///
    /// /// Answers what it was last told to (`None`: the lookup fails).
    /// struct Scripted(Mutex<Option<Vec<IpAddr>>>);
    /// impl Resolver for Scripted {
    ///     fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
    ///         self.0.lock().unwrap().clone().ok_or_else(|| std::io::Error::other("SERVFAIL"))
    ///     }
    /// }
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api}
    /// spec:
    ///   hosts: [api.example.com]
    ///   ports: [{number: 443, name: tls, protocol: TLS}]
    ///   resolution: DNS
    /// ").unwrap();
    /// let targets = |m: &Mesh| {
    ///     let snap = m.snapshot();
    ///     let svc = snap.registry().service("api.example.com", "default").unwrap();
    ///     svc.targets(443, None).map(|t| t.addr.unwrap().to_string()).collect::<Vec<_>>()
    /// };
    /// let dns = Scripted(Mutex::new(Some(vec!["192.0.2.1".parse().unwrap()])));
    /// assert_eq!(mesh.refresh_dns(&dns), 1);
    /// assert_eq!(targets(&mesh), ["192.0.2.1:443"]);
    ///
    /// *dns.0.lock().unwrap() = None; // fails: the last good answer stays
    /// assert_eq!(mesh.refresh_dns(&dns), 0);
    /// assert_eq!(targets(&mesh), ["192.0.2.1:443"]);
    ///
    /// *dns.0.lock().unwrap() = Some(vec![]); // no addresses: no endpoints
    /// assert_eq!(mesh.refresh_dns(&dns), 0);
    /// assert!(targets(&mesh).is_empty());
    /// ```
    fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`ToSocketAddrs`; blocking, run it on a background thread).
///
/// # Examples
///
/// ```
/// use mesh_core::registry::{Resolver, StdResolver};
///
/// // an address literal resolves to itself, without a DNS query
/// let ips = StdResolver.resolve("192.0.2.10")?;
/// assert_eq!(ips, ["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdResolver;

impl Resolver for StdResolver {
    fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let mut out: Vec<IpAddr> = (host, 0).to_socket_addrs()?.map(|a| a.ip()).collect();
        out.dedup();
        Ok(out)
    }
}

/// Service definitions from config, before endpoints are attached (part of the compiled
/// config; the registry is rebuilt from them when workloads or DNS answers change).
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceDefs {
    defs: Vec<ServiceDef>,
    workload_entries: Vec<(Arc<str>, Arc<Endpoint>)>,
}

#[derive(Debug, Clone)]
struct ServiceDef {
    service: Service,
    selector: Option<Labels>,
    /// DNS names to resolve as endpoints (resolution DNS without endpoints: the hosts).
    dns_hosts: Vec<Box<str>>,
}

impl ServiceDefs {
    pub(crate) fn build(objects: &[ConfigObject], opts: &MeshOptions) -> ServiceDefs {
        let mut out = ServiceDefs::default();
        // istiod's SortServicesByCreationTime: oldest first, then the service's name, then its
        // namespace; a ServiceEntry's service is named by its host, so copies of one host
        // from different namespaces are ordered by namespace, not by the objects' names
        let mut order: Vec<((i64, u32), String, Arc<str>)> = Vec::new();
        for o in objects {
            let before = out.defs.len();
            let ns: Arc<str> = Arc::from(o.metadata.namespace.as_str());
            let key: Arc<str> = Arc::from(o.key());
            match &o.spec {
                Spec::Service(ks) => {
                    let host = format!(
                        "{}.{}.svc.{}",
                        o.metadata.name, o.metadata.namespace, opts.domain_suffix
                    )
                    .to_ascii_lowercase();
                    let export = o
                        .metadata
                        .annotations
                        .get("networking.istio.io/exportTo")
                        .map(|v| {
                            let list: Vec<String> =
                                v.split(',').map(|s| s.trim().to_owned()).collect();
                            ExportTo::compile(&list, &o.metadata.namespace)
                        })
                        .unwrap_or_else(|| {
                            // no annotation: MeshConfig defaultServiceExportTo (§1.5)
                            ExportTo::compile(
                                &opts.default_service_export_to,
                                &o.metadata.namespace,
                            )
                        });
                    let mut ports: Vec<ServicePort> = ks
                        .ports
                        .iter()
                        .map(|p| {
                            let name = p.name.clone().unwrap_or_default();
                            let proto = p.istio_protocol();
                            let (tp, tpn) = match &p.target_port {
                                Some(crate::model::IntOrString::Int(n)) => {
                                    (u16::try_from(*n).ok(), None)
                                }
                                Some(crate::model::IntOrString::String(s)) => {
                                    (None, Some(s.as_str().into()))
                                }
                                None => (None, None),
                            };
                            ServicePort {
                                name: name.into(),
                                number: u16::try_from(p.port).unwrap_or(0),
                                protocol: proto.into(),
                                target_port: tp,
                                target_port_name: tpn,
                            }
                        })
                        .collect();
                    let addresses = ks
                        .cluster_ip
                        .as_deref()
                        .and_then(|ip| ip.parse::<IpAddr>().ok())
                        .map(IpNet::from)
                        .into_iter()
                        .collect();
                    // istiod's `ConvertService`: the Service's service accounts (deprecated
                    // annotations) are identities its endpoints may present
                    let annotated = |name: &str| {
                        o.metadata
                            .annotations
                            .get(name)
                            .into_iter()
                            .flat_map(|v| v.split(','))
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                    };
                    let subject_alt_names = annotated("alpha.istio.io/kubernetes-serviceaccounts")
                        .map(|sa| {
                            format!(
                                "spiffe://{}/ns/{}/sa/{sa}",
                                opts.trust_domain, o.metadata.namespace
                            )
                            .into()
                        })
                        .chain(
                            annotated("alpha.istio.io/canonical-serviceaccounts").map(Into::into),
                        )
                        .collect();
                    // `type: ExternalName`: a DNS name for another host, reached by resolving
                    // it (istiod before its alias mode, `ENABLE_EXTERNAL_NAME_ALIAS`), outside
                    // the mesh; it selects no pods
                    let external = ks
                        .service_type
                        .as_deref()
                        .is_some_and(|t| t == "ExternalName")
                        .then_some(ks.external_name.as_deref())
                        .flatten()
                        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                        .filter(|n| !n.is_empty());
                    let alias_of: Option<Arc<str>> = external.as_deref().map(Arc::from);
                    let (resolution, location, selector, dns_hosts) = match external {
                        Some(name) => {
                            // the external name is dialed on the Service's own ports
                            for p in &mut ports {
                                p.target_port = None;
                                p.target_port_name = None;
                            }
                            (
                                Resolution::Dns,
                                ServiceLocation::MeshExternal,
                                None,
                                vec![name.into()],
                            )
                        }
                        None => (
                            Resolution::Static,
                            ServiceLocation::MeshInternal,
                            ks.selector.clone(),
                            Vec::new(),
                        ),
                    };
                    out.defs.push(ServiceDef {
                        service: Service {
                            hostname: host.into(),
                            namespace: ns.clone(),
                            object: key.clone(),
                            origin: ServiceOrigin::Kubernetes,
                            ports,
                            addresses,
                            resolution,
                            location,
                            export_to: export,
                            subject_alt_names,
                            endpoints: Vec::new(),
                            default_destinations: Box::new([]),
                            headless: ks.cluster_ip.as_deref() == Some("None")
                                && resolution == Resolution::Static,
                            alias_of,
                            traffic_distribution: TrafficDistribution::of_kube(
                                ks.traffic_distribution.as_deref(),
                                o.metadata
                                    .annotations
                                    .get("networking.istio.io/traffic-distribution")
                                    .map(String::as_str),
                            ),
                            node_local: ks.internal_traffic_policy.as_deref() == Some("Local"),
                        },
                        selector,
                        dns_hosts,
                    });
                }
                Spec::ServiceEntry(se) => {
                    let ports: Vec<ServicePort> = se
                        .ports
                        .iter()
                        .map(|p| ServicePort {
                            name: p.name.as_str().into(),
                            number: u16::try_from(p.number).unwrap_or(0),
                            protocol: p.protocol.to_ascii_uppercase().into(),
                            target_port: p.target_port.and_then(|t| u16::try_from(t).ok()),
                            target_port_name: None,
                        })
                        .collect();
                    let addresses: Vec<IpNet> = se
                        .addresses
                        .iter()
                        .filter_map(|a| {
                            a.parse::<IpNet>()
                                .ok()
                                .or_else(|| a.parse::<IpAddr>().ok().map(IpNet::from))
                        })
                        .collect();
                    // an endpoint without an address (one on another network, reached
                    // through its gateway) has nothing to dial here: left out, as istiod
                    // leaves out remote endpoints with no network gateway
                    let endpoints: Vec<Arc<Endpoint>> = se
                        .endpoints
                        .iter()
                        .filter(|we| !we.address.is_empty())
                        .map(|we| Arc::new(endpoint_from_entry(we, None, &format!("{key}"))))
                        .collect();
                    for host in &se.hosts {
                        let dns_hosts =
                            if matches!(se.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                                && se.endpoints.is_empty()
                                && se.workload_selector.is_none()
                                && !host.starts_with('*')
                            {
                                vec![host.as_str().into()]
                            } else {
                                Vec::new()
                            };
                        out.defs.push(ServiceDef {
                            service: Service {
                                hostname: host.to_ascii_lowercase().into(),
                                namespace: ns.clone(),
                                object: key.clone(),
                                origin: ServiceOrigin::ServiceEntry,
                                ports: ports.clone(),
                                addresses: addresses.clone(),
                                resolution: se.resolution,
                                location: se.location,
                                export_to: ExportTo::compile_or_default(
                                    &se.export_to,
                                    &ns,
                                    &opts.default_service_export_to,
                                ),
                                subject_alt_names: se
                                    .subject_alt_names
                                    .iter()
                                    .map(|s| s.as_str().into())
                                    .collect(),
                                endpoints: endpoints.clone(),
                                default_destinations: Box::new([]),
                                headless: false,
                                alias_of: None,
                                traffic_distribution: TrafficDistribution::Any,
                                node_local: false,
                            },
                            selector: se.workload_selector.as_ref().map(|s| s.labels.clone()),
                            dns_hosts,
                        });
                    }
                }
                // istiod's `isHealthy`: with health checks on (the
                // `proxy.istio.io/health-checks-enabled` annotation, Go's ParseBool), an
                // entry is an endpoint only once its `Healthy` condition is `True`
                Spec::WorkloadEntry(_) if !workload_entry_healthy(o) => {}
                Spec::WorkloadEntry(we) if !we.address.is_empty() => {
                    out.workload_entries.push((
                        ns.clone(),
                        Arc::new(endpoint_from_entry(
                            we,
                            Some(&o.metadata.labels),
                            &format!("WorkloadEntry/{key}"),
                        )),
                    ));
                }
                _ => {}
            }
            for d in &out.defs[before..] {
                let name = match d.service.origin {
                    ServiceOrigin::ServiceEntry => d.service.hostname.to_string(),
                    _ => o.metadata.name.clone(),
                };
                order.push((o.creation_time(), name, d.service.namespace.clone()));
            }
        }
        let mut keyed: Vec<_> = order.into_iter().zip(out.defs).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        // istiod's `canMergeServices`: ServiceEntries for one host in one namespace, with
        // the same resolution, exportTo and workload selector, are one service with the
        // ports (and endpoints) of both; the older one's come first
        let mut defs: Vec<ServiceDef> = Vec::with_capacity(keyed.len());
        let mut by_host: HashMap<(Arc<str>, Arc<str>), Vec<usize>> = HashMap::new();
        for (_, d) in keyed {
            let key = (d.service.hostname.clone(), d.service.namespace.clone());
            let same = by_host.get(&key).and_then(|ix| {
                ix.iter().copied().find(|&i| {
                    let e = &defs[i];
                    e.service.origin == ServiceOrigin::ServiceEntry
                        && d.service.origin == ServiceOrigin::ServiceEntry
                        && e.service.resolution == d.service.resolution
                        && e.service.export_to == d.service.export_to
                        && e.selector == d.selector
                })
            });
            match same.map(|i| &mut defs[i]) {
                Some(e) => {
                    for p in d.service.ports {
                        if e.service.port(p.number).is_none() {
                            e.service.ports.push(p);
                        }
                    }
                    e.service.endpoints.extend(d.service.endpoints);
                    for h in d.dns_hosts {
                        if !e.dns_hosts.contains(&h) {
                            e.dns_hosts.push(h);
                        }
                    }
                }
                None => {
                    by_host.entry(key).or_default().push(defs.len());
                    defs.push(d);
                }
            }
        }
        out.defs = defs;
        out
    }

    /// The services defined (without endpoints).
    pub(crate) fn services(&self) -> impl Iterator<Item = &Service> {
        self.defs.iter().map(|d| &d.service)
    }

    /// Every DNS name the registry would like resolved.
    pub(crate) fn dns_names(&self) -> Vec<Box<str>> {
        let mut v: Vec<Box<str>> = Vec::new();
        for d in &self.defs {
            if !matches!(
                d.service.resolution,
                Resolution::Dns | Resolution::DnsRoundRobin
            ) {
                continue;
            }
            v.extend(d.dns_hosts.iter().cloned());
            for e in &d.service.endpoints {
                if let EndpointAddress::Hostname(h) = &e.address {
                    v.push(h.clone());
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }
}

/// Whether a WorkloadEntry is an endpoint (istiod's `isHealthy`).
fn workload_entry_healthy(o: &ConfigObject) -> bool {
    let checked = o
        .metadata
        .annotations
        .get("proxy.istio.io/health-checks-enabled")
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "TRUE" | "true" | "True"));
    !checked || o.healthy == Some(true)
}

/// An endpoint from a ServiceEntry's `endpoints` entry or a WorkloadEntry (`meta_labels`:
/// the WorkloadEntry object's own labels, which take precedence over its spec's, as
/// istiod's `convertWorkloadEntry` merges them).
fn endpoint_from_entry(
    we: &crate::model::WorkloadEntry,
    meta_labels: Option<&Labels>,
    origin: &str,
) -> Endpoint {
    let address = if let Some(p) = we.address.strip_prefix("unix://") {
        EndpointAddress::Unix(p.into())
    } else if let Ok(ip) = we.address.parse::<IpAddr>() {
        EndpointAddress::Ip(ip)
    } else {
        EndpointAddress::Hostname(we.address.as_str().into())
    };
    let mut labels = we.labels.clone();
    if let Some(meta) = meta_labels {
        labels.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // istiod: `locality`, else the `istio-locality` label (`us-west.zone-1`, dots for
    // slashes as a label value cannot hold `/`)
    let locality: Option<Box<str>> = we
        .locality
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(Into::into)
        .or_else(|| locality_label(&labels).map(Into::into));
    augment_labels(&mut labels, locality.as_deref(), we.network.as_deref());
    Endpoint {
        address,
        ports: we
            .ports
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), u16::try_from(*v).ok()?)))
            .collect(),
        labels,
        weight: we.weight.unwrap_or(1).max(1),
        locality,
        service_account: we.service_account.as_deref().map(Into::into),
        network: we.network.as_deref().map(Into::into),
        origin: origin.into(),
        only_named_ports: false,
    }
}

/// The cluster ID istiod gives its own cluster's endpoints by default (`CLUSTER_ID`).
const CLUSTER_ID: &str = "Kubernetes";

/// The `istio-locality` label as a locality (`us-west.zone-1`: dots for slashes, as a
/// label value cannot hold `/`).
fn locality_label(labels: &Labels) -> Option<String> {
    labels
        .get("istio-locality")
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('.', "/"))
}

/// A proxy's locality and labels as istiod works them out (`setTopologyLabels`): the
/// locality given, else its topology labels (`topology.kubernetes.io/region`, `zone`,
/// `topology.istio.io/subzone`), else its `istio-locality` label (dots for slashes); its
/// labels then gain the locality's topology labels and `topology.istio.io/cluster`
/// (`AugmentLabels`), which `failoverPriority` compares with the endpoints'.
///
/// # Examples
///
/// ```
/// use mesh_core::registry::proxy_topology;
///
/// let labels = [("app", "sleep"), ("topology.kubernetes.io/region", "us-east"),
///     ("topology.kubernetes.io/zone", "zone1")]
///     .map(|(k, v)| (k.to_string(), v.to_string())).into();
/// let (locality, labels) = proxy_topology(&labels, None, "Kubernetes");
/// assert_eq!(locality.as_deref(), Some("us-east/zone1"));
/// assert_eq!(labels["topology.istio.io/cluster"], "Kubernetes");
///
/// let labels = [("istio-locality", "eu.zone-b")].map(|(k, v)| (k.to_string(), v.to_string())).into();
/// let (locality, labels) = proxy_topology(&labels, None, "east");
/// assert_eq!(locality.as_deref(), Some("eu/zone-b"));
/// assert_eq!(labels["topology.kubernetes.io/zone"], "zone-b");
/// assert_eq!(labels["topology.istio.io/cluster"], "east");
/// ```
pub fn proxy_topology(
    labels: &Labels,
    locality: Option<&str>,
    cluster_id: &str,
) -> (Option<String>, Labels) {
    let from_topology = || {
        let get = |k: &str| labels.get(k).map(String::as_str);
        let parts = [
            get("topology.kubernetes.io/region"),
            get("topology.kubernetes.io/zone"),
            get("topology.istio.io/subzone"),
        ];
        parts.iter().any(Option::is_some).then(|| {
            let [r, z, s] = parts.map(|p| p.unwrap_or(""));
            match (z.is_empty(), s.is_empty()) {
                (true, true) => r.to_owned(),
                (false, true) => format!("{r}/{z}"),
                _ => format!("{r}/{z}/{s}"),
            }
        })
    };
    let locality = locality
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .or_else(from_topology)
        .or_else(|| locality_label(labels));
    let mut out = labels.clone();
    augment_labels_in(&mut out, locality.as_deref(), cluster_id, None);
    (locality, out)
}

/// istiod's `AugmentLabels`: an endpoint's labels, as DestinationRule subsets select them,
/// also say where it runs: `topology.kubernetes.io/region` and `zone` and
/// `topology.istio.io/subzone` from its locality (they replace labels of those names),
/// `topology.istio.io/cluster`, and `topology.istio.io/network` unless a label sets it.
fn augment_labels(labels: &mut Labels, locality: Option<&str>, network: Option<&str>) {
    augment_labels_in(labels, locality, CLUSTER_ID, network);
}

fn augment_labels_in(
    labels: &mut Labels,
    locality: Option<&str>,
    cluster: &str,
    network: Option<&str>,
) {
    let mut parts = locality.unwrap_or("").splitn(3, '/');
    for key in [
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.istio.io/subzone",
    ] {
        if let Some(v) = parts.next().filter(|v| !v.is_empty()) {
            labels.insert(key.to_owned(), v.to_owned());
        }
    }
    if !cluster.is_empty() {
        labels.insert("topology.istio.io/cluster".to_owned(), cluster.to_owned());
    }
    if let Some(n) = network.filter(|n| !n.is_empty()) {
        labels
            .entry("topology.istio.io/network".to_owned())
            .or_insert_with(|| n.to_owned());
    }
}

/// Istio's protocol of a Kubernetes Service port (`ConvertProtocol`), upper case; empty
/// when Istio sniffs it (Unsupported): a `UDP` port is UDP; else `appProtocol` (with
/// Kubernetes' `kubernetes.io/h2c`, `/ws`, `/wss`), else the port name, by its prefix
/// before `-` (`http-web` is HTTP; `grpc-web...` is gRPC-Web); a name that says nothing
/// on a well-known port (25 SMTP, 53 DNS, 3306 MySQL, 27017 MongoDB) is TCP.
///
/// # Examples
///
/// ```
/// use mesh_core::registry::kube_protocol;
///
/// assert_eq!(kube_protocol(9080, "http-web", None, None), "HTTP");
/// assert_eq!(kube_protocol(8080, "grpc-web-ui", None, None), "GRPC-WEB");
/// assert_eq!(kube_protocol(8080, "web", None, Some("kubernetes.io/h2c")), "HTTP2");
/// assert_eq!(kube_protocol(8080, "foo", None, None), ""); // sniffed
/// assert_eq!(kube_protocol(3306, "", None, None), "TCP"); // a well-known port
/// assert_eq!(kube_protocol(53, "dns", Some("UDP"), None), "UDP");
/// ```
pub fn kube_protocol(
    port: u16,
    name: &str,
    protocol: Option<&str>,
    app_protocol: Option<&str>,
) -> String {
    if protocol.is_some_and(|p| p.eq_ignore_ascii_case("UDP")) {
        return "UDP".to_owned();
    }
    match app_protocol {
        Some("kubernetes.io/h2c") => return "HTTP2".to_owned(),
        Some("kubernetes.io/ws") => return "HTTP".to_owned(),
        Some("kubernetes.io/wss") => return "HTTPS".to_owned(),
        _ => {}
    }
    let name = app_protocol.unwrap_or(name);
    if name
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc-web"))
    {
        return "GRPC-WEB".to_owned();
    }
    let p = name.split('-').next().unwrap_or("");
    let known = match p.to_ascii_lowercase().as_str() {
        "http" => "HTTP",
        "http2" => "HTTP2",
        "http_proxy" => "HTTP_PROXY",
        "https" => "HTTPS",
        "grpc" => "GRPC",
        "tls" => "TLS",
        "tcp" => "TCP",
        "mongo" => "MONGO",
        "redis" => "REDIS",
        "mysql" => "MYSQL",
        "udp" => "UDP",
        // ambient's HBONE tunnel port (a waypoint's `mesh` port, `appProtocol: hbone`)
        "hbone" => "HBONE",
        _ if matches!(port, 25 | 53 | 3306 | 27017) => "TCP",
        _ => "",
    };
    known.to_owned()
}

/// Services with endpoints, indexed by host and by VIP.
///
/// Each [`Snapshot`](crate::snapshot::Snapshot) has one ([`Snapshot::registry`](crate::snapshot::Snapshot::registry)).
///
/// # Examples
///
/// ```
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: v1
/// kind: Service
/// metadata: {name: ratings, namespace: default}
/// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: ServiceEntry
/// metadata: {name: wikipedia}
/// spec:
///   hosts: ['*.wikipedia.org']
///   ports: [{number: 443, name: tls, protocol: TLS}]
///   resolution: NONE
/// ").unwrap().snapshot();
/// let reg = snap.registry();
/// assert_eq!(reg.services().count(), 2);
/// assert!(reg.has_host("ratings.default.svc.cluster.local"));
/// assert!(!reg.has_host("ratings")); // hosts are FQDNs; routing expands short names
/// // a wildcard ServiceEntry host covers concrete names
/// let svc = reg.service("en.wikipedia.org", "default").unwrap();
/// assert_eq!(&*svc.hostname, "*.wikipedia.org");
/// assert!(reg.workloads().is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Registry {
    services: HostMap<Vec<Arc<Service>>>,
    by_vip: Vec<(IpNet, Arc<Service>)>,
    /// The services whose VIP is a single address, by that address.
    by_exact_vip: HashMap<IpAddr, Vec<Arc<Service>>>,
    /// ServiceEntries with `resolution: NONE`, no `addresses` and a TCP port: istiod's
    /// listener `0.0.0.0:<port>` takes any address on the port for them.
    any_address: Vec<Arc<Service>>,
    workloads: Arc<[Workload]>,
    /// `namespace/service_account` -> the workloads running as it (indexes).
    by_account: HashMap<String, Vec<usize>>,
    /// Every service, in order.
    all: Vec<Arc<Service>>,
    /// Services with a concrete host, by each parent domain of it (`a.b.foo.com` under
    /// `b.foo.com`, `foo.com` and `com`): those a wildcard `*.foo.com` covers.
    by_parent: HashMap<Box<str>, Vec<Arc<Service>>>,
    /// Services whose host is a wildcard.
    wildcards: Vec<Arc<Service>>,
    /// Some service is a headless Kubernetes Service (pod names are looked up only then).
    any_headless: bool,
}

impl Registry {
    pub(crate) fn build(
        defs: &ServiceDefs,
        workloads: Arc<[Workload]>,
        dns: &DnsCache,
        opts: &MeshOptions,
    ) -> Registry {
        let mut services: HostMap<Vec<Arc<Service>>> = HostMap::default();
        let mut by_vip = Vec::new();
        let mut by_exact_vip: HashMap<IpAddr, Vec<Arc<Service>>> = HashMap::new();
        let mut any_address = Vec::new();
        let mut built: Vec<Service> = Vec::with_capacity(defs.defs.len());
        for d in &defs.defs {
            let mut svc = d.service.clone();
            if let Some(sel) = &d.selector {
                for w in workloads.iter() {
                    if *w.namespace == *svc.namespace && labels_match(sel, &w.labels) {
                        let mut labels = w.labels.clone();
                        augment_labels(&mut labels, w.locality.as_deref(), None);
                        svc.endpoints.push(Arc::new(Endpoint {
                            address: EndpointAddress::Ip(w.address),
                            ports: w.ports.clone(),
                            labels,
                            weight: w.weight.max(1),
                            locality: w.locality.as_deref().map(Into::into),
                            service_account: Some(w.service_account.as_str().into()),
                            network: None,
                            origin: format!("workload/{}/{}", w.namespace, w.name).into(),
                            only_named_ports: false,
                        }));
                    }
                }
                // WorkloadEntries of the namespace: for a ServiceEntry's workloadSelector and,
                // as istiod (PILOT_ENABLE_K8S_SELECT_WORKLOAD_ENTRIES, on by default), for a
                // Kubernetes Service's selector; one whose address is a name or a Unix
                // socket only for a DNS ServiceEntry (istiod's `DNSServiceEntryOnly`)
                let by_dns = matches!(svc.resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                    && svc.origin == ServiceOrigin::ServiceEntry;
                for (ns, e) in &defs.workload_entries {
                    let dialable = by_dns || matches!(e.address, EndpointAddress::Ip(_));
                    if *ns == svc.namespace && dialable && labels_match(sel, &e.labels) {
                        svc.endpoints.push(e.clone());
                    }
                }
            }
            if matches!(svc.resolution, Resolution::Dns | Resolution::DnsRoundRobin) {
                let rr = svc.resolution == Resolution::DnsRoundRobin;
                let mut eps = Vec::new();
                let names =
                    d.dns_hosts
                        .iter()
                        .map(|h| (h.clone(), None))
                        .chain(svc.endpoints.iter().map(|e| match &e.address {
                            EndpointAddress::Hostname(h) => (h.clone(), Some(e.clone())),
                            _ => ("".into(), Some(e.clone())),
                        }));
                for (name, ep) in names {
                    if name.is_empty() {
                        eps.extend(ep);
                        continue;
                    }
                    let named = || match &ep {
                        Some(e) => Endpoint::clone(e),
                        None => Endpoint {
                            address: EndpointAddress::Hostname(name.clone()),
                            ports: BTreeMap::new(),
                            labels: Labels::new(),
                            weight: 1,
                            locality: None,
                            service_account: None,
                            network: None,
                            origin: format!("dns/{name}").into(),
                            only_named_ports: false,
                        },
                    };
                    let Some(ips) = dns.get(&name) else {
                        // not resolved yet: kept as a name (`targets` skips it; a client
                        // may resolve it when it connects, as Envoy warms a DNS cluster
                        // with its first answer before using it)
                        eps.push(Arc::new(named()));
                        continue;
                    };
                    // the answer's addresses of the lookup family (Envoy's
                    // `dns_lookup_family`), the first only for DNS_ROUND_ROBIN
                    let family = opts.dns_lookup_family;
                    let take = if rr { 1 } else { ips.len() };
                    for ip in ips.iter().filter(|ip| family.admits(**ip)).take(take) {
                        let mut e = named();
                        e.address = EndpointAddress::Ip(*ip);
                        eps.push(Arc::new(e));
                    }
                }
                // DNS_ROUND_ROBIN is one logical host (Envoy's LOGICAL_DNS): istiod keeps the
                // first endpoint only (`mergeServiceInstances`), whatever else a selector or
                // another ServiceEntry for the host adds, so traffic is never spread
                if rr {
                    eps.truncate(1);
                }
                svc.endpoints = eps;
            }
            svc.default_destinations = Box::new([crate::route::WeightedDestination {
                host: svc.hostname.clone(),
                subset: None,
                port: None,
                weight: 100,
                headers: None,
            }]);
            built.push(svc);
        }
        merge_service_entry_endpoints(&mut built);
        for svc in built {
            let svc = Arc::new(svc);
            if svc.origin == ServiceOrigin::ServiceEntry
                && svc.resolution == Resolution::None
                && svc.addresses.is_empty()
                && svc.ports.iter().any(|p| is_tcp_protocol(&p.protocol))
            {
                any_address.push(svc.clone());
            }
            for a in &svc.addresses {
                by_vip.push((*a, svc.clone()));
                if a.prefix_len() == a.max_prefix_len() {
                    by_exact_vip.entry(a.addr()).or_default().push(svc.clone());
                }
            }
            services.entry(&svc.hostname).push(svc);
        }
        services.finish();
        let mut by_account: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in workloads.iter().enumerate() {
            by_account
                .entry(format!("{}/{}", w.namespace, w.service_account))
                .or_default()
                .push(i);
        }
        let all: Vec<Arc<Service>> = services.values().flatten().cloned().collect();
        let mut by_parent: HashMap<Box<str>, Vec<Arc<Service>>> = HashMap::new();
        let mut wildcards = Vec::new();
        for s in &all {
            if s.hostname.starts_with('*') {
                wildcards.push(Arc::clone(s));
                continue;
            }
            for (i, _) in s.hostname.match_indices('.') {
                by_parent
                    .entry(s.hostname[i + 1..].into())
                    .or_default()
                    .push(Arc::clone(s));
            }
        }
        let any_headless = all.iter().any(|s| s.headless);
        Registry {
            services,
            by_vip,
            by_exact_vip,
            any_address,
            workloads,
            by_account,
            all,
            by_parent,
            wildcards,
            any_headless,
        }
    }

    /// The services whose host overlaps `pattern` (Istio's `host.Name.Matches`: either may
    /// be a wildcard), visible or not: a concrete host and a `*.foo.com` pattern are looked
    /// up (by the host, by its parent domain) rather than by scanning every service.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: apis, namespace: default}
    /// spec:
    ///   hosts: [a.foo.com, b.x.foo.com, c.bar.com, '*.y.foo.com']
    ///   ports: [{number: 80, name: http, protocol: HTTP}]
    ///   resolution: DNS
    /// ").unwrap().snapshot();
    /// let hosts = |p: &str| -> Vec<String> {
    ///     let mut v: Vec<String> = snap.registry().services_matching(p).map(|s| s.hostname.to_string()).collect();
    ///     v.sort();
    ///     v
    /// };
    /// assert_eq!(hosts("*.foo.com"), ["*.y.foo.com", "a.foo.com", "b.x.foo.com"]);
    /// assert_eq!(hosts("*.bar.com"), ["c.bar.com"]);
    /// assert_eq!(hosts("a.foo.com"), ["a.foo.com"]);
    /// assert_eq!(hosts("z.y.foo.com"), ["*.y.foo.com"]);
    /// assert_eq!(hosts("*").len(), 4);
    /// ```
    pub fn services_matching<'a>(
        &'a self,
        pattern: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        let (list, extra): (&[Arc<Service>], &[Arc<Service>]) = match pattern.strip_prefix("*.") {
            Some(parent) => (
                self.by_parent.get(parent).map_or(&[][..], |v| &v[..]),
                &self.wildcards,
            ),
            // a concrete host: its own services and the wildcards covering it
            None if !pattern.starts_with('*') => (
                self.services.get_exact(pattern).map_or(&[][..], |v| &v[..]),
                &self.wildcards,
            ),
            None => (&self.all, &[]),
        };
        list.iter()
            .chain(extra.iter())
            .filter(move |s| crate::model::host::matches(pattern, &s.hostname))
    }

    /// The service `host` as seen from `client_ns`: exact host first, then the most specific
    /// wildcard ServiceEntry host; among several definitions the one in the client's
    /// namespace wins, then Kubernetes before ServiceEntry, then load order.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: team-a}
    /// spec:
    ///   hosts: [api.example.com]
    ///   ports: [{number: 443, name: tls, protocol: TLS}]
    ///   resolution: DNS
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: team-b}
    /// spec:
    ///   hosts: [api.example.com]
    ///   ports: [{number: 8443, name: tls, protocol: TLS}]
    ///   resolution: DNS
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let seen_from = |ns: &str| reg.service("api.example.com", ns).map(|s| s.object.to_string());
    /// assert_eq!(seen_from("team-b").as_deref(), Some("team-b/api")); // own namespace first
    /// assert_eq!(seen_from("other").as_deref(), Some("team-a/api")); // then load order
    /// assert!(reg.service("api.example.org", "team-a").is_none());
    ///
    /// // a ServiceEntry cannot take a Kubernetes Service's host, not even in the client's
    /// // namespace
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: aaa, namespace: attacker}
    /// spec:
    ///   hosts: [reviews.default.svc.cluster.local]
    ///   ports: [{number: 9080, name: http, protocol: HTTP}]
    ///   resolution: STATIC
    ///   endpoints: [{address: 10.6.6.6}]
    /// ").unwrap().snapshot();
    /// let reviews = snap.registry().service("reviews.default.svc.cluster.local", "attacker");
    /// assert_eq!(reviews.map(|s| &*s.object), Some("default/reviews"));
    /// ```
    pub fn service(&self, host: &str, client_ns: &str) -> Option<&Arc<Service>> {
        self.service_where(host, client_ns, |_| true)
    }

    /// [`Registry::service`] for a client its `sidecar` scopes, on `port`: the copy of a
    /// host defined in several namespaces that the Sidecar's egress imports (istiod's
    /// `selectServices`), else the one [`Registry::service`] picks.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Sidecar
    /// metadata: {name: sc, namespace: a}
    /// spec: {egress: [{hosts: ['b/*']}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: a}
    /// spec: {hosts: [api.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: b}
    /// spec: {hosts: [api.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let sc = snap.sidecar_for("a", &Default::default());
    /// // the client's own namespace first without a Sidecar, the imported copy with it
    /// assert_eq!(reg.service("api.example.com", "a").map(|s| &*s.object), Some("a/api"));
    /// let s = reg.service_for_client("api.example.com", "a", sc, 80);
    /// assert_eq!(s.map(|s| &*s.object), Some("b/api"));
    /// ```
    pub fn service_for_client(
        &self,
        host: &str,
        client_ns: &str,
        sidecar: Option<&crate::sidecar::SidecarScope>,
        port: u16,
    ) -> Option<&Arc<Service>> {
        sidecar
            .and_then(|sc| {
                self.service_where(host, client_ns, |s| {
                    sc.imports(client_ns, &s.namespace, &s.hostname, port)
                })
            })
            .or_else(|| self.service(host, client_ns))
    }

    /// The service `service` is an alias of, for this client: a Kubernetes `ExternalName`
    /// Service's target, when the client sees a service of exactly that name that is not an
    /// alias itself (istiod's alias mode; see [`Service::alias_of`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    ///
    /// let snap = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: default}
    /// spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews-alias, namespace: shop}
    /// spec: {type: ExternalName, externalName: reviews.default.svc.cluster.local, ports: [{name: http, port: 9080}]}
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let alias = reg.service("reviews-alias.shop.svc.cluster.local", "shop").unwrap();
    /// let target = reg.alias_target(alias, "shop", None, 9080).unwrap();
    /// assert_eq!(&*target.hostname, "reviews.default.svc.cluster.local");
    /// assert!(reg.alias_target(target, "shop", None, 9080).is_none());
    /// ```
    pub fn alias_target(
        &self,
        service: &Service,
        client_ns: &str,
        sidecar: Option<&crate::sidecar::SidecarScope>,
        port: u16,
    ) -> Option<&Arc<Service>> {
        let target = service.alias_of.as_deref()?;
        self.service_for_client(target, client_ns, sidecar, port)
            .filter(|t| &*t.hostname == target && t.alias_of.is_none())
    }

    /// [`Registry::service`] among the services `pick` accepts: for a client with a
    /// Sidecar, the copy of a host its egress imports (istiod's `selectServices`: "if there
    /// is ambiguity around what hostname to pick, a user can specify the one they want in
    /// the hosts field").
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: team-a}
    /// spec: {hosts: [api.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: team-b}
    /// spec: {hosts: [api.example.com], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let b = reg.service_where("api.example.com", "shop", |s| &*s.namespace == "team-b");
    /// assert_eq!(b.map(|s| &*s.object), Some("team-b/api"));
    /// ```
    pub fn service_where(
        &self,
        host: &str,
        client_ns: &str,
        pick: impl Fn(&Service) -> bool,
    ) -> Option<&Arc<Service>> {
        for list in self.services.all_matching(host) {
            let best = list
                .iter()
                .filter(|s| s.export_to.visible_to(client_ns) && pick(s))
                .enumerate()
                .min_by_key(|(i, s)| (precedence(s, client_ns), *i))
                .map(|(_, s)| s);
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// The headless Kubernetes Service (`clusterIP: None`) whose pod `host` names, as a
    /// client in `client_ns` writes it: `<pod>.<service>` (a Service of its own
    /// namespace), `<pod>.<service>.<namespace>[.svc]` or the full
    /// `<pod>.<service>.<namespace>.svc.<domain_suffix>`. istiod lists `*.<name>` for
    /// each name of such a Service among the domains of its virtual host, so a pod's name
    /// is routed by the Service's VirtualServices and policy; see [`Service::pod_name`].
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: db, namespace: data}
    /// spec: {clusterIP: None, selector: {app: db}, ports: [{name: http, port: 8080}]}
    /// ---
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: api, namespace: data}
    /// spec: {selector: {app: api}, ports: [{name: http, port: 8080}]}
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let parent = |host| {
    ///     reg.headless_service_of_pod(host, "data", "cluster.local").map(|s| &*s.hostname)
    /// };
    /// assert_eq!(parent("db-0.db.data.svc.cluster.local"), Some("db.data.svc.cluster.local"));
    /// assert_eq!(parent("db-0.db"), Some("db.data.svc.cluster.local")); // from its namespace
    /// assert_eq!(parent("db-0.db.data"), Some("db.data.svc.cluster.local"));
    /// assert_eq!(parent("api-0.api.data.svc.cluster.local"), None); // not headless
    /// ```
    pub fn headless_service_of_pod(
        &self,
        host: &str,
        client_ns: &str,
        domain_suffix: &str,
    ) -> Option<&Arc<Service>> {
        if !self.any_headless {
            return None;
        }
        let (pod, rest) = host.split_once('.')?;
        if pod.is_empty() || pod.starts_with('*') || rest.is_empty() {
            return None;
        }
        let mut buf = crate::names::HostBuf::new();
        let fqdn = if crate::names::kube_expansion(rest, client_ns, domain_suffix, &mut buf) {
            buf.as_str()
        } else {
            rest
        };
        // (no wildcard host is a headless Service: the exact one, by precedence)
        self.service_where(fqdn, client_ns, |s| s.headless)
    }

    /// True when any service (visible or not) has exactly this host.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: api, namespace: team-a}
    /// spec:
    ///   hosts: [api.example.com, '*.wiki.example.com']
    ///   exportTo: [.]
    ///   ports: [{number: 443, name: tls, protocol: TLS}]
    ///   resolution: NONE
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// assert!(reg.has_host("api.example.com"));
    /// assert!(reg.service("api.example.com", "team-b").is_none()); // exists, but not visible there
    /// assert!(!reg.has_host("en.wiki.example.com")); // exact hosts only, no wildcard matching
    /// ```
    pub fn has_host(&self, host: &str) -> bool {
        self.services.get_exact(host).is_some()
    }

    /// The service an extension provider's `service` (`[<namespace>/]<hostname>`) names,
    /// as istiod's `LookupCluster` finds it: with a namespace, the service of that host in
    /// that namespace; without one, the host's service when a single namespace defines it.
    /// `Err` (istiod's message) otherwise: istiod then builds no authorizer, and the
    /// CUSTOM policies naming the provider deny what they match.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: ext-authz, namespace: foo}
    /// spec:
    ///   ports: [{name: http, port: 8000}]
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let host = "ext-authz.foo.svc.cluster.local";
    /// assert!(reg.extension_provider_service(host).is_ok());
    /// assert!(reg.extension_provider_service(&format!("foo/{host}")).is_ok());
    /// let e = reg.extension_provider_service(&format!("bar/{host}")).unwrap_err();
    /// assert_eq!(e, format!("could not find service bar/{host} in Istio service registry"));
    /// assert!(reg.extension_provider_service("ext-authz.bar.svc.cluster.local").is_err());
    /// ```
    pub fn extension_provider_service(&self, service: &str) -> Result<&Arc<Service>, String> {
        let not_found = || format!("could not find service {service} in Istio service registry");
        let (namespace, host) = match service.split_once('/') {
            Some((ns, host)) => (Some(ns), host),
            None => (None, service),
        };
        let defined = self.services.get_exact(host).ok_or_else(not_found)?;
        match namespace {
            Some(ns) => defined
                .iter()
                .find(|s| &*s.namespace == ns)
                .ok_or_else(not_found),
            None => {
                let mut namespaces: Vec<&str> = defined.iter().map(|s| &*s.namespace).collect();
                namespaces.sort_unstable();
                namespaces.dedup();
                match namespaces.len() {
                    1 => Ok(&defined[0]),
                    _ => Err(format!(
                        "found {service} in multiple namespaces {namespaces:?}, specify the \
                         namespace explicitly in the format of <Namespace>/<Hostname>"
                    )),
                }
            }
        }
    }

    /// The service whose VIP (or CIDR) contains `ip` and that has `port` (any port when the
    /// service declares none), visible from `client_ns`.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: db}
    /// spec:
    ///   hosts: [db.internal]
    ///   addresses: [240.240.0.0/16]
    ///   ports: [{number: 5432, name: tcp, protocol: TCP}]
    ///   location: MESH_INTERNAL
    ///   resolution: STATIC
    ///   endpoints: [{address: 10.1.0.7}]
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let ip = "240.240.3.4".parse().unwrap();
    /// assert_eq!(reg.service_by_address(ip, 5432, "default").map(|s| &*s.hostname), Some("db.internal"));
    /// assert!(reg.service_by_address(ip, 3306, "default").is_none()); // not a service port
    /// ```
    pub fn service_by_address(
        &self,
        ip: IpAddr,
        port: u16,
        client_ns: &str,
    ) -> Option<&Arc<Service>> {
        // a service's own address first (as HTTP routing by VIP picks it), then the most
        // specific range, then a ServiceEntry that takes any address on the port
        if let Some(s) = self.service_by_vip(ip, port, client_ns) {
            return Some(s);
        }
        self.by_vip
            .iter()
            .filter(|(net, s)| {
                net.contains(&ip)
                    && s.export_to.visible_to(client_ns)
                    && (s.ports.is_empty() || s.port(port).is_some())
            })
            // the longest prefix; among equal ones the oldest (istiod's listener order,
            // whose first filter chain wins)
            .fold(None::<&(IpNet, Arc<Service>)>, |best, e| match best {
                Some(b) if b.0.prefix_len() >= e.0.prefix_len() => Some(b),
                _ => Some(e),
            })
            .map(|(_, s)| s)
            .or_else(|| self.service_on_any_address(port, client_ns))
    }

    /// The ServiceEntry with `resolution: NONE` and no `addresses` that declares `port` as a
    /// TCP port (`TCP`, `MONGO`, `MYSQL`, `REDIS`, ...), as seen from `client_ns`: istiod
    /// gives it the listener `0.0.0.0:<port>`, so a connection to any address on the port
    /// is its traffic ("if addresses is not set, all traffic on the port defined in the
    /// ServiceEntry is matched, regardless of the host": IST0134). Several: the first one
    /// loaded.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: mongo}
    /// spec:
    ///   hosts: [mongo.ext.example]
    ///   ports: [{number: 27017, name: mongo, protocol: MONGO}]
    ///   resolution: NONE
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let ip = "10.1.2.3".parse().unwrap();
    /// assert_eq!(reg.service_by_address(ip, 27017, "default").map(|s| &*s.hostname), Some("mongo.ext.example"));
    /// assert!(reg.service_by_address(ip, 27018, "default").is_none());
    /// ```
    pub fn service_on_any_address(&self, port: u16, client_ns: &str) -> Option<&Arc<Service>> {
        self.any_address.iter().find(|s| {
            s.export_to.visible_to(client_ns)
                && s.port(port).is_some_and(|p| is_tcp_protocol(&p.protocol))
        })
    }

    /// The service whose own address (a single-IP VIP: a Kubernetes ClusterIP, a
    /// ServiceEntry address without a prefix) is `ip` on `port`, as seen from namespace
    /// `client_ns`. istiod lists that address among the domains of the service's virtual
    /// host, so an HTTP request whose host is the VIP routes to the service; an address
    /// inside a CIDR range names no virtual host.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 9080}]}
    /// ").unwrap().snapshot();
    /// let reg = snap.registry();
    /// let ip = "10.96.0.10".parse().unwrap();
    /// assert_eq!(
    ///     reg.service_by_vip(ip, 9080, "default").map(|s| &*s.hostname),
    ///     Some("reviews.bookinfo.svc.cluster.local")
    /// );
    /// assert!(reg.service_by_vip(ip, 80, "default").is_none()); // not a service port
    /// ```
    pub fn service_by_vip(&self, ip: IpAddr, port: u16, client_ns: &str) -> Option<&Arc<Service>> {
        // (`min_by_key` keeps the first of equals: config order last, as by name)
        self.by_exact_vip
            .get(&ip)?
            .iter()
            .filter(|s| {
                s.export_to.visible_to(client_ns) && (s.ports.is_empty() || s.port(port).is_some())
            })
            .min_by_key(|s| precedence(s, client_ns))
    }

    /// Every service.
    ///
    /// # Examples
    ///
    /// ```
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: reviews, namespace: bookinfo}
    /// spec: {ports: [{name: http, port: 9080}]}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: httpbin-ext}
    /// spec: {hosts: [httpbin.org], ports: [{number: 80, name: http, protocol: HTTP}], resolution: DNS}
    /// ").unwrap().snapshot();
    /// let mut hosts: Vec<&str> = snap.registry().services().map(|s| &*s.hostname).collect();
    /// hosts.sort();
    /// assert_eq!(hosts, ["httpbin.org", "reviews.bookinfo.svc.cluster.local"]);
    /// ```
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values().flatten()
    }

    /// The registered workloads.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::registry::Workload;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// assert!(mesh.snapshot().registry().workloads().is_empty());
    /// let ratings = Workload {
    ///     name: "ratings-0".into(),
    ///     namespace: "default".into(),
    ///     service_account: "bookinfo-ratings".into(),
    ///     labels: [("app".to_string(), "ratings".to_string())].into(),
    ///     address: "127.0.0.1".parse().unwrap(),
    ///     ports: Default::default(),
    ///     locality: None,
    ///     weight: 1,
    /// };
    /// mesh.register(ratings);
    /// let snap = mesh.snapshot();
    /// let names: Vec<&str> = snap.registry().workloads().iter().map(|w| w.name.as_str()).collect();
    /// assert_eq!(names, ["ratings-0"]);
    /// ```
    pub fn workloads(&self) -> &[Workload] {
        &self.workloads
    }

    /// The registered workloads that run as service account `service_account` of
    /// `namespace` (what a peer's SPIFFE identity names), in registration order. A server
    /// learns its caller's workload from them (Istio learns it by metadata exchange).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    ///
    /// let mesh = Mesh::from_yaml("").unwrap();
    /// for (name, version) in [("reviews-v1", "v1"), ("reviews-v2", "v2")] {
    ///     mesh.register(Workload {
    ///         name: name.into(),
    ///         namespace: "default".into(),
    ///         service_account: "bookinfo-reviews".into(),
    ///         labels: [("app".to_string(), "reviews".to_string()), ("version".to_string(), version.to_string())].into(),
    ///         address: "127.0.0.1".parse().unwrap(),
    ///         ports: Default::default(),
    ///         locality: None,
    ///         weight: 1,
    ///     });
    /// }
    /// let snap = mesh.snapshot();
    /// let names: Vec<&str> = snap
    ///     .registry()
    ///     .workloads_of("default", "bookinfo-reviews")
    ///     .map(|w| w.name.as_str())
    ///     .collect();
    /// assert_eq!(names, ["reviews-v1", "reviews-v2"]);
    /// assert_eq!(snap.registry().workloads_of("default", "sleep").count(), 0);
    /// ```
    pub fn workloads_of<'a>(
        &'a self,
        namespace: &str,
        service_account: &str,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.by_account
            .get(&format!("{namespace}/{service_account}"))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.workloads[i])
    }
}

/// istiod's EDS for a Kubernetes Service also holds the endpoints a ServiceEntry of the
/// same host in the same namespace has (the endpoint index is by host and namespace, every
/// registry's; `EndpointBuilder` keeps those of the port's name): the Kubernetes Service
/// keeps its host (see [`precedence`]), and serves those endpoints on its ports of the
/// ServiceEntry ports' names, each at the port the ServiceEntry gives it there.
fn merge_service_entry_endpoints(built: &mut [Service]) {
    // the ServiceEntries' services by host and namespace (one pass; most meshes have few)
    let mut entries: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, s) in built.iter().enumerate() {
        if s.origin == ServiceOrigin::ServiceEntry && !s.endpoints.is_empty() {
            entries
                .entry((&s.hostname, &s.namespace))
                .or_default()
                .push(i);
        }
    }
    if entries.is_empty() {
        return;
    }
    let mut merges: Vec<(usize, Vec<Arc<Endpoint>>)> = Vec::new();
    for (k, kube) in built.iter().enumerate() {
        if kube.origin != ServiceOrigin::Kubernetes {
            continue;
        }
        let Some(ses) = entries.get(&(&*kube.hostname, &*kube.namespace)) else {
            continue;
        };
        let mut extra: Vec<Arc<Endpoint>> = Vec::new();
        for se in ses.iter().map(|&i| &built[i]) {
            for e in &se.endpoints {
                if matches!(e.address, EndpointAddress::Hostname(_)) {
                    continue;
                }
                // the Kubernetes ports of a name the ServiceEntry declares, at the port the
                // ServiceEntry gives this endpoint for it
                let ports: BTreeMap<String, u16> = kube
                    .ports
                    .iter()
                    .filter_map(|kp| {
                        let sp = se.ports.iter().find(|p| p.name == kp.name)?;
                        Some((kp.name.to_string(), se.endpoint_port(e, sp.number)))
                    })
                    .collect();
                if ports.is_empty() {
                    continue;
                }
                extra.push(Arc::new(Endpoint {
                    ports,
                    only_named_ports: true,
                    ..Endpoint::clone(e)
                }));
            }
        }
        merges.push((k, extra));
    }
    for (k, extra) in merges {
        built[k].endpoints.extend(extra);
    }
}

/// Which of several services for one host (or VIP) a client in `client_ns` sees, lowest
/// first: a Kubernetes Service keeps its host whatever ServiceEntry names it too (istiod
/// never lets a ServiceEntry shadow one); then the client's namespace (then config order,
/// the caller's).
fn precedence(s: &Service, client_ns: &str) -> (bool, bool) {
    (
        s.origin != ServiceOrigin::Kubernetes,
        *s.namespace != *client_ns,
    )
}

/// A port protocol istiod serves with a TCP proxy on a `0.0.0.0:<port>` listener (not
/// HTTP, whose routes are by host, nor TLS, whose filter chains are by SNI).
/// (Protocols are upper case in the registry; UDP ports Istio does not serve.)
fn is_tcp_protocol(p: &str) -> bool {
    !matches!(
        p,
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTPS" | "TLS" | "HTTP_PROXY" | "UDP"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn labels(v: &[(&str, &str)]) -> Labels {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Two services on one VIP: HTTP (by VIP) and TCP (by address) pick the same one, a
    /// Kubernetes Service first, whatever the config order.
    #[test]
    fn a_shared_vip_picks_the_same_service_for_http_and_tcp() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db-entry, namespace: default}
spec:
  hosts: [db.example]
  addresses: [10.96.0.30]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.7}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec: {clusterIP: 10.96.0.30, ports: [{name: tcp, port: 5432}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: range, namespace: default}
spec:
  hosts: [range.example]
  addresses: [10.96.0.0/16]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.8}]
",
        )
        .unwrap()
        .snapshot();
        let r = snap.registry();
        let ip: IpAddr = "10.96.0.30".parse().unwrap();
        let want = Some("db.data.svc.cluster.local");
        assert_eq!(
            r.service_by_vip(ip, 5432, "default").map(|s| &*s.hostname),
            want
        );
        assert_eq!(
            r.service_by_address(ip, 5432, "default")
                .map(|s| &*s.hostname),
            want
        );
        // elsewhere in the range: the range's entry (by address), no service by VIP
        let other: IpAddr = "10.96.7.7".parse().unwrap();
        assert!(r.service_by_vip(other, 5432, "default").is_none());
        assert_eq!(
            r.service_by_address(other, 5432, "default")
                .map(|s| &*s.hostname),
            Some("range.example")
        );
    }

    const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: default}
spec:
  hosts: [db.internal]
  addresses: [192.168.0.0/24]
  location: MESH_INTERNAL
  ports: [{number: 5432, name: tcp, protocol: TCP, targetPort: 15432}]
  resolution: STATIC
  endpoints:
  - {address: 1.1.1.1, labels: {version: v1}}
  - {address: 2.2.2.2, labels: {version: v2}, weight: 3, ports: {tcp: 6000}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: default}
spec:
  hosts: [vm.internal]
  location: MESH_INTERNAL
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm1, namespace: default}
spec: {address: 3.3.3.3, labels: {app: vm}, serviceAccount: vmsa}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm2, namespace: other}
spec: {address: 4.4.4.4, labels: {app: vm}}
"#;

    fn registry(workloads: Vec<Workload>, dns: &DnsCache) -> Registry {
        let loaded = load_str(CONFIG, "reg.yaml");
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let opts = MeshOptions::default();
        let defs = ServiceDefs::build(&loaded.objects, &opts);
        Registry::build(&defs, workloads.into(), dns, &opts)
    }

    #[test]
    fn kube_service_endpoints_are_registered_workloads() {
        let w = |name: &str, ns: &str, ip: &str, v: &str| Workload {
            name: name.into(),
            namespace: ns.into(),
            service_account: "bookinfo-reviews".into(),
            labels: labels(&[("app", "reviews"), ("version", v)]),
            address: ip.parse().unwrap(),
            ports: [("http".to_string(), 40123u16)].into(),
            locality: None,
            weight: 0,
        };
        let r = registry(
            vec![
                w("r1", "default", "127.0.0.1", "v1"),
                w("r2", "default", "127.0.0.2", "v2"),
                w("r3", "other", "127.0.0.3", "v1"),
            ],
            &DnsCache::new(),
        );
        let s = r
            .service("reviews.default.svc.cluster.local", "default")
            .unwrap();
        assert_eq!(s.port(9080).unwrap().protocol.as_ref(), "HTTP");
        let all: Vec<_> = s.targets(9080, None).map(|t| t.addr.unwrap()).collect();
        assert_eq!(
            all,
            vec![
                "127.0.0.1:40123".parse().unwrap(),
                "127.0.0.2:40123".parse().unwrap()
            ]
        );
        let v2 = labels(&[("version", "v2")]);
        assert_eq!(s.targets(9080, Some(&v2)).count(), 1);
        assert_eq!(
            r.service_by_address("10.96.0.10".parse().unwrap(), 9080, "x")
                .map(|s| &*s.hostname),
            Some("reviews.default.svc.cluster.local")
        );
    }

    #[test]
    fn service_entry_static_and_selector() {
        let r = registry(vec![], &DnsCache::new());
        let db = r.service("db.internal", "default").unwrap();
        let t: Vec<_> = db
            .targets(5432, None)
            .map(|t| (t.addr.unwrap().to_string(), t.endpoint.weight))
            .collect();
        assert_eq!(
            t,
            vec![
                ("1.1.1.1:15432".to_string(), 1),
                ("2.2.2.2:6000".to_string(), 3)
            ]
        );
        assert!(r
            .service_by_address("192.168.0.77".parse().unwrap(), 5432, "default")
            .is_some());
        assert!(r
            .service_by_address("192.168.0.77".parse().unwrap(), 80, "default")
            .is_none());
        let vm = r.service("vm.internal", "default").unwrap();
        let addrs: Vec<_> = vm.targets(80, None).map(|t| t.addr.unwrap()).collect();
        assert_eq!(addrs, vec!["3.3.3.3:80".parse().unwrap()]);
        assert_eq!(vm.endpoints[0].service_account.as_deref(), Some("vmsa"));
    }

    #[test]
    fn dns_endpoints_come_from_the_cache() {
        let r = registry(vec![], &DnsCache::new());
        let ext = r.service("api.example.com", "default").unwrap();
        assert_eq!(ext.targets(443, None).count(), 0);
        // the name not resolved yet stays, as a name
        let names: Vec<&EndpointAddress> = ext.endpoints.iter().map(|e| &e.address).collect();
        assert_eq!(
            names,
            [&EndpointAddress::Hostname("api.example.com".into())]
        );
        let mut dns = DnsCache::new();
        dns.insert(
            "api.example.com".into(),
            vec!["9.9.9.9".parse().unwrap(), "8.8.8.8".parse().unwrap()].into(),
        );
        let r = registry(vec![], &dns);
        let ext = r.service("api.example.com", "default").unwrap();
        assert_eq!(ext.targets(443, None).count(), 2);
    }

    #[test]
    fn kube_port_protocols() {
        let table = [
            ("http", None, "HTTP"),
            ("http-web", None, "HTTP"),
            ("grpc-x", None, "GRPC"),
            ("web", Some("http2"), "HTTP2"),
            ("tcp", None, "TCP"),
            ("foo", None, ""),
            ("grpc-web", None, "GRPC-WEB"),
            ("GRPC-Web-ui", None, "GRPC-WEB"),
            ("web", Some("kubernetes.io/wss"), "HTTPS"),
            ("proxy", Some("http_proxy"), "HTTP_PROXY"),
        ];
        for (name, app, want) in table {
            assert_eq!(kube_protocol(8080, name, None, app), want, "{name}");
        }
    }

    #[test]
    fn std_resolver_resolves_localhost() {
        let ips = StdResolver.resolve("localhost").unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()));
        assert!(StdResolver.resolve("no-such-host.invalid").is_err());
    }

    #[test]
    fn kubernetes_service_selects_workload_entries_of_its_namespace() {
        let snap = crate::mesh::Mesh::from_yaml(
            r#"
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports:
  - {name: http, port: 9080, targetPort: 8080}
  - {name: grpc, port: 9090}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: default}
spec:
  address: 10.0.0.1
  labels: {app: ratings, version: v1}
  ports: {http: 7070}
  serviceAccount: ratings-vm
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2, namespace: default}
spec: {address: 10.0.0.2, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-ns, namespace: prod}
spec: {address: 10.0.0.3, labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-app, namespace: default}
spec: {address: 10.0.0.4, labels: {app: reviews}}
"#,
        )
        .unwrap()
        .snapshot();
        let svc = snap
            .registry()
            .service("ratings.default.svc.cluster.local", "default")
            .unwrap();
        let addrs = |port| {
            let mut v: Vec<String> = svc
                .targets(port, None)
                .map(|t| t.addr.unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        // the entry's `ports` by the service port's name, else the targetPort, else the port
        assert_eq!(addrs(9080), ["10.0.0.1:7070", "10.0.0.2:8080"]);
        assert_eq!(addrs(9090), ["10.0.0.1:9090", "10.0.0.2:9090"]);
        let v1: Labels = [("version".to_string(), "v1".to_string())].into();
        let t: Vec<_> = svc.targets(9080, Some(&v1)).collect();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].endpoint.service_account.as_deref(), Some("ratings-vm"));
    }
}
