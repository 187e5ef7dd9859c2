//! `meshctl route`.

use std::process::ExitCode;

/// Arguments of `meshctl route`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> ExitCode {
    eprintln!("meshctl route: not built yet");
    ExitCode::from(2)
}
