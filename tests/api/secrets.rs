//! Secret settings: the metrics token, its rotation from a file, the OTLP
//! export headers, and that no secret value leaks anywhere pulse writes.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use pulse::secrets::{self, Redacted, SecretKind, SecretSetting, SecretSource};

use crate::helpers::{Binary, fake_collector, get, request, send, spawn_app, temp_dir, test_config};

const TOKEN: &str = "metrics-token-3f2a9c77d1";
const ROTATED: &str = "metrics-token-b81e04aa6c";

async fn scrape(addr: std::net::SocketAddr, authorization: Option<&str>) -> crate::helpers::Answer {
    let mut builder = request("GET", addr, "/metrics");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    send(addr, builder.body(http_body_util::Empty::new()).unwrap()).await
}

fn token_setting(source: SecretSource, value: &str) -> SecretSetting {
    SecretSetting {
        kind: SecretKind::MetricsToken,
        source,
        value: Redacted(value.as_bytes().to_vec()),
    }
}

#[tokio::test]
async fn metrics_requires_the_bearer_token_when_one_is_set() {
    let open = spawn_app(test_config()).await;
    let page = scrape(open.addr, None).await;
    assert_eq!(page.status(), 200, "no token set: open");
    // Without secret settings the reload families are not gathered at all.
    assert!(!page.body.contains("pulse_secret_"), "{}", page.body);

    let config = pulse::Config {
        metrics_token: Some(token_setting(
            SecretSource::Value(Redacted(TOKEN.into())),
            TOKEN,
        )),
        ..test_config()
    };
    let app = spawn_app(config).await;
    for authorization in [
        None,
        Some("Bearer wrong-token-0000000000"),
        Some(&format!("Basic {TOKEN}")[..]),
        Some(&format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])[..]),
        Some(&format!("Bearer {TOKEN}x")[..]),
    ] {
        let answer = scrape(app.addr, authorization).await;
        assert_eq!(answer.status(), 401, "{authorization:?}");
        assert_eq!(
            answer.header("www-authenticate").unwrap_or_default(), "Bearer realm=\"metrics\"",
            "{authorization:?}"
        );
        assert!(answer.body.contains("\"error\""), "{}", answer.body);
        assert!(!answer.body.contains("pulse_handler_panics_total"));
    }
    for authorization in [format!("Bearer {TOKEN}"), format!("bearer {TOKEN}")] {
        let answer = scrape(app.addr, Some(&authorization)).await;
        assert_eq!(answer.status(), 200, "{authorization}");
        assert!(answer.body.contains("pulse_handler_panics_total"));
    }
    // Only /metrics is behind the token.
    assert_eq!(get(app.addr, "/health").await.status(), 200);
}

/// Waits until `check` holds, for at most 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotated_token_file_takes_over_and_the_old_one_lasts_the_grace_period() {
    for (grace, old_works_after) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)] {
        let dir = temp_dir(&format!("rotate-{}", grace.as_secs()));
        let path = dir.join("PULSE_METRICS_TOKEN");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let config = pulse::Config {
            metrics_token: Some(token_setting(SecretSource::File(path.clone()), TOKEN)),
            secret_grace: grace,
            secret_poll: Duration::from_secs(3600),
            ..test_config()
        };
        let app = spawn_app(config).await;
        let old = format!("Bearer {TOKEN}");
        let new = format!("Bearer {ROTATED}");
        assert_eq!(scrape(app.addr, Some(&old)).await.status(), 200);
        assert_eq!(scrape(app.addr, Some(&new)).await.status(), 401);

        let swap = dir.join("token.tmp");
        std::fs::write(&swap, ROTATED).unwrap();
        std::fs::rename(&swap, &path).unwrap();
        eventually("the new token works", async || {
            scrape(app.addr, Some(&new)).await.status() == 200
        })
        .await;
        let old_status = scrape(app.addr, Some(&old)).await.status();
        assert_eq!(old_status == 200, old_works_after, "grace {grace:?}: old token {old_status}");
        let page = scrape(app.addr, Some(&new)).await.body;
        assert!(
            // pragma: allowlist nextline secret (a label, not a value)
            page.contains(r#"pulse_secret_reloads_total{result="success",secret="PULSE_METRICS_TOKEN"} 1"#),
            "{page}"
        );
        assert!(page.contains("pulse_secret_last_reload_timestamp_seconds{secret=\"PULSE_METRICS_TOKEN\"}"));
    }
}

fn write_atomically(path: &Path, value: &str) {
    let swap = path.with_extension("new");
    std::fs::write(&swap, value).unwrap();
    std::fs::rename(&swap, path).unwrap();
}

