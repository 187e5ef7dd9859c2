//! `meshctl`: the mesh's command-line tool.
//!
//! - `meshctl validate PATH...`: load and validate Istio YAML, like `istioctl analyze`.
//! - `meshctl route URL ...`: explain offline where a request goes.
//! - `meshctl authz ...`: explain offline whether a request is allowed.
//! - `meshctl ca ...`: a mesh CA for development and plug-in certificates.
//!
//! `validate`, `route` and `authz` take `--mesh-config FILE`, the mesh's MeshConfig: its
//! trust domain, root namespace and the `extensionProviders` CUSTOM policies name.
//!
//! Exit status: 0 success, 1 when the command found errors, 2 on a usage error or an
//! unreadable input.

// The doc comments of the argument structs are the command-line help (clap prints them
// as written), so `<td>` and the like are placeholders, not HTML.
#![allow(rustdoc::invalid_html_tags)]
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod authz;
mod ca;
mod mesh_config;
mod route;
mod validate;

#[derive(Debug, Parser)]
#[command(
    name = "meshctl",
    version,
    about = "An Istio-compatible in-process service mesh: validate, explain and issue."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate Istio configuration (files or directories), like `istioctl analyze`.
    Validate(validate::Args),
    /// Explain where a request goes: the VirtualService, route and destinations.
    Route(route::Args),
    /// Explain whether a request to a workload is allowed, and by which policy.
    Authz(authz::Args),
    /// A mesh certificate authority for development and plug-in certificates.
    #[command(subcommand)]
    Ca(ca::Command),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Route(args) => route::run(args),
        Command::Authz(args) => authz::run(args),
        Command::Ca(cmd) => ca::run(cmd),
    }
}

/// `meshctl authz ... | head -2`: when the reader goes away, `println!`'s failed write to
/// stdout ends the program quietly with the status a shell gives a process SIGPIPE killed
/// (128 + 13), as `ls | head` ends, rather than with a panic and its backtrace.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}
