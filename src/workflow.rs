//! The elevation workflow: a request for a role, in a scope, for a bounded time, with
//! a reason; approvals up to the role's quorum; the grant; its end; and the grant
//! feed every sidecar follows.
//!
//! ```text
//!            approve (quorum met)              now >= expires_at
//! pending ─────────────────────────> approved ───────────────────> expired
//!    │ deny        -> denied            │ revoke      -> revoked
//!    │ cancel      -> cancelled         │ relinquish  -> relinquished
//!    │ now >= decide_by -> lapsed       │ extend      -> a new pending request whose
//!                                       │                grant starts at expires_at
//! ```
//!
//! Cedar governs every command: the workflow asks the same engine as every platform
//! call ([`crate::engine::decide`] on its snapshot) whether the actor may do the
//! action (`requestElevation`, `approveElevation`, …) on the request as an
//! `ElevationRequest` resource (see `authz.rs` and `policies/workflow.cedar`). A Deny
//! is an error naming the forbids that decided it, or saying that no policy permits
//! it. The workflow itself checks only structure: the role and scope exist, the
//! request is in the right state, the quorum; and, as a backstop should the policies
//! be edited, the duration cap and the ban on self-approval.
//!
//! # Source of truth
//!
//! Every state change is one event in the [`EventLog`], fsynced before the command
//! returns. [`Workflow::open`] rebuilds the state by replaying the log, through the
//! same code a live command applies its event with (see `change.rs`); there is no
//! other copy of the state.
//!
//! # Time
//!
//! Commands and queries take `now`. Lapse and expiry are derived from it exactly: a
//! request is lapsed from `decide_by` on, a grant expired from `expires_at` on (so a
//! grant is approved, and in force once started, iff `now < expires_at`). [`tick`]
//! only records those changes in the log (for the audit trail, and so the feed
//! revision moves); no state depends on when it ran.
//!
//! The log's times never go backwards: a command whose `now` is before the last
//! event is taken to happen at that event's time, so a clock stepping back cannot
//! reorder history.
//!
//! [`tick`]: Workflow::tick

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{EntityUid, PolicyId};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use crate::eventlog::{Event, EventLog, EventLogError, Tail};
use crate::policy::Role;
use crate::request::RequestError;
use crate::snapshot::Snapshot;

mod authz;
mod change;
pub mod service;

pub use authz::RESOURCE_TYPE;
use authz::{Resource, Verdict};
use change::{Approved, Boundary, Change, Ended, Note, Requested};

/// How long a request waits for a decision before it lapses.
pub const DEFAULT_REQUEST_TTL: SignedDuration = SignedDuration::from_hours(24);

/// The actor of the events the workflow records itself (lapse, expiry).
pub const SYSTEM_ACTOR: &str = "elevate";

/// The longest reason, ticket, `on_behalf_of` or comment, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// The workflow's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A pending request lapses this long after it was made.
    pub request_ttl: SignedDuration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_ttl: DEFAULT_REQUEST_TTL,
        }
    }
}

/// Where a request is, at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    /// The grant exists: in force from `not_before`, until just before `expires_at`.
    Approved,
    Expired,
    Denied,
    Cancelled,
    Lapsed,
    Revoked,
    Relinquished,
}

impl State {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Expired,
        Self::Denied,
        Self::Cancelled,
        Self::Lapsed,
        Self::Revoked,
        Self::Relinquished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Expired => "expired",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Lapsed => "lapsed",
            Self::Revoked => "revoked",
            Self::Relinquished => "relinquished",
        }
    }

    /// Nothing more can happen to a request in a final state.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Approved)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown state `{text}`, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A workflow command; `action` is the Cedar action it is decided as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Request,
    Approve,
    Deny,
    Cancel,
    Revoke,
    Relinquish,
    Extend,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Cancel => "cancel",
            Self::Revoke => "revoke",
            Self::Relinquish => "relinquish",
            Self::Extend => "extend",
        }
    }

    /// The Cedar action id. An extension is a request.
    pub fn action(self) -> &'static str {
        match self {
            Self::Request | Self::Extend => "requestElevation",
            Self::Approve => "approveElevation",
            Self::Deny => "denyElevation",
            Self::Cancel => "cancelElevation",
            Self::Revoke => "revokeElevation",
            Self::Relinquish => "relinquishElevation",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a requester asks for. The grant goes to the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The elevation role: a template id such as `FinOpsManager`.
    pub role: String,
    /// A `Workspace` or the `Organization`, as the role's `@scope_types` allow.
    pub scope: EntityUid,
    /// A positive whole number of seconds, at most the role's `@max_duration`.
    pub duration: SignedDuration,
    pub reason: String,
    /// A change reference (ticket id, plan digest) that the grant keeps.
    pub ticket: Option<String>,
    /// The human or pipeline run the requester (typically an API key) acts for.
    pub on_behalf_of: Option<String>,
    /// The earliest start; the grant starts at the final approval if that is later.
    pub not_before: Option<Timestamp>,
}

