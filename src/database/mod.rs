//! PostgreSQL, for the routes that store something (`/notes`): the pool,
//! the migrations, the queries' metrics and timeouts, and the database's
//! state that readiness and `/health` report.
//!
//! Built once at startup (`State::new`) when `PULSE_DATABASE_URL` is set.
//! [`Database::start`] then connects and migrates in the background: pulse
//! is alive at once and ready once that has succeeded, so an orchestrator
//! does not restart it in a loop while the database comes up.

mod connect;
pub mod metrics;
pub mod migrations;
pub mod settings;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{
    Client, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::secrets::rotating::RotatingSecret;
use crate::span_export::ChildSpans;
pub use metrics::DatabaseMetrics;
pub use migrations::{Applied, MigrationError};
pub use settings::{DatabaseSettings, Readiness, Statements};

/// How often a ready pulse checks that the database still answers, for
/// `/health`, `pulse_database_up` and (with `Readiness::Always`) `/readyz`.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The longest wait between two tries to connect and migrate at startup.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The database as readiness and `/health` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not yet connected and migrated.
    Starting,
    /// The last check or query succeeded.
    Up,
    /// The last check or query could not reach it.
    Down,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

/// Why a query got no answer.
#[derive(Debug)]
pub enum QueryError {
    /// No connection within the timeout, the connection failed, or the
    /// query took longer than the timeout: a 503, worth a retry.
    Unavailable,
    /// PostgreSQL refused the query: a bug or a schema mismatch, a 500.
    Refused(tokio_postgres::Error),
}

/// A query: its SQL, with `$1`, `$2`... for the parameters, and their
/// PostgreSQL types in that order. Declared once, as a `const` beside the
/// code that runs it; the types are what lets a query be sent unprepared
/// ([`Statements::Unprepared`]).
pub struct Sql {
    pub text: &'static str,
    pub types: &'static [Type],
}

/// The pool and what pulse knows of the database. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    timeout: Duration,
    readiness: Readiness,
    statements: Statements,
    status: AtomicU8,
    metrics: DatabaseMetrics,
}

