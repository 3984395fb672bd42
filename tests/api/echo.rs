//! `POST /echo`, the route that reads a body: its limits over real sockets.

use std::time::Duration;

use http_body_util::Full;
use hyper::Version;
use hyper::body::Bytes;
use pulse::Config;
use pulse::routes::MAX_ECHO_BYTES;

use crate::helpers::{get, raw_exchange, request, send, spawn_app};

/// `raw_exchange` blocks: run it off the runtime that serves pulse.
async fn raw(addr: std::net::SocketAddr, bytes: Vec<u8>, timeout: Duration) -> String {
    tokio::task::spawn_blocking(move || raw_exchange(addr, &bytes, timeout))
        .await
        .unwrap()
}

async fn post(
    addr: std::net::SocketAddr,
    content_type: Option<&str>,
    body: Vec<u8>,
    version: Version,
) -> crate::helpers::Answer {
    let mut builder = request("POST", addr, "/echo").version(version);
    if version == Version::HTTP_2 {
        builder = builder.uri(format!("http://{addr}/echo"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    send(addr, builder.body(Full::new(Bytes::from(body))).unwrap()).await
}

#[tokio::test]
async fn a_json_document_comes_back_over_http1_and_http2() {
    let app = spawn_app(Config::default()).await;
    let document =
        serde_json::json!({"name": "pulse", "list": [1, 2.5, null, true], "nested": {"é": "✓"}});
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let answer = post(
            app.addr,
            Some("application/json; charset=utf-8"),
            document.to_string().into_bytes(),
            version,
        )
        .await;
        assert_eq!(answer.status(), 200, "{version:?}: {}", answer.body);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        assert_eq!(answer.json(), document, "{version:?}");
    }
}

/// The README's word for it: the document is parsed and re-encoded, not
/// copied, so big integers become floats and the last of duplicate keys wins.
#[tokio::test]
async fn the_document_comes_back_re_encoded_as_the_readme_says() {
    let app = spawn_app(Config::default()).await;
    let sent = br#"{"a": 1, "a": 2, "n": [12345678901234567890123, 1e2]}"#.to_vec();
    let answer = post(app.addr, Some("application/json"), sent, Version::HTTP_11).await;
    assert_eq!(answer.status(), 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        r#"{"a":2,"n":[1.2345678901234568e+22,100.0]}"#
    );
    let readme = include_str!("../../README.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with("| `POST /echo`"))
        .expect("the README's routes table has POST /echo");
    for claim in ["re-encoded", "1.2345678901234568e+22", "100.0", "the last wins"] {
        assert!(row.contains(claim), "the README's /echo row lacks {claim:?}: {row}");
    }
}

#[tokio::test]
async fn refused_bodies_are_counted_json_errors() {
    let app = spawn_app(Config::default()).await;
    let cases: [(Option<&str>, Vec<u8>, u16, &str); 5] = [
        (
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "Content-Type must be application/json",
        ),
        (
            None,
            b"{}".to_vec(),
            415,
            "Content-Type must be application/json",
        ),
        (
            Some("application/json"),
            Vec::new(),
            400,
            "request body is empty",
        ),
        (
            Some("application/json"),
            b"{\"a\": }".to_vec(),
            400,
            "not valid JSON: expected value at line 1 column 7",
        ),
        (
            Some("application/json"),
            vec![b' '; MAX_ECHO_BYTES + 1],
            413,
            "larger than 65536 bytes",
        ),
    ];
    for (content_type, body, status, reason) in cases {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let answer = post(app.addr, content_type, body.clone(), version).await;
            assert_eq!(answer.status(), status, "{content_type:?} {version:?}");
            assert_eq!(answer.header("cache-control"), Some("no-store"));
            let error = answer.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains(reason), "{error}");
        }
    }
    // A document exactly at the cap is fine.
    let mut at_cap = vec![b' '; MAX_ECHO_BYTES - 2];
    at_cap.extend_from_slice(b"{}");
    let answer = post(app.addr, Some("application/json"), at_cap, Version::HTTP_11).await;
    assert_eq!(answer.status(), 200);

    let metrics = get(app.addr, "/metrics").await.body;
    for (status, count) in [("415", 4), ("400", 4), ("413", 2), ("200", 1)] {
        let series = format!(
            r#"http_requests_total{{method="POST",route="/echo",status="{status}"}} {count}"#
        );
        assert!(metrics.contains(&series), "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn a_chunked_upload_is_read_and_one_over_the_cap_is_refused_at_the_cap() {
    let app = spawn_app(Config::default()).await;
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let chunked = format!("{head}5\r\n{{\"a\":\r\n2\r\n1}}\r\n0\r\n\r\n");
    let answer = raw(app.addr, chunked.into_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#"{"a":1}"#), "{answer}");

    // 128 KiB in 8 KiB chunks, without a Content-Length: 413 once past 64 KiB.
    let mut oversized = head.as_bytes().to_vec();
    for _ in 0..16 {
        oversized.extend_from_slice(b"2000\r\n");
        oversized.extend_from_slice(&[b' '; 0x2000]);
        oversized.extend_from_slice(b"\r\n");
    }
    oversized.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(app.addr, oversized, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_the_body_is_sent() {
    let app = spawn_app(Config::default()).await;
    // Only the head: pulse answers without waiting for the 1 MB it announces.
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    let answer = raw(app.addr, head.as_bytes().to_vec(), Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_with_408() {
    let app = spawn_app(Config {
        header_read_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"a\"";
    let answer = raw(app.addr, head.as_bytes().to_vec(), Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// The helper a fork's body routes test with (`post_json`) sends what
/// `/echo` reads.
#[tokio::test]
async fn post_json_sends_a_json_body() {
    let app = spawn_app(Config::default()).await;
    let answer = crate::helpers::post_json(app.addr, "/echo", "[1, 2]").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.body, "[1,2]");
}
