//! End to end, in real processes: `elevate serve --workflow` (decisions, workflow and
//! feed in one process), a second plain sidecar following its feed over HTTP or as a
//! file, and the real CLI (`request`, `approve`, `deny`, `revoke`, `show`, `extend`,
//! `relinquish`, `request --wait`, `audit verify`) as each person would run it.
//! Covers the whole story with both feeds (and the revocation latency), `--wait`,
//! the workflow's rules through the HTTP API, a grant's window to the instant in the
//! second sidecar, token hot reload, crash safety under SIGKILL with torn tails,
//! tamper detection, the feed's ETag across a replaced history, and webhooks.
//!
//! Every test has its own temp dir (a copy of the shipped policies, schema and
//! entities, and its own random bearer tokens) and its own ports (`--listen
//! 127.0.0.1:0`, the bound address read from the server's log). Processes are killed
//! when their guard drops, so a failing test leaks none. Every wait polls with a
//! deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_elevate");
/// How long a server may take to start on a loaded 2-core machine, in debug.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a change may take to reach a sidecar before the test fails.
const FEED_TIMEOUT: Duration = Duration::from_secs(5);
/// The revocation target the brief sets: the second sidecar denies within this.
const REVOCATION_BUDGET: Duration = Duration::from_secs(2);

const ALICE: &str = "User::\"alice\"";
const CAROL: &str = "User::\"carol\"";
const FRANK: &str = "User::\"frank\"";
const BB_WS1: &str = "ApiKey::\"bb-ws1\"";
const WS1: &str = "Workspace::\"ws-1\"";
const ACME: &str = "Organization::\"acme\"";
const PAY: &str = "Action::\"createPaymentMethod\"";
/// An organization-level call only an `OrganizationAdmin` grant on the organization
/// allows alice (`admin` group, resource the `Organization`).
const CREATE_WORKSPACE: &str = "Action::\"createWorkspace\"";

// ------------------------------------------------------------------ HTTP client

