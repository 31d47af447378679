//! Persistence for users, links and events, on SQLite (the embedded default) or
//! PostgreSQL, with the same queries and the same behaviour on both.

mod dashboard;
mod events;
mod import;
mod keys;
mod links;
mod managed;
mod users;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::{Mutex, MutexGuard};

pub use dashboard::{
    AgentCount, BucketCount, DashboardSession, Granularity, LinkSearch, ListedLink, RecentClick,
    UserSummary,
};
pub use events::{ClickRow, DayCount, Event, EventFilter, NewEvent, Pace, ReferrerCount};
pub use import::{ImportEvent, ImportLink, ImportUser, RowOutcome};
pub use keys::{ApiKey, StoredKeyHash};
pub use links::{Link, LinkFilter, LinkPatch, LinkTarget, NewLink};
pub use managed::{ManagedLink, ManagedOutcome, ReclaimPolicy};
pub use users::{Upserted, User, UserPatch, UserUpsert};

/// How long a request waits for a pooled connection before the store counts as
/// unavailable: long enough to ride out a burst, short enough that callers get a
/// clear 503 instead of hanging.
// Limitation: while PostgreSQL refuses connections, sqlx keeps retrying them
// until this deadline, so every request that needs the database waits the
// full 5 s before its 503. Readiness fails within a second meanwhile, which
// takes the replica out of its Service (docs/failure-modes.md).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a PostgreSQL operation may take unless [`Store::with_deadline`]
/// says otherwise: far above any query Kadi runs on a healthy server, and
/// short enough that a request gets its 503 while the client still waits.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// How long SQLite waits on a lock held by another connection before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures of the store, sorted by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection.
    #[error("database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A statement failed for another reason.
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    /// A unique constraint refused the row.
    #[error("row conflicts with an existing one")]
    Conflict(#[source] sqlx::Error),
    /// A referenced row does not exist.
    #[error("referenced row does not exist")]
    MissingReference(#[source] sqlx::Error),
    /// Connecting or migrating at start-up failed.
    #[error("database setup failed")]
    Setup(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// PostgreSQL did not finish the operation within the store's deadline:
    /// a hung server, a network partition, or a statement stuck on a lock.
    #[error("database did not answer within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(error),
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::MissingReference(error)
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_unavailable_code(&c)) => {
                StoreError::Unavailable(error)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
            _ => StoreError::Query(error),
        }
    }
}

/// Whether a PostgreSQL SQLSTATE says that the server cannot take the
/// statement right now, rather than that the statement is wrong: class 08
/// (connection exception), class 53 (insufficient resources: disk full, out
/// of memory, too many connections), and 57P01 to 57P03 (sessions ended by a
/// shutdown or crash, or the server still starting). A restart or failover
/// ends running queries with these; the caller should retry later, so they
/// answer 503, not 500.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a file (or in memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool the store holds; the body is
/// type-checked once per backend.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {{
        let _in_flight = $store.enter();
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => {
                // `return` inside `$body` leaves only this block here, so the
                // bodies that stop early do so from an inner `async` block of
                // their own, the same on both arms.
                let work = async { Ok::<_, $crate::store::StoreError>($body) };
                $store.within_deadline(work).await?
            }
        }
    }};
}
pub(crate) use on_pool;

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// SQLite allows one writer at a time; taking this lock before a write
    /// transaction turns lock contention into a queue instead of busy errors.
    sqlite_writes: Arc<Mutex<()>>,
    /// Store operations under way, for the pool metrics.
    in_flight: Arc<AtomicI64>,
    max_connections: u32,
    /// Longest a PostgreSQL operation may take, connection included.
    deadline: Duration,
}

