//! The workflow against the shipped policies, schema and entities, through the
//! public API only:
//!
//! 1. End to end through the feed contract: a request, its approval, the feed, a
//!    sidecar snapshot built from that feed allowing the elevated call, revocation,
//!    the next call denied; an extension allowing it across the old expiry with no gap.
//! 2. A model-based property test (STYLE.md §7): random command sequences applied to
//!    a tiny model of the state machine and of the shipped rules, and to the real
//!    `Workflow`, give the same answers and the same states at every step; every
//!    feed parses and every grant in it is accepted by `GrantIndex::build`; reopening
//!    from the log rebuilds the same state.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use cedar_policy::{Decision, EntityUid};
use elevate::config::{Sources, Validation};
use elevate::engine;
use elevate::feed::{GrantIndex, parse_document};
use elevate::request::{Body, build_query};
use elevate::snapshot::{RawInputs, Snapshot};
use elevate::workflow::{
    Config, Elevation, ErrorKind, ExtendSpec, Filter, RequestSpec, State, Workflow, WorkflowError,
};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use tempfile::TempDir;

// ------------------------------------------------------------------ helpers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn raw_inputs() -> RawInputs {
    let root = root();
    RawInputs::load(&Sources {
        policies: root.join("policies"),
        schema: Some(root.join("schema/elevate.cedarschema")),
        entities: Some(root.join("deploy/local/entities.json")),
        grants: None,
        validation: Validation::Strict,
    })
    .unwrap()
}

/// The shipped inputs with no grants: what the workflow decides with.
fn shipped() -> Arc<Snapshot> {
    static SHIPPED: OnceLock<Arc<Snapshot>> = OnceLock::new();
    Arc::clone(
        SHIPPED
            .get_or_init(|| Arc::new(Snapshot::build(&raw_inputs(), Validation::Strict).unwrap())),
    )
}

/// A sidecar's snapshot: the shipped inputs with `feed` as the grant feed.
fn sidecar(feed: &Value) -> Snapshot {
    let mut raw = raw_inputs();
    raw.feed = Some(parse_document(&serde_json::to_vec(feed).unwrap()).unwrap());
    let snapshot = Snapshot::build(&raw, Validation::Strict).unwrap();
    assert!(
        snapshot.grants.rejected.is_empty(),
        "{:?}",
        snapshot.grants.rejected
    );
    snapshot
}

fn decide(
    snapshot: &Snapshot,
    principal: &str,
    action: &str,
    resource: &str,
    now: Timestamp,
) -> (Decision, Vec<String>) {
    let body = Body {
        principal: Value::String(principal.to_owned()),
        action: Value::String(format!("Action::\"{action}\"")),
        resource: Value::String(resource.to_owned()),
        context: None,
        entities: None,
    };
    let query = build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap();
    let outcome = engine::decide(snapshot, &query, now);
    (
        outcome.decision,
        outcome.grants.iter().map(|g| g.id.to_string()).collect(),
    )
}

fn base() -> Timestamp {
    "2026-12-03T09:00:00Z".parse().unwrap()
}

fn t(minutes: i64) -> Timestamp {
    base() + SignedDuration::from_mins(minutes)
}

fn uid(text: &str) -> EntityUid {
    text.parse().unwrap()
}

fn open(dir: &TempDir) -> Workflow {
    Workflow::open(
        dir.path().join("events.jsonl"),
        shipped(),
        Config::default(),
    )
    .unwrap()
}

fn finops_ws1(duration: SignedDuration) -> RequestSpec {
    RequestSpec {
        role: "FinOpsManager".into(),
        scope: uid("Workspace::\"ws-1\""),
        duration,
        reason: "create the new payment method".into(),
        ticket: Some("OPS-42".into()),
        on_behalf_of: None,
        not_before: None,
    }
}

const ALICE: &str = "User::\"alice\"";
const PM1: &str = "PaymentMethod::\"pm-1\"";

// ----------------------------------------------------------------- policies

