//! HTTP/2 with prior knowledge (h2c) on the same port as HTTP/1.1.

use http_body_util::Empty;
use hyper::Version;
use pulse::Config;

use crate::helpers::{request, send, spawn_app};

#[tokio::test]
async fn h2_prior_knowledge_serves_the_same_routes() {
    let app = spawn_app(Config::default()).await;
    let h2 = |method: &str, path: &str| {
        request(method, app.addr, path)
            .uri(format!("http://{}{path}", app.addr))
            .version(Version::HTTP_2)
            .body(Empty::new())
            .unwrap()
    };
    let root = send(app.addr, h2("GET", "/")).await;
    assert_eq!(root.response.version(), Version::HTTP_2);
    assert_eq!((root.status(), root.body.as_str()), (200, "Hello, DevOps!"));
    assert_eq!(root.header("x-content-type-options"), Some("nosniff"));
    assert!(root.header("x-request-id").is_some());

    let head = send(app.addr, h2("HEAD", "/health")).await;
    assert_eq!((head.status(), head.body.as_str()), (200, ""));
    assert!(head.header("content-length").is_some());

    // pulse sets `content-length` over HTTP/2 itself, reusing the last value
    // it made: answers of different lengths in turn must each carry theirs.
    for path in ["/", "/version", "/", "/livez", "/nope", "/livez"] {
        let got = send(app.addr, h2("GET", path)).await;
        let length = got.body.len().to_string();
        assert_eq!(
            got.header("content-length"),
            Some(length.as_str()),
            "{path}"
        );
        let head = send(app.addr, h2("HEAD", path)).await;
        assert_eq!(
            head.header("content-length"),
            Some(length.as_str()),
            "HEAD {path}"
        );
    }

    let missing = send(app.addr, h2("GET", "/nope")).await;
    assert_eq!(missing.status(), 404);
    let wrong = send(app.addr, h2("POST", "/readyz")).await;
    assert_eq!(
        (wrong.status(), wrong.header("allow")),
        (405, Some("GET, HEAD"))
    );
    // Connection-specific headers are illegal in HTTP/2, even while draining.
    assert_eq!(wrong.header("connection"), None);
}

/// SECURITY: an HTTP/2 header list over MAX_HEADER_LIST_BYTES is refused
/// before any handler runs, and the connection goes on serving.
#[tokio::test]
async fn an_oversized_http2_header_list_is_refused_and_the_connection_carries_on() {
    let app = spawn_app(Config::default()).await;
    let addr = app.addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = |value: &str| {
        hyper::Request::get(format!("http://{addr}/"))
            .header("x-big", value)
            .body(())
            .unwrap()
    };
    let limit = pulse::server::MAX_HEADER_LIST_BYTES as usize;
    let (response, _) = client
        .send_request(request(&"a".repeat(limit + 1024)), true)
        .unwrap();
    assert_eq!(
        response.await.expect("an answer, not a reset").status(),
        431
    );
    // The same connection still serves, up to the limit.
    let mut client = client.ready().await.expect("the connection survived");
    let (response, _) = client
        .send_request(request(&"a".repeat(limit - 1024)), true)
        .unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
}

#[tokio::test]
async fn with_h2c_off_only_http1_is_served() {
    let app = spawn_app(Config {
        h2c: false,
        ..Config::default()
    })
    .await;
    let http1 = crate::helpers::get(app.addr, "/").await;
    assert_eq!(
        (http1.status(), http1.body.as_str()),
        (200, "Hello, DevOps!")
    );
    // What a server answers to the HTTP/2 connection preface alone.
    let answer_to_preface = |addr, timeout| {
        tokio::task::spawn_blocking(move || {
            crate::helpers::raw_exchange(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", timeout)
        })
    };
    // With h2c off it is an HTTP/1 request with an unsupported version:
    // hyper closes the connection without an answer.
    let preface = answer_to_preface(app.addr, std::time::Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(preface, "", "no HTTP/2 frames when h2c is off");
    // With h2c on (the default), the same preface opens an HTTP/2 connection.
    let default = spawn_app(Config::default()).await;
    let h2 = answer_to_preface(default.addr, std::time::Duration::from_millis(500))
        .await
        .unwrap();
    assert!(!h2.is_empty() && !h2.starts_with("HTTP/1.1"), "{h2:?}");
}

/// Streams run in their connection's task (`src/executor.rs`): a burst of
/// them on one connection is answered in full, and so are streams still
/// waiting (an `Async` handler) when the server shuts down. A stream left
/// waiting for a poll that never comes would hang here until the timeout.
#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn bursts_of_streams_on_one_connection_are_answered_through_shutdown() {
    use http_body_util::BodyExt;
    use pulse::server::ShutdownRequest;
    use std::time::Duration;

    let mut app = spawn_app(crate::helpers::test_config()).await;
    let (sender, _connection) = crate::helpers::h2_connection(app.addr).await;
    type Answer = tokio::task::JoinHandle<Result<(u16, hyper::body::Bytes), hyper::Error>>;
    async fn answered(answers: Vec<Answer>, expected: &'static str) {
        for answer in answers {
            let (status, body) = tokio::time::timeout(Duration::from_secs(10), answer)
                .await
                .expect("a stream was never answered")
                .unwrap()
                .expect("the stream failed");
            assert_eq!((status, body), (200, hyper::body::Bytes::from(expected)));
        }
    }

    let burst = |path: &'static str, count: usize| -> Vec<Answer> {
        (0..count)
            .map(|_| {
                let request = request("GET", app.addr, path)
                    .uri(format!("http://{}{path}", app.addr))
                    .version(Version::HTTP_2)
                    .body(Empty::<hyper::body::Bytes>::new())
                    .unwrap();
                let mut sender = sender.clone();
                tokio::spawn(async move {
                    let response = sender.send_request(request).await?;
                    let status = response.status().as_u16();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                })
            })
            .collect()
    };
    answered(burst("/", 30), "Hello, DevOps!").await;
    let waiting = burst("/delay/300", 10);
    tokio::time::sleep(Duration::from_millis(100)).await;
    app.shutdown(ShutdownRequest::Terminate);
    answered(waiting, r#"{"delayed_ms":300}"#).await;
    tokio::time::timeout(Duration::from_secs(5), app.server)
        .await
        .expect("the server did not stop")
        .unwrap()
        .expect("nothing stopped pulse for good");
}
