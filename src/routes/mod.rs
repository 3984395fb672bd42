//! The route table: one row per route, expanded into the `match` that maps a
//! request's path and method to its handler. Each handler lives in a file of
//! this folder, next to its OpenAPI operation.
//!
//! Matching is separate from handling so that it is a pure function: the
//! table is unit-tested and fuzzed without a server, and the metrics labels
//! ([`Route::label`], [`Verb::label`]) come from a fixed set, never from the raw
//! request, which keeps Prometheus cardinality bounded.

mod echo;
pub use echo::MAX_ECHO_BYTES;
mod faults;
mod info;
pub mod openapi;
mod probes;

use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};

use crate::app::{App, Body, Pending, RequestBody};
use openapi::Operation;

/// SECURITY: the longest request target (path and query) pulse routes; a
/// longer one is answered 414 without matching. Longer request heads than
/// the server's buffer are refused by hyper before they reach pulse.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The longest `/delay/{ms}` pulse sleeps; a larger value is a 400.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// The `Cache-Control` of every answer that is not a 2xx, and of a 2xx
/// outside the table.
pub const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

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

// THE ROUTE TABLE. One row per route; everything else derives from it: the
// `Route` enum and its metrics label, the `match` that dispatches, the
// `Allow` header of a 405, which routes are probes, the cache policy, the
// OpenAPI document and (checked by a test) the README's route table.
//
// A row: `Name: [METHODS] "/path" / {parameter} => Class, "Cache-Control", Kind handler, doc;`
// - Class: `App` (served always), `Probe` (served always, logged at debug,
//   left out of the SLI) or `Fault` (served only with PULSE_FAULT_INJECTION).
// - Cache-Control: what a 2xx answer carries; every other answer `no-store`.
// - Kind: `Ready` for a handler that answers at once from the path (the fast
//   path), `Async` for one that awaits or reads the body (it owns the request).
// - doc: the handler's OpenAPI operation.
route_table! {
    Root:    [GET, HEAD] "/"                => App,   "max-age=60", Ready info::root,          info::root_doc;
    Health:  [GET, HEAD] "/health"          => Probe, "no-store",   Ready probes::health,      probes::health_doc;
    Livez:   [GET, HEAD] "/livez"           => Probe, "no-store",   Ready probes::livez,       probes::livez_doc;
    Readyz:  [GET, HEAD] "/readyz"          => Probe, "no-store",   Ready probes::readyz,      probes::readyz_doc;
    Version: [GET, HEAD] "/version"         => App,   "max-age=60", Ready info::version,       info::version_doc;
    Metrics: [GET, HEAD] "/metrics"         => Probe, "no-store",   Ready probes::metrics,     probes::metrics_doc;
    OpenApi: [GET, HEAD] "/openapi.json"    => App,   "max-age=60", Ready openapi::document,   openapi::document_doc;
    Echo:    [POST]      "/echo"            => App,   "no-store",   Async echo::echo,          echo::echo_doc;
    Delay:   [GET, HEAD] "/delay" / {ms}    => Fault, "no-store",   Async faults::delay,       faults::delay_doc;
    Status:  [GET, HEAD] "/status" / {code} => Fault, "no-store",   Ready faults::status,      faults::status_doc;
    Panic:   [GET, HEAD] "/panic"           => Fault, "no-store",   Ready faults::panic,       faults::panic_doc;
}

/// Which requests a route serves, and how they are logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    App,
    /// Probes and scrapes arrive every few seconds: logged at debug, never
    /// cached, left out of the availability SLI.
    Probe,
    /// Exists only with PULSE_FAULT_INJECTION; otherwise a 404.
    Fault,
}

/// A route's handler.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// Answers at once from the app and the path parameter; never waits.
    Ready(fn(&App, Option<&str>) -> Response<Body>),
    /// Owns the request (body included) and may wait.
    Async(fn(App, Request<RequestBody>) -> Pending),
}

/// One row of the table, as the rest of pulse reads it.
pub struct Row {
    pub route: Route,
    /// The path as OpenAPI writes it: `/delay/{ms}`. Also the metrics label.
    pub template: &'static str,
    /// The name of the path parameter, if the route has one.
    pub parameter: Option<&'static str>,
    pub methods: &'static [Verb],
    /// The `Allow` header of a 405: the methods, comma-separated.
    pub allow: &'static str,
    pub class: Class,
    pub cache_control: &'static str,
    pub handler: Handler,
    pub doc: fn() -> Operation,
}