impl Database {
    /// The pool; no connection is opened until [`Database::start`] or a query.
    pub fn new(
        settings: &DatabaseSettings,
        password: Option<Arc<RotatingSecret>>,
        metrics: DatabaseMetrics,
    ) -> Result<Database, String> {
        let parsed = settings.connection.clone();
        let connect = connect::Connector::new(&parsed.tls, password)
            .map_err(|reason| format!("PULSE_DATABASE_URL is not valid: {reason}"))?;
        let manager = Manager::from_connect(
            parsed.config,
            connect,
            // A closed connection is noticed at once; a broken one that
            // looks open fails its query, answers 503 and is dropped then.
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.timeout))
            .create_timeout(Some(settings.timeout))
            .recycle_timeout(Some(settings.timeout))
            .build()
            .map_err(|e| format!("cannot build the database pool: {e}"))?;
        metrics.watch_pool(pool.clone());
        Ok(Database {
            inner: Arc::new(Inner {
                pool,
                timeout: settings.timeout,
                readiness: settings.readiness,
                statements: settings.statements,
                status: AtomicU8::new(Status::Starting as u8),
                metrics,
            }),
        })
    }

    pub fn status(&self) -> Status {
        match self.inner.status.load(Ordering::Acquire) {
            0 => Status::Starting,
            1 => Status::Up,
            _ => Status::Down,
        }
    }

    fn set_status(&self, status: Status) {
        // Starting stays until the migrations are done, whatever a query saw.
        let before = self
            .inner
            .status
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != Status::Starting as u8 || status == Status::Up).then_some(status as u8)
            });
        // A line for each change, not for each failed query.
        match (before, status) {
            (Ok(before), Status::Down) if before == Status::Up as u8 => {
                log::warn!("database: unreachable; its routes answer 503 until it is back");
            }
            (Ok(before), Status::Up) if before == Status::Down as u8 => {
                log::info!("database: reachable again");
            }
            _ => {}
        }
        self.inner.metrics.set_up(self.status() == Status::Up);
    }

    /// Whether pulse may say it is ready, as far as the database goes.
    pub fn is_ready(&self) -> bool {
        !matches!(
            (self.status(), self.inner.readiness),
            (Status::Starting, _) | (Status::Down, Readiness::Always)
        )
    }

    /// Connects and migrates, retrying while the database cannot be reached.
    /// An error PostgreSQL gives back (a migration's SQL, missing
    /// privileges, a schema newer than this binary) is not retried: it is
    /// returned, and pulse stops.
    /// `give_up_after` bounds the retrying (`pulse migrate`); the server
    /// passes None and waits for the database as long as it takes.
    pub async fn migrate(
        &self,
        give_up_after: Option<Duration>,
    ) -> Result<Applied, MigrationError> {
        let deadline = give_up_after.map(|patience| Instant::now() + patience);
        let mut backoff = Duration::from_millis(200);
        let mut logged = false;
        loop {
            let outcome = match self.inner.pool.get().await {
                Ok(mut client) => migrations::apply(&mut client).await,
                Err(PoolError::Backend(error)) => match tls::refused_certificate(&error) {
                    Some(verdict) => Err(MigrationError::Untrusted(verdict.to_string())),
                    None => Err(MigrationError::Connection(error)),
                },
                Err(other) => Err(MigrationError::Unreachable(other.to_string())),
            };
            match outcome {
                Err(error)
                    if error.is_transient()
                        && deadline.is_none_or(|deadline| Instant::now() + backoff < deadline) =>
                {
                    // Once, then every minute or so: the log is not a retry counter.
                    if !logged || backoff == MAX_BACKOFF {
                        log::warn!(
                            "database: not reachable yet ({error}); retrying, and not ready until it is"
                        );
                        logged = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs what comes after startup: [`Database::migrate`], then a check
    /// every few seconds. `stop` is called with the reason if the migrations
    /// fail for good.
    pub fn start(&self, stop: impl FnOnce(String) + Send + 'static) {
        let database = self.clone();
        tokio::spawn(async move {
            match database.migrate(None).await {
                Ok(applied) => {
                    if applied.versions.is_empty() {
                        log::info!(schema_version = applied.schema_version; "database: schema up to date at version {}", applied.schema_version);
                    } else {
                        log::info!(schema_version = applied.schema_version; "database: applied migrations {:?}", applied.versions);
                    }
                    database.set_status(Status::Up);
                }
                Err(error) => {
                    stop(format!("database: cannot start: {error}"));
                    return;
                }
            }
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                let _ = database.query(None, "check", &CHECK, &[]).await;
            }
        });
    }

    /// Rows of a parameterised query, within the timeout. `spans` records
    /// it as a child span of the request (`ctx.child_spans()`).
    pub async fn query(
        &self,
        spans: Option<&ChildSpans>,
        operation: &'static str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, QueryError> {
        debug_assert_eq!(
            sql.types.len(),
            params.len(),
            "{operation}: a type for each parameter"
        );
        self.timed(spans, operation, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            match self.inner.statements {
                Statements::Prepared => {
                    let statement = prepared(&client, sql).await?;
                    client.query(&statement, params).await
                }
                Statements::Unprepared => client.query_typed(sql.text, &typed(sql, params)).await,
            }
            .map_err(query_error)
        })
        .await
    }

    /// Rows affected by a parameterised statement, within the timeout.
    pub async fn execute(
        &self,
        spans: Option<&ChildSpans>,
        operation: &'static str,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, QueryError> {
        debug_assert_eq!(
            sql.types.len(),
            params.len(),
            "{operation}: a type for each parameter"
        );
        self.timed(spans, operation, async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            match self.inner.statements {
                Statements::Prepared => {
                    let statement = prepared(&client, sql).await?;
                    client.execute(&statement, params).await
                }
                Statements::Unprepared => client.execute_typed(sql.text, &typed(sql, params)).await,
            }
            .map_err(query_error)
        })
        .await
    }

    /// Bounds a query by the timeout, times it, and keeps the status.
    /// `operation` is a fixed word of the caller's (`insert_note`): the
    /// metrics label, never the SQL or its parameters.
    async fn timed<T>(
        &self,
        spans: Option<&ChildSpans>,
        operation: &'static str,
        query: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        // Until the migrations are done the tables may not exist yet.
        if self.status() == Status::Starting {
            return Err(QueryError::Unavailable);
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, query)
            .await
            .unwrap_or(Err(QueryError::Unavailable));
        let elapsed = started.elapsed();
        self.inner
            .metrics
            .observe(operation, elapsed, outcome.as_ref().err());
        if let Some(spans) = spans {
            spans.database(operation, elapsed, outcome.is_err());
        }
        match &outcome {
            Ok(_) => self.set_status(Status::Up),
            Err(QueryError::Unavailable) => self.set_status(Status::Down),
            Err(QueryError::Refused(error)) => {
                log::error!(operation; "database: query refused: {}", refusal(error));
            }
        }
        outcome
    }
}

/// The health check's query.
const CHECK: Sql = Sql {
    text: "SELECT 1",
    types: &[],
};

/// `sql` prepared on this connection, once: the pool keeps each
/// connection's statements.
async fn prepared(client: &Client, sql: &Sql) -> Result<Statement, QueryError> {
    client
        .prepare_typed_cached(sql.text, sql.types)
        .await
        .map_err(query_error)
}

/// The parameters with their types, as an unprepared query sends them.
fn typed<'a>(sql: &Sql, params: &[&'a (dyn ToSql + Sync)]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .zip(sql.types)
        .map(|(param, kind)| (*param, kind.clone()))
        .collect()
}

/// What PostgreSQL said, with its SQLSTATE: tokio-postgres's own text for
/// a refusal is only "db error".
fn refusal(error: &tokio_postgres::Error) -> String {
    let reason = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_owned());
    let code = error.code().map_or("", |code| code.code());
    format!("{reason} (SQLSTATE {code})")
}

fn pool_error(error: PoolError) -> QueryError {
    match error {
        PoolError::Backend(error) => query_error(error),
        _ => QueryError::Unavailable,
    }
}

fn query_error(error: tokio_postgres::Error) -> QueryError {
    match error.code() {
        Some(code) if !error.is_closed() && !is_transient(code) => QueryError::Refused(error),
        _ => QueryError::Unavailable,
    }
}

/// SQLSTATE classes that pass: a lost connection (08), a server shutting
/// down or starting (57), a conflict to retry (40), exhausted resources
/// (53), and a refused login (28), which a rotated password may fix.
fn is_transient(code: &SqlState) -> bool {
    ["08", "57", "40", "53", "28"]
        .iter()
        .any(|class| code.code().starts_with(class))
}
