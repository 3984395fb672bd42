//! A control for the latency benchmark: `bare_auto` plus a fixed amount of
//! busy CPU per request (`PAD_NS` nanoseconds, default 600, about the extra
//! CPU pulse spends per `GET /`). It does nothing pulse does; whatever its
//! latency does against `bare_auto` under the same load is what any server
//! that costs that much more per request would show. `scripts/bench/latency.sh`
//! runs it beside pulse.
//!
//! Run: `PORT=8083 PAD_NS=600 cargo run --release --example padded_auto`

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

mod support;

fn main() -> std::io::Result<()> {
    let pad = match std::env::var("PAD_NS") {
        Ok(text) => text.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("PAD_NS={text:?} is not a whole number of nanoseconds"),
            )
        })?,
        Err(_) => 600,
    };
    let pad = Duration::from_nanos(pad);
    pulse::server::runtime(pulse::server::serving_threads(None))?.block_on(serve(pad))
}

/// Spins for `pad`: CPU spent, as a handler's work would be, not time slept.
fn spin(pad: Duration) {
    let start = Instant::now();
    while start.elapsed() < pad {
        std::hint::spin_loop();
    }
}

async fn serve(pad: Duration) -> std::io::Result<()> {
    let listener = support::listen(8083).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                spin(pad);
                async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"Hello, DevOps!",
                    ))))
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