/// More time for a grant: a new request whose grant starts where the old one ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendSpec {
    /// The extra time, at most the role's `@max_duration`.
    pub duration: SignedDuration,
    pub reason: String,
    /// Defaults to the extended grant's ticket.
    pub ticket: Option<String>,
}

/// One approver's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    #[serde(serialize_with = "uid_text")]
    pub by: EntityUid,
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The grant of an approved request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantWindow {
    /// The grant id in the feed: `g-N` for request `r-N`.
    pub id: String,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
}

/// How a request ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ending {
    pub state: State,
    /// The actor: a principal, or [`SYSTEM_ACTOR`] for a lapse or expiry.
    pub by: String,
    /// When it ended: the exact boundary for a lapse or expiry.
    pub at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One elevation request and, once approved, its grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Elevation {
    /// `r-1`, `r-2`, … in the order requested.
    pub id: String,
    /// The requester, who also gets the grant.
    #[serde(serialize_with = "uid_text")]
    pub principal: EntityUid,
    pub role: String,
    #[serde(serialize_with = "uid_text")]
    pub scope: EntityUid,
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: SignedDuration,
    pub reason: String,
    pub ticket: Option<String>,
    pub on_behalf_of: Option<String>,
    /// The requested earliest start (for an extension: the end of the grant it extends).
    pub not_before: Option<Timestamp>,
    /// For an extension: the id of the request whose grant it extends.
    pub extends: Option<String>,
    pub requested_at: Timestamp,
    /// It lapses at this instant unless decided before. For an extension, never after
    /// the end of the grant it extends.
    pub decide_by: Timestamp,
    /// The role's quorum when requested (the one that counts is the policies' at
    /// each approval).
    pub approvals_required: u32,
    /// Distinct approvers, in order.
    pub approvals: Vec<Approval>,
    /// Set by the final approval.
    pub grant: Option<GrantWindow>,
    /// Set when it was denied, cancelled, revoked or relinquished, or when `tick`
    /// recorded its lapse or expiry.
    pub ended: Option<Ending>,
    /// Extensions of this request's grant, in order.
    pub extended_by: Vec<String>,
}

impl Elevation {
    /// The state at `now`.
    pub fn state(&self, now: Timestamp) -> State {
        if let Some(ending) = &self.ended {
            return ending.state;
        }
        match &self.grant {
            None if now >= self.decide_by => State::Lapsed,
            None => State::Pending,
            Some(grant) if now >= grant.expires_at => State::Expired,
            Some(_) => State::Approved,
        }
    }

    /// Whether its grant is in force at `now`: approved and `not_before <= now < expires_at`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.state(now) == State::Approved
            && self.grant.as_ref().is_some_and(|g| g.not_before <= now)
    }

    /// The request as JSON, with its `state` at `now`, for the API.
    pub fn to_json(&self, now: Timestamp) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("state".into(), json!(self.state(now)));
        }
        value
    }

    fn subject(&self) -> String {
        format!("request `{}`", self.id)
    }
}

fn uid_text<S: Serializer>(uid: &EntityUid, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(uid)
}

fn seconds<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.as_secs())
}

/// Which requests [`Workflow::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<State>,
    pub principal: Option<EntityUid>,
}

/// What kind of failure an error is, for mapping to a status or exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such request.
    NotFound,
    /// The request is not in a state that allows the command.
    Conflict,
    /// Policy (or a backstop of it) refuses the actor.
    Forbidden,
    /// The command itself is malformed or asks for something that does not exist.
    Invalid,
    /// The log or the state is broken: not the caller's fault.
    Internal,
}

