//! Explanations and replay end to end: `elevate authorize --explain` and `elevate
//! replay` as real subprocesses, `?explain=true` and the decision log's new fields on
//! a real server, and a decision log written by a real `elevate serve` replayed
//! against the same policies (nothing changes) and against a candidate without one
//! permit (exactly the decisions it decided flip, grouped by action and policy).
//!
//! Fixtures in `tests/fixtures/explain_replay/`: `policies/` (a subset of the shipped
//! policies, same ids), `candidate/` (the same without `workspace-member-read`),
//! `grants.json` (alice's FinOps grant `g-7` on ws-1, 2026-12-03 17:00 to 19:00) and
//! `crafted.jsonl` (hand-written records: a suspended feed, an omitted field).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_elevate");
const START_TIMEOUT: Duration = Duration::from_secs(20);

const ALICE: &str = r#"User::"alice""#;
const PAY: &str = r#"Action::"createPaymentMethod""#;
const PM1: &str = r#"PaymentMethod::"pm-1""#;

fn scenario(path: &str) -> PathBuf {
    fixture("explain_replay").join(path)
}

fn schema() -> PathBuf {
    repo_root().join("schema/elevate.cedarschema")
}

fn entities() -> PathBuf {
    repo_root().join("deploy/local/entities.json")
}

/// `elevate ARGS` in `dir`, with no `ELEVATE_*` setting from the environment.
fn elevate(dir: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut command = Command::new(BIN);
    command.current_dir(dir).env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ELEVATE_") {
            command.env_remove(key);
        }
    }
    for arg in args {
        command.arg(arg);
    }
    command.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ authorize --explain

/// `authorize --explain` on the fixture policies and `g-7`; the exit code and answer.
fn authorize(principal: &str, action: &str, resource: &str, at: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let policies = scenario("policies");
    let grants = scenario("grants.json");
    let out = elevate(
        dir.path(),
        &[
            &"authorize",
            &"--policies",
            &policies,
            &"--schema",
            &schema(),
            &"--entities",
            &entities(),
            &"--grants",
            &grants,
            &"--principal",
            &principal,
            &"--action",
            &action,
            &"--resource",
            &resource,
            &"--at",
            &at,
            &"--explain",
        ],
    );
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    (out.status.code().unwrap(), answer)
}

fn summary(answer: &Value) -> &str {
    answer["explanation"]["summary"]
        .as_str()
        .unwrap_or_else(|| panic!("no summary: {answer:#}"))
}

