//! The sidecar following a grant feed over HTTP (`--grants-url`), against a feed
//! server in the test that we control: it serves a document with an ETag, answers
//! `If-None-Match` with 304, holds `?wait=` long-polls, and can be switched to
//! garbage, to HTTP 500, to hanging, or shut down and brought back on the same port.
//!
//! Every wait polls with a deadline; nothing sleeps a fixed time and hopes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use elevate::cli::serve::Running;
use elevate::config::{
    Config, DecisionLog, FeedUrl, HttpConfig, ReloadConfig, RemoteFeedConfig, Sources, Validation,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ETAG, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use reqwest::StatusCode as HttpStatus;
use serde_json::Value;
use support::*;
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const FINOPS_ALICE: &str = "g-finops-alice";
/// How long a change may take to show when the feed server answers at once.
const TIMEOUT: Duration = RELOAD_TIMEOUT;

fn finops_alice() -> Value {
    grant_now(
        FINOPS_ALICE,
        &user("alice"),
        "FinOpsManager",
        &uid("Workspace", "ws-1"),
    )
}

// ------------------------------------------------------------- feed server

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The document, with ETag, 304 and long-poll.
    Serve,
    /// 200 with a body that is not a feed document (with its own ETag).
    Garbage,
    /// 500 for everything.
    Error,
    /// Accepts and reads the request, then never answers (until the mode changes).
    Hang,
}

/// One request as the feed server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    if_none_match: Option<String>,
    wait: Option<u64>,
    /// What it was answered (0 while held, or if it was never answered).
    status: u16,
}

struct FeedState {
    revision: String,
    body: Vec<u8>,
    mode: Mode,
    /// Bumped each time garbage is switched on, so each bad document has its own ETag.
    garbage: u32,
    seen: Vec<Seen>,
    holding: usize,
}

struct Shared {
    state: Mutex<FeedState>,
    /// Wakes held requests after any change.
    changed: Notify,
}

enum Decision {
    Answer(Response<Full<Bytes>>),
    Hold { until: Option<tokio::time::Instant> },
}

/// A feed server on `127.0.0.1`; dropping it shuts it down.
struct FeedServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FeedServer {
    async fn start(mode: Mode, revision: &str, grants: Vec<Value>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(FeedState {
                revision: revision.to_owned(),
                body: serde_json::to_vec(&feed(revision, grants)).unwrap(),
                mode,
                garbage: 0,
                seen: Vec::new(),
                holding: 0,
            }),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Self {
            addr,
            shared,
            cancel: CancellationToken::new(),
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let shared = Arc::clone(&self.shared);
        let cancel = self.cancel.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropping the set aborts every connection: the server is gone, not draining.
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = tokio::select! {
                    () = cancel.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            connections.abort_all();
        }));
    }

    fn url(&self) -> String {
        format!("http://{}/v1/grants", self.addr)
    }

    fn change(&self, f: impl FnOnce(&mut FeedState)) {
        f(&mut self.shared.state.lock().unwrap());
        self.shared.changed.notify_waiters();
    }

    fn publish(&self, revision: &str, grants: Vec<Value>) {
        let body = serde_json::to_vec(&feed(revision, grants)).unwrap();
        self.change(|s| {
            s.revision = revision.to_owned();
            s.body = body;
            s.mode = Mode::Serve;
        });
    }

    fn set_mode(&self, mode: Mode) {
        self.change(|s| {
            if mode == Mode::Garbage {
                s.garbage += 1;
            }
            s.mode = mode;
        });
    }

    fn holding(&self) -> usize {
        self.shared.state.lock().unwrap().holding
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }

    /// Stops accepting and drops every open connection; the port is free afterwards.
    async fn shut_down(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Listens again on the same address, with the same state.
    async fn bring_back(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot bind {} again: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.cancel = CancellationToken::new();
        self.serve(listener);
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn etag_of(revision: &str) -> String {
    format!("\"{revision}\"")
}

fn answer(status: StatusCode, etag: Option<&str>, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(etag) = etag {
        response.headers_mut().insert(ETAG, etag.parse().unwrap());
    }
    response
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let if_none_match = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let wait = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("wait="))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let index = {
        let mut state = shared.state.lock().unwrap();
        state.seen.push(Seen {
            at: Instant::now(),
            if_none_match: if_none_match.clone(),
            wait,
            status: 0,
        });
        state.seen.len() - 1
    };
    let started = tokio::time::Instant::now();
    let long_poll_end = wait
        .filter(|w| *w > 0)
        .map(|w| started + Duration::from_secs(w));
    loop {
        // Registered before the state is read, so a change in between is not missed.
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let decision = {
            let state = shared.state.lock().unwrap();
            let held_out = long_poll_end.is_none_or(|end| tokio::time::Instant::now() >= end);
            let (etag, body) = match state.mode {
                Mode::Hang => (None, None),
                Mode::Error => (None, Some(b"{\"error\":\"down\"}".to_vec())),
                Mode::Garbage => (
                    Some(format!("\"garbage-{}\"", state.garbage)),
                    Some(b"<html>not a feed</html>".to_vec()),
                ),
                Mode::Serve => (Some(etag_of(&state.revision)), Some(state.body.clone())),
            };
            match (state.mode, etag, body) {
                (Mode::Hang, _, _) => Decision::Hold { until: None },
                (Mode::Error, _, Some(body)) => {
                    Decision::Answer(answer(StatusCode::INTERNAL_SERVER_ERROR, None, body))
                }
                (_, Some(etag), Some(body)) => {
                    if if_none_match.as_deref() != Some(etag.as_str()) {
                        Decision::Answer(answer(StatusCode::OK, Some(&etag), body))
                    } else if held_out {
                        Decision::Answer(answer(StatusCode::NOT_MODIFIED, Some(&etag), Vec::new()))
                    } else {
                        Decision::Hold {
                            until: long_poll_end,
                        }
                    }
                }
                _ => unreachable!(),
            }
        };
        match decision {
            Decision::Answer(response) => {
                shared.state.lock().unwrap().seen[index].status = response.status().as_u16();
                return response;
            }
            Decision::Hold { until } => {
                shared.state.lock().unwrap().holding += 1;
                let far = tokio::time::Instant::now() + Duration::from_secs(3600);
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(until.unwrap_or(far)) => {}
                }
                shared.state.lock().unwrap().holding -= 1;
            }
        }
    }
}

