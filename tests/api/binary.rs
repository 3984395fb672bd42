//! The real executable: config errors, `.env`, logs, the CLI and healthcheck.

use std::process::Stdio;
use std::time::Duration;

use crate::helpers::{Binary, binary_command, get, readme_section, temp_dir};

/// Runs pulse to its exit, or kills it after 10 s (code None): a command
/// that should fail at once but serves instead must fail the test, not hang
/// it.
fn run_to_end(
    dir: &std::path::PathBuf,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Option<i32>, String, String) {
    let stdout_path = dir.join(".stdout");
    let stderr_path = dir.join(".stderr");
    let mut child = binary_command(dir, env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run pulse");
    let code = match crate::helpers::wait_exit(&mut child, Duration::from_secs(10)) {
        Some(status) => status.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    (code, read(&stdout_path), read(&stderr_path))
}

#[test]
fn a_bad_setting_exits_2_with_one_plain_line_before_binding() {
    let dir = temp_dir("bad-setting");
    for (name, value, allowed) in [
        ("PORT", "eighty", "a port number from 0 to 65535"),
        ("PULSE_LOG_FORMAT", "yaml", "text or json"),
        (
            "PULSE_MAX_CONNECTIONS",
            "-5",
            "a whole number from 1 to 1000000",
        ),
        ("RUST_LOG", "pulse=chatty", "LEVEL one of off"),
        // env_logger rejects this one and would fall back to errors only.
        ("RUST_LOG", "info/a/b", "LEVEL one of off"),
        // tokio reads this one itself, and would panic.
        (
            "TOKIO_WORKER_THREADS",
            "two",
            "a whole number from 1 to 1024",
        ),
        ("TOKIO_WORKER_THREADS", "0", "a whole number from 1 to 1024"),
    ] {
        let (code, stdout, stderr) = run_to_end(&dir, &[(name, value)], &[]);
        assert_eq!(code, Some(2), "{name}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("pulse: {name}=\"{value}\" is not valid: expected")),
            "{stderr}"
        );
        assert!(stderr.contains(allowed), "{stderr}");
        assert!(
            !stdout.contains("listening"),
            "it bound before failing: {stdout}"
        );
    }
}

#[test]
fn the_readme_lists_every_setting_in_order_with_its_default() {
    let rows: Vec<(&str, String)> = readme_section("Configuration")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| {
            let (name, rest) = rest.split_once("` | ")?;
            Some((name, rest.split(" | ").next()?.to_owned()))
        })
        .collect();
    let expected: Vec<(&str, String)> = pulse::config::SETTINGS
        .iter()
        .map(|s| match s.default {
            "" => (s.name, "unset".to_owned()),
            default => (s.name, format!("`{default}`")),
        })
        .collect();
    assert_eq!(rows, expected);
}

/// The tokio worker threads the running process has, by thread name.
fn worker_threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

/// Worker threads tokio starts for `threads` serving threads: none for one,
/// which is tokio's current-thread scheduler on pulse's main thread.
fn workers_for(threads: usize) -> usize {
    if threads == 1 { 0 } else { threads }
}

#[test]
fn tokio_worker_threads_sets_how_many_threads_serve_and_the_log_says_so() {
    for (value, expected) in [("3", 3), ("1", 1)] {
        let mut pulse = Binary::spawn("workers", &[("TOKIO_WORKER_THREADS", value)]);
        let line = pulse.wait_for_line("starting pulse", Duration::from_secs(10));
        assert!(
            line.contains(&format!("worker_threads={expected}")),
            "{line}"
        );
        pulse.wait_until_listening();
        assert_eq!(
            worker_threads_of(pulse.child.id()),
            workers_for(expected),
            "TOKIO_WORKER_THREADS={value}"
        );
    }
    // Unset: one per CPU this process may run on.
    let mut pulse = Binary::spawn("workers-default", &[]);
    pulse.wait_until_listening();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(worker_threads_of(pulse.child.id()), workers_for(cpus));
}

/// Startup logs every setting: the server's on the first line, the span
/// export's on the exporter's (issue 35: the OTEL_* ones were missing).
#[test]
fn startup_logs_the_sampler_and_every_span_export_setting() {
    let mut pulse = Binary::spawn(
        "startup-otel",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "checkout"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=web,tier=1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "700"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
        ],
    );
    let starting = pulse.wait_for_line("starting pulse", Duration::from_secs(10));
    assert!(
        starting.contains("sampler=parentbased_traceidratio:0.25"),
        "{starting}"
    );
    let exporting = pulse.wait_for_line("exporting spans", Duration::from_secs(10));
    for field in [
        "service_name=checkout",
        "resource_attributes=team=web,tier=1",
        "timeout_ms=2500",
        "schedule_delay_ms=700",
        "max_queue_size=100",
        "max_batch_size=100",
    ] {
        assert!(exporting.contains(field), "{field} missing: {exporting}");
    }
}

