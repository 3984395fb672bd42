//! Puts an [`App`] on a TCP listener.
//!
//! One accept loop serves HTTP/1.1 and h2c (prior knowledge) on the same port
//! through hyper-util's `auto::Builder`; HTTP/2 streams run in their
//! connection's task (`executor`). Each connection holds one of
//! `max_connections` semaphore permits until it closes, so shutdown waits for
//! the connections by taking every permit back. A connection with no request
//! in flight for the header read timeout is closed, whatever its protocol
//! (HTTP/2 clients receive GOAWAY), so idle clients cannot hold the slots.
//!
//! Shutdown, once the injected `shutdown` future resolves:
//! 1. readiness turns to draining (`/readyz` answers 503);
//! 2. for a [`ShutdownRequest::Terminate`], pulse keeps accepting and serving
//!    for the drain delay, so load balancers can take it out of rotation;
//! 3. the listener closes, and in-flight requests get up to the shutdown
//!    timeout to finish (HTTP/2 clients receive GOAWAY);
//! 4. [`serve`] returns.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::alert_log::AlertLog;
use crate::app::App;
use crate::config::Config;
use crate::connection::{Activity, Busy, Connections, Registration};
use crate::executor::{self, Handed, Streams};
use crate::logging::Peer;
use crate::metrics::{ConnectionError, GaugeGuard};
use crate::response::{Body, Handling};
use crate::service::Service;

/// HTTP/2 streams one connection may have open at once. h2's own defaults
/// also bound reset streams, which blunts the rapid-reset attack.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// SECURITY: the largest HTTP/1 request head (request line plus headers)
/// pulse buffers per connection; a larger one is refused with 431 before any
/// handler runs. 32 KiB leaves room for long cookies while 1024 connections
/// in the middle of a head stay within 32 MiB.
pub const MAX_REQUEST_HEAD_BYTES: usize = 32 * 1024;

/// SECURITY: the largest HTTP/2 header list (after HPACK decoding).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How long an idle connection that was asked to close (GOAWAY on HTTP/2)
/// may take to go before it is cut, so a client that ignores GOAWAY cannot
/// keep its slot.
const IDLE_CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Why the server is asked to stop; it decides whether pulse drains first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// SIGTERM from an orchestrator: drain for the configured delay first.
    Terminate,
    /// Ctrl-C (SIGINT) from a person at a terminal: skip the drain delay,
    /// but still let in-flight requests finish.
    Interrupt,
}

/// How many threads serve: the configured number, or else one per CPU the
/// process may run on (Rust's `available_parallelism`, which reads the
/// cgroup's CPU quota), as tokio itself would choose.
pub fn serving_threads(configured: Option<std::num::NonZeroUsize>) -> usize {
    configured
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get)
}

/// The tokio runtime that serves with `worker_threads` threads. One thread
/// is tokio's current-thread scheduler, on the thread that calls
/// `block_on`: the multi-thread scheduler would run a worker beside that
/// thread, hand every task across to it, and keep its work-stealing
/// bookkeeping with nothing to steal. On one CPU the current-thread
/// scheduler used 0.70x to 0.75x the CPU per h2c request and 0.99x per
/// HTTP/1.1 request (docs/performance.md; measured when every HTTP/2 stream
/// was a task of its own, before `executor`). A one-CPU container gets it
/// by default.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(worker_threads);
        builder
    };
    builder.enable_all().build()
}

/// Builds the app from `config` and serves it on `listener` until `shutdown`
/// resolves and the connections have drained.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ShutdownRequest>,
) -> Result<(), String> {
    serve(listener, App::new(config), shutdown).await
}

