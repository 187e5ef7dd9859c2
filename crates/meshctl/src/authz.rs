//! `meshctl authz`.

use std::process::ExitCode;

/// Arguments of `meshctl authz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> ExitCode {
    eprintln!("meshctl authz: not built yet");
    ExitCode::from(2)
}