#[test]
fn a_malformed_env_file_line_exits_2_naming_file_and_line() {
    let dir = temp_dir("bad-dotenv");
    std::fs::write(
        dir.join(".env"),
        "# settings\nPORT=0\nthis is not a setting\n",
    )
    .unwrap();
    let (code, _, stderr) = run_to_end(&dir, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(".env line 3"), "{stderr}");
    assert!(stderr.contains("this is not a setting"), "{stderr}");
}

#[test]
fn env_file_values_apply_and_the_environment_wins() {
    let dir = temp_dir("dotenv");
    // The file asks for JSON logs and a port that the environment overrides.
    std::fs::write(dir.join(".env"), "PULSE_LOG_FORMAT=json\nPORT=not-a-port\n").unwrap();
    let mut pulse = Binary::spawn_in(dir, &[("PORT", "0")]);
    let line = pulse.wait_for_line("listening on", Duration::from_secs(10));
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["level"], "INFO");
}

#[tokio::test]
async fn json_logs_have_one_object_per_line_with_access_fields() {
    let mut pulse = Binary::spawn("json-logs", &[("PULSE_LOG_FORMAT", "json")]);
    let addr = pulse.wait_until_listening();
    get(addr, "/nope?q=1").await;
    get(addr, "/livez").await; // a probe: debug level, so not logged at info
    get(addr, "/").await;
    let line = pulse.wait_for_line("\"path\":\"/\"", Duration::from_secs(5));
    let access: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(access["target"], "pulse::access");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 200);
    assert!(access["duration_us"].is_u64());
    assert_eq!(access["request_id"].as_str().unwrap().len(), 32);
    assert!(access["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(access["ts"].as_str().unwrap().ends_with('Z'));

    let lines = pulse.seen.clone();
    for line in &lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["ts", "level", "target", "msg"] {
            assert!(parsed.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("\"status\":404")));
    assert!(
        !lines.iter().any(|l| l.contains("\"path\":\"/livez\"")),
        "probe logged at info"
    );
    assert!(
        lines.iter().any(|l| l.contains("starting pulse")),
        "startup config not logged"
    );
}

#[tokio::test]
async fn an_empty_rust_log_means_the_default_not_errors_only() {
    // env_logger reads RUST_LOG= as "errors only": no access log at all.
    let mut pulse = Binary::spawn("empty-rust-log", &[("RUST_LOG", "")]);
    let addr = pulse.wait_until_listening();
    get(addr, "/").await;
    let line = pulse.wait_for_line("pulse::access", Duration::from_secs(5));
    assert!(line.contains("path=/"), "{line}");
}

#[test]
fn a_mistyped_setting_in_env_file_is_named_with_the_closest_setting() {
    let dir = temp_dir("dotenv-typo");
    std::fs::write(
        dir.join(".env"),
        "PULSE_DRAIN_DLEAY=1s\nGRAFANA_ADMIN_PASSWORD=x\n",
    )
    .unwrap();
    let mut pulse = Binary::spawn_in(dir, &[]);
    let line = pulse.wait_for_line("not a pulse setting", Duration::from_secs(10));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("PULSE_DRAIN_DLEAY") && line.contains("did you mean PULSE_DRAIN_DELAY?"),
        "{line}"
    );
    pulse.wait_until_listening();
    assert!(
        !pulse
            .seen
            .iter()
            .any(|l| l.contains("GRAFANA_ADMIN_PASSWORD")),
        "another tool's variable was flagged: {:?}",
        pulse.seen
    );
}