/// Why a workflow command (or opening the workflow) failed. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("event log seq {seq} cannot be applied: {message}")]
    Replay { seq: u64, message: String },
    #[error("internal error: the change to `{id}` does not fit the state: {message}")]
    Inconsistent { id: String, message: String },
    #[error("no elevation request `{id}`")]
    NotFound { id: String },
    #[error("cannot {command} request `{id}`: it is {state}")]
    State {
        id: String,
        command: Command,
        state: State,
    },
    #[error("`{actor}` may not {command} {subject}: forbidden by {}", quoted(.policies))]
    Forbidden {
        actor: String,
        command: Command,
        subject: String,
        policies: Vec<String>,
    },
    #[error("`{actor}` may not {command} {subject}: no policy permits it{}", because(.errors))]
    NotPermitted {
        actor: String,
        command: Command,
        subject: String,
        errors: Vec<String>,
    },
    #[error("`{actor}` may not approve request `{id}`: nobody approves their own request")]
    SelfApproval { actor: String, id: String },
    #[error("`{actor}` approved request `{id}` already; a quorum counts distinct approvers")]
    RepeatApproval { actor: String, id: String },
    #[error("`{actor}` may not approve: only a `User` approves")]
    NotAPerson { actor: String },
    #[error("`{actor}` may not extend request `{id}`: its grant belongs to `{principal}`")]
    NotGrantee {
        actor: String,
        id: String,
        principal: String,
    },
    #[error("the grant of request `{id}` is already being extended by `{by}`")]
    AlreadyExtended { id: String, by: String },
    #[error("role `{role}` is not an elevation template in the policies")]
    UnknownRole { role: String },
    #[error("role `{role}` cannot be scoped to `{scope}`")]
    ScopeType { role: String, scope: String },
    #[error("`{uid}` is not in the entity data")]
    UnknownEntity { uid: String },
    #[error("a duration must be a positive whole number of seconds, not {duration:#}")]
    Duration { duration: SignedDuration },
    #[error("{duration:#} is longer than role `{role}` allows ({max:#})")]
    TooLong {
        role: String,
        duration: SignedDuration,
        max: SignedDuration,
    },
    #[error(
        "a grant starting at {start} for {duration:#} ends past the last representable instant"
    )]
    Window {
        start: Timestamp,
        duration: SignedDuration,
    },
    #[error("`{field}` {problem}")]
    Text {
        field: &'static str,
        problem: String,
    },
    #[error("grant id `{id}` is also a policy id; sidecars would reject the grant")]
    GrantIdTaken { id: String },
    #[error("cannot ask Cedar whether `{actor}` may {command}: {source}")]
    Query {
        actor: String,
        command: Command,
        #[source]
        source: RequestError,
    },
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn because(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (evaluation errors: {})", errors.join("; "))
    }
}

impl WorkflowError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::State { .. } | Self::AlreadyExtended { .. } => ErrorKind::Conflict,
            Self::Forbidden { .. }
            | Self::NotPermitted { .. }
            | Self::SelfApproval { .. }
            | Self::RepeatApproval { .. }
            | Self::NotAPerson { .. }
            | Self::NotGrantee { .. } => ErrorKind::Forbidden,
            Self::UnknownRole { .. }
            | Self::ScopeType { .. }
            | Self::UnknownEntity { .. }
            | Self::Duration { .. }
            | Self::TooLong { .. }
            | Self::Window { .. }
            | Self::Text { .. }
            | Self::Query { .. } => ErrorKind::Invalid,
            Self::Log(_)
            | Self::Replay { .. }
            | Self::Inconsistent { .. }
            | Self::GrantIdTaken { .. } => ErrorKind::Internal,
        }
    }
}

/// The workflow: its state, rebuilt from the event log it owns, and the snapshot
/// its commands are decided against.
///
/// Commands take `&mut self`; a server shares it behind a `Mutex` (a command holds it
/// across its fsync, which serializes appends as the log requires).
#[derive(Debug)]
pub struct Workflow {
    log: EventLog,
    /// Policies, schema and entities for deciding commands; replaced on reload.
    snapshot: Arc<Snapshot>,
    config: Config,
    /// Every request, in the order requested.
    requests: Vec<Elevation>,
    /// Request id to position in `requests`.
    index: HashMap<String, usize>,
    /// Positions of requests without a recorded end: all `tick` and `feed` look at.
    open: BTreeSet<usize>,
    /// The time of the last event: the floor for a command's `now`.
    clock: Option<Timestamp>,
    repaired: Option<Tail>,
    /// Every event, in seq order, for the audit API (seq `n` at position `n - 1`).
    events: Vec<Event>,
}

/// A role's rules, copied out of the snapshot.
struct Rules {
    max_duration: SignedDuration,
    approvals: u32,
}

impl Workflow {
    /// Opens (or creates) the event log at `path` and rebuilds the state from it.
    ///
    /// # Errors
    /// The log cannot be opened or is broken ([`WorkflowError::Log`]), or an event
    /// does not fit the state built from the ones before ([`WorkflowError::Replay`]).
    pub fn open(
        path: impl AsRef<Path>,
        snapshot: Arc<Snapshot>,
        config: Config,
    ) -> Result<Self, WorkflowError> {
        let opened = EventLog::open(path)?;
        let mut workflow = Self {
            log: opened.log,
            snapshot,
            config,
            requests: Vec::new(),
            index: HashMap::new(),
            open: BTreeSet::new(),
            clock: None,
            repaired: opened.repaired,
            events: Vec::new(),
        };
        for event in &opened.events {
            workflow.replay(event)?;
        }
        workflow.events = opened.events;
        Ok(workflow)
    }

