//! The fuzz targets on stable: every target over every file of its seed corpus
//! (`fuzz/corpus/<target>/`, which holds the regression inputs too), and over
//! proptest-generated inputs: arbitrary bytes, byte-level mutations of the seeds, and
//! structure-aware ones (JSON values and TOML/header lines edited, seeds spliced).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use elevate::fuzzing::{self, TARGETS};
use proptest::prelude::*;
use serde_json::Value;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    std::fs::read(corpus_dir(target).join(name))
        .unwrap_or_else(|e| panic!("seed `{target}/{name}`: {e}"))
}

/// Every seed, by target index.
static SEEDS: LazyLock<Vec<Vec<Vec<u8>>>> = LazyLock::new(|| {
    TARGETS
        .iter()
        .map(|(name, _)| {
            let dir = corpus_dir(name);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("seed corpus `{}`: {e}", dir.display()))
                .map(|entry| entry.unwrap().path())
                .collect();
            files.sort();
            files.iter().map(|f| std::fs::read(f).unwrap()).collect()
        })
        .collect()
});

#[test]
fn every_target_has_a_fuzz_binary_and_a_small_seed_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for (index, (name, _)) in TARGETS.iter().enumerate() {
        let body = std::fs::read_to_string(fuzz.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz target `{name}`: {e}"));
        assert!(
            body.contains(&format!("elevate::fuzzing::{name}(")),
            "fuzz target `{name}` does not call its crate function"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no bin `{name}`"
        );
        let seeds = &SEEDS[index];
        assert!(!seeds.is_empty(), "target `{name}` has no seeds");
        let total: usize = seeds.iter().map(Vec::len).sum();
        assert!(
            total < 64 * 1024,
            "the `{name}` corpus is {total} bytes; keep it small"
        );
    }
}

#[test]
fn every_target_survives_its_seed_corpus() {
    for (index, (_, target)) in TARGETS.iter().enumerate() {
        for bytes in &SEEDS[index] {
            target(bytes);
        }
    }
}

#[test]
fn every_target_survives_every_other_targets_seeds() {
    let all: Vec<&Vec<u8>> = SEEDS.iter().flatten().collect();
    for (_, target) in TARGETS {
        for bytes in &all {
            target(bytes);
        }
    }
}

/// The seeds reach the deep end of their targets: if they bounced off a parser, the
/// fuzzer would start from nothing and these checks would pass vacuously.
#[test]
fn seeds_reach_the_decision_path() {
    assert_eq!(
        fuzzing::forward_auth_status(&seed("forward_auth", "nginx_allow.txt")),
        Some(200)
    );
    assert_eq!(
        fuzzing::forward_auth_status(&seed("forward_auth", "caddy.txt")),
        Some(403)
    );
    assert_eq!(
        fuzzing::forward_auth_status(&seed("forward_auth", "no_principal.txt")),
        Some(401)
    );
    assert_eq!(
        fuzzing::forward_auth_status(&seed("forward_auth", "unsafe_path.txt")),
        Some(403)
    );
    // google.rpc.Code: 0 OK, 7 PERMISSION_DENIED, 16 UNAUTHENTICATED.
    assert_eq!(
        fuzzing::envoy_check_code(&seed("envoy_check", "allow.bin")),
        Some(0)
    );
    assert_eq!(
        fuzzing::envoy_check_code(&seed("envoy_check", "deny-raw-headers.bin")),
        Some(7)
    );
    assert_eq!(
        fuzzing::envoy_check_code(&seed("envoy_check", "no-principal.bin")),
        Some(16)
    );
    assert_eq!(
        fuzzing::request_decision(&seed("request", "alice_payment.json")),
        Some(true)
    );
    assert_eq!(
        fuzzing::request_decision(&seed("request", "object_uids.json")),
        Some(true)
    );
    let log = seed("eventlog", "workflow.jsonl");
    let parsed = elevate::eventlog::parse(&log).unwrap();
    assert_eq!(parsed.events.len(), 4);
    assert!(parsed.tail.is_none());
}

/// Strings that tend to break parsers of UIDs, paths, timestamps and escapes.
const NASTY: &[&str] = &[
    "",
    "\"",
    "\\",
    "\u{0}",
    "::",
    "User::\"",
    "User::\"a\\\"b\"",
    "%2F",
    "%",
    "%ff",
    "/..",
    "//",
    "{x}",
    "{",
    "-009999-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "2026-12-03T18:00:00+14:00",
    "PT4H",
    "18446744073709551616",
    "-1",
    "1e400",
    "\u{202e}",
    "é",
    "__entity",
    "__extn",
];

fn nasty_value(pick: usize, number: i64) -> Value {
    match pick % 5 {
        0 => Value::from(number),
        1 => Value::from(u64::MAX),
        2 => Value::Null,
        3 => serde_json::json!({"__entity": {"type": "User", "id": NASTY[pick % NASTY.len()]}}),
        _ => Value::String(NASTY[pick % NASTY.len()].to_owned()),
    }
}

