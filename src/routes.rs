//! The route table: one `match` that maps a request's method and path to what
//! pulse will do with it.
//!
//! Matching is separate from handling so that it is a pure function: the
//! table is unit-tested and fuzzed without a server, and the metrics labels
//! ([`Route::label`], [`Verb::label`]) come from a fixed set, never from the raw
//! request, which keeps Prometheus cardinality bounded.

use std::time::Duration;

use hyper::{Method, StatusCode};

/// SECURITY: the longest request target (path and query) pulse routes; a
/// longer one is answered 414 without matching. Longer request heads than
/// the server's buffer are refused by hyper before they reach pulse.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The longest `/delay/{ms}` pulse sleeps; larger values are capped to it.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// An HTTP method, reduced to the set pulse names in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    /// Any extension method: one label value, however many a client invents.
    Other,
}

impl Verb {
    /// How many variants there are, for tables indexed by `verb as usize`.
    pub const COUNT: usize = Verb::Other as usize + 1;

    pub fn from_method(method: &Method) -> Verb {
        match *method {
            Method::GET => Verb::Get,
            Method::HEAD => Verb::Head,
            Method::POST => Verb::Post,
            Method::PUT => Verb::Put,
            Method::DELETE => Verb::Delete,
            Method::PATCH => Verb::Patch,
            Method::OPTIONS => Verb::Options,
            Method::CONNECT => Verb::Connect,
            Method::TRACE => Verb::Trace,
            _ => Verb::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Head => "HEAD",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
            Verb::Patch => "PATCH",
            Verb::Options => "OPTIONS",
            Verb::Connect => "CONNECT",
            Verb::Trace => "TRACE",
            Verb::Other => "other",
        }
    }
}

/// The matched route: the `route` label of the HTTP metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Root,
    Health,
    Livez,
    Readyz,
    Version,
    Metrics,
    Delay,
    Status,
    Panic,
    /// Every path that matched nothing, so 404 scans add one series, not thousands.
    Unmatched,
}

impl Route {
    /// How many variants there are, for tables indexed by `route as usize`.
    pub const COUNT: usize = Route::Unmatched as usize + 1;

    pub fn label(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Health => "/health",
            Route::Livez => "/livez",
            Route::Readyz => "/readyz",
            Route::Version => "/version",
            Route::Metrics => "/metrics",
            Route::Delay => "/delay/{ms}",
            Route::Status => "/status/{code}",
            Route::Panic => "/panic",
            Route::Unmatched => "unmatched",
        }
    }

    /// Probes and scrapes arrive every few seconds: they are logged at debug
    /// and must never be cached by a proxy.
    pub fn is_probe(self) -> bool {
        matches!(
            self,
            Route::Health | Route::Livez | Route::Readyz | Route::Metrics
        )
    }
}

/// What a matched request asks for, with its parameter already parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Root,
    Health,
    Livez,
    Readyz,
    Version,
    Metrics,
    Delay(Duration),
    Status(StatusCode),
    Panic,
}

/// The outcome of matching one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    Serve(Endpoint),
    /// The path matched but its parameter did not parse: 400 with the reason.
    BadParameter(&'static str),
    /// The path exists but not for this method: 405 with `Allow`.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
    /// The request target is longer than [`MAX_URI_BYTES`]: 414.
    UriTooLong,
}

/// Every pulse route is read-only.
const READ_ONLY: &str = "GET, HEAD";

/// The route table. `fault_injection` decides whether the fault routes exist
/// at all: when it is off they are 404s like any unknown path.
pub fn dispatch(verb: Verb, path: &str, fault_injection: bool) -> (Route, Dispatch) {
    let (base, param) = split_parameter(path);
    let reads = matches!(verb, Verb::Get | Verb::Head);
    let (route, endpoint) = match (reads, base, param, fault_injection) {
        (true, "/", None, _) => (Route::Root, Ok(Endpoint::Root)),
        (true, "/health", None, _) => (Route::Health, Ok(Endpoint::Health)),
        (true, "/livez", None, _) => (Route::Livez, Ok(Endpoint::Livez)),
        (true, "/readyz", None, _) => (Route::Readyz, Ok(Endpoint::Readyz)),
        (true, "/version", None, _) => (Route::Version, Ok(Endpoint::Version)),
        (true, "/metrics", None, _) => (Route::Metrics, Ok(Endpoint::Metrics)),
        (true, "/delay", Some(ms), true) => (Route::Delay, parse_delay(ms).map(Endpoint::Delay)),
        (true, "/status", Some(code), true) => {
            (Route::Status, parse_status(code).map(Endpoint::Status))
        }
        (true, "/panic", None, true) => (Route::Panic, Ok(Endpoint::Panic)),
        // The same paths with any other method.
        (false, "/" | "/health" | "/livez" | "/readyz" | "/version" | "/metrics", None, _)
        | (false, "/panic", None, true)
        | (false, "/delay" | "/status", Some(_), true) => {
            return (
                route_of(base),
                Dispatch::MethodNotAllowed { allow: READ_ONLY },
            );
        }
        _ => return (Route::Unmatched, Dispatch::NotFound),
    };
    match endpoint {
        Ok(endpoint) => (route, Dispatch::Serve(endpoint)),
        Err(reason) => (route, Dispatch::BadParameter(reason)),
    }
}

