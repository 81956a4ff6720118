//! The real `fractured` binary as a child process: its stderr collected line by line (so
//! its log can be searched and the pipe never fills), its HTTP address read from the log,
//! signals, and a tiny HTTP/1.1 client for `/healthz` and `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FRACTURED: &str = env!("CARGO_BIN_EXE_fractured");

/// A running daemon; killed (SIGKILL) when dropped if still running.
pub struct Daemon {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// `fractured --state-dir STATE --listen 127.0.0.1:0 [--config CONFIG] ARGS...` with
    /// extra environment variables.
    pub fn spawn(state: &Path, config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_on("127.0.0.1:0", state, config, args, env)
    }

    /// As [`Daemon::spawn`], listening on `listen`.
    pub fn spawn_on(
        listen: &str,
        state: &Path,
        config: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(FRACTURED);
        cmd.arg("--state-dir").arg(state).args(["--listen", listen]);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(args).envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn fractured");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The first log line containing `needle`, waiting up to `timeout`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.lines.lock().expect("lines").iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP server's address, from its "http(s) listening ... addr=IP:PORT" log line.
    pub fn http_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_line("listening (review screen", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no http line in:\n{}", self.log()));
        let addr = line.split("addr=").nth(1).and_then(|s| s.split_whitespace().next());
        addr.and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid()).expect("pid");
        rustix::process::kill_process(pid, signal).expect("kill");
    }

    /// Waits for the exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status (panics if it takes longer than `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.wait_exit(timeout)
            .unwrap_or_else(|| panic!("no exit {timeout:?} after SIGTERM; log:\n{}", self.log()))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A response: status code, headers (lower-case names), body (as text and as bytes).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Response {
    request(addr, method, path, &[], b"")
}

/// One HTTP/1.1 request with extra headers and a body (`Content-Length` added when the
/// body is not empty).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head and body");
    let bytes = raw[split + 4..].to_vec();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response { status, headers, body, bytes }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    http(addr, "GET", path)
}

/// Writes a config file and returns its path.
pub fn config_file(dir: &Path, name: &str, toml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("config");
    path
}

/// A config that reacts quickly.
pub const FAST: &str = "[ingest]\nstable_ms = 100\nrescan_ms = 100\n\
                        [storage]\nretry_initial_ms = 50\nretry_max_ms = 200\n";
