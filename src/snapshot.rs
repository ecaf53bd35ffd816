//! The live [`Snapshot`] behind an `ArcSwap`, how a reload builds and swaps a new one,
//! the file watchers and rescan timer that trigger reloads, and reload status.
//!
//! INVARIANT: a published snapshot is never mutated. A reload reads the inputs from
//! disk again, builds a whole candidate off the request path and swaps it in only if
//! it is complete; an input that fails keeps its last good version, and the failure
//! is recorded (log, metric, `/v1/status`). The request path only calls `current()`.
//!
//! A remote grant feed ([`crate::remote`]) hands each fetched document to
//! [`Store::apply_feed`], which goes through the same rebuild as a file feed. Its
//! freshness is the snapshot's `feed_deadline`: each good answer (a new document, the
//! same one again, or a 304 for the live one) swaps in a snapshot that shares every
//! `Arc` of the current one and carries a later deadline. That swap keeps the
//! generation, which counts content, not freshness. Every swap happens under the
//! reload lock, so a refresh can never undo a concurrent file reload or vice versa.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use jiff::Timestamp;

mod files;
use tokio_util::sync::CancellationToken;

use crate::config::{ReloadConfig, RemoteFeedConfig, Sources, Validation};
use crate::engine::Slices;
use crate::entities::EntityStore;
use crate::feed::{self, Document, GrantIndex};
use crate::metrics::Metrics;
use crate::policy::{self, Bundle, PolicyError, SourceFile};
use crate::signing::{self, FeedTrust};

/// One reloadable input. The label set of `elevate_reload_total{input}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    Policies,
    Schema,
    Entities,
    Grants,
}

impl Input {
    pub const ALL: [Self; 4] = [Self::Policies, Self::Schema, Self::Entities, Self::Grants];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Policies => "policies",
            Self::Schema => "schema",
            Self::Entities => "entities",
            Self::Grants => "grants",
        }
    }
}

/// Revision of each input: a content hash for files, the feed's own `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Revisions {
    pub policies: String,
    pub schema: Option<String>,
    pub entities: Option<String>,
    pub grants: Option<String>,
}

/// Everything a decision needs, immutable.
#[derive(Debug)]
pub struct Snapshot {
    pub bundle: Arc<Bundle>,
    pub store: Arc<EntityStore>,
    pub slices: Arc<Slices>,
    pub grants: Arc<GrantIndex>,
    pub generation: u64,
    pub revisions: Revisions,
    pub validation: Validation,
    /// Grants are suspended from this instant on (a stale remote feed); `None` for a
    /// file feed, which is as fresh as the file.
    pub feed_deadline: Option<Timestamp>,
    /// When the remote feed was last confirmed, by the same clock: a clock that reads
    /// earlier than this has stepped back, and the deadline can no longer be trusted.
    pub feed_refreshed_at: Option<Timestamp>,
}

/// How far the clock may read before the last feed refresh before grants are
/// suspended: small slews pass, a step back would otherwise stretch the feed's age.
pub const CLOCK_STEP_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Why grants are suspended; its `Display` is what `/readyz` should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspension {
    /// A remote feed has not delivered its first good document yet.
    WaitingForFirstFeed,
    /// The remote feed has not been confirmed fresh for `max_feed_age`.
    Stale,
    /// The clock reads earlier than the last refresh (it stepped back), so the feed's
    /// age is unknown until the next refresh.
    ClockStepBack,
}

impl std::fmt::Display for Suspension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WaitingForFirstFeed => "waiting for the first grant feed; grants are suspended",
            Self::Stale => "the grant feed is older than its maximum age; grants are suspended",
            Self::ClockStepBack => {
                "the clock reads earlier than the last grant feed refresh; grants are \
                 suspended until the next one"
            }
        })
    }
}

impl Snapshot {
    /// Elevation fails closed once the feed is older than its allowed age.
    ///
    /// The deadline is a wall-clock instant, so a clock stepped back by an hour would
    /// keep a dead feed's grants for an hour more; a clock earlier than the last refresh
    /// (beyond [`CLOCK_STEP_TOLERANCE`]) suspends them too, until the next refresh.
    pub fn grants_suspended(&self, now: Timestamp) -> bool {
        self.suspension(now).is_some()
    }

    /// Why grants are suspended at `now`, if they are.
    pub fn suspension(&self, now: Timestamp) -> Option<Suspension> {
        let deadline = self.feed_deadline?;
        if now >= deadline {
            Some(if self.revisions.grants.is_none() {
                Suspension::WaitingForFirstFeed
            } else {
                Suspension::Stale
            })
        } else if self
            .feed_refreshed_at
            .and_then(|at| at.checked_sub(CLOCK_STEP_TOLERANCE).ok())
            .is_some_and(|earliest| now < earliest)
        {
            Some(Suspension::ClockStepBack)
        } else {
            None
        }
    }

    /// The same snapshot (every `Arc` shared, same generation), fresh until `deadline`.
    fn with_feed_deadline(&self, refreshed_at: Timestamp, deadline: Timestamp) -> Self {
        Self {
            bundle: Arc::clone(&self.bundle),
            store: Arc::clone(&self.store),
            slices: Arc::clone(&self.slices),
            grants: Arc::clone(&self.grants),
            generation: self.generation,
            revisions: self.revisions.clone(),
            validation: self.validation,
            feed_deadline: Some(deadline),
            feed_refreshed_at: Some(refreshed_at),
        }
    }

    /// Builds a snapshot from sources already read, as `validate` and `authorize` do.
    ///
    /// # Errors
    /// Any input is invalid.
    pub fn build(raw: &RawInputs, validation: Validation) -> Result<Self, LoadError> {
        let bundle = Bundle::build(raw.policies.clone(), raw.schema.as_ref(), validation)
            .map_err(|e| LoadError::Policy(Input::Policies, e))?;
        let store = EntityStore::build(raw.entities.as_ref(), bundle.schema.as_ref(), validation)
            .map_err(|e| LoadError::Policy(Input::Entities, e))?;
        let grants = match &raw.feed {
            Some(doc) => GrantIndex::build(doc, &bundle),
            None => GrantIndex::default(),
        };
        let slices = Slices::build(&bundle, store.action_entities());
        Ok(Self {
            revisions: raw.revisions(),
            bundle: Arc::new(bundle),
            store: Arc::new(store),
            slices: Arc::new(slices),
            grants: Arc::new(grants),
            generation: 1,
            validation,
            feed_deadline: None,
            feed_refreshed_at: None,
        })
    }
}

