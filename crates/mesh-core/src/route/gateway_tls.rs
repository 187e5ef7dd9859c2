//! Where a TLS connection goes at a gateway: the filter chains istiod builds for a
//! gateway's `HTTPS` and `TLS` servers on one port, and how Envoy picks one by the
//! ClientHello's SNI (pilot `buildGatewayListeners` / `createGatewayTCPFilterChainOpts`).
//!
//! - A server that terminates TLS (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) is one
//!   chain whose server names are the server's hosts; a `TLS` server's bytes then go where
//!   the `tcp` route of the first bound VirtualService whose hosts overlap the server's
//!   hosts sends them (`buildGatewayNetworkFiltersFromTCPRoutes`): the SNI is not compared
//!   with VirtualService hosts.
//! - A PASSTHROUGH server adds one chain per `tls` match of every bound VirtualService whose
//!   hosts overlap the server's hosts, named by that match's `sniHosts`
//!   (`buildGatewayNetworkFiltersFromTLSRoutes`); a match naming a host an earlier
//!   match on the port named is skipped whole.
//! - An AUTO_PASSTHROUGH server adds one chain per service under its hosts, named exactly
//!   `outbound_.<port>_.<subset>_.<host>` (`builtAutoPassthroughFilterChains`).
//!
//! Envoy then takes the chain whose names fit the SNI most specifically ([`SniRank`]); a
//! name `*` makes a chain without names (pilot `toFilterChainMatch`), which also takes a
//! ClientHello without SNI.

use super::{passthrough, sni_matches, CompiledVs, L4Attrs, L4Decision, L4Rule, RouteTable};
use crate::gateway::{parse_sni_dnat, GatewayServer};
use crate::model::{self, ServerTlsMode};
use std::borrow::Cow;

/// How specifically a filter chain's server names fit a ClientHello's SNI, in Envoy's
/// order: an exact name beats the longest `*.` suffix, which beats a chain without names
/// (Istio's chains for a `*` host). Greater is more specific.
///
/// # Examples
///
/// ```
/// use mesh_core::route::SniRank;
///
/// let exact = SniRank::of(["a.example.com"], Some("a.example.com")).unwrap();
/// let wild = SniRank::of(["*.example.com"], Some("a.example.com")).unwrap();
/// let any = SniRank::of(["*"], Some("a.example.com")).unwrap();
/// assert!(exact > wild && wild > any);
/// assert!(SniRank::of(["*.example.com"], Some("example.com")).is_none());
/// // `*` is a chain without server names: it takes a ClientHello without SNI too
/// assert_eq!(SniRank::of(["*"], None), Some(SniRank::CATCH_ALL));
/// assert!(SniRank::of(["a.example.com"], None).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SniRank {
    /// 2: exact, 1: wildcard, 0: no names.
    tier: u8,
    /// The wildcard's suffix length.
    suffix: usize,
}

impl SniRank {
    /// A chain without server names.
    pub const CATCH_ALL: SniRank = SniRank { tier: 0, suffix: 0 };
    /// A chain whose name is the SNI itself.
    pub const EXACT: SniRank = SniRank { tier: 2, suffix: 0 };

    /// How a chain named `names` (lowercase or not; `ns/` prefixes of Gateway hosts are
    /// ignored) fits `sni`: `None` when it does not match. A name `*`, or no names at all,
    /// make a catch-all chain.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::SniRank;
    ///
    /// let names = ["istio-system/*.example.com", "api.example.com"];
    /// assert_eq!(SniRank::of(names, Some("API.example.com")), Some(SniRank::EXACT));
    /// assert!(SniRank::of(names, Some("www.example.com")).unwrap() > SniRank::CATCH_ALL);
    /// assert_eq!(SniRank::of(names, Some("example.org")), None);
    /// ```
    pub fn of<'n>(names: impl IntoIterator<Item = &'n str>, sni: Option<&str>) -> Option<SniRank> {
        let mut best: Option<SniRank> = None;
        let mut any = false;
        for n in names {
            any = true;
            let n = n.rsplit_once('/').map_or(n, |(_, h)| h);
            if n == "*" {
                return Some(SniRank::CATCH_ALL);
            }
            let Some(sni) = sni else { continue };
            let rank = match n.strip_prefix('*') {
                Some(suffix) => {
                    (sni.len() > suffix.len() && sni_matches(n, sni)).then_some(SniRank {
                        tier: 1,
                        suffix: suffix.len(),
                    })
                }
                None => n.eq_ignore_ascii_case(sni).then_some(SniRank::EXACT),
            };
            if rank > best {
                best = rank;
            }
        }
        if !any {
            return Some(SniRank::CATCH_ALL);
        }
        best
    }
}

