#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::Response;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::task::JoinSet;

use super::*;
use crate::eventlog::GENESIS;

// ---------------------------------------------------------------- parse_target

#[test]
fn a_bare_url_is_a_target_for_every_kind() {
    let target = parse_target("http://127.0.0.1:9000/hook").unwrap();
    assert_eq!(target.kinds, None);
    assert_eq!(target.url, "http://127.0.0.1:9000/hook");
}

#[test]
fn kinds_before_equals_restrict_the_target() {
    let target = parse_target("requested,approval=http://127.0.0.1:9000/hook").unwrap();
    let kinds: BTreeSet<String> = ["requested", "approval"].map(String::from).into();
    assert_eq!(target.kinds, Some(kinds));
    assert_eq!(target.url, "http://127.0.0.1:9000/hook");
    assert!(target.wants("approval"));
    assert!(!target.wants("approved"));
}

#[test]
fn every_event_kind_is_accepted() {
    let spec = format!("{}=http://hooks.internal/elevate", EVENT_KINDS.join(","));
    let target = parse_target(&spec).unwrap();
    assert_eq!(target.kinds.unwrap().len(), EVENT_KINDS.len());
}

#[test]
fn an_equals_sign_in_the_query_is_part_of_the_url() {
    let target = parse_target("http://hooks.internal/elevate?team=platform").unwrap();
    assert_eq!(target.kinds, None);
    assert_eq!(target.url.query(), Some("team=platform"));

    let target = parse_target("denied=http://hooks.internal/e?a=b").unwrap();
    assert_eq!(target.kinds.unwrap().len(), 1);
    assert_eq!(target.url.query(), Some("a=b"));
}

