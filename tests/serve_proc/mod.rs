//! Real `elevate serve` processes for the fault and abuse tests: start one, find the
//! address it bound, talk raw HTTP/1.1 to it, read its memory and descriptors from
//! /proc, kill it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_elevate");
/// How long a debug build may take to start on a loaded 2-core machine.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `--policies --schema --entities`: the shipped ones, read in place.
pub fn inputs() -> Vec<OsString> {
    let root = repo();
    vec![
        "--policies".into(),
        root.join("policies").into(),
        "--schema".into(),
        root.join("schema/elevate.cedarschema").into(),
        "--entities".into(),
        root.join("deploy/local/entities.json").into(),
    ]
}

/// The embedded workflow on `data` with the demo tokens (`demo-alice`, `demo-carol`, ...).
pub fn workflow_args(data: &Path) -> Vec<OsString> {
    let mut args = inputs();
    args.extend([
        "--workflow".into(),
        data.into(),
        "--tokens".into(),
        repo().join("deploy/local/tokens.json").into(),
    ]);
    args
}

/// A child process, SIGKILLed and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics (with the log) when the process has exited.
    #[track_caller]
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("server exited with {status}:\n{}", self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `elevate serve` and the address it bound.
pub struct Server {
    pub proc: Proc,
    pub addr: String,
}

impl Server {
    /// Starts `elevate serve ARGS --listen 127.0.0.1:0` (stderr into `log`) and waits
    /// until `/healthz` answers.
    pub fn start(args: &[OsString], log: &Path) -> Self {
        Self::start_with(args, log, |_| {})
    }

    /// As [`Server::start`], with a hook to change the command before it runs.
    pub fn start_with(args: &[OsString], log: &Path, tweak: impl FnOnce(&mut Command)) -> Self {
        Self::start_wrapped(&[], args, log, tweak)
    }

    /// As [`Server::start_with`], run through `wrapper` (`setpriv ...`, which execs)
    /// when it is not empty.
    pub fn start_wrapped(
        wrapper: &[&str],
        args: &[OsString],
        log: &Path,
        tweak: impl FnOnce(&mut Command),
    ) -> Self {
        let stderr = std::fs::File::create(log).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        command.arg("serve").args(args);
        if !args.iter().any(|a| a == "--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .env_remove("ELEVATE_CONFIG")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        tweak(&mut command);
        let mut proc = Proc {
            child: command.spawn().unwrap(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let text = proc.log();
            if let Some(line) = text.lines().find(|l| l.contains("elevate serving")) {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .unwrap_or_else(|| panic!("no listen= in {line:?}"));
                break addr.to_owned();
            }
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("server exited with {status} at start:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no `elevate serving` line after {START_TIMEOUT:?}:\n{text}"
            );
            thread::sleep(Duration::from_millis(10));
        };
        let server = Self { proc, addr };
        server.wait_for("/healthz", 200);
        server
    }

    /// Waits until `GET path` answers `status`.
    pub fn wait_for(&self, path: &str, status: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.get(path)
                && r.status == status
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never answered {status}:\n{}",
                self.proc.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn sock(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    pub fn get(&self, path: &str) -> std::io::Result<Reply> {
        request(&self.addr, "GET", path, &[], b"")
    }

    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        request(&self.addr, "POST", path, headers, body)
    }

    /// `/v1/status` as JSON.
    pub fn status(&self) -> Value {
        let reply = self.get("/v1/status").unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    /// One decision.
    pub fn decide(&self, principal: &str, action: &str, resource: &str) -> Value {
        let body =
            serde_json::json!({"principal": principal, "action": action, "resource": resource});
        let reply = self
            .post("/v1/is_authorized", &[], body.to_string().as_bytes())
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        reply.json()
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.proc.pid(), "VmRSS:")
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// A field of /proc/PID/status, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` sentence of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// One request on its own connection (`Connection: close`), the answer read to EOF.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

/// Writes `raw` on a new connection and parses what comes back until EOF.
pub fn exchange(addr: &str, raw: &[u8]) -> std::io::Result<Reply> {
    let sock: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    // The server may answer (431, 413) and close before it has read everything.
    let _ = stream.write_all(raw);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    parse_reply(&answer)
}

pub fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(bad("answer cut short"));
        }
        body.truncate(len);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// `elevate audit verify LOG`: exit code and output.
pub fn audit_verify(log: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(log)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Polls `f` until it gives a value, failing with `what` after `timeout`.
#[track_caller]
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        thread::sleep(Duration::from_millis(25));
    }
}
