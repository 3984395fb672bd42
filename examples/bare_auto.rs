//! The benchmark's second reference: the plainest server that speaks what
//! pulse speaks, HTTP/1.1 and h2c on one port through hyper-util's
//! `auto::Builder`, answering every request with `Hello, DevOps!`. Against
//! it, `scripts/bench/bench.sh` isolates pulse's own per-request work; against
//! `bare_hyper` (HTTP/1 only) it also shows what protocol detection costs.
//!
//! Run: `PORT=8082 cargo run --release --example bare_auto`

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

mod support;

fn main() -> std::io::Result<()> {
    // pulse's runtime for as many threads as CPUs (current-thread on one),
    // so that a ratio to this server measures pulse's own work.
    pulse::server::runtime(pulse::server::serving_threads(None))?.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let listener = support::listen(8082).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, DevOps!",
                ))))
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
