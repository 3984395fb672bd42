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
pub use faults::{MAX_DELAY, parse_delay, parse_status};
mod info;
mod notes;
pub mod openapi;
mod probes;

use hyper::Response;
use hyper::header::HeaderValue;

use crate::config::Config;
pub use crate::context::{RequestContext, Segment};
use crate::response::{Body, NO_STORE, Pending, RequestBody};
pub use crate::verb::{Verb, Verbs};
use openapi::Operation;

/// SECURITY: the longest request target (path and query) pulse routes; a
/// longer one is answered 414 without matching. Longer request heads than
/// the server's buffer are refused by hyper before they reach pulse.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most segments a routed path has; a longer path matches nothing.
pub const MAX_SEGMENTS: usize = 8;

// THE ROUTE TABLE. One row per route; everything else derives from it: the
// `Route` enum and its metrics label, the `match` that dispatches, the
// `Allow` header of a 405, which routes are probes, the cache policy, the
// OpenAPI document and (checked by a test) the README's route table.
//
// A row: `Name: [METHODS] [segments] => Class, "Cache-Control", Kind handler, doc;`
// - METHODS: GET, POST, PUT, DELETE, PATCH, OPTIONS. GET implies HEAD, so
//   HEAD is never written.
// - segments: the path, one item per segment: `"notes"` is fixed text,
//   `{id: "1"}` a parameter with the example value the tests and OpenAPI use.
//   `[]` is `/`; `["v1", "notes", {id: "1"}]` is `/v1/notes/{id}`. A handler
//   reads a parameter with `ctx.param("id")`.
// - Class: `App` (served always), `Probe` (served always, logged at debug,
//   left out of the SLI), `Fault` (served only with PULSE_FAULT_INJECTION)
//   or `Database` (served only with PULSE_DATABASE_URL).
// - Cache-Control: what a 2xx answer carries; every other answer `no-store`.
// - Kind: `Ready` for a handler that answers at once, `fn(&RequestContext)`;
//   `Async` for one that reads the body or waits,
//   `fn(&RequestContext, RequestBody) -> Pending`. A `Ready` row cannot take
//   POST, PUT or PATCH: it gets no body.
// - doc: the handler's OpenAPI operation.
route_table! {
    Root:    [GET] []                         => App,   "max-age=60", Ready info::root,        info::root_doc;
    Health:  [GET] ["health"]                 => Probe, "no-store",   Ready probes::health,    probes::health_doc;
    Livez:   [GET] ["livez"]                  => Probe, "no-store",   Ready probes::livez,     probes::livez_doc;
    Readyz:  [GET] ["readyz"]                 => Probe, "no-store",   Ready probes::readyz,    probes::readyz_doc;
    Version: [GET] ["version"]                => App,   "max-age=60", Ready info::version,     info::version_doc;
    Metrics: [GET] ["metrics"]                => Probe, "no-store",   Ready probes::metrics,   probes::metrics_doc;
    OpenApi: [GET] ["openapi.json"]           => App,   "max-age=60", Ready openapi::document, openapi::document_doc;
    Echo:    [POST] ["echo"]                  => App,   "no-store",   Async echo::echo,        echo::echo_doc;
    Delay:   [GET] ["delay", {ms: "1"}]       => Fault, "no-store",   Async faults::delay,     faults::delay_doc;
    Status:  [GET] ["status", {code: "200"}]  => Fault, "no-store",   Ready faults::status,    faults::status_doc;
    Panic:   [GET] ["panic"]                  => Fault, "no-store",   Ready faults::panic,     faults::panic_doc;
    Notes:   [GET, POST] ["notes"]            => Database, "no-store", Async notes::collection, notes::collection_doc;
    Note:    [GET, DELETE] ["notes", {id: "1"}] => Database, "no-cache", Async notes::item,    notes::item_doc;
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
    /// Exists only with PULSE_DATABASE_URL; otherwise a 404. Counted like `App`.
    Database,
}

/// Which classes of route an app serves: `App` and `Probe` always, the
/// others as the configuration says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    pub faults: bool,
    pub database: bool,
}