#[tokio::test]
async fn healthcheck_checks_the_configured_ipv6_loopback_address() {
    let mut pulse = Binary::spawn("healthcheck-ipv6", &[("HOST", "::1")]);
    let addr = pulse.wait_until_listening();
    assert!(addr.is_ipv6(), "{addr}");
    let dir = temp_dir("healthcheck-ipv6-client");
    let port = addr.port().to_string();
    let (code, stdout, _) = run_to_end(&dir, &[("HOST", "::1"), ("PORT", &port)], &["healthcheck"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("healthy: http://[::1]:"), "{stdout}");
}

#[test]
fn healthcheck_exits_1_when_livez_answers_other_than_200() {
    // A real server on loopback that answers every request with a 503.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
    });
    let dir = temp_dir("healthcheck-503");
    let (code, stdout, _) = run_to_end(&dir, &[("PORT", &port)], &["healthcheck"]);
    server.join().unwrap();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.starts_with("unhealthy:") && stdout.contains("503"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

#[tokio::test]
async fn healthcheck_exits_0_against_a_live_server_and_1_when_nothing_listens() {
    let mut pulse = Binary::spawn("healthcheck", &[]);
    let addr = pulse.wait_until_listening();
    let dir = temp_dir("healthcheck-client");
    let port = addr.port().to_string();
    let (code, stdout, _) = run_to_end(&dir, &[("PORT", &port)], &["healthcheck"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("healthy:"), "{stdout}");

    drop(pulse);
    let (code, stdout, _) = run_to_end(&dir, &[("PORT", &port)], &["healthcheck"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("unhealthy:"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn a_port_in_use_is_a_plain_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = temp_dir("port-in-use");
    let (code, stdout, stderr) = run_to_end(&dir, &[("PORT", &port)], &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));
}

#[test]
fn version_help_and_unknown_commands() {
    let dir = temp_dir("cli");
    let (code, stdout, _) = run_to_end(&dir, &[], &["--version"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.starts_with(&format!("pulse {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    let (code, stdout, _) = run_to_end(&dir, &[], &["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("PULSE_DRAIN_DELAY") && stdout.contains("healthcheck"));
    let (code, _, stderr) = run_to_end(&dir, &[], &["--frobnicate"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("unknown command \"--frobnicate\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn alert_log_writes_each_webhook_alert_as_a_log_line() {
    let mut receiver = Binary::spawn_with(
        temp_dir("alert-log"),
        &["alert-log"],
        &[("PULSE_LOG_FORMAT", "json")],
    );
    let addr = receiver.wait_until_listening();
    let payload = r#"{"version":"4","receiver":"page","status":"firing","alerts":[
        {"status":"firing","labels":{"alertname":"PulseDown","severity":"critical","instance":"pulse:8080"},
         "annotations":{"summary":"pulse is down","runbook_url":"docs/runbooks.md#pulsedown"}}]}"#;
    assert_eq!(post_webhook(addr, payload.to_owned()).await, 200);

    let line = receiver.wait_for_line("\"alertname\":\"PulseDown\"", Duration::from_secs(5));
    let alert: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(alert["target"], "pulse::alert");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["receiver"], "page");
    assert_eq!(alert["path"], "/page");
    assert_eq!(alert["summary"], "pulse is down");

    assert_eq!(get(addr, "/livez").await.status(), 200);
    assert_eq!(get(addr, "/anything").await.status(), 404);
}

/// Sends one webhook payload to a running alert log; returns the status.
async fn post_webhook(addr: std::net::SocketAddr, payload: String) -> u16 {
    let request = hyper::Request::post(format!("http://{addr}/page"))
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(payload)))
        .unwrap();
    let (mut sender, _connection) = crate::helpers::http1_connection(addr).await;
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn alert_log_text_lines_cannot_be_forged_and_one_webhook_writes_a_bounded_number() {
    let mut receiver = Binary::spawn_with(
        temp_dir("alert-log-text"),
        &["alert-log"],
        &[("PULSE_LOG_FORMAT", "text")],
    );
    let addr = receiver.wait_until_listening();
    // An annotation that tries to end the line and start a forged one.
    let forged = "2026-01-01T00:00:00.000Z ERROR pulse::access: forged";
    let payload = serde_json::json!({
        "version": "4", "receiver": "page", "status": "firing",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": "Evil\rName", "severity": "critical"},
                    "annotations": {"summary": format!("real summary\n{forged}\u{1b}[2J")}}]
    });
    assert_eq!(post_webhook(addr, payload.to_string()).await, 200);
    let line = receiver.wait_for_line("real summary", Duration::from_secs(5));
    assert!(line.contains(r"real summary\n2026-01-01"), "{line}");
    assert!(
        line.contains(r"\x1b[2J") && line.contains(r"Evil\rName"),
        "{line}"
    );

    // 200 alerts in one request: the first 64 and one summary line.
    let alerts: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"status": "firing", "labels": {"alertname": format!("Flood{i}")}}))
        .collect();
    let payload = serde_json::json!({"version": "4", "receiver": "page", "status": "firing", "alerts": alerts});
    assert_eq!(post_webhook(addr, payload.to_string()).await, 200);
    receiver.wait_for_line(
        "200 alerts in one webhook; logging the first 64",
        Duration::from_secs(5),
    );
    receiver.signal("TERM");
    receiver
        .wait_exit(Duration::from_secs(10))
        .expect("alert-log exits");
    let lines = receiver.all_lines();
    assert!(
        !lines.iter().any(|l| l.starts_with(forged)),
        "a forged line reached the log: {lines:#?}"
    );
    let flood = lines
        .iter()
        .filter(|l| l.contains("alert firing: Flood"))
        .count();
    assert_eq!(flood, 64, "one webhook wrote {flood} alert lines");
}
