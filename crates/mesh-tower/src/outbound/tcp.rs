//! [`MeshClient::connect`]: opaque TCP connections, routed and secured as the client's
//! sidecar would (see [`crate::tcp`]).

use std::net::IpAddr;
use std::sync::Arc;

use http::uri::Authority;
use mesh_core::model::OutboundMode;
use mesh_core::route::{L4Attrs, WeightedDestination};
use mesh_core::snapshot::Snapshot;

use super::dest::{DestKey, DestState, RequestTarget};
use super::{dest_port_of, MeshClient};
use crate::accesslog::{Direction, TcpLog, UpstreamInfo};
use crate::envoy::ResponseFlags;
use crate::lb::ConnectionAddrs;
use crate::metrics::{Reporter, RequestLabels, ServiceInfo, WorkloadInfo};
use crate::outbound::ConnectError;
use crate::outlier::Outcome;
use crate::tcp::{parse_target, MeshTcpStream, Side, TcpConnectError};

impl MeshClient {
    /// Opens an opaque TCP connection to `target` (`host:port`, or `host` alone for a
    /// service with one port) through the mesh, as the client's sidecar carries a TCP
    /// connection:
    /// 1. the host is resolved as for HTTP (`mongodb` ⇒ `mongodb.<ns>.svc.cluster.local`;
    ///    an IP address ⇒ the service owning it), and the VirtualService `tcp` routes for
    ///    it (match on `port`, `sourceLabels`, `sourceNamespace`, `destinationSubnets`)
    ///    pick a weighted destination, else the service itself; on a port the service
    ///    declares `TLS` or `HTTPS` (the application speaks TLS itself), the `tls` routes
    ///    do, by the SNI the application sends: the host as written; a port it declares
    ///    HTTP is refused (istiod gives it an HTTP proxy, not a TCP one: use
    ///    [`request`](MeshClient::request));
    /// 2. an endpoint of the destination's subset is picked by its DestinationRule's load
    ///    balancer (ejected endpoints skipped; held as an active request while the
    ///    connection is open) and dialed within `connectTimeout`; at `tcp.maxConnections`
    ///    the connection is refused (UO), as Envoy's TCP proxy refuses it;
    /// 3. mutual TLS is originated with the workload's certificate (auto mTLS,
    ///    `ISTIO_MUTUAL`) or per the DestinationRule's `tls`, the server's SPIFFE identity
    ///    checked in the handshake; no ALPN is offered;
    /// 4. the connection is counted in `istio_tcp_*` (`reporter="source"`), failures
    ///    included with Envoy's flag (see [`TcpConnectError::flags`]); a failed connect
    ///    counts for outlier detection.
    ///
    /// See [`crate::tcp`] for a complete example with a [`MeshServer`](crate::inbound::MeshServer).
    ///
    /// # Examples
    ///
    /// A TCP route splitting connections between two subsets:
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Workload;
    /// use mesh_tower::outbound::{ClientWorkload, MeshClient};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: v1
    /// kind: Service
    /// metadata: {name: tcp-echo, namespace: default}
    /// spec:
    ///   selector: {app: tcp-echo}
    ///   ports: [{name: tcp, port: 9000}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: tcp-echo, namespace: default}
    /// spec:
    ///   host: tcp-echo
    ///   subsets:
    ///   - {name: v1, labels: {version: v1}}
    ///   - {name: v2, labels: {version: v2}}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: tcp-echo, namespace: default}
    /// spec:
    ///   hosts: [tcp-echo]
    ///   tcp:
    ///   - match: [{port: 9000}]
    ///     route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v2}}]
    /// ")?;
    /// let mut addrs = vec![];
    /// for version in ["v1", "v2"] {
    ///     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = listener.local_addr()?;
    ///     addrs.push(addr);
    ///     tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    ///     mesh.register(Workload {
    ///         name: format!("tcp-echo-{version}"),
    ///         namespace: "default".to_string(),
    ///         service_account: "tcp-echo".to_string(),
    ///         labels: [("app", "tcp-echo"), ("version", version)]
    ///             .map(|(k, v)| (k.to_string(), v.to_string()))
    ///             .into(),
    ///         address: addr.ip(),
    ///         ports: [("tcp".to_string(), addr.port())].into(),
    ///         locality: None,
    ///         weight: 0,
    ///     });
    /// }
    /// // no credentials: plaintext (auto mTLS needs the workload's certificate)
    /// let client = MeshClient::builder(mesh, ClientWorkload::new("sleep", "default", "sleep")).build();
    /// for _ in 0..3 {
    ///     let conn = client.connect("tcp-echo:9000").await?;
    ///     drop(conn);
    /// }
    /// let text = client.metrics().render();
    /// let opened = text
    ///     .lines()
    ///     .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
    ///     .unwrap();
    /// assert!(opened.contains(r#"destination_version="v2""#), "{opened}");
    /// assert!(opened.contains(r#"request_protocol="tcp""#), "{opened}");
    /// assert!(opened.ends_with(" 3"), "{opened}");
    /// # Ok(()) }
    /// ```
    pub async fn connect(&self, target: &str) -> Result<MeshTcpStream, TcpConnectError> {
        let shared = &*self.shared;
        let snap = shared.mesh.snapshot();
        let ns = shared.workload.namespace.as_str();
        let (host, port) = parse_target(target)?;
        let ip: Option<IpAddr> = host.parse().ok();
        let port = match port.or_else(|| snap.default_port(host, ns)) {
            Some(p) => p,
            None => {
                return Err(TcpConnectError::InvalidTarget {
                    target: target.to_string(),
                    reason: "no port, and no service of that name with exactly one port",
                })
            }
        };
        // the service the name stands for, by its full name (an address is matched to a
        // service by the route lookup)
        let named = match ip {
            Some(_) => None,
            None => snap.resolve_service(host, ns),
        };
        let fqdn = match (ip, named) {
            (Some(_), _) => None,
            (None, Some(s)) => Some(s.hostname.to_string()),
            (None, None) => Some(host.to_ascii_lowercase()),
        };
        // an address asked for is the service that owns it (its port's protocol decides the
        // filter chain, as at a sidecar)
        let by_address = ip.and_then(|a| snap.registry().service_by_address(a, port, ns));
        let protocol = named
            .or(by_address)
            .and_then(|s| s.port(port))
            .map(|p| &*p.protocol);
        // a port declared HTTP gets an HTTP connection manager from istiod, never a TCP
        // proxy: the VirtualService's `http` routes and HTTP authorization apply there,
        // which only `MeshClient::request` honours
        if matches!(
            protocol,
            Some("HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY")
        ) {
            return Err(TcpConnectError::InvalidTarget {
                target: target.to_string(),
                reason: "the service declares this port HTTP (Istio routes it as HTTP): \
                         send requests with MeshClient::request",
            });
        }
        // a port declared TLS or HTTPS carries the application's own TLS: routed by the
        // `tls` routes on its SNI, which is the name the application connects to
        let tls_port = matches!(protocol, Some("TLS" | "HTTPS"));
        let sni = host.to_ascii_lowercase();
        let mut attrs = L4Attrs::new(ns, port);
        attrs.source_labels = &shared.workload.labels;
        // the address the application's sidecar would see it dial: the IP it asked for,
        // else the service's own address (a Kubernetes cluster IP, a ServiceEntry's
        // `addresses`), for `destinationSubnets`
        attrs.destination_ip = ip.or_else(|| {
            named
                .and_then(|s| s.addresses.first())
                .filter(|n| n.prefix_len() == n.max_prefix_len())
                .map(|n| n.addr())
        });
        let decision = if tls_port && ip.is_some() {
            // by address the SNI is unknown (the application's ClientHello is not read):
            // no `tls` route matches, and the service's own cluster takes it
            match by_address.filter(|s| !s.hostname.starts_with('*')) {
                Some(s) => snap.route_tls_to(&attrs, &s.hostname),
                None => snap.route_tls(&attrs),
            }
        } else if tls_port {
            attrs.sni = Some(&sni);
            // the service's VirtualServices (a short name `reviews` is the SNI the
            // application sends, and `reviews.<ns>.svc.cluster.local` the service)
            // (a wildcard ServiceEntry's VirtualServices are found by the name asked for)
            match named.filter(|s| !s.hostname.starts_with('*')) {
                Some(s) => snap.route_tls_to(&attrs, &s.hostname),
                None => snap.route_tls(&attrs),
            }
        } else {
            attrs.sni = fqdn.as_deref();
            snap.route_tcp(&attrs)
        };
        let routed = decision.virtual_service.is_some();
        let Some(wd) = decision.pick(rand::random::<u64>()) else {
            let cluster = format!("outbound|{port}||{}", decision.host);
            let e = TcpConnectError::ClusterNotFound { cluster };
            self.count_failure(&e, Arc::new(ServiceInfo::default()), None);
            return Err(e);
        };
        let to = Routed {
            target,
            host,
            port,
            routed,
            sidecar: true,
            log_downstream: None,
            raw: false,
            passthrough_chain: decision.passthrough,
            first_host: (decision.destinations.len() > 1)
                .then(|| decision.destinations.first().map(|d| &*d.host))
                .flatten(),
        };
        self.connect_routed(&snap, wd, to).await
    }

