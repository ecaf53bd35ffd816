//! The workflow's event log under faults, with real processes and real files: SIGKILL
//! at random moments under a write load, and a full disk (a small tmpfs). No
//! acknowledged event is lost, the hash chain verifies, a full disk is a clear 503 and
//! not a corrupt log, and writes resume when space returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod serve_proc;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serve_proc::{Reply, Server, audit_verify, request, workflow_args};

const ALICE: &str = "demo-alice";
const CAROL: &str = "demo-carol";

fn finops(reason: &str) -> Vec<u8> {
    json!({"role": "FinOpsManager", "scope": "Workspace::\"ws-1\"", "duration": "2h",
           "reason": reason})
    .to_string()
    .into_bytes()
}

fn call(addr: &str, method: &str, path: &str, token: &str, body: &[u8]) -> std::io::Result<Reply> {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(addr, method, path, &headers, body)
}

fn elevation(addr: &str, id: &str) -> Value {
    let reply = call(addr, "GET", &format!("/v1/elevations/{id}"), CAROL, b"").unwrap();
    assert_eq!(reply.status, 200, "elevation `{id}`: {}", reply.text());
    reply.json()
}

/// What the clients were told succeeded: created requests and approvals.
#[derive(Default)]
struct Acked {
    requested: BTreeSet<String>,
    approved: BTreeSet<String>,
}

/// A small xorshift: reproducible from the seed printed at the start.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Requests then approvals, as fast as the server acknowledges them, until `stop` or
/// the server goes away; every 201/200 is recorded.
fn write_load(addr: String, worker: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let reason = format!("load {worker}-{n}");
        let Ok(reply) = call(&addr, "POST", "/v1/elevations", ALICE, &finops(&reason)) else {
            return;
        };
        if reply.status != 201 {
            return;
        }
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        acked.lock().unwrap().requested.insert(id.clone());
        let Ok(reply) = call(
            &addr,
            "POST",
            &format!("/v1/elevations/{id}/approve"),
            CAROL,
            b"",
        ) else {
            return;
        };
        if reply.status != 200 {
            return;
        }
        acked.lock().unwrap().approved.insert(id);
    }
}

#[track_caller]
fn assert_nothing_acknowledged_is_lost(addr: &str, acked: &Acked) {
    for id in &acked.requested {
        let e = elevation(addr, id);
        if acked.approved.contains(id) {
            assert_eq!(
                e["state"], "approved",
                "acknowledged approval of `{id}` lost: {e}"
            );
        }
    }
}

#[test]
fn sigkill_under_write_load_loses_no_acknowledged_event_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = workflow_args(&data);
    let log = data.join("events.jsonl");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Rng(seed);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut torn_tails = 0;
    for round in 0..5 {
        let mut server = Server::start(&args, &dir.path().join(format!("round-{round}.log")));
        let (code, text) = audit_verify(&log);
        if round > 0 {
            // The restart repaired any torn last line and replayed the whole chain.
            assert_eq!(code, 0, "round {round}: {text}");
            assert_nothing_acknowledged_is_lost(&server.addr, &acked.lock().unwrap());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (addr, stop, acked) =
                    (server.addr.clone(), Arc::clone(&stop), Arc::clone(&acked));
                thread::spawn(move || write_load(addr, w, stop, acked))
            })
            .collect();
        thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        // SIGKILL mid-load: some requests are in flight, maybe mid-fsync.
        server.proc.kill();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        let out = Command::new(serve_proc::BIN)
            .args(["audit", "verify", "--format", "json"])
            .arg(&log)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        // A killed writer may leave an incomplete last line, never a broken chain.
        assert!(report.get("error").is_none(), "round {round}: {report}");
        if report["valid"] == false {
            torn_tails += 1;
        }
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.requested.len() >= 10,
        "too little load to mean anything"
    );
    let server = Server::start(&args, &dir.path().join("final.log"));
    assert_nothing_acknowledged_is_lost(&server.addr, &acked);
    drop(server);
    let (code, text) = audit_verify(&log);
    assert_eq!(code, 0, "{text}");
    // And the log holds nothing beyond what the clients were told about, save the
    // writes in flight at each kill: at most one per worker per kill.
    let out = Command::new(serve_proc::BIN)
        .args(["audit", "verify", "--format", "json"])
        .arg(&log)
        .output()
        .unwrap();
    let events = serde_json::from_slice::<Value>(&out.stdout).unwrap()["events"]
        .as_u64()
        .unwrap();
    let told = (acked.requested.len() + acked.approved.len()) as u64;
    assert!(
        (told..=told + 4 * 5).contains(&events),
        "{events} events in the log, {told} acknowledged"
    );
    eprintln!(
        "5 SIGKILLs: {} acknowledged requests and {} approvals kept, {torn_tails} torn \
         last lines repaired; {}",
        acked.requested.len(),
        acked.approved.len(),
        text.trim()
    );
}

