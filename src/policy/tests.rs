#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: PathBuf::from(path),
        text: text.to_owned(),
    }
}

const SCHEMA: &str = r#"
entity Group;
entity User in [Group];
entity Doc;
action read, write appliesTo { principal: [User], resource: [Doc] };
"#;

fn schema() -> SourceFile {
    file("s.cedarschema", SCHEMA)
}

#[test]
fn policy_ids_come_from_id_annotation_else_position() {
    let one = file(
        "p.cedar",
        r#"permit(principal, action, resource);
           @id("named") permit(principal, action == Action::"read", resource);"#,
    );
    let bundle = Bundle::build(vec![one], Some(&schema()), Validation::Strict).unwrap();
    let mut ids: Vec<String> = bundle
        .statics
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["named", "policy0"]);
}

#[test]
fn ids_in_a_directory_are_prefixed_with_the_relative_file() {
    let a = file("pol/a.cedar", "permit(principal, action, resource);");
    let b = file("pol/sub/b.cedar", "forbid(principal, action, resource);");
    let bundle = Bundle::build(vec![a, b], None, Validation::Strict).unwrap();
    let mut ids: Vec<String> = bundle
        .statics
        .policies()
        .map(|p| p.id().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a.cedar#policy0", "sub/b.cedar#policy0"]);
}

#[test]
fn duplicate_id_annotation_is_an_error_naming_both_files() {
    let a = file(
        "pol/a.cedar",
        r#"@id("x") permit(principal, action, resource);"#,
    );
    let b = file(
        "pol/b.cedar",
        r#"@id("x") forbid(principal, action, resource);"#,
    );
    let err = Bundle::build(vec![a, b], None, Validation::Strict).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PolicyError::DuplicateId { .. }), "{text}");
    assert!(
        text.contains("pol/a.cedar") && text.contains("pol/b.cedar"),
        "{text}"
    );
}

#[test]
fn parse_error_names_file_line_and_column() {
    let bad = file(
        "p.cedar",
        "permit(principal, action, resource);\npermit(principal, action resource);\n",
    );
    let err = Bundle::build(vec![bad], None, Validation::Strict).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("p.cedar:2:"), "{text}");
}

#[test]
fn strict_validation_rejects_and_warn_serves_with_findings() {
    let bad = file(
        "p.cedar",
        r#"permit(principal, action == Action::"read", resource) when { principal.nope };"#,
    );
    let err = Bundle::build(vec![bad.clone()], Some(&schema()), Validation::Strict).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("p.cedar:1:"), "{err}");
    let served = Bundle::build(vec![bad], Some(&schema()), Validation::Warn).unwrap();
    assert_eq!(served.findings.len(), 1);
    assert_eq!(served.statics.policies().count(), 1);
}

#[test]
fn roles_read_their_annotations() {
    let text = r#"
        @id("Reader") @max_duration("PT4H") @approvals("2") @scope_types("Doc") @description("reads")
        permit(principal == ?principal, action == Action::"read", resource in ?resource);
        @id("Plain")
        permit(principal in ?principal, action, resource == ?resource);
    "#;
    let bundle = Bundle::build(
        vec![file("r.cedar", text)],
        Some(&schema()),
        Validation::Strict,
    )
    .unwrap();
    let reader = &bundle.roles[&PolicyId::new("Reader")];
    assert_eq!(reader.max_duration, SignedDuration::from_hours(4));
    assert_eq!(reader.approvals, 2);
    assert_eq!(reader.description.as_deref(), Some("reads"));
    assert_eq!(reader.scope_types.as_ref().unwrap()[0].to_string(), "Doc");
    assert!(!reader.principal_in);
    let plain = &bundle.roles[&PolicyId::new("Plain")];
    assert_eq!(plain.max_duration, DEFAULT_MAX_DURATION);
    assert_eq!(plain.approvals, 1);
    assert!(plain.scope_types.is_none());
    assert!(plain.principal_in);
    assert!(bundle.any_role_principal_in);
    assert!(bundle.ids.contains("Reader") && bundle.ids.contains("Plain"));
}

