//! `meshctl ca`.

use std::process::ExitCode;

/// Subcommands of `meshctl ca`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create (or plug in) a CA.
    Init {},
}

pub(crate) fn run(_cmd: Command) -> ExitCode {
    eprintln!("meshctl ca: not built yet");
    ExitCode::from(2)
}
