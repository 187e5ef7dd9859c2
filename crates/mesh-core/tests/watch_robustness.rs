//! Config directories as deployments change them: a dangling symbolic link (a ConfigMap
//! update between its steps) is no reason to refuse a reload, and a watch that cannot start
//! leaves the reload paths as they were.

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: default}
spec: {host: a}
";

#[cfg(unix)]
#[test]
fn a_dangling_link_is_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), DR).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.yaml"), dir.path().join("b.yaml")).unwrap();
    std::os::unix::fs::symlink("/nowhere", dir.path().join("current")).unwrap();
    let mesh = mesh_core::mesh::Mesh::from_paths([dir.path()], Default::default()).unwrap();
    assert!(mesh
        .snapshot()
        .destination_rule("a.default.svc.cluster.local", "default")
        .is_some());
    mesh.reload().unwrap();
}

#[test]
fn a_failed_watch_keeps_the_reload_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), DR).unwrap();
    let mesh = mesh_core::mesh::Mesh::from_paths([dir.path()], Default::default()).unwrap();
    let missing = dir.path().join("missing");
    assert!(mesh
        .watch(
            [dir.path().to_path_buf(), missing],
            std::time::Duration::from_millis(20)
        )
        .is_err());
    // still the paths it was loaded from
    mesh.reload().unwrap();
}
