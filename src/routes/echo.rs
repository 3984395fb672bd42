//! `POST /echo`: answers a JSON document back. The worked example of a
//! route that reads a body, in the spirit of go-httpbin's `/anything`.

use hyper::StatusCode;
use serde_json::json;

use super::RequestContext;
use super::openapi::{Content, Operation};
use crate::body;
use crate::response::{Pending, RequestBody, json};

/// SECURITY: the largest document `/echo` reads; more is a 413.
pub const MAX_ECHO_BYTES: usize = 64 * 1024;

pub fn echo(ctx: &RequestContext, request_body: RequestBody) -> Pending {
    let document = body::read_json(ctx, request_body, MAX_ECHO_BYTES);
    Box::pin(async move {
        match document.await {
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