/// The filter chain a ClientHello reaches on a gateway's TLS port
/// ([`RouteTable::gateway_tls_chain`]).
///
/// # Examples
///
/// See [`RouteTable::gateway_tls_chain`].
#[derive(Debug, Clone)]
pub struct GatewayTlsChain<'a, 's> {
    /// The server the chain belongs to.
    pub server: GatewayServer<'s>,
    /// How specifically the chain's names fit the SNI.
    pub rank: SniRank,
    /// A PASSTHROUGH server's chain: the VirtualService `tls` route it was made of.
    pub route: Option<L4Decision<'a>>,
}

impl RouteTable {
    /// The VirtualServices bound to Gateway `a.gateway` (exported to `a.client_namespace`,
    /// the gateway workload's) whose hosts overlap those of its server `server` (pilot
    /// `pickMatchingGatewayHosts`: a `ns/` host admits that namespace's VirtualServices
    /// only), in istiod's order.
    fn gateway_server_vss(&self, a: &L4Attrs<'_>, server: usize) -> Vec<&CompiledVs> {
        let Some(g) = a.gateway.and_then(|gw| self.gateways.get(gw)) else {
            return Vec::new();
        };
        let Some(s) = g.servers.get(server) else {
            return Vec::new();
        };
        let mut all: Vec<u32> = g.index.values().flatten().map(|(i, _)| *i).collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
            .map(|i| &self.vss[i as usize])
            .filter(|vs| vs.info.export_to.visible_to(a.client_namespace))
            .filter(|vs| {
                vs.info.hosts.iter().any(|h| {
                    let h = h.to_ascii_lowercase();
                    s.hosts.iter().any(|(nsf, sh)| {
                        nsf.as_deref().is_none_or(|n| n == &*vs.info.namespace)
                            && (&**sh == "*" || model::host::matches(sh, &h))
                    })
                })
            })
            .collect()
    }

