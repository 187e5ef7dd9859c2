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
//! A service a Sidecar does not import is, for Envoy, not a cluster at all: under
//! `REGISTRY_ONLY` its traffic is black-holed (502), under `ALLOW_ANY` it passes through to
//! the original destination address, which an in-process client does not have.
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

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{ConfigObject, Labels, OutboundMode, Spec};
use crate::names::{labels_match, MeshOptions};

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
    hosts: Vec<(NsSel, Box<str>)>,
}

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
    registry_only: bool,
}

impl SidecarScope {
    fn compile(o: &ConfigObject, sc: &crate::model::Sidecar) -> SidecarScope {
        let mut listeners: Vec<Listener> = sc
            .egress
            .iter()
            .map(|l| Listener {
                port: l
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok())
                    .filter(|p| *p != 0),
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
            })
            .collect();
        if listeners.is_empty() {
            // no egress: istiod gives the scope one listener importing `*/*`
            listeners.push(Listener {
                port: None,
                hosts: vec![(NsSel::Any, "*".into())],
            });
        }
        SidecarScope {
            name: o.key().into(),
            listeners,
            // the block present without a mode is REGISTRY_ONLY (the proto's zero value)
            registry_only: sc
                .outbound_traffic_policy
                .as_ref()
                .is_some_and(|p| p.mode == OutboundMode::RegistryOnly),
        }
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
        self.registry_only
    }

    /// Whether a workload of `client_ns` using this Sidecar imports the service `host`
    /// (an FQDN or a ServiceEntry host) defined in `service_ns`, on `port`.
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
    /// ```
    pub fn imports(&self, client_ns: &str, service_ns: &str, host: &str, port: u16) -> bool {
        self.listeners
            .iter()
            .filter(|l| l.port.is_none_or(|p| p == port))
            .any(|l| {
                l.hosts
                    .iter()
                    .any(|(ns, name)| ns.selects(service_ns, client_ns) && host_matches(name, host))
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
        let Some(listener) = self.listener_for(port) else {
            return false;
        };
        listener.hosts.iter().any(|(ns, name)| {
            ns.selects(vs_ns, client_ns)
                && vs_hosts
                    .iter()
                    .any(|h| crate::model::host::matches(name, h.as_ref()))
        })
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
    pub(crate) fn build(objects: &[ConfigObject], opts: &MeshOptions) -> Sidecars {
        let mut all: Vec<(&str, usize, &ConfigObject, &crate::model::Sidecar)> = objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match &o.spec {
                Spec::Sidecar(sc) => Some((
                    o.metadata.creation_timestamp.as_deref().unwrap_or(""),
                    i,
                    o,
                    sc,
                )),
                _ => None,
            })
            .collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut out = Sidecars::default();
        for (_, _, o, sc) in all {
            let ns = o.metadata.namespace.as_str();
            let scope = Arc::new(SidecarScope::compile(o, sc));
            // a selector without labels applies to the whole namespace (istiod's warning)
            let selector = sc
                .workload_selector
                .as_ref()
                .map(|s| &s.labels)
                .filter(|l| !l.is_empty());
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
        let sc = Sidecars::build(&loaded.objects, &MeshOptions::default());
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
