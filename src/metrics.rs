//! Prometheus metrics: the RED metrics of every request, build info, and the
//! process metrics that the alert rules and the dashboard read.
//!
//! Every label value comes from a fixed set ([`Verb`], the route templates
//! the app hands over, the status code), so the number of series is bounded
//! whatever clients send.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use hyper::StatusCode;
use hyper::body::Bytes;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};

use crate::allocation;
use crate::build_info::BuildInfo;
use crate::exposition::BucketBounds;
use crate::secrets::rotating::ReloadMetrics;
use crate::verb::Verb;

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets from 100 µs to 10 s: pulse answers most routes in
/// microseconds, while `/delay` and a slow network reach into seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The metrics of one App.
pub struct Metrics {
    /// Every metric. Gathered by [`Metrics::gather`], not by a
    /// `prometheus::Registry`: see there.
    collectors: Vec<Box<dyn Collector>>,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    panics: IntCounter,
    connections: IntGauge,
    connection_errors: IntCounterVec,
    spans: SpanCounters,
    secret_reloads: ReloadMetrics,
    /// The length of the last page rendered.
    page_size: AtomicUsize,
    /// The buffer of the last page, back from its response.
    page_buffer: allocation::ReturnedBuffer,
    /// The metric families of the last two scrapes.
    last_families: allocation::LastTwo<Gathered>,
    /// Taken by a scrape and handed back: see [`BucketBounds`].
    bucket_bounds: Mutex<BucketBounds>,
    /// Resolved label sets, one slot per (method, route): looking a series
    /// up by its labels hashes them under a lock, on every request. Boxed,
    /// so the slots of routes never called cost 16 bytes each.
    series: Box<[OnceLock<Box<RouteSeries>>]>,
    /// The `route` label of each route index.
    route_labels: &'static [&'static str],
}

/// How many statuses a (method, route) keeps resolved. A route answers with
/// a handful (200, 404, 405, 408, 413, 500...); a status beyond these is
/// still counted, through the label lookup.
const STATUS_SLOTS: usize = 8;

struct RouteSeries {
    duration: Histogram,
    /// The statuses this route has answered with and their counters, filled
    /// in order and never changed. Reading a filled slot is one atomic load:
    /// requests on every core count without taking a lock.
    by_status: [OnceLock<(StatusCode, IntCounter)>; STATUS_SLOTS],
}

