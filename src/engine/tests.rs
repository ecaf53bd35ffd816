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

/// `decide` against Cedar's authorizer on the same request: decision, reasons,
/// grants, valid_until and every error's policy id and message.
fn same_as_cedar(snapshot: &Snapshot, principal: &str, action: &str, resource: &str) -> Outcome {
    let body: Body = serde_json::from_value(json!({
        "principal": principal, "action": format!("Action::\"{action}\""), "resource": resource,
        "context": {"mfa": true},
    }))
    .unwrap();
    let query = build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap();
    let now = ts("2026-12-03T18:00:00Z");
    let ours = decide(snapshot, &query, now);
    let active = in_force_grants(snapshot, &query, now);
    let cedar = decide_with_cedar(snapshot, &query, &active);
    assert_eq!(ours.decision, cedar.decision, "decision");
    assert_eq!(ids(&ours), ids(&cedar), "reasons and grants");
    assert_eq!(ours.errors, cedar.errors, "errors");
    assert_eq!(ours.valid_until, cedar.valid_until, "valid_until");
    let (ours_satisfied, ours_errors) = satisfied_grants(snapshot, &query, &active);
    let (set, mut link_errors) = link_grants(&snapshot.bundle, &active);
    let response = Authorizer::new().is_authorized(&query.request, &set, &query.entities);
    let theirs = combine(SetResult::of_response(&response), None, &[]);
    link_errors.extend(theirs.errors.clone());
    let theirs_satisfied = if theirs.is_allow() {
        theirs.reasons
    } else {
        Vec::new()
    };
    assert_eq!(ours_satisfied, theirs_satisfied, "satisfied grants");
    assert_eq!(ours_errors, link_errors, "satisfied grants' errors");
    assert_eq!(
        satisfied_static_permits(snapshot, &query),
        satisfied_static_permits_with_cedar(snapshot, &query),
        "satisfied static permits"
    );
    ours
}

const ERRING: &str = r#"
    @id("needs-level") permit(principal, action == Action::"read", resource) when { principal.level > 2 };
    @id("no-night") forbid(principal, action, resource) when { resource.locked };
    @id("open") permit(principal, action == Action::"list", resource);
    @id("Reader") permit(principal == ?principal, action == Action::"read", resource in ?resource)
        when { resource.classification == "public" };
    @id("Lister") permit(principal == ?principal, action, resource in ?resource);
    @id("Auditor") permit(principal == ?principal, action == Action::"read", resource in ?resource)
        when { principal.badge == "audit" };
"#;

const ERRING_ENTITIES: &str = r#"[
    {"uid":{"type":"User","id":"u"},"attrs":{"badge":"audit"},"parents":[]},
    {"uid":{"type":"User","id":"w"},"attrs":{"level":3},"parents":[]},
    {"uid":{"type":"Doc","id":"plain"},"attrs":{"locked":false},"parents":[{"type":"Folder","id":"f"}]},
    {"uid":{"type":"Doc","id":"public"},"attrs":{"locked":false,"classification":"public"},"parents":[{"type":"Folder","id":"f"}]},
    {"uid":{"type":"Doc","id":"vault"},"attrs":{"locked":true,"classification":"public"},"parents":[{"type":"Folder","id":"f"}]},
    {"uid":{"type":"Doc","id":"bare"},"attrs":{},"parents":[{"type":"Folder","id":"f"}]},
    {"uid":{"type":"Folder","id":"f"},"attrs":{},"parents":[]},
    {"uid":{"type":"Action","id":"read"},"attrs":{},"parents":[]},
    {"uid":{"type":"Action","id":"list"},"attrs":{},"parents":[]}
]"#;

fn erring(grants: &[serde_json::Value]) -> Snapshot {
    custom(ERRING, ERRING_ENTITIES, &feed_of(grants))
}

fn messages(outcome: &Outcome) -> Vec<(&str, &str)> {
    outcome
        .errors
        .iter()
        .map(|e| (e.policy_id.as_str(), e.message.as_str()))
        .collect()
}

