//! Gateways: which `Gateway` servers a gateway workload serves (spec §5).
//!
//! A Gateway's `selector` is matched against workload labels in every namespace (istiod's
//! default); a Gateway without a selector applies to every workload.
//!
//! # Examples
//!
//! ```
//! use mesh_core::gateway::Gateways;
//! use mesh_core::model::Labels;
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: Gateway
//! metadata: {name: bookinfo-gateway, namespace: bookinfo}
//! spec:
//!   selector: {istio: ingressgateway}
//!   servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]
//! ", "gw.yaml");
//! let gateways = Gateways::build(&loaded.objects);
//! // the selector matches the ingress gateway's labels, in any namespace
//! let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
//! assert_eq!(gateways.names_for(&ingress), ["bookinfo/bookinfo-gateway"]);
//! let sidecar: Labels = [("app".to_string(), "reviews".to_string())].into();
//! assert!(gateways.names_for(&sidecar).is_empty());
//! ```

use std::sync::Arc;

use crate::model::{ConfigObject, Labels, Server, ServerTlsMode, Spec};
use crate::names::labels_match;

#[derive(Debug, Clone)]
struct GatewayDef {
    name: Arc<str>,
    selector: Option<Labels>,
    servers: Vec<Server>,
}

impl GatewayDef {
    /// Its servers, in order.
    fn servers(&self) -> impl Iterator<Item = GatewayServer<'_>> {
        self.servers
            .iter()
            .enumerate()
            .map(|(index, server)| GatewayServer {
                gateway: &self.name,
                index,
                server,
            })
    }
}

/// One server of a Gateway, for a gateway workload.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Labels, ServerTlsMode};
///
/// let snap = mesh_core::mesh::Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: httpbin-gateway, namespace: istio-system}
/// spec:
///   selector: {istio: ingressgateway}
///   servers:
///   - port: {number: 443, name: https, protocol: HTTPS}
///     hosts: [httpbin.example.com]
///     tls: {mode: SIMPLE, credentialName: httpbin-credential}
/// ").unwrap().snapshot();
/// let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
/// let servers = snap.gateway_servers(&ingress);
/// let s = &servers[0];
/// assert_eq!((s.gateway, s.index), ("istio-system/httpbin-gateway", 0));
/// assert_eq!(s.server.hosts, ["httpbin.example.com"]);
/// let tls = s.server.tls.as_ref().unwrap();
/// assert_eq!(tls.mode, ServerTlsMode::Simple);
/// assert_eq!(tls.credential_name.as_deref(), Some("httpbin-credential"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GatewayServer<'a> {
    /// `ns/name` of the Gateway (what VirtualServices list in `gateways`).
    pub gateway: &'a str,
    /// Index of the server in the Gateway.
    pub index: usize,
    /// The server as written.
    pub server: &'a Server,
}

/// Every Gateway.
///
/// # Examples
///
/// ```
/// use mesh_core::gateway::Gateways;
/// use mesh_core::model::Labels;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: public, namespace: istio-system}
/// spec:
///   selector: {istio: ingressgateway}
///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
/// ---
/// apiVersion: networking.istio.io/v1
/// kind: Gateway
/// metadata: {name: egress, namespace: istio-system}
/// spec:
///   selector: {istio: egressgateway}
///   servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: [edition.cnn.com], tls: {mode: PASSTHROUGH}}]
/// ", "gateways.yaml");
/// let gateways = Gateways::build(&loaded.objects);
/// let egress: Labels = [("istio".to_string(), "egressgateway".to_string())].into();
/// assert_eq!(gateways.names_for(&egress), ["istio-system/egress"]);
/// let servers = gateways.servers_for(&egress);
/// assert_eq!(servers.len(), 1);
/// assert_eq!(servers[0].server.port.number, 443);
/// assert!(gateways.servers_for(&Labels::new()).is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Gateways {
    defs: Vec<GatewayDef>,
}

