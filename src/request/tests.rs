#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::json;

use super::*;
use crate::testutil::{feed_of, shipped_with_feed};

#[test]
fn uids_parse_in_every_accepted_form() {
    let expected: EntityUid = r#"User::"alice""#.parse().unwrap();
    for form in [
        json!("User::\"alice\""),
        json!({"type": "User", "id": "alice"}),
        json!({"__entity": {"type": "User", "id": "alice"}}),
        json!({"__entity": "User::\"alice\""}),
    ] {
        assert_eq!(parse_uid(&form).unwrap(), expected, "{form}");
    }
    let namespaced = parse_uid(&json!({"type": "Ns::User", "id": "a\"b"})).unwrap();
    assert_eq!(namespaced.type_name().to_string(), "Ns::User");
    assert_eq!(namespaced.id().unescaped(), "a\"b");
}

#[test]
fn malformed_uids_say_what_is_expected() {
    for (form, needle) in [
        (json!("alice"), "not an entity UID"),
        (json!("User::alice"), "not an entity UID"),
        (json!({"type": "User"}), "expected"),
        (json!({"type": "User", "id": "a", "extra": 1}), "expected"),
        (
            json!({"type": "not a name", "id": "a"}),
            "not an entity type name",
        ),
        (json!(7), "expected a string"),
        (json!(null), "expected a string"),
    ] {
        let err = parse_uid(&form).unwrap_err();
        assert!(err.contains(needle), "{form}: {err}");
    }
}

fn body(v: serde_json::Value) -> Body {
    serde_json::from_value(v).unwrap()
}