/// A tmpfs mounted for one test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the disk-full test needs root, or CAP_SYS_ADMIN: \
             run the tests as root, e.g. in the CI container): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros into `path` until the filesystem says it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

#[test]
fn a_full_disk_is_a_clear_503_the_log_stays_sound_and_writes_resume_with_space() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&dir.path().join("disk"), "2m");
    let data = mount.0.join("data");
    let log = data.join("events.jsonl");
    let server = Server::start(&workflow_args(&data), &dir.path().join("server.log"));
    let addr = server.addr.clone();
    let mut acked = Acked::default();
    for n in 0..3 {
        let reply = call(
            &addr,
            "POST",
            "/v1/elevations",
            ALICE,
            &finops(&format!("before {n}")),
        )
        .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        acked
            .requested
            .insert(reply.json()["id"].as_str().unwrap().to_owned());
    }

    let filler = mount.0.join("filler");
    fill(&filler);
    // The last page of the log may still have room for an event or two; after that
    // every write must be refused.
    let mut refused = Vec::new();
    let started = Instant::now();
    while refused.len() < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes never refused"
        );
        let reply = call(
            &addr,
            "POST",
            "/v1/elevations",
            ALICE,
            &finops("while full"),
        )
        .unwrap();
        match reply.status {
            201 => {
                acked
                    .requested
                    .insert(reply.json()["id"].as_str().unwrap().to_owned());
            }
            503 => refused.push(reply),
            other => panic!("a write on a full disk answered {other}: {}", reply.text()),
        }
    }
    for reply in &refused {
        let error = reply.error();
        assert_eq!(reply.json()["kind"], "unavailable", "{}", reply.text());
        assert!(error.contains("No space left on device"), "{error}");
    }
    eprintln!("a write on a full disk: 503 {}", refused[0].text());
    // An approval is a write too.
    let first = acked.requested.iter().next().unwrap().clone();
    let reply = call(
        &addr,
        "POST",
        &format!("/v1/elevations/{first}/approve"),
        CAROL,
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 503, "{}", reply.text());
    // Reads and decisions go on.
    assert_nothing_acknowledged_is_lost(&addr, &acked);
    assert_eq!(elevation(&addr, &first)["state"], "pending");
    let answer = server.decide(
        "User::\"alice\"",
        "Action::\"readProject\"",
        "Project::\"checkout\"",
    );
    assert_eq!(answer["decision"], "Allow");
    // The log is sound while the disk is full: every refused write was rolled back.
    let (code, text) = audit_verify(&log);
    assert_eq!(code, 0, "{text}");

    // Space returns: the next writes succeed, with no restart.
    std::fs::remove_file(&filler).unwrap();
    let reply = call(
        &addr,
        "POST",
        &format!("/v1/elevations/{first}/approve"),
        CAROL,
        b"",
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    acked.approved.insert(first);
    let reply = call(&addr, "POST", "/v1/elevations", ALICE, &finops("after")).unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    acked
        .requested
        .insert(reply.json()["id"].as_str().unwrap().to_owned());
    assert_nothing_acknowledged_is_lost(&addr, &acked);
    drop(server);
    let (code, text) = audit_verify(&log);
    assert_eq!(code, 0, "{text}");
    // A restart replays the same history.
    let server = Server::start(&workflow_args(&data), &dir.path().join("restart.log"));
    assert_nothing_acknowledged_is_lost(&server.addr, &acked);
    drop(server);
    drop(mount);
}
