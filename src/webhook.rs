//! Webhook notifications of workflow events: a bounded queue and a sender per target,
//! retries with backoff; never blocks the workflow.
//!
//! Approvers hear about pending requests (`requested`, `approval`) and requesters about
//! decisions (`approved`, `denied`, …) by an HTTP `POST` of one JSON document per event
//! and target:
//!
//! ```text
//! {"event": {"seq":N,"time":"T","actor":S,"request_id":S,"kind":S,"data":V,"prev":"H","hash":"H"},
//!  "elevation": <the request as the workflow API shows it after the event, or null>}
//! ```
//!
//! with `Content-Type: application/json`, `User-Agent: elevate/<version>`,
//! `X-Elevate-Event: <kind>` and `X-Elevate-Delivery: <seq>-<target index>` (the index
//! of the target in [`WebhookConfig::targets`], from 0). A 2xx answer is delivered;
//! any other status, a connection error or no answer within
//! [`WebhookConfig::timeout`] is retried after an exponential backoff with jitter, up
//! to [`WebhookConfig::max_attempts`] attempts in all, and then given up with a warning.
//!
//! Delivery is at least once, not exactly once: an attempt that timed out may still
//! have reached the receiver, so the same delivery can arrive again. The delivery id
//! stays the same across retries for the receiver to de-duplicate on.
//!
//! # Design
//!
//! * [`Webhooks::notify`] runs under the workflow's lock, so it never waits: it
//!   serializes the body once and `try_send`s it onto each matching target's bounded
//!   queue. A full queue drops the delivery, warns and counts it in
//!   [`WebhookStats::dropped`]. It needs no runtime, so a blocking thread may call it.
//! * One worker task per target, each with its own queue of [`WebhookConfig::queue`]
//!   deliveries. Targets never wait for each other: a slow or dead receiver fills and
//!   overflows only its own queue. We chose this over one task per delivery behind a
//!   shared semaphore because a hung receiver would hold every permit for a whole
//!   timeout, stalling healthy targets, and because concurrent deliveries to one
//!   target would arrive in an arbitrary order.
//! * A worker makes one attempt at a time, taking deliveries in queue order, so a
//!   healthy receiver gets a target's events in seq order. A failed delivery waits for
//!   its backoff beside the queue instead of in front of it: meanwhile the worker goes
//!   on with later events, so one failure delays only itself. Up to [`RETRY_WINDOW`]
//!   deliveries may wait like that; then the worker stops taking new ones until one
//!   is done, and the queue (bounded) takes the overflow. So after a failure a target
//!   may receive events out of order; `seq` says the true order.
//! * On cancellation every worker stops at once: queued deliveries, deliveries waiting
//!   for a retry and the attempt in flight are abandoned. The event log is the source
//!   of truth and webhooks are only a courtesy, so losing a few at shutdown is
//!   acceptable; they are not persisted for a later process either. Workers also end
//!   when every [`Webhooks`] handle is dropped and their work is done.
//!
//! Plain HTTP only (hyper-util's legacy client, no TLS yet). Logs name a target by its
//! host, port and path, never its query or credentials, which may hold a token.

use std::collections::BTreeSet;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::eventlog::Event;

/// Every event kind the workflow records, in the order of a request's life.
pub const EVENT_KINDS: [&str; 9] = [
    "requested",
    "approval",
    "approved",
    "denied",
    "cancelled",
    "revoked",
    "relinquished",
    "lapsed",
    "expired",
];

/// Deliveries each target's queue holds before `notify` drops new ones.
pub const DEFAULT_QUEUE: usize = 1024;
/// Attempts per delivery, the first one included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// How long one attempt may take, connecting included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The nominal delay before the first retry; it doubles with each failure.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The largest nominal delay between two attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How many failed deliveries one target's worker keeps waiting for a retry before
/// it stops taking new ones from its queue.
pub const RETRY_WINDOW: usize = 16;

/// Only so much of an answer is read (and thrown away), to reuse the connection.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const USER_AGENT_VALUE: &str = concat!("elevate/", env!("CARGO_PKG_VERSION"));
const X_ELEVATE_EVENT: HeaderName = HeaderName::from_static("x-elevate-event");
const X_ELEVATE_DELIVERY: HeaderName = HeaderName::from_static("x-elevate-delivery");

/// Where notifications go and how hard to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub targets: Vec<Target>,
    /// Capacity of each target's queue (at least 1 is used).
    pub queue: usize,
    /// Attempts per delivery, the first one included (at least 1 is used).
    pub max_attempts: u32,
    /// The limit on one attempt, from connecting to the answer's status.
    pub timeout: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            queue: DEFAULT_QUEUE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// One receiver and the event kinds it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `None`: every kind.
    pub kinds: Option<BTreeSet<String>>,
    pub url: Uri,
}