    fn replay(&mut self, event: &Event) -> Result<(), WorkflowError> {
        let fail = |message| WorkflowError::Replay {
            seq: event.seq,
            message,
        };
        let change = Change::decode(&event.kind, &event.data).map_err(fail)?;
        let step = self
            .plan(&event.actor, &event.request_id, event.time, change)
            .map_err(fail)?;
        self.execute(step);
        self.advance_clock(event.time);
        Ok(())
    }

    /// Records `change` (one fsynced event) and applies it, exactly as a replay would.
    fn commit(
        &mut self,
        actor: &str,
        id: &str,
        now: Timestamp,
        change: &Change,
    ) -> Result<Event, WorkflowError> {
        let inconsistent = |message| WorkflowError::Inconsistent {
            id: id.to_owned(),
            message,
        };
        let (kind, data) = change.encode().map_err(inconsistent)?;
        // Plan what a replay will read back, before anything is written.
        let decoded = Change::decode(&kind, &data).map_err(inconsistent)?;
        let step = self.plan(actor, id, now, decoded).map_err(inconsistent)?;
        let event = self.log.append(actor, id, &kind, data, now)?;
        self.execute(step);
        self.advance_clock(event.time);
        self.events.push(event.clone());
        Ok(event)
    }

    fn advance_clock(&mut self, time: Timestamp) {
        self.clock = Some(self.clock.map_or(time, |c| c.max(time)));
    }

    /// `now`, but never before the last event.
    fn effective(&self, now: Timestamp) -> Timestamp {
        self.clock.map_or(now, |c| c.max(now))
    }

    // ------------------------------------------------------------- commands

    /// `actor` asks for `spec.role` on `spec.scope` for themselves.
    ///
    /// # Errors
    /// Malformed or unknown input, a Deny from the policies, or a log failure.
    pub fn request(
        &mut self,
        actor: &EntityUid,
        spec: RequestSpec,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        let now = self.effective(now);
        check_text("reason", Some(&spec.reason))?;
        check_text("ticket", spec.ticket.as_deref())?;
        check_text("on_behalf_of", spec.on_behalf_of.as_deref())?;
        let duration_seconds = whole_seconds(spec.duration)?;
        let rules = self.rules(&spec.role)?;
        self.check_scope(&spec.role, &spec.scope)?;
        self.check_known(actor)?;
        self.check_known(&spec.scope)?;
        if let Some(start) = spec.not_before {
            window_end(start, spec.duration)?;
        }
        let id = format!("r-{}", self.requests.len().saturating_add(1));
        let resource = Resource {
            id: &id,
            principal: actor,
            role: &spec.role,
            scope: &spec.scope,
            duration_seconds,
            max_duration_seconds: rules.max_duration.as_secs(),
            approvals_required: rules.approvals,
            approvals: Vec::new(),
            reason: &spec.reason,
            ticket: spec.ticket.as_deref(),
            on_behalf_of: spec.on_behalf_of.as_deref(),
            extends: None,
        };
        let subject = format!("`{}` on `{}`", spec.role, spec.scope);
        self.authorize(actor, Command::Request, &resource, subject, now)?;
        rules.check_duration(&spec.role, spec.duration)?;
        let change = Change::Requested(Requested {
            principal: actor.to_string(),
            role: spec.role,
            scope: spec.scope.to_string(),
            duration_seconds,
            reason: spec.reason,
            ticket: spec.ticket,
            on_behalf_of: spec.on_behalf_of,
            not_before: spec.not_before,
            extends: None,
            decide_by: now
                .checked_add(self.config.request_ttl)
                .unwrap_or(Timestamp::MAX),
            approvals_required: rules.approvals,
        });
        self.commit(&actor.to_string(), &id, now, &change)?;
        self.cloned(&id)
    }

