//! The `Mesh` handle: validated reloads keep the last good snapshot, refusals are counted
//! and reported, a watched directory reloads itself, DNS answers feed the registry, and
//! readers never see half a config.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use mesh_core::mesh::{Mesh, ReloadEvent};
use mesh_core::names::MeshOptions;
use mesh_core::registry::Resolver;
use mesh_core::route::HttpRequestAttrs;

fn vs(subset: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http: [{{route: [{{destination: {{host: reviews, subset: {subset}}}}}]}}]
"#
    )
}

fn subset_now(mesh: &Mesh) -> Option<String> {
    let snap = mesh.snapshot();
    let h = HeaderMap::new();
    let d = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
    d.destinations()
        .first()
        .and_then(|d| d.subset.as_deref().map(str::to_owned))
}

const BAD_VS: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subnet: v9}}]}]
"#;

const INVALID_VS: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}, weight: -1}, {destination: {host: other}, weight: -2}]}]
"#;

#[test]
fn refused_reloads_keep_the_last_good_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(&f, vs("v1")).unwrap();
    let mesh = Mesh::from_paths([dir.path()], MeshOptions::default()).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    mesh.on_reload(move |e| {
        ev.lock().unwrap().push(match e {
            ReloadEvent::Applied { objects, .. } => format!("applied {objects}"),
            ReloadEvent::Refused(err) => format!("refused {}", err.diagnostics[0].code),
        })
    });
    assert_eq!(subset_now(&mesh).as_deref(), Some("v1"));

    // unknown field: a load error
    std::fs::write(&f, BAD_VS).unwrap();
    let err = mesh.reload().unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(err.diagnostics.iter().any(|d| d.message.contains("subnet")));
    assert_eq!(subset_now(&mesh).as_deref(), Some("v1"));
    // validation error (istiod webhook)
    std::fs::write(&f, INVALID_VS).unwrap();
    let err = mesh.reload().unwrap_err();
    assert!(
        err.diagnostics.iter().any(|d| d.code == "IST0106"),
        "{err:?}"
    );
    assert_eq!(subset_now(&mesh).as_deref(), Some("v1"));
    // a missing directory
    assert!(mesh.reload_paths([dir.path().join("nope")]).is_err());
    assert_eq!(mesh.refused_reloads(), 3);
    // a good config applies
    std::fs::write(&f, vs("v2")).unwrap();
    mesh.reload_paths([dir.path()]).unwrap();
    assert_eq!(subset_now(&mesh).as_deref(), Some("v2"));
    assert_eq!(mesh.applied_reloads(), 2);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            "refused IM0003",
            "refused IST0106",
            "refused IM0010",
            "applied 1"
        ]
    );
}

#[test]
fn watched_directory_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(&f, vs("v1")).unwrap();
    let mesh = Mesh::from_paths([dir.path()], MeshOptions::default()).unwrap();
    let task = mesh.watch([dir.path()], Duration::from_millis(50)).unwrap();
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if subset_now(&mesh).as_deref() == Some(want) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    std::fs::write(&f, vs("v3")).unwrap();
    assert!(wait_for("v3"), "watcher did not reload");
    let refused = mesh.refused_reloads();
    std::fs::write(&f, BAD_VS).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.refused_reloads() == refused && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mesh.refused_reloads() > refused);
    assert_eq!(subset_now(&mesh).as_deref(), Some("v3"));
    drop(task);
    // stopped: changes no longer apply
    std::fs::write(&f, vs("v4")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(subset_now(&mesh).as_deref(), Some("v3"));
}

/// Waits up to ten seconds for the route to name `want`.
fn wait_for_subset(mesh: &Mesh, want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if subset_now(mesh).as_deref() == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Writes `text` the way editors and config tools do: a new file renamed over the old
/// one, so the watched file's inode changes on every save.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A watched file saved by rename, again and again: each save is seen, not only the
/// first (the watch follows the path, not the file it first named).
#[test]
fn watched_file_replaced_by_rename_keeps_reloading() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(&f, vs("v1")).unwrap();
    let mesh = Mesh::from_paths([&f], MeshOptions::default()).unwrap();
    let _task = mesh.watch([&f], Duration::from_millis(30)).unwrap();
    for v in ["v2", "v3", "v4"] {
        replace_file(&f, &vs(v));
        assert!(wait_for_subset(&mesh, v), "save {v} not seen");
    }
}

