//! The pieces of a log line: escaping, numbers and timestamps, without
//! `core::fmt`. Shared by both formats, the access line and `exposition`.

use std::cell::Cell;
use std::fmt;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

thread_local! {
    /// A monotonic instant and the system clock's time at it (since the
    /// Unix epoch), for [`wall_clock`].
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
    /// The `YYYY-MM-DDTHH:MM:SS` part of the timestamp, for the last second seen.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Whether `bytes` hold a `"` or a `\\`. `contains` on bytes scans a
/// word at a time.
pub(super) fn has_quote_or_backslash(bytes: &[u8]) -> bool {
    bytes.contains(&b'"') || bytes.contains(&b'\\')
}

/// A target or a field name, in a JSON string. They are module paths and
/// identifiers in pulse's own code: copied as they are, escaped only if one
/// ever is not.
pub(super) fn push_identifier(line: &mut Vec<u8>, name: &str) {
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
pub(super) fn push_key(line: &mut Vec<u8>, key: &str, json: bool) {
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

pub(super) fn push_str_value(line: &mut Vec<u8>, text: &[u8], json: bool) {
    if json {
        push_json_string(line, text);
    } else {
        push_text(line, text);
    }
}

pub(super) fn push_json_string(line: &mut Vec<u8>, text: &[u8]) {
    line.push(b'"');
    push_escaped(line, text);
    line.push(b'"');
}

/// Appends `text` with JSON string escaping (no quotes).
pub(super) fn push_escaped(line: &mut Vec<u8>, bytes: &[u8]) {
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
pub(super) struct Escaping<'a> {
    pub(super) line: &'a mut Vec<u8>,
    pub(super) json: bool,
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
pub(super) fn push_text(line: &mut Vec<u8>, text: &[u8]) {
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

pub(crate) use crate::allocation::put;

/// An HTTP status: three digits (`StatusCode` holds 100 to 999), written
/// without the general loop of [`decimal`].
pub(super) fn push_status(line: &mut Vec<u8>, status: u16) {
    if (100..1000).contains(&status) {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        line.extend_from_slice(&[digit(status / 100), digit(status / 10), digit(status)]);
    } else {
        push_u64(line, u64::from(status));
    }
}

pub(super) fn push_u64(line: &mut Vec<u8>, n: u64) {
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
pub(super) fn wall_clock(at: Instant) -> Duration {
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
pub(super) fn since_epoch(time: SystemTime) -> Duration {
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

pub(super) fn push_millis(line: &mut Vec<u8>, millis: u32) {
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
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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
