//! `elevate audit verify` on real event logs: exit codes and the first bad sequence number.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use elevate::eventlog::EventLog;

fn write_log(path: &std::path::Path, events: u64) {
    let mut opened = EventLog::open(path).unwrap();
    for i in 1..=events {
        opened
            .log
            .append(
                "User::\"alice\"",
                &format!("req-{i}"),
                "requested",
                serde_json::json!({"role": "FinOpsManager", "n": i}),
                jiff::Timestamp::from_second(1_780_000_000 + i as i64).unwrap(),
            )
            .unwrap();
    }
}

fn verify(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_sound_log_verifies_and_an_edited_one_names_the_first_bad_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_log(&path, 5);
    let (code, stdout, _) = verify(&path);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("5 events"), "{stdout}");

    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"n\":3", "\"n\":4", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    let (code, _, stderr) = verify(&path);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("seq 3") || stderr.contains("event 3"),
        "names seq 3: {stderr}"
    );
}

#[test]
fn a_removed_event_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_log(&path, 4);
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let (code, _, stderr) = verify(&path);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("seq 2") || stderr.contains("event 2"),
        "names seq 2: {stderr}"
    );
}

#[test]
fn a_torn_tail_fails_verification_but_names_the_sound_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write_log(&path, 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 20);
    std::fs::write(&path, bytes).unwrap();
    let (code, _, stderr) = verify(&path);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("incomplete event") && stderr.contains("the 2 events"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_is_a_failure_not_a_verdict() {
    let (code, _, stderr) = verify(std::path::Path::new("/nonexistent/events.jsonl"));
    assert_eq!(code, 1, "{stderr}");
}