#[test]
fn the_shipped_workflow_policies_are_these() {
    let snapshot = shipped();
    let file = root().join("policies/workflow.cedar");
    let mut ids: Vec<(String, String)> = snapshot
        .bundle
        .statics
        .policies()
        .filter(|p| {
            let origin = &snapshot.bundle.origins[p.id()];
            snapshot.bundle.files[origin.file].path == file
        })
        .map(|p| (p.id().to_string(), format!("{:?}", p.effect())))
        .collect();
    ids.sort();
    let expected = [
        ("duration-over-role-maximum", "Forbid"),
        ("finops-approvers-review-finops", "Permit"),
        ("no-repeat-approval", "Forbid"),
        ("no-self-approval", "Forbid"),
        ("org-admins-review-organization-roles", "Permit"),
        ("org-admins-revoke-any-elevation", "Permit"),
        ("request-own-elevation", "Permit"),
        ("requester-cancels-own-request", "Permit"),
        ("workspace-owner-reviews-finops-in-own-workspace", "Permit"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(id, effect)| ((*id).to_owned(), (*effect).to_owned()))
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn a_workflow_can_be_shared_between_threads() {
    fn shareable<T: Send>() {}
    shareable::<Workflow>();
    shareable::<std::sync::Mutex<Workflow>>();
}

// --------------------------------------------------------------- end to end

#[test]
fn an_approved_grant_allows_the_elevated_call_until_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let mut wf = open(&dir);
    let alice = uid(ALICE);
    let id = wf
        .request(&alice, finops_ws1(SignedDuration::from_hours(2)), t(0))
        .unwrap()
        .id;
    let pending = sidecar(&wf.feed(t(1)));
    assert_eq!(
        decide(&pending, ALICE, "createPaymentMethod", PM1, t(1)).0,
        Decision::Deny
    );

    wf.approve(&uid("User::\"carol\""), &id, None, t(2))
        .unwrap();
    let feed = wf.feed(t(2));
    assert_eq!(feed["revision"], "2");
    let granted = sidecar(&feed);
    assert_eq!(
        decide(&granted, ALICE, "createPaymentMethod", PM1, t(3)),
        (Decision::Allow, vec!["g-1".to_owned()])
    );
    // The sidecar keeps the ticket, for its decision log.
    let grant = granted.grants.of(&alice)[0].clone();
    assert_eq!(grant.ticket.as_deref(), Some("OPS-42"));

    wf.revoke(
        &uid("User::\"carol\""),
        &id,
        Some("done early".into()),
        t(4),
    )
    .unwrap();
    let revoked = sidecar(&wf.feed(t(4)));
    assert_eq!(revoked.grants.len(), 0);
    assert_eq!(
        decide(&revoked, ALICE, "createPaymentMethod", PM1, t(5)).0,
        Decision::Deny
    );
}

#[test]
fn an_extension_keeps_the_elevated_call_allowed_across_the_old_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut wf = open(&dir);
    let alice = uid(ALICE);
    let carol = uid("User::\"carol\"");
    let id = wf
        .request(&alice, finops_ws1(SignedDuration::from_hours(1)), t(0))
        .unwrap()
        .id;
    wf.approve(&carol, &id, None, t(0)).unwrap();
    let more = ExtendSpec {
        duration: SignedDuration::from_hours(1),
        reason: "still migrating".into(),
        ticket: None,
    };
    let ext = wf.extend(&alice, &id, more, t(30)).unwrap().id;
    wf.approve(&carol, &ext, None, t(45)).unwrap();
    let snapshot = sidecar(&wf.feed(t(45)));
    let one_ns = SignedDuration::from_nanos(1);
    for (now, grant) in [
        (t(60) - one_ns, "g-1"),
        (t(60), "g-2"),
        (t(120) - one_ns, "g-2"),
    ] {
        assert_eq!(
            decide(&snapshot, ALICE, "createPaymentMethod", PM1, now),
            (Decision::Allow, vec![grant.to_owned()]),
            "at {now}"
        );
    }
    assert_eq!(
        decide(&snapshot, ALICE, "createPaymentMethod", PM1, t(120)).0,
        Decision::Deny
    );
}

