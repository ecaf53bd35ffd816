//! `elevate test`: run the declarative policy tests (see [`crate::policytest`] for
//! the file format) and report like a test runner.
//!
//! Exit codes: 0 every case passed, 2 a case failed, 3 a test file or an input is
//! invalid, 1 any other failure (the config file cannot be read). A failure is 2
//! rather than 1 so CI can tell "the policies do not do what the tests say" from
//! "the tool could not run", as `authorize` tells a Deny from a crash.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs, print};
use crate::policytest::{self, CaseResult, Mismatch, Report, SuiteError, decision_str};
use crate::snapshot::RawInputs;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 all cases pass; 2 a case failed (2, not 1, so CI can tell policies \
                        that do not do what the tests say from a tool that could not run); 3 a test \
                        file or an input is invalid; 1 other failure.\n\
                        The grant feed (--grants, --grants-url) is not read: each case brings its own grants."
)]
pub struct TestArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Test files, or directories of `*.toml` test files [default: `tests/` in the policy directory, i.e. policies/tests]
    pub paths: Vec<PathBuf>,
    /// Run only the cases whose `FILE: NAME` contains this text
    #[arg(long)]
    pub filter: Option<String>,
    /// `text` for people, `json` for CI
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

pub fn run(args: &TestArgs) -> u8 {
    let json = args.format == "json";
    let file = match args.inputs.file_config() {
        Ok(f) => f,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let mut sources = args.inputs.sources(&file);
    if args.inputs.grants.is_some() || args.inputs.grants_url.is_some() {
        eprintln!(
            "warning: the grant feed is not read by `elevate test`: each case brings its own grants"
        );
    }
    // Each case is its own feed; reading the configured one could only make an
    // unrelated file a reason for the suite to fail.
    sources.grants = None;
    let paths = if args.paths.is_empty() {
        vec![default_dir(&sources.policies)]
    } else {
        args.paths.clone()
    };
    let files = match policytest::load_files(&paths) {
        Ok(files) => files,
        Err(errors) => return invalid(&errors, json),
    };
    let raw = match RawInputs::load(&sources) {
        Ok(raw) => raw,
        Err(err) => return invalid(&[SuiteError::Inputs(err)], json),
    };
    let report = match policytest::run(&raw, sources.validation, &files, args.filter.as_deref()) {
        Ok(report) => report,
        Err(errors) => return invalid(&errors, json),
    };
    if json {
        print(&format!("{}\n", report_json(&report)));
    } else {
        if report.results.is_empty() {
            eprintln!("warning: no case matches the filter");
        }
        print(&render_text(&report));
    }
    if report.failed() == 0 {
        EXIT_OK
    } else {
        EXIT_DENY
    }
}

/// `tests/` beside the policies: in the policy directory, or next to a single file.
fn default_dir(policies: &Path) -> PathBuf {
    if policies.is_file() {
        policies
            .parent()
            .unwrap_or(Path::new("."))
            .join(policytest::DEFAULT_DIR)
    } else {
        policies.join(policytest::DEFAULT_DIR)
    }
}

fn invalid(errors: &[SuiteError], json: bool) -> u8 {
    if json {
        let list: Vec<_> = errors
            .iter()
            .map(|e| {
                json!({
                    "file": e.path(),
                    "case": e.case(),
                    "message": e.to_string(),
                })
            })
            .collect();
        print(&format!("{}\n", json!({ "valid": false, "errors": list })));
    } else {
        for e in errors {
            eprintln!("error: {e}");
        }
    }
    EXIT_INVALID
}

fn report_json(report: &Report) -> serde_json::Value {
    let cases: Vec<_> = report
        .results
        .iter()
        .map(|r| {
            let mut value = serde_json::to_value(r).unwrap_or_default();
            if let Some(map) = value.as_object_mut() {
                map.insert(
                    "status".into(),
                    json!(if r.passed() { "ok" } else { "failed" }),
                );
            }
            value
        })
        .collect();
    json!({
        "passed": report.passed(),
        "failed": report.failed(),
        "filtered_out": report.filtered_out,
        "cases": cases,
    })
}

/// One line per case, then a block per failure, then the summary line.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.results {
        let status = if r.passed() { "ok" } else { "FAILED" };
        let _ = writeln!(out, "{status:<6} {}", r.label());
    }
    let failures: Vec<&CaseResult> = report.results.iter().filter(|r| !r.passed()).collect();
    if !failures.is_empty() {
        out.push_str("\nfailures:\n");
        for r in failures {
            render_failure(&mut out, r);
        }
    }
    let _ = write!(
        out,
        "\n{} passed, {} failed",
        report.passed(),
        report.failed()
    );
    if report.filtered_out > 0 {
        let _ = write!(out, ", {} filtered out", report.filtered_out);
    }
    out.push('\n');
    out
}

fn render_failure(out: &mut String, r: &CaseResult) {
    let _ = writeln!(out, "\n---- {} (case #{}) ----", r.label(), r.index);
    let _ = writeln!(
        out,
        "  request   {} {} {} at {}",
        r.principal, r.action, r.resource, r.at
    );
    let mark = |m: Mismatch| if r.mismatches.contains(&m) { "!" } else { " " };
    let _ = writeln!(
        out,
        "{} decision  expected {}, actual {}",
        mark(Mismatch::Decision),
        decision_str(r.expected.decision),
        decision_str(r.actual.decision)
    );
    let set_row = |out: &mut String, m: Mismatch, key: &str, expected: Option<_>, actual| {
        let _ = match expected {
            Some(e) => writeln!(
                out,
                "{} {key:<9} expected {}, actual {}",
                mark(m),
                list(e),
                list(actual)
            ),
            None if actual.is_empty() => writeln!(out, "  {key:<9} none (not checked)"),
            None => writeln!(out, "  {key:<9} actual {} (not checked)", list(actual)),
        };
    };
    set_row(
        out,
        Mismatch::Reasons,
        "reasons",
        r.expected.reasons.as_ref(),
        &r.actual.reasons,
    );
    set_row(
        out,
        Mismatch::Grants,
        "grants",
        r.expected.grants.as_ref(),
        &r.actual.grants,
    );
    let error_ids = r
        .actual
        .errors
        .iter()
        .map(|e| e.policy_id.clone())
        .collect();
    set_row(
        out,
        Mismatch::Errors,
        "errors",
        r.expected.errors.as_ref(),
        &error_ids,
    );
    for e in &r.actual.errors {
        let _ = writeln!(out, "            {}: {}", e.policy_id, e.message);
    }
    for rejection in &r.rejected_grants {
        let _ = writeln!(
            out,
            "{} rejected  {rejection} ({}): the feed would not apply it",
            mark(Mismatch::RejectedGrants),
            rejection.reason.as_str()
        );
    }
}

fn list(set: &std::collections::BTreeSet<String>) -> String {
    format!("[{}]", set.iter().cloned().collect::<Vec<_>>().join(", "))
}
