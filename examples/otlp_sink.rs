//! A collector stand-in for the benchmark: accepts every OTLP/HTTP POST,
//! reads the body and answers `200 {}`, so `scripts/bench/bench.sh` can measure
//! pulse with span export on without a real collector's CPU in the way.
//! It checks nothing: `tests/otlp_export.py` decodes what pulse sends.
//!
//! Run: `PORT=4318 cargo run --release --example otlp_sink`

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

mod support;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = support::listen(4318).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|request: Request<hyper::body::Incoming>| async {
                let _ = request.into_body().collect().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