#[test]
fn an_api_key_grant_in_its_workspace_reaches_the_engine_with_whom_it_acts_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut wf = open(&dir);
    let key = uid("ApiKey::\"bb-ws1\"");
    let mut spec = finops_ws1(SignedDuration::from_hours(1));
    spec.on_behalf_of = Some("pipeline run 4711 for User::\"alice\"".into());
    let id = wf.request(&key, spec, t(0)).unwrap().id;
    // bob owns ws-1: he may approve FinOps there.
    wf.approve(&uid("User::\"bob\""), &id, None, t(1)).unwrap();
    let feed = wf.feed(t(1));
    assert_eq!(
        feed["grants"][0]["on_behalf_of"],
        "pipeline run 4711 for User::\"alice\""
    );
    let snapshot = sidecar(&feed);
    assert_eq!(
        decide(
            &snapshot,
            "ApiKey::\"bb-ws1\"",
            "createPaymentMethod",
            PM1,
            t(2)
        ),
        (Decision::Allow, vec!["g-1".to_owned()])
    );
}

#[test]
fn the_whole_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut wf = open(&dir);
    let alice = uid(ALICE);
    let id = wf
        .request(&alice, finops_ws1(SignedDuration::from_hours(1)), t(0))
        .unwrap()
        .id;
    wf.approve(&uid("User::\"carol\""), &id, None, t(1))
        .unwrap();
    let admin = RequestSpec {
        role: "OrganizationAdmin".into(),
        scope: uid("Organization::\"acme\""),
        ..finops_ws1(SignedDuration::from_hours(1))
    };
    let second = wf.request(&alice, admin, t(2)).unwrap().id;
    wf.approve(&uid("User::\"frank\""), &second, None, t(3))
        .unwrap();
    wf.tick(t(61)).unwrap();
    let before: Vec<Elevation> = wf
        .list(&Filter::default(), t(62))
        .into_iter()
        .cloned()
        .collect();
    let feed = wf.feed(t(62));
    drop(wf);
    let wf = open(&dir);
    let after: Vec<Elevation> = wf
        .list(&Filter::default(), t(62))
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(after, before);
    assert_eq!(wf.feed(t(62)), feed);
    assert_eq!(
        elevate::eventlog::verify(dir.path().join("events.jsonl"))
            .unwrap()
            .events,
        5
    );
}

// ------------------------------------------------------------ the model

/// The shipped principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    Alice,
    Bob,
    Carol,
    Dave,
    Erin,
    Frank,
    KeyWs1,
    KeyWs2,
}

const ACTORS: [Actor; 8] = [
    Actor::Alice,
    Actor::Bob,
    Actor::Carol,
    Actor::Dave,
    Actor::Erin,
    Actor::Frank,
    Actor::KeyWs1,
    Actor::KeyWs2,
];

impl Actor {
    fn uid(self) -> EntityUid {
        uid(match self {
            Self::Alice => "User::\"alice\"",
            Self::Bob => "User::\"bob\"",
            Self::Carol => "User::\"carol\"",
            Self::Dave => "User::\"dave\"",
            Self::Erin => "User::\"erin\"",
            Self::Frank => "User::\"frank\"",
            Self::KeyWs1 => "ApiKey::\"bb-ws1\"",
            Self::KeyWs2 => "ApiKey::\"bb-ws2\"",
        })
    }

    /// The workspace a key is bound to.
    fn key_workspace(self) -> Option<Scope> {
        match self {
            Self::KeyWs1 => Some(Scope::Ws1),
            Self::KeyWs2 => Some(Scope::Ws2),
            _ => None,
        }
    }

    /// erin is suspended: she can do nothing.
    fn suspended(self) -> bool {
        self == Self::Erin
    }

    /// Who decides (approves, denies, revokes) which requests: carol is a FinOps
    /// approver and an org admin, frank an org admin, bob owns ws-1.
    fn reviews(self, role: Role, scope: Scope) -> bool {
        match self {
            Self::Carol => true,
            Self::Frank => role != Role::FinOps,
            Self::Bob => role == Role::FinOps && scope == Scope::Ws1,
            _ => false,
        }
    }

