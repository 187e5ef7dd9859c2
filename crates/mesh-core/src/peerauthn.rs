//! PeerAuthentication: the mTLS mode a workload's port requires (spec §7).
//!
//! Composition: PERMISSIVE, overridden by the mesh policy (selector-less, root namespace),
//! then the namespace policy (selector-less, workload's namespace), then the workload policy
//! (matching selector, workload's namespace; selectors in the root namespace are ignored),
//! then that policy's `portLevelMtls` for the port; UNSET inherits at every step. Within a
//! level the oldest policy wins (`creationTimestamp`, then name, then namespace).
//!
//! # Examples
//!
//! ```
//! use mesh_core::model::{Labels, MtlsMode};
//! use mesh_core::names::MeshOptions;
//! use mesh_core::peerauthn::PeerAuthentications;
//!
//! let loaded = mesh_core::load::load_str("
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: default, namespace: istio-system}
//! spec: {mtls: {mode: STRICT}}
//! ---
//! apiVersion: security.istio.io/v1
//! kind: PeerAuthentication
//! metadata: {name: metrics, namespace: bookinfo}
//! spec:
//!   selector: {matchLabels: {app: reviews}}
//!   portLevelMtls: {15020: {mode: DISABLE}}
//! ", "pa.yaml");
//! let pas = PeerAuthentications::build(&loaded.objects, &MeshOptions::default());
//! let reviews: Labels = [("app".to_string(), "reviews".to_string())].into();
//! assert_eq!(pas.mode("bookinfo", &reviews, 9080).mode, MtlsMode::Strict); // the mesh policy
//! assert_eq!(pas.mode("bookinfo", &reviews, 15020).mode, MtlsMode::Disable); // the port override
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{ConfigObject, Labels, MtlsMode, PeerMtls, Spec};
use crate::names::{labels_match, MeshOptions};

#[derive(Debug, Clone)]
struct Pa {
    name: Arc<str>,
    mode: MtlsMode,
    selector: Option<Labels>,
    ports: BTreeMap<u32, PeerMtls>,
}

/// The effective mode and the policies that set it.
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
/// ---
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: legacy}
/// spec: {mtls: {mode: PERMISSIVE}}
/// ").unwrap().snapshot();
/// let none = Labels::new();
/// let e = snap.peer_authentication_detail("legacy", &none, 8080);
/// assert_eq!((e.mode, e.policy.as_deref()), (MtlsMode::Permissive, Some("legacy/default")));
/// let e = snap.peer_authentication_detail("foo", &none, 8080);
/// assert_eq!((e.mode, e.policy.as_deref()), (MtlsMode::Strict, Some("istio-system/default")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMtls {
    /// STRICT, PERMISSIVE or DISABLE (never UNSET).
    pub mode: MtlsMode,
    /// The policy that set the mode (`None`: the PERMISSIVE default).
    pub policy: Option<Arc<str>>,
}

/// Every PeerAuthentication, indexed.
///
/// # Examples
///
/// ```
/// use mesh_core::model::{Labels, MtlsMode};
/// use mesh_core::names::MeshOptions;
/// use mesh_core::peerauthn::PeerAuthentications;
///
/// let loaded = mesh_core::load::load_str("
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: default, namespace: foo}
/// spec: {mtls: {mode: STRICT}}
/// ---
/// apiVersion: security.istio.io/v1
/// kind: PeerAuthentication
/// metadata: {name: httpbin, namespace: foo}
/// spec:
///   selector: {matchLabels: {app: httpbin}}
///   mtls: {mode: UNSET}
///   portLevelMtls: {8080: {mode: PERMISSIVE}}
/// ", "pa.yaml");
/// let pas = PeerAuthentications::build(&loaded.objects, &MeshOptions::default());
/// let httpbin: Labels = [("app".to_string(), "httpbin".to_string())].into();
/// // UNSET inherits the namespace's STRICT; the port-level entry overrides it
/// assert_eq!(pas.mode("foo", &httpbin, 8000).mode, MtlsMode::Strict);
/// let e = pas.mode("foo", &httpbin, 8080);
/// assert_eq!((e.mode, e.policy.as_deref()), (MtlsMode::Permissive, Some("foo/httpbin")));
/// // no policy anywhere: PERMISSIVE, set by no one
/// assert_eq!(pas.mode("bar", &httpbin, 8000), mesh_core::peerauthn::EffectiveMtls {
///     mode: MtlsMode::Permissive,
///     policy: None,
/// });
/// ```
#[derive(Debug, Default)]
pub struct PeerAuthentications {
    mesh: Option<Pa>,
    namespace: HashMap<Box<str>, Pa>,
    workload: HashMap<Box<str>, Vec<Pa>>,
}

