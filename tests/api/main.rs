//! Integration tests: pulse on real sockets on 127.0.0.1.
//!
//! One test binary (faster to build and link than one per file). `helpers`
//! holds `spawn_app()` for the in-process server, `spawn_binary()` for the
//! real executable, and small HTTP/1.1, h2 and raw-TCP clients.

mod binary;
mod echo;
mod fuzz_corpus;
mod hardening;
mod helpers;
mod http2;
mod idle;
mod logging;
mod metrics;
mod rejections;
mod routes;
mod shutdown;
mod table;
mod tracing;
