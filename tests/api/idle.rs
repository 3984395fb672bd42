//! Idle connections cannot hold the connection cap: clients that made one
//! request and then sat idle are closed within the idle timeout (the header
//! read timeout) plus one second, on HTTP/1.1 and HTTP/2 alike, so a fresh
//! client is served by then. (At the cap, a new client does not even wait
//! for that: tests/api/hardening.rs shows the longest-idle connection
//! making room at once.)

use std::time::{Duration, Instant};

use http_body_util::Empty;
use hyper::Version;
use hyper::body::Bytes;
use pulse::Config;
use tokio::task::JoinHandle;

use crate::helpers::{get, h2_connection, http1_connection, request, spawn_app, test_config};

const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const SLOTS: usize = 4;

/// One client connection that has made a request and now idles. Its
/// connection task runs until the server closes the connection; the sender
/// is kept so the client never closes it itself.
struct Idler {
    _sender: Box<dyn std::any::Any + Send>,
    connection: JoinHandle<()>,
}

async fn idle_client(addr: std::net::SocketAddr, version: Version) -> Idler {
    let request = request("GET", addr, "/")
        .uri(format!("http://{addr}/"))
        .version(version)
        .body(Empty::<Bytes>::new())
        .unwrap();
    if version == Version::HTTP_2 {
        let (mut sender, connection) = h2_connection(addr).await;
        let response = sender.send_request(request).await.expect("h2 request");
        assert_eq!(response.status(), 200);
        Idler {
            _sender: Box::new(sender),
            connection,
        }
    } else {
        let (mut sender, connection) = http1_connection(addr).await;
        let response = sender.send_request(request).await.expect("http1 request");
        assert_eq!(response.status(), 200);
        Idler {
            _sender: Box::new(sender),
            connection,
        }
    }
}

async fn fresh_client_is_served_despite_idlers(version: Version) {
    let app = spawn_app(Config {
        max_connections: SLOTS,
        header_read_timeout: IDLE_TIMEOUT,
        ..test_config()
    })
    .await;
    let mut idlers = Vec::new();
    for _ in 0..SLOTS {
        idlers.push(idle_client(app.addr, version).await);
    }
    let idle_from = Instant::now();

    // The idle timeout closes every one of them (HTTP/2 with GOAWAY, which
    // ends the client's connection task cleanly) within the timeout + 1 s,
    // with no new client asking for a slot.
    let deadline = idle_from + IDLE_TIMEOUT + Duration::from_secs(1);
    for idler in idlers {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, idler.connection)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "an idle {version:?} connection was still open {:?} after its last request",
                    idle_from.elapsed()
                )
            })
            .expect("client connection task");
    }
    // So a fresh client is served within the timeout + 1 s.
    let fresh = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(200),
        get(app.addr, "/"),
    )
    .await
    .unwrap_or_else(|_| panic!("{SLOTS} idle {version:?} clients held every slot"));
    assert_eq!(fresh.status(), 200);
}

#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn idle_h2c_clients_cannot_hold_the_connection_cap() {
    fresh_client_is_served_despite_idlers(Version::HTTP_2).await;
}

#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn idle_http1_keep_alive_clients_cannot_hold_the_connection_cap() {
    fresh_client_is_served_despite_idlers(Version::HTTP_11).await;
}

#[tokio::test]
#[ignore = "timing: scripts/ci.sh runs it in its timing stage (cargo test -- --ignored)"]
async fn a_connection_with_a_request_in_flight_is_not_idle() {
    // /delay/3000 outlives the 2 s idle timeout on an h2c connection: the
    // request is answered, not cut.
    let app = spawn_app(Config {
        header_read_timeout: IDLE_TIMEOUT,
        ..test_config()
    })
    .await;
    let started = Instant::now();
    let answer = crate::helpers::send(
        app.addr,
        request("GET", app.addr, "/delay/3000")
            .uri(format!("http://{}/delay/3000", app.addr))
            .version(Version::HTTP_2)
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(3));
}