/// Serves an already built app, or the alert log; see the module docs for
/// the shutdown steps. An error is the reason a background task stopped
/// pulse for good ([`crate::startup::Stop`]): the process should exit 1.
pub async fn serve(
    listener: TcpListener,
    service: impl Into<Served>,
    shutdown: impl Future<Output = ShutdownRequest>,
) -> Result<(), String> {
    let service: Arc<Served> = Arc::new(service.into());
    let config = service.shared().config().clone();
    let http = Arc::new(http_builder(&config));
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let connections = Arc::new(Connections::default());
    let mut shutdown = pin!(shutdown);
    let exporter = service.start_background();
    let spawn = |(stream, remote, permit)| {
        let registration = connections.register();
        spawn_connection(&http, &service, stream, remote, permit, registration);
    };

    let stop = Arc::clone(service.shared().stop());
    let request = loop {
        tokio::select! {
            request = &mut shutdown => break request,
            reason = stop.stopped() => {
                log::error!("{reason}; stopping");
                break ShutdownRequest::Interrupt;
            }
            accepted = accept_within_cap(&listener, &permits, &connections) => spawn(accepted),
        }
    };

    service.shared().start_draining();
    log::info!("shutdown: {request:?} received; draining (/readyz now answers 503 where served)");
    if request == ShutdownRequest::Terminate && !config.drain_delay.is_zero() {
        log::info!(
            "shutdown: still serving for the drain delay of {}",
            seconds(config.drain_delay)
        );
        let mut drained = pin!(tokio::time::sleep(config.drain_delay));
        loop {
            tokio::select! {
                () = &mut drained => break,
                accepted = accept_within_cap(&listener, &permits, &connections) => spawn(accepted),
            }
        }
    }

    drop(listener);
    let deadline = std::time::Instant::now() + config.shutdown_timeout;
    let open = config.max_connections - permits.available_permits();
    log::info!(
        "shutdown: stopped accepting; waiting up to {} for {open} open connection(s)",
        seconds(config.shutdown_timeout),
    );
    // Every connection finishes its in-flight requests and closes (HTTP/2:
    // GOAWAY); it returns its permit when it is gone.
    connections.close_all();
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(config.shutdown_timeout, permits.acquire_many(all)).await {
        Ok(_) => log::info!("shutdown: all connections closed"),
        Err(_) => log::warn!(
            "shutdown: timeout of {} reached; closing the remaining connections",
            seconds(config.shutdown_timeout)
        ),
    }
    // The spans of the last requests go out within the same timeout.
    if let Some(exporter) = exporter {
        exporter.shutdown(deadline).await;
    }
    match stop.reason() {
        Some(reason) => Err(reason.to_owned()),
        None => Ok(()),
    }
}

fn http_builder(config: &Config) -> auto::Builder<Streams> {
    let mut http = auto::Builder::new(Streams);
    http.http1()
        // SECURITY: the idle watchdog in `spawn_connection` enforces
        // PULSE_HEADER_READ_TIMEOUT: a connection with no request in flight
        // for that long, whether silent, dribbling a head (slowloris) or idle
        // between keep-alive requests, is closed. hyper's own header timer
        // would do the same for HTTP/1 at the cost of a boxed timer, a clock
        // read and a timer-wheel entry on every request (9% of a request's
        // user CPU time, measured with callgrind). hyper applies a 30 s
        // default whenever a timer is set, so it is turned off explicitly.
        .header_read_timeout(None)
        // Head and body in one buffer, sent with one write(2): pulse's
        // bodies are small, and copying one costs less than the queue of
        // buffers that writev(2) needs (3.5% of the CPU per request,
        // measured against writev with both served at once).
        .writev(false)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        // No keep-alive pings: the idle watchdog already closes a connection
        // with no request in flight, dead peer or not, sooner than a ping
        // would find it gone. With pings on, hyper read the clock for every
        // frame received (callgrind: 740 instructions per h2c request).
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    if config.h2c {
        http
    } else {
        // No peeking at each connection's first bytes for the h2 preface.
        http.http1_only()
    }
}

