//! W3C Trace Context Level 1 (`traceparent`, `tracestate`): pulse continues
//! a caller's trace or starts a new one, gives each request a span of its
//! own, answers with that span in `traceparent`, and logs the ids, so logs
//! and traces join on `trace_id`.

use hyper::header::{HeaderName, HeaderValue};

use crate::hex::write_hex;
use crate::request_id::IdGenerator;

// Constants, not statics: a const is built when compiling, and cloning a
// static custom name calls through `Bytes`' vtable (perf put a tenth of
// `App::finish` there when the response headers were inserted that way).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// SECURITY: the longest `tracestate` passed on, and its most list members
/// (the spec's limits); a longer or malformed one is dropped, as the spec
/// allows, so a caller cannot make pulse echo kilobytes.
pub const MAX_TRACESTATE_BYTES: usize = 512;
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The sampled bit of `trace-flags`.
const SAMPLED: u8 = 0x01;

/// What a valid incoming `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// Parses a `traceparent` header: `00-<32 hex trace id>-<16 hex parent id>-<2
/// hex flags>`, lowercase only, neither id all zeros, version `ff` invalid.
/// A higher version is read by its version-00 prefix, as the spec asks, if
/// it is at least as long and what follows is `-`. None for anything else:
/// the request then starts a new trace.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    const LENGTH: usize = 55;
    if value.len() < LENGTH {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    match version {
        0x00 if value.len() != LENGTH => return None,
        0xff => return None,
        0x00 => {}
        _ if value.len() > LENGTH && value[LENGTH] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, byte) in trace_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
    }
    let mut span_id = [0u8; 8];
    for (i, byte) in span_id.iter_mut().enumerate() {
        *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        flags,
    })
}

/// Whether a `tracestate` may be passed on: at most 512 bytes and 32
/// members, each `key=value` with the spec's characters, keys unique.
pub fn is_valid_tracestate(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > MAX_TRACESTATE_BYTES {
        return false;
    }
    let mut keys: Vec<&[u8]> = Vec::new();
    for member in value.split(|&b| b == b',') {
        let member = trim_spaces(member);
        if member.is_empty() {
            continue; // empty list members are allowed and ignored
        }
        let Some(equals) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..equals], &member[equals + 1..]);
        if !is_tracestate_key(key) || !is_tracestate_value(value) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return false;
        }
    }
    !keys.is_empty()
}

/// `key = simple-key / multi-tenant-key`: lowercase letters, digits, `_-*/`,
/// starting with a letter (or a digit, for a tenant id), at most 256
/// characters, with at most one `@` splitting tenant and system.
fn is_tracestate_key(key: &[u8]) -> bool {
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(b);
    let part = |part: &[u8], max: usize, first_digit_ok: bool| {
        !part.is_empty()
            && part.len() <= max
            && (part[0].is_ascii_lowercase() || (first_digit_ok && part[0].is_ascii_digit()))
            && part.iter().all(allowed)
    };
    match key.iter().position(|&b| b == b'@') {
        None => part(key, 256, false),
        Some(at) => part(&key[..at], 241, true) && part(&key[at + 1..], 14, false),
    }
}

/// `value`: 1 to 256 printable ASCII characters but `,` and `=`, not ending
/// in a space.
fn is_tracestate_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Two lowercase hex digits.
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// pulse's span for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span; None when pulse started the trace.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether the span is recorded, and flagged so downstream.
    pub sampled: bool,
}

impl SpanContext {
    /// Continues `parent`'s trace with a new span, or starts a new trace.
    ///
    /// `sampler` is None while pulse exports no spans: a continued trace then
    /// keeps its caller's decision, and a new one is not sampled, since
    /// nothing records it.
    pub fn new(
        parent: Option<Parent>,
        ids: &IdGenerator,
        sampler: Option<&Sampler>,
    ) -> SpanContext {
        let span_id = nonzero(|| ids.random_u64()).to_be_bytes();
        let (trace_id, parent_span_id) = match parent {
            Some(parent) => (parent.trace_id, Some(parent.span_id)),
            None => {
                let mut trace_id = [0u8; 16];
                trace_id[..8].copy_from_slice(&nonzero(|| ids.random_u64()).to_be_bytes());
                trace_id[8..].copy_from_slice(&ids.random_u64().to_be_bytes());
                (trace_id, None)
            }
        };
        let sampled = match sampler {
            Some(sampler) => sampler.samples(parent, &trace_id),
            None => parent.is_some_and(|parent| parent.flags & SAMPLED != 0),
        };
        SpanContext {
            trace_id,
            span_id,
            parent_span_id,
            sampled,
        }
    }

