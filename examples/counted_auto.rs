//! The yardstick the performance goal is named after: "a hyper loop with
//! Prometheus counters and a text access log". It is `bare_auto` plus what
//! anyone would add first, written the plain way: a request counter by
//! method, route and status and a duration histogram from the `prometheus`
//! crate, and one env_logger line per request on stdout. No headers, ids or
//! trace context. `scripts/bench/bench.sh` measures it against `bare_auto`
//! (what the goal's 1.10x assumes it costs) and pulse against it.
//!
//! Run: `PORT=8083 cargo run --release --example counted_auto`

use std::convert::Infallible;
use std::io::Write;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};

mod support;

struct Counters {
    requests: IntCounterVec,
    duration: Histogram,
}

fn main() -> std::io::Result<()> {
    // `2026-11-27T15:06:01.123Z`-style timestamps need a date library; the
    // Unix time in milliseconds costs a clock read and two numbers, as
    // pulse's per-second cache of the date makes its own timestamp cost.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stdout)
        .format(|out, record| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            writeln!(
                out,
                "{}.{:03} {} {}",
                now.as_secs(),
                now.subsec_millis(),
                record.level(),
                record.args()
            )
        })
        .init();
    let counters = Counters {
        requests: IntCounterVec::new(
            Opts::new("http_requests_total", "Requests answered."),
            &["method", "route", "status"],
        )
        .expect("static metric definition"),
        duration: Histogram::with_opts(HistogramOpts::new(
            "http_request_duration_seconds",
            "Time to answer a request.",
        ))
        .expect("static metric definition"),
    };
    // The same runtime as pulse, so that the ratios compare request work.
    pulse::server::runtime(pulse::server::serving_threads(None))?
        .block_on(serve(Box::leak(Box::new(counters))))
}

async fn serve(counters: &'static Counters) -> std::io::Result<()> {
    let listener = support::listen(8083).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| async move {
                let received = Instant::now();
                let response = Response::new(Full::new(Bytes::from_static(b"Hello, DevOps!")));
                let elapsed = received.elapsed();
                let (method, status) = (request.method(), response.status());
                // One route: every path counts as `/`.
                counters
                    .requests
                    .with_label_values(&[method.as_str(), "/", status.as_str()])
                    .inc();
                counters.duration.observe(elapsed.as_secs_f64());
                log::info!(
                    "{method} {} {} {}us",
                    request.uri().path(),
                    status.as_u16(),
                    elapsed.as_micros()
                );
                Ok::<_, Infallible>(response)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