/// Counts an operation as in flight until dropped.
pub(crate) struct InFlight(Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the connection pool is used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections running a statement.
    pub in_use: i64,
    /// Open connections waiting for work.
    pub idle: i64,
    /// Most connections the pool opens.
    pub max: i64,
    /// Operations in flight beyond the open connections: waiting for one.
    pub waiting: i64,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects to `database_url`: `postgres://…` or `postgresql://…` for
    /// PostgreSQL, `sqlite:…` for SQLite (the file is created when missing).
    pub async fn connect(database_url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let pool = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            let options = PgConnectOptions::from_str(database_url).map_err(StoreError::Setup)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(options);
            Pool::Postgres(pool)
        } else {
            let options = SqliteConnectOptions::from_str(database_url)
                .map_err(StoreError::Setup)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(StoreError::Setup)?;
            Pool::Sqlite(pool)
        };
        Ok(Store {
            pool,
            sqlite_writes: Arc::new(Mutex::new(())),
            in_flight: Arc::new(AtomicI64::new(0)),
            max_connections,
            deadline: DEFAULT_DEADLINE,
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies pending migrations. On PostgreSQL the migrator holds an advisory
    /// lock, so replicas starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// Answers whether the database takes queries right now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Runs one statement outside any transaction, such as `CREATE DATABASE`;
    /// for administration and tests, never with user input.
    pub async fn execute_admin(&self, sql: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(sql).execute(pool).await?;
        });
        Ok(())
    }

    /// How the connection pool is used, for metrics.
    pub fn usage(&self) -> PoolUsage {
        let (size, idle) = match &self.pool {
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
        };
        let (size, idle) = (i64::from(size), idle as i64);
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        PoolUsage {
            in_use: (size - idle).max(0),
            idle,
            max: i64::from(self.max_connections),
            waiting: (in_flight - size).max(0),
        }
    }

    pub(crate) fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Closes every connection; used on shutdown.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// The same store, with every PostgreSQL operation cut off after
    /// `deadline` ([`DEFAULT_DEADLINE`] otherwise).
    pub fn with_deadline(mut self, deadline: Duration) -> Store {
        self.deadline = deadline;
        self
    }

    /// Runs `work`, a PostgreSQL operation, giving up with
    /// [`StoreError::TimedOut`] once the deadline passes. A server that hangs
    /// without closing its connections would otherwise hold the caller until
    /// TCP gives up, minutes later. Giving up drops the operation: a
    /// transaction not yet committed rolls back, and the connection is only
    /// reused once it answers again.
    // Limitation: an operation cut off after it sent `COMMIT` may still have
    // committed, so its caller sees a 503 for a change that was made. The
    // click writer does not give up on a commit, so no batch is stored twice.
    pub(crate) async fn within_deadline<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.deadline, work)
            .await
            .unwrap_or(Err(StoreError::TimedOut(self.deadline)))
    }

    /// Serialises writers on SQLite; a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.pool {
            Pool::Sqlite(_) => Some(self.sqlite_writes.lock().await),
            Pool::Postgres(_) => None,
        }
    }

    /// Moves id sequences past the largest id of each table, after rows were
    /// inserted with explicit ids. SQLite's AUTOINCREMENT does this by itself.
    pub async fn advance_id_sequences(&self) -> Result<(), StoreError> {
        if let Pool::Postgres(pool) = &self.pool {
            for table in ["users", "links", "events"] {
                sqlx::query(&advance_sequence_sql(table))
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Offset and limit of one page of a listing.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return at most.
    pub limit: i64,
}

/// PostgreSQL statement that moves `table`'s id sequence to its largest id, so
/// that rows inserted with explicit ids never collide with later inserts.
pub(crate) fn advance_sequence_sql(table: &str) -> String {
    format!(
        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
         GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1), \
         (SELECT COUNT(*) > 0 FROM {table}))"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_connection_states_count_as_unavailable() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "08001", "53300", "53100",
        ] {
            assert!(is_unavailable_code(code), "{code}");
        }
        // Faults of the statement itself: unique and foreign keys, syntax.
        for code in ["23505", "23503", "42601", "57014"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