    /// Org admins revoke anything.
    fn revokes(self, role: Role, scope: Scope) -> bool {
        self.reviews(role, scope) || matches!(self, Self::Carol | Self::Frank)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    FinOps,
    OrgUser,
    OrgAdmin,
}

const ROLES: [Role; 3] = [Role::FinOps, Role::OrgUser, Role::OrgAdmin];

impl Role {
    fn id(self) -> &'static str {
        match self {
            Self::FinOps => "FinOpsManager",
            Self::OrgUser => "OrganizationUser",
            Self::OrgAdmin => "OrganizationAdmin",
        }
    }

    /// `@max_duration`, in minutes.
    fn max_minutes(self) -> i64 {
        match self {
            Self::FinOps => 240,
            Self::OrgUser => 480,
            Self::OrgAdmin => 120,
        }
    }

    /// `@approvals`.
    fn quorum(self) -> usize {
        match self {
            Self::OrgAdmin => 2,
            _ => 1,
        }
    }

    /// `@scope_types`.
    fn allows(self, scope: Scope) -> bool {
        self != Self::OrgUser || scope == Scope::Org
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Ws1,
    Ws2,
    Org,
}

const SCOPES: [Scope; 3] = [Scope::Ws1, Scope::Ws2, Scope::Org];

impl Scope {
    fn uid(self) -> EntityUid {
        uid(match self {
            Self::Ws1 => "Workspace::\"ws-1\"",
            Self::Ws2 => "Workspace::\"ws-2\"",
            Self::Org => "Organization::\"acme\"",
        })
    }
}

const TTL_MINUTES: i64 = 24 * 60;

/// The model of one request.
#[derive(Debug, Clone)]
struct Model {
    principal: Actor,
    role: Role,
    scope: Scope,
    minutes: i64,
    not_before: Option<Timestamp>,
    decide_by: Timestamp,
    approvals: Vec<Actor>,
    grant: Option<(Timestamp, Timestamp)>,
    ended: Option<State>,
    extended_by: Vec<usize>,
}

impl Model {
    fn state(&self, now: Timestamp) -> State {
        match (self.ended, self.grant) {
            (Some(state), _) => state,
            (None, None) if now >= self.decide_by => State::Lapsed,
            (None, None) => State::Pending,
            (None, Some((_, end))) if now >= end => State::Expired,
            (None, Some(_)) => State::Approved,
        }
    }
}

/// Which request a command is about: mostly one in the state the command needs (so
/// sequences get somewhere), sometimes any, or one that does not exist.
#[derive(Debug, Clone)]
struct Target {
    live: bool,
    index: Index,
}

/// Who runs a command.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// The target's requester.
    Requester,
    /// Someone the model says may do it (an approver who has not approved yet and
    /// did not ask, an admin for a revocation, the grantee otherwise).
    Fitting,
    Is(Actor),
}

#[derive(Debug, Clone)]
enum Op {
    Request {
        actor: Actor,
        role: Role,
        scope: Scope,
        minutes: i64,
        start_in: Option<i64>,
    },
    Approve(Who, Target),
    Deny(Who, Target),
    Cancel(Who, Target),
    Revoke(Who, Target),
    Relinquish(Who, Target),
    Extend(Who, Target, i64),
    /// Let this many minutes pass.
    Wait(i64),
    /// Jump to a boundary of some request (a deadline, a start, an expiry), or one
    /// nanosecond either side of it.
    ToBoundary(Index, i64),
    Tick,
    Reopen,
}

fn actor() -> impl Strategy<Value = Actor> {
    prop::sample::select(ACTORS.to_vec())
}

/// Mostly someone who may, sometimes anyone, sometimes the requester.
fn approver() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => Just(Who::Fitting),
        2 => prop::sample::select(vec![Actor::Carol, Actor::Frank, Actor::Bob]).prop_map(Who::Is),
        1 => actor().prop_map(Who::Is),
        1 => Just(Who::Requester),
    ]
}

