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
    assert!(hit.allow && hit.used_grant);
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
