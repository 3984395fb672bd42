//! What recording a request's metrics costs when threads share a series:
//! `Metrics::observe` on one thread, then on two threads at once recording
//! the same (method, route, status), the worst case. Nothing on that path
//! takes a lock, but the series' counters are atomics both threads write,
//! so the two contend for their cache lines; the figure that matters is how
//! far their combined rate stays above the rate requests arrive at.
//!
//! Run: `cargo run --release --example observe_threads [CALLS_PER_THREAD]`
//! (scripts/bench/bench.sh runs it on CPUs 0 and 1). Prints one JSON object.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use pulse::build_info::BUILD;
use pulse::metrics::Metrics;
use pulse::routes::{Route, Verb};

fn main() {
    let calls: u32 = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 5_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("CALLS_PER_THREAD must be a whole number above 0");
            std::process::exit(2);
        }
    };
    let metrics = Metrics::new(&BUILD, Route::LABELS);
    let one = record(&metrics, 1, calls);
    let two = record(&metrics, 2, calls);
    let per_second = |threads: u32, elapsed: Duration| {
        f64::from(threads) * f64::from(calls) / elapsed.as_secs_f64()
    };
    println!(
        "{{\"one_thread_per_s\": {:.0}, \"two_threads_per_s\": {:.0}}}",
        per_second(1, one),
        per_second(2, two)
    );
}

/// `threads` threads each record `calls` requests; the time until all are done.
fn record(metrics: &Metrics, threads: u32, calls: u32) -> Duration {
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                start.wait();
                for _ in 0..calls {
                    metrics.observe(
                        Verb::Get,
                        Route::Root as usize,
                        StatusCode::OK,
                        Duration::ZERO,
                    );
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins every thread before it returns.
        began
    })
    .elapsed()
}
