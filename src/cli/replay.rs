//! `elevate replay`: decide the requests of a decision log again, each at its
//! recorded `time`, against candidate policies, and report every decision that
//! would change, grouped by action and by the policies that make the difference.
//!
//! One snapshot serves every record: the candidate policies with the given (or
//! default) schema, entities and grant feed. A feed is one document, so a log that
//! spans feed changes is replayed against the one feed given. What the record says
//! about the moment itself is kept: a record whose grants were suspended (a stale
//! remote feed) is decided with grants suspended again. A record whose `context` or
//! `entities` were left out for their size cannot be decided again; it is skipped
//! and counted, and does not count as a change.
//!
//! Exit codes: 0 nothing would change, 2 some decisions would change, 3 bad input
//! (unreadable or malformed log, invalid policies or inputs), 1 anything else.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::config::{self, FileConfig, Sources, Validation};
use crate::engine;
use crate::request::{self, Body};
use crate::snapshot::{RawInputs, Snapshot};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 no decision would change, 2 some would, 3 bad input (log, policies or inputs), 1 other failure."
)]
pub struct ReplayArgs {
    /// The decision log to replay (JSON lines, as `serve --decision-log` writes them)
    #[arg(long, value_name = "FILE")]
    pub decision_log: PathBuf,
    /// The candidate policies: a `.cedar` file or a directory of them
    #[arg(long, value_name = "PATH")]
    pub policies: PathBuf,
    /// Schema [default: from `--config`, else schema/elevate.cedarschema]
    #[arg(long, env = "ELEVATE_SCHEMA")]
    pub schema: Option<PathBuf>,
    /// Cedar entities JSON [default: from `--config`, else deploy/local/entities.json]
    #[arg(long, env = "ELEVATE_ENTITIES")]
    pub entities: Option<PathBuf>,
    /// Grant feed JSON file, one for every record [default: from `--config`, else deploy/local/grants.json]
    #[arg(long, env = "ELEVATE_GRANTS")]
    pub grants: Option<PathBuf>,
    /// TOML file whose `schema`, `entities`, `grants` and `validation` are the defaults
    #[arg(long, env = "ELEVATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// `strict` or `warn`, as for `serve` [default: strict]
    #[arg(long, env = "ELEVATE_VALIDATION", value_enum)]
    pub validation: Option<Validation>,
    /// `text` for people, `json` for scripts
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

/// The fields of a decision record that replay reads; the rest are ignored.
#[derive(Debug, Deserialize)]
struct Recorded {
    decision_id: String,
    time: Timestamp,
    principal: String,
    action: String,
    resource: String,
    decision: Verdict,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    grants_suspended: bool,
    #[serde(default)]
    context: Option<serde_json::Value>,
    #[serde(default)]
    entities: Option<serde_json::Value>,
    #[serde(default)]
    omitted: Vec<OmittedField>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
enum Verdict {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
struct OmittedField {
    field: String,
    #[serde(default)]
    bytes: usize,
}

/// One side of a change: a decision, or a request the candidate inputs reject.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum Side {
    Decided {
        decision: Verdict,
        reasons: Vec<String>,
    },
    Invalid {
        error: String,
    },
}

impl Side {
    fn label(&self) -> &'static str {
        match self {
            Self::Decided {
                decision: Verdict::Allow,
                ..
            } => "Allow",
            Self::Decided {
                decision: Verdict::Deny,
                ..
            } => "Deny",
            Self::Invalid { .. } => "invalid request",
        }
    }
}

#[derive(Debug, Serialize)]
struct Change {
    decision_id: String,
    line: usize,
    time: Timestamp,
    principal: String,
    resource: String,
    old: Side,
    new: Side,
}

#[derive(Debug, Serialize)]
struct Group {
    action: String,
    /// The policies that make the difference: the permits an Allow loses or a Deny
    /// gains, or the forbid that now wins or no longer does.
    policies: Vec<String>,
    decisions: Vec<Change>,
}

#[derive(Debug, Serialize)]
struct Skipped {
    decision_id: String,
    line: usize,
    reason: String,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    replayed: usize,
    changed: usize,
    /// Same decision, different deciding policies: not a change, but worth a look.
    reasons_changed: usize,
    skipped: usize,
    groups: Vec<Group>,
    skipped_records: Vec<Skipped>,
}

/// A failure that is the input's fault: exit 3.
struct BadInput(String);

pub fn run(args: &ReplayArgs) -> u8 {
    let file = match args.config.as_deref().map(FileConfig::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let report = sources(args, &file)
        .and_then(|sources| load(&sources))
        .and_then(|snapshot| replay(&snapshot, &args.decision_log));
    let report = match report {
        Ok(report) => report,
        Err(BadInput(message)) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    if args.format == "json" {
        print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ));
    } else {
        print(&render_text(&report));
    }
    if report.changed == 0 {
        EXIT_OK
    } else {
        EXIT_DENY
    }
}

/// Flags over the config file over the shipped defaults, input by input.
fn sources(args: &ReplayArgs, file: &FileConfig) -> Result<Sources, BadInput> {
    let grants = match (&args.grants, &file.grants, &file.grants_url) {
        (Some(path), _, _) | (None, Some(path), _) => path.clone(),
        (None, None, Some(url)) => {
            return Err(BadInput(format!(
                "replay reads the grant feed from a file, and the config file names a feed URL `{url}`; give `--grants FILE`"
            )));
        }
        (None, None, None) => PathBuf::from(config::DEFAULT_GRANTS),
    };
    let pick = |flag: &Option<PathBuf>, from_file: &Option<PathBuf>, default: &str| {
        flag.clone()
            .or_else(|| from_file.clone())
            .unwrap_or_else(|| PathBuf::from(default))
    };
    Ok(Sources {
        policies: args.policies.clone(),
        schema: Some(pick(&args.schema, &file.schema, config::DEFAULT_SCHEMA)),
        entities: Some(pick(
            &args.entities,
            &file.entities,
            config::DEFAULT_ENTITIES,
        )),
        grants: Some(grants),
        validation: args.validation.or(file.validation).unwrap_or_default(),
    })
}

fn load(sources: &Sources) -> Result<Snapshot, BadInput> {
    RawInputs::load(sources)
        .and_then(|raw| Snapshot::build(&raw, sources.validation))
        .map_err(|e| BadInput(e.to_string()))
}

/// The same snapshot with grants suspended at every instant, for records decided
/// while the feed was stale.
fn suspended(snapshot: &Snapshot) -> Snapshot {
    Snapshot {
        bundle: Arc::clone(&snapshot.bundle),
        store: Arc::clone(&snapshot.store),
        slices: Arc::clone(&snapshot.slices),
        grants: Arc::clone(&snapshot.grants),
        generation: snapshot.generation,
        revisions: snapshot.revisions.clone(),
        validation: snapshot.validation,
        feed_deadline: Some(Timestamp::MIN),
        feed_refreshed_at: None,
    }
}

fn replay(snapshot: &Snapshot, log: &Path) -> Result<Report, BadInput> {
    let file = std::fs::File::open(log)
        .map_err(|e| BadInput(format!("cannot read decision log `{}`: {e}", log.display())))?;
    let stale = suspended(snapshot);
    let mut report = Report::default();
    let mut groups: BTreeMap<(String, Vec<String>), Vec<Change>> = BTreeMap::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| {
            BadInput(format!(
                "cannot read decision log `{}` at line {number}: {e}",
                log.display()
            ))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Recorded = serde_json::from_str(&line).map_err(|e| {
            BadInput(format!(
                "decision log `{}` line {number} is not a decision record: {e}",
                log.display()
            ))
        })?;
        if !record.omitted.is_empty() {
            let fields: Vec<String> = record
                .omitted
                .iter()
                .map(|o| format!("`{}` ({} bytes)", o.field, o.bytes))
                .collect();
            report.skipped_records.push(Skipped {
                decision_id: record.decision_id,
                line: number,
                reason: format!(
                    "recorded without its {}, left out for size",
                    fields.join(" and ")
                ),
            });
            continue;
        }
        report.replayed += 1;
        let snapshot = if record.grants_suspended {
            &stale
        } else {
            snapshot
        };
        let old = Side::Decided {
            decision: record.decision,
            reasons: record.reasons.clone(),
        };
        let new = decide_again(snapshot, &record);
        let key = match (&old, &new) {
            (
                Side::Decided {
                    decision: before,
                    reasons: old_reasons,
                },
                Side::Decided {
                    decision: after,
                    reasons: new_reasons,
                },
            ) => {
                if before == after {
                    if old_reasons != new_reasons {
                        report.reasons_changed += 1;
                    }
                    continue;
                }
                difference(*before, old_reasons, new_reasons)
            }
            (_, Side::Invalid { .. }) | (Side::Invalid { .. }, _) => Vec::new(),
        };
        report.changed += 1;
        groups
            .entry((record.action.clone(), key))
            .or_default()
            .push(Change {
                decision_id: record.decision_id,
                line: number,
                time: record.time,
                principal: record.principal,
                resource: record.resource,
                old,
                new,
            });
    }
    report.skipped = report.skipped_records.len();
    report.groups = groups
        .into_iter()
        .map(|((action, policies), decisions)| Group {
            action,
            policies,
            decisions,
        })
        .collect();
    Ok(report)
}

/// Decides a record's request again at its recorded time.
fn decide_again(snapshot: &Snapshot, record: &Recorded) -> Side {
    let body = Body {
        principal: serde_json::Value::String(record.principal.clone()),
        action: serde_json::Value::String(record.action.clone()),
        resource: serde_json::Value::String(record.resource.clone()),
        context: record.context.clone(),
        entities: record.entities.clone(),
    };
    match request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation) {
        Ok(query) => {
            let outcome = engine::decide(snapshot, &query, record.time);
            Side::Decided {
                decision: if outcome.is_allow() {
                    Verdict::Allow
                } else {
                    Verdict::Deny
                },
                reasons: outcome
                    .reasons
                    .iter()
                    .map(|r| crate::feed::raw_id(r).to_owned())
                    .collect(),
            }
        }
        Err(err) => Side::Invalid {
            error: err.to_string(),
        },
    }
}

