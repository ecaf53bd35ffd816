//! `elevate prove`: check the properties of `policies/properties.toml` (see
//! [`crate::prove`] for the format) with SymCC and cvc5, and with `--against OLD` that a
//! policy change only takes permissions away.
//!
//! Exit codes: 0 every property holds, 2 a property fails (its counterexample is
//! printed), 3 the property file, policies or schema are invalid, 1 no usable solver
//! or a solver failure. 2 rather than 1, as for `elevate test`, so CI can tell a
//! broken property from a missing tool.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::config::{self, Validation};
use crate::policy::{Bundle, SourceFile, load_policy_files};
use crate::prove::{self, Outcome, ProveError, Prover, SolverCommand};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 all properties hold; 2 a property fails (counterexample printed); \
                  3 invalid property file, policies or schema; 1 no usable cvc5 or a solver failure.\n\
                  The solver is --solver, else $CVC5, else `cvc5` on the PATH (tools/install-cvc5.sh)."
)]
pub struct ProveArgs {
    /// A `.cedar` file or a directory of them [default: policies]
    #[arg(long, env = "ELEVATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Schema: `.cedarschema`, or Cedar's JSON schema (`.json`) [default: schema/elevate.cedarschema]
    #[arg(long, env = "ELEVATE_SCHEMA")]
    pub schema: Option<PathBuf>,
    /// Property file [default: properties.toml beside the policies; optional with --against]
    #[arg(long)]
    pub properties: Option<PathBuf>,
    /// Old policies (file or directory, same schema): fail if the new ones allow anything they did not
    #[arg(long, value_name = "OLD_POLICIES")]
    pub against: Option<PathBuf>,
    /// The cvc5 executable [default: $CVC5, else `cvc5` on the PATH]
    #[arg(long)]
    pub solver: Option<PathBuf>,
    /// `text` for people, `json` for CI
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

pub fn run(args: &ProveArgs) -> u8 {
    let json = args.format == "json";
    let fail = |code: u8, message: &str| {
        if json {
            print(&format!(
                "{}\n",
                json!({ "holds": false, "error": message })
            ));
        } else {
            eprintln!("error: {message}");
        }
        code
    };
    let policies = args
        .policies
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_POLICIES));
    let schema = args
        .schema
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SCHEMA));
    let bundle = match load(&policies, &schema) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_INVALID, &e),
    };
    let old = match &args.against {
        Some(dir) => match load(dir, &schema) {
            Ok(b) => Some(b),
            Err(e) => return fail(EXIT_INVALID, &format!("--against: {e}")),
        },
        None => None,
    };
    let properties = match properties_to_run(args, &policies) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_INVALID, &e.to_string()),
    };
    if properties.is_empty() && old.is_none() {
        return fail(
            EXIT_INVALID,
            "nothing to prove: the property file holds no `[[property]]` and there is no --against",
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                &format!("cannot start the async runtime: {e}"),
            );
        }
    };
    let command = SolverCommand::locate(args.solver.as_deref());
    let result: Result<(PathBuf, Vec<Outcome>), ProveError> = runtime.block_on(async {
        let mut prover = Prover::start(command).await?;
        let mut outcomes = Vec::new();
        for property in &properties {
            let outcome = prover.check(&bundle, property).await?;
            if !json {
                print(&prove::render(&outcome));
            }
            outcomes.push(outcome);
        }
        if let (Some(old), Some(dir)) = (&old, &args.against) {
            let id = format!("restriction-of-{}", dir.display());
            let outcome = prover.restriction(&bundle, old, &id).await?;
            if !json {
                print(&prove::render(&outcome));
            }
            outcomes.push(outcome);
        }
        Ok((prover.solver().to_path_buf(), outcomes))
    });
    let (solver, outcomes) = match result {
        Ok(r) => r,
        Err(e @ ProveError::Invalid(_)) => return fail(EXIT_INVALID, &e.to_string()),
        Err(e @ ProveError::Solver(_)) => return fail(EXIT_FAILURE, &e.to_string()),
    };
    let failed = outcomes.iter().filter(|o| !o.holds).count();
    if json {
        print(&format!("{}\n", prove::report_json(&solver, &outcomes)));
    } else {
        print(&format!(
            "{} properties: {} hold, {failed} fail (solver {})\n",
            outcomes.len(),
            outcomes.len() - failed,
            solver.display()
        ));
    }
    if failed == 0 { EXIT_OK } else { EXIT_DENY }
}

fn load(policies: &Path, schema: &Path) -> Result<Bundle, String> {
    let files = load_policy_files(policies).map_err(|e| e.to_string())?;
    let schema = SourceFile::load(schema).map_err(|e| e.to_string())?;
    Bundle::build(files, Some(&schema), Validation::Strict).map_err(|e| e.to_string())
}

/// A named property file must exist; the default one may be missing when `--against`
/// gives the run something to check.
fn properties_to_run(
    args: &ProveArgs,
    policies: &Path,
) -> Result<Vec<prove::Property>, ProveError> {
    match &args.properties {
        Some(path) => prove::load_properties(path),
        None => {
            let path = prove::default_properties_path(policies);
            if args.against.is_some() && !path.exists() {
                Ok(Vec::new())
            } else {
                prove::load_properties(&path)
            }
        }
    }
}
