#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::json;

use super::*;
use crate::config::Validation;
use crate::policy::SourceFile;
use crate::request::{Body, build_query};
use crate::snapshot::RawInputs;
use crate::testutil::{feed_of, grant, shipped_with_feed};

const ALICE: &str = r#"User::"alice""#;
const BB_WS1: &str = r#"ApiKey::"bb-ws1""#;
const WS1: &str = r#"Workspace::"ws-1""#;
const WS2: &str = r#"Workspace::"ws-2""#;
const PM1: &str = r#"PaymentMethod::"pm-1""#;
const PM2: &str = r#"PaymentMethod::"pm-2""#;
const FROM: &str = "2026-12-03T17:00:00Z";
const UNTIL: &str = "2026-12-03T19:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn query(snapshot: &Snapshot, principal: &str, action: &str, resource: &str) -> Query {
    let body: Body = serde_json::from_value(json!({
        "principal": principal, "action": format!("Action::\"{action}\""), "resource": resource,
    }))
    .unwrap();
    build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap()
}

fn explain_at(
    snapshot: &Snapshot,
    principal: &str,
    action: &str,
    resource: &str,
    at: &str,
) -> Explanation {
    explain(
        snapshot,
        &query(snapshot, principal, action, resource),
        ts(at),
    )
}

/// The shipped inputs with alice's FinOps grant `g-7` on ws-1 from 17:00 to 19:00.
fn with_g7() -> Snapshot {
    shipped_with_feed(&feed_of(&[grant(
        "g-7",
        ALICE,
        "FinOpsManager",
        WS1,
        FROM,
        UNTIL,
    )]))
}

fn pay(snapshot: &Snapshot, at: &str) -> Explanation {
    explain_at(snapshot, ALICE, "createPaymentMethod", PM1, at)
}

fn miss_ids(explanation: &Explanation) -> Vec<(&str, Status, bool)> {
    explanation
        .near_misses
        .iter()
        .map(|m| (m.grant.as_str(), m.status, m.would_allow))
        .collect()
}

#[test]
fn at_expires_at_the_grant_is_a_near_miss_that_expired_at_that_instant() {
    let snap = with_g7();
    let e = pay(&snap, UNTIL);
    assert_eq!(e.decision, "Deny");
    assert_eq!(miss_ids(&e), [("g-7", Status::Expired, true)]);
    assert_eq!(e.near_misses[0].at(), Some(ts(UNTIL)));
    assert_eq!(
        e.summary,
        "would be allowed by grant `g-7`, which expired at 2026-12-03T19:00:00Z"
    );
}

#[test]
fn one_second_before_not_before_the_grant_is_a_near_miss_that_starts_later() {
    let snap = with_g7();
    let e = pay(&snap, "2026-12-03T16:59:59Z");
    assert_eq!(e.decision, "Deny");
    assert_eq!(miss_ids(&e), [("g-7", Status::NotStarted, true)]);
    assert_eq!(e.near_misses[0].at(), Some(ts(FROM)));
    assert_eq!(
        e.summary,
        "would be allowed by grant `g-7`, which starts at 2026-12-03T17:00:00Z"
    );
}

#[test]
fn inside_the_window_edges_the_grant_allows_and_nothing_is_missed() {
    let snap = with_g7();
    for at in [FROM, "2026-12-03T18:59:59Z"] {
        let e = pay(&snap, at);
        assert_eq!(e.decision, "Allow", "{at}");
        assert_eq!(e.satisfied_grants, ["g-7"], "{at}");
        assert!(e.satisfied_permits.is_empty(), "{at}");
        assert!(e.near_misses.is_empty(), "{at}");
        assert_eq!(
            e.summary, "allowed by grant `g-7` until 2026-12-03T19:00:00Z",
            "{at}"
        );
    }
}

#[test]
fn the_decision_log_gets_the_same_near_misses_and_none_for_an_allow() {
    let snap = with_g7();
    let q = query(&snap, ALICE, "createPaymentMethod", PM1);
    for (at, expected) in [
        (UNTIL, vec!["g-7"]),
        ("2026-12-03T16:59:59Z", vec!["g-7"]),
        ("2026-12-03T18:00:00Z", vec![]),
    ] {
        let outcome = engine::decide(&snap, &q, ts(at));
        let ids: Vec<String> = near_misses(&snap, &q, ts(at), &outcome)
            .into_iter()
            .map(|m| m.grant)
            .collect();
        assert_eq!(ids, expected, "{at}");
    }
}

