//! Shared harness for the integration tests: a real `elevate` server in process, on
//! `127.0.0.1:0`, over inputs copied into a `TempDir`, plus helpers to write inputs
//! (atomically or in place), build grant feeds relative to now, and poll `/v1/status`.
//!
//! Every wait here polls with a deadline; nothing sleeps a fixed time and hopes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use elevate::cli::serve::Running;
use elevate::config::{Config, DecisionLog, HttpConfig, ReloadConfig, Sources, Validation};
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// The largest request body the test servers accept.
pub const MAX_BODY: usize = 64 * 1024;
/// How long any reload or file wait may take before the test fails. Generous: the
/// suite must pass on a loaded 2-core machine.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The repository root (where `policies/`, `schema/` and `deploy/` live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture directory under `tests/fixtures/`.
pub fn fixture(scenario: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(scenario)
}

/// Where a test server's inputs live inside its temp dir.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    /// `root/policies/`, a copy of the shipped `policies/`.
    pub policies: PathBuf,
    /// `root/schema/elevate.cedarschema`.
    pub schema: PathBuf,
    /// `root/data/entities.json`, a copy of `deploy/local/entities.json`.
    pub entities: PathBuf,
    /// `root/feed/grants.json`: an empty feed (revision "0") unless the setup writes one.
    pub grants: PathBuf,
    /// `root/log/decisions.jsonl`, in a directory nobody watches.
    pub decision_log: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            policies: root.join("policies"),
            schema: root.join("schema").join("elevate.cedarschema"),
            entities: root.join("data").join("entities.json"),
            grants: root.join("feed").join("grants.json"),
            decision_log: root.join("log").join("decisions.jsonl"),
        }
    }

    /// Copies the shipped policies, schema and entities, and writes an empty feed.
    fn populate(&self) {
        let root = repo_root();
        copy_dir(&root.join("policies"), &self.policies);
        for path in [
            &self.schema,
            &self.entities,
            &self.grants,
            &self.decision_log,
        ] {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        }
        std::fs::copy(root.join("schema/elevate.cedarschema"), &self.schema).unwrap();
        std::fs::copy(root.join("deploy/local/entities.json"), &self.entities).unwrap();
        write_json(&self.grants, &feed("0", vec![]));
    }

    pub fn policy(&self, name: &str) -> PathBuf {
        self.policies.join(name)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A running server over its own temp dir. Dropping it cancels the server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    dir: Option<TempDir>,
    pub layout: Layout,
    pub client: reqwest::Client,
    running: Option<Running>,
}

impl TestServer {
    /// Copies the shipped inputs into a temp dir, lets `dir_setup` change them, starts
    /// the server on `127.0.0.1:0` and waits until `/readyz` answers 200.
    pub async fn start(dir_setup: impl FnOnce(&Layout)) -> Self {
        Self::start_with(dir_setup, |_| {}).await
    }

    /// As [`TestServer::start`], with `tweak` applied to the `Config` before starting.
    pub async fn start_with(
        dir_setup: impl FnOnce(&Layout),
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-it-")
            .tempdir()
            .unwrap();
        let layout = Layout::new(dir.path());
        layout.populate();
        dir_setup(&layout);

        let mut config = Config {
            sources: Sources {
                policies: layout.policies.clone(),
                schema: Some(layout.schema.clone()),
                entities: Some(layout.entities.clone()),
                grants: Some(layout.grants.clone()),
                validation: Validation::Strict,
            },
            reload: ReloadConfig {
                debounce: Duration::from_millis(50),
                rescan: Duration::from_millis(500),
                ..ReloadConfig::default()
            },
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                max_body: MAX_BODY,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 256,
                ..HttpConfig::default()
            },
            decision_log: DecisionLog::File(layout.decision_log.clone()),
            decision_queue: 4096,
            shutdown_grace: Duration::from_secs(2),
            workflow: None,
        };
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = elevate::cli::serve::start(
            config,
            listener,
            elevate::http::system_clock(),
            prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
        let addr = running.addr;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let server = Self {
            addr,
            base: format!("http://{addr}"),
            dir: Some(dir),
            layout,
            client,
            running: Some(running),
        };
        server.wait_ready().await;
        server
    }

