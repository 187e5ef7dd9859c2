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
//! spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
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
#[derive(Debug)]
pub enum ReloadEvent<'a> {
    /// A new snapshot is in force.
    Applied {
        /// Its generation.
        generation: u64,
        /// Objects compiled.
        objects: usize,
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
}

#[derive(Default)]
struct State {
    workloads: Vec<Workload>,
    dns: DnsCache,
    paths: Vec<PathBuf>,
}

/// The mesh handle.
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
            }),
        }
    }

    /// A mesh from objects already loaded (validated first).
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
    pub fn from_paths<P: AsRef<Path>>(
        paths: impl IntoIterator<Item = P>,
        options: MeshOptions,
    ) -> Result<Mesh, ReloadError> {
        let m = Mesh::new(options);
        m.reload_paths(paths)?;
        Ok(m)
    }

    /// A mesh from YAML text, default options.
    pub fn from_yaml(text: &str) -> Result<Mesh, ReloadError> {
        let m = Mesh::new(MeshOptions::default());
        let loaded = m.loader().load_str(text, "<yaml>");
        m.reload_loaded(loaded)?;
        Ok(m)
    }

    /// The options.
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
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The current snapshot without touching its reference count (cheapest; do not hold
    /// the guard across awaits).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.current.load()
    }

    /// Reloads refused so far.
    pub fn refused_reloads(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Reloads applied so far.
    pub fn applied_reloads(&self) -> u64 {
        self.inner.applied.load(Ordering::Relaxed)
    }

    /// Calls `hook` after every reload attempt (applied or refused): the logging hook.
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
    pub fn reload_loaded(&self, loaded: Loaded) -> Result<(), ReloadError> {
        let mut diags: Vec<Diagnostic> = loaded.diagnostics;
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
        });
        Ok(())
    }

    /// Validates and applies objects (replacing the config).
    pub fn reload_objects(&self, objects: Vec<ConfigObject>) -> Result<(), ReloadError> {
        self.reload_loaded(Loaded {
            objects,
            ..Loaded::default()
        })
    }

    /// Loads files/directories and applies them; remembers the paths for [`Mesh::reload`].
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
    pub fn reload(&self) -> Result<(), ReloadError> {
        let paths = lock(&self.inner.state).paths.clone();
        self.reload_paths(paths)
    }

    fn publish(&self, st: &State, config: Arc<CompiledConfig>) -> u64 {
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snap =
            Snapshot::with_registry(config, Arc::from(st.workloads.clone()), &st.dns, generation);
        self.inner.current.store(Arc::new(snap));
        generation
    }

    fn republish(&self, st: &State) {
        let config = self.inner.current.load().config.clone();
        self.publish(st, config);
    }

    /// Registers (or replaces, by namespace and name) a workload this program runs.
    pub fn register(&self, w: Workload) {
        let mut st = lock(&self.inner.state);
        st.workloads
            .retain(|x| !(x.namespace == w.namespace && x.name == w.name));
        st.workloads.push(w);
        self.republish(&st);
    }

    /// Removes a registered workload; true if it was there.
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
    pub fn refresh_dns(&self, resolver: &dyn Resolver) -> usize {
        let names = self.inner.current.load().config.services.dns_names();
        let mut cache = DnsCache::new();
        for n in &names {
            if let Ok(ips) = resolver.resolve(n) {
                if !ips.is_empty() {
                    cache.insert(n.clone(), ips.into());
                }
            }
        }
        let resolved = cache.len();
        let mut st = lock(&self.inner.state);
        if st.dns != cache {
            st.dns = cache;
            self.republish(&st);
        }
        resolved
    }

    /// Resolves DNS names on a background thread every `interval` (off the request path).
    pub fn start_dns(&self, resolver: Arc<dyn Resolver>, interval: Duration) -> BackgroundTask {
        let weak = Arc::downgrade(&self.inner);
        let (stop, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("mesh-dns".into())
            .spawn(move || loop {
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                Mesh { inner }.refresh_dns(&*resolver);
                match rx.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })
            .ok();
        BackgroundTask {
            stop: Some(stop),
            handle,
            _watcher: None,
        }
    }

    /// Watches files/directories and reloads them (debounced) when they change. The paths
    /// become the remembered paths. Stops when the returned task is dropped.
    pub fn watch<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
        debounce: Duration,
    ) -> Result<BackgroundTask, notify::Error> {
        use notify::Watcher as _;
        let paths: Vec<PathBuf> = paths.into_iter().map(|p| p.as_ref().to_owned()).collect();
        lock(&self.inner.state).paths = paths.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let ev_tx = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res {
                    if !matches!(ev.kind, notify::EventKind::Access(_)) {
                        let _ = ev_tx.send(());
                    }
                }
            })?;
        for p in &paths {
            watcher.watch(p, notify::RecursiveMode::Recursive)?;
        }
        let weak = Arc::downgrade(&self.inner);
        let (stop, stop_rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("mesh-watch".into())
            .spawn(move || loop {
                // wait for a change (or stop)
                loop {
                    if !matches!(stop_rx.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                        return;
                    }
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(()) => break,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                // debounce: until quiet for `debounce`
                while rx.recv_timeout(debounce).is_ok() {}
                let Some(inner) = Weak::upgrade(&weak) else {
                    return;
                };
                let _ = Mesh { inner }.reload();
            })
            .ok();
        drop(tx);
        Ok(BackgroundTask {
            stop: Some(stop),
            handle,
            _watcher: Some(Box::new(watcher)),
        })
    }
}

/// A background thread (DNS refresh or directory watch); stopped and joined on drop.
pub struct BackgroundTask {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    _watcher: Option<Box<dyn std::any::Any + Send>>,
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
        self._watcher = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
