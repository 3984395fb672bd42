//! What the server knows about each open connection: whether a request is
//! in flight and since when it has been idle. The idle watchdog in
//! `server` closes a connection idle for too long, and at the connection
//! cap the one idle longest makes room for a new client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Waker};
use std::time::Duration;

// The system's monotonic clock; in the crate's own tests tokio's, which a
// test can pause and advance (server.rs tests the idle watchdog that way).
// Not tokio's in a build: with tokio's test-util feature on, as it is in
// any build that compiles an example or a test, each reading takes a lock.
#[cfg(not(test))]
pub(crate) use std::time::Instant;
use tokio::sync::Notify;
#[cfg(test)]
pub(crate) use tokio::time::Instant;

use crate::lock;
use crate::metrics::{ConnectionError, Metrics};

/// When a connection last had a request in flight, for its idle watchdog.
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Whether a request head has ever arrived.
    pub(crate) served: AtomicBool,
    /// Whether this connection's error has been counted: the watchdog and
    /// hyper may both see a silent client time out; it counts once.
    error_counted: AtomicBool,
    /// Milliseconds from `opened` to the end of the last request.
    idle_since_ms: AtomicU64,
    /// Set to ask the connection to close gracefully.
    close_requested: AtomicBool,
    /// Wakes the connection's task to see the request; set at its first poll.
    /// A flag and a stored waker, not a `Notify`: the connection checks the
    /// flag on every wake-up, and a load costs less than polling a
    /// `Notified` future (measured with callgrind).
    task: OnceLock<Waker>,
    /// Asks the watchdog to close the connection now: a new client needs
    /// its slot.
    pub(crate) evict: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            error_counted: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            close_requested: AtomicBool::new(false),
            task: OnceLock::new(),
            evict: Notify::new(),
        }
    }

    /// Asks the connection to finish its in-flight requests and close
    /// (HTTP/2: GOAWAY).
    pub(crate) fn request_close(&self) {
        self.close_requested.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.get() {
            task.wake_by_ref();
        }
    }

    /// Whether the connection was asked to close. The first call keeps the
    /// connection task's waker, which stays valid for the task's life; the
    /// flag is read after that, so a request made meanwhile is not missed.
    pub(crate) fn close_requested(&self, cx: &Context<'_>) -> bool {
        self.task.get_or_init(|| cx.waker().clone());
        self.close_requested.load(Ordering::SeqCst)
    }

    /// Counts the error this connection ended with, once.
    pub(crate) fn count_error(&self, metrics: &Metrics, error: ConnectionError) {
        if !self.error_counted.swap(true, Ordering::AcqRel) {
            metrics.count_connection_error(error);
        }
    }

    /// A request arrived at `at`. It counts as the end of the last one:
    /// a ready answer is complete microseconds later, and a pending one is
    /// counted in flight ([`Busy`]) until it ends.
    pub(crate) fn active_at(&self, at: Instant) {
        self.idle_from(at);
        self.served.store(true, Ordering::Relaxed);
    }

    /// Counts the connection idle from `at` whenever nothing is in flight.
    fn idle_from(&self, at: Instant) {
        let since_opened = at.saturating_duration_since(self.opened).as_millis();
        self.idle_since_ms.store(
            u64::try_from(since_opened).unwrap_or(u64::MAX),
            Ordering::Release,
        );
    }

    /// How long the connection has had no request in flight; None while it
    /// has one.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.opened.elapsed().saturating_sub(since))
    }
}

/// The open connections' activity, to find the one idle longest.
#[derive(Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Connections {
    pub(crate) fn register(self: &Arc<Self>) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new());
        lock(&self.open).insert(id, Arc::clone(&activity));
        Registration {
            connections: Arc::clone(self),
            id,
            activity,
        }
    }

    /// Asks every open connection to close (shutdown).
    pub(crate) fn close_all(&self) {
        for activity in lock(&self.open).values() {
            activity.request_close();
        }
    }

    /// Asks the connection with no request in flight for the longest time to
    /// close; false if every connection is busy.
    pub(crate) fn evict_longest_idle(&self) -> bool {
        let open = lock(&self.open);
        let victim = open
            .values()
            .filter_map(|activity| Some((activity.idle_for()?, activity)))
            .max_by_key(|(idle, _)| *idle);
        match victim {
            Some((_, activity)) => {
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's entry in [`Connections`], removed when dropped.
pub(crate) struct Registration {
    connections: Arc<Connections>,
    id: u64,
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.connections.open).remove(&self.id);
    }
}

/// Marks a pending request in flight on its connection until dropped, when
/// the response has been handed to hyper (or the handler was cancelled).
pub(crate) struct Busy(Arc<Activity>);

impl Busy {
    pub(crate) fn new(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_from(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