#[test]
fn authorize_explain_says_no_policy_permits() {
    let (code, answer) = authorize(r#"User::"bob""#, PAY, PM1, "2026-12-03T18:00:00Z");
    assert_eq!(code, 2);
    assert_eq!(summary(&answer), "no policy permits");
    assert_eq!(answer["explanation"]["near_misses"], json!([]));
}

#[test]
fn authorize_explain_names_the_forbid_that_won() {
    let (code, answer) = authorize(
        r#"ApiKey::"bb-ws1""#,
        r#"Action::"readProject""#,
        r#"Project::"warehouse""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(code, 2);
    assert_eq!(
        summary(&answer),
        "forbidden by `apikey-outside-own-workspace`"
    );
    assert_eq!(
        answer["explanation"]["deciding_forbids"],
        json!(["apikey-outside-own-workspace"])
    );

    let (_, erin) = authorize(
        r#"User::"erin""#,
        r#"Action::"readProject""#,
        r#"Project::"checkout""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(
        summary(&erin),
        "forbidden by `suspended-principal`, which wins over `workspace-member-read`"
    );
    assert_eq!(
        erin["explanation"]["satisfied_permits"],
        json!(["workspace-member-read"])
    );
}

#[test]
fn authorize_explain_names_the_grant_that_expired_at_its_expiry() {
    let (code, answer) = authorize(ALICE, PAY, PM1, "2026-12-03T19:00:00Z");
    assert_eq!(code, 2);
    assert_eq!(
        summary(&answer),
        "would be allowed by grant `g-7`, which expired at 2026-12-03T19:00:00Z"
    );
    let miss = &answer["explanation"]["near_misses"][0];
    assert_eq!(miss["grant"], "g-7");
    assert_eq!(miss["status"], "expired");
    assert_eq!(miss["would_allow"], true);
    assert_eq!(miss["not_before"], "2026-12-03T17:00:00Z");
    assert_eq!(miss["expires_at"], "2026-12-03T19:00:00Z");
}

#[test]
fn authorize_explain_names_the_grant_that_starts_later() {
    let (code, answer) = authorize(ALICE, PAY, PM1, "2026-12-03T16:59:59Z");
    assert_eq!(code, 2);
    assert_eq!(
        summary(&answer),
        "would be allowed by grant `g-7`, which starts at 2026-12-03T17:00:00Z"
    );
    assert_eq!(
        answer["explanation"]["near_misses"][0]["status"],
        "not_started"
    );
}

#[test]
fn authorize_explain_on_an_allow_names_the_grant_and_its_end() {
    let (code, answer) = authorize(ALICE, PAY, PM1, "2026-12-03T18:00:00Z");
    assert_eq!(code, 0);
    assert_eq!(
        summary(&answer),
        "allowed by grant `g-7` until 2026-12-03T19:00:00Z"
    );
    assert_eq!(answer["explanation"]["satisfied_grants"], json!(["g-7"]));
}

#[test]
fn authorize_without_explain_has_no_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let out = elevate(
        dir.path(),
        &[
            &"authorize",
            &"--policies",
            &scenario("policies"),
            &"--schema",
            &schema(),
            &"--entities",
            &entities(),
            &"--grants",
            &scenario("grants.json"),
            &"--principal",
            &ALICE,
            &"--action",
            &PAY,
            &"--resource",
            &PM1,
            &"--at",
            &"2026-12-03T19:00:00Z",
        ],
    );
    assert_exit(&out, 2);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer.get("explanation").is_none(), "{answer:#}");
}

// --------------------------------------------------------------- ?explain=true

/// POSTs `body` to `path` and returns the status and the raw answer bytes.
async fn post_bytes(server: &TestServer, path: &str, body: &Value) -> (StatusCode, Vec<u8>) {
    let response = server
        .client
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

/// The answer exactly as the decision API wrote it before explanations existed.
fn plain_answer(reason: &str, decision_id: &str) -> String {
    format!(
        r#"{{"decision":"Allow","diagnostics":{{"reason":["{reason}"],"errors":[]}},"grants":[],"decision_id":"{decision_id}"}}"#
    )
}

fn decision_id(bytes: &[u8]) -> String {
    let value: Value = serde_json::from_slice(bytes).unwrap();
    value["decision_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn explain_true_adds_the_field_and_without_it_the_answer_is_byte_identical() {
    let server = TestServer::start(|_| {}).await;
    let ask = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "checkout"),
    );

    for path in ["/v1/is_authorized", "/v1/is_authorized?explain=false"] {
        let (status, bytes) = post_bytes(&server, path, &ask).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let id = decision_id(&bytes);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            plain_answer("workspace-member-read", &id),
            "{path}"
        );
    }

    let (status, bytes) = post_bytes(&server, "/v1/is_authorized?explain=true", &ask).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(bytes.clone()).unwrap();
    let plain = plain_answer("workspace-member-read", &decision_id(&bytes));
    // The same answer, then the explanation as its last field.
    let head = plain.strip_suffix('}').unwrap();
    assert!(
        text.starts_with(&format!("{head},\"explanation\":{{")),
        "{text}"
    );
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        value["explanation"]["summary"],
        "allowed by `workspace-member-read`"
    );
    assert_eq!(
        value["explanation"]["satisfied_permits"],
        json!(["workspace-member-read"])
    );
}