/// A directory mounted from a ConfigMap: the kubelet writes a new hidden timestamped
/// directory and swaps the `..data` link; an item with a subdirectory `path` is reached
/// through a link to a directory. Both updates are seen.
#[cfg(unix)]
#[test]
fn watched_configmap_volume_reloads_nested_items() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let publish = |n: u32, subset: &str| {
        let data = format!("..2026_11_28_00_00_0{n}.1");
        std::fs::create_dir_all(root.join(&data).join("routes")).unwrap();
        std::fs::write(root.join(&data).join("routes/vs.yaml"), vs(subset)).unwrap();
        symlink(&data, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    };
    publish(1, "v1");
    symlink("..data/routes", root.join("routes")).unwrap();
    let mesh = Mesh::from_paths([root], MeshOptions::default()).unwrap();
    assert_eq!(subset_now(&mesh).as_deref(), Some("v1"));
    let _task = mesh.watch([root], Duration::from_millis(30)).unwrap();
    publish(2, "v2");
    assert!(wait_for_subset(&mesh, "v2"), "ConfigMap update not seen");
    publish(3, "v3");
    assert!(
        wait_for_subset(&mesh, "v3"),
        "second ConfigMap update not seen"
    );
}

/// The watched path is a link (a deployment tool's `current -> release-N`), pointed at a
/// new directory: the new directory's config is loaded, and its later edits too.
#[cfg(unix)]
#[test]
fn watched_link_pointed_elsewhere_reloads() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    for (rel, v) in [("release-1", "v1"), ("release-2", "v2")] {
        std::fs::create_dir(dir.path().join(rel)).unwrap();
        std::fs::write(dir.path().join(rel).join("vs.yaml"), vs(v)).unwrap();
    }
    let current = dir.path().join("current");
    symlink("release-1", &current).unwrap();
    let mesh = Mesh::from_paths([&current], MeshOptions::default()).unwrap();
    let _task = mesh.watch([&current], Duration::from_millis(30)).unwrap();
    symlink("release-2", dir.path().join("next")).unwrap();
    std::fs::rename(dir.path().join("next"), &current).unwrap();
    assert!(wait_for_subset(&mesh, "v2"), "link swap not seen");
    std::fs::write(dir.path().join("release-2/vs.yaml"), vs("v3")).unwrap();
    assert!(
        wait_for_subset(&mesh, "v3"),
        "edit in the new target not seen"
    );
}

/// A file truncated and written again with a pause longer than the debounce (a slow
/// writer, `cat big > file`): the emptied file is waited for, so the DENY policy it holds
/// is never dropped from the applied config, not even for one generation.
#[test]
fn a_truncated_file_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("policy.yaml");
    let policy = |subset: &str| {
        format!(
            "{}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: deny-all, namespace: foo}}\nspec: {{action: DENY, rules: [{{}}]}}\n",
            vs(subset)
        )
    };
    std::fs::write(&f, policy("v1")).unwrap();
    let mesh = Mesh::from_paths([dir.path()], MeshOptions::default()).unwrap();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let log = applied.clone();
    mesh.on_reload(move |ev| {
        if let ReloadEvent::Applied { objects, .. } = ev {
            log.lock().unwrap().push(*objects);
        }
    });
    let _task = mesh.watch([dir.path()], Duration::from_millis(30)).unwrap();
    {
        let mut w = std::fs::File::create(&f).unwrap(); // truncated
        std::thread::sleep(Duration::from_millis(300));
        use std::io::Write as _;
        w.write_all(policy("v2").as_bytes()).unwrap();
    }
    assert!(wait_for_subset(&mesh, "v2"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(*applied.lock().unwrap(), [2], "an emptied file was applied");
    // emptied for good, it is applied at last (after a second)
    std::fs::write(&f, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while applied.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(*applied.lock().unwrap(), [2, 0]);
}

/// One name defined in two files: the last definition stands (as `kubectl apply` of the
/// same files would leave it), and the reload says which one it replaced.
#[test]
fn a_name_defined_twice_keeps_the_last_definition() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), vs("v1")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), vs("v2")).unwrap();
    let mesh = Mesh::new(MeshOptions::default());
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let log = warnings.clone();
    mesh.on_reload(move |ev| {
        if let ReloadEvent::Applied { warnings, .. } = ev {
            log.lock().unwrap().extend(
                warnings
                    .iter()
                    .map(|d| format!("{} {}: {}", d.code, d.file, d.message)),
            );
        }
    });
    mesh.reload_paths([dir.path()]).unwrap();
    assert_eq!(subset_now(&mesh).as_deref(), Some("v2"));
    assert_eq!(mesh.snapshot().routes().len(), 1);
    let w = warnings.lock().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("IM0202 "), "{w:?}");
    assert!(
        w[0].contains("b.yaml") && w[0].contains("a.yaml:1"),
        "{w:?}"
    );
}

struct FakeDns(AtomicUsize);
impl Resolver for FakeDns {
    fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        match host {
            "api.example.com" => Ok(vec![
                "192.0.2.1".parse().unwrap(),
                "192.0.2.2".parse().unwrap(),
            ]),
            _ => Err(std::io::Error::other("nxdomain")),
        }
    }
}

#[test]
fn dns_resolution_happens_off_the_request_path() {
    let mesh = Mesh::from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: rr}
spec:
  hosts: [rr.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: api.example.com}]
