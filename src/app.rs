//! The app factory: [`App::new`] builds the whole HTTP service from a
//! [`Config`], and [`App::handle`] answers one request. No socket is involved,
//! so tests can drive it in-process; `server.rs` puts it on the network.
//!
//! Every request goes the same way: match the route table, read the ids
//! and the trace context, call the row's handler with a [`RequestContext`],
//! then [`App::finish`] adds the headers every answer carries, records the
//! metrics and the span, and writes the access line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};

use crate::allocation;
use crate::build_info::BUILD;
use crate::config::Config;
use crate::context::{RequestContext, Shared};
use crate::logging::{self, Peer};
use crate::metrics::{GaugeGuard, Metrics};
use crate::request_id::{self, IdGenerator};
use crate::response::{
    self, Body, BoxError, Handling, NO_STORE, Pending, X_REQUEST_ID, json_error,
};
use crate::routes::{self, Class, Dispatch, Enabled, Handler, Route, Verb};
use crate::secrets::{self, rotating::RotatingSecret};
use crate::service::Service;
use crate::span_export::{Exporter, FinishedSpan, RequestSpan, SpanKind, SpanQueue};
use crate::startup::Startup;
use crate::state::State;
use crate::trace_context::{self, SpanContext, TRACEPARENT, TRACESTATE, Traceparent};

/// The longest path the access log copies.
const LOGGED_PATH_MAX: usize = 256;

/// The service: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    /// The fork's own state (`src/state.rs`).
    state: State,
    ids: IdGenerator,
    /// Where sampled spans go; None while span export is off.
    spans: Option<SpanQueue>,
    /// Which optional routes exist, from the config.
    enabled: Enabled,
    /// The secret settings in force, watched once the app serves.
    secrets: Vec<Arc<RotatingSecret>>,
}

/// The 5xx series the error SLI reads exist from the start, at 0, for every
/// route and method that counts in it (not probes and scrapes, and fault
/// routes only when they exist): see [`Metrics::create_series`].
fn create_error_series(metrics: &Metrics, enabled: Enabled) {
    for row in Route::ALL.iter().filter_map(|route| route.row()) {
        let counted = row.class != Class::Probe && enabled.serves(row.class);
        if counted {
            for verb in row.methods.iter().filter(|&verb| verb != Verb::Head) {
                metrics.create_series(verb, row.route as usize, StatusCode::INTERNAL_SERVER_ERROR);
            }
        }
    }
}

