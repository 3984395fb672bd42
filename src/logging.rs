//! env_logger with two formats: `text` for people, `json` for collectors.
//!
//! Both write one line per event to stdout, which is where container
//! platforms (Knative, Cloud Run, podman) collect logs. The JSON format is one
//! object per line: `ts` (RFC 3339, UTC), `level`, `target`, `msg`, then the
//! event's structured fields, such as the access log's `status` and
//! `duration_us`, as top-level keys with their JSON types.
//!
//! Lines are batched, and requests never wait for stdout: a line is
//! appended to an in-memory buffer, and one background thread writes the
//! buffer out every [`FLUSH_INTERVAL`] (sooner when [`WRITE_SOON`] bytes
//! wait). If stdout blocks (a full pipe, a stalled log collector,
//! `pulse | less`), only that thread waits. The buffer holds at most
//! [`BUFFER_CAP`] bytes; lines beyond it are dropped and counted
//! (`pulse_log_lines_dropped_total`), and one warning reports the count once
//! writing resumes. [`flush`] empties the buffer within a deadline, and the
//! binary calls it before every exit.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::kv::{self, Key, Value, VisitSource};
use prometheus::IntCounter;

use crate::lock;

/// The longest a log line waits in the buffer before it reaches stdout.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// With this many bytes waiting, the writer is woken before its interval.
pub const WRITE_SOON: usize = 64 * 1024;

/// SECURITY: the most bytes that wait for stdout. Past it lines are dropped,
/// so a stdout nobody reads costs bounded memory instead of a stalled server.
pub const BUFFER_CAP: usize = 1024 * 1024;

/// The buffer between the threads that log and the one that writes.
struct Batch {
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer: a full batch, or a flush request.
    wake: Condvar,
    /// Flush requests made, and the last one the writer completed.
    flush_requested: AtomicU64,
    flushed: Mutex<u64>,
    flush_done: Condvar,
    writer_running: AtomicBool,
}

impl Batch {
    /// Ends an append to `pending`, which held `before` bytes: the lock is
    /// released, then the writer is woken if the batch just crossed
    /// [`WRITE_SOON`]. Once per crossing: a wake-up per line would cost a
    /// system call per request. Unlocked first: the writer, woken while the
    /// lock is still held, would block on it at once and switch back.
    fn appended(&self, pending: MutexGuard<'_, Vec<u8>>, before: usize) {
        let crossed = before < WRITE_SOON && pending.len() >= WRITE_SOON;
        drop(pending);
        if crossed {
            self.wake.notify_one();
        }
    }
}

static BATCH: OnceLock<Batch> = OnceLock::new();

fn batch() -> &'static Batch {
    BATCH.get_or_init(|| Batch {
        pending: Mutex::new(Vec::with_capacity(4096)),
        wake: Condvar::new(),
        flush_requested: AtomicU64::new(0),
        flushed: Mutex::new(0),
        flush_done: Condvar::new(),
        writer_running: AtomicBool::new(false),
    })
}

