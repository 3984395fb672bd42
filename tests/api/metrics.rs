//! The metrics a dashboard and the alert rules rely on, with bounded labels.

use crate::helpers::{call, get, spawn_app, test_config};

#[tokio::test]
async fn requests_are_counted_by_matched_route_never_by_raw_path() {
    let app = spawn_app(test_config()).await;
    get(app.addr, "/delay/1").await;
    get(app.addr, "/delay/2").await;
    get(app.addr, "/no/such/page").await;
    get(app.addr, "/another-miss").await;
    call(app.addr, "BREW", "/").await;
    get(app.addr, "/status/503").await;
    let metrics = get(app.addr, "/metrics").await.body;

    for line in [
        r#"http_requests_total{method="GET",route="/delay/{ms}",status="200"} 2"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 2"#,
        r#"http_requests_total{method="other",route="/",status="405"} 1"#,
        r#"http_requests_total{method="GET",route="/status/{code}",status="503"} 1"#,
        r#"http_request_duration_seconds_count{method="GET",route="/delay/{ms}"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    assert!(
        !metrics.contains("/delay/1\""),
        "raw path leaked into a label"
    );
    assert!(!metrics.contains("no/such"), "raw path leaked into a label");
}

/// The error SLI's 5xx series exist before the first error, at 0: a series
/// that appears at 1 is invisible to Prometheus' rate(), so the first error
/// would never count. Probes and scrapes are not in the SLI, and fault
/// routes exist only with fault injection on.
#[tokio::test]
async fn error_series_exist_at_zero_from_the_start() {
    let app = spawn_app(test_config()).await;
    let metrics = get(app.addr, "/metrics").await.body;
    for line in [
        r#"http_requests_total{method="GET",route="/",status="500"} 0"#,
        r#"http_requests_total{method="GET",route="/version",status="500"} 0"#,
        r#"http_requests_total{method="POST",route="/echo",status="500"} 0"#,
        r#"http_requests_total{method="GET",route="/status/{code}",status="500"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
    for absent in [r#"route="/health""#, r#"route="/metrics""#, r#"method="HEAD""#] {
        assert!(
            !metrics.contains(absent),
            "{absent} has a series before any request\n{metrics}"
        );
    }

    // The first 500 lands in the series that was there, not a new one.
    get(app.addr, "/status/500").await;
    let metrics = get(app.addr, "/metrics").await.body;
    let line = r#"http_requests_total{method="GET",route="/status/{code}",status="500"} 1"#;
    assert!(metrics.contains(line), "missing {line}\n{metrics}");

    let quiet = spawn_app(pulse::config::Config {
        fault_injection: false,
        ..test_config()
    })
    .await;
    let metrics = get(quiet.addr, "/metrics").await.body;
    assert!(
        !metrics.contains("/status/{code}"),
        "a fault route has series with fault injection off\n{metrics}"
    );
    assert!(metrics.contains(r#"http_requests_total{method="GET",route="/",status="500"} 0"#));
}

#[tokio::test]
async fn in_flight_build_info_and_buckets_are_exposed() {
    let app = spawn_app(test_config()).await;
    get(app.addr, "/").await;
    let metrics = get(app.addr, "/metrics").await.body;
    // The scrape itself is in flight while the page is rendered.
    assert!(metrics.contains("http_requests_in_flight 1"), "{metrics}");
    let build = metrics
        .lines()
        .find(|l| l.starts_with("pulse_build_info{"))
        .expect("pulse_build_info");
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))));
    assert!(
        build.contains("revision=\"") && build.ends_with(" 1"),
        "{build}"
    );
    for bucket in ["le=\"0.0001\"", "le=\"0.001\"", "le=\"1\"", "le=\"10\""] {
        assert!(metrics.contains(bucket), "{bucket}");
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn process_metrics_are_exposed_on_linux() {
    let app = spawn_app(test_config()).await;
    let metrics = get(app.addr, "/metrics").await.body;
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        "pulse_open_connections ",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(name)),
            "missing {name}\n{metrics}"
        );
    }
}
