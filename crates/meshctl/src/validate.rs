//! `meshctl validate PATH...`: load Istio YAML/JSON files or directories, validate each object
//! as istiod's webhook would, analyze them together like `istioctl analyze`, and print the
//! findings like rustc (or as JSON with `--output json`). With `--mesh-config FILE`, the
//! MeshConfig's own problems are reported too, and CUSTOM AuthorizationPolicies naming a
//! provider it does not define are errors (istiod's message).
//!
//! Exit status: 0 when there are no errors (warnings allowed), 1 when there are errors, 2 on a
//! usage error or an unreadable path.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use mesh_core::diag::Severity;
use mesh_core::load::{LoadOptions, Loaded, Loader};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// rustc-style text.
    Text,
    /// A JSON array of `{severity, code, message, file, line, column, path}`.
    Json,
}

/// Arguments of `meshctl validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (searched recursively for .yaml, .yml, .json); `-` reads
    /// standard input (`kubectl get vs -A -o yaml | meshctl validate -`).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
    /// Namespace for objects without `metadata.namespace` (like `kubectl -n`).
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Hide info-level hints.
    #[arg(long)]
    no_hints: bool,
    /// The mesh's MeshConfig: its own problems are reported, and CUSTOM
    /// AuthorizationPolicies are checked against its extension providers.
    #[arg(long, value_name = "FILE")]
    mesh_config: Option<PathBuf>,
}

/// Loads `paths` in order; `-` is standard input, named `<stdin>` in diagnostics.
pub(crate) fn load_inputs(loader: &Loader, paths: &[PathBuf]) -> Result<Loaded, String> {
    let mut out = Loaded::default();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            out.extend(loader.load_bytes(&bytes, "<stdin>"));
        } else {
            out.extend(loader.load_path(p).map_err(|e| e.to_string())?);
        }
    }
    Ok(out)
}

pub(crate) fn run(args: Args) -> ExitCode {
    let loader = Loader::new(LoadOptions {
        default_namespace: args.namespace.clone(),
        ..LoadOptions::default()
    });
    let mut loaded = match load_inputs(&loader, &args.paths) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mesh_config = match args.mesh_config.as_deref().map(crate::mesh_config::read) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(code)) => return code,
    };
    // the MeshConfig's own findings first; with a usable MeshConfig, its checks (CUSTOM
    // policies' providers, its root namespace), else the mesh's defaults
    let mut diags = match mesh_config {
        None => mesh_core::check(&loaded),
        Some(m) => {
            let mut diags = m.diagnostics;
            diags.extend(match &m.config {
                Some(c) => c.check(&loaded),
                None => mesh_core::check(&loaded),
            });
            loaded.sources.extend(m.sources);
            diags
        }
    };
    if args.no_hints {
        diags.retain(|d| d.severity != Severity::Info);
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match args.output {
        Output::Json => serde_json::to_writer_pretty(&mut out, &diags)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Output::Text => (|| {
            for d in &diags {
                writeln!(out, "{}", loaded.sources.render(d))?;
            }
            let istio = loaded.objects.iter().filter(|o| o.kind.is_istio()).count();
            let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            writeln!(
                out,
                "{}, {} ({} checked)",
                plural(errors, "error"),
                plural(warnings, "warning"),
                plural(istio, "Istio object"),
            )
        })(),
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write output: {e}");
        return ExitCode::from(2);
    }
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