/// The `match` the table expands into: one arm per row, on the path's
/// first segment and whether a parameter follows it.
macro_rules! route_table {
    ($(
        $name:ident : [$first:ident $(, $method:ident)*] $base:literal $(/ {$parameter:ident})?
            => $class:ident, $cache:literal, $kind:ident $handler:path, $doc:path;
    )+) => {
        /// The matched route: the `route` label of the HTTP metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $($name,)+
            /// Every path that matched nothing, so 404 scans add one series, not thousands.
            Unmatched,
        }

        impl Route {
            /// Every row of the table, in order.
            pub const ALL: &'static [Route] = &[$(Route::$name),+];
            /// Variants, `Unmatched` included, for tables indexed by `route as usize`.
            pub const COUNT: usize = Route::ALL.len() + 1;

            /// The route's row; None for `Unmatched`.
            pub fn row(self) -> Option<&'static Row> {
                match self {
                    $(Route::$name => Some(&Row {
                        route: Route::$name,
                        template: concat!($base $(, "/{", stringify!($parameter), "}")?),
                        parameter: parameter_name!($($parameter)?),
                        methods: &[verb!($first) $(, verb!($method))*],
                        allow: concat!(stringify!($first) $(, ", ", stringify!($method))*),
                        class: Class::$class,
                        cache_control: $cache,
                        handler: Handler::$kind($handler),
                        doc: $doc,
                    }),)+
                    Route::Unmatched => None,
                }
            }

            /// What a 2xx answer of this route carries in `Cache-Control`,
            /// as a header value built when compiling: one made at run time
            /// is checked byte by byte, and cloning one kept in a static
            /// calls through `Bytes`' vtable.
            pub fn cache_control_header(self) -> HeaderValue {
                match self {
                    $(Route::$name => const { HeaderValue::from_static($cache) },)+
                    Route::Unmatched => NO_STORE,
                }
            }
        }

        /// The route a path belongs to, whatever the method.
        fn match_path(base: &str, has_parameter: bool) -> Route {
            match (base, has_parameter) {
                $(($base, has_parameter!($($parameter)?)) => Route::$name,)+
                _ => Route::Unmatched,
            }
        }
    };
}
use route_table;

macro_rules! verb {
    (GET) => {
        Verb::Get
    };
    (HEAD) => {
        Verb::Head
    };
    (POST) => {
        Verb::Post
    };
    (PUT) => {
        Verb::Put
    };
    (DELETE) => {
        Verb::Delete
    };
    (PATCH) => {
        Verb::Patch
    };
}
use verb;

macro_rules! has_parameter {
    () => {
        false
    };
    ($parameter:ident) => {
        true
    };
}
use has_parameter;

macro_rules! parameter_name {
    () => {
        None
    };
    ($parameter:ident) => {
        Some(stringify!($parameter))
    };
}
use parameter_name;

impl Route {
    /// The metrics label: the path template, or `unmatched`.
    pub fn label(self) -> &'static str {
        self.row().map_or("unmatched", |row| row.template)
    }

    pub fn is_probe(self) -> bool {
        self.row().is_some_and(|row| row.class == Class::Probe)
    }
}

/// The outcome of matching one request.
#[derive(Debug, Clone, Copy)]
pub enum Dispatch<'path> {
    /// The handler, and the path parameter (`250` in `/delay/250`).
    Serve {
        handler: Handler,
        parameter: Option<&'path str>,
    },
    /// The path exists but not for this method: 405 with `Allow`.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
    /// The request target is longer than [`MAX_URI_BYTES`]: 414.
    UriTooLong,
}

/// Matches a request against the table. `fault_injection` decides whether
/// the fault routes exist at all: when it is off they are 404s like any
/// unknown path.
pub fn dispatch(verb: Verb, path: &str, fault_injection: bool) -> (Route, Dispatch<'_>) {
    let (base, parameter) = split_parameter(path);
    let route = match_path(base, parameter.is_some());
    let Some(row) = route.row() else {
        return (Route::Unmatched, Dispatch::NotFound);
    };
    if row.class == Class::Fault && !fault_injection {
        return (Route::Unmatched, Dispatch::NotFound);
    }
    if row.methods.contains(&verb) {
        let handler = row.handler;
        (route, Dispatch::Serve { handler, parameter })
    } else {
        (route, Dispatch::MethodNotAllowed { allow: row.allow })
    }
}

/// The path parameter of a matched path: `250` in `/delay/250`.
pub fn parameter(path: &str) -> Option<&str> {
    split_parameter(path).1
}

