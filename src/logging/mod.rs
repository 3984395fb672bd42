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
//!
//! The parts: `writer` (the batch and the thread that writes it), `access`
//! (the access line, written straight into the batch), `format` (escaping,
//! numbers and timestamps, shared by both formats and by `exposition`).

mod access;
mod format;
mod writer;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use log::kv::{self, Key, Value, VisitSource};

pub use access::{Access, LoggedId, Peer, access};
use format::{
    Escaping, push_escaped, push_identifier, push_key, push_str_value, push_text, push_u64, put,
    since_epoch,
};
pub use format::{decimal, push_timestamp};
pub use writer::{BUFFER_CAP, FLUSH_INTERVAL, FlushOnDrop, WRITE_SOON, dropped_lines, flush};
use writer::{BatchedStdout, batch, write_forever};

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
    access::set_format(format);
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

pub(super) fn with_line(out: &mut impl Write, build: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
