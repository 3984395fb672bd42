//! The properties each fuzz target checks. Shared by the targets and by
//! `tests/api/fuzz_corpus.rs`, which replays the committed corpus and the
//! crash regressions on stable Rust in every `cargo test`.

use std::collections::HashMap;

use pulse::config::{self, Config, SETTINGS};
use pulse::routes::{self, Dispatch, MAX_DELAY, Route, Verb};

const VERBS: [Verb; Verb::COUNT] = Verb::ALL;

/// The route table: any method, any path, either fault setting.
pub fn routes(data: &[u8]) {
    let Some((&selector, path)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let verb = VERBS[usize::from(selector) % VERBS.len()];
    let enabled = routes::Enabled {
        faults: selector & 0x80 != 0,
        database: selector & 0x40 != 0,
    };
    let (route, dispatch) = routes::dispatch(verb, path, enabled);
    assert_eq!(
        route == Route::Unmatched,
        matches!(dispatch, Dispatch::NotFound),
        "{path:?}"
    );
    match dispatch {
        Dispatch::Serve(served) => {
            let row = route.row().expect("a served route has a row");
            assert!(std::ptr::eq(row, served));
            assert!(row.methods.contains(verb), "{verb:?} served {path:?}");
            // The path has the row's segments: its fixed text where the row
            // has fixed text, a parameter where it has one.
            let segments: Vec<&str> = match &path[1..] {
                "" => Vec::new(),
                rest => rest.split('/').collect(),
            };
            assert_eq!(segments.len(), row.segments.len(), "{path:?}");
            for (text, segment) in segments.iter().zip(row.segments) {
                if let routes::Segment::Literal(literal) = segment {
                    assert_eq!(text, literal, "{path:?}");
                }
            }
        }
        Dispatch::MethodNotAllowed { allow } => {
            let row = route.row().expect("a 405 route has a row");
            assert!(!row.methods.contains(verb));
            assert_eq!(allow, row.allow);
        }
        _ => {}
    }
    // A class that is off has no route: its paths are unmatched.
    assert!(
        route.row().is_none_or(|row| enabled.serves(row.class)),
        "{path:?}"
    );
    assert!(route.label() == "unmatched" || route.label().starts_with('/'));
}

/// `/delay/{ms}` and `/status/{code}` parameters.
pub fn route_params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(delay) = routes::parse_delay(text) {
        assert!(delay <= MAX_DELAY);
        assert!(text.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Ok(code) = routes::parse_status(text) {
        assert!((200..=599).contains(&code.as_u16()));
        assert_eq!(code.as_str(), text);
    }
}

/// Incoming `X-Request-Id` values.
pub fn request_id(data: &[u8]) {
    if pulse::request_id::is_acceptable(data) {
        assert!(!data.is_empty() && data.len() <= pulse::request_id::MAX_LEN);
        assert!(data.iter().all(|b| b.is_ascii_graphic()));
        // An accepted id must be a valid header value to echo back.
        assert!(hyper::header::HeaderValue::from_bytes(data).is_ok());
    }
}

/// The W3C trace-context parsers: an accepted `traceparent` round-trips
/// through pulse's own header, and an accepted `tracestate` stays within the
/// spec's limits and is a valid header value.
pub fn trace_context(data: &[u8]) {
    use pulse::trace_context::{self, SpanContext};

    if let Some(parent) = trace_context::parse_traceparent(data) {
        assert!(data.len() >= 55);
        assert!(
            data[..55]
                .iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || *b == b'-')
        );
        assert_ne!(parent.trace_id, [0; 16]);
        assert_ne!(parent.span_id, [0; 8]);
        let span = SpanContext::new(
            Some(parent),
            &pulse::request_id::IdGenerator::default(),
            None,
        );
        let header = span.traceparent();
        let reparsed =
            trace_context::parse_traceparent(header.as_bytes()).expect("pulse's own traceparent");
        assert_eq!(reparsed.trace_id, parent.trace_id);
        assert_eq!(&header.as_bytes()[3..35], &data[3..35]);
    }
    if trace_context::is_valid_tracestate(data) {
        assert!(data.len() <= trace_context::MAX_TRACESTATE_BYTES);
        assert!(hyper::header::HeaderValue::from_bytes(data).is_ok());
        let members = data
            .split(|&b| b == b',')
            .filter(|m| m.iter().any(|b| *b != b' ' && *b != b'\t'))
            .count();
        assert!((1..=trace_context::MAX_TRACESTATE_MEMBERS).contains(&members));
    }
}

/// The `.env` parser.
pub fn dotenv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pulse::dotenv::parse(text) {
        Ok(pairs) => {
            for (name, _) in pairs {
                assert!(!name.is_empty() && !name.as_bytes()[0].is_ascii_digit());
                assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            }
        }
        Err(error) => {
            assert!(error.line >= 1 && error.line <= text.lines().count().max(1));
            assert!(!error.reason.contains('\n'), "error messages are one line");
        }
    }
}

/// Config values: each line of the input sets one documented variable.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut values = HashMap::new();
    for (line, value) in text.lines().enumerate() {
        values.insert(SETTINGS[line % SETTINGS.len()].name, value.to_owned());
    }
    match Config::from_lookup(|name| values.get(name).cloned()) {
        Ok(config) => {
            assert!(config.max_connections >= 1);
            assert!(!config.header_read_timeout.is_zero());
            assert!(config::is_valid_log_filter(&config.log_filter));
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("expected"), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
    let _ = config::parse_duration(text);
    let _ = config::is_valid_log_filter(text);
}