impl Target {
    fn wants(&self, kind: &str) -> bool {
        self.kinds.as_ref().is_none_or(|kinds| kinds.contains(kind))
    }
}

/// A webhook target that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("empty webhook; expected `KIND[,KIND...]=URL` or `URL`")]
    Empty,
    #[error("webhook `{spec}` has an empty event kind before `=`")]
    EmptyKind { spec: String },
    #[error("unknown event kind `{kind}` in a webhook; valid kinds are {}", EVENT_KINDS.join(", "))]
    UnknownKind { kind: String },
    #[error("webhook URL `{url}` is not a valid URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("webhook URL `{url}` uses https, which is not supported yet; use http://")]
    Https { url: String },
    #[error("webhook `{url}` is not an http:// URL; expected `KIND[,KIND...]=URL` or `URL`")]
    NotHttp { url: String },
    #[error("webhook URL `{url}` has no host")]
    NoHost { url: String },
    // The URL is not repeated: it holds a password, and this message may be logged.
    #[error("a webhook URL holds credentials (`user@`), which are not supported")]
    Credentials,
}

/// Parses the `--webhook` syntax: `KIND[,KIND...]=URL` for some event kinds, or just
/// `URL` for all of them, e.g. `requested,approval=http://127.0.0.1:9000/hook`.
///
/// # Errors
/// An unknown or empty kind, or a URL that is not `http://` with a host.
pub fn parse_target(spec: &str) -> Result<Target, WebhookError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(WebhookError::Empty);
    }
    // A URL's query may hold `=` too; a kind list never holds `:` or `/`.
    let (kinds, url) = match spec.split_once('=') {
        Some((kinds, url)) if !kinds.contains([':', '/']) => (Some(kinds), url.trim()),
        _ => (None, spec),
    };
    let kinds = kinds.map(|list| parse_kinds(spec, list)).transpose()?;
    Ok(Target {
        kinds,
        url: parse_url(url)?,
    })
}

fn parse_kinds(spec: &str, list: &str) -> Result<BTreeSet<String>, WebhookError> {
    list.split(',')
        .map(|kind| {
            let kind = kind.trim();
            if kind.is_empty() {
                Err(WebhookError::EmptyKind {
                    spec: spec.to_owned(),
                })
            } else if EVENT_KINDS.contains(&kind) {
                Ok(kind.to_owned())
            } else {
                Err(WebhookError::UnknownKind {
                    kind: kind.to_owned(),
                })
            }
        })
        .collect()
}

fn parse_url(url: &str) -> Result<Uri, WebhookError> {
    let owned = || url.to_owned();
    let uri: Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| WebhookError::InvalidUrl {
                url: owned(),
                reason: e.to_string(),
            })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(WebhookError::Https { url: owned() }),
        _ => return Err(WebhookError::NotHttp { url: owned() }),
    }
    let Some(authority) = uri.authority() else {
        return Err(WebhookError::NoHost { url: owned() });
    };
    if authority.as_str().contains('@') {
        return Err(WebhookError::Credentials);
    }
    if authority.host().is_empty() {
        return Err(WebhookError::NoHost { url: owned() });
    }
    Ok(uri)
}

/// Delivery counts since [`Webhooks::spawn`], over all targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// Answered 2xx.
    pub delivered: u64,
    /// Given up after the last attempt.
    pub failed: u64,
    /// Not queued: the target's queue was full, or its worker had stopped.
    pub dropped: u64,
    /// Attempts after a first one failed.
    pub retries: u64,
    /// Queued, in flight or waiting for a retry.
    pub pending: u64,
}

/// Shared by every [`Webhooks`] handle and every worker; relaxed atomics, because
/// each counter is read on its own and only for reporting.
#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    pending: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A pending delivery is done (delivered, failed or not queued after all).
    /// INVARIANT: `pending` is raised before a delivery is offered to a queue, so
    /// this never goes below zero.
    fn settle(&self, outcome: &AtomicU64) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        Self::add(outcome);
    }
}

/// The handle the workflow notifies through; clones share the queues and counters.
#[derive(Debug, Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queues: Vec<Queue>,
    counters: Arc<Counters>,
}

/// The sending side of one target's worker.
#[derive(Debug)]
struct Queue {
    target: Target,
    /// How logs name the target.
    shown: String,
    /// Owned by the handles; when the last one is dropped the worker drains and ends.
    tx: mpsc::Sender<Delivery>,
}

/// One event for one target.
#[derive(Debug)]
struct Delivery {
    seq: u64,
    kind: String,
    body: Bytes,
    /// Attempts made so far.
    attempts: u32,
}

/// The document a receiver gets.
#[derive(Serialize)]
struct Body<'a> {
    event: &'a Event,
    elevation: Option<&'a Value>,
}