#[test]
fn a_static_policy_erring_on_a_missing_attribute_is_named_with_cedars_message() {
    let snap = erring(&[]);
    let outcome = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"plain""#);
    assert_eq!(outcome.decision, Decision::Deny);
    assert!(outcome.reasons.is_empty());
    assert_eq!(
        messages(&outcome),
        [(
            "needs-level",
            "error while evaluating policy `needs-level`: `User::\"u\"` does not have the attribute `level`"
        )]
    );
    // The forbid errs on a resource without `locked`, and the permit that holds still allows.
    let bare = same_as_cedar(&snap, r#"User::"w""#, "read", r#"Doc::"bare""#);
    assert_eq!(bare.decision, Decision::Allow);
    assert_eq!(ids(&bare).0, ["needs-level"]);
    assert_eq!(
        messages(&bare),
        [(
            "no-night",
            "error while evaluating policy `no-night`: `Doc::\"bare\"` does not have the attribute `locked`"
        )]
    );
}

#[test]
fn a_grant_whose_role_errs_is_named_by_its_grant_id_and_does_not_allow() {
    let snap = erring(&[grant(
        "g-read",
        r#"User::"u""#,
        "Reader",
        r#"Folder::"f""#,
        FROM,
        UNTIL,
    )]);
    let outcome = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"plain""#);
    assert_eq!(outcome.decision, Decision::Deny);
    assert!(outcome.grants.is_empty());
    assert_eq!(
        messages(&outcome),
        [
            (
                "g-read",
                "error while evaluating policy `g-read`: `Doc::\"plain\"` does not have the attribute `classification`"
            ),
            (
                "needs-level",
                "error while evaluating policy `needs-level`: `User::\"u\"` does not have the attribute `level`"
            ),
        ]
    );
    let public = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"public""#);
    assert_eq!(public.decision, Decision::Allow);
    assert_eq!(ids(&public), (vec!["g-read".into()], vec!["g-read".into()]));
    assert_eq!(public.valid_until, Some(ts(UNTIL)));
}

#[test]
fn a_forbid_overrides_a_grant_and_names_only_the_forbid() {
    let snap = erring(&[grant(
        "g-read",
        r#"User::"u""#,
        "Reader",
        r#"Folder::"f""#,
        FROM,
        UNTIL,
    )]);
    let outcome = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"vault""#);
    assert_eq!(outcome.decision, Decision::Deny);
    assert_eq!(ids(&outcome), (vec!["no-night".into()], vec![]));
    assert_eq!(outcome.valid_until, None);
}

#[test]
fn several_grants_of_one_role_each_count_on_their_own() {
    let snap = erring(&[
        grant(
            "g-a",
            r#"User::"u""#,
            "Reader",
            r#"Folder::"f""#,
            FROM,
            UNTIL,
        ),
        grant(
            "g-b",
            r#"User::"u""#,
            "Reader",
            r#"Doc::"public""#,
            FROM,
            "2026-12-03T20:00:00Z",
        ),
        grant(
            "g-elsewhere",
            r#"User::"u""#,
            "Reader",
            r#"Folder::"other""#,
            FROM,
            UNTIL,
        ),
        grant(
            "g-later",
            r#"User::"u""#,
            "Reader",
            r#"Folder::"f""#,
            UNTIL,
            "2026-12-04T00:00:00Z",
        ),
        grant(
            "g-audit",
            r#"User::"u""#,
            "Auditor",
            r#"Folder::"f""#,
            FROM,
            UNTIL,
        ),
    ]);
    let public = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"public""#);
    assert_eq!(public.decision, Decision::Allow);
    assert_eq!(
        ids(&public).1,
        ["g-a", "g-audit", "g-b"],
        "in force and in scope, not the one elsewhere nor the later one"
    );
    assert_eq!(public.valid_until, Some(ts("2026-12-03T20:00:00Z")));
    // On a document without `classification` the Reader link in scope errs (the one
    // out of scope fails its scope first, as in Cedar); the Auditor one allows.
    let plain = same_as_cedar(&snap, r#"User::"u""#, "read", r#"Doc::"plain""#);
    assert_eq!(ids(&plain).1, ["g-audit"]);
    let erring: Vec<&str> = plain.errors.iter().map(|e| e.policy_id.as_str()).collect();
    assert_eq!(erring, ["g-a", "needs-level"]);
}

#[test]
fn a_grant_and_a_static_permit_are_both_reasons_and_other_roles_stay_out() {
    let snap = erring(&[grant(
        "g-list",
        r#"User::"w""#,
        "Lister",
        r#"Folder::"f""#,
        FROM,
        UNTIL,
    )]);
    let outcome = same_as_cedar(&snap, r#"User::"w""#, "list", r#"Doc::"plain""#);
    assert_eq!(
        ids(&outcome),
        (vec!["g-list".into(), "open".into()], vec!["g-list".into()])
    );
    assert_eq!(outcome.valid_until, None);
    // The shipped policies and roles agree with Cedar too.
    let shipped = shipped_with_feed(&feed_of(&[
        grant("g-1", ALICE, "FinOpsManager", WS1, FROM, UNTIL),
        grant(
            "g-2",
            ALICE,
            "OrganizationUser",
            r#"Organization::"acme""#,
            FROM,
            UNTIL,
        ),
    ]));
    for (action, resource) in [
        ("createPaymentMethod", r#"PaymentMethod::"pm-1""#),
        ("createPaymentMethod", r#"PaymentMethod::"pm-2""#),
        ("readProject", r#"Project::"checkout""#),
        ("deleteWorkspace", WS1),
    ] {
        same_as_cedar(&shipped, ALICE, action, resource);
    }
}

#[test]
fn a_grant_set_that_would_not_link_is_left_to_cedar() {
    let snap = erring(&[grant(
        "g-read",
        r#"User::"u""#,
        "Reader",
        r#"Folder::"f""#,
        FROM,
        UNTIL,
    )]);
    let body: Body = serde_json::from_value(json!({
        "principal": r#"User::"u""#, "action": r#"Action::"read""#, "resource": r#"Doc::"public""#,
    }))
    .unwrap();
    let query = build_query(body, &snap.bundle, &snap.store, snap.validation).unwrap();
    let active = in_force_grants(&snap, &query, ts("2026-12-03T18:00:00Z"));
    assert_eq!(active.len(), 1);
    let twice = [Arc::clone(&active[0]), Arc::clone(&active[0])];
    assert!(!links_cleanly(&snap.slices.roles, &twice));
    let (satisfied, errors) = satisfied_grants(&snap, &query, &twice);
    assert_eq!(satisfied, [PolicyId::new("g-read")]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].policy_id, "g-read");
    // Cedar's own linking error, as `link_grants` reported it before.
    assert_eq!(errors[0].message, "unable to link template");
}
