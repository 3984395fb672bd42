//! env_logger with two formats: `text` for people, `json` for collectors.
//!
//! Both write one line per event to stdout, which is where container
//! platforms (Knative, Cloud Run, podman) collect logs. The JSON format is one
//! object per line: `ts` (RFC 3339, UTC), `level`, `target`, `msg`, then the
//! event's structured fields, such as the access log's `status` and
//! `duration_ms`, as top-level keys with their JSON types.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, Key, Value, VisitSource};

use crate::config::{Config, LogFormat};

/// Installs the global logger. Fails only if a logger is already installed.
pub fn init(config: &Config) -> Result<(), log::SetLoggerError> {
    let mut builder = env_logger::Builder::new();
    builder
        .parse_filters(&config.log_filter)
        .target(env_logger::Target::Stdout);
    match config.log_format {
        LogFormat::Text => builder.format(write_text),
        LogFormat::Json => builder.format(write_json),
    };
    builder.try_init()
}

/// Sends panic messages through the logger, so that in JSON mode a panic is
/// one parseable line like every other event.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        log::error!(target: "pulse::panic", location = location.as_str(); "panicked: {message}");
    }));
}

/// `2026-11-26T07:32:00.123Z INFO  pulse::access: request method=GET ...`
pub fn write_text(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    write_timestamp(out, SystemTime::now())?;
    write!(
        out,
        " {:<5} {}: {}",
        record.level(),
        record.target(),
        record.args()
    )?;
    let mut fields = TextFields { out, error: None };
    // A visitor error can only come from our own writer; it is kept in `error`.
    let _ = record.key_values().visit(&mut fields);
    if let Some(e) = fields.error {
        return Err(e);
    }
    out.write_all(b"\n")
}

/// `{"ts":"...","level":"INFO","target":"pulse::access","msg":"request",...}`
pub fn write_json(out: &mut impl Write, record: &log::Record<'_>) -> io::Result<()> {
    out.write_all(b"{\"ts\":\"")?;
    write_timestamp(out, SystemTime::now())?;
    write!(out, "\",\"level\":\"{}\",\"target\":", record.level())?;
    write_json_string(out, format_args!("{}", record.target()))?;
    out.write_all(b",\"msg\":")?;
    write_json_string(out, *record.args())?;
    let mut fields = JsonFields { out, error: None };
    let _ = record.key_values().visit(&mut fields);
    if let Some(e) = fields.error {
        return Err(e);
    }
    out.write_all(b"}\n")
}

struct TextFields<'a, W> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<'kvs, W: Write> VisitSource<'kvs> for TextFields<'_, W> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        write!(self.out, " {key}={value}").map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

struct JsonFields<'a, W> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<'kvs, W: Write> VisitSource<'kvs> for JsonFields<'_, W> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let result = (|| {
            self.out.write_all(b",")?;
            write_json_string(self.out, format_args!("{key}"))?;
            self.out.write_all(b":")?;
            // Numbers and booleans keep their JSON type, so a collector can
            // aggregate `duration_ms` without parsing strings.
            if let Some(n) = value.to_u64() {
                write!(self.out, "{n}")
            } else if let Some(n) = value.to_i64() {
                write!(self.out, "{n}")
            } else if let Some(n) = value.to_f64().filter(|n| n.is_finite()) {
                write!(self.out, "{n}")
            } else if let Some(b) = value.to_bool() {
                write!(self.out, "{b}")
            } else {
                write_json_string(self.out, format_args!("{value}"))
            }
        })();
        result.map_err(|e| {
            self.error = Some(e);
            kv::Error::msg("write failed")
        })
    }
}

/// Writes formatted text as a quoted JSON string, escaping on the fly, so no
/// intermediate String is allocated per log line.
pub fn write_json_string(out: &mut impl Write, text: fmt::Arguments<'_>) -> io::Result<()> {
    out.write_all(b"\"")?;
    let mut escaper = JsonEscaper { out, error: None };
    if escaper.write_fmt(text).is_err() {
        return Err(escaper
            .error
            .unwrap_or_else(|| io::Error::other("formatting failed")));
    }
    out.write_all(b"\"")
}

struct JsonEscaper<'a, W> {
    out: &'a mut W,
    error: Option<io::Error>,
}

impl<W: Write> fmt::Write for JsonEscaper<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut plain_from = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escape: &[u8] = match byte {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            let result = self
                .out
                .write_all(&text.as_bytes()[plain_from..i])
                .and_then(|()| {
                    if escape.is_empty() {
                        write!(self.out, "\\u{byte:04x}")
                    } else {
                        self.out.write_all(escape)
                    }
                });
            if let Err(e) = result {
                self.error = Some(e);
                return Err(fmt::Error);
            }
            plain_from = i + 1;
        }
        self.out
            .write_all(&text.as_bytes()[plain_from..])
            .map_err(|e| {
                self.error = Some(e);
                fmt::Error
            })
    }
}

/// Writes `time` as RFC 3339 in UTC with milliseconds.
pub fn write_timestamp(out: &mut impl Write, time: SystemTime) -> io::Result<()> {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
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
    use std::time::Duration;

    fn timestamp(seconds: u64, millis: u64) -> String {
        let mut out = Vec::new();
        let time = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis);
        write_timestamp(&mut out, time).unwrap();
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
}
