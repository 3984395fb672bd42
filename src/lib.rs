//! pulse: a minimal, production-grade HTTP service.
//!
//! The library is the whole service; `main.rs` only reads the config, sets up
//! logging and signals, binds, and calls [`run`].
//!
//! # Layout
//!
//! - `config` and `dotenv`: settings from the environment and `.env`.
//! - `routes`: the route table, one row per route, and its handlers.
//! - `app`: the app factory; builds the service from a `Config` and answers
//!   one request, in-process.
//! - `server`: puts an `App` on a listener: HTTP/1.1 and h2c, timeouts, the
//!   connection cap, and graceful shutdown.
//! - `connection`: each open connection's activity, for the idle watchdog
//!   and for making room at the cap.
//! - `metrics`, `process_metrics` and `exposition`: Prometheus metrics and
//!   their text format.
//! - `logging`: text and JSON log formats.
//! - `request_id`, `build_info`: small helpers.
//! - `trace_context`: W3C `traceparent` and `tracestate`, and the sampler.
//! - `span_export`: OTLP/HTTP JSON span export, off unless configured.
//! - `body`: reading a request body with a cap (JSON).
//! - `alert_log`: `pulse alert-log`, the monitoring stack's webhook receiver.
//!
//! A fork's tests need [`App`], [`Config`] and [`serve`] (or [`run`]). The
//! command line, `pulse healthcheck` and the signal handlers belong to the
//! binary (`main.rs` declares `cli`, `healthcheck` and `signals`).

#![forbid(unsafe_code)]
#![deny(warnings)]

pub mod alert_log;
pub mod app;
pub mod body;
pub mod build_info;
pub mod config;
mod connection;
pub mod dotenv;
mod executor;
mod exposition;
pub mod logging;
pub mod metrics;
#[cfg(target_os = "linux")]
pub mod process_metrics;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod span_export;
pub mod trace_context;

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
