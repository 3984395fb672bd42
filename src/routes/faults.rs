//! Fault injection, for demos and alert tests: routes that exist only with
//! PULSE_FAULT_INJECTION=true (their rows say `Fault`).

use std::time::Duration;

use hyper::{Response, StatusCode};
use serde_json::json;

use super::RequestContext;
use super::openapi::{Content, Operation};
use crate::response::{Body, Pending, RequestBody, json, json_error};

/// The longest `/delay/{ms}` pulse sleeps; a larger value is a 400.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// `/delay/{ms}`: sleeps, then answers. Async: the sleep must not hold a
/// worker thread.
pub fn delay(ctx: &RequestContext, _: RequestBody) -> Pending {
    let delay = ctx.param("ms").map_or(Err("missing delay"), parse_delay);
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
        .parameter("ms", json!({"type": "integer", "minimum": 0, "maximum": millis(MAX_DELAY)}))
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
pub fn status(ctx: &RequestContext) -> Response<Body> {
    match ctx
        .param("code")
        .map_or(Err("missing status"), parse_status)
    {
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
        .parameter("code", json!({"type": "integer", "minimum": 200, "maximum": 599}))
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
pub fn panic(_: &RequestContext) -> Response<Body> {
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

/// `/delay/{ms}`: whole milliseconds, at most [`MAX_DELAY`].
pub fn parse_delay(text: &str) -> Result<Duration, &'static str> {
    const REASON: &str = "delay must be whole milliseconds from 0 to 10000, such as /delay/250";
    // SECURITY: bound the digits before parsing, so no input is slow to reject.
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(REASON);
    }
    let millis: u64 = text.parse().map_err(|_| REASON)?;
    let delay = Duration::from_millis(millis);
    if delay > MAX_DELAY {
        return Err(REASON);
    }
    Ok(delay)
}

/// `/status/{code}`: a status code from 200 to 599.
pub fn parse_status(text: &str) -> Result<StatusCode, &'static str> {
    const REASON: &str = "status must be a code from 200 to 599, such as /status/503";
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(REASON);
    }
    let code: u16 = text.parse().map_err(|_| REASON)?;
    if !(200..=599).contains(&code) {
        return Err(REASON);
    }
    StatusCode::from_u16(code).map_err(|_| REASON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_and_are_bounded() {
        assert_eq!(parse_delay("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay("10000"), Ok(MAX_DELAY));
        assert!(parse_delay("10001").is_err());
        assert_eq!(parse_status("418"), Ok(StatusCode::IM_A_TEAPOT));
        for bad in ["", "-1", "1.5", "999999999999999999999"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
        for bad in ["199", "600", "20", "2000", "abc"] {
            assert!(parse_status(bad).is_err(), "{bad}");
        }
    }
}