/// Log lines dropped because stdout was not keeping up, since the start.
/// The metrics of every App report this one counter.
pub fn dropped_lines() -> &'static IntCounter {
    static DROPPED: OnceLock<IntCounter> = OnceLock::new();
    DROPPED.get_or_init(|| {
        IntCounter::new(
            "pulse_log_lines_dropped_total",
            "Log lines dropped because stdout did not keep up and the log buffer was full.",
        )
        .expect("static metric definition")
    })
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for people at a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the global logger with `filter` (env_logger syntax, checked by
/// the configuration) and starts the writer thread. Fails only if a logger
/// is already installed.
pub fn init(filter: &str, format: LogFormat) -> Result<(), log::SetLoggerError> {
    let batch = batch();
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(filter)
        .target(env_logger::Target::Pipe(Box::new(BatchedStdout(batch))));
    match format {
        LogFormat::Text => builder.format(write_text),
        LogFormat::Json => builder.format(write_json),
    };
    builder.try_init()?;
    // Only with pulse's own logger installed: the access log writes into
    // its batch.
    let _ = FORMAT.set(format);
    batch.writer_running.store(true, Ordering::Release);
    let started = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn(move || write_forever(batch));
    if let Err(e) = started {
        // flush() then writes on the caller's thread, as before batching.
        batch.writer_running.store(false, Ordering::Release);
        log::warn!("cannot start the log writer thread: {e}; lines reach stdout at exit only");
    }
    Ok(())
}

/// The writer thread: swaps the batch out under the lock, then writes it
/// without the lock, so a blocked stdout holds up no one else.
fn write_forever(batch: &Batch) {
    let mut writing = Vec::with_capacity(4096);
    let mut reported = 0;
    loop {
        let generation;
        {
            let mut pending = lock(&batch.pending);
            let done = *lock(&batch.flushed);
            if pending.len() < WRITE_SOON && batch.flush_requested.load(Ordering::Acquire) == done {
                pending = batch
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
            }
            generation = batch.flush_requested.load(Ordering::Acquire);
            std::mem::swap(&mut *pending, &mut writing);
        }
        write_to_stdout(&writing);
        writing.clear();
        // A burst must not pin its peak allocation for the process's life.
        writing.shrink_to(4 * WRITE_SOON);
        let dropped = dropped_lines().get();
        if dropped > reported {
            log::warn!(
                target: "pulse::logging",
                dropped = dropped - reported;
                "dropped {} log lines: stdout did not keep up and the log buffer ({} KiB) was full",
                dropped - reported,
                BUFFER_CAP / 1024
            );
            reported = dropped;
        }
        let mut flushed = lock(&batch.flushed);
        // Only a flush request can have a waiter, and a notification costs
        // a system call even with no one waiting.
        if *flushed != generation {
            *flushed = generation;
            batch.flush_done.notify_all();
        }
    }
}

fn write_to_stdout(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut stdout = io::stdout().lock();
    // A closed stdout must not take the service down; the lines are dropped.
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Writes every line logged so far to stdout, waiting at most `deadline`
/// (stdout may be blocked); true if they were written.
pub fn flush(deadline: Duration) -> bool {
    let batch = batch();
    if !batch.writer_running.load(Ordering::Acquire) {
        let lines = std::mem::take(&mut *lock(&batch.pending));
        write_to_stdout(&lines);
        return true;
    }
    let target = {
        // Under the batch lock, so the writer cannot miss the request
        // between checking for work and going to sleep.
        let _pending = lock(&batch.pending);
        let target = batch.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
        batch.wake.notify_one();
        target
    };
    let flushed = lock(&batch.flushed);
    let (flushed, _) = batch
        .flush_done
        .wait_timeout_while(flushed, deadline, |done| *done < target)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *flushed >= target
}

/// Flushes the log, within its deadline, when dropped: on return and on a
/// panic unwinding alike. The binary holds one for its whole run.
pub struct FlushOnDrop(pub Duration);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush(self.0);
    }
}

/// env_logger's pipe target: it appends each formatted line to the batch,
/// or drops and counts it when the batch is full. It never touches stdout.
/// env_logger calls `flush` after every line; that is deliberately a no-op.
struct BatchedStdout(&'static Batch);

impl Write for BatchedStdout {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.0.pending);
        if pending.len() + line.len() > BUFFER_CAP {
            drop(pending);
            dropped_lines().inc();
            return Ok(line.len());
        }
        let before = pending.len();
        pending.extend_from_slice(line);
        self.0.appended(pending, before);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends panic messages through the logger, so that in JSON mode a panic is
/// one parseable line like every other event. A panic inside
/// [`catch_handler_panic`] is not logged here: the caller logs it once, with
/// the request it belongs to.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if CATCHING.with(Cell::get) {
            CAUGHT_AT.with(|at| *at.borrow_mut() = location);
            return;
        }
        let message = panic_message(info.payload());
        log::error!(target: "pulse::panic", location = location.as_str(); "panicked: {message}");
    }));
}

/// A caught handler panic: its message and where it was raised.
pub struct CaughtPanic {
    pub message: String,
    pub location: String,
}

/// Runs `handler`, catching a panic without the hook's log line, so the
/// caller can log the panic once, with its request.
pub fn catch_handler_panic<R>(handler: impl FnOnce() -> R) -> Result<R, CaughtPanic> {
    let was_catching = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler));
    CATCHING.with(|c| c.set(was_catching));
    result.map_err(|payload| CaughtPanic {
        message: panic_message(&*payload).to_owned(),
        location: CAUGHT_AT.with(|at| std::mem::take(&mut *at.borrow_mut())),
    })
}

/// The text a panic was raised with, whether a literal or a formatted String.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

