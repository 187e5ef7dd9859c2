//! [`Mesh`]: the handle the client and server stacks hold. Cheap to clone; readers load the
//! current [`Snapshot`] without locks or blocking (`arc-swap`) and never see half a config.
//!
//! ```
//! use mesh_core::mesh::Mesh;
//!
//! let mesh = Mesh::from_yaml("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: r}
//! spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}
//! ").unwrap();
//! let before = mesh.snapshot();
//! // a config that fails validation is refused; the last good snapshot stays
//! let bad = mesh_core::load::load_str("
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata: {name: r}
//! spec: {hosts: [reviews], http: [{route: [{destination: {host: '/'}}]}]}
//! ", "bad.yaml");
//! let err = mesh.reload_loaded(bad).unwrap_err();
//! assert!(!err.diagnostics.is_empty());
//! assert_eq!(mesh.refused_reloads(), 1);
//! assert_eq!(mesh.snapshot().generation(), before.generation());
//! ```
//!
//! Reloads (from objects, files, a directory, or the directory watcher) compile a new
//! snapshot off the request path. A config with load errors or validation errors (istiod's
//! webhook checks, [`crate::validate`]) is refused: the error carries the diagnostics, the
//! refusal counter grows, the `on_reload` hooks hear about it, and the last good snapshot
//! stays. Analyzer findings (`istioctl analyze`) never block, as in Istio.
//!
//! Workload registration and DNS answers republish the snapshot with a rebuilt registry and
//! the same compiled config.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::diag::{Diagnostic, Severity};
use crate::load::{LoadOptions, Loaded, Loader};
use crate::model::ConfigObject;
use crate::names::MeshOptions;
use crate::registry::{DnsCache, Resolver, Workload};
use crate::snapshot::{CompiledConfig, Snapshot};

/// A refused reload: the diagnostics (errors first) that caused it.
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
///
/// let err = Mesh::from_yaml("
/// apiVersion: networking.istio.io/v1
/// kind: VirtualService
/// metadata: {name: reviews}
/// spec:
///   hosts: [reviews]
///   http: [{route: [{destination: {host: reviews}, weight: -1}]}]
/// ").unwrap_err();
/// assert_eq!(err.diagnostics[0].code, "IST0106"); // istiod's webhook would reject it
/// assert_eq!(err.diagnostics[0].path, "spec.http[0].route[0].weight");
/// assert_eq!(
///     err.to_string(),
///     "configuration refused: 1 error(s); first: <yaml>:7:58: weight -1 < 0"
/// );
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("configuration refused: {} error(s){}", self.error_count(), self.first().map(|m| format!("; first: {m}")).unwrap_or_default())]
pub struct ReloadError {
    /// The diagnostics (load and validation).
    pub diagnostics: Vec<Diagnostic>,
}

impl ReloadError {
    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn first(&self) -> Option<String> {
        self.diagnostics
            .iter()
            .find(|d| d.is_error())
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
    }
}

/// What a reload did, for the `on_reload` hooks.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use mesh_core::mesh::{Mesh, ReloadEvent};
/// use mesh_core::names::MeshOptions;
///
/// let mesh = Mesh::new(MeshOptions::default());
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let sink = log.clone();
/// mesh.on_reload(move |ev| {
///     sink.lock().unwrap().push(match ev {
///         ReloadEvent::Applied { generation, objects, .. } => format!("applied g{generation}, {objects} object(s)"),
///         ReloadEvent::Refused(err) => format!("refused: {}", err.diagnostics[0].code),
///     })
/// });
/// let load = |t: &str| mesh_core::load::load_str(t, "dr.yaml");
/// let _ = mesh.reload_loaded(load("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}]}
/// "));
/// let _ = mesh.reload_loaded(load("
/// apiVersion: networking.istio.io/v1
/// kind: DestinationRule
/// metadata: {name: reviews}
/// spec: {host: reviews, subsets: [{name: v1, lables: {version: v1}}]}
/// "));
/// assert_eq!(*log.lock().unwrap(), ["applied g1, 1 object(s)", "refused: IM0003"]);
/// ```
#[derive(Debug)]
pub enum ReloadEvent<'a> {
    /// A new snapshot is in force.
    Applied {
        /// Its generation.
        generation: u64,
        /// Objects compiled.
        objects: usize,
        /// What loading and validation warned about (an object defined twice, an Istio
        /// kind not modelled, a deprecated field); none of it stopped the reload.
        warnings: &'a [Diagnostic],
    },
    /// The config was refused; the previous snapshot stays.
    Refused(&'a ReloadError),
}