"#,
    )
    .unwrap();
    let count = |host: &str, port| {
        let s = mesh.snapshot();
        s.registry()
            .service(host, "default")
            .unwrap()
            .targets(port, None)
            .count()
    };
    assert_eq!(count("api.example.com", 443), 0);
    let dns = Arc::new(FakeDns(AtomicUsize::new(0)));
    let task = mesh.start_dns(dns.clone(), Duration::from_secs(3600));
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("api.example.com", 443) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(count("api.example.com", 443), 2);
    assert_eq!(
        count("rr.example.com", 80),
        1,
        "DNS_ROUND_ROBIN uses the first address"
    );
    drop(task);
    assert!(dns.0.load(Ordering::SeqCst) >= 1);
}

#[test]
fn readers_never_see_half_a_config() {
    // two VirtualServices always switched together: a reader must see both from one version
    let both = |s: &str| format!("{}---\n{}", vs(s), vs(s).replace("reviews", "ratings"));
    let mesh = Mesh::from_yaml(&both("a")).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mesh = mesh.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let h = HeaderMap::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let snap = mesh.load();
                    let a = snap.route_http(&HttpRequestAttrs::new("default", "reviews", "/", &h));
                    let b = snap.route_http(&HttpRequestAttrs::new("default", "ratings", "/", &h));
                    assert_eq!(
                        a.destinations()[0].subset,
                        b.destinations()[0].subset,
                        "torn snapshot"
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..50 {
        let text = both(if i % 2 == 0 { "b" } else { "a" });
        let loaded = mesh_core::load::load_str(&text, "x.yaml");
        mesh.reload_loaded(loaded).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// A name defined twice (two files, or a file applied twice) is one object: the later
/// definition replaces the earlier where it stood, as `kubectl apply` keeps the object's
/// creation time, so it still wins over a VirtualService for the same host created after it.
#[test]
fn a_redefined_object_keeps_its_place() {
    let other = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-later, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
"#;
    let yaml = format!("{}---\n{other}---\n{}", vs("v1"), vs("v3"));
    let mesh = Mesh::from_yaml(&yaml).unwrap();
    assert_eq!(subset_now(&mesh).as_deref(), Some("v3"));
}

/// Dropping the watch stops it at once, even while it waits out a long debounce.
#[test]
fn a_watch_stops_at_once_during_a_long_debounce() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(&f, vs("v1")).unwrap();
    let mesh = Mesh::from_paths([dir.path()], MeshOptions::default()).unwrap();
    let task = mesh.watch([dir.path()], Duration::from_secs(5)).unwrap();
    std::fs::write(&f, vs("v2")).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the debounce has begun
    let t = Instant::now();
    drop(task);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(subset_now(&mesh).as_deref(), Some("v1"));
}

/// A rewrite of the same length that leaves the same modification time (a file system
/// whose clock ticks by the second) is still applied: a change announced within two
/// seconds of a whole-second file time is reloaded even when its stamp looks unchanged.
#[test]
fn a_rewrite_with_the_same_stamp_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vs.yaml");
    std::fs::write(&f, vs("v1")).unwrap();
    // a clock of whole seconds
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let stamp = std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs());
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(stamp)
        .unwrap();
    let mesh = Mesh::from_paths([dir.path()], MeshOptions::default()).unwrap();
    let _task = mesh.watch([dir.path()], Duration::from_millis(30)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    {
        use std::io::{Seek, Write};
        let mut w = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        w.seek(std::io::SeekFrom::Start(0)).unwrap();
        w.write_all(vs("v2").as_bytes()).unwrap(); // the same length, in place
        w.set_modified(stamp).unwrap(); // and the same time
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while subset_now(&mesh).as_deref() != Some("v2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(subset_now(&mesh).as_deref(), Some("v2"));
}

/// DNS_ROUND_ROBIN is one logical host: istiod keeps one endpoint (`mergeServiceInstances`)
/// even when a `workloadSelector` picks several WorkloadEntries or a second ServiceEntry
/// for the host adds its own; DNS spreads over all of them.
#[test]
fn dns_round_robin_keeps_one_endpoint() {
    let entries = |resolution: &str| {
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vms, namespace: default}}
spec:
  hosts: [vms.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  workloadSelector: {{labels: {{app: vm}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm-1, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: vm}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: vm-2, namespace: default}}
spec: {{address: 127.0.0.2, labels: {{app: vm}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pair-a, namespace: default}}
spec:
  hosts: [pair.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints: [{{address: 127.0.0.3}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: pair-b, namespace: default}}
spec:
  hosts: [pair.example.internal]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints: [{{address: 127.0.0.4}}]
"#
        )
    };
    for (resolution, want) in [("DNS_ROUND_ROBIN", 1), ("DNS", 2)] {
        let mesh = Mesh::from_yaml(&entries(resolution)).unwrap();
        let snap = mesh.snapshot();
        for host in ["vms.example.internal", "pair.example.internal"] {
            let n = snap
                .registry()
                .service(host, "default")
                .unwrap()
                .targets(80, None)
                .count();
            assert_eq!(n, want, "{resolution} {host}");
        }
    }
}
