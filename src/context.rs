//! What a handler sees: the request ([`RequestContext`]), the app-wide
//! settings, metrics and readiness ([`Shared`]), and the fork's own [`State`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Method, Uri, Version};

use crate::config::Config;
use crate::logging::Peer;
use crate::metrics::Metrics;
use crate::secrets::rotating::RotatingSecret;
use crate::span_export::{ChildSpans, SpanQueue};
use crate::startup::Stop;
use crate::state::State;
use crate::trace_context::SpanContext;

/// One segment of a route's path, as its row in the table declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A fixed segment: `notes` in `/v1/notes/{id}`.
    Literal(&'static str),
    /// A path parameter: `{id}`, and the example value the tests and the
    /// OpenAPI document use.
    Parameter {
        name: &'static str,
        example: &'static str,
    },
}

/// Built once at startup and shared by every request of one app (or of the
/// alert log): the configuration, the metrics and readiness.
pub struct Shared {
    config: Config,
    metrics: Metrics,
    draining: AtomicBool,
    started: Instant,
    /// `PULSE_METRICS_TOKEN` as it is now; None when `/metrics` is open.
    metrics_token: Option<Arc<RotatingSecret>>,
    /// Set when something running in the background stops pulse for good.
    stop: Arc<Stop>,
}

impl Shared {
    pub fn new(config: Config, metrics: Metrics) -> Shared {
        Shared {
            config,
            metrics,
            draining: AtomicBool::new(false),
            started: Instant::now(),
            metrics_token: None,
            stop: Arc::default(),
        }
    }

    /// What a background task calls to stop pulse for good; the server
    /// waits on it beside the shutdown signals.
    pub fn stop(&self) -> &Arc<Stop> {
        &self.stop
    }

    /// `/metrics` then requires this bearer token.
    pub fn with_metrics_token(mut self, token: Option<Arc<RotatingSecret>>) -> Shared {
        self.metrics_token = token;
        self
    }

    /// The bearer token `/metrics` requires, if any.
    pub fn metrics_token(&self) -> Option<&RotatingSecret> {
        self.metrics_token.as_deref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// From now on `/readyz` answers 503, and HTTP/1 responses ask clients
    /// to reconnect (`Connection: close`), so that keep-alive clients move to
    /// another instance while this one drains.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// How long this app has been serving.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One request, as every handler sees it: the method, the path parameters
/// by name, the query, the headers, the caller's address, the request id
/// and the trace context; the app's [`Shared`] settings and the fork's
/// [`State`].
///
/// A handler borrows it for the time it runs; an `Async` handler copies
/// what its future needs before it returns the future. The app builds it
/// (`App::handle`); a handler only reads it.
pub struct RequestContext<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) state: &'a State,
    pub(crate) parts: &'a Parts,
    /// The row's segments, to find the path parameters by name.
    pub(crate) segments: &'static [Segment],
    pub(crate) peer: Option<&'a Peer>,
    pub(crate) request_id: &'a [u8],
    pub(crate) trace: &'a SpanContext,
    /// Where sampled spans go; None while span export is off.
    pub(crate) spans: Option<&'a SpanQueue>,
}

impl<'a> RequestContext<'a> {
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    pub fn version(&self) -> Version {
        self.parts.version
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// A request header as text; None when it is absent or not visible ASCII.
    pub fn header(&self, name: impl hyper::header::AsHeaderName) -> Option<&str> {
        self.parts.headers.get(name)?.to_str().ok()
    }

    /// The path parameter `name` declared in the route's row: `"42"` for
    /// `{id}` in `/v1/notes/42`. Raw: not percent-decoded.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        let position = self.segments.iter().position(
            |segment| matches!(segment, Segment::Parameter { name: declared, .. } if *declared == name),
        )?;
        self.parts.uri.path().split('/').nth(position + 1)
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.parts.uri.query()
    }

    /// The first value of `name` in the query: `"10"` for `limit` in
    /// `?limit=10&after=3`, `""` for `?flag`. Raw: not percent-decoded.
    pub fn query_value(&self, name: &str) -> Option<&'a str> {
        self.query()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The caller's address: the TCP peer (a proxy, behind one). None when
    /// the app is driven in-process.
    pub fn peer(&self) -> Option<SocketAddr> {
        // Parsed from the text the access log writes, on demand: a handler
        // that never asks costs nothing.
        std::str::from_utf8(self.peer?.as_bytes())
            .ok()?
            .parse()
            .ok()
    }

    /// The request's `X-Request-Id`: the caller's, if acceptable, or the
    /// one pulse made. Visible ASCII.
    pub fn request_id(&self) -> &'a str {
        std::str::from_utf8(self.request_id).unwrap_or("-")
    }

    /// This request's span: its trace id, span id, parent and sampling.
    pub fn trace(&self) -> &'a SpanContext {
        self.trace
    }

    /// Records child spans of this request (its database queries); None
    /// when the request is not sampled or span export is off.
    pub fn child_spans(&self) -> Option<ChildSpans> {
        self.spans?.children_of(self.trace)
    }

    pub fn shared(&self) -> &'a Shared {
        self.shared
    }

    /// The fork's own state (`src/state.rs`).
    pub fn state(&self) -> &'a State {
        self.state
    }

    pub fn config(&self) -> &'a Config {
        self.shared.config()
    }
}
