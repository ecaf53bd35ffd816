//! The log is the source of truth: reopening rebuilds exactly the live state, and a
//! log that does not fit the state machine is refused, naming the event.

use std::io::Write as _;

use super::*;
use crate::eventlog::EventLog;

/// A scenario that visits every state and kind of event.
fn busy(f: &mut Fixture) {
    let a = f.alice_granted(t(0));
    let ext =
        f.wf.extend(&user("alice"), &a, more(hours(1)), t(10))
            .unwrap()
            .id;
    f.wf.approve(&user("bob"), &ext, Some("fine".into()), t(11))
        .unwrap();
    let admin =
        f.wf.request(
            &user("dave"),
            spec("OrganizationAdmin", org(), hours(2)),
            t(12),
        )
        .unwrap()
        .id;
    f.wf.approve(&user("carol"), &admin, None, t(13)).unwrap();
    let mut s = finops(ws(1), hours(1));
    s.on_behalf_of = Some("pipeline 7".into());
    s.not_before = Some(t(300));
    let key = f.wf.request(&key("bb-ws1"), s, t(14)).unwrap().id;
    f.wf.approve(&user("carol"), &key, None, t(15)).unwrap();
    let denied = f.alice_finops(t(16));
    f.wf.deny(&user("carol"), &denied, None, t(17)).unwrap();
    let cancelled = f.alice_finops(t(18));
    f.wf.cancel(&user("alice"), &cancelled, None, t(19))
        .unwrap();
    let revoked = f.alice_granted(t(20));
    f.wf.revoke(&user("frank"), &revoked, None, t(21)).unwrap();
    let gone = f.alice_granted(t(22));
    let gone_ext =
        f.wf.extend(&user("alice"), &gone, more(hours(1)), t(23))
            .unwrap()
            .id;
    f.wf.relinquish(&user("alice"), &gone, None, t(24)).unwrap();
    assert_eq!(f.state(&gone_ext, t(24)), State::Lapsed);
    f.alice_finops(t(25));
    f.wf.tick(t(121)).unwrap();
}

fn everything(wf: &Workflow) -> Vec<Elevation> {
    wf.list(&Filter::default(), t(0))
        .into_iter()
        .cloned()
        .collect()
}

#[test]
fn reopening_rebuilds_exactly_the_live_state() {
    let mut f = Fixture::new();
    busy(&mut f);
    let live = everything(&f.wf);
    let seq = f.wf.last_seq();
    let feed = f.wf.feed(t(200));
    let f = f.reopen();
    assert_eq!(everything(&f.wf), live);
    assert_eq!(f.wf.last_seq(), seq);
    assert_eq!(f.wf.feed(t(200)), feed);
    assert!(f.wf.repaired().is_none());
}

#[test]
fn ids_and_the_clock_carry_on_after_reopening() {
    let mut f = Fixture::new();
    f.alice_finops(t(50));
    let mut f = f.reopen();
    let e =
        f.wf.request(&user("alice"), finops(ws(1), hours(1)), t(0))
            .unwrap();
    assert_eq!(e.id, "r-2");
    assert_eq!(e.requested_at, t(50), "the clock is rebuilt too");
}

#[test]
fn a_torn_final_line_is_dropped_and_every_acknowledged_event_kept() {
    let mut f = Fixture::new();
    busy(&mut f);
    let live = everything(&f.wf);
    let path = f.path();
    let dir = f.dir;
    drop(f.wf);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(br#"{"seq":99,"time":"2026-12-03T"#).unwrap();
    drop(file);
    let wf = Workflow::open(&path, shipped(), Config::default()).unwrap();
    assert!(matches!(wf.repaired(), Some(Tail::Torn { .. })));
    assert_eq!(everything(&wf), live);
    drop(dir);
}

#[test]
fn a_tampered_log_is_refused_naming_the_first_bad_seq() {
    let mut f = Fixture::new();
    busy(&mut f);
    let path = f.path();
    let dir = f.dir;
    drop(f.wf);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"approved\"", "\"approval\"", 1)).unwrap();
    let err = Workflow::open(&path, shipped(), Config::default()).unwrap_err();
    assert!(
        matches!(&err, WorkflowError::Log(e) if e.first_bad_seq() == Some(2)),
        "{err}"
    );
    drop(dir);
}

/// A log written directly, bypassing the workflow.
fn log_of(events: &[(&str, &str, &str, Value)]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut log = EventLog::open(&path).unwrap().log;
    for (actor, id, kind, data) in events {
        log.append(actor, id, kind, data.clone(), t(0)).unwrap();
    }
    (dir, path)
}

fn requested() -> Value {
    json!({"principal": "User::\"alice\"", "role": "FinOpsManager", "scope": "Workspace::\"ws-1\"",
           "duration_seconds": 3600, "reason": "r", "decide_by": "2026-12-04T09:00:00Z",
           "approvals_required": 1})
}

#[track_caller]
fn replay_error(events: &[(&str, &str, &str, Value)]) -> (u64, String) {
    let (_dir, path) = log_of(events);
    match Workflow::open(&path, shipped(), Config::default()) {
        Err(WorkflowError::Replay { seq, message }) => (seq, message),
        other => panic!("expected a replay error, got {other:?}"),
    }
}

#[test]
fn a_log_the_state_machine_cannot_follow_is_refused_naming_the_event() {
    let carol = "User::\"carol\"";
    let alice = "User::\"alice\"";
    let approved = json!({"grant_id": "g-1", "not_before": "2026-12-03T09:00:00Z",
                          "expires_at": "2026-12-03T10:00:00Z", "approvals_required": 1});
    // An approval of a request nobody made.
    let (seq, message) = replay_error(&[(carol, "r-1", "approved", approved.clone())]);
    assert_eq!((seq, message.as_str()), (1, "no request `r-1`"));
    // A request made twice.
    let (seq, _) = replay_error(&[
        (alice, "r-1", "requested", requested()),
        (alice, "r-1", "requested", requested()),
    ]);
    assert_eq!(seq, 2);
    // Approved twice by the same approver.
    let (seq, _) = replay_error(&[
        (alice, "r-1", "requested", requested()),
        (carol, "r-1", "approval", json!({})),
        (carol, "r-1", "approved", approved.clone()),
    ]);
    assert_eq!(seq, 3);
    // Revoking what was never granted, cancelling what was.
    let (seq, _) = replay_error(&[
        (alice, "r-1", "requested", requested()),
        (carol, "r-1", "revoked", json!({})),
    ]);
    assert_eq!(seq, 2);
    let (seq, _) = replay_error(&[
        (alice, "r-1", "requested", requested()),
        (carol, "r-1", "approved", approved),
        (alice, "r-1", "cancelled", json!({})),
    ]);
    assert_eq!(seq, 3);
    // A kind this version does not know, and data of the wrong shape.
    let (seq, message) = replay_error(&[(alice, "r-1", "teleported", json!({}))]);
    assert_eq!(seq, 1);
    assert!(message.contains("teleported"), "{message}");
    let (seq, _) = replay_error(&[(alice, "r-1", "requested", json!({"role": 7}))]);
    assert_eq!(seq, 1);
}

#[test]
fn a_second_workflow_cannot_open_the_same_log() {
    let f = Fixture::new();
    let err = Workflow::open(f.path(), shipped(), Config::default()).unwrap_err();
    assert!(
        matches!(err, WorkflowError::Log(EventLogError::Locked { .. })),
        "{err}"
    );
}