/// The policies a flipped decision turns on. An Allow that becomes a Deny: the
/// forbids that now win, else the permits it lost. A Deny that becomes an Allow:
/// the forbids that no longer win, else the permits that now allow it.
fn difference(before: Verdict, old: &[String], new: &[String]) -> Vec<String> {
    match before {
        Verdict::Allow if !new.is_empty() => new.to_vec(),
        Verdict::Allow => old.to_vec(),
        Verdict::Deny if !old.is_empty() => old.to_vec(),
        Verdict::Deny => new.to_vec(),
    }
}

fn render_text(report: &Report) -> String {
    let mut out = format!(
        "{} decisions replayed, {} would change\n",
        report.replayed, report.changed
    );
    if report.reasons_changed > 0 {
        out.push_str(&format!(
            "{} keep their decision with other deciding policies\n",
            report.reasons_changed
        ));
    }
    if report.skipped > 0 {
        out.push_str(&format!(
            "{} skipped: recorded without their context or entities\n",
            report.skipped
        ));
    }
    for group in &report.groups {
        let policies = if group.policies.is_empty() {
            "no deciding policy".to_owned()
        } else {
            group
                .policies
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "\n{}, {policies}: {} changed\n",
            group.action,
            group.decisions.len()
        ));
        for change in &group.decisions {
            out.push_str(&format!(
                "  {} → {}  {} on {}  at {}  ({})\n",
                change.old.label(),
                change.new.label(),
                change.principal,
                change.resource,
                change.time,
                change.decision_id
            ));
            if let Side::Invalid { error } = &change.new {
                out.push_str(&format!("    {error}\n"));
            }
        }
    }
    for skipped in &report.skipped_records {
        out.push_str(&format!(
            "skipped line {} ({}): {}\n",
            skipped.line, skipped.decision_id, skipped.reason
        ));
    }
    out
}
