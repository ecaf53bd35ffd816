#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use serde_json::json;
use tempfile::TempDir;

use super::*;

fn at(n: i64) -> Timestamp {
    Timestamp::from_second(1_796_000_000 + n).unwrap()
}

/// A fresh log in a temp dir with `n` events, seq `i` carrying `{"n": i}`.
fn log_with(n: u64) -> (TempDir, PathBuf, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut opened = EventLog::open(&path).unwrap();
    let events = (1..=n)
        .map(|i| {
            opened
                .log
                .append(
                    r#"User::"carol""#,
                    &format!("req-{i}"),
                    "requested",
                    json!({"n": i, "role": "FinOpsManager"}),
                    at(i as i64),
                )
                .unwrap()
        })
        .collect();
    (dir, path, events)
}

/// The file's lines, without their newlines.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\n").unwrap().to_vec())
        .collect()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    std::fs::write(path, bytes).unwrap();
}

fn replace(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap();
    assert!(text.contains(from), "{text} lacks {from}");
    text.replacen(from, to, 1).into_bytes()
}

/// A line as `append` would write it (without newline), for forging.
fn forge(seq: u64, prev: &str, data: &Value) -> Vec<u8> {
    let data = sorted(data);
    let mut fields = Canonical {
        seq,
        time: at(0),
        actor: "mallory",
        request_id: "req-forged",
        kind: "approved",
        data: &data,
        prev,
        hash: None,
    };
    let hash = hash_hex(&fields.encode().unwrap());
    fields.hash = Some(&hash);
    fields.encode().unwrap()
}

/// The first bad seq and fault `verify` and `open` both report, after checking that
/// the failed open left the file as it was.
fn broken(path: &Path) -> (u64, Fault) {
    let before = std::fs::read(path).unwrap();
    let from_verify = match verify(path) {
        Err(EventLogError::Broken { source, .. }) => source,
        other => panic!("verify: expected broken, got {other:?}"),
    };
    let from_open = match EventLog::open(path) {
        Err(EventLogError::Broken { source, .. }) => source,
        other => panic!("open: expected broken, got {other:?}"),
    };
    assert_eq!(from_verify, from_open);
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "a broken log is not changed"
    );
    (from_verify.seq, from_verify.fault)
}

fn assert_clean(path: &Path, events: u64) {
    let report = verify(path).unwrap();
    assert_eq!(report.events, events);
    assert_eq!(report.last_seq, events);
    assert_eq!(report.tail, None);
}

// ---- format and round trip ----

#[test]
fn open_creates_an_empty_log_that_starts_at_seq_1_after_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.jsonl");
    let opened = EventLog::open(&path).unwrap();
    assert!(path.exists());
    assert!(opened.events.is_empty());
    assert_eq!(opened.repaired, None);
    assert_eq!(opened.log.last_seq(), 0);
    assert_eq!(opened.log.last_hash(), GENESIS);
    assert_eq!(GENESIS.len(), 64);
    let mut log = opened.log;
    let first = log.append("a", "r", "k", json!(null), at(0)).unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.prev, GENESIS);
    assert_clean(&path, 1);
}

#[test]
fn appended_events_read_back_identically_after_reopen() {
    let (_dir, path, events) = log_with(5);
    let opened = EventLog::open(&path).unwrap();
    assert_eq!(opened.events, events);
    assert_eq!(opened.repaired, None);
    assert_eq!(opened.log.last_seq(), 5);
    assert_eq!(opened.log.last_hash(), events[4].hash);
}

#[test]
fn each_event_links_to_the_hash_of_the_one_before() {
    let (_dir, path, events) = log_with(4);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let report = verify(&path).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            events: 4,
            last_seq: 4,
            last_hash: events[3].hash.clone(),
            tail: None,
        }
    );
}