impl Enabled {
    /// Every route: what the table's own tests match against.
    pub const ALL: Enabled = Enabled {
        faults: true,
        database: true,
    };

    pub fn of(config: &Config) -> Enabled {
        Enabled {
            faults: config.fault_injection,
            database: config.database.is_some(),
        }
    }

    pub fn serves(self, class: Class) -> bool {
        match class {
            Class::App | Class::Probe => true,
            Class::Fault => self.faults,
            Class::Database => self.database,
        }
    }
}

/// A route's handler.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// Answers at once from the request; never waits.
    Ready(fn(&RequestContext) -> Response<Body>),
    /// Reads the body or waits: takes what its future needs from the
    /// request, then answers through the future.
    Async(fn(&RequestContext, RequestBody) -> Pending),
}

/// One row of the table, as the rest of pulse reads it.
pub struct Row {
    pub route: Route,
    /// The path as OpenAPI writes it: `/delay/{ms}`. Also the metrics label.
    pub template: &'static str,
    /// The path with every parameter set to its example: `/delay/1`.
    pub example: &'static str,
    pub segments: &'static [Segment],
    /// GET brings HEAD with it.
    pub methods: Verbs,
    /// The `Allow` header of a 405: the methods, comma-separated.
    pub allow: &'static str,
    pub class: Class,
    pub cache_control: &'static str,
    pub handler: Handler,
    pub doc: fn() -> Operation,
}

impl Row {
    /// The names of the path parameters, in order.
    pub fn parameters(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Parameter { name, .. } => Some(*name),
            Segment::Literal(_) => None,
        })
    }
}

/// The methods a row may name. HEAD is not one: GET implies it.
#[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
enum MethodOfARow {
    GET,
    POST,
    PUT,
    DELETE,
    PATCH,
    OPTIONS,
}

/// The methods a `Ready` row may name: a `Ready` handler gets no request
/// body, so POST, PUT and PATCH rows must be `Async`.
#[allow(non_camel_case_types, clippy::upper_case_acronyms, dead_code)]
enum MethodOfAReadyRow {
    GET,
    DELETE,
    OPTIONS,
}

/// Whether row `index` of `rows` can match a path: no earlier row matches
/// every path it does. With literals from an unbounded set, a row is
/// shadowed only by a single earlier row of its length whose every segment
/// is a parameter or the same literal, so this is exactly the arm the
/// `match` below would find unreachable.
const fn reachable(rows: &[&[Segment]], index: usize) -> bool {
    let later = rows[index];
    let mut earlier_index = 0;
    while earlier_index < index {
        let earlier = rows[earlier_index];
        let mut covers = earlier.len() == later.len();
        let mut at = 0;
        while covers && at < later.len() {
            covers = match (earlier[at], later[at]) {
                (Segment::Parameter { .. }, _) => true,
                (Segment::Literal(a), Segment::Literal(b)) => same(a, b),
                (Segment::Literal(_), Segment::Parameter { .. }) => false,
            };
            at += 1;
        }
        if covers {
            return false;
        }
        earlier_index += 1;
    }
    true
}

/// `a == b` for `&str` in a `const fn`.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut at = 0;
    while at < a.len() {
        if a[at] != b[at] {
            return false;
        }
        at += 1;
    }
    true
}

/// Routes a row's name to the `Route` enum when the row is reachable, and
/// to [`AnEarlierRowMatchesEveryPathOf`] when it is not.
struct Reachable<const YES: bool>;
trait RowNames {
    type In;
}
impl RowNames for Reachable<true> {
    type In = Route;
}
impl RowNames for Reachable<false> {
    type In = AnEarlierRowMatchesEveryPathOf;
}
/// The compile error of a row that can never be reached: "no variant named
/// `Recent` found for enum `AnEarlierRowMatchesEveryPathOf`", at the row.
/// Put the more specific row (`["notes", "recent"]`) before the one with
/// the parameter (`["notes", {id: "1"}]`).
enum AnEarlierRowMatchesEveryPathOf {}

