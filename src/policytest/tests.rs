#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cedar_policy::Decision;

use super::*;
use crate::config::{Sources, Validation};
use crate::feed::RejectReason;
use crate::policy::Bundle;
use crate::testutil::repo;

fn shipped_raw() -> RawInputs {
    RawInputs::load(&Sources {
        policies: repo("policies"),
        schema: Some(repo("schema/elevate.cedarschema")),
        entities: Some(repo("deploy/local/entities.json")),
        grants: None,
        validation: Validation::Strict,
    })
    .unwrap()
}

fn parse(text: &str) -> TestFile {
    parse_file(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn parse_errors(text: &str) -> Vec<String> {
    let Err(errors) = parse_file(Path::new("t.toml"), text) else {
        panic!("the file should be invalid")
    };
    errors.iter().map(ToString::to_string).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const GRANT: &str = r#"
[[grants]]
id = "g-1"
principal = 'User::"alice"'
role = "FinOpsManager"
scope = 'Workspace::"ws-1"'
not_before = 2026-12-03T17:00:00Z
expires_at = 2026-12-03T19:00:00Z
"#;

#[test]
fn file_defaults_fill_cases_and_cases_override_them() {
    let file = parse(&format!(
        r#"
at = 2026-12-03T18:00:00Z
principal = 'User::"alice"'
{GRANT}
[[case]]
name = "inherits"
action = 'Action::"createPaymentMethod"'
resource = 'PaymentMethod::"pm-1"'
expect = {{ decision = "Allow", reasons = ["g-1"], grants = ["g-1"] }}

[[case]]
name = "overrides"
at = "2026-12-03T20:00:00+01:00"
principal = {{ type = "User", id = "bob" }}
grants = []
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = {{ decision = "Deny" }}
"#
    ));
    let [first, second] = &file.cases[..] else {
        panic!("two cases")
    };
    assert_eq!(first.index, 1);
    assert_eq!(
        first.at,
        "2026-12-03T18:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(first.principal, Value::String("User::\"alice\"".into()));
    assert_eq!(first.grants.len(), 1);
    // A TOML datetime in a grant reaches the feed as its RFC 3339 text.
    assert_eq!(first.grants[0]["not_before"], "2026-12-03T17:00:00Z");
    assert_eq!(first.expect.reasons, Some(set(&["g-1"])));
    assert_eq!(first.expect.errors, None);

    assert_eq!(
        second.at,
        "2026-12-03T19:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(second.principal["id"], "bob");
    assert!(second.grants.is_empty());
    assert_eq!(second.expect.decision, Decision::Deny);
    assert_eq!(second.expect.reasons, None);
}

#[test]
fn a_misspelt_expectation_is_an_error_naming_the_case() {
    let errors = parse_errors(
        r#"
at = 2026-12-03T18:00:00Z
[[case]]
name = "alice reads"
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow", reason = ["workspace-member-read"] }
"#,
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("`t.toml`: case #1 `alice reads`: unknown field `reason`"),
        "{errors:?}"
    );
}

#[test]
fn every_broken_case_is_reported() {
    let errors = parse_errors(
        r#"
[[case]]
name = "no instant"
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }

[[case]]
name = "bad decision"
at = 2026-12-03T18:00:00Z
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "allow" }

[[case]]
at = 2026-12-03T18:00:00Z
expect = { decision = "Allow" }

[[case]]
name = "local time"
at = 2026-12-03T18:00:00
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }
"#,
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("case #1 `no instant`: `at` is missing"));
    assert!(errors[1].contains("case #2 `bad decision`: `expect.decision` is `allow`"));
    assert!(
        errors[2].contains("case #3: missing field `name`"),
        "{}",
        errors[2]
    );
    assert!(errors[3].contains("case #4 `local time`: `at` is `2026-12-03T18:00:00`"));
}

#[test]
fn names_are_unique_in_a_file() {
    let case = r#"
[[case]]
name = "same"
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }
"#;
    let errors = parse_errors(&format!("at = 2026-12-03T18:00:00Z\n{case}{case}"));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("case #2 `same`: another case in the file has this name"));
}