/// One HTTP answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A tiny HTTP/1.1 client: one request per connection (`Connection: close`), the
/// whole answer read to EOF. An answer cut short (fewer bytes than its
/// `Content-Length`) is an error, never a reply.
fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<Reply> {
    let sock: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < len {
            return Err(bad("body cut short"));
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
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn try_api(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<Reply> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let body = body.map(Value::to_string);
    raw_request(addr, method, path, &headers, body.as_deref())
}

fn api(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    try_api(addr, method, path, token, body)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// Asserts the contract's error shape: the status, `kind`, and a sentence that
/// contains `sentence`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, kind: &str, sentence: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["kind"], kind, "{body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"));
    assert!(
        error.contains(sentence),
        "error sentence {error:?} should contain {sentence:?}"
    );
}

/// `POST /v1/is_authorized` on a sidecar.
fn decide(addr: &str, principal: &str, action: &str, resource: &str) -> Value {
    let body = json!({"principal": principal, "action": action, "resource": resource});
    let reply = api(addr, "POST", "/v1/is_authorized", None, Some(&body));
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn grant_ids(answer: &Value) -> Vec<String> {
    answer["grants"]
        .as_array()
        .unwrap_or_else(|| panic!("no grants array: {answer}"))
        .iter()
        .map(|g| {
            g.as_str()
                .map_or_else(|| g["id"].to_string(), str::to_owned)
        })
        .collect()
}

fn ts(value: &Value) -> Timestamp {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp string: {value}"))
        .parse()
        .unwrap_or_else(|e| panic!("not a timestamp: {value}: {e}"))
}

/// Calls `f` until it gives a value, or panics naming `what` after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

// ------------------------------------------------------------------ processes

/// A child process, killed (SIGKILL) and reaped when dropped.
struct Proc {
    child: Child,
    /// Where its stderr goes.
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// SIGKILL, and reap it so its port and its log lock are free.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit on its own; its exit code, or `None` after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running `elevate serve` and the address it bound.
struct Server {
    proc: Proc,
    addr: String,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `/readyz` says 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = try_api(&self.addr, "GET", "/readyz", None, None)
                && r.status == 200
            {
                return;
            }
            if let Some(status) = self.proc.child.try_wait().unwrap() {
                panic!(
                    "server exited with {status} before ready:\n{}",
                    self.proc.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server at {} not ready after {START_TIMEOUT:?}:\n{}",
                self.addr,
                self.proc.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts `elevate serve ARGS` (with `--listen 127.0.0.1:0` unless ARGS name an
/// address), its stderr in `log`.
fn spawn_serve(args: &[OsString], log: &Path) -> Proc {
    let stderr = std::fs::File::create(log).unwrap();
    let mut command = Command::new(BIN);
    command.arg("serve").args(args);
    if !args.iter().any(|a| a == "--listen") {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let child = command
        .env_remove("ELEVATE_URL")
        .env_remove("ELEVATE_TOKEN")
        .env_remove("ELEVATE_CONFIG")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Proc {
        child,
        log: log.to_path_buf(),
    }
}

/// Starts a server, reads its bound address from the `elevate serving listen=...`
/// log line, and waits until it is ready.
fn start_server(args: &[OsString], log: &Path) -> Server {
    let mut proc = spawn_serve(args, log);
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
    let mut server = Server { proc, addr };
    server.wait_ready();
    server
}

/// Asserts a server logged no `ERROR` line (warnings are allowed: a sidecar warns
/// when its feed is unreachable, a restart when it repairs the log). Tolerated: the
/// `ERROR ... request failed error=not ready` that every `/readyz` probe logs while
/// a sidecar waits for its first feed (a 503 is logged like an internal failure).
#[track_caller]
fn assert_no_errors(server: &Server) {
    let log = server.proc.log();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && !l.contains("error=not ready:"))
        .collect();
    assert!(
        errors.is_empty(),
        "{} logged errors:\n{}",
        server.addr,
        errors.join("\n")
    );
}

/// A CLI run's outcome.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli_command(url: &str, token: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("ELEVATE_CONFIG")
        .env("ELEVATE_URL", url)
        .env("ELEVATE_TOKEN", token)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs `elevate ARGS` with `ELEVATE_URL` and `ELEVATE_TOKEN` set.
fn cli(url: &str, token: &str, args: &[&str]) -> Run {
    let out = cli_command(url, token, args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn audit_verify(log: &Path) -> Run {
    let out = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(log)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ------------------------------------------------------------------ a test's world

/// Bearer tokens made for one test: nobody else's server knows them, so a stray
/// request to a port another test reused is a 401, never a false success.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            .to_le_bytes(),
    );
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hex::encode(hasher.finalize())[..20].to_owned()
}

/// One test's temp dir: inputs copied from the repository, a data dir, tokens.
struct World {
    dir: TempDir,
    policies: PathBuf,
    schema: PathBuf,
    entities: PathBuf,
    data: PathBuf,
    tokens_file: PathBuf,
    tokens: HashMap<&'static str, String>,
    logs: AtomicU64,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // Copies: edits to the repository during the run change nothing here.
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for entry in std::fs::read_dir(root.join("policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cedar") {
                std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
            }
        }
        let schema = dir.path().join("elevate.cedarschema");
        std::fs::copy(root.join("schema/elevate.cedarschema"), &schema).unwrap();
        let entities = dir.path().join("entities.json");
        std::fs::copy(root.join("deploy/local/entities.json"), &entities).unwrap();
        let principals = [
            ("alice", ALICE),
            ("bob", "User::\"bob\""),
            ("carol", CAROL),
            ("frank", FRANK),
            ("bb-ws1", BB_WS1),
        ];
        let mut tokens = HashMap::new();
        let mut entries = Vec::new();
        for (name, principal) in principals {
            let token = format!("e2e-{name}-{}", unique());
            entries.push(json!({
                "sha256": hex::encode(Sha256::digest(token.as_bytes())),
                "principal": principal,
            }));
            tokens.insert(name, token);
        }
        let tokens_file = dir.path().join("tokens.json");
        std::fs::write(&tokens_file, Value::Array(entries).to_string()).unwrap();
        let data = dir.path().join("data");
        Self {
            dir,
            policies,
            schema,
            entities,
            data,
            tokens_file,
            tokens,
            logs: AtomicU64::new(0),
        }
    }

    fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }

    fn event_log(&self) -> PathBuf {
        self.data.join("events.jsonl")
    }

    fn feed_file(&self) -> PathBuf {
        self.data.join("grants.json")
    }

    /// A fresh log file name, so a restart's address is read from its own log.
    fn log_path(&self, name: &str) -> PathBuf {
        let n = self.logs.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{name}-{n}.log"))
    }

    fn inputs(&self) -> Vec<OsString> {
        vec![
            "--policies".into(),
            self.policies.clone().into(),
            "--schema".into(),
            self.schema.clone().into(),
            "--entities".into(),
            self.entities.clone().into(),
        ]
    }

    fn workflow_args(&self, extra: &[&str]) -> Vec<OsString> {
        let mut args = self.inputs();
        args.extend([
            "--workflow".into(),
            self.data.clone().into(),
            "--tokens".into(),
            self.tokens_file.clone().into(),
        ]);
        args.extend(extra.iter().map(OsString::from));
        args
    }

    /// The central process: decisions, workflow and feed.
    fn central(&self, extra: &[&str]) -> Server {
        start_server(&self.workflow_args(extra), &self.log_path("central"))
    }

    /// A plain sidecar following the central's feed over HTTP.
    fn sidecar_following_url(&self, central: &Server) -> Server {
        let mut args = self.inputs();
        args.extend([
            "--grants-url".into(),
            format!("http://{}/v1/grants", central.addr).into(),
        ]);
        start_server(&args, &self.log_path("sidecar-url"))
    }

    /// A plain sidecar watching the central's feed file.
    fn sidecar_following_file(&self) -> Server {
        let mut args = self.inputs();
        args.extend(["--grants".into(), self.feed_file().into()]);
        start_server(&args, &self.log_path("sidecar-file"))
    }
}

fn elevation(server: &Server, world: &World, id: &str) -> Value {
    let reply = api(
        &server.addr,
        "GET",
        &format!("/v1/elevations/{id}"),
        Some(world.token("carol")),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn create(server: &Server, world: &World, who: &str, body: &Value) -> Reply {
    api(
        &server.addr,
        "POST",
        "/v1/elevations",
        Some(world.token(who)),
        Some(body),
    )
}

fn command(server: &Server, world: &World, who: &str, id: &str, verb: &str) -> Reply {
    api(
        &server.addr,
        "POST",
        &format!("/v1/elevations/{id}/{verb}"),
        Some(world.token(who)),
        None,
    )
}

fn feed_doc(server: &Server) -> Value {
    let reply = api(&server.addr, "GET", "/v1/grants", None, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn feed_grant(feed: &Value, grant_id: &str) -> Option<Value> {
    feed["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant_id)
        .cloned()
}

fn audit_events(server: &Server, world: &World) -> Vec<Value> {
    let reply = api(
        &server.addr,
        "GET",
        "/v1/audit?limit=10000",
        Some(world.token("carol")),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["events"].as_array().unwrap().clone()
}

fn finops_ws1(reason: &str) -> Value {
    json!({"role": "FinOpsManager", "scope": WS1, "duration": "2h", "reason": reason})
}

// ------------------------------------------------------------------ 1, 2: the story

#[derive(Debug, Clone, Copy)]
enum Follow {
    Url,
    File,
}

/// Request, refused self-approval, approval, the second sidecar allowing, revocation
/// and how long until the second sidecar denies, and the audit trail. Returns the
/// revocation latency measured from the moment `elevate revoke` returned.
fn whole_story(follow: Follow) -> Duration {
    let world = World::new();
    let central = world.central(&[]);
    let sidecar = match follow {
        Follow::Url => world.sidecar_following_url(&central),
        Follow::File => world.sidecar_following_file(),
    };
    let url = central.url();

    let out = cli(
        &url,
        world.token("alice"),
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            WS1,
            "--for",
            "2h",
            "--reason",
            "create payment method",
            "--ticket",
            "OPS-1",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.split_whitespace().next().unwrap().to_owned();
    assert!(id.starts_with("r-"), "{out:?}");
    assert!(
        out.stdout.contains(
            "pending FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (0/1 approvals)"
        ),
        "{out:?}"
    );
    let pending = elevation(&central, &world, &id);
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["ticket"], "OPS-1");
    assert_eq!(pending["reason"], "create payment method");
    assert_eq!(pending["duration_seconds"], 7200);

    let answer = decide(&sidecar.addr, ALICE, PAY, WS1);
    assert_eq!(answer["decision"], "Deny", "{answer}");

    let out = cli(&url, world.token("alice"), &["approve", &id]);
    assert_eq!(out.code, 2, "self-approval is a deny: {out:?}");
    assert!(out.stderr.contains("no-self-approval"), "{out:?}");
    assert_eq!(elevation(&central, &world, &id)["state"], "pending");

    let out = cli(
        &url,
        world.token("carol"),
        &["approve", &id, "--comment", "month-end"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let approved = elevation(&central, &world, &id);
    assert_eq!(approved["state"], "approved", "{approved}");
    assert_eq!(approved["approvals"][0]["by"], CAROL);
    let grant_id = approved["grant"]["id"].as_str().unwrap().to_owned();
    let expires_at = ts(&approved["grant"]["expires_at"]);
    let not_before = ts(&approved["grant"]["not_before"]);
    assert_eq!(grant_id, id.replace("r-", "g-"));
    assert_eq!(expires_at, not_before + SignedDuration::from_hours(2));
    assert!(
        out.stdout.contains("approved FinOpsManager") && out.stdout.contains(&grant_id),
        "{out:?}"
    );

    // A grant id finds its request.
    let out = cli(&url, world.token("carol"), &["show", &grant_id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(&format!("{id} approved\n")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("ticket:") && out.stdout.contains("OPS-1"),
        "{out:?}"
    );

    // The published document, as both sidecars get it.
    let feed = feed_doc(&central);
    let entry = feed_grant(&feed, &grant_id).unwrap_or_else(|| panic!("{feed}"));
    assert_eq!(entry["principal"], ALICE);
    assert_eq!(entry["role"], "FinOpsManager");
    assert_eq!(entry["scope"], WS1);
    assert_eq!(entry["approved_by"], json!([CAROL]));
    assert_eq!(entry["requested_by"], ALICE);
    assert_eq!(entry["ticket"], "OPS-1");
    assert_eq!(ts(&entry["expires_at"]), expires_at);

    let allowed = poll("the second sidecar to allow", FEED_TIMEOUT, || {
        let answer = decide(&sidecar.addr, ALICE, PAY, WS1);
        (answer["decision"] == "Allow").then_some(answer)
    });
    assert_eq!(grant_ids(&allowed), vec![grant_id.clone()], "{allowed}");
    assert_eq!(ts(&allowed["valid_until"]), expires_at, "{allowed}");

    // Revocation: how long until the second sidecar denies.
    let invoked = Instant::now();
    let out = cli(&url, world.token("frank"), &["revoke", &id]);
    let acknowledged = Instant::now();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("revoked"), "{out:?}");
    let denied = poll(
        "the second sidecar to deny after the revocation",
        Duration::from_secs(10),
        || {
            let answer = decide(&sidecar.addr, ALICE, PAY, WS1);
            (answer["decision"] == "Deny").then_some(answer)
        },
    );
    let latency = acknowledged.elapsed();
    eprintln!(
        "revocation latency ({follow:?} feed): {} ms after `elevate revoke` returned, {} ms after it was started",
        latency.as_millis(),
        invoked.elapsed().as_millis()
    );
    assert!(
        latency < REVOCATION_BUDGET,
        "the second sidecar took {latency:?} to deny after revocation ({follow:?} feed)"
    );
    assert!(grant_ids(&denied).is_empty(), "{denied}");
    // The central's own sidecar denies too, at once.
    assert_eq!(decide(&central.addr, ALICE, PAY, WS1)["decision"], "Deny");
    let revoked = elevation(&central, &world, &id);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["ended"]["by"], FRANK);
    assert!(feed_grant(&feed_doc(&central), &grant_id).is_none());

    // The audit trail: requested, approved, revoked; refusals are not events.
    let events = audit_events(&central, &world);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["requested", "approved", "revoked"], "{events:?}");
    let actors: Vec<&str> = events
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, [ALICE, CAROL, FRANK]);
    let out = audit_verify(&world.event_log());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("valid: 3 events, last seq 3"),
        "{out:?}"
    );
    assert_no_errors(&central);
    assert_no_errors(&sidecar);
    latency
}

#[test]
fn the_whole_story_with_a_sidecar_following_the_http_feed() {
    whole_story(Follow::Url);
}

#[test]
fn the_whole_story_with_a_sidecar_watching_the_feed_file() {
    whole_story(Follow::File);
}

/// The feed's ETag must name the history, not only its length: a central that comes
/// back with another log of the same length (restored from a backup that lost the
/// tail and then took new events, or a standby's log) publishes another document
/// under the same revision. A sidecar that asks `If-None-Match` with the old ETag
/// must get the new document, not a 304 that keeps a grant the central no longer has.
#[test]
fn a_sidecar_drops_grants_of_a_history_the_central_no_longer_has() {
    let world = World::new();
    let mut central = world.central(&[]);
    let addr = central.addr.clone();
    let sidecar = world.sidecar_following_url(&central);

    // History A: r-1 requested and approved (seq 2); the sidecar allows.
    let reply = create(&central, &world, "alice", &finops_ws1("history A"));
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let etag_a = api(&central.addr, "GET", "/v1/grants", None, None)
        .header("etag")
        .unwrap()
        .to_owned();
    poll("the sidecar to allow with history A", FEED_TIMEOUT, || {
        (decide(&sidecar.addr, ALICE, PAY, WS1)["decision"] == "Allow").then_some(())
    });

    // History B, as long: r-1 requested and denied (seq 2), made by another instance.
    let other = World::new();
    let standby = other.central(&[]);
    let reply = create(&standby, &other, "alice", &finops_ws1("history B"));
    assert_eq!(reply.json()["id"], id.as_str());
    let reply = command(&standby, &other, "carol", &id, "deny");
    assert_eq!(reply.status, 200, "{}", reply.text());
    drop(standby);

    // The central comes back on the same address with history B.
    central.proc.kill();
    std::fs::copy(other.event_log(), world.event_log()).unwrap();
    let central = world.central(&["--listen", &addr]);
    assert_eq!(elevation(&central, &world, &id)["state"], "denied");
    let feed = api(&central.addr, "GET", "/v1/grants", None, None);
    assert!(
        feed.json()["grants"].as_array().unwrap().is_empty(),
        "{}",
        feed.text()
    );
    let etag_b = feed.header("etag").unwrap().to_owned();
    eprintln!("feed ETag of history A: {etag_a}, of history B: {etag_b}");

    // Failing today: the ETag is the seq alone, `"2"` for both, so the sidecar's
    // `If-None-Match: "2"` is answered 304 and it keeps allowing with g-1.
    let deadline = Instant::now() + FEED_TIMEOUT;
    let answer = loop {
        let answer = decide(&sidecar.addr, ALICE, PAY, WS1);
        if answer["decision"] == "Deny" || Instant::now() >= deadline {
            break answer;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        answer["decision"], "Deny",
        "the sidecar still allows with a grant of a history the central no longer has \
         (feed ETag {etag_a} before and {etag_b} after): {answer}"
    );
}

// ------------------------------------------------------------------ 3: --wait

/// Starts `elevate request ... --wait` in the background, stdout and stderr in files.
fn spawn_waiting_request(world: &World, url: &str, reason: &str) -> (Proc, PathBuf) {
    let stdout = world.log_path("wait-stdout");
    let stderr = world.log_path("wait-stderr");
    let child = cli_command(
        url,
        world.token("alice"),
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            WS1,
            "--for",
            "1h",
            "--reason",
            reason,
            "--wait",
            "--timeout",
            "30s",
        ],
    )
    .stdout(std::fs::File::create(&stdout).unwrap())
    .stderr(std::fs::File::create(&stderr).unwrap())
    .spawn()
    .unwrap();
    (Proc { child, log: stderr }, stdout)
}

/// The request id a waiting `request --wait` names on stderr.
fn waiting_for(proc: &mut Proc) -> String {
    poll(
        "`request --wait` to say what it waits for",
        START_TIMEOUT,
        || {
            let log = proc.log();
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("`request --wait` exited with {status} early: {log}");
            }
            let rest = log.split("waiting for approval of ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        },
    )
}

#[test]
fn request_wait_returns_once_approved_and_fails_once_denied() {
    let world = World::new();
    let central = world.central(&[]);
    let url = central.url();

    let (mut waiting, stdout) = spawn_waiting_request(&world, &url, "terraform apply");
    let id = waiting_for(&mut waiting);
    assert!(id.starts_with("r-"), "{id}");
    assert!(
        waiting.log().contains("(needs 1 approval)"),
        "{}",
        waiting.log()
    );
    // Still waiting while nobody has decided.
    assert!(waiting.child.try_wait().unwrap().is_none());
    let out = cli(&url, world.token("carol"), &["approve", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    let code = waiting.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", waiting.log());
    let printed = std::fs::read_to_string(&stdout).unwrap();
    let e = elevation(&central, &world, &id);
    let grant_id = e["grant"]["id"].as_str().unwrap();
    let expires = ts(&e["grant"]["expires_at"]);
    assert!(
        printed.starts_with(&format!("grant {grant_id} in force until ")),
        "{printed}"
    );
    let printed_expiry: Timestamp = printed
        .split_whitespace()
        .nth(5)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{printed}: {e}"));
    assert_eq!(printed_expiry, expires, "{printed}");
    assert!(
        printed.contains(&format!("(request {id}: FinOpsManager on {WS1})")),
        "{printed}"
    );

    let (mut waiting, _) = spawn_waiting_request(&world, &url, "second try");
    let second = waiting_for(&mut waiting);
    assert_ne!(second, id);
    let out = cli(
        &url,
        world.token("carol"),
        &["deny", &second, "--comment", "not now"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let code = waiting.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(2), "{}", waiting.log());
    let log = waiting.log();
    assert!(
        log.contains(&format!("request `{second}` was denied by User::\"carol\""))
            && log.contains("not now"),
        "{log}"
    );
}

/// One decision of the time-window test: the instants just before and just after.
struct Sample {
    before: Timestamp,
    after: Timestamp,
    answer: Value,
}

#[test]
fn a_grant_is_in_force_exactly_from_not_before_until_expires_at_in_the_second_sidecar() {
    let world = World::new();
    let central = world.central(&[]);
    let sidecar = world.sidecar_following_url(&central);
    let start = Timestamp::now() + SignedDuration::from_secs(2);
    let start_text = start.to_string();
    // `request --wait` for a grant that starts later: it must return once the grant
    // is in force, not at the approval.
    let stdout = world.log_path("window-stdout");
    let stderr = world.log_path("window-stderr");
    let child = cli_command(
        &central.url(),
        world.token("alice"),
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            WS1,
            "--for",
            "2s",
            "--reason",
            "a short window",
            "--not-before",
            &start_text,
            "--wait",
            "--timeout",
            "30s",
        ],
    )
    .stdout(std::fs::File::create(&stdout).unwrap())
    .stderr(std::fs::File::create(&stderr).unwrap())
    .spawn()
    .unwrap();
    let mut waiting = Proc { child, log: stderr };
    let id = waiting_for(&mut waiting);
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let grant = reply.json()["grant"].clone();
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let not_before = ts(&grant["not_before"]);
    let expires_at = ts(&grant["expires_at"]);
    assert_eq!(not_before, start, "approved before the requested start");
    assert_eq!(expires_at, start + SignedDuration::from_secs(2));
    assert!(
        Timestamp::now() < not_before,
        "the machine is too slow for this test: approved after the start"
    );

    // Ask the second sidecar over and over, from before the start to after the end.
    let mut samples = Vec::new();
    let mut exited: Option<(Timestamp, i32)> = None;
    let end = expires_at + SignedDuration::from_millis(700);
    while Timestamp::now() < end {
        let before = Timestamp::now();
        let answer = decide(&sidecar.addr, ALICE, PAY, WS1);
        let after = Timestamp::now();
        samples.push(Sample {
            before,
            after,
            answer,
        });
        if exited.is_none()
            && let Some(status) = waiting.child.try_wait().unwrap()
        {
            exited = Some((Timestamp::now(), status.code().unwrap_or(-1)));
        }
        thread::sleep(Duration::from_millis(3));
    }
    let mut allowed = 0;
    for s in &samples {
        let allow = s.answer["decision"] == "Allow";
        if allow {
            allowed += 1;
            assert!(
                s.after >= not_before && s.before < expires_at,
                "Allow outside [{not_before}, {expires_at}) between {} and {}: {}",
                s.before,
                s.after,
                s.answer
            );
            assert_eq!(grant_ids(&s.answer), vec![grant_id.clone()]);
            assert_eq!(ts(&s.answer["valid_until"]), expires_at);
        } else {
            assert!(
                !(s.before >= not_before && s.after < expires_at),
                "Deny inside [{not_before}, {expires_at}) between {} and {}: {}",
                s.before,
                s.after,
                s.answer
            );
        }
    }
    let first = samples.first().unwrap();
    let last = samples.last().unwrap();
    assert!(first.after < not_before && last.before >= expires_at);
    assert!(
        allowed > 10,
        "only {allowed} of {} answers allowed",
        samples.len()
    );

    // The waiting command returned once the grant was in force.
    let (seen_at, code) =
        exited.unwrap_or_else(|| panic!("`request --wait` still running: {}", waiting.log()));
    assert_eq!(code, 0, "{}", waiting.log());
    assert!(
        seen_at >= not_before,
        "`--wait` returned at {seen_at}, before the grant started"
    );
    assert!(
        waiting.log().contains("waiting for grant"),
        "{}",
        waiting.log()
    );
    let printed = std::fs::read_to_string(&stdout).unwrap();
    assert!(
        printed.starts_with(&format!("grant {grant_id} in force until ")),
        "{printed}"
    );

    // The workflow records the expiry itself, and the grant leaves the feed.
    let event = poll("an `expired` event", Duration::from_secs(5), || {
        audit_events(&central, &world)
            .into_iter()
            .find(|e| e["kind"] == "expired")
    });
    assert_eq!(event["actor"], "elevate", "{event}");
    assert_eq!(event["request_id"], id.as_str());
    let e = elevation(&central, &world, &id);
    assert_eq!(e["state"], "expired", "{e}");
    assert_eq!(ts(&e["ended"]["at"]), expires_at, "{e}");
    assert!(feed_grant(&feed_doc(&central), &grant_id).is_none());
}

#[test]
fn request_wait_rides_out_a_restart_of_the_workflow_server() {
    let world = World::new();
    let mut central = world.central(&[]);
    let addr = central.addr.clone();
    let url = central.url();
    let (mut waiting, stdout) = spawn_waiting_request(&world, &url, "survive a restart");
    let id = waiting_for(&mut waiting);

    central.proc.kill();
    // Down for a moment: the waiting command keeps asking instead of giving up.
    poll(
        "the waiting command to notice the server is gone",
        Duration::from_secs(10),
        || waiting.log().contains("still waiting").then_some(()),
    );
    assert!(
        waiting.child.try_wait().unwrap().is_none(),
        "{}",
        waiting.log()
    );
    let central = world.central(&["--listen", &addr]);
    assert_eq!(elevation(&central, &world, &id)["state"], "pending");
    let out = cli(&url, world.token("carol"), &["approve", &id]);
    assert_eq!(out.code, 0, "{out:?}");
    let code = waiting.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", waiting.log());
    let printed = std::fs::read_to_string(&stdout).unwrap();
    let grant_id = id.replace("r-", "g-");
    assert!(
        printed.starts_with(&format!("grant {grant_id} in force until ")),
        "{printed}"
    );
}

#[test]
fn tokens_are_hot_reloaded_so_a_leaked_token_can_be_withdrawn() {
    let world = World::new();
    let central = world.central(&[]);
    let old = world.token("alice").to_owned();
    let whoami = |token: &str| api(&central.addr, "GET", "/v1/whoami", Some(token), None);
    assert_eq!(whoami(&old).status, 200);

    // Replace alice's token (atomically, as an operator or a secret manager would).
    let new = format!("e2e-alice-rotated-{}", unique());
    let text = std::fs::read_to_string(&world.tokens_file).unwrap();
    let mut entries: Vec<Value> = serde_json::from_str(&text).unwrap();
    for entry in &mut entries {
        if entry["principal"] == ALICE {
            entry["sha256"] = json!(hex::encode(Sha256::digest(new.as_bytes())));
        }
    }
    let temp = world.tokens_file.with_extension("json.tmp");
    std::fs::write(&temp, Value::Array(entries).to_string()).unwrap();
    std::fs::rename(&temp, &world.tokens_file).unwrap();

    poll("the old token to stop working", FEED_TIMEOUT, || {
        (whoami(&old).status == 401).then_some(())
    });
    let reply = whoami(&new);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["principal"], ALICE);
    let reply = create(&central, &world, "carol", &finops_ws1("carol still works"));
    assert_eq!(reply.status, 201, "{}", reply.text());
}

// ------------------------------------------------------------------ 4: the rules

#[test]
fn the_workflow_api_authenticates_every_caller() {
    let world = World::new();
    let central = world.central(&[]);
    let body = finops_ws1("no token").to_string();

    let reply = raw_request(&central.addr, "POST", "/v1/elevations", &[], Some(&body)).unwrap();
    assert_error(
        &reply,
        401,
        "unauthenticated",
        "no `Authorization: Bearer` token",
    );
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{:?}", reply.headers);

    let reply = api(
        &central.addr,
        "GET",
        "/v1/elevations",
        Some("e2e-nobody-0000"),
        None,
    );
    assert_error(&reply, 401, "unauthenticated", "not known");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );

    let reply = raw_request(
        &central.addr,
        "GET",
        "/v1/whoami",
        &[("Authorization", "Basic YWxpY2U6c2VjcmV0")],
        None,
    )
    .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(reply.json()["kind"], "unauthenticated");

    // The shipped demo tokens mean nothing to a server with other tokens.
    let reply = api(&central.addr, "GET", "/v1/whoami", Some("demo-alice"), None);
    assert_eq!(reply.status, 401, "{}", reply.text());

    let reply = api(
        &central.addr,
        "GET",
        "/v1/whoami",
        Some(world.token("alice")),
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["principal"], ALICE);

    // Nothing of the refused calls was recorded.
    let reply = api(
        &central.addr,
        "GET",
        "/v1/audit",
        Some(world.token("alice")),
        None,
    );
    assert_eq!(reply.json()["last_seq"], 0, "{}", reply.text());
}

#[test]
fn approvals_follow_roles_quorum_and_no_self_approval() {
    let world = World::new();
    let central = world.central(&[]);

    // Self-approval.
    let created = create(&central, &world, "alice", &finops_ws1("self"));
    assert_eq!(created.status, 201, "{}", created.text());
    let finops = created.json()["id"].as_str().unwrap().to_owned();
    let reply = command(&central, &world, "alice", &finops, "approve");
    assert_error(&reply, 403, "forbidden", "forbidden by `no-self-approval`");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains(&format!("request `{finops}`")),
        "{}",
        reply.text()
    );

    // Alice asks for OrganizationAdmin on the organization: two approvers.
    let body = json!({"role": "OrganizationAdmin", "scope": ACME, "duration": "1h",
                      "reason": "rotate org SSO"});
    let created = create(&central, &world, "alice", &body);
    assert_eq!(created.status, 201, "{}", created.text());
    let admin = created.json();
    let id = admin["id"].as_str().unwrap().to_owned();
    assert_eq!(admin["approvals_required"], 2);
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/elevations/{id}").as_str())
    );

    // Bob owns ws-1 and may decide FinOps there, but not organization roles.
    let reply = command(&central, &world, "bob", &id, "approve");
    assert_error(&reply, 403, "forbidden", "no policy permits it");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains(&format!("`User::\"bob\"` may not approve request `{id}`")),
        "{}",
        reply.text()
    );
    // (He may approve the FinOps request in his workspace, below: the refusal is
    // about the role.)

    let deny = decide(&central.addr, ALICE, CREATE_WORKSPACE, ACME);
    assert_eq!(deny["decision"], "Deny", "{deny}");

    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let half = reply.json();
    assert_eq!(half["state"], "pending", "{half}");
    assert_eq!(half["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(half["approvals"][0]["by"], CAROL);
    assert!(half["grant"].is_null());
    let feed = feed_doc(&central);
    assert!(
        feed["grants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["request_id"] != id.as_str()),
        "no grant before the quorum: {feed}"
    );
    assert_eq!(
        decide(&central.addr, ALICE, CREATE_WORKSPACE, ACME)["decision"],
        "Deny"
    );

    // The same approver twice adds nothing.
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_error(&reply, 403, "forbidden", "no-repeat-approval");
    assert_eq!(
        elevation(&central, &world, &id)["approvals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let reply = command(&central, &world, "frank", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let done = reply.json();
    assert_eq!(done["state"], "approved", "{done}");
    let grant_id = done["grant"]["id"].as_str().unwrap().to_owned();
    let entry = feed_grant(&feed_doc(&central), &grant_id).unwrap();
    assert_eq!(entry["approved_by"], json!([CAROL, FRANK]));
    assert_eq!(entry["scope"], ACME);
    // The sidecar in the same process has it as soon as the approval is answered.
    let allow = decide(&central.addr, ALICE, CREATE_WORKSPACE, ACME);
    assert_eq!(allow["decision"], "Allow", "{allow}");
    assert_eq!(grant_ids(&allow), vec![grant_id.clone()]);
    assert_eq!(ts(&allow["valid_until"]), ts(&done["grant"]["expires_at"]));

    // Approving an approved request is a conflict, not a second grant.
    let reply = command(&central, &world, "frank", &id, "approve");
    assert_error(&reply, 409, "conflict", "it is approved");

    // Bob may decide the FinOps request in ws-1, which he owns.
    let reply = command(&central, &world, "bob", &finops, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["state"], "approved");
}

#[test]
fn a_duration_over_the_roles_maximum_is_refused() {
    let world = World::new();
    let central = world.central(&[]);
    // FinOpsManager: @max_duration("PT4H").
    let over =
        json!({"role": "FinOpsManager", "scope": WS1, "duration": "4h 1m", "reason": "long"});
    let reply = create(&central, &world, "alice", &over);
    assert_error(
        &reply,
        403,
        "forbidden",
        "forbidden by `duration-over-role-maximum`",
    );
    // OrganizationAdmin: @max_duration("PT2H"), given in seconds and ISO 8601.
    let over = json!({"role": "OrganizationAdmin", "scope": ACME, "duration_seconds": 7201, "reason": "long"});
    let reply = create(&central, &world, "alice", &over);
    assert_error(&reply, 403, "forbidden", "duration-over-role-maximum");
    let over =
        json!({"role": "OrganizationAdmin", "scope": ACME, "duration": "PT3H", "reason": "long"});
    let reply = create(&central, &world, "alice", &over);
    assert_error(&reply, 403, "forbidden", "duration-over-role-maximum");
    // The CLI maps it to exit 2 and says why.
    let out = cli(
        &central.url(),
        world.token("alice"),
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            WS1,
            "--for",
            "5h",
            "--reason",
            "long",
        ],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("duration-over-role-maximum"), "{out:?}");

    // Exactly the maximum is fine.
    let max = json!({"role": "FinOpsManager", "scope": WS1, "duration": "PT4H", "reason": "max"});
    let reply = create(&central, &world, "alice", &max);
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["duration_seconds"], 14_400);

    // Malformed input is 422 / 400 with the contract's kinds.
    let bad = json!({"role": "FinOpsManager", "scope": WS1, "duration": "soon", "reason": "x"});
    assert_error(
        &create(&central, &world, "alice", &bad),
        422,
        "invalid",
        "`duration`",
    );
    let bad = json!({"role": "NoSuchRole", "scope": WS1, "duration": "1h", "reason": "x"});
    assert_error(
        &create(&central, &world, "alice", &bad),
        422,
        "invalid",
        "NoSuchRole",
    );
    let bad = json!({"role": "OrganizationUser", "scope": WS1, "duration": "1h", "reason": "x"});
    assert_error(
        &create(&central, &world, "alice", &bad),
        422,
        "invalid",
        "cannot be scoped",
    );
    let bad = json!({"role": "FinOpsManager", "scope": WS1, "duration": "1h", "reason": "x", "colour": "red"});
    let reply = create(&central, &world, "alice", &bad);
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["kind"], "bad_request");

    // Only the one good request was recorded.
    let events = audit_events(&central, &world);
    assert_eq!(events.len(), 1, "{events:?}");
}

#[test]
fn an_api_key_elevates_only_in_its_own_workspace_on_behalf_of_someone() {
    let world = World::new();
    let central = world.central(&[]);
    let outside = json!({"role": "FinOpsManager", "scope": "Workspace::\"ws-2\"", "duration": "1h",
                         "reason": "pipeline", "on_behalf_of": ALICE});
    let reply = create(&central, &world, "bb-ws1", &outside);
    assert_error(&reply, 403, "forbidden", "apikey-outside-own-workspace");

    let inside = json!({"role": "FinOpsManager", "scope": WS1, "duration": "1h",
                        "reason": "pipeline", "ticket": "run-42", "on_behalf_of": ALICE});
    let reply = create(&central, &world, "bb-ws1", &inside);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let e = reply.json();
    let id = e["id"].as_str().unwrap().to_owned();
    assert_eq!(e["principal"], BB_WS1);
    assert_eq!(e["on_behalf_of"], ALICE);
    // Alice, for whom the key acts, may not approve it; neither may the key.
    let reply = command(&central, &world, "alice", &id, "approve");
    assert_error(&reply, 403, "forbidden", "no-self-approval");
    let reply = command(&central, &world, "bb-ws1", &id, "approve");
    assert_eq!(reply.status, 403, "{}", reply.text());

    assert_eq!(decide(&central.addr, BB_WS1, PAY, WS1)["decision"], "Deny");
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let approved = reply.json();
    assert_eq!(approved["on_behalf_of"], ALICE);
    let grant_id = approved["grant"]["id"].as_str().unwrap().to_owned();
    let entry = feed_grant(&feed_doc(&central), &grant_id).unwrap();
    assert_eq!(entry["principal"], BB_WS1);
    assert_eq!(entry["requested_by"], BB_WS1);
    assert_eq!(entry["on_behalf_of"], ALICE);
    assert_eq!(entry["ticket"], "run-42");
    let allow = decide(&central.addr, BB_WS1, PAY, WS1);
    assert_eq!(allow["decision"], "Allow", "{allow}");
    assert_eq!(grant_ids(&allow), vec![grant_id]);
    // And the event log keeps who it was for.
    let events = audit_events(&central, &world);
    assert_eq!(events[0]["actor"], BB_WS1);
    assert_eq!(events[0]["data"]["on_behalf_of"], ALICE, "{}", events[0]);
}

#[test]
fn a_pending_request_lapses_after_the_request_ttl() {
    let world = World::new();
    let central = world.central(&["--request-ttl", "2s"]);
    let reply = create(&central, &world, "alice", &finops_ws1("too slow"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let e = reply.json();
    let id = e["id"].as_str().unwrap().to_owned();
    assert_eq!(e["state"], "pending");
    let decide_by = ts(&e["decide_by"]);
    assert_eq!(
        decide_by,
        ts(&e["requested_at"]) + SignedDuration::from_secs(2)
    );

    let lapsed = poll("the request to lapse", Duration::from_secs(8), || {
        let e = elevation(&central, &world, &id);
        (e["state"] == "lapsed").then_some(e)
    });
    assert!(Timestamp::now() >= decide_by, "{lapsed}");
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_error(
        &reply,
        409,
        "conflict",
        &format!("cannot approve request `{id}`: it is lapsed"),
    );

    // The ticker records the lapse, by the system actor, at the exact boundary.
    let event = poll(
        "a `lapsed` event in the audit log",
        Duration::from_secs(5),
        || {
            audit_events(&central, &world)
                .into_iter()
                .find(|e| e["kind"] == "lapsed")
        },
    );
    assert_eq!(event["actor"], "elevate", "{event}");
    assert_eq!(event["request_id"], id.as_str());
    let ended = elevation(&central, &world, &id)["ended"].clone();
    assert_eq!(ended["state"], "lapsed", "{ended}");
    assert_eq!(ended["by"], "elevate");
    assert_eq!(ts(&ended["at"]), decide_by);
    assert!(feed_doc(&central)["grants"].as_array().unwrap().is_empty());
}

#[test]
fn an_extension_follows_without_a_gap_and_relinquishing_ends_both() {
    let world = World::new();
    let central = world.central(&[]);
    let url = central.url();
    let mut body = finops_ws1("quarter close");
    body["ticket"] = json!("OPS-7");
    let reply = create(&central, &world, "alice", &body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let first = reply.json()["grant"].clone();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let first_end = ts(&first["expires_at"]);

    // Only the grantee extends.
    let out = cli(
        &url,
        world.token("carol"),
        &["extend", &id, "--for", "1h", "--reason", "more"],
    );
    assert_eq!(out.code, 2, "{out:?}");

    let out = cli(
        &url,
        world.token("alice"),
        &[
            "extend",
            &id,
            "--for",
            "1h",
            "--reason",
            "the close runs late",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let ext = out.stdout.split_whitespace().next().unwrap().to_owned();
    assert_ne!(ext, id);
    assert!(out.stdout.contains(&format!("extends {id}")), "{out:?}");
    let pending = elevation(&central, &world, &ext);
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["extends"], id.as_str());
    assert_eq!(ts(&pending["not_before"]), first_end);
    // Without a ticket of its own, the extension keeps the grant's.
    assert_eq!(pending["ticket"], "OPS-7");
    assert_eq!(
        elevation(&central, &world, &id)["extended_by"],
        json!([ext])
    );

    // A second extension while one is open is a conflict.
    let reply = api(
        &central.addr,
        "POST",
        &format!("/v1/elevations/{id}/extend"),
        Some(world.token("alice")),
        Some(&json!({"duration": "1h", "reason": "again"})),
    );
    assert_error(&reply, 409, "conflict", "already being extended");

    let out = cli(&url, world.token("carol"), &["approve", &ext]);
    assert_eq!(out.code, 0, "{out:?}");
    let extended = elevation(&central, &world, &ext);
    assert_eq!(extended["state"], "approved", "{extended}");
    let second_id = extended["grant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ts(&extended["grant"]["not_before"]),
        first_end,
        "no gap, no overlap"
    );
    assert_eq!(
        ts(&extended["grant"]["expires_at"]),
        first_end + SignedDuration::from_hours(1)
    );
    let feed = feed_doc(&central);
    assert!(feed_grant(&feed, &first_id).is_some(), "{feed}");
    let next = feed_grant(&feed, &second_id).unwrap_or_else(|| panic!("{feed}"));
    assert_eq!(ts(&next["not_before"]), first_end);
    // In force now: the first grant only.
    let allow = decide(&central.addr, ALICE, PAY, WS1);
    assert_eq!(allow["decision"], "Allow", "{allow}");
    assert_eq!(grant_ids(&allow), vec![first_id.clone()]);

    // Somebody else may not relinquish alice's grant.
    let reply = command(&central, &world, "bob", &id, "relinquish");
    assert_eq!(reply.status, 403, "{}", reply.text());

    let out = cli(
        &url,
        world.token("alice"),
        &["relinquish", &id, "--comment", "done early"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("relinquished"), "{out:?}");
    let ended = elevation(&central, &world, &id);
    assert_eq!(ended["state"], "relinquished");
    assert_eq!(ended["ended"]["by"], ALICE);
    assert_eq!(ended["ended"]["comment"], "done early");
    // Its approved extension ends with it: no grant comes back in an hour.
    assert_eq!(elevation(&central, &world, &ext)["state"], "relinquished");
    let feed = feed_doc(&central);
    assert!(feed["grants"].as_array().unwrap().is_empty(), "{feed}");
    let deny = decide(&central.addr, ALICE, PAY, WS1);
    assert_eq!(deny["decision"], "Deny", "{deny}");
    let out = audit_verify(&world.event_log());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("valid: 5 events"), "{out:?}");
}

// ------------------------------------------------------------------ 5: crash safety

/// A response the client got: the request exists at least in this state.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    reason: String,
    approved: bool,
}

/// xorshift64: kill moments that differ run to run but need no dependency.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Self(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Appends a torn final line to the event log: the start of the next event, or
/// zeros. Returns whether it did (only after a complete, newline-terminated line).
fn tear(log: &Path, zeros: bool) -> bool {
    let mut bytes = std::fs::read(log).unwrap();
    if bytes.last() != Some(&b'\n') {
        return false;
    }
    let next = bytes.iter().filter(|b| **b == b'\n').count() + 1;
    if zeros {
        bytes.extend_from_slice(&[0u8; 37]);
    } else {
        bytes.extend_from_slice(
            format!("{{\"seq\":{next},\"time\":\"2026-12-03T17:00:00Z\",\"actor\":\"User::")
                .as_bytes(),
        );
    }
    std::fs::write(log, bytes).unwrap();
    true
}

#[test]
fn acknowledged_requests_survive_sigkill_and_tampering_is_caught() {
    const ROUNDS: usize = 8;
    const CLIENTS: usize = 3;
    let world = Arc::new(World::new());
    let mut server = world.central(&[]);
    let current: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(Some(server.addr.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::new(Mutex::new(Vec::new()));
    let oddities: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    // Calls whose answer never came (the server died under them).
    let lost = Arc::new(AtomicU64::new(0));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (world, current, stop, acks, oddities, lost) = (
                Arc::clone(&world),
                Arc::clone(&current),
                Arc::clone(&stop),
                Arc::clone(&acks),
                Arc::clone(&oddities),
                Arc::clone(&lost),
            );
            thread::spawn(move || {
                let alice = world.token("alice").to_owned();
                let carol = world.token("carol").to_owned();
                let mut n = 0u32;
                let pause = || thread::sleep(Duration::from_millis(10));
                let failed = |err: &std::io::Error| {
                    if err.kind() != std::io::ErrorKind::ConnectionRefused {
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                    pause();
                };
                while !stop.load(Ordering::Relaxed) {
                    let Some(addr) = current.lock().unwrap().clone() else {
                        pause();
                        continue;
                    };
                    n += 1;
                    let reason = format!("crash client {client} request {n}");
                    let body = json!({"role": "FinOpsManager", "scope": WS1, "duration": "1h",
                                      "reason": reason});
                    let created =
                        match try_api(&addr, "POST", "/v1/elevations", Some(&alice), Some(&body)) {
                            Ok(r) if r.status == 201 => r.json(),
                            Ok(r) => {
                                if r.status != 503 {
                                    oddities.lock().unwrap().push(format!(
                                        "create: {} {}",
                                        r.status,
                                        r.text()
                                    ));
                                }
                                pause();
                                continue;
                            }
                            Err(err) => {
                                failed(&err);
                                continue;
                            }
                        };
                    let id = created["id"].as_str().unwrap().to_owned();
                    if created["reason"] != reason.as_str() || created["state"] != "pending" {
                        oddities
                            .lock()
                            .unwrap()
                            .push(format!("create answered {created}"));
                    }
                    acks.lock().unwrap().push(Ack {
                        id: id.clone(),
                        reason: reason.clone(),
                        approved: false,
                    });
                    // Every other request is approved at once.
                    if n.is_multiple_of(2) {
                        continue;
                    }
                    let path = format!("/v1/elevations/{id}/approve");
                    match try_api(&addr, "POST", &path, Some(&carol), None) {
                        Ok(r) if r.status == 200 => {
                            let e = r.json();
                            if e["state"] != "approved" || e["id"] != id.as_str() {
                                oddities
                                    .lock()
                                    .unwrap()
                                    .push(format!("approve answered {e}"));
                            }
                            acks.lock().unwrap().push(Ack {
                                id,
                                reason,
                                approved: true,
                            });
                        }
                        Ok(r) if r.status == 503 => pause(),
                        Ok(r) => oddities.lock().unwrap().push(format!(
                            "approve {id}: {} {}",
                            r.status,
                            r.text()
                        )),
                        Err(err) => failed(&err),
                    }
                }
            })
        })
        .collect();

    let mut jitter = Jitter::new();
    let acked = || acks.lock().unwrap().len();
    let mut torn_tails = 0;
    for round in 0..ROUNDS {
        // Let the clients get some answers from this incarnation, then kill it at a
        // random-ish moment (most likely mid-request: three clients keep it busy).
        let before = acked();
        poll(
            "acknowledgements from the restarted server",
            Duration::from_secs(10),
            || (acked() >= before + 2).then_some(()),
        );
        thread::sleep(Duration::from_millis(20 + jitter.below(400)));
        *current.lock().unwrap() = None;
        server.proc.kill();
        // Twice, leave what a power cut mid-append leaves (a SIGKILL cannot: the
        // kernel finishes the write): a prefix of the next line, or zeros where the
        // filesystem allocated blocks it never wrote. The restart must drop it.
        let torn = match round {
            2 => Some(tear(&world.event_log(), false)),
            5 => Some(tear(&world.event_log(), true)),
            _ => None,
        };
        if let Some(torn) = torn {
            let out = audit_verify(&world.event_log());
            assert_eq!(out.code, 3, "a torn tail does not verify: {out:?}");
            assert!(out.stderr.contains("incomplete event"), "{out:?}");
            torn_tails += usize::from(torn);
        }
        server = world.central(&[]);
        if torn == Some(true) {
            let log = server.proc.log();
            assert!(log.contains("dropped the torn final line"), "{log}");
        }
        *current.lock().unwrap() = Some(server.addr.clone());
    }
    assert_eq!(torn_tails, 2);
    let before = acked();
    poll(
        "acknowledgements after the last restart",
        Duration::from_secs(10),
        || (acked() >= before + 2).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }

    let oddities = oddities.lock().unwrap().clone();
    assert!(oddities.is_empty(), "unexpected answers: {oddities:#?}");
    let acks = acks.lock().unwrap().clone();
    let approved_acks = acks.iter().filter(|a| a.approved).count();
    eprintln!(
        "crash test: {ROUNDS} SIGKILLs, {} acknowledged requests, {approved_acks} acknowledged approvals, {} calls cut off by a kill",
        acks.iter().filter(|a| !a.approved).count(),
        lost.load(Ordering::Relaxed)
    );
    assert!(
        approved_acks > 0,
        "no approval was acknowledged: the test proved nothing"
    );

    // Every acknowledged request is there, with its own reason (no id handed out
    // twice), in at least the acknowledged state.
    let mut reasons: HashMap<String, String> = HashMap::new();
    let feed = feed_doc(&server);
    for ack in &acks {
        let known = reasons
            .entry(ack.id.clone())
            .or_insert_with(|| ack.reason.clone());
        assert_eq!(
            *known, ack.reason,
            "id {} was acknowledged for two requests",
            ack.id
        );
        let e = elevation(&server, &world, &ack.id);
        assert_eq!(e["reason"], ack.reason.as_str(), "{e}");
        let state = e["state"].as_str().unwrap();
        if ack.approved {
            assert_eq!(state, "approved", "acknowledged approval lost: {e}");
            let grant_id = e["grant"]["id"].as_str().unwrap();
            assert!(
                feed_grant(&feed, grant_id).is_some(),
                "grant {grant_id} not in the feed"
            );
        } else {
            assert!(matches!(state, "pending" | "approved"), "{e}");
        }
    }

    // The log: seqs 1..N without gaps, the API agrees, and the chain verifies.
    let text = std::fs::read_to_string(world.event_log()).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    assert!(
        n as usize >= acks.len(),
        "{n} events for {} acknowledgements",
        acks.len()
    );
    let reply = api(
        &server.addr,
        "GET",
        "/v1/audit?limit=1",
        Some(world.token("carol")),
        None,
    );
    assert_eq!(reply.json()["last_seq"], n);
    let out = audit_verify(&world.event_log());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("valid: {n} events, last seq {n}")),
        "{out:?}"
    );

    assert_no_errors(&server);

    // Flip one byte in the middle: verify names the first bad seq, and the server
    // refuses to start on the log (and leaves it as it was).
    server.proc.kill();
    let mut bytes = std::fs::read(world.event_log()).unwrap();
    let mut middle = bytes.len() / 2;
    while bytes[middle] == b'\n' {
        middle += 1;
    }
    let bad_seq = bytes[..middle].iter().filter(|b| **b == b'\n').count() as u64 + 1;
    assert!(
        bad_seq < n,
        "the flipped byte is in the middle, not the last event"
    );
    bytes[middle] ^= 0x01;
    std::fs::write(world.event_log(), &bytes).unwrap();
    let out = audit_verify(&world.event_log());
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("first bad event is seq {bad_seq} ")),
        "names seq {bad_seq}: {out:?}"
    );
    let log = world.log_path("tampered");
    let mut refused = spawn_serve(&world.workflow_args(&[]), &log);
    let code = refused.wait_exit(START_TIMEOUT);
    let stderr = refused.log();
    assert!(
        code.is_some(),
        "the server started on a tampered log:\n{stderr}"
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("broken") && stderr.contains(&format!("seq {bad_seq} ")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(world.event_log()).unwrap(),
        bytes,
        "a refused start changed the log"
    );
}

// ------------------------------------------------------------------ 6: webhooks

/// One webhook delivery as the receiver saw it.
struct Delivery {
    /// `POST /hook HTTP/1.1`.
    line: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Value,
}

/// A webhook receiver: answers every request 200 and hands over its headers and body.
fn receiver() -> (String, mpsc::Receiver<Delivery>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            let request = loop {
                let Ok(got) = stream.read(&mut buf) else {
                    break None;
                };
                if got == 0 {
                    break None;
                }
                raw.extend_from_slice(&buf[..got]);
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let len = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    break Some((head, raw[end + 4..end + 4 + len].to_vec()));
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let Some((head, body)) = request else {
                continue;
            };
            let mut lines = head.lines();
            let request_line = lines.next().unwrap_or_default().to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if tx
                .send(Delivery {
                    line: request_line,
                    headers,
                    body,
                })
                .is_err()
            {
                return;
            }
        }
    });
    (addr, rx)
}

#[test]
fn a_webhook_hears_of_each_request_and_only_the_kinds_it_asked_for() {
    let world = World::new();
    let (hook, received) = receiver();
    let spec = format!("requested=http://{hook}/hook");
    let central = world.central(&["--webhook", &spec]);

    let reply = create(&central, &world, "alice", &finops_ws1("hook me"));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let Delivery {
        line,
        headers,
        body,
    } = received
        .recv_timeout(FEED_TIMEOUT)
        .expect("no webhook call");
    assert_eq!(line, "POST /hook HTTP/1.1");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert!(
        header("content-type").is_some_and(|v| v.starts_with("application/json")),
        "{headers:?}"
    );
    assert_eq!(header("x-elevate-event"), Some("requested"), "{headers:?}");
    assert_eq!(header("x-elevate-delivery"), Some("1-0"), "{headers:?}");
    assert_eq!(body["event"]["kind"], "requested", "{body}");
    assert_eq!(body["event"]["request_id"], id.as_str());
    assert_eq!(body["event"]["actor"], ALICE);
    assert_eq!(body["elevation"]["id"], id.as_str(), "{body}");
    assert_eq!(body["elevation"]["state"], "pending");
    assert_eq!(body["elevation"]["reason"], "hook me");

    // An approval is not a `requested` event: the next delivery is the next request.
    let reply = command(&central, &world, "carol", &id, "approve");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = create(&central, &world, "alice", &finops_ws1("second"));
    let second = reply.json()["id"].as_str().unwrap().to_owned();
    let Delivery { body, .. } = received
        .recv_timeout(FEED_TIMEOUT)
        .expect("no second webhook call");
    assert_eq!(body["event"]["kind"], "requested", "{body}");
    assert_eq!(body["elevation"]["id"], second.as_str(), "{body}");
    assert_eq!(body["event"]["seq"], 3, "{body}");
}