/// Splits `/delay/250` into `("/delay", Some("250"))`. `/health` has no
/// parameter, and a path with more segments stays whole, so it matches nothing.
fn split_parameter(path: &str) -> (&str, Option<&str>) {
    // Bytes, not `str::find(char)`: this runs on every request, and `/` is
    // ASCII, so every index found is a char boundary.
    let bytes = path.as_bytes();
    let mut slashes = bytes
        .iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &b)| b == b'/');
    match (slashes.next(), slashes.next()) {
        (Some((slash, _)), None) => (&path[..slash], Some(&path[slash + 1..])),
        _ => (path, None),
    }
}

/// `/delay/{ms}`: whole milliseconds, at most [`MAX_DELAY`].
pub fn parse_delay(text: &str) -> Result<Duration, &'static str> {
    const REASON: &str = "delay must be whole milliseconds from 0 to 10000, such as /delay/250";
    // SECURITY: bound the digits before parsing, so no input is slow to reject.
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(REASON);
    }
    let millis: u64 = text.parse().map_err(|_| REASON)?;
    let delay = Duration::from_millis(millis);
    if delay > MAX_DELAY {
        return Err(REASON);
    }
    Ok(delay)
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

    fn route_of(verb: Verb, path: &str) -> Route {
        dispatch(verb, path, true).0
    }

    #[test]
    fn every_row_serves_its_methods_and_refuses_others_with_its_allow() {
        for &route in Route::ALL {
            let row = route.row().unwrap();
            let path = row.template.replace("{ms}", "5").replace("{code}", "503");
            for &verb in row.methods {
                let (matched, outcome) = dispatch(verb, &path, true);
                assert_eq!(matched, route, "{path}");
                assert!(matches!(outcome, Dispatch::Serve { .. }), "{verb:?} {path}");
            }
            for verb in [
                Verb::Get,
                Verb::Post,
                Verb::Delete,
                Verb::Options,
                Verb::Other,
            ] {
                if !row.methods.contains(&verb) {
                    match dispatch(verb, &path, true) {
                        (matched, Dispatch::MethodNotAllowed { allow }) => {
                            assert_eq!(matched, route);
                            assert_eq!(allow, row.allow);
                        }
                        other => panic!("{verb:?} {path}: {other:?}"),
                    }
                }
            }
        }
        assert_eq!(Route::Health.row().unwrap().allow, "GET, HEAD");
        assert_eq!(Route::Echo.row().unwrap().allow, "POST");
    }

    #[test]
    fn fault_routes_do_not_exist_when_fault_injection_is_off() {
        for &route in Route::ALL {
            let row = route.row().unwrap();
            let path = row.template.replace("{ms}", "5").replace("{code}", "500");
            let (matched, outcome) = dispatch(Verb::Get, &path, false);
            if row.class == Class::Fault {
                assert_eq!(matched, Route::Unmatched, "{path}");
                assert!(matches!(outcome, Dispatch::NotFound));
            } else {
                assert_eq!(matched, route, "{path}");
            }
        }
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
            "/echo/1",
        ] {
            assert_eq!(route_of(Verb::Get, path), Route::Unmatched, "{path:?}");
        }
    }

    #[test]
    fn parameters_parse_and_are_bounded() {
        assert_eq!(parse_delay("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay("10000"), Ok(MAX_DELAY));
        assert!(parse_delay("10001").is_err());
        assert_eq!(parse_status("418"), Ok(StatusCode::IM_A_TEAPOT));
        for bad in ["", "-1", "1.5", "999999999999999999999"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
        for bad in ["199", "600", "20", "2000", "abc"] {
            assert!(parse_status(bad).is_err(), "{bad}");
        }
        assert_eq!(parameter("/delay/250"), Some("250"));
        assert_eq!(parameter("/health"), None);
    }

    #[test]
    fn labels_are_bounded_and_the_table_sizes_the_metrics() {
        assert_eq!(
            Verb::from_method(&Method::from_bytes(b"BREW").unwrap()),
            Verb::Other
        );
        assert_eq!(Verb::Other.label(), "other");
        assert_eq!(Route::Delay.label(), "/delay/{ms}");
        assert_eq!(Route::Unmatched.label(), "unmatched");
        assert_eq!(Route::COUNT, Route::ALL.len() + 1);
        // `route as usize` indexes the metrics table: Unmatched is last.
        for (index, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, index);
        }
        assert_eq!(Route::Unmatched as usize, Route::COUNT - 1);
    }
}
