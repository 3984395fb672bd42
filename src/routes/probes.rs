//! Health probes and the Prometheus scrape: quiet in the logs, never cached,
//! outside the SLI (their rows say `Probe`).

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::RequestContext;
use super::openapi::{Content, Operation};
use crate::build_info::BUILD;
use crate::metrics;
use crate::response::{Body, json, json_error, reply};

pub fn health(ctx: &RequestContext) -> Response<Body> {
    let mut health = json!({
        "status": "healthy",
        "version": BUILD.version,
        "uptime_seconds": ctx.shared().uptime().as_secs(),
    });
    let checks = ctx.state().health();
    if !checks.is_empty() {
        health["checks"] = checks.into();
    }
    json(StatusCode::OK, health)
}

pub fn health_doc() -> Operation {
    Operation::new("Health, version and uptime").answer(
        "200",
        "Healthy",
        Content::Json(json!({
            "type": "object",
            "required": ["status", "version", "uptime_seconds"],
            "properties": {
                "status": {"const": "healthy"},
                "version": {"type": "string"},
                "uptime_seconds": {"type": "integer", "minimum": 0},
                "checks": {
                    "description": "Each dependency's state, when pulse has any: `database` is starting, up or down",
                    "type": "object",
                    "properties": {"database": {"enum": ["starting", "up", "down"]}},
                },
            },
            "additionalProperties": false,
        })),
    )
}

pub fn livez(_: &RequestContext) -> Response<Body> {
    json(StatusCode::OK, json!({"status": "alive"}))
}

pub fn livez_doc() -> Operation {
    Operation::new("Liveness: the process can serve").answer(
        "200",
        "Alive",
        Content::Json(status_schema(&["alive"])),
    )
}

pub fn readyz(ctx: &RequestContext) -> Response<Body> {
    if ctx.shared().is_draining() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"}),
        )
    } else if !ctx.state().is_ready() {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "waiting"}),
        )
    } else {
        json(StatusCode::OK, json!({"status": "ready"}))
    }
}

pub fn readyz_doc() -> Operation {
    Operation::new("Readiness: 503 from the moment shutdown starts, and while a dependency is not ready")
        .answer("200", "Ready", Content::Json(status_schema(&["ready"])))
        .answer(
            "503",
            "Draining before shutdown, or waiting for the database (its first connection and migrations)",
            Content::Json(status_schema(&["draining", "waiting"])),
        )
}

pub fn metrics(ctx: &RequestContext) -> Response<Body> {
    if let Some(token) = ctx.shared().metrics_token() {
        // SECURITY: with PULSE_METRICS_TOKEN set, only `Authorization:
        // Bearer <token>` scrapes (the scheme's case does not matter); the
        // token is compared in constant time, and the 401 says nothing of
        // what was wrong.
        let presented = ctx
            .header(header::AUTHORIZATION)
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credentials)| credentials.trim());
        if !presented.is_some_and(|credentials| token.matches(credentials.as_bytes())) {
            let mut answer = json_error(
                StatusCode::UNAUTHORIZED,
                "/metrics requires Authorization: Bearer with the metrics token",
            );
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return answer;
        }
    }
    reply(
        StatusCode::OK,
        const { HeaderValue::from_static(metrics::CONTENT_TYPE) },
        Body::from(ctx.shared().metrics().render()),
    )
}

pub fn metrics_doc() -> Operation {
    Operation::new("Prometheus metrics")
        .answer(
            "200",
            "The text exposition format 0.0.4",
            Content::Prometheus,
        )
        .answer(
            "401",
            "PULSE_METRICS_TOKEN is set and the request lacks `Authorization: Bearer` with it",
            Content::Error,
        )
        .header("401", "WWW-Authenticate", "`Bearer realm=\"metrics\"`")
}

fn status_schema(values: &[&str]) -> serde_json::Value {
    json!({
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": values}},
        "additionalProperties": false,
    })
}
