//! The access line: one per answered request, written straight into the
//! log batch.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use super::LogFormat;
use super::format::{
    has_quote_or_backslash, push_json_string, push_status, push_str_value, push_timestamp,
    push_u64, put, wall_clock,
};
use super::with_line;
use super::writer::{BUFFER_CAP, BatchedStdout, batch};

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

/// Called by `init`, with pulse's own logger installed: from then on the
/// access log writes into its batch.
pub(super) fn set_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

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

// The pieces of an access line, as macros taking the line and whether it
// is JSON. Keys are literals, copied whole; of the values only the path and
// the request id, which a client chose, can need escaping: the method, the
// ids pulse wrote in hex and the address are plain. One copy per branch: a
// literal of a length known when compiling is copied with a few moves,
// where one chosen at run time (`if json { a } else { b }` as the argument)
// is a call to musl's `memcpy`, whose `rep movs` costs about 10 ns even for
// ten bytes.
macro_rules! literal {
    ($line:expr, $json:expr, $json_text:expr, $text:expr) => {
        if $json {
            $line.extend_from_slice($json_text.as_bytes())
        } else {
            $line.extend_from_slice($text.as_bytes())
        }
    };
}

macro_rules! key {
    ($line:expr, $json:expr, $name:literal) => {
        literal!(
            $line,
            $json,
            concat!(",\"", $name, "\":"),
            concat!(" ", $name, "=")
        )
    };
}

/// The head as `push_json_head` and `push_text_head` write it, with the
/// level, the target, the message and the first key in one literal.
macro_rules! head {
    ($line:expr, $json:expr, $level:literal, $padded:literal) => {
        literal!(
            $line,
            $json,
            concat!(
                "\",\"level\":\"",
                $level,
                "\",\"target\":\"pulse::access\",\"msg\":\"request\",\"method\":\""
            ),
            concat!(" ", $padded, " pulse::access: request method=")
        )
    };
}

/// Appends the access line, without its newline.
fn push_access(line: &mut Vec<u8>, json: bool, fields: &Access<'_>) {
    if json {
        line.extend_from_slice(b"{\"ts\":\"");
    }
    push_timestamp(line, wall_clock(fields.at));
    match fields.level {
        log::Level::Error => head!(line, json, "ERROR", "ERROR"),
        log::Level::Warn => head!(line, json, "WARN", "WARN "),
        log::Level::Info => head!(line, json, "INFO", "INFO "),
        log::Level::Debug => head!(line, json, "DEBUG", "DEBUG"),
        log::Level::Trace => head!(line, json, "TRACE", "TRACE"),
    }
    put(line, fields.method.as_bytes());
    quote(line, json);
    key!(line, json, "path");
    push_str_value(line, fields.path.as_bytes(), json);
    key!(line, json, "status");
    push_status(line, fields.status);
    key!(line, json, "duration_us");
    push_u64(line, fields.duration_us);
    push_ids(line, json, fields);
    key!(line, json, "remote");
    quote(line, json);
    match fields.remote {
        Some(peer) => peer.put(line),
        None => line.push(b'-'),
    }
    quote(line, json);
    if json {
        line.push(b'}');
    }
}

/// The request id, trace id and span id of an access line.
#[inline(always)]
fn push_ids(line: &mut Vec<u8>, json: bool, fields: &Access<'_>) {
    key!(line, json, "request_id");
    match fields.request_id {
        LoggedId::Made(id) => fixed(line, json, id),
        // Visible ASCII: only a quote or a backslash needs escaping, and
        // only in JSON. A scan for those two is cheaper than the general
        // escaper.
        LoggedId::Given(id) if json && has_quote_or_backslash(id) => push_json_string(line, id),
        LoggedId::Given(id) => {
            quote(line, json);
            put(line, id);
            quote(line, json);
        }
    }
    key!(line, json, "trace_id");
    fixed(line, json, fields.trace_id);
    key!(line, json, "span_id");
    fixed(line, json, fields.span_id);
}

/// A JSON string's quote; nothing in text.
#[inline(always)]
fn quote(line: &mut Vec<u8>, json: bool) {
    if json {
        line.push(b'"');
    }
}

/// An array of a length known when compiling, copied with a few moves.
#[inline(always)]
fn fixed<const N: usize>(line: &mut Vec<u8>, json: bool, value: &[u8; N]) {
    quote(line, json);
    line.extend_from_slice(value);
    quote(line, json);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{write_json, write_text};
    use log::kv::Value;

    /// The access line is written without `log`'s record: it must be the
    /// line the record with the same fields gives, in both formats.
    #[test]
    fn the_access_line_is_the_line_its_log_record_would_give() {
        // A caller's id may hold quotes and backslashes; pulse's are hex.
        let made = b"4bf92f3577b34da6a3ce929d0e0e4736"; // pragma: allowlist secret (W3C's example trace id)
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
}
