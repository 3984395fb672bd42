//! The app factory: [`App::new`] builds the whole HTTP service from a
//! [`Config`], and [`App::handle`] answers one request. No socket is involved,
//! so tests can drive it in-process; `server.rs` puts it on the network.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};

use crate::alert_log;
use crate::build_info::BUILD;
use crate::config::Config;
use crate::logging::{self, Peer};
use crate::metrics::{GaugeGuard, Metrics};
use crate::request_id::{self, IdGenerator};
use crate::routes::{self, Dispatch, Handler, Route, Verb};
use crate::span_export::{Exporter, FinishedSpan, SpanQueue};
use crate::trace_context::{self, SpanContext, TRACEPARENT, TRACESTATE, Traceparent};

/// The response body type: every pulse answer is small and complete.
pub type Body = Full<Bytes>;

/// The request body an `Async` handler owns: whatever the connection (or an
/// in-process test) passed in, boxed once, only for the routes that read it.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The answer an `Async` handler is working on.
pub type Pending = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest path the access log copies.
const LOGGED_PATH_MAX: usize = 256;

/// The service: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct App {
    state: Arc<State>,
}

struct State {
    config: Config,
    metrics: Metrics,
    draining: AtomicBool,
    started: Instant,
    ids: IdGenerator,
    /// Where sampled spans go; None while span export is off.
    spans: Option<SpanQueue>,
    /// `pulse alert-log`: every request goes to [`alert_log::handle`].
    alert_log: bool,
}

impl App {
    pub fn new(config: Config) -> App {
        App::build(config, false)
    }

    /// The alert log (`pulse alert-log`): the same server and settings, with
    /// every request answered by `alert_log::handle` instead of the route
    /// table.
    pub fn alert_log(config: Config) -> App {
        App::build(config, true)
    }

