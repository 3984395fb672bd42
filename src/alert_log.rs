//! `pulse alert-log`: an Alertmanager webhook receiver that writes every
//! alert it is sent to the log, one line per alert.
//!
//! It is the compose stack's default receiver, so an alert that fires is
//! something a person can see (`podman compose logs alert-log`) rather than a
//! POST to a placeholder URL that nobody reads. Point Alertmanager at a real
//! pager in `monitoring/alertmanager/alertmanager.yml` when there is one.

use std::future::Future;

use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use tokio::net::TcpListener;

use crate::app::{self, App, BoxError, Handling};
use crate::config::Config;
use crate::server::{self, ShutdownRequest};

/// SECURITY: the largest webhook body read; Alertmanager sends a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// SECURITY: the most alerts one webhook request writes to the log; the rest
/// are summed up in one line, so a single request cannot flood the log.
pub const MAX_ALERTS_LOGGED: usize = 64;

/// Serves until `shutdown` resolves, on pulse's own server: its connection
/// cap, idle timeout and graceful shutdown. One server for both commands
/// also means one copy of hyper's connection code in the binary (a second
/// server, with its own service and body types, took 60 KB more).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ShutdownRequest>,
) {
    server::serve(listener, App::alert_log(config), shutdown).await;
}

/// Answers one request to the alert log: a webhook POSTed to any path (the
/// path names the receiver in the log), or `GET /livez`.
pub(crate) fn handle<B>(request: Request<B>) -> Handling
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let answer = match (&parts.method, path) {
        (&Method::GET, "/livez") => app::text(StatusCode::OK, "alive"),
        (&Method::HEAD, "/livez") => app::without_body(app::text(StatusCode::OK, "alive")),
        (&Method::POST, _) => {
            let path = path.to_owned();
            return Handling::Pending(Box::pin(async move {
                match Limited::new(body, MAX_BODY_BYTES).collect().await {
                    Ok(body) => match log_alerts(&path, &body.to_bytes()) {
                        Ok(count) => {
                            log::debug!("alert-log: {count} alert(s) on {path}");
                            app::text(StatusCode::OK, "logged")
                        }
                        Err(reason) => {
                            log::warn!("alert-log: rejected a webhook on {path}: {reason}");
                            app::text(
                                StatusCode::BAD_REQUEST,
                                "expected an Alertmanager webhook payload",
                            )
                        }
                    },
                    Err(_) => app::text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body too large or unreadable",
                    ),
                }
            }));
        }
        _ => app::text(
            StatusCode::NOT_FOUND,
            "POST Alertmanager webhooks to any path",
        ),
    };
    Handling::Ready(Some(answer))
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