    /// `actor` approves request `id`; the approval that meets the role's quorum
    /// creates the grant, in force from `max(not_before, now)` for the duration.
    ///
    /// # Errors
    /// No such request, not pending at `now`, a Deny from the policies (including
    /// self-approval and approving twice), or a log failure.
    pub fn approve(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        let now = self.effective(now);
        check_text("comment", comment.as_deref())?;
        let e = self.find(id)?;
        expect(e, Command::Approve, now, State::Pending)?;
        let rules = self.rules(&e.role)?;
        self.authorize(
            actor,
            Command::Approve,
            &e.resource(&rules),
            e.subject(),
            now,
        )?;
        // Backstops: these hold whatever the policies say.
        let acting_for = e
            .on_behalf_of
            .as_deref()
            .and_then(|text| EntityUid::from_str(text.trim()).ok());
        if *actor == e.principal || acting_for.as_ref() == Some(actor) {
            return Err(WorkflowError::SelfApproval {
                actor: actor.to_string(),
                id: e.id.clone(),
            });
        }
        if actor.type_name().basename() != "User" {
            return Err(WorkflowError::NotAPerson {
                actor: actor.to_string(),
            });
        }
        if e.approvals.iter().any(|a| a.by == *actor) {
            return Err(WorkflowError::RepeatApproval {
                actor: actor.to_string(),
                id: e.id.clone(),
            });
        }
        rules.check_duration(&e.role, e.duration)?;
        let count = e.approvals.len().saturating_add(1);
        let change = if count >= usize::try_from(rules.approvals).unwrap_or(usize::MAX) {
            let start = e.not_before.map_or(now, |nb| nb.max(now));
            let expires_at = window_end(start, e.duration)?;
            let grant_id = grant_id_of(&e.id);
            if self.snapshot.bundle.ids.contains(&grant_id) {
                return Err(WorkflowError::GrantIdTaken { id: grant_id });
            }
            Change::Approved(Approved {
                grant_id,
                not_before: start,
                expires_at,
                approvals_required: rules.approvals,
                comment,
            })
        } else {
            Change::Approval(Note { comment })
        };
        let id = e.id.clone();
        self.commit(&actor.to_string(), &id, now, &change)?;
        self.cloned(&id)
    }

    /// `actor` denies pending request `id`.
    ///
    /// # Errors
    /// No such request, not pending at `now`, a Deny from the policies, or a log failure.
    pub fn deny(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        self.end_pending(actor, id, comment, now, Command::Deny)
    }

    /// The requester withdraws pending request `id`.
    ///
    /// # Errors
    /// No such request, not pending at `now`, a Deny from the policies, or a log failure.
    pub fn cancel(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        self.end_pending(actor, id, comment, now, Command::Cancel)
    }

    /// `actor` (an approver or an admin) ends the grant of request `id` now, with
    /// every approved extension of it.
    ///
    /// # Errors
    /// No such request, not approved at `now`, a Deny from the policies, or a log failure.
    pub fn revoke(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        self.end_grant(actor, id, comment, now, Command::Revoke)
    }

    /// The grantee gives up the grant of request `id` early, with every approved
    /// extension of it.
    ///
    /// # Errors
    /// No such request, not approved at `now`, a Deny from the policies, or a log failure.
    pub fn relinquish(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        self.end_grant(actor, id, comment, now, Command::Relinquish)
    }

    /// The grantee of request `id` asks for more time: a new request for the same
    /// role and scope whose grant, once approved, starts exactly when the old one
    /// ends. It lapses if not approved by then.
    ///
    /// # Errors
    /// No such request, its grant not approved at `now` or already being extended,
    /// `actor` not its grantee, malformed input, a Deny from the policies, or a log
    /// failure.
    pub fn extend(
        &mut self,
        actor: &EntityUid,
        id: &str,
        spec: ExtendSpec,
        now: Timestamp,
    ) -> Result<Elevation, WorkflowError> {
        let now = self.effective(now);
        check_text("reason", Some(&spec.reason))?;
        check_text("ticket", spec.ticket.as_deref())?;
        let duration_seconds = whole_seconds(spec.duration)?;
        let target = self.find(id)?;
        expect(target, Command::Extend, now, State::Approved)?;
        let Some(end) = target.grant.as_ref().map(|g| g.expires_at) else {
            return Err(self.inconsistent(&target.id, "an approved request without a grant"));
        };
        if *actor != target.principal {
            return Err(WorkflowError::NotGrantee {
                actor: actor.to_string(),
                id: target.id.clone(),
                principal: target.principal.to_string(),
            });
        }
        if let Some(by) = target.extended_by.iter().find(|x| {
            self.find(x)
                .is_ok_and(|x| matches!(x.state(now), State::Pending | State::Approved))
        }) {
            return Err(WorkflowError::AlreadyExtended {
                id: target.id.clone(),
                by: by.clone(),
            });
        }
        let rules = self.rules(&target.role)?;
        window_end(end, spec.duration)?;
        let new_id = format!("r-{}", self.requests.len().saturating_add(1));
        let ticket = spec.ticket.or_else(|| target.ticket.clone());
        let resource = Resource {
            id: &new_id,
            principal: actor,
            role: &target.role,
            scope: &target.scope,
            duration_seconds,
            max_duration_seconds: rules.max_duration.as_secs(),
            approvals_required: rules.approvals,
            approvals: Vec::new(),
            reason: &spec.reason,
            ticket: ticket.as_deref(),
            on_behalf_of: target.on_behalf_of.as_deref(),
            extends: Some(&target.id),
        };
        let subject = format!("more time for request `{}`", target.id);
        self.authorize(actor, Command::Extend, &resource, subject, now)?;
        rules.check_duration(&target.role, spec.duration)?;
        let change = Change::Requested(Requested {
            principal: actor.to_string(),
            role: target.role.clone(),
            scope: target.scope.to_string(),
            duration_seconds,
            reason: spec.reason,
            ticket,
            on_behalf_of: target.on_behalf_of.clone(),
            not_before: Some(end),
            extends: Some(target.id.clone()),
            decide_by: now
                .checked_add(self.config.request_ttl)
                .unwrap_or(Timestamp::MAX)
                .min(end),
            approvals_required: rules.approvals,
        });
        self.commit(&actor.to_string(), &new_id, now, &change)?;
        self.cloned(&new_id)
    }

