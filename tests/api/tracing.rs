//! W3C Trace Context: `traceparent` in and out, `tracestate` passed on
//! within the spec's limits, and the ids in every access-log line.

use std::time::Duration;

use http_body_util::Empty;
use pulse::Config;

use crate::helpers::{Answer, Binary, get, request, send, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn get_with(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Answer {
    let mut builder = request("GET", addr, "/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(addr, builder.body(Empty::new()).unwrap()).await
}

/// (version, trace id, span id, flags) of a response's traceparent.
fn traceparent(answer: &Answer) -> (String, String, String, String) {
    let header = answer
        .header("traceparent")
        .expect("every response carries traceparent");
    let parts: Vec<&str> = header.split('-').collect();
    assert_eq!(parts.len(), 4, "{header}");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{header}");
    (
        parts[0].into(),
        parts[1].into(),
        parts[2].into(),
        parts[3].into(),
    )
}

#[tokio::test]
async fn a_valid_traceparent_is_continued_with_a_new_span() {
    let app = spawn_app(Config::default()).await;
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let answer = get_with(app.addr, &[("traceparent", &incoming)]).await;
    let (version, trace_id, span_id, flags) = traceparent(&answer);
    assert_eq!(version, "00");
    assert_eq!(trace_id, TRACE_ID, "the trace id is kept");
    assert_ne!(span_id, PARENT_ID, "pulse's span is its own");
    assert_eq!(flags, "01", "the caller's sampling decision is kept");
}

#[tokio::test]
async fn an_absent_or_invalid_traceparent_starts_a_new_trace() {
    let app = spawn_app(Config::default()).await;
    let fresh = traceparent(&get(app.addr, "/").await);
    assert_ne!(fresh.1, "0".repeat(32));
    assert_eq!(fresh.3, "00");
    assert_ne!(
        traceparent(&get(app.addr, "/").await).1,
        fresh.1,
        "each request its own trace"
    );
    for invalid in [
        format!("00-{}-{PARENT_ID}-01", TRACE_ID.to_uppercase()),
        format!("00-{}-{PARENT_ID}-01", "0".repeat(32)),
        format!("00-{TRACE_ID}-{}-01", "0".repeat(16)),
        format!("ff-{TRACE_ID}-{PARENT_ID}-01"),
        format!("00-{TRACE_ID}-{PARENT_ID}"),
    ] {
        let answer = get_with(
            app.addr,
            &[("traceparent", &invalid), ("tracestate", "congo=t61")],
        )
        .await;
        assert_eq!(answer.status(), 200);
        let (_, trace_id, _, _) = traceparent(&answer);
        assert_ne!(trace_id.to_lowercase(), TRACE_ID, "{invalid} was continued");
        assert_eq!(
            answer.header("tracestate"),
            None,
            "tracestate kept without a valid traceparent"
        );
    }
}

#[tokio::test]
async fn tracestate_is_passed_on_within_the_spec_limits() {
    let app = spawn_app(Config::default()).await;
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let answer = get_with(
        app.addr,
        &[("traceparent", &incoming), ("tracestate", state)],
    )
    .await;
    assert_eq!(answer.header("tracestate"), Some(state));
    let too_long = format!("a={}", "x".repeat(600));
    let answer = get_with(
        app.addr,
        &[("traceparent", &incoming), ("tracestate", &too_long)],
    )
    .await;
    assert_eq!(
        answer.header("tracestate"),
        None,
        "a tracestate past 512 bytes is dropped"
    );
    let answer = get_with(
        app.addr,
        &[("traceparent", &incoming), ("tracestate", "Bad Key=1")],
    )
    .await;
    assert_eq!(answer.header("tracestate"), None);
    // Several tracestate headers are one list, joined in order.
    let answer = get_with(
        app.addr,
        &[
            ("traceparent", &incoming),
            ("tracestate", "congo=t61"),
            ("tracestate", "rojo=00f0"),
        ],
    )
    .await;
    assert_eq!(answer.header("tracestate"), Some("congo=t61,rojo=00f0"));
}

#[tokio::test]
async fn access_log_lines_carry_the_trace_and_span_ids_in_both_formats() {
    for format in ["json", "text"] {
        let mut pulse = Binary::spawn(
            &format!("trace-log-{format}"),
            &[("PULSE_LOG_FORMAT", format)],
        );
        let addr = pulse.wait_until_listening();
        let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
        let answer = get_with(
            addr,
            &[("traceparent", &incoming), ("x-request-id", "trace-log")],
        )
        .await;
        let (_, trace_id, span_id, _) = traceparent(&answer);
        let line = pulse.wait_for_line("trace-log", Duration::from_secs(5));
        if format == "json" {
            let access: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(access["trace_id"], trace_id.as_str(), "{line}");
            assert_eq!(access["span_id"], span_id.as_str(), "{line}");
            assert_eq!(access["request_id"], "trace-log");
        } else {
            assert!(
                line.contains(&format!("trace_id={trace_id} span_id={span_id}")),
                "{line}"
            );
        }
    }
}
