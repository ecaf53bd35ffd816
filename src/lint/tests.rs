#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::str::FromStr;

use super::*;
use crate::config::Validation;
use crate::policy::SourceFile;

const SCHEMA: &str = r#"
entity Organization;
entity Workspace in [Organization];
entity Doc in [Workspace];
entity Group;
entity User in [Group] { owner_of: Set<Workspace> };
entity ElevationRequest in [Workspace, Organization] { role: String, requester: User };
action read, admin;
action readDoc in [read] appliesTo { principal: [User], resource: [Doc] };
action readWorkspace in [read] appliesTo { principal: [User], resource: [Workspace] };
action manageOrganization in [admin] appliesTo { principal: [User], resource: [Organization] };
action reviewElevation;
action approveElevation in [reviewElevation] appliesTo { principal: [User], resource: [ElevationRequest] };
"#;

const ROLE: &str = r#"
@id("Reader") @max_duration("PT4H") @scope_types("Workspace")
permit (principal == ?principal, action in Action::"read", resource in ?resource);
"#;

const APPROVE_READER: &str = r#"
@id("approve-reader")
permit (principal in Group::"approvers", action in Action::"reviewElevation", resource is ElevationRequest)
when { resource.role == "Reader" };
"#;

fn bundle(policies: &str) -> Bundle {
    let file = SourceFile {
        path: PathBuf::from("p.cedar"),
        text: policies.to_owned(),
    };
    let schema = SourceFile {
        path: PathBuf::from("s.cedarschema"),
        text: SCHEMA.to_owned(),
    };
    Bundle::build(vec![file], Some(&schema), Validation::Strict).unwrap()
}

fn codes(policies: &str) -> Vec<(String, String)> {
    lint(&bundle(policies), &LintConfig::default())
        .into_iter()
        .map(|l| (l.code.code().to_owned(), l.policy))
        .collect()
}

fn fires(policies: &str, code: LintCode, policy: &str) -> Lint {
    let lints = lint(&bundle(policies), &LintConfig::default());
    lints
        .iter()
        .find(|l| l.code == code && l.policy == policy)
        .cloned()
        .unwrap_or_else(|| panic!("{} does not fire on {policy}: {lints:?}", code.code()))
}

#[test]
fn a_role_with_duration_scope_and_approver_is_clean() {
    assert_eq!(codes(&format!("{ROLE}{APPROVE_READER}")), []);
}

#[test]
fn codes_and_names_are_distinct_and_stable() {
    let codes: Vec<&str> = LintCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(codes, ["E001", "E002", "E003", "E004", "E005", "E006"]);
    let names: HashSet<&str> = LintCode::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(names.len(), LintCode::ALL.len());
}

#[test]
fn e001_role_without_max_duration_names_the_default() {
    let policies = format!(
        r#"@id("Reader") @scope_types("Workspace")
        permit (principal == ?principal, action in Action::"read", resource in ?resource);
        {APPROVE_READER}"#
    );
    let lint = fires(&policies, LintCode::TemplateWithoutMaxDuration, "Reader");
    assert!(lint.message.contains("8h"), "{}", lint.message);
    assert_eq!(lint.location, "p.cedar:1:1");
    assert_eq!(lint.file, "p.cedar");
}

#[test]
fn e002_fires_over_the_ceiling_only() {
    let long = ROLE.replace("PT4H", "P1D");
    let policies = format!("{long}{APPROVE_READER}");
    let lint = fires(&policies, LintCode::MaxDurationOverCeiling, "Reader");
    assert!(
        lint.message.contains("24h") && lint.message.contains("12h"),
        "{}",
        lint.message
    );
    let lenient = LintConfig {
        max_duration_ceiling: SignedDuration::from_hours(24),
    };
    assert!(lint_codes(&bundle(&policies), &lenient).is_empty());
    let strict = LintConfig {
        max_duration_ceiling: SignedDuration::from_hours(2),
    };
    assert_eq!(
        lint_codes(&bundle(&format!("{ROLE}{APPROVE_READER}")), &strict),
        ["E002"]
    );
}

fn lint_codes(bundle: &Bundle, config: &LintConfig) -> Vec<&'static str> {
    lint(bundle, config).iter().map(|l| l.code.code()).collect()
}

#[test]
fn e003_a_role_no_approval_permit_names_fires() {
    let other = APPROVE_READER.replace("\"Reader\"", "\"Writer\"");
    fires(
        &format!("{ROLE}{other}"),
        LintCode::RoleWithoutApprover,
        "Reader",
    );
    fires(ROLE, LintCode::RoleWithoutApprover, "Reader");
}

#[test]
fn e003_a_list_an_unrestricted_route_or_an_or_covers_the_role() {
    let list = r#"@id("a") permit (principal, action == Action::"approveElevation", resource)
        when { ["Writer", "Reader"].contains(resource.role) && principal in Group::"g" };"#;
    assert_eq!(codes(&format!("{ROLE}{list}")), []);
    let any = r#"@id("a") permit (principal in Group::"g", action, resource is ElevationRequest);"#;
    assert_eq!(codes(&format!("{ROLE}{any}")), []);
    let either = r#"@id("a") permit (principal, action == Action::"approveElevation", resource)
        when { (resource.role == "Writer" && principal in Group::"g") || principal in Group::"h" };"#;
    assert_eq!(codes(&format!("{ROLE}{either}")), []);
}

#[test]
fn e003_an_unless_or_a_not_equal_excludes_the_role() {
    let unless = r#"@id("a") permit (principal in Group::"g", action == Action::"approveElevation", resource)
        unless { resource.role == "Reader" };"#;
    fires(
        &format!("{ROLE}{unless}"),
        LintCode::RoleWithoutApprover,
        "Reader",
    );
    let ne = r#"@id("a") permit (principal in Group::"g", action == Action::"approveElevation", resource)
        when { resource.role != "Reader" };"#;
    fires(
        &format!("{ROLE}{ne}"),
        LintCode::RoleWithoutApprover,
        "Reader",
    );
}