impl App {
    /// Builds the app, and the fork's [`State`] with it, from `config`.
    pub fn new(config: Config) -> App {
        let enabled = Enabled::of(&config);
        let mut metrics = Metrics::new(&BUILD, Route::LABELS);
        create_error_series(&metrics, enabled);
        let mut startup = Startup::new(&config, &mut metrics);
        let metrics_token = config
            .metrics_token
            .as_ref()
            .map(|setting| startup.rotating_secret(setting));
        let export_headers = config
            .span_export
            .as_ref()
            .and_then(|settings| settings.headers.as_ref())
            .map(|setting| startup.rotating_secret(setting));
        let state = State::new(&mut startup);
        let secrets = startup.into_secrets();
        let spans = config.span_export.clone().map(|settings| {
            SpanQueue::new(settings, metrics.spans().clone(), export_headers.clone())
        });
        App {
            inner: Arc::new(Inner {
                shared: Shared::new(config, metrics).with_metrics_token(metrics_token),
                state,
                spans,
                ids: IdGenerator::default(),
                enabled,
                secrets,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        self.inner.shared.config()
    }

    pub fn metrics(&self) -> &Metrics {
        self.inner.shared.metrics()
    }

    /// The settings, metrics and readiness every handler sees.
    pub fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Starts sending spans to the collector, if span export is on. Until
    /// then (an App driven in-process) spans wait in the bounded queue.
    pub fn start_span_export(&self) -> Option<Exporter> {
        self.inner.spans.as_ref()?.start_exporter()
    }

    /// From now on `/readyz` answers 503; see [`Shared::start_draining`].
    pub fn start_draining(&self) {
        self.inner.shared.start_draining();
    }

    pub fn is_draining(&self) -> bool {
        self.inner.shared.is_draining()
    }

    /// How long this App has been serving.
    pub fn uptime(&self) -> Duration {
        self.inner.shared.uptime()
    }

    /// Answers one request.
    ///
    /// A `Ready` route is answered synchronously, and the returned
    /// [`Handling`] is then a ready value. Only an `Async` route boxes its
    /// body and its future.
    pub fn handle<B>(&self, request: Request<B>, remote: Option<Peer>) -> Handling
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_received(request, remote, Instant::now())
    }

    /// [`App::handle`], for a request that arrived at `received`. Inlined
    /// into [`Service::answer`]: a call would copy the request and the
    /// answer (a `memcpy` each, about 50 instructions apiece).
    #[inline(always)]
    fn handle_received<B>(
        &self,
        request: Request<B>,
        remote: Option<Peer>,
        received: Instant,
    ) -> Handling
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = &*self.inner;
        let (mut request, body) = request.into_parts();
        let verb = Verb::from_method(&request.method);
        let target_length = request.uri.path_and_query().map_or(0, |p| p.as_str().len());
        let (route, dispatch) = if target_length > routes::MAX_URI_BYTES {
            (Route::Unmatched, Dispatch::UriTooLong)
        } else {
            routes::dispatch(verb, request.uri.path(), inner.enabled)
        };
        let mut exchange = self.exchange(&request, verb, route, remote, received);

        let mut response = match dispatch {
            Dispatch::Serve(row) => {
                let ctx = RequestContext {
                    shared: &inner.shared,
                    state: &inner.state,
                    parts: &request,
                    segments: row.segments,
                    peer: exchange.remote.as_ref(),
                    request_id: exchange.request_id.as_bytes(),
                    trace: &exchange.trace,
                    spans: inner.spans.as_ref(),
                };
                match row.handler {
                    Handler::Ready(handler) => {
                        match logging::catch_handler_panic(|| handler(&ctx)) {
                            Ok(response) => response,
                            Err(panic) => self.panicked(&exchange, panic),
                        }
                    }
                    Handler::Async(handler) => {
                        let body = body.map_err(Into::into).boxed_unsync();
                        // A panic while the handler builds its future, or
                        // while the future runs, is caught alike.
                        let started = logging::catch_handler_panic(|| handler(&ctx, body));
                        return self.pending(exchange, request, started);
                    }
                }
            }
            Dispatch::MethodNotAllowed { allow } => {
                let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                response
            }
            Dispatch::NotFound => json_error(StatusCode::NOT_FOUND, "Not found"),
            Dispatch::UriTooLong => json_error(StatusCode::URI_TOO_LONG, "URI too long"),
        };
        exchange.request_headers =
            allocation::recycle_headers(std::mem::take(&mut request.headers));
        self.finish(exchange, request.uri.path(), &mut response);
        // The empty map `take` left in the request's place.
        allocation::dispose(request.headers);
        Handling::Ready(Some(response))
    }

    /// What `finish` needs to know of a request: its ids, read in one pass
    /// over the headers, and its trace context. Inlined, so the exchange is
    /// built in place rather than copied out.
    #[inline(always)]
    fn exchange(
        &self,
        request: &hyper::http::request::Parts,
        verb: Verb,
        route: Route,
        remote: Option<Peer>,
        received: Instant,
    ) -> Exchange {
        let inner = &*self.inner;
        // Both ids in one pass: a request carries a few headers, and
        // comparing names costs less than two hashed lookups.
        let (mut traceparent, mut given_id) = (None, None);
        for (name, value) in &request.headers {
            if traceparent.is_none() && name == TRACEPARENT {
                traceparent = Some(value);
            } else if given_id.is_none() && name == X_REQUEST_ID {
                given_id = Some(value);
            }
        }
        // A valid traceparent continues the caller's trace; only then is its
        // tracestate read (W3C Trace Context: never without a traceparent).
        let parent =
            traceparent.and_then(|value| trace_context::parse_traceparent(value.as_bytes()));
        let tracestate = parent.and_then(|_| incoming_tracestate(&request.headers));
        Exchange {
            received,
            in_flight: inner.shared.metrics().track_in_flight(),
            verb,
            route,
            request_id: match given_id.filter(|id| request_id::is_acceptable(id.as_bytes())) {
                Some(id) => RequestId::Given(id.clone()),
                None => RequestId::Made(inner.ids.next()),
            },
            trace: SpanContext::new(
                parent,
                &inner.ids,
                inner.spans.as_ref().map(|_| &inner.shared.config().sampler),
            ),
            tracestate,
            version: request.version,
            remote,
            request_headers: None,
        }
    }

    /// The answer of an `Async` handler, finished when its future is.
    fn pending(
        &self,
        mut exchange: Exchange,
        mut request: hyper::http::request::Parts,
        started: Result<Pending, logging::CaughtPanic>,
    ) -> Handling {
        let app = self.clone();
        let path = request.uri.path().to_owned();
        exchange.request_headers =
            allocation::recycle_headers(std::mem::take(&mut request.headers));
        Handling::Pending(Box::pin(async move {
            let answer = match started {
                Ok(pending) => CatchUnwind(pending).await,
                Err(panic) => Err(panic),
            };
            let mut response = match answer {
                Ok(response) => response,
                Err(panic) => app.panicked(&exchange, panic),
            };
            app.finish(exchange, &path, &mut response);
            response
        }))
    }

    /// A handler panicked: count it, log it once with its request, answer 500.
    fn panicked(&self, exchange: &Exchange, panic: logging::CaughtPanic) -> Response<Body> {
        self.metrics().count_panic();
        log::error!(
            target: "pulse::panic",
            request_id = std::str::from_utf8(exchange.request_id.as_bytes()).unwrap_or("-"),
            route = exchange.route.label(),
            location = panic.location.as_str();
            "handler panicked ({}); answered 500",
            panic.message
        );
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// The part every answer shares: common headers, HEAD, metrics, span,
    /// access log. In place: a `Response` is 144 bytes, and each move of one
    /// is a call to musl's `memcpy`.
    fn finish(&self, exchange: Exchange, path: &str, response: &mut Response<Body>) {
        let Exchange {
            received,
            in_flight,
            verb,
            route,
            request_id,
            trace,
            tracestate,
            version,
            remote,
            request_headers,
        } = exchange;
        self.common_headers(response, route, version);
        let traceparent = Traceparent::of(&trace);
        let (traceparent_value, request_id_value) =
            id_values(&traceparent, &request_id, request_headers);
        let headers = response.headers_mut();
        headers.insert(TRACEPARENT, traceparent_value);
        if let Some(tracestate) = &tracestate {
            headers.insert(TRACESTATE, tracestate.clone());
        }
        if verb == Verb::Head {
            response::drop_body(response);
        }

        let status = response.status();
        let finished = Instant::now();
        let elapsed = finished.saturating_duration_since(received);
        self.metrics()
            .observe(verb, route as usize, status, elapsed);
        drop(in_flight);
        if let (true, Some(spans)) = (trace.sampled, &self.inner.spans) {
            spans.push(FinishedSpan {
                context: trace,
                tracestate,
                end: std::time::SystemTime::now(),
                duration: elapsed,
                kind: SpanKind::Request(RequestSpan {
                    verb,
                    route: route.row().map(|row| row.template),
                    path: truncate(path, LOGGED_PATH_MAX).into(),
                    status: status.as_u16(),
                    version,
                }),
            });
        }
        logging::access(&logging::Access {
            at: finished,
            level: if route.is_probe() {
                log::Level::Debug
            } else {
                log::Level::Info
            },
            method: verb.label(),
            path: truncate(path, LOGGED_PATH_MAX),
            status: status.as_u16(),
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            request_id: request_id.logged(),
            trace_id: traceparent.trace_id(),
            span_id: traceparent.span_id(),
            remote: remote.as_ref(),
        });
        response
            .headers_mut()
            .insert(X_REQUEST_ID, request_id_value);
    }

    /// `nosniff`, `Cache-Control`, `Connection: close` while draining, and
    /// HTTP/2's `content-length`.
    fn common_headers(&self, response: &mut Response<Body>, route: Route, version: Version) {
        // Every answer says how it may be cached: a 2xx as its row says, a
        // 304 as the 200 it stands for would (RFC 9111, 4.3.4), anything
        // else not at all (caches may otherwise keep a 404 or 405).
        let status = response.status();
        let cache_control = if status.is_success() || status == StatusCode::NOT_MODIFIED {
            route.cache_control_header()
        } else {
            NO_STORE
        };
        let headers = response.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            const { HeaderValue::from_static("nosniff") },
        );
        headers.insert(header::CACHE_CONTROL, cache_control);
        // Connection-specific headers are illegal in HTTP/2; GOAWAY does the job there.
        if version <= Version::HTTP_11 && self.is_draining() {
            headers.insert(
                header::CONNECTION,
                const { HeaderValue::from_static("close") },
            );
        }
        // Before HEAD drops the body: its answer keeps GET's length.
        if version == Version::HTTP_2 {
            if let Some(length) = hyper::body::Body::size_hint(response.body()).exact() {
                response.headers_mut().insert(
                    header::CONTENT_LENGTH,
                    allocation::http2_content_length(length),
                );
            }
        }
    }
}

impl Service for App {
    #[inline(always)]
    fn answer(&self, request: Request<Incoming>, peer: Peer, received: Instant) -> Handling {
        self.handle_received(request, Some(peer), received)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn start_background(&self) -> Option<Exporter> {
        secrets::rotating::watch(self.inner.secrets.clone(), self.config().secret_poll);
        self.inner.state.start(Arc::clone(self.inner.shared.stop()));
        self.start_span_export()
    }
}

/// Marks a value that is new in every response (an id) as not for HPACK's
/// table. HTTP/2 would otherwise add each one to the connection's 4 KiB
/// header table, where it is never used again: every response compared its
/// ids with the earlier ones of the same name, inserted two entries and
/// evicted the oldest, the headers that repeat (`content-type`, ...) among
/// them. HTTP/1 ignores the mark. (The `http` crate calls it "sensitive";
/// it also hides the value from `Debug` output.)
fn unindexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// The request's `x-request-id`: the caller's, if acceptable, or one pulse
/// made, which stays on the stack until the response needs it.
enum RequestId {
    Given(HeaderValue),
    Made([u8; 32]),
}

impl RequestId {
    fn as_bytes(&self) -> &[u8] {
        self.logged().as_bytes()
    }

