//! `GET /openapi.json`: an OpenAPI 3.1 document built from the route table,
//! so it lists exactly the routes, methods, parameters and answers pulse has.

use std::sync::OnceLock;

use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Class, Route, Verb};
use crate::app::{APPLICATION_JSON, App, Body, reply};
use crate::build_info::BUILD;

/// What one route's handler documents about itself.
pub struct Operation {
    pub summary: &'static str,
    /// The schema of the path parameter, if the route has one.
    pub parameter: Option<Value>,
    /// The schema of the JSON request body, if the route reads one.
    pub request_body: Option<Value>,
    /// Status (`200`, `4XX`), description and body.
    pub answers: Vec<(&'static str, &'static str, Content)>,
}

/// The body of an answer.
#[derive(Clone)]
pub enum Content {
    Empty,
    Text,
    Json(Value),
    /// `{"error": "..."}`
    Error,
    Prometheus,
}

impl Operation {
    pub fn new(summary: &'static str) -> Operation {
        Operation {
            summary,
            parameter: None,
            request_body: None,
            answers: Vec::new(),
        }
    }

    pub fn parameter(mut self, schema: Value) -> Operation {
        self.parameter = Some(schema);
        self
    }

    pub fn request_body(mut self, schema: Value) -> Operation {
        self.request_body = Some(schema);
        self
    }

    pub fn answer(
        mut self,
        status: &'static str,
        description: &'static str,
        body: Content,
    ) -> Operation {
        self.answers.push((status, description, body));
        self
    }
}

pub fn document(app: &App, _: Option<&str>) -> Response<Body> {
    // The table is fixed at compile time, and so is the document: built
    // once, with the fault routes only where they exist.
    static DOCUMENTS: [OnceLock<Bytes>; 2] = [OnceLock::new(), OnceLock::new()];
    let faults = app.config().fault_injection;
    let bytes =
        DOCUMENTS[usize::from(faults)].get_or_init(|| Bytes::from(build(faults).to_string()));
    reply(StatusCode::OK, APPLICATION_JSON, Body::from(bytes.clone()))
}

pub fn document_doc() -> Operation {
    Operation::new("This document: OpenAPI 3.1, built from the route table").answer(
        "200",
        "The OpenAPI document",
        Content::Json(json!({"type": "object", "required": ["openapi", "paths"]})),
    )
}

/// The document; `with_faults` includes the fault-injection routes.
pub fn build(with_faults: bool) -> Value {
    let mut paths = Map::new();
    for &route in Route::ALL {
        let Some(row) = route.row() else { continue };
        if row.class == Class::Fault && !with_faults {
            continue;
        }
        let doc = (row.doc)();
        let mut item = Map::new();
        for &verb in row.methods {
            item.insert(
                verb.label().to_ascii_lowercase(),
                operation(route, verb, &doc),
            );
        }
        if let (Some(name), Some(schema)) = (row.parameter, &doc.parameter) {
            item.insert(
                "parameters".to_owned(),
                json!([{"name": name, "in": "path", "required": true, "schema": schema}]),
            );
        }
        paths.insert(row.template.to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pulse",
            "version": BUILD.version,
            "description": "A minimal, production-grade HTTP service. The routes marked (fault injection) exist only with PULSE_FAULT_INJECTION=true.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                    "additionalProperties": false,
                },
            },
            "headers": {
                "X-Request-Id": {"required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 128}},
                "traceparent": {"required": true, "schema": {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$"}},
                "Cache-Control": {"required": true, "schema": {"type": "string"}},
            },
        },
    })
}

fn operation(route: Route, verb: Verb, doc: &Operation) -> Value {
    let head = verb == Verb::Head;
    let mut responses = Map::new();
    for (status, description, content) in &doc.answers {
        responses.insert((*status).to_owned(), answer(description, content, head));
    }
    // The answers pulse adds itself: a bad parameter, a refused body.
    let mut automatic = Vec::new();
    if doc.parameter.is_some() {
        automatic.push(("400", "A malformed path parameter"));
    }
    if doc.request_body.is_some() {
        automatic.extend([
            ("400", "An empty or malformed JSON body"),
            ("408", "The body did not arrive in time"),
            ("413", "The body is over the limit"),
            ("415", "Content-Type is not JSON"),
        ]);
    }
    for (status, description) in automatic {
        responses
            .entry(status)
            .or_insert_with(|| answer(description, &Content::Error, head));
    }
    let mut object = json!({
        "operationId": format!("{}{:?}", verb.label().to_ascii_lowercase(), route),
        "summary": doc.summary,
        "responses": responses,
    });
    if let Some(schema) = &doc.request_body {
        object["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema}},
        });
    }
    object
}

fn answer(description: &str, content: &Content, head: bool) -> Value {
    let headers = json!({
        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
        "traceparent": {"$ref": "#/components/headers/traceparent"},
        "Cache-Control": {"$ref": "#/components/headers/Cache-Control"},
    });
    let media = match content {
        _ if head => None,
        Content::Empty => None,
        Content::Text => Some(("text/plain; charset=utf-8", json!({"type": "string"}))),
        Content::Prometheus => Some((crate::metrics::CONTENT_TYPE, json!({"type": "string"}))),
        Content::Json(schema) => Some(("application/json", schema.clone())),
        Content::Error => Some((
            "application/json",
            json!({"$ref": "#/components/schemas/Error"}),
        )),
    };
    match media {
        None => json!({"description": description, "headers": headers}),
        Some((media_type, schema)) => json!({
            "description": description,
            "headers": headers,
            "content": {media_type: {"schema": schema}},
        }),
    }
}
