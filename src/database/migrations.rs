//! The schema, as numbered SQL files compiled into the binary, and the one
//! place that applies them.
//!
//! All pending migrations run in one transaction that first takes a
//! transaction-level advisory lock: replicas that start together queue on
//! the lock, and each finds the others' work done when it gets it. The lock
//! is released with the transaction, also when a connection dies mid-way,
//! and PostgreSQL's DDL is transactional, so a failed migration leaves no
//! half-made schema behind.
//!
//! To change the schema, add the next file to `migrations/` and a line to
//! [`MIGRATIONS`]; never edit one that has shipped.

use std::fmt;

use deadpool_postgres::Client;

/// One step of the schema.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; versions count up from 1.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "create notes",
    sql: include_str!("migrations/0001_create_notes.sql"),
}];

/// The advisory lock's key: "pulse" in ASCII, so `pg_locks` shows whose it is.
const LOCK_KEY: i64 = 0x70_75_6c_73_65;

/// What one run did.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// The versions this run applied; empty when another replica had.
    pub versions: Vec<i64>,
    /// The newest version in the database afterwards.
    pub schema_version: i64,
}

/// Why migrating stopped.
#[derive(Debug)]
pub enum MigrationError {
    /// The connection failed or closed: worth trying again.
    Connection(tokio_postgres::Error),
    /// No connection came within the timeout.
    Unreachable(String),
    /// The server's TLS certificate was refused (an unknown CA, another
    /// host's name, expired): a setting to fix, and `sslrootcert` is read
    /// only at startup, so waiting cannot help; a restart after the fix can.
    /// Holds rustls's verdict.
    Untrusted(String),
    /// PostgreSQL refused a statement (a migration's SQL, or the
    /// bookkeeping's, for want of privileges): trying again cannot help.
    Refused {
        step: String,
        error: tokio_postgres::Error,
    },
    /// The database holds a version this binary does not know: it was
    /// migrated by a newer pulse. Serving with an older binary is a rollback
    /// the schema may not allow.
    Newer { found: i64, known: i64 },
}

impl MigrationError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MigrationError::Connection(_) | MigrationError::Unreachable(_)
        )
    }
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // tokio-postgres's own text is its kind ("error connecting to
            // server"); the cause says which: refused, timed out, TLS.
            MigrationError::Connection(error) => match std::error::Error::source(error) {
                Some(cause) => write!(f, "the connection failed: {error}: {cause}"),
                None => write!(f, "the connection failed: {error}"),
            },
            MigrationError::Unreachable(reason) => write!(f, "no connection: {reason}"),
            MigrationError::Untrusted(verdict) => write!(
                f,
                "the server's TLS certificate was refused ({verdict}): check sslrootcert and the host name in PULSE_DATABASE_URL"
            ),
            MigrationError::Refused { step, error } => {
                write!(f, "{step} failed: {}", super::refusal(error))
            }
            MigrationError::Newer { found, known } => write!(
                f,
                "the database is at schema version {found}, and this pulse knows versions up to {known}: run a pulse at least as new as the one that migrated it"
            ),
        }
    }
}

impl std::error::Error for MigrationError {}

/// Applies every migration the database lacks.
pub async fn apply(client: &mut Client) -> Result<Applied, MigrationError> {
    let refused = |step: &str| {
        let step = step.to_owned();
        move |error: tokio_postgres::Error| classify(step, error)
    };
    let transaction = client.transaction().await.map_err(refused("BEGIN"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(refused("taking the migration lock"))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS pulse_schema_migrations (
                version bigint PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(refused("creating pulse_schema_migrations"))?;
    let found: i64 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM pulse_schema_migrations",
            &[],
        )
        .await
        .map_err(refused("reading pulse_schema_migrations"))?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if found > known {
        return Err(MigrationError::Newer { found, known });
    }
    let mut versions = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let step = format!("migration {} ({})", migration.version, migration.name);
        transaction
            .batch_execute(migration.sql)
            .await
            .map_err(refused(&step))?;
        transaction
            .execute(
                "INSERT INTO pulse_schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await
            .map_err(refused(&step))?;
        versions.push(migration.version);
    }
    transaction.commit().await.map_err(refused("COMMIT"))?;
    Ok(Applied {
        versions,
        schema_version: known.max(found),
    })
}

/// A closed connection, an I/O error or a passing server state is worth a
/// retry; any other error PostgreSQL sent back is not.
fn classify(step: String, error: tokio_postgres::Error) -> MigrationError {
    match error.code() {
        Some(code) if !error.is_closed() && !super::is_transient(code) => {
            MigrationError::Refused { step, error }
        }
        _ => MigrationError::Connection(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i64 + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty(), "{}", migration.name);
        }
    }
}
