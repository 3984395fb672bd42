//! The benchmark's reference: the plainest hyper 1 server, answering every
//! request with `Hello, DevOps!`. No routing, metrics, logging or headers.
//! `scripts/bench/bench.sh` reports pulse's figures as ratios to this one's.
//!
//! Run: `PORT=8081 cargo run --release --example bare_hyper`

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

mod support;

fn main() -> std::io::Result<()> {
    // pulse's runtime for as many threads as CPUs (current-thread on one),
    // so that a ratio to this server measures pulse's own work.
    pulse::server::runtime(pulse::server::serving_threads(None))?.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let listener = support::listen(8081).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                    b"Hello, DevOps!",
                ))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