impl PeerAuthentications {
    /// Indexes the PeerAuthentications.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, MtlsMode};
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::peerauthn::PeerAuthentications;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: mesh-root}
    /// spec: {mtls: {mode: STRICT}}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: ignored, namespace: mesh-root}
    /// spec: {selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}
    /// ", "pa.yaml");
    /// let opts = MeshOptions { root_namespace: "mesh-root".into(), ..MeshOptions::default() };
    /// let pas = PeerAuthentications::build(&loaded.objects, &opts);
    /// let reviews: Labels = [("app".to_string(), "reviews".to_string())].into();
    /// // the selector-less policy in the root namespace is mesh-wide; one with a selector is ignored
    /// let e = pas.mode("bookinfo", &reviews, 9080);
    /// assert_eq!((e.mode, e.policy.as_deref()), (MtlsMode::Strict, Some("mesh-root/default")));
    /// ```
    pub fn build(objects: &[ConfigObject], opts: &MeshOptions) -> PeerAuthentications {
        let mut all: Vec<(&ConfigObject, &crate::model::PeerAuthentication)> = objects
            .iter()
            .filter_map(|o| match &o.spec {
                Spec::PeerAuthentication(pa) => Some((o, pa)),
                _ => None,
            })
            .collect();
        // the oldest first, ties by name then namespace, as istiod sorts them
        all.sort_by(|a, b| a.0.istio_order(b.0));
        let mut out = PeerAuthentications::default();
        for (o, pa) in all {
            let ns = o.metadata.namespace.as_str();
            let p = Pa {
                name: o.key().into(),
                mode: pa.mtls.map(|m| m.mode).unwrap_or_default(),
                // an empty matchLabels is a namespace (or mesh) policy, as in istiod
                selector: pa
                    .selector
                    .as_ref()
                    .filter(|s| !s.match_labels.is_empty())
                    .map(|s| s.match_labels.clone()),
                ports: pa.port_level_mtls.clone(),
            };
            match (&p.selector, ns == opts.root_namespace) {
                (None, true) => {
                    out.mesh.get_or_insert(p);
                }
                (None, false) => {
                    out.namespace.entry(ns.into()).or_insert(p);
                }
                (Some(_), true) => {} // ignored in the root namespace
                (Some(_), false) => out.workload.entry(ns.into()).or_default().push(p),
            }
        }
        out
    }

    /// The mode for a workload's port (`port` is the workload/container port).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::model::{Labels, MtlsMode};
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::peerauthn::PeerAuthentications;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: legacy}
    /// spec: {mtls: {mode: DISABLE}}
    /// ---
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: api, namespace: legacy}
    /// spec: {selector: {matchLabels: {app: api}}, mtls: {mode: STRICT}}
    /// ", "pa.yaml");
    /// let pas = PeerAuthentications::build(&loaded.objects, &MeshOptions::default());
    /// let api: Labels = [("app".to_string(), "api".to_string())].into();
    /// let web: Labels = [("app".to_string(), "web".to_string())].into();
    /// assert_eq!(pas.mode("legacy", &api, 8080).mode, MtlsMode::Strict); // workload policy
    /// let e = pas.mode("legacy", &web, 8080);
    /// assert_eq!((e.mode, e.policy.as_deref()), (MtlsMode::Disable, Some("legacy/default")));
    /// ```
    pub fn mode(&self, namespace: &str, labels: &Labels, port: u16) -> EffectiveMtls {
        let mut e = EffectiveMtls {
            mode: MtlsMode::Permissive,
            policy: None,
        };
        let mut apply = |mode: MtlsMode, name: &Arc<str>| {
            if mode != MtlsMode::Unset {
                e.mode = mode;
                e.policy = Some(name.clone());
            }
        };
        if let Some(p) = &self.mesh {
            apply(p.mode, &p.name);
        }
        if let Some(p) = self.namespace.get(namespace) {
            apply(p.mode, &p.name);
        }
        if let Some(p) = self.workload.get(namespace).and_then(|v| {
            v.iter()
                .find(|p| p.selector.as_ref().is_some_and(|s| labels_match(s, labels)))
        }) {
            apply(p.mode, &p.name);
            if let Some(pm) = p.ports.get(&u32::from(port)) {
                apply(pm.mode, &p.name);
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_table() {
        let loaded = crate::load::load_str(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ignored, namespace: istio-system}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ns, namespace: legacy}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: newer, namespace: legacy, creationTimestamp: "2024-01-02T00:00:00Z"}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: wl, namespace: legacy}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: UNSET}
  portLevelMtls: {8080: {mode: DISABLE}, 9090: {mode: STRICT}}