thread_local! {
    /// Set while a handler runs under `catch_handler_panic`.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// Where the last caught handler panic was raised.
    static CAUGHT_AT: RefCell<String> = const { RefCell::new(String::new()) };
    /// Each line is assembled here, then handed to env_logger in one write:
    /// many small writes through `core::fmt` cost more than the request.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    /// A monotonic instant and the system clock's time at it (since the
    /// Unix epoch), for [`wall_clock`].
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    /// The `YYYY-MM-DDTHH:MM:SS` part of the timestamp, for the last second seen.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-26T07:32:00.123Z INFO  pulse::access: request method=GET ...`
pub fn write_text(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    with_line(out, |line| {
        push_text_head(line, record.level(), record.target());
        push_arguments(line, record.args(), false);
        let _ = record.key_values().visit(&mut Fields { line, json: false });
    })
}

/// `{"ts":"...","level":"INFO","target":"pulse::access","msg":"request",...}`
pub fn write_json(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    with_line(out, |line| {
        push_json_head(line, record.level(), record.target());
        push_arguments(line, record.args(), true);
        line.push(b'"');
        let _ = record.key_values().visit(&mut Fields { line, json: true });
        line.push(b'}');
    })
}

/// A text line up to its message.
fn push_text_head(line: &mut Vec<u8>, level: log::Level, target: &str) {
    push_timestamp(line, since_epoch(SystemTime::now()));
    line.push(b' ');
    let level = level.as_str();
    put(line, level.as_bytes());
    put(line, &b"     "[level.len()..]);
    line.push(b' ');
    put(line, target.as_bytes());
    line.extend_from_slice(b": ");
}

/// A JSON line up to its message, the opening quote included.
fn push_json_head(line: &mut Vec<u8>, level: log::Level, target: &str) {
    line.extend_from_slice(b"{\"ts\":\"");
    push_timestamp(line, since_epoch(SystemTime::now()));
    line.extend_from_slice(b"\",\"level\":\"");
    put(line, level.as_str().as_bytes());
    line.extend_from_slice(b"\",\"target\":\"");
    push_identifier(line, target);
    line.extend_from_slice(b"\",\"msg\":\"");
}

/// The fields of one access-log line.
pub struct Access<'a> {
    /// When the answer was ready: the line's timestamp.
    pub at: Instant,
    /// `Info`, or `Debug` for the probes, which are polled all day long.
    pub level: log::Level,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_us: u64,
    pub request_id: LoggedId<'a>,
    /// Lowercase hex.
    pub trace_id: &'a [u8; 32],
    pub span_id: &'a [u8; 16],
    /// The peer's address; none for in-process calls, logged as `-`.
    pub remote: Option<&'a Peer>,
}

/// An access line's request id, as the response's `x-request-id` carries it.
#[derive(Clone, Copy)]
pub enum LoggedId<'a> {
    /// One pulse made: lowercase hex, which needs no escaping, so the line
    /// skips the scan for quotes and backslashes (about 100 instructions).
    Made(&'a [u8; 32]),
    /// The caller's: visible ASCII (`request_id::is_acceptable`).
    Given(&'a [u8]),
}

impl<'a> LoggedId<'a> {
    pub fn as_bytes(self) -> &'a [u8] {
        match self {
            LoggedId::Made(id) => id,
            LoggedId::Given(id) => id,
        }
    }
}

const ACCESS_TARGET: &str = "pulse::access";

/// The log format [`init`] installed; none in tests without a logger.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Logs one answered request, as `log::log!(target: "pulse::access", ...)`
/// with these fields would, and subject to the same `RUST_LOG` filter, but
/// written straight into the batch: through `log`, every field went through
/// the key-value visitor's dynamic dispatch, and the line was copied twice
/// more (into env_logger's buffer, then into the batch). That was a fifth
/// of the CPU time pulse spends on a request of its own.
pub fn access(fields: &Access<'_>) {
    if !log::log_enabled!(target: ACCESS_TARGET, fields.level) {
        return;
    }
    let Some(&format) = FORMAT.get() else {
        return;
    };
    let batch = batch();
    // Straight into the batch when no other thread holds it and the line
    // surely fits under the cap: no line buffer and no copy. Otherwise
    // (another worker is writing a line, the writer thread is taking the
    // batch, or the batch is nearly full) the line is built aside and
    // appended like every other log line, which drops it if it does not
    // fit; nobody waits.
    let longest = access_line_bound(fields);
    if let Ok(mut pending) = batch.pending.try_lock() {
        if pending.len() + longest <= BUFFER_CAP {
            let before = pending.len();
            push_access(&mut pending, format == LogFormat::Json, fields);
            pending.push(b'\n');
            batch.appended(pending, before);
            return;
        }
        // Released before the general path takes the lock again.
        drop(pending);
    }
    let _ = write_access(&mut BatchedStdout(batch), format, fields);
}