    /// The shipped inputs with `grants` (built with [`grant`]) as the feed.
    pub async fn with_grants(grants: Vec<Value>) -> Self {
        Self::start(move |l| write_json(&l.grants, &feed("1", grants))).await
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz did not answer 200 within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The temp dir holding this server's inputs and decision log.
    pub fn temp_dir(&self) -> &TempDir {
        self.dir.as_ref().unwrap()
    }

    /// The running server's handle (its address, store and cancel token).
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Cancels the server and waits until it has drained and synced the decision log;
    /// returns the temp dir, so its files can still be read.
    pub async fn stop(mut self) -> TempDir {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
        self.dir.take().unwrap()
    }

    /// POSTs `value` as JSON; returns the status and the JSON answer.
    pub async fn post_json(&self, path: &str, value: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(value)
            .send()
            .await
            .unwrap();
        read_json(response).await
    }

    /// POSTs raw bytes with a JSON content type.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        read_json(response).await
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        read_json(response).await
    }

    /// One decision that must be answered 200; returns the answer.
    pub async fn decide(&self, principal: &str, action: &str, resource: &str) -> Value {
        self.decide_body(&body(principal, action, resource)).await
    }

    pub async fn decide_body(&self, body: &Value) -> Value {
        let (status, answer) = self.post_json("/v1/is_authorized", body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "decision on {body} failed: {answer}"
        );
        answer
    }

    pub async fn status(&self) -> Value {
        let (status, doc) = self.get_json("/v1/status").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        doc
    }

    pub async fn generation(&self) -> u64 {
        self.status().await["generation"].as_u64().unwrap()
    }

    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// Polls `/v1/status` until `generation >= n`; returns that status document.
    pub async fn wait_for_generation(&self, n: u64, timeout: Duration) -> Value {
        self.wait_for_status(&format!("generation >= {n}"), timeout, |s| {
            s["generation"].as_u64().is_some_and(|g| g >= n)
        })
        .await
    }

    /// Polls `/v1/status` until `pred` holds; panics with the last document on timeout.
    pub async fn wait_for_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let doc = self.status().await;
            if pred(&doc) {
                return doc;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last /v1/status: {doc:#}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls the decision log until a line satisfies `pred`; returns it.
    pub async fn wait_for_log_record(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.layout.decision_log).unwrap_or_default();
            // Only complete lines: the writer may be between a record and its newline.
            let complete = text.rfind('\n').map_or("", |end| &text[..end]);
            if let Some(found) = complete
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|record| pred(record))
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no matching decision record within {timeout:?}; log so far:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.cancel.cancel();
        }
    }
}

async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
    (status, value)
}

// ------------------------------------------------------------------ requests

/// A decision request body with string UIDs.
pub fn body(principal: &str, action: &str, resource: &str) -> Value {
    json!({ "principal": principal, "action": action, "resource": resource })
}

pub fn user(id: &str) -> String {
    format!("User::\"{id}\"")
}

pub fn api_key(id: &str) -> String {
    format!("ApiKey::\"{id}\"")
}

pub fn action(id: &str) -> String {
    format!("Action::\"{id}\"")
}

/// `Type::"id"`.
pub fn uid(ty: &str, id: &str) -> String {
    format!("{ty}::\"{id}\"")
}

/// The answer's `diagnostics.reason` as strings.
pub fn reasons(answer: &Value) -> Vec<String> {
    strings(&answer["diagnostics"]["reason"])
}

