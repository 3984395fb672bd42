//! `GET /openapi.json`: an OpenAPI 3.1 document built from the route table,
//! so it lists exactly the routes, methods, parameters and answers pulse has.

use std::sync::OnceLock;

use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use super::RequestContext;
use super::{Enabled, Route, Verb};
use crate::build_info::BUILD;
use crate::response::{APPLICATION_JSON, Body, reply};

/// What one route's handler documents about itself.
pub struct Operation {
    pub summary: &'static str,
    /// Each path parameter's name and schema.
    pub parameters: Vec<(&'static str, Value)>,
    /// The schema of the JSON request body, if the route reads one.
    pub request_body: Option<Value>,
    /// Status (`200`, `4XX`), description and body.
    pub answers: Vec<(&'static str, &'static str, Content)>,
    /// Headers an answer carries beyond pulse's own: status, name, description.
    pub headers: Vec<(&'static str, &'static str, &'static str)>,
    /// A row serving several methods that differ: each one's own operation.
    pub methods: Vec<(Verb, Operation)>,
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
            parameters: Vec::new(),
            request_body: None,
            answers: Vec::new(),
            headers: Vec::new(),
            methods: Vec::new(),
        }
    }

    /// The operation of `verb` on a row that serves several methods, when
    /// they differ (`GET /notes` lists, `POST /notes` creates). HEAD takes
    /// GET's. The path parameters stay this operation's.
    pub fn method(mut self, verb: Verb, operation: Operation) -> Operation {
        self.methods.push((verb, operation));
        self
    }

    pub fn of(&self, verb: Verb) -> &Operation {
        let verb = if verb == Verb::Head { Verb::Get } else { verb };
        self.methods
            .iter()
            .find(|(documented, _)| *documented == verb)
            .map_or(self, |(_, operation)| operation)
    }

    /// The schema of the path parameter `name` (`{name}` in the row).
    pub fn parameter(mut self, name: &'static str, schema: Value) -> Operation {
        self.parameters.push((name, schema));
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

    /// A header the `status` answer carries, such as `Location` on a 201.
    /// The handler sets it with `response.headers_mut().insert(...)`.
    pub fn header(
        mut self,
        status: &'static str,
        name: &'static str,
        description: &'static str,
    ) -> Operation {
        self.headers.push((status, name, description));
        self
    }
}

pub fn document(ctx: &RequestContext) -> Response<Body> {
    // The table is fixed at compile time, and so is the document: built
    // once for each set of optional routes, with each only where it exists.
    static DOCUMENTS: [OnceLock<Bytes>; 4] = [const { OnceLock::new() }; 4];
    let enabled = Enabled::of(ctx.config());
    let slot = usize::from(enabled.faults) + 2 * usize::from(enabled.database);
    let bytes = DOCUMENTS[slot].get_or_init(|| Bytes::from(build(enabled).to_string()));
    reply(StatusCode::OK, APPLICATION_JSON, Body::from(bytes.clone()))
}

pub fn document_doc() -> Operation {
    Operation::new("This document: OpenAPI 3.1, built from the route table").answer(
        "200",
        "The OpenAPI document",
        Content::Json(json!({"type": "object", "required": ["openapi", "paths"]})),
    )
}

/// The document, with the optional routes `enabled` serves.
pub fn build(enabled: Enabled) -> Value {
    let mut paths = Map::new();
    for &route in Route::ALL {
        let Some(row) = route.row() else { continue };
        if !enabled.serves(row.class) {
            continue;
        }
        let doc = (row.doc)();
        let mut item = Map::new();
        for verb in row.methods.iter() {
            item.insert(
                verb.label().to_ascii_lowercase(),
                operation(route, verb, &doc),
            );
        }
        let parameters: Vec<Value> = row
            .parameters()
            .map(|name| {
                let schema = doc
                    .parameters
                    .iter()
                    .find(|(documented, _)| *documented == name)
                    .map_or_else(|| json!({"type": "string"}), |(_, schema)| schema.clone());
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        if !parameters.is_empty() {
            item.insert("parameters".to_owned(), Value::Array(parameters));
        }
        paths.insert(row.template.to_owned(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pulse",
            "version": BUILD.version,
            "description": "A minimal, production-grade HTTP service. The fault-injection routes exist only with PULSE_FAULT_INJECTION=true, and the /notes routes only with PULSE_DATABASE_URL set.",
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

fn operation(route: Route, verb: Verb, row_doc: &Operation) -> Value {
    let head = verb == Verb::Head;
    let doc = row_doc.of(verb);
    let mut responses = Map::new();
    for (status, description, content) in &doc.answers {
        let extra = doc.headers.iter().filter(|(of, _, _)| of == status);
        responses.insert(
            (*status).to_owned(),
            answer(description, content, head, extra),
        );
    }
    // The answers pulse adds itself: a bad parameter, a refused body. A
    // body method reads its body with `body::read_json`, whose refusals
    // every such operation lists, request body documented or not.
    let mut automatic = Vec::new();
    if !row_doc.parameters.is_empty() {
        automatic.push(("400", "A malformed path parameter"));
    }
    if matches!(verb, Verb::Post | Verb::Put | Verb::Patch) {
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
            .or_insert_with(|| answer(description, &Content::Error, head, [].iter()));
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

fn answer<'a>(
    description: &str,
    content: &Content,
    head: bool,
    extra_headers: impl Iterator<Item = &'a (&'static str, &'static str, &'static str)>,
) -> Value {
    let mut headers = json!({
        "X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
        "traceparent": {"$ref": "#/components/headers/traceparent"},
        "Cache-Control": {"$ref": "#/components/headers/Cache-Control"},
    });
    for (_, name, description) in extra_headers {
        headers[*name] = json!({
            "description": description,
            "required": true,
            "schema": {"type": "string"},
        });
    }
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