"#,
            "pa.yaml",
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let pas = PeerAuthentications::build(&loaded.objects, &MeshOptions::default());
        let a: Labels = [("app".to_string(), "a".to_string())].into();
        let none = Labels::new();
        let table = [
            (
                "default",
                &none,
                80,
                MtlsMode::Strict,
                Some("istio-system/mesh"),
            ),
            (
                "default",
                &a,
                80,
                MtlsMode::Strict,
                Some("istio-system/mesh"),
            ),
            ("legacy", &none, 80, MtlsMode::Permissive, Some("legacy/ns")),
            ("legacy", &a, 80, MtlsMode::Permissive, Some("legacy/ns")),
            ("legacy", &a, 8080, MtlsMode::Disable, Some("legacy/wl")),
            ("legacy", &a, 9090, MtlsMode::Strict, Some("legacy/wl")),
        ];
        for (ns, labels, port, mode, policy) in table {
            let e = pas.mode(ns, labels, port);
            assert_eq!(e.mode, mode, "{ns} {labels:?} {port}");
            assert_eq!(e.policy.as_deref(), policy, "{ns} {labels:?} {port}");
        }
        let empty = PeerAuthentications::build(&[], &MeshOptions::default());
        assert_eq!(empty.mode("x", &none, 1).mode, MtlsMode::Permissive);
    }

    #[test]
    fn ties_between_policies_go_by_name_as_in_istiod() {
        // istiod sorts by creationTimestamp, then name, then namespace: file order decides
        // nothing, and an offset timestamp is compared as the instant it names
        let loaded = crate::load::load_str(
            r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: zz-strict, namespace: foo}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: aa-permissive, namespace: foo}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: later, namespace: bar, creationTimestamp: "2024-01-02T00:30:00+01:00"}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: earlier, namespace: bar, creationTimestamp: "2024-01-02T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
"#,
            "pa.yaml",
        );
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let pas = PeerAuthentications::build(&loaded.objects, &MeshOptions::default());
        let none = Labels::new();
        let foo = pas.mode("foo", &none, 80);
        assert_eq!(
            (foo.mode, foo.policy.as_deref()),
            (MtlsMode::Permissive, Some("foo/aa-permissive"))
        );
        // 00:30+01:00 is 23:30 the day before: older than 00:00Z
        let bar = pas.mode("bar", &none, 80);
        assert_eq!(
            (bar.mode, bar.policy.as_deref()),
            (MtlsMode::Disable, Some("bar/later"))
        );
    }
}