    fn logged(&self) -> logging::LoggedId<'_> {
        match self {
            RequestId::Given(id) => logging::LoggedId::Given(id.as_bytes()),
            RequestId::Made(id) => logging::LoggedId::Made(id),
        }
    }
}

/// The `traceparent` and `x-request-id` values of a response, both marked
/// unindexed. Text pulse made is written once, as shared bytes
/// (`allocation::shared_text`) that the header values slice without a
/// copy: a `HeaderValue` made from bytes is an allocation and a copy each.
fn id_values(
    traceparent: &Traceparent,
    request_id: &RequestId,
    request_headers: Option<HeaderMap>,
) -> (HeaderValue, HeaderValue) {
    let value = |text: Bytes| {
        unindexed(
            HeaderValue::from_maybe_shared(text).unwrap_or(const { HeaderValue::from_static("-") }),
        )
    };
    match request_id {
        RequestId::Given(id) => (
            value(allocation::shared_text(traceparent.text(), request_headers)),
            unindexed(id.clone()),
        ),
        RequestId::Made(id) => {
            let mut text = [0u8; 55 + 32];
            text[..55].copy_from_slice(traceparent.text());
            text[55..].copy_from_slice(id);
            let both = allocation::shared_text(&text, request_headers);
            (value(both.slice(..55)), value(both.slice(55..)))
        }
    }
}

/// What `finish` needs to know about a request once its answer is ready.
struct Exchange {
    received: Instant,
    /// Keeps `http_requests_in_flight` up until the answer is recorded.
    in_flight: GaugeGuard,
    verb: Verb,
    route: Route,
    request_id: RequestId,
    /// pulse's span, and the caller's `tracestate` to pass on.
    trace: SpanContext,
    tracestate: Option<HeaderValue>,
    version: Version,
    remote: Option<Peer>,
    /// The request's header map, emptied, if it was too small to reuse for
    /// the response: it is freed with the response
    /// (`allocation::recycle_headers`).
    request_headers: Option<HeaderMap>,
}

/// Polls an `Async` handler's future, catching a panic like a `Ready`
/// handler's, so it becomes a 500 instead of a dropped connection.
struct CatchUnwind(Pending);

impl Future for CatchUnwind {
    type Output = Result<Response<Body>, logging::CaughtPanic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.get_mut().0;
        match logging::catch_handler_panic(|| future.as_mut().poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(response)) => Poll::Ready(Ok(response)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The caller's `tracestate`, several headers joined as the spec says, if
/// it is within the spec's limits; None drops it.
fn incoming_tracestate(headers: &hyper::HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(&TRACESTATE).iter();
    let first = values.next()?;
    let mut joined = first.clone();
    for value in values {
        let mut bytes = joined.as_bytes().to_vec();
        bytes.push(b',');
        bytes.extend_from_slice(value.as_bytes());
        if bytes.len() > trace_context::MAX_TRACESTATE_BYTES {
            return None;
        }
        joined = HeaderValue::from_bytes(&bytes).ok()?;
    }
    trace_context::is_valid_tracestate(joined.as_bytes()).then_some(joined)
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn call(app: &App, method: &str, path: &str) -> (Response<()>, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let (parts, body) = app.handle(request, None).await.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_app_answers_in_process_without_a_network() {
        let app = App::new(Config::default());
        let (response, body) = call(&app, "GET", "/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(body, "Hello, DevOps!");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-request-id"].len(), 32);
    }

    /// HTTP/2 keeps the per-response ids out of its header table, and only
    /// them: the headers every response repeats stay indexable.
    #[tokio::test]
    async fn only_the_per_response_ids_are_kept_out_of_the_hpack_table() {
        let app = App::new(Config::default());
        let (response, _) = call(&app, "GET", "/").await;
        for (name, value) in response.headers() {
            let unique = name == "x-request-id" || name == "traceparent";
            assert_eq!(value.is_sensitive(), unique, "{name}");
        }
        assert!(response.headers().contains_key("traceparent"));
    }

    /// SECURITY: a response reuses a request's header map; none of the
    /// request's headers may come back in it.
    #[tokio::test]
    async fn no_request_header_leaks_into_a_response() {
        let app = App::new(Config::default());
        for path in ["/", "/health", "/metrics", "/nowhere"] {
            let request = Request::builder()
                .uri(path)
                .header("authorization", "Bearer secret")
                .header("cookie", "session=secret")
                .header("x-custom", "secret")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let response = app.handle(request, None).await;
            let names: Vec<&str> = response.headers().keys().map(|n| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "content-type",
                    "x-content-type-options",
                    "cache-control",
                    "traceparent",
                    "x-request-id"
                ],
                "{path}"
            );
            assert!(response.headers().values().all(|v| v != "secret"), "{path}");
        }
    }

    #[tokio::test]
    async fn span_export_starts_only_when_configured() {
        let config = Config::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_owned())
        })
        .unwrap();
        assert!(config.span_export.is_some());
        assert!(App::new(Config::default()).start_span_export().is_none());
        assert!(App::new(config).start_span_export().is_some());
    }

    #[tokio::test]
    async fn draining_flips_readiness() {
        let app = App::new(Config::default());
        assert_eq!(call(&app, "GET", "/readyz").await.0.status(), 200);
        app.start_draining();
        let (response, body) = call(&app, "GET", "/readyz").await;
        assert_eq!(response.status(), 503);
        assert_eq!(body, r#"{"status":"draining"}"#);
        assert_eq!(response.headers()["connection"], "close");
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_a_counted_500() {
        let app = App::new(Config {
            fault_injection: true,
            ..Config::default()
        });
        let (response, body) = call(&app, "GET", "/panic").await;
        assert_eq!(response.status(), 500);
        assert_eq!(body, r#"{"error":"Internal server error"}"#);
        let metrics = String::from_utf8(app.metrics().render().to_vec()).unwrap();
        assert!(
            metrics.contains("pulse_handler_panics_total 1"),
            "{metrics}"
        );
        assert_eq!(call(&app, "GET", "/").await.0.status(), 200);
    }

    #[tokio::test]
    async fn a_panic_inside_an_async_handler_is_caught() {
        let caught = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("async fault")
        }))
        .await;
        let panic = caught.expect_err("the panic is caught, not propagated");
        assert_eq!(panic.message, "async fault");
        let fine = CatchUnwind(Box::pin(async { response::text(StatusCode::OK, "ok") })).await;
        assert_eq!(
            fine.ok().map(|response| response.status()),
            Some(StatusCode::OK)
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