/// At least the length of the access line for `fields`, newline included:
/// the path escapes to at most six bytes per byte (`\u00XX`), a request id
/// (visible ASCII) to two, and the rest (keys, timestamp, ids, status,
/// duration, an address of at most 64 bytes) takes under 512.
fn access_line_bound(fields: &Access<'_>) -> usize {
    512 + fields.method.len() + 6 * fields.path.len() + 2 * fields.request_id.as_bytes().len()
}

fn write_access(out: &mut impl Write, format: LogFormat, fields: &Access<'_>) -> io::Result<()> {
    with_line(out, |line| {
        push_access(line, format == LogFormat::Json, fields)
    })
}

/// Appends the access line, without its newline.
fn push_access(line: &mut Vec<u8>, json: bool, fields: &Access<'_>) {
    // Keys are literals, copied whole; of the values only the path and
    // the request id, which a client chose, can need escaping: the
    // method, the ids pulse wrote in hex and the address are plain.
    // One copy per branch: a literal of a length known when compiling
    // is copied with a few moves, where one chosen at run time (`if
    // json { a } else { b }` as the argument) is a call to musl's
    // `memcpy`, whose `rep movs` costs about 10 ns even for ten bytes.
    macro_rules! literal {
        ($json:expr, $text:expr) => {
            if json {
                line.extend_from_slice($json.as_bytes())
            } else {
                line.extend_from_slice($text.as_bytes())
            }
        };
    }
    macro_rules! key {
        ($name:literal) => {
            literal!(concat!(",\"", $name, "\":"), concat!(" ", $name, "="))
        };
    }
    let quote = |line: &mut Vec<u8>| {
        if json {
            line.push(b'"');
        }
    };
    macro_rules! plain {
        ($line:expr, $value:expr) => {{
            quote($line);
            put($line, $value);
            quote($line);
        }};
    }
    // An array's length is known when compiling: copied with a few
    // moves, no loop.
    macro_rules! fixed {
        ($line:expr, $value:expr) => {{
            quote($line);
            $line.extend_from_slice($value);
            quote($line);
        }};
    }
    // The head as push_json_head and push_text_head write it, with
    // the level, the target, the message and the first key in one
    // literal.
    macro_rules! head {
        ($level:literal, $padded:literal) => {
            literal!(
                concat!(
                    "\",\"level\":\"",
                    $level,
                    "\",\"target\":\"pulse::access\",\"msg\":\"request\",\"method\":\""
                ),
                concat!(" ", $padded, " pulse::access: request method=")
            )
        };
    }
    if json {
        line.extend_from_slice(b"{\"ts\":\"");
    }
    push_timestamp(line, wall_clock(fields.at));
    match fields.level {
        log::Level::Error => head!("ERROR", "ERROR"),
        log::Level::Warn => head!("WARN", "WARN "),
        log::Level::Info => head!("INFO", "INFO "),
        log::Level::Debug => head!("DEBUG", "DEBUG"),
        log::Level::Trace => head!("TRACE", "TRACE"),
    }
    put(line, fields.method.as_bytes());
    quote(line);
    key!("path");
    push_str_value(line, fields.path.as_bytes(), json);
    key!("status");
    push_status(line, fields.status);
    key!("duration_us");
    push_u64(line, fields.duration_us);
    key!("request_id");
    match fields.request_id {
        LoggedId::Made(id) => fixed!(line, id),
        // Visible ASCII: only a quote or a backslash needs escaping, and
        // only in JSON. A scan for those two is cheaper than the general
        // escaper.
        LoggedId::Given(id) if json && has_quote_or_backslash(id) => push_json_string(line, id),
        LoggedId::Given(id) => plain!(line, id),
    }
    key!("trace_id");
    fixed!(line, fields.trace_id);
    key!("span_id");
    fixed!(line, fields.span_id);
    key!("remote");
    quote(line);
    match fields.remote {
        Some(peer) => peer.put(line),
        None => line.push(b'-'),
    }
    quote(line);
    if json {
        line.push(b'}');
    }
}

