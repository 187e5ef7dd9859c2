//! Gateways: which `Gateway` servers a gateway workload serves (spec §5).
//!
//! A Gateway's `selector` is matched against workload labels in every namespace (istiod's
//! default); a Gateway without a selector applies to every workload.

use std::sync::Arc;

use crate::model::{ConfigObject, Labels, Server, Spec};
use crate::names::labels_match;

#[derive(Debug, Clone)]
struct GatewayDef {
    name: Arc<str>,
    selector: Option<Labels>,
    servers: Vec<Server>,
}

/// One server of a Gateway, for a gateway workload.
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
#[derive(Debug, Default)]
pub struct Gateways {
    defs: Vec<GatewayDef>,
}

impl Gateways {
    /// Indexes the Gateways.
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

    /// The servers a workload with these labels serves, in load order.
    pub fn servers_for(&self, labels: &Labels) -> Vec<GatewayServer<'_>> {
        self.defs
            .iter()
            .filter(|g| g.selector.as_ref().is_none_or(|s| labels_match(s, labels)))
            .flat_map(|g| {
                g.servers
                    .iter()
                    .enumerate()
                    .map(|(index, server)| GatewayServer {
                        gateway: &g.name,
                        index,
                        server,
                    })
            })
            .collect()
    }

    /// The gateway names (`ns/name`) a workload with these labels implements.
    pub fn names_for(&self, labels: &Labels) -> Vec<&str> {
        self.defs
            .iter()
            .filter(|g| g.selector.as_ref().is_none_or(|s| labels_match(s, labels)))
            .map(|g| &*g.name)
            .collect()
    }
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
