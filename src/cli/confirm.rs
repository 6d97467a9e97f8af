//! Asking before a destructive command acts. Only a person at a terminal
//! is asked (stdin and stderr both terminals: the question goes to stderr,
//! the answer is a line on stdin); anything else must say `-y/--yes`, so a
//! script states what it means instead of hanging on, or deleting past, a
//! question nobody sees.

use std::io::{BufRead, IsTerminal, Write};

use super::CliError;

/// Goes ahead with `action` (e.g. `delete provisioner key "pool"`) when
/// `yes` was given or a person at the terminal answers y/yes. `what_happens`
/// tells them the consequence in the question.
pub fn confirm(action: &str, what_happens: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !tty {
        return Err(refusal(action));
    }
    ask(
        action,
        what_happens,
        &mut std::io::stdin().lock(),
        &mut std::io::stderr(),
    )
}

/// The error without a terminal to ask on (exit 64).
pub fn refusal(action: &str) -> CliError {
    CliError::Usage(format!(
        "{action}: refused without confirmation: there is no terminal to ask on \
         (stdin and stderr must both be one); pass -y/--yes to go ahead"
    ))
}

/// Asks on `out`, reads the answer from `input`: y or yes (any case) goes
/// ahead; anything else, an empty line or end of input included, is a no
/// (exit 1, nothing done).
fn ask(
    action: &str,
    what_happens: &str,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut question = action.to_string();
    if let Some(first) = question.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let _ = write!(out, "{question}? {what_happens} [y/N] ");
    let _ = out.flush();
    let mut answer = String::new();
    input
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("{action}: read the answer: {e}")))?;
    match answer.trim().to_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Failed(format!(
            "{action}: not confirmed; nothing was done"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(text: &str) -> (Result<(), CliError>, String) {
        let mut out = Vec::new();
        let r = ask(
            "delete provisioner key \"pool\"",
            "Its daemons are disconnected.",
            &mut text.as_bytes(),
            &mut out,
        );
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn only_y_or_yes_goes_ahead() {
        let (r, asked) = answer("y\n");
        assert!(r.is_ok());
        assert_eq!(
            asked,
            "Delete provisioner key \"pool\"? Its daemons are disconnected. [y/N] "
        );
        assert!(answer(" YES \n").0.is_ok());
        for no in ["n\n", "\n", "", "yep\n"] {
            let err = answer(no).0.unwrap_err();
            assert_eq!(err.exit_code(), crate::exit::FATAL, "{no:?}");
            assert!(err.to_string().contains("not confirmed"), "{err}");
        }
        assert_eq!(refusal("x").exit_code(), crate::exit::CONFIG);
    }
}