#[test]
fn templates_that_cannot_be_roles_are_load_errors() {
    let cases = [
        (
            "forbid(principal == ?principal, action, resource in ?resource);",
            "permit",
        ),
        (
            "permit(principal == ?principal, action, resource);",
            "?resource",
        ),
        (
            r#"@max_duration("four hours") permit(principal == ?principal, action, resource in ?resource);"#,
            "ISO 8601",
        ),
        (
            r#"@max_duration("P1M") permit(principal == ?principal, action, resource in ?resource);"#,
            "fixed length",
        ),
        (
            r#"@approvals("0") permit(principal == ?principal, action, resource in ?resource);"#,
            "positive",
        ),
        (
            r#"@scope_types("Nope") permit(principal == ?principal, action, resource in ?resource);"#,
            "does not declare",
        ),
    ];
    for (text, needle) in cases {
        let err = Bundle::build(
            vec![file("t.cedar", text)],
            Some(&schema()),
            Validation::Strict,
        )
        .unwrap_err();
        assert!(matches!(err, PolicyError::BadRole { .. }), "{text}: {err}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
}

#[test]
fn durations_are_exact_lengths_of_time() {
    assert_eq!(
        parse_duration("PT4H").unwrap(),
        SignedDuration::from_hours(4)
    );
    assert_eq!(
        parse_duration("PT90M").unwrap(),
        SignedDuration::from_mins(90)
    );
    assert_eq!(
        parse_duration("P1DT1H").unwrap(),
        SignedDuration::from_hours(25)
    );
    assert_eq!(
        parse_duration("PT0.5S").unwrap(),
        SignedDuration::from_millis(500)
    );
    assert!(parse_duration("P1Y").is_err());
    assert!(parse_duration("P2W").is_err());
    assert!(parse_duration("soon").is_err());
}

#[test]
fn action_scope_matching_follows_the_action_hierarchy() {
    let entities = Entities::from_json_str(
        r#"[{"uid":{"type":"Action","id":"read"},"attrs":{},"parents":[{"type":"Action","id":"all"}]},
            {"uid":{"type":"Action","id":"all"},"attrs":{},"parents":[]}]"#,
        None,
    )
    .unwrap();
    let read = EntityUid::from_str(r#"Action::"read""#).unwrap();
    let all = EntityUid::from_str(r#"Action::"all""#).unwrap();
    let other = EntityUid::from_str(r#"Action::"other""#).unwrap();
    assert!(action_constraint_matches(
        &ActionConstraint::Any,
        &other,
        &entities
    ));
    assert!(action_constraint_matches(
        &ActionConstraint::Eq(read.clone()),
        &read,
        &entities
    ));
    assert!(!action_constraint_matches(
        &ActionConstraint::Eq(all.clone()),
        &read,
        &entities
    ));
    assert!(action_constraint_matches(
        &ActionConstraint::In(vec![all.clone()]),
        &read,
        &entities
    ));
    assert!(action_constraint_matches(
        &ActionConstraint::In(vec![all.clone()]),
        &all,
        &entities
    ));
    assert!(!action_constraint_matches(
        &ActionConstraint::In(vec![read]),
        &all,
        &entities
    ));
    assert!(!action_constraint_matches(
        &ActionConstraint::In(vec![all]),
        &other,
        &entities
    ));
}

#[test]
fn entities_must_conform_in_strict_mode_only() {
    let bad = file(
        "e.json",
        r#"[{"uid":{"type":"Doc","id":"d"},"attrs":{"x":1},"parents":[]}]"#,
    );
    let parsed = crate::policy::parse_schema(&schema()).unwrap();
    use crate::entities::EntityStore;
    let err = EntityStore::build(Some(&bad), Some(&parsed), Validation::Strict).unwrap_err();
    assert!(err.to_string().contains("e.json"), "{err}");
    let store = EntityStore::build(Some(&bad), Some(&parsed), Validation::Warn).unwrap();
    assert_eq!(store.findings.len(), 1);
    // The schema's action entities are still there for the action hierarchy.
    assert!(store.contains(&EntityUid::from_str(r#"Action::"read""#).unwrap()));
}

#[test]
fn source_location_counts_lines_and_columns_from_one() {
    let f = file("x.cedar", "ab\ncd");
    assert_eq!(f.location(0), "x.cedar:1:1");
    assert_eq!(f.location(4), "x.cedar:2:2");
}

#[test]
fn entity_literals_are_those_of_the_conditions_of_policies_and_roles() {
    let text = r#"
        @id("static")
        permit(principal in Group::"scope-only", action == Action::"read", resource)
        when { principal in Group::"in-condition" && resource has owner && resource.owner == User::"owner" }
        unless { [Doc::"in-a-set"].contains(resource) };
        @id("Role")
        permit(principal == ?principal, action in [Action::"read"], resource in ?resource)
        when { context has by && context.by == User::"in-a-role" };
    "#;
    let bundle = Bundle::build(vec![file("p.cedar", text)], None, Validation::Warn).unwrap();
    let mut got: Vec<String> = bundle
        .entity_literals
        .iter()
        .map(ToString::to_string)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            r#"Doc::"in-a-set""#,
            r#"Group::"in-condition""#,
            r#"User::"in-a-role""#,
            r#"User::"owner""#,
        ]
    );
}
