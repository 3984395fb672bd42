//! Fault injection, for demos and alert tests: routes that exist only with
//! PULSE_FAULT_INJECTION=true (their rows say `Fault`).

use std::time::Duration;

use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::openapi::{Content, Operation};
use super::{MAX_DELAY, parameter, parse_delay, parse_status};
use crate::app::{App, Body, Pending, RequestBody, json, json_error};

/// `/delay/{ms}`: sleeps, then answers. Async: the sleep must not hold a
/// worker thread.
pub fn delay(_: App, request: Request<RequestBody>) -> Pending {
    let delay = parameter(request.uri().path()).map_or(Err("missing delay"), parse_delay);
    Box::pin(async move {
        match delay {
            Ok(delay) => {
                tokio::time::sleep(delay).await;
                json(StatusCode::OK, json!({"delayed_ms": millis(delay)}))
            }
            Err(reason) => json_error(StatusCode::BAD_REQUEST, reason),
        }
    })
}

pub fn delay_doc() -> Operation {
    Operation::new("Sleeps, then answers (fault injection)")
        .parameter(json!({"type": "integer", "minimum": 0, "maximum": millis(MAX_DELAY)}))
        .answer(
            "200",
            "Slept for the delay",
            Content::Json(json!({
                "type": "object",
                "required": ["delayed_ms"],
                "properties": {"delayed_ms": {"type": "integer", "minimum": 0, "maximum": millis(MAX_DELAY)}},
                "additionalProperties": false,
            })),
        )
}

/// `/status/{code}`: answers with the code asked for.
pub fn status(_: &App, code: Option<&str>) -> Response<Body> {
    match code.map_or(Err("missing status"), parse_status) {
        // These three must not have a body.
        Ok(status) if matches!(status.as_u16(), 204 | 205 | 304) => {
            let mut response = Response::new(Body::default());
            *response.status_mut() = status;
            response
        }
        Ok(status) => json(status, json!({ "status": status.as_u16() })),
        Err(reason) => json_error(StatusCode::BAD_REQUEST, reason),
    }
}

pub fn status_doc() -> Operation {
    let body = Content::Json(json!({
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "integer", "minimum": 200, "maximum": 599}},
        "additionalProperties": false,
    }));
    Operation::new("Answers with the status code asked for (fault injection)")
        .parameter(json!({"type": "integer", "minimum": 200, "maximum": 599}))
        // /status/400 answers like any code; a malformed code is the 400 error.
        .answer(
            "400",
            "The code 400, or a malformed code",
            Content::Json(json!({"anyOf": [
                {"$ref": "#/components/schemas/Error"},
                {"type": "object", "required": ["status"], "properties": {"status": {"const": 400}}, "additionalProperties": false},
            ]})),
        )
        .answer("204", "No Content, no body", Content::Empty)
        .answer("205", "Reset Content, no body", Content::Empty)
        .answer("304", "Not Modified, no body", Content::Empty)
        .answer("2XX", "The code asked for", body.clone())
        .answer("3XX", "The code asked for", body.clone())
        .answer("4XX", "The code asked for", body.clone())
        .answer("5XX", "The code asked for", body)
}

/// `/panic`: the handler panics; pulse answers 500 and carries on.
pub fn panic(_: &App, _: Option<&str>) -> Response<Body> {
    panic!("fault injection: GET /panic")
}

pub fn panic_doc() -> Operation {
    Operation::new("The handler panics; pulse answers 500 (fault injection)").answer(
        "500",
        "The panic, caught",
        Content::Error,
    )
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
