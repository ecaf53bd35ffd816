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
const WS1: &str = r#"Workspace::"ws-1""#;
const FROM: &str = "2026-12-03T17:00:00Z";
const UNTIL: &str = "2026-12-03T19:00:00Z";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn ask(snapshot: &Snapshot, principal: &str, action: &str, resource: &str, at: &str) -> Outcome {
    let body: Body = serde_json::from_value(json!({
        "principal": principal, "action": format!("Action::\"{action}\""), "resource": resource,
    }))
    .unwrap();
    let query = build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap();
    decide(snapshot, &query, ts(at))
}

fn ids(outcome: &Outcome) -> (Vec<String>, Vec<String>) {
    (
        outcome.reasons.iter().map(ToString::to_string).collect(),
        outcome.grants.iter().map(|g| g.id.to_string()).collect(),
    )
}

#[test]
fn an_allow_resting_on_a_grant_names_it_and_says_until_when() {
    let snap = shipped_with_feed(&feed_of(&[grant(
        "g-1",
        ALICE,
        "FinOpsManager",
        WS1,
        FROM,
        UNTIL,
    )]));
    let outcome = ask(
        &snap,
        ALICE,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(outcome.decision, Decision::Allow);
    assert_eq!(ids(&outcome), (vec!["g-1".into()], vec!["g-1".into()]));
    assert_eq!(outcome.valid_until, Some(ts(UNTIL)));
}

#[test]
fn grant_is_not_in_force_at_expires_at_nor_before_not_before() {
    let snap = shipped_with_feed(&feed_of(&[grant(
        "g-1",
        ALICE,
        "FinOpsManager",
        WS1,
        FROM,
        UNTIL,
    )]));
    let at = |t| {
        ask(
            &snap,
            ALICE,
            "createPaymentMethod",
            r#"PaymentMethod::"pm-1""#,
            t,
        )
        .decision
    };
    assert_eq!(at("2026-12-03T16:59:59.999999999Z"), Decision::Deny);
    assert_eq!(at(FROM), Decision::Allow);
    assert_eq!(at("2026-12-03T18:59:59.999999999Z"), Decision::Allow);
    assert_eq!(at(UNTIL), Decision::Deny);
}

#[test]
fn valid_until_is_the_latest_expiry_of_the_grants_relied_on() {
    let snap = shipped_with_feed(&feed_of(&[
        grant(
            "g-1",
            ALICE,
            "FinOpsManager",
            WS1,
            FROM,
            "2026-12-03T18:30:00Z",
        ),
        grant(
            "g-2",
            ALICE,
            "FinOpsManager",
            r#"Organization::"acme""#,
            FROM,
            "2026-12-03T20:00:00Z",
        ),
    ]));
    let outcome = ask(
        &snap,
        ALICE,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(ids(&outcome).1, ["g-1", "g-2"]);
    assert_eq!(outcome.valid_until, Some(ts("2026-12-03T20:00:00Z")));
}

#[test]
fn an_allow_that_also_rests_on_a_static_policy_has_no_valid_until() {
    // alice is a member of ws-1: she reads projects there anyway.
    let snap = shipped_with_feed(&feed_of(&[grant(
        "g-1",
        ALICE,
        "OrganizationUser",
        r#"Organization::"acme""#,
        FROM,
        UNTIL,
    )]));
    let outcome = ask(
        &snap,
        ALICE,
        "readProject",
        r#"Project::"checkout""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(outcome.decision, Decision::Allow);
    assert_eq!(
        ids(&outcome),
        (
            vec!["g-1".into(), "workspace-member-read".into()],
            vec!["g-1".into()]
        )
    );
    assert_eq!(outcome.valid_until, None);
}

#[test]
fn forbid_wins_over_a_grant() {
    let snap = shipped_with_feed(&feed_of(&[grant(
        "g-admin",
        r#"ApiKey::"bb-ws2""#,
        "OrganizationAdmin",
        r#"Organization::"acme""#,
        FROM,
        "2026-12-03T18:00:00Z",
    )]));
    let outcome = ask(
        &snap,
        r#"ApiKey::"bb-ws2""#,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T17:30:00Z",
    );
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(
        ids(&outcome),
        (vec!["apikey-outside-own-workspace".into()], vec![])
    );
    assert_eq!(outcome.valid_until, None);
    // Inside its own workspace the same grant does allow.
    let inside = ask(
        &snap,
        r#"ApiKey::"bb-ws2""#,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-2""#,
        "2026-12-03T17:30:00Z",
    );
    assert_eq!(
        ids(&inside),
        (vec!["g-admin".into()], vec!["g-admin".into()])
    );
}

#[test]
fn a_grant_does_not_reach_outside_its_scope_or_role() {
    let snap = shipped_with_feed(&feed_of(&[grant(
        "g-1",
        ALICE,
        "FinOpsManager",
        WS1,
        FROM,
        UNTIL,
    )]));
    let other_ws = ask(
        &snap,
        ALICE,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-2""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(other_ws.decision, Decision::Deny);
    let other_action = ask(&snap, ALICE, "deleteWorkspace", WS1, "2026-12-03T18:00:00Z");
    assert_eq!(other_action.decision, Decision::Deny);
    assert!(other_action.grants.is_empty());
    let other_principal = ask(
        &snap,
        r#"User::"bob""#,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(other_principal.decision, Decision::Deny);
}

#[test]
fn grants_are_suspended_when_the_feed_is_stale() {
    let mut snap = shipped_with_feed(&feed_of(&[grant(
        "g-1",
        ALICE,
        "FinOpsManager",
        WS1,
        FROM,
        UNTIL,
    )]));
    snap.feed_deadline = Some(ts("2026-12-03T18:00:00Z"));
    let before = ask(
        &snap,
        ALICE,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T17:59:59Z",
    );
    assert_eq!(before.decision, Decision::Allow);
    let after = ask(
        &snap,
        ALICE,
        "createPaymentMethod",
        r#"PaymentMethod::"pm-1""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(after.decision, Decision::Deny);
    assert!(after.grants_suspended);
    // Static permissions are not affected by a stale feed.
    let plain = ask(
        &snap,
        ALICE,
        "readProject",
        r#"Project::"checkout""#,
        "2026-12-03T18:30:00Z",
    );
    assert_eq!(plain.decision, Decision::Allow);
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
fn a_grant_to_a_group_applies_to_its_members_when_the_role_says_principal_in() {
    let snap = custom(
        r#"@id("Ops") permit(principal in ?principal, action == Action::"fix", resource in ?resource);"#,
        r#"[{"uid":{"type":"User","id":"u"},"attrs":{},"parents":[{"type":"Team","id":"sre"}]},
            {"uid":{"type":"Team","id":"sre"},"attrs":{},"parents":[]},
            {"uid":{"type":"Box","id":"b"},"attrs":{},"parents":[{"type":"Rack","id":"r"}]}]"#,
        &feed_of(&[grant(
            "g-team",
            r#"Team::"sre""#,
            "Ops",
            r#"Rack::"r""#,
            FROM,
            "2026-12-03T20:00:00Z",
        )]),
    );
    let outcome = ask(
        &snap,
        r#"User::"u""#,
        "fix",
        r#"Box::"b""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(
        ids(&outcome),
        (vec!["g-team".into()], vec!["g-team".into()])
    );
    let outsider = ask(
        &snap,
        r#"User::"v""#,
        "fix",
        r#"Box::"b""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(outsider.decision, Decision::Deny);
}

#[test]
fn errors_of_policies_for_other_actions_do_not_appear_but_own_errors_do() {
    let snap = custom(
        r#"@id("errs-a") permit(principal, action == Action::"a", resource) when { principal.nope };
           @id("errs-any") permit(principal, action, resource) when { resource.nope };
           @id("ok-b") permit(principal, action == Action::"b", resource);"#,
        r#"[{"uid":{"type":"User","id":"u"},"attrs":{},"parents":[]},
            {"uid":{"type":"Action","id":"a"},"attrs":{},"parents":[]},
            {"uid":{"type":"Action","id":"b"},"attrs":{},"parents":[]}]"#,
        &feed_of(&[]),
    );
    let b = ask(
        &snap,
        r#"User::"u""#,
        "b",
        r#"Doc::"d""#,
        "2026-12-03T18:00:00Z",
    );
    assert_eq!(ids(&b).0, ["ok-b"]);
    let errors: Vec<&str> = b.errors.iter().map(|e| e.policy_id.as_str()).collect();
    assert_eq!(errors, ["errs-any"]);
    let a = ask(
        &snap,
        r#"User::"u""#,
        "a",
        r#"Doc::"d""#,
        "2026-12-03T18:00:00Z",
    );
    let errors: Vec<&str> = a.errors.iter().map(|e| e.policy_id.as_str()).collect();
    assert_eq!(errors, ["errs-a", "errs-any"]);
    assert_eq!(a.decision, Decision::Deny);
    assert!(
        a.errors[0].message.contains("errs-a"),
        "{}",
        a.errors[0].message
    );
}

#[test]
fn slices_hold_only_policies_that_can_match_the_action() {
    let snap = shipped_with_feed(&feed_of(&[]));
    let create: EntityUid = r#"Action::"createPaymentMethod""#.parse().unwrap();
    let read: EntityUid = r#"Action::"readProject""#.parse().unwrap();
    let total = snap.slices.unsliced().policies().count();
    let for_create = snap.slices.for_action(&create).policies().count();
    let for_read = snap.slices.for_action(&read).policies().count();
    assert!(
        for_create < total && for_read < total,
        "{for_create} {for_read} of {total}"
    );
    let unknown: EntityUid = r#"Action::"neverHeardOf""#.parse().unwrap();
    assert_eq!(snap.slices.for_action(&unknown).policies().count(), total);
}