type Hook = Box<dyn Fn(&ReloadEvent<'_>) + Send + Sync>;

struct Inner {
    current: ArcSwap<Snapshot>,
    options: MeshOptions,
    /// Serializes publishers (reloads, registration, DNS); readers never take it.
    state: Mutex<State>,
    refused: AtomicU64,
    applied: AtomicU64,
    generation: AtomicU64,
    hooks: Mutex<Vec<Hook>>,
    dns: Mutex<DnsRefresher>,
}

/// Who keeps the DNS answers fresh.
#[derive(Default)]
enum DnsRefresher {
    /// Nobody yet.
    #[default]
    None,
    /// The refresher [`Mesh::ensure_dns_refresh`] started: it stops when this sender is
    /// dropped (with the mesh, or when [`Mesh::start_dns`] takes over). Never joined: the
    /// last handle of the mesh may be dropped on that very thread.
    Auto(#[allow(dead_code)] mpsc::Sender<()>),
    /// The program called [`Mesh::start_dns`] with a resolver of its own.
    User,
}

#[derive(Default)]
struct State {
    workloads: Vec<Workload>,
    dns: DnsCache,
    paths: Vec<PathBuf>,
}

/// The mesh handle.
///
/// Clones share one mesh. Publishers (reloads, [`Mesh::register`], DNS refreshes) build a
/// new [`Snapshot`] and swap it in; readers take one with [`Mesh::snapshot`] (or
/// [`Mesh::load`]) per request and decide everything against it.
///
/// # Examples
///
/// ```
/// use mesh_core::mesh::Mesh;
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
/// spec:
///   hosts: [reviews]
///   http:
///   - route:
///     - {destination: {host: reviews, subset: v1}, weight: 90}
///     - {destination: {host: reviews, subset: v2}, weight: 10}
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
/// let snap = mesh.snapshot();
/// assert_eq!(snap.object_count(), 3);
/// let headers = http::HeaderMap::new();
/// let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews:9080", "/", &headers));
/// let weights: Vec<(&str, u32)> = d
///     .destinations()
///     .iter()
///     .map(|w| (w.subset.as_deref().unwrap(), w.weight))
///     .collect();
/// assert_eq!(weights, [("v1", 90), ("v2", 10)]);
/// // the subset's policy and labels come from the DestinationRule
/// let p = snap.traffic_policy(&d.destinations()[1].host, Some("v2"), 9080, "default");
/// assert_eq!(p.subset_labels().unwrap()["version"], "v2");
/// ```
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("generation", &self.inner.generation.load(Ordering::Relaxed))
            .field("refused", &self.refused_reloads())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mesh {
    /// An empty mesh (no config).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// let snap = mesh.snapshot();
    /// assert_eq!((snap.generation(), snap.object_count()), (0, 0));
    /// // with no config, a request goes where it was addressed
    /// let h = http::HeaderMap::new();
    /// let d = snap.route_http(&HttpRequestAttrs::new("default", "httpbin.org", "/get", &h));
    /// assert_eq!(&*d.destinations()[0].host, "httpbin.org");
    /// assert_eq!(d.virtual_service_name(), None);
    /// ```
    pub fn new(options: MeshOptions) -> Mesh {
        let snap = Snapshot::build(&[], options.clone());
        Mesh {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(snap),
                options,
                state: Mutex::new(State::default()),
                refused: AtomicU64::new(0),
                applied: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                hooks: Mutex::new(Vec::new()),
                dns: Mutex::new(DnsRefresher::None),
            }),
        }
    }

    /// An empty mesh with the settings of a MeshConfig (`trustDomain`, `rootNamespace`,
    /// `extensionProviders`; see [`MeshOptions::from_mesh_config`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::meshconfig::MeshConfig;
    ///
    /// let config = MeshConfig::from_yaml(r#"
    /// rootNamespace: mesh-root
    /// extensionProviders:
    /// - name: sample-ext-authz-http
    ///   envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: "8000"}
    /// "#)?;
    /// let mesh = Mesh::with_mesh_config(&config);
    /// mesh.reload_loaded(mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: deny-all, namespace: mesh-root}
    /// spec: {action: DENY, rules: [{}]}
    /// ", "ap.yaml"))?;
    /// let snap = mesh.snapshot();
    /// assert_eq!(snap.options().root_namespace, "mesh-root");
    /// // mesh-wide: the policy is in the configured root namespace
    /// let authz = snap.authz_for_workload("bookinfo", &Default::default());
    /// assert!(!authz.evaluate(&mesh_core::authz::AuthzRequest::tcp(9080)).allowed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_mesh_config(config: &crate::meshconfig::MeshConfig) -> Mesh {
        Mesh::new(MeshOptions::from_mesh_config(config))
    }

    /// A mesh from objects already loaded (validated first).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::model::MtlsMode;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let loaded = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: istio-system}
    /// spec: {mtls: {mode: STRICT}}
    /// ", "mesh-wide.yaml");
    /// assert!(!loaded.has_errors());
    /// let mesh = Mesh::from_objects(loaded.objects, MeshOptions::default()).unwrap();
    /// let snap = mesh.snapshot();
    /// assert_eq!(snap.peer_authentication("bookinfo", &Default::default(), 9080), MtlsMode::Strict);
    /// ```
    pub fn from_objects(
        objects: Vec<ConfigObject>,
        options: MeshOptions,
    ) -> Result<Mesh, ReloadError> {
        let m = Mesh::new(options);
        m.reload_loaded(Loaded {
            objects,
            ..Loaded::default()
        })?;
        Ok(m)
    }

    /// A mesh from files or directories (watched later with [`Mesh::watch`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("vs.yaml"), "
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: ratings}
    /// spec: {hosts: [ratings], http: [{route: [{destination: {host: ratings}}], timeout: 10s}]}
    /// ")?;
    /// let mesh = Mesh::from_paths([dir.path()], MeshOptions::default())?;
    /// assert_eq!(mesh.snapshot().routes().len(), 1);
    /// // a missing path is a refused reload, not a panic
    /// assert!(Mesh::from_paths([dir.path().join("nope")], MeshOptions::default()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_paths<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
        options: MeshOptions,
    ) -> Result<Mesh, ReloadError> {
        let m = Mesh::new(options);
        m.reload_paths(paths)?;
        Ok(m)
    }

    /// A mesh from YAML text, default options.
    ///
    /// Objects without `metadata.namespace` go to `default`; diagnostics name the file
    /// `<yaml>`.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: Gateway
    /// metadata: {name: bookinfo-gateway}
    /// spec:
    ///   selector: {istio: ingressgateway}
    ///   servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]
    /// ").unwrap();
    /// let ingress = [("istio".to_string(), "ingressgateway".to_string())].into();
    /// let servers = mesh.snapshot().gateway_servers(&ingress).len();
    /// assert_eq!(servers, 1);
    ///
    /// let err = Mesh::from_yaml("kind: [").unwrap_err();
    /// assert_eq!(err.diagnostics[0].code, "IM0001");
    /// ```
    pub fn from_yaml(text: &str) -> Result<Mesh, ReloadError> {
        let m = Mesh::new(MeshOptions::default());
        let loaded = m.loader().load_str(text, "<yaml>");
        m.reload_loaded(loaded)?;
        Ok(m)
    }

    /// The options.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions { trust_domain: "corp.example".into(), ..MeshOptions::default() });
    /// assert_eq!(mesh.options().trust_domain, "corp.example");
    /// assert_eq!(mesh.options().root_namespace, "istio-system");
    /// ```
    pub fn options(&self) -> &MeshOptions {
        &self.inner.options
    }

    fn loader(&self) -> Loader {
        Loader::new(LoadOptions {
            default_namespace: self.inner.options.default_namespace.clone(),
            ..LoadOptions::default()
        })
    }

    /// The current snapshot (hold it for the life of a request).
    ///
    /// A snapshot taken before a reload keeps deciding with the old config.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::route::HttpRequestAttrs;
    ///
    /// let vs = |subset: &str| format!("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {{name: reviews}}
    /// spec: {{hosts: [reviews], http: [{{route: [{{destination: {{host: reviews, subset: {subset}}}}}]}}]}}
    /// ---
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {{name: reviews}}
    /// spec: {{host: reviews, subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]}}
    /// ");
    /// let mesh = Mesh::from_yaml(&vs("v1")).unwrap();
    /// let old = mesh.snapshot();
    /// mesh.reload_loaded(mesh_core::load::load_str(&vs("v2"), "vs.yaml")).unwrap();
    /// let new = mesh.snapshot();
    /// assert!(new.generation() > old.generation());
    ///
    /// let h = http::HeaderMap::new();
    /// let subset = |s: &mesh_core::snapshot::Snapshot| {
    ///     let d = s.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
    ///     d.destinations()[0].subset.as_deref().unwrap().to_owned()
    /// };
    /// assert_eq!(subset(&old), "v1");
    /// assert_eq!(subset(&new), "v2");
    /// ```
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The current snapshot without touching its reference count (cheapest; do not hold
    /// the guard across awaits).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// let snap = mesh.load();
    /// assert!(snap.routes().is_empty());
    /// ```
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.current.load()
    }

    /// The generation of the snapshot published last: one atomic load, for a cache of
    /// per-snapshot work to see that it is current without loading the snapshot. It moves
    /// just after a new snapshot is in place, so it can lag [`Mesh::load`]'s generation for
    /// that instant, never lead it: key such a cache by the generation of the snapshot it
    /// was built from, take it when that equals this, and otherwise load the snapshot and
    /// compare again before rebuilding.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    ///
    /// let mesh = Mesh::from_yaml("")?;
    /// let before = mesh.generation();
    /// assert_eq!(before, mesh.load().generation());
    /// mesh.reload_loaded(mesh_core::load::load_str("", "empty.yaml"))?;
    /// assert_eq!(mesh.generation(), before + 1);
    /// assert_eq!(mesh.generation(), mesh.load().generation());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Reloads refused so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// assert_eq!(mesh.refused_reloads(), 0);
    /// // a weight istiod rejects: refused, the old config stays
    /// let bad = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}, weight: -1}]}]}
    /// ", "vs.yaml");
    /// assert!(mesh.reload_loaded(bad).is_err());
    /// assert_eq!(mesh.refused_reloads(), 1);
    /// assert_eq!(mesh.applied_reloads(), 0);
    /// ```
    pub fn refused_reloads(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Reloads applied so far.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {name: reviews}
    /// spec: {host: reviews, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
    /// ").unwrap();
    /// assert_eq!(mesh.applied_reloads(), 1);
    /// mesh.reload_objects(Vec::new()).unwrap();
    /// assert_eq!(mesh.applied_reloads(), 2);
    /// assert_eq!(mesh.refused_reloads(), 0);
    /// ```
    pub fn applied_reloads(&self) -> u64 {
        self.inner.applied.load(Ordering::Relaxed)
    }

    /// Calls `hook` after every reload attempt (applied or refused): the logging hook.
    /// Hooks live as long as the mesh: one that holds a clone of this `Mesh` (or of
    /// something that holds it, such as a `MeshClient`) keeps the mesh alive for ever;
    /// give it what it needs instead (an `Arc` of its own, a channel's sender).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use mesh_core::mesh::{Mesh, ReloadEvent};
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// let last_generation = Arc::new(AtomicU64::new(0));
    /// let seen = last_generation.clone();
    /// mesh.on_reload(move |ev| {
    ///     if let ReloadEvent::Applied { generation, .. } = ev {
    ///         seen.store(*generation, Ordering::Relaxed);
    ///     }
    /// });
    /// mesh.reload_objects(Vec::new()).unwrap();
    /// mesh.reload_objects(Vec::new()).unwrap();
    /// assert_eq!(last_generation.load(Ordering::Relaxed), 2);
    /// assert_eq!(mesh.snapshot().generation(), 2);
    /// ```
    pub fn on_reload(&self, hook: impl Fn(&ReloadEvent<'_>) + Send + Sync + 'static) {
        lock(&self.inner.hooks).push(Box::new(hook));
    }

    fn notify(&self, ev: &ReloadEvent<'_>) {
        for h in lock(&self.inner.hooks).iter() {
            h(ev);
        }
    }

    fn refuse(&self, diagnostics: Vec<Diagnostic>) -> ReloadError {
        let mut diagnostics = diagnostics;
        diagnostics.sort_by_key(|d| d.severity != Severity::Error);
        let e = ReloadError { diagnostics };
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        self.notify(&ReloadEvent::Refused(&e));
        e
    }

    /// Validates and applies loaded config, or refuses it.
    ///
    /// Load errors and validation errors refuse the config; warnings and analyzer findings
    /// do not.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// // applied, although no DestinationRule defines subset v1 (an analyzer finding)
    /// let ok = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
    /// ", "vs.yaml");
    /// mesh.reload_loaded(ok).unwrap();
    /// assert_eq!(mesh.snapshot().routes().len(), 1);
    ///
    /// // refused: istiod's webhook rejects a retry policy with negative attempts
    /// let bad = mesh_core::load::load_str("
    /// apiVersion: networking.istio.io/v1
    /// kind: VirtualService
    /// metadata: {name: reviews}
    /// spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews}}], retries: {attempts: -1}}]}
    /// ", "vs.yaml");
    /// let err = mesh.reload_loaded(bad).unwrap_err();
    /// assert_eq!(err.diagnostics[0].path, "spec.http[0].retries.attempts");
    /// assert_eq!((mesh.applied_reloads(), mesh.refused_reloads()), (1, 1));
    /// ```
    pub fn reload_loaded(&self, mut loaded: Loaded) -> Result<(), ReloadError> {
        // a kind/namespace/name defined twice: the last definition stands, as `kubectl
        // apply` of the same files would leave it (IM0202 says which one was replaced)
        let redefined = loaded.keep_last_definitions();
        let mut diags: Vec<Diagnostic> = loaded.diagnostics;
        diags.extend(redefined);
        let vopts = crate::validate::ValidateOptions {
            root_namespace: self.inner.options.root_namespace.clone(),
            ..Default::default()
        };
        diags.extend(crate::validate::validate_all_with(&loaded.objects, &vopts));
        if diags.iter().any(Diagnostic::is_error) {
            return Err(self.refuse(diags));
        }
        let config = Arc::new(CompiledConfig::build(
            &loaded.objects,
            self.inner.options.clone(),
        ));
        let objects = loaded.objects.len();
        let generation = {
            let st = lock(&self.inner.state);
            self.publish(&st, config)
        };
        self.inner.applied.fetch_add(1, Ordering::Relaxed);
        self.notify(&ReloadEvent::Applied {
            generation,
            objects,
            warnings: &diags,
        });
        Ok(())
    }

    /// Validates and applies objects (replacing the config).
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// let objects = mesh_core::load::load_str("
    /// apiVersion: security.istio.io/v1
    /// kind: AuthorizationPolicy
    /// metadata: {name: allow-nothing, namespace: foo}
    /// spec: {}
    /// ", "ap.yaml").objects;
    /// mesh.reload_objects(objects).unwrap();
    /// assert_eq!(mesh.applied_reloads(), 1);
    /// let authz = mesh.snapshot().authz_for_workload("foo", &Default::default());
    /// assert_eq!(authz.policies().collect::<Vec<_>>(), ["foo/allow-nothing"]);
    /// // an empty list replaces the whole config
    /// mesh.reload_objects(Vec::new()).unwrap();
    /// assert!(mesh.snapshot().authz_for_workload("foo", &Default::default()).is_empty());
    /// ```
    pub fn reload_objects(&self, objects: Vec<ConfigObject>) -> Result<(), ReloadError> {
        self.reload_loaded(Loaded {
            objects,
            ..Loaded::default()
        })
    }

    /// Loads files/directories and applies them; remembers the paths for [`Mesh::reload`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("dr.yaml");
    /// let dr = |lb: &str| format!("
    /// apiVersion: networking.istio.io/v1
    /// kind: DestinationRule
    /// metadata: {{name: ratings}}
    /// spec: {{host: ratings, trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}}}
    /// ");
    /// std::fs::write(&file, dr("RANDOM"))?;
    /// let mesh = Mesh::new(MeshOptions::default());
    /// mesh.reload_paths([dir.path()])?;
    /// let lb = |m: &Mesh| {
    ///     let snap = m.snapshot();
    ///     format!("{:?}", snap.traffic_policy("ratings.default.svc.cluster.local", None, 9080, "default").simple_lb())
    /// };
    /// assert_eq!(lb(&mesh), "Some(Random)");
    ///
    /// // the files changed: reload the remembered paths
    /// std::fs::write(&file, dr("ROUND_ROBIN"))?;
    /// mesh.reload()?;
    /// assert_eq!(lb(&mesh), "Some(RoundRobin)");
    ///
    /// // a typo is refused and the last good config stays
    /// std::fs::write(&file, dr("ROUND_ROBON"))?;
    /// assert!(mesh.reload().is_err());
    /// assert_eq!(lb(&mesh), "Some(RoundRobin)");
    /// assert_eq!((mesh.applied_reloads(), mesh.refused_reloads()), (2, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload_paths<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<(), ReloadError> {
        let paths: Vec<PathBuf> = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
        lock(&self.inner.state).paths = paths.clone();
        let loaded = match self.loader().load_paths(&paths) {
            Ok(l) => l,
            Err(e) => {
                let d = Diagnostic::error(
                    crate::diag::codes::IO,
                    e.to_string(),
                    Arc::from(e.path.display().to_string()),
                    crate::model::Location::default(),
                    "",
                );
                return Err(self.refuse(vec![d]));
            }
        };
        self.reload_loaded(loaded)
    }

    /// Reloads the remembered paths.
    ///
    /// The paths are those of the last [`Mesh::from_paths`], [`Mesh::reload_paths`] or
    /// [`Mesh::watch`]; see [`Mesh::reload_paths`] for a refused reload.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::model::{Labels, MtlsMode};
    /// use mesh_core::names::MeshOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mesh = Mesh::from_paths([dir.path()], MeshOptions::default())?; // empty for now
    /// let mode = |m: &Mesh| m.snapshot().peer_authentication("foo", &Labels::new(), 8000);
    /// assert_eq!(mode(&mesh), MtlsMode::Permissive);
    ///
    /// std::fs::write(dir.path().join("pa.yaml"), "
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {name: default, namespace: foo}
    /// spec: {mtls: {mode: STRICT}}
    /// ")?;
    /// mesh.reload()?;
    /// assert_eq!(mode(&mesh), MtlsMode::Strict);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload(&self) -> Result<(), ReloadError> {
        let paths = lock(&self.inner.state).paths.clone();
        self.reload_paths(paths)
    }

    fn publish(&self, st: &State, config: Arc<CompiledConfig>) -> u64 {
        // publishers hold the state lock: the counter is theirs to advance, and it moves
        // only once the snapshot it numbers is in place (see [`Mesh::generation`])
        let generation = self.inner.generation.load(Ordering::Relaxed) + 1;
        let snap =
            Snapshot::with_registry(config, Arc::from(st.workloads.clone()), &st.dns, generation);
        self.inner.current.store(Arc::new(snap));
        self.inner.generation.store(generation, Ordering::Release);
        generation
    }

    fn republish(&self, st: &State) {
        let config = self.inner.current.load().config.clone();
        self.publish(st, config);
    }

    /// Registers (or replaces, by namespace and name) a workload this program runs.
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
    /// metadata: {name: ratings, namespace: default}
    /// spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
    /// ").unwrap();
    /// let ratings = |addr: &str| Workload {
    ///     name: "ratings-0".into(),
    ///     namespace: "default".into(),
    ///     service_account: "bookinfo-ratings".into(),
    ///     labels: [("app".to_string(), "ratings".to_string())].into(),
    ///     address: addr.parse().unwrap(),
    ///     ports: Default::default(),
    ///     locality: None,
    ///     weight: 1,
    /// };
    /// let endpoints = |m: &Mesh| {
    ///     let snap = m.snapshot();
    ///     let svc = snap.registry().service("ratings.default.svc.cluster.local", "default").unwrap();
    ///     svc.targets(9080, None).map(|t| t.addr.unwrap().to_string()).collect::<Vec<_>>()
    /// };
    /// mesh.register(ratings("127.0.0.1"));
    /// assert_eq!(endpoints(&mesh), ["127.0.0.1:9080"]);
    /// mesh.register(ratings("127.0.0.2")); // same name: replaced
    /// assert_eq!(endpoints(&mesh), ["127.0.0.2:9080"]);
    /// assert!(mesh.deregister("default", "ratings-0"));
    /// assert!(endpoints(&mesh).is_empty());
    /// assert!(!mesh.deregister("default", "ratings-0"));
    /// ```
    pub fn register(&self, w: Workload) {
        let mut st = lock(&self.inner.state);
        st.workloads
            .retain(|x| !(x.namespace == w.namespace && x.name == w.name));
        st.workloads.push(w);
        self.republish(&st);
    }

    /// Removes a registered workload; true if it was there.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    /// use mesh_core::registry::Workload;
    ///
    /// let mesh = Mesh::new(MeshOptions::default());
    /// mesh.register(Workload {
    ///     name: "reviews-v1-0".into(),
    ///     namespace: "default".into(),
    ///     service_account: "bookinfo-reviews".into(),
    ///     labels: [("app".to_string(), "reviews".to_string())].into(),
    ///     address: "127.0.0.1".parse().unwrap(),
    ///     ports: Default::default(),
    ///     locality: None,
    ///     weight: 1,
    /// });
    /// let generation = mesh.snapshot().generation();
    /// assert!(!mesh.deregister("prod", "reviews-v1-0")); // wrong namespace: nothing removed
    /// assert_eq!(mesh.snapshot().generation(), generation); // and nothing republished
    /// assert!(mesh.deregister("default", "reviews-v1-0"));
    /// assert!(mesh.snapshot().generation() > generation);
    /// ```
    pub fn deregister(&self, namespace: &str, name: &str) -> bool {
        let mut st = lock(&self.inner.state);
        let before = st.workloads.len();
        st.workloads
            .retain(|x| !(x.namespace == namespace && x.name == name));
        let removed = st.workloads.len() != before;
        if removed {
            self.republish(&st);
        }
        removed
    }

    /// Resolves every DNS name the registry needs once, now (blocking); republishes if the
    /// answers changed. Returns the number of names resolved.
    ///
    /// A name whose lookup fails keeps its last good answer (Envoy's STRICT_DNS cluster
    /// changes its hosts only on a successful resolution); a name that resolves to no
    /// address loses its endpoints.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Resolver;
    ///
    /// struct Fixed(&'static str);
    /// impl Resolver for Fixed {
    ///     fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
    ///         Ok(vec![self.0.parse().unwrap()])
    ///     }
    /// }
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: httpbin-ext}
    /// spec:
    ///   hosts: [httpbin.org]
    ///   ports: [{number: 80, name: http, protocol: HTTP}]
    ///   resolution: DNS
    /// ").unwrap();
    /// let generation = mesh.snapshot().generation();
    /// assert_eq!(mesh.refresh_dns(&Fixed("192.0.2.7")), 1);
    /// assert_eq!(mesh.snapshot().generation(), generation + 1); // republished
    /// mesh.refresh_dns(&Fixed("192.0.2.7"));
    /// assert_eq!(mesh.snapshot().generation(), generation + 1); // same answers: unchanged
    /// ```
    pub fn refresh_dns(&self, resolver: &dyn Resolver) -> usize {
        let names = self.inner.current.load().config.services.dns_names();
        let mut cache = DnsCache::new();
        let mut failed = Vec::new();
        for n in &names {
            match resolver.resolve(n) {
                Ok(ips) if !ips.is_empty() => {
                    cache.insert(n.clone(), ips.into());
                }
                // an answer without addresses: the name has none (Envoy's STRICT_DNS
                // cluster empties too)
                Ok(_) => {}
                Err(_) => failed.push(n),
            }
        }
        let resolved = cache.len();
        let mut st = lock(&self.inner.state);
        // A lookup that failed keeps the last good answer, as Envoy's STRICT_DNS cluster
        // does (its hosts change only on a successful resolution).
        for n in failed {
            if let Some(ips) = st.dns.get(n) {
                cache.insert(n.clone(), Arc::clone(ips));
            }
        }
        if st.dns != cache {
            st.dns = cache;
            self.republish(&st);
        }
        resolved
    }

    /// Resolves DNS names on a background thread every `interval` (off the request path),
    /// with `resolver`.
    ///
    /// The first resolution starts at once; dropping the returned task stops the thread.
    ///
    /// You need this only for a resolver of your own or another interval: the mesh client
    /// starts the system resolver every [`AUTO_DNS_INTERVAL`] by itself, the first time it
    /// uses a DNS ServiceEntry ([`Mesh::ensure_dns_refresh`]), and resolves such a host when
    /// it connects until the first answer is in. Calling `start_dns` stops that automatic
    /// refresher for good: from then on this one alone keeps the answers fresh.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use std::sync::Arc;
    /// use std::time::{Duration, Instant};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::registry::Resolver;
    ///
    /// struct Fixed;
    /// impl Resolver for Fixed {
    ///     fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
    ///         Ok(vec!["192.0.2.7".parse().unwrap()])
    ///     }
    /// }
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: httpbin-ext}
    /// spec:
    ///   hosts: [httpbin.org]
    ///   ports: [{number: 80, name: http, protocol: HTTP}]
    ///   resolution: DNS
    /// ").unwrap();
    /// let task = mesh.start_dns(Arc::new(Fixed), Duration::from_secs(30));
    /// let resolved = |m: &Mesh| {
    ///     let snap = m.snapshot();
    ///     let svc = snap.registry().service("httpbin.org", "default").unwrap();
    ///     let addr = svc.targets(80, None).next().and_then(|t| t.addr);
    ///     addr
    /// };
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// while resolved(&mesh).is_none() && Instant::now() < deadline {
    ///     std::thread::sleep(Duration::from_millis(5));
    /// }
    /// assert_eq!(resolved(&mesh), Some("192.0.2.7:80".parse().unwrap()));
    /// drop(task); // stops and joins the thread
    /// ```
    pub fn start_dns(&self, resolver: Arc<dyn Resolver>, interval: Duration) -> BackgroundTask {
        // this refresher replaces the automatic one (dropping its sender stops it)
        *lock(&self.inner.dns) = DnsRefresher::User;
        let weak = Arc::downgrade(&self.inner);
        let (stop, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("mesh-dns".into())
            .spawn(move || dns_loop(&weak, &rx, &*resolver, interval))
            .ok();
        BackgroundTask {
            stop: Some(stop),
            handle,
        }
    }

    /// Starts the automatic DNS refresher once per mesh, unless one runs already: the
    /// system resolver ([`StdResolver`]) every [`AUTO_DNS_INTERVAL`] on a background
    /// thread, stopped when the last handle of the mesh is dropped or when
    /// [`Mesh::start_dns`] takes over. Idempotent and cheap after the first call.
    ///
    /// The mesh client calls this the first time it sends to a DNS or DNS_ROUND_ROBIN
    /// ServiceEntry, so a program never has to; until the refresher's first answer, the
    /// client resolves such a host when it connects.
    ///
    /// # Examples
    ///
    /// ```
    /// use mesh_core::mesh::Mesh;
    ///
    /// let mesh = Mesh::from_yaml("
    /// apiVersion: networking.istio.io/v1
    /// kind: ServiceEntry
    /// metadata: {name: local}
    /// spec:
    ///   hosts: [localhost]
    ///   ports: [{number: 80, name: http, protocol: HTTP}]
    ///   resolution: DNS
    /// ").unwrap();
    /// mesh.ensure_dns_refresh();
    /// mesh.ensure_dns_refresh(); // no second thread
    /// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    /// let resolved = |m: &Mesh| {
    ///     let snap = m.snapshot();
    ///     let svc = snap.registry().service("localhost", "default").unwrap();
    ///     svc.targets(80, None).count()
    /// };
    /// while resolved(&mesh) == 0 && std::time::Instant::now() < deadline {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// assert!(resolved(&mesh) > 0);
    /// ```
    ///
    /// [`StdResolver`]: crate::registry::StdResolver
    pub fn ensure_dns_refresh(&self) {
        let mut r = lock(&self.inner.dns);
        if !matches!(*r, DnsRefresher::None) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let (stop, rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("mesh-dns-auto".into())
            .spawn(move || {
                dns_loop(&weak, &rx, &crate::registry::StdResolver, AUTO_DNS_INTERVAL);
            });
        if spawned.is_ok() {
            *r = DnsRefresher::Auto(stop);
        }
    }

    /// Watches files/directories and reloads them (debounced) when they change. The paths
    /// become the remembered paths. Stops when the returned task is dropped.
    ///
    /// The watch follows the paths, not the files they first named: a file saved by rename
    /// (editors, config tools), a directory or link replaced (`current -> release-2`), a
    /// ConfigMap volume's `..data` swap are all seen. Besides file system events, the files
    /// are looked at every [`WATCH_POLL_INTERVAL`]. A reload happens only when a config
    /// file changed (its length, time or identity), once the change holds still; a file
    /// that held text and is empty now is taken as being written again and waited for (ten
    /// debounce periods, at least a second) before it is applied empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use mesh_core::mesh::Mesh;
    /// use mesh_core::names::MeshOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let file = dir.path().join("pa.yaml");
    /// let pa = |mode: &str| format!("
    /// apiVersion: security.istio.io/v1
    /// kind: PeerAuthentication
    /// metadata: {{name: default, namespace: foo}}
    /// spec: {{mtls: {{mode: {mode}}}}}
    /// ");
    /// std::fs::write(&file, pa("PERMISSIVE"))?;
    /// let mesh = Mesh::from_paths([dir.path()], MeshOptions::default())?;
    /// let task = mesh.watch([dir.path()], Duration::from_millis(20))?;
    ///
    /// std::fs::write(&file, pa("STRICT"))?;
    /// let mode = |m: &Mesh| format!("{:?}", m.snapshot().peer_authentication("foo", &Default::default(), 8000));
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// while mode(&mesh) != "Strict" && Instant::now() < deadline {
    ///     std::thread::sleep(Duration::from_millis(10));
    /// }
    /// assert_eq!(mode(&mesh), "Strict");
    /// drop(task); // no more reloads
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
        debounce: Duration,
    ) -> Result<BackgroundTask, notify::Error> {
        use notify::Watcher as _;
        let paths: Vec<PathBuf> = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !matches!(ev.kind, notify::EventKind::Access(_))
                {
                    let _ = tx.send(());
                }
            })?;
        for p in &paths {
            watcher.watch(p, notify::RecursiveMode::Recursive)?;
        }
        arm_parents(&mut watcher, &paths);
        // (remembered once every path is watched: a failed watch changes nothing)
        lock(&self.inner.state).paths = paths.clone();
        let weak = Arc::downgrade(&self.inner);
        let (stop, stop_rx) = mpsc::channel::<()>();
        let mut seen = Fingerprint::of(&paths);
        let handle = std::thread::Builder::new()
            .name("mesh-watch".into())
            .spawn(move || {
                let stopped = || !matches!(stop_rx.try_recv(), Err(mpsc::TryRecvError::Empty));
                let mut polled = std::time::Instant::now();
                loop {
                    // an event, or the poll's turn (or stop)
                    let mut by_event = false;
                    loop {
                        if stopped() {
                            return;
                        }
                        if polled.elapsed() >= WATCH_POLL_INTERVAL {
                            polled = std::time::Instant::now();
                            break;
                        }
                        match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(()) => {
                                by_event = true;
                                // debounce: until quiet for `debounce`, but no longer than
                                // ten of them (a file written to all the time, a log beside
                                // the config, cannot hold a reload back for ever)
                                // (told to stop meanwhile, it stops within 100 ms)
                                let first = std::time::Instant::now();
                                let mut quiet = first;
                                let step = debounce.min(Duration::from_millis(100));
                                while first.elapsed() < debounce * 10 && quiet.elapsed() < debounce
                                {
                                    if stopped() {
                                        return;
                                    }
                                    match rx.recv_timeout(step) {
                                        Ok(()) => quiet = std::time::Instant::now(),
                                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                                    }
                                }
                                break;
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let Some(now) = settled(&paths, &seen, debounce, &stopped) else {
                        return;
                    };
                    // an event that changed no config file (a log, a swap file) is let go;
                    // unless a file changed within the file system's time resolution (a
                    // rewrite of the same length in the same second on a coarse clock
                    // leaves the same stamp: git's "racily clean" files)
                    if now == seen && !(by_event && now.touched_within(Duration::from_secs(2))) {
                        continue;
                    }
                    seen = now;
                    // follow what was replaced: a file an editor renamed over, a directory
                    // or link swapped
                    for p in &paths {
                        let _ = watcher.unwatch(p);
                        let _ = watcher.watch(p, notify::RecursiveMode::Recursive);
                    }
                    arm_parents(&mut watcher, &paths);
                    let Some(inner) = Weak::upgrade(&weak) else {
                        return;
                    };
                    let _ = Mesh { inner }.reload();
                }
            })
            .ok();
        Ok(BackgroundTask {
            stop: Some(stop),
            handle,
        })
    }
}

