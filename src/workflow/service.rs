//! The workflow as a server runs it: one [`Workflow`] behind a lock, each command
//! decided against the live snapshot and followed by publishing the grant feed (to
//! the sidecar in this process, the feed file, and long-polling sidecars) and
//! webhooks; and the timer that records lapses and expiries.
//!
//! Publishing happens before the command returns, under the workflow's lock, so
//! revisions go out in order and a caller who was told "approved" can call the
//! sidecar of the same process at once and find the grant there. Every publication
//! is the same feed document, byte for byte, whichever way it travels.
//!
//! With signing keys ([`ServiceConfig::signers`]) each revision is sealed once, in
//! [`crate::signing`]'s envelope, and the envelope is what the feed file and
//! `GET /v1/grants` carry: one atomic rename publishes document and signature
//! together. The sidecar in this process takes the bare document (it is the signer).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Config, Workflow, WorkflowError};
use crate::http::Clock;
use crate::signing::FeedSigner;
use crate::snapshot::Store;
use crate::webhook::Webhooks;

/// The event log's file name in the data directory.
pub const EVENT_LOG_FILE: &str = "events.jsonl";
/// The feed file's name in the data directory, unless configured elsewhere.
pub const FEED_FILE: &str = "grants.json";

/// Where the workflow keeps its state and publishes its feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub data_dir: PathBuf,
    /// The feed file a sidecar on this host can watch; `None` writes none.
    pub feed_file: Option<PathBuf>,
    pub workflow: Config,
    /// Every feed revision is signed with each of these (`--feed-signing-key`); none
    /// publishes plain documents.
    pub signers: Vec<FeedSigner>,
}

impl ServiceConfig {
    /// The data directory, with the feed file inside it.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            feed_file: Some(data_dir.join(FEED_FILE)),
            data_dir,
            workflow: Config::default(),
            signers: Vec::new(),
        }
    }

    pub fn event_log(&self) -> PathBuf {
        self.data_dir.join(EVENT_LOG_FILE)
    }
}

/// One revision of the grant feed, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The seq of the last event the feed reflects.
    pub revision: u64,
    /// `"<revision>-<hash>"`, the seq and the last event's hash: the strong ETag of
    /// `GET /v1/grants`.
    pub etag: String,
    /// What is served and written: the document, or its signed envelope.
    pub body: Bytes,
    /// The feed document itself (the same bytes as `body` when unsigned).
    pub document: Bytes,
}

/// What `/v1/status` shows about the workflow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceStatus {
    pub event_log: PathBuf,
    pub last_seq: u64,
    pub requests: usize,
    pub feed_revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_file: Option<PathBuf>,
    /// Why the last feed file write failed; cleared by the next good one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_file_error: Option<String>,
    /// Why the last tick failed to record a lapse or expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick_error: Option<String>,
}

/// Why the workflow could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot create the workflow data directory `{path}`: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
}

/// The running workflow, shared by the HTTP handlers and the ticker.
pub struct Service {
    workflow: Mutex<Inner>,
    /// A copy of the status after every change, so `/v1/status` never waits for a
    /// command's fsync.
    published_status: arc_swap::ArcSwap<ServiceStatus>,
    store: Arc<Store>,
    config: ServiceConfig,
    feed: watch::Sender<Arc<Published>>,
    webhooks: Webhooks,
    clock: Clock,
}

struct Inner {
    workflow: Workflow,
    status: ServiceStatus,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Opens the event log in `config.data_dir` (created if missing), rebuilds the
    /// state and publishes the current feed. `store` is this process's sidecar: its
    /// snapshot decides the commands, and it follows the feed (it must have been
    /// opened with [`Store::open_following`]).
    ///
    /// # Errors
    /// The directory cannot be created, or the log cannot be opened or replayed.
    pub fn open(
        config: ServiceConfig,
        store: Arc<Store>,
        webhooks: Webhooks,
        clock: Clock,
    ) -> Result<Arc<Self>, ServiceError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServiceError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let workflow =
            Workflow::open(config.event_log(), store.current(), config.workflow.clone())?;
        if let Some(tail) = workflow.repaired() {
            tracing::warn!(?tail, "repaired the end of the workflow event log");
        }
        let now = clock();
        let first = Arc::new(render(&workflow, now, &config.signers));
        let (feed, _) = watch::channel(Arc::clone(&first));
        let status = ServiceStatus {
            event_log: config.event_log(),
            feed_file: config.feed_file.clone(),
            ..ServiceStatus::default()
        };
        let service = Arc::new(Self {
            published_status: arc_swap::ArcSwap::from_pointee(status.clone()),
            workflow: Mutex::new(Inner { workflow, status }),
            store,
            config,
            feed,
            webhooks,
            clock,
        });
        {
            let mut inner = service.lock();
            service.deliver(&mut inner, first, now);
            service.publish_status(&inner, now);
            let w = &inner.workflow;
            tracing::info!(
                log = %w.log_path().display(),
                last_seq = w.last_seq(),
                requests = w.list(&super::Filter::default(), now).len(),
                "workflow opened"
            );
        }
        Ok(service)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.workflow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The clock, to the second: windows, deadlines and the log read in whole seconds,
    /// as people write them (`until 19:00:00Z`), and a grant ends on a second.
    pub fn now(&self) -> Timestamp {
        let now = (self.clock)();
        Timestamp::from_second(now.as_second()).unwrap_or(now)
    }

