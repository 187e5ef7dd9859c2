//! `--mesh-config FILE` for `validate`, `route` and `authz`: the mesh's MeshConfig (Istio's
//! `istio` ConfigMap `mesh` key, or the file alone): its trust domain and root namespace
//! shape the snapshot, its `extensionProviders` are the external authorizers CUSTOM
//! AuthorizationPolicies name.

use std::path::Path;
use std::process::ExitCode;

use mesh_core::meshconfig::{LoadedMeshConfig, MeshConfig};

/// Reads `path`; `Err` (printed) when it cannot be read.
pub(crate) fn read(path: &Path) -> Result<LoadedMeshConfig, ExitCode> {
    mesh_core::meshconfig::load_file(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

/// For `route` and `authz`: the MeshConfig at `path` (none without it). Its diagnostics are
/// printed as the config's are; errors are fatal (exit 2), warnings are not.
pub(crate) fn load(path: Option<&Path>) -> Result<Option<MeshConfig>, ExitCode> {
    let Some(path) = path else {
        return Ok(None);
    };
    let loaded = read(path)?;
    for d in &loaded.diagnostics {
        eprintln!("{}", loaded.sources.render(d));
    }
    match loaded.config {
        Some(c) => Ok(Some(c)),
        None => {
            eprintln!("error: the MeshConfig cannot be loaded");
            Err(ExitCode::from(2))
        }
    }
}