/// The answer's `grants` as strings.
pub fn grants(answer: &Value) -> Vec<String> {
    strings(&answer["grants"])
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Asserts decision, reasons and grants of one answer; returns it for further checks.
#[track_caller]
pub fn assert_answer<'a>(
    answer: &'a Value,
    decision: &str,
    reason: &[&str],
    grant_ids: &[&str],
) -> &'a Value {
    assert_eq!(answer["decision"], decision, "decision: {answer:#}");
    assert_eq!(reasons(answer), reason, "reasons: {answer:#}");
    assert_eq!(grants(answer), grant_ids, "grants: {answer:#}");
    assert_eq!(
        answer["diagnostics"]["errors"],
        json!([]),
        "errors: {answer:#}"
    );
    answer
}

/// `valid_until` of an answer, parsed.
pub fn valid_until(answer: &Value) -> Option<Timestamp> {
    answer
        .get("valid_until")
        .map(|v| v.as_str().unwrap().parse().unwrap())
}

// -------------------------------------------------------------- grant feeds

/// Now plus `offset`, truncated to the millisecond so it prints compactly.
pub fn from_now(offset: SignedDuration) -> Timestamp {
    let t = Timestamp::now() + offset;
    Timestamp::from_millisecond(t.as_millisecond()).unwrap()
}

pub fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

pub fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

/// A grant document with explicit instants.
pub fn grant_between(
    id: &str,
    principal: &str,
    role: &str,
    scope: &str,
    not_before: Timestamp,
    expires_at: Timestamp,
) -> Value {
    json!({
        "id": id,
        "principal": principal,
        "role": role,
        "scope": scope,
        "not_before": not_before.to_string(),
        "expires_at": expires_at.to_string(),
        "approved_by": ["User::\"carol\""],
        "requested_by": principal,
        "reason": "integration test",
        "ticket": format!("T-{id}"),
    })
}

/// A grant whose window is given relative to now: `[now + from, now + until)`.
pub fn grant(
    id: &str,
    principal: &str,
    role: &str,
    scope: &str,
    from: SignedDuration,
    until: SignedDuration,
) -> Value {
    grant_between(id, principal, role, scope, from_now(from), from_now(until))
}

/// A grant in force from a minute ago for an hour.
pub fn grant_now(id: &str, principal: &str, role: &str, scope: &str) -> Value {
    grant(id, principal, role, scope, minutes(-1), minutes(59))
}

/// `expires_at` of a grant document, parsed.
pub fn expires_at(grant: &Value) -> Timestamp {
    grant["expires_at"].as_str().unwrap().parse().unwrap()
}

/// A feed document.
pub fn feed(revision: &str, grants: Vec<Value>) -> Value {
    json!({
        "revision": revision,
        "generated_at": Timestamp::now().to_string(),
        "grants": grants,
    })
}

/// Writes a feed with grants relative to now (see [`grant`]) atomically to `path`.
pub fn write_feed(path: &Path, revision: &str, grants: Vec<Value>) {
    write_json(path, &feed(revision, grants));
}

// ------------------------------------------------------------------ files

/// Writes `text` to `path` atomically: a temp file (a dot file, which the policy
/// loader ignores) in the same directory, synced, then renamed over `path`.
pub fn write_atomic(path: &Path, text: &str) {
    use std::io::Write;
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let name = path.file_name().unwrap().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::rename(&tmp, path).unwrap();
}

/// Overwrites `path` in place (truncate and write), as an editor without atomic save does.
pub fn write_in_place(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

pub fn write_json(path: &Path, value: &Value) {
    write_atomic(path, &serde_json::to_string_pretty(value).unwrap());
}

/// The entities document of a test server, parsed.
pub fn read_json_file(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------- metrics

/// The value of one series (name with labels exactly as exposed) in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[track_caller]
pub fn metric_value(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no series `{series}` in:\n{text}"))
}

// ---------------------------------------------------------------- workflow

/// A clock the test steps by hand: every reading is the instant last set, so a test
/// can stand exactly one second before a boundary, then exactly on it.
#[derive(Debug, Clone)]
pub struct SteppedClock(std::sync::Arc<std::sync::Mutex<Timestamp>>);

impl SteppedClock {
    pub fn at(start: Timestamp) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(start)))
    }

    pub fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }

    pub fn set(&self, instant: Timestamp) {
        *self.0.lock().unwrap() = instant;
    }

    /// Moves the clock on by `by`; returns the new instant.
    pub fn advance(&self, by: SignedDuration) -> Timestamp {
        let mut now = self.0.lock().unwrap();
        *now += by;
        *now
    }

    /// The clock as the server takes it.
    pub fn as_clock(&self) -> elevate::http::Clock {
        let shared = std::sync::Arc::clone(&self.0);
        std::sync::Arc::new(move || *shared.lock().unwrap())
    }
}