fn with_line(out: &mut impl Write, build: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
    LINE.with(|cell| {
        let mut borrowed = cell.try_borrow_mut();
        // Busy only if formatting a value logs in turn: then use a fresh buffer.
        let mut fresh = Vec::new();
        let line = match borrowed.as_deref_mut() {
            Ok(line) => {
                line.clear();
                line
            }
            Err(_) => &mut fresh,
        };
        build(line);
        line.push(b'\n');
        out.write_all(line)
    })
}

/// Whether `bytes` hold a `"` or a `\\`. `contains` on bytes scans a
/// word at a time.
fn has_quote_or_backslash(bytes: &[u8]) -> bool {
    bytes.contains(&b'"') || bytes.contains(&b'\\')
}

/// A peer's address as `Display` writes it, formatted once per connection
/// for its access lines: formatting a `SocketAddr` for every request cost
/// about 300 instructions.
#[derive(Clone, Copy)]
pub struct Peer {
    text: [u8; Peer::CAPACITY],
    len: u8,
}

impl Peer {
    /// `[IPv6%scope]:port` takes at most 58 bytes.
    const CAPACITY: usize = 64;

    pub fn new(address: SocketAddr) -> Peer {
        let formatted = address.to_string();
        let len = formatted.len().min(Peer::CAPACITY);
        let mut text = [0; Peer::CAPACITY];
        text[..len].copy_from_slice(&formatted.as_bytes()[..len]);
        Peer {
            text,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    /// Appends the address: the whole buffer, a copy of a length known when
    /// compiling (a few moves), then cut back to the address's length.
    fn put(&self, line: &mut Vec<u8>) {
        let end = line.len() + usize::from(self.len);
        line.extend_from_slice(&self.text);
        line.truncate(end);
    }
}

/// A record's message: copied directly when it is a plain string.
fn push_arguments(line: &mut Vec<u8>, args: &fmt::Arguments<'_>, json: bool) {
    match (args.as_str(), json) {
        (Some(text), true) => push_escaped(line, text.as_bytes()),
        (Some(text), false) => push_text(line, text.as_bytes()),
        (None, json) => {
            let _ = Escaping { line, json }.write_fmt(*args);
        }
    }
}

/// Structured fields: ` key=value` in text, `,"key":value` in JSON, where
/// numbers and booleans keep their JSON type so a collector can aggregate
/// `duration_us` without parsing strings.
struct Fields<'a> {
    line: &'a mut Vec<u8>,
    json: bool,
}

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let line = &mut *self.line;
        push_key(line, key.as_str(), self.json);
        if let Some(n) = value.to_u64() {
            push_u64(line, n);
        } else if let Some(text) = value.to_borrowed_str() {
            push_str_value(line, text.as_bytes(), self.json);
        } else if let Some(b) = value.to_bool() {
            line.extend_from_slice(if b { b"true" } else { b"false" });
        } else if let (true, Some(n)) = (self.json, value.to_i64()) {
            let _ = write!(line, "{n}");
        } else if let (true, Some(n)) = (self.json, value.to_f64().filter(|n| n.is_finite())) {
            let _ = write!(line, "{n}");
        } else if self.json {
            line.push(b'"');
            let _ = write!(Escaping { line, json: true }, "{value}");
            line.push(b'"');
        } else {
            let _ = write!(Escaping { line, json: false }, "{value}");
        }
        Ok(())
    }
}

/// A target or a field name, in a JSON string. They are module paths and
/// identifiers in pulse's own code: copied as they are, escaped only if one
/// ever is not.
fn push_identifier(line: &mut Vec<u8>, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        put(line, name.as_bytes());
    } else {
        push_escaped(line, name.as_bytes());
    }
}

/// A field's key: `,"key":` in JSON, ` key=` in text.
fn push_key(line: &mut Vec<u8>, key: &str, json: bool) {
    if json {
        line.extend_from_slice(b",\"");
        push_identifier(line, key);
        line.extend_from_slice(b"\":");
    } else {
        line.push(b' ');
        put(line, key.as_bytes());
        line.push(b'=');
    }
}

fn push_str_value(line: &mut Vec<u8>, text: &[u8], json: bool) {
    if json {
        push_json_string(line, text);
    } else {
        push_text(line, text);
    }
}

fn push_json_string(line: &mut Vec<u8>, text: &[u8]) {
    line.push(b'"');
    push_escaped(line, text);
    line.push(b'"');
}