/// Every value a secret setting held in this run, a valid one or not, is
/// searched for in everything pulse wrote: stdout, stderr, the metrics page,
/// the error answers and the spans it exported. The export headers must
/// reach the collector, and only as headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_reaches_a_log_line_an_answer_metrics_or_a_span() {
    const REJECTED: &str = "rejected value with spaces 5e1d";
    const HEADER_KEY: &str = "collector-key-77c1e0f9";
    let (endpoint, collected) = fake_collector();
    let dir = temp_dir("secret-leaks");
    let token_file = dir.join("metrics-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let headers = format!("api-key={HEADER_KEY}");
    let mut pulse = Binary::spawn_in(
        dir.clone(),
        &[
            ("RUST_LOG", "trace"),
            ("PULSE_LOG_FORMAT", "json"),
            ("PULSE_METRICS_TOKEN_FILE", token_file.to_str().unwrap()),
            ("PULSE_SECRET_POLL_INTERVAL", "100ms"),
            ("PULSE_SECRET_GRACE", "0s"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let addr = pulse.wait_until_listening();
    let mut answers = Vec::new();
    for authorization in [format!("Bearer {TOKEN}"), "Bearer a-wrong-guess-000000".to_owned()] {
        answers.push(scrape(addr, Some(&authorization)).await.body);
    }
    // A bad value is refused (and logged, without itself), then a good one
    // takes over.
    write_atomically(&token_file, REJECTED);
    pulse.wait_for_line("cannot reload PULSE_METRICS_TOKEN", Duration::from_secs(10));
    write_atomically(&token_file, ROTATED);
    pulse.wait_for_line("PULSE_METRICS_TOKEN changed", Duration::from_secs(10));
    let page = scrape(addr, Some(&format!("Bearer {ROTATED}"))).await;
    assert_eq!(page.status(), 200);
    answers.push(page.body);
    answers.push(scrape(addr, Some(&format!("Bearer {TOKEN}"))).await.body);
    answers.push(get(addr, "/").await.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while collected.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pulse.signal("TERM");
    assert!(pulse.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let stdout = pulse.all_lines().join("\n");
    let mut stderr = String::new();
    if let Some(mut pipe) = pulse.child.stderr.take() {
        pipe.read_to_string(&mut stderr).unwrap();
    }
    let exports = collected.lock().unwrap().clone();
    assert!(!exports.is_empty(), "no span export reached the collector");
    for export in &exports {
        let (head, body) = export.split_once("\r\n\r\n").unwrap();
        assert!(head.to_ascii_lowercase().contains(&format!("api-key: {HEADER_KEY}")), "{head}");
        for secret in [TOKEN, ROTATED, REJECTED, HEADER_KEY] {
            assert!(!body.contains(secret), "a span holds {secret:?}");
        }
    }
    assert!(stdout.contains("\"level\":\"TRACE\"") || stdout.contains("\"level\":\"DEBUG\""), "RUST_LOG=trace logged nothing below info");
    for secret in [TOKEN, ROTATED, REJECTED, HEADER_KEY] {
        assert!(!stdout.contains(secret), "stdout holds {secret:?}");
        assert!(!stderr.contains(secret), "stderr holds {secret:?}");
        for answer in &answers {
            assert!(!answer.contains(secret), "an answer holds {secret:?}");
        }
    }
}

#[test]
fn a_bad_secret_setting_exits_2_naming_the_variable_but_not_the_value() {
    let dir = temp_dir("secret-config");
    let file = dir.join("token");
    std::fs::write(&file, TOKEN).unwrap();
    for (env, expected) in [
        (
            vec![("PULSE_METRICS_TOKEN", "weak secret 1b7")],
            "PULSE_METRICS_TOKEN is not valid",
        ),
        (
            vec![("PULSE_METRICS_TOKEN", TOKEN), ("PULSE_METRICS_TOKEN_FILE", file.to_str().unwrap())],
            "PULSE_METRICS_TOKEN and PULSE_METRICS_TOKEN_FILE are both set",
        ),
        (
            vec![("PULSE_METRICS_TOKEN_FILE", "/nonexistent/pulse-token")],
            "PULSE_METRICS_TOKEN cannot be read from /nonexistent/pulse-token",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_HEADERS", "api-key 9c0d")],
            "OTEL_EXPORTER_OTLP_HEADERS is not valid",
        ),
    ] {
        // Bounded: a setting accepted by mistake would serve, not exit.
        let mut child = crate::helpers::binary_command(&dir, &env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run pulse");
        let status = crate::helpers::wait_exit(&mut child, Duration::from_secs(10));
        let _ = child.kill();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        for (_, value) in &env {
            if !value.starts_with('/') {
                assert!(!stderr.contains(value), "{env:?}: the value is shown: {stderr}");
            }
        }
    }
    assert_eq!(secrets::read(&file).unwrap(), TOKEN.as_bytes());
}