/// A tokens file (`[{"sha256", "principal"}]`) for `(token, principal)` pairs.
pub fn tokens_document(tokens: &[(&str, &str)]) -> Value {
    Value::Array(
        tokens
            .iter()
            .map(|(token, principal)| {
                json!({
                    "sha256": elevate::tokens::digest_hex(token),
                    "principal": principal,
                    "note": "integration test",
                })
            })
            .collect(),
    )
}

/// Replaces the tokens file at `path` atomically (as an editor or a ConfigMap would).
pub fn write_tokens(path: &Path, tokens: &[(&str, &str)]) {
    write_json(path, &tokens_document(tokens));
}

impl Layout {
    /// `root/workflow/`: the workflow's data directory (event log, feed file).
    pub fn workflow_dir(&self) -> PathBuf {
        self.root.join("workflow")
    }

    /// `root/auth/tokens.json`, alone in its directory so its watcher sees no other file.
    pub fn tokens_file(&self) -> PathBuf {
        self.root.join("auth").join("tokens.json")
    }

    /// `root/workflow/grants.json`: the feed file the workflow writes.
    pub fn feed_file(&self) -> PathBuf {
        self.workflow_dir()
            .join(elevate::workflow::service::FEED_FILE)
    }
}

impl TestServer {
    /// The shipped policies, schema and entities served with the workflow embedded
    /// (`serve --workflow`): the same `Config` as [`TestServer::start_with`] but with no
    /// grants file, the workflow's data in [`Layout::workflow_dir`], the bearer
    /// `tokens` (`(token, principal)` pairs) in [`Layout::tokens_file`], pending
    /// requests lapsing after `request_ttl`, and every clock reading from `clock`.
    pub async fn start_workflow(
        clock: &SteppedClock,
        request_ttl: SignedDuration,
        tokens: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-wf-")
            .tempdir()
            .unwrap();
        let layout = Layout::new(dir.path());
        layout.populate();
        write_tokens(&layout.tokens_file(), tokens);

        let config = Config {
            sources: Sources {
                policies: layout.policies.clone(),
                schema: Some(layout.schema.clone()),
                entities: Some(layout.entities.clone()),
                grants: None,
                validation: Validation::Strict,
            },
            reload: ReloadConfig {
                debounce: Duration::from_millis(50),
                rescan: Duration::from_millis(500),
                ..ReloadConfig::default()
            },
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                max_body: MAX_BODY,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 256,
                ..HttpConfig::default()
            },
            decision_log: DecisionLog::File(layout.decision_log.clone()),
            decision_queue: 4096,
            shutdown_grace: Duration::from_secs(2),
            workflow: Some(elevate::config::WorkflowSettings {
                data_dir: layout.workflow_dir(),
                tokens: layout.tokens_file(),
                feed_file: Some(layout.feed_file()),
                request_ttl,
                webhooks: Vec::new(),
            }),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = elevate::cli::serve::start(
            config,
            listener,
            clock.as_clock(),
            prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .unwrap_or_else(|e| panic!("workflow server did not start: {e}"));
        let addr = running.addr;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let server = Self {
            addr,
            base: format!("http://{addr}"),
            dir: Some(dir),
            layout,
            client,
            running: Some(running),
        };
        server.wait_ready().await;
        server
    }
}
