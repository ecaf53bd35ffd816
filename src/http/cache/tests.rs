#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::engine;
use crate::http::Answer;
use crate::request::{self, Body};
use crate::testutil::{feed_of, grant, shipped_with_feed};

const ALICE_PM: &str = r#"{"principal":"User::\"alice\"","action":"Action::\"createPaymentMethod\"","resource":"PaymentMethod::\"pm-1\""}"#;

fn now() -> Timestamp {
    "2026-06-01T12:00:00Z".parse().unwrap()
}

fn at(offset_secs: i64) -> Timestamp {
    now() + SignedDuration::from_secs(offset_secs)
}

fn query(snapshot: &Snapshot, body: &str) -> Query {
    let body: Body = serde_json::from_str(body).unwrap();
    request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap()
}

/// Alice holds FinOpsManager on ws-1 from -1 h to +2 h, another from +1 h to +3 h,
/// and one that expired; Bob holds one that ends in 10 s.
fn snapshot() -> Snapshot {
    let t = |s: i64| at(s).to_string();
    shipped_with_feed(&feed_of(&[
        grant(
            "a-now",
            "User::\"alice\"",
            "FinOpsManager",
            "Workspace::\"ws-1\"",
            &t(-3600),
            &t(7200),
        ),
        grant(
            "a-later",
            "User::\"alice\"",
            "FinOpsManager",
            "Workspace::\"ws-1\"",
            &t(3600),
            &t(10800),
        ),
        grant(
            "a-old",
            "User::\"alice\"",
            "FinOpsManager",
            "Workspace::\"ws-1\"",
            &t(-7200),
            &t(-3600),
        ),
        grant(
            "b-soon",
            "User::\"bob\"",
            "FinOpsManager",
            "Workspace::\"ws-1\"",
            &t(-60),
            &t(10),
        ),
    ]))
}

/// The answer to `body`'s decision as the route serializes it, and its seed.
fn decided(snapshot: &Snapshot, body: &str, at: Timestamp) -> (Vec<u8>, Option<Seed>) {
    let q = query(snapshot, body);
    let outcome = engine::decide(snapshot, &q, at);
    let seed = Seed::new(snapshot, &q, &outcome, at, None);
    let blank = serde_json::to_vec(&Answer::new(outcome, String::new())).unwrap();
    (head_of(&blank).unwrap().to_vec(), seed)
}

#[test]
fn the_head_and_an_id_make_the_answer_serde_would_write() {
    let snapshot = snapshot();
    let q = query(&snapshot, ALICE_PM);
    let outcome = engine::decide(&snapshot, &q, now());
    assert!(outcome.is_allow());
    for id in ["d-1", "odd \"id\" \\ with\nescapes"] {
        let whole = serde_json::to_vec(&Answer::new(outcome.clone(), id.to_owned())).unwrap();
        let blank = serde_json::to_vec(&Answer::new(outcome.clone(), String::new())).unwrap();
        let head = head_of(&blank).unwrap();
        assert_eq!(answer_bytes(head, id), whole, "{id}");
    }
    assert_eq!(head_of(b"{\"decision_id\":\"x\"}"), None);
    assert_eq!(head_of(b"{}"), None);
}

#[test]
fn an_answer_holds_until_the_first_boundary_of_any_grant_the_request_looked_up() {
    let snapshot = snapshot();
    // a-now ends at +2 h, a-later starts at +1 h: the start comes first. Bob's grant
    // ends sooner but is not alice's.
    let q = query(&snapshot, ALICE_PM);
    assert_eq!(valid_until(&snapshot, &q, now()), Some(at(3600)));
    // Past a-later's start, a-now's end is next; past that, a-later's.
    assert_eq!(valid_until(&snapshot, &q, at(3600)), Some(at(7200)));
    assert_eq!(valid_until(&snapshot, &q, at(7200)), Some(at(10800)));
    // No boundary left: no instant ends it.
    assert_eq!(valid_until(&snapshot, &q, at(20000)), Some(Timestamp::MAX));

    let bob = ALICE_PM.replace("alice", "bob");
    let q = query(&snapshot, &bob);
    assert_eq!(valid_until(&snapshot, &q, now()), Some(at(10)));
    // A request whose action no role of the grants can match looks none of them up.
    let read = r#"{"principal":"User::\"bob\"","action":"Action::\"readProject\"","resource":"Project::\"checkout\""}"#;
    let q = query(&snapshot, read);
    assert!(engine::principal_grants(&snapshot, &q, |_| true).is_empty());
    assert_eq!(valid_until(&snapshot, &q, now()), Some(Timestamp::MAX));
}