/// Expands the table. Every mistake in a row is a compile error at that
/// row: an unknown or body-taking method of a `Ready` row names the enum
/// above that lists what is allowed, a row that an earlier one shadows
/// names [`AnEarlierRowMatchesEveryPathOf`], and a handler of the wrong kind
/// is a type error at its path.
macro_rules! route_table {
    ($(
        $name:ident : [$first:ident $(, $method:ident)*] [$($segment:tt),*]
            => $class:ident, $cache:literal, $kind:ident $handler:path, $doc:path;
    )+) => {
        $(
            const _: MethodOfARow = MethodOfARow::$first;
            $(const _: MethodOfARow = MethodOfARow::$method;)*
            check_kind!($kind $first);
            $(check_kind!($kind $method);)*
        )+

        /// Each row's path, in table order, for [`reachable`].
        const ROW_SEGMENTS: &[&[Segment]] = &[$(&[$(segment!($segment)),*]),+];
        // The row's own name resolves only through a reachable row: the
        // error, if any, is at the row.
        $(const _: () = {
            let _ = <Reachable<{ reachable(ROW_SEGMENTS, Route::$name as usize) }> as RowNames>::In::$name;
        };)+

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
            /// Every metrics label, indexed by `route as usize`.
            pub const LABELS: &'static [&'static str] =
                &[$(root_if_empty(concat!($("/", segment_text!($segment)),*)),)+ "unmatched"];

            /// The route's row; None for `Unmatched`.
            pub fn row(self) -> Option<&'static Row> {
                match self {
                    $(Route::$name => Some(const { &Row {
                        route: Route::$name,
                        template: root_if_empty(concat!($("/", segment_text!($segment)),*)),
                        example: root_if_empty(concat!($("/", segment_example!($segment)),*)),
                        segments: &[$(segment!($segment)),*],
                        methods: Verbs(verb_bits!($first) $(| verb_bits!($method))*),
                        allow: concat!(allow_text!($first) $(, ", ", allow_text!($method))*),
                        class: Class::$class,
                        cache_control: $cache,
                        handler: Handler::$kind($handler),
                        doc: $doc,
                    } }),)+
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

        /// The route a path's segments belong to, whatever the method.
        fn match_segments(segments: &[&str]) -> Route {
            // An unreachable arm is already an error at its row (above);
            // the lint would add a second one that points in here.
            #[allow(unreachable_patterns)]
            match segments {
                $([$(segment_pattern!($segment)),*] => Route::$name,)+
                _ => Route::Unmatched,
            }
        }
    };
}
use route_table;

macro_rules! check_kind {
    (Ready $method:ident) => {
        const _: MethodOfAReadyRow = MethodOfAReadyRow::$method;
    };
    (Async $method:ident) => {};
}
use check_kind;

macro_rules! verb_bits {
    (GET) => {
        Verb::Get.bit() | Verb::Head.bit()
    };
    (POST) => {
        Verb::Post.bit()
    };
    (PUT) => {
        Verb::Put.bit()
    };
    (DELETE) => {
        Verb::Delete.bit()
    };
    (PATCH) => {
        Verb::Patch.bit()
    };
    (OPTIONS) => {
        Verb::Options.bit()
    };
    // Any other name: `MethodOfARow` makes it a compile error at the row.
    ($other:ident) => {
        0
    };
}
use verb_bits;

macro_rules! allow_text {
    (GET) => {
        "GET, HEAD"
    };
    ($method:ident) => {
        stringify!($method)
    };
}
use allow_text;

macro_rules! segment {
    ({$name:ident : $example:literal}) => {
        Segment::Parameter {
            name: stringify!($name),
            example: $example,
        }
    };
    ($text:literal) => {
        Segment::Literal($text)
    };
}
use segment;

macro_rules! segment_text {
    ({$name:ident : $example:literal}) => {
        concat!("{", stringify!($name), "}")
    };
    ($text:literal) => {
        $text
    };
}
use segment_text;

macro_rules! segment_example {
    ({$name:ident : $example:literal}) => {
        $example
    };
    ($text:literal) => {
        $text
    };
}
use segment_example;

macro_rules! segment_pattern {
    ({$name:ident : $example:literal}) => {
        _
    };
    ($text:literal) => {
        $text
    };
}
use segment_pattern;