impl Gateways {
    /// Indexes the Gateways.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::gateway::Gateways;
    /// use mesh_core::model::Labels;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: everywhere}
    /// spec:
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews}
    /// ", "config.yaml");
    /// let gateways = Gateways::build(&loaded.objects); // other kinds are ignored
    /// // no selector: every workload serves it
    /// assert_eq!(gateways.names_for(&Labels::new()), ["default/everywhere"]);
    /// ```
    pub fn build(objects: &[ConfigObject]) -> Gateways {
        Gateways {
            defs: objects
                .iter()
                .filter_map(|o| match &o.spec {
                    Spec::Gateway(g) => Some(GatewayDef {
                        name: o.key().into(),
                        selector: g.selector.clone(),
                        servers: g.servers.clone(),
                    }),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The servers a workload with these labels serves, in load order, merged as istiod's
    /// `mergeGateways` merges them: a server that repeats a TLS host (SNI) already served
    /// on its port (and bind) is left out whole, and on a port whose first server is not
    /// TLS, a later one is kept only when both are HTTP (a TCP, TLS or HTTPS server after
    /// an HTTP one, or anything after a TCP one, is left out).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::gateway::Gateways;
    /// use mesh_core::model::Labels;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: web, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers:
    ///   - port: {number: 80, name: http, protocol: HTTP}
    ///     hosts: ['*.example.com']
    ///   - port: {number: 443, name: https, protocol: HTTPS}
    ///     hosts: ['*.example.com']
    ///     tls: {mode: SIMPLE, credentialName: example-cert}
    /// ", "gw.yaml");
    /// let gateways = Gateways::build(&loaded.objects);
    /// let ingress: Labels = [("istio", "ingressgateway"), ("app", "istio-ingressgateway")]
    ///     .map(|(k, v)| (k.to_string(), v.to_string()))
    ///     .into();
    /// let servers = gateways.servers_for(&ingress);
    /// let ports: Vec<(usize, u32)> = servers.iter().map(|s| (s.index, s.server.port.number)).collect();
    /// assert_eq!(ports, [(0, 80), (1, 443)]);
    /// assert_eq!(servers[1].gateway, "istio-system/web");
    /// ```
    pub fn servers_for(&self, labels: &Labels) -> Vec<GatewayServer<'_>> {
        merge(
            self.defs
                .iter()
                .filter(|g| g.selector.as_ref().is_none_or(|s| labels_match(s, labels)))
                .flat_map(GatewayDef::servers),
        )
    }

    /// The servers of the Gateways named `names` (`ns/name`), merged as for a workload
    /// implementing them (see [`Gateways::servers_for`]): what it listens with.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::gateway::Gateways;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: public, namespace: istio-system}
    /// spec:
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ", "gw.yaml");
    /// let gateways = Gateways::build(&loaded.objects);
    /// let servers = gateways.servers_named(&["istio-system/public"]);
    /// assert_eq!(servers[0].server.port.number, 80);
    /// assert!(gateways.servers_named(&["default/public"]).is_empty());
    /// ```
    pub fn servers_named(&self, names: &[&str]) -> Vec<GatewayServer<'_>> {
        // in istiod's order of the Gateways (as loaded), whatever the order of `names`
        merge(
            self.defs
                .iter()
                .filter(|g| names.contains(&&*g.name))
                .flat_map(GatewayDef::servers),
        )
    }

    /// The gateway names (`ns/name`) a workload with these labels implements.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::gateway::Gateways;
    /// use mesh_core::model::Labels;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: a, namespace: istio-system}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [a.example.com]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: b, namespace: team-b}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [b.example.com]}]
    /// ", "gw.yaml");
    /// let gateways = Gateways::build(&loaded.objects);
    /// let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// assert_eq!(gateways.names_for(&ingress), ["istio-system/a", "team-b/b"]);
    /// ```
    pub fn names_for(&self, labels: &Labels) -> Vec<&str> {
        self.defs
            .iter()
            .filter(|g| g.selector.as_ref().is_none_or(|s| labels_match(s, labels)))
            .map(|g| &*g.name)
            .collect()
    }
}

/// Istio's `Protocol.IsHTTP` for a port protocol (any case): HTTP, HTTP2, GRPC, GRPC-Web,
/// HTTP_PROXY (not HTTPS).
pub(crate) fn is_http_protocol(p: &str) -> bool {
    ["HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(p))
}

/// istiod's `mergeGateways` over one workload's servers, in order (port translation aside).
fn merge<'a>(servers: impl Iterator<Item = GatewayServer<'a>>) -> Vec<GatewayServer<'a>> {
    use std::collections::{HashMap, HashSet};
    let mut seen_ports: HashSet<u32> = HashSet::new();
    // the first server of a port when it is not a TLS server: its protocol and bind
    let mut plaintext: HashMap<u32, (&str, Option<&str>)> = HashMap::new();
    // TLS hosts by port: host -> bind (`CheckDuplicates`)
    let mut tls_hosts: HashMap<u32, HashMap<String, Option<&str>>> = HashMap::new();
    // `serversByRouteName`'s keys
    let mut route_names: HashSet<String> = HashSet::new();
    // the binds of a TLS port's later servers (`nonPlainTextGatewayPortsBindMap`)
    let mut tls_port_binds: HashMap<u32, HashSet<Option<&str>>> = HashMap::new();
    let mut kept = Vec::new();
    for gs in servers {
        let s = gs.server;
        let port = s.port.number;
        let proto = s.port.protocol.as_str();
        let bind = s.bind.as_deref();
        let passthrough = s.tls.as_ref().is_some_and(|t| {
            matches!(
                t.mode,
                ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
            )
        });
        // `gatewayRDSRouteName`: `http.<port>`, `https.<port>.<name>.<gw>.<ns>`, or none;
        // `.<bind>` after either when the server binds an address
        let route_name = if is_http_protocol(proto) {
            Some(http_route_name(port))
        } else if proto.eq_ignore_ascii_case("HTTPS") && s.tls.is_some() && !passthrough {
            Some(https_route_name(port, &s.port.name, gs.gateway))
        } else {
            None
        }
        .map(|name| match bind {
            Some(b) if !b.is_empty() => format!("{name}.{b}"),
            _ => name,
        });
        if s.tls.is_some() {
            let known = tls_hosts.entry(port).or_default();
            let hosts: Vec<String> = s
                .hosts
                .iter()
                .map(|h| sanitize_server_host(h, gs.gateway))
                .collect();
            if hosts.iter().any(|h| known.get(h) == Some(&bind)) {
                continue; // "skipping server on gateway ..., duplicate host names"
            }
            known.extend(hosts.into_iter().map(|h| (h, bind)));
        }
        if seen_ports.insert(port) {
            // `IsTLSServer`: TLS settings on a protocol that is not HTTP
            if s.tls.is_none() || is_http_protocol(proto) {
                plaintext.insert(port, (proto, bind));
            }
            route_names.extend(route_name);
        } else if let Some(&(current, current_bind)) = plaintext.get(&port) {
            // `canMergeProtocols`: the port's first server is HTTP, and so is this one
            let mergeable = is_http_protocol(current)
                && (is_http_protocol(proto) || proto.eq_ignore_ascii_case(current));
            if current_bind == bind && (!mergeable || route_name.is_none()) {
                continue; // "conflict with existing server"
            }
            route_names.extend(route_name);
        } else {
            // a TLS port: each HTTP(S) server its own route configuration
            if let Some(name) = route_name
                && !route_names.insert(name)
            {
                continue; // "non unique port name for HTTPS port"
            }
            // a server without TLS settings on a bind already taken there: "TLS server
            // without TLS options" (the first later server makes the bind known)
            let binds = tls_port_binds.entry(port);
            let new_bind = match binds {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().insert(bind),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(HashSet::from([bind]));
                    true
                }
            };
            if s.tls.is_none() && !new_bind {
                continue;
            }
        }
        kept.push(gs);
    }
    kept
}