impl Metrics {
    /// `route_labels` names every route `observe` may be given, by index.
    pub fn new(build: &BuildInfo, route_labels: &'static [&'static str]) -> Metrics {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by method, route and status code.",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving a request's headers to handing its response to the connection, by method and route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("static metric definition");
        let in_flight = IntGauge::new(
            "http_requests_in_flight",
            "HTTP requests being handled right now.",
        )
        .expect("static metric definition");
        let panics = IntCounter::new(
            "pulse_handler_panics_total",
            "Request handlers that panicked and were answered with a 500.",
        )
        .expect("static metric definition");
        let connections = IntGauge::new(
            "pulse_open_connections",
            "Client connections open right now.",
        )
        .expect("static metric definition");
        let connection_errors = IntCounterVec::new(
            Opts::new(
                "pulse_connection_errors_total",
                "Connections ended by an error before or instead of an answer (hyper's own 400 and 431 included), by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        // Every reason from the start, so a rate() sees the first error.
        for reason in ConnectionError::ALL {
            connection_errors.with_label_values(&[reason.label()]);
        }
        let spans = SpanCounters::new();
        // On the page only once an app has secret settings
        // ([`Metrics::include_secret_reloads`]).
        let secret_reloads = ReloadMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "pulse_secret_reloads_total",
                    "Re-reads of a secret file that changed it (success) or failed to read or validate it (error), by secret setting.",
                ),
                &["secret", "result"],
            )
            .expect("static metric definition"),
            last_reload: GaugeVec::new(
                Opts::new(
                    "pulse_secret_last_reload_timestamp_seconds",
                    "When each secret setting's value in force was read, as a Unix time.",
                ),
                &["secret"],
            )
            .expect("static metric definition"),
        };
        let build_info = IntGaugeVec::new(
            Opts::new(
                "pulse_build_info",
                "Always 1; its labels describe the running build.",
            ),
            &["version", "revision", "rustc_version", "target"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[build.version, build.commit, build.rustc, build.target])
            .set(1);

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(panics.clone()),
            Box::new(connections.clone()),
            Box::new(connection_errors.clone()),
            Box::new(build_info),
            Box::new(spans.exported.clone()),
            Box::new(spans.failures.clone()),
            Box::new(spans.dropped.clone()),
            Box::new(crate::logging::dropped_lines().clone()),
            #[cfg(target_os = "linux")]
            Box::new(crate::process_metrics::ProcessCollector::default()),
        ];
        assert_unique_names(&collectors);
        Metrics {
            collectors,
            requests,
            duration,
            in_flight,
            panics,
            connections,
            connection_errors,
            spans,
            secret_reloads,
            page_size: AtomicUsize::new(16 * 1024),
            page_buffer: allocation::ReturnedBuffer::default(),
            last_families: allocation::LastTwo::default(),
            bucket_bounds: Mutex::default(),
            series: (0..Verb::COUNT * route_labels.len())
                .map(|_| OnceLock::new())
                .collect(),
            route_labels,
        }
    }

    /// Records one answered request of the route with index `route`.
    pub fn observe(&self, verb: Verb, route: usize, status: StatusCode, elapsed: Duration) {
        let series = self.route_series(verb, route);
        series.duration.observe(elapsed.as_secs_f64());
        self.count(series, verb, route, status);
    }

    /// Creates the request counter of (verb, route, status) at 0 before any
    /// request counts in it. A series that appears at 1 is invisible to
    /// rate(), so the first 5xx of a route would be lost to the error SLI.
    /// Only the counter: the route's duration histogram (18 lines a scrape
    /// renders) still appears with its first request.
    pub fn create_series(&self, verb: Verb, route: usize, status: StatusCode) {
        self.requests
            .with_label_values(&[verb.label(), self.route_labels[route], status.as_str()]);
    }

    fn route_series(&self, verb: Verb, route: usize) -> &RouteSeries {
        let routes = self.route_labels.len();
        self.series[verb as usize * routes + route].get_or_init(|| {
            Box::new(RouteSeries {
                duration: self
                    .duration
                    .with_label_values(&[verb.label(), self.route_labels[route]]),
                by_status: std::array::from_fn(|_| OnceLock::new()),
            })
        })
    }

    fn count(&self, series: &RouteSeries, verb: Verb, route: usize, status: StatusCode) {
        let counter = || {
            self.requests.with_label_values(&[
                verb.label(),
                self.route_labels[route],
                status.as_str(),
            ])
        };
        // The first empty slot takes this status, unless an earlier slot
        // has it. Two requests filling the same slot at once agree on one
        // status (get_or_init runs once); the other moves on to the next
        // slot, so a status never lands in two.
        for slot in &series.by_status {
            let (known, known_counter) = slot.get_or_init(|| (status, counter()));
            if *known == status {
                known_counter.inc();
                return;
            }
        }
        counter().inc();
    }

    /// Counts a request while it is alive, including when its handler panics.
    pub fn track_in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(&self.in_flight)
    }

    /// Counts a connection while it is open.
    pub fn track_connection(&self) -> GaugeGuard {
        GaugeGuard::new(&self.connections)
    }

    pub fn count_panic(&self) {
        self.panics.inc();
    }

    pub fn count_connection_error(&self, error: ConnectionError) {
        self.connection_errors
            .with_label_values(&[error.label()])
            .inc();
    }

    /// The span export counters, registered whether export is on or off,
    /// so that alerts and dashboards can rely on them.
    pub fn spans(&self) -> &SpanCounters {
        &self.spans
    }

    /// The counters of secret reloads, for `secrets::rotating`.
    pub fn secret_reloads(&self) -> &ReloadMetrics {
        &self.secret_reloads
    }

    /// Puts the secret-reload families on the page. An app without secret
    /// settings never calls it: even empty, gathering them costs every
    /// scrape (docs/performance.md, "Secret settings and the scrape").
    /// Calling it again changes nothing.
    pub fn include_secret_reloads(&mut self) {
        let name = &self.secret_reloads.reloads.desc()[0].fq_name;
        let included = self
            .collectors
            .iter()
            .any(|collector| collector.desc().iter().any(|desc| &desc.fq_name == name));
        if included {
            return;
        }
        self.collectors
            .push(Box::new(self.secret_reloads.reloads.clone()));
        self.collectors
            .push(Box::new(self.secret_reloads.last_reload.clone()));
        assert_unique_names(&self.collectors);
    }

    /// Puts a fork's own metric families on the page (the database's,
    /// `src/state.rs`). Their names must not clash with pulse's.
    pub fn register(&mut self, collector: Box<dyn Collector>) {
        self.collectors.push(collector);
        assert_unique_names(&self.collectors);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Bytes {
        let mut out = self.page_buffer.take();
        // The page is about as long as the last one: no regrowth while writing.
        out.reserve(self.page_size.load(Ordering::Relaxed) + 1024);
        let gathered = self.gather();
        // Taken, not held while encoding: a concurrent scrape formats its
        // own bounds rather than waiting.
        let mut bounds = std::mem::take(&mut *crate::lock(&self.bucket_bounds));
        crate::exposition::encode(&gathered.families, &mut out, &mut bounds);
        *crate::lock(&self.bucket_bounds) = bounds;
        self.page_size.store(out.len(), Ordering::Relaxed);
        self.last_families.keep(gathered);
        self.page_buffer.share(out)
    }

    /// Every metric family with at least one series, sorted by name, each
    /// family's series sorted by label values: what `Registry::gather`
    /// returns for collectors that do not share names, without its
    /// `BTreeMap` of families. Those tree nodes, a few KiB made and freed
    /// by every scrape, were the only blocks of their size class: musl's
    /// allocator mapped them fresh and unmapped them each time, an `mmap`,
    /// a `munmap` and a page fault per scrape (about a third of the scrape's
    /// CPU with one thread serving).
    ///
    /// Each collector hands its families over in a `Vec` of its own; the
    /// emptied `Vec`s are kept with the families, for as long
    /// (`allocation::LastTwo`).
    fn gather(&self) -> Gathered {
        let capacity = self
            .last_families
            .with_newest(|newest| newest.families.len());
        let mut families = Vec::with_capacity(capacity);
        let mut emptied = Vec::with_capacity(self.collectors.len());
        for collector in &self.collectors {
            let mut collected = collector.collect();
            families.extend(
                collected
                    .drain(..)
                    .filter(|family| !family.get_metric().is_empty()),
            );
            emptied.push(collected);
        }
        families.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        for family in &mut families {
            // Series never share a label set; as the registry does, fewer
            // labels first, then label values in order.
            family.mut_metric().sort_unstable_by(|a, b| {
                let (a, b) = (a.get_label(), b.get_label());
                a.len().cmp(&b.len()).then_with(|| {
                    let b_values = b.iter().map(|pair| pair.value());
                    a.iter().map(|pair| pair.value()).cmp(b_values)
                })
            });
        }
        Gathered {
            families,
            _emptied: emptied,
        }
    }
}

