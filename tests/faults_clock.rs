//! The wall clock stepping backwards and forwards under a running sidecar (through the
//! injectable clock, on a real socket): at every instant the clock shows, each grant
//! allows exactly when `not_before <= now < expires_at`, whatever the clock showed at
//! the last reload. A random walk of jumps, small steps and landings on either side of
//! every boundary, with the feed replaced along the way, checked against a model.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use elevate::config::{Config, DecisionLog, HttpConfig, ReloadConfig, Sources, Validation};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::{SteppedClock, grant_between, repo_root, write_json};
use tokio_util::sync::CancellationToken;

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "frank"];
const PAYMENT_METHODS: [&str; 2] = ["pm-1", "pm-2"];
const WORKSPACES: [&str; 2] = ["ws-1", "ws-2"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[-span, span]` nanoseconds.
    fn offset(&mut self, span: SignedDuration) -> SignedDuration {
        let span = span.as_nanos();
        let width = u64::try_from(2 * span + 1).unwrap_or(u64::MAX);
        SignedDuration::from_nanos(
            i64::try_from(self.below(width)).unwrap() - i64::try_from(span).unwrap(),
        )
    }
}

/// One grant per (user, workspace): `g-REV-USER-WS`, a window of 1 s to 4 h
/// somewhere in `t0 ± 6h`.
fn windows(
    rng: &mut Rng,
    t0: Timestamp,
    revision: u32,
) -> Vec<(String, String, usize, Timestamp, Timestamp)> {
    let mut out = Vec::new();
    for user in USERS {
        for (w, ws) in WORKSPACES.iter().enumerate() {
            let start = t0 + rng.offset(SignedDuration::from_hours(6));
            let length = SignedDuration::from_secs(1 + i64::try_from(rng.below(4 * 3600)).unwrap());
            out.push((
                format!("g-{revision}-{user}-{ws}"),
                user.to_owned(),
                w,
                start,
                start + length,
            ));
        }
    }
    out
}

fn write_feed(
    path: &Path,
    revision: u32,
    grants: &[(String, String, usize, Timestamp, Timestamp)],
) {
    let docs: Vec<Value> = grants
        .iter()
        .map(|(id, user, w, from, until)| {
            grant_between(
                id,
                &format!("User::\"{user}\""),
                "FinOpsManager",
                &format!("Workspace::\"{}\"", WORKSPACES[*w]),
                *from,
                *until,
            )
        })
        .collect();
    let doc = json!({"revision": revision.to_string(), "generated_at": Timestamp::now().to_string(),
                     "grants": docs});
    let tmp = path.with_file_name(".grants.tmp");
    write_json(&tmp, &doc);
    std::fs::rename(&tmp, path).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_grant_is_in_force_outside_its_window_as_the_clock_steps_back_and_forth() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("clock walk seed {seed}");
    let mut rng = Rng(seed);
    let t0: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
    let clock = SteppedClock::at(t0);

    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    copy_dir(&root.join("policies"), &dir.path().join("policies"));
    let schema = dir.path().join("elevate.cedarschema");
    std::fs::copy(root.join("schema/elevate.cedarschema"), &schema).unwrap();
    let entities = dir.path().join("entities.json");
    std::fs::copy(root.join("deploy/local/entities.json"), &entities).unwrap();
    std::fs::create_dir(dir.path().join("feed")).unwrap();
    let feed = dir.path().join("feed/grants.json");
    let mut revision = 1;
    let mut grants = windows(&mut rng, t0, revision);
    write_feed(&feed, revision, &grants);

    let config = Config {
        sources: Sources {
            policies: dir.path().join("policies"),
            schema: Some(schema),
            entities: Some(entities),
            grants: Some(feed.clone()),
            validation: Validation::Strict,
        },
        reload: ReloadConfig {
            debounce: Duration::from_millis(20),
            rescan: Duration::from_millis(200),
            ..ReloadConfig::default()
        },
        http: HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..HttpConfig::default()
        },
        decision_log: DecisionLog::Off,
        decision_queue: 1024,
        shutdown_grace: Duration::from_secs(2),
        workflow: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = elevate::cli::serve::start(
        config,
        listener,
        clock.as_clock(),
        prometheus::Registry::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let base = format!("http://{}", running.addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let requests: Vec<Value> = USERS
        .iter()
        .flat_map(|user| {
            PAYMENT_METHODS.iter().map(move |pm| {
                json!({"principal": format!("User::\"{user}\""),
                       "action": "Action::\"createPaymentMethod\"",
                       "resource": format!("PaymentMethod::\"{pm}\"")})
            })
        })
        .collect();
    let (mut checked, mut allows, mut backwards) = (0u64, 0u64, 0u64);
    for step in 0..600 {
        if step % 150 == 149 {
            // A new feed while the clock is wherever the walk left it.
            revision += 1;
            grants = windows(&mut rng, t0, revision);
            write_feed(&feed, revision, &grants);
            let want = revision.to_string();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let status: Value = client
                    .get(format!("{base}/v1/status"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if status["revisions"]["grants"].as_str() == Some(want.as_str()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "revision {revision} never loaded: {status}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let before = clock.now();
        let now = match rng.below(4) {
            // Anywhere in the day, either direction.
            0 => t0 + rng.offset(SignedDuration::from_hours(7)),
            // A small step, either direction.
            1 => before + rng.offset(SignedDuration::from_mins(10)),
            // On a boundary or a hair either side of it.
            _ => {
                let g = &grants[usize::try_from(rng.below(grants.len() as u64)).unwrap()];
                let edge = if rng.below(2) == 0 { g.3 } else { g.4 };
                let hair = [
                    0,
                    1,
                    -1,
                    1_000_000,
                    -1_000_000,
                    1_000_000_000,
                    -1_000_000_000,
                ];
                edge + SignedDuration::from_nanos(hair[usize::try_from(rng.below(7)).unwrap()])
            }
        };
        if now < before {
            backwards += 1;
        }
        clock.set(now);
        let answer: Value = client
            .post(format!("{base}/v1/batch_is_authorized"))
            .json(&json!({"requests": requests}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let results = answer["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"));
        for (i, result) in results.iter().enumerate() {
            let (user, w) = (USERS[i / 2], i % 2);
            let g = grants.iter().find(|g| g.1 == user && g.2 == w).unwrap();
            let in_force = g.3 <= now && now < g.4;
            let decision = result["decision"].as_str().unwrap();
            assert_eq!(
                decision == "Allow",
                in_force,
                "step {step} (seed {seed}): {user} on {} at {now}, window [{}, {}): {result}",
                WORKSPACES[w],
                g.3,
                g.4
            );
            if in_force {
                allows += 1;
                assert_eq!(result["grants"], json!([g.0]), "{result}");
                assert_eq!(result["valid_until"], json!(g.4.to_string()), "{result}");
            }
            checked += 1;
        }
    }
    eprintln!(
        "{checked} decisions checked against the model ({allows} allows), 600 clock steps, \
         {backwards} of them backwards, 4 feeds"
    );
    assert!(
        allows > 0 && allows < checked,
        "the walk never crossed a window edge"
    );
    assert!(backwards > 100);
    running.stop().await.unwrap();
}
