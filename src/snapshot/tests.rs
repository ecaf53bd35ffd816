#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::metrics::Metrics;

const POLICIES: &str = r#"@id("read") permit(principal, action == Action::"read", resource) when { principal.level > 0 };"#;
const SCHEMA_V1: &str = "entity User { level: Long }; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };";
const SCHEMA_V2: &str = "entity User { level: Long, team: String }; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };";
const ENTITIES_V1: &str = r#"[{"uid":{"type":"User","id":"u"},"attrs":{"level":1},"parents":[]}]"#;
const ENTITIES_V2: &str =
    r#"[{"uid":{"type":"User","id":"u"},"attrs":{"level":1,"team":"sre"},"parents":[]}]"#;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.cedar"), POLICIES).unwrap();
        std::fs::write(dir.path().join("s.cedarschema"), SCHEMA_V1).unwrap();
        std::fs::write(dir.path().join("e.json"), ENTITIES_V1).unwrap();
        std::fs::write(dir.path().join("g.json"), r#"{"revision":"1","grants":[]}"#).unwrap();
        let sources = Sources {
            policies: dir.path().join("p.cedar"),
            schema: Some(dir.path().join("s.cedarschema")),
            entities: Some(dir.path().join("e.json")),
            grants: Some(dir.path().join("g.json")),
            validation: Validation::Strict,
        };
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let store = Store::load(sources, Arc::clone(&metrics), Timestamp::now()).unwrap();
        Self {
            dir,
            store,
            metrics,
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn error_of(&self, input: Input) -> Option<String> {
        self.store
            .status()
            .into_iter()
            .find(|(i, _)| *i == input)
            .and_then(|(_, s)| s.last_error)
    }

    fn errors_counted(&self, input: &str) -> u64 {
        let text = self.metrics.encode();
        let needle = format!("elevate_reload_total{{input=\"{input}\",outcome=\"error\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

#[test]
fn unchanged_inputs_do_not_make_a_new_generation() {
    let f = Fixture::new();
    assert!(!f.store.reload(Timestamp::now()));
    assert_eq!(f.store.current().generation, 1);
}

#[test]
fn a_schema_and_its_entities_can_change_one_after_the_other() {
    let f = Fixture::new();
    f.write("s.cedarschema", SCHEMA_V2);
    assert!(
        !f.store.reload(Timestamp::now()),
        "old entities do not conform to the new schema"
    );
    assert!(
        f.error_of(Input::Schema)
            .unwrap()
            .contains("no longer conform")
    );
    assert_eq!(f.store.current().generation, 1);
    f.write("e.json", ENTITIES_V2);
    assert!(
        f.store.reload(Timestamp::now()),
        "the pair now loads together"
    );
    let snap = f.store.current();
    assert_eq!(snap.generation, 2);
    assert_eq!(f.error_of(Input::Schema), None);
    assert_eq!(f.error_of(Input::Entities), None);
    assert_eq!(
        snap.revisions.schema,
        Some(hash_files(&[SourceFile {
            path: f.dir.path().join("s.cedarschema"),
            text: SCHEMA_V2.into(),
        }]))
    );
}

#[test]
fn the_same_bad_content_is_reported_once_and_recovery_clears_the_error() {
    let f = Fixture::new();
    f.write("g.json", "{not json");
    assert!(!f.store.reload(Timestamp::now()));
    assert!(!f.store.reload(Timestamp::now()));
    assert_eq!(f.errors_counted("grants"), 1);
    assert!(
        f.error_of(Input::Grants)
            .unwrap()
            .contains("not valid JSON")
    );
    // Back to the content that is live: no new snapshot, but no error either.
    f.write("g.json", r#"{"revision":"1","grants":[]}"#);
    assert!(!f.store.reload(Timestamp::now()));
    assert_eq!(f.error_of(Input::Grants), None);
}

#[test]
fn a_bad_input_does_not_hold_back_a_good_one_changed_with_it() {
    let f = Fixture::new();
    f.write("p.cedar", "permit(principal, action, resource");
    f.write("g.json", r#"{"revision":"2","grants":[]}"#);
    assert!(f.store.reload(Timestamp::now()));
    let snap = f.store.current();
    assert_eq!(snap.revisions.grants.as_deref(), Some("2"));
    assert_eq!(
        snap.bundle
            .statics
            .policies()
            .next()
            .unwrap()
            .id()
            .to_string(),
        "read"
    );
    assert!(f.error_of(Input::Policies).unwrap().contains("p.cedar:1:"));
}

#[test]
fn a_deleted_feed_keeps_the_last_good_grants() {
    let f = Fixture::new();
    std::fs::remove_file(f.dir.path().join("g.json")).unwrap();
    assert!(!f.store.reload(Timestamp::now()));
    assert!(f.error_of(Input::Grants).unwrap().contains("cannot read"));
    assert_eq!(f.store.current().revisions.grants.as_deref(), Some("1"));
}

#[test]
fn an_entities_file_that_is_not_utf8_or_gone_keeps_the_last_good_entities() {
    let f = Fixture::new();
    let revision = f.store.current().revisions.entities.clone();
    std::fs::write(f.dir.path().join("e.json"), b"[\xff\xfe]").unwrap();
    assert!(!f.store.reload(Timestamp::now()));
    let error = f.error_of(Input::Entities).unwrap();
    assert!(
        error.contains("e.json") && error.contains("UTF-8"),
        "{error}"
    );
    assert_eq!(f.errors_counted("entities"), 1);
    std::fs::remove_file(f.dir.path().join("e.json")).unwrap();
    assert!(!f.store.reload(Timestamp::now()));
    assert!(f.error_of(Input::Entities).unwrap().contains("e.json"));
    assert_eq!(f.store.current().revisions.entities, revision);
    assert_eq!(f.store.current().generation, 1);
    // Back as it was: the error clears and nothing is rebuilt.
    f.write("e.json", ENTITIES_V1);
    assert!(!f.store.reload(Timestamp::now()));
    assert_eq!(f.error_of(Input::Entities), None);
}

#[test]
fn the_entities_text_is_not_kept_but_a_policy_change_still_checks_the_entities() {
    let f = Fixture::new();
    let entities_revision = f.store.current().revisions.entities.clone();
    assert!(entities_revision.is_some());
    {
        let state = f.store.lock();
        let kept = state.last_good.entities.as_ref().unwrap();
        assert!(
            kept.text.is_empty(),
            "the store holds the entities, not the text"
        );
        assert_eq!(state.entities_revision, entities_revision);
    }
    // A policy change that needs an attribute the stored entities lack still loads
    // (Cedar checks attributes at evaluation), and is checked against them: the
    // store is rebuilt from the re-read file, under the same revision.
    f.write(
        "p.cedar",
        r#"@id("read") permit(principal, action == Action::"read", resource) when { principal.level > 1 };"#,
    );
    assert!(f.store.reload(Timestamp::now()));
    let snap = f.store.current();
    assert_eq!(snap.generation, 2);
    assert_eq!(snap.revisions.entities, entities_revision, "same entities");
    assert!(snap.store.contains(&r#"User::"u""#.parse().unwrap()));

    // A schema the entities do not satisfy is refused, though the entities file is
    // the same and its text was let go; so is one when the file cannot be read.
    f.write("s.cedarschema", SCHEMA_V2);
    assert!(!f.store.reload(Timestamp::now()));
    assert!(
        f.error_of(Input::Schema)
            .unwrap()
            .contains("no longer conform")
    );
    std::fs::remove_file(f.dir.path().join("e.json")).unwrap();
    f.write(
        "s.cedarschema",
        "entity User { level: Long, other: Long }; entity Doc; action read appliesTo { principal: [User], resource: [Doc] };",
    );
    assert!(!f.store.reload(Timestamp::now()));
    assert_eq!(
        f.store.current().generation,
        2,
        "the last good snapshot stays"
    );
    let error = f.error_of(Input::Schema).unwrap();
    assert!(error.contains("re-read"), "{error}");

    // The file back, with entities for the newest schema: everything loads together.
    f.write(
        "e.json",
        r#"[{"uid":{"type":"User","id":"u"},"attrs":{"level":1,"other":2},"parents":[]}]"#,
    );
    assert!(f.store.reload(Timestamp::now()));
    assert_eq!(f.store.current().generation, 3);
    assert_ne!(f.store.current().revisions.entities, entities_revision);
}

/// The way every feed went before the one-pass path for plain documents: the envelope
/// probe, then the document parser on the payload.
fn read_in_two_passes(bytes: &[u8]) -> Result<Document, String> {
    let payload = signing::open(bytes, None).map_err(|e| e.to_string())?;
    feed::parse_document(&payload).map_err(|e| e.to_string())
}

#[test]
fn a_feed_without_keys_reads_as_it_did_in_two_passes() {
    let grant = r#"{"id":"g1","principal":"User::\"u\"","role":"r","scope":"Doc::\"d\"","not_before":"2026-01-01T00:00:00Z","expires_at":"2026-01-02T00:00:00Z"}"#;
    let plain =
        format!(r#"{{"revision":"7","generated_at":"2026-01-01T00:00:00Z","grants":[{grant}]}}"#);
    let sealed = signing::seal(plain.as_bytes(), &[]);
    let cases: Vec<Vec<u8>> = vec![
        plain.clone().into_bytes(),
        // An unsigned envelope: its payload is the document.
        sealed.clone(),
        // A document with a `payload` key is taken for an envelope (and fails as one).
        br#"{"revision":"7","grants":[],"payload":"x"}"#.to_vec(),
        // Two `payload` keys: the probe fails, so it is read as a plain document.
        br#"{"revision":"7","grants":[],"payload":1,"payload":2}"#.to_vec(),
        br#"{"revision":"7","revision":"8","grants":[]}"#.to_vec(),
        br#"{"revision":"7","grants":[]} trailing"#.to_vec(),
        br#"{"grants":[]}"#.to_vec(),
        br#"[1,2]"#.to_vec(),
        br#"{"revision":7,"grants":[]}"#.to_vec(),
        br#"{"revision":"7","grants":[1,{"id":2}],"extra":{"deep":[true]}}"#.to_vec(),
        b"not json".to_vec(),
        Vec::new(),
    ];
    for bytes in cases {
        let before = read_in_two_passes(&bytes).map(|d| format!("{d:?}"));
        let now = read_document(&bytes, None, None, Timestamp::now())
            .map(|d| format!("{d:?}"))
            .map_err(|e| e.to_string());
        assert_eq!(now, before, "{}", String::from_utf8_lossy(&bytes));
    }
    // The plain document goes the one-pass way, the envelope does not.
    assert!(feed::parse_plain_document(plain.as_bytes()).is_some());
    assert!(feed::parse_plain_document(&sealed).is_none());
}
