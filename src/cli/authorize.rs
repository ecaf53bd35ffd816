//! `elevate authorize`: one decision from the command line, as of now or `--at`;
//! with `--explain`, why (see [`crate::explain`]).

use clap::Args;
use jiff::Timestamp;
use serde_json::json;

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs, print};
use crate::engine;
use crate::explain;
use crate::request::{self, Body};
use crate::snapshot::{RawInputs, Snapshot};

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Principal UID, e.g. `User::"alice"`
    #[arg(long)]
    pub principal: String,
    /// Action UID, e.g. `Action::"createPaymentMethod"`
    #[arg(long)]
    pub action: String,
    /// Resource UID, e.g. `PaymentMethod::"pm-1"`
    #[arg(long)]
    pub resource: String,
    /// Context as a JSON object
    #[arg(long)]
    pub context: Option<String>,
    /// Evaluate as of this instant (RFC 3339), grant windows included [default: now]
    #[arg(long)]
    pub at: Option<Timestamp>,
    /// Add an `explanation`: the satisfied permits and grants, the forbids that won,
    /// and for a Deny the nearest reason in words (a grant that expired, or starts later)
    #[arg(long)]
    pub explain: bool,
}

pub fn run(args: &AuthorizeArgs) -> u8 {
    let file = match args.inputs.file_config() {
        Ok(f) => f,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let sources = args.inputs.sources(&file);
    let snapshot =
        match RawInputs::load(&sources).and_then(|raw| Snapshot::build(&raw, sources.validation)) {
            Ok(s) => s,
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_INVALID;
            }
        };
    let context = match args
        .context
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
        .transpose()
    {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: `--context` is not JSON: {err}");
            return EXIT_INVALID;
        }
    };
    let body = Body {
        principal: serde_json::Value::String(args.principal.clone()),
        action: serde_json::Value::String(args.action.clone()),
        resource: serde_json::Value::String(args.resource.clone()),
        context,
        entities: None,
    };
    let query =
        match request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation) {
            Ok(q) => q,
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_INVALID;
            }
        };
    let now = args.at.unwrap_or_else(Timestamp::now);
    let outcome = engine::decide(&snapshot, &query, now);
    let decision = if outcome.is_allow() { "Allow" } else { "Deny" };
    let explanation = args
        .explain
        .then(|| explain::explain_outcome(&snapshot, &query, now, &outcome));
    let mut answer = json!({
        "decision": decision,
        "diagnostics": {
            "reason": outcome.reasons.iter().map(|r| crate::feed::raw_id(r).to_owned()).collect::<Vec<_>>(),
            "errors": outcome.errors,
        },
        "grants": outcome.grants.iter().map(|g| crate::feed::raw_id(&g.id).to_owned()).collect::<Vec<_>>(),
        "valid_until": outcome.valid_until,
        "at": now,
    });
    if let (Some(explanation), Some(fields)) = (explanation, answer.as_object_mut()) {
        fields.insert(
            "explanation".into(),
            serde_json::to_value(explanation).unwrap_or_default(),
        );
    }
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    ));
    if outcome.is_allow() {
        EXIT_OK
    } else {
        EXIT_DENY
    }
}