    /// Records every lapse and expiry due at `now` (one event each, in request
    /// order) and returns the events. States never wait for this: they are derived
    /// from time; this puts the changes in the audit trail and moves the feed revision.
    ///
    /// # Errors
    /// A log failure; the events before it are recorded.
    pub fn tick(&mut self, now: Timestamp) -> Result<Vec<Event>, WorkflowError> {
        let now = self.effective(now);
        let due: Vec<(String, Change)> = self
            .open
            .iter()
            .filter_map(|p| self.requests.get(*p))
            .filter_map(|e| match (e.state(now), &e.grant) {
                (State::Lapsed, _) => {
                    Some((e.id.clone(), Change::Lapsed(Boundary { at: e.decide_by })))
                }
                (State::Expired, Some(grant)) => Some((
                    e.id.clone(),
                    Change::Expired(Boundary {
                        at: grant.expires_at,
                    }),
                )),
                _ => None,
            })
            .collect();
        let mut events = Vec::with_capacity(due.len());
        for (id, change) in due {
            events.push(self.commit(SYSTEM_ACTOR, &id, now, &change)?);
        }
        Ok(events)
    }

    fn end_pending(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
        command: Command,
    ) -> Result<Elevation, WorkflowError> {
        let now = self.effective(now);
        check_text("comment", comment.as_deref())?;
        let e = self.find(id)?;
        expect(e, command, now, State::Pending)?;
        let rules = self.rules_or_none(&e.role);
        self.authorize(actor, command, &e.resource(&rules), e.subject(), now)?;
        let note = Note { comment };
        let change = match command {
            Command::Cancel => Change::Cancelled(note),
            _ => Change::Denied(note),
        };
        let id = e.id.clone();
        self.commit(&actor.to_string(), &id, now, &change)?;
        self.cloned(&id)
    }

    fn end_grant(
        &mut self,
        actor: &EntityUid,
        id: &str,
        comment: Option<String>,
        now: Timestamp,
        command: Command,
    ) -> Result<Elevation, WorkflowError> {
        let now = self.effective(now);
        check_text("comment", comment.as_deref())?;
        let e = self.find(id)?;
        expect(e, command, now, State::Approved)?;
        let rules = self.rules_or_none(&e.role);
        self.authorize(actor, command, &e.resource(&rules), e.subject(), now)?;
        let ended = Ended {
            comment,
            with: self.approved_extensions(e, now),
        };
        let change = match command {
            Command::Relinquish => Change::Relinquished(ended),
            _ => Change::Revoked(ended),
        };
        let id = e.id.clone();
        self.commit(&actor.to_string(), &id, now, &change)?;
        self.cloned(&id)
    }

    /// The approved extensions of `e`'s grant, and theirs, that have not ended.
    fn approved_extensions(&self, e: &Elevation, now: Timestamp) -> Vec<String> {
        let mut found = Vec::new();
        let mut queue: Vec<&Elevation> = vec![e];
        while let Some(next) = queue.pop() {
            for x in next.extended_by.iter().filter_map(|x| self.find(x).ok()) {
                if x.state(now) == State::Approved && !found.contains(&x.id) {
                    found.push(x.id.clone());
                    queue.push(x);
                }
            }
        }
        found
    }

