//! Measures cold start: from exec to the first 200 answer on a path.
//!
//! Usage: `cold_start BINARY PATH RUNS` (scripts/bench/bench.sh runs it). It prints
//! each run's time in microseconds, then the median. The binary is started
//! with `PORT` set to a free port and polled every 50 µs with a fresh
//! connection, as a load balancer's first probe would be.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, binary, path, runs] = args.as_slice() else {
        eprintln!("usage: cold_start BINARY PATH RUNS");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().unwrap_or(20);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        match measure(binary, path) {
            Ok(elapsed) => {
                println!("run {:>3}: {} us", times.len() + 1, elapsed.as_micros());
                times.push(elapsed);
            }
            Err(e) => {
                eprintln!("cold start failed: {e}");
                std::process::exit(1);
            }
        }
    }
    times.sort();
    println!("median: {} us", times[times.len() / 2].as_micros());
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn measure(binary: &str, path: &str) -> Result<Duration, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {binary}: {e}"))?;
    let result = loop {
        if started.elapsed() > Duration::from_secs(5) {
            break Err("no 200 within 5 s".to_owned());
        }
        if answers_200(addr, path) {
            break Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn answers_200(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