#[tokio::test]
async fn batch_explain_true_explains_every_item_and_without_it_none() {
    let server = TestServer::with_grants(vec![grant(
        "g-old",
        &user("alice"),
        "FinOpsManager",
        &uid("Workspace", "ws-1"),
        hours(-2),
        hours(-1),
    )])
    .await;
    let batch = json!({"requests": [
        body(&user("alice"), &action("readProject"), &uid("Project", "checkout")),
        body(&user("alice"), &action("createPaymentMethod"), &uid("PaymentMethod", "pm-1")),
    ]});
    let (status, plain) = server.post_json("/v1/batch_is_authorized", &batch).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    for item in plain["results"].as_array().unwrap() {
        assert!(item.get("explanation").is_none(), "{item}");
    }

    let (status, explained) = server
        .post_json("/v1/batch_is_authorized?explain=true", &batch)
        .await;
    assert_eq!(status, StatusCode::OK, "{explained}");
    let results = explained["results"].as_array().unwrap();
    assert_eq!(results[0]["decision"], "Allow");
    assert_eq!(
        results[0]["explanation"]["summary"],
        "allowed by `workspace-member-read`"
    );
    assert_eq!(results[1]["decision"], "Deny");
    let summary = results[1]["explanation"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("would be allowed by grant `g-old`, which expired at "),
        "{summary}"
    );
}

#[tokio::test]
async fn unknown_query_parameters_and_bad_flag_values_are_refused_with_a_sentence() {
    let server = TestServer::start(|_| {}).await;
    let ask = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "checkout"),
    );
    for (path, says) in [
        (
            "/v1/is_authorized?verbose=1",
            "unknown query parameter `verbose` on `/v1/is_authorized`",
        ),
        (
            "/v1/is_authorized?explain=yes",
            "query parameter `explain` must be `true` or `false`, not `yes`",
        ),
        (
            "/v1/batch_is_authorized?explain=true&x=y",
            "unknown query parameter `x` on `/v1/batch_is_authorized`",
        ),
    ] {
        let (status, answer) = server.post_json(path, &ask).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(says), "{path}: {error}");
    }
    // The same client (and connection pool) still gets answers afterwards.
    assert_answer(
        &server
            .decide(
                &user("alice"),
                &action("readProject"),
                &uid("Project", "checkout"),
            )
            .await,
        "Allow",
        &["workspace-member-read"],
        &[],
    );
}

// ------------------------------------------------------------ decision log fields

#[tokio::test]
async fn the_decision_log_names_near_misses_and_keeps_context_and_entities() {
    let ws1 = uid("Workspace", "ws-1");
    let expired = grant(
        "g-ended",
        &user("alice"),
        "FinOpsManager",
        &ws1,
        hours(-2),
        hours(-1),
    );
    let ended_at = expires_at(&expired);
    let later = grant(
        "g-later",
        &user("dave"),
        "FinOpsManager",
        &uid("Workspace", "ws-2"),
        hours(1),
        hours(2),
    );
    let starts_at: jiff::Timestamp = later["not_before"].as_str().unwrap().parse().unwrap();
    let server = TestServer::with_grants(vec![expired, later]).await;

    let mut ask = body(
        &user("alice"),
        &action("createPaymentMethod"),
        &uid("PaymentMethod", "pm-1"),
    );
    ask["context"] = json!({"mfa": true});
    let answer = server.decide_body(&ask).await;
    assert_eq!(answer["decision"], "Deny");
    let id = answer["decision_id"].as_str().unwrap().to_owned();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert_eq!(
        record["near_misses"],
        json!([{"id": "g-ended", "why": "expired", "at": ended_at.to_string()}])
    );
    assert_eq!(record["context"], json!({"mfa": true}));
    assert!(record.get("entities").is_none() && record.get("omitted").is_none());

    let dave = server
        .decide(
            &user("dave"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-2"),
        )
        .await;
    let id = dave["decision_id"].as_str().unwrap().to_owned();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert_eq!(
        record["near_misses"],
        json!([{"id": "g-later", "why": "not_started", "at": starts_at.to_string()}])
    );

    // An Allow, and a Deny without grants, carry no near misses.
    let allow = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    let bob = server
        .decide(
            &user("bob"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    for answer in [&allow, &bob] {
        let id = answer["decision_id"].as_str().unwrap().to_owned();
        let record = server
            .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
            .await;
        assert!(record.get("near_misses").is_none(), "{record}");
        assert!(record.get("context").is_none(), "{record}");
    }

    // Body entities are kept while small, and left out (with their size) when big.
    let mut small = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "new-proj"),
    );
    small["entities"] = json!([{"uid": {"type": "Project", "id": "new-proj"}, "attrs": {},
                                "parents": [{"type": "Workspace", "id": "ws-1"}]}]);
    let answer = server.decide_body(&small).await;
    assert_eq!(answer["decision"], "Allow", "{answer}");
    let id = answer["decision_id"].as_str().unwrap().to_owned();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert_eq!(record["entities"], small["entities"]);

    let many: Vec<Value> = (0..300)
        .map(|i| {
            json!({"uid": {"type": "Project", "id": format!("bulk-project-number-{i:05}")},
                   "attrs": {}, "parents": [{"type": "Workspace", "id": "ws-1"}]})
        })
        .collect();
    let size = serde_json::to_vec(&Value::Array(many.clone()))
        .unwrap()
        .len();
    assert!(size > 16 * 1024 && size < MAX_BODY, "{size}");
    let mut big = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "bulk-project-number-00007"),
    );
    big["entities"] = Value::Array(many);
    let answer = server.decide_body(&big).await;
    assert_eq!(answer["decision"], "Allow", "{answer}");
    let id = answer["decision_id"].as_str().unwrap().to_owned();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert!(record.get("entities").is_none(), "{record}");
    assert_eq!(
        record["omitted"],
        json!([{"field": "entities", "bytes": size}])
    );
}

