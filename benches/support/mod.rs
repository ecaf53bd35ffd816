//! Deterministic fixtures for the decision benchmark: one organization with
//! [`USERS`] users, [`WORKSPACES`] workspaces (projects, payment methods, one API key
//! each), and a grant feed of any size spread over [`PRINCIPALS`] principals.
//!
//! Everything comes from a seeded xorshift generator, so every run benchmarks the
//! same data. The benchmarked principal ([`TARGET_USER`]) is a real user who is a
//! member of [`ROLE_WS`] and [`GRANT_WS`] and, whenever the feed is not empty, holds
//! exactly one grant: FinOpsManager on [`GRANT_WS`], in force at [`NOW`].

use std::path::Path;

use elevate::config::Validation;
use elevate::feed;
use elevate::policy::{SourceFile, load_policy_files};
use elevate::snapshot::{RawInputs, Snapshot};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The fixed instant every decision is taken at.
pub const NOW: &str = "2026-12-03T18:00:00Z";
pub const ORG: &str = "acme";
/// Users in the entity store: `u-0` .. `u-1999`, unless [`users`] says otherwise.
pub const USERS: usize = 2_000;

/// Users in the entity store: [`USERS`], or `BENCH_USERS` from the environment (the
/// memory measurement uses 100,000).
pub fn users() -> usize {
    std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(USERS)
}
/// Workspaces `ws-0` .. `ws-199`, all in [`ORG`].
pub const WORKSPACES: usize = 200;
pub const PROJECTS_PER_WS: usize = 5;
pub const PAYMENT_METHODS_PER_WS: usize = 2;
/// Grantees are drawn from `u-0` .. `u-49999`; only the first [`USERS`] exist as entities.
pub const PRINCIPALS: usize = 50_000;
/// The benchmarked principal: `u-7`.
pub const TARGET_USER: usize = 7;
/// The target is a member here; `readProject` on `p-3-1` is the plain role Allow.
pub const ROLE_WS: usize = 3;
/// The target's FinOpsManager grant is scoped here; `createPaymentMethod` on `pm-42-0`.
pub const GRANT_WS: usize = 42;
/// Id of the target's grant.
pub const TARGET_GRANT: &str = "g-target-finops";

const SEED: u64 = 0x00E1_E7A7_E5EE_D001;

/// xorshift64*: small, fast, deterministic; plenty for fixture data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for fixtures (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent / 100`.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

pub fn now() -> Timestamp {
    NOW.parse().expect("NOW is a timestamp")
}

pub fn user(i: usize) -> String {
    format!("u-{i}")
}

pub fn workspace(i: usize) -> String {
    format!("ws-{i}")
}

pub fn project(ws: usize, i: usize) -> String {
    format!("p-{ws}-{i}")
}

pub fn payment_method(ws: usize, i: usize) -> String {
    format!("pm-{ws}-{i}")
}

fn uid(ty: &str, id: &str) -> Value {
    json!({ "type": ty, "id": id })
}

fn entity_ref(ty: &str, id: &str) -> Value {
    json!({ "__entity": { "type": ty, "id": id } })
}

fn ws_set(indices: &[usize]) -> Value {
    Value::Array(
        indices
            .iter()
            .map(|&w| entity_ref("Workspace", &workspace(w)))
            .collect(),
    )
}

/// Picks `k` distinct workspaces not in `taken`, and adds them to it.
fn pick_workspaces(rng: &mut Rng, k: usize, taken: &mut Vec<usize>) -> Vec<usize> {
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let w = rng.below(WORKSPACES);
        if !taken.contains(&w) {
            taken.push(w);
            out.push(w);
        }
    }
    out
}

/// Cedar entities JSON for the organization: workspaces, projects, payment methods,
/// one API key per workspace, and [`USERS`] users with disjoint owner/manager/member sets.
pub fn entities_json() -> String {
    let mut rng = Rng::new(SEED);
    let mut all: Vec<Value> = Vec::new();
    all.push(json!({ "uid": uid("Organization", ORG), "attrs": {}, "parents": [] }));
    for w in 0..WORKSPACES {
        let ws = workspace(w);
        all.push(json!({
            "uid": uid("Workspace", &ws),
            "attrs": { "name": format!("workspace {w}") },
            "parents": [uid("Organization", ORG)],
        }));
        for p in 0..PROJECTS_PER_WS {
            all.push(json!({ "uid": uid("Project", &project(w, p)), "attrs": {}, "parents": [uid("Workspace", &ws)] }));
        }
        for m in 0..PAYMENT_METHODS_PER_WS {
            all.push(json!({
                "uid": uid("PaymentMethod", &payment_method(w, m)),
                "attrs": {},
                "parents": [uid("Workspace", &ws)],
            }));
        }
        let role = ["member", "manager", "owner"][w % 3];
        all.push(json!({
            "uid": uid("ApiKey", &format!("key-{w}")),
            "attrs": { "workspace": entity_ref("Workspace", &ws), "role": role, "suspended": false },
            "parents": [uid("Workspace", &ws)],
        }));
    }
    for u in 0..users() {
        let (owner, manager, member) = if u == TARGET_USER {
            // Member where it reads projects and where it needs the grant for billing;
            // owner and manager of neither, so no workspace role allows the billing action.
            (vec![], vec![11], vec![ROLE_WS, GRANT_WS])
        } else {
            let mut taken = Vec::new();
            let owner_n = usize::from(rng.chance(5));
            let manager_n = usize::from(rng.chance(30));
            let member_n = 1 + rng.below(4);
            let owner = pick_workspaces(&mut rng, owner_n, &mut taken);
            let manager = pick_workspaces(&mut rng, manager_n, &mut taken);
            let member = pick_workspaces(&mut rng, member_n, &mut taken);
            (owner, manager, member)
        };
        let id = user(u);
        let mut attrs = json!({
            "email": format!("{id}@acme.example"),
            "owner_of": ws_set(&owner),
            "manager_of": ws_set(&manager),
            "member_of": ws_set(&member),
        });
        if u != TARGET_USER
            && u % 97 == 0
            && let Some(map) = attrs.as_object_mut()
        {
            map.insert("suspended".into(), Value::Bool(true));
        }
        all.push(json!({ "uid": uid("User", &id), "attrs": attrs, "parents": [uid("Organization", ORG)] }));
    }
    Value::Array(all).to_string()
}