#[test]
fn file_level_mistakes_name_the_file() {
    let errors = parse_errors("at = 2026-12-03T18:00:00Z\nprincipl = 'User::\"alice\"'\n");
    assert!(
        errors[0].starts_with("`t.toml`: unknown field `principl`"),
        "{errors:?}"
    );
    let errors = parse_errors("at = 2026-12-03T18:00:00Z\n");
    assert_eq!(errors, ["`t.toml`: no `[[case]]` in the file"]);
    let errors = parse_errors("at = 2026-12-03T18:00:00Z\n[[case]\n");
    assert!(errors[0].starts_with("t.toml:2:"), "{errors:?}");
    assert!(errors[0].contains("not valid TOML"), "{errors:?}");
}

#[test]
fn entities_may_be_a_json_string() {
    let file = parse(
        r#"
at = 2026-12-03T18:00:00Z
entities = '[{"uid": {"type": "Project", "id": "p"}, "attrs": {}, "parents": []}]'
[[case]]
name = "x"
principal = 'User::"alice"'
action = 'Action::"readProject"'
resource = 'Project::"p"'
expect = { decision = "Deny" }
"#,
    );
    assert_eq!(
        file.cases[0].entities.as_ref().unwrap()[0]["uid"]["id"],
        "p"
    );
}

fn case_file(grants: &str, cases: &str) -> TestFile {
    parse(&format!(
        "at = 2026-12-03T18:00:00Z\nprincipal = 'User::\"alice\"'\n{grants}\n{cases}"
    ))
}

#[test]
fn cases_are_decided_like_the_sidecar() {
    let file = case_file(
        GRANT,
        r#"
[[case]]
name = "the grant allows"
action = 'Action::"createPaymentMethod"'
resource = 'PaymentMethod::"pm-1"'
expect = { decision = "Allow", reasons = ["g-1"], grants = ["g-1"], errors = [] }

[[case]]
name = "wrong expectations"
action = 'Action::"createPaymentMethod"'
resource = 'PaymentMethod::"pm-2"'
expect = { decision = "Allow", reasons = ["g-1"], grants = ["g-1"] }

[[case]]
name = "unchecked reasons"
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }
"#,
    );
    let report = run(&shipped_raw(), Validation::Strict, &[file], None).unwrap();
    assert_eq!((report.passed(), report.failed()), (2, 1));
    let [ok, failed, unchecked] = &report.results[..] else {
        panic!("three results")
    };
    assert!(ok.passed());
    assert_eq!(
        ok.actual.valid_until,
        Some("2026-12-03T19:00:00Z".parse().unwrap())
    );
    assert_eq!(
        failed.mismatches,
        [Mismatch::Decision, Mismatch::Reasons, Mismatch::Grants]
    );
    assert_eq!(failed.actual.decision, Decision::Deny);
    assert!(failed.actual.reasons.is_empty());
    assert_eq!(failed.label(), "t.toml: wrong expectations");
    assert_eq!(unchecked.actual.reasons, set(&["workspace-member-read"]));
    assert!(unchecked.passed());
    // The three cases share one grant set, so one snapshot (plus none per case).
    assert_eq!(report.snapshots, 1);
}

#[test]
fn a_grant_the_feed_rejects_fails_its_case_with_the_reason() {
    let too_long = GRANT.replace("2026-12-03T19:00:00Z", "2026-12-03T21:00:01Z");
    let file = case_file(
        &too_long,
        r#"
[[case]]
name = "rests on a grant longer than the role allows"
action = 'Action::"createPaymentMethod"'
resource = 'PaymentMethod::"pm-1"'
expect = { decision = "Deny" }
"#,
    );
    let report = run(&shipped_raw(), Validation::Strict, &[file], None).unwrap();
    let result = &report.results[0];
    assert!(!result.passed());
    assert_eq!(result.mismatches, [Mismatch::RejectedGrants]);
    assert_eq!(result.rejected_grants.len(), 1);
    assert_eq!(result.rejected_grants[0].reason, RejectReason::TooLong);
    assert_eq!(result.rejected_grants[0].id.as_deref(), Some("g-1"));
}

#[test]
fn one_snapshot_per_distinct_grant_set() {
    let file = case_file(
        GRANT,
        r#"
[[case]]
name = "a"
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }

[[case]]
name = "b"
grants = []
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }

[[case]]
name = "c"
action = 'Action::"readProject"'
resource = 'Project::"ledger"'
expect = { decision = "Allow" }
"#,
    );
    let report = run(&shipped_raw(), Validation::Strict, &[file], None).unwrap();
    assert_eq!(report.snapshots, 2);
    // Results keep the file's order, not the grouping's.
    let names: Vec<&str> = report.results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn the_filter_selects_by_file_and_name() {
    let file = case_file(
        "",
        r#"
[[case]]
name = "reads checkout"
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }

[[case]]
name = "reads ledger"
action = 'Action::"readProject"'
resource = 'Project::"ledger"'
expect = { decision = "Allow" }
"#,
    );
    let raw = shipped_raw();
    let files = [file];
    let report = run(&raw, Validation::Strict, &files, Some("ledger")).unwrap();
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.filtered_out, 1);
    let report = run(&raw, Validation::Strict, &files, Some("t.toml: reads")).unwrap();
    assert_eq!(report.results.len(), 2);
}

#[test]
fn a_request_the_schema_rejects_makes_the_suite_invalid() {
    let file = case_file(
        "",
        r#"
[[case]]
name = "fine"
action = 'Action::"readProject"'
resource = 'Project::"checkout"'
expect = { decision = "Allow" }

[[case]]
name = "no such action"
action = 'Action::"teleport"'
resource = 'Project::"checkout"'
expect = { decision = "Deny" }
"#,
    );
    let errors = run(&shipped_raw(), Validation::Strict, &[file], None).unwrap_err();
    assert_eq!(errors.len(), 1);
    let message = errors[0].to_string();
    assert!(
        message.starts_with("`t.toml`: case #2 `no such action`: "),
        "{message}"
    );
    assert!(message.contains("teleport"), "{message}");
}

/// Every policy id of the shipped policies is pinned by the shipped suite: a static
/// policy's id is an expected reason of some case, and a role (template) is the role
/// of a grant some case expects to be used. Adding a policy without a test fails here.
#[test]
fn the_shipped_suite_names_every_shipped_policy() {
    let raw = shipped_raw();
    let bundle = Bundle::build(
        raw.policies.clone(),
        raw.schema.as_ref(),
        Validation::Strict,
    )
    .unwrap();
    let files = load_files(&[repo("policies").join(DEFAULT_DIR)]).unwrap();

    let mut reasons: BTreeSet<String> = BTreeSet::new();
    let mut roles_used: BTreeSet<String> = BTreeSet::new();
    for case in files.iter().flat_map(|f| &f.cases) {
        let expected: BTreeSet<&String> = case
            .expect
            .reasons
            .iter()
            .chain(&case.expect.grants)
            .flatten()
            .collect();
        reasons.extend(expected.iter().map(|s| (*s).clone()));
        for grant in &case.grants {
            if let (Some(id), Some(role)) = (grant["id"].as_str(), grant["role"].as_str())
                && expected.iter().any(|e| e.as_str() == id)
            {
                roles_used.insert(role.to_owned());
            }
        }
    }
    let mut missing: Vec<String> = Vec::new();
    for policy in bundle.statics.policies() {
        let id = policy.id().to_string();
        if !reasons.contains(&id) {
            missing.push(format!("policy `{id}` is no case's expected reason"));
        }
    }
    for role in bundle.roles.keys() {
        if !roles_used.contains(role.as_ref() as &str) {
            missing.push(format!("role `{role}` backs no grant that a case expects"));
        }
    }
    assert!(
        missing.is_empty(),
        "the shipped suite in policies/tests/ does not pin:\n{}",
        missing.join("\n")
    );
    // Guard the check itself: it saw the shipped policies and the shipped suite.
    assert!(bundle.statics.policies().count() >= 19);
    assert_eq!(bundle.roles.len(), 3);
}

#[test]
fn the_shipped_suite_passes() {
    let files = load_files(&[repo("policies").join(DEFAULT_DIR)]).unwrap();
    let report = run(&shipped_raw(), Validation::Strict, &files, None).unwrap();
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed())
        .map(CaseResult::label)
        .collect();
    assert!(failed.is_empty(), "failing shipped cases: {failed:?}");
    assert!(report.results.len() > 100);
}

#[test]
fn a_directory_without_test_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a test").unwrap();
    let errors = load_files(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(matches!(errors[0], SuiteError::NoTests { .. }));
    let errors = load_files(&[PathBuf::from("/nonexistent/elevate-tests")]).unwrap_err();
    assert!(matches!(errors[0], SuiteError::Read { .. }));
}
