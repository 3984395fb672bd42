//! Integration tests: pulse on real sockets on 127.0.0.1.
//!
//! One test binary (faster to build and link than one per file). `helpers`
//! holds `spawn_app()` for the in-process server, `spawn_binary()` for the
//! real executable, and small HTTP/1.1, h2 and raw-TCP clients.

// One `mod` item per file of this folder, written by build.rs: a new test
// file runs without a line here.
include!(concat!(env!("OUT_DIR"), "/api_test_modules.rs"));