/// Appends `text` with JSON string escaping (no quotes).
fn push_escaped(line: &mut Vec<u8>, bytes: &[u8]) {
    let mut plain_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none can need escaping: most of a log
        // line (ids, paths, addresses) is plain, and a byte-by-byte scan of
        // it cost more than all the rest of the JSON formatting.
        if let Some(Ok(word)) = bytes.get(i..i + 8).map(<[u8; 8]>::try_from) {
            if !may_need_json_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        put(line, &bytes[plain_from..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            line.extend_from_slice(b"\\u00");
            line.push(HEX[usize::from(byte >> 4)]);
            line.push(HEX[usize::from(byte & 0xf)]);
        } else {
            line.extend_from_slice(escape);
        }
        i += 1;
        plain_from = i;
    }
    put(line, &bytes[plain_from..]);
}

/// Whether any of eight bytes may need escaping in a JSON string: a control
/// byte (below 0x20, or 0x7f), `"` or `\\`. May say yes for a plain word
/// next to such a byte (a borrow crosses bytes), never no for one that
/// needs it; the caller then looks byte by byte.
fn may_need_json_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
        || has_zero(word ^ (ONES * 0x7f))
}

/// Formatted text into a line, JSON-escaped when `json` is set.
struct Escaping<'a> {
    line: &'a mut Vec<u8>,
    json: bool,
}

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.json {
            push_escaped(self.line, text.as_bytes());
        } else {
            push_text(self.line, text.as_bytes());
        }
        Ok(())
    }
}

/// SECURITY: text for the `text` format, with control characters escaped
/// (`\n`, `\r`, `\t`, `\x1b`), so that a value a client or a webhook chose
/// cannot end the line and forge another one.
fn push_text(line: &mut Vec<u8>, text: &[u8]) {
    if !text.iter().any(|&b| b < 0x20 || b == 0x7f) {
        put(line, text);
        return;
    }
    for &byte in text {
        match byte {
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            b'\t' => line.extend_from_slice(b"\\t"),
            0..0x20 | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
            }
            _ => line.push(byte),
        }
    }
}

/// Appends a short, variable-length slice. musl's `memcpy`, which the
/// static binary links, starts every copy with `rep movs`; for the dozens of
/// few-byte copies in a log line that setup cost more than all the rest of
/// the formatting (measured with perf). Word-sized copies of a constant
/// length compile to plain moves instead. The metrics page's encoder
/// (`exposition`) copies its pieces with it too.
#[inline(always)]
pub(crate) fn put(line: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 256 {
        line.extend_from_slice(bytes);
        return;
    }
    line.reserve(bytes.len());
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        line.extend_from_slice(&word);
    }
    let mut rest = words.remainder();
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        line.extend_from_slice(four);
        rest = tail;
    }
    if let Some((two, tail)) = rest.split_first_chunk::<2>() {
        line.extend_from_slice(two);
        rest = tail;
    }
    if let Some(&byte) = rest.first() {
        line.push(byte);
    }
}

/// An HTTP status: three digits (`StatusCode` holds 100 to 999), written
/// without the general loop of [`decimal`].
fn push_status(line: &mut Vec<u8>, status: u16) {
    if (100..1000).contains(&status) {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        line.extend_from_slice(&[digit(status / 100), digit(status / 10), digit(status)]);
    } else {
        push_u64(line, u64::from(status));
    }
}

fn push_u64(line: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    put(line, decimal(n, &mut digits));
}

/// `n` in decimal, written into `digits`, without `core::fmt`.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
}

/// The wall-clock time of `at`, since the Unix epoch: the system clock as
/// last read on this thread, plus the monotonic time since, read again once
/// a second. An access line then costs no clock reading of its own (a read
/// of the system clock is about 25 ns on this virtual machine); a step of
/// the system clock shows in the log within a second. Kept as a `Duration`,
/// not a `SystemTime`: the timestamp is written from one, and each
/// conversion is a subtraction of two `timespec`s.
fn wall_clock(at: Instant) -> Duration {
    ANCHOR.with(|anchor| {
        if let Some((instant, wall)) = anchor.get() {
            if let Some(since) = at.checked_duration_since(instant) {
                if since < Duration::from_secs(1) {
                    return wall + since;
                }
            }
        }
        let wall = since_epoch(SystemTime::now());
        anchor.set(Some((at, wall)));
        wall
    })
}

