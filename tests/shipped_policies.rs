//! The shipped `policies/`, `schema/` and `deploy/local/` data as they are: they
//! validate, and their decisions at fixed instants are pinned here, through the
//! library (`engine::decide` with `now` passed in) and through the CLI binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use cedar_policy::Decision;
use elevate::config::{Sources, Validation};
use elevate::engine::{self, Outcome};
use elevate::request::{Body, build_query};
use elevate::snapshot::{RawInputs, Snapshot};
use jiff::Timestamp;
use serde_json::Value;
use support::{action, api_key, fixture, repo_root, uid, user};

fn shipped_sources() -> Sources {
    let root = repo_root();
    Sources {
        policies: root.join("policies"),
        schema: Some(root.join("schema/elevate.cedarschema")),
        entities: Some(root.join("deploy/local/entities.json")),
        grants: Some(root.join("deploy/local/grants.json")),
        validation: Validation::Strict,
    }
}

fn shipped() -> Snapshot {
    let raw = RawInputs::load(&shipped_sources())
        .unwrap_or_else(|e| panic!("shipped inputs do not load: {e}"));
    Snapshot::build(&raw, Validation::Strict)
        .unwrap_or_else(|e| panic!("shipped inputs do not build: {e}"))
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// Decides `principal action resource` against `snapshot` at `now`.
fn decide(snapshot: &Snapshot, principal: &str, act: &str, resource: &str, now: &str) -> Outcome {
    let body = Body {
        principal: Value::String(principal.to_owned()),
        action: Value::String(action(act)),
        resource: Value::String(resource.to_owned()),
        context: None,
        entities: None,
    };
    let query = build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)
        .unwrap_or_else(|e| panic!("{principal} {act} {resource}: {e}"));
    engine::decide(snapshot, &query, at(now))
}

#[track_caller]
fn assert_outcome(outcome: &Outcome, decision: Decision, reasons: &[&str], grants: &[&str]) {
    let got_reasons: Vec<String> = outcome.reasons.iter().map(ToString::to_string).collect();
    let got_grants: Vec<String> = outcome.grants.iter().map(|g| g.id.to_string()).collect();
    assert_eq!(outcome.decision, decision, "{outcome:?}");
    assert_eq!(got_reasons, reasons, "{outcome:?}");
    assert_eq!(got_grants, grants, "{outcome:?}");
    assert!(outcome.errors.is_empty(), "{outcome:?}");
    assert!(!outcome.grants_suspended, "{outcome:?}");
}

const PM1: &str = "PaymentMethod::\"pm-1\"";
const G_ALICE: &str = "g-finops-alice";

// ------------------------------------------------------------------- loading

#[test]
fn shipped_inputs_validate_strictly_with_no_findings_and_no_rejected_grants() {
    let snapshot = shipped();
    assert!(
        snapshot.bundle.findings.is_empty(),
        "{:?}",
        snapshot.bundle.findings
    );
    assert!(
        snapshot.store.findings.is_empty(),
        "{:?}",
        snapshot.store.findings
    );
    assert!(
        snapshot.grants.rejected.is_empty(),
        "{:?}",
        snapshot.grants.rejected
    );
    assert_eq!(snapshot.grants.len(), 4);
    assert_eq!(snapshot.bundle.statics.policies().count(), 19);
    let mut roles: Vec<String> = snapshot
        .bundle
        .roles
        .keys()
        .map(ToString::to_string)
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        ["FinOpsManager", "OrganizationAdmin", "OrganizationUser"]
    );
    let finops = &snapshot.bundle.roles[&cedar_policy::PolicyId::new("FinOpsManager")];
    assert_eq!(finops.max_duration, jiff::SignedDuration::from_hours(4));
    let admin = &snapshot.bundle.roles[&cedar_policy::PolicyId::new("OrganizationAdmin")];
    assert_eq!(
        (admin.max_duration, admin.approvals),
        (jiff::SignedDuration::from_hours(2), 2)
    );
}

// ----------------------------------------------------------- g-finops-alice

#[test]
fn finops_grant_allows_creating_a_payment_method_inside_its_window() {
    let s = shipped();
    let outcome = decide(
        &s,
        &user("alice"),
        "createPaymentMethod",
        PM1,
        "2026-12-03T18:00:00Z",
    );
    assert_outcome(&outcome, Decision::Allow, &[G_ALICE], &[G_ALICE]);
    assert_eq!(outcome.valid_until, Some(at("2026-12-03T19:00:00Z")));
    let last = decide(
        &s,
        &user("alice"),
        "createPaymentMethod",
        PM1,
        "2026-12-03T18:59:59.999999999Z",
    );
    assert_outcome(&last, Decision::Allow, &[G_ALICE], &[G_ALICE]);
}

#[test]
fn grant_is_in_force_at_exactly_not_before() {
    let s = shipped();
    let outcome = decide(
        &s,
        &user("alice"),
        "createPaymentMethod",
        PM1,
        "2026-12-03T17:00:00Z",
    );
    assert_outcome(&outcome, Decision::Allow, &[G_ALICE], &[G_ALICE]);
}