/// A load that cannot produce a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{input}: {source}", input = .0.as_str(), source = .1)]
    Policy(Input, #[source] PolicyError),
    #[error("grants: cannot read `{path}`: {source}")]
    FeedRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("grants: `{path}`: {source}")]
    Feed {
        path: PathBuf,
        #[source]
        source: feed::FeedError,
    },
    #[error("grants: both a feed file `{path}` and a feed URL `{url}`; use one")]
    TwoFeeds { path: PathBuf, url: String },
    #[error("grants: `{path}`: {source}")]
    FeedRejected {
        path: PathBuf,
        #[source]
        source: signing::Rejected,
    },
}

impl LoadError {
    pub fn input(&self) -> Input {
        match self {
            Self::Policy(input, _) => *input,
            Self::FeedRead { .. }
            | Self::Feed { .. }
            | Self::TwoFeeds { .. }
            | Self::FeedRejected { .. } => Input::Grants,
        }
    }
}

/// The inputs as read from disk, with their content hashes.
#[derive(Debug, Clone)]
pub struct RawInputs {
    pub policies: Vec<SourceFile>,
    pub schema: Option<SourceFile>,
    pub entities: Option<SourceFile>,
    pub feed: Option<Document>,
    pub feed_hash: Option<String>,
}

impl RawInputs {
    /// Reads every configured input.
    ///
    /// # Errors
    /// The first input that cannot be read or parsed.
    pub fn load(sources: &Sources) -> Result<Self, LoadError> {
        Self::load_trusting(sources, None, Timestamp::now())
    }

    /// As [`RawInputs::load`]; with `trust`, a feed file must be signed by one of its
    /// keys and not dated after `now` beyond its skew.
    ///
    /// # Errors
    /// As [`RawInputs::load`], or the feed file is rejected.
    pub fn load_trusting(
        sources: &Sources,
        trust: Option<&FeedTrust>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        let policies = policy::load_policy_files(&sources.policies)
            .map_err(|e| LoadError::Policy(Input::Policies, e))?;
        let schema = sources
            .schema
            .as_deref()
            .map(SourceFile::load)
            .transpose()
            .map_err(|e| LoadError::Policy(Input::Schema, e))?;
        let entities = sources
            .entities
            .as_deref()
            .map(SourceFile::load)
            .transpose()
            .map_err(|e| LoadError::Policy(Input::Entities, e))?;
        let (feed, feed_hash) = match &sources.grants {
            Some(path) => {
                let (doc, hash) = load_feed(path, trust, now)?;
                (Some(doc), Some(hash))
            }
            None => (None, None),
        };
        Ok(Self {
            policies,
            schema,
            entities,
            feed,
            feed_hash,
        })
    }

    fn revisions(&self) -> Revisions {
        Revisions {
            policies: hash_files(&self.policies),
            schema: self
                .schema
                .as_ref()
                .map(|f| hash_files(std::slice::from_ref(f))),
            entities: self
                .entities
                .as_ref()
                .map(|f| hash_files(std::slice::from_ref(f))),
            grants: self.feed.as_ref().map(|d| d.revision.clone()),
        }
    }
}

fn load_feed(
    path: &Path,
    trust: Option<&FeedTrust>,
    now: Timestamp,
) -> Result<(Document, String), LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::FeedRead {
        path: path.to_path_buf(),
        source,
    })?;
    let hash = hash_bytes(&bytes);
    let doc = read_document(&bytes, trust, None, now).map_err(|e| match e {
        FeedFailure::Parse(source) => LoadError::Feed {
            path: path.to_path_buf(),
            source,
        },
        FeedFailure::Rejected(source) => LoadError::FeedRejected {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok((doc, hash))
}

/// Why a feed's bytes did not become a document that may go live.
#[derive(Debug)]
enum FeedFailure {
    Parse(feed::FeedError),
    Rejected(signing::Rejected),
}

impl std::fmt::Display for FeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Parse(e) => e.fmt(f),
            Self::Rejected(e) => e.fmt(f),
        }
    }
}

/// The document in a feed's bytes: a plain document or an envelope's payload; with
/// `trust`, only a verified one that is not future-dated nor older than `held`.
fn read_document(
    bytes: &[u8],
    trust: Option<&FeedTrust>,
    held: Option<&Document>,
    now: Timestamp,
) -> Result<Document, FeedFailure> {
    if trust.is_none()
        && let Some(doc) = feed::parse_plain_document(bytes)
    {
        return Ok(doc);
    }
    let payload = signing::open(bytes, trust).map_err(FeedFailure::Rejected)?;
    let doc = feed::parse_document(&payload).map_err(FeedFailure::Parse)?;
    if let Some(trust) = trust {
        signing::check_document(trust, &doc, held, now).map_err(FeedFailure::Rejected)?;
    }
    Ok(doc)
}

fn hash_bytes(bytes: &[u8]) -> String {
    files::digest(None, bytes)
}

fn hash_files(files: &[SourceFile]) -> String {
    let mut hasher = files::Hasher::new(None);
    for f in files {
        hasher.open_file(&f.path);
        hasher.update(f.text.as_bytes());
    }
    hasher.finish()
}

/// Reload bookkeeping of one input, as `/v1/status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputStatus {
    pub path: Option<PathBuf>,
    /// A remote feed's URL (the grants input only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub revision: Option<String>,
    /// The last time the content changed.
    pub last_reload: Option<Timestamp>,
    pub last_attempt: Option<Timestamp>,
    pub last_error: Option<String>,
    pub reloads: u64,
    pub failures: u64,
    /// A remote feed: the last time the server confirmed the live document (a new
    /// document, the same one again, or a 304).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<Timestamp>,
    /// A remote feed: grants are suspended from this instant unless refreshed first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fresh_until: Option<Timestamp>,
}

/// What the fetcher learns from one document it handed to [`Store::apply_feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedApplied {
    /// A new snapshot with these grants went live.
    Changed { generation: u64 },
    /// The live document again: the feed is refreshed, nothing else changes.
    Unchanged,
    /// Not a usable document: the last good grants stay, the feed is not refreshed.
    Rejected,
}

/// A grant feed fetched over HTTP, as the store sees it.
#[derive(Debug, Clone)]
struct Remote {
    url: String,
    max_age: jiff::SignedDuration,
    /// The feed comes from a workflow in this process, whose command waits for the
    /// apply: freeing the old snapshot must not wait for readers then (the workflow
    /// itself holds one until its next command).
    in_process: bool,
}

