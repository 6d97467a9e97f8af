//! `provisionerd completion SHELL` and `provisionerd man`: generated from
//! the one clap definition, so they never disagree with `--help`.

use clap::CommandFactory;

use crate::config::Cli;

/// Writes `shell`'s completion script to stdout.
pub fn completion(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "provisionerd", &mut std::io::stdout());
}

/// Writes the man page (roff) of provisionerd to stdout: the commands and
/// the global flags; each command's flags are in its `--help`.
pub fn man() -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout().lock())
}
