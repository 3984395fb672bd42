//! OTLP span export: each sampled request becomes a span, queued without
//! waiting and sent in batches to an OpenTelemetry collector as OTLP/HTTP
//! JSON (`POST /v1/traces`) by one background task.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is
//! set. A request never waits for the exporter: a full queue drops the span
//! and counts it in `pulse_spans_dropped_total`, and a collector that is down
//! is retried with backoff off the request path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Version};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::build_info::BUILD;
use crate::hex::{self, write_hex};
use crate::lock;
use crate::metrics::{SpanCounters, SpanDrop};
use crate::request_id::IdGenerator;
use crate::secrets::rotating::RotatingSecret;
use crate::secrets::{self, SecretSetting};
use crate::trace_context::SpanContext;
use crate::verb::Verb;

/// Where spans go and how they are batched: the `OTEL_*` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    pub endpoint: OtlpEndpoint,
    /// `service.name`, from `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded, in order.
    pub resource_attributes: Vec<(String, String)>,
    /// One export request may take this long (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Duration,
    /// The longest a span waits for its batch (`OTEL_BSP_SCHEDULE_DELAY`).
    pub schedule_delay: Duration,
    /// Spans waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`).
    pub max_queue_size: usize,
    /// Spans per export request at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
    pub max_batch_size: usize,
    /// Headers sent with every export request, such as a collector's API
    /// key (`OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `..._HEADERS`): a
    /// secret setting.
    pub headers: Option<SecretSetting>,
}

/// An `http://host:port/path` URL to POST spans to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    /// The host to connect to, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl OtlpEndpoint {
    /// Reads an `http://` URL. `signal_path` is appended to the URL's path:
    /// `/v1/traces` for `OTEL_EXPORTER_OTLP_ENDPOINT`, nothing for the
    /// traces-only variable, which OpenTelemetry uses as it is.
    pub fn parse(url: &str, signal_path: &str) -> Option<OtlpEndpoint> {
        let uri: hyper::Uri = url.trim().parse().ok()?;
        if uri.scheme_str() != Some("http") || uri.query().is_some() {
            return None;
        }
        let authority = uri.authority()?;
        let host = authority.host();
        if host.is_empty() || authority.as_str().contains('@') {
            return None;
        }
        let base = uri.path().trim_end_matches('/');
        let path = match (base, signal_path) {
            ("", "") => "/".to_owned(),
            (base, signal_path) => format!("{base}{signal_path}"),
        };
        Some(OtlpEndpoint {
            authority: authority.as_str().to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            path,
        })
    }
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// Reads `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas,
/// values percent-encoded (W3C Baggage syntax). None if malformed.
pub fn parse_resource_attributes(text: &str) -> Option<Vec<(String, String)>> {
    let mut attributes = Vec::new();
    for member in text.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (key, value) = member.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            return None;
        }
        attributes.push((
            key.to_owned(),
            String::from_utf8(hex::percent_decode(value.trim())?).ok()?,
        ));
    }
    Some(attributes)
}

/// One finished span, as the exporter needs it.
pub struct FinishedSpan {
    pub context: SpanContext,
    pub tracestate: Option<HeaderValue>,
    pub end: SystemTime,
    pub duration: Duration,
    pub kind: SpanKind,
}

/// What a span stands for.
pub enum SpanKind {
    /// A request pulse served: a server span.
    Request(RequestSpan),
    /// A database query a request made: a client span, the request's child.
    /// Never its SQL or parameters: the operation is a fixed word.
    Database {
        operation: &'static str,
        failed: bool,
    },
}

/// A server span's HTTP attributes.
pub struct RequestSpan {
    pub verb: Verb,
    /// The matched route's template; None when no route matched. Written
    /// into the JSON as it is: a template needs no escaping (routes tests).
    pub route: Option<&'static str>,
    pub path: Box<str>,
    pub status: u16,
    pub version: Version,
}