/// Replaces the `nth` node of `value` (depth first) with `replacement`, or removes
/// the key or element holding it when `remove`.
fn edit_nth(value: &mut Value, nth: &mut usize, replacement: &Value, remove: bool) -> bool {
    if *nth == 0 {
        *value = replacement.clone();
        return true;
    }
    *nth -= 1;
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if remove && *nth == 0 {
                    map.remove(&key);
                    return true;
                }
                if edit_nth(map.get_mut(&key).unwrap(), nth, replacement, remove) {
                    return true;
                }
            }
            false
        }
        Value::Array(items) => {
            for i in 0..items.len() {
                if remove && *nth == 0 {
                    let copy = items[i].clone();
                    // Duplicating an element is as telling as removing it (ids!).
                    items.insert(i, copy);
                    return true;
                }
                if edit_nth(&mut items[i], nth, replacement, remove) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}

/// A structure-aware mutation: JSON seeds get a node replaced, removed or
/// duplicated; text seeds get a line replaced, dropped or repeated, or a nasty string
/// spliced into a line.
fn mutate(bytes: &[u8], other: &[u8], at: usize, pick: usize, number: i64) -> Vec<u8> {
    if let Ok(mut value) = serde_json::from_slice::<Value>(bytes) {
        let mut nth = at % 64;
        edit_nth(
            &mut value,
            &mut nth,
            &nasty_value(pick, number),
            pick.is_multiple_of(3),
        );
        return value.to_string().into_bytes();
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let other_lines: Vec<&str> = std::str::from_utf8(other).unwrap_or("").lines().collect();
        if !lines.is_empty() {
            let i = at % lines.len();
            match pick % 4 {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let copy = lines[i].clone();
                    lines.insert(i, copy);
                }
                2 if !other_lines.is_empty() => {
                    lines[i] = other_lines[pick % other_lines.len()].to_owned();
                }
                _ => {
                    let line = &lines[i];
                    let cut = line
                        .char_indices()
                        .map(|(k, _)| k)
                        .nth(pick % (line.chars().count() + 1))
                        .unwrap_or(line.len());
                    lines[i] = format!(
                        "{}{}{}",
                        &line[..cut],
                        NASTY[pick % NASTY.len()],
                        &line[cut..]
                    );
                }
            }
        }
        return lines.join("\n").into_bytes();
    }
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let i = at % out.len();
        out[i] = out[i].wrapping_add(u8::try_from(pick % 256).unwrap());
    }
    out
}

fn target_and_seed() -> impl Strategy<Value = (usize, usize, usize)> {
    (0..TARGETS.len()).prop_flat_map(|t| {
        let n = SEEDS[t].len();
        (Just(t), 0..n, 0..n)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn targets_survive_structure_aware_mutations_of_their_seeds(
        (t, s, o) in target_and_seed(),
        rounds in proptest::collection::vec((0usize..4096, 0usize..4096, any::<i64>()), 1..4),
    ) {
        let mut bytes = SEEDS[t][s].clone();
        for (at, pick, number) in rounds {
            bytes = mutate(&bytes, &SEEDS[t][o], at, pick, number);
        }
        (TARGETS[t].1)(&bytes);
    }

    #[test]
    fn targets_survive_byte_mutations_of_their_seeds(
        (t, s, _) in target_and_seed(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut bytes = SEEDS[t][s].clone();
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        let keep = cut.index(bytes.len() + 1);
        bytes.truncate(keep);
        (TARGETS[t].1)(&bytes);
    }

    #[test]
    fn targets_survive_arbitrary_bytes(
        t in 0..TARGETS.len(),
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        (TARGETS[t].1)(&bytes);
    }
}

/// Found by `cargo fuzz run feed` (the input is in the corpus too): a grant id with a
/// quote (`g-e'pired-dave`) came back escaped (`g-e\'pired-dave`) from `PolicyId`'s
/// `Display`, so ids were compared and reported in a form the feed never had.
#[test]
fn fuzz_feed_crash_grant_id_with_a_quote() {
    let bytes = seed("feed", "crash-grant-id-quote.json");
    fuzzing::feed(&bytes);
    let doc = elevate::feed::parse_document(&bytes).unwrap();
    let quoted = doc.grants.iter().find_map(|entry| match entry {
        elevate::feed::Entry::Parsed(g) if elevate::feed::raw_id(&g.id).contains('\'') => {
            Some(elevate::feed::raw_id(&g.id).to_owned())
        }
        _ => None,
    });
    assert_eq!(quoted.as_deref(), Some("g-e'pired-dave"));
}

/// Found by `cargo fuzz run feed`, reduced by hand: a malformed grant `g'1` claimed
/// its id as written, the valid copy after it was checked as `g\'1` and slipped in.
#[test]
fn fuzz_feed_regression_rejected_quoted_id_is_still_claimed() {
    let bytes = seed("feed", "regression-rejected-quoted-id.json");
    fuzzing::feed(&bytes);
    fuzzing::signed_feed(&bytes);
}
