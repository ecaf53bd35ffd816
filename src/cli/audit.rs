//! `elevate audit verify FILE`: check a workflow event log's whole hash chain.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::eventlog::{self, EventLogError, Tail};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify every event's hash and link; exit 0 if sound, 3 naming the first bad
    /// sequence number if anything was altered, removed, reordered or inserted.
    Verify {
        /// The event log (JSONL)
        file: PathBuf,
        /// `text` for people, `json` for scripts
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

pub fn run(args: &AuditArgs) -> u8 {
    let AuditCommand::Verify { file, format } = &args.command;
    let json = format == "json";
    match eventlog::verify(file) {
        Ok(report) => {
            // A torn tail is what a crash leaves, but also what cutting the file
            // mid-line leaves: an auditor hears about it and the check does not pass.
            let tail = report.tail.as_ref().map(|t| match t {
                Tail::Torn { offset, len } => {
                    format!("the last {len} bytes (from offset {offset}) are an incomplete event")
                }
                Tail::MissingNewline { seq } => {
                    format!("event {seq} is not terminated by a newline")
                }
            });
            if json {
                print(&format!(
                    "{}\n",
                    json!({"valid": tail.is_none(), "events": report.events, "last_seq": report.last_seq,
                           "last_hash": report.last_hash, "tail": tail})
                ));
            } else if let Some(tail) = &tail {
                eprintln!(
                    "error: `{}`: {tail}; the {} events before it verify",
                    file.display(),
                    report.events
                );
            } else {
                print(&format!(
                    "valid: {} events, last seq {}, last hash {}\n",
                    report.events, report.last_seq, report.last_hash
                ));
            }
            if tail.is_none() {
                EXIT_OK
            } else {
                EXIT_INVALID
            }
        }
        Err(err) => {
            let code = match &err {
                EventLogError::Broken { .. } => EXIT_INVALID,
                _ => EXIT_FAILURE,
            };
            if json {
                print(&format!(
                    "{}\n",
                    json!({"valid": false, "error": err.to_string(), "first_bad_seq": err.first_bad_seq()})
                ));
            } else {
                eprintln!("error: {err}");
            }
            code
        }
    }
}