// ---------------------------------------------------------------- sidecar

/// An `elevate serve --grants-url` in process, over a copy of the shipped inputs.
struct Sidecar {
    base: String,
    client: reqwest::Client,
    running: Option<Running>,
    _dir: TempDir,
}

/// The remote feed settings the tests use: short backoff so recovery is quick.
fn remote(url: &str, max_age: Duration) -> RemoteFeedConfig {
    RemoteFeedConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        min_interval: Duration::from_millis(100),
        timeout_grace: Duration::from_millis(750),
        ..RemoteFeedConfig::new(FeedUrl::parse(url).unwrap(), max_age)
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

impl Sidecar {
    /// Starts without waiting for readiness: that depends on the feed.
    async fn start(feed: RemoteFeedConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-remote-")
            .tempdir()
            .unwrap();
        let root = repo_root();
        let policies = dir.path().join("policies");
        copy_dir(&root.join("policies"), &policies);
        let schema = dir.path().join("elevate.cedarschema");
        let entities = dir.path().join("entities.json");
        std::fs::copy(root.join("schema/elevate.cedarschema"), &schema).unwrap();
        std::fs::copy(root.join("deploy/local/entities.json"), &entities).unwrap();
        let config = Config {
            sources: Sources {
                policies,
                schema: Some(schema),
                entities: Some(entities),
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
                ..HttpConfig::default()
            },
            decision_log: DecisionLog::Off,
            decision_queue: 1024,
            shutdown_grace: Duration::from_secs(2),
            workflow: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = elevate::cli::serve::start_with_feed(
            config,
            Some(feed),
            listener,
            elevate::http::system_clock(),
            prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .unwrap_or_else(|e| panic!("sidecar did not start: {e}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            base: format!("http://{}", running.addr),
            client,
            running: Some(running),
            _dir: dir,
        }
    }

    /// Starts and waits until the first document made it ready.
    async fn start_ready(feed: RemoteFeedConfig) -> Self {
        let sidecar = Self::start(feed).await;
        sidecar.wait_ready(true).await;
        sidecar
    }

    async fn get(&self, path: &str) -> (HttpStatus, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn readyz(&self) -> (HttpStatus, Value) {
        let (status, text) = self.get("/readyz").await;
        (status, serde_json::from_str(&text).unwrap())
    }

    async fn status(&self) -> Value {
        let (status, text) = self.get("/v1/status").await;
        assert_eq!(status, HttpStatus::OK, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    async fn decide(&self, principal: &str, action: &str, resource: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/v1/is_authorized", self.base))
            .json(&body(principal, action, resource))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), HttpStatus::OK);
        response.json().await.unwrap()
    }

    /// alice's `createPaymentMethod`, which only her FinOps grant allows.
    async fn elevated(&self) -> Value {
        self.decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await
    }

    /// alice's `readProject`, which her workspace role allows without any grant.
    async fn everyday(&self) -> Value {
        self.decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await
    }

    async fn wait_ready(&self, ready: bool) -> Value {
        let want = if ready {
            HttpStatus::OK
        } else {
            HttpStatus::SERVICE_UNAVAILABLE
        };
        wait_for(&format!("/readyz {want}"), TIMEOUT, || async {
            let (status, body) = self.readyz().await;
            (status == want).then_some(body)
        })
        .await
    }

    async fn wait_for_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, TIMEOUT, || async {
            let status = self.status().await;
            pred(&status).then_some(status)
        })
        .await
    }

    async fn wait_elevated(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, TIMEOUT, || async {
            let answer = self.elevated().await;
            pred(&answer).then_some(answer)
        })
        .await
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.cancel.cancel();
        }
    }
}

/// Polls `probe` every 20 ms until it yields a value; panics after `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_allowed_by_the_grant(answer: &Value) -> bool {
    answer["decision"] == "Allow" && grants(answer) == [FINOPS_ALICE]
}

