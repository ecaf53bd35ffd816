#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::config::Validation;
use crate::policy::SourceFile;

const SCHEMA: &str = r#"
entity Organization;
entity Workspace in [Organization];
entity Doc in [Workspace];
entity User;
action read appliesTo { principal: [User], resource: [Doc, Workspace] };
"#;

const POLICIES: &str = r#"
@id("Reader") @max_duration("PT1H") @scope_types("Workspace")
permit (principal == ?principal, action == Action::"read", resource in ?resource);
@id("no-docs-in-ws-9") forbid (principal, action, resource in Workspace::"ws-9");
"#;

fn bundle() -> Bundle {
    let file = SourceFile {
        path: PathBuf::from("p.cedar"),
        text: POLICIES.to_owned(),
    };
    let schema = SourceFile {
        path: PathBuf::from("s.cedarschema"),
        text: SCHEMA.to_owned(),
    };
    Bundle::build(vec![file], Some(&schema), Validation::Strict).unwrap()
}

fn invalid(text: &str) -> String {
    match parse_properties(text, "props.toml") {
        Err(ProveError::Invalid(message)) => message,
        other => panic!("expected an invalid file, got {other:?}"),
    }
}

const ONE: &str = r#"
[[property]]
id = "p"
expect = "never"
requests = 'permit (principal, action, resource);'
"#;

#[test]
fn a_minimal_property_parses_with_defaults() {
    let props = parse_properties(ONE, "props.toml").unwrap();
    assert_eq!(props.len(), 1);
    let p = &props[0];
    assert_eq!(
        (p.id.as_str(), p.expect, p.subject),
        ("p", Expect::Never, Subject::Policies)
    );
    assert!(p.grants.is_empty() && p.description.is_none());
    let ids: Vec<String> = p.requests.policies().map(|q| q.id().to_string()).collect();
    assert_eq!(ids, ["p#requests0"]);
}

#[test]
fn grants_subject_and_description_parse() {
    let text = r#"
[[property]]
id = "g"
description = "d"
expect = "only"
subject = "grants"
requests = '''
permit (principal, action, resource in Workspace::"ws-1");
permit (principal, action, resource in Workspace::"ws-2");
'''
[[property.grant]]
role = "Reader"
principal = 'User::"u"'
scope = 'Workspace::"ws-1"'
"#;
    let p = &parse_properties(text, "props.toml").unwrap()[0];
    assert_eq!((p.expect, p.subject), (Expect::Only, Subject::Grants));
    assert_eq!(p.requests.policies().count(), 2);
    assert_eq!(
        p.grants,
        [GrantSpec {
            role: "Reader".into(),
            principal: "User::\"u\"".into(),
            scope: "Workspace::\"ws-1\"".into(),
        }]
    );
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    assert!(parse_properties("", "props.toml").unwrap().is_empty());
    assert!(invalid(&ONE.replace("never", "sometimes")).contains("sometimes"));
    assert!(invalid(&format!("{ONE}colour = 1\n")).contains("colour"));
    assert!(invalid(&format!("{ONE}{ONE}")).contains("used twice"));
    assert!(invalid(&ONE.replace("permit (principal", "forbid (principal")).contains("`permit`"));
    assert!(invalid(&ONE.replace("principal,", "principal == ?principal,")).contains("slots"));
    assert!(
        invalid(&ONE.replace("permit (principal, action, resource);", "// none"))
            .contains("no policy")
    );
    assert!(invalid(&ONE.replace("resource);", "resource")).contains("does not parse"));
    assert!(invalid(&ONE.replace("id = \"p\"", "id = \" \"")).contains("empty `id`"));
    assert!(
        invalid(&ONE.replace(
            "expect = \"never\"",
            "expect = \"never\"\nsubject = \"grants\""
        ))
        .contains("needs at least one")
    );
}

#[test]
fn the_default_file_sits_beside_the_policies() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        default_properties_path(dir.path()),
        dir.path().join(DEFAULT_FILE)
    );
    let file = dir.path().join("x.cedar");
    std::fs::write(&file, "").unwrap();
    assert_eq!(
        default_properties_path(&file),
        dir.path().join(DEFAULT_FILE)
    );
}

#[test]
fn a_grant_becomes_a_static_policy_with_its_slots_filled() {
    let b = bundle();
    let grant = GrantSpec {
        role: "Reader".into(),
        principal: "User::\"u\"".into(),
        scope: "Workspace::\"ws-1\"".into(),
    };
    let policy = link_grant(&b, &grant, PolicyId::new("g")).unwrap();
    assert!(policy.is_static());
    let text = policy.to_string();
    assert!(
        text.contains("User::\"u\"") && text.contains("Workspace::\"ws-1\""),
        "{text}"
    );
}

#[test]
fn grants_are_checked_as_the_feed_checks_them() {
    let b = bundle();
    let grant = |role: &str, principal: &str, scope: &str| GrantSpec {
        role: role.into(),
        principal: principal.into(),
        scope: scope.into(),
    };
    let err = |g: GrantSpec| link_grant(&b, &g, PolicyId::new("g")).unwrap_err();
    assert!(
        err(grant("Writer", "User::\"u\"", "Workspace::\"w\"")).contains("no such elevation role")
    );
    assert!(err(grant("Reader", "User::\"u\"", "Organization::\"o\"")).contains("@scope_types"));
    assert!(
        err(grant("Reader", "Robot::\"r\"", "Workspace::\"w\"")).contains("no entity type `Robot`")
    );
    assert!(err(grant("Reader", "not a uid", "Workspace::\"w\"")).contains("not an entity UID"));
}

#[test]
fn the_grants_subject_keeps_forbids_and_drops_other_permits() {
    let b = bundle();
    let text = r#"
[[property]]
id = "g"
expect = "never"
subject = "grants"
requests = 'permit (principal, action, resource);'
[[property.grant]]
role = "Reader"
principal = 'User::"u"'
scope = 'Workspace::"ws-1"'
"#;
    let p = &parse_properties(text, "t").unwrap()[0];
    let set = subject_set(&b, p).unwrap();
    let mut ids: Vec<String> = set.policies().map(|q| q.id().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["g#grant0:Reader", "no-docs-in-ws-9"]);
}

#[tokio::test]
async fn a_missing_solver_is_a_clear_solver_error() {
    let command = SolverCommand {
        path: PathBuf::from("/nonexistent/cvc5"),
    };
    let Err(ProveError::Solver(message)) = Prover::start(command).await else {
        panic!("a missing solver must not start");
    };
    assert!(
        message.starts_with("no usable cvc5: `/nonexistent/cvc5` not found"),
        "{message}"
    );
    assert!(message.contains("tools/install-cvc5.sh"), "{message}");
}

#[tokio::test]
async fn a_program_that_is_not_a_solver_is_refused() {
    let command = SolverCommand {
        path: PathBuf::from("true"),
    };
    let Err(ProveError::Solver(message)) = Prover::start(command).await else {
        panic!("`true` is no solver");
    };
    assert!(
        message.starts_with("no usable cvc5: `true` did not answer"),
        "{message}"
    );
}