/// Records the child spans of one sampled request (its database queries)
/// into the same queue. Cheap to clone, and it can outlive the request.
#[derive(Clone)]
pub struct ChildSpans {
    sender: mpsc::Sender<FinishedSpan>,
    counters: SpanCounters,
    ids: Arc<IdGenerator>,
    parent: SpanContext,
}

impl ChildSpans {
    /// A query that took `duration` and ended now.
    pub fn database(&self, operation: &'static str, duration: Duration, failed: bool) {
        let span = FinishedSpan {
            context: self.parent.child(&self.ids),
            tracestate: None,
            end: SystemTime::now(),
            duration,
            kind: SpanKind::Database { operation, failed },
        };
        if self.sender.try_send(span).is_err() {
            self.counters.dropped(SpanDrop::QueueFull).inc();
        }
    }
}

/// The request side of export: a bounded queue that never blocks.
pub struct SpanQueue {
    sender: mpsc::Sender<FinishedSpan>,
    /// Taken by [`SpanQueue::start_exporter`]; spans queue up until then.
    receiver: Mutex<Option<mpsc::Receiver<FinishedSpan>>>,
    settings: ExportSettings,
    counters: SpanCounters,
    /// The export headers in force, re-read when their file changes.
    headers: Option<Arc<RotatingSecret>>,
    /// Span ids for the child spans of requests ([`ChildSpans`]).
    child_ids: Arc<IdGenerator>,
}

impl SpanQueue {
    /// `headers` holds `settings.headers` as it is now and after rotations.
    pub fn new(
        settings: ExportSettings,
        counters: SpanCounters,
        headers: Option<Arc<RotatingSecret>>,
    ) -> SpanQueue {
        let (sender, receiver) = mpsc::channel(settings.max_queue_size);
        SpanQueue {
            sender,
            receiver: Mutex::new(Some(receiver)),
            settings,
            counters,
            headers,
            child_ids: Arc::default(),
        }
    }

    /// Queues a span for export, or drops and counts it if the queue is full.
    pub fn push(&self, span: FinishedSpan) {
        if self.sender.try_send(span).is_err() {
            self.counters.dropped(SpanDrop::QueueFull).inc();
        }
    }

    /// Where the child spans of the request `parent` go, if it is sampled.
    pub fn children_of(&self, parent: &SpanContext) -> Option<ChildSpans> {
        parent.sampled.then(|| ChildSpans {
            sender: self.sender.clone(),
            counters: self.counters.clone(),
            ids: Arc::clone(&self.child_ids),
            parent: *parent,
        })
    }

    /// Starts the background exporter. Call once, inside the runtime; a
    /// second call returns None.
    pub fn start_exporter(&self) -> Option<Exporter> {
        let receiver = lock(&self.receiver).take()?;
        let (stop, stopping) = watch::channel(None);
        let task = tokio::spawn(export_loop(
            receiver,
            stopping,
            self.settings.clone(),
            self.counters.clone(),
            self.headers.clone(),
        ));
        let settings = &self.settings;
        let resource_attributes: Vec<String> = settings
            .resource_attributes
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        log::info!(
            endpoint:% = settings.endpoint,
            service_name = settings.service_name.as_str(),
            resource_attributes = resource_attributes.join(",").as_str(),
            timeout_ms = settings.timeout.as_millis() as u64,
            schedule_delay_ms = settings.schedule_delay.as_millis() as u64,
            max_queue_size = settings.max_queue_size,
            max_batch_size = settings.max_batch_size;
            "exporting spans as OTLP/HTTP JSON to {}",
            settings.endpoint
        );
        Some(Exporter { stop, task })
    }
}

/// The running exporter task.
pub struct Exporter {
    stop: watch::Sender<Option<Instant>>,
    task: JoinHandle<()>,
}

impl Exporter {
    /// Exports what is queued, giving up at `deadline`; what is left then
    /// is dropped and counted.
    pub async fn shutdown(self, deadline: Instant) {
        let _ = self.stop.send(Some(deadline));
        // The task honours the deadline itself; this bounds a stuck connect.
        let grace = tokio::time::Instant::from_std(deadline) + Duration::from_millis(100);
        if tokio::time::timeout_at(grace, self.task).await.is_err() {
            log::warn!("span export: shutdown deadline reached; queued spans were dropped");
        }
    }
}