    /// A new span of this trace whose parent is this one (a database query
    /// of this request), sampled as this one is.
    pub fn child(&self, ids: &IdGenerator) -> SpanContext {
        SpanContext {
            trace_id: self.trace_id,
            span_id: nonzero(|| ids.random_u64()).to_be_bytes(),
            parent_span_id: Some(self.span_id),
            sampled: self.sampled,
        }
    }

    /// `00-<trace id>-<span id>-<flags>`: the `traceparent` pulse answers with.
    pub fn traceparent(&self) -> HeaderValue {
        Traceparent::of(self).header()
    }
}

/// Which spans are recorded: OpenTelemetry's built-in samplers, named as
/// `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// A continued trace follows its caller's sampled flag (`parentbased_*`).
    pub parent_based: bool,
    /// The decision for a new trace (or every trace, if not parent-based).
    pub root: RootSampler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// Samples a trace when the low 63 bits of its id's last 8 bytes are
    /// below `threshold`, the ratio scaled to 2^63, as OpenTelemetry's SDKs
    /// do: every service with the same ratio keeps the same traces.
    TraceIdRatio {
        threshold: u64,
    },
}

impl Default for Sampler {
    /// `parentbased_always_on`, OpenTelemetry's default.
    fn default() -> Self {
        Sampler {
            parent_based: true,
            root: RootSampler::AlwaysOn,
        }
    }
}

/// A `traceidratio` threshold is the ratio scaled to 2^63.
const RATIO_SCALE: f64 = (1u64 << 63) as f64;

/// As `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` would write it:
/// `parentbased_traceidratio:0.25`.
impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parent_based {
            f.write_str("parentbased_")?;
        }
        match self.root {
            RootSampler::AlwaysOn => f.write_str("always_on"),
            RootSampler::AlwaysOff => f.write_str("always_off"),
            RootSampler::TraceIdRatio { threshold } => {
                write!(f, "traceidratio:{}", threshold as f64 / RATIO_SCALE)
            }
        }
    }
}

impl Sampler {
    /// The `OTEL_TRACES_SAMPLER` values pulse knows.
    pub const NAMES: &str = "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio";

    /// The sampler `name` stands for, with `ratio` (0 to 1) for the ratio ones.
    pub fn from_name(name: &str, ratio: f64) -> Option<Sampler> {
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name),
        };
        let root = match root {
            "always_on" => RootSampler::AlwaysOn,
            "always_off" => RootSampler::AlwaysOff,
            // The float-to-int cast saturates: a ratio of 1 keeps every trace.
            "traceidratio" => RootSampler::TraceIdRatio {
                threshold: (ratio * RATIO_SCALE) as u64,
            },
            _ => return None,
        };
        Some(Sampler { parent_based, root })
    }

    pub fn samples(&self, parent: Option<Parent>, trace_id: &[u8; 16]) -> bool {
        match parent {
            Some(parent) if self.parent_based => parent.flags & SAMPLED != 0,
            _ => match self.root {
                RootSampler::AlwaysOn => true,
                RootSampler::AlwaysOff => false,
                RootSampler::TraceIdRatio { threshold } => {
                    let mut low = [0u8; 8];
                    low.copy_from_slice(&trace_id[8..]);
                    (u64::from_be_bytes(low) >> 1) < threshold
                }
            },
        }
    }
}

/// A span's `traceparent` text, formatted once for both the response
/// header and the access log.
pub struct Traceparent([u8; 55]);

impl Traceparent {
    pub fn of(span: &SpanContext) -> Traceparent {
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        write_hex(&mut text[3..35], &span.trace_id);
        text[35] = b'-';
        write_hex(&mut text[36..52], &span.span_id);
        text[52..].copy_from_slice(if span.sampled { b"-01" } else { b"-00" });
        Traceparent(text)
    }

    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// The whole `00-<trace id>-<span id>-<flags>` text.
    pub fn text(&self) -> &[u8; 55] {
        &self.0
    }

