//! `pulse alert-log` served in-process: the body timeout of its webhooks.

use std::time::Duration;

use pulse::alert_log::AlertLog;
use pulse::{Config, ShutdownRequest};
use tokio::net::TcpListener;

use crate::helpers::raw_exchange;

/// SECURITY: a client that sends part of a webhook body and stops gets a
/// 408 once the header read timeout has passed, and its connection is
/// freed: before, the read had no time limit, and a pending answer kept
/// the idle watchdog off, so the connection held its slot for good.
#[tokio::test]
async fn a_webhook_body_that_stops_coming_is_refused_with_408() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let alert_log = AlertLog::new(Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(pulse::serve(listener, alert_log, async move {
        stopped.await.unwrap_or(ShutdownRequest::Interrupt)
    }));
    let head = "POST /page HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"alerts\":";
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(addr, head.as_bytes(), Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    let _ = stop.send(ShutdownRequest::Interrupt);
    server.await.unwrap().expect("the alert log stopped cleanly");
}
