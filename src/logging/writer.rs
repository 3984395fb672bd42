//! The batch between the threads that log and the one thread that writes
//! stdout, so that no request waits for stdout.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use prometheus::IntCounter;

use crate::lock;

/// The longest a log line waits in the buffer before it reaches stdout.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// With this many bytes waiting, the writer is woken before its interval.
pub const WRITE_SOON: usize = 64 * 1024;

/// SECURITY: the most bytes that wait for stdout. Past it lines are dropped,
/// so a stdout nobody reads costs bounded memory instead of a stalled server.
pub const BUFFER_CAP: usize = 1024 * 1024;

/// The buffer between the threads that log and the one that writes.
pub(super) struct Batch {
    pub(super) pending: Mutex<Vec<u8>>,
    /// Wakes the writer: a full batch, or a flush request.
    wake: Condvar,
    /// Flush requests made, and the last one the writer completed.
    flush_requested: AtomicU64,
    flushed: Mutex<u64>,
    flush_done: Condvar,
    pub(super) writer_running: AtomicBool,
}

impl Batch {
    /// Ends an append to `pending`, which held `before` bytes: the lock is
    /// released, then the writer is woken if the batch just crossed
    /// [`WRITE_SOON`]. Once per crossing: a wake-up per line would cost a
    /// system call per request. Unlocked first: the writer, woken while the
    /// lock is still held, would block on it at once and switch back.
    pub(super) fn appended(&self, pending: MutexGuard<'_, Vec<u8>>, before: usize) {
        let crossed = before < WRITE_SOON && pending.len() >= WRITE_SOON;
        drop(pending);
        if crossed {
            self.wake.notify_one();
        }
    }
}

static BATCH: OnceLock<Batch> = OnceLock::new();

pub(super) fn batch() -> &'static Batch {
    BATCH.get_or_init(|| Batch {
        pending: Mutex::new(Vec::with_capacity(4096)),
        wake: Condvar::new(),
        flush_requested: AtomicU64::new(0),
        flushed: Mutex::new(0),
        flush_done: Condvar::new(),
        writer_running: AtomicBool::new(false),
    })
}

/// Log lines dropped because stdout was not keeping up, since the start.
/// The metrics of every App report this one counter.
pub fn dropped_lines() -> &'static IntCounter {
    static DROPPED: OnceLock<IntCounter> = OnceLock::new();
    DROPPED.get_or_init(|| {
        IntCounter::new(
            "pulse_log_lines_dropped_total",
            "Log lines dropped because stdout did not keep up and the log buffer was full.",
        )
        .expect("static metric definition")
    })
}

/// The writer thread: swaps the batch out under the lock, then writes it
/// without the lock, so a blocked stdout holds up no one else.
pub(super) fn write_forever(batch: &Batch) {
    let mut writing = Vec::with_capacity(4096);
    let mut reported = 0;
    loop {
        let generation;
        {
            let mut pending = lock(&batch.pending);
            let done = *lock(&batch.flushed);
            if pending.len() < WRITE_SOON && batch.flush_requested.load(Ordering::Acquire) == done {
                pending = batch
                    .wake
                    .wait_timeout(pending, FLUSH_INTERVAL)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
            }
            generation = batch.flush_requested.load(Ordering::Acquire);
            std::mem::swap(&mut *pending, &mut writing);
        }
        write_to_stdout(&writing);
        writing.clear();
        // A burst must not pin its peak allocation for the process's life.
        writing.shrink_to(4 * WRITE_SOON);
        let dropped = dropped_lines().get();
        if dropped > reported {
            log::warn!(
                target: "pulse::logging",
                dropped = dropped - reported;
                "dropped {} log lines: stdout did not keep up and the log buffer ({} KiB) was full",
                dropped - reported,
                BUFFER_CAP / 1024
            );
            reported = dropped;
        }
        let mut flushed = lock(&batch.flushed);
        // Only a flush request can have a waiter, and a notification costs
        // a system call even with no one waiting.
        if *flushed != generation {
            *flushed = generation;
            batch.flush_done.notify_all();
        }
    }
}

fn write_to_stdout(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let mut stdout = io::stdout().lock();
    // A closed stdout must not take the service down; the lines are dropped.
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Writes every line logged so far to stdout, waiting at most `deadline`
/// (stdout may be blocked); true if they were written.
pub fn flush(deadline: Duration) -> bool {
    let batch = batch();
    if !batch.writer_running.load(Ordering::Acquire) {
        let lines = std::mem::take(&mut *lock(&batch.pending));
        write_to_stdout(&lines);
        return true;
    }
    let target = {
        // Under the batch lock, so the writer cannot miss the request
        // between checking for work and going to sleep.
        let _pending = lock(&batch.pending);
        let target = batch.flush_requested.fetch_add(1, Ordering::AcqRel) + 1;
        batch.wake.notify_one();
        target
    };
    let flushed = lock(&batch.flushed);
    let (flushed, _) = batch
        .flush_done
        .wait_timeout_while(flushed, deadline, |done| *done < target)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *flushed >= target
}

/// Flushes the log, within its deadline, when dropped: on return and on a
/// panic unwinding alike. The binary holds one for its whole run.
pub struct FlushOnDrop(pub Duration);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush(self.0);
    }
}

/// env_logger's pipe target: it appends each formatted line to the batch,
/// or drops and counts it when the batch is full. It never touches stdout.
/// env_logger calls `flush` after every line; that is deliberately a no-op.
pub(super) struct BatchedStdout(pub(super) &'static Batch);

impl Write for BatchedStdout {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = lock(&self.0.pending);
        if pending.len() + line.len() > BUFFER_CAP {
            drop(pending);
            dropped_lines().inc();
            return Ok(line.len());
        }
        let before = pending.len();
        pending.extend_from_slice(line);
        self.0.appended(pending, before);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
