//! `POST /echo`: answers a JSON document back. The worked example of a
//! route that reads a body, in the spirit of go-httpbin's `/anything`.

use hyper::{Request, StatusCode};
use serde_json::json;

use super::openapi::{Content, Operation};
use crate::app::{App, Pending, RequestBody, json};
use crate::body;

/// SECURITY: the largest document `/echo` reads; more is a 413.
pub const MAX_ECHO_BYTES: usize = 64 * 1024;

pub fn echo(app: App, request: Request<RequestBody>) -> Pending {
    Box::pin(async move {
        let timeout = app.config().header_read_timeout;
        match body::read_json(request, MAX_ECHO_BYTES, timeout).await {
            Ok(document) => json(StatusCode::OK, document),
            Err(error) => error.response(),
        }
    })
}

pub fn echo_doc() -> Operation {
    Operation::new("Answers the JSON document it is sent")
        .request_body(json!({}))
        .answer("200", "The document, re-encoded", Content::Json(json!({})))
}