// ------------------------------------------------------------------------ replay

/// A child process, killed and reaped when dropped.
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit: the server drains and syncs its decision log.
    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + START_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "server did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `elevate serve` on the fixture policies with the grant feed `feed` (`--grants
/// FILE` or `--grants-url URL ...`) and a decision log at `log`; returns the process
/// and the address it bound, without waiting for readiness (a remote feed may not
/// make it ready).
fn serve(dir: &Path, feed: &[&dyn AsRef<std::ffi::OsStr>], log: &Path) -> (Proc, String) {
    let stderr = dir.join("serve.log");
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ELEVATE_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--policies")
        .arg(scenario("policies"))
        .arg("--schema")
        .arg(schema())
        .arg("--entities")
        .arg(entities())
        .args(feed)
        .arg("--decision-log")
        .arg(log)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut proc = Proc {
        child: command.spawn().unwrap(),
        stderr,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = loop {
        let text = proc.log();
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains("elevate serving"))
            .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("listen=")))
        {
            break addr.to_owned();
        }
        if let Some(status) = proc.child.try_wait().unwrap() {
            panic!("server exited with {status}:\n{text}");
        }
        assert!(Instant::now() < deadline, "server did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    (proc, addr)
}

/// One decision request to a real server; the answer.
async fn ask(client: &reqwest::Client, addr: &str, request: &Value) -> Value {
    let response = client
        .post(format!("http://{addr}/v1/is_authorized"))
        .json(request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn replay(dir: &Path, log: &Path, policies: &Path, grants: &Path, format: &str) -> Output {
    elevate(
        dir,
        &[
            &"replay",
            &"--decision-log",
            &log,
            &"--policies",
            &policies,
            &"--schema",
            &schema(),
            &"--entities",
            &entities(),
            &"--grants",
            &grants,
            &"--format",
            &format,
        ],
    )
}

#[tokio::test]
async fn a_real_decision_log_replays_unchanged_and_a_removed_permit_flips_exactly_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let grants = dir.path().join("grants.json");
    write_feed(
        &grants,
        "replay-1",
        vec![grant_now(
            "g-now",
            &user("alice"),
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
        )],
    );
    let log = dir.path().join("decisions.jsonl");
    let (mut server, addr) = serve(dir.path(), &[&"--grants", &grants], &log);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let new_project = json!([{"uid": {"type": "Project", "id": "new-proj"}, "attrs": {},
                              "parents": [{"type": "Workspace", "id": "ws-1"}]}]);
    // (request, decision now, flips without `workspace-member-read`)
    let requests = [
        (
            body(ALICE, &action("readProject"), &uid("Project", "checkout")),
            "Allow",
            true,
        ),
        (
            body(ALICE, &action("readProject"), &uid("Project", "ledger")),
            "Allow",
            true,
        ),
        (
            json!({"principal": ALICE, "action": action("readTenant"),
                   "resource": uid("Tenant", "checkout-aws-prod"), "context": {"mfa": true}}),
            "Allow",
            true,
        ),
        (
            json!({"principal": ALICE, "action": action("readProject"),
                   "resource": uid("Project", "new-proj"), "entities": new_project}),
            "Allow",
            true,
        ),
        (
            body(
                &user("bob"),
                &action("readProject"),
                &uid("Project", "checkout"),
            ),
            "Allow",
            false,
        ),
        (body(ALICE, PAY, PM1), "Allow", false),
        (body(&user("bob"), PAY, PM1), "Deny", false),
        (
            body(
                &api_key("bb-ws1"),
                &action("readProject"),
                &uid("Project", "warehouse"),
            ),
            "Deny",
            false,
        ),
        (
            body(
                &user("erin"),
                &action("readProject"),
                &uid("Project", "checkout"),
            ),
            "Deny",
            false,
        ),
        (
            body(
                &user("dave"),
                &action("readProject"),
                &uid("Project", "checkout"),
            ),
            "Deny",
            false,
        ),
    ];
    let mut flipping = Vec::new();
    for (request, decision, flips) in &requests {
        let answer = ask(&client, &addr, request).await;
        assert_eq!(answer["decision"], *decision, "{request}: {answer}");
        if *flips {
            flipping.push(answer["decision_id"].as_str().unwrap().to_owned());
        }
    }
    server.terminate();
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), requests.len(), "{lines}");

    // The same inputs give the same decisions, with the same deciding policies.
    let same = replay(dir.path(), &log, &scenario("policies"), &grants, "json");
    assert_exit(&same, 0);
    let report: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(report["replayed"], requests.len());
    assert_eq!(report["changed"], 0);
    assert_eq!(report["reasons_changed"], 0);
    assert_eq!(report["skipped"], 0);
    let text = replay(dir.path(), &log, &scenario("policies"), &grants, "text");
    assert_exit(&text, 0);
    assert_eq!(
        stdout(&text),
        format!("{} decisions replayed, 0 would change\n", requests.len())
    );

    // Without `workspace-member-read`, exactly the decisions it decided flip.
    let changed = replay(dir.path(), &log, &scenario("candidate"), &grants, "json");
    assert_exit(&changed, 2);
    let report: Value = serde_json::from_slice(&changed.stdout).unwrap();
    assert_eq!(report["changed"], flipping.len(), "{report:#}");
    let groups: Vec<(String, Vec<String>, Vec<String>)> = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["action"].as_str().unwrap().to_owned(),
                strings(&g["policies"]),
                g["decisions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        assert_eq!(d["old"]["decision"], "Allow", "{d}");
                        assert_eq!(d["old"]["reasons"], json!(["workspace-member-read"]), "{d}");
                        assert_eq!(d["new"]["decision"], "Deny", "{d}");
                        assert_eq!(d["principal"], ALICE, "{d}");
                        d["decision_id"].as_str().unwrap().to_owned()
                    })
                    .collect(),
            )
        })
        .collect();
    let member_read = vec!["workspace-member-read".to_owned()];
    assert_eq!(
        groups,
        [
            (
                action("readProject"),
                member_read.clone(),
                vec![
                    flipping[0].clone(),
                    flipping[1].clone(),
                    flipping[3].clone()
                ]
            ),
            (action("readTenant"), member_read, vec![flipping[2].clone()]),
        ]
    );

    let text = replay(dir.path(), &log, &scenario("candidate"), &grants, "text");
    assert_exit(&text, 2);
    let text = stdout(&text);
    assert!(
        text.starts_with(&format!(
            "{} decisions replayed, 4 would change\n\nAction::\"readProject\", `workspace-member-read`: 3 changed\n",
            requests.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("  Allow → Deny  User::\"alice\" on Project::\"checkout\"  at "),
        "{text}"
    );
    assert!(
        text.contains("\nAction::\"readTenant\", `workspace-member-read`: 1 changed\n"),
        "{text}"
    );
}

#[test]
fn replay_honours_a_suspended_feed_and_skips_records_it_cannot_decide_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = scenario("crafted.jsonl");
    let grants = scenario("grants.json");
    let same = replay(dir.path(), &log, &scenario("policies"), &grants, "json");
    assert_exit(&same, 0);
    let report: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(report["replayed"], 4, "{report:#}");
    assert_eq!(report["changed"], 0, "{report:#}");
    assert_eq!(report["skipped"], 1);
    assert_eq!(report["skipped_records"][0]["decision_id"], "t-4");
    assert_eq!(
        report["skipped_records"][0]["reason"],
        "recorded without its `entities` (70000 bytes), left out for size"
    );

    let changed = replay(dir.path(), &log, &scenario("candidate"), &grants, "json");
    assert_exit(&changed, 2);
    let report: Value = serde_json::from_slice(&changed.stdout).unwrap();
    assert_eq!(report["changed"], 1);
    assert_eq!(report["groups"][0]["decisions"][0]["decision_id"], "t-5");
}