#[test]
fn schema_errors_are_unprocessable_and_syntax_errors_are_bad_requests() {
    let snap = shipped_with_feed(&feed_of(&[]));
    let build = |v| build_query(body(v), &snap.bundle, &snap.store, snap.validation);
    let cases = [
        (
            json!({"principal": "User", "action": "Action::\"readProject\"", "resource": "Project::\"p\""}),
            false,
            "`principal`",
        ),
        (
            json!({"principal": "User::\"a\"", "action": "Action::\"fly\"", "resource": "Project::\"p\""}),
            true,
            "not declared",
        ),
        (
            json!({"principal": "Robot::\"a\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\""}),
            true,
            "Robot",
        ),
        (
            json!({"principal": "User::\"a\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\"", "context": {"mfa": "yes"}}),
            true,
            "mfa",
        ),
        (
            json!({"principal": "User::\"a\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\"", "context": {"source_ip": "not-an-ip"}}),
            true,
            "context",
        ),
        (
            json!({"principal": "User::\"a\"", "action": "Action::\"readProject\"", "resource": "PaymentMethod::\"p\""}),
            true,
            "schema",
        ),
    ];
    for (value, unprocessable, needle) in cases {
        let err = build(value.clone()).unwrap_err();
        assert_eq!(err.is_unprocessable(), unprocessable, "{value}: {err}");
        assert!(err.to_string().contains(needle), "{value}: {err}");
    }
    let ok = build(
        json!({"principal": "User::\"a\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\"",
        "context": {"mfa": true, "source_ip": "10.1.2.3"}}),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn body_entities_may_add_but_not_replace_stored_entities() {
    let snap = shipped_with_feed(&feed_of(&[]));
    let replace = body(json!({
        "principal": "User::\"alice\"", "action": "Action::\"readProject\"", "resource": "Project::\"new\"",
        "entities": [{"uid": {"type": "User", "id": "alice"}, "attrs": {"email": "x", "owner_of": [], "manager_of": [], "member_of": []}, "parents": []}]
    }));
    let err = build_query(replace, &snap.bundle, &snap.store, snap.validation).unwrap_err();
    assert_eq!(err, RequestError::EntityConflict("User::\"alice\"".into()));

    let add = body(json!({
        "principal": "User::\"alice\"", "action": "Action::\"readProject\"", "resource": "Project::\"new\"",
        "entities": [{"uid": {"type": "Project", "id": "new"}, "attrs": {}, "parents": [{"type": "Workspace", "id": "ws-1"}]}]
    }));
    let query = build_query(add, &snap.bundle, &snap.store, snap.validation).unwrap();
    assert!(query.merged, "body entities are merged into the slice");
    let merged = query.entities;
    // The slice holds the new entity, the stored parent it names, and the principal's
    // own data; the parent's ancestors come with it, not their data.
    let has = |s: &str| merged.get(&s.parse().unwrap()).is_some();
    assert!(has(r#"Project::"new""#));
    assert!(has(r#"Workspace::"ws-1""#));
    assert!(has(r#"User::"alice""#));
    assert!(
        merged.len() < snap.store.len(),
        "a slice, not a copy of the store"
    );
    let new: EntityUid = r#"Project::"new""#.parse().unwrap();
    let acme: EntityUid = r#"Organization::"acme""#.parse().unwrap();
    assert!(
        merged.is_ancestor_of(&acme, &new),
        "ancestry is computed across body and store"
    );
}

#[test]
fn requests_without_body_entities_get_a_slice_of_the_store() {
    let snap = shipped_with_feed(&feed_of(&[]));
    for entities in [None, Some(json!(null)), Some(json!([]))] {
        let mut v = json!({"principal": "User::\"alice\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\""});
        if let Some(e) = entities {
            v["entities"] = e;
        }
        let query = build_query(body(v), &snap.bundle, &snap.store, snap.validation).unwrap();
        assert!(!query.merged);
        let alice: EntityUid = r#"User::"alice""#.parse().unwrap();
        assert!(
            query.entities.get(&alice).is_some(),
            "the principal is in the slice"
        );
        assert!(
            query.entities.len() < snap.store.len(),
            "a slice, not the store"
        );
    }
}

#[test]
fn invalid_body_entities_are_unprocessable() {
    let snap = shipped_with_feed(&feed_of(&[]));
    let v = json!({"principal": "User::\"alice\"", "action": "Action::\"readProject\"", "resource": "Project::\"p\"",
        "entities": [{"uid": {"type": "Project", "id": "p"}, "attrs": {"nope": 1}, "parents": []}]});
    let err = build_query(body(v), &snap.bundle, &snap.store, snap.validation).unwrap_err();
    assert!(matches!(err, RequestError::Entities(_)), "{err}");
    assert!(err.is_unprocessable());
}

/// In `warn` mode a store that does not conform to the schema is served as plain
/// entities; body entities must not make a request lose the action hierarchy that
/// the same request sees without them.
#[test]
fn body_entities_keep_the_store_action_hierarchy_in_warn_mode() {
    use crate::policy::SourceFile;
    let file = |path: &str, text: &str| SourceFile {
        path: path.into(),
        text: text.into(),
    };
    let schema = file(
        "s.cedarschema",
        "entity User { age: Long }; entity Doc; action grp;
         action read in [grp] appliesTo { principal: User, resource: Doc };",
    );
    let policies = file(
        "p.cedar",
        r#"permit(principal, action in Action::"grp", resource);"#,
    );
    let entities = file(
        "e.json",
        r#"[{"uid": {"type": "User", "id": "alice"}, "attrs": {"age": "old"}, "parents": []}]"#,
    );
    let bundle = Bundle::build(vec![policies], Some(&schema), Validation::Warn).unwrap();
    let store =
        EntityStore::build(Some(&entities), bundle.schema.as_ref(), Validation::Warn).unwrap();
    assert!(
        !store.findings.is_empty(),
        "the store is served despite the schema"
    );
    let read: EntityUid = r#"Action::"read""#.parse().unwrap();
    let grp: EntityUid = r#"Action::"grp""#.parse().unwrap();
    assert!(store.action_entities().is_ancestor_of(&grp, &read));

    let v = json!({"principal": "User::\"alice\"", "action": "Action::\"read\"", "resource": "Doc::\"d\"",
        "entities": [{"uid": {"type": "Doc", "id": "d"}, "attrs": {}, "parents": []}]});
    let query = build_query(body(v), &bundle, &store, Validation::Warn).unwrap();
    assert!(query.merged, "body entities are merged into the slice");
    let merged = query.entities;
    assert!(
        merged.is_ancestor_of(&grp, &read),
        "the merged slice keeps `read in grp`"
    );
    let response =
        cedar_policy::Authorizer::new().is_authorized(&query.request, &bundle.statics, &merged);
    assert_eq!(response.decision(), cedar_policy::Decision::Allow);
}

/// The flat fast path must give exactly the context Cedar's own JSON parser gives
/// (with the schema), or fail exactly when it fails.
#[test]
fn flat_contexts_equal_what_the_cedar_parser_builds() {
    let snapshot = shipped_with_feed(&feed_of(&[]));
    let action: EntityUid = r#"Action::"readProject""#.parse().unwrap();
    let schema = snapshot.bundle.schema.as_ref().unwrap();
    for context in [
        json!({}),
        json!({"mfa": true}),
        json!({"mfa": false}),
        // The schema types it `ipaddr`: only the parser converts the string.
        json!({"source_ip": "10.0.0.1"}),
        json!({"source_ip": "10.0.0.1", "mfa": true}),
        json!({"source_ip": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}}}),
        // Wrong types and undeclared attributes fail both ways.
        json!({"mfa": "yes"}),
        json!({"mfa": 1}),
        json!({"source_ip": 7}),
        json!({"colour": "blue"}),
        json!({"mfa": [true]}),
        json!({"mfa": 1.5}),
    ] {
        let built = build_query(
            body(json!({
                "principal": "User::\"alice\"",
                "action": "Action::\"readProject\"",
                "resource": "Project::\"checkout\"",
                "context": context.clone(),
            })),
            &snapshot.bundle,
            &snapshot.store,
            snapshot.validation,
        );
        let parsed = Context::from_json_value(context.clone(), Some((schema, &action)))
            .ok()
            .and_then(|c| {
                Request::new(
                    r#"User::"alice""#.parse().unwrap(),
                    action.clone(),
                    r#"Project::"checkout""#.parse().unwrap(),
                    c,
                    Some(schema),
                )
                .ok()
            });
        match (built, parsed) {
            (Ok(q), Some(r)) => assert_eq!(q.request.context(), r.context(), "{context}"),
            (Err(_), None) => {}
            (built, parsed) => panic!(
                "{context}: build_query gave {:?}, the parser {:?}",
                built.map(|q| q.request.context().cloned()),
                parsed.map(|r| r.context().cloned())
            ),
        }
    }
}

mod plain_uid {
    use proptest::prelude::*;

    use super::super::{EntityUid, FromStr, plain_uid};

    /// Whatever the fast path builds, Cedar's parser builds too, equal and printed alike.
    fn agrees(text: &str) -> Result<(), TestCaseError> {
        let cedar = EntityUid::from_str(text);
        if let Some(fast) = plain_uid(text) {
            let cedar =
                cedar.map_err(|e| TestCaseError::fail(format!("{text}: cedar says {e}")))?;
            prop_assert_eq!(&fast, &cedar, "{}", text);
            prop_assert_eq!(fast.to_string(), cedar.to_string());
            prop_assert_eq!(fast.type_name().to_string(), cedar.type_name().to_string());
            prop_assert_eq!(fast.id().unescaped(), cedar.id().unescaped());
        }
        Ok(())
    }

    #[test]
    fn plain_forms_take_the_fast_path_and_the_rest_go_to_cedar() {
        for text in [
            r#"User::"alice""#,
            r#"Acme::Billing::PaymentMethod::"pm 1/ü""#,
            r#"ApiKey::"""#,
            r#"Action::"createPaymentMethod""#,
        ] {
            assert!(plain_uid(text).is_some(), "{text}");
            agrees(text).unwrap();
        }
        for text in [
            r#"User :: "alice""#,
            r#"User::"a\"b""#,
            r#"User::"a\u{1}""#,
            "User::\"a\nb\"",
            r#"if::"x""#,
            r#"User:::"x""#,
            r#"::"x""#,
            r#"User::"x" "#,
            r#"User::"x"y""#,
            r#"1User::"x""#,
            r#"User::/*c*/"x""#,
        ] {
            assert!(plain_uid(text).is_none(), "{text}");
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_agrees_with_cedar(
            ty in "[A-Za-z_0-9:]{0,12}|(if|then|else|true|false|in|is|has|like|__cedar)(::[A-Za-z]{1,3})?",
            id in "[a-z \"\\\\\\n\\u{0}-\\u{1f}ü😀:/]{0,8}",
        ) {
            agrees(&format!("{ty}::\"{id}\""))?;
        }
    }
}