/// One scrape's families, and the `Vec`s its collectors handed them over
/// in, kept empty: see [`Metrics::gather`].
#[derive(Default)]
struct Gathered {
    families: Vec<MetricFamily>,
    _emptied: Vec<Vec<MetricFamily>>,
}

/// Panics if two collectors describe the same metric name, which
/// `Registry::register` would refuse: their families would be written twice.
fn assert_unique_names(collectors: &[Box<dyn Collector>]) {
    let mut names: Vec<&str> = collectors
        .iter()
        .flat_map(|collector| collector.desc())
        .map(|desc| desc.fq_name.as_str())
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        panic!("two metrics are named {}", pair[0]);
    }
}

/// Why a connection ended with an error: a fixed set, so the label is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionError {
    /// A request hyper could not parse; HTTP/1 clients got a 400.
    MalformedRequest,
    /// A request head over the limit; HTTP/1 clients got a 431.
    HeaderTooLarge,
    /// No complete request head within the header read timeout.
    HeaderTimeout,
    /// The client went away in the middle of a request.
    IncompleteRequest,
    /// An HTTP/2 protocol error (a bad frame, a refused header list, ...).
    Http2Protocol,
    /// The socket failed: a reset, a broken pipe.
    Io,
    Other,
}

impl ConnectionError {
    pub const ALL: [ConnectionError; 7] = [
        ConnectionError::MalformedRequest,
        ConnectionError::HeaderTooLarge,
        ConnectionError::HeaderTimeout,
        ConnectionError::IncompleteRequest,
        ConnectionError::Http2Protocol,
        ConnectionError::Io,
        ConnectionError::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ConnectionError::MalformedRequest => "malformed_request",
            ConnectionError::HeaderTooLarge => "header_too_large",
            ConnectionError::HeaderTimeout => "header_timeout",
            ConnectionError::IncompleteRequest => "incomplete_request",
            ConnectionError::Http2Protocol => "http2_protocol",
            ConnectionError::Io => "io",
            ConnectionError::Other => "other",
        }
    }

    /// Classifies the error a connection ended with.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> ConnectionError {
        let mut source = Some(error);
        while let Some(error) = source {
            if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
                if hyper.is_parse_too_large() {
                    return ConnectionError::HeaderTooLarge;
                }
                if hyper.is_parse() {
                    return ConnectionError::MalformedRequest;
                }
                if hyper.is_timeout() {
                    return ConnectionError::HeaderTimeout;
                }
                if hyper.is_incomplete_message() {
                    return ConnectionError::IncompleteRequest;
                }
                // hyper has no predicate for its HTTP/2 errors; its message
                // for them starts so (hyper's Kind::Http2).
                if hyper.to_string().starts_with("http2 error") {
                    return ConnectionError::Http2Protocol;
                }
            }
            if error.downcast_ref::<std::io::Error>().is_some() {
                return ConnectionError::Io;
            }
            source = error.source();
        }
        ConnectionError::Other
    }
}