#[test]
fn the_feed_deadline_bounds_an_answer_and_a_suspended_one_is_never_kept() {
    let mut snapshot = snapshot();
    snapshot.feed_deadline = Some(at(60));
    snapshot.feed_refreshed_at = Some(at(-1));
    let q = query(&snapshot, &ALICE_PM.replace("alice", "carol"));
    assert_eq!(valid_until(&snapshot, &q, now()), Some(at(60)));
    assert_eq!(valid_until(&snapshot, &q, at(60)), None);
    // A clock earlier than the last refresh suspends grants too.
    assert_eq!(valid_until(&snapshot, &q, at(-10)), None);
}

#[test]
fn a_hit_needs_the_same_bytes_snapshot_and_an_instant_inside_the_interval() {
    let mut snapshot = snapshot();
    let cache = DecisionCache::new(1 << 20);
    let bob = ALICE_PM.replace("alice", "bob");
    let (head, seed) = decided(&snapshot, &bob, now());
    cache.insert(bob.as_bytes(), &snapshot, now(), &head, seed.unwrap());

    let hit = cache.get(bob.as_bytes(), &snapshot, at(5)).unwrap();
    assert!(hit.allow && hit.used_grant());
    assert_eq!(hit.grants, 1);
    assert_eq!(hit.answer("d-7"), answer_bytes(&head, "d-7"));
    assert!(cache.get(bob.as_bytes(), &snapshot, now()).is_some());
    // b-soon ends at +10 s: from then on the answer may differ.
    assert!(cache.get(bob.as_bytes(), &snapshot, at(10)).is_none());
    assert!(cache.get(bob.as_bytes(), &snapshot, at(9)).is_some());
    // Before it was decided (a clock stepped back).
    assert!(cache.get(bob.as_bytes(), &snapshot, at(-1)).is_none());
    // Other bytes, even if they mean the same request.
    let spaced = bob.replace(',', ", ");
    assert!(cache.get(spaced.as_bytes(), &snapshot, at(1)).is_none());
    // Another snapshot, or the same content with another feed deadline or refresh.
    snapshot.generation += 1;
    assert!(cache.get(bob.as_bytes(), &snapshot, at(1)).is_none());
    snapshot.generation -= 1;
    snapshot.feed_deadline = Some(at(600));
    assert!(cache.get(bob.as_bytes(), &snapshot, at(1)).is_none());
    snapshot.feed_deadline = None;
    snapshot.feed_refreshed_at = Some(now());
    assert!(cache.get(bob.as_bytes(), &snapshot, at(1)).is_none());
    snapshot.feed_refreshed_at = None;
    assert!(cache.get(bob.as_bytes(), &snapshot, at(1)).is_some());
}

#[test]
fn off_keeps_nothing_and_big_bodies_are_not_kept() {
    let snapshot = snapshot();
    let off = DecisionCache::new(0);
    assert!(!off.enabled());
    let (head, seed) = decided(&snapshot, ALICE_PM, now());
    off.insert(ALICE_PM.as_bytes(), &snapshot, now(), &head, seed.unwrap());
    assert!(off.get(ALICE_PM.as_bytes(), &snapshot, now()).is_none());

    let cache = DecisionCache::new(1 << 20);
    let padded = format!("{}{}", ALICE_PM, " ".repeat(MAX_KEY));
    let (head, seed) = decided(&snapshot, &padded, now());
    cache.insert(padded.as_bytes(), &snapshot, now(), &head, seed.unwrap());
    assert!(cache.get(padded.as_bytes(), &snapshot, now()).is_none());
}

#[test]
fn the_cache_stays_within_its_bytes() {
    let snapshot = snapshot();
    let budget = 64 * 1024;
    let cache = DecisionCache::new(budget);
    let (head, _) = decided(&snapshot, ALICE_PM, now());
    let q = query(&snapshot, ALICE_PM);
    let outcome = engine::decide(&snapshot, &q, now());
    for n in 0..5_000 {
        let body = format!("{ALICE_PM}{}", " ".repeat(n % 97)) + &n.to_string();
        let seed = Seed::new(&snapshot, &q, &outcome, now(), None).unwrap();
        cache.insert(body.as_bytes(), &snapshot, now(), &head, seed);
    }
    let inner = cache.cache.as_ref().unwrap();
    assert!(inner.weight() <= budget as u64, "{}", inner.weight());
    // It still holds entries, the latest among them likely; at least some.
    assert!(inner.len() > 10, "{}", inner.len());
}

mod property {
    //! Random grant windows, requests and instants (the clock stepping back too): every
    //! hit must be the answer a fresh decision gives at that instant, byte for byte.

    use proptest::prelude::*;

    use super::*;
    use crate::config::Validation;
    use crate::policy::SourceFile;
    use crate::snapshot::RawInputs;

