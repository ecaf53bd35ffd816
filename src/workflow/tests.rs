//! Unit tests of the workflow against the shipped policies, schema and entities:
//! every transition, every refusal, the time boundaries, replay.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod refusals;
mod replay;
mod time;
mod transitions;

use std::path::PathBuf;
use std::sync::Arc;

use tempfile::TempDir;

use super::*;
use crate::config::Validation;
use crate::policy::SourceFile;
use crate::snapshot::RawInputs;
use crate::testutil::{repo, shipped_with_feed};

const EMPTY_FEED: &str = r#"{"revision":"0","grants":[]}"#;

/// 09:00 on the day of the shipped demo feed.
fn t0() -> Timestamp {
    "2026-12-03T09:00:00Z".parse().unwrap()
}

/// `t0` plus `minutes`.
fn t(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

fn ns(n: i64) -> SignedDuration {
    SignedDuration::from_nanos(n)
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn uid(text: &str) -> EntityUid {
    text.parse().unwrap()
}

fn user(name: &str) -> EntityUid {
    uid(&format!("User::\"{name}\""))
}

fn key(name: &str) -> EntityUid {
    uid(&format!("ApiKey::\"{name}\""))
}

fn ws(n: u32) -> EntityUid {
    uid(&format!("Workspace::\"ws-{n}\""))
}

fn org() -> EntityUid {
    uid("Organization::\"acme\"")
}

fn spec(role: &str, scope: EntityUid, duration: SignedDuration) -> RequestSpec {
    RequestSpec {
        role: role.to_owned(),
        scope,
        duration,
        reason: "fix the payment method".to_owned(),
        ticket: Some("OPS-9".to_owned()),
        on_behalf_of: None,
        not_before: None,
    }
}

fn finops(scope: EntityUid, duration: SignedDuration) -> RequestSpec {
    spec("FinOpsManager", scope, duration)
}

fn more(duration: SignedDuration) -> ExtendSpec {
    ExtendSpec {
        duration,
        reason: "the migration runs long".to_owned(),
        ticket: None,
    }
}

/// A workflow on a fresh log, decided by the shipped inputs.
struct Fixture {
    dir: TempDir,
    wf: Workflow,
}

impl Fixture {
    fn new() -> Self {
        Self::with(shipped(), Config::default())
    }

    fn with(snapshot: Arc<Snapshot>, config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wf = Workflow::open(dir.path().join("events.jsonl"), snapshot, config).unwrap();
        Self { dir, wf }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    /// Closes the workflow and opens it again from its log.
    fn reopen(self) -> Self {
        let Self { dir, wf } = self;
        let snapshot = Arc::clone(wf.snapshot());
        let config = wf.config().clone();
        // The log is locked while open: close it first.
        drop(wf);
        let wf = Workflow::open(dir.path().join("events.jsonl"), snapshot, config).unwrap();
        Self { dir, wf }
    }

    fn state(&self, id: &str, now: Timestamp) -> State {
        self.wf.get(id).unwrap().state(now)
    }

    /// alice asks for FinOpsManager on ws-1 for 2 h at `now`.
    fn alice_finops(&mut self, now: Timestamp) -> String {
        self.wf
            .request(&user("alice"), finops(ws(1), hours(2)), now)
            .unwrap()
            .id
    }

    /// alice's FinOps request, approved by carol at `now`.
    fn alice_granted(&mut self, now: Timestamp) -> String {
        let id = self.alice_finops(now);
        self.wf.approve(&user("carol"), &id, None, now).unwrap();
        id
    }

    fn events(&self) -> Vec<Event> {
        crate::eventlog::parse(&std::fs::read(self.path()).unwrap())
            .unwrap()
            .events
    }
}

fn shipped() -> Arc<Snapshot> {
    Arc::new(shipped_with_feed(EMPTY_FEED))
}

/// The shipped inputs with `workflow.cedar` replaced by `policies`.
fn shipped_with_workflow(policies: &str) -> Arc<Snapshot> {
    let files = [
        "policies/elevation_roles.cedar",
        "policies/guardrails.cedar",
        "policies/workspace_roles.cedar",
    ];
    let mut policy_files: Vec<SourceFile> = files
        .iter()
        .map(|f| SourceFile::load(&repo(f)).unwrap())
        .collect();
    policy_files.push(SourceFile {
        path: repo("policies/workflow.cedar"),
        text: policies.to_owned(),
    });
    let raw = RawInputs {
        policies: policy_files,
        schema: Some(SourceFile::load(&repo("schema/elevate.cedarschema")).unwrap()),
        entities: Some(SourceFile::load(&repo("deploy/local/entities.json")).unwrap()),
        feed: Some(crate::feed::parse_document(EMPTY_FEED.as_bytes()).unwrap()),
        feed_hash: None,
    };
    Arc::new(Snapshot::build(&raw, Validation::Strict).unwrap())
}

/// The error's message, asserting its kind.
#[track_caller]
fn refused<T: fmt::Debug>(result: Result<T, WorkflowError>, kind: ErrorKind) -> String {
    let err = result.expect_err("the command should be refused");
    assert_eq!(err.kind(), kind, "{err}");
    err.to_string()
}

/// The policies that forbade it.
#[track_caller]
fn forbidden_by<T: fmt::Debug>(result: Result<T, WorkflowError>) -> Vec<String> {
    match result {
        Err(WorkflowError::Forbidden { policies, .. }) => policies,
        other => panic!("expected a forbid, got {other:?}"),
    }
}

#[track_caller]
fn not_permitted<T: fmt::Debug>(result: Result<T, WorkflowError>) -> String {
    match result {
        Err(err @ WorkflowError::NotPermitted { .. }) => err.to_string(),
        other => panic!("expected no permit, got {other:?}"),
    }
}

#[track_caller]
fn wrong_state<T: fmt::Debug>(result: Result<T, WorkflowError>) -> State {
    match result {
        Err(WorkflowError::State { state, .. }) => state,
        other => panic!("expected a state conflict, got {other:?}"),
    }
}
