//! Times one reload of a big grant feed, phase by phase, without a server: reading the
//! file, `feed::parse_document`, `GrantIndex::build` against the live bundle, freeing
//! the old index, and a whole `Store::reload` (policies and entities unchanged) that
//! swaps between the two fixture feeds as `bench/load.sh` does.
//!
//! Run: `BENCH_USERS=2000 cargo run --release --example gen_fixtures -- /tmp/rl 100000`,
//! then `cargo run --release --example reload_probe -- /tmp/rl [ROUNDS]`. It writes
//! `/tmp/rl/probe/grants.json` (a copy it replaces by rename). `PROBE_PHASES=0` skips
//! the phase timings (for `perf record` of whole reloads only).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use elevate::feed::{GrantIndex, parse_document};

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    // CLK_TCK is 100 on Linux.
    ticks / 100.0
}

fn replace(src: &Path, live: &Path) {
    let next = live.with_extension("next");
    std::fs::copy(src, &next).unwrap();
    std::fs::rename(&next, live).unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: reload_probe FIXTURE_DIR [ROUNDS] (from examples/gen_fixtures)");
        std::process::exit(2);
    };
    let rounds: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("ROUNDS is a number"));
    let feeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("grants-") && n != "grants-0.json")
        })
        .collect();
    let mut feeds = feeds;
    feeds.sort();
    let (a, b) = match feeds.as_slice() {
        [a, b, ..] => (a.clone(), b.clone()),
        _ => panic!(
            "{} has no grants-N.json and grants-N-alt.json",
            dir.display()
        ),
    };
    let probe = dir.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let live = probe.join("grants.json");
    replace(&a, &live);

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = elevate::config::Sources {
        policies: root.join("policies"),
        schema: Some(root.join("schema/elevate.cedarschema")),
        entities: Some(dir.join("entities.json")),
        grants: Some(live.clone()),
        validation: elevate::config::Validation::Strict,
    };
    let metrics = Arc::new(elevate::metrics::Metrics::new(prometheus::Registry::new()).unwrap());
    let store = elevate::snapshot::Store::load(sources, metrics, jiff::Timestamp::now()).unwrap();
    let n = store.current().grants.len() + store.current().grants.rejected.len();
    println!("feeds {} and {}: {n} grants", a.display(), b.display());

    if std::env::var("PROBE_PHASES").as_deref() != Ok("0") {
        let bundle = Arc::clone(&store.current().bundle);
        for (round, path) in [&a, &b].into_iter().cycle().take(rounds).enumerate() {
            let t0 = Instant::now();
            let bytes = std::fs::read(path).unwrap();
            let t1 = Instant::now();
            let doc = parse_document(&bytes).unwrap();
            let t2 = Instant::now();
            let index = GrantIndex::build(&doc, &bundle);
            let t3 = Instant::now();
            drop(index);
            drop(doc);
            let t4 = Instant::now();
            let ms = |x: Instant, y: Instant| (y - x).as_secs_f64() * 1e3;
            println!(
                "phases #{round}: read {:.1} ms, parse_document {:.1} ms, GrantIndex::build {:.1} ms, drop {:.1} ms",
                ms(t0, t1),
                ms(t1, t2),
                ms(t2, t3),
                ms(t3, t4)
            );
        }
    }

    let mut total_cpu = 0.0;
    for (round, path) in [&b, &a].into_iter().cycle().take(rounds).enumerate() {
        replace(path, &live);
        let generation = store.current().generation;
        let c0 = cpu_s();
        let t0 = Instant::now();
        let swapped = store.reload(jiff::Timestamp::now());
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_s() - c0;
        assert!(
            swapped && store.current().generation == generation + 1,
            "reload did not swap"
        );
        total_cpu += cpu;
        println!(
            "reload #{round}: wall {:.1} ms, CPU {:.2} s, {:.0} grants/s (wall)",
            wall * 1e3,
            cpu,
            n as f64 / wall
        );
    }
    println!(
        "mean reload CPU {:.3} s = {:.0} grants/s over {rounds} reloads",
        total_cpu / rounds as f64,
        n as f64 * rounds as f64 / total_cpu.max(1e-9)
    );
}