/// Retries of one batch before it is dropped; the backoff between attempts
/// doubles from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`].
const MAX_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// SECURITY: the most of a collector's answer pulse reads; it only needs the
/// status, and a broken collector must not make it buffer without bound.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The exporter task: batches of spans out to the collector until `stop`
/// says so, then what is left within the deadline it carries.
async fn export_loop(
    queue: mpsc::Receiver<FinishedSpan>,
    stop: watch::Receiver<Option<Instant>>,
    settings: ExportSettings,
    counters: SpanCounters,
    headers: Option<Arc<RotatingSecret>>,
) {
    let mut export = Export {
        resource: resource_json(&settings),
        client: Client::new(settings.endpoint.clone(), settings.timeout, headers),
        queue,
        stop,
        counters,
        buffer: Vec::new(),
        backoff: FIRST_BACKOFF,
        failing_since: None,
        settings,
    };
    let mut batch = Vec::with_capacity(export.settings.max_batch_size);
    loop {
        if export.fill(&mut batch).await == Filled::Stopped {
            export.shutdown(batch).await;
            return;
        }
        if export.send(&mut batch).await == Sent::Stopped {
            export.shutdown(Vec::new()).await;
            return;
        }
    }
}

/// The exporter task's state between batches.
struct Export {
    queue: mpsc::Receiver<FinishedSpan>,
    stop: watch::Receiver<Option<Instant>>,
    settings: ExportSettings,
    counters: SpanCounters,
    resource: Vec<u8>,
    client: Client,
    /// The last request body's buffer, written over by the next batch
    /// (`allocation::share_for_reuse`).
    buffer: Vec<u8>,
    backoff: Duration,
    failing_since: Option<Instant>,
}

#[derive(PartialEq, Eq)]
enum Filled {
    Ready,
    Stopped,
}

#[derive(PartialEq, Eq)]
enum Sent {
    /// Exported, or given up on and counted as dropped.
    Done,
    /// Shutdown began while backing off; the batch is counted as dropped.
    Stopped,
}

impl Export {
    /// Fills `batch` until it is full or its first span has waited long
    /// enough. `recv_many` takes every queued span at once, and the timer
    /// is set once per batch, not once per span.
    async fn fill(&mut self, batch: &mut Vec<FinishedSpan>) -> Filled {
        let mut flush_at = std::pin::pin!(tokio::time::sleep(Duration::MAX / 4));
        loop {
            let room = self.settings.max_batch_size - batch.len();
            tokio::select! {
                biased;
                _ = self.stop.changed() => return Filled::Stopped,
                received = self.queue.recv_many(batch, room) => {
                    if received == 0 {
                        return Filled::Stopped; // every sender is gone: the App was dropped
                    }
                    if batch.len() == received {
                        flush_at.as_mut().reset(tokio::time::Instant::now() + self.settings.schedule_delay);
                    }
                    if batch.len() >= self.settings.max_batch_size {
                        return Filled::Ready;
                    }
                }
                () = &mut flush_at, if !batch.is_empty() => return Filled::Ready,
            }
        }
    }

    /// Sends one batch, retrying with backoff, and empties it.
    async fn send(&mut self, batch: &mut Vec<FinishedSpan>) -> Sent {
        let buffer = std::mem::take(&mut self.buffer);
        let (body, encoded) = share(encode(batch, &self.resource, buffer));
        let count = batch.len() as u64;
        batch.clear();
        let mut outcome = Sent::Done;
        for attempt in 1..=MAX_ATTEMPTS {
            let error = match self.client.post(body.clone()).await {
                Ok(()) => {
                    self.exported(count);
                    break;
                }
                Err(error) => error,
            };
            let last = attempt == MAX_ATTEMPTS || !error.is_retryable();
            self.failed(&error, count, last);
            // Back off before the next attempt, or before the next batch
            // after a failed one; the queue absorbs (or drops) what
            // arrives meanwhile.
            tokio::select! {
                _ = self.stop.changed() => {
                    if !last {
                        self.counters.dropped(SpanDrop::Shutdown).inc_by(count);
                    }
                    outcome = Sent::Stopped;
                    break;
                }
                () = tokio::time::sleep(self.backoff) => {}
            }
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            if last {
                break;
            }
        }
        self.buffer = reclaim(body, encoded);
        outcome
    }