    fn authorize(
        &self,
        actor: &EntityUid,
        command: Command,
        resource: &Resource<'_>,
        subject: String,
        now: Timestamp,
    ) -> Result<(), WorkflowError> {
        self.check_known(actor)?;
        let verdict = authz::decide(&self.snapshot, actor, command.action(), resource, now)
            .map_err(|source| WorkflowError::Query {
                actor: actor.to_string(),
                command,
                source,
            })?;
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Forbidden(policies) => Err(WorkflowError::Forbidden {
                actor: actor.to_string(),
                command,
                subject,
                policies,
            }),
            Verdict::NotPermitted(errors) => Err(WorkflowError::NotPermitted {
                actor: actor.to_string(),
                command,
                subject,
                errors,
            }),
        }
    }

    // -------------------------------------------------------------- queries

    /// The request with this id; a grant id (`g-N`) finds its request too.
    pub fn get(&self, id: &str) -> Option<&Elevation> {
        self.find(id).ok()
    }

    /// The requests that match `filter` at `now`, in the order requested.
    pub fn list(&self, filter: &Filter, now: Timestamp) -> Vec<&Elevation> {
        self.requests
            .iter()
            .filter(|e| filter.state.is_none_or(|s| e.state(now) == s))
            .filter(|e| filter.principal.as_ref().is_none_or(|p| e.principal == *p))
            .collect()
    }

    /// The grant feed at `now` (the contract in DESIGN.md): every grant approved and
    /// not yet expired, revoked or relinquished, whether started or not.
    ///
    /// `revision` is the last event's seq. Within one revision the document changes
    /// only by dropping grants that expired meanwhile, which no sidecar honours
    /// anyway; [`Workflow::tick`] records each expiry, which moves the revision.
    pub fn feed(&self, now: Timestamp) -> Value {
        let grants: Vec<Value> = self
            .open
            .iter()
            .filter_map(|p| self.requests.get(*p))
            .filter(|e| e.state(now) == State::Approved)
            .filter_map(|e| {
                let grant = e.grant.as_ref()?;
                let mut entry = json!({
                    "id": grant.id,
                    "principal": e.principal.to_string(),
                    "role": e.role,
                    "scope": e.scope.to_string(),
                    "not_before": grant.not_before,
                    "expires_at": grant.expires_at,
                    "approved_by": e.approvals.iter().map(|a| a.by.to_string()).collect::<Vec<_>>(),
                    "requested_by": e.principal.to_string(),
                    "reason": e.reason,
                    "request_id": e.id,
                });
                if let Value::Object(map) = &mut entry {
                    if let Some(ticket) = &e.ticket {
                        map.insert("ticket".into(), json!(ticket));
                    }
                    if let Some(on_behalf_of) = &e.on_behalf_of {
                        map.insert("on_behalf_of".into(), json!(on_behalf_of));
                    }
                }
                Some(entry)
            })
            .collect();
        json!({
            "revision": self.log.last_seq().to_string(),
            "generated_at": now,
            "grants": grants,
        })
    }

    /// The events after seq `after`, at most `limit` of them, in seq order.
    pub fn events_after(&self, after: u64, limit: usize) -> &[Event] {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        let rest = self.events.get(start..).unwrap_or_default();
        rest.get(..limit.min(rest.len())).unwrap_or_default()
    }

    /// The earliest instant after `now` at which a request lapses or a grant starts or
    /// ends: when `tick` next has something to record, or the feed's in-force set moves.
    pub fn next_boundary(&self, now: Timestamp) -> Option<Timestamp> {
        self.open
            .iter()
            .filter_map(|p| self.requests.get(*p))
            .flat_map(|e| match &e.grant {
                None => [Some(e.decide_by), None],
                Some(g) => [Some(g.not_before), Some(g.expires_at)],
            })
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    /// The hash of the last event ([`crate::eventlog::GENESIS`] for an empty log):
    /// with the seq, it names the whole history, since the events are chained.
    pub fn last_hash(&self) -> &str {
        self.log.last_hash()
    }

    /// The seq of the last event: the feed revision.
    pub fn last_seq(&self) -> u64 {
        self.log.last_seq()
    }

    /// What opening repaired at the end of the log, if anything.
    pub fn repaired(&self) -> Option<Tail> {
        self.repaired
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Decides later commands against `snapshot` (after a policy or entity reload).
    /// Recorded history stays as it is.
    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
    }

    // -------------------------------------------------------------- helpers

    fn find(&self, id: &str) -> Result<&Elevation, WorkflowError> {
        let by_request = self.index.get(id).and_then(|p| self.requests.get(*p));
        let by_grant = || {
            let request = format!("r-{}", id.strip_prefix("g-")?);
            self.index
                .get(&request)
                .and_then(|p| self.requests.get(*p))
                .filter(|e| e.grant.as_ref().is_some_and(|g| g.id == id))
        };
        by_request
            .or_else(by_grant)
            .ok_or_else(|| WorkflowError::NotFound { id: id.to_owned() })
    }

    fn cloned(&self, id: &str) -> Result<Elevation, WorkflowError> {
        self.find(id).cloned()
    }

    fn inconsistent(&self, id: &str, message: &str) -> WorkflowError {
        WorkflowError::Inconsistent {
            id: id.to_owned(),
            message: message.to_owned(),
        }
    }

    fn role(&self, role: &str) -> Option<&Role> {
        self.snapshot.bundle.roles.get(&PolicyId::new(role))
    }

    fn rules(&self, role: &str) -> Result<Rules, WorkflowError> {
        let role = self.role(role).ok_or_else(|| WorkflowError::UnknownRole {
            role: role.to_owned(),
        })?;
        Ok(Rules {
            max_duration: role.max_duration,
            approvals: role.approvals,
        })
    }

    /// The role's rules, or none at all for a role since removed from the policies:
    /// denying, cancelling or ending such a request must still be possible.
    fn rules_or_none(&self, role: &str) -> Rules {
        self.rules(role).unwrap_or(Rules {
            max_duration: SignedDuration::ZERO,
            approvals: 0,
        })
    }

    fn check_scope(&self, role: &str, scope: &EntityUid) -> Result<(), WorkflowError> {
        let ok = match self.role(role).and_then(|r| r.scope_types.as_ref()) {
            Some(types) => types.iter().any(|t| t == scope.type_name()),
            None => self.snapshot.bundle.declares(scope.type_name()),
        };
        if ok {
            Ok(())
        } else {
            Err(WorkflowError::ScopeType {
                role: role.to_owned(),
                scope: scope.to_string(),
            })
        }
    }

    fn check_known(&self, uid: &EntityUid) -> Result<(), WorkflowError> {
        if self.snapshot.store.contains(uid) {
            Ok(())
        } else {
            Err(WorkflowError::UnknownEntity {
                uid: uid.to_string(),
            })
        }
    }
}