/// How often [`Mesh::watch`] looks at the watched files even when no change was announced:
/// what file system events miss (a watched path replaced, a network file system) is
/// reloaded within this time.
pub const WATCH_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Also watches the directory holding each path (not recursively), so that a path replaced
/// by a rename, or a link pointed elsewhere, is seen at once.
fn arm_parents(watcher: &mut notify::RecommendedWatcher, paths: &[PathBuf]) {
    use notify::Watcher as _;
    for p in paths {
        // (not a directory watched already, recursively, as a path or inside one)
        // (a relative name's parent is the working directory)
        let parent = p.parent().map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        });
        if let Some(parent) = parent.filter(|d| !paths.iter().any(|q| d.starts_with(q))) {
            let _ = watcher.unwatch(parent);
            let _ = watcher.watch(parent, notify::RecursiveMode::NonRecursive);
        }
    }
}

/// The state of the watched config files once it holds still: the same for a `debounce`
/// (a writer still at work changes a length or a time), and no file that held text empty
/// (truncated to be written again) for up to ten periods and at least a second, unless it
/// stays empty. `None` when told to stop meanwhile.
fn settled(
    paths: &[PathBuf],
    before: &Fingerprint,
    debounce: Duration,
    stopped: &dyn Fn() -> bool,
) -> Option<Fingerprint> {
    let patience = (debounce * 10).max(Duration::from_secs(1));
    let start = std::time::Instant::now();
    let mut now = Fingerprint::of(paths);
    while now != *before && start.elapsed() < patience {
        std::thread::sleep(
            debounce
                .min(Duration::from_millis(100))
                .max(Duration::from_millis(1)),
        );
        if stopped() {
            return None;
        }
        let again = Fingerprint::of(paths);
        if again == now && !again.emptied_since(before) {
            break;
        }
        now = again;
    }
    Some(now)
}