impl Remote {
    fn deadline(&self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.max_age).unwrap_or(Timestamp::MAX)
    }

    fn waiting(&self) -> String {
        format!("waiting for the first grant feed from `{}`", self.url)
    }
}

/// What one reload pass reads.
#[derive(Debug, Clone, Copy)]
enum Pass<'a> {
    /// Every file input again (the watcher, the rescan timer).
    Files,
    /// One document fetched from the remote feed; the files are the watcher's business.
    Fetched {
        body: &'a [u8],
        hash: &'a str,
        fresh_until: Timestamp,
    },
}

/// The live snapshot and how it got there.
pub struct Store {
    current: ArcSwap<Snapshot>,
    sources: Sources,
    /// Owned by the reloader: one reload at a time, serialized by this lock, which is
    /// held for a whole rebuild (seconds for a big feed). A std `Mutex` because it never
    /// crosses an `.await`; request handlers never take it.
    state: Mutex<ReloadState>,
    /// A copy of the reload status, published after every reload attempt, so
    /// `/v1/status` and `/metrics` never wait for a rebuild.
    published: ArcSwap<Vec<(Input, InputStatus)>>,
    metrics: Arc<Metrics>,
    /// Set when the grants come over HTTP instead of from `sources.grants`.
    remote: Option<Remote>,
    /// Keys a feed must be signed with (`--feed-public-key`); `None` takes any feed.
    trust: Option<FeedTrust>,
    /// The low-priority thread reloads run on, set once by [`spawn_reloader`]; until
    /// then (and in tests and one-shot commands) reloads run on the caller's thread.
    worker: std::sync::OnceLock<Arc<crate::priority::Worker>>,
}

struct ReloadState {
    /// The inputs of the current snapshot, the entities without their text: the store
    /// holds the entities, and the text can be tens of megabytes. A policy or schema
    /// change re-reads the entities file to check it (see `reload_locked`).
    last_good: RawInputs,
    /// The revision of the entities in `last_good`, whose text is gone.
    entities_revision: Option<String>,
    status: HashMap<Input, InputStatus>,
    /// What each failing input looked like when it failed, so the same bad content
    /// is reported once rather than on every rescan.
    failed_fingerprint: HashMap<Input, String>,
    /// Snapshots swapped out but perhaps still held by a request. The reloader frees
    /// them once it holds the last reference, so the cost of freeing a big snapshot
    /// (hundreds of milliseconds for 100,000 grants) never lands on a request thread.
    retired: Vec<Arc<Snapshot>>,
    /// The entities and feed files as last read, so a rescan of an unchanged file
    /// reads nothing.
    seen_entities: Option<files::Seen>,
    seen_feed: Option<files::Seen>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("generation", &self.current().generation)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Loads every input; at startup a bad input is fatal.
    ///
    /// # Errors
    /// Any input cannot be read or is invalid.
    pub fn load(
        sources: Sources,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        Self::open(sources, None, metrics, now)
    }

    /// Loads every local input; with `remote`, the grants come over HTTP later (through
    /// [`Store::apply_feed`]) and are suspended until the first good document.
    ///
    /// # Errors
    /// A local input cannot be read or is invalid, or `sources` names a feed file too.
    pub fn open(
        sources: Sources,
        remote: Option<&RemoteFeedConfig>,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        Self::open_trusting(sources, remote, None, metrics, now)
    }

    /// As [`Store::open`]; with `trust`, every feed document (the file's or the remote
    /// feed's, at startup and on every reload) must pass [`signing`]'s checks.
    ///
    /// # Errors
    /// As [`Store::open`], or the feed file is rejected at startup.
    pub fn open_trusting(
        sources: Sources,
        remote: Option<&RemoteFeedConfig>,
        trust: Option<FeedTrust>,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        let remote = remote.map(|r| Remote {
            url: r.url.to_string(),
            max_age: jiff::SignedDuration::try_from(r.max_age).unwrap_or(jiff::SignedDuration::MAX),
            in_process: false,
        });
        Self::open_with(sources, remote, trust, metrics, now)
    }

    /// Loads every local input; the grants come from a workflow in this process, which
    /// hands each feed document to [`Store::apply_feed`] itself. `label` names that
    /// feed in `/v1/status`. Grants are suspended until the first document; after that
    /// they never age out, since nothing can fall silently behind within one process.
    ///
    /// # Errors
    /// A local input cannot be read or is invalid, or `sources` names a feed file too.
    pub fn open_following(
        sources: Sources,
        label: String,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        let remote = Remote {
            url: label,
            max_age: jiff::SignedDuration::MAX,
            in_process: true,
        };
        // The workflow in this process is trusted as itself: nothing to verify.
        Self::open_with(sources, Some(remote), None, metrics, now)
    }

    fn open_with(
        sources: Sources,
        remote: Option<Remote>,
        trust: Option<FeedTrust>,
        metrics: Arc<Metrics>,
        now: Timestamp,
    ) -> Result<Self, LoadError> {
        if let (Some(path), Some(remote)) = (&sources.grants, &remote) {
            return Err(LoadError::TwoFeeds {
                path: path.clone(),
                url: remote.url.clone(),
            });
        }
        let raw = RawInputs::load_trusting(&sources, trust.as_ref(), now)?;
        let mut snapshot = Snapshot::build(&raw, sources.validation)?;
        if remote.is_some() {
            // Fail closed until the first good document.
            snapshot.feed_deadline = Some(now);
        }
        for finding in snapshot
            .bundle
            .findings
            .iter()
            .chain(&snapshot.store.findings)
        {
            tracing::warn!(finding = %finding, "validation finding (served anyway)");
        }
        log_rejections(&snapshot.grants, &metrics);
        let mut status = HashMap::new();
        for input in Input::ALL {
            let path = input_path(&sources, input);
            let revision = revision_of(&snapshot.revisions, input);
            if path.is_some() || input == Input::Policies {
                status.insert(
                    input,
                    InputStatus {
                        path: path.map(Path::to_path_buf),
                        revision,
                        last_reload: Some(now),
                        last_attempt: Some(now),
                        reloads: 1,
                        ..InputStatus::default()
                    },
                );
            }
        }
        if let Some(remote) = &remote {
            status.insert(
                Input::Grants,
                InputStatus {
                    url: Some(remote.url.clone()),
                    last_error: Some(remote.waiting()),
                    ..InputStatus::default()
                },
            );
        }
        metrics.observe_snapshot(&snapshot, now);
        let snapshot_entities_revision = snapshot.revisions.entities.clone();
        let seen_entities = sources
            .entities
            .as_deref()
            .zip(snapshot_entities_revision.as_deref())
            .and_then(|(path, hash)| files::seen_after_load(path, hash));
        let seen_feed = sources
            .grants
            .as_deref()
            .zip(raw.feed_hash.as_deref())
            .and_then(|(path, hash)| files::seen_after_load(path, hash));
        let store = Self {
            current: ArcSwap::from_pointee(snapshot),
            sources,
            published: ArcSwap::from_pointee(sorted(&status)),
            state: Mutex::new(ReloadState {
                entities_revision: snapshot_entities_revision,
                last_good: dehydrated(raw),
                status,
                failed_fingerprint: HashMap::new(),
                retired: Vec::new(),
                seen_entities,
                seen_feed,
            }),
            metrics,
            remote,
            trust,
            worker: std::sync::OnceLock::new(),
        };
        Ok(store)
    }

