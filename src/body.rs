//! Reading a request body: bounded in size and time, JSON only. The worked
//! example is `POST /echo` (`routes/echo.rs`).

use std::future::Future;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};

use crate::context::RequestContext;
use crate::response::{Body, RequestBody, json_error};

/// Why a body was refused; each maps to a status and a JSON error.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More than the cap: 413. Reading stopped at the cap.
    TooLarge { limit: usize },
    /// Not `application/json` (or a `+json` type): 415.
    UnsupportedType,
    /// No bytes at all: 400.
    Empty,
    /// Not a JSON document: 400 with serde_json's reason.
    Malformed(String),
    /// The client did not send the body within the time allowed: 408.
    Timeout,
    /// The connection failed while reading: 400.
    Incomplete,
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Empty | BodyError::Malformed(_) | BodyError::Incomplete => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The JSON error answer, `{"error": "..."}`.
    pub fn response(&self) -> Response<Body> {
        json_error(self.status(), &self.to_string())
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "request body is larger than {limit} bytes")
            }
            BodyError::UnsupportedType => f.write_str("Content-Type must be application/json"),
            BodyError::Empty => f.write_str("request body is empty; send a JSON document"),
            BodyError::Malformed(reason) => write!(f, "request body is not valid JSON: {reason}"),
            BodyError::Timeout => f.write_str("request body did not arrive in time"),
            BodyError::Incomplete => f.write_str("request body ended early"),
        }
    }
}

/// Reads a JSON request body of at most `limit` bytes, within the request
/// head timeout (PULSE_HEADER_READ_TIMEOUT). The headers are checked now;
/// the returned future reads the body, so an `Async` handler calls this
/// before it builds its own future, and awaits the result in it.
///
/// SECURITY: a declared `Content-Length` over the cap is refused before
/// reading; a chunked body is read only up to the cap; and the whole body
/// must arrive within the timeout, so a client trickling bytes cannot hold
/// a connection (the idle watchdog counts a request in flight as busy).
pub fn read_json(
    ctx: &RequestContext,
    body: RequestBody,
    limit: usize,
) -> impl Future<Output = Result<serde_json::Value, BodyError>> + Send + 'static {
    let checked = check_headers(ctx.headers(), limit);
    let timeout = ctx.config().header_read_timeout;
    async move {
        checked?;
        let bytes = read_capped(body, limit, timeout).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(BodyError::Empty);
        }
        serde_json::from_slice(&bytes).map_err(|error| BodyError::Malformed(error.to_string()))
    }
}

/// The checks a JSON body's headers must pass before it is read.
fn check_headers(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    if !is_json(headers) {
        return Err(BodyError::UnsupportedType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(())
}

/// Reads a whole body of at most `limit` bytes within `timeout`: any body,
/// JSON or not (the alert log reads its webhooks with it).
pub async fn read_capped<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let mut bytes = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Incomplete)?;
            if let Ok(data) = frame.into_data() {
                // Stop at the cap: nothing past it is buffered.
                if bytes.len() + data.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::Timeout)??;
    Ok(Bytes::from(bytes))
}

/// `application/json`, or a `+json` type such as `application/merge-patch+json`,
/// with any parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn json_media_types_are_recognised() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/json", false),
            ("application/jsonx", false),
            ("application/+json", false),
            ("text/plain", false),
            ("", false),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json(&headers), json, "{value:?}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
