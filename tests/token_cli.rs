//! `elevate token new|hash` as an operator runs them: the printed entry must authenticate
//! the printed token, and a bad principal must exit 3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::str::FromStr;

use cedar_policy::EntityUid;
use elevate::tokens::TokenTable;
use sha2::{Digest, Sha256};

fn elevate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(args)
        .output()
        .unwrap()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The token and the entry line of `token new`'s output, checking its layout.
fn new_token(args: &[&str]) -> (String, String) {
    let out = elevate(&[&["token", "new"], args].concat());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let token = lines[0].strip_prefix("token: ").unwrap().to_owned();
    assert_eq!(lines[1], "add to the tokens file:");
    (token, lines[2].to_owned())
}

#[test]
fn token_new_prints_a_token_and_an_entry_that_authenticates_it() {
    let (token, line) = new_token(&["--principal", r#"User::"carol""#]);

    let hex = token.strip_prefix("elv_").unwrap();
    assert_eq!(hex.len(), 64, "{token}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{token}"
    );

    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        entry,
        serde_json::json!({"sha256": sha256_hex(&token), "principal": "User::\"carol\""})
    );
    assert!(line.starts_with(r#"{"sha256": ""#), "{line}");

    // Pasted into a tokens file as is, it authenticates the printed token.
    let table = TokenTable::parse(format!("[{line}]").as_bytes()).unwrap();
    assert_eq!(
        table.lookup(&token),
        Some(&EntityUid::from_str(r#"User::"carol""#).unwrap())
    );
}

#[test]
fn token_new_includes_the_note_when_given() {
    let (token, line) = new_token(&[
        "--principal",
        r#"ApiKey::"ci""#,
        "--note",
        r#"demo "requester""#,
    ]);
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        entry,
        serde_json::json!({
            "sha256": sha256_hex(&token),
            "principal": "ApiKey::\"ci\"",
            "note": "demo \"requester\"",
        })
    );
    assert!(TokenTable::parse(format!("[{line}]").as_bytes()).is_ok());
}

#[test]
fn two_runs_give_different_tokens() {
    let (a, line_a) = new_token(&["--principal", r#"User::"carol""#]);
    let (b, line_b) = new_token(&["--principal", r#"User::"carol""#]);
    assert_ne!(a, b);
    assert_ne!(line_a, line_b);
}

#[test]
fn a_bad_principal_exits_3_and_prints_no_token() {
    for bad in ["carol", r#"User::carol"#, ""] {
        let out = elevate(&["token", "new", "--principal", bad]);
        assert_eq!(out.status.code(), Some(3), "{bad}");
        assert!(out.stdout.is_empty(), "{bad}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("is not a Cedar entity UID"), "{stderr}");
    }
}

fn hash_stdin(input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn token_hash_prints_the_digest_of_the_token_on_stdin() {
    let (token, line) = new_token(&["--principal", r#"User::"carol""#]);
    let out = hash_stdin(&format!("{token}\n"));
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed, format!("{}\n", sha256_hex(&token)));
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["sha256"], printed.trim_end());
}

#[test]
fn token_hash_refuses_empty_or_spaced_input_without_echoing_it() {
    let out = hash_stdin("\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());

    let out = hash_stdin("elv_secret part\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
}