    /// Connects to the routed destination `wd` (steps 2 to 4 of [`MeshClient::connect`]):
    /// for [`MeshClient::connect`] and the gateway's TCP and TLS passthrough servers.
    pub(crate) async fn connect_routed(
        &self,
        snap: &Snapshot,
        wd: &WeightedDestination,
        to: Routed<'_>,
    ) -> Result<MeshTcpStream, TcpConnectError> {
        let shared = &*self.shared;
        let ns = shared.workload.namespace.as_str();
        let Routed {
            target,
            host,
            port,
            routed,
            sidecar,
            log_downstream,
            raw,
            passthrough_chain,
            first_host,
        } = to;
        let ip: Option<IpAddr> = host.parse().ok();
        // the access-log entry (Envoy's TCP proxy logs every downstream connection, a
        // failed one with its flag): a gateway's, or the client's when it writes one
        let log = match log_downstream {
            Some((addrs, sni)) => {
                TcpLog::start(Direction::Inbound, shared.log_format.as_ref(), addrs, sni)
            }
            None if shared.logs_access() => TcpLog::start(
                Direction::Outbound,
                shared.log_format.as_ref(),
                ConnectionAddrs::default(),
                None,
            ),
            None => None,
        };
        let log = std::sync::Mutex::new(log);
        // what the entry says of the upstream: the endpoint (not a placeholder for a name)
        // and the cluster
        let upstream_info =
            |endpoint: Option<std::net::SocketAddr>, cluster: Option<String>| UpstreamInfo {
                host: endpoint.filter(|a| !super::dest::is_placeholder(*a)),
                cluster: cluster.map(Arc::from),
                ..UpstreamInfo::default()
            };
        let fail = |e: TcpConnectError,
                    service: Arc<ServiceInfo>,
                    peer: Option<Arc<WorkloadInfo>>| {
            self.count_failure(&e, service, peer);
            let entry = log.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut entry) = entry {
                entry.flags = e.flags();
                let (endpoint, cluster) = match &e {
                    TcpConnectError::Connect {
                        cluster, endpoint, ..
                    } => (Some(*endpoint), Some(cluster.clone())),
                    TcpConnectError::NoHealthyUpstream { cluster }
                    | TcpConnectError::ClusterNotFound { cluster } => (None, Some(cluster.clone())),
                    _ => (None, None),
                };
                let mut up = upstream_info(endpoint, cluster);
                if let TcpConnectError::Connect { error, .. } = &e
                    && matches!(**error, ConnectError::Tls { .. })
                {
                    up.transport_failure = Some(error.to_string());
                }
                entry.upstream = Some(up);
                entry.finish(0, 0);
            }
            Err(e)
        };
        let unknown_service = || Arc::new(ServiceInfo::default());
        let black_hole = || {
            // istio_stats names the cluster; a TCP connection has no Host for the service
            // host, which stays unknown
            let service = Arc::new(ServiceInfo {
                host: String::new(),
                name: "BlackHoleCluster".to_owned(),
                namespace: String::new(),
            });
            let e = TcpConnectError::BlackHole {
                target: target.to_string(),
            };
            (e, service)
        };
        // with a Sidecar, the copy of a duplicated host its egress imports
        let scope = snap
            .sidecar_for(ns, &shared.workload.labels)
            .filter(|_| sidecar);
        let service = snap
            .registry()
            .service_for_client(&wd.host, ns, scope, wd.port.unwrap_or(port))
            // a routed destination is a cluster of that very host (a wildcard ServiceEntry
            // has none for a name under it)
            .filter(|s| !routed || *s.hostname == *wd.host);
        // Traffic Envoy has no cluster for, when no route named one: its passthrough
        // filter chain forwards it under ALLOW_ANY (Istio's default) to the original
        // destination, the host and port the application asked for, or to the client
        // Sidecar's `egressProxy`; black-holed under REGISTRY_ONLY. (Not at a gateway.)
        let allow_any = sidecar
            && scope
                .and_then(|sc| sc.outbound_traffic_policy())
                .unwrap_or(snap.options().outbound_traffic_policy)
                != OutboundMode::RegistryOnly;
        let egress_proxy = scope.and_then(|sc| sc.egress_proxy()).filter(|_| allow_any);
        // no chain of the service took it (its `tls` routes name other SNIs): Envoy's
        // passthrough chain, closed under REGISTRY_ONLY; under ALLOW_ANY it forwards to the
        // original destination, the service's address, whose endpoints are the service's:
        // reached here as the service (see the README: with the mesh's mTLS)
        if passthrough_chain && !allow_any {
            let (e, service) = black_hole();
            return fail(e, service, None);
        }
        let unrouted = |dest_port: u16| {
            if routed {
                let cluster = wd.cluster_name(dest_port);
                return Some(fail(
                    TcpConnectError::ClusterNotFound { cluster },
                    unknown_service(),
                    None,
                ));
            }
            if allow_any {
                return None;
            }
            let (e, service) = black_hole();
            Some(fail(e, service, None))
        };
        let mut passthrough = false;
        let service = match service {
            Some(s) => s,
            None => match unrouted(wd.port.unwrap_or(port)) {
                Some(answer) => return answer,
                None => {
                    passthrough = true;
                    super::dest::passthrough_service()
                }
            },
        };
        // without a route, the connection's own port (a sidecar builds a service's chains
        // on its declared ports only); a route's destination without a port, the service's
        // only port
        let dest_port = if routed {
            dest_port_of(wd, service, port)
        } else {
            wd.port.unwrap_or(port)
        };
        // a port the service does not declare is no cluster [spec §2.4], nor is a service
        // the client's Sidecar does not import
        let no_cluster = !passthrough
            && ((!service.ports.is_empty() && service.port(dest_port).is_none())
                || scope.is_some_and(|sc| {
                    !sc.imports(ns, &service.namespace, &service.hostname, dest_port)
                }));
        let (service, dest_port) = if no_cluster {
            if let Some(answer) = unrouted(dest_port) {
                return answer;
            }
            passthrough = true;
            (super::dest::passthrough_service(), port)
        } else {
            (service, dest_port)
        };
        // the Sidecar's `egressProxy` takes what would pass through (its cluster; 503 NC
        // when Envoy would have none: not in the registry, not imported, undeclared port)
        let egress_wd;
        let (service, dest_port, wd) = match egress_proxy.filter(|_| passthrough) {
            None => (service, dest_port, wd),
            Some(ep) => {
                let (target, found) = super::egress_target(snap, ns, scope, ep);
                egress_wd = target;
                let Some((svc, p)) = found else {
                    let cluster = egress_wd.cluster_name(egress_wd.port.unwrap_or(0));
                    return fail(
                        TcpConnectError::ClusterNotFound { cluster },
                        unknown_service(),
                        None,
                    );
                };
                passthrough = false;
                (svc, p, &egress_wd)
            }
        };
        // a `resolution: NONE` service connects where the application asked to
        let authority_text = match ip {
            Some(IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let key = match Authority::try_from(authority_text.as_str()) {
            Ok(authority) => {
                let request = RequestTarget {
                    authority: &authority,
                    port,
                    https: false,
                };
                DestKey::for_request(service, wd.subset.clone(), dest_port, request)
            }
            Err(_) => DestKey::new(Arc::clone(&service.hostname), wd.subset.clone(), dest_port),
        };
        let dest = shared.cache.get(snap, shared, service, &key);
        let cluster = || {
            if passthrough {
                super::dest::PASSTHROUGH_CLUSTER.to_owned()
            } else {
                wd.cluster_name(dest_port)
            }
        };
        if !dest.subset_found() {
            return fail(
                TcpConnectError::ClusterNotFound { cluster: cluster() },
                unknown_service(),
                None,
            );
        }
        // consistent hashing by source IP works for TCP (Envoy's tcp_proxy hash policy);
        // header and cookie keys have nothing to hash: a random pick
        let conn_addrs = ConnectionAddrs {
            remote: Some(shared.hash_source),
            local: None,
        };
        let pick = || {
            dest.lb
                .pick_for_request(
                    dest.hash_key.as_ref(),
                    &http::HeaderMap::new(),
                    &http::Uri::from_static("/"),
                    conn_addrs,
                )
                .ok()
                .map(|(g, _)| g)
        };
        // raw (AUTO_PASSTHROUGH): only endpoints that run the mesh's mTLS themselves,
        // which then terminate the client's; another pick is drawn past the others
        let ok = |g: &crate::lb::RequestGuard| !raw || dest.istio_tls.get(g.index()) == Some(&true);
        let tries = if raw {
            dest.istio_tls.len().max(1) * 4
        } else {
            1
        };
        let guard = match (0..tries).find_map(|_| pick().filter(|g| ok(g))) {
            Some(g) => g,
            None => {
                let e = TcpConnectError::NoHealthyUpstream { cluster: cluster() };
                return fail(e, Arc::clone(&dest.service), None);
            }
        };
        let index = guard.index();
        let endpoint = guard.endpoint().addr();
        let unconnected = dest.peers_unconnected.get(index).cloned();
        // `maxConnections` reached: refused at once (Envoy's TCP proxy checks the circuit
        // breaker before asking its pool, which would queue the connection behind ones that
        // may never close: UO, no host chosen)
        let permit = match dest.breaker.try_connection() {
            Ok(p) => p,
            Err(o) => {
                let e = TcpConnectError::Connect {
                    cluster: cluster(),
                    endpoint,
                    error: Box::new(ConnectError::Overflow(o)),
                };
                return fail(e, Arc::clone(&dest.service), None);
            }
        };
        let connector = dest.upstream.connector();
        let connected = if raw {
            connector.connect_raw(endpoint, permit).await
        } else {
            connector.connect_opaque(endpoint, permit).await
        };
        let now = std::time::Instant::now();
        let conn = match connected {
            Ok(c) => {
                if let Some(od) = &dest.outlier {
                    od.record(index, Outcome::ConnectSucceeded, now);
                }
                c
            }
            Err(error) => {
                if let Some(od) = &dest.outlier
                    && !matches!(error, ConnectError::Overflow(_))
                {
                    od.record(index, Outcome::ConnectFailed, now);
                }
                tracing::debug!(%endpoint, %error, "outbound TCP connect failed");
                let e = TcpConnectError::Connect {
                    cluster: cluster(),
                    endpoint,
                    error: Box::new(error),
                };
                return fail(e, Arc::clone(&dest.service), unconnected);
            }
        };
        // an endpoint dialed by name is logged with the address reached
        let reached = conn.remote().unwrap_or(endpoint);
        let socket = socket2::SockRef::from(conn.tcp()).try_clone().ok();
        let (io, peer_id) = conn.into_tokio();
        let mutual_tls = peer_id.is_some() && dest.mutual_tls.get(index).copied().unwrap_or(false);
        let peer = peer_view(
            &dest,
            index,
            peer_id.as_ref().map(|p| p.identity().as_uri()),
        );
        let labels = RequestLabels::tcp(
            Reporter::Source,
            Arc::clone(&self.metrics_config.local),
            peer,
            Arc::clone(&dest.service),
            ResponseFlags::NONE,
            mutual_tls,
        );
        let series = self.metrics_config.metrics.tcp_connection(&labels);
        let mut entry = log.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entry.as_mut() {
            e.upstream = Some(upstream_info(Some(reached), Some(cluster())));
        }
        // a gateway's entry counts from its downstream's side: what the client sent is
        // what this stream writes upstream
        let side = Side::Outbound;
        // (the first host's rule only when it is a service istiod knows: `ServiceForHostname`)
        let proxy_idle = snap.options().idle_timeout;
        let (idle, max_duration) = match first_host {
            Some(h) => super::dest::tcp_timeouts_of(
                snap.registry()
                    .service(h, ns)
                    .and_then(|_| snap.destination_rule(h, ns))
                    .and_then(super::dest::dr_top_tcp),
                proxy_idle,
            ),
            None => dest.tcp_timeouts(proxy_idle),
        };
        Ok(MeshTcpStream::new(io, side, Some(series))
            .with_peer(peer_id)
            .with_guard(guard)
            .with_log(entry)
            .with_timeouts(idle, max_duration, socket))
    }

    /// Counts a connection that could not be made, as the client's sidecar counts the
    /// connection the application opened to it: opened and closed, with the failure's flag.
    fn count_failure(
        &self,
        e: &TcpConnectError,
        service: Arc<ServiceInfo>,
        peer: Option<Arc<WorkloadInfo>>,
    ) {
        let c = &self.metrics_config;
        let labels = RequestLabels::tcp(
            Reporter::Source,
            Arc::clone(&c.local),
            peer.unwrap_or_else(|| Arc::clone(&c.unknown)),
            service,
            e.flags(),
            false,
        );
        drop(c.metrics.tcp_connection(&labels));
    }
}

/// Where a routed TCP connection was going, for [`MeshClient::connect_routed`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routed<'a> {
    /// What the application (or the gateway's client) asked for, for errors.
    pub(crate) target: &'a str,
    /// The host asked for (name or address): the original destination of a
    /// `resolution: NONE` service.
    pub(crate) host: &'a str,
    /// The port asked for.
    pub(crate) port: u16,
    /// A VirtualService routed it (a missing destination is NC, not the black hole).
    pub(crate) routed: bool,
    /// The client's `Sidecar` scopes what it may reach (not for a gateway).
    pub(crate) sidecar: bool,
    /// Write an access-log entry for a gateway's downstream connection (its addresses,
    /// SNI); `None`: the client's own access log decides.
    pub(crate) log_downstream: Option<(crate::lb::ConnectionAddrs, Option<&'a str>)>,
    /// Connect in plaintext whatever the DestinationRule says: the bytes carry the
    /// downstream's own TLS to the endpoint (an `AUTO_PASSTHROUGH` gateway's SNI-DNAT
    /// clusters, which istiod builds without a TLS transport socket).
    pub(crate) raw: bool,
    /// No chain of a service took it: the listener's passthrough chain (see
    /// [`L4Decision::passthrough`](mesh_core::route::L4Decision::passthrough)).
    pub(crate) passthrough_chain: bool,
    /// The host of the route's first destination, when it has several: istiod builds one
    /// TCP proxy for weighted destinations (`buildOutboundNetworkFiltersWithWeightedClusters`),
    /// its idle timeout and maximum duration from that host's DestinationRule alone.
    pub(crate) first_host: Option<&'a str>,
}

/// The metrics' view of endpoint `index` on a connection whose server presented
/// `principal`: the endpoint's own (with the principal it was expected to have) when they
/// agree, else the same with the principal presented; without TLS, no principal.
fn peer_view(dest: &DestState, index: usize, principal: Option<&str>) -> Arc<WorkloadInfo> {
    let unknown = || Arc::new(WorkloadInfo::default());
    match principal {
        None => dest
            .peers_unconnected
            .get(index)
            .cloned()
            .unwrap_or_else(unknown),
        Some(p) => match dest.peers.get(index) {
            Some(w) if w.principal == p => Arc::clone(w),
            Some(w) => Arc::new(WorkloadInfo {
                principal: p.to_owned(),
                ..(**w).clone()
            }),
            None => Arc::new(WorkloadInfo::from_principal(p)),
        },
    }
}