#[test]
fn replay_exits_3_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let grants = scenario("grants.json");
    let policies = scenario("policies");

    let broken = dir.path().join("broken.jsonl");
    let mut text = String::new();
    std::fs::File::open(scenario("crafted.jsonl"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text.push_str("{\"decision_id\": \"torn\", \"time\": \n");
    std::fs::write(&broken, text).unwrap();
    let out = replay(dir.path(), &broken, &policies, &grants, "text");
    assert_exit(&out, 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 7 is not a decision record"),
        "{stderr}"
    );

    let out = replay(
        dir.path(),
        &dir.path().join("missing.jsonl"),
        &policies,
        &grants,
        "text",
    );
    assert_exit(&out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read decision log"));

    let bad_policies = fixture("broken_policy").join("policies");
    let out = replay(
        dir.path(),
        &scenario("crafted.jsonl"),
        &bad_policies,
        &grants,
        "text",
    );
    assert_exit(&out, 3);
}

/// A feed server that hands out `document` once, then answers every request with a
/// 503, so the sidecar's feed goes stale after its maximum age.
fn feed_once(document: &Value) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = document.to_string();
    std::thread::spawn(move || {
        let mut served = false;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // Read the request head; the feed requests have no body.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let reply = if served {
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            } else {
                served = true;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    format!("http://{addr}/v1/grants")
}

#[tokio::test]
async fn a_stale_remote_feed_is_named_as_why_a_grant_did_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let url = feed_once(&feed(
        "stale-1",
        vec![grant_now(
            "g-now",
            ALICE,
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
        )],
    ));
    let log = dir.path().join("decisions.jsonl");
    let (_server, addr) = serve(
        dir.path(),
        &[&"--grants-url", &url, &"--max-feed-age-ms", &"2000"],
        &log,
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let request = body(ALICE, PAY, PM1);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen_allow = false;
    let answer = loop {
        let response = client
            .post(format!("http://{addr}/v1/is_authorized?explain=true"))
            .json(&request)
            .send()
            .await
            .unwrap();
        let answer: Value = response.json().await.unwrap();
        seen_allow |= answer["decision"] == "Allow";
        if answer["explanation"]["grants_suspended"] == "the feed is stale" {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "feed never went stale: {answer:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        seen_allow,
        "the feed's grant never applied before it went stale"
    );
    assert_eq!(answer["decision"], "Deny");
    assert_eq!(answer["grants_suspended"], true);
    assert_eq!(
        answer["explanation"]["summary"],
        "grants suspended: the feed is stale; grant `g-now` would allow it"
    );
    assert_eq!(
        answer["explanation"]["near_misses"][0]["status"],
        "suspended"
    );

    let id = answer["decision_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    let record = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(record) = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["decision_id"] == id)
        {
            break record;
        }
        assert!(Instant::now() < deadline, "no record {id}:\n{text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(record["grants_suspended"], true);
    assert_eq!(
        record["near_misses"],
        json!([{"id": "g-now", "why": "suspended"}])
    );
}
