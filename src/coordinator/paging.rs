//! List calls answer in pages, so no answer can outgrow a message however
//! many rows there are: a page holds at most the rows asked for (capped at
//! [`MAX_PAGE_ROWS`]) and ends early once its rows reach [`MAX_PAGE_BYTES`]
//! encoded. Rows come in a stable order (by name; jobs newest first) and a
//! page's `next_cursor` is the key of its last row — a name, or a job id —
//! which the next call passes as `after`. Empty: nothing follows.

use prost::Message;

use super::error::Result;
use crate::grpc::limits::{DEFAULT_PAGE_ROWS, MAX_PAGE_BYTES, MAX_PAGE_ROWS};

/// One page asked for.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows the page may hold.
    pub size: u32,
}

impl Page {
    /// A request's page size: 0 means the default, more than the maximum
    /// is capped (the cursor brings the rest).
    pub fn new(limit: u32) -> Page {
        let size = match limit {
            0 => DEFAULT_PAGE_ROWS,
            n => n.min(MAX_PAGE_ROWS),
        };
        Page { size }
    }

    /// Rows to read from the store: one more than the page holds, to know
    /// whether anything follows.
    pub fn fetch(&self) -> u32 {
        self.size + 1
    }

    /// The page from `rows` (read with [`Self::fetch`], in order, each
    /// turned into its message), and the cursor to continue after it.
    pub fn fill<T: Message>(
        &self,
        rows: impl IntoIterator<Item = Result<T>>,
        cursor: impl Fn(&T) -> String,
    ) -> Result<(Vec<T>, String)> {
        let mut out: Vec<T> = Vec::new();
        let mut bytes = 0;
        for row in rows {
            let row = row?;
            // A repeated field costs the row, its length and its tag.
            let len = row.encoded_len() + 8;
            let full = out.len() >= self.size as usize
                || (!out.is_empty() && bytes + len > MAX_PAGE_BYTES);
            if full {
                let next = out.last().map(&cursor).unwrap_or_default();
                return Ok((out, next));
            }
            bytes += len;
            out.push(row);
        }
        Ok((out, String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Key;

    fn key(name: &str, pad: usize) -> Result<Key> {
        Ok(Key {
            name: name.into(),
            tags: [("pad".to_string(), "x".repeat(pad))].into(),
            created_at: 0,
        })
    }

    #[test]
    fn a_page_ends_at_its_size_or_its_bytes() {
        let page = Page::new(2);
        let (rows, next) = page
            .fill((0..3).map(|i| key(&format!("k{i}"), 0)), |k| k.name.clone())
            .unwrap();
        assert_eq!((rows.len(), next.as_str()), (2, "k1"));
        let (rows, next) = page
            .fill((0..2).map(|i| key(&format!("k{i}"), 0)), |k| k.name.clone())
            .unwrap();
        assert_eq!((rows.len(), next.as_str()), (2, ""));
        let big = MAX_PAGE_BYTES / 3;
        let (rows, next) = Page::new(10)
            .fill((0..5).map(|i| key(&format!("k{i}"), big)), |k| {
                k.name.clone()
            })
            .unwrap();
        assert_eq!((rows.len(), next.as_str()), (2, "k1"));
        assert_eq!(Page::new(0).size, DEFAULT_PAGE_ROWS);
        assert_eq!(Page::new(u32::MAX).size, MAX_PAGE_ROWS);
    }
}