    fn exported(&mut self, count: u64) {
        self.counters.exported.inc_by(count);
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "span export to {} works again after {}s",
                self.settings.endpoint,
                since.elapsed().as_secs()
            );
        }
        self.backoff = FIRST_BACKOFF;
    }

    fn failed(&mut self, error: &ExportError, count: u64, last: bool) {
        self.counters.failures.inc();
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            log::warn!(
                "span export to {} failed: {error}; retrying with backoff, spans are dropped and counted while it fails",
                self.settings.endpoint
            );
        }
        if last {
            self.counters.dropped(SpanDrop::ExportFailed).inc_by(count);
        }
    }

    /// Sends what is left within the deadline shutdown gave.
    async fn shutdown(mut self, batch: Vec<FinishedSpan>) {
        let deadline = (*self.stop.borrow()).unwrap_or_else(Instant::now);
        flush_at_shutdown(
            &mut self.queue,
            batch,
            &mut self.client,
            &self.resource,
            &self.settings,
            &self.counters,
            deadline,
        )
        .await;
    }
}

/// Sends the batch in hand and everything queued, one attempt per batch,
/// until `deadline`; counts what could not be sent.
async fn flush_at_shutdown(
    queue: &mut mpsc::Receiver<FinishedSpan>,
    mut batch: Vec<FinishedSpan>,
    client: &mut Client,
    resource: &[u8],
    settings: &ExportSettings,
    counters: &SpanCounters,
    deadline: Instant,
) {
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut lost = 0u64;
    loop {
        while batch.len() < settings.max_batch_size {
            match queue.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let count = batch.len() as u64;
        let body = Bytes::from(encode(&batch, resource, Vec::new()));
        batch.clear();
        let sent = lost == 0
            && matches!(
                tokio::time::timeout_at(deadline, client.post(body)).await,
                Ok(Ok(()))
            );
        if sent {
            counters.exported.inc_by(count);
        } else {
            counters.dropped(SpanDrop::Shutdown).inc_by(count);
            lost += count;
        }
    }
    if lost > 0 {
        log::warn!(
            dropped = lost;
            "span export: {lost} span(s) could not be sent to {} before the shutdown deadline",
            settings.endpoint
        );
    }
}

/// Why an export request failed.
#[derive(Debug)]
enum ExportError {
    /// The request could not be built (the endpoint is checked at startup,
    /// so this is not expected).
    Request(hyper::http::Error),
    Connect(std::io::Error),
    Http(hyper::Error),
    Status(u16),
    Timeout(Duration),
}

impl ExportError {
    /// OTLP/HTTP: retry on transport errors and on 429, 502, 503 and 504;
    /// any other answer means the batch itself was refused.
    fn is_retryable(&self) -> bool {
        match self {
            ExportError::Status(status) => matches!(status, 429 | 502 | 503 | 504),
            ExportError::Request(_) => false,
            _ => true,
        }
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Request(e) => write!(f, "cannot build the export request: {e}"),
            ExportError::Connect(e) => write!(f, "cannot connect: {e}"),
            ExportError::Http(e) => write!(f, "HTTP error: {e}"),
            ExportError::Status(status) => write!(f, "the collector answered {status}"),
            ExportError::Timeout(timeout) => {
                write!(f, "no answer within {} ms", timeout.as_millis())
            }
        }
    }
}

/// One keep-alive HTTP/1.1 connection to the collector, opened when needed.
struct Client {
    endpoint: OtlpEndpoint,
    timeout: Duration,
    /// Sent with every request: a collector's API key, for one.
    headers: Option<Arc<RotatingSecret>>,
    connection: Option<http1::SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(
        endpoint: OtlpEndpoint,
        timeout: Duration,
        headers: Option<Arc<RotatingSecret>>,
    ) -> Client {
        Client {
            endpoint,
            timeout,
            headers,
            connection: None,
        }
    }