    fn build(config: Config, alert_log: bool) -> App {
        let metrics = Metrics::new(&BUILD);
        // The alert log makes no spans: with OTEL_ set (a shared `.env`) it
        // would otherwise start an exporter and say it exports.
        let spans = config
            .span_export
            .clone()
            .filter(|_| !alert_log)
            .map(|settings| SpanQueue::new(settings, metrics.spans().clone()));
        App {
            state: Arc::new(State {
                config,
                metrics,
                spans,
                draining: AtomicBool::new(false),
                started: Instant::now(),
                ids: IdGenerator::default(),
                alert_log,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Starts sending spans to the collector, if span export is on. Until
    /// then (an App driven in-process) spans wait in the bounded queue.
    pub fn start_span_export(&self) -> Option<Exporter> {
        self.state.spans.as_ref()?.start_exporter()
    }

    /// From now on `/readyz` answers 503, and HTTP/1 responses ask clients
    /// to reconnect (`Connection: close`), so that keep-alive clients move to
    /// another instance while this one drains.
    pub fn start_draining(&self) {
        self.state.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::Acquire)
    }

    /// Whether this is the alert log (`pulse alert-log`) rather than pulse.
    pub fn is_alert_log(&self) -> bool {
        self.state.alert_log
    }

    /// How long this App has been serving.
    pub fn uptime(&self) -> Duration {
        self.state.started.elapsed()
    }

    /// Answers one request.
    ///
    /// A `Ready` route is answered synchronously, and the returned
    /// [`Handling`] is then a ready value: hyper moves the service future
    /// around, and a small one is measurably cheaper than a large async
    /// state machine. Only an `Async` route boxes its body and its future.
    pub fn handle<B>(&self, request: Request<B>, remote: Option<Peer>) -> Handling
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_received(request, remote, Instant::now())
    }

    /// [`App::handle`], for a request that arrived at `received`: the server
    /// reads the clock once for the request and for its connection.
    pub(crate) fn handle_received<B>(
        &self,
        request: Request<B>,
        remote: Option<Peer>,
        received: Instant,
    ) -> Handling
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let state = &*self.state;
        if state.alert_log {
            return alert_log::handle(request);
        }
        let (mut request, body) = request.into_parts();
        let verb = Verb::from_method(&request.method);
        let path = request.uri.path();
        let target_length = request.uri.path_and_query().map_or(0, |p| p.as_str().len());
        let (route, dispatch) = if target_length > routes::MAX_URI_BYTES {
            (Route::Unmatched, Dispatch::UriTooLong)
        } else {
            routes::dispatch(verb, path, state.config.fault_injection)
        };
        // Both ids in one pass over the headers: a request carries a few,
        // and comparing names (most differ in kind or length) costs less
        // than two hashed lookups, each hashing a custom name byte by byte.
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
        let mut exchange = Exchange {
            received,
            in_flight: state.metrics.track_in_flight(),
            verb,
            route,
            request_id: match given_id.filter(|id| request_id::is_acceptable(id.as_bytes())) {
                Some(id) => RequestId::Given(id.clone()),
                None => RequestId::Made(state.ids.next()),
            },
            trace: SpanContext::new(
                parent,
                &state.ids,
                state.spans.as_ref().map(|_| &state.config.sampler),
            ),
            tracestate,
            version: request.version,
            remote,
            request_headers: None,
        };
        if !matches!(
            dispatch,
            Dispatch::Serve {
                handler: Handler::Async(_),
                ..
            }
        ) {
            // Only an `Async` handler reads the request's headers.
            exchange.request_headers = recycle_headers(std::mem::take(&mut request.headers));
        }

        let mut response = match dispatch {
            Dispatch::Serve {
                handler: Handler::Ready(handler),
                parameter,
            } => match logging::catch_handler_panic(|| handler(self, parameter)) {
                Ok(response) => response,
                Err(panic) => self.panicked(&exchange, panic),
            },
            Dispatch::Serve {
                handler: Handler::Async(handler),
                ..
            } => {
                let app = self.clone();
                let path = path.to_owned();
                let request = Request::from_parts(request, body.map_err(Into::into).boxed_unsync());
                return Handling::Pending(Box::pin(async move {
                    // A panic while the handler builds its future, or while
                    // it runs, is caught alike.
                    let answer =
                        match logging::catch_handler_panic(|| handler(app.clone(), request)) {
                            Ok(pending) => CatchUnwind(pending).await,
                            Err(panic) => Err(panic),
                        };
                    let mut response = match answer {
                        Ok(response) => response,
                        Err(panic) => app.panicked(&exchange, panic),
                    };
                    app.finish(exchange, &path, &mut response);
                    response
                }));
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
        self.finish(exchange, path, &mut response);
        // The empty map `take` left in the request's place.
        forget_unallocated(request.headers);
        Handling::Ready(Some(response))
    }

    /// A handler panicked: count it, log it once with its request, answer 500.
    fn panicked(&self, exchange: &Exchange, panic: logging::CaughtPanic) -> Response<Body> {
        self.state.metrics.count_panic();
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

    /// The part every answer shares: common headers, HEAD, metrics, access log.
    /// In place: a `Response` is 144 bytes, and each move of one is a call
    /// to musl's `memcpy`.
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
        // Every answer says how it may be cached: a 2xx as its row says,
        // anything else not at all (caches may otherwise keep a 404 or 405).
        // Fixed values are built when compiling (`const`): a header value
        // made at run time is checked byte by byte, and cloning one kept in a
        // static calls through `Bytes`' vtable.
        let cache_control = if response.status().is_success() {
            route.cache_control_header()
        } else {
            routes::NO_STORE
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
        let traceparent = Traceparent::of(&trace);
        let (traceparent_value, request_id_value) =
            id_values(&traceparent, &request_id, request_headers);
        headers.insert(TRACEPARENT, traceparent_value);
        if let Some(tracestate) = &tracestate {
            headers.insert(TRACESTATE, tracestate.clone());
        }
        // Before HEAD drops the body: its answer keeps GET's length.
        if version == Version::HTTP_2 {
            if let Some(length) = hyper::body::Body::size_hint(response.body()).exact() {
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, http2_content_length(length));
            }
        }

        if verb == Verb::Head {
            drop_body(response);
        }

        let status = response.status();
        let finished = Instant::now();
        let elapsed = finished.saturating_duration_since(received);
        self.state.metrics.observe(verb, route, status, elapsed);
        drop(in_flight);
        if let (true, Some(spans)) = (trace.sampled, &self.state.spans) {
            spans.push(FinishedSpan {
                context: trace,
                tracestate,
                end: std::time::SystemTime::now(),
                duration: elapsed,
                verb,
                route,
                path: truncate(path, LOGGED_PATH_MAX).into(),
                status: status.as_u16(),
                version,
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
/// ([`shared_text`]) that the header values slice without a copy: a
/// `HeaderValue` made from bytes is an allocation and a copy each.
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
            value(shared_text(traceparent.text(), request_headers)),
            unindexed(id.clone()),
        ),
        RequestId::Made(id) => {
            let mut text = [0u8; 55 + 32];
            text[..55].copy_from_slice(traceparent.text());
            text[55..].copy_from_slice(id);
            let both = shared_text(&text, request_headers);
            (value(both.slice(..55)), value(both.slice(55..)))
        }
    }
}

/// `text` as shared bytes: in one allocation with the request's header map,
/// if [`recycle_headers`] handed it back, so that the map is freed with the
/// response's headers; else carved from this thread's block of id text.
fn shared_text<const N: usize>(text: &[u8; N], request_headers: Option<HeaderMap>) -> Bytes {
    match request_headers {
        None => carve_id_text(text),
        Some(headers) => Bytes::from_owner(IdText {
            text: *text,
            _request_headers: headers,
        }),
    }
}

thread_local! {
    /// What is left of this thread's current block of id text.
    static ID_TEXT_BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// SECURITY: a block is freed once every response that took text from it
/// is gone, so a client that stops reading holds up at most one block per
/// response it leaves unread: 1 KiB, less than that response's header map.
const ID_TEXT_BLOCK_BYTES: usize = 1024;

/// `text`, copied into this thread's block of id text, as shared bytes.
/// Two allocations per block of responses (11 with both ids) instead of one
/// per response. Each response's own allocation was the only live block of
/// its size, so musl's malloc emptied, freed and made again its group on
/// most requests (callgrind: 12,484 -> 11,803 instructions per HTTP/1.1
/// request; the two builds served together, 0.99x to 1.00x the CPU).
///
/// Generic over the length so that the copy has a length known when
/// compiling: a few moves, not a call to `memcpy`.
fn carve_id_text<const N: usize>(text: &[u8; N]) -> Bytes {
    ID_TEXT_BLOCK.with_borrow_mut(|block| {
        if block.capacity() < N {
            *block = BytesMut::with_capacity(ID_TEXT_BLOCK_BYTES);
        }
        block.extend_from_slice(text);
        block.split().freeze()
    })
}

/// Id text, and the request's header map it keeps until the response's
/// headers are dropped.
struct IdText<const N: usize> {
    text: [u8; N],
    /// Never read; see [`recycle_headers`].
    _request_headers: HeaderMap,
}

impl<const N: usize> AsRef<[u8]> for IdText<N> {
    fn as_ref(&self) -> &[u8] {
        &self.text
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
    /// the response: it is freed with the response (see [`recycle_headers`]).
    request_headers: Option<HeaderMap>,
}

/// The answer to one request: ready at once, or from an `Async` handler.
pub enum Handling {
    Ready(Option<Response<Body>>),
    Pending(Pending),
}

impl Future for Handling {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        match self.get_mut() {
            Handling::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(response),
                None => Poll::Ready(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                )),
            },
            Handling::Pending(future) => future.as_mut().poll(cx),
        }
    }
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

thread_local! {
    /// An emptied request header map, for the next response on this thread.
    static SPARE_HEADERS: Cell<Option<HeaderMap>> = const { Cell::new(None) };
}

/// Empties a request's header map and keeps it for the next response on
/// this thread to reuse, if it is large enough; a smaller one is handed
/// back, to be freed with this request's response.
///
/// Reused: on HTTP/1 hyper hands each response's map back as the
/// connection's next request's, so a keep-alive connection allocates no
/// header map at all; without this, every request freed one map and
/// allocated another (four calls into the allocator, measured with
/// callgrind).
///
/// Too small (over HTTP/2, h2 decodes each request into a new map just
/// large enough for its headers): it would have to grow while pulse and
/// hyper fill it, so a response starts a new one at the right size. But the
/// small map is not freed here. musl's malloc gives a run of equal-sized
/// blocks back to the kernel as soon as all of them are free. Freed here,
/// the request maps of one burst of streams were all gone before h2 decoded
/// the next burst, so their run was unmapped and mapped again every few
/// requests (an `mmap`, a `munmap` and page faults: gdb showed three
/// quarters of pulse's `mmap` calls under h2load there). Freed with the
/// response, as in a bare hyper server, where the response's map takes the
/// request's place, the run stays in use. Measured with h2load, both
/// builds served together: 0.79x to 0.89x the CPU per h2c request, and
/// `mmap` calls from 0.30 to 0.09 per request (HTTP/1.1 unchanged, 1.00x).
/// It is emptied first: what waits with the response is its memory (about
/// 700 bytes), none of the request's headers.
fn recycle_headers(mut headers: HeaderMap) -> Option<HeaderMap> {
    headers.clear();
    if headers.capacity() >= RESPONSE_HEADERS {
        SPARE_HEADERS.set(Some(headers));
        None
    } else {
        Some(headers)
    }
}

// Constants, not statics: a `HeaderValue` const is built when compiling, where
// one made at run time is checked byte by byte and cloning one kept in a
// static calls through `Bytes`' vtable.
pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The `content-length` of an HTTP/2 answer of `length` bytes. Left to
/// hyper, each answer's is a new `HeaderValue`: two allocations and two
/// frees per response, in size classes that musl's malloc maps and unmaps
/// as streams come and go. (Over HTTP/1 hyper writes the length straight
/// into the response head, which costs less than a header in the map.)
/// This thread keeps the last value it made: a route's answers are mostly
/// of one length, and a clone only counts a reference. callgrind: 30,827
/// -> 30,148 user-space instructions per h2c request; with h2load, both
/// builds served together, 0.96x to 1.00x the CPU per h2c request.
fn http2_content_length(length: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((0, HeaderValue::from_static("0"))) };
    }
    LAST.with_borrow_mut(|(last_length, value)| {
        if *last_length != length {
            *last_length = length;
            *value = HeaderValue::from(length);
        }
        value.clone()
    })
}

/// Room for the headers of a response over HTTP/2: pulse's five, the
/// `content-length` it sets there (`http2_content_length`) and hyper's
/// `date`.
const RESPONSE_HEADERS: usize = 8;

/// Disposes of a map made by `HeaderMap::new`, which never allocates: its
/// drop glue, about 60 instructions of checks that find nothing to free,
/// is skipped.
fn forget_unallocated(map: HeaderMap) {
    debug_assert_eq!(map.capacity(), 0);
    std::mem::forget(map);
}

/// A new, empty header map with room for a response's headers.
pub(crate) fn response_header_map() -> HeaderMap {
    HeaderMap::with_capacity(RESPONSE_HEADERS)
}

/// A response with a status, a `Content-Type` and a body: what every
/// handler answers with.
///
/// Pass the content type as a constant ([`TEXT_PLAIN`], [`APPLICATION_JSON`],
/// or `const { HeaderValue::from_static("...") }`): built when compiling, it
/// costs nothing per request.
pub fn reply(status: StatusCode, content_type: HeaderValue, body: Body) -> Response<Body> {
    // Assembled from its parts: a whole `Response` (144 bytes) built in a
    // local and returned is copied with a call to musl's `memcpy`, where the
    // parts (112) are moved with a few instructions.
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = status;
    let spare = SPARE_HEADERS.take().unwrap_or_else(response_header_map);
    forget_unallocated(std::mem::replace(&mut head.headers, spare));
    head.headers.insert(header::CONTENT_TYPE, content_type);
    Response::from_parts(head, body)
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    reply(status, TEXT_PLAIN, Body::from(body))
}

pub fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    reply(status, APPLICATION_JSON, Body::from(body.to_string()))
}

/// `{"error": message}` with the given status.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

/// A HEAD answer: GET's status and headers, including its `Content-Length`,
/// and no body. HTTP/2 treats body bytes on a HEAD response as a protocol
/// error, so they are dropped here rather than left to the connection.
pub(crate) fn without_body(mut response: Response<Body>) -> Response<Body> {
    drop_body(&mut response);
    response
}

/// [`without_body`], in place.
fn drop_body(response: &mut Response<Body>) {
    if let Some(length) = hyper::body::Body::size_hint(response.body()).exact() {
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    *response.body_mut() = Body::default();
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
    async fn only_pulse_starts_a_span_exporter() {
        let config = Config::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_owned())
        })
        .unwrap();
        assert!(config.span_export.is_some());
        assert!(App::alert_log(config.clone()).start_span_export().is_none());
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
        let fine = CatchUnwind(Box::pin(async { text(StatusCode::OK, "ok") })).await;
        assert_eq!(
            fine.ok().map(|response| response.status()),
            Some(StatusCode::OK)
        );
    }