#[test]
fn e003_a_permit_for_another_action_is_no_route() {
    let read = r#"@id("a") permit (principal, action == Action::"readDoc", resource)
        when { principal in Group::"g" };"#;
    fires(
        &format!("{ROLE}{read}"),
        LintCode::RoleWithoutApprover,
        "Reader",
    );
}

#[test]
fn role_restriction_algebra() {
    let expr = |text: &str| {
        let policy = cedar_policy::Policy::from_str(&format!(
            "permit(principal, action, resource) when {{ {text} }};"
        ))
        .unwrap();
        policy_role_restriction(&policy.to_json().unwrap())
    };
    let only = |names: &[&str]| RoleSet::Only(names.iter().map(|s| (*s).to_owned()).collect());
    assert_eq!(expr(r#"resource.role == "A""#), only(&["A"]));
    assert_eq!(expr(r#""A" == resource.role"#), only(&["A"]));
    assert_eq!(
        expr(r#"resource.role == "A" && resource.role == "B""#),
        only(&[])
    );
    assert_eq!(
        expr(r#"resource.role == "A" || resource.role == "B""#),
        only(&["A", "B"])
    );
    assert_eq!(
        expr(r#"!(resource.role == "A" || resource.role == "B")"#),
        RoleSet::AllBut(["A".to_owned(), "B".to_owned()].into())
    );
    assert_eq!(expr(r#"resource.role like "A*""#), RoleSet::all());
    assert_eq!(
        expr(r#"if principal has x then resource.role == "A" else resource.role == "B""#),
        only(&["A", "B"])
    );
}

#[test]
fn e004_a_template_naming_types_outside_its_scope_fires() {
    let wide = r#"@id("Admin") @max_duration("PT1H") @scope_types("Workspace")
        permit (principal == ?principal, action in [Action::"read", Action::"admin"], resource in ?resource);
        @id("ok") permit (principal in Group::"g", action == Action::"approveElevation", resource);"#;
    let lint = fires(wide, LintCode::TemplateWiderThanScopeTypes, "Admin");
    assert!(
        lint.message
            .contains("`Organization` (by manageOrganization)"),
        "{}",
        lint.message
    );
    let org = wide.replace(
        "@scope_types(\"Workspace\")",
        "@scope_types(\"Organization\")",
    );
    assert_eq!(codes(&org), []);
}

#[test]
fn e004_exact_scope_reaches_only_the_scope_types() {
    let exact = r#"@id("Reader") @max_duration("PT1H") @scope_types("Workspace")
        permit (principal == ?principal, action in Action::"read", resource == ?resource);
        @id("ok") permit (principal in Group::"g", action == Action::"approveElevation", resource);"#;
    let lint = fires(exact, LintCode::TemplateWiderThanScopeTypes, "Reader");
    assert!(
        lint.message.contains("`Doc` (by readDoc)"),
        "{}",
        lint.message
    );
}

#[test]
fn e005_a_static_permit_giving_role_actions_to_anyone_fires() {
    let open = r#"@id("open") permit (principal is User, action == Action::"readDoc", resource);"#;
    let lint = fires(
        &format!("{ROLE}{APPROVE_READER}{open}"),
        LintCode::PermitBypassesElevation,
        "open",
    );
    assert!(
        lint.message.contains("readDoc") && lint.message.contains("Reader"),
        "{}",
        lint.message
    );
    let owner = r#"@id("owner") permit (principal is User, action == Action::"readDoc", resource)
        when { resource in principal.owner_of };"#;
    assert_eq!(codes(&format!("{ROLE}{APPROVE_READER}{owner}")), []);
}

#[test]
fn e006_reports_cedars_impossible_policies() {
    let never =
        r#"@id("never") permit (principal, action == Action::"readDoc", resource is Workspace);"#;
    fires(
        &format!("{ROLE}{APPROVE_READER}{never}"),
        LintCode::PolicyNeverMatches,
        "never",
    );
    let never_cond = r#"@id("never") permit (principal, action == Action::"readDoc", resource)
        when { resource is Workspace };"#;
    fires(
        &format!("{ROLE}{APPROVE_READER}{never_cond}"),
        LintCode::PolicyNeverMatches,
        "never",
    );
}

#[test]
fn e006_a_role_none_of_whose_actions_fit_its_scope_fires() {
    let dead = r#"@id("Manager") @max_duration("PT1H") @scope_types("Workspace")
        permit (principal == ?principal, action in Action::"admin", resource in ?resource);
        @id("ok") permit (principal in Group::"g", action == Action::"approveElevation", resource);"#;
    let lint = fires(dead, LintCode::PolicyNeverMatches, "Manager");
    assert!(
        lint.message.contains("manageOrganization"),
        "{}",
        lint.message
    );
}

#[test]
fn without_a_schema_only_the_duration_lints_run() {
    let file = SourceFile {
        path: PathBuf::from("p.cedar"),
        text: r#"@id("R") permit (principal == ?principal, action, resource in ?resource);"#
            .to_owned(),
    };
    let bundle = Bundle::build(vec![file], None, Validation::Strict).unwrap();
    assert_eq!(lint_codes(&bundle, &LintConfig::default()), ["E001"]);
}

#[test]
fn display_names_code_location_and_policy() {
    let lint = fires(ROLE, LintCode::RoleWithoutApprover, "Reader");
    let text = lint.to_string();
    assert!(
        text.starts_with("E003 role-without-approver: p.cedar:2:1: policy `Reader`: "),
        "{text}"
    );
}