/// The counters of span export.
#[derive(Clone)]
pub struct SpanCounters {
    pub exported: IntCounter,
    /// Export requests that failed; a batch may be retried several times.
    pub failures: IntCounter,
    dropped: IntCounterVec,
}

/// Why spans were dropped: a fixed set, so the label is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanDrop {
    /// The export queue was full: the collector is slow or down.
    QueueFull,
    /// Every attempt to send the batch failed, or the collector refused it.
    ExportFailed,
    /// Still queued when the shutdown deadline came.
    Shutdown,
}

impl SpanDrop {
    pub const ALL: [SpanDrop; 3] = [
        SpanDrop::QueueFull,
        SpanDrop::ExportFailed,
        SpanDrop::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SpanDrop::QueueFull => "queue_full",
            SpanDrop::ExportFailed => "export_failed",
            SpanDrop::Shutdown => "shutdown",
        }
    }
}

impl SpanCounters {
    fn new() -> SpanCounters {
        let dropped = IntCounterVec::new(
            Opts::new(
                "pulse_spans_dropped_total",
                "Spans not exported, by reason: the queue was full, the collector failed or refused them, or shutdown came first.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        for reason in SpanDrop::ALL {
            dropped.with_label_values(&[reason.label()]);
        }
        SpanCounters {
            exported: IntCounter::new(
                "pulse_spans_exported_total",
                "Spans the OTLP collector accepted.",
            )
            .expect("static metric definition"),
            failures: IntCounter::new(
                "pulse_span_export_failures_total",
                "OTLP export requests that failed (a batch may be retried).",
            )
            .expect("static metric definition"),
            dropped,
        }
    }

    pub fn dropped(&self, reason: SpanDrop) -> IntCounter {
        self.dropped.with_label_values(&[reason.label()])
    }
}

/// Increments a gauge now and decrements it when dropped.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: &IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[&str] = &["/", "/echo", "/metrics", "unmatched"];
    const ROOT: usize = 0;
    const ECHO: usize = 1;
    const METRICS: usize = 2;

