//! Listing in pages: every list call answers one page (see
//! `coordinator::paging`); the CLI fetches pages until it has the rows
//! asked for, and says on stderr how to continue when more follow (stdout
//! stays the table or the JSON array, unchanged for scripts).

use std::future::Future;

use super::CliError;
use crate::grpc::limits::MAX_PAGE_ROWS;

/// Rows from `after` (a cursor; `None`: the start), page by page through
/// `fetch(page size, after)`, until `limit` rows (`None`: all) or the end.
/// Returns them and the cursor to continue after them (empty: the end).
pub async fn collect<T, F, Fut>(
    limit: Option<u32>,
    after: Option<String>,
    mut fetch: F,
) -> Result<(Vec<T>, String), CliError>
where
    F: FnMut(u32, String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut rows = Vec::new();
    let mut after = after.unwrap_or_default();
    loop {
        let left = limit.map_or(u32::MAX, |n| n.saturating_sub(rows.len() as u32));
        let (page, next) = fetch(left.min(MAX_PAGE_ROWS), after.clone()).await?;
        let progressed = !page.is_empty();
        rows.extend(page);
        if next.is_empty() || limit.is_some_and(|n| rows.len() >= n as usize) {
            return Ok((rows, next));
        }
        if !progressed || next == after {
            return Err(CliError::Failed(format!(
                "list: the coordinator's page after {after:?} made no progress"
            )));
        }
        after = next;
    }
}

/// When more rows follow, how to list them (on stderr).
pub fn hint(what: &str, next: &str) {
    if !next.is_empty() {
        eprintln!("More {what} follow: list them with --after {next}");
    }
}

/// `--limit`: 0 means all.
pub fn limit(n: Option<u32>) -> Option<u32> {
    n.filter(|n| *n > 0)
}
