#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Soak: a real `elevate serve` process under sustained load while its grant feed is
//! replaced every second with grants that start and expire continuously (windows of
//! 0.3–4 s at millisecond precision, so boundaries fall all the time). Every answer
//! is checked against the test's own model of the feeds: the answer's record in the
//! decision log (streamed from the server's stdout, checked as it arrives) names the feed revision and the instant it was decided at, and the
//! decision, its grants and `valid_until` must be exactly what that revision's grants
//! give at that instant. Meanwhile the server's RSS and open file descriptors are
//! sampled and must stay flat.
//!
//! `ELEVATE_SOAK_SECS` sets the length (default 60, what CI runs); the long run is
//! `ELEVATE_SOAK_SECS=1800 cargo test --release --test soak -- --nocapture`.
//! `ELEVATE_SOAK_SEED` picks the feeds' randomness (the seed is printed).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::{repo_root, write_atomic};

const PRINCIPALS: u64 = 12;
/// (workspace, a payment method in it) from the shipped entities.
const SCOPES: [(&str, &str); 2] = [("ws-1", "pm-1"), ("ws-2", "pm-2")];
const CLIENTS: usize = 4;

/// SplitMix64: a seeded, reproducible stream; the feeds need no more than that.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn principal(i: u64) -> String {
    format!("User::\"soak-{i}\"")
}

fn workspace(ws: &str) -> String {
    format!("Workspace::\"{ws}\"")
}

#[derive(Debug, Clone)]
struct ModelGrant {
    id: String,
    principal: String,
    scope: String,
    not_before: Timestamp,
    expires_at: Timestamp,
}

impl ModelGrant {
    fn in_force(&self, at: Timestamp) -> bool {
        self.not_before <= at && at < self.expires_at
    }
}

/// Revision → the grants that revision holds.
type Model = HashMap<String, Vec<ModelGrant>>;

/// A feed of grants around now: most principals get a grant in a random workspace
/// whose window starts up to 3 s ago or up to 2 s ahead and lasts 0.3–4 s.
fn make_feed(revision: &str, rng: &mut Rng) -> (Value, Vec<ModelGrant>) {
    let now = Timestamp::now();
    let mut grants = Vec::new();
    let mut docs = Vec::new();
    for i in 0..PRINCIPALS {
        // Two grants at most per principal, so overlapping windows occur too.
        for k in 0..2 {
            if rng.below(10) < 4 {
                continue;
            }
            let (ws, _) = SCOPES[usize::try_from(rng.below(2)).unwrap()];
            let start = SignedDuration::from_millis(i64::try_from(rng.below(5000)).unwrap() - 3000);
            let length = SignedDuration::from_millis(300 + i64::try_from(rng.below(3700)).unwrap());
            let not_before = now.checked_add(start).unwrap();
            let expires_at = not_before.checked_add(length).unwrap();
            let id = format!("g-{revision}-{i}-{k}");
            docs.push(json!({
                "id": id,
                "principal": principal(i),
                "role": "FinOpsManager",
                "scope": workspace(ws),
                "not_before": not_before.to_string(),
                "expires_at": expires_at.to_string(),
                "approved_by": ["User::\"carol\""],
                "requested_by": principal(i),
                "reason": "soak",
            }));
            grants.push(ModelGrant {
                id,
                principal: principal(i),
                scope: workspace(ws),
                not_before,
                expires_at,
            });
        }
    }
    let doc = json!({"revision": revision, "generated_at": now.to_string(), "grants": docs});
    (doc, grants)
}

