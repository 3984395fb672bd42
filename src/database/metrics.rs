//! The database's metrics: the pool's connections, read at each scrape,
//! whether the database answers, and each query's duration and errors by
//! operation. Labels come from fixed words in the code, never from a query.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use super::QueryError;

/// Query durations, from a fast primary-key read to the 2 s timeout.
const QUERY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Cheap to clone: every clone updates the same series.
#[derive(Clone)]
pub struct DatabaseMetrics {
    inner: Arc<Families>,
}

struct Families {
    up: IntGauge,
    pool: IntGaugeVec,
    queries: HistogramVec,
    errors: IntCounterVec,
    /// Set once the pool exists; read at each scrape.
    watched: OnceLock<Pool>,
}

impl Default for DatabaseMetrics {
    fn default() -> Self {
        DatabaseMetrics::new()
    }
}

impl DatabaseMetrics {
    pub fn new() -> DatabaseMetrics {
        let up = IntGauge::new(
            "pulse_database_up",
            "1 when the last query or check reached the database, else 0 (also 0 before the first connection).",
        )
        .expect("static metric definition");
        let pool = IntGaugeVec::new(
            Opts::new(
                "pulse_database_pool_connections",
                "The connection pool at the scrape: open (size), of which idle, the most it may open (max), and requests waiting for one (waiting).",
            ),
            &["state"],
        )
        .expect("static metric definition");
        let queries = HistogramVec::new(
            HistogramOpts::new(
                "pulse_database_query_duration_seconds",
                "Time from asking the pool for a connection to the query's result, by operation.",
            )
            .buckets(QUERY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("static metric definition");
        let errors = IntCounterVec::new(
            Opts::new(
                "pulse_database_errors_total",
                "Queries that failed, by operation and kind: unavailable (no connection, or the timeout) or refused (PostgreSQL said no).",
            ),
            &["operation", "kind"],
        )
        .expect("static metric definition");
        DatabaseMetrics {
            inner: Arc::new(Families {
                up,
                pool,
                queries,
                errors,
                watched: OnceLock::new(),
            }),
        }
    }

    /// The pool whose connections the scrape reports.
    pub fn watch_pool(&self, pool: Pool) {
        let _ = self.inner.watched.set(pool);
    }

    pub fn set_up(&self, up: bool) {
        self.inner.up.set(i64::from(up));
    }

    /// Counts one query.
    pub fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&QueryError>) {
        self.inner
            .queries
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
        let kind = match error {
            None => return,
            Some(QueryError::Unavailable) => "unavailable",
            Some(QueryError::Refused(_)) => "refused",
        };
        self.inner
            .errors
            .with_label_values(&[operation, kind])
            .inc();
    }
}

impl Collector for DatabaseMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let families = &self.inner;
        [
            families.up.desc(),
            families.pool.desc(),
            families.queries.desc(),
            families.errors.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let families = &self.inner;
        if let Some(pool) = families.watched.get() {
            let status = pool.status();
            for (state, value) in [
                ("size", status.size),
                ("idle", status.available),
                ("max", status.max_size),
                ("waiting", status.waiting),
            ] {
                families
                    .pool
                    .with_label_values(&[state])
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        [
            families.up.collect(),
            families.pool.collect(),
            families.queries.collect(),
            families.errors.collect(),
        ]
        .concat()
    }
}
