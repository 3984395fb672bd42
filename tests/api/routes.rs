//! Every row of the route table and every header rule, over HTTP/1.1.

use std::time::{Duration, Instant};

use http_body_util::Empty;
use pulse::Config;

use crate::helpers::{call, get, raw_exchange, request, send, spawn_app, test_config};

#[tokio::test]
async fn root_says_hello_in_plain_text() {
    let app = spawn_app(Config::default()).await;
    let answer = get(app.addr, "/").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body, "Hello, DevOps!");
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn health_reports_healthy_with_the_crate_version() {
    let app = spawn_app(Config::default()).await;
    let answer = get(app.addr, "/health").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn liveness_and_readiness_answer_200_while_serving() {
    let app = spawn_app(Config::default()).await;
    assert_eq!(get(app.addr, "/livez").await.status(), 200);
    let ready = get(app.addr, "/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json()["status"], "ready");
}

#[tokio::test]
async fn version_reports_build_facts() {
    let app = spawn_app(Config::default()).await;
    let body = get(app.addr, "/version").await.json();
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["rustc"].as_str().unwrap().starts_with("rustc "));
    assert!(body["target"].as_str().unwrap().contains('-'));
    let commit = body["commit"].as_str().unwrap();
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
}

#[tokio::test]
async fn metrics_are_served_in_the_text_format() {
    let app = spawn_app(Config::default()).await;
    let answer = get(app.addr, "/metrics").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(answer.body.contains("# TYPE pulse_build_info gauge"));
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let app = spawn_app(Config::default()).await;
    for path in ["/nope", "/health/", "/delay/5", "/status/500", "/panic"] {
        let answer = get(app.addr, path).await;
        assert_eq!(answer.status(), 404, "{path}");
        assert_eq!(answer.body, r#"{"error":"Not found"}"#);
        assert_eq!(answer.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn wrong_methods_are_json_405_with_allow() {
    let app = spawn_app(Config::default()).await;
    for (method, path) in [
        ("POST", "/"),
        ("DELETE", "/health"),
        ("PUT", "/metrics"),
        ("BREW", "/livez"),
    ] {
        let answer = call(app.addr, method, path).await;
        assert_eq!(answer.status(), 405, "{method} {path}");
        assert_eq!(answer.body, r#"{"error":"Method not allowed"}"#);
        assert_eq!(answer.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let app = spawn_app(test_config()).await;
    for path in ["/", "/livez", "/readyz", "/version", "/nope", "/status/418"] {
        let got = get(app.addr, path).await;
        let head = call(app.addr, "HEAD", path).await;
        assert_eq!(head.status(), got.status(), "{path}");
        assert_eq!(head.body, "", "{path}");
        assert_eq!(
            head.header("content-length"),
            Some(got.body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(head.header("content-type"), got.header("content-type"));
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_pulse_keeps_serving() {
    let app = spawn_app(test_config()).await;
    let answer = get(app.addr, "/panic").await;
    assert_eq!(answer.status(), 500);
    assert_eq!(answer.body, r#"{"error":"Internal server error"}"#);
    assert!(answer.header("x-request-id").is_some());
    assert_eq!(get(app.addr, "/").await.status(), 200);
    let metrics = get(app.addr, "/metrics").await.body;
    assert!(
        metrics.contains("pulse_handler_panics_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"http_requests_total{method="GET",route="/panic",status="500"} 1"#));
}

#[tokio::test]
async fn delay_sleeps_for_the_given_milliseconds() {
    let app = spawn_app(test_config()).await;
    let started = Instant::now();
    let answer = get(app.addr, "/delay/200").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json()["delayed_ms"], 200);
    let bad = get(app.addr, "/delay/soon").await;
    assert_eq!(bad.status(), 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("milliseconds")
    );
    // Over the 10 s maximum: refused at once, not slept and not capped.
    let started = Instant::now();
    let over = get(app.addr, "/delay/10001").await;
    assert_eq!(over.status(), 400);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        over.json()["error"]
            .as_str()
            .unwrap()
            .contains("0 to 10000")
    );
}

#[tokio::test]
async fn status_answers_with_the_requested_code() {
    let app = spawn_app(test_config()).await;
    let answer = get(app.addr, "/status/503").await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.json()["status"], 503);
    let no_content = get(app.addr, "/status/204").await;
    assert_eq!((no_content.status(), no_content.body.as_str()), (204, ""));
    for bad in ["/status/199", "/status/600", "/status/oops"] {
        assert_eq!(get(app.addr, bad).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn every_response_carries_nosniff_and_a_request_id() {
    let app = spawn_app(test_config()).await;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/nope"),
        ("POST", "/"),
        ("GET", "/panic"),
        ("GET", "/metrics"),
    ] {
        let answer = call(app.addr, method, path).await;
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{method} {path}"
        );
        let id = answer.header("x-request-id").expect("x-request-id");
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}

#[tokio::test]
async fn a_well_formed_request_id_is_echoed() {
    let app = spawn_app(Config::default()).await;
    let id = "req-42_abc.DEF:7";
    let answer = send(
        app.addr,
        request("GET", app.addr, "/")
            .header("x-request-id", id)
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.header("x-request-id"), Some(id));
}

#[tokio::test]
async fn an_overlong_or_non_printable_request_id_is_replaced() {
    let app = spawn_app(Config::default()).await;
    let overlong = "a".repeat(129);
    let answer = send(
        app.addr,
        request("GET", app.addr, "/")
            .header("x-request-id", overlong.as_str())
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    let replaced = answer.header("x-request-id").unwrap();
    assert_ne!(replaced, overlong);
    assert_eq!(replaced.len(), 32);

    // Bytes that hyper's client refuses to send: write them raw. (Control
    // characters other than tab never reach pulse: hyper answers 400 itself.)
    for bad in [&b"has space"[..], b"tab\tinside", b"caf\xc3\xa9"] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: ".to_vec();
        raw.extend_from_slice(bad);
        raw.extend_from_slice(b"\r\n\r\n");
        let addr = app.addr;
        let answer =
            tokio::task::spawn_blocking(move || raw_exchange(addr, &raw, Duration::from_secs(5)))
                .await
                .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let id_line = answer
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("x-request-id:"))
            .expect("x-request-id header");
        let id = id_line.split_once(':').unwrap().1.trim();
        assert_eq!(id.len(), 32, "{bad:?} -> {id:?}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