#[test]
fn an_unknown_kind_is_named_with_the_valid_ones() {
    let err = parse_target("requested,granted=http://127.0.0.1:9000/hook").unwrap_err();
    assert_eq!(
        err,
        WebhookError::UnknownKind {
            kind: "granted".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown event kind `granted` in a webhook; valid kinds are requested, approval, \
         approved, denied, cancelled, revoked, relinquished, lapsed, expired"
    );
}

#[test]
fn an_empty_kind_is_rejected() {
    for spec in [
        "=http://h/",
        "requested,,denied=http://h/",
        "requested,=http://h/",
    ] {
        let err = parse_target(spec).unwrap_err();
        assert!(
            matches!(err, WebhookError::EmptyKind { .. }),
            "{spec}: {err}"
        );
    }
    assert_eq!(parse_target("  ").unwrap_err(), WebhookError::Empty);
}

#[test]
fn https_is_rejected_as_not_supported_yet() {
    let err = parse_target("approved=https://hooks.internal/e").unwrap_err();
    assert_eq!(
        err.to_string(),
        "webhook URL `https://hooks.internal/e` uses https, which is not supported yet; use http://"
    );
}

#[test]
fn only_http_urls_with_a_host_are_accepted() {
    for spec in [
        "requested",
        "requested=hooks.internal/e",
        "ftp://hooks.internal/e",
        "/hook",
    ] {
        let err = parse_target(spec).unwrap_err();
        assert!(
            matches!(
                err,
                WebhookError::NotHttp { .. } | WebhookError::InvalidUrl { .. }
            ),
            "{spec}: {err:?}"
        );
        assert!(err.to_string().contains("webhook"), "{err}");
    }
    let err = parse_target("ftp://hooks.internal/e").unwrap_err();
    assert_eq!(
        err.to_string(),
        "webhook `ftp://hooks.internal/e` is not an http:// URL; expected `KIND[,KIND...]=URL` or `URL`"
    );
    assert_eq!(
        parse_target("http://:8080/hook").unwrap_err().to_string(),
        "webhook URL `http://:8080/hook` has no host"
    );
    let err = parse_target("http:///hook").unwrap_err();
    assert!(matches!(err, WebhookError::InvalidUrl { .. }), "{err:?}");
    let err = parse_target("http://exa mple/").unwrap_err();
    assert!(matches!(err, WebhookError::InvalidUrl { .. }), "{err:?}");
}

#[test]
fn credentials_in_the_url_are_rejected_without_repeating_them() {
    let err = parse_target("http://bot:hunter2@hooks.internal/e").unwrap_err();
    assert_eq!(err, WebhookError::Credentials);
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn logs_show_host_port_and_path_only() {
    let uri: Uri = "http://hooks.internal:8080/e?token=s3cret".parse().unwrap();
    assert_eq!(shown(&uri), "hooks.internal:8080/e");
    let uri: Uri = "http://hooks.internal/e".parse().unwrap();
    assert_eq!(shown(&uri), "hooks.internal/e");
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter() {
    let initial = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    let mut nominal = initial;
    for failures in 1..40 {
        let d = backoff(initial, max, failures, u64::from(failures));
        assert!(
            d >= nominal / 2 && d <= nominal,
            "failure {failures}: {d:?} outside [{nominal:?}/2, {nominal:?}]"
        );
        nominal = (nominal * 2).min(max);
    }
    assert_eq!(backoff(Duration::ZERO, max, 3, 0), Duration::ZERO);
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = WebhookConfig::default();
    assert!(c.targets.is_empty());
    assert_eq!(c.queue, 1024);
    assert_eq!(c.max_attempts, 8);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.initial_backoff, Duration::from_millis(500));
    assert_eq!(c.max_backoff, Duration::from_secs(60));
}

// ---------------------------------------------------------------- delivery

/// What a receiver answers to one request, in order; 200 once the script is used up.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A real HTTP server on `127.0.0.1` that records every request before answering
/// it from its script. Dropping it closes the listener and every connection.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(script: &[Reply]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script.to_vec())));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            // Owned by the accept loop, so aborting it drops every connection too.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = Arc::clone(&recorded);
                let script = Arc::clone(&script);
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        let script = Arc::clone(&script);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            recorded.lock().unwrap().push(Recorded {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                            let reply = script
                                .lock()
                                .unwrap()
                                .pop_front()
                                .unwrap_or(Reply::Status(200));
                            let status = match reply {
                                Reply::Status(status) => status,
                                Reply::Hang => std::future::pending().await,
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    fn target(&self, kinds: Option<&[&str]>) -> Target {
        Target {
            kinds: kinds.map(|k| k.iter().map(|&k| k.to_owned()).collect()),
            url: format!("http://{}/hook?token=t", self.addr)
                .parse()
                .unwrap(),
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// An address nothing listens on: bound for a moment, then released.
fn dead_target() -> Target {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    Target {
        kinds: None,
        url: format!("http://{addr}/hook").parse().unwrap(),
    }
}

fn config(targets: Vec<Target>) -> WebhookConfig {
    WebhookConfig {
        targets,
        queue: 16,
        max_attempts: 8,
        timeout: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    }
}

fn event(seq: u64, kind: &str) -> Event {
    Event {
        seq,
        time: "2026-12-03T17:00:00Z".parse().unwrap(),
        actor: "User::\"alice\"".into(),
        request_id: format!("req-{seq}"),
        kind: kind.into(),
        data: json!({"reason": "INC-42", "role": "FinOpsManager"}),
        prev: GENESIS.into(),
        hash: "ab".repeat(32),
    }
}

/// Polls `stats()` until `done` holds, failing after 10 s.
async fn wait_for(
    hooks: &Webhooks,
    what: &str,
    done: impl Fn(&WebhookStats) -> bool,
) -> WebhookStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = hooks.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the receiver until it has recorded `n` requests, failing after 10 s.
async fn wait_for_requests(receiver: &Receiver, n: usize) -> Vec<Recorded> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requests = receiver.requests();
        if requests.len() >= n {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} requests, got {}",
            requests.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_matching_event_is_posted_with_its_body_and_headers() {
    let receiver = Receiver::start(&[]).await;
    let cancel = CancellationToken::new();
    let (hooks, task) = Webhooks::spawn(
        config(vec![receiver.target(Some(&["requested"]))]),
        cancel.clone(),
    );
    let requested = event(7, "requested");
    let elevation = json!({"id": "req-7", "state": "pending", "approvals": []});
    hooks.notify(&requested, Some(elevation.clone()));

    let stats = wait_for(&hooks, "the delivery", |s| s.delivered == 1).await;
    assert_eq!(
        stats,
        WebhookStats {
            delivered: 1,
            ..WebhookStats::default()
        }
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, Method::POST);
    assert_eq!(r.path, "/hook");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.header("user-agent"),
        concat!("elevate/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(r.header("x-elevate-event"), "requested");
    assert_eq!(r.header("x-elevate-delivery"), "7-0");
    assert_eq!(
        r.json(),
        json!({"event": serde_json::to_value(&requested).unwrap(), "elevation": elevation})
    );
    // The event is passed on as the log stores it, field order included.
    let expected_prefix = format!(
        "{{\"event\":{{\"seq\":7,\"time\":\"2026-12-03T17:00:00Z\",\"actor\":\"User::\\\"alice\\\"\",\
         \"request_id\":\"req-7\",\"kind\":\"requested\",\"data\":{{\"reason\":\"INC-42\",\
         \"role\":\"FinOpsManager\"}},\"prev\":\"{GENESIS}\",\"hash\":\"{}\"}},\"elevation\":",
        "ab".repeat(32)
    );
    let body = std::str::from_utf8(&r.body).unwrap();
    assert!(body.starts_with(&expected_prefix), "{body}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_kind_filter_excludes_other_kinds_and_order_is_kept() {
    let approvers = Receiver::start(&[]).await;
    let everything = Receiver::start(&[]).await;
    let (hooks, _task) = Webhooks::spawn(
        config(vec![
            approvers.target(Some(&["approved", "denied"])),
            everything.target(None),
        ]),
        CancellationToken::new(),
    );
    hooks.notify(&event(1, "requested"), None);
    hooks.notify(&event(2, "approval"), None);
    hooks.notify(&event(3, "approved"), None);
    hooks.notify(&event(4, "revoked"), None);

    // One for the filtered target, four for the other.
    wait_for(&hooks, "five deliveries", |s| s.delivered == 5).await;
    let filtered = approvers.requests();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].header("x-elevate-event"), "approved");
    assert_eq!(filtered[0].header("x-elevate-delivery"), "3-0");
    assert_eq!(filtered[0].json()["elevation"], Value::Null);

    let all: Vec<String> = everything
        .requests()
        .iter()
        .map(|r| r.header("x-elevate-delivery").to_owned())
        .collect();
    assert_eq!(all, ["1-1", "2-1", "3-1", "4-1"]);
    assert_eq!(hooks.stats().pending, 0);
}

#[tokio::test]
async fn an_event_no_target_wants_is_not_queued() {
    let receiver = Receiver::start(&[]).await;
    let (hooks, _task) = Webhooks::spawn(
        config(vec![receiver.target(Some(&["denied"]))]),
        CancellationToken::new(),
    );
    hooks.notify(&event(1, "requested"), None);
    assert_eq!(hooks.stats(), WebhookStats::default());
}

#[tokio::test]
async fn a_server_error_is_retried_until_delivered() {
    let receiver = Receiver::start(&[Reply::Status(500), Reply::Status(503)]).await;
    let (hooks, _task) = Webhooks::spawn(
        config(vec![receiver.target(None)]),
        CancellationToken::new(),
    );
    hooks.notify(&event(3, "denied"), None);

    let stats = wait_for(&hooks, "the delivery", |s| s.delivered == 1).await;
    assert_eq!(
        stats,
        WebhookStats {
            delivered: 1,
            retries: 2,
            ..WebhookStats::default()
        }
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    // Every attempt is the same delivery, for the receiver to de-duplicate.
    for r in &requests {
        assert_eq!(r.header("x-elevate-delivery"), "3-0");
        assert_eq!(r.body, requests[0].body);
    }
}

#[tokio::test]
async fn an_unreachable_receiver_is_given_up_after_max_attempts() {
    let mut config = config(vec![dead_target()]);
    config.max_attempts = 3;
    let (hooks, _task) = Webhooks::spawn(config, CancellationToken::new());
    hooks.notify(&event(1, "requested"), None);

    let stats = wait_for(&hooks, "giving up", |s| s.failed == 1).await;
    assert_eq!(
        stats,
        WebhookStats {
            failed: 1,
            retries: 2,
            ..WebhookStats::default()
        }
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried_then_given_up() {
    let receiver = Receiver::start(&[Reply::Hang, Reply::Hang]).await;
    let mut config = config(vec![receiver.target(None)]);
    config.max_attempts = 2;
    config.timeout = Duration::from_millis(50);
    let (hooks, _task) = Webhooks::spawn(config, CancellationToken::new());
    hooks.notify(&event(1, "approved"), None);

    let stats = wait_for(&hooks, "giving up", |s| s.failed == 1).await;
    assert_eq!(stats.retries, 1);
    assert_eq!(stats.delivered, 0);
    assert_eq!(receiver.requests().len(), 2);
}

#[tokio::test]
async fn a_hung_receiver_does_not_hold_up_other_targets() {
    let hung = Receiver::start(&[Reply::Hang; 4]).await;
    let healthy = Receiver::start(&[]).await;
    let mut config = config(vec![hung.target(None), healthy.target(None)]);
    config.timeout = Duration::from_secs(60);
    let (hooks, _task) = Webhooks::spawn(config, CancellationToken::new());
    for seq in 1..=3 {
        hooks.notify(&event(seq, "requested"), None);
    }

    wait_for(&hooks, "the healthy target's deliveries", |s| {
        s.delivered == 3
    })
    .await;
    let delivered: Vec<String> = healthy
        .requests()
        .iter()
        .map(|r| r.header("x-elevate-delivery").to_owned())
        .collect();
    assert_eq!(delivered, ["1-1", "2-1", "3-1"]);
    // The hung target still holds its three: one in flight, two queued.
    assert_eq!(hooks.stats().pending, 3);
}

#[tokio::test]
async fn a_failed_delivery_does_not_hold_up_later_events() {
    // The first attempt fails; its retry waits out a backoff far longer than the test,
    // yet the next event is delivered meanwhile.
    let receiver = Receiver::start(&[Reply::Status(500)]).await;
    let mut config = config(vec![receiver.target(None)]);
    config.initial_backoff = Duration::from_secs(600);
    config.max_backoff = Duration::from_secs(600);
    let (hooks, _task) = Webhooks::spawn(config, CancellationToken::new());
    hooks.notify(&event(1, "requested"), None);
    wait_for(&hooks, "the first failure", |s| s.retries == 1).await;
    hooks.notify(&event(2, "approved"), None);

    let stats = wait_for(&hooks, "the second event", |s| s.delivered == 1).await;
    assert_eq!(stats.pending, 1);
    let last = receiver.requests().pop().unwrap();
    assert_eq!(last.header("x-elevate-delivery"), "2-0");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let receiver = Receiver::start(&[Reply::Hang; 8]).await;
    let mut config = config(vec![receiver.target(None)]);
    config.queue = 1;
    config.timeout = Duration::from_secs(60);
    let cancel = CancellationToken::new();
    let (hooks, task) = Webhooks::spawn(config, cancel.clone());

    hooks.notify(&event(1, "requested"), None);
    // Once the receiver holds the first, the worker is busy and the queue is empty.
    wait_for_requests(&receiver, 1).await;
    for seq in 2..=5 {
        // Returning at all is the point: a blocking notify would hang here.
        hooks.notify(&event(seq, "requested"), None);
    }
    assert_eq!(
        hooks.stats(),
        WebhookStats {
            dropped: 3,
            pending: 2,
            ..WebhookStats::default()
        }
    );

    // Cancelling abandons the delivery in flight and the queued one, promptly.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the webhook task ends soon after cancellation")
        .unwrap();
    hooks.notify(&event(6, "requested"), None);
    assert_eq!(hooks.stats().dropped, 4);
}

#[tokio::test]
async fn the_task_ends_when_every_handle_is_dropped_and_work_is_done() {
    let receiver = Receiver::start(&[]).await;
    let (hooks, task) = Webhooks::spawn(
        config(vec![receiver.target(None)]),
        CancellationToken::new(),
    );
    hooks.notify(&event(1, "expired"), None);
    drop(hooks);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receiver.requests().len(), 1);
}

#[test]
fn disabled_webhooks_do_nothing() {
    // No runtime here: notify must not need one.
    let hooks = Webhooks::disabled();
    hooks
        .clone()
        .notify(&event(1, "requested"), Some(json!({})));
    assert_eq!(hooks.stats(), WebhookStats::default());
}
