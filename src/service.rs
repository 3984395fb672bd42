//! What the server serves: anything that answers a request and shares the
//! settings, metrics and readiness the server reads. pulse's [`App`] is one;
//! `pulse alert-log` is another. The server serves them through one enum,
//! `server::Served`, rather than a `dyn Service` or a generic (see there).
//!
//! [`App`]: crate::App

use std::time::Instant;

use hyper::Request;
use hyper::body::Incoming;

use crate::context::Shared;
use crate::logging::Peer;
use crate::response::Handling;
use crate::span_export::Exporter;

pub trait Service: Send + Sync + 'static {
    /// Answers one request that arrived at `received` from `peer`. The
    /// server reads the clock once for the request and for its connection.
    fn answer(&self, request: Request<Incoming>, peer: Peer, received: Instant) -> Handling;

    /// The settings, metrics and readiness the server reads and sets.
    fn shared(&self) -> &Shared;

    /// Starts what runs beside the requests, such as span export.
    fn start_background(&self) -> Option<Exporter> {
        None
    }
}
