#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cedar_policy::{Entities, EntityUid, EvalResult};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::policy::{SourceFile, parse_schema};

fn file(text: &str) -> SourceFile {
    SourceFile {
        path: "e.json".into(),
        text: text.into(),
    }
}

fn uid(s: &str) -> EntityUid {
    s.parse().unwrap()
}

fn attrs_of(entity: &Entity) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    // EvalResult's Display is canonical (sets and records print sorted), so equal
    // values print equal.
    let show = |pairs: Vec<(&str, Result<EvalResult, _>)>| {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), format!("{}", v.unwrap())))
            .collect()
    };
    (
        show(entity.attrs().collect()),
        show(entity.tags().collect()),
    )
}

fn ancestors_in(entities: &Entities, uid: &EntityUid) -> BTreeSet<String> {
    entities
        .ancestors(uid)
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect()
}

/// Every entity the store gives back equals the one Cedar's own whole-file parse
/// makes: attributes, tags, and ancestors (the transitive closure).
fn assert_same_as_cedar(text: &str, schema: Option<&Schema>) {
    let cedar = Entities::from_json_str(text, schema).unwrap();
    let store = EntityStore::build(Some(&file(text)), schema, Validation::Strict).unwrap();
    assert_eq!(store.len(), cedar.len(), "entity count");
    let ours: BTreeSet<String> = store.uids().map(|u| u.to_string()).collect();
    let theirs: BTreeSet<String> = cedar.iter().map(|e| e.uid().to_string()).collect();
    assert_eq!(ours, theirs, "the same UIDs");
    let whole = store.to_entities().unwrap();
    for entity in cedar.iter() {
        let id = entity.uid();
        let mine = store.get(&id).unwrap();
        assert_eq!(
            attrs_of(&mine),
            attrs_of(entity),
            "attributes and tags of {id}"
        );
        assert_eq!(
            ancestors_in(&whole, &id),
            ancestors_in(&cedar, &id),
            "ancestors of {id}"
        );
        let alone = store.slice([&id]).unwrap();
        assert_eq!(
            ancestors_in(&alone, &id),
            ancestors_in(&cedar, &id),
            "ancestors of {id} in a slice of it alone"
        );
    }
}

fn varied() -> Value {
    json!([
        {"uid": {"type": "Org", "id": "o"}, "attrs": {"name": "Ö \"quoted\" \\ \n"}, "parents": []},
        {"uid": {"type": "Team", "id": "t1"}, "attrs": {}, "parents": [{"type": "Org", "id": "o"}, {"type": "Org", "id": "ghost"}]},
        {"uid": {"type": "Team", "id": "t2"}, "attrs": {}, "parents": [{"type": "Team", "id": "t1"}]},
        {"uid": {"type": "User", "id": "u"}, "parents": [{"type": "Team", "id": "t2"}],
         "attrs": {
            "n": -9_223_372_036_854_775_807_i64, "max": i64::MAX, "zero": 0, "yes": true, "no": false,
            "s": "", "long": "x".repeat(300),
            "manager": {"__entity": {"type": "User", "id": "boss"}},
            "nobody": {"__entity": {"type": "User", "id": "not-stored"}},
            "teams": [{"__entity": {"type": "Team", "id": "t1"}}, {"__entity": {"type": "Team", "id": "t2"}}],
            "empty": [],
            "nested": {"a": {"b": [1, 2, {"c": "d"}]}, "who": {"__entity": {"type": "Org", "id": "o"}}},
            "ip": {"__extn": {"fn": "ip", "arg": "10.1.0.0/16"}},
            "amount": {"__extn": {"fn": "decimal", "arg": "12.3400"}},
            "mixed": [1, "one", true, {"__extn": {"fn": "ip", "arg": "::1"}}]
         },
         "tags": {"env": "prod", "owner": {"__entity": {"type": "User", "id": "boss"}}}},
        {"uid": {"type": "User", "id": "boss"}, "attrs": {"manager": {"__entity": {"type": "User", "id": "u"}}}, "parents": []},
        {"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": [{"type": "Action", "id": "all"}]},
        {"uid": {"type": "Action", "id": "all"}, "attrs": {}, "parents": []},
        {"uid": {"type": "ns::Doc", "id": "d"}, "attrs": {}, "parents": [{"type": "Team", "id": "t2"}]}
    ])
}

#[test]
fn varied_entities_come_back_as_cedar_makes_them() {
    assert_same_as_cedar(&varied().to_string(), None);
}

#[test]
fn the_shipped_entities_come_back_as_cedar_makes_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = SourceFile::load(&root.join("schema/elevate.cedarschema")).unwrap();
    let schema = parse_schema(&schema).unwrap();
    let text = std::fs::read_to_string(root.join("deploy/local/entities.json")).unwrap();
    assert_same_as_cedar(&text, Some(&schema));
}