/// Pins the documented encoding byte for byte, with the hash computed independently.
#[test]
fn line_is_the_canonical_body_plus_its_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(&path).unwrap().log;
    // Keys deliberately out of order: the Map keeps insertion order in this build.
    let mut inner = serde_json::Map::new();
    inner.insert("z".into(), json!(1));
    inner.insert("a".into(), json!([true, null, "x\u{1}\n\u{e9}", -2, 0.5]));
    let mut data = serde_json::Map::new();
    data.insert("role".into(), json!("FinOpsManager"));
    data.insert("b".into(), Value::Object(inner));
    let time: Timestamp = "2026-12-03T17:00:00.250Z".parse().unwrap();
    let event = log
        .append(
            r#"User::"carol""#,
            "req-1",
            "requested",
            Value::Object(data),
            time,
        )
        .unwrap();

    let body = concat!(
        r#"{"seq":1,"time":"2026-12-03T17:00:00.25Z","actor":"User::\"carol\"","#,
        r#""request_id":"req-1","kind":"requested","#,
        r#""data":{"b":{"a":[true,null,"x\u0001\n"#,
        "\u{e9}",
        r#"",-2,0.5],"z":1},"role":"FinOpsManager"},"#,
        r#""prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#
    );
    let hash: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let line = format!(
        "{},\"hash\":\"{hash}\"}}\n",
        body.strip_suffix('}').unwrap()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), line);
    assert_eq!(event.hash, hash);
    // serde of an `Event` is its line, so the API can hand events out as they are stored.
    assert_eq!(
        format!("{}\n", serde_json::to_string(&event).unwrap()),
        line
    );
}

#[test]
fn a_second_open_of_the_same_log_is_refused() {
    let (_dir, path, _) = log_with(1);
    let _held = EventLog::open(&path).unwrap();
    assert!(matches!(
        EventLog::open(&path),
        Err(EventLogError::Locked { .. })
    ));
    // verify is a pure read and works while the log is open.
    assert_clean(&path, 1);
}

// ---- tampering ----

#[test]
fn edited_data_is_a_hash_mismatch_at_its_seq() {
    let (_dir, path, _) = log_with(4);
    let mut l = lines(&path);
    l[1] = replace(&l[1], r#""n":2"#, r#""n":7"#);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::Hash));
}

#[test]
fn edited_data_of_the_last_event_is_detected_too() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    l[2] = replace(&l[2], "FinOpsManager", "OrganizationAdmin");
    write_lines(&path, &l);
    assert_eq!(broken(&path), (3, Fault::Hash));
}

#[test]
fn changed_hash_is_detected_at_its_seq() {
    let (_dir, path, events) = log_with(4);
    let mut l = lines(&path);
    let fake = "f".repeat(64);
    l[1] = replace(&l[1], &events[1].hash, &fake);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::Hash));
}

#[test]
fn deleted_middle_line_is_a_gap_at_the_missing_seq() {
    let (_dir, path, _) = log_with(4);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::Seq { found: 3 }));
}

#[test]
fn deleted_first_line_is_a_gap_at_seq_1() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (1, Fault::Seq { found: 2 }));
}

#[test]
fn swapped_lines_are_detected_at_the_first_of_them() {
    let (_dir, path, _) = log_with(4);
    let mut l = lines(&path);
    l.swap(1, 2);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::Seq { found: 3 }));
}

#[test]
fn inserted_line_with_its_own_hash_but_a_wrong_prev_is_detected() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    l.insert(1, forge(2, &"a".repeat(64), &json!({"n": 99})));
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::Prev));
}

#[test]
fn inserted_line_that_chains_correctly_breaks_the_next_seq() {
    let (_dir, path, events) = log_with(3);
    let mut l = lines(&path);
    l.insert(1, forge(2, &events[0].hash, &json!({"n": 99})));
    write_lines(&path, &l);
    // The forgery itself is a valid successor of seq 1; the original seq 2 now
    // follows it and fails.
    assert_eq!(broken(&path), (3, Fault::Seq { found: 2 }));
}

#[test]
fn renumbered_forged_tail_is_a_prev_mismatch() {
    // Replace seq 2 with a forged seq 2 that chains to seq 1: the old seq 3 then
    // names a prev that no longer exists.
    let (_dir, path, events) = log_with(3);
    let mut l = lines(&path);
    l[1] = forge(2, &events[0].hash, &json!({"n": 2}));
    write_lines(&path, &l);
    assert_eq!(broken(&path), (3, Fault::Prev));
}

