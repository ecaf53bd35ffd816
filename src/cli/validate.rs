//! `elevate validate`: load everything `serve` would, run the elevation lints
//! ([`crate::lint`]), report, exit 0 or 3 (also 3 on warnings with `--deny-warnings`).

use clap::Args;
use jiff::SignedDuration;
use serde_json::json;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs, print};
use crate::lint::{self, LintConfig};
use crate::policy::parse_duration;
use crate::snapshot::{RawInputs, Snapshot};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// `text` for people, `json` for scripts
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Fail (exit 3) on any warning: lints and Cedar's validation warnings
    #[arg(long)]
    pub deny_warnings: bool,
    /// Longest `@max_duration` a role may declare before lint E002 fires (ISO 8601)
    #[arg(long, default_value = "PT12H", value_parser = parse_ceiling)]
    pub max_duration_ceiling: SignedDuration,
}

fn parse_ceiling(text: &str) -> Result<SignedDuration, String> {
    parse_duration(text).map_err(|e| format!("not an ISO 8601 duration like `PT12H`: {e}"))
}

pub fn run(args: &ValidateArgs) -> u8 {
    let file = match args.inputs.file_config() {
        Ok(f) => f,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let sources = args.inputs.sources(&file);
    let result =
        RawInputs::load(&sources).and_then(|raw| Snapshot::build(&raw, sources.validation));
    let json = args.format == "json";
    match result {
        Ok(snapshot) => {
            let rejected: Vec<String> = snapshot
                .grants
                .rejected
                .iter()
                .map(ToString::to_string)
                .collect();
            let findings: Vec<&String> = snapshot
                .bundle
                .findings
                .iter()
                .chain(&snapshot.store.findings)
                .collect();
            let lints = lint::lint(
                &snapshot.bundle,
                &LintConfig {
                    max_duration_ceiling: args.max_duration_ceiling,
                },
            );
            let warnings = findings.len() + lints.len();
            let valid = rejected.is_empty() && !(args.deny_warnings && warnings > 0);
            if json {
                print(&format!(
                    "{}\n",
                    json!({
                        "valid": valid,
                        "policies": snapshot.bundle.statics.policies().count(),
                        "roles": snapshot.bundle.roles.len(),
                        "entities": snapshot.store.len(),
                        "grants": snapshot.grants.len(),
                        "rejected_grants": rejected,
                        "findings": findings,
                        "lints": lints,
                        "warnings": warnings,
                        "deny_warnings": args.deny_warnings,
                    })
                ));
            } else {
                for finding in &findings {
                    eprintln!("warning: {finding}");
                }
                for lint in &lints {
                    eprintln!(
                        "warning[{} {}]: {}: policy `{}`: {}",
                        lint.code.code(),
                        lint.name,
                        lint.location,
                        lint.policy,
                        lint.message
                    );
                }
                for r in &rejected {
                    eprintln!("error: {r}");
                }
                print(&format!(
                    "{}: {} policies, {} elevation roles, {} entities, {} grants ({} rejected), \
                     {} lint warnings{}\n",
                    if valid { "valid" } else { "invalid" },
                    snapshot.bundle.statics.policies().count(),
                    snapshot.bundle.roles.len(),
                    snapshot.store.len(),
                    snapshot.grants.len(),
                    rejected.len(),
                    lints.len(),
                    if args.deny_warnings && warnings > 0 {
                        " (--deny-warnings)"
                    } else {
                        ""
                    }
                ));
            }
            if valid { EXIT_OK } else { EXIT_INVALID }
        }
        Err(err) => {
            if json {
                print(&format!(
                    "{}\n",
                    json!({ "valid": false, "error": err.to_string(), "input": err.input() })
                ));
            } else {
                eprintln!("error: {err}");
            }
            EXIT_INVALID
        }
    }
}
