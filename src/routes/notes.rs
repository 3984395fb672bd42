//! `/notes`: short texts kept in PostgreSQL (`src/database/`), served only
//! when `PULSE_DATABASE_URL` is set (their rows say `Database`).
//!
//! - `POST /notes` stores `{"text": ...}` and answers 201 with `Location`.
//! - `GET /notes?limit=&after=` pages by id, with a `next` link.
//! - `GET /notes/{id}` answers with an `ETag`, and 304 to `If-None-Match`.
//! - `DELETE /notes/{id}` answers 204, or 404.
//!
//! Every query is parameterised: a note's text never becomes SQL. With the
//! database unreachable the answer is 503 with `Retry-After` within
//! `PULSE_DATABASE_TIMEOUT`.

use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::RequestContext;
use super::Verb;
use super::openapi::{Content, Operation};
use crate::body;
use crate::database::{Database, QueryError, Sql};
use crate::response::{Body, Pending, RequestBody, json, json_error, reply};
use crate::span_export::ChildSpans;

/// The most characters (Unicode scalar values) a note holds; the table's
/// CHECK says the same.
pub const MAX_NOTE_CHARS: usize = 1000;

/// SECURITY: the largest `POST /notes` body read; more is a 413. The
/// longest valid body is 1000 characters outside the Basic Multilingual
/// Plane, each escaped as a surrogate pair `\uD83D\uDE00` (12 bytes):
/// about 12 KB, so every note the schema allows fits, with room for
/// whitespace.
const MAX_NOTE_BODY: usize = 16 * 1024;

const PAGE_DEFAULT: i64 = 20;
const PAGE_MAX: i64 = 100;