    /// A request's header map comes back empty: reused for the next
    /// response if it has room for one, else handed back to be kept with
    /// this response (see `recycle_headers`).
    #[test]
    fn request_header_maps_are_emptied_then_reused_or_kept() {
        let with_headers = |capacity: usize| {
            let mut headers = HeaderMap::with_capacity(capacity);
            headers.insert(header::COOKIE, HeaderValue::from_static("session=secret"));
            headers
        };
        let kept = recycle_headers(with_headers(2)).expect("too small to reuse: handed back");
        assert!(kept.is_empty());
        assert!(recycle_headers(with_headers(RESPONSE_HEADERS)).is_none());
        let spare = SPARE_HEADERS.take().expect("kept for the next response");
        assert!(spare.is_empty() && spare.capacity() >= RESPONSE_HEADERS);
    }

    /// Id text comes from a shared block: consecutive responses' ids sit
    /// side by side in it, and a full block gives way to a new one.
    #[test]
    fn id_text_is_carved_from_shared_blocks() {
        let ids: Vec<[u8; 87]> = (0..30u8).map(|i| [b'a' + i % 26; 87]).collect();
        let carved: Vec<Bytes> = ids.iter().map(carve_id_text).collect();
        let mut new_blocks = 0;
        for (i, (text, id)) in carved.iter().zip(&ids).enumerate() {
            assert_eq!(text.as_ref(), id.as_slice(), "id {i}");
            if i > 0 && carved[i - 1].as_ptr().wrapping_add(87) != text.as_ptr() {
                new_blocks += 1;
            }
        }
        let per_block = ID_TEXT_BLOCK_BYTES / 87;
        assert!(
            new_blocks <= 30 / per_block + 1,
            "{new_blocks} blocks for 30 ids"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