#[test]
fn grant_is_not_in_force_at_expires_at() {
    let s = shipped();
    let outcome = decide(
        &s,
        &user("alice"),
        "createPaymentMethod",
        PM1,
        "2026-12-03T19:00:00Z",
    );
    assert_outcome(&outcome, Decision::Deny, &[], &[]);
    assert_eq!(outcome.valid_until, None);
}

#[test]
fn grant_is_not_in_force_before_not_before() {
    let s = shipped();
    for now in ["2026-12-03T16:59:59Z", "2026-12-03T16:59:59.999999999Z"] {
        let outcome = decide(&s, &user("alice"), "createPaymentMethod", PM1, now);
        assert_outcome(&outcome, Decision::Deny, &[], &[]);
    }
}

#[test]
fn finops_grant_does_not_reach_outside_its_workspace_or_beyond_billing() {
    let s = shipped();
    let now = "2026-12-03T18:00:00Z";
    let outcome = decide(
        &s,
        &user("alice"),
        "createPaymentMethod",
        &uid("PaymentMethod", "pm-2"),
        now,
    );
    assert_outcome(&outcome, Decision::Deny, &[], &[]);
    let outcome = decide(
        &s,
        &user("alice"),
        "deleteProject",
        &uid("Project", "checkout"),
        now,
    );
    assert_outcome(&outcome, Decision::Deny, &[], &[]);
    // Her day-to-day member role is unaffected by the grant.
    let outcome = decide(
        &s,
        &user("alice"),
        "readProject",
        &uid("Project", "checkout"),
        now,
    );
    assert_outcome(&outcome, Decision::Allow, &["workspace-member-read"], &[]);
    assert_eq!(outcome.valid_until, None);
}

// ----------------------------------------------------------- other shipped

#[test]
fn expired_grant_of_dave_never_allows_on_the_day_of_the_demo() {
    let s = shipped();
    let now = "2026-12-03T18:00:00Z";
    for (act, resource) in [
        ("readProject", uid("Project", "checkout")),
        ("readOrganization", uid("Organization", "acme")),
        ("readPaymentMethod", PM1.to_owned()),
    ] {
        let outcome = decide(&s, &user("dave"), act, &resource, now);
        assert_outcome(&outcome, Decision::Deny, &[], &[]);
    }
    // Inside its old window it did allow: the Deny above is the window, not the grant.
    let outcome = decide(
        &s,
        &user("dave"),
        "readProject",
        &uid("Project", "checkout"),
        "2026-12-01T10:00:00Z",
    );
    assert_outcome(
        &outcome,
        Decision::Allow,
        &["g-expired-dave"],
        &["g-expired-dave"],
    );
    assert_eq!(outcome.valid_until, Some(at("2026-12-01T12:00:00Z")));
    let outcome = decide(
        &s,
        &user("dave"),
        "readProject",
        &uid("Project", "warehouse"),
        now,
    );
    assert_outcome(
        &outcome,
        Decision::Allow,
        &["workspace-manager-read-write"],
        &[],
    );
}

#[test]
fn workspace_owner_reads_payment_methods_but_cannot_create_them() {
    let s = shipped();
    let now = "2026-12-03T18:00:00Z";
    let outcome = decide(&s, &user("bob"), "readPaymentMethod", PM1, now);
    assert_outcome(
        &outcome,
        Decision::Allow,
        &["workspace-owner-read-write"],
        &[],
    );
    let outcome = decide(&s, &user("bob"), "createPaymentMethod", PM1, now);
    assert_outcome(&outcome, Decision::Deny, &[], &[]);
    let outcome = decide(
        &s,
        &user("bob"),
        "manageMembers",
        &uid("Workspace", "ws-1"),
        now,
    );
    assert_outcome(&outcome, Decision::Allow, &["workspace-owner-admin"], &[]);
}

#[test]
fn suspended_user_is_denied_by_the_suspension_guardrail() {
    let s = shipped();
    let outcome = decide(
        &s,
        &user("erin"),
        "readProject",
        &uid("Project", "checkout"),
        "2026-12-03T18:00:00Z",
    );
    assert_outcome(&outcome, Decision::Deny, &["suspended-principal"], &[]);
}

#[test]
fn building_block_key_creates_a_payment_method_through_its_finops_grant() {
    let s = shipped();
    let now = "2026-12-03T18:00:00Z";
    let outcome = decide(&s, &api_key("bb-ws1"), "createPaymentMethod", PM1, now);
    assert_outcome(
        &outcome,
        Decision::Allow,
        &["g-finops-bb"],
        &["g-finops-bb"],
    );
    assert_eq!(outcome.valid_until, Some(at("2026-12-03T21:00:00Z")));
    // Without the grant it is a manager key: no billing.
    let outcome = decide(
        &s,
        &api_key("bb-ws1"),
        "createPaymentMethod",
        PM1,
        "2026-12-03T21:00:00Z",
    );
    assert_outcome(&outcome, Decision::Deny, &[], &[]);
}

