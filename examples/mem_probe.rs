//! Prints the resident memory a snapshot costs: the process's RSS after reading the
//! inputs, after building the snapshot (shipped policies and schema, the given entities
//! and feed), and with a second one beside it, as during a reload.
//!
//! Run: `cargo run --release --example gen_fixtures -- /tmp/fx 100000`, then
//! `cargo run --release --example mem_probe -- /tmp/fx/entities.json /tmp/fx/grants-100000.json`.
//! `BENCH_USERS=100000` before `gen_fixtures` makes the entity file 100,000 users.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(entities), Some(feed)) = (args.next(), args.next()) else {
        eprintln!("usage: mem_probe ENTITIES.json FEED.json (from examples/gen_fixtures)");
        std::process::exit(2);
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("start: {:.1} MB", rss_mb());
    let sources = elevate::config::Sources {
        policies: root.join("policies"),
        schema: Some(root.join("schema/elevate.cedarschema")),
        entities: Some(entities.into()),
        grants: Some(feed.into()),
        validation: elevate::config::Validation::Strict,
    };
    let raw = elevate::snapshot::RawInputs::load(&sources).unwrap();
    println!("raw inputs (feed parsed): {:.1} MB", rss_mb());
    let snapshot = elevate::snapshot::Snapshot::build(&raw, sources.validation).unwrap();
    println!(
        "+ snapshot with {} grants, {} entities: {:.1} MB",
        snapshot.grants.len(),
        snapshot.store.len(),
        rss_mb()
    );
    drop(raw);
    println!("raw inputs dropped: {:.1} MB", rss_mb());
    let raw = elevate::snapshot::RawInputs::load(&sources).unwrap();
    let second = elevate::snapshot::Snapshot::build(&raw, sources.validation).unwrap();
    drop(raw);
    println!("a second snapshot beside it (a reload): {:.1} MB", rss_mb());
    drop(snapshot);
    drop(second);
    println!("both dropped: {:.1} MB", rss_mb());
}