/// One answer as the client saw it.
#[derive(Debug)]
struct Answer {
    decision_id: String,
    principal: String,
    scope: String,
    decision: String,
    grants: BTreeSet<String>,
    valid_until: Option<Timestamp>,
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16, feed: &Path) -> Server {
    let root = repo_root();
    let child = Command::new(env!("CARGO_BIN_EXE_elevate"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--policies")
        .arg(root.join("policies"))
        .arg("--schema")
        .arg(root.join("schema/elevate.cedarschema"))
        .arg("--entities")
        .arg(root.join("deploy/local/entities.json"))
        .arg("--grants")
        .arg(feed)
        .arg("--decision-log")
        .arg("-")
        .arg("--debounce-ms")
        .arg("20")
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    Server(child)
}

async fn wait_ready(client: &reqwest::Client, base: &str, server: &mut Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return;
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the server exited before it was ready"
        );
        assert!(Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks for one decision; what the server answered, with what was asked.
async fn ask(client: &reqwest::Client, base: &str, rng_value: u64) -> Answer {
    let who = principal(rng_value % PRINCIPALS);
    let (ws, pm) = SCOPES[usize::try_from((rng_value / PRINCIPALS) % 2).unwrap()];
    let body = json!({
        "principal": who,
        "action": "Action::\"createPaymentMethod\"",
        "resource": format!("PaymentMethod::\"{pm}\""),
    });
    let response = client
        .post(format!("{base}/v1/is_authorized"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "a decision failed"
    );
    let answer: Value = response.json().await.unwrap();
    Answer {
        decision_id: answer["decision_id"].as_str().unwrap().to_owned(),
        principal: who,
        scope: workspace(ws),
        decision: answer["decision"].as_str().unwrap().to_owned(),
        grants: answer["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect(),
        valid_until: answer["valid_until"].as_str().map(|t| t.parse().unwrap()),
    }
}

/// Checks one answer against its decision record and the model; the failure text, if any.
fn check(answer: &Answer, record: &Value, model: &Model) -> Result<(), String> {
    let at: Timestamp = record["time"].as_str().unwrap().parse().unwrap();
    let revision = record["revisions"]["grants"]
        .as_str()
        .ok_or_else(|| format!("{}: the record names no feed revision", answer.decision_id))?;
    let grants = model.get(revision).ok_or_else(|| {
        format!(
            "{}: revision `{revision}` was never written",
            answer.decision_id
        )
    })?;
    let in_force: Vec<&ModelGrant> = grants
        .iter()
        .filter(|g| g.principal == answer.principal && g.scope == answer.scope && g.in_force(at))
        .collect();
    let expected_ids: BTreeSet<String> = in_force.iter().map(|g| g.id.clone()).collect();
    let expected = if in_force.is_empty() { "Deny" } else { "Allow" };
    let context = || {
        format!(
            "{} at {at} on revision {revision} for {} in {}",
            answer.decision_id, answer.principal, answer.scope
        )
    };
    if answer.decision != expected || record["decision"] != expected {
        return Err(format!(
            "{}: answered {}, recorded {}, the model says {expected} (in force: {expected_ids:?})",
            context(),
            answer.decision,
            record["decision"]
        ));
    }
    if answer.grants != expected_ids {
        return Err(format!(
            "{}: grants {:?}, the model says {expected_ids:?}",
            context(),
            answer.grants
        ));
    }
    let expected_until = in_force.iter().map(|g| g.expires_at).max();
    if answer.valid_until != expected_until {
        return Err(format!(
            "{}: valid_until {:?}, the model says {expected_until:?}",
            context(),
            answer.valid_until
        ));
    }
    Ok(())
}

/// Answers and decision records meet here in whatever order they arrive; each pair is
/// checked at once and dropped, so a long soak holds only the few unmatched ones.
#[derive(Default)]
struct Join {
    answers: HashMap<String, Answer>,
    records: HashMap<String, Value>,
    allows: usize,
    denies: usize,
    failed: usize,
    /// The first few failures, for the report.
    failures: Vec<String>,
}

impl Join {
    fn answer(&mut self, answer: Answer, model: &Mutex<Model>) {
        match self.records.remove(&answer.decision_id) {
            Some(record) => self.pair(&answer, &record, model),
            None => {
                self.answers.insert(answer.decision_id.clone(), answer);
            }
        }
    }

    fn record(&mut self, record: Value, model: &Mutex<Model>) {
        let id = record["decision_id"].as_str().unwrap().to_owned();
        match self.answers.remove(&id) {
            Some(answer) => self.pair(&answer, &record, model),
            None => {
                self.records.insert(id, record);
            }
        }
    }

    fn pair(&mut self, answer: &Answer, record: &Value, model: &Mutex<Model>) {
        match check(answer, record, &model.lock().unwrap()) {
            Ok(()) if answer.decision == "Allow" => self.allows += 1,
            Ok(()) => self.denies += 1,
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, failure: String) {
        self.failed += 1;
        if self.failures.len() < 10 {
            self.failures.push(failure);
        }
    }
}

fn soak_secs() -> u64 {
    std::env::var("ELEVATE_SOAK_SECS").ok().map_or(60, |s| {
        s.parse().expect("ELEVATE_SOAK_SECS: a number of seconds")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_load_with_grant_churn_never_contradicts_the_grant_windows() {
    let secs = soak_secs();
    let seed = std::env::var("ELEVATE_SOAK_SEED").ok().map_or_else(
        || Timestamp::now().as_nanosecond().unsigned_abs() as u64,
        |s| s.parse().unwrap(),
    );
    println!("soak: {secs} s, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let feed_path = dir.path().join("feed").join("grants.json");

    let model: Arc<Mutex<Model>> = Arc::default();
    let mut rng = Rng(seed);
    let (doc, grants) = make_feed("0", &mut rng);
    model.lock().unwrap().insert("0".to_owned(), grants);
    write_atomic(&feed_path, &doc.to_string());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(dir.path(), port, &feed_path);
    let pid = server.0.id();
    let join: Arc<Mutex<Join>> = Arc::default();
    // The decision log arrives on the server's stdout, so a long run needs no disk.
    let reader = {
        let stdout = server.0.stdout.take().unwrap();
        let (join, model) = (Arc::clone(&join), Arc::clone(&model));
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut records = 0usize;
            for line in std::io::BufReader::new(stdout).lines() {
                let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
                join.lock().unwrap().record(record, &model);
                records += 1;
            }
            records
        })
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&client, &base, &mut server).await;

    let stop = Arc::new(AtomicBool::new(false));
    // The churn: a new feed every second. The model learns a revision before the
    // file is renamed into place, so no record can name one it does not know.
    let churn = {
        let (model, stop, feed_path) = (Arc::clone(&model), Arc::clone(&stop), feed_path.clone());
        std::thread::spawn(move || {
            // Paced by the start, not by sleeping a second after each write, so a busy
            // machine does not stretch the churn.
            let began = Instant::now();
            let mut revision = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = began + Duration::from_secs(revision + 1);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                revision += 1;
                let name = revision.to_string();
                let (doc, grants) = make_feed(&name, &mut rng);
                model.lock().unwrap().insert(name, grants);
                write_atomic(&feed_path, &doc.to_string());
            }
            revision
        })
    };
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (client, base, stop) = (client.clone(), base.clone(), Arc::clone(&stop));
        let (join, model) = (Arc::clone(&join), Arc::clone(&model));
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
            let mut answers = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let answer = ask(&client, &base, rng.next()).await;
                join.lock().unwrap().answer(answer, &model);
                answers += 1;
            }
            answers
        }));
    }

    // Samples after a warm-up tenth; the first third of them is the baseline.
    let started = Instant::now();
    let total = Duration::from_secs(secs);
    let mut samples: Vec<(u64, usize)> = Vec::new();
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(server.0.try_wait().unwrap().is_none(), "the server died");
        if started.elapsed() > total / 10 {
            samples.push((proc_status(pid, "VmRSS:"), open_fds(pid)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let revisions = churn.join().unwrap();
    let mut answers = 0usize;
    for c in clients {
        answers += c.await.unwrap();
    }
    // SIGTERM drains the decision log before the process exits.
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = server.0.wait().unwrap();
    assert!(status.success(), "the server exited with {status}");

    let records = reader.join().unwrap();
    let mut join = join.lock().unwrap();
    let unmatched: Vec<String> = join.answers.keys().take(10).cloned().collect();
    for id in unmatched {
        join.fail(format!("{id}: no decision record"));
    }
    join.failed += join.answers.len().saturating_sub(10);
    let (allows, denies, failed) = (join.allows, join.denies, join.failed);
    let third = samples.len() / 3;
    let base_rss = samples[..third.max(1)].iter().map(|s| s.0).max().unwrap();
    let end_rss = samples[samples.len() - third.max(1)..]
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap();
    let base_fds = samples[..third.max(1)].iter().map(|s| s.1).max().unwrap();
    let end_fds = samples[samples.len() - third.max(1)..]
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap();
    println!(
        "soak: {answers} answers ({allows} allow, {denies} deny), {records} records, over \
         {revisions} feed revisions, {:.0} decisions/s; RSS {base_rss} kB -> {end_rss} kB; \
         fds {base_fds} -> {end_fds}; {failed} contradictions",
        answers as f64 / secs as f64,
    );
    assert_eq!(
        failed,
        0,
        "{failed} of {answers} answers contradict the model, e.g.:\n{}",
        join.failures.join("\n")
    );
    assert_eq!(records, answers, "every decision has exactly one record");
    // Both kinds of answer must be common, or the soak proved little.
    assert!(
        allows * 10 > answers && denies * 10 > answers,
        "{allows} allows, {denies} denies"
    );
    // Churn must really have happened: nine feeds in ten seconds at the least.
    assert!(
        revisions * 10 >= secs * 9,
        "only {revisions} feed revisions in {secs} s"
    );
    // Flat: the last third's peak within a quarter (plus 8 MB of slack) of the first
    // third's; descriptors within the client pool's reconnects.
    assert!(
        end_rss <= base_rss + base_rss / 4 + 8 * 1024,
        "RSS grew from {base_rss} kB to {end_rss} kB"
    );
    assert!(
        end_fds <= base_fds + 4,
        "open descriptors grew from {base_fds} to {end_fds}"
    );
}

/// The checker itself: an answer one nanosecond past a grant's end that still allows,
/// a deny inside the window, wrong grants and a wrong `valid_until` are all caught.
#[test]
fn the_checker_catches_answers_outside_the_window() {
    let t0: Timestamp = "2026-12-03T18:00:00Z".parse().unwrap();
    let end = t0.checked_add(SignedDuration::from_secs(2)).unwrap();
    let grant = ModelGrant {
        id: "g-1".into(),
        principal: principal(1),
        scope: workspace("ws-1"),
        not_before: t0,
        expires_at: end,
    };
    let model: Model = HashMap::from([("7".to_owned(), vec![grant])]);
    let answer = |decision: &str, grants: &[&str], until: Option<Timestamp>| Answer {
        decision_id: "d-1".into(),
        principal: principal(1),
        scope: workspace("ws-1"),
        decision: decision.into(),
        grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        valid_until: until,
    };
    let record = |at: Timestamp, decision: &str| json!({"time": at.to_string(), "decision": decision, "revisions": {"grants": "7"}});
    let last_ns = end.checked_sub(SignedDuration::from_nanos(1)).unwrap();
    let allow = answer("Allow", &["g-1"], Some(end));
    assert_eq!(check(&allow, &record(t0, "Allow"), &model), Ok(()));
    assert_eq!(check(&allow, &record(last_ns, "Allow"), &model), Ok(()));
    assert!(check(&allow, &record(end, "Allow"), &model).is_err());
    let before = t0.checked_sub(SignedDuration::from_nanos(1)).unwrap();
    assert!(check(&allow, &record(before, "Allow"), &model).is_err());
    let deny = answer("Deny", &[], None);
    assert_eq!(check(&deny, &record(end, "Deny"), &model), Ok(()));
    assert!(check(&deny, &record(t0, "Deny"), &model).is_err());
    assert!(
        check(
            &answer("Allow", &["g-2"], Some(end)),
            &record(t0, "Allow"),
            &model
        )
        .is_err()
    );
    assert!(
        check(
            &answer("Allow", &["g-1"], None),
            &record(t0, "Allow"),
            &model
        )
        .is_err()
    );
    let unknown =
        json!({"time": t0.to_string(), "decision": "Allow", "revisions": {"grants": "8"}});
    assert!(check(&allow, &unknown, &model).is_err());
}