    async fn post(&mut self, body: Bytes) -> Result<(), ExportError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.try_post(body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.connection = None;
                Err(error)
            }
            Err(_) => {
                self.connection = None;
                Err(ExportError::Timeout(timeout))
            }
        }
    }

    async fn try_post(&mut self, body: Bytes) -> Result<(), ExportError> {
        let mut connection = match self.connection.take() {
            Some(connection) if !connection.is_closed() => connection,
            _ => self.connect().await?,
        };
        connection.ready().await.map_err(ExportError::Http)?;
        let mut request = Request::builder();
        // The value in force now: a rotation applies from the next batch.
        // It was checked before it was accepted, so it parses.
        if let Some(secret) = &self.headers {
            for (name, value) in secrets::otlp_headers(&secret.current()).unwrap_or_default() {
                request = request.header(name, value);
            }
        }
        let request = request
            .method(Method::POST)
            .uri(self.endpoint.path.as_str())
            .header(header::HOST, self.endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("pulse/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(ExportError::Request)?;
        let response = connection
            .send_request(request)
            .await
            .map_err(ExportError::Http)?;
        let status = response.status();
        // Read the answer (a partial-success message at most) so that the
        // connection can carry the next batch.
        let read = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        if read.is_ok() {
            self.connection = Some(connection);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportError::Status(status.as_u16()))
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<Full<Bytes>>, ExportError> {
        let stream =
            tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(ExportError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ExportError::Http)?;
        tokio::spawn(async move {
            // Ends when the collector closes the connection or it is dropped.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The resource every batch carries, encoded once: `service.name`, the SDK
/// attributes and `OTEL_RESOURCE_ATTRIBUTES`, whose own `service.name` the
/// variable beats.
fn resource_json(settings: &ExportSettings) -> Vec<u8> {
    let mut attributes = vec![
        ("service.name", settings.service_name.as_str()),
        ("service.version", BUILD.version),
        ("telemetry.sdk.name", "pulse"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", BUILD.version),
    ];
    for (key, value) in &settings.resource_attributes {
        if key != "service.name" {
            attributes.push((key, value));
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"attributes\":[");
    for (i, (key, value)) in attributes.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string_attribute(&mut out, key, value);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One `ExportTraceServiceRequest` in OTLP's JSON encoding: ids in hex,
/// enums as integers, 64-bit integers as strings. Written straight into
/// bytes: a `serde_json::Value` tree per span cost more than the request.
fn encode(spans: &[FinishedSpan], resource: &[u8], mut out: Vec<u8>) -> Vec<u8> {
    out.clear();
    out.reserve(256 + spans.len() * 640);
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":");
    out.extend_from_slice(resource);
    out.extend_from_slice(b",\"scopeSpans\":[{\"scope\":{\"name\":\"pulse\",\"version\":");
    json_string(&mut out, BUILD.version);
    out.extend_from_slice(b"},\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        span_json(&mut out, span);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

use crate::allocation::{reclaim, share_for_reuse as share};

/// Appends `{"key":KEY,"value":{"stringValue":VALUE}}`. The key is a
/// literal, written whole; the value is `plain:` if pulse chose it (a
/// method, a route template: no character JSON escapes) and `escaped:` if
/// a client did. Escaping the keys and pulse's own values at run time cost
/// half of what encoding a span did.
macro_rules! span_attribute {
    ($out:expr, $key:literal, plain: $value:expr) => {{
        $out.extend_from_slice(
            concat!("{\"key\":\"", $key, "\",\"value\":{\"stringValue\":\"").as_bytes(),
        );
        $out.extend_from_slice($value.as_bytes());
        $out.extend_from_slice(b"\"}}");
    }};
    ($out:expr, $key:literal, escaped: $value:expr) => {{
        $out.extend_from_slice(
            concat!("{\"key\":\"", $key, "\",\"value\":{\"stringValue\":").as_bytes(),
        );
        json_string($out, $value);
        $out.extend_from_slice(b"}}");
    }};
}

/// One span: its ids and times, then what its kind adds.
fn span_json(out: &mut Vec<u8>, span: &FinishedSpan) {
    let end = unix_nanos(span.end);
    let start = end.saturating_sub(u64::try_from(span.duration.as_nanos()).unwrap_or(u64::MAX));

    out.extend_from_slice(b"{\"traceId\":\"");
    hex(out, &span.context.trace_id);
    out.extend_from_slice(b"\",\"spanId\":\"");
    hex(out, &span.context.span_id);
    out.push(b'"');
    if let Some(parent) = span.context.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        hex(out, &parent);
        out.push(b'"');
    }
    if let Some(state) = span.tracestate.as_ref().and_then(|s| s.to_str().ok()) {
        out.extend_from_slice(b",\"traceState\":");
        json_string(out, state);
    }
    match &span.kind {
        SpanKind::Request(request) => request_json(out, request, start, end),
        SpanKind::Database { operation, failed } => {
            database_json(out, operation, *failed, start, end)
        }
    }
}

/// `"startTimeUnixNano":...,"endTimeUnixNano":...,"attributes":[`
fn times_json(out: &mut Vec<u8>, start: u64, end: u64) {
    out.extend_from_slice(b",\"startTimeUnixNano\":\"");
    out.extend_from_slice(crate::logging::decimal(start, &mut [0; 20]));
    out.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    out.extend_from_slice(crate::logging::decimal(end, &mut [0; 20]));
    out.extend_from_slice(b"\",\"attributes\":[");
}

/// A client span with the database semantic conventions' attributes: the
/// system and the operation, never the query text or its parameters.
fn database_json(out: &mut Vec<u8>, operation: &str, failed: bool, start: u64, end: u64) {
    // kind 3 is SPAN_KIND_CLIENT.
    out.extend_from_slice(b",\"name\":\"");
    out.extend_from_slice(operation.as_bytes());
    out.extend_from_slice(b"\",\"kind\":3");
    times_json(out, start, end);
    span_attribute!(out, "db.system.name", plain: "postgresql");
    out.push(b',');
    span_attribute!(out, "db.operation.name", plain: operation);
    out.extend_from_slice(if failed {
        b"],\"status\":{\"code\":2}}".as_slice()
    } else {
        b"],\"status\":{}}".as_slice()
    });
}

/// A server span with the HTTP semantic conventions' attributes.
fn request_json(out: &mut Vec<u8>, span: &RequestSpan, start: u64, end: u64) {
    // OpenTelemetry names an unknown method `_OTHER`.
    let method = match span.verb {
        Verb::Other => "_OTHER",
        verb => verb.label(),
    };
    let route = span.route;
    // The span name: method and route template, the method alone without a
    // route, `HTTP` for an unknown method without one.
    out.extend_from_slice(b",\"name\":\"");
    match route {
        Some(route) => {
            out.extend_from_slice(method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(route.as_bytes());
        }
        None if span.verb == Verb::Other => out.extend_from_slice(b"HTTP"),
        None => out.extend_from_slice(method.as_bytes()),
    }
    // kind 2 is SPAN_KIND_SERVER.
    out.extend_from_slice(b"\",\"kind\":2");
    times_json(out, start, end);
    span_attribute!(out, "http.request.method", plain: method);
    out.push(b',');
    span_attribute!(out, "url.path", escaped: &span.path);
    out.push(b',');
    span_attribute!(out, "url.scheme", plain: "http");
    out.extend_from_slice(b",{\"key\":\"http.response.status_code\",\"value\":{\"intValue\":\"");
    out.extend_from_slice(crate::logging::decimal(
        u64::from(span.status),
        &mut [0; 20],
    ));
    out.extend_from_slice(b"\"}},");
    let version = match span.version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    span_attribute!(out, "network.protocol.version", plain: version);
    if let Some(route) = route {
        out.push(b',');
        span_attribute!(out, "http.route", plain: route);
    }
    // A server span is an error only for a 5xx: a 4xx is the client's.
    out.extend_from_slice(if span.status >= 500 {
        b"],\"status\":{\"code\":2}}".as_slice()
    } else {
        b"],\"status\":{}}".as_slice()
    });
}

/// `{"key":KEY,"value":{"stringValue":VALUE}}`, both escaped: for the
/// resource, which is encoded once, from settings.
fn string_attribute(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(b"{\"key\":");
    json_string(out, key);
    out.extend_from_slice(b",\"value\":{\"stringValue\":");
    json_string(out, value);
    out.extend_from_slice(b"}}");
}

/// A JSON string literal, escaped by serde_json.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

/// Appends the lowercase hex of an id (at most 16 bytes).
fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut text = [0u8; 32];
    let text = &mut text[..2 * bytes.len()];
    write_hex(text, bytes);
    out.extend_from_slice(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_otel_rules() {
        let base = OtlpEndpoint::parse("http://collector:4318", "/v1/traces").unwrap();
        assert_eq!(base.to_string(), "http://collector:4318/v1/traces");
        assert_eq!((base.host.as_str(), base.port), ("collector", 4318));
        let slash = OtlpEndpoint::parse("http://c:4318/otlp/", "/v1/traces").unwrap();
        assert_eq!(slash.path, "/otlp/v1/traces");
        let exact = OtlpEndpoint::parse("http://[::1]:4318/custom", "").unwrap();
        assert_eq!(
            (exact.host.as_str(), exact.path.as_str()),
            ("::1", "/custom")
        );
        assert_eq!(OtlpEndpoint::parse("http://c", "").unwrap().port, 80);
        for bad in [
            "https://c:4318",
            "c:4318",
            "http://",
            "http://user@c:4318",
            "http://c:4318/?q=1",
            "grpc://c:4317",
        ] {
            assert_eq!(OtlpEndpoint::parse(bad, "/v1/traces"), None, "{bad}");
        }
    }

    #[test]
    fn a_sent_body_hands_its_buffer_to_the_next_batch() {
        // The buffer comes back itself, not a copy, and whatever it held
        // is not part of the next body.
        let (body, encoded) = share(encode(&[], b"{}", Vec::with_capacity(64 * 1024)));
        let sent = body.as_ptr();
        let buffer = reclaim(body, encoded);
        assert_eq!(buffer.as_ptr(), sent, "the buffer was copied");
        assert!(buffer.capacity() >= 64 * 1024);
        assert_eq!(
            encode(&[], b"{}", buffer),
            encode(&[], b"{}", Vec::new()),
            "a reused buffer changed the body"
        );
        // Still held elsewhere: the next batch starts a new buffer.
        let (body, encoded) = share(encode(&[], b"{}", Vec::with_capacity(1024)));
        let held = body.clone();
        assert_eq!(reclaim(body, encoded).capacity(), 0);
        assert!(held.starts_with(b"{\"resourceSpans\""));
    }

    #[test]
    fn values_written_plain_need_no_json_escaping() {
        // span_attribute!'s `plain:` values: every method label and protocol
        // version (the route templates: routes' tests).
        let plain = |text: &str| serde_json::to_string(text).unwrap() == format!("\"{text}\"");
        for method in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ] {
            let verb = Verb::from_method(&method.parse().unwrap());
            assert!(verb != Verb::Other && plain(verb.label()), "{method}");
        }
        for text in ["_OTHER", "http", "1.0", "1.1", "2"] {
            assert!(plain(text), "{text}");
        }
    }

    #[test]
    fn resource_attributes_are_percent_decoded_pairs() {
        assert_eq!(
            parse_resource_attributes("deployment.environment=prod, team=a%2Cb").unwrap(),
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        assert_eq!(parse_resource_attributes("").unwrap(), vec![]);
        for bad in ["novalue", "=x", "k=%zz", "k=%4", "a b=c"] {
            assert_eq!(parse_resource_attributes(bad), None, "{bad}");
        }
    }
}
