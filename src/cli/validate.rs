//! `elevate validate`: load everything `serve` would, report, exit 0 or 3.

use clap::Args;
use serde_json::json;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs, print};
use crate::snapshot::{RawInputs, Snapshot};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// `text` for people, `json` for scripts
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
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
            let valid = rejected.is_empty();
            if json {
                print(&format!(
                    "{}\n",
                    json!({
                        "valid": valid,
                        "policies": snapshot.bundle.statics.policies().count(),
                        "roles": snapshot.bundle.roles.len(),
                        "entities": snapshot.store.entities.len(),
                        "grants": snapshot.grants.len(),
                        "rejected_grants": rejected,
                        "findings": findings,
                    })
                ));
            } else {
                for finding in &findings {
                    eprintln!("warning: {finding}");
                }
                for r in &rejected {
                    eprintln!("error: {r}");
                }
                print(&format!(
                    "{}: {} policies, {} elevation roles, {} entities, {} grants ({} rejected)\n",
                    if valid { "valid" } else { "invalid" },
                    snapshot.bundle.statics.policies().count(),
                    snapshot.bundle.roles.len(),
                    snapshot.store.entities.len(),
                    snapshot.grants.len(),
                    rejected.len()
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
