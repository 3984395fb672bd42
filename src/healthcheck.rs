//! `pulse healthcheck`: a tiny HTTP/1.1 client for container healthchecks.
//! A scratch image has no curl, so the binary checks itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pulse::Config;

/// The whole check must finish within this, well inside any healthcheck's own timeout.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the check connects: the loopback address of the same family when
/// pulse listens on all addresses (`0.0.0.0`, `::`), otherwise the
/// configured address itself, loopback ones such as `::1` or `127.0.0.2`
/// included.
pub fn target(config: &Config) -> SocketAddr {
    let ip = match config.host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        specific => specific,
    };
    SocketAddr::new(ip, config.port)
}

/// GETs `/livez` at `addr`. Ok holds a one-line report of a 200, Err the reason
/// the service counts as unhealthy.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let started = Instant::now();
    let url = format!("http://{addr}/livez");
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("unhealthy: cannot connect to {url}: {e}"))?;
    let remaining = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(remaining))
        .and_then(|()| stream.set_write_timeout(Some(remaining)))
        .map_err(|e| format!("unhealthy: {e}"))?;
    let request = format!(
        "GET /livez HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pulse-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("unhealthy: cannot send to {url}: {e}"))?;

    // The status line is all the check needs; read until its end.
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("unhealthy: no answer from {url}: {e}")),
        }
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status == "200" {
        Ok(format!("healthy: {url} answered 200 in {elapsed_ms:.1}ms"))
    } else if status_line.is_empty() {
        Err(format!(
            "unhealthy: {url} closed the connection without answering"
        ))
    } else {
        Err(format!("unhealthy: {url} answered {status_line:?}"))
    }
}