    /// The trace id, 32 lowercase hex characters.
    pub fn trace_id(&self) -> &[u8; 32] {
        self.0[3..35].try_into().unwrap_or(&[b'0'; 32])
    }

    /// The span id, 16 lowercase hex characters.
    pub fn span_id(&self) -> &[u8; 16] {
        self.0[36..52].try_into().unwrap_or(&[b'0'; 16])
    }
}

fn nonzero(mut draw: impl FnMut() -> u64) -> u64 {
    loop {
        let value = draw();
        if value != 0 {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read() {
        let parent = parse_traceparent(VALID).expect("valid");
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.span_id[7], 0xb7);
        assert_eq!(parent.flags, 1);
        // A future version is read by its version-00 prefix.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..], // uppercase
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",      // zero trace id
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",      // zero parent id
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      // version ff
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",     // v00 too long
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",     // v01, no dash
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",         // short
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      // separator
            b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",      // not hex
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tracestate_within_the_spec_passes_and_beyond_it_is_dropped() {
        assert!(is_valid_tracestate(
            b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        ));
        assert!(is_valid_tracestate(b"tenant@vendor=x , other=y"));
        assert!(!is_valid_tracestate(b"Upper=x"));
        assert!(!is_valid_tracestate(b"a=x,a=y"));
        assert!(!is_valid_tracestate(b"novalue"));
        assert!(!is_valid_tracestate(b"a=with,comma"));
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!is_valid_tracestate(members.join(",").as_bytes()));
        assert!(!is_valid_tracestate(
            format!("a={}", "x".repeat(600)).as_bytes()
        ));
    }

    #[test]
    fn a_span_continues_its_parent_or_starts_a_trace() {
        let ids = IdGenerator::default();
        let parent = parse_traceparent(VALID).unwrap();
        let span = SpanContext::new(Some(parent), &ids, None);
        assert_eq!(span.trace_id, parent.trace_id);
        assert_eq!(span.parent_span_id, Some(parent.span_id));
        assert_ne!(span.span_id, parent.span_id);
        assert!(span.sampled);
        let header = span.traceparent();
        let reparsed = parse_traceparent(header.as_bytes()).expect("pulse's own header is valid");
        assert_eq!(
            (reparsed.trace_id, reparsed.span_id),
            (span.trace_id, span.span_id)
        );

        let root = SpanContext::new(None, &ids, None);
        assert_eq!(root.parent_span_id, None);
        assert_ne!(root.trace_id, [0; 16]);
        assert_ne!(root.trace_id, SpanContext::new(None, &ids, None).trace_id);
        assert!(root.traceparent().as_bytes().ends_with(b"-00"));
    }

    #[test]
    fn samplers_decide_as_opentelemetry_names_them() {
        let ids = IdGenerator::default();
        let unsampled = Parent {
            flags: 0,
            ..parse_traceparent(VALID).unwrap()
        };
        let on = Sampler::from_name("parentbased_always_on", 1.0).unwrap();
        assert_eq!(on, Sampler::default());
        assert!(SpanContext::new(None, &ids, Some(&on)).sampled);
        assert!(!SpanContext::new(Some(unsampled), &ids, Some(&on)).sampled);
        let always = Sampler::from_name("always_on", 1.0).unwrap();
        assert!(SpanContext::new(Some(unsampled), &ids, Some(&always)).sampled);
        let off = Sampler::from_name("always_off", 1.0).unwrap();
        assert!(!SpanContext::new(None, &ids, Some(&off)).sampled);
        assert_eq!(Sampler::from_name("jaeger_remote", 1.0), None);

        // A quarter of new traces, decided by the trace id alone.
        let quarter = Sampler::from_name("traceidratio", 0.25).unwrap();
        let kept = (0..20_000)
            .filter(|_| SpanContext::new(None, &ids, Some(&quarter)).sampled)
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 20000");
        let none = Sampler::from_name("traceidratio", 0.0).unwrap();
        let all = Sampler::from_name("traceidratio", 1.0).unwrap();
        let trace_id = [0xff; 16];
        assert!(!none.samples(None, &trace_id));
        assert!(all.samples(None, &trace_id));
    }
}
