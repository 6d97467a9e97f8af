//! The store's one interface to its database engine: embedded SQLite
//! (rusqlite) or PostgreSQL (tokio-postgres, driven by a runtime of its
//! own; see `pg.rs`). Store code is written once against [`Connection`],
//! [`Statement`] and [`Row`], whose shape follows rusqlite's, in SQL both
//! engines read: `?N` parameters (rewritten to `$N` for PostgreSQL),
//! `ON CONFLICT`, `RETURNING`, row values. The few SQLite-only clauses
//! (`INDEXED BY`) are dropped by the rewrite. Schemas and migrations are
//! per engine (`schema.rs`).

mod error;
mod pg;
mod sqlite;
mod value;

pub use error::{Error, OptionalExtension, Result};
pub use pg::{Pool, PoolConn};
pub use value::{FromSql, Params, ToSql, ValueRef, params};

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One connection, of either engine. Transactions are begun and ended by
/// the store ([`Connection::begin`]); statements run on whatever
/// transaction is open.
pub enum Connection {
    Sqlite(rusqlite::Connection),
    Postgres(Box<pg::PgConn>),
}

/// What a transaction may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Writes: one writer at a time across every process sharing the
    /// database (SQLite's write lock; a PostgreSQL advisory lock), so a
    /// read inside the transaction is never stale by the time it writes.
    Write,
    /// Reads only, all seeing the same state.
    Read,
    /// A claim: writes one row with a statement conditional on it, so it
    /// is exclusive by itself. PostgreSQL runs it without the writers'
    /// lock (claims on several replicas, and other writes, go on at once;
    /// two claims of one row: the second's UPDATE waits for the first and
    /// then finds the row taken). SQLite: as `Write`.
    Claim,
}

impl Connection {
    pub fn engine(&self) -> Engine {
        match self {
            Connection::Sqlite(_) => Engine::Sqlite,
            Connection::Postgres(_) => Engine::Postgres,
        }
    }

    /// Begins a transaction that ends with [`Tx::commit`], or is rolled
    /// back when the guard is dropped (an error, or a panic).
    pub fn begin(&self, kind: TxKind) -> Result<Tx<'_>> {
        match self {
            Connection::Sqlite(c) => sqlite::begin(c, kind)?,
            Connection::Postgres(c) => c.begin(kind)?,
        }
        Ok(Tx {
            conn: self,
            open: true,
        })
    }

    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare(sql)?.query_row(params, f)
    }

    /// Runs statements without parameters (schemas).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Connection::Postgres(c) => c.batch(sql),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::Sqlite(sqlite::Stmt::Plain(c.prepare(sql)?))),
            Connection::Postgres(c) => Ok(Statement::Postgres(c, c.prepare(sql)?)),
        }
    }

    /// [`Connection::prepare`], parsed once per connection: for the hot
    /// paths.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::Sqlite(sqlite::Stmt::Cached(
                c.prepare_cached(sql)?,
            ))),
            Connection::Postgres(c) => Ok(Statement::Postgres(c, c.prepare(sql)?)),
        }
    }
}

/// An open transaction; see [`Connection::begin`].
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.open = false;
        self.conn.execute_batch("COMMIT")
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing of it was committed; a connection that cannot even
            // roll back is dropped by its pool (PostgreSQL) or reports the
            // failure at its next BEGIN (SQLite).
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A prepared statement.
pub enum Statement<'c> {
    Sqlite(sqlite::Stmt<'c>),
    Postgres(&'c pg::PgConn, tokio_postgres::Statement),
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.values();
        match self {
            Statement::Sqlite(s) => s.execute(&values),
            Statement::Postgres(c, s) => c.execute(s, &values),
        }
    }

    /// The first row through `f`; [`Error::NoRows`] when there is none
    /// (see [`OptionalExtension::optional`]).
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        self.each(params, 1, &mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(r));
            }
            Ok(())
        })?;
        out.unwrap_or(Err(Error::NoRows))
    }

    /// Every row through `f`, read at once (the store's results are small
    /// or paged).
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let mut out = Vec::new();
        self.each(params, usize::MAX, &mut |r| {
            out.push(f(r));
            Ok(())
        })?;
        Ok(out.into_iter())
    }

    fn each(
        &mut self,
        params: impl Params,
        limit: usize,
        f: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let values = params.values();
        match self {
            Statement::Sqlite(s) => s.each(&values, limit, f),
            Statement::Postgres(c, s) => c.each(s, &values, limit, f),
        }
    }
}

/// One row of a result, of either engine.
pub struct Row<'r>(&'r dyn RawRow);

/// What [`Row`] reads: column `i` as a [`ValueRef`].
trait RawRow {
    fn value(&self, i: usize) -> Result<ValueRef<'_>>;
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, i: I) -> Result<T> {
        let i = i.index();
        T::from_sql(self.0.value(i)?).map_err(|msg| Error::Conversion { column: i, msg })
    }
}

/// A column's position (names are not used: the queries list columns).
pub trait RowIndex {
    fn index(&self) -> usize;
}

impl RowIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}