#[test]
fn a_slice_holds_what_attributes_reach_and_nothing_else() {
    let store =
        EntityStore::build(Some(&file(&varied().to_string())), None, Validation::Strict).unwrap();
    let slice = store.slice([&uid(r#"Team::"t2""#)]).unwrap();
    let names: BTreeSet<String> = slice.iter().map(|e| e.uid().to_string()).collect();
    // A team's data names nobody; its ancestors are in its closure, not in the slice.
    assert_eq!(names, BTreeSet::from([r#"Team::"t2""#.to_owned()]));
    assert!(slice.is_ancestor_of(&uid(r#"Org::"o""#), &uid(r#"Team::"t2""#)));

    let slice = store.slice([&uid(r#"User::"u""#)]).unwrap();
    let names: BTreeSet<String> = slice.iter().map(|e| e.uid().to_string()).collect();
    // u names boss, t1, t2 and o (and a UID that is not stored); boss names u back.
    let expected: BTreeSet<String> = [
        r#"User::"u""#,
        r#"User::"boss""#,
        r#"Team::"t1""#,
        r#"Team::"t2""#,
        r#"Org::"o""#,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(names, expected);

    // Roots the store does not hold are left out, not invented.
    let slice = store.slice([&uid(r#"User::"stranger""#)]).unwrap();
    assert_eq!(slice.len(), 0);
}

#[test]
fn request_entities_merge_with_ancestors_completed_through_them() {
    let text = json!([
        {"uid": {"type": "Doc", "id": "d"}, "attrs": {}, "parents": [{"type": "Folder", "id": "new"}]},
    ]);
    let store =
        EntityStore::build(Some(&file(&text.to_string())), None, Validation::Strict).unwrap();
    // The request defines the folder the stored document names, under a root.
    let extra = Entities::from_json_value(
        json!([{"uid": {"type": "Folder", "id": "new"}, "attrs": {}, "parents": [{"type": "Folder", "id": "root"}]}]),
        None,
    )
    .unwrap();
    let merged = store
        .slice_with([&uid(r#"Doc::"d""#)], extra.into_iter().collect())
        .unwrap();
    assert!(merged.is_ancestor_of(&uid(r#"Folder::"root""#), &uid(r#"Doc::"d""#)));

    let replace = Entities::from_json_value(
        json!([{"uid": {"type": "Doc", "id": "d"}, "attrs": {}, "parents": []}]),
        None,
    )
    .unwrap();
    let err = store
        .slice_with([&uid(r#"Doc::"d""#)], replace.into_iter().collect())
        .unwrap_err();
    assert_eq!(err, SliceError::Conflict(r#"Doc::"d""#.into()));
}

#[test]
fn duplicates_and_cycles_are_refused_naming_the_entity() {
    // As Cedar: the same entity twice is one entity.
    let same = json!([
        {"uid": {"type": "A", "id": "x"}, "attrs": {"n": 1}, "parents": [{"type": "B", "id": "b"}]},
        {"uid": {"type": "A", "id": "x"}, "attrs": {"n": 1}, "parents": [{"type": "B", "id": "b"}]}
    ]);
    assert_same_as_cedar(&same.to_string(), None);
    let dup = json!([
        {"uid": {"type": "A", "id": "x"}, "attrs": {"n": 1}, "parents": []},
        {"uid": {"type": "A", "id": "x"}, "attrs": {"n": 2}, "parents": []}
    ]);
    let err = EntityStore::build(Some(&file(&dup.to_string())), None, Validation::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains(r#"A::"x""#) && err.contains("twice"), "{err}");
    // Cedar refuses the same file.
    assert!(Entities::from_json_value(dup, None).is_err());

    let cycle = json!([
        {"uid": {"type": "A", "id": "a"}, "attrs": {}, "parents": [{"type": "A", "id": "b"}]},
        {"uid": {"type": "A", "id": "b"}, "attrs": {}, "parents": [{"type": "A", "id": "c"}]},
        {"uid": {"type": "A", "id": "c"}, "attrs": {}, "parents": [{"type": "A", "id": "a"}]}
    ]);
    let err = EntityStore::build(Some(&file(&cycle.to_string())), None, Validation::Strict)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cycle"), "{err}");
    assert!(Entities::from_json_value(cycle, None).is_err());

    for bad in ["{}", "[1]", "[", "not json"] {
        let err = EntityStore::build(Some(&file(bad)), None, Validation::Strict).unwrap_err();
        assert!(err.to_string().contains("e.json"), "{bad}: {err}");
    }
}

#[test]
fn a_deep_hierarchy_does_not_exhaust_the_stack() {
    let depth = 5_000;
    let chain: Vec<Value> = (0..depth)
        .map(|i| {
            let parents = if i + 1 < depth {
                json!([{"type": "N", "id": (i + 1).to_string()}])
            } else {
                json!([])
            };
            json!({"uid": {"type": "N", "id": i.to_string()}, "attrs": {}, "parents": parents})
        })
        .collect();
    let store = EntityStore::build(
        Some(&file(&Value::Array(chain).to_string())),
        None,
        Validation::Strict,
    )
    .unwrap();
    let bottom = uid(r#"N::"0""#);
    let slice = store.slice([&bottom]).unwrap();
    assert_eq!(slice.ancestors(&bottom).unwrap().count(), depth - 1);
}

#[test]
fn a_tiny_cache_gives_the_same_entities() {
    let text = varied().to_string();
    let small =
        EntityStore::build_with_cache(Some(&file(&text)), None, Validation::Strict, 1).unwrap();
    let cedar = Entities::from_json_str(&text, None).unwrap();
    for _ in 0..3 {
        for entity in cedar.iter() {
            let id = entity.uid();
            assert_eq!(attrs_of(&small.get(&id).unwrap()), attrs_of(entity), "{id}");
        }
    }
}

#[test]
fn warn_mode_keeps_entities_the_schema_rejects_and_says_so() {
    let schema = parse_schema(&SourceFile {
        path: "s.cedarschema".into(),
        text:
            "entity User { age: Long }; action read appliesTo { principal: User, resource: User };"
                .into(),
    })
    .unwrap();
    let text = json!([
        {"uid": {"type": "User", "id": "a"}, "attrs": {"age": "old"}, "parents": []},
        {"uid": {"type": "User", "id": "b"}, "attrs": {"age": 7}, "parents": []}
    ])
    .to_string();
    assert!(EntityStore::build(Some(&file(&text)), Some(&schema), Validation::Strict).is_err());
    let store = EntityStore::build(Some(&file(&text)), Some(&schema), Validation::Warn).unwrap();
    assert_eq!(store.findings.len(), 1, "{:?}", store.findings);
    assert!(store.findings[0].contains("e.json"));
    assert!(store.contains(&uid(r#"User::"a""#)));
    assert!(
        store.contains(&uid(r#"Action::"read""#)),
        "the schema's actions"
    );
    let b = store.get(&uid(r#"User::"b""#)).unwrap();
    assert_eq!(b.attr("age").unwrap().unwrap(), EvalResult::Long(7));
}

/// Random entity graphs: references between entities (stored or not), parents drawn
/// from later entities so the hierarchy is a DAG, values of every kind.
fn graph() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        "[a-c]{0,3}".prop_map(|s| json!(s)),
        (0usize..12).prop_map(|i| json!({"__entity": {"type": "E", "id": format!("e{i}")}})),
    ];
    let value = value.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let entity = (
        prop::collection::btree_map("[a-d]", value.clone(), 0..4),
        prop::collection::btree_map("[a-b]", value, 0..2),
        prop::collection::vec(0usize..12, 0..3),
    );
    prop::collection::vec(entity, 1..10).prop_map(|entities| {
        let mut out = Vec::new();
        for (i, (attrs, tags, parents)) in entities.into_iter().enumerate() {
            let parents: Vec<Value> = parents
                .into_iter()
                .filter(|&p| p > i)
                .map(|p| json!({"type": "E", "id": format!("e{p}")}))
                .collect();
            out.push(json!({
                "uid": {"type": "E", "id": format!("e{i}")},
                "attrs": Value::Object(attrs.into_iter().collect()),
                "tags": Value::Object(tags.into_iter().collect()),
                "parents": parents,
            }));
        }
        Value::Array(out)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_graphs_come_back_as_cedar_makes_them(graph in graph()) {
        assert_same_as_cedar(&graph.to_string(), None);
    }
}

#[test]
fn a_slice_is_cut_once_per_set_of_stored_roots() {
    let store =
        EntityStore::build(Some(&file(&varied().to_string())), None, Validation::Strict).unwrap();
    let (u, t1, nobody) = (
        uid(r#"User::"u""#),
        uid(r#"Team::"t1""#),
        uid(r#"User::"stranger""#),
    );
    let first = store.slice([&u, &t1]).unwrap();
    // The same stored roots in another order, repeated, or with roots the store does
    // not hold make the same slice: it comes from the cache.
    let again = store.slice([&t1, &u, &u, &nobody]).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    let other = store.slice([&t1]).unwrap();
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(other.len(), 1);
}
