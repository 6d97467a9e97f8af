//! `provisionerd completion SHELL` and `provisionerd man`: generated from
//! the one clap definition, so they never disagree with `--help`.

use std::io::Write;

use clap::CommandFactory;

use crate::config::Cli;

/// Writes `shell`'s completion script to stdout.
pub fn completion(shell: clap_complete::Shell) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    // Into memory first: `generate` panics on a failed write (a closed
    // pipe), and a failed write is an error to report, not a crash.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "provisionerd", &mut script);
    std::io::stdout().lock().write_all(&script)
}

/// Writes the man page (roff) of provisionerd to stdout: the commands and
/// the global flags; each command's flags are in its `--help`.
pub fn man() -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())
}
