//! Test harness: servers to test and clients to test them with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pulse::{Config, ShutdownRequest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An in-process pulse on a free port of 127.0.0.1.
pub struct TestApp {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<ShutdownRequest>>,
    pub server: JoinHandle<Result<(), String>>,
}

impl TestApp {
    /// Resolves the shutdown future that `pulse::run` was given.
    pub fn shutdown(&mut self, request: ShutdownRequest) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(request);
        }
    }
}

pub async fn spawn_app(config: Config) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(pulse::run(listener, config, async move {
        stopped.await.unwrap_or(ShutdownRequest::Interrupt)
    }));
    TestApp {
        addr,
        stop: Some(stop),
        server,
    }
}

/// The defaults, with fault injection on and no drain delay.
pub fn test_config() -> Config {
    Config {
        fault_injection: true,
        drain_delay: Duration::ZERO,
        ..Config::default()
    }
}

/// Database settings for `url`: a pool of 4, the default 2 s timeout.
pub fn database_settings(url: &str) -> pulse::database::DatabaseSettings {
    pulse::database::DatabaseSettings {
        connection: pulse::database::settings::parse_url(url.as_bytes())
            .expect("a valid PULSE_DATABASE_URL"),
        password: None,
        pool_size: 4,
        timeout: Duration::from_secs(2),
        readiness: pulse::database::Readiness::Startup,
        statements: pulse::database::Statements::Prepared,
    }
}

/// Port 1 on loopback refuses at once: a database that is down.
pub const UNREACHABLE_DATABASE: &str = "postgres://pulse@127.0.0.1:1/pulse?sslmode=disable";

/// The test config with the database at `url`.
pub fn database_config(url: &str) -> Config {
    Config {
        database: Some(database_settings(url)),
        ..test_config()
    }
}

/// Waits until `/readyz` answers 200: connected and migrated.
pub async fn wait_ready(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A replica that stopped (its migrations failed) says so here, not
        // as a refused connection.
        assert!(!app.server.is_finished(), "pulse stopped before it was ready");
        let answer = get(app.addr, "/readyz").await;
        if answer.status() == 200 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never ready: {}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`test_config`] with every optional route served: the `/notes` routes
/// exist, and answer 503 (their database cannot be reached).
pub fn every_route_config() -> Config {
    Config {
        database: Some(database_settings(UNREACHABLE_DATABASE)),
        ..test_config()
    }
}

/// A response with its body collected as text.
pub struct Answer {
    pub response: Response<()>,
    pub body: String,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// A new h2 (prior knowledge) client connection to `addr`. A task of its
/// own drives the connection until either side closes it; the handle
/// returned ends then.
pub async fn h2_connection<B>(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<B>, JoinHandle<()>)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    (sender, tokio::spawn(async move { drop(connection.await) }))
}

/// A new HTTP/1.1 client connection to `addr`, driven like [`h2_connection`].
pub async fn http1_connection<B>(
    addr: SocketAddr,
) -> (hyper::client::conn::http1::SendRequest<B>, JoinHandle<()>)
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("http1 handshake");
    (sender, tokio::spawn(async move { drop(connection.await) }))
}

/// Sends one request on a new HTTP/1.1 or h2 (prior knowledge) connection.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Answer
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = if request.version() == Version::HTTP_2 {
        let (mut sender, _connection) = h2_connection(addr).await;
        sender.send_request(request).await.expect("h2 request")
    } else {
        let (mut sender, _connection) = http1_connection(addr).await;
        sender.send_request(request).await.expect("http1 request")
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        response: Response::from_parts(parts, ()),
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    }
}

pub fn request(method: &str, addr: SocketAddr, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, request("GET", addr, path).body(Empty::new()).unwrap()).await
}

pub async fn call(addr: SocketAddr, method: &str, path: &str) -> Answer {
    send(
        addr,
        request(method, addr, path).body(Empty::new()).unwrap(),
    )
    .await
}

/// POSTs `json` with `Content-Type: application/json`.
pub async fn post_json(addr: SocketAddr, path: &str, json: &str) -> Answer {
    send(
        addr,
        request("POST", addr, path)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(json.to_owned())))
            .unwrap(),
    )
    .await
}

/// Writes raw bytes and reads until the server closes or `timeout` passes.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    exchange_raw(addr, bytes, timeout, false)
}

/// Writes raw bytes and reads until the server closes the connection, which
/// it must do within `limit`: an empty answer then means "closed without a
/// word", never "still waiting".
pub fn raw_exchange_closing(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    exchange_raw(addr, bytes, limit, true)
}

fn exchange_raw(addr: SocketAddr, bytes: &[u8], limit: Duration, must_close: bool) -> String {
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(limit)).unwrap();
    stream.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e)
                if must_close
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                panic!(
                    "the server neither closed nor finished within {limit:?}; got {:?}",
                    String::from_utf8_lossy(&answer)
                )
            }
            // A timeout (when allowed), or a reset: the server refused
            // unread input, which is a close too.
            Err(_) => break,
        }
        assert!(
            !must_close || started.elapsed() <= limit,
            "the server kept the connection open past {limit:?}"
        );
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// Waits for a child process to exit; None if it is still running after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// The real pulse executable, with its stdout lines delivered to `lines`.
pub struct Binary {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub dir: PathBuf,
}

/// An empty working directory, so no stray `.env` is read.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "pulse-test-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub fn binary_command(dir: &PathBuf, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulse"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl Binary {
    pub fn spawn(name: &str, env: &[(&str, &str)]) -> Binary {
        Binary::spawn_with(temp_dir(name), &[], env)
    }

    pub fn spawn_in(dir: PathBuf, env: &[(&str, &str)]) -> Binary {
        Binary::spawn_with(dir, &[], env)
    }

    pub fn spawn_with(dir: PathBuf, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let mut child = binary_command(&dir, env)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pulse");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Binary {
            child,
            lines,
            seen: Vec::new(),
            dir,
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?} within {timeout:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// The address from the `listening on http://...` line.
    pub fn wait_until_listening(&mut self) -> SocketAddr {
        let line = self.wait_for_line("listening on http://", Duration::from_secs(10));
        let start = line.find("http://").unwrap() + "http://".len();
        let addr: String = line[start..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        addr.parse().unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit; None if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, timeout)
    }

    /// Every stdout line so far, after the process has exited.
    pub fn all_lines(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The text of one `## HEADING` section of the README, for tests that hold
/// its tables to the code.
pub fn readme_section(heading: &str) -> &'static str {
    include_str!("../../README.md")
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("the README has no ## {heading} section"))
}

/// A collector that answers 200 to every POST and keeps each raw request.
pub fn fake_collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut raw = Vec::new();
            let mut buffer = [0; 16 * 1024];
            // One request per connection (the answer closes it): read the
            // head, then as many bytes as its content-length says.
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length: usize = text[..head_end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    if raw.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            kept.lock().unwrap().push(String::from_utf8_lossy(&raw).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (endpoint, received)
}