    #[test]
    fn a_scrape_writes_into_the_last_pages_buffer_once_it_is_sent() {
        let metrics = Metrics::new(&crate::build_info::BUILD, ROUTES);
        let first = metrics.render();
        let first_address = first.as_ptr();
        // While the first page is still being sent, a second gets its own.
        let second = metrics.render();
        assert_ne!(second.as_ptr(), first_address);
        drop(first);
        metrics.observe(Verb::Get, ROOT, StatusCode::OK, Duration::ZERO);
        let third = metrics.render();
        assert_eq!(third.as_ptr(), first_address);
        drop(second);
        let text = std::str::from_utf8(&third).unwrap();
        assert!(text.starts_with("# HELP "), "{text}");
        assert!(text.ends_with('\n'));
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/",status="200"} 1"#),
            "{text}"
        );
    }

    /// `gather` stands in for `Registry::gather`: the same families, in
    /// the same order, each one's series in the same order.
    #[test]
    fn gather_returns_what_a_registry_would() {
        let metrics = Metrics::new(&crate::build_info::BUILD, ROUTES);
        for (verb, route, status) in [
            (Verb::Post, ECHO, StatusCode::BAD_REQUEST),
            (Verb::Get, ROOT, StatusCode::OK),
            (Verb::Get, METRICS, StatusCode::OK),
            (Verb::Head, ROOT, StatusCode::OK),
            (Verb::Get, ROOT, StatusCode::NOT_FOUND),
        ] {
            metrics.observe(verb, route, status, Duration::from_millis(3));
        }
        let registry = prometheus::Registry::new();
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(metrics.requests.clone()),
            Box::new(metrics.duration.clone()),
            Box::new(metrics.in_flight.clone()),
            Box::new(metrics.connection_errors.clone()),
        ];
        for collector in collectors {
            registry.register(collector).unwrap();
        }
        let expected = registry.gather();
        let names: Vec<&str> = expected.iter().map(MetricFamily::name).collect();
        let gathered: Vec<MetricFamily> = metrics
            .gather()
            .families
            .into_iter()
            .filter(|family| names.contains(&family.name()))
            .collect();
        assert_eq!(gathered, expected);
        let all: Vec<String> = metrics
            .gather()
            .families
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        assert!(all.is_sorted(), "{all:?}");
    }

    #[test]
    #[should_panic(expected = "two metrics are named http_requests_in_flight")]
    fn two_metrics_of_one_name_are_refused() {
        let gauge = || IntGauge::new("http_requests_in_flight", "again").unwrap();
        assert_unique_names(&[Box::new(gauge()), Box::new(gauge())]);
    }

    /// Two threads answering the same route at once, each status first seen
    /// by both at the same moment: every request is counted under its own
    /// status, including statuses past the resolved slots.
    #[test]
    fn concurrent_requests_are_each_counted_under_their_status() {
        const PER_THREAD: usize = 20_000;
        let metrics = Metrics::new(&crate::build_info::BUILD, ROUTES);
        let statuses: Vec<StatusCode> = (0..STATUS_SLOTS as u16 + 3)
            .map(|offset| StatusCode::from_u16(200 + offset).unwrap())
            .collect();
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    start.wait();
                    for i in 0..PER_THREAD {
                        let status = statuses[i % statuses.len()];
                        metrics.observe(Verb::Get, ROOT, status, Duration::ZERO);
                    }
                });
            }
        });
        let page = String::from_utf8(metrics.render().to_vec()).unwrap();
        for (index, status) in statuses.iter().enumerate() {
            let series = format!(
                r#"http_requests_total{{method="GET",route="/",status="{}"}} "#,
                status.as_str()
            );
            let counted = page
                .lines()
                .find_map(|line| line.strip_prefix(&series))
                .unwrap_or_else(|| panic!("no {series}"));
            let sent = 2
                * (0..PER_THREAD)
                    .filter(|i| i % statuses.len() == index)
                    .count();
            assert_eq!(counted, sent.to_string(), "{series}");
        }
    }
}