    /// Runs `job` on the reloader's low-priority thread once [`spawn_reloader`] has
    /// started it, else here; blocking, so call it off the async threads. `None` if
    /// the job panicked.
    pub fn on_reloader<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Option<T> {
        let store = Arc::clone(self);
        match self.worker.get() {
            Some(worker) => worker.run(move || job(&store)),
            None => Some(job(&store)),
        }
    }

    /// The reloader thread's priority, once it runs (`/v1/status`).
    pub fn reloader_priority(&self) -> Option<crate::priority::NiceOutcome> {
        self.worker.get().map(|w| w.outcome().clone())
    }

    /// Whether the grants come over HTTP.
    pub fn remote_feed_url(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.url.as_str())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The snapshot to use for one whole request.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Reload status of every configured input.
    pub fn status(&self) -> Vec<(Input, InputStatus)> {
        self.published.load().as_ref().clone()
    }

    /// Re-reads every input from disk and swaps in a new snapshot if anything changed.
    /// Blocking: run it off the async runtime. Returns whether a new snapshot went live.
    pub fn reload(&self, now: Timestamp) -> bool {
        let mut state = self.lock();
        let swapped = self.reload_locked(&mut state, now, Pass::Files);
        self.published.store(Arc::new(sorted(&state.status)));
        reap(&mut state.retired, READER_PATIENCE);
        swapped
    }

    /// A document the remote feed answered with (the body of a 200), received at `now`.
    /// A new document is parsed and linked by the same rebuild as a file feed; the
    /// live one again only refreshes the feed; a bad one keeps the last good grants,
    /// is recorded like a bad file, and does not refresh the feed (its revocations are
    /// unknown). Blocking: run it off the async runtime.
    pub fn apply_feed(&self, body: &[u8], now: Timestamp) -> FeedApplied {
        let Some(remote) = &self.remote else {
            return FeedApplied::Rejected;
        };
        let fresh_until = remote.deadline(now);
        let hash = hash_bytes(body);
        let mut state = self.lock();
        let outcome = if state.last_good.feed.is_some()
            && state.last_good.feed_hash.as_deref() == Some(hash.as_str())
        {
            self.refresh_locked(&mut state, now, fresh_until);
            FeedApplied::Unchanged
        } else {
            let pass = Pass::Fetched {
                body,
                hash: &hash,
                fresh_until,
            };
            if self.reload_locked(&mut state, now, pass) {
                FeedApplied::Changed {
                    generation: self.current().generation,
                }
            } else {
                FeedApplied::Rejected
            }
        };
        self.published.store(Arc::new(sorted(&state.status)));
        let patience = if remote.in_process {
            std::time::Duration::ZERO
        } else {
            READER_PATIENCE
        };
        reap(&mut state.retired, patience);
        outcome
    }

    /// The server confirmed the live document at `now` (a 304 for its ETag). Does
    /// nothing before the first good document. Blocking: it takes the reload lock.
    pub fn feed_refreshed(&self, now: Timestamp) {
        let Some(remote) = &self.remote else { return };
        let mut state = self.lock();
        if state.last_good.feed.is_none() {
            return;
        }
        self.refresh_locked(&mut state, now, remote.deadline(now));
        self.published.store(Arc::new(sorted(&state.status)));
    }

    /// A fetch failed (unreachable, timeout, an HTTP error): recorded, counted, and the
    /// feed is not refreshed. Blocking: it takes the reload lock.
    pub fn feed_failed(&self, message: &str, now: Timestamp) {
        let Some(remote) = &self.remote else { return };
        let mut state = self.lock();
        let waiting = state.last_good.feed.is_none();
        let s = state.status.entry(Input::Grants).or_default();
        s.last_attempt = Some(now);
        s.last_error = Some(if waiting {
            format!("{}: {message}", remote.waiting())
        } else {
            message.to_owned()
        });
        s.failures += 1;
        self.metrics.reload(Input::Grants, false);
        self.published.store(Arc::new(sorted(&state.status)));
    }

    /// Swaps in the current snapshot with a later feed deadline; status follows.
    fn refresh_locked(&self, state: &mut ReloadState, now: Timestamp, fresh_until: Timestamp) {
        state.failed_fingerprint.remove(&Input::Grants);
        let s = state.status.entry(Input::Grants).or_default();
        s.last_attempt = Some(now);
        s.last_refresh = Some(now);
        s.fresh_until = Some(fresh_until);
        s.last_error = None;
        let current = self.current();
        self.published.store(Arc::new(sorted(&state.status)));
        self.current
            .store(Arc::new(current.with_feed_deadline(now, fresh_until)));
    }

