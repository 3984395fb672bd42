//! What a handler answers with: the body types, the answer future, and the
//! helpers that build a response (`reply`, `text`, `json`, `json_error`).
//! A leaf: handlers, the app and the alert log all build answers with it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::allocation;

/// The response body type: every pulse answer is small and complete.
pub type Body = Full<Bytes>;

/// The request body an `Async` handler reads: whatever the connection (or
/// an in-process test) passed in, boxed once, only for the routes that read it.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The answer an `Async` handler is working on.
pub type Pending = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

// Constants, not statics: a `HeaderValue` const is built when compiling, where
// one made at run time is checked byte by byte and cloning one kept in a
// static calls through `Bytes`' vtable.
pub const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
pub const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The `Cache-Control` of every answer that is not a 2xx, and of a 2xx
/// outside the route table.
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// A response with a status, a `Content-Type` and a body: what every
/// handler answers with. Add headers of your own with `headers_mut()`.
///
/// Pass the content type as a constant ([`TEXT_PLAIN`], [`APPLICATION_JSON`],
/// or `const { HeaderValue::from_static("...") }`): built when compiling, it
/// costs nothing per request.
pub fn reply(status: StatusCode, content_type: HeaderValue, body: Body) -> Response<Body> {
    // Assembled from its parts; see allocation::reuse_response_map.
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = status;
    allocation::reuse_response_map(&mut head.headers);
    head.headers.insert(header::CONTENT_TYPE, content_type);
    Response::from_parts(head, body)
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    reply(status, TEXT_PLAIN, Body::from(body))
}

pub fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    reply(status, APPLICATION_JSON, Body::from(body.to_string()))
}

/// `{"error": message}` with the given status.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

/// A HEAD answer: GET's status and headers, including its `Content-Length`,
/// and no body. HTTP/2 treats body bytes on a HEAD response as a protocol
/// error, so they are dropped here rather than left to the connection.
pub fn without_body(mut response: Response<Body>) -> Response<Body> {
    drop_body(&mut response);
    response
}

/// [`without_body`], in place.
pub fn drop_body(response: &mut Response<Body>) {
    if let Some(length) = hyper::body::Body::size_hint(response.body()).exact() {
        response
            .headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    *response.body_mut() = Body::default();
}

/// The answer to one request: ready at once, or from an `Async` handler.
///
/// A ready answer is a small value: hyper moves the service future around,
/// and a small one is measurably cheaper than a large async state machine.
pub enum Handling {
    Ready(Option<Response<Body>>),
    Pending(Pending),
}

impl Future for Handling {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response<Body>> {
        match self.get_mut() {
            Handling::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(response),
                None => Poll::Ready(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                )),
            },
            Handling::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
