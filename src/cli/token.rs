//! `elevate token new|hash`: make a bearer token for the workflow API, or hash one, and
//! print the entry for the `--tokens` file.

use std::io::Read;
use std::str::FromStr;

use cedar_policy::EntityUid;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::tokens;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token and the entry to add to the tokens file.
    ///
    /// The file keeps only the token's SHA-256, so the token is shown this once.
    /// Exit 3 for a bad principal.
    New {
        /// The principal the token authenticates, a Cedar entity UID: `User::"carol"`
        #[arg(long)]
        principal: String,
        /// A note for the humans reading the tokens file ("demo requester")
        #[arg(long)]
        note: Option<String>,
    },
    /// Read a token from stdin and print its SHA-256 (hex), as the tokens file holds it.
    Hash,
}

pub fn run(args: &TokenArgs) -> u8 {
    match &args.command {
        TokenCommand::New { principal, note } => new(principal, note.as_deref()),
        TokenCommand::Hash => hash(),
    }
}

fn new(principal: &str, note: Option<&str>) -> u8 {
    let uid = match EntityUid::from_str(principal) {
        Ok(uid) => uid,
        Err(err) => {
            eprintln!(
                r#"error: `{principal}` is not a Cedar entity UID like `User::"carol"`: {err}"#
            );
            return EXIT_INVALID;
        }
    };
    let token = match tokens::new_token() {
        Ok(token) => token,
        Err(err) => {
            eprintln!("error: no random bytes from the operating system: {err}");
            return EXIT_FAILURE;
        }
    };
    print(&format!(
        "token: {token}\nadd to the tokens file:\n{}\n",
        entry_line(&tokens::digest_hex(&token), &uid, note)
    ));
    EXIT_OK
}

/// The entry in the tokens file's own layout (`sha256` first, spaces after colons),
/// which `serde_json`'s compact, key-sorted output is not.
fn entry_line(sha256: &str, principal: &EntityUid, note: Option<&str>) -> String {
    let string = |s: &str| Value::String(s.to_owned()).to_string();
    let mut line = format!(
        r#"{{"sha256": {}, "principal": {}"#,
        string(sha256),
        string(&principal.to_string())
    );
    if let Some(note) = note {
        line.push_str(&format!(r#", "note": {}"#, string(note)));
    }
    line.push('}');
    line
}

fn hash() -> u8 {
    let mut input = Vec::new();
    if let Err(err) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("error: cannot read stdin: {err}");
        return EXIT_FAILURE;
    }
    // `echo TOKEN |` adds a newline, and a token never contains whitespace.
    let token = input.trim_ascii();
    if token.is_empty() {
        eprintln!("error: no token on stdin");
        return EXIT_INVALID;
    }
    // Never echo the input: it is a secret.
    let Some(token) = std::str::from_utf8(token)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
    else {
        eprintln!("error: not a bearer token: tokens are visible ASCII without spaces");
        return EXIT_INVALID;
    };
    print(&format!("{}\n", tokens::digest_hex(token)));
    EXIT_OK
}