impl Elevation {
    /// The request as the resource of a decision, with the approvals so far.
    fn resource<'a>(&'a self, rules: &Rules) -> Resource<'a> {
        Resource {
            id: &self.id,
            principal: &self.principal,
            role: &self.role,
            scope: &self.scope,
            duration_seconds: self.duration.as_secs(),
            max_duration_seconds: rules.max_duration.as_secs(),
            approvals_required: rules.approvals,
            approvals: self.approvals.iter().map(|a| &a.by).collect(),
            reason: &self.reason,
            ticket: self.ticket.as_deref(),
            on_behalf_of: self.on_behalf_of.as_deref(),
            extends: self.extends.as_deref(),
        }
    }
}

impl Rules {
    fn check_duration(&self, role: &str, duration: SignedDuration) -> Result<(), WorkflowError> {
        if duration > self.max_duration {
            return Err(WorkflowError::TooLong {
                role: role.to_owned(),
                duration,
                max: self.max_duration,
            });
        }
        Ok(())
    }
}

fn expect(
    e: &Elevation,
    command: Command,
    now: Timestamp,
    want: State,
) -> Result<(), WorkflowError> {
    let state = e.state(now);
    if state == want {
        Ok(())
    } else {
        Err(WorkflowError::State {
            id: e.id.clone(),
            command,
            state,
        })
    }
}

/// The grant id of request `r-N`: `g-N`.
fn grant_id_of(request_id: &str) -> String {
    format!("g-{}", request_id.strip_prefix("r-").unwrap_or(request_id))
}

fn whole_seconds(duration: SignedDuration) -> Result<i64, WorkflowError> {
    if duration.is_positive() && duration.subsec_nanos() == 0 {
        Ok(duration.as_secs())
    } else {
        Err(WorkflowError::Duration { duration })
    }
}

fn window_end(start: Timestamp, duration: SignedDuration) -> Result<Timestamp, WorkflowError> {
    start
        .checked_add(duration)
        .map_err(|_| WorkflowError::Window { start, duration })
}

fn check_text(field: &'static str, text: Option<&str>) -> Result<(), WorkflowError> {
    let problem = match text {
        None => return Ok(()),
        Some(t) if t.trim().is_empty() => "is empty".to_owned(),
        Some(t) if t.len() > MAX_TEXT_BYTES => format!("is longer than {MAX_TEXT_BYTES} bytes"),
        Some(_) => return Ok(()),
    };
    Err(WorkflowError::Text { field, problem })
}

#[cfg(test)]
mod tests;
