//! `elevate validate` lints and `elevate prove` as real subprocesses. Lints: each code
//! on a fixture that fires it and one that does not (`tests/fixtures/lint_prove/lint/`,
//! against the shipped schema), `--deny-warnings`, `--max-duration-ceiling`, the JSON
//! form, and the shipped policies linting clean. Prove: property-file errors and a
//! missing solver (no solver needed), then, with cvc5, the shipped properties, a
//! property that fails with its counterexample, a vacuous one, and `--against`.
//!
//! The solver is `$CVC5`, else `target/cvc5/bin/cvc5` (what `tools/install-cvc5.sh`
//! installs), else `cvc5` on the PATH. Without one the solver tests say so and pass,
//! except under CI (`CI` set), where a missing solver is a failure: CI must install it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(path: &str) -> PathBuf {
    repo_root().join("tests/fixtures/lint_prove").join(path)
}

fn schema() -> String {
    repo_root()
        .join("schema/elevate.cedarschema")
        .to_str()
        .unwrap()
        .to_owned()
}

fn elevate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("RUST_LOG")
        .env_remove("CVC5")
        .env_remove("ELEVATE_POLICIES")
        .env_remove("ELEVATE_SCHEMA")
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn both(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// `validate --format json` on one fixture file; the parsed answer and the exit code.
fn validate_json(file: &str, extra: &[&str]) -> (Value, i32) {
    let path = fixture(&format!("lint/{file}"));
    let schema = schema();
    let mut args = vec![
        "validate",
        "--policies",
        path.to_str().unwrap(),
        "--schema",
        &schema,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = elevate(&args);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", both(&out)));
    (json, code(&out))
}

fn lint_codes(json: &Value) -> Vec<String> {
    json["lints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn each_lint_fires_on_its_fixture_and_not_on_the_clean_one() {
    for code in ["E001", "E002", "E003", "E004", "E005", "E006"] {
        let (fires, rc) = validate_json(&format!("{code}-fires.cedar"), &[]);
        assert_eq!(rc, 0, "warnings alone do not fail: {fires}");
        assert_eq!(lint_codes(&fires), [code], "{code}-fires.cedar: {fires}");
        let (clean, rc) = validate_json(&format!("{code}-clean.cedar"), &[]);
        assert_eq!(rc, 0, "{clean}");
        assert_eq!(
            lint_codes(&clean),
            Vec::<String>::new(),
            "{code}-clean.cedar: {clean}"
        );
        assert_eq!(clean["warnings"], 0, "{code}-clean.cedar: {clean}");
    }
}

#[test]
fn a_lint_in_json_names_code_name_policy_file_and_location() {
    let (json, _) = validate_json("E005-fires.cedar", &[]);
    let lint = &json["lints"][0];
    assert_eq!(lint["code"], "E005");
    assert_eq!(lint["name"], "permit-bypasses-elevation");
    assert_eq!(lint["policy"], "anyone-creates-payment-methods");
    let file = lint["file"].as_str().unwrap();
    assert!(file.ends_with("lint/E005-fires.cedar"), "{file}");
    assert_eq!(lint["location"].as_str().unwrap(), format!("{file}:8:1"));
    assert!(
        lint["message"]
            .as_str()
            .unwrap()
            .contains("createPaymentMethod"),
        "{lint}"
    );
    assert_eq!(json["valid"], true);
    assert_eq!(json["warnings"], 1);
}

#[test]
fn text_output_lists_each_lint_on_stderr_with_its_code() {
    let path = fixture("lint/E003-fires.cedar");
    let out = elevate(&[
        "validate",
        "--policies",
        path.to_str().unwrap(),
        "--schema",
        &schema(),
    ]);
    assert_eq!(code(&out), 0, "{}", both(&out));
    let err = text(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("warning[E003 role-without-approver]: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("E003-fires.cedar:2:1: policy `Billing`: "),
        "{line}"
    );
    assert!(
        text(&out.stdout).contains("1 lint warnings"),
        "{}",
        both(&out)
    );
}

#[test]
fn deny_warnings_turns_a_lint_into_exit_3() {
    let (json, rc) = validate_json("E001-fires.cedar", &["--deny-warnings"]);
    assert_eq!(rc, 3, "{json}");
    assert_eq!(json["valid"], false);
    assert_eq!(json["deny_warnings"], true);
    let (json, rc) = validate_json("E001-clean.cedar", &["--deny-warnings"]);
    assert_eq!(rc, 0, "{json}");
    assert_eq!(json["valid"], true);
}

#[test]
fn deny_warnings_also_counts_cedars_own_validation_warnings() {
    let (json, rc) = validate_json("E006-fires.cedar", &["--deny-warnings"]);
    assert_eq!(rc, 3, "{json}");
    assert!(!json["findings"].as_array().unwrap().is_empty(), "{json}");
}

#[test]
fn the_ceiling_is_configurable() {
    let (json, _) = validate_json("E002-fires.cedar", &["--max-duration-ceiling", "P3D"]);
    assert_eq!(lint_codes(&json), Vec::<String>::new(), "{json}");
    let (json, _) = validate_json("E002-clean.cedar", &["--max-duration-ceiling", "PT11H"]);
    assert_eq!(lint_codes(&json), ["E002"], "{json}");
    let path = fixture("lint/E002-clean.cedar");
    let out = elevate(&[
        "validate",
        "--policies",
        path.to_str().unwrap(),
        "--max-duration-ceiling",
        "soon",
    ]);
    assert_eq!(code(&out), 2, "clap refuses the flag: {}", both(&out));
    assert!(text(&out.stderr).contains("ISO 8601"), "{}", both(&out));
}

#[test]
fn an_unreadable_max_duration_is_an_error_not_a_lint() {
    let (json, rc) = validate_json("bad-max-duration.cedar", &[]);
    assert_eq!(rc, 3, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("@max_duration(\"four hours\")"),
        "{json}"
    );
}

#[test]
fn the_shipped_policies_lint_clean() {
    let out = elevate(&["validate", "--deny-warnings", "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&out), 0, "{json}");
    assert_eq!(json["lints"], Value::Array(vec![]), "{json}");
    assert_eq!(json["warnings"], 0, "{json}");
}

// ------------------------------------------------------------------ prove

fn prove_fixture(name: &str) -> String {
    fixture(&format!("prove/{name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_invalid_property_file_is_exit_3_before_any_solver_is_needed() {
    let out = elevate(&[
        "prove",
        "--properties",
        &prove_fixture("invalid.toml"),
        "--solver",
        "/nonexistent/cvc5",
    ]);
    assert_eq!(code(&out), 3, "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid.toml") && err.contains("`forbid`"),
        "{err}"
    );
}

#[test]
fn a_missing_property_file_is_exit_3() {
    let out = elevate(&["prove", "--properties", "/nonexistent/properties.toml"]);
    assert_eq!(code(&out), 3, "{}", both(&out));
    assert!(text(&out.stderr).contains("cannot read"), "{}", both(&out));
}

#[test]
fn no_usable_solver_is_exit_1_with_a_clear_error() {
    let out = elevate(&["prove", "--solver", "/nonexistent/cvc5"]);
    assert_eq!(code(&out), 1, "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: no usable cvc5: `/nonexistent/cvc5` not found"),
        "{err}"
    );
    let out = elevate(&["prove", "--solver", "/nonexistent/cvc5", "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["holds"], false);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("no usable cvc5"),
        "{json}"
    );
}

/// The cvc5 to use, or `None` (outside CI) when there is none.
fn solver() -> Option<String> {
    let candidates = [
        std::env::var("CVC5").ok().map(PathBuf::from),
        Some(repo_root().join("target/cvc5/bin/cvc5")),
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("cvc5"))
                .find(|p| p.is_file())
        }),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found.to_str().unwrap().to_owned());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no cvc5 for the prove tests: CI must run tools/install-cvc5.sh (or set CVC5)"
    );
    eprintln!("skipped: no cvc5 (set CVC5 or run tools/install-cvc5.sh)");
    None
}

fn prove(solver: &str, args: &[&str]) -> Output {
    let mut all = vec!["prove", "--solver", solver];
    all.extend_from_slice(args);
    elevate(&all)
}

#[test]
fn the_shipped_properties_hold() {
    let Some(solver) = solver() else { return };
    let out = prove(&solver, &["--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", both(&out)));
    assert_eq!(code(&out), 0, "{json}");
    assert_eq!(json["holds"], true, "{json}");
    let ids: Vec<&str> = json["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"no-self-approval"), "{ids:?}");
    assert!(
        ids.contains(&"organization-admin-stays-in-scope"),
        "{ids:?}"
    );
}

#[test]
fn a_failing_property_prints_its_counterexample_and_exits_2() {
    let Some(solver) = solver() else { return };
    let out = prove(&solver, &["--properties", &prove_fixture("fails.toml")]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 2, "{}", both(&out));
    assert!(stdout.contains("holds  no-self-approval"), "{stdout}");
    assert!(
        stdout.contains("FAILS  only-finops-approvers-approve-finops"),
        "{stdout}"
    );
    assert!(
        stdout.contains("action Action::\"approveElevation\", resource ElevationRequest::"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision: Allow (workspace-owner-reviews-finops-in-own-workspace)"),
        "{stdout}"
    );
    assert!(stdout.contains("\"role\":\"FinOpsManager\""), "{stdout}");
    assert!(stdout.contains("2 properties: 1 hold, 1 fail"), "{stdout}");
}

#[test]
fn a_failing_property_in_json_carries_the_counterexample() {
    let Some(solver) = solver() else { return };
    let out = prove(
        &solver,
        &[
            "--properties",
            &prove_fixture("fails.toml"),
            "--format",
            "json",
        ],
    );
    assert_eq!(code(&out), 2, "{}", both(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["holds"], false);
    let failed = &json["properties"][1];
    assert_eq!(failed["holds"], false, "{json}");
    let cex = &failed["counterexample"];
    assert_eq!(cex["action"], "Action::\"approveElevation\"", "{cex}");
    assert_eq!(cex["decision"], "Allow", "{cex}");
    assert!(
        cex["entities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["uid"]["type"] == "ElevationRequest"),
        "{cex}"
    );
}

#[test]
fn a_property_about_no_request_at_all_is_refused() {
    let Some(solver) = solver() else { return };
    let out = prove(&solver, &["--properties", &prove_fixture("vacuous.toml")]);
    assert_eq!(code(&out), 3, "{}", both(&out));
    assert!(
        text(&out.stderr).contains("permit no request the schema allows"),
        "{}",
        both(&out)
    );
}

/// A copy of the shipped policies without one approval route, and no property file.
fn narrower_policies(dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for entry in std::fs::read_dir(repo_root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            let mut text = std::fs::read_to_string(&path).unwrap();
            if let Some(start) =
                text.find("@id(\"workspace-owner-reviews-finops-in-own-workspace\")")
            {
                let end = start + text[start..].find("};").unwrap() + 2;
                text.replace_range(start..end, "");
            }
            std::fs::write(policies.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    policies
}

#[test]
fn against_a_narrower_old_set_a_new_permission_fails_with_the_policy_that_grants_it() {
    let Some(solver) = solver() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let old = narrower_policies(tmp.path());
    let empty = tmp.path().join("none.toml");
    std::fs::write(&empty, "").unwrap();
    let out = prove(
        &solver,
        &[
            "--against",
            old.to_str().unwrap(),
            "--properties",
            empty.to_str().unwrap(),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 2, "{}", both(&out));
    assert!(stdout.contains("FAILS  restriction-of-"), "{stdout}");
    assert!(
        stdout.contains("decision: Allow (workspace-owner-reviews-finops-in-own-workspace)"),
        "{stdout}"
    );
}

#[test]
fn against_a_wider_old_set_the_change_is_a_restriction() {
    let Some(solver) = solver() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let new = narrower_policies(tmp.path());
    let out = prove(
        &solver,
        &[
            "--policies",
            new.to_str().unwrap(),
            "--against",
            repo_root().join("policies").to_str().unwrap(),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{}", both(&out));
    assert!(stdout.contains("holds  restriction-of-"), "{stdout}");
    assert!(stdout.contains("1 properties: 1 hold, 0 fail"), "{stdout}");
}
