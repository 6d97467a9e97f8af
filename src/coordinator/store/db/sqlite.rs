//! The SQLite side of [`super::Connection`]: rusqlite, with our values.

use super::{Error, RawRow, Result, Row, TxKind, ValueRef};

pub(super) fn begin(c: &rusqlite::Connection, kind: TxKind) -> Result<()> {
    // Immediate: the write lock is taken first, so a read inside the
    // transaction is never stale by the time it writes.
    c.execute_batch(match kind {
        TxKind::Write | TxKind::Claim => "BEGIN IMMEDIATE",
        TxKind::Read => "BEGIN",
    })?;
    Ok(())
}

pub enum Stmt<'c> {
    Plain(rusqlite::Statement<'c>),
    Cached(rusqlite::CachedStatement<'c>),
}

/// Binds one of our values.
struct Bind<'a>(ValueRef<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match self.0 {
            ValueRef::Null => V::Null,
            ValueRef::Integer(n) => V::Integer(n),
            ValueRef::Real(f) => V::Real(f),
            ValueRef::Text(s) => V::Text(s.as_bytes()),
            ValueRef::Blob(b) => V::Blob(b),
        }))
    }
}

impl RawRow for rusqlite::Row<'_> {
    fn value(&self, i: usize) -> Result<ValueRef<'_>> {
        use rusqlite::types::ValueRef as V;
        Ok(match self.get_ref(i)? {
            V::Null => ValueRef::Null,
            V::Integer(n) => ValueRef::Integer(n),
            V::Real(f) => ValueRef::Real(f),
            V::Text(t) => {
                ValueRef::Text(std::str::from_utf8(t).map_err(|e| Error::Conversion {
                    column: i,
                    msg: e.to_string(),
                })?)
            }
            V::Blob(b) => ValueRef::Blob(b),
        })
    }
}

impl<'c> Stmt<'c> {
    fn stmt(&mut self) -> &mut rusqlite::Statement<'c> {
        match self {
            Stmt::Plain(s) => s,
            Stmt::Cached(s) => s,
        }
    }

    pub(super) fn execute(&mut self, values: &[ValueRef<'_>]) -> Result<usize> {
        let binds = values.iter().map(|v| Bind(*v));
        Ok(self.stmt().execute(rusqlite::params_from_iter(binds))?)
    }

    pub(super) fn each(
        &mut self,
        values: &[ValueRef<'_>],
        limit: usize,
        f: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let binds = values.iter().map(|v| Bind(*v));
        let mut rows = self.stmt().query(rusqlite::params_from_iter(binds))?;
        let mut n = 0;
        while n < limit
            && let Some(r) = rows.next()?
        {
            f(&Row(r))?;
            n += 1;
        }
        Ok(())
    }
}
