//! Writes the load benchmark's seeded fixture files into a directory, with the same
//! generator as the criterion bench (`benches/support`):
//!
//! * `entities.json`: the organization, its workspaces, projects, payment methods,
//!   API keys and users;
//! * `grants-N.json` for each requested N: a feed of N grants, all in force now (the
//!   target user's FinOpsManager grant first);
//! * `grants-N-alt.json` for each N > 0: the same feed shifted one second earlier with
//!   another revision, so alternating the two makes every replacement a real change.
//!
//! Run: `cargo run --release --example gen_fixtures -- DIR [N ...]` (default N: 0 100000).
//! "Now" is the wall clock at generation (the server decides on the system clock);
//! `BENCH_NOW=2026-12-03T18:00:00Z` fixes it instead; `BENCH_USERS=N` sets the number
//! of users (default 2,000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    println!("{} ({} bytes)", path.display(), text.len());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gen_fixtures DIR [N ...]");
        std::process::exit(2);
    };
    let mut counts: Vec<usize> = args
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("not a grant count: {a}"))
        })
        .collect();
    if counts.is_empty() {
        counts = vec![0, 100_000];
    }
    let now: Timestamp = match std::env::var("BENCH_NOW") {
        Ok(s) => s.parse().expect("BENCH_NOW is a timestamp"),
        Err(_) => Timestamp::now(),
    };
    std::fs::create_dir_all(&dir).expect("create the fixture directory");
    write(&dir, "entities.json", &support::entities_json());
    for n in counts {
        let feed = support::feed_json(n, now);
        if n > 0 {
            check_target_grant(&feed, now);
        }
        write(&dir, &format!("grants-{n}.json"), &feed);
        if n > 0 {
            let alt = support::feed_json(n, now - SignedDuration::from_secs(1));
            let from = format!("\"revision\":\"bench-{n}\"");
            assert_eq!(alt.matches(&from).count(), 1, "one revision field");
            let alt = alt.replace(&from, &format!("\"revision\":\"bench-{n}-alt\""));
            write(&dir, &format!("grants-{n}-alt.json"), &alt);
        }
    }
}

/// The benchmarked grant must stay in force for the whole run (and its alternate too).
fn check_target_grant(feed: &str, now: Timestamp) {
    let doc: serde_json::Value = serde_json::from_str(feed).expect("feed is JSON");
    let target = &doc["grants"][0];
    assert_eq!(target["id"], support::TARGET_GRANT);
    let expires: Timestamp = target["expires_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("expires_at");
    let left = expires.duration_since(now);
    assert!(
        left >= SignedDuration::from_mins(20),
        "the target grant expires in {left:#}; the run needs at least 20 minutes"
    );
    println!(
        "target grant {} in force until {expires} ({left:#} from now)",
        support::TARGET_GRANT
    );
}