impl Webhooks {
    /// Starts one worker per target and returns the handle to notify them through,
    /// and a task that ends when every worker has ended (on `cancel`, or once every
    /// handle is dropped and the work is done). Must be called inside a tokio runtime.
    pub fn spawn(
        config: WebhookConfig,
        cancel: CancellationToken,
    ) -> (Webhooks, tokio::task::JoinHandle<()>) {
        let counters = Arc::new(Counters::default());
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build(connector);
        let mut workers = tokio::task::JoinSet::new();
        let mut queues = Vec::with_capacity(config.targets.len());
        for (index, target) in config.targets.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            let shown = shown(&target.url);
            tracing::info!(
                webhook = %shown,
                kinds = %target.kinds.as_ref().map_or("all".to_owned(), |k| {
                    k.iter().map(String::as_str).collect::<Vec<_>>().join(",")
                }),
                "sending webhook notifications"
            );
            let worker = Worker {
                index,
                url: target.url.clone(),
                shown: shown.clone(),
                client: client.clone(),
                rx,
                counters: Arc::clone(&counters),
                max_attempts: config.max_attempts.max(1),
                timeout: config.timeout,
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
                waiting: Vec::new(),
            };
            workers.spawn(worker.run(cancel.clone()));
            queues.push(Queue { target, shown, tx });
        }
        let handle = tokio::spawn(async move {
            while let Some(joined) = workers.join_next().await {
                if let Err(err) = joined
                    && err.is_panic()
                {
                    tracing::error!(error = %err, "a webhook worker panicked");
                }
            }
        });
        let webhooks = Webhooks {
            inner: Arc::new(Inner { queues, counters }),
        };
        (webhooks, handle)
    }

    /// A handle with no targets: `notify` does nothing.
    pub fn disabled() -> Webhooks {
        Webhooks {
            inner: Arc::new(Inner {
                queues: Vec::new(),
                counters: Arc::default(),
            }),
        }
    }

    /// Queues `event` for every target that wants its kind, with `elevation` (the
    /// request after the event) beside it. Never waits and never fails: a delivery
    /// that does not fit in its queue is dropped, logged and counted.
    pub fn notify(&self, event: &Event, elevation: Option<Value>) {
        if !self
            .inner
            .queues
            .iter()
            .any(|q| q.target.wants(&event.kind))
        {
            return;
        }
        let body = Body {
            event,
            elevation: elevation.as_ref(),
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => Bytes::from(body),
            Err(err) => {
                // Cannot happen for a logged event (it was serialized to be logged).
                tracing::warn!(seq = event.seq, kind = %event.kind, error = %err, "cannot encode a webhook body");
                return;
            }
        };
        let counters = &self.inner.counters;
        for queue in self
            .inner
            .queues
            .iter()
            .filter(|q| q.target.wants(&event.kind))
        {
            let delivery = Delivery {
                seq: event.seq,
                kind: event.kind.clone(),
                body: body.clone(),
                attempts: 0,
            };
            Counters::add(&counters.pending);
            match queue.tx.try_send(delivery) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    counters.settle(&counters.dropped);
                    tracing::warn!(
                        webhook = %queue.shown,
                        seq = event.seq,
                        kind = %event.kind,
                        "webhook queue is full; dropped the notification"
                    );
                }
                Err(TrySendError::Closed(_)) => {
                    counters.settle(&counters.dropped);
                    tracing::debug!(
                        webhook = %queue.shown,
                        seq = event.seq,
                        kind = %event.kind,
                        "webhooks have stopped; dropped the notification"
                    );
                }
            }
        }
    }

    /// Counts since `spawn`, over all targets.
    pub fn stats(&self) -> WebhookStats {
        let c = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebhookStats {
            delivered: load(&c.delivered),
            failed: load(&c.failed),
            dropped: load(&c.dropped),
            retries: load(&c.retries),
            pending: load(&c.pending),
        }
    }
}

/// Why one attempt did not deliver.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    /// Permanent: retrying the same delivery cannot help.
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// A delivery that failed, until it is due again.
#[derive(Debug)]
struct Waiting {
    due: Instant,
    delivery: Delivery,
}

/// Delivers one target's queue, one attempt at a time (see the module docs).
struct Worker {
    index: usize,
    url: Uri,
    shown: String,
    client: Client<HttpConnector, Full<Bytes>>,
    rx: mpsc::Receiver<Delivery>,
    counters: Arc<Counters>,
    max_attempts: u32,
    timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// At most [`RETRY_WINDOW`] entries, so a linear scan is cheap.
    waiting: Vec<Waiting>,
}

