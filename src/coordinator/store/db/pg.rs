//! The PostgreSQL side of [`super::Connection`]: tokio-postgres clients
//! whose connections are driven by a runtime of their own (one thread for
//! the process), so the store's synchronous calls can wait on them from
//! any thread — a blocking-pool thread, or an async worker for the small
//! calls — without starting a runtime inside a runtime.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use futures::executor::block_on;
use tokio_postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::error::pg_unavailable;
use super::{Connection, Error, RawRow, Result, Row, TxKind, ValueRef};

/// The advisory lock every write transaction takes: one writer at a time
/// across all replicas (see `TxKind::Write`). Keyed by the schema too, so
/// installations sharing a database in schemas of their own (and tests)
/// do not wait on each other.
pub const WRITE_LOCK: &str = "hashtext(current_schema()), 1";

/// How long a call waits for a free connection before it reports the
/// database unavailable.
const CHECKOUT_WAIT: Duration = Duration::from_secs(10);

/// Statements kept per connection; past it the cache starts over (the
/// store's statements are few; only `LIMIT n` texts vary).
const CACHE_STATEMENTS: usize = 256;

/// The runtime that drives every connection's socket.
fn driver() -> &'static tokio::runtime::Handle {
    static DRIVER: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the PostgreSQL driver runtime");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("postgres-driver".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("spawn the PostgreSQL driver thread");
        handle
    })
}

pub struct PgConn {
    client: Client,
    statements: RefCell<HashMap<String, Statement>>,
    /// Set when a call failed in a way that says the connection is gone:
    /// the pool drops it instead of handing it out again.
    broken: Cell<bool>,
}

impl PgConn {
    fn connect(cfg: &Config) -> Result<PgConn> {
        let (tx, rx) = futures::channel::oneshot::channel();
        let cfg = cfg.clone();
        driver().spawn(async move {
            match cfg.connect(NoTls).await {
                Ok((client, connection)) => {
                    if tx.send(Ok(client)).is_ok() {
                        // Ends when the client is dropped or the server goes.
                        let _ = connection.await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let client = block_on(rx)
            .map_err(|_| Error::Unavailable("connect: driver stopped".into()))?
            .map_err(|e| Error::Unavailable(format!("connect: {}", Error::Postgres(e))))?;
        Ok(PgConn {
            client,
            statements: RefCell::new(HashMap::new()),
            broken: Cell::new(false),
        })
    }

    /// Marks the connection broken when `e` says it is gone.
    fn check<T>(&self, r: std::result::Result<T, tokio_postgres::Error>) -> Result<T> {
        r.map_err(|e| {
            if pg_unavailable(&e) {
                self.broken.set(true);
                Error::Unavailable(Error::Postgres(e).to_string())
            } else {
                Error::Postgres(e)
            }
        })
    }

    pub(super) fn begin(&self, kind: TxKind) -> Result<()> {
        static BEGIN_WRITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            )
        });
        let begun = match kind {
            TxKind::Write => self.batch(&BEGIN_WRITE),
            TxKind::Read => self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            TxKind::Claim => self.batch("BEGIN ISOLATION LEVEL READ COMMITTED"),
        };
        // BEGIN may have run and the lock call failed (a statement timeout,
        // a canceled backend): the block is aborted, and no `Tx` exists to
        // roll it back. A connection that cannot is not lent again.
        if begun.is_err() && self.batch("ROLLBACK").is_err() {
            self.broken.set(true);
        }
        begun
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        self.check(block_on(self.client.batch_execute(sql)))
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.check(block_on(self.client.prepare(&rewrite(sql))))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= CACHE_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub(super) fn execute(&self, stmt: &Statement, values: &[ValueRef<'_>]) -> Result<usize> {
        let binds: Vec<Bind<'_>> = values.iter().map(|v| Bind(*v)).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            binds.iter().map(|b| b as _).collect();
        Ok(self.check(block_on(self.client.execute(stmt, &refs)))? as usize)
    }

    pub(super) fn each(
        &self,
        stmt: &Statement,
        values: &[ValueRef<'_>],
        limit: usize,
        f: &mut dyn FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let binds: Vec<Bind<'_>> = values.iter().map(|v| Bind(*v)).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            binds.iter().map(|b| b as _).collect();
        let rows = self.check(block_on(self.client.query(stmt, &refs)))?;
        for r in rows.iter().take(limit) {
            f(&Row(r))?;
        }
        Ok(())
    }
}

/// SQL written for both engines, as PostgreSQL reads it: `?N` → `$N`, and
/// SQLite's `INDEXED BY name` hint dropped (PostgreSQL plans on its own).
pub fn rewrite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut in_str = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_str = !in_str;
                out.push(c);
            }
            '?' if !in_str => out.push('$'),
            _ => out.push(c),
        }
    }
    match out.find("INDEXED BY ") {
        Some(at) => {
            let rest = &out[at + "INDEXED BY ".len()..];
            let end = rest.find(char::is_whitespace).map_or(rest.len(), |e| e + 1);
            format!("{}{}", &out[..at], &rest[end..])
        }
        None => out,
    }
}

/// Binds one of our values as the type PostgreSQL inferred for the
/// parameter (integers become booleans, `INT4`s or floats as needed).
#[derive(Debug)]
struct Bind<'a>(ValueRef<'a>);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        let cannot = || -> BoxError { format!("cannot bind {:?} as {ty}", self.0).into() };
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                Type::FLOAT8 => (n as f64).to_sql(ty, out),
                Type::FLOAT4 => (n as f32).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().to_sql(ty, out),
                _ => Err(cannot()),
            },
            ValueRef::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(cannot()),
            },
            ValueRef::Text(s) => match *ty {
                // PostgreSQL's text cannot hold NUL (SQLite's can): a log
                // line or an error carrying one is stored with U+FFFD
                // instead of failing every retry.
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN
                    if s.contains('\0') =>
                {
                    s.replace('\0', "\u{FFFD}").as_str().to_sql(ty, out)
                }
                Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => {
                    s.to_sql(ty, out)
                }
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => Err(cannot()),
            },
            ValueRef::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => std::str::from_utf8(b)?.to_sql(ty, out),
                _ => Err(cannot()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl RawRow for tokio_postgres::Row {
    fn value(&self, i: usize) -> Result<ValueRef<'_>> {
        let column = self
            .columns()
            .get(i)
            .ok_or_else(|| Error::Other(format!("read column {i}: no such column")))?;
        let conv = |e: tokio_postgres::Error| Error::Conversion {
            column: i,
            msg: e.to_string(),
        };
        let v = match *column.type_() {
            Type::INT8 => self
                .try_get::<_, Option<i64>>(i)
                .map_err(conv)?
                .map(ValueRef::Integer),
            Type::INT4 => self
                .try_get::<_, Option<i32>>(i)
                .map_err(conv)?
                .map(|n| ValueRef::Integer(n.into())),
            Type::INT2 => self
                .try_get::<_, Option<i16>>(i)
                .map_err(conv)?
                .map(|n| ValueRef::Integer(n.into())),
            Type::BOOL => self
                .try_get::<_, Option<bool>>(i)
                .map_err(conv)?
                .map(|b| ValueRef::Integer(b.into())),
            Type::FLOAT8 => self
                .try_get::<_, Option<f64>>(i)
                .map_err(conv)?
                .map(ValueRef::Real),
            Type::FLOAT4 => self
                .try_get::<_, Option<f32>>(i)
                .map_err(conv)?
                .map(|f| ValueRef::Real(f.into())),
            Type::BYTEA => self
                .try_get::<_, Option<&[u8]>>(i)
                .map_err(conv)?
                .map(ValueRef::Blob),
            _ => self
                .try_get::<_, Option<&str>>(i)
                .map_err(conv)?
                .map(ValueRef::Text),
        };
        Ok(v.unwrap_or(ValueRef::Null))
    }
}