    /// A PASSTHROUGH server's chain for `a.sni`: among the `tls` matches (port and
    /// `gateways` only, pilot `l4SingleMatch`) of the VirtualServices bound to Gateway
    /// `a.gateway` whose hosts overlap its server `server`'s, the one whose `sniHosts` fit
    /// the SNI most specifically ([`SniRank`]; the first on a tie, as istiod skips a later
    /// duplicate). `None`: no chain of this server takes the SNI.
    ///
    /// # Examples
    ///
    /// A VirtualService for `a.example.com` without `tls` routes does not hide the
    /// wildcard one's chain (VirtualService hosts are never compared with the SNI):
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   servers:
    ///   - port: {number: 443, name: tls, protocol: TLS}
    ///     hosts: ['*.example.com']
    ///     tls: {mode: PASSTHROUGH}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: web-a, namespace: istio-system}
    /// spec:
    ///   hosts: [a.example.com]
    ///   gateways: [gw]
    ///   http: [{route: [{destination: {host: web-a}}]}]
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: tls-all, namespace: istio-system}
    /// spec:
    ///   hosts: ['*.example.com']
    ///   gateways: [gw]
    ///   tls:
    ///   - match: [{sniHosts: ['*.example.com']}]
    ///     route: [{destination: {host: tls-backend, port: {number: 8443}}}]
    /// ").unwrap().snapshot();
    /// let attrs = L4Attrs {
    ///     gateway: Some("istio-system/gw"),
    ///     sni: Some("a.example.com"),
    ///     ..L4Attrs::new("istio-system", 443)
    /// };
    /// let (_, d) = snap.routes().gateway_server_tls_route(&attrs, 0).unwrap();
    /// assert_eq!(d.virtual_service.map(|v| &*v.name), Some("istio-system/tls-all"));
    /// assert_eq!(d.destinations[0].port, Some(8443));
    /// ```
    pub fn gateway_server_tls_route<'a>(
        &'a self,
        a: &L4Attrs<'_>,
        server: usize,
    ) -> Option<(SniRank, L4Decision<'a>)> {
        self.passthrough_route(a, server, &mut Vec::new())
    }

    /// [`RouteTable::gateway_server_tls_route`], the `sniHosts` of earlier chains on the
    /// port in `taken`: istiod skips a match any of whose names an earlier one took
    /// (`model.CheckDuplicates`, "duplicate SNI host names"), and takes the others'.
    fn passthrough_route<'a>(
        &'a self,
        a: &L4Attrs<'_>,
        server: usize,
        taken: &mut Vec<Box<str>>,
    ) -> Option<(SniRank, L4Decision<'a>)> {
        let mut best: Option<(SniRank, &CompiledVs, &L4Rule)> = None;
        for vs in self.gateway_server_vss(a, server) {
            for r in vs.tls.iter() {
                for m in r.matches.iter().filter(|m| m.ok_but_sni(a)) {
                    let lower = |h: &str| h.to_ascii_lowercase().into_boxed_str();
                    if m.sni.iter().any(|h| taken.contains(&lower(h))) {
                        continue;
                    }
                    taken.extend(m.sni.iter().map(|h| lower(h)));
                    let Some(rank) = SniRank::of(m.sni.iter().map(|h| &**h), a.sni) else {
                        continue;
                    };
                    if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                        best = Some((rank, vs, r));
                    }
                }
            }
        }
        let (rank, vs, r) = best?;
        Some((
            rank,
            L4Decision {
                host: Cow::Owned(a.sni.unwrap_or("").to_ascii_lowercase()),
                virtual_service: Some(&vs.info),
                route_index: Some(r.index),
                destinations: Cow::Borrowed(&r.destinations),
                passthrough: false,
            },
        ))
    }

    /// A TLS-terminating `TLS` server's route: the first `tcp` route (port and `gateways`
    /// matches, pilot `l4MultiMatch`) of the first VirtualService bound to Gateway
    /// `a.gateway` whose hosts overlap its server `server`'s, whatever the SNI (istiod
    /// builds one chain per server). No route: `virtual_service` is `None` and the gateway
    /// closes the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   servers:
    ///   - port: {number: 443, name: tls, protocol: TLS}
    ///     hosts: ['*.example.com']
    ///     tls: {mode: SIMPLE, credentialName: wildcard}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: db, namespace: istio-system}
    /// spec:
    ///   hosts: [db.example.com]
    ///   gateways: [gw]
    ///   tcp: [{route: [{destination: {host: db, port: {number: 5432}}}]}]
    /// ").unwrap().snapshot();
    /// // an SNI no VirtualService host names still reaches the server's tcp route
    /// let attrs = L4Attrs {
    ///     gateway: Some("istio-system/gw"),
    ///     sni: Some("db-primary.example.com"),
    ///     ..L4Attrs::new("istio-system", 443)
    /// };
    /// let d = snap.routes().gateway_server_tcp_route(&attrs, 0);
    /// assert_eq!(d.virtual_service.map(|v| &*v.name), Some("istio-system/db"));
    /// assert_eq!(d.destinations[0].port, Some(5432));
    /// ```
    pub fn gateway_server_tcp_route<'a>(
        &'a self,
        a: &L4Attrs<'_>,
        server: usize,
    ) -> L4Decision<'a> {
        let host = a.sni.unwrap_or("").to_ascii_lowercase();
        for vs in self.gateway_server_vss(a, server) {
            let hit = vs
                .tcp
                .iter()
                .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.ok(a)));
            if let Some(r) = hit {
                return L4Decision {
                    host: Cow::Owned(host),
                    virtual_service: Some(&vs.info),
                    route_index: Some(r.index),
                    destinations: Cow::Borrowed(&r.destinations),
                    passthrough: false,
                };
            }
        }
        let host: Cow<'_, str> = Cow::Owned(host);
        L4Decision {
            destinations: passthrough(host.clone()),
            host,
            virtual_service: None,
            route_index: None,
            passthrough: false,
        }
    }

    /// The filter chain a ClientHello with SNI `a.sni` reaches among `servers` (the
    /// servers on the port of the Gateways the gateway workload implements; those that are
    /// not `HTTPS` or `TLS` are ignored), as istiod builds them and Envoy picks one: the
    /// most specific [`SniRank`], the first on a tie. A PASSTHROUGH chain carries its
    /// `tls` route. `None`: no chain, the gateway closes the connection.
    ///
    /// # Examples
    ///
    /// A PASSTHROUGH chain for `x.api.example.com` beats a SIMPLE server for
    /// `*.api.example.com`, and a wildcard PASSTHROUGH chain routes an SNI that no server
    /// host names:
    ///
    /// ```
    /// use mesh_core::route::L4Attrs;
    ///
    /// let snap = mesh_core::mesh::Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: gw, namespace: istio-system}
    /// spec:
    ///   servers:
    ///   - port: {number: 443, name: https, protocol: HTTPS}
    ///     hosts: ['*.api.example.com']
    ///     tls: {mode: SIMPLE, credentialName: api}
    ///   - port: {number: 443, name: tls, protocol: TLS}
    ///     hosts: [a.example.com]
    ///     tls: {mode: PASSTHROUGH}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: pass, namespace: istio-system}
    /// spec:
    ///   hosts: ['*.example.com']
    ///   gateways: [gw]
    ///   tls:
    ///   - match: [{sniHosts: [x.api.example.com]}]
    ///     route: [{destination: {host: x-backend}}]
    ///   - match: [{sniHosts: ['*.example.com']}]
    ///     route: [{destination: {host: other-backend}}]
    /// ").unwrap().snapshot();
    /// let servers = snap.gateway_servers_named(&["istio-system/gw"]);
    /// let chain = |sni| {
    ///     let attrs = L4Attrs { sni: Some(sni), ..L4Attrs::new("istio-system", 443) };
    ///     snap.routes().gateway_tls_chain(servers.iter().copied(), &attrs)
    /// };
    /// let x = chain("x.api.example.com").unwrap();
    /// assert_eq!(x.server.index, 1);
    /// assert_eq!(&*x.route.unwrap().destinations[0].host, "x-backend.istio-system.svc.cluster.local");
    /// assert_eq!(chain("y.api.example.com").unwrap().server.index, 0); // terminated
    /// let b = chain("b.example.com").unwrap();
    /// assert_eq!(&*b.route.unwrap().destinations[0].host, "other-backend.istio-system.svc.cluster.local");
    /// assert!(chain("example.org").is_none());
    /// ```
    pub fn gateway_tls_chain<'a, 's>(
        &'a self,
        servers: impl IntoIterator<Item = GatewayServer<'s>>,
        a: &L4Attrs<'_>,
    ) -> Option<GatewayTlsChain<'a, 's>> {
        let mut best: Option<GatewayTlsChain<'a, 's>> = None;
        // the PASSTHROUGH chains' names so far on this port (istiod `tlsHostsByPort`)
        let mut taken: Vec<Box<str>> = Vec::new();
        for s in servers {
            if s.server.port.number != u32::from(a.port)
                || !matches!(
                    s.server.port.protocol.to_ascii_uppercase().as_str(),
                    "HTTPS" | "TLS"
                )
            {
                continue;
            }
            let mode = s.server.tls.as_ref().map(|t| t.mode).unwrap_or_default();
            let hosts = || s.server.hosts.iter().map(String::as_str);
            let (rank, route) = match mode {
                ServerTlsMode::AutoPassthrough => {
                    // one chain per service under the server's hosts, named exactly by the
                    // SNI that names it (any other SNI, or none, is another server's)
                    let Some((_, _, host)) = a.sni.and_then(parse_sni_dnat) else {
                        continue;
                    };
                    if SniRank::of(hosts(), Some(host)).is_none() {
                        continue;
                    }
                    (SniRank::EXACT, None)
                }
                ServerTlsMode::Passthrough => {
                    let attrs = L4Attrs {
                        gateway: Some(s.gateway),
                        ..*a
                    };
                    match self.passthrough_route(&attrs, s.index, &mut taken) {
                        Some((rank, d)) => (rank, Some(d)),
                        None => continue,
                    }
                }
                _ => match SniRank::of(hosts(), a.sni) {
                    Some(rank) => (rank, None),
                    None => continue,
                },
            };
            if best.as_ref().is_none_or(|b| rank > b.rank) {
                best = Some(GatewayTlsChain {
                    server: s,
                    rank,
                    route,
                });
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks() {
        let cases: &[(&[&str], Option<&str>, Option<SniRank>)] = &[
            (
                &["a.example.com"],
                Some("a.example.com"),
                Some(SniRank::EXACT),
            ),
            (
                &["A.example.com"],
                Some("a.example.com"),
                Some(SniRank::EXACT),
            ),
            (&["a.example.com"], Some("b.example.com"), None),
            (&["a.example.com"], None, None),
            (
                &["*.example.com"],
                Some("a.b.example.com"),
                Some(SniRank {
                    tier: 1,
                    suffix: 12,
                }),
            ),
            (&["*.example.com"], Some("example.com"), None),
            (&["*.example.com"], Some(".example.com"), None),
            (&["*.example.com"], None, None),
            (&["*"], None, Some(SniRank::CATCH_ALL)),
            (&["*"], Some("x"), Some(SniRank::CATCH_ALL)),
            (&["ns/*"], Some("x"), Some(SniRank::CATCH_ALL)),
            // Istio drops every name of a chain with `*`
            (
                &["a.example.com", "*"],
                Some("a.example.com"),
                Some(SniRank::CATCH_ALL),
            ),
            (&[], Some("x"), Some(SniRank::CATCH_ALL)),
            (&[], None, Some(SniRank::CATCH_ALL)),
            (
                &["*.example.com", "*.b.example.com"],
                Some("a.b.example.com"),
                Some(SniRank {
                    tier: 1,
                    suffix: 14,
                }),
            ),
        ];
        for (names, sni, want) in cases {
            assert_eq!(
                SniRank::of(names.iter().copied(), *sni),
                *want,
                "{names:?} {sni:?}"
            );
        }
    }

    #[test]
    fn a_star_sni_host_takes_a_hello_without_sni() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: default}
spec:
  hosts: ['*']
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: ['*']}]
    route: [{destination: {host: any.example.com}}]
  - match: [{port: 8443, sniHosts: [a.example.com]}]
    route: [{destination: {host: a.example.com}}]