#[test]
fn a_deny_nobody_permits_says_so() {
    let e = explain_at(
        crate::testutil::shipped(),
        r#"User::"bob""#,
        "createPaymentMethod",
        PM1,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(e.decision, "Deny");
    assert_eq!(e.summary, "no policy permits");
    assert!(e.satisfied_permits.is_empty() && e.deciding_forbids.is_empty());
    assert!(e.near_misses.is_empty() && e.grants_suspended.is_none());
}

#[test]
fn a_forbid_names_itself_and_what_it_won_over() {
    let snap = crate::testutil::shipped();
    let e = explain_at(
        snap,
        r#"User::"erin""#,
        "readProject",
        r#"Project::"checkout""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(e.deciding_forbids, ["suspended-principal"]);
    assert_eq!(e.satisfied_permits, ["workspace-member-read"]);
    assert_eq!(
        e.summary,
        "forbidden by `suspended-principal`, which wins over `workspace-member-read`"
    );
}

#[test]
fn a_near_miss_under_a_forbid_would_not_allow_and_the_log_leaves_it_out() {
    // bb-ws1's grant on ws-2 would satisfy its link, but the key never acts outside
    // its own workspace, grant or not.
    let snap = shipped_with_feed(&feed_of(&[
        grant("g-out", BB_WS1, "FinOpsManager", WS2, FROM, UNTIL),
        grant(
            "g-now",
            BB_WS1,
            "FinOpsManager",
            WS2,
            "2026-12-03T19:00:00Z",
            "2026-12-03T20:00:00Z",
        ),
    ]));
    let q = query(&snap, BB_WS1, "createPaymentMethod", PM2);
    let now = ts("2026-12-03T19:30:00Z");
    let outcome = engine::decide(&snap, &q, now);
    let e = explain_outcome(&snap, &q, now, &outcome);
    assert_eq!(e.deciding_forbids, ["apikey-outside-own-workspace"]);
    assert_eq!(e.satisfied_grants, ["g-now"]);
    assert_eq!(miss_ids(&e), [("g-out", Status::Expired, false)]);
    assert_eq!(
        e.summary,
        "forbidden by `apikey-outside-own-workspace`, which wins over grant `g-now`"
    );
    assert!(near_misses(&snap, &q, now, &outcome).is_empty());
}

#[test]
fn grants_whose_role_or_scope_cannot_match_are_not_near_misses() {
    let snap = shipped_with_feed(&feed_of(&[
        // OrganizationUser only reads: no billing writes.
        grant(
            "g-read",
            ALICE,
            "OrganizationUser",
            r#"Organization::"acme""#,
            FROM,
            UNTIL,
        ),
        // The right role in the wrong workspace.
        grant("g-ws2", ALICE, "FinOpsManager", WS2, FROM, UNTIL),
    ]));
    let e = pay(&snap, "2026-12-03T20:00:00Z");
    assert!(e.near_misses.is_empty(), "{e:?}");
    assert_eq!(e.summary, "no policy permits");
}

#[test]
fn the_nearest_near_miss_comes_first_and_the_others_are_counted() {
    let snap = shipped_with_feed(&feed_of(&[
        grant(
            "g-old",
            ALICE,
            "FinOpsManager",
            WS1,
            "2026-12-01T08:00:00Z",
            "2026-12-01T10:00:00Z",
        ),
        grant("g-7", ALICE, "FinOpsManager", WS1, FROM, UNTIL),
        grant(
            "g-next",
            ALICE,
            "FinOpsManager",
            WS1,
            "2026-12-04T09:00:00Z",
            "2026-12-04T10:00:00Z",
        ),
    ]));
    let e = pay(&snap, "2026-12-03T20:00:00Z");
    assert_eq!(
        miss_ids(&e),
        [
            ("g-7", Status::Expired, true),
            ("g-next", Status::NotStarted, true),
            ("g-old", Status::Expired, true),
        ]
    );
    assert_eq!(
        e.summary,
        "would be allowed by grant `g-7`, which expired at 2026-12-03T19:00:00Z (and 2 other grants)"
    );
}

#[test]
fn with_a_stale_feed_grants_in_their_window_are_suspended_near_misses() {
    let mut snap = with_g7();
    snap.feed_deadline = Some(ts("2026-12-03T17:30:00Z"));
    let e = pay(&snap, "2026-12-03T18:00:00Z");
    assert_eq!(e.decision, "Deny");
    assert_eq!(e.grants_suspended, Some("the feed is stale"));
    assert_eq!(miss_ids(&e), [("g-7", Status::Suspended, true)]);
    assert_eq!(e.near_misses[0].at(), None);
    assert_eq!(
        e.summary,
        "grants suspended: the feed is stale; grant `g-7` would allow it"
    );
    // Before the deadline the same grant simply allows.
    assert_eq!(pay(&snap, "2026-12-03T17:29:59Z").decision, "Allow");
}

#[test]
fn waiting_for_the_first_feed_is_named_when_nothing_permits() {
    let mut snap = shipped_with_feed(r#"{"revision":"0","grants":[]}"#);
    snap.feed_deadline = Some(Timestamp::MIN);
    snap.revisions.grants = None;
    let e = pay(&snap, "2026-12-03T18:00:00Z");
    assert_eq!(e.grants_suspended, Some("waiting for the first grant feed"));
    assert_eq!(
        e.summary,
        "no policy permits; grants suspended: waiting for the first grant feed"
    );
}

#[test]
fn an_allow_by_a_role_names_its_permit() {
    let e = explain_at(
        crate::testutil::shipped(),
        ALICE,
        "readProject",
        r#"Project::"checkout""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(e.decision, "Allow");
    assert_eq!(e.satisfied_permits, ["workspace-member-read"]);
    assert_eq!(e.summary, "allowed by `workspace-member-read`");
}

fn custom(policies: &str, entities: &str, feed: &str) -> Snapshot {
    let raw = RawInputs {
        policies: vec![SourceFile {
            path: "p.cedar".into(),
            text: policies.into(),
        }],
        schema: None,
        entities: Some(SourceFile {
            path: "e.json".into(),
            text: entities.into(),
        }),
        feed: Some(crate::feed::parse_document(feed.as_bytes()).unwrap()),
        feed_hash: None,
    };
    Snapshot::build(&raw, Validation::Warn).unwrap()
}

#[test]
fn a_group_grant_out_of_its_window_is_a_near_miss_for_its_members() {
    let snap = custom(
        r#"@id("Ops") permit(principal in ?principal, action == Action::"fix", resource in ?resource);
           @id("errs") permit(principal, action == Action::"fix", resource) when { resource.nope };"#,
        r#"[{"uid":{"type":"User","id":"u"},"attrs":{},"parents":[{"type":"Team","id":"sre"}]},
            {"uid":{"type":"Team","id":"sre"},"attrs":{},"parents":[]},
            {"uid":{"type":"Box","id":"b"},"attrs":{},"parents":[{"type":"Rack","id":"r"}]}]"#,
        &feed_of(&[grant(
            "g-team",
            r#"Team::"sre""#,
            "Ops",
            r#"Rack::"r""#,
            FROM,
            UNTIL,
        )]),
    );
    let e = explain_at(&snap, r#"User::"u""#, "fix", r#"Box::"b""#, UNTIL);
    assert_eq!(miss_ids(&e), [("g-team", Status::Expired, true)]);
    assert_eq!(e.near_misses[0].principal, r#"Team::"sre""#);
    assert_eq!(e.errors.len(), 1, "{e:?}");
    assert_eq!(e.errors[0].policy_id, "errs");

    let outsider = explain_at(&snap, r#"User::"v""#, "fix", r#"Box::"b""#, UNTIL);
    assert!(outsider.near_misses.is_empty());
    assert_eq!(
        outsider.summary,
        "no policy permits (`errs` fails to evaluate)"
    );
}

#[test]
fn an_explanation_serializes_with_snake_case_statuses() {
    let e = pay(&with_g7(), UNTIL);
    let value = serde_json::to_value(&e).unwrap();
    assert_eq!(value["near_misses"][0]["status"], "expired");
    assert_eq!(value["near_misses"][0]["expires_at"], UNTIL);
    assert!(value.get("grants_suspended").is_none());
}

#[test]
fn every_near_miss_that_would_allow_does_allow_inside_its_window() {
    let snap = shipped_with_feed(&feed_of(&[
        grant(
            "g-old",
            ALICE,
            "FinOpsManager",
            WS1,
            "2026-12-01T08:00:00Z",
            "2026-12-01T10:00:00Z",
        ),
        grant("g-7", ALICE, "FinOpsManager", WS1, FROM, UNTIL),
        grant("g-ws2", ALICE, "FinOpsManager", WS2, FROM, UNTIL),
    ]));
    let q = query(&snap, ALICE, "createPaymentMethod", PM1);
    let e = explain(&snap, &q, ts("2026-12-03T20:00:00Z"));
    assert_eq!(e.near_misses.len(), 2, "{e:?}");
    for miss in &e.near_misses {
        assert!(miss.would_allow);
        let inside = engine::decide(&snap, &q, miss.not_before);
        assert!(inside.is_allow(), "{miss:?}");
        let used: Vec<String> = inside.grants.iter().map(|g| g.id.to_string()).collect();
        assert_eq!(used, std::slice::from_ref(&miss.grant));
    }
}