    fn reload_locked(&self, state: &mut ReloadState, now: Timestamp, pass: Pass<'_>) -> bool {
        let current = self.current();
        let validation = self.sources.validation;
        let mut candidate = state.last_good.clone();
        let mut changed: Vec<Input> = Vec::new();
        let mut failed: Vec<(Input, String)> = Vec::new();

        // Read each input; an unreadable one keeps its last good version. Content that
        // already failed is retried only together with another change (a schema and
        // its entities may have to change together), so a rescan does not report the
        // same failure again and again.
        let mut feed_rejection: Option<signing::RejectReason> = None;
        let mut observed: Vec<(Input, String)> = Vec::new();
        let mut repeats: Vec<Input> = Vec::new();
        let mut observe = |input: Input, fingerprint: String, state: &ReloadState| {
            if state.failed_fingerprint.get(&input) == Some(&fingerprint) {
                repeats.push(input);
            }
            observed.push((input, fingerprint));
        };
        let files = matches!(pass, Pass::Files);
        let mut reread_entities: Option<SourceFile> = None;
        let mut entities_unchanged_at: Option<PathBuf> = None;
        let policies = files.then(|| policy::load_policy_files(&self.sources.policies));
        match policies {
            None => {}
            Some(Ok(files)) => {
                let hash = hash_files(&files);
                observe(Input::Policies, hash.clone(), state);
                if hash != current.revisions.policies {
                    candidate.policies = files;
                    changed.push(Input::Policies);
                }
            }
            Some(Err(e)) => {
                let message = e.to_string();
                observe(Input::Policies, format!("error: {message}"), state);
                failed.push((Input::Policies, message));
            }
        }
        for (input, path) in [
            (Input::Schema, &self.sources.schema),
            (Input::Entities, &self.sources.entities),
        ] {
            let Some(path) = path.as_ref().filter(|_| files) else {
                continue;
            };
            let known = if input == Input::Schema {
                &current.revisions.schema
            } else {
                &current.revisions.entities
            };
            // The entities file can be tens of megabytes: one that the metadata shows
            // unchanged is not read, and an unchanged one is not held.
            let loaded = if input == Input::Entities {
                match files::read_changed(path, true, known.as_deref(), &mut state.seen_entities) {
                    Ok(files::Content::Unchanged(hash)) => {
                        observe(input, hash, state);
                        entities_unchanged_at = Some(path.clone());
                        continue;
                    }
                    Ok(files::Content::Changed(bytes, hash)) => {
                        SourceFile::from_bytes(path, bytes).map(|file| (file, hash))
                    }
                    Err(source) => Err(PolicyError::Read {
                        path: path.clone(),
                        source,
                    }),
                }
            } else {
                SourceFile::load(path).map(|file| {
                    let hash = hash_files(std::slice::from_ref(&file));
                    (file, hash)
                })
            };
            match loaded {
                Ok((file, hash)) => {
                    observe(input, hash.clone(), state);
                    if Some(&hash) != known.as_ref() {
                        if input == Input::Schema {
                            candidate.schema = Some(file);
                        } else {
                            candidate.entities = Some(file);
                        }
                        changed.push(input);
                    } else if input == Input::Entities {
                        // Unchanged, but a new schema or new policies must check it.
                        reread_entities = Some(file);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    observe(input, format!("error: {message}"), state);
                    failed.push((input, message));
                }
            }
        }
        if let (Pass::Fetched { body, hash, .. }, Some(remote)) = (pass, &self.remote) {
            observe(Input::Grants, hash.to_owned(), state);
            let held = state.last_good.feed.as_ref();
            match read_document(body, self.trust.as_ref(), held, now) {
                Ok(doc) => {
                    candidate.feed = Some(doc);
                    candidate.feed_hash = Some(hash.to_owned());
                    changed.push(Input::Grants);
                }
                Err(e) => {
                    if let FeedFailure::Rejected(r) = &e {
                        feed_rejection = Some(r.reason);
                    }
                    let message = format!("`{}`: {e}", remote.url);
                    let message = if state.last_good.feed.is_none() {
                        format!("{}: {message}", remote.waiting())
                    } else {
                        message
                    };
                    failed.push((Input::Grants, message));
                }
            }
        }
        if let Some(path) = self.sources.grants.as_ref().filter(|_| files) {
            // As for the entities: an unchanged feed file is not held, and not read
            // when its metadata shows it unchanged.
            let known = state.last_good.feed_hash.clone();
            match files::read_changed(path, false, known.as_deref(), &mut state.seen_feed) {
                Ok(files::Content::Unchanged(hash)) => observe(Input::Grants, hash, state),
                Ok(files::Content::Changed(bytes, hash)) => {
                    observe(Input::Grants, hash.clone(), state);
                    let held = state.last_good.feed.as_ref();
                    match read_document(&bytes, self.trust.as_ref(), held, now) {
                        Ok(doc) => {
                            candidate.feed = Some(doc);
                            candidate.feed_hash = Some(hash);
                            changed.push(Input::Grants);
                        }
                        Err(e) => {
                            if let FeedFailure::Rejected(r) = &e {
                                feed_rejection = Some(r.reason);
                            }
                            failed.push((Input::Grants, format!("`{}`: {e}", path.display())));
                        }
                    }
                }
                Err(e) => {
                    let message = format!("cannot read `{}`: {e}", path.display());
                    observe(Input::Grants, format!("error: {message}"), state);
                    failed.push((Input::Grants, message));
                }
            }
        }
        for (input, _) in &observed {
            if let Some(s) = state.status.get_mut(input) {
                s.last_attempt = Some(now);
            }
        }
        // An input back at its live content has recovered without a new snapshot.
        for input in Input::ALL {
            let live = match input {
                Input::Grants => state.last_good.feed_hash.clone(),
                other => revision_of(&current.revisions, other),
            };
            let back = observed
                .iter()
                .any(|(i, f)| *i == input && Some(f) == live.as_ref());
            if back {
                state.failed_fingerprint.remove(&input);
                if let Some(s) = state.status.get_mut(&input) {
                    s.last_error = None;
                }
            }
        }
        let all_repeats = changed
            .iter()
            .chain(failed.iter().map(|(i, _)| i))
            .all(|i| repeats.contains(i));
        if all_repeats {
            return false;
        }

        // Build in dependency order; a stage that fails drops its inputs' changes.
        let policy_changed = changed.contains(&Input::Policies) || changed.contains(&Input::Schema);
        let mut bundle = Arc::clone(&current.bundle);
        if policy_changed {
            match Bundle::build(
                candidate.policies.clone(),
                candidate.schema.as_ref(),
                validation,
            ) {
                Ok(b) => bundle = Arc::new(b),
                Err(e) => {
                    for input in [Input::Policies, Input::Schema] {
                        if changed.contains(&input) {
                            failed.push((input, e.to_string()));
                        }
                    }
                    changed.retain(|i| !matches!(i, Input::Policies | Input::Schema));
                    candidate.policies = state.last_good.policies.clone();
                    candidate.schema = state.last_good.schema.clone();
                }
            }
        }
        let bundle_rebuilt = !Arc::ptr_eq(&bundle, &current.bundle);
        let mut store = Arc::clone(&current.store);
        if bundle_rebuilt || changed.contains(&Input::Entities) {
            // New policies or a new schema must check the unchanged entities: read
            // them now. Content that changed since it was hashed is a change like any.
            if let Some(path) = entities_unchanged_at.take()
                && let Ok(file) = SourceFile::load(&path)
            {
                if Some(hash_files(std::slice::from_ref(&file))) == current.revisions.entities {
                    reread_entities = Some(file);
                } else {
                    candidate.entities = Some(file);
                    changed.push(Input::Entities);
                }
            }
            let entities_changed = changed.contains(&Input::Entities);
            let source = if entities_changed {
                candidate.entities.as_ref()
            } else {
                reread_entities.as_ref()
            };
            let built = match (source, &self.sources.entities) {
                (None, Some(path)) => Err(PolicyError::Entities {
                    path: path.clone(),
                    message: "cannot be re-read to check it against the new policies and schema"
                        .into(),
                }),
                (source, _) => EntityStore::build(source, bundle.schema.as_ref(), validation),
            };
            match built {
                Ok(s) => store = Arc::new(s),
                Err(e) if changed.contains(&Input::Entities) && !bundle_rebuilt => {
                    failed.push((Input::Entities, e.to_string()));
                    changed.retain(|i| *i != Input::Entities);
                    candidate.entities = state.last_good.entities.clone();
                }
                Err(e) => {
                    // The new schema rejects the entities: the policy change is what fails.
                    let message = format!("entities no longer conform: {e}");
                    for input in [Input::Policies, Input::Schema, Input::Entities] {
                        if changed.contains(&input) {
                            failed.push((input, message.clone()));
                        }
                    }
                    changed.retain(|i| *i == Input::Grants);
                    candidate.policies = state.last_good.policies.clone();
                    candidate.schema = state.last_good.schema.clone();
                    candidate.entities = state.last_good.entities.clone();
                    bundle = Arc::clone(&current.bundle);
                }
            }
        }
        let bundle_rebuilt = !Arc::ptr_eq(&bundle, &current.bundle);
        let store_rebuilt = !Arc::ptr_eq(&store, &current.store);
        let grants = if bundle_rebuilt || changed.contains(&Input::Grants) {
            match &candidate.feed {
                Some(doc) => Arc::new(GrantIndex::build(doc, &bundle)),
                None => Arc::new(GrantIndex::default()),
            }
        } else {
            Arc::clone(&current.grants)
        };
        let slices = if bundle_rebuilt || store_rebuilt {
            Arc::new(Slices::build(&bundle, store.action_entities()))
        } else {
            Arc::clone(&current.slices)
        };

        for (input, message) in &failed {
            if let Some((_, fingerprint)) = observed.iter().find(|(i, _)| i == input) {
                state.failed_fingerprint.insert(*input, fingerprint.clone());
            }
            tracing::error!(input = input.as_str(), error = %message, "reload failed; keeping the last good version");
            self.metrics.reload(*input, false);
            let s = state.status.entry(*input).or_default();
            s.last_attempt = Some(now);
            s.last_error = Some(message.clone());
            s.failures += 1;
        }
        if let Some(reason) = feed_rejection {
            self.metrics.feed_rejected(reason);
        }
        if changed.is_empty() {
            return false;
        }
        let mut revisions = candidate.revisions();
        if !changed.contains(&Input::Entities) {
            revisions.entities.clone_from(&state.entities_revision);
        }
        let snapshot = Snapshot {
            revisions,
            bundle,
            store,
            slices,
            grants,
            generation: current.generation + 1,
            validation,
            feed_deadline: match pass {
                Pass::Fetched { fresh_until, .. } if changed.contains(&Input::Grants) => {
                    Some(fresh_until)
                }
                _ => current.feed_deadline,
            },
            feed_refreshed_at: match pass {
                Pass::Fetched { .. } if changed.contains(&Input::Grants) => Some(now),
                _ => current.feed_refreshed_at,
            },
        };
        if bundle_rebuilt {
            for finding in &snapshot.bundle.findings {
                tracing::warn!(finding = %finding, "validation finding (served anyway)");
            }
        }
        if !Arc::ptr_eq(&snapshot.grants, &current.grants) {
            log_rejections(&snapshot.grants, &self.metrics);
        }
        for input in &changed {
            self.metrics.reload(*input, true);
            let s = state.status.entry(*input).or_default();
            s.revision = revision_of(&snapshot.revisions, *input);
            s.last_reload = Some(now);
            s.last_attempt = Some(now);
            s.last_error = None;
            s.reloads += 1;
            if let (Input::Grants, Pass::Fetched { fresh_until, .. }) = (input, pass) {
                s.last_refresh = Some(now);
                s.fresh_until = Some(fresh_until);
            }
            state.failed_fingerprint.remove(input);
        }
        tracing::info!(
            generation = snapshot.generation,
            inputs = ?changed,
            grants = snapshot.grants.len(),
            "snapshot reloaded"
        );
        self.metrics.observe_snapshot(&snapshot, now);
        state
            .entities_revision
            .clone_from(&snapshot.revisions.entities);
        state.last_good = dehydrated(candidate);
        // Status first: whoever sees the new generation also sees how it got there.
        self.published.store(Arc::new(sorted(&state.status)));
        let old = self.current.swap(Arc::new(snapshot));
        state.retired.push(old);
        true
    }
}

/// `raw` without the entities' text, which the snapshot's store has made its own.
fn dehydrated(mut raw: RawInputs) -> RawInputs {
    if let Some(file) = raw.entities.as_mut() {
        file.text = String::new();
    }
    raw
}

/// Frees retired snapshots no request holds any more, waiting up to a second for
/// requests that still do (they hold a snapshot for microseconds). Stragglers are
/// kept for the next reload; past a few of them the oldest are let go regardless.
/// How long a reload waits for requests to let go of the snapshot it replaced.
const READER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

fn reap(retired: &mut Vec<Arc<Snapshot>>, patience: std::time::Duration) {
    const KEEP_AT_MOST: usize = 4;
    let deadline = std::time::Instant::now() + patience;
    loop {
        retired.retain(|s| Arc::strong_count(s) > 1);
        if retired.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    if retired.len() > KEEP_AT_MOST {
        let excess = retired.len() - KEEP_AT_MOST;
        retired.drain(..excess);
    }
}

fn sorted(status: &HashMap<Input, InputStatus>) -> Vec<(Input, InputStatus)> {
    let mut all: Vec<_> = status.iter().map(|(k, v)| (*k, v.clone())).collect();
    all.sort_by_key(|(k, _)| *k);
    all
}

fn input_path(sources: &Sources, input: Input) -> Option<&Path> {
    match input {
        Input::Policies => Some(&sources.policies),
        Input::Schema => sources.schema.as_deref(),
        Input::Entities => sources.entities.as_deref(),
        Input::Grants => sources.grants.as_deref(),
    }
}

fn revision_of(revisions: &Revisions, input: Input) -> Option<String> {
    match input {
        Input::Policies => Some(revisions.policies.clone()),
        Input::Schema => revisions.schema.clone(),
        Input::Entities => revisions.entities.clone(),
        Input::Grants => revisions.grants.clone(),
    }
}

fn log_rejections(grants: &GrantIndex, metrics: &Metrics) {
    for rejection in &grants.rejected {
        tracing::warn!(reason = rejection.reason.as_str(), "rejected {rejection}");
        metrics.grant_rejected(rejection.reason);
    }
}

/// Watches the inputs' directories and rescans on a timer; reloads until `cancel`.
///
/// Events only signal; the reload re-reads from disk after `debounce` of quiet, so a
/// burst of writes, a rename or a ConfigMap symlink swap all end in one reload.
/// Reloads (and the remote feed's, through [`Store::on_reloader`]) run on one thread
/// `config.nice` nice levels below the request threads; a priority that cannot be set
/// is logged and shown in `/v1/status`, and the reloads run anyway.
///
/// # Errors
/// The watcher cannot be created or a directory cannot be watched, or the reloader
/// thread cannot be spawned.
pub fn spawn_reloader(
    store: Arc<Store>,
    config: ReloadConfig,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    if store.worker.get().is_none() {
        let worker = crate::priority::Worker::spawn("elevate-reload", config.nice)
            .map_err(|e| notify::Error::io(e).add_path(PathBuf::from("elevate-reload thread")))?;
        match worker.outcome() {
            crate::priority::NiceOutcome::Failed { error } => {
                tracing::warn!(error = %error, "reloads run at the request threads' priority");
            }
            outcome => tracing::info!(priority = ?outcome, "reloader thread started"),
        }
        let _ = store.worker.set(Arc::new(worker));
    }
    let filter = EventFilter::new(store.sources());
    let dirs = watch_dirs(store.sources());
    crate::watch::spawn_dirs(
        &dirs,
        move |path| filter.concerns(path),
        config.debounce,
        config.rescan,
        cancel,
        move || {
            store.on_reloader(|store| store.reload(Timestamp::now()));
        },
    )
}

/// Which file events can concern an input: the input files themselves, `.cedar` files
/// and directories below the policy directory, and Kubernetes' `..data` symlink swaps.
/// Everything else in a watched directory (a log file next to the feed, editor swap
/// files) is ignored, so it can neither delay nor trigger reloads.
struct EventFilter {
    files: Vec<PathBuf>,
    policy_dir: Option<PathBuf>,
}

impl EventFilter {
    fn new(sources: &Sources) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let policy_dir = sources
            .policies
            .is_dir()
            .then(|| absolute(&sources.policies));
        let files = [
            Some(&sources.policies),
            sources.schema.as_ref(),
            sources.entities.as_ref(),
            sources.grants.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| absolute(p))
        .collect();
        Self { files, policy_dir }
    }

    fn concerns(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.starts_with("..") {
            return true;
        }
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        self.policy_dir.as_ref().is_some_and(|dir| {
            path.starts_with(dir)
                && !name.starts_with('.')
                && path.extension().is_none_or(|e| e == "cedar")
        })
    }
}

/// Directories to watch: the parent of each file input (files are replaced by rename,
/// so the file itself is the wrong thing to watch) and the policy directory, recursively.
fn watch_dirs(sources: &Sources) -> Vec<(PathBuf, notify::RecursiveMode)> {
    let mut dirs: Vec<(PathBuf, notify::RecursiveMode)> = Vec::new();
    let mut add = |dir: PathBuf, mode| {
        if !dirs.iter().any(|(d, m)| d == &dir && *m == mode) {
            dirs.push((dir, mode));
        }
    };
    if sources.policies.is_dir() {
        add(sources.policies.clone(), notify::RecursiveMode::Recursive);
    }
    let files = [
        Some(&sources.policies),
        sources.schema.as_ref(),
        sources.entities.as_ref(),
        sources.grants.as_ref(),
    ];
    for path in files.into_iter().flatten().filter(|p| !p.is_dir()) {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        add(dir, notify::RecursiveMode::NonRecursive);
    }
    dirs
}

#[cfg(test)]
mod tests;

/// The store's side of a remote feed: apply, refresh, fail, and how each moves the
/// feed deadline. (The fetcher itself is tested end to end in `tests/remote_feed.rs`.)
#[cfg(test)]
mod remote_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::time::Duration;

