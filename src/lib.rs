//! pulse: a minimal, production-grade HTTP service.
//!
//! The library is the whole service; `main.rs` only reads the config, sets up
//! logging and signals, binds, and calls [`run`].
//!
//! # Layout
//!
//! Imports point one way, top to bottom (`scripts/ci/check-module-graph.py`
//! fails on a cycle or an upward import):
//!
//! - `server`: puts the app, or the alert log, on a listener (`Served`):
//!   HTTP/1.1 and h2c, timeouts, the connection cap, graceful shutdown; with
//!   `connection` (each open connection's activity) and `executor` (HTTP/2
//!   streams).
//! - `app`: pulse's service; builds everything from a `Config` and answers
//!   one request in-process. `alert_log` is the other service,
//!   `pulse alert-log`. Both implement `service::Service`.
//! - `routes`: the route table, one row per route, and its handlers.
//! - `state`: the app state, built once at startup from a `startup::Startup`
//!   (pulse's own is the database of `/notes`).
//! - the leaves: `database` (PostgreSQL: the pool, the migrations, their
//!   metrics), `startup`, `context` (what a handler sees), `response` (answer
//!   helpers), `body` (reading a JSON body), `config` and `dotenv`,
//!   `metrics`, `process_metrics` and `exposition`, `logging`,
//!   `trace_context`, `span_export`, `request_id`, `verb`, `hex`,
//!   `build_info`, and `allocation`, the one home of the musl allocation
//!   workarounds.
//!
//! A fork's tests need [`App`], [`Config`] and [`serve`] (or [`run`]). The
//! command line, `pulse healthcheck` and the signal handlers belong to the
//! binary (`main.rs` declares `cli`, `healthcheck` and `signals`).

#![forbid(unsafe_code)]
#![deny(warnings)]

pub mod alert_log;
mod allocation;
pub mod app;
pub mod body;
pub mod build_info;
pub mod config;
mod connection;
pub mod context;
pub mod database;
pub mod dotenv;
mod executor;
mod exposition;
mod hex;
pub mod logging;
pub mod metrics;
#[cfg(target_os = "linux")]
pub mod process_metrics;
pub mod request_id;
pub mod response;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod service;
pub mod span_export;
pub mod startup;
pub mod state;
pub mod trace_context;
pub mod verb;

pub use app::App;

/// Locks a mutex whose data stays valid even if a thread panicked holding
/// it (the log batch, the open-connection map): a poisoned lock must not
/// take logging or accepting down with it.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub use config::{Config, ConfigError, LogFormat};
pub use server::{ShutdownRequest, run, serve};