/// The requester mostly, anyone sometimes.
fn requester() -> impl Strategy<Value = Who> {
    prop_oneof![3 => Just(Who::Requester), 1 => actor().prop_map(Who::Is)]
}

fn target() -> impl Strategy<Value = Target> {
    (prop::bool::weighted(0.85), any::<Index>()).prop_map(|(live, index)| Target { live, index })
}

/// Durations around every role's maximum, mostly within it.
fn minutes() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => prop::sample::select(vec![30i64, 60, 120]),
        1 => prop::sample::select(vec![121i64, 240, 241, 480, 481]),
    ]
}

/// Mostly people who may ask, for roles and scopes that fit.
fn request() -> impl Strategy<Value = Op> {
    let who = prop_oneof![
        4 => prop::sample::select(vec![Actor::Alice, Actor::Dave, Actor::Bob, Actor::Carol, Actor::KeyWs1]),
        1 => actor(),
    ];
    let what = prop_oneof![
        4 => prop::sample::select(vec![
            (Role::FinOps, Scope::Ws1),
            (Role::FinOps, Scope::Ws2),
            (Role::OrgAdmin, Scope::Org),
            (Role::OrgUser, Scope::Org),
        ]),
        1 => (prop::sample::select(ROLES.to_vec()), prop::sample::select(SCOPES.to_vec())),
    ];
    (
        who,
        what,
        minutes(),
        prop::option::weighted(0.3, prop::sample::select(vec![-30i64, 0, 30, 90])),
    )
        .prop_map(|(actor, (role, scope), minutes, start_in)| Op::Request {
            actor,
            role,
            scope,
            minutes,
            start_in,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => request(),
        6 => (approver(), target()).prop_map(|(a, t)| Op::Approve(a, t)),
        1 => (approver(), target()).prop_map(|(a, t)| Op::Deny(a, t)),
        1 => (requester(), target()).prop_map(|(a, t)| Op::Cancel(a, t)),
        1 => (approver(), target()).prop_map(|(a, t)| Op::Revoke(a, t)),
        1 => (requester(), target()).prop_map(|(a, t)| Op::Relinquish(a, t)),
        3 => (requester(), target(), minutes()).prop_map(|(a, t, m)| Op::Extend(a, t, m)),
        2 => prop::sample::select(vec![1i64, 5, 20, 60, 240]).prop_map(Op::Wait),
        1 => (any::<Index>(), -1i64..=1).prop_map(|(i, d)| Op::ToBoundary(i, d)),
        1 => Just(Op::Tick),
        1 => Just(Op::Reopen),
    ]
}

/// The model and the real workflow side by side.
struct Pair {
    dir: TempDir,
    wf: Option<Workflow>,
    model: Vec<Model>,
    now: Timestamp,
    /// The current step's pick, so the model and the workflow act on the same
    /// request even after the model has moved on.
    picked: RefCell<Option<Picked>>,
}

type Picked = (Option<usize>, String, Actor);

impl Pair {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wf = open(&dir);
        Self {
            dir,
            wf: Some(wf),
            model: Vec::new(),
            now: base(),
            picked: RefCell::new(None),
        }
    }

    fn wf(&mut self) -> &mut Workflow {
        self.wf.as_mut().unwrap()
    }

    /// The request a target picks, preferring those in state `want` (its model
    /// position and id; a missing id when there is none), and who acts (`None`
    /// resolves to its requester).
    fn pick(&self, target: &Target, who: Who, want: State) -> Picked {
        if let Some(picked) = self.picked.borrow().clone() {
            return picked;
        }
        let picked = self.pick_now(target, who, want);
        *self.picked.borrow_mut() = Some(picked.clone());
        picked
    }

    fn pick_now(&self, target: &Target, who: Who, want: State) -> Picked {
        let live: Vec<usize> = (0..self.model.len())
            .filter(|i| self.model[*i].state(self.now) == want)
            .collect();
        let i = if target.live && !live.is_empty() {
            Some(live[target.index.index(live.len())])
        } else if self.model.is_empty() {
            None
        } else {
            Some(target.index.index(self.model.len()))
        };
        let actor = match (who, i) {
            (Who::Is(actor), _) => actor,
            (_, None) => Actor::Alice,
            (Who::Requester, Some(i)) => self.model[i].principal,
            (Who::Fitting, Some(i)) => {
                let m = &self.model[i];
                let fits = |a: &Actor| match want {
                    State::Pending => {
                        a.reviews(m.role, m.scope) && *a != m.principal && !m.approvals.contains(a)
                    }
                    _ => a.revokes(m.role, m.scope),
                };
                [Actor::Carol, Actor::Frank, Actor::Bob]
                    .into_iter()
                    .find(fits)
                    .unwrap_or(Actor::Carol)
            }
        };
        match i {
            Some(i) => (Some(i), format!("r-{}", i + 1), actor),
            None => (None, "r-999".into(), actor),
        }
    }

    /// Ends request `i` and, with it, its approved extensions; pending extensions
    /// lapse now.
    fn end_chain(&mut self, i: usize, state: State) {
        let now = self.now;
        self.model[i].ended = Some(state);
        let mut queue = vec![i];
        while let Some(j) = queue.pop() {
            for k in self.model[j].extended_by.clone() {
                match self.model[k].state(now) {
                    State::Approved => {
                        self.model[k].ended = Some(state);
                        queue.push(k);
                    }
                    State::Pending => {
                        self.model[k].decide_by = self.model[k].decide_by.min(now);
                    }
                    _ => {}
                }
            }
        }
    }

    /// What the model expects, applying it when it succeeds.
    fn expect(&mut self, op: &Op) -> Option<ErrorKind> {
        let now = self.now;
        match op {
            Op::Request {
                actor,
                role,
                scope,
                minutes,
                start_in,
            } => {
                if !role.allows(*scope) {
                    return Some(ErrorKind::Invalid);
                }
                let outside = actor.key_workspace().is_some_and(|ws| ws != *scope);
                if actor.suspended() || outside || *minutes > role.max_minutes() {
                    return Some(ErrorKind::Forbidden);
                }
                self.model.push(Model {
                    principal: *actor,
                    role: *role,
                    scope: *scope,
                    minutes: *minutes,
                    not_before: start_in.map(|m| now + SignedDuration::from_mins(m)),
                    decide_by: now + SignedDuration::from_mins(TTL_MINUTES),
                    approvals: Vec::new(),
                    grant: None,
                    ended: None,
                    extended_by: Vec::new(),
                });
                None
            }
            Op::Approve(who, target) => {
                let (Some(i), _, actor) = self.pick(target, *who, State::Pending) else {
                    return Some(ErrorKind::NotFound);
                };
                let actor = &actor;
                let m = &self.model[i];
                if m.state(now) != State::Pending {
                    return Some(ErrorKind::Conflict);
                }
                if actor.suspended()
                    || !actor.reviews(m.role, m.scope)
                    || *actor == m.principal
                    || m.approvals.contains(actor)
                {
                    return Some(ErrorKind::Forbidden);
                }
                let m = &mut self.model[i];
                m.approvals.push(*actor);
                if m.approvals.len() >= m.role.quorum() {
                    let start = m.not_before.map_or(now, |nb| nb.max(now));
                    m.grant = Some((start, start + SignedDuration::from_mins(m.minutes)));
                }
                None
            }
            Op::Deny(who, target) | Op::Cancel(who, target) => {
                let (Some(i), _, actor) = self.pick(target, *who, State::Pending) else {
                    return Some(ErrorKind::NotFound);
                };
                let actor = &actor;
                let m = &self.model[i];
                if m.state(now) != State::Pending {
                    return Some(ErrorKind::Conflict);
                }
                let (allowed, state) = match op {
                    Op::Deny(..) => (actor.reviews(m.role, m.scope), State::Denied),
                    _ => (*actor == m.principal, State::Cancelled),
                };
                if actor.suspended() || !allowed {
                    return Some(ErrorKind::Forbidden);
                }
                self.model[i].ended = Some(state);
                None
            }
            Op::Revoke(who, target) | Op::Relinquish(who, target) => {
                let (Some(i), _, actor) = self.pick(target, *who, State::Approved) else {
                    return Some(ErrorKind::NotFound);
                };
                let actor = &actor;
                let m = &self.model[i];
                if m.state(now) != State::Approved {
                    return Some(ErrorKind::Conflict);
                }
                let (allowed, state) = match op {
                    Op::Revoke(..) => (actor.revokes(m.role, m.scope), State::Revoked),
                    _ => (*actor == m.principal, State::Relinquished),
                };
                if actor.suspended() || !allowed {
                    return Some(ErrorKind::Forbidden);
                }
                self.end_chain(i, state);
                None
            }
            Op::Extend(who, target, minutes) => {
                let (Some(i), _, actor) = self.pick(target, *who, State::Approved) else {
                    return Some(ErrorKind::NotFound);
                };
                let actor = &actor;
                let m = &self.model[i];
                if m.state(now) != State::Approved {
                    return Some(ErrorKind::Conflict);
                }
                if *actor != m.principal {
                    return Some(ErrorKind::Forbidden);
                }
                let live = m
                    .extended_by
                    .iter()
                    .any(|k| matches!(self.model[*k].state(now), State::Pending | State::Approved));
                if live {
                    return Some(ErrorKind::Conflict);
                }
                if *minutes > m.role.max_minutes() {
                    return Some(ErrorKind::Forbidden);
                }
                let end = m.grant.unwrap().1;
                let extension = Model {
                    principal: m.principal,
                    role: m.role,
                    scope: m.scope,
                    minutes: *minutes,
                    not_before: Some(end),
                    decide_by: (now + SignedDuration::from_mins(TTL_MINUTES)).min(end),
                    approvals: Vec::new(),
                    grant: None,
                    ended: None,
                    extended_by: Vec::new(),
                };
                let k = self.model.len();
                self.model[i].extended_by.push(k);
                self.model.push(extension);
                None
            }
            Op::Wait(_) | Op::ToBoundary(..) | Op::Tick | Op::Reopen => None,
        }
    }

    /// Runs `op` on the real workflow.
    fn run(&mut self, op: &Op) -> Option<ErrorKind> {
        let now = self.now;
        let kind = |r: Result<Elevation, WorkflowError>| r.err().map(|e| e.kind());
        match op {
            Op::Request {
                actor,
                role,
                scope,
                minutes,
                start_in,
            } => {
                let spec = RequestSpec {
                    role: role.id().into(),
                    scope: scope.uid(),
                    duration: SignedDuration::from_mins(*minutes),
                    reason: "model".into(),
                    ticket: Some("T-1".into()),
                    on_behalf_of: None,
                    not_before: start_in.map(|m| now + SignedDuration::from_mins(m)),
                };
                kind(self.wf().request(&actor.uid(), spec, now))
            }
            Op::Approve(who, target) => {
                let (_, id, actor) = self.pick(target, *who, State::Pending);
                kind(self.wf().approve(&actor.uid(), &id, None, now))
            }
            Op::Deny(who, target) => {
                let (_, id, actor) = self.pick(target, *who, State::Pending);
                kind(self.wf().deny(&actor.uid(), &id, None, now))
            }
            Op::Cancel(who, target) => {
                let (_, id, actor) = self.pick(target, *who, State::Pending);
                kind(self.wf().cancel(&actor.uid(), &id, None, now))
            }
            Op::Revoke(who, target) => {
                let (_, id, actor) = self.pick(target, *who, State::Approved);
                kind(self.wf().revoke(&actor.uid(), &id, None, now))
            }
            Op::Relinquish(who, target) => {
                let (_, id, actor) = self.pick(target, *who, State::Approved);
                kind(self.wf().relinquish(&actor.uid(), &id, None, now))
            }
            Op::Extend(who, target, minutes) => {
                let (_, id, actor) = self.pick(target, *who, State::Approved);
                let spec = ExtendSpec {
                    duration: SignedDuration::from_mins(*minutes),
                    reason: "more".into(),
                    ticket: None,
                };
                kind(self.wf().extend(&actor.uid(), &id, spec, now))
            }
            Op::Wait(minutes) => {
                self.now = now + SignedDuration::from_mins(*minutes);
                None
            }
            Op::ToBoundary(index, nudge) => {
                let mut boundaries: Vec<Timestamp> = self
                    .model
                    .iter()
                    .flat_map(|m| {
                        let grant = m.grant.map_or(vec![], |(a, b)| vec![a, b]);
                        grant.into_iter().chain([m.decide_by])
                    })
                    .map(|b| b + SignedDuration::from_nanos(*nudge))
                    .filter(|b| *b > now)
                    .collect();
                boundaries.sort();
                if !boundaries.is_empty() {
                    self.now = boundaries[index.index(boundaries.len())];
                }
                None
            }
            Op::Tick => self.wf().tick(now).err().map(|e| e.kind()),
            Op::Reopen => {
                drop(self.wf.take());
                self.wf = Some(open(&self.dir));
                None
            }
        }
    }

    /// The real states, grants and feed equal the model's at `now`.
    fn check(&mut self, step: usize) -> Result<(), TestCaseError> {
        let now = self.now;
        let wf = self.wf.as_ref().unwrap();
        let real = wf.list(&Filter::default(), now);
        prop_assert_eq!(real.len(), self.model.len(), "step {}", step);
        for (i, (e, m)) in real.iter().zip(&self.model).enumerate() {
            prop_assert_eq!(&e.id, &format!("r-{}", i + 1));
            prop_assert_eq!(
                e.state(now),
                m.state(now),
                "step {}: {} at {}",
                step,
                e.id,
                now
            );
            let window = e.grant.as_ref().map(|g| (g.not_before, g.expires_at));
            prop_assert_eq!(window, m.grant, "step {}: {}", step, e.id);
            let approvers: Vec<EntityUid> = e.approvals.iter().map(|a| a.by.clone()).collect();
            let expected: Vec<EntityUid> = m.approvals.iter().map(|a| a.uid()).collect();
            prop_assert_eq!(approvers, expected, "step {}: {}", step, e.id);
            prop_assert_eq!(&e.principal, &m.principal.uid());
            prop_assert_eq!(e.decide_by, m.decide_by, "step {}: {}", step, e.id);
        }
        // The feed: the contract's envelope, every grant accepted by a sidecar, and
        // exactly the approved requests.
        let feed = wf.feed(now);
        let doc = parse_document(&serde_json::to_vec(&feed).unwrap()).unwrap();
        prop_assert_eq!(&doc.revision, &wf.last_seq().to_string());
        prop_assert_eq!(doc.generated_at, Some(now));
        let index = GrantIndex::build(&doc, &shipped().bundle);
        prop_assert!(index.rejected.is_empty(), "{:?}", index.rejected);
        let mut in_feed: Vec<String> = index.iter().map(|g| g.id.to_string()).collect();
        in_feed.sort();
        let mut approved: Vec<String> = self
            .model
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state(now) == State::Approved)
            .map(|(i, _)| format!("g-{}", i + 1))
            .collect();
        approved.sort();
        prop_assert_eq!(in_feed, approved, "step {}", step);
        Ok(())
    }
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn the_workflow_follows_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut pair = Pair::new();
        for (step, op) in ops.iter().enumerate() {
            pair.picked.replace(None);
            let expected = pair.expect(op);
            let got = pair.run(op);
            prop_assert_eq!(got, expected, "step {}: {:?} at {}", step, op, pair.now);
            pair.check(step)?;
        }
        // Rebuilt from the log, it is the same.
        let now = pair.now;
        let before: Vec<Elevation> =
            pair.wf().list(&Filter::default(), now).into_iter().cloned().collect();
        let feed = pair.wf().feed(now);
        pair.run(&Op::Reopen);
        let after: Vec<Elevation> =
            pair.wf().list(&Filter::default(), now).into_iter().cloned().collect();
        prop_assert_eq!(after, before);
        prop_assert_eq!(pair.wf().feed(now), feed);
        pair.check(ops.len())?;
    }
}