    /// The shipped world, and one whose role grants to groups (`principal in`).
    fn worlds(grants: &[(usize, usize, i64, i64)]) -> [(Snapshot, Vec<String>); 2] {
        let t = |s: i64| at(s).to_string();
        let shipped_principals = ["User::\"alice\"", "User::\"bob\"", "ApiKey::\"bb-ws1\""];
        let shipped_roles = [
            ("FinOpsManager", "Workspace::\"ws-1\""),
            ("OrganizationAdmin", "Organization::\"acme\""),
            ("OrganizationUser", "Workspace::\"ws-2\""),
        ];
        let feed = |principals: &[&str], roles: &[(&str, &str)]| {
            let docs: Vec<serde_json::Value> = grants
                .iter()
                .enumerate()
                .map(|(i, &(p, r, from, len))| {
                    let (role, scope) = roles[r % roles.len()];
                    grant(
                        &format!("g-{i}"),
                        principals[p % principals.len()],
                        role,
                        scope,
                        &t(from),
                        &t(from + len),
                    )
                })
                .collect();
            feed_of(&docs)
        };
        let mut shipped_requests = Vec::new();
        for p in shipped_principals {
            for (a, r) in [
                ("createPaymentMethod", "PaymentMethod::\"pm-1\""),
                ("readPaymentMethod", "PaymentMethod::\"pm-2\""),
                ("readProject", "Project::\"warehouse\""),
                ("manageMembers", "Workspace::\"ws-1\""),
            ] {
                shipped_requests.push(
                    serde_json::json!({"principal": p, "action": format!("Action::\"{a}\""), "resource": r})
                        .to_string(),
                );
            }
        }
        let shipped = shipped_with_feed(&feed(&shipped_principals, &shipped_roles));

        let group_principals = ["Team::\"sre\"", "User::\"u\"", "Team::\"dba\""];
        let group_roles = [("Ops", "Rack::\"r\""), ("Ops", "Box::\"b\"")];
        let raw = RawInputs {
            policies: vec![SourceFile {
                path: "p.cedar".into(),
                text: r#"@id("Ops") permit(principal in ?principal, action == Action::"fix", resource in ?resource);
                         @id("no-weekends") forbid(principal, action, resource) when { context.weekend };"#
                    .into(),
            }],
            schema: None,
            entities: Some(SourceFile {
                path: "e.json".into(),
                text: r#"[{"uid":{"type":"User","id":"u"},"attrs":{},"parents":[{"type":"Team","id":"sre"}]},
                    {"uid":{"type":"Team","id":"sre"},"attrs":{},"parents":[]},
                    {"uid":{"type":"Team","id":"dba"},"attrs":{},"parents":[]},
                    {"uid":{"type":"Box","id":"b"},"attrs":{},"parents":[{"type":"Rack","id":"r"}]}]"#
                    .into(),
            }),
            feed: Some(
                crate::feed::parse_document(feed(&group_principals, &group_roles).as_bytes())
                    .unwrap(),
            ),
            feed_hash: None,
        };
        let groups = Snapshot::build(&raw, Validation::Warn).unwrap();
        let mut group_requests = Vec::new();
        for p in ["User::\"u\"", "Team::\"sre\"", "Team::\"dba\""] {
            for weekend in ["true", "false"] {
                group_requests.push(format!(
                    r#"{{"principal":"{}","action":"Action::\"fix\"","resource":"Box::\"b\"","context":{{"weekend":{weekend}}}}}"#,
                    p.replace('"', "\\\"")
                ));
            }
        }
        [(shipped, shipped_requests), (groups, group_requests)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn every_hit_is_the_fresh_answer(
            grants in prop::collection::vec((0usize..3, 0usize..3, -60i64..60, 1i64..60), 0..8),
            steps in prop::collection::vec((0usize..12, -90i64..90), 1..60),
        ) {
            for (snapshot, requests) in worlds(&grants) {
                let cache = DecisionCache::new(1 << 20);
                for &(r, offset) in &steps {
                    let body = &requests[r % requests.len()];
                    let now = at(offset);
                    let (fresh, seed) = decided(&snapshot, body, now);
                    match cache.get(body.as_bytes(), &snapshot, now) {
                        Some(hit) => {
                            prop_assert_eq!(
                                String::from_utf8(hit.answer("d")).unwrap(),
                                String::from_utf8(answer_bytes(&fresh, "d")).unwrap(),
                                "request {} at {}", body, now
                            );
                        }
                        None => {
                            // Nothing is suspended here, so every answer can be kept,
                            // and holds at the instant it was decided.
                            let seed = seed.unwrap();
                            cache.insert(body.as_bytes(), &snapshot, now, &fresh, seed);
                            prop_assert!(cache.get(body.as_bytes(), &snapshot, now).is_some());
                        }
                    }
                }
            }
        }
    }
}