/// Waits for a connection, then for a free slot for it. When every slot is
/// taken, the connection that has been idle longest is closed to make room:
/// an idle keep-alive connection loses nothing (its client reconnects when
/// it next needs to), while the new client would otherwise wait up to the
/// idle timeout. When every connection has a request in flight, the new one
/// waits for the first to finish, and later ones wait in the kernel's
/// accept queue: nothing is refused.
async fn accept_within_cap(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    connections: &Connections,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let (stream, remote) = accept_connection(listener).await;
    if let Ok(permit) = Arc::clone(permits).try_acquire_owned() {
        return (stream, remote, permit);
    }
    loop {
        connections.evict_longest_idle();
        tokio::select! {
            permit = Arc::clone(permits).acquire_owned() => {
                let Ok(permit) = permit else {
                    // The semaphore is never closed; if it were, stop accepting.
                    return std::future::pending().await;
                };
                return (stream, remote, permit);
            }
            // Every connection was busy: look again for one gone idle.
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn accept_connection(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            // Out of file descriptors or memory: retrying at once would be a
            // busy loop, so back off; warn at most every 10 s.
            Err(e) if is_resource_exhaustion(&e) => {
                warn_rate_limited(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // One connection failed (ECONNABORTED: the client reset it while
            // it waited in the queue); the next one is unaffected.
            Err(e) => log::debug!(target: "pulse::connection", "accept failed: {e}; retrying"),
        }
    }
}

/// EMFILE, ENFILE, ENOMEM and ENOBUFS: the process or the system is out of a
/// resource that closing connections gives back.
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    error.kind() == std::io::ErrorKind::OutOfMemory
        || matches!(
            error.raw_os_error(),
            Some(ENOMEM | ENFILE | EMFILE | ENOBUFS)
        )
}

fn warn_rate_limited(error: &std::io::Error) {
    static LAST_WARNED_S: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_WARNED_S.load(Ordering::Relaxed);
    if now_s >= last + 10
        && LAST_WARNED_S
            .compare_exchange(last, now_s, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SUPPRESSED.swap(0, Ordering::AcqRel);
        log::warn!(
            "accept failed: {error}; backing off 100ms per attempt ({suppressed} more such failures in the last 10 s); raise the open-file limit or lower PULSE_MAX_CONNECTIONS"
        );
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

fn spawn_connection(
    http: &Arc<auto::Builder<Streams>>,
    service: &Arc<Served>,
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    registration: Registration,
) {
    // Small responses must not wait for Nagle's algorithm.
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY for {remote}: {e}");
    }
    let activity = Arc::clone(&registration.activity);
    // Resolves (with an error) when the connection task ends, so the
    // watchdog stops with it instead of sleeping on.
    let (ended, connection_ended) = oneshot::channel::<()>();
    // Held by the connection task until the connection is gone.
    let held = Held {
        _slot: permit,
        _open: service.shared().metrics().track_connection(),
        _ended: ended,
        registered: registration,
    };
    let connection = tokio::spawn(serve_connection(
        Arc::clone(http),
        Arc::clone(service),
        stream,
        remote,
        held,
    ));
    tokio::spawn(watch_idle(
        Arc::clone(service),
        activity,
        remote,
        connection.abort_handle(),
        connection_ended,
    ));
}

/// What a connection holds while it is open: its slot under the cap, the
/// open-connections gauge, the signal to its watchdog, its registration.
struct Held {
    _slot: OwnedSemaphorePermit,
    _open: GaugeGuard,
    _ended: oneshot::Sender<()>,
    registered: Registration,
}

/// Serves one connection until it closes: asked to by shutdown or by the
/// idle watchdog, it finishes its requests first (HTTP/2: GOAWAY).
async fn serve_connection(
    http: Arc<auto::Builder<Streams>>,
    service: Arc<Served>,
    stream: TcpStream,
    remote: SocketAddr,
    held: Held,
) {
    let activity = Arc::clone(&held.registered.activity);
    let answer = answer_requests(&service, &activity, remote);
    let mut connection = pin!(
        http.serve_connection(TokioIo::new(stream), answer)
            .into_owned()
    );
    let mut closing = false;
    let mut handed = Handed::default();
    let result = std::future::poll_fn(|cx| {
        if !closing && activity.close_requested(cx) {
            closing = true;
            connection.as_mut().graceful_shutdown();
        }
        executor::poll_connection(connection.as_mut(), &mut handed, cx)
    })
    .await;
    if let Err(e) = result {
        let reason = ConnectionError::of(&*e);
        activity.count_error(service.shared().metrics(), reason);
        log::debug!(
            target: "pulse::connection",
            remote:% = remote,
            reason = reason.label();
            "connection ended with an error: {e}"
        );
    }
    drop(held);
}

/// The hyper service of one connection: each request marks the connection
/// active and goes to the `Service`.
fn answer_requests(
    service: &Arc<Served>,
    activity: &Arc<Activity>,
    remote: SocketAddr,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Infallibly,
> + use<> {
    let service = Arc::clone(service);
    let activity = Arc::clone(activity);
    let peer = Peer::new(remote);
    service_fn(move |request| {
        let received = crate::connection::Instant::now();
        activity.active_at(received);
        // Identity in a build; tokio's clock to std's in the crate's tests.
        #[allow(clippy::useless_conversion)]
        let handling = service.answer(request, peer, received.into());
        // A ready answer was complete before `answer` returned: the
        // connection is idle again, and `active_at` was its mark. Only an
        // answer still pending keeps the connection busy; a ready one saves
        // the mark's clock reading and four atomic operations.
        let busy = match handling {
            Handling::Ready(_) => None,
            Handling::Pending(_) => Some(Busy::new(&activity)),
        };
        Infallibly {
            handling,
            _busy: busy,
        }
    })
}

/// SECURITY: the idle watchdog. A connection with no request in flight
/// for the idle timeout is asked to close (HTTP/2: GOAWAY) and cut after
/// a short grace. It covers what hyper's own timers do not: HTTP/2
/// connections, which hyper never closes while the client answers pings,
/// and connections that never complete a first request head (protocol
/// detection has no timeout). A separate task, so that the connection's
/// own future is not slowed by polling a timer on every wake-up.
async fn watch_idle(
    service: Arc<Served>,
    activity: Arc<Activity>,
    remote: SocketAddr,
    abort: tokio::task::AbortHandle,
    connection_ended: oneshot::Receiver<()>,
) {
    let idle_timeout = service.shared().config().header_read_timeout;
    let mut connection_ended = pin!(connection_ended);
    let mut evicted = pin!(activity.evict.notified());
    let evicted = loop {
        let wait = match activity.idle_for() {
            Some(idle) if idle >= idle_timeout => break false,
            Some(idle) => idle_timeout - idle,
            None => idle_timeout,
        };
        tokio::select! {
            _ = connection_ended.as_mut() => return,
            () = evicted.as_mut() => break true,
            () = tokio::time::sleep(wait) => {}
        }
    };
    if evicted {
        log::debug!(
            target: "pulse::connection",
            remote:% = remote;
            "closing the connection idle longest: every slot is taken and a new client waits"
        );
    } else if !activity.served.load(Ordering::Relaxed) {
        // It never completed a request head: a silent or slowloris client.
        activity.count_error(service.shared().metrics(), ConnectionError::HeaderTimeout);
        log::debug!(
            target: "pulse::connection",
            remote:% = remote,
            reason = ConnectionError::HeaderTimeout.label();
            "closing connection: no request head within {}",
            seconds(idle_timeout)
        );
    } else {
        log::debug!(
            target: "pulse::connection",
            remote:% = remote;
            "closing connection: no request in flight for {}",
            seconds(idle_timeout)
        );
    }
    activity.request_close();
    tokio::select! {
        _ = connection_ended.as_mut() => {}
        () = tokio::time::sleep(IDLE_CLOSE_GRACE) => {
            // Cut a client that ignores GOAWAY, but never a request that
            // arrived meanwhile: graceful_shutdown lets that one finish.
            if activity.idle_for().is_some() {
                abort.abort();
            }
        }
    }
}

/// The services this server serves: one type, so that hyper's connection
/// code is compiled once. Generic over the service, it was compiled once per
/// service (74 KB of binary, 60 KiB more resident); through a `dyn Service`,
/// every request paid three more `memcpy` calls (200 instructions). The
/// match costs a branch, and the app's answer is inlined into its arm. A
/// fork with a service of its own adds a variant.
pub enum Served {
    App(App),
    AlertLog(Box<AlertLog>),
}

impl From<App> for Served {
    fn from(app: App) -> Served {
        Served::App(app)
    }
}

impl From<AlertLog> for Served {
    fn from(alert_log: AlertLog) -> Served {
        Served::AlertLog(Box::new(alert_log))
    }
}

impl Served {
    #[inline(always)]
    fn answer(
        &self,
        request: Request<Incoming>,
        peer: Peer,
        received: std::time::Instant,
    ) -> Handling {
        match self {
            Served::App(app) => app.answer(request, peer, received),
            Served::AlertLog(alert_log) => alert_log.answer(request, peer, received),
        }
    }

    fn shared(&self) -> &crate::context::Shared {
        match self {
            Served::App(app) => app.shared(),
            Served::AlertLog(alert_log) => Service::shared(&**alert_log),
        }
    }

    fn start_background(&self) -> Option<crate::span_export::Exporter> {
        match self {
            Served::App(app) => app.start_background(),
            Served::AlertLog(alert_log) => alert_log.start_background(),
        }
    }
}

/// Hands an answer to hyper, which wants a `Result`, and keeps a pending
/// request counted as in flight on its connection until then. A named future
/// instead of an `async` block: hyper moves the service future, and this one
/// is no bigger than the answer it carries.
struct Infallibly {
    handling: Handling,
    _busy: Option<Busy>,
}

impl Future for Infallibly {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handling).poll(cx).map(Ok)
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// The watchdog, eviction and the drain, on tokio's paused clock: the
/// runtime moves time on only when every task waits, so what happens at a
/// timeout is checked without sleeping and without racing the machine's
/// load. (The same behaviours over real sockets are in `tests/api`'s
/// timing tests.)
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const IDLE: Duration = Duration::from_secs(10);

    /// Ends the test process if a test takes 30 s of real time: on the
    /// paused clock, a task that loops without waiting stops time for good,
    /// and the test would hang instead of failing.
    struct WallClockLimit(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

    impl WallClockLimit {
        fn new(test: &'static str) -> WallClockLimit {
            let (done, finished) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(Duration::from_secs(30))
                {
                    eprintln!("{test}: still running after 30 s of real time; aborting");
                    std::process::abort();
                }
            });
            WallClockLimit(done)
        }
    }

    fn app() -> Arc<Served> {
        Arc::new(Served::App(App::new(Config {
            header_read_timeout: IDLE,
            ..Config::default()
        })))
    }

    /// A stand-in for a connection task: runs until aborted.
    fn connection() -> tokio::task::JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    fn remote() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    /// A registered connection, its stand-in task and its watchdog; the
    /// sender ends the watchdog when dropped.
    fn watched(
        connections: &Arc<Connections>,
    ) -> (
        Registration,
        tokio::task::JoinHandle<()>,
        oneshot::Sender<()>,
    ) {
        let registration = connections.register();
        let task = connection();
        let (ended, connection_ended) = oneshot::channel::<()>();
        tokio::spawn(watch_idle(
            app(),
            Arc::clone(&registration.activity),
            remote(),
            task.abort_handle(),
            connection_ended,
        ));
        (registration, task, ended)
    }

    /// Whether the watchdog asked the connection to close.
    fn asked_to_close(activity: &Activity) -> bool {
        activity.close_requested(&Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_asked_to_close_at_the_timeout_then_cut() {
        let _limit =
            WallClockLimit::new("an_idle_connection_is_asked_to_close_at_the_timeout_then_cut");
        let connections = Arc::new(Connections::default());
        let (registration, task, _ended) = watched(&connections);
        let activity = &registration.activity;
        tokio::time::sleep(IDLE - Duration::from_millis(1)).await;
        assert!(!asked_to_close(activity), "closed before the timeout");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(asked_to_close(activity), "still open after the timeout");
        // A client that ignores the request is cut after the grace.
        let cut = tokio::time::timeout(IDLE_CLOSE_GRACE + Duration::from_millis(1), task).await;
        assert!(
            cut.is_ok_and(|ended| ended.is_err_and(|e| e.is_cancelled())),
            "not cut after the grace"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_its_connection_open_past_the_timeout() {
        let _limit =
            WallClockLimit::new("a_request_in_flight_keeps_its_connection_open_past_the_timeout");
        let connections = Arc::new(Connections::default());
        let registration = connections.register();
        let activity = Arc::clone(&registration.activity);
        let task = connection();
        let (_ended, connection_ended) = oneshot::channel::<()>();
        let busy = Busy::new(&activity);
        tokio::spawn(watch_idle(
            app(),
            Arc::clone(&activity),
            remote(),
            task.abort_handle(),
            connection_ended,
        ));
        tokio::time::sleep(3 * IDLE).await;
        assert!(
            !asked_to_close(&activity),
            "closed with a request in flight"
        );
        // Idle from the moment the answer is handed over.
        drop(busy);
        tokio::time::sleep(IDLE - Duration::from_millis(1)).await;
        assert!(!asked_to_close(&activity));
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(asked_to_close(&activity));
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_connection_idle_longest_is_evicted_at_once() {
        let _limit =
            WallClockLimit::new("at_the_cap_the_connection_idle_longest_is_evicted_at_once");
        let connections = Arc::new(Connections::default());
        let (older, _older_task, _older_ended) = watched(&connections);
        let (newer, _newer_task, _newer_ended) = watched(&connections);
        let (busy, _busy_task, _busy_ended) = watched(&connections);
        let _in_flight = Busy::new(&busy.activity);
        // `older` went idle first; `newer` served a request 2 s later.
        tokio::time::sleep(Duration::from_secs(2)).await;
        newer.activity.active_at(crate::connection::Instant::now());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(connections.evict_longest_idle());
        tokio::task::yield_now().await;
        assert!(
            asked_to_close(&older.activity),
            "the one idle longest stays"
        );
        assert!(!asked_to_close(&newer.activity));
        assert!(!asked_to_close(&busy.activity));
        // With every connection busy, nothing is evicted.
        let only_busy = Arc::new(Connections::default());
        let registration = only_busy.register();
        let _busy = Busy::new(&registration.activity);
        assert!(!only_busy.evict_longest_idle());
    }

    /// SIGTERM: draining at once, serving for the drain delay, then gone;
    /// Ctrl-C skips the delay.
    #[tokio::test(start_paused = true)]
    async fn terminate_drains_for_the_delay_and_interrupt_does_not() {
        let _limit = WallClockLimit::new("terminate_drains_for_the_delay_and_interrupt_does_not");
        for (request, expected) in [
            (ShutdownRequest::Terminate, Duration::from_secs(3)),
            (ShutdownRequest::Interrupt, Duration::ZERO),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let app = App::new(Config {
                drain_delay: Duration::from_secs(3),
                ..Config::default()
            });
            let watched = app.clone();
            let started = tokio::time::Instant::now();
            let (stop, stopped) = oneshot::channel();
            let server = tokio::spawn(serve(listener, app, async move {
                stopped.await.unwrap_or(ShutdownRequest::Interrupt)
            }));
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(!watched.is_draining());
            stop.send(request).unwrap();
            tokio::task::yield_now().await;
            assert!(watched.is_draining(), "{request:?}: readiness did not flip");
            tokio::time::timeout(Duration::from_secs(60), server)
                .await
                .expect("serve returned")
                .unwrap()
                .expect("nothing stopped pulse for good");
            let took = started.elapsed() - Duration::from_secs(1);
            assert!(
                took >= expected && took < expected + Duration::from_millis(100),
                "{request:?}: serve returned after {took:?}, expected {expected:?}"
            );
        }
    }
}
