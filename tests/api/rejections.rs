//! Requests that hyper rejects before pulse sees them are still visible:
//! counted in `pulse_connection_errors_total{reason}` (once per connection)
//! and logged at debug with the remote address.

use std::time::Duration;

use pulse::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Binary, get, raw_exchange, spawn_app, test_config};

async fn connection_errors(addr: std::net::SocketAddr, reason: &str) -> u64 {
    let metrics = get(addr, "/metrics").await.body;
    let series = format!("pulse_connection_errors_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
        .parse()
        .expect("a count")
}

/// Waits up to 3 s for a counter to reach `expected`.
async fn expect_count(addr: std::net::SocketAddr, reason: &str, expected: u64) {
    for _ in 0..30 {
        if connection_errors(addr, reason).await == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(connection_errors(addr, reason).await, expected, "{reason}");
}

// raw_exchange blocks its thread; the in-process server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_connections_are_counted_by_reason_once_each() {
    let app = spawn_app(Config {
        header_read_timeout: Duration::from_millis(500),
        ..test_config()
    })
    .await;
    let addr = app.addr;
    for reason in [
        "malformed_request",
        "header_too_large",
        "header_timeout",
        "http2_protocol",
    ] {
        assert_eq!(
            connection_errors(addr, reason).await,
            0,
            "{reason} before any"
        );
    }

    let answer = raw_exchange(addr, b"GARBAGE\r\n\r\n", Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // docs/limits.md, "Answers pulse does not write": hyper answers this
    // itself, so none of the headers every answer of pulse carries.
    let head = answer.to_ascii_lowercase();
    for header in ["x-request-id", "x-content-type-options", "cache-control", "traceparent"] {
        assert!(!head.contains(header), "{header} in hyper's own 400: {answer:?}");
    }
    expect_count(addr, "malformed_request", 1).await;

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let answer = raw_exchange(addr, big.as_bytes(), Duration::from_secs(3));
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:?}"
    );
    expect_count(addr, "header_too_large", 1).await;

    // Silent: connects and sends nothing. The idle watchdog closes it, and
    // counts it once.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buffer = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection stayed open"
    );
    // A slowloris: half a request head, never finished.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the slowloris connection stayed open"
    );
    expect_count(addr, "header_timeout", 2).await;

    // HTTP/2: the preface, then a PING frame 7 bytes long (it must be 8), a
    // connection error (FRAME_SIZE_ERROR).
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
    h2.extend_from_slice(&[0, 0, 7, 0x6, 0, 0, 0, 0, 0]); // PING, length 7
    h2.extend_from_slice(&[0; 7]);
    let answer = raw_exchange(addr, &h2, Duration::from_secs(3));
    assert!(!answer.is_empty(), "no GOAWAY for a malformed HTTP/2 frame");
    expect_count(addr, "http2_protocol", 1).await;

    // Served requests are not errors.
    assert_eq!(get(addr, "/").await.status(), 200);
    assert_eq!(connection_errors(addr, "other").await, 0);
}

#[tokio::test]
async fn a_rejected_request_is_logged_at_debug_with_the_remote_address() {
    let mut pulse = Binary::spawn(
        "rejection-log",
        &[("RUST_LOG", "info,pulse::connection=debug")],
    );
    let addr = pulse.wait_until_listening();
    let answer = raw_exchange(addr, b"GARBAGE\r\n\r\n", Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // docs/limits.md, "Answers pulse does not write": hyper answers this
    // itself, so none of the headers every answer of pulse carries.
    let head = answer.to_ascii_lowercase();
    for header in ["x-request-id", "x-content-type-options", "cache-control", "traceparent"] {
        assert!(!head.contains(header), "{header} in hyper's own 400: {answer:?}");
    }
    let line = pulse.wait_for_line("reason=malformed_request", Duration::from_secs(5));
    assert!(
        line.contains("DEBUG") && line.contains("pulse::connection"),
        "{line}"
    );
    assert!(line.contains("remote=127.0.0.1:"), "{line}");
}

/// Out of file descriptors, accept() fails: pulse backs off, warns once
/// (not once per attempt), and serves again once connections close.
#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn running_out_of_file_descriptors_warns_once_and_recovers() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = crate::helpers::temp_dir("emfile");
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 40 && exec \"$0\"",
            env!("CARGO_BIN_EXE_pulse"),
        ])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pulse under ulimit -n 40");
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let mut pulse = Binary {
        child,
        lines,
        seen: Vec::new(),
        dir,
    };
    let addr = pulse.wait_until_listening();
    // More connections than descriptors: the kernel completes them all, and
    // pulse's accept() hits EMFILE for the rest, again and again.
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    pulse.wait_for_line("accept failed", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(1)).await;
    while let Ok(line) = pulse.lines.try_recv() {
        pulse.seen.push(line);
    }
    let warnings = pulse
        .seen
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning per 10 s, not one per attempt: {:#?}",
        pulse.seen
    );
    drop(held);
    let answer = tokio::time::timeout(Duration::from_secs(10), get(addr, "/"))
        .await
        .expect("pulse serves again once descriptors are free");
    assert_eq!(answer.status(), 200);
}