    use jiff::SignedDuration;

    use super::*;
    use crate::config::{FeedUrl, RemoteFeedConfig};
    use crate::testutil::{feed_of, grant, repo};

    const URL: &str = "http://127.0.0.1:9/v1/grants";

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn shipped_sources() -> Sources {
        Sources {
            policies: repo("policies"),
            schema: Some(repo("schema/elevate.cedarschema")),
            entities: Some(repo("deploy/local/entities.json")),
            grants: None,
            validation: Validation::Strict,
        }
    }

    fn remote_store(now: Timestamp) -> (Store, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let remote = RemoteFeedConfig::new(FeedUrl::parse(URL).unwrap(), Duration::from_secs(60));
        let store =
            Store::open(shipped_sources(), Some(&remote), Arc::clone(&metrics), now).unwrap();
        (store, metrics)
    }

    fn doc(revision: &str) -> Vec<u8> {
        let g = grant(
            "g-1",
            r#"User::"alice""#,
            "FinOpsManager",
            r#"Workspace::"ws-1""#,
            "2026-12-03T17:00:00Z",
            "2026-12-03T19:00:00Z",
        );
        feed_of(&[g])
            .replace(r#""revision":"t""#, &format!(r#""revision":"{revision}""#))
            .into_bytes()
    }

    fn grants_status(store: &Store) -> InputStatus {
        store
            .status()
            .into_iter()
            .find(|(i, _)| *i == Input::Grants)
            .unwrap()
            .1
    }

    fn errors_counted(metrics: &Metrics) -> u64 {
        let needle = "elevate_reload_total{input=\"grants\",outcome=\"error\"} ";
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(needle))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    #[test]
    fn grants_are_suspended_until_the_first_good_document() {
        let start = t("2026-12-03T18:00:00Z");
        let (store, _) = remote_store(start);
        let snap = store.current();
        assert_eq!(
            snap.suspension(start),
            Some(Suspension::WaitingForFirstFeed)
        );
        assert!(
            snap.suspension(start)
                .unwrap()
                .to_string()
                .contains("waiting for the first grant feed")
        );
        let status = grants_status(&store);
        assert_eq!(status.url.as_deref(), Some(URL));
        assert!(
            status
                .last_error
                .unwrap()
                .contains("waiting for the first grant feed")
        );

        let now = start + SignedDuration::from_secs(5);
        assert_eq!(
            store.apply_feed(&doc("1"), now),
            FeedApplied::Changed { generation: 2 }
        );
        let snap = store.current();
        assert_eq!(snap.grants.len(), 1);
        assert_eq!(snap.revisions.grants.as_deref(), Some("1"));
        let deadline = now + SignedDuration::from_secs(60);
        assert_eq!(snap.feed_deadline, Some(deadline));
        assert_eq!(snap.suspension(now), None);
        assert_eq!(
            snap.suspension(deadline - SignedDuration::from_nanos(1)),
            None
        );
        assert_eq!(snap.suspension(deadline), Some(Suspension::Stale));
        let status = grants_status(&store);
        assert_eq!(status.last_error, None);
        assert_eq!(status.last_refresh, Some(now));
        assert_eq!(status.fresh_until, Some(deadline));
        assert_eq!(status.revision.as_deref(), Some("1"));
    }

    #[test]
    fn a_clock_stepped_back_behind_the_last_refresh_suspends_grants_until_the_next() {
        let start = t("2026-12-03T18:00:00Z");
        let (store, _) = remote_store(start);
        store.apply_feed(&doc("1"), start);
        let snap = store.current();
        assert_eq!(snap.feed_refreshed_at, Some(start));
        // Within the tolerance a slew passes; beyond it, the deadline is not trusted.
        let slewed = start - SignedDuration::try_from(CLOCK_STEP_TOLERANCE).unwrap();
        assert_eq!(snap.suspension(slewed), None);
        let stepped = slewed - SignedDuration::from_nanos(1);
        assert_eq!(snap.suspension(stepped), Some(Suspension::ClockStepBack));
        assert!(snap.grants_suspended(start - SignedDuration::from_hours(1)));
        // The next refresh, read by the stepped clock, makes the feed fresh again.
        let back = start - SignedDuration::from_hours(1);
        store.feed_refreshed(back);
        let snap = store.current();
        assert_eq!(snap.feed_refreshed_at, Some(back));
        assert_eq!(snap.suspension(back), None);
        assert_eq!(
            snap.suspension(back + SignedDuration::from_secs(60)),
            Some(Suspension::Stale)
        );
        // A new document refreshes too.
        let later = back + SignedDuration::from_secs(10);
        store.apply_feed(&doc("2"), later);
        assert_eq!(store.current().feed_refreshed_at, Some(later));
    }

    #[test]
    fn a_refresh_shares_everything_and_keeps_the_generation() {
        let start = t("2026-12-03T18:00:00Z");
        let (store, _) = remote_store(start);
        store.apply_feed(&doc("1"), start);
        let before = store.current();

        let later = start + SignedDuration::from_secs(30);
        store.feed_refreshed(later);
        let after = store.current();
        assert_eq!(after.generation, before.generation);
        assert!(Arc::ptr_eq(&after.grants, &before.grants));
        assert!(Arc::ptr_eq(&after.bundle, &before.bundle));
        assert!(Arc::ptr_eq(&after.slices, &before.slices));
        assert_eq!(
            after.feed_deadline,
            Some(later + SignedDuration::from_secs(60))
        );

        // The same document again is a refresh too, not a rebuild.
        let again = later + SignedDuration::from_secs(30);
        assert_eq!(store.apply_feed(&doc("1"), again), FeedApplied::Unchanged);
        let after = store.current();
        assert_eq!(after.generation, before.generation);
        assert!(Arc::ptr_eq(&after.grants, &before.grants));
        assert_eq!(
            after.feed_deadline,
            Some(again + SignedDuration::from_secs(60))
        );
    }

    #[test]
    fn a_bad_document_or_a_failed_fetch_keeps_the_grants_and_does_not_refresh() {
        let start = t("2026-12-03T18:00:00Z");
        let (store, metrics) = remote_store(start);
        store.feed_failed("GET x: connection refused", start);
        let message = grants_status(&store).last_error.unwrap();
        assert!(
            message.contains("waiting for the first grant feed"),
            "{message}"
        );
        assert!(message.contains("connection refused"), "{message}");
        assert_eq!(errors_counted(&metrics), 1);

        store.apply_feed(&doc("1"), start);
        let good = store.current();
        let later = start + SignedDuration::from_secs(10);
        assert_eq!(store.apply_feed(b"{not json", later), FeedApplied::Rejected);
        assert_eq!(store.apply_feed(b"{not json", later), FeedApplied::Rejected);
        assert_eq!(
            errors_counted(&metrics),
            2,
            "the same bad document counts once"
        );
        let snap = store.current();
        assert!(Arc::ptr_eq(&snap, &good), "nothing swapped");
        let message = grants_status(&store).last_error.unwrap();
        assert!(
            message.contains("not valid JSON") && message.contains(URL),
            "{message}"
        );

        store.feed_failed("GET x: HTTP 500", later);
        assert_eq!(errors_counted(&metrics), 3);
        assert_eq!(store.current().feed_deadline, good.feed_deadline);
        assert_eq!(
            grants_status(&store).last_error.as_deref(),
            Some("GET x: HTTP 500")
        );

        // Recovery clears the error.
        store.feed_refreshed(later);
        assert_eq!(grants_status(&store).last_error, None);
    }

    #[test]
    fn a_file_reload_keeps_the_remote_grants_and_their_deadline() {
        let start = t("2026-12-03T18:00:00Z");
        let (store, _) = remote_store(start);
        store.apply_feed(&doc("1"), start);
        let before = store.current();
        assert!(!store.reload(start + SignedDuration::from_secs(1)));
        let after = store.current();
        assert!(Arc::ptr_eq(&after, &before));
        assert_eq!(
            grants_status(&store).last_attempt,
            Some(start),
            "a file pass does not touch the feed"
        );
    }

    #[test]
    fn a_feed_file_and_a_url_together_are_refused() {
        let mut sources = shipped_sources();
        sources.grants = Some(repo("deploy/local/grants.json"));
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let remote = RemoteFeedConfig::new(FeedUrl::parse(URL).unwrap(), Duration::from_secs(60));
        let err = Store::open(sources, Some(&remote), metrics, Timestamp::now()).unwrap_err();
        assert!(matches!(err, LoadError::TwoFeeds { .. }), "{err}");
    }
}