/// `time` since the Unix epoch; zero for a time before it.
fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Appends the time `since_epoch` as RFC 3339 in UTC with milliseconds.
pub fn push_timestamp(line: &mut Vec<u8>, since_epoch: Duration) {
    let seconds = since_epoch.as_secs();
    let (cached_second, mut prefix) = SECOND.get();
    if cached_second != seconds {
        let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
        let second_of_day = seconds % 86_400;
        let mut text = Vec::with_capacity(19);
        let _ = write!(
            text,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        );
        if text.len() == prefix.len() {
            prefix.copy_from_slice(&text);
            SECOND.set((seconds, prefix));
        } else {
            // Years past 9999 do not fit the cache; write them as they are.
            line.extend_from_slice(&text);
            push_millis(line, since_epoch.subsec_millis());
            return;
        }
    }
    line.extend_from_slice(&prefix);
    push_millis(line, since_epoch.subsec_millis());
}

fn push_millis(line: &mut Vec<u8>, millis: u32) {
    line.extend_from_slice(&[
        b'.',
        b'0' + (millis / 100) as u8,
        b'0' + (millis / 10 % 10) as u8,
        b'0' + (millis % 10) as u8,
        b'Z',
    ]);
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping_matches_serde_json_at_every_offset() {
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{1}', '\u{1f}', '\u{7f}', 'é', ' ', '~',
        ];
        for length in 0..24 {
            for offset in 0..length {
                for special in specials {
                    let mut text: String = (0..length)
                        .map(|i| (b'a' + (i % 26) as u8) as char)
                        .collect();
                    text.replace_range(offset..offset + 1, &special.to_string());
                    let mut line = Vec::new();
                    push_escaped(&mut line, text.as_bytes());
                    let ours = String::from_utf8(line).unwrap();
                    let theirs = serde_json::to_string(&text).unwrap();
                    // serde_json leaves 0x7f as it is; pulse escapes it.
                    let theirs = theirs[1..theirs.len() - 1].replace('\u{7f}', "\\u007f");
                    assert_eq!(ours, theirs, "{text:?}");
                }
            }
        }
    }

    fn timestamp(seconds: u64, millis: u64) -> String {
        let mut out = Vec::new();
        push_timestamp(
            &mut out,
            Duration::from_secs(seconds) + Duration::from_millis(millis),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(timestamp(1_795_678_320, 123), "2026-11-26T07:32:00.123Z");
        assert_eq!(timestamp(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }

    fn json_line(record: &log::Record<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        write_json(&mut out, record).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn json_lines_are_one_object_with_typed_fields() {
        let fields: [(&str, Value<'_>); 4] = [
            ("status", Value::from(404u64)),
            ("duration_ms", Value::from(0.25f64)),
            ("path", Value::from("/a\"b\\c\n\u{1}")),
            ("ok", Value::from(true)),
        ];
        let line = json_line(
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("pulse::access")
                .args(format_args!("tab\there \"quoted\""))
                .key_values(&fields)
                .build(),
        );
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "pulse::access");
        assert_eq!(line["msg"], "tab\there \"quoted\"");
        assert_eq!(line["status"], 404);
        assert_eq!(line["duration_ms"], 0.25);
        assert_eq!(line["path"], "/a\"b\\c\n\u{1}");
        assert_eq!(line["ok"], true);
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_carry_fields_as_key_value_pairs() {
        let fields: [(&str, Value<'_>); 1] = [("status", Value::from(200u64))];
        let mut out = Vec::new();
        write_text(
            &mut out,
            &log::Record::builder()
                .level(log::Level::Info)
                .target("pulse::access")
                .args(format_args!("request"))
                .key_values(&fields)
                .build(),
        )
        .unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with(" INFO  pulse::access: request status=200\n"),
            "{line}"
        );
    }

    /// The access line is written without `log`'s record: it must be the
    /// line the record with the same fields gives, in both formats.
    #[test]
    fn the_access_line_is_the_line_its_log_record_would_give() {
        // A caller's id may hold quotes and backslashes; pulse's are hex.
        let made = b"4bf92f3577b34da6a3ce929d0e0e4736";
        for request_id in [
            LoggedId::Given(br#"req-"1"\"#),
            LoggedId::Given(made),
            LoggedId::Made(made),
        ] {
            for level in [log::Level::Info, log::Level::Debug, log::Level::Warn] {
                assert_access_line_matches_record(request_id, level);
            }
        }
    }

    fn assert_access_line_matches_record(request_id: LoggedId<'_>, level: log::Level) {
        let access = Access {
            at: Instant::now(),
            level,
            method: "GET",
            path: "/a \"quoted\"\npath",
            status: 404,
            duration_us: 1234,
            request_id,
            trace_id: b"4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: b"00f067aa0ba902b7",
            remote: Some(&Peer::new(SocketAddr::from(([127, 0, 0, 1], 5000)))),
        };
        let fields: [(&str, Value<'_>); 8] = [
            ("method", Value::from(access.method)),
            ("path", Value::from(access.path)),
            ("status", Value::from(access.status)),
            ("duration_us", Value::from(access.duration_us)),
            (
                "request_id",
                Value::from(std::str::from_utf8(request_id.as_bytes()).unwrap()),
            ),
            ("trace_id", Value::from("4bf92f3577b34da6a3ce929d0e0e4736")),
            ("span_id", Value::from("00f067aa0ba902b7")),
            ("remote", Value::from("127.0.0.1:5000")),
        ];
        let record = log::Record::builder()
            .level(access.level)
            .target("pulse::access")
            .args(format_args!("request"))
            .key_values(&fields)
            .build();
        // The timestamps differ by when each line was written.
        let without_timestamp = |line: Vec<u8>, json: bool| {
            let line = String::from_utf8(line).unwrap();
            let start = if json { "{\"ts\":\"".len() } else { 0 };
            assert_eq!(&line[start + 23..start + 24], "Z", "{line}");
            line[start + 24..].to_owned()
        };
        for (format, json) in [(LogFormat::Json, true), (LogFormat::Text, false)] {
            let (mut direct, mut through_log) = (Vec::new(), Vec::new());
            write_access(&mut direct, format, &access).unwrap();
            if json {
                write_json(&mut through_log, &record).unwrap();
            } else {
                write_text(&mut through_log, &record).unwrap();
            }
            assert_eq!(
                without_timestamp(direct, json),
                without_timestamp(through_log, json)
            );
        }
    }

    /// An access line goes straight into the batch only if its bound
    /// fits, so the bound must hold for the worst the fields can carry.
    #[test]
    fn access_lines_stay_within_their_bound() {
        let path = "\u{1}".repeat(256);
        let request_id = "\"".repeat(128);
        let peer = Peer::new(
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535"
                .parse()
                .unwrap(),
        );
        let access = Access {
            at: Instant::now(),
            level: log::Level::Debug,
            method: "OPTIONS",
            path: &path,
            status: 599,
            duration_us: u64::MAX,
            request_id: LoggedId::Given(request_id.as_bytes()),
            trace_id: &[b'f'; 32],
            span_id: &[b'f'; 16],
            remote: Some(&peer),
        };
        for json in [true, false] {
            let mut line = Vec::new();
            push_access(&mut line, json, &access);
            line.push(b'\n');
            assert!(line.len() <= access_line_bound(&access), "{}", line.len());
        }
    }

    #[test]
    fn wall_clock_follows_the_system_clock_and_reads_it_again_each_second() {
        let close = |a: Duration, b: SystemTime| {
            let b = since_epoch(b);
            let gap = a.abs_diff(b);
            assert!(gap < Duration::from_millis(50), "{a:?} vs {b:?}");
        };
        let start = Instant::now();
        let wall = wall_clock(start);
        close(wall, SystemTime::now());
        // Within a second of the reading: the monotonic time is added.
        let later = start + Duration::from_millis(500);
        assert_eq!(wall_clock(later), wall + Duration::from_millis(500));
        // Past a second, the system clock is read again: an instant two
        // seconds ahead gets the clock's time now, not two seconds more.
        close(
            wall_clock(start + Duration::from_secs(2)),
            SystemTime::now(),
        );
    }

    #[test]
    fn peers_are_written_like_display() {
        for address in [
            "127.0.0.1:80",
            "10.200.3.4:65535",
            "0.0.0.0:0",
            "[::1]:8080",
            "[2001:db8::1%3]:1",
            // The longest there is.
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
        ] {
            let parsed: SocketAddr = address.parse().unwrap();
            let peer = Peer::new(parsed);
            assert_eq!(peer.as_bytes(), parsed.to_string().as_bytes());
            // Appended after what the line already holds, and nothing more.
            let mut line = b"remote=".to_vec();
            peer.put(&mut line);
            assert_eq!(line, format!("remote={parsed}").as_bytes());
        }
    }

    #[test]
    fn statuses_are_written_in_decimal() {
        for status in [
            100,
            101,
            200,
            204,
            404,
            499,
            500,
            599,
            999,
            0,
            42,
            1000,
            u16::MAX,
        ] {
            let mut line = Vec::new();
            push_status(&mut line, status);
            assert_eq!(line, status.to_string().as_bytes());
        }
    }
}