impl Worker {
    async fn run(mut self, cancel: CancellationToken) {
        let mut open = true;
        loop {
            let delivery = match self.take_due(Instant::now()) {
                Some(delivery) => delivery,
                None => {
                    if !open && self.waiting.is_empty() {
                        return;
                    }
                    let next_due = self.waiting.iter().map(|w| w.due).min();
                    let room = open && self.waiting.len() < RETRY_WINDOW;
                    // INVARIANT: with no room, something waits, so one branch below
                    // besides cancellation is enabled.
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return,
                        () = sleep_until(next_due), if next_due.is_some() => continue,
                        received = self.rx.recv(), if room => match received {
                            Some(delivery) => delivery,
                            None => {
                                open = false;
                                continue;
                            }
                        },
                    }
                }
            };
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                outcome = self.attempt(&delivery) => outcome,
            };
            self.record(delivery, outcome);
        }
    }

    /// The due delivery with the lowest seq, to keep to seq order where we can.
    fn take_due(&mut self, now: Instant) -> Option<Delivery> {
        let position = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| w.due <= now)
            .min_by_key(|(_, w)| w.delivery.seq)
            .map(|(position, _)| position)?;
        Some(self.waiting.swap_remove(position).delivery)
    }

    fn record(&mut self, mut delivery: Delivery, outcome: Result<(), AttemptError>) {
        delivery.attempts = delivery.attempts.saturating_add(1);
        let counters = &self.counters;
        let err = match outcome {
            Ok(()) => {
                counters.settle(&counters.delivered);
                tracing::debug!(
                    webhook = %self.shown,
                    seq = delivery.seq,
                    kind = %delivery.kind,
                    attempts = delivery.attempts,
                    "webhook delivered"
                );
                return;
            }
            Err(err) => err,
        };
        let permanent = matches!(err, AttemptError::Request(_));
        if permanent || delivery.attempts >= self.max_attempts {
            counters.settle(&counters.failed);
            tracing::warn!(
                webhook = %self.shown,
                seq = delivery.seq,
                kind = %delivery.kind,
                attempts = delivery.attempts,
                error = %err,
                "gave up on a webhook notification"
            );
            return;
        }
        Counters::add(&counters.retries);
        let seed = delivery.seq ^ (self.index as u64).rotate_left(32);
        let delay = backoff(
            self.initial_backoff,
            self.max_backoff,
            delivery.attempts,
            seed,
        );
        tracing::debug!(
            webhook = %self.shown,
            seq = delivery.seq,
            kind = %delivery.kind,
            attempts = delivery.attempts,
            error = %err,
            retry_in = ?delay,
            "webhook attempt failed"
        );
        self.waiting.push(Waiting {
            due: after(delay),
            delivery,
        });
    }

    /// One `POST`; the timeout covers everything up to the answer's status.
    async fn attempt(&self, delivery: &Delivery) -> Result<(), AttemptError> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(X_ELEVATE_EVENT, delivery.kind.as_str())
            .header(
                X_ELEVATE_DELIVERY,
                format!("{}-{}", delivery.seq, self.index),
            )
            .body(Full::new(delivery.body.clone()))
            .map_err(|e| AttemptError::Request(e.to_string()))?;
        let deadline = after(self.timeout);
        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|_| AttemptError::Timeout(self.timeout))?
            .map_err(|e| AttemptError::Transport(cause_chain(&e)))?;
        let status = response.status();
        // The answer's body means nothing to us; reading it lets the connection be
        // reused, and a receiver that stalls it has still answered.
        let _ = tokio::time::timeout_at(
            deadline,
            Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect(),
        )
        .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status))
        }
    }
}

/// `delay` from now; an absurd delay (beyond what `Instant` holds) becomes a day.
fn after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// How logs name a target: host, port and path, without credentials or query.
fn shown(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    match uri.port_u16() {
        Some(port) => format!("{host}:{port}{}", uri.path()),
        None => format!("{host}{}", uri.path()),
    }
}

/// The delay after the `failures`-th failed attempt: "equal jitter", uniform in
/// `[d/2, d]` with `d = min(initial * 2^(failures - 1), max)`, so receivers coming
/// back are not hit by every retry at once, yet no retry comes much sooner than its
/// nominal delay.
fn backoff(initial: Duration, max: Duration, failures: u32, seed: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let nominal = initial.saturating_mul(1 << doublings).min(max);
    let half = nominal / 2;
    half + half.mul_f64(random_unit(seed))
}

/// A number in `[0, 1)`, random enough for jitter: std's hasher keys differ for every
/// `RandomState`, and `seed` separates deliveries made at the same instant.
fn random_unit(seed: u64) -> f64 {
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(seed);
    // 53 random bits → the mantissa of an f64 in [0, 1).
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// An error and its sources, `: `-separated (hyper's own `Display` is terse).
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests;
