//! Shared fixtures for unit tests: the shipped policies, schema and entities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::config::{Sources, Validation};
use crate::snapshot::{RawInputs, Snapshot};

pub fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shipped inputs with `feed` (a JSON feed document) as the grant feed.
pub fn shipped_with_feed(feed: &str) -> Snapshot {
    let sources = Sources {
        policies: repo("policies"),
        schema: Some(repo("schema/elevate.cedarschema")),
        entities: Some(repo("deploy/local/entities.json")),
        grants: None,
        validation: Validation::Strict,
    };
    let mut raw = RawInputs::load(&sources).unwrap();
    raw.feed = Some(crate::feed::parse_document(feed.as_bytes()).unwrap());
    Snapshot::build(&raw, Validation::Strict).unwrap()
}

/// A feed document holding `grants` (JSON objects).
pub fn feed_of(grants: &[serde_json::Value]) -> String {
    serde_json::json!({"revision": "t", "grants": grants}).to_string()
}

/// A grant object; windows as RFC 3339 strings.
pub fn grant(
    id: &str,
    principal: &str,
    role: &str,
    scope: &str,
    from: &str,
    until: &str,
) -> serde_json::Value {
    serde_json::json!({
        "id": id, "principal": principal, "role": role, "scope": scope,
        "not_before": from, "expires_at": until, "ticket": "T-1",
    })
}

/// The shipped inputs with an empty feed, built once per test binary.
pub fn shipped() -> &'static Snapshot {
    static SHIPPED: std::sync::LazyLock<Snapshot> =
        std::sync::LazyLock::new(|| shipped_with_feed(r#"{"revision":"0","grants":[]}"#));
    &SHIPPED
}