fn is_suspended_deny(answer: &Value) -> bool {
    answer["decision"] == "Deny" && answer["grants_suspended"] == true
}

fn grants_errors(metrics: &str) -> f64 {
    metric(
        metrics,
        "elevate_reload_total{input=\"grants\",outcome=\"error\"}",
    )
    .unwrap_or(0.0)
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_picks_up_a_grant_from_the_url_and_long_polls_with_its_etag() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(30))).await;

    let answer = sidecar.elevated().await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(answer.get("grants_suspended"), None, "{answer}");

    let status = sidecar.status().await;
    let grants_input = &status["inputs"]["grants"];
    assert_eq!(grants_input["url"], server.url().as_str(), "{status:#}");
    assert_eq!(grants_input["revision"], "1");
    assert_eq!(grants_input["last_error"], Value::Null);
    assert!(grants_input["fresh_until"].is_string(), "{status:#}");
    assert_eq!(grants_input["path"], Value::Null);
    assert_eq!(status["revisions"]["grants"], "1");
    assert_eq!(status["grants"]["suspended"], false);

    // After the first document, every request is a long-poll for a change of its ETag
    // (a 30 s maximum age allows a 15 s long-poll).
    let seen = wait_for("a long-poll with If-None-Match", TIMEOUT, || async {
        let seen = server.seen();
        (seen.len() >= 2 && server.holding() == 1).then_some(seen)
    })
    .await;
    assert_eq!(seen[0].if_none_match, None);
    assert_eq!(seen[0].wait, None);
    assert_eq!(seen[0].status, 200);
    let last = seen.last().unwrap();
    assert_eq!(last.if_none_match.as_deref(), Some(etag_of("1").as_str()));
    assert_eq!(last.wait, Some(15));

    let metrics = sidecar.metrics().await;
    let age = metric_value(&metrics, "elevate_feed_age_seconds");
    assert!((0.0..30.0).contains(&age), "feed age {age}");
    assert_eq!(
        metric_value(
            &metrics,
            "elevate_reload_total{input=\"grants\",outcome=\"ok\"}"
        ),
        1.0
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_revision_arrives_through_the_held_long_poll_in_well_under_a_second() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(30))).await;
    assert!(is_allowed_by_the_grant(&sidecar.elevated().await));
    let generation = sidecar.status().await["generation"].as_u64().unwrap();
    wait_for("the sidecar to hold a long-poll", TIMEOUT, || async {
        (server.holding() == 1).then_some(())
    })
    .await;
    let requests_before = server.seen().len();

    // Revocation: the grant leaves the feed.
    let published = Instant::now();
    server.publish("2", vec![]);
    let answer = sidecar
        .wait_elevated("the revocation to reach the sidecar", |a| {
            a["decision"] == "Deny"
        })
        .await;
    let took = published.elapsed();
    assert_answer(&answer, "Deny", &[], &[]);
    assert_eq!(answer.get("grants_suspended"), None, "{answer}");
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    // It came as the answer to the request that was already waiting.
    let seen = server.seen();
    let held = &seen[requests_before - 1];
    assert_eq!(held.status, 200, "{seen:?}");
    assert!(held.at < published);
    let status = sidecar.status().await;
    assert_eq!(status["generation"].as_u64().unwrap(), generation + 1);
    assert_eq!(status["inputs"]["grants"]["revision"], "2");

    // And back.
    server.publish("3", vec![finops_alice()]);
    sidecar
        .wait_elevated("the new grant", is_allowed_by_the_grant)
        .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_document_keeps_the_last_good_grants_and_is_reported_once() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(30))).await;
    let generation = sidecar.status().await["generation"].as_u64().unwrap();

    server.set_mode(Mode::Garbage);
    let status = sidecar
        .wait_for_status("inputs.grants.last_error", |s| {
            s["inputs"]["grants"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("not valid JSON"))
        })
        .await;
    let error = status["inputs"]["grants"]["last_error"].as_str().unwrap();
    assert!(error.contains(&server.url()), "{error}");
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_eq!(status["inputs"]["grants"]["revision"], "1");
    assert_eq!(status["grants"]["suspended"], false);
    assert!(grants_errors(&sidecar.metrics().await) >= 1.0);
    let answer = sidecar.elevated().await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);

    // The bad document is not fetched again and again: the next request long-polls
    // for a change of the bad document's ETag.
    wait_for(
        "a long-poll on the bad document's ETag",
        TIMEOUT,
        || async {
            let seen = server.seen();
            let last = seen.last()?;
            (server.holding() == 1 && last.if_none_match.as_deref() == Some("\"garbage-1\""))
                .then_some(())
        },
    )
    .await;
    let garbage_answers = server
        .seen()
        .iter()
        .filter(|s| s.status == 200 && s.if_none_match.as_deref() == Some("\"1\""))
        .count();
    assert_eq!(garbage_answers, 1);
    assert_eq!(grants_errors(&sidecar.metrics().await), 1.0);

    // A good document again clears the error.
    server.publish("2", vec![finops_alice()]);
    let status = sidecar
        .wait_for_status("revision 2", |s| s["inputs"]["grants"]["revision"] == "2")
        .await;
    assert_eq!(status["inputs"]["grants"]["last_error"], Value::Null);
    assert!(is_allowed_by_the_grant(&sidecar.elevated().await));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_that_stays_suspends_grants_after_the_maximum_age() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(1))).await;
    sidecar
        .wait_elevated("the grant", is_allowed_by_the_grant)
        .await;

    // The server answers, but with nothing usable: its revocations are unknown.
    server.set_mode(Mode::Garbage);
    let answer = sidecar
        .wait_elevated("grants suspended", is_suspended_deny)
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
    let answer = sidecar.everyday().await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    sidecar.wait_ready(false).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_going_away_suspends_grants_after_the_maximum_age_and_its_return_restores_them() {
    let mut server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(1))).await;
    sidecar
        .wait_elevated("the grant", is_allowed_by_the_grant)
        .await;

    server.shut_down().await;
    let gone = Instant::now();
    let answer = sidecar
        .wait_elevated("grants suspended", is_suspended_deny)
        .await;
    assert!(
        gone.elapsed() < Duration::from_millis(1000) + TIMEOUT,
        "suspended after {:?}",
        gone.elapsed()
    );
    assert_answer(&answer, "Deny", &[], &[]);
    // Workspace roles keep working: only elevation fails closed.
    let answer = sidecar.everyday().await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    let (status, body) = sidecar.readyz().await;
    assert_eq!(status, HttpStatus::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("grants are suspended"),
        "{body}"
    );
    let status = sidecar
        .wait_for_status("the fetch error", |s| {
            s["inputs"]["grants"]["last_error"]
                .as_str()
                .is_some_and(|e| e.starts_with("GET "))
        })
        .await;
    assert_eq!(status["grants"]["suspended"], true, "{status:#}");
    assert_eq!(
        status["inputs"]["grants"]["revision"], "1",
        "last good kept"
    );
    let metrics = sidecar.metrics().await;
    assert!(metric_value(&metrics, "elevate_feed_age_seconds") >= 1.0);
    assert!(grants_errors(&metrics) >= 1.0);

    server.bring_back().await;
    let answer = sidecar
        .wait_elevated("the grant again", is_allowed_by_the_grant)
        .await;
    assert_eq!(answer.get("grants_suspended"), None, "{answer}");
    sidecar.wait_ready(true).await;
    let status = sidecar.status().await;
    assert_eq!(status["inputs"]["grants"]["last_error"], Value::Null);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_feed_suspends_grants_after_the_maximum_age_and_recovers() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(1))).await;
    sidecar
        .wait_elevated("the grant", is_allowed_by_the_grant)
        .await;

    server.set_mode(Mode::Hang);
    sidecar
        .wait_elevated("grants suspended", is_suspended_deny)
        .await;
    sidecar.wait_ready(false).await;
    sidecar
        .wait_for_status("the timeout", |s| {
            s["inputs"]["grants"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("no answer within"))
        })
        .await;

    server.set_mode(Mode::Serve);
    sidecar
        .wait_elevated("the grant again", is_allowed_by_the_grant)
        .await;
    sidecar.wait_ready(true).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_document_the_sidecar_serves_static_policies_but_is_not_ready() {
    let server = FeedServer::start(Mode::Error, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start(remote(&server.url(), Duration::from_secs(30))).await;

    let (status, body) = sidecar.readyz().await;
    assert_eq!(status, HttpStatus::SERVICE_UNAVAILABLE, "{body}");
    let answer = sidecar.everyday().await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    let answer = sidecar.elevated().await;
    assert!(is_suspended_deny(&answer), "{answer}");
    let status = sidecar
        .wait_for_status("the first fetch error", |s| {
            s["inputs"]["grants"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("HTTP 500"))
        })
        .await;
    let error = status["inputs"]["grants"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("waiting for the first grant feed"),
        "{error}"
    );
    assert_eq!(status["inputs"]["grants"]["revision"], Value::Null);
    assert_eq!(status["grants"]["suspended"], true);
    assert_eq!(
        metric(&sidecar.metrics().await, "elevate_feed_age_seconds"),
        None,
        "no feed age before the first document"
    );

    server.set_mode(Mode::Serve);
    sidecar.wait_ready(true).await;
    let answer = sidecar.elevated().await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fetches_back_off_exponentially_and_keep_the_grants_while_fresh() {
    let server = FeedServer::start(Mode::Serve, "1", vec![finops_alice()]).await;
    let sidecar = Sidecar::start_ready(remote(&server.url(), Duration::from_secs(30))).await;
    wait_for("the sidecar to hold a long-poll", TIMEOUT, || async {
        (server.holding() == 1).then_some(())
    })
    .await;
    let before = server.seen().len();

    server.set_mode(Mode::Error);
    let errors = wait_for("six failed fetches", TIMEOUT, || async {
        let seen = server.seen();
        let errors: Vec<Seen> = seen
            .iter()
            .skip(before)
            .filter(|s| s.status == 500)
            .cloned()
            .collect();
        (errors.len() >= 6).then_some(errors)
    })
    .await;
    // Delays double from 20 ms up to 200 ms, each jittered within [d/2, d].
    let mut nominal = Duration::from_millis(20);
    for pair in errors.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= nominal / 2, "gap {gap:?} shorter than {nominal:?}/2");
        nominal = (nominal * 2).min(Duration::from_millis(200));
    }
    let status = sidecar.status().await;
    let error = status["inputs"]["grants"]["last_error"].as_str().unwrap();
    assert!(error.contains("HTTP 500"), "{error}");
    assert_eq!(
        status["grants"]["suspended"], false,
        "still within the maximum age"
    );
    assert!(is_allowed_by_the_grant(&sidecar.elevated().await));

    server.set_mode(Mode::Serve);
    sidecar
        .wait_for_status("recovery", |s| {
            s["inputs"]["grants"]["last_error"].is_null()
        })
        .await;
    sidecar.stop().await;
}
