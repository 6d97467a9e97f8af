//! `-c/--column`: which table columns a list prints, in which order (as
//! Coder's `-c`). Checked before anything is fetched, so a typo costs no
//! round trip and names the columns there are. JSON output is not
//! filtered: scripts pick fields themselves.

use super::CliError;
use super::render::table;

/// The columns chosen: indices into a table's headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Columns(Vec<usize>);

/// A header or a name given for it, compared: case-insensitive, `-` or `_`
/// for a space (`last-seen` is `LAST SEEN`).
fn key(s: &str) -> String {
    s.trim().to_lowercase().replace(['-', '_'], " ")
}

/// How a header is spelled on the command line.
fn shown(header: &str) -> String {
    header.to_lowercase().replace(' ', "-")
}

impl Columns {
    /// `chosen` (as given to `-c`; empty: every column) checked against
    /// `headers`. `what` names the list in the error.
    pub fn pick(what: &str, headers: &[&str], chosen: &[String]) -> Result<Columns, CliError> {
        let chosen: Vec<&String> = chosen.iter().filter(|c| !c.trim().is_empty()).collect();
        if chosen.is_empty() {
            return Ok(Columns((0..headers.len()).collect()));
        }
        let mut picked = Vec::with_capacity(chosen.len());
        for c in chosen {
            let Some(i) = headers.iter().position(|h| key(h) == key(c)) else {
                let valid: Vec<String> = headers.iter().map(|h| shown(h)).collect();
                return Err(CliError::Usage(format!(
                    "{what} --column {c:?}: no such column; the columns are {}",
                    valid.join(", ")
                )));
            };
            picked.push(i);
        }
        Ok(Columns(picked))
    }

    /// Prints `rows` (each cell in `headers`' order) with the chosen
    /// columns only.
    pub fn print(&self, headers: &[&str], rows: Vec<Vec<String>>) {
        let heads: Vec<&str> = self.0.iter().map(|&i| headers[i]).collect();
        let rows = rows
            .into_iter()
            .map(|row| self.0.iter().map(|&i| row[i].clone()).collect())
            .collect();
        table(&heads, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADERS: [&str; 3] = ["NAME", "CURRENT JOB", "LAST SEEN"];

    fn pick(chosen: &[&str]) -> Result<Columns, CliError> {
        let chosen: Vec<String> = chosen.iter().map(|s| s.to_string()).collect();
        Columns::pick("daemons list", &HEADERS, &chosen)
    }

    #[test]
    fn columns_are_picked_in_the_order_given_by_any_spelling() {
        assert_eq!(pick(&[]).unwrap(), Columns(vec![0, 1, 2]));
        assert_eq!(
            pick(&["last-seen", "Name", "current_job"]).unwrap(),
            Columns(vec![2, 0, 1])
        );
        assert_eq!(pick(&["current job"]).unwrap(), Columns(vec![1]));
        let err = pick(&["name", "bogus"]).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)));
        assert_eq!(
            err.to_string(),
            "daemons list --column \"bogus\": no such column; the columns are \
             name, current-job, last-seen"
        );
    }
}