/// istiod's `sanitizeServerHostNamespace`: `./host` is the Gateway's namespace's,
/// `*/host` any namespace's (the bare host).
fn sanitize_server_host(host: &str, gateway: &str) -> String {
    match host.split_once('/') {
        Some((".", h)) => format!("{}/{h}", gateway.split('/').next().unwrap_or("")),
        Some(("*", h)) => h.to_owned(),
        _ => host.to_owned(),
    }
}

/// The route configuration of a gateway workload's plain HTTP servers on `port`
/// (pilot `gatewayRDSRouteName`: `http.<port>`): every Gateway selecting the workload
/// contributes the virtual hosts of its HTTP servers on that port. As
/// [`HttpRequestAttrs::gateway`](crate::route::HttpRequestAttrs::gateway), it routes with
/// the Gateways whose selector matches the request's `source_labels` (the gateway
/// workload's labels).
///
/// # Examples
///
/// ```
/// assert_eq!(mesh_core::gateway::http_route_name(8080), "http.8080");
/// ```
pub fn http_route_name(port: u32) -> String {
    format!("http.{port}")
}

/// The route configuration of one TLS-terminating HTTPS server (pilot
/// `gatewayRDSRouteName`: `https.<port>.<portName>.<name>.<namespace>`): only the virtual
/// hosts of that server, the one the connection's SNI chose. `gateway` is `ns/name`.
///
/// # Examples
///
/// ```
/// use mesh_core::gateway::https_route_name;
///
/// assert_eq!(
///     https_route_name(443, "https-public", "istio-system/gw"),
///     "https.443.https-public.gw.istio-system"
/// );
/// ```
pub fn https_route_name(port: u32, port_name: &str, gateway: &str) -> String {
    let (ns, name) = gateway.split_once('/').unwrap_or(("", gateway));
    format!("https.{port}.{port_name}.{name}.{ns}")
}