/// A note's columns: its creation time formatted by PostgreSQL, in UTC.
/// A macro, so that each query below is one string built when compiling.
macro_rules! columns {
    () => {
        "id, text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    };
}
const INSERT_NOTE: Sql = Sql {
    text: concat!(
        "INSERT INTO notes (text) VALUES ($1) RETURNING ",
        columns!()
    ),
    types: &[Type::TEXT],
};
// One more than the page: whether there is a next page, without a count.
const LIST_NOTES: Sql = Sql {
    text: concat!(
        "SELECT ",
        columns!(),
        " FROM notes WHERE id > $1 ORDER BY id LIMIT $2"
    ),
    types: &[Type::INT8, Type::INT8],
};
const SELECT_NOTE: Sql = Sql {
    text: concat!("SELECT ", columns!(), " FROM notes WHERE id = $1"),
    types: &[Type::INT8],
};
const DELETE_NOTE: Sql = Sql {
    text: "DELETE FROM notes WHERE id = $1",
    types: &[Type::INT8],
};

/// `/notes`: GET lists, POST creates.
pub fn collection(ctx: &RequestContext, request_body: RequestBody) -> Pending {
    let Some(database) = ctx.state().database.clone() else {
        return Box::pin(async { unavailable() });
    };
    let spans = ctx.child_spans();
    if *ctx.method() == Method::POST {
        let document = body::read_json(ctx, request_body, MAX_NOTE_BODY);
        return Box::pin(async move {
            match document.await {
                Ok(document) => create(&database, spans.as_ref(), &document).await,
                Err(error) => error.response(),
            }
        });
    }
    let page = page(ctx.query_value("limit"), ctx.query_value("after"));
    Box::pin(async move {
        match page {
            Ok((limit, after)) => list(&database, spans.as_ref(), limit, after).await,
            Err(reason) => json_error(StatusCode::BAD_REQUEST, reason),
        }
    })
}

/// `/notes/{id}`: GET (and HEAD) reads, DELETE deletes.
pub fn item(ctx: &RequestContext, _: RequestBody) -> Pending {
    let Some(database) = ctx.state().database.clone() else {
        return Box::pin(async { unavailable() });
    };
    let id = ctx.param("id").map_or(Err(ID_ALLOWED), parse_id);
    let delete = *ctx.method() == Method::DELETE;
    let if_none_match = ctx.header(header::IF_NONE_MATCH).map(str::to_owned);
    let spans = ctx.child_spans();
    Box::pin(async move {
        let id = match id {
            Ok(id) => id,
            Err(reason) => return json_error(StatusCode::BAD_REQUEST, reason),
        };
        if delete {
            remove(&database, spans.as_ref(), id).await
        } else {
            read(&database, spans.as_ref(), id, if_none_match.as_deref()).await
        }
    })
}

async fn create(
    database: &Database,
    spans: Option<&ChildSpans>,
    document: &Value,
) -> Response<Body> {
    let text = match note_text(document) {
        Ok(text) => text,
        Err(reason) => return json_error(StatusCode::BAD_REQUEST, reason),
    };
    match database
        .query(spans, "insert_note", &INSERT_NOTE, &[&text])
        .await
    {
        Ok(rows) if rows.len() == 1 => {
            let note = note_json(&rows[0]);
            let mut answer = json(StatusCode::CREATED, note.clone());
            if let Ok(location) = HeaderValue::try_from(format!("/notes/{}", note["id"])) {
                answer.headers_mut().insert(header::LOCATION, location);
            }
            answer
        }
        Ok(_) => internal_error(),
        Err(error) => failed(error),
    }
}

async fn list(
    database: &Database,
    spans: Option<&ChildSpans>,
    limit: i64,
    after: i64,
) -> Response<Body> {
    let rows = match database
        .query(spans, "list_notes", &LIST_NOTES, &[&after, &(limit + 1)])
        .await
    {
        Ok(rows) => rows,
        Err(error) => return failed(error),
    };
    let more = rows.len() > limit as usize;
    let notes: Vec<Value> = rows.iter().take(limit as usize).map(note_json).collect();
    let next = match (more, notes.last()) {
        (true, Some(last)) => Some(format!("/notes?limit={limit}&after={}", last["id"])),
        _ => None,
    };
    let mut answer = json(StatusCode::OK, json!({"notes": notes, "next": next}));
    if let Some(link) =
        next.and_then(|next| HeaderValue::try_from(format!("<{next}>; rel=\"next\"")).ok())
    {
        answer.headers_mut().insert(header::LINK, link);
    }
    answer
}

async fn read(
    database: &Database,
    spans: Option<&ChildSpans>,
    id: i64,
    if_none_match: Option<&str>,
) -> Response<Body> {
    let rows = match database
        .query(spans, "select_note", &SELECT_NOTE, &[&id])
        .await
    {
        Ok(rows) => rows,
        Err(error) => return failed(error),
    };
    let Some(row) = rows.first() else {
        return json_error(StatusCode::NOT_FOUND, "no note has this id");
    };
    let body = note_json(row).to_string();
    let etag = entity_tag(body.as_bytes());
    let mut answer = if if_none_match.is_some_and(|tags| matches_tag(tags, &etag)) {
        let mut answer = Response::new(Body::default());
        *answer.status_mut() = StatusCode::NOT_MODIFIED;
        answer
    } else {
        reply(
            StatusCode::OK,
            crate::response::APPLICATION_JSON,
            Body::from(body),
        )
    };
    if let Ok(value) = HeaderValue::try_from(etag) {
        answer.headers_mut().insert(header::ETAG, value);
    }
    answer
}

async fn remove(database: &Database, spans: Option<&ChildSpans>, id: i64) -> Response<Body> {
    match database
        .execute(spans, "delete_note", &DELETE_NOTE, &[&id])
        .await
    {
        Ok(0) => json_error(StatusCode::NOT_FOUND, "no note has this id"),
        Ok(_) => {
            let mut answer = Response::new(Body::default());
            *answer.status_mut() = StatusCode::NO_CONTENT;
            answer
        }
        Err(error) => failed(error),
    }
}

fn note_json(row: &Row) -> Value {
    let id: i64 = row.get(0);
    let text: &str = row.get(1);
    let created: &str = row.get(2);
    json!({"id": id, "text": text, "created_at": created})
}

/// The text of a `POST /notes` body, or why it is refused.
fn note_text(document: &Value) -> Result<&str, &'static str> {
    let object = document
        .as_object()
        .ok_or("the body must be a JSON object {\"text\": \"...\"}")?;
    if object.keys().any(|key| key != "text") {
        return Err("the body may hold only \"text\"");
    }
    let text = object
        .get("text")
        .ok_or("the body needs \"text\"")?
        .as_str()
        .ok_or("\"text\" must be a string")?;
    let characters = text.chars().count();
    if !(1..=MAX_NOTE_CHARS).contains(&characters) {
        return Err("\"text\" must be 1 to 1000 characters");
    }
    // PostgreSQL's text cannot hold U+0000; refused here rather than by it.
    if text.contains('\0') {
        return Err("\"text\" must not contain U+0000");
    }
    Ok(text)
}

const ID_ALLOWED: &str = "the id must be a whole number from 1 to 9223372036854775807";

fn parse_id(text: &str) -> Result<i64, &'static str> {
    match text.parse::<i64>() {
        Ok(id) if id >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(id),
        _ => Err(ID_ALLOWED),
    }
}

/// `limit` and `after` of `GET /notes`, or why they are refused.
fn page(limit: Option<&str>, after: Option<&str>) -> Result<(i64, i64), &'static str> {
    let limit = match limit {
        None => PAGE_DEFAULT,
        Some(text) => match text.parse::<i64>() {
            Ok(limit @ 1..=PAGE_MAX) if text.bytes().all(|b| b.is_ascii_digit()) => limit,
            _ => return Err("limit must be a whole number from 1 to 100"),
        },
    };
    let after = match after {
        None => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(after) if after >= 0 && text.bytes().all(|b| b.is_ascii_digit()) => after,
            _ => return Err("after must be a note id, a whole number from 0 up"),
        },
    };
    Ok((limit, after))
}