/// A window around `now` that is in force at `now` and no longer than `max`.
fn window(rng: &mut Rng, now: Timestamp, max: SignedDuration) -> (Timestamp, Timestamp) {
    let max_s = usize::try_from(max.as_secs()).expect("positive max duration");
    let min_s = 30 * 60;
    let length = min_s + rng.below(max_s - min_s + 1);
    let offset = 1 + rng.below(length - 1);
    let not_before = now - SignedDuration::from_secs(offset as i64);
    let expires_at = not_before + SignedDuration::from_secs(length as i64);
    (not_before, expires_at)
}

fn grant_json(
    id: &str,
    principal: &str,
    role: &str,
    scope: &str,
    (not_before, expires_at): (Timestamp, Timestamp),
    ticket: usize,
) -> Value {
    json!({
        "id": id,
        "principal": format!("User::\"{principal}\""),
        "role": role,
        "scope": scope,
        "not_before": not_before.to_string(),
        "expires_at": expires_at.to_string(),
        "approved_by": [format!("User::\"{}\"", user(ticket % USERS))],
        "requested_by": format!("User::\"{principal}\""),
        "reason": "generated by the decision benchmark",
        "ticket": format!("OPS-{ticket}"),
    })
}

/// A grant feed with `n` grants, all in force at `now`: the target's FinOpsManager
/// grant first (when `n > 0`), then grants of the shipped roles to principals drawn
/// from the [`PRINCIPALS`] pool, never the target.
pub fn feed_json(n: usize, now: Timestamp) -> String {
    let mut rng = Rng::new(SEED ^ 0xFEED);
    let mut grants: Vec<Value> = Vec::with_capacity(n);
    let hours = SignedDuration::from_hours;
    if n > 0 {
        let w = window(&mut rng, now, hours(4));
        grants.push(grant_json(
            TARGET_GRANT,
            &user(TARGET_USER),
            "FinOpsManager",
            &format!("Workspace::\"{}\"", workspace(GRANT_WS)),
            w,
            0,
        ));
    }
    for i in 1..n {
        let mut p = rng.below(PRINCIPALS);
        if p == TARGET_USER {
            p += 1;
        }
        let principal = user(p);
        let pick = rng.below(100);
        let (role, scope, max) = if pick < 70 {
            let ws = workspace(rng.below(WORKSPACES));
            ("FinOpsManager", format!("Workspace::\"{ws}\""), hours(4))
        } else if pick < 95 {
            (
                "OrganizationUser",
                format!("Organization::\"{ORG}\""),
                hours(8),
            )
        } else {
            let ws = workspace(rng.below(WORKSPACES));
            (
                "OrganizationAdmin",
                format!("Workspace::\"{ws}\""),
                hours(2),
            )
        };
        let w = window(&mut rng, now, max);
        grants.push(grant_json(
            &format!("g-{i}"),
            &principal,
            role,
            &scope,
            w,
            i,
        ));
    }
    json!({ "revision": format!("bench-{n}"), "generated_at": now.to_string(), "grants": grants })
        .to_string()
}

/// The benchmark's snapshot: shipped policies and schema, generated entities, and a
/// generated feed of `grants` grants, built the way a reload builds it.
pub fn snapshot(grants: usize) -> Snapshot {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policies = load_policy_files(&root.join("policies")).expect("shipped policies");
    let schema =
        SourceFile::load(&root.join("schema/elevate.cedarschema")).expect("shipped schema");
    let entities = SourceFile {
        path: "bench-entities.json".into(),
        text: entities_json(),
    };
    let feed_bytes = feed_json(grants, now());
    let doc = feed::parse_document(feed_bytes.as_bytes()).expect("generated feed parses");
    let raw = RawInputs {
        policies,
        schema: Some(schema),
        entities: Some(entities),
        feed: Some(doc),
        feed_hash: None,
    };
    let snapshot = Snapshot::build(&raw, Validation::Strict).expect("fixture snapshot builds");
    assert!(
        snapshot.grants.rejected.is_empty(),
        "generated grants rejected: {:?}",
        snapshot.grants.rejected.first()
    );
    assert_eq!(snapshot.grants.len(), grants);
    assert_eq!(snapshot.grants.in_force_count(now()), grants);
    snapshot
}