#[test]
fn org_admin_key_of_ws2_is_forbidden_outside_ws2() {
    let s = shipped();
    let now = "2026-12-03T18:00:00Z";
    for (act, resource) in [
        ("createPaymentMethod", PM1.to_owned()),
        ("readProject", uid("Project", "checkout")),
        ("readOrganization", uid("Organization", "acme")),
    ] {
        let outcome = decide(&s, &api_key("bb-ws2"), act, &resource, now);
        assert_outcome(
            &outcome,
            Decision::Deny,
            &["apikey-outside-own-workspace"],
            &[],
        );
    }
    let outcome = decide(
        &s,
        &api_key("bb-ws2"),
        "createPaymentMethod",
        &uid("PaymentMethod", "pm-2"),
        now,
    );
    assert_outcome(
        &outcome,
        Decision::Allow,
        &["g-orgadmin-bb2"],
        &["g-orgadmin-bb2"],
    );
    let outcome = decide(
        &s,
        &api_key("bb-ws2"),
        "deleteWorkspace",
        &uid("Workspace", "ws-2"),
        now,
    );
    assert_outcome(
        &outcome,
        Decision::Deny,
        &["apikey-no-member-admin-or-workspace-deletion"],
        &[],
    );
}

// ------------------------------------------------------------------------ CLI

fn elevate(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_elevate"));
    command.current_dir(dir).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ELEVATE_") {
            command.env_remove(key);
        }
    }
    command.env("NO_COLOR", "1");
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_validate_accepts_the_shipped_inputs() {
    let out = elevate(&repo_root(), &["validate"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.starts_with("valid: 19 policies, 3 elevation roles"),
        "{stdout}"
    );
    assert!(stdout.contains("4 grants (0 rejected)"), "{stdout}");

    let out = elevate(&repo_root(), &["validate", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["grants"], 4);
    assert_eq!(doc["rejected_grants"], serde_json::json!([]));
    assert_eq!(doc["findings"], serde_json::json!([]));
}

#[test]
fn cli_validate_names_the_file_and_line_of_a_broken_policy() {
    let policies = fixture("broken_policy").join("policies");
    let out = elevate(
        &repo_root(),
        &[
            "validate",
            "--policies",
            policies.to_str().unwrap(),
            "--schema",
            "schema/elevate.cedarschema",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("broken.cedar:9:"), "{stderr}");
    assert!(stderr.contains("cannot parse policies"), "{stderr}");
}

#[test]
fn cli_validate_rejects_a_feed_with_a_bad_grant() {
    let feed = fixture("bad_grant").join("grants.json");
    let out = elevate(
        &repo_root(),
        &[
            "validate",
            "--policies",
            "policies",
            "--schema",
            "schema/elevate.cedarschema",
            "--entities",
            "deploy/local/entities.json",
            "--grants",
            feed.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(stderr.contains("grant `g-too-long`"), "{stderr}");
    assert!(
        text(&out.stdout).contains("1 grants (1 rejected)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn cli_authorize_allows_through_the_grant_at_an_instant_in_its_window() {
    let out = elevate(
        &repo_root(),
        &[
            "authorize",
            "--principal",
            &user("alice"),
            "--action",
            &action("createPaymentMethod"),
            "--resource",
            PM1,
            "--at",
            "2026-12-03T18:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["decision"], "Allow", "{answer:#}");
    assert_eq!(
        answer["diagnostics"]["reason"],
        serde_json::json!([G_ALICE])
    );
    assert_eq!(answer["grants"], serde_json::json!([G_ALICE]));
    assert_eq!(
        answer["valid_until"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        at("2026-12-03T19:00:00Z")
    );
    assert_eq!(
        answer["at"].as_str().unwrap().parse::<Timestamp>().unwrap(),
        at("2026-12-03T18:00:00Z")
    );
}

#[test]
fn cli_authorize_denies_at_expires_at_with_exit_code_2() {
    let out = elevate(
        &repo_root(),
        &[
            "authorize",
            "--principal",
            &user("alice"),
            "--action",
            &action("createPaymentMethod"),
            "--resource",
            PM1,
            "--at",
            "2026-12-03T19:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["decision"], "Deny", "{answer:#}");
    assert_eq!(answer["diagnostics"]["reason"], serde_json::json!([]));
    assert_eq!(answer["grants"], serde_json::json!([]));
    assert_eq!(answer["valid_until"], Value::Null);

    // A guardrail Deny names the forbid.
    let out = elevate(
        &repo_root(),
        &[
            "authorize",
            "--principal",
            &api_key("bb-ws2"),
            "--action",
            &action("readProject"),
            "--resource",
            &uid("Project", "checkout"),
            "--at",
            "2026-12-03T18:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer["diagnostics"]["reason"],
        serde_json::json!(["apikey-outside-own-workspace"])
    );
}

#[test]
fn cli_authorize_rejects_an_unknown_action_with_exit_code_3() {
    let out = elevate(
        &repo_root(),
        &[
            "authorize",
            "--principal",
            &user("alice"),
            "--action",
            &action("launchRocket"),
            "--resource",
            PM1,
            "--at",
            "2026-12-03T18:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "stdout: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("launchRocket"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