/// A strong validator: a hash of the representation, so any change to
/// the answer's bytes changes it. Notes never change, so in practice one
/// tag per note; but a new pulse that writes the JSON differently gets
/// new tags instead of wrong 304s.
fn entity_tag(body: &[u8]) -> String {
    // FNV-1a, 64 bits: short, stable across builds and platforms.
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// Whether an `If-None-Match` list names `etag`, comparing weakly as RFC
/// 9110 says for GET: `W/` prefixes do not count, and `*` matches any.
fn matches_tag(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn failed(error: QueryError) -> Response<Body> {
    match error {
        QueryError::Unavailable => unavailable(),
        // Logged where it happened (database::timed), with the operation.
        QueryError::Refused(_) => internal_error(),
    }
}

fn unavailable() -> Response<Body> {
    let mut answer = json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; try again shortly",
    );
    answer
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    answer
}

fn internal_error() -> Response<Body> {
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

fn note_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "text", "created_at"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE_CHARS},
            "created_at": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": false,
    })
}

fn unavailable_answer(operation: Operation) -> Operation {
    operation
        .answer(
            "503",
            "The database cannot be reached; retry after the delay",
            Content::Error,
        )
        .header("503", "Retry-After", "Seconds to wait: `1`")
}

pub fn collection_doc() -> Operation {
    let list = Operation::new("The notes, oldest first, a page at a time")
        .answer(
            "200",
            "A page of notes; `next` is the following page's URL, or null after the last",
            Content::Json(json!({
                "type": "object",
                "required": ["notes", "next"],
                "properties": {
                    "notes": {"type": "array", "items": note_schema()},
                    "next": {"type": ["string", "null"]},
                },
                "additionalProperties": false,
            })),
        )
        .answer("400", "A bad limit or after", Content::Error);
    let create = Operation::new("Stores a note")
        .request_body(json!({
            "type": "object",
            "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE_CHARS}},
            "additionalProperties": false,
        }))
        .answer("201", "The note, stored", Content::Json(note_schema()))
        .header("201", "Location", "The note's URL, `/notes/{id}`");
    Operation::new("Notes")
        .method(Verb::Get, unavailable_answer(list))
        .method(Verb::Post, unavailable_answer(create))
}

pub fn item_doc() -> Operation {
    let read = Operation::new("One note")
        .answer("200", "The note", Content::Json(note_schema()))
        .header("200", "ETag", "A strong validator of the answer")
        .answer(
            "304",
            "The note has the `If-None-Match` tag",
            Content::Empty,
        )
        .header("304", "ETag", "A strong validator of the answer")
        .answer("404", "No note has this id", Content::Error);
    let delete = Operation::new("Deletes a note")
        .answer("204", "Deleted", Content::Empty)
        .answer("404", "No note has this id", Content::Error);
    Operation::new("One note")
        .parameter(
            "id",
            json!({"type": "integer", "minimum": 1, "maximum": i64::MAX}),
        )
        .method(Verb::Get, unavailable_answer(read))
        .method(Verb::Delete, unavailable_answer(delete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_one_to_a_thousand_characters_of_text_alone() {
        assert_eq!(note_text(&json!({"text": "buy milk"})), Ok("buy milk"));
        assert_eq!(
            note_text(&json!({"text": "é".repeat(1000)})).map(str::len),
            Ok(2000)
        );
        for bad in [
            json!({"text": ""}),
            json!({"text": "x".repeat(1001)}),
            json!({"text": 5}),
            json!({"text": "a\u{0}b"}),
            json!({"text": "a", "extra": 1}),
            json!(["text"]),
            json!({}),
        ] {
            assert!(note_text(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_pages_are_plain_whole_numbers() {
        assert_eq!(parse_id("42"), Ok(42));
        for bad in ["0", "-1", "+1", "1.0", "x", "", "9223372036854775808", " 1"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(page(None, None), Ok((20, 0)));
        assert_eq!(page(Some("100"), Some("7")), Ok((100, 7)));
        for (limit, after) in [
            (Some("0"), None),
            (Some("101"), None),
            (None, Some("-1")),
            (Some("a"), None),
        ] {
            assert!(page(limit, after).is_err(), "{limit:?} {after:?}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_star_matches() {
        let tag = entity_tag(b"{}");
        assert!(matches_tag(&tag, &tag));
        assert!(matches_tag(&format!("\"x\", W/{tag}"), &tag));
        assert!(matches_tag("*", &tag));
        assert!(!matches_tag("\"x\"", &tag));
        assert_ne!(entity_tag(b"{}"), entity_tag(b"{ }"));
    }
}
