//! `/` and `/version`: what the service is.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::RequestContext;
use super::openapi::{Content, Operation};
use crate::build_info::BUILD;
use crate::response::{Body, json, text};

pub fn root(_: &RequestContext) -> Response<Body> {
    text(StatusCode::OK, "Hello, DevOps!")
}

pub fn root_doc() -> Operation {
    Operation::new("A greeting").answer("200", "Hello, DevOps!", Content::Text)
}

pub fn version(_: &RequestContext) -> Response<Body> {
    json(
        StatusCode::OK,
        json!({
            "version": BUILD.version,
            "commit": BUILD.commit,
            "rustc": BUILD.rustc,
            "target": BUILD.target,
        }),
    )
}

pub fn version_doc() -> Operation {
    Operation::new("The running build").answer(
        "200",
        "Version, commit, compiler and target",
        Content::Json(json!({
            "type": "object",
            "required": ["version", "commit", "rustc", "target"],
            "properties": {
                "version": {"type": "string"},
                "commit": {"type": "string"},
                "rustc": {"type": "string"},
                "target": {"type": "string"},
            },
            "additionalProperties": false,
        })),
    )
}