/// `/` for the root row, whose segments join to nothing.
const fn root_if_empty(path: &'static str) -> &'static str {
    if path.is_empty() { "/" } else { path }
}

impl Route {
    /// The metrics label: the path template, or `unmatched`.
    pub fn label(self) -> &'static str {
        Route::LABELS[self as usize]
    }

    pub fn is_probe(self) -> bool {
        self.row().is_some_and(|row| row.class == Class::Probe)
    }
}

/// The outcome of matching one request.
#[derive(Clone, Copy)]
pub enum Dispatch {
    /// The route's row, whose handler serves the request.
    Serve(&'static Row),
    /// The path exists but not for this method: 405 with `Allow`.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
    /// The request target is longer than [`MAX_URI_BYTES`]: 414.
    UriTooLong,
}

/// Matches a request against the table. `enabled` decides whether the
/// optional routes exist at all: a class that is off is 404s like any
/// unknown path.
pub fn dispatch(verb: Verb, path: &str, enabled: Enabled) -> (Route, Dispatch) {
    let route = match_path(path);
    let Some(row) = route.row() else {
        return (Route::Unmatched, Dispatch::NotFound);
    };
    if !enabled.serves(row.class) {
        return (Route::Unmatched, Dispatch::NotFound);
    }
    if row.methods.contains(verb) {
        (route, Dispatch::Serve(row))
    } else {
        (route, Dispatch::MethodNotAllowed { allow: row.allow })
    }
}

/// The route of a path: `/v1/notes/42` is split into its segments, which
/// the table's `match` compares. `/` has none; a path with a trailing
/// slash or an empty segment (`//`) has an empty one, so it matches
/// nothing, and so does one with more than [`MAX_SEGMENTS`].
fn match_path(path: &str) -> Route {
    let Some(rest) = path.strip_prefix('/') else {
        return Route::Unmatched;
    };
    let mut segments = [""; MAX_SEGMENTS];
    let mut count = 0;
    if !rest.is_empty() {
        for segment in rest.split('/') {
            let Some(slot) = segments.get_mut(count) else {
                return Route::Unmatched;
            };
            *slot = segment;
            count += 1;
        }
    }
    match_segments(&segments[..count])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check behind `AnEarlierRowMatchesEveryPathOf`: a row is shadowed
    /// by an earlier one of its length whose every segment is a parameter or
    /// the same literal, and only then.
    #[test]
    fn a_row_is_reachable_unless_one_earlier_row_matches_all_its_paths() {
        const ID: Segment = Segment::Parameter {
            name: "id",
            example: "1",
        };
        let notes = Segment::Literal("notes");
        let recent = Segment::Literal("recent");
        let by_id: &[Segment] = &[notes, ID];
        let recent_notes: &[Segment] = &[notes, recent];
        // The parameter row first shadows the literal one; not the other way.
        assert!(!reachable(&[by_id, recent_notes], 1));
        assert!(reachable(&[recent_notes, by_id], 1));
        // Another length or another literal shadows nothing.
        assert!(reachable(&[&[notes], by_id], 1));
        assert!(reachable(&[&[Segment::Literal("note"), ID], by_id], 1));
        // The same path twice, and the root twice.
        assert!(!reachable(&[recent_notes, recent_notes], 1));
        assert!(!reachable(&[&[], &[]], 1));
        // The first row is always reachable; pulse's own table has no shadowed row.
        assert!(reachable(&[by_id], 0));
        assert!((0..ROW_SEGMENTS.len()).all(|index| reachable(ROW_SEGMENTS, index)));
    }

    #[test]
    fn every_row_serves_its_methods_and_refuses_others_with_its_allow() {
        for &route in Route::ALL {
            let row = route.row().unwrap();
            for verb in Verb::ALL {
                match dispatch(verb, row.example, Enabled::ALL) {
                    (matched, Dispatch::Serve(served)) => {
                        assert_eq!(matched, route, "{}", row.example);
                        assert!(std::ptr::eq(served, row));
                        assert!(row.methods.contains(verb), "{verb:?} {}", row.example);
                    }
                    (matched, Dispatch::MethodNotAllowed { allow }) => {
                        assert_eq!(matched, route);
                        assert_eq!(allow, row.allow);
                        assert!(!row.methods.contains(verb), "{verb:?} {}", row.example);
                    }
                    _ => panic!("{verb:?} {}: not matched", row.example),
                }
            }
        }
        assert_eq!(Route::Health.row().unwrap().allow, "GET, HEAD");
        assert_eq!(Route::Echo.row().unwrap().allow, "POST");
    }

    /// GET brings HEAD, in the methods served and in `Allow`.
    #[test]
    fn get_implies_head() {
        for &route in Route::ALL {
            let row = route.row().unwrap();
            assert_eq!(
                row.methods.contains(Verb::Get),
                row.methods.contains(Verb::Head),
                "{}",
                row.template
            );
            let allow: Vec<&str> = row.allow.split(", ").collect();
            let methods: Vec<&str> = row.methods.iter().map(Verb::label).collect();
            let mut sorted_allow = allow.clone();
            sorted_allow.sort_unstable();
            let mut sorted_methods = methods.clone();
            sorted_methods.sort_unstable();
            assert_eq!(sorted_allow, sorted_methods, "{}", row.template);
        }
    }

    #[test]
    fn optional_routes_do_not_exist_when_their_setting_is_off() {
        let none = Enabled {
            faults: false,
            database: false,
        };
        for &route in Route::ALL {
            let row = route.row().unwrap();
            let (matched, outcome) = dispatch(Verb::Get, row.example, none);
            if matches!(row.class, Class::Fault | Class::Database) {
                assert_eq!(matched, Route::Unmatched, "{}", row.example);
                assert!(matches!(outcome, Dispatch::NotFound));
            } else {
                assert_eq!(matched, route, "{}", row.example);
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
            "health",
            "/metrics/x",
            "/echo/1",
            "/a/b/c/d/e/f/g/h/i",
        ] {
            assert_eq!(
                dispatch(Verb::Get, path, Enabled::ALL).0,
                Route::Unmatched,
                "{path:?}"
            );
        }
    }

    #[test]
    fn templates_and_examples_follow_the_segments() {
        let delay = Route::Delay.row().unwrap();
        assert_eq!(delay.template, "/delay/{ms}");
        assert_eq!(delay.example, "/delay/1");
        assert_eq!(delay.parameters().collect::<Vec<_>>(), ["ms"]);
        let root = Route::Root.row().unwrap();
        assert_eq!((root.template, root.example), ("/", "/"));
        assert_eq!(root.parameters().count(), 0);
        assert_eq!(Route::Delay.label(), "/delay/{ms}");
        assert_eq!(Route::Unmatched.label(), "unmatched");
    }

    /// What OpenAPI would otherwise get wrong quietly: a parameter without
    /// its schema (documented as any string), a body route without its
    /// request body, and a template that span export could not write as
    /// it is (it writes templates into JSON unescaped).
    #[test]
    fn every_row_documents_its_parameters_and_body() {
        for &route in Route::ALL {
            let row = route.row().unwrap();
            let doc = (row.doc)();
            let documented: Vec<&str> = doc.parameters.iter().map(|(name, _)| *name).collect();
            let declared: Vec<&str> = row.parameters().collect();
            assert_eq!(documented, declared, "{}: parameters", row.template);
            for verb in row.methods.iter() {
                let takes_body = matches!(verb, Verb::Post | Verb::Put | Verb::Patch);
                assert_eq!(
                    doc.of(verb).request_body.is_some(),
                    takes_body,
                    "{} {verb:?}: a POST, PUT or PATCH documents its request body, and only it",
                    row.template
                );
            }
            let plain = serde_json::to_string(row.template).unwrap();
            assert_eq!(plain, format!("\"{}\"", row.template), "{}", row.template);
        }
    }

    #[test]
    fn the_route_index_is_the_label_index() {
        // `route as usize` indexes the metrics table: Unmatched is last.
        for (index, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, index);
            assert_eq!(Route::LABELS[index], route.row().unwrap().template);
        }
        assert_eq!(Route::LABELS.last(), Some(&"unmatched"));
        assert_eq!(Route::LABELS.len(), Route::ALL.len() + 1);
    }
}