#[test]
fn whitespace_or_key_order_changes_are_not_canonical() {
    let (_dir, path, _) = log_with(3);
    let original = lines(&path);

    let mut l = original.clone();
    l[1] = replace(&l[1], r#""seq":2,"#, r#""seq": 2,"#);
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::NotCanonical));

    let mut l = original.clone();
    l[1] = replace(
        &l[1],
        r#""data":{"n":2,"role":"FinOpsManager"}"#,
        r#""data":{"role":"FinOpsManager","n":2}"#,
    );
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::NotCanonical));

    let mut l = original;
    l[1] = replace(&l[1], "FinOpsManager", r"Fin\u004fpsManager");
    write_lines(&path, &l);
    assert_eq!(broken(&path), (2, Fault::NotCanonical));
}

#[test]
fn unknown_field_makes_a_line_unparsable() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    l[1] = replace(&l[1], r#"{"seq":2,"#, r#"{"seq":2,"extra":1,"#);
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (2, Fault::Unparsable(_))));
}

/// "Tampering with one byte of the log is detected": every flip, deletion or insertion
/// of one byte makes verify fail, or report a tail to repair that keeps every event
/// (the deleted final newline); never a clean pass, never a silently dropped event.
#[test]
fn every_one_byte_change_is_detected() {
    let (_dir, path, events) = log_with(3);
    let original = std::fs::read(&path).unwrap();
    let detected = |bytes: &[u8]| match parse(bytes) {
        Err(_) => true,
        Ok(parsed) => {
            parsed.tail == Some(Tail::MissingNewline { seq: 3 }) && parsed.events == events
        }
    };
    for i in 0..original.len() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut bytes = original.clone();
            bytes[i] ^= mask;
            assert!(detected(&bytes), "flip {mask:#x} at {i}");
        }
        let mut bytes = original.clone();
        bytes.remove(i);
        assert!(detected(&bytes), "delete at {i}");
        let mut bytes = original.clone();
        bytes.insert(i, b' ');
        assert!(detected(&bytes), "insert at {i}");
    }
    let mut bytes = original;
    bytes.push(b' ');
    assert!(detected(&bytes), "insert at end");
}

// ---- torn writes ----

#[test]
fn torn_last_line_at_every_offset_is_repaired_keeping_earlier_events() {
    let (_dir, path, mut events) = log_with(2);
    // A last line with escapes and multi-byte UTF-8, so cuts land inside them too.
    let mut log = EventLog::open(&path).unwrap().log;
    let third = log
        .append(
            "Usér::\"ż\"",
            "req-3",
            "approved",
            json!({"comment": "ok \u{1} \"quoted\" \u{1f600}", "at": -1}),
            at(3),
        )
        .unwrap();
    drop(log);
    events.push(third);
    let full = std::fs::read(&path).unwrap();
    let last_start = full.len() - lines(&path)[2].len() - 1;
    // Every cut that leaves part of the third line, up to all but its newline.
    for cut in last_start + 1..full.len() - 1 {
        std::fs::write(&path, &full[..cut]).unwrap();
        let torn = Some(Tail::Torn {
            offset: last_start as u64,
            len: (cut - last_start) as u64,
        });

        let report = verify(&path).unwrap();
        assert_eq!((report.events, report.tail), (2, torn), "cut {cut}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            &full[..cut],
            "verify does not repair"
        );

        let opened = EventLog::open(&path).unwrap();
        assert_eq!(opened.repaired, torn, "cut {cut}");
        assert_eq!(opened.events, events[..2], "cut {cut}");
        assert_eq!(opened.log.last_seq(), 2);
        drop(opened);
        assert_eq!(std::fs::read(&path).unwrap(), &full[..last_start]);
        assert_clean(&path, 2);
    }

    // Only the newline is missing: the event is whole, so it is kept.
    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let missing = Some(Tail::MissingNewline { seq: 3 });
    assert_eq!(verify(&path).unwrap().tail, missing);
    let opened = EventLog::open(&path).unwrap();
    assert_eq!(opened.repaired, missing);
    assert_eq!(opened.events, events);
    drop(opened);
    assert_eq!(std::fs::read(&path).unwrap(), full);
}

