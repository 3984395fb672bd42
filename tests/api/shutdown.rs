//! Graceful shutdown: readiness flips, in-flight requests finish, exit 0.

use std::time::{Duration, Instant};

use pulse::{Config, ShutdownRequest};

use crate::helpers::{Binary, get, spawn_app, test_config};

#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn terminate_drains_then_finishes_in_flight_requests() {
    let mut app = spawn_app(Config {
        drain_delay: Duration::from_millis(500),
        ..test_config()
    })
    .await;
    let addr = app.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/delay/1000").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    app.shutdown(ShutdownRequest::Terminate);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // During the drain delay pulse still accepts, but reports draining and
    // asks HTTP/1 clients to reconnect elsewhere.
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.body, r#"{"status":"draining"}"#);
    assert_eq!(ready.header("connection"), Some("close"));
    assert_eq!(get(addr, "/").await.status(), 200);

    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), app.server)
        .await
        .expect("server stopped")
        .unwrap()
        .expect("nothing stopped pulse for good");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "drain delay skipped"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}

/// The real binary, so that "cut" means what it means in production: the
/// process exits and the slow request's connection closes unanswered.
#[test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
fn the_shutdown_timeout_cuts_a_slow_request_and_the_process_exits_right_after() {
    use std::io::{Read, Write};

    let mut pulse = Binary::spawn(
        "shutdown-timeout",
        &[
            ("PULSE_FAULT_INJECTION", "true"),
            ("PULSE_DRAIN_DELAY", "0"),
            ("PULSE_SHUTDOWN_TIMEOUT", "1s"),
        ],
    );
    let addr = pulse.wait_until_listening();
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /delay/10000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    pulse.signal("TERM");
    let status = pulse
        .wait_exit(Duration::from_secs(5))
        .expect("pulse waited for the 10 s request");
    let exited_after = started.elapsed();
    // The 1 s timeout, and only a moment more.
    assert!(
        exited_after >= Duration::from_secs(1) && exited_after < Duration::from_millis(2500),
        "exited {exited_after:?} after SIGTERM"
    );
    assert_eq!(status.code(), Some(0));
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "the slow request was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    let lines = pulse.all_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("timeout of 1.000s reached")),
        "{lines:#?}"
    );
}

// One serving thread is tokio's current-thread scheduler, more are its
// multi-thread one (`server::runtime`): both must drain the same way.
#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn sigterm_to_the_binary_drains_completes_in_flight_and_exits_0() {
    sigterm_drains_and_exits_0("1").await;
}

#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn sigterm_drains_the_same_way_with_two_worker_threads() {
    sigterm_drains_and_exits_0("2").await;
}

async fn sigterm_drains_and_exits_0(worker_threads: &str) {
    let mut pulse = Binary::spawn(
        &format!("sigterm-{worker_threads}"),
        &[
            ("PULSE_FAULT_INJECTION", "true"),
            ("PULSE_DRAIN_DELAY", "1s"),
            ("PULSE_SHUTDOWN_TIMEOUT", "5s"),
            ("TOKIO_WORKER_THREADS", worker_threads),
        ],
    );
    let addr = pulse.wait_until_listening();
    let in_flight = tokio::spawn(async move { get(addr, "/delay/1500").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(addr, "/readyz").await.status(), 200);

    pulse.signal("TERM");
    let started = Instant::now();
    pulse.wait_for_line("/readyz now answers 503", Duration::from_secs(5));
    assert_eq!(get(addr, "/readyz").await.status(), 503);

    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status(), 200, "the in-flight request was cut");
    let status = tokio::task::spawn_blocking(move || {
        let status = pulse.wait_exit(Duration::from_secs(10));
        (status, pulse.all_lines())
    })
    .await
    .unwrap();
    let (status, lines) = status;
    let status = status.expect("pulse did not exit within drain delay + timeout");
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    assert!(started.elapsed() < Duration::from_secs(1 + 5 + 1));
    for step in [
        "still serving for the drain delay",
        "stopped accepting",
        "all connections closed",
        "shutdown complete",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(step)),
            "no {step:?} in {lines:#?}"
        );
    }
}

#[test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
fn sigint_skips_the_drain_delay() {
    let mut pulse = Binary::spawn("sigint", &[("PULSE_DRAIN_DELAY", "30s")]);
    pulse.wait_until_listening();
    pulse.signal("INT");
    let status = pulse.wait_exit(Duration::from_secs(10)).expect("exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
fn a_second_signal_exits_at_once() {
    let mut pulse = Binary::spawn("second-signal", &[("PULSE_DRAIN_DELAY", "30s")]);
    pulse.wait_until_listening();
    pulse.signal("TERM");
    pulse.wait_for_line("still serving for the drain delay", Duration::from_secs(5));
    pulse.signal("TERM");
    let status = pulse
        .wait_exit(Duration::from_secs(5))
        .expect("a second SIGTERM must not wait 30 s");
    // 130, the exit code of a second signal (signals.rs, EXIT_FORCED).
    assert_eq!(status.code(), Some(130));
}