/// Names the route of a path that the table already matched, for a 405.
fn route_of(base: &str) -> Route {
    match base {
        "/" => Route::Root,
        "/health" => Route::Health,
        "/livez" => Route::Livez,
        "/readyz" => Route::Readyz,
        "/version" => Route::Version,
        "/metrics" => Route::Metrics,
        "/delay" => Route::Delay,
        "/status" => Route::Status,
        "/panic" => Route::Panic,
        _ => Route::Unmatched,
    }
}

/// Splits `/delay/250` into `("/delay", Some("250"))`. `/health` has no
/// parameter, and a path with more segments stays whole, so it matches nothing.
fn split_parameter(path: &str) -> (&str, Option<&str>) {
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(slash) if !path[slash + 2..].contains('/') => {
            (&path[..slash + 1], Some(&path[slash + 2..]))
        }
        _ => (path, None),
    }
}

/// `/delay/{ms}`: whole milliseconds, capped at [`MAX_DELAY`].
pub fn parse_delay(text: &str) -> Result<Duration, &'static str> {
    const REASON: &str = "delay must be whole milliseconds, such as /delay/250";
    // SECURITY: bound the digits before parsing, so no input is slow to reject.
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(REASON);
    }
    let millis: u64 = text.parse().map_err(|_| REASON)?;
    Ok(Duration::from_millis(millis).min(MAX_DELAY))
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

    fn get(path: &str) -> (Route, Dispatch) {
        dispatch(Verb::Get, path, true)
    }

    #[test]
    fn every_route_matches_get_and_head() {
        for (path, route) in [
            ("/", Route::Root),
            ("/health", Route::Health),
            ("/livez", Route::Livez),
            ("/readyz", Route::Readyz),
            ("/version", Route::Version),
            ("/metrics", Route::Metrics),
            ("/delay/5", Route::Delay),
            ("/status/503", Route::Status),
            ("/panic", Route::Panic),
        ] {
            for verb in [Verb::Get, Verb::Head] {
                let (matched, outcome) = dispatch(verb, path, true);
                assert_eq!(matched, route, "{path}");
                assert!(matches!(outcome, Dispatch::Serve(_)), "{path}");
            }
        }
    }

    #[test]
    fn fault_routes_do_not_exist_when_fault_injection_is_off() {
        for path in ["/delay/5", "/status/500", "/panic"] {
            assert_eq!(
                dispatch(Verb::Get, path, false),
                (Route::Unmatched, Dispatch::NotFound)
            );
            assert_eq!(
                dispatch(Verb::Post, path, false),
                (Route::Unmatched, Dispatch::NotFound)
            );
        }
    }

    #[test]
    fn other_methods_on_known_paths_are_405_with_allow() {
        for verb in [Verb::Post, Verb::Delete, Verb::Options, Verb::Other] {
            assert_eq!(
                dispatch(verb, "/health", false),
                (
                    Route::Health,
                    Dispatch::MethodNotAllowed { allow: "GET, HEAD" }
                )
            );
        }
        assert_eq!(dispatch(Verb::Put, "/delay/1", true).0, Route::Delay);
    }

    #[test]
    fn unknown_paths_are_unmatched() {
        for path in [
            "/nope",
            "/health/",
            "/delay",
            "/delay/1/2",
            "//",
            "",
            "/metrics/x",
        ] {
            assert_eq!(
                get(path),
                (Route::Unmatched, Dispatch::NotFound),
                "{path:?}"
            );
        }
    }

    #[test]
    fn parameters_parse_and_are_bounded() {
        assert_eq!(
            get("/delay/250").1,
            Dispatch::Serve(Endpoint::Delay(Duration::from_millis(250)))
        );
        assert_eq!(
            get("/delay/99999999999").1,
            Dispatch::Serve(Endpoint::Delay(MAX_DELAY))
        );
        assert_eq!(
            get("/status/418").1,
            Dispatch::Serve(Endpoint::Status(StatusCode::IM_A_TEAPOT))
        );
        for bad in [
            "/delay/",
            "/delay/-1",
            "/delay/1.5",
            "/delay/999999999999999999999",
        ] {
            assert!(matches!(get(bad).1, Dispatch::BadParameter(_)), "{bad}");
        }
        for bad in [
            "/status/199",
            "/status/600",
            "/status/20",
            "/status/2000",
            "/status/abc",
        ] {
            assert!(matches!(get(bad).1, Dispatch::BadParameter(_)), "{bad}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            Verb::from_method(&Method::from_bytes(b"BREW").unwrap()),
            Verb::Other
        );
        assert_eq!(Verb::Other.label(), "other");
        assert_eq!(Route::Delay.label(), "/delay/{ms}");
    }
}
