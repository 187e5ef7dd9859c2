//! `meshctl validate`.

use std::process::ExitCode;

/// Arguments of `meshctl validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> ExitCode {
    eprintln!("meshctl validate: not built yet");
    ExitCode::from(2)
}