/// A few connections to one database, shared by the store's callers.
pub struct Pool {
    cfg: Config,
    idle: Mutex<Vec<PgConn>>,
    /// Connections handed out, and its wake-up for callers waiting.
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Pool {
    /// Parses `url`; connects lazily (see [`Pool::get`]).
    pub fn new(url: &str, max: usize) -> Result<Arc<Pool>> {
        let mut cfg: Config = url
            .parse()
            .map_err(|e| Error::Other(format!("parse the database URL: {e}")))?;
        // A replica cut off from the database notices within seconds
        // instead of waiting out TCP's retries: it then hands out no work.
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        cfg.keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        if cfg.get_application_name().is_none() {
            cfg.application_name("provisionerd");
        }
        // The server side of the same: a replica cut off while holding the
        // writers' lock must not hold it for the OS keepalive's two hours.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout=30s -c tcp_keepalives_idle=5 \
             -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
            cfg.get_options().unwrap_or("")
        );
        cfg.options(options.trim_start());
        Ok(Arc::new(Pool {
            cfg,
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(0),
            freed: Condvar::new(),
            max: max.max(1),
        }))
    }

    /// A connection: an idle one, or a new one while fewer than the
    /// pool's size are out; else waits for one (at most `CHECKOUT_WAIT`).
    pub fn get(self: &Arc<Self>) -> Result<PoolConn> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = std::time::Instant::now() + CHECKOUT_WAIT;
            while *busy >= self.max {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(Error::Unavailable(format!(
                        "no database connection free after {CHECKOUT_WAIT:?} ({} in use)",
                        self.max
                    )));
                }
                busy = self
                    .freed
                    .wait_timeout(busy, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *busy += 1;
        }
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => PgConn::connect(&self.cfg),
        };
        match conn {
            Ok(c) => Ok(PoolConn {
                pool: self.clone(),
                conn: Some(Connection::Postgres(Box::new(c))),
            }),
            Err(e) => {
                self.release(None);
                Err(e)
            }
        }
    }

    fn release(&self, conn: Option<PgConn>) {
        if let Some(c) = conn
            && !c.broken.get()
            && !c.client.is_closed()
        {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// A connection out of the pool; back in it when dropped.
pub struct PoolConn {
    pool: Arc<Pool>,
    conn: Option<Connection>,
}

impl std::ops::Deref for PoolConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl Drop for PoolConn {
    fn drop(&mut self) {
        let conn = match self.conn.take() {
            Some(Connection::Postgres(c)) => Some(*c),
            _ => None,
        };
        self.pool.release(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn rewrite_numbers_parameters_and_drops_index_hints() {
        assert_eq!(
            rewrite(
                "SELECT id FROM jobs INDEXED BY jobs_claim WHERE a = ?1 AND b = '?' AND c = ?2"
            ),
            "SELECT id FROM jobs WHERE a = $1 AND b = '?' AND c = $2"
        );
    }
}