#[test]
fn appends_after_a_repair_continue_the_chain() {
    let (_dir, path, events) = log_with(3);
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 10]).unwrap();
    let mut opened = EventLog::open(&path).unwrap();
    assert!(opened.repaired.is_some());
    let next = opened
        .log
        .append("b", "req-x", "approved", json!({}), at(9))
        .unwrap();
    assert_eq!(next.seq, 3);
    assert_eq!(next.prev, events[1].hash);
    drop(opened);
    let reopened = EventLog::open(&path).unwrap();
    assert_eq!(reopened.repaired, None);
    assert_eq!(reopened.events.len(), 3);
    assert_eq!(reopened.events[2], next);
    assert_clean(&path, 3);
}

#[test]
fn zeros_left_by_a_crash_at_the_end_are_repaired() {
    for tail in [
        vec![0u8; 300],
        [vec![0u8; 200], b"ab\"}\n".to_vec()].concat(),
    ] {
        let (_dir, path, events) = log_with(2);
        let good = std::fs::read(&path).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&path, &bytes).unwrap();
        let opened = EventLog::open(&path).unwrap();
        assert_eq!(
            opened.repaired,
            Some(Tail::Torn {
                offset: good.len() as u64,
                len: tail.len() as u64
            })
        );
        assert_eq!(opened.events, events);
        drop(opened);
        assert_eq!(std::fs::read(&path).unwrap(), good);
    }
}

#[test]
fn torn_line_in_the_middle_is_an_error_not_repaired() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    let half = l[1].len() / 2;
    l[1].truncate(half);
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (2, Fault::Unparsable(_))));
}

#[test]
fn zeros_in_the_middle_are_an_error_not_repaired() {
    let (_dir, path, _) = log_with(3);
    let mut l = lines(&path);
    l[1] = vec![0; l[1].len()];
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (2, Fault::Unparsable(_))));
}

#[test]
fn final_line_that_is_not_a_torn_append_is_not_truncated() {
    // As if `open` were pointed at some other file: nothing may be cut away.
    let (_dir, path, _) = log_with(2);
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, [good.as_slice(), b"hello\n"].concat()).unwrap();
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));
    std::fs::write(&path, [good.as_slice(), b"hello"].concat()).unwrap();
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));
    std::fs::write(&path, [good.as_slice(), b"\n"].concat()).unwrap();
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));

    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("hostname");
    std::fs::write(&other, "build-box\n").unwrap();
    assert!(matches!(broken(&other), (1, Fault::Unparsable(_))));
}

#[test]
fn edited_final_line_that_no_longer_parses_is_not_truncated() {
    // A crash cannot leave a newline-terminated line that is malformed but has no
    // zeros, so this is an edit, and dropping the event would hide it.
    let (_dir, path, _) = log_with(3);
    let original = lines(&path);

    let mut l = original.clone();
    l[2] = replace(&l[2], r#""kind":"#, r#""kind:"#);
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));

    let mut l = original.clone();
    let half = l[2].len() / 2;
    l[2].truncate(half);
    write_lines(&path, &l);
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));

    // Without its newline but with trailing junk: not a prefix of any line either.
    let mut l = original;
    let mut bytes = Vec::new();
    for line in &l[..2] {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    l[2].push(b'x');
    bytes.extend_from_slice(&l[2]);
    std::fs::write(&path, bytes).unwrap();
    assert!(matches!(broken(&path), (3, Fault::Unparsable(_))));
}

#[test]
fn final_line_that_parses_but_breaks_the_chain_is_not_truncated() {
    let (_dir, path, _) = log_with(2);
    let mut l = lines(&path);
    l.push(forge(3, &"b".repeat(64), &json!({})));
    write_lines(&path, &l);
    assert_eq!(broken(&path), (3, Fault::Prev));
}

// ---- refused events ----

