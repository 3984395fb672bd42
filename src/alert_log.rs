//! `pulse alert-log`: an Alertmanager webhook receiver that writes every
//! alert it is sent to the log, one line per alert.
//!
//! It is the compose stack's default receiver, so an alert that fires is
//! something a person can see (`podman compose logs alert-log`) rather than a
//! POST to a placeholder URL that nobody reads. Point Alertmanager at a real
//! pager in `monitoring/alertmanager/alertmanager.yml` when there is one.

use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::body::{self, BodyError};
use crate::build_info::BUILD;
use crate::config::Config;
use crate::context::Shared;
use crate::logging::Peer;
use crate::metrics::Metrics;
use crate::response::{Handling, text, without_body};
use crate::service::Service;

/// SECURITY: the largest webhook body read; Alertmanager sends a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// SECURITY: the most alerts one webhook request writes to the log; the rest
/// are summed up in one line, so a single request cannot flood the log.
pub const MAX_ALERTS_LOGGED: usize = 64;

/// The alert log, served by pulse's own server ([`crate::serve`]): its
/// connection cap, idle timeout and graceful shutdown.
pub struct AlertLog {
    shared: Shared,
}

impl AlertLog {
    pub fn new(config: Config) -> AlertLog {
        // It makes no spans and has no routes of the table: its metrics
        // count connections only, and are not served.
        let metrics = Metrics::new(&BUILD, &["unmatched"]);
        AlertLog {
            shared: Shared::new(config, metrics),
        }
    }
}

impl Service for AlertLog {
    /// A webhook POSTed to any path (the path names the receiver in the
    /// log), or `GET /livez`.
    fn answer(&self, request: Request<Incoming>, _: Peer, _: Instant) -> Handling {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();
        let answer = match (&parts.method, path) {
            (&Method::GET, "/livez") => text(StatusCode::OK, "alive"),
            (&Method::HEAD, "/livez") => without_body(text(StatusCode::OK, "alive")),
            (&Method::POST, _) => {
                let path = path.to_owned();
                // SECURITY: the same time limit as `/echo`'s body, so a
                // client that trickles a body cannot hold a connection.
                let timeout = self.shared.config().header_read_timeout;
                return Handling::Pending(Box::pin(async move {
                    match body::read_capped(body, MAX_BODY_BYTES, timeout).await {
                        Ok(body) => match log_alerts(&path, &body) {
                            Ok(count) => {
                                log::debug!("alert-log: {count} alert(s) on {path}");
                                text(StatusCode::OK, "logged")
                            }
                            Err(reason) => {
                                log::warn!("alert-log: rejected a webhook on {path}: {reason}");
                                text(
                                    StatusCode::BAD_REQUEST,
                                    "expected an Alertmanager webhook payload",
                                )
                            }
                        },
                        Err(error @ BodyError::Timeout) => {
                            log::warn!("alert-log: a webhook on {path}: {error}");
                            text(StatusCode::REQUEST_TIMEOUT, "body did not arrive in time")
                        }
                        Err(_) => text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body too large or unreadable",
                        ),
                    }
                }));
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "POST Alertmanager webhooks to any path",
            ),
        };
        Handling::Ready(Some(answer))
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }
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

    /// With OTEL_ set (a `.env` shared with pulse), the alert log still
    /// exports nothing: it would otherwise say it exports spans it never makes.
    #[test]
    fn the_alert_log_starts_no_span_exporter() {
        let config = Config::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:9".to_owned())
        })
        .unwrap();
        assert!(config.span_export.is_some());
        assert!(AlertLog::new(config).start_background().is_none());
    }

    #[test]
    fn rejects_what_is_not_a_webhook_payload() {
        assert!(log_alerts("/", b"not json").is_err());
        assert!(log_alerts("/", b"{\"alerts\":1}").is_err());
    }
}
