//! The workflow subcommands (`elevate request`, `approve`, `list`, …) run as the real
//! binary against a scripted HTTP server that speaks just enough of the workflow API
//! contract: what they send (route, body, bearer token), what they print, and their
//! exit codes. The real server's end-to-end tests live with the server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const TOKEN: &str = "tok-alice-0123456789";

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, exactly as sent.
    target: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body of {} {} is not JSON: {e}", self.method, self.target))
    }
}

/// What the scripted server answers.
struct Reply {
    status: u16,
    body: Value,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply { status, body }
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A real HTTP/1.1 server on 127.0.0.1:0 answering from a script, recording every
/// request. It runs on its own runtime so the test thread can block on the binary.
struct Scripted {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Scripted {
    fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = Arc::clone(&seen);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let script = Arc::clone(&script);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let script = Arc::clone(&script);
                        let log = Arc::clone(&log);
                        async move { Ok::<_, Infallible>(answer(request, &*script, &log).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            seen,
            _runtime: runtime,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    request: Request<Incoming>,
    script: &Script,
    log: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let mut seen = Seen {
        method: request.method().to_string(),
        target: request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: Vec::new(),
    };
    seen.body = request
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let Reply { status, body } = script(&seen);
    log.lock().unwrap().push(seen);
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if status == 401 {
        response = response.header("www-authenticate", "Bearer");
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// An elevation as the contract shapes it: pending, 0 of `required` approvals.
fn elevation(id: &str, required: u32) -> Value {
    json!({"id": id, "principal": "User::\"alice\"", "role": "FinOpsManager",
           "scope": "Workspace::\"ws-1\"", "duration_seconds": 7200, "reason": "month-end close",
           "ticket": "OPS-1", "on_behalf_of": null, "not_before": null, "extends": null,
           "requested_at": "2026-12-03T17:00:00Z", "decide_by": "2026-12-04T17:00:00Z",
           "approvals_required": required, "approvals": [], "grant": null, "ended": null,
           "extended_by": [], "state": "pending"})
}

fn approved(mut value: Value, not_before: jiff::Timestamp) -> Value {
    let id = value["id"].as_str().unwrap().replace("r-", "g-");
    let expires_at = not_before + jiff::SignedDuration::from_hours(2);
    value["state"] = json!("approved");
    value["approvals"] =
        json!([{"by": "User::\"carol\"", "at": "2026-12-03T17:05:00Z", "comment": "ok"}]);
    value["grant"] = json!({"id": id, "not_before": not_before.to_string(),
                            "expires_at": expires_at.to_string()});
    value
}

fn error(kind: &str, sentence: &str) -> Value {
    json!({"error": sentence, "kind": kind})
}

/// The binary with no workflow settings inherited from the environment running the tests.
fn elevate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elevate"));
    command
        .env_remove("ELEVATE_URL")
        .env_remove("ELEVATE_TOKEN")
        .env_remove("ELEVATE_CA")
        .env("RUST_LOG", "warn");
    command
}

/// Runs `elevate ARGS --url URL --token TOKEN`.
fn run(server: &Scripted, args: &[&str]) -> Result {
    let output = elevate()
        .args(args)
        .args(["--url", &server.url, "--token", TOKEN])
        .output()
        .unwrap();
    Result::from(output)
}

struct Result {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Result {
    fn from(output: Output) -> Self {
        let result = Self {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        assert!(
            !result.stdout.contains(TOKEN) && !result.stderr.contains(TOKEN),
            "the token was printed: {}{}",
            result.stdout,
            result.stderr
        );
        result
    }
}

impl std::fmt::Display for Result {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

#[test]
fn request_sends_the_contract_json_with_the_bearer_token() {
    let server = Scripted::start(|_| reply(201, elevation("r-3", 1)));
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            r#"Workspace::"ws-1""#,
            "--for",
            "2h",
            "--reason",
            "month-end close",
            "--ticket",
            "OPS-1",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.stdout,
        "r-3 pending FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (0/1 approvals)\n"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let sent = &seen[0];
    assert_eq!(
        (sent.method.as_str(), sent.target.as_str()),
        ("POST", "/v1/elevations")
    );
    assert_eq!(
        sent.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(sent.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        sent.json(),
        json!({"role": "FinOpsManager", "scope": "Workspace::\"ws-1\"", "duration": "2h",
               "reason": "month-end close", "ticket": "OPS-1"})
    );
}

#[test]
fn request_passes_on_behalf_of_and_not_before() {
    let server = Scripted::start(|_| reply(201, elevation("r-4", 1)));
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            r#"Workspace::"ws-1""#,
            "--for",
            "PT90M",
            "--reason",
            "r",
            "--on-behalf-of",
            "team-payments",
            "--not-before",
            "2026-12-03T18:00:00+01:00",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        server.seen()[0].json(),
        json!({"role": "FinOpsManager", "scope": "Workspace::\"ws-1\"", "duration": "PT90M",
               "reason": "r", "on_behalf_of": "team-payments",
               "not_before": "2026-12-03T17:00:00Z"})
    );
}

#[test]
fn wait_polls_through_pending_and_a_future_start_until_the_grant_is_live() {
    let gets = AtomicUsize::new(0);
    let start = OnceLock::new();
    let server = Scripted::start(move |seen| match seen.method.as_str() {
        "POST" => reply(201, elevation("r-3", 2)),
        _ => {
            assert_eq!(seen.target, "/v1/elevations/r-3");
            match gets.fetch_add(1, Ordering::SeqCst) {
                0 => reply(200, elevation("r-3", 2)),
                // Approved, with a grant that starts a moment from the first time the
                // client hears of it: it must keep polling until then.
                _ => {
                    let not_before = *start.get_or_init(|| {
                        jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500)
                    });
                    reply(200, approved(elevation("r-3", 2), not_before))
                }
            }
        }
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            r#"Workspace::"ws-1""#,
            "--for",
            "2h",
            "--reason",
            "terraform apply",
            "--wait",
            "--timeout",
            "1m",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    let seen = server.seen();
    let polls = seen.iter().filter(|s| s.method == "GET").count();
    assert!(
        polls >= 3,
        "pending, approved-not-live, live: {polls} polls"
    );
    let last = &seen.last().unwrap().target;
    assert_eq!(last, "/v1/elevations/r-3");
    assert!(out.stdout.starts_with("grant g-3 in force until "), "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert_eq!(
        out.stderr
            .matches("waiting for approval of r-3 (needs 2 approvals)...")
            .count(),
        1,
        "{out}"
    );
    assert!(
        out.stderr
            .contains("r-3 approved; waiting for grant g-3 to start at"),
        "{out}"
    );
    for s in &seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }
}

#[test]
fn wait_prints_the_grant_expiry_from_the_server() {
    let not_before = jiff::Timestamp::from_second(1_780_000_000).unwrap();
    let live = approved(elevation("r-7", 1), not_before);
    let expires = live["grant"]["expires_at"].as_str().unwrap().to_owned();
    let server = Scripted::start(move |seen| match seen.method.as_str() {
        "POST" => reply(201, elevation("r-7", 1)),
        _ => reply(200, live.clone()),
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            "Workspace::\"ws-1\"",
            "--for",
            "2h",
            "--reason",
            "r",
            "--wait",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.stdout,
        format!(
            "grant g-7 in force until {expires} (request r-7: FinOpsManager on Workspace::\"ws-1\")\n"
        )
    );
}

#[test]
fn wait_ending_denied_exits_2_naming_who_and_why() {
    let server = Scripted::start(|seen| match seen.method.as_str() {
        "POST" => reply(201, elevation("r-3", 1)),
        _ => {
            let mut denied = elevation("r-3", 1);
            denied["state"] = json!("denied");
            denied["ended"] = json!({"state": "denied", "by": "User::\"carol\"",
                                     "at": "2026-12-03T17:10:00Z", "comment": "use the runbook"});
            reply(200, denied)
        }
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            "Workspace::\"ws-1\"",
            "--for",
            "2h",
            "--reason",
            "r",
            "--wait",
        ],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains(
            "error: request `r-3` was denied by User::\"carol\" at 2026-12-03T17:10:00Z: use the runbook"
        ),
        "{out}"
    );
}

#[test]
fn wait_ending_lapsed_or_cancelled_exits_2() {
    for state in ["lapsed", "cancelled", "revoked"] {
        let server = Scripted::start(move |seen| match seen.method.as_str() {
            "POST" => reply(201, elevation("r-3", 1)),
            _ => {
                let mut ended = elevation("r-3", 1);
                ended["state"] = json!(state);
                reply(200, ended)
            }
        });
        let out = run(
            &server,
            &[
                "request",
                "--role",
                "FinOpsManager",
                "--scope",
                "Workspace::\"ws-1\"",
                "--for",
                "2h",
                "--reason",
                "r",
                "--wait",
            ],
        );
        assert_eq!(out.code, 2, "{state}: {out}");
        assert!(out.stderr.contains(state), "{out}");
    }
}

#[test]
fn wait_gives_up_after_its_timeout_with_exit_1() {
    let server = Scripted::start(|seen| match seen.method.as_str() {
        "POST" => reply(201, elevation("r-3", 1)),
        _ => reply(200, elevation("r-3", 1)),
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            "Workspace::\"ws-1\"",
            "--for",
            "2h",
            "--reason",
            "r",
            "--wait",
            "--timeout",
            "2s",
        ],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("error: gave up waiting after 2s: request `r-3` is still pending"),
        "{out}"
    );
    assert!(server.seen().iter().filter(|s| s.method == "GET").count() >= 2);
}

#[test]
fn wait_rides_out_a_server_error_while_polling() {
    let gets = AtomicUsize::new(0);
    let server = Scripted::start(move |seen| match seen.method.as_str() {
        "POST" => reply(201, elevation("r-3", 1)),
        _ => match gets.fetch_add(1, Ordering::SeqCst) {
            0 => reply(503, error("internal", "not ready: restarting")),
            _ => reply(
                200,
                approved(
                    elevation("r-3", 1),
                    jiff::Timestamp::from_second(0).unwrap(),
                ),
            ),
        },
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            "Workspace::\"ws-1\"",
            "--for",
            "2h",
            "--reason",
            "r",
            "--wait",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("not ready: restarting"), "{out}");
    assert!(out.stdout.starts_with("grant g-3 in force until"), "{out}");
}

#[test]
fn approve_with_a_comment_posts_it_to_the_request() {
    let server = Scripted::start(|seen| {
        let id = if seen.target.contains("r-1") {
            "r-1"
        } else {
            "r-2"
        };
        reply(
            200,
            approved(
                elevation(id, 1),
                jiff::Timestamp::from_second(1_780_000_000).unwrap(),
            ),
        )
    });
    let out = run(&server, &["approve", "r-1", "--comment", "looks right"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.starts_with(
            "r-1 approved FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (grant g-1 from "
        ),
        "{out}"
    );
    let out = run(&server, &["deny", "r-2"]);
    assert_eq!(out.code, 0, "{out}");
    let seen = server.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/v1/elevations/r-1/approve");
    assert_eq!(seen[0].json(), json!({"comment": "looks right"}));
    assert_eq!(seen[1].target, "/v1/elevations/r-2/deny");
    assert!(
        seen[1].body.is_empty(),
        "no comment, no body: {:?}",
        seen[1]
    );
}

#[test]
fn every_decision_has_its_route() {
    let server = Scripted::start(|_| reply(200, elevation("r-5", 1)));
    for verb in ["approve", "deny", "revoke", "cancel", "relinquish"] {
        let out = run(&server, &[verb, "r-5"]);
        assert_eq!(out.code, 0, "{verb}: {out}");
    }
    let targets: Vec<String> = server.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        [
            "/v1/elevations/r-5/approve",
            "/v1/elevations/r-5/deny",
            "/v1/elevations/r-5/revoke",
            "/v1/elevations/r-5/cancel",
            "/v1/elevations/r-5/relinquish",
        ]
    );
}

#[test]
fn extend_posts_the_extra_time_and_prints_the_new_request() {
    let server = Scripted::start(|_| {
        let mut new = elevation("r-5", 1);
        new["extends"] = json!("r-3");
        new["duration_seconds"] = json!(3600);
        reply(201, new)
    });
    let out = run(
        &server,
        &[
            "extend", "r-3", "--for", "1h", "--reason", "not done", "--ticket", "OPS-2",
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        out.stdout,
        "r-5 pending FinOpsManager on Workspace::\"ws-1\" for 1h by User::\"alice\" (0/1 approvals), extends r-3\n"
    );
    let seen = server.seen();
    assert_eq!(seen[0].target, "/v1/elevations/r-3/extend");
    assert_eq!(
        seen[0].json(),
        json!({"duration": "1h", "reason": "not done", "ticket": "OPS-2"})
    );
}

#[test]
fn a_403_exits_2_with_the_servers_sentence() {
    let sentence =
        "`User::\"alice\"` may not approve request `r-1`: forbidden by `no-self-approval`";
    let server = Scripted::start(move |_| reply(403, error("forbidden", sentence)));
    let out = run(&server, &["approve", "r-1"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(out.stderr, format!("error: {sentence}\n"));
}

#[test]
fn a_422_exits_3() {
    let server = Scripted::start(|_| {
        reply(
            422,
            error("invalid", "role `Root` is not an elevation role"),
        )
    });
    let out = run(
        &server,
        &[
            "request",
            "--role",
            "Root",
            "--scope",
            "Workspace::\"ws-1\"",
            "--for",
            "2h",
            "--reason",
            "r",
        ],
    );
    assert_eq!(out.code, 3, "{out}");
    assert_eq!(out.stderr, "error: role `Root` is not an elevation role\n");
}

#[test]
fn a_400_exits_3_and_401_404_409_500_exit_1() {
    for (status, kind, code) in [
        (400, "bad_request", 3),
        (401, "unauthenticated", 1),
        (404, "not_found", 1),
        (409, "conflict", 1),
        (500, "internal", 1),
    ] {
        let server =
            Scripted::start(move |_| reply(status, error(kind, &format!("a {kind} answer"))));
        let out = run(&server, &["show", "r-1"]);
        assert_eq!(out.code, code, "{status}: {out}");
        assert_eq!(out.stderr, format!("error: a {kind} answer\n"), "{status}");
    }
}

#[test]
fn list_sends_the_state_and_an_encoded_principal() {
    let server = Scripted::start(|_| {
        reply(
            200,
            json!({"elevations": [elevation("r-1", 1), elevation("r-2", 2)]}),
        )
    });
    let out = run(
        &server,
        &[
            "list",
            "--state",
            "pending",
            "--principal",
            r#"User::"alice""#,
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        server.seen()[0].target,
        "/v1/elevations?state=pending&principal=User%3A%3A%22alice%22"
    );
    assert_eq!(
        out.stdout,
        "r-1 pending FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (0/1 approvals)\n\
         r-2 pending FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (0/2 approvals)\n"
    );
    let out = run(&server, &["list"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(server.seen()[1].target, "/v1/elevations");
}

#[test]
fn an_unknown_state_is_refused_before_asking() {
    let server = Scripted::start(|_| reply(200, json!({"elevations": []})));
    let out = run(&server, &["list", "--state", "open"]);
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("`open` is not a state"), "{out}");
    assert!(server.seen().is_empty());
}

#[test]
fn json_prints_the_servers_answer_as_parseable_json() {
    let answer = json!({"elevations": [elevation("r-1", 1)]});
    let expected = answer.clone();
    let server = Scripted::start(move |_| reply(200, answer.clone()));
    let out = run(&server, &["list", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed, expected);
    assert!(out.stdout.contains("\n  "), "pretty-printed: {out}");
}

#[test]
fn show_prints_every_field_on_its_own_line() {
    let server = Scripted::start(|_| {
        let mut value = approved(
            elevation("r-3", 1),
            jiff::Timestamp::from_second(1_780_000_000).unwrap(),
        );
        value["extended_by"] = json!(["r-5"]);
        reply(200, value)
    });
    let out = run(&server, &["show", "g-3"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(server.seen()[0].target, "/v1/elevations/g-3");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "r-3 approved", "{out}");
    for expected in [
        "principal:    User::\"alice\"",
        "scope:        Workspace::\"ws-1\"",
        "duration:     2h",
        "reason:       month-end close",
        "ticket:       OPS-1",
        "approvals:    1/1 approvals",
        "User::\"carol\" at 2026-12-03T17:05:00Z: ok",
        "grant:        g-3 from 2026-05-28T20:26:40Z until 2026-05-28T22:26:40Z",
        "extended by:  r-5",
    ] {
        assert!(out.stdout.contains(expected), "`{expected}` in\n{out}");
    }
}

#[test]
fn grants_lists_the_approved_requests_as_grants() {
    let server = Scripted::start(|_| {
        let start = jiff::Timestamp::from_second(1_780_000_000).unwrap();
        reply(
            200,
            json!({"elevations": [approved(elevation("r-3", 1), start)]}),
        )
    });
    let out = run(&server, &["grants"]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(server.seen()[0].target, "/v1/elevations?state=approved");
    assert_eq!(
        out.stdout,
        "g-3 User::\"alice\" FinOpsManager on Workspace::\"ws-1\" from 2026-05-28T20:26:40Z until 2026-05-28T22:26:40Z (r-3)\n"
    );
}

#[test]
fn url_and_token_come_from_the_environment() {
    let server = Scripted::start(|_| reply(200, json!({"elevations": []})));
    let out = Result::from(
        elevate()
            .args(["list", "--state", "approved"])
            .env("ELEVATE_URL", &server.url)
            .env("ELEVATE_TOKEN", TOKEN)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out}");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
}

#[test]
fn help_does_not_show_the_token_from_the_environment() {
    let out = Result::from(
        elevate()
            .args(["request", "--help"])
            .env("ELEVATE_TOKEN", TOKEN)
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("ELEVATE_TOKEN"), "{out}");
}

#[test]
fn a_missing_token_is_a_clear_error_before_any_request() {
    let server = Scripted::start(|_| reply(200, json!({"elevations": []})));
    let out = Result::from(
        elevate()
            .args(["list", "--url", &server.url])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(
        out.stderr,
        "error: no token: pass `--token` or set `ELEVATE_TOKEN`\n"
    );
    assert!(server.seen().is_empty());
}

#[test]
fn bad_local_arguments_exit_3_without_asking() {
    let server = Scripted::start(|_| reply(201, elevation("r-1", 1)));
    let base = [
        "request",
        "--role",
        "FinOpsManager",
        "--scope",
        "Workspace::\"ws-1\"",
        "--reason",
        "r",
    ];
    for (extra, needle) in [
        (
            &["--for", "two hours"][..],
            "`--for` `two hours` is not a duration",
        ),
        (&["--for", "0m"][..], "longer than zero"),
        (
            &["--for", "2h", "--not-before", "tomorrow"][..],
            "`--not-before` `tomorrow`",
        ),
        (
            &["--for", "2h", "--wait", "--timeout", "soon"][..],
            "`--timeout` `soon`",
        ),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(&server, &args);
        assert_eq!(out.code, 3, "{extra:?}: {out}");
        assert!(out.stderr.contains(needle), "{needle}: {out}");
    }
    assert!(server.seen().is_empty());
}

#[test]
fn an_unusable_ca_file_and_a_ca_for_plain_http_are_refused_by_name() {
    // https itself works (tests/tls.rs); a CA that cannot be read is a usage error.
    let out = Result::from(
        elevate()
            .args(["list", "--url", "https://elevate.example", "--token", TOKEN])
            .args(["--ca", "/nonexistent/elevate-ca.pem"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("/nonexistent/elevate-ca.pem"), "{out}");
    let out = Result::from(
        elevate()
            .args(["list", "--url", "http://127.0.0.1:9", "--token", TOKEN])
            .args(["--ca", "/nonexistent/elevate-ca.pem"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("`--ca`"), "{out}");
}

#[test]
fn an_unreachable_server_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Result::from(
        elevate()
            .args(["show", "r-1", "--token", TOKEN])
            .args(["--url", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .starts_with("error: cannot reach http://127.0.0.1:"),
        "{out}"
    );
}