/// What a reload of the watched paths would read, in brief: each config file's path,
/// length, modification time and file identity (a link pointed at a new file changes it).
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<FileStamp>)>);

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    id: (u64, u64),
}

impl Fingerprint {
    fn of(paths: &[PathBuf]) -> Fingerprint {
        let mut out = Vec::new();
        for p in paths {
            match crate::load::config_files(p) {
                Ok(files) => out.extend(files.into_iter().map(|f| {
                    let stamp = std::fs::metadata(&f).ok().map(|m| FileStamp {
                        len: m.len(),
                        modified: m.modified().ok(),
                        id: file_id(&m),
                    });
                    (f, stamp)
                })),
                Err(_) => out.push((p.clone(), None)),
            }
        }
        Fingerprint(out)
    }

    /// Some file with a time of whole seconds (a file system whose clock ticks by the
    /// second: ext3, HFS+, FAT, some NFS servers) was modified within `window` of now (or
    /// has a time in the future): a rewrite in the same tick would not show in its stamp.
    fn touched_within(&self, window: Duration) -> bool {
        let now = std::time::SystemTime::now();
        self.0.iter().any(|(_, stamp)| {
            stamp.and_then(|s| s.modified).is_some_and(|m| {
                let coarse = m
                    .duration_since(std::time::UNIX_EPOCH)
                    .is_ok_and(|d| d.subsec_nanos() == 0);
                coarse && now.duration_since(m).map_or(true, |age| age < window)
            })
        })
    }