",
        )
        .unwrap()
        .snapshot();
        let m = |port: u16| {
            let vs = &snap.routes().vss[0];
            let a = L4Attrs {
                gateway: Some("default/gw"),
                ..L4Attrs::new("default", port)
            };
            vs.tls.iter().any(|r| r.matches.iter().any(|m| m.ok(&a)))
        };
        assert!(m(443));
        assert!(!m(8443));
    }

    const SWEEP: &str = "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ['*.example.com']
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
  - port: {number: 8443, name: tls-db, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: SIMPLE, credentialName: wild}
  - port: {number: 9443, name: tls-any, protocol: TLS}
    hosts: ['*']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-a, namespace: istio-system}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  http: [{route: [{destination: {host: web-a}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-all, namespace: istio-system}
spec:
  hosts: ['*.example.com']
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: ['*.example.com']}]
    route: [{destination: {host: tls-all}}]
  - match: [{port: 443, sniHosts: [b.example.com]}]
    route: [{destination: {host: tls-b}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db-a, namespace: istio-system}
spec:
  hosts: [a.example.com]
  gateways: [gw]
  tcp: [{match: [{port: 8443}], route: [{destination: {host: db-a}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db-b, namespace: istio-system}
spec:
  hosts: [b.example.com]
  gateways: [gw]
  tcp: [{match: [{port: 8443}], route: [{destination: {host: db-b}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: istio-system}
spec:
  hosts: ['*']
  gateways: [gw]
  tls:
  - match: [{port: 9443, sniHosts: ['*']}]
    route: [{destination: {host: any-backend}}]
";

    #[test]
    fn a_match_sharing_a_name_with_an_earlier_one_is_skipped() {
        let snap = crate::mesh::Mesh::from_yaml(
            "
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ['*.example.com']
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first, namespace: istio-system}
spec:
  hosts: ['*.example.com']
  gateways: [gw]
  tls:
  - match: [{sniHosts: [a.example.com, b.example.com]}]
    route: [{destination: {host: first}}]
  - match: [{sniHosts: [b.example.com, c.example.com]}]
    route: [{destination: {host: second}}]
  - match: [{sniHosts: [d.example.com]}]
    route: [{destination: {host: third}}]
",
        )
        .unwrap()
        .snapshot();
        let servers = snap.gateway_servers_named(&["istio-system/gw"]);
        let dest = |sni: &str| {
            let attrs = L4Attrs {
                sni: Some(sni),
                ..L4Attrs::new("istio-system", 443)
            };
            let c = snap
                .routes()
                .gateway_tls_chain(servers.iter().copied(), &attrs)?;
            Some(c.route?.destinations[0].host.to_string())
        };
        let host = |n: &str| Some(format!("{n}.istio-system.svc.cluster.local"));
        assert_eq!(dest("b.example.com"), host("first"));
        // the second match shares b.example.com: istiod drops it, c included
        assert_eq!(dest("c.example.com"), None);
        assert_eq!(dest("d.example.com"), host("third"));
    }

    /// (server index, VirtualService, first destination host)
    type Chain = (usize, Option<String>, Option<String>);

    #[test]
    fn gateway_chains() {
        let snap = crate::mesh::Mesh::from_yaml(SWEEP).unwrap().snapshot();
        let servers = snap.gateway_servers_named(&["istio-system/gw"]);
        let go = |port: u16, sni: Option<&str>| {
            let attrs = L4Attrs {
                sni,
                ..L4Attrs::new("istio-system", port)
            };
            let c = snap
                .routes()
                .gateway_tls_chain(servers.iter().copied(), &attrs)?;
            let attrs = L4Attrs {
                gateway: Some(c.server.gateway),
                ..attrs
            };
            let d = match c.route {
                Some(d) => d,
                None => snap
                    .routes()
                    .gateway_server_tcp_route(&attrs, c.server.index),
            };
            let dest = d.destinations.first().map(|w| w.host.to_string());
            Some((
                c.server.index,
                d.virtual_service.map(|v| v.name.to_string()),
                dest,
            ))
        };
        let vs = |n: &str| Some(format!("istio-system/{n}"));
        let host = |n: &str| Some(format!("{n}.istio-system.svc.cluster.local"));
        let cases: &[(u16, Option<&str>, Option<Chain>)] = &[
            // finding 2: web-a (http only) does not hide tls-all's chain
            (
                443,
                Some("a.example.com"),
                Some((1, vs("tls-all"), host("tls-all"))),
            ),
            (
                443,
                Some("c.example.com"),
                Some((1, vs("tls-all"), host("tls-all"))),
            ),
            // the exact sniHosts chain beats the wildcard one, though later
            (
                443,
                Some("b.example.com"),
                Some((1, vs("tls-all"), host("tls-b"))),
            ),
            (443, Some("example.org"), None),
            (443, None, None),
            // finding 3: one chain per terminating server, the first overlapping
            // VirtualService with a tcp route, whatever the SNI
            (
                8443,
                Some("db-primary.example.com"),
                Some((2, vs("db-a"), host("db-a"))),
            ),
            (
                8443,
                Some("b.example.com"),
                Some((2, vs("db-a"), host("db-a"))),
            ),
            (8443, Some("example.org"), None),
            // finding 5: `*` sniHosts is a catch-all chain, no SNI included
            (9443, None, Some((3, vs("any"), host("any-backend")))),
            (
                9443,
                Some("x.org"),
                Some((3, vs("any"), host("any-backend"))),
            ),
        ];
        for (port, sni, want) in cases {
            assert_eq!(go(*port, *sni), *want, "{port} {sni:?}");
        }
    }
}
