//! `elevate test` and `elevate fmt` as real subprocesses: on the fixture policies of
//! `tests/fixtures/policy_tools/` (a passing, a failing, an invalid test file and one
//! resting on a grant the feed rejects; an unformatted policy file), and the shipped
//! suite in `policies/tests/` against the shipped policies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures/policy_tools").join(path)
}

/// Runs `elevate ARGS` from the repository root.
fn elevate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Runs `elevate test` on fixture test files against the fixture policies.
fn test_fixture(extra: &[&str]) -> Output {
    let policies = fixture("policies");
    let schema = fixture("schema.cedarschema");
    let entities = fixture("entities.json");
    let mut args = vec![
        "test",
        "--policies",
        policies.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--entities",
        entities.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    elevate(&args)
}

fn case_file(name: &str) -> String {
    fixture("cases").join(name).to_str().unwrap().to_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

#[test]
fn a_passing_test_file_exits_0() {
    let out = test_fixture(&[&case_file("pass.toml")]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{text}"
    );
    assert!(text.contains("ok     "), "{text}");
    assert!(text.ends_with("\n4 passed, 0 failed\n"), "{text}");
}

#[test]
fn a_failing_test_file_exits_2_with_the_diff() {
    let out = test_fixture(&[&case_file("fail.toml")]);
    let text = stdout(&out);
    assert_eq!(code(&out), 2, "{text}{}", stderr(&out));
    assert!(text.contains("FAILED "), "{text}");
    assert!(text.contains("fail.toml: a reader writes"), "{text}");
    assert!(
        text.contains("! decision  expected Allow, actual Deny"),
        "{text}"
    );
    assert!(
        text.contains("! reasons   expected [reader-reads], actual []"),
        "{text}"
    );
    assert!(
        text.contains("  grants    expected [], actual []"),
        "{text}"
    );
    assert!(text.contains("  errors    none"), "{text}");
    assert!(text.ends_with("\n1 passed, 1 failed\n"), "{text}");
}

#[test]
fn an_invalid_test_file_exits_3_naming_the_file_and_the_case() {
    // The passing file beside it is not run: a broken suite decides nothing.
    let out = test_fixture(&[&case_file("pass.toml"), &case_file("invalid.toml")]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}{err}", stdout(&out));
    assert!(err.contains("invalid.toml"), "{err}");
    assert!(err.contains("case #2 `misspelt expectation`"), "{err}");
    assert!(err.contains("unknown field `decison`"), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn inputs_that_do_not_load_exit_3() {
    let out = elevate(&[
        "test",
        "--policies",
        "/nonexistent/elevate-policies",
        &case_file("pass.toml"),
    ]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("/nonexistent/elevate-policies"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_json_report_has_every_case() {
    let out = test_fixture(&["--format", "json", &case_file("fail.toml")]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["passed"], 1);
    assert_eq!(report["failed"], 1);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["name"], "a reader reads");
    assert_eq!(cases[0]["status"], "ok");
    assert_eq!(
        cases[0]["actual"]["reasons"],
        serde_json::json!(["reader-reads"])
    );
    let failed = &cases[1];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["case"], 2);
    assert!(failed["file"].as_str().unwrap().ends_with("fail.toml"));
    assert_eq!(failed["at"], "2026-12-03T18:00:00Z");
    assert_eq!(failed["expected"]["decision"], "Allow");
    assert_eq!(failed["actual"]["decision"], "Deny");
    assert_eq!(
        failed["mismatches"],
        serde_json::json!(["decision", "reasons"])
    );
}

#[test]
fn the_json_report_of_an_invalid_file_names_it() {
    let out = test_fixture(&["--format", "json", &case_file("invalid.toml")]);
    assert_eq!(code(&out), 3);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["valid"], false);
    let error = &report["errors"][0];
    assert!(error["file"].as_str().unwrap().ends_with("invalid.toml"));
    assert_eq!(error["case"]["index"], 2);
    assert_eq!(error["case"]["name"], "misspelt expectation");
}

#[test]
fn a_grant_the_feed_rejects_fails_the_case_with_the_reason() {
    let out = test_fixture(&[&case_file("rejected.toml")]);
    let text = stdout(&out);
    assert_eq!(code(&out), 2, "{text}{}", stderr(&out));
    assert!(text.contains("FAILED "), "{text}");
    assert!(
        text.contains(
            "! rejected  grant `g-long`: lasts 2h but role `Editor` allows at most 1h (too_long)"
        ),
        "{text}"
    );
    let out = test_fixture(&["--format", "json", &case_file("rejected.toml")]);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rejected = &report["cases"][0]["rejected_grants"][0];
    assert_eq!(rejected["id"], "g-long");
    assert_eq!(rejected["reason"], "too_long");
}

#[test]
fn the_filter_runs_matching_cases_only() {
    let out = test_fixture(&["--filter", "archived", &case_file("pass.toml")]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("pass.toml: archived documents are locked"),
        "{text}"
    );
    assert!(
        text.ends_with("\n1 passed, 0 failed, 3 filtered out\n"),
        "{text}"
    );
}

#[test]
fn the_shipped_suite_passes_against_the_shipped_policies() {
    // No arguments at all: the shipped inputs and `policies/tests/`, as in CI.
    let out = elevate(&["test"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let summary = text.lines().last().unwrap();
    let passed: usize = summary
        .strip_suffix(" passed, 0 failed")
        .unwrap_or_else(|| panic!("summary: {summary}"))
        .parse()
        .unwrap();
    assert!(passed > 100, "{summary}");
    for file in [
        "workspace_roles.toml",
        "elevation_roles_finops_manager.toml",
        "guardrails.toml",
        "workflow_finops_request.toml",
        "grant_windows.toml",
    ] {
        assert!(text.contains(&format!("policies/tests/{file}: ")), "{file}");
    }
}

// ------------------------------------------------------------------------ fmt

/// A temp dir holding a copy of the unformatted fixture, and the copy's path.
fn messy_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messy.cedar");
    std::fs::copy(fixture("unformatted/messy.cedar"), &path).unwrap();
    (dir, path)
}

fn comment_lines(text: &str) -> Vec<String> {
    // The fixture's comments all start a line or follow code after `) ` or `}`;
    // the part from `//` on is what must survive (the string literal's `//` too).
    text.lines()
        .filter_map(|l| l.find("//").map(|i| l[i..].trim_end().to_owned()))
        .collect()
}

#[test]
fn fmt_check_lists_an_unformatted_file_and_writes_nothing() {
    let (dir, path) = messy_copy();
    let before = std::fs::read_to_string(&path).unwrap();
    let out = elevate(&["fmt", "--check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", path.display()));
    assert!(
        stderr(&out).contains("1 of 1 policy files would change"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
}

#[test]
fn fmt_writes_the_file_and_a_second_run_changes_nothing() {
    let (dir, path) = messy_copy();
    let dir_arg = dir.path().to_str().unwrap();
    let before = std::fs::read_to_string(&path).unwrap();

    let out = elevate(&["fmt", dir_arg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("formatted {}\n", path.display()));
    let formatted = std::fs::read_to_string(&path).unwrap();
    assert_ne!(formatted, before);
    assert!(
        formatted.contains("permit (\n  principal,\n  action == Action::\"read\","),
        "{formatted}"
    );
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["messy.cedar"]);

    let out = elevate(&["fmt", "--check", dir_arg]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = elevate(&["fmt", dir_arg]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("0 of 1 policy files changed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), formatted);
}

/// What `unformatted/messy.cedar` decides, before formatting and after.
const MESSY_SUITE: &str = r#"
at = 2026-12-03T18:00:00Z

[[case]]
name = "a reader reads"
principal = 'User::"ann"'
action = 'Action::"read"'
resource = 'Document::"d-1"'
expect = { decision = "Allow", reasons = ["reader-reads"] }

[[case]]
name = "archived documents are locked"
principal = 'User::"ann"'
action = 'Action::"read"'
resource = 'Document::"d-old"'
expect = { decision = "Deny", reasons = ["archived-locked"] }
"#;

#[test]
fn fmt_keeps_comments_and_annotations_and_the_policies_mean_the_same() {
    let (dir, path) = messy_copy();
    let before = std::fs::read_to_string(&path).unwrap();
    let out = elevate(&["fmt", &path.display().to_string()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after = std::fs::read_to_string(&path).unwrap();

    assert_eq!(comment_lines(&after), comment_lines(&before), "{after}");
    for annotation in [
        "@id(\"reader-reads\")",
        "@description(\"a // slash inside a string\")",
        "@id(\"archived-locked\")",
    ] {
        assert!(after.contains(annotation), "{annotation} lost:\n{after}");
    }
    // The formatted policies still decide as the originals did.
    let schema = fixture("schema.cedarschema");
    let entities = fixture("entities.json");
    let suite = dir.path().join("suite.toml");
    std::fs::write(&suite, MESSY_SUITE).unwrap();
    let out = elevate(&[
        "test",
        "--policies",
        path.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--entities",
        entities.to_str().unwrap(),
        suite.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).ends_with("\n2 passed, 0 failed\n"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn fmt_refuses_invalid_cedar_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.cedar");
    let text = "permit (principal, action\n";
    std::fs::write(&path, text).unwrap();
    let out = elevate(&["fmt", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains(&format!("`{}`: cannot format", path.display())),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn fmt_on_a_directory_without_policies_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = elevate(&["fmt", "--check", dir.path().to_str().unwrap()]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("no `.cedar` files"),
        "{}",
        stderr(&out)
    );
}
