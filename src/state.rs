//! The app state: what the handlers share (a store, a pool, a client),
//! built once at startup from the configuration and reached from every
//! handler as `ctx.state()`.
//!
//! A fork adds a field and its value in [`State::new`]; no other file
//! changes. Keep each field cheap to clone (an `Arc`, a pool handle): an
//! `Async` handler clones what its future needs before it returns the
//! future. pulse's own field is the database of the `/notes` routes.

use crate::database::{Database, DatabaseMetrics};
use crate::startup::{Startup, Stop};

/// Shared by every request of one app.
#[derive(Clone)]
pub struct State {
    /// PostgreSQL, when `PULSE_DATABASE_URL` is set; the `/notes` routes
    /// exist only then.
    pub database: Option<Database>,
}

impl State {
    /// Builds the state from the configuration, once, before pulse serves.
    pub fn new(startup: &mut Startup) -> State {
        State {
            database: database(startup),
        }
    }

    /// Starts what runs in the background once pulse serves; `stop` ends
    /// pulse for good, with a reason.
    pub fn start(&self, stop: std::sync::Arc<Stop>) {
        if let Some(database) = &self.database {
            database.start(move |reason| stop.stop(reason));
        }
    }

    /// Whether the state lets pulse answer `/readyz` with 200.
    pub fn is_ready(&self) -> bool {
        self.database.as_ref().is_none_or(Database::is_ready)
    }

    /// What `/health` adds: each dependency and its state.
    pub fn health(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut checks = serde_json::Map::new();
        if let Some(database) = &self.database {
            checks.insert("database".to_owned(), database.status().label().into());
        }
        checks
    }
}

fn database(startup: &mut Startup) -> Option<Database> {
    let settings = startup.config().database.as_ref()?;
    let password = settings
        .password
        .as_ref()
        .map(|setting| startup.rotating_secret(setting));
    let metrics = DatabaseMetrics::new();
    startup.register_metrics(metrics.clone());
    let database = Database::new(settings, password, metrics)
        // SECURITY: the reason never quotes the URL.
        .unwrap_or_else(|reason| panic!("{reason} (checked when the config was read)"));
    Some(database)
}
