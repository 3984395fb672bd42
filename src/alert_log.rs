//! `pulse alert-log`: an Alertmanager webhook receiver that writes every
//! alert it is sent to the log, one line per alert.
//!
//! It is the compose stack's default receiver, so an alert that fires is
//! something a person can see (`podman compose logs alert-log`) rather than a
//! POST to a placeholder URL that nobody reads. Point Alertmanager at a real
//! pager in `monitoring/alertmanager/alertmanager.yml` when there is one.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::server;

/// SECURITY: the largest webhook body read; Alertmanager sends a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// SECURITY: the most alerts one webhook request writes to the log; the rest
/// are summed up in one line, so a single request cannot flood the log.
pub const MAX_ALERTS_LOGGED: usize = 64;

/// Serves until `shutdown` resolves, with pulse's connection cap and
/// header read timeout.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) {
    let mut shutdown = pin!(shutdown);
    let permits = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let (stream, remote, permit) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = server::accept(&listener, &permits) => accepted,
        };
        let header_read_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            let _slot = permit;
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service_fn(receive))
                .await;
            if let Err(e) = served {
                log::debug!("connection from {remote}: {e}");
            }
        });
    }
    log::info!("alert-log: shutting down");
}

async fn receive(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let answer = match (request.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/livez") => (StatusCode::OK, "alive"),
        (&Method::POST, _) => {
            let body = Limited::new(request.into_body(), MAX_BODY_BYTES);
            match body.collect().await {
                Ok(body) => match log_alerts(&path, &body.to_bytes()) {
                    Ok(count) => {
                        log::debug!("alert-log: {count} alert(s) on {path}");
                        (StatusCode::OK, "logged")
                    }
                    Err(reason) => {
                        log::warn!("alert-log: rejected a webhook on {path}: {reason}");
                        (
                            StatusCode::BAD_REQUEST,
                            "expected an Alertmanager webhook payload",
                        )
                    }
                },
                Err(_) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body too large or unreadable",
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "POST Alertmanager webhooks to any path",
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(answer.1.as_bytes())));
    *response.status_mut() = answer.0;
    Ok(response)
}

/// Logs each alert of an Alertmanager webhook payload (version 4) and
/// returns how many there were.
pub fn log_alerts(receiver_path: &str, body: &[u8]) -> Result<usize, String> {
    let payload: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let alerts = payload
        .get("alerts")
        .and_then(|a| a.as_array())
        .ok_or("no \"alerts\" array")?;
    let receiver = payload
        .get("receiver")
        .and_then(|r| r.as_str())
        .unwrap_or("-");
    if alerts.len() > MAX_ALERTS_LOGGED {
        log::warn!(
            target: "pulse::alert",
            receiver = receiver,
            path = receiver_path,
            not_logged = alerts.len() - MAX_ALERTS_LOGGED;
            "{} alerts in one webhook; logging the first {MAX_ALERTS_LOGGED}",
            alerts.len()
        );
    }
    for alert in alerts.iter().take(MAX_ALERTS_LOGGED) {
        // A label or annotation, `-` when the alert has none.
        let field = |section: &str, name: &str| {
            alert
                .pointer(&format!("/{section}/{name}"))
                .and_then(|v| v.as_str())
                .unwrap_or("-")
        };
        let label = |name| field("labels", name);
        let annotation = |name| field("annotations", name);
        let status = alert.get("status").and_then(|s| s.as_str()).unwrap_or("-");
        log::warn!(
            target: "pulse::alert",
            receiver = receiver,
            path = receiver_path,
            status = status,
            alertname = label("alertname"),
            severity = label("severity"),
            instance = label("instance"),
            summary = annotation("summary"),
            runbook_url = annotation("runbook_url");
            "alert {status}: {}",
            label("alertname")
        );
    }
    Ok(alerts.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_alerts_of_a_webhook_payload() {
        let body = br#"{"version":"4","receiver":"page","status":"firing","alerts":[
            {"status":"firing","labels":{"alertname":"PulseDown","severity":"critical","instance":"pulse:8080"},
             "annotations":{"summary":"pulse is down"}},
            {"status":"resolved","labels":{"alertname":"PulseHighLatency"},"annotations":{}}]}"#;
        assert_eq!(log_alerts("/page", body), Ok(2));
    }

    #[test]
    fn rejects_what_is_not_a_webhook_payload() {
        assert!(log_alerts("/", b"not json").is_err());
        assert!(log_alerts("/", b"{\"alerts\":1}").is_err());
    }
}
