//! Puts an [`App`] on a TCP listener.
//!
//! One accept loop serves HTTP/1.1 and h2c (prior knowledge) on the same port
//! through hyper-util's `auto::Builder`. Each connection is watched by a
//! `GracefulShutdown`, so that shutdown can wait for in-flight requests.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::app::{App, Body, Handling};
use crate::config::Config;

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

/// Why the server is asked to stop; it decides whether pulse drains first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// SIGTERM from an orchestrator: drain for the configured delay first.
    Terminate,
    /// Ctrl-C (SIGINT) from a person at a terminal: skip the drain delay,
    /// but still let in-flight requests finish.
    Interrupt,
}

/// Builds the app from `config` and serves it on `listener` until `shutdown`
/// resolves and the connections have drained.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ShutdownRequest>,
) {
    serve(listener, App::new(config), shutdown).await;
}

/// Serves an already built app; see the module docs for the shutdown steps.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ShutdownRequest>,
) {
    let config = app.config().clone();
    let http = Arc::new(http_builder(&config));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let mut shutdown = pin!(shutdown);

    let request = loop {
        tokio::select! {
            request = &mut shutdown => break request,
            (stream, remote, permit) = accept(&listener, &permits) => {
                spawn_connection(&http, &app, &graceful, stream, remote, permit);
            }
        }
    };

    app.start_draining();
    log::info!("shutdown: {request:?} received; /readyz now answers 503 draining");
    if request == ShutdownRequest::Terminate && !config.drain_delay.is_zero() {
        log::info!(
            "shutdown: still serving for the drain delay of {}",
            seconds(config.drain_delay)
        );
        let mut drained = pin!(tokio::time::sleep(config.drain_delay));
        loop {
            tokio::select! {
                () = &mut drained => break,
                (stream, remote, permit) = accept(&listener, &permits) => {
                    spawn_connection(&http, &app, &graceful, stream, remote, permit);
                }
            }
        }
    }

    drop(listener);
    log::info!(
        "shutdown: stopped accepting; waiting up to {} for {} open connection(s)",
        seconds(config.shutdown_timeout),
        graceful.count()
    );
    match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => log::info!("shutdown: all connections closed"),
        Err(_) => log::warn!(
            "shutdown: timeout of {} reached; closing the remaining connections",
            seconds(config.shutdown_timeout)
        ),
    }
}

fn http_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        // hyper starts this timer whenever the connection waits for a request
        // head, so it also closes idle keep-alive connections.
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        // Pings find dead peers that would otherwise hold a connection slot.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    http
}

/// Waits for a free connection slot, then for a connection. While all slots
/// are taken, new connections wait in the kernel's accept queue.
pub(crate) async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        // The semaphore is never closed; if it were, stop accepting.
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => return (stream, remote, permit),
            Err(e) => {
                // Running out of file descriptors must not become a busy loop.
                log::warn!("accept failed: {e}; retrying in 100ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_connection(
    http: &Arc<auto::Builder<TokioExecutor>>,
    app: &App,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    // Small responses must not wait for Nagle's algorithm.
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("cannot set TCP_NODELAY for {remote}: {e}");
    }
    let http = Arc::clone(http);
    let app = app.clone();
    let open = app.metrics().track_connection();
    let watcher = graceful.watcher();
    let header_read_timeout = app.config().header_read_timeout;
    // SECURITY: hyper's header read timeout starts only once it knows the
    // protocol, and detecting the protocol waits for the client's first
    // bytes. The watchdog task below closes a connection that has not sent
    // one complete request head within the header read timeout, whatever it
    // is. This channel resolves when the first request arrives, or errs when
    // the connection (which owns the sender) ends: either way the watchdog
    // can stop.
    let (first_request, first_request_seen) = oneshot::channel::<()>();
    let service = {
        let saw_request = AtomicBool::new(false);
        let first_request = Mutex::new(Some(first_request));
        service_fn(move |request| {
            if !saw_request.swap(true, Ordering::Relaxed) {
                if let Some(sender) = first_request.lock().ok().and_then(|mut s| s.take()) {
                    let _ = sender.send(());
                }
            }
            Infallibly(app.handle(&request, Some(remote)))
        })
    };
    let connection = tokio::spawn(async move {
        let _slot = permit;
        let _open = open;
        let connection = watcher.watch(
            http.serve_connection(TokioIo::new(stream), service)
                .into_owned(),
        );
        if let Err(e) = connection.await {
            log::debug!("connection from {remote} ended with an error: {e}");
        }
    });
    // A separate task, so that the connection's own future is not slowed by
    // polling a timer on every wake-up.
    let abort = connection.abort_handle();
    tokio::spawn(async move {
        tokio::select! {
            _ = first_request_seen => {}
            () = tokio::time::sleep(header_read_timeout) => {
                abort.abort();
                log::debug!(
                    "closed connection from {remote}: no request within {}",
                    seconds(header_read_timeout)
                );
            }
        }
    });
}

/// Hands an answer to hyper, which wants a `Result`. A named future instead
/// of an `async` block: hyper moves the service future, and this one is no
/// bigger than the answer it carries.
struct Infallibly(Handling);

impl Future for Infallibly {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(Ok)
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}