    /// A file that held text before and is empty now.
    fn emptied_since(&self, before: &Fingerprint) -> bool {
        self.0.iter().any(|(path, stamp)| {
            stamp.is_some_and(|s| s.len == 0)
                && before
                    .0
                    .iter()
                    .any(|(p, b)| p == path && b.is_some_and(|b| b.len > 0))
        })
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// How often the automatic DNS refresher ([`Mesh::ensure_dns_refresh`]) resolves again:
/// Istio's MeshConfig `dnsRefreshRate` default.
pub const AUTO_DNS_INTERVAL: Duration = Duration::from_secs(60);

/// Refreshes the DNS answers of the mesh every `interval` until `stop` says so (a message
/// or its sender dropped) or the mesh is gone.
fn dns_loop(
    weak: &Weak<Inner>,
    stop: &mpsc::Receiver<()>,
    resolver: &dyn Resolver,
    interval: Duration,
) {
    loop {
        let Some(inner) = Weak::upgrade(weak) else {
            return;
        };
        Mesh { inner }.refresh_dns(resolver);
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// A background thread (DNS refresh or directory watch); stopped and joined on drop.
///
/// Returned by [`Mesh::start_dns`] and [`Mesh::watch`]; keep it for as long as the work
/// should go on.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mesh_core::mesh::{BackgroundTask, Mesh};
/// use mesh_core::names::MeshOptions;
/// use mesh_core::registry::StdResolver;
///
/// let mesh = Mesh::new(MeshOptions::default()); // no DNS names to resolve
/// let task: BackgroundTask = mesh.start_dns(Arc::new(StdResolver), Duration::from_secs(60));
/// drop(task); // signals the thread and waits for it
/// assert_eq!(mesh.refused_reloads(), 0);
/// ```
pub struct BackgroundTask {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BackgroundTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundTask").finish_non_exhaustive()
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
