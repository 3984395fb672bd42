//! The fork's own app state: what its handlers share (a store, a pool, a
//! client), built once at startup from the configuration and reached from
//! every handler as `ctx.state()`.
//!
//! pulse itself keeps nothing here. A fork adds a field and builds it in
//! [`State::new`]; no other file changes. Keep each field cheap to clone
//! (an `Arc`, a pool handle): an `Async` handler clones what its future
//! needs before it returns the future.

use crate::config::Config;

/// Shared by every request of one app.
#[derive(Clone)]
pub struct State {}

impl State {
    /// Builds the state from the configuration, once, before pulse serves.
    pub fn new(_config: &Config) -> State {
        State {}
    }
}