    /// Runs one command against the live snapshot at the current time; if it recorded
    /// anything, publishes the feed and sends webhooks before returning. Blocking (the
    /// log fsyncs): call it off the async runtime.
    ///
    /// # Errors
    /// Whatever the command returns; nothing was recorded then.
    pub fn command<T>(
        &self,
        f: impl FnOnce(&mut Workflow, Timestamp) -> Result<T, WorkflowError>,
    ) -> Result<T, WorkflowError> {
        let mut inner = self.lock();
        inner.workflow.set_snapshot(self.store.current());
        let before = inner.workflow.last_seq();
        let now = self.now();
        let result = f(&mut inner.workflow, now);
        self.after(&mut inner, before, now);
        result
    }

    /// Reads the state at the current time. Blocking: it waits for a command in
    /// progress (and its fsync); call it off the async runtime.
    pub fn read<T>(&self, f: impl FnOnce(&Workflow, Timestamp) -> T) -> T {
        let inner = self.lock();
        f(&inner.workflow, self.now())
    }

    /// Records every lapse and expiry due now; returns how many. Blocking.
    ///
    /// # Errors
    /// The log refused an event; those before it are recorded and published.
    pub fn tick(&self) -> Result<usize, WorkflowError> {
        let mut inner = self.lock();
        let before = inner.workflow.last_seq();
        let now = self.now();
        let result = inner.workflow.tick(now);
        self.after(&mut inner, before, now);
        let tick_error = result.as_ref().err().map(ToString::to_string);
        if tick_error != inner.status.tick_error {
            inner.status.tick_error = tick_error;
            self.publish_status(&inner, now);
        }
        result.map(|events| events.len())
    }

    /// The feed: the current revision, and a way to wait for the next one.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.feed.subscribe()
    }

    /// The status as of the last change; never waits for a command.
    pub fn status(&self) -> ServiceStatus {
        self.published_status.load().as_ref().clone()
    }

    fn publish_status(&self, inner: &Inner, now: Timestamp) {
        let mut status = inner.status.clone();
        status.last_seq = inner.workflow.last_seq();
        status.requests = inner.workflow.list(&super::Filter::default(), now).len();
        status.feed_revision = self.feed.borrow().revision;
        self.published_status.store(Arc::new(status));
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Publishes and notifies for the events recorded after seq `before`.
    fn after(&self, inner: &mut Inner, before: u64, now: Timestamp) {
        if inner.workflow.last_seq() == before {
            return;
        }
        let published = Arc::new(render(&inner.workflow, now, &self.config.signers));
        self.deliver(inner, published, now);
        self.publish_status(inner, now);
        let w = &inner.workflow;
        for event in w.events_after(before, usize::MAX) {
            let elevation = w.get(&event.request_id).map(|e| e.to_json(now));
            self.webhooks.notify(event, elevation);
        }
    }

    /// Hands one revision to every follower: this process's sidecar, the feed file,
    /// and the long-polls.
    fn deliver(&self, inner: &mut Inner, published: Arc<Published>, now: Timestamp) {
        let applied = self.store.apply_feed(&published.document, now);
        if applied == crate::snapshot::FeedApplied::Rejected {
            // The workflow only writes grants it checked against the same snapshot;
            // a rejection here means the policies changed under it. The sidecar keeps
            // its last good grants and says why in its own status.
            tracing::error!(
                revision = published.revision,
                "the sidecar in this process rejected the workflow's feed"
            );
        }
        if let Some(path) = &self.config.feed_file {
            match write_atomic(path, &published.body) {
                Ok(()) => inner.status.feed_file_error = None,
                Err(err) => {
                    let message = format!("cannot write `{}`: {err}", path.display());
                    tracing::error!(error = %message, "feed file not updated");
                    inner.status.feed_file_error = Some(message);
                }
            }
        }
        self.feed.send_replace(published);
    }

    /// Records lapses and expiries as they fall due (checked at least every second, so
    /// a stepped clock is noticed too) until `cancel`.
    pub fn spawn_ticker(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                // Off the async workers: the lock may be held across a command's fsync.
                let worker = Arc::clone(&service);
                let ticked = tokio::task::spawn_blocking(move || {
                    let ticked = worker.tick();
                    let now = worker.now();
                    let next = worker.read(|w, now| w.next_boundary(now));
                    (ticked, now, next)
                })
                .await;
                let next = match ticked {
                    Ok((ticked, now, next)) => {
                        if let Err(err) = ticked {
                            tracing::error!(error = %err, "cannot record lapses and expiries");
                        }
                        next.and_then(|t| Duration::try_from(t.duration_since(now)).ok())
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "the ticker's worker failed");
                        None
                    }
                };
                wait = next.unwrap_or(Duration::MAX).min(Duration::from_secs(1));
            }
        })
    }
}

/// The feed document of `workflow` at `now`, sealed when there are `signers`.
fn render(workflow: &Workflow, now: Timestamp, signers: &[FeedSigner]) -> Published {
    let revision = workflow.last_seq();
    let document = Bytes::from(serde_json::to_vec(&workflow.feed(now)).unwrap_or_default());
    let body = if signers.is_empty() {
        document.clone()
    } else {
        Bytes::from(crate::signing::seal(&document, signers))
    };
    // The seq alone would name only the length of the history: a log restored from a
    // backup, or another data directory, can reach the same seq by other events, and a
    // sidecar would keep grants that history never had. The chained hash of the last
    // event names the history itself.
    let chain = workflow.last_hash().get(..16).unwrap_or_default();
    Published {
        revision,
        etag: format!("\"{revision}-{chain}\""),
        body,
        document,
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old file or the new one,
/// never a mix: a temporary file beside it, fsynced, renamed over it, and the
/// directory fsynced so the rename survives a crash.
///
/// # Errors
/// Any step fails; the temporary file is removed then.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "feed".into(), |n| n.to_string_lossy().into_owned());
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