#[test]
fn too_deep_or_too_large_data_is_refused_and_nothing_is_written() {
    let (_dir, path, _) = log_with(1);
    let before = std::fs::read(&path).unwrap();
    let mut log = EventLog::open(&path).unwrap().log;

    let mut deep = json!(1);
    for _ in 0..MAX_DATA_DEPTH {
        deep = json!([deep]);
    }
    log.append("a", "r", "k", deep.clone(), at(1)).unwrap();
    let before_deep = std::fs::read(&path).unwrap();
    let err = log.append("a", "r", "k", json!([deep]), at(1)).unwrap_err();
    assert!(matches!(
        err,
        EventLogError::Refused {
            source: Refusal::TooDeep,
            ..
        }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before_deep);

    let big = json!({"reason": "x".repeat(MAX_LINE_BYTES)});
    let err = log.append("a", "r", "k", big, at(1)).unwrap_err();
    assert!(matches!(
        err,
        EventLogError::Refused {
            source: Refusal::TooLarge,
            ..
        }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before_deep);
    assert_eq!(
        err.to_string(),
        format!(
            "event `k` of request `r` was not logged: its line would be longer than {MAX_LINE_BYTES} bytes"
        )
    );

    let next = log.append("a", "r", "k", json!({}), at(2)).unwrap();
    assert_eq!(next.seq, 3);
    assert!(before.len() < before_deep.len());
    assert_clean(&path, 3);
}

// ---- failing storage ----

#[derive(Debug, Default)]
struct Faults {
    /// Write half the bytes, then fail like a full disk.
    short_write: bool,
    /// How many of the next fsyncs fail.
    fail_syncs: u32,
    fail_truncate: bool,
}

#[derive(Debug)]
struct Faulty {
    file: File,
    faults: Arc<Mutex<Faults>>,
}

impl Storage for Faulty {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.faults.lock().unwrap().short_write {
            self.file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::ErrorKind::StorageFull.into());
        }
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut faults = self.faults.lock().unwrap();
        if faults.fail_syncs > 0 {
            faults.fail_syncs -= 1;
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.faults.lock().unwrap().fail_truncate {
            return Err(io::Error::other("injected truncate failure"));
        }
        self.file.set_len(len)
    }
}

fn faulty_log(events: u64) -> (TempDir, PathBuf, EventLog, Arc<Mutex<Faults>>) {
    let (dir, path, _) = log_with(events);
    let faults = Arc::new(Mutex::new(Faults::default()));
    let shared = Arc::clone(&faults);
    let log = EventLog::open_with(&path, move |file| {
        Box::new(Faulty {
            file,
            faults: shared,
        })
    })
    .unwrap()
    .log;
    (dir, path, log, faults)
}

fn append_one(log: &mut EventLog, n: i64) -> Result<Event, EventLogError> {
    log.append("a", &format!("req-{n}"), "k", json!({"n": n}), at(n))
}

#[test]
fn failed_write_is_undone_and_the_log_stays_usable() {
    let (_dir, path, mut log, faults) = faulty_log(2);
    let before = std::fs::read(&path).unwrap();
    faults.lock().unwrap().short_write = true;
    let err = append_one(&mut log, 3).unwrap_err();
    assert!(matches!(err, EventLogError::Append { .. }), "{err}");
    assert!(
        err.to_string().contains("the event was not logged"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(log.last_seq(), 2);

    faults.lock().unwrap().short_write = false;
    let next = append_one(&mut log, 3).unwrap();
    assert_eq!(next.seq, 3);
    drop(log);
    assert_eq!(EventLog::open(&path).unwrap().events[2], next);
    assert_clean(&path, 3);
}

#[test]
fn failed_fsync_is_undone_and_the_log_stays_usable() {
    let (_dir, path, mut log, faults) = faulty_log(2);
    let before = std::fs::read(&path).unwrap();
    let second = log.last_hash().to_owned();
    // The whole line was written; only its fsync fails, the undo's own fsync works.
    faults.lock().unwrap().fail_syncs = 1;
    assert!(matches!(
        append_one(&mut log, 3),
        Err(EventLogError::Append { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!log.is_poisoned());
    let next = append_one(&mut log, 3).unwrap();
    assert_eq!((next.seq, next.prev.as_str()), (3, second.as_str()));
    drop(log);
    assert_clean(&path, 3);
}

#[test]
fn failed_undo_poisons_the_log_until_reopened_and_reopen_repairs_it() {
    let (_dir, path, mut log, faults) = faulty_log(2);
    {
        let mut f = faults.lock().unwrap();
        f.short_write = true;
        f.fail_truncate = true;
    }
    let err = append_one(&mut log, 3).unwrap_err();
    assert!(matches!(err, EventLogError::RollBack { .. }), "{err}");
    assert!(log.is_poisoned());

    *faults.lock().unwrap() = Faults::default();
    assert!(matches!(
        append_one(&mut log, 3),
        Err(EventLogError::Poisoned { .. })
    ));
    drop(log);

    // The half line is still there, as after a crash; reopening drops it.
    let mut opened = EventLog::open(&path).unwrap();
    assert!(opened.repaired.is_some());
    assert_eq!(opened.events.len(), 2);
    let next = append_one(&mut opened.log, 3).unwrap();
    assert_eq!(next.seq, 3);
    drop(opened);
    assert_clean(&path, 3);
}

#[test]
fn an_event_whose_undo_failed_after_a_whole_write_may_survive_reopen() {
    let (_dir, path, mut log, faults) = faulty_log(2);
    {
        let mut f = faults.lock().unwrap();
        f.fail_syncs = 1;
        f.fail_truncate = true;
    }
    assert!(matches!(
        append_one(&mut log, 3),
        Err(EventLogError::RollBack { .. })
    ));
    drop(log);
    // The line was whole, so it is a valid event; the chain is intact either way.
    let opened = EventLog::open(&path).unwrap();
    assert_eq!(opened.repaired, None);
    assert_eq!(opened.events.len(), 3);
}

// ---- properties and fuzzing ----

fn any_data() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn any_time() -> impl Strategy<Value = Timestamp> {
    (
        Timestamp::MIN.as_second()..=Timestamp::MAX.as_second() - 1,
        0i32..1_000_000_000,
    )
        .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap_or(Timestamp::UNIX_EPOCH))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_appends_read_back_identically(
        appends in proptest::collection::vec(
            (any::<String>(), any::<String>(), "[a-z_]{0,12}", any_data(), any_time()),
            0..10,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&path).unwrap().log;
        let mut written = Vec::new();
        for (actor, request_id, kind, data, time) in appends {
            match log.append(&actor, &request_id, &kind, data.clone(), time) {
                Ok(event) => {
                    prop_assert_eq!(&event.data, &data);
                    prop_assert_eq!(event.time, time);
                    written.push(event);
                }
                // Only a float serde_json cannot read back exactly may be refused.
                Err(EventLogError::Refused { source: Refusal::NotRoundTrip, .. }) => {}
                Err(other) => prop_assert!(false, "append failed: {other}"),
            }
        }
        drop(log);
        let opened = EventLog::open(&path).unwrap();
        prop_assert_eq!(&opened.events, &written);
        prop_assert_eq!(opened.repaired, None);
        prop_assert_eq!(verify(&path).unwrap().tail, None);
        let report = verify(&path).unwrap();
        prop_assert_eq!(report.events, written.len() as u64);
    }

    #[test]
    fn fuzz_read_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        fuzz_read(&bytes);
    }

    #[test]
    fn fuzz_read_never_panics_on_mutated_logs(
        cut in 0usize..2000,
        flips in proptest::collection::vec((0usize..2000, any::<u8>()), 0..6),
    ) {
        let mut bytes = seed_log().to_vec();
        for (at, byte) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = byte;
            }
        }
        bytes.truncate(cut);
        fuzz_read(&bytes);
    }
}

/// A real three-event log, built once, as the seed for mutations.
fn seed_log() -> &'static [u8] {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let (_dir, path, _) = log_with(3);
        std::fs::read(path).unwrap()
    })
}

#[test]
fn fuzz_read_survives_the_seed_and_edge_cases() {
    for bytes in [
        seed_log(),
        b"",
        b"\n",
        b"\0",
        b"{",
        b"{}\n{}\n",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"seq\":18446744073709551615}\n".as_bytes(),
    ] {
        fuzz_read(bytes);
    }
}