/// The parts of an SNI as Istio's mutual TLS clients write it for a destination,
/// `outbound_.<port>_.<subset>_.<host>` (an empty subset: none): what an
/// `AUTO_PASSTHROUGH` server routes by (pilot `BuildDNSSrvSubsetKey`). `None` for any
/// other name.
///
/// # Examples
///
/// ```
/// use mesh_core::gateway::parse_sni_dnat;
///
/// assert_eq!(
///     parse_sni_dnat("outbound_.9080_.v1_.reviews.default.svc.cluster.local"),
///     Some((9080, Some("v1"), "reviews.default.svc.cluster.local"))
/// );
/// assert_eq!(parse_sni_dnat("outbound_.8000_._.httpbin.foo"), Some((8000, None, "httpbin.foo")));
/// assert_eq!(parse_sni_dnat("httpbin.example.com"), None);
/// ```
pub fn parse_sni_dnat(sni: &str) -> Option<(u16, Option<&str>, &str)> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = rest.split_once("_.")?;
    let (subset, host) = rest.split_once("_.")?;
    let port = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then_some((port, (!subset.is_empty()).then_some(subset), host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_by_selector() {
        let loaded = crate::load::load_path(
            "../../../shared/istio-samples/bookinfo/networking/bookinfo-gateway.yaml",
        )
        .or_else(|_| {
            crate::load::load_path(
                "/work/shared/istio-samples/bookinfo/networking/bookinfo-gateway.yaml",
            )
        })
        .unwrap();
        let g = Gateways::build(&loaded.objects);
        let ingress: Labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        let s = g.servers_for(&ingress);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].gateway, "default/bookinfo-gateway");
        assert_eq!(s[0].server.port.number, 8080);
        assert!(g.servers_for(&Labels::new()).is_empty());
        assert_eq!(g.names_for(&ingress), vec!["default/bookinfo-gateway"]);
    }
}
