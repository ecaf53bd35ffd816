//! Lints for `elevate validate`: policies that load and validate, but that an elevation
//! setup should not ship. Each finding is a warning with a stable code; a warning never
//! stops a load, and `validate --deny-warnings` turns them into a failure.
//!
//! | code | name | fires on |
//! | --- | --- | --- |
//! | `E001` | `template-without-max-duration` | an elevation role without `@max_duration` |
//! | `E002` | `max-duration-over-ceiling` | a `@max_duration` longer than the ceiling |
//! | `E003` | `role-without-approver` | a role no `approveElevation` permit can cover |
//! | `E004` | `template-wider-than-scope-types` | a template naming resource types its `@scope_types` cannot hold |
//! | `E005` | `permit-bypasses-elevation` | a static permit giving a role's actions to any principal |
//! | `E006` | `policy-never-matches` | a policy or role that no valid request can match |
//!
//! The lints read the policies' syntax and the schema; none of them evaluates a policy.
//! Where a lint is a heuristic, its function says where it stops. `E003` to `E006` need
//! the schema and are skipped without one. An unparseable `@max_duration` never gets
//! here: the loader refuses the template (exit 3).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use cedar_policy::{
    Effect, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet, PrincipalConstraint, Schema,
    TemplateResourceConstraint, ValidationMode, ValidationWarning, Validator,
};
use jiff::SignedDuration;
use serde::Serialize;
use serde_json::Value;

use crate::policy::{Bundle, DEFAULT_MAX_DURATION, Role, action_constraint_matches};

/// The longest `@max_duration` a role may declare unless told otherwise.
pub const DEFAULT_MAX_DURATION_CEILING: SignedDuration = SignedDuration::from_hours(12);

/// The workflow action whose permits are a role's approval routes.
pub const APPROVE_ACTION: &str = "approveElevation";

/// What the lints are measured against.
#[derive(Debug, Clone)]
pub struct LintConfig {
    pub max_duration_ceiling: SignedDuration,
}

impl Default for LintConfig {
    fn default() -> Self {
        Self {
            max_duration_ceiling: DEFAULT_MAX_DURATION_CEILING,
        }
    }
}

/// A lint's stable identity: the code and name never change meaning once shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LintCode {
    TemplateWithoutMaxDuration,
    MaxDurationOverCeiling,
    RoleWithoutApprover,
    TemplateWiderThanScopeTypes,
    PermitBypassesElevation,
    PolicyNeverMatches,
}

impl LintCode {
    /// Every lint, in code order.
    pub const ALL: [Self; 6] = [
        Self::TemplateWithoutMaxDuration,
        Self::MaxDurationOverCeiling,
        Self::RoleWithoutApprover,
        Self::TemplateWiderThanScopeTypes,
        Self::PermitBypassesElevation,
        Self::PolicyNeverMatches,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::TemplateWithoutMaxDuration => "E001",
            Self::MaxDurationOverCeiling => "E002",
            Self::RoleWithoutApprover => "E003",
            Self::TemplateWiderThanScopeTypes => "E004",
            Self::PermitBypassesElevation => "E005",
            Self::PolicyNeverMatches => "E006",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::TemplateWithoutMaxDuration => "template-without-max-duration",
            Self::MaxDurationOverCeiling => "max-duration-over-ceiling",
            Self::RoleWithoutApprover => "role-without-approver",
            Self::TemplateWiderThanScopeTypes => "template-wider-than-scope-types",
            Self::PermitBypassesElevation => "permit-bypasses-elevation",
            Self::PolicyNeverMatches => "policy-never-matches",
        }
    }
}

impl Serialize for LintCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// One finding: which lint, which policy, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lint {
    pub code: LintCode,
    pub name: &'static str,
    pub policy: String,
    /// The policy's file, as it was named on the command line.
    pub file: String,
    /// `file:line:column` of the policy's `@id` annotation when it has one, else the file.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}: policy `{}`: {}",
            self.code.code(),
            self.name,
            self.location,
            self.policy,
            self.message
        )
    }
}

/// Runs every lint over a loaded bundle; findings come sorted by file, policy and code.
pub fn lint(bundle: &Bundle, config: &LintConfig) -> Vec<Lint> {
    let mut out = Linter {
        bundle,
        lints: Vec::new(),
    };
    out.durations(config);
    if let Some(schema) = &bundle.schema {
        let ctx = SchemaFacts::new(schema);
        out.approvers(&ctx);
        out.scopes(&ctx);
        out.bypasses(&ctx);
        out.never_matches(schema);
    }
    let mut lints = out.lints;
    lints.sort_by(|a, b| {
        (&a.file, &a.policy, a.code, &a.message).cmp(&(&b.file, &b.policy, b.code, &b.message))
    });
    lints.dedup();
    lints
}

struct Linter<'a> {
    bundle: &'a Bundle,
    lints: Vec<Lint>,
}

impl<'a> Linter<'a> {
    fn push(&mut self, code: LintCode, id: &PolicyId, message: String) {
        let (file, location) = locate(self.bundle, id);
        self.lints.push(Lint {
            code,
            name: code.name(),
            policy: id.to_string(),
            file,
            location,
            message,
        });
    }

    fn roles(&self) -> Vec<&'a Role> {
        let bundle: &'a Bundle = self.bundle;
        let mut roles: Vec<&'a Role> = bundle.roles.values().collect();
        roles.sort_by(|a, b| a.id.cmp(&b.id));
        roles
    }

    /// E001 and E002.
    fn durations(&mut self, config: &LintConfig) {
        for role in self.roles() {
            match role.template.annotation("max_duration") {
                None => {
                    let over = if DEFAULT_MAX_DURATION > config.max_duration_ceiling {
                        format!(
                            ", which is over the ceiling of {}",
                            show(config.max_duration_ceiling)
                        )
                    } else {
                        String::new()
                    };
                    self.push(
                        LintCode::TemplateWithoutMaxDuration,
                        &role.id,
                        format!(
                            "elevation role without `@max_duration`: its grants get the default \
                             cap of {}{over}; say how long this role may last",
                            show(DEFAULT_MAX_DURATION)
                        ),
                    );
                }
                Some(text) if role.max_duration > config.max_duration_ceiling => self.push(
                    LintCode::MaxDurationOverCeiling,
                    &role.id,
                    format!(
                        "`@max_duration(\"{text}\")` is {}, over the ceiling of {} \
                         (`--max-duration-ceiling`)",
                        show(role.max_duration),
                        show(config.max_duration_ceiling)
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// E003: a role is covered when some static `permit` that can match
    /// `approveElevation` can hold for a request of that role, judged only by its
    /// comparisons of `resource.role` with string literals (see [`role_restriction`]).
    /// Forbids are not counted against a route, and who the permit's principals are
    /// is not looked at: a route for a group nobody is in still covers its roles.
    fn approvers(&mut self, ctx: &SchemaFacts<'_>) {
        let Some(approve) = ctx
            .actions
            .iter()
            .find(|a| a.id().unescaped() == APPROVE_ACTION)
        else {
            return;
        };
        let mut covered = RoleSet::none();
        for policy in self.bundle.statics.policies() {
            if policy.effect() != Effect::Permit
                || !action_constraint_matches(&policy.action_constraint(), approve, &ctx.hierarchy)
            {
                continue;
            }
            let Ok(json) = policy.to_json() else {
                // Without the syntax we cannot tell which roles it routes: assume all.
                covered = RoleSet::all();
                continue;
            };
            covered = covered.union(&policy_role_restriction(&json));
        }
        for role in self.roles() {
            if !covered.contains(role.id.as_ref()) {
                self.push(
                    LintCode::RoleWithoutApprover,
                    &role.id,
                    format!(
                        "no approval route: no `permit` for `{approve}` can hold when \
                         `resource.role == \"{}\"`, so a request for this role can never be \
                         approved",
                        role.id
                    ),
                );
            }
        }
    }

    /// E004, and E006 for a role none of whose grants can match anything.
    ///
    /// A grant of a role links `?resource` to an entity of one of its `@scope_types`, so
    /// with `resource in ?resource` it reaches that type and the types the schema lets
    /// sit below it (with `resource == ?resource`, only the scope types). The template
    /// names resource types through the `is T` of its resource scope and through the
    /// resource types of the actions it may match. Any named type outside that reach
    /// is a part of the template no grant can ever use: the template is written for a
    /// wider scope than it declares. Templates without `@scope_types` accept any scope
    /// and are not checked.
    fn scopes(&mut self, ctx: &SchemaFacts<'_>) {
        for role in self.roles() {
            let Some(scope_types) = &role.scope_types else {
                continue;
            };
            let (is_type, exact) = match role.template.resource_constraint() {
                TemplateResourceConstraint::Eq(_) => (None, true),
                TemplateResourceConstraint::IsIn(ty, _) => (Some(ty), false),
                _ => (None, false),
            };
            let reach: BTreeSet<String> = scope_types
                .iter()
                .flat_map(|s| {
                    let mut types = vec![s.to_string()];
                    if !exact {
                        types.extend(ctx.descendants(s));
                    }
                    types
                })
                .collect();
            let declared = scope_types
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(ty) = &is_type
                && !reach.contains(&ty.to_string())
            {
                self.push(
                    LintCode::PolicyNeverMatches,
                    &role.id,
                    format!(
                        "its resource scope says `is {ty}`, but no `{ty}` can be in a scope of \
                         type {declared} (`@scope_types`): no grant of this role can match \
                         anything"
                    ),
                );
                continue;
            }
            // Resource types of the template's actions, with the actions that name each.
            let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for action in &ctx.actions {
                if !action_constraint_matches(
                    &role.template.action_constraint(),
                    action,
                    &ctx.hierarchy,
                ) {
                    continue;
                }
                for ty in ctx.resources_for(action) {
                    if is_type.as_ref().is_some_and(|t| t.to_string() != ty) {
                        continue;
                    }
                    named
                        .entry(ty)
                        .or_default()
                        .insert(action.id().unescaped().to_owned());
                }
            }
            if named.is_empty() {
                continue;
            }
            let outside: Vec<(&String, &BTreeSet<String>)> = named
                .iter()
                .filter(|(ty, _)| !reach.contains(*ty))
                .collect();
            if outside.is_empty() {
                continue;
            }
            let detail = outside
                .iter()
                .map(|(ty, actions)| {
                    let list = actions.iter().cloned().collect::<Vec<_>>().join(", ");
                    format!("`{ty}` (by {list})")
                })
                .collect::<Vec<_>>()
                .join("; ");
            if outside.len() == named.len() {
                self.push(
                    LintCode::PolicyNeverMatches,
                    &role.id,
                    format!(
                        "none of its actions applies to a resource a grant scoped to {declared} \
                         can reach ({detail}): no grant of this role can match anything"
                    ),
                );
            } else {
                self.push(
                    LintCode::TemplateWiderThanScopeTypes,
                    &role.id,
                    format!(
                        "it names resource types that a grant scoped to {declared} \
                         (`@scope_types`) can never reach: {detail}; widen `@scope_types` or \
                         narrow the template"
                    ),
                );
            }
        }
    }

    /// E005: a static `permit` whose principal scope is `principal` or `principal is T`
    /// and whose conditions never mention `principal`, and that may match an action
    /// some elevation role grants. Any principal (of that type) gets those actions
    /// without a grant. A condition that names the principal in any way (an attribute,
    /// a group, a comparison) counts as constraining it, however weak the constraint.
    fn bypasses(&mut self, ctx: &SchemaFacts<'_>) {
        let roles = self.roles();
        let mut role_actions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for action in &ctx.actions {
            for role in &roles {
                if action_constraint_matches(
                    &role.template.action_constraint(),
                    action,
                    &ctx.hierarchy,
                ) {
                    role_actions
                        .entry(action.id().unescaped().to_owned())
                        .or_default()
                        .insert(role.id.to_string());
                }
            }
        }
        let bundle: &'a Bundle = self.bundle;
        let mut policies: Vec<_> = bundle.statics.policies().collect();
        policies.sort_by(|a, b| a.id().cmp(b.id()));
        for policy in policies {
            if policy.effect() != Effect::Permit
                || !matches!(
                    policy.principal_constraint(),
                    PrincipalConstraint::Any | PrincipalConstraint::Is(_)
                )
            {
                continue;
            }
            let Ok(json) = policy.to_json() else {
                continue;
            };
            if conditions(&json).any(|(_, body)| mentions_var(body, "principal")) {
                continue;
            }
            let mut hit: BTreeSet<String> = BTreeSet::new();
            let mut via: BTreeSet<String> = BTreeSet::new();
            for action in &ctx.actions {
                let name = action.id().unescaped();
                if let Some(by) = role_actions.get(name)
                    && action_constraint_matches(
                        &policy.action_constraint(),
                        action,
                        &ctx.hierarchy,
                    )
                {
                    hit.insert(name.to_owned());
                    via.extend(by.iter().cloned());
                }
            }
            if hit.is_empty() {
                continue;
            }
            let who = match policy.principal_constraint() {
                PrincipalConstraint::Is(ty) => format!("any `{ty}`"),
                _ => "any principal".to_owned(),
            };
            self.push(
                LintCode::PermitBypassesElevation,
                policy.id(),
                format!(
                    "it permits {who} actions that need elevation ({}; granted by {}), without \
                     a grant and with no condition on the principal",
                    list(&hit, 5),
                    list(&via, 5)
                ),
            );
        }
    }

    /// E006 from Cedar's validator: it proves some policies false for every request the
    /// schema allows (`impossiblePolicy`), or finds no action whose `appliesTo` fits the
    /// scope (`invalidActionApplication`). Templates are judged with their slots open.
    /// The bundle's findings already carry Cedar's own wording of these warnings; the
    /// lint repeats them once per policy under a code, so scripts can select on it.
    fn never_matches(&mut self, schema: &Schema) {
        let all = policies_with_templates(self.bundle);
        let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
        let mut seen: HashSet<PolicyId> = HashSet::new();
        for warning in result.validation_warnings() {
            let why = match warning {
                ValidationWarning::ImpossiblePolicy(_) => {
                    "Cedar's validator finds its condition false for every request the schema \
                     allows"
                }
                ValidationWarning::InvalidActionApplication(_) => {
                    "no action in its action scope applies to the principal and resource types \
                     its scope allows (see the schema's `appliesTo`)"
                }
                _ => continue,
            };
            let id = warning.policy_id().clone();
            if seen.insert(id.clone()) {
                self.push(
                    LintCode::PolicyNeverMatches,
                    &id,
                    format!("it can never match: {why}"),
                );
            }
        }
    }
}

/// What the schema says about actions and entity types, looked up once per run.
struct SchemaFacts<'a> {
    schema: &'a Schema,
    /// Every action the schema declares (action groups included), in a stable order.
    actions: Vec<EntityUid>,
    /// The schema's action entities, so `action in Action::"group"` can be resolved.
    hierarchy: Entities,
}

impl<'a> SchemaFacts<'a> {
    fn new(schema: &'a Schema) -> Self {
        let mut actions: Vec<EntityUid> = schema.actions().cloned().collect();
        actions.sort_by_key(ToString::to_string);
        let hierarchy = schema
            .action_entities()
            .unwrap_or_else(|_| Entities::empty());
        Self {
            schema,
            actions,
            hierarchy,
        }
    }

    fn resources_for(&self, action: &EntityUid) -> Vec<String> {
        self.schema
            .resources_for_action(action)
            .map(|types| types.map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// The entity types the schema lets sit (transitively) below `ty`.
    fn descendants(&self, ty: &EntityTypeName) -> Vec<String> {
        self.schema
            .entity_types()
            .filter(|t| {
                self.schema
                    .ancestors(t)
                    .is_some_and(|mut up| up.any(|a| a == ty))
            })
            .map(ToString::to_string)
            .collect()
    }
}

/// The policy's file and `file:line:column` of its `@id("...")`, for people to jump to.
fn locate(bundle: &Bundle, id: &PolicyId) -> (String, String) {
    let Some(file) = bundle
        .origins
        .get(id)
        .and_then(|origin| bundle.files.get(origin.file))
    else {
        return (String::new(), String::new());
    };
    let path = file.path.display().to_string();
    let needle = format!("@id(\"{id}\")");
    let location = file
        .text
        .find(&needle)
        .map_or_else(|| path.clone(), |offset| file.location(offset));
    (path, location)
}

fn show(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn list(items: &BTreeSet<String>, max: usize) -> String {
    let shown: Vec<&str> = items.iter().take(max).map(String::as_str).collect();
    let more = items.len().saturating_sub(max);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The `(kind, body)` of each `when`/`unless` clause of a policy's JSON form.
fn conditions(policy: &Value) -> impl Iterator<Item = (&str, &Value)> {
    policy
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("kind")?.as_str()?, c.get("body")?)))
}

fn mentions_var(expr: &Value, var: &str) -> bool {
    match expr {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == "Var" && v.as_str() == Some(var)) || mentions_var(v, var)),
        Value::Array(items) => items.iter().any(|v| mentions_var(v, var)),
        _ => false,
    }
}

/// A set of role names that is either finite or everything but a finite set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSet {
    Only(BTreeSet<String>),
    AllBut(BTreeSet<String>),
}

impl RoleSet {
    pub fn all() -> Self {
        Self::AllBut(BTreeSet::new())
    }

    pub fn none() -> Self {
        Self::Only(BTreeSet::new())
    }

    pub fn contains(&self, role: &str) -> bool {
        match self {
            Self::Only(s) => s.contains(role),
            Self::AllBut(s) => !s.contains(role),
        }
    }

    fn complement(self) -> Self {
        match self {
            Self::Only(s) => Self::AllBut(s),
            Self::AllBut(s) => Self::Only(s),
        }
    }

    pub fn union(&self, other: &Self) -> Self {
        match (self, other) {
            (Self::Only(a), Self::Only(b)) => Self::Only(a.union(b).cloned().collect()),
            (Self::AllBut(a), Self::AllBut(b)) => {
                Self::AllBut(a.intersection(b).cloned().collect())
            }
            (Self::Only(a), Self::AllBut(b)) | (Self::AllBut(b), Self::Only(a)) => {
                Self::AllBut(b.difference(a).cloned().collect())
            }
        }
    }

    pub fn intersection(&self, other: &Self) -> Self {
        self.clone()
            .complement()
            .union(&other.clone().complement())
            .complement()
    }
}

/// The roles for which a policy's conditions can all hold: the intersection of
/// [`role_restriction`] over its `when` clauses and of the negation of its `unless`
/// clauses.
pub fn policy_role_restriction(policy: &Value) -> RoleSet {
    conditions(policy).fold(RoleSet::all(), |acc, (kind, body)| {
        acc.intersection(&role_restriction(body, kind == "unless"))
    })
}

/// An over-approximation of the values of `resource.role` for which `expr` (negated
/// when `negated`) can be true, from its syntax alone.
///
/// Only two shapes restrict the role: `resource.role == "X"` (either side, and `!=` as
/// its negation) and `["X", "Y"].contains(resource.role)`. `&&`, `||`, `!` and
/// `if-then-else` combine them; anything else (including `like`, a role compared with
/// something that is not a string literal, or a role held in a variable or record) may
/// hold for any role. So a role outside the result is certainly excluded, and a role
/// inside it may still be impossible for reasons this does not see.
pub fn role_restriction(expr: &Value, negated: bool) -> RoleSet {
    let Some((op, body)) = single(expr) else {
        return RoleSet::all();
    };
    let result = match op {
        "&&" | "||" => {
            let (Some(l), Some(r)) = (body.get("left"), body.get("right")) else {
                return RoleSet::all();
            };
            let (l, r) = (role_restriction(l, negated), role_restriction(r, negated));
            // De Morgan: under a negation `&&` behaves as `||` and the other way round.
            return if (op == "&&") != negated {
                l.intersection(&r)
            } else {
                l.union(&r)
            };
        }
        "!" => {
            return body
                .get("arg")
                .map_or_else(RoleSet::all, |arg| role_restriction(arg, !negated));
        }
        "if-then-else" => {
            let (Some(c), Some(t), Some(e)) = (body.get("if"), body.get("then"), body.get("else"))
            else {
                return RoleSet::all();
            };
            let then = role_restriction(c, false).intersection(&role_restriction(t, negated));
            let other = role_restriction(c, true).intersection(&role_restriction(e, negated));
            return then.union(&other);
        }
        "==" | "!=" => {
            let (Some(l), Some(r)) = (body.get("left"), body.get("right")) else {
                return RoleSet::all();
            };
            let literal = match (is_resource_role(l), is_resource_role(r)) {
                (true, false) => string_literal(r),
                (false, true) => string_literal(l),
                _ => None,
            };
            let Some(literal) = literal else {
                return RoleSet::all();
            };
            let eq = RoleSet::Only(BTreeSet::from([literal.to_owned()]));
            if op == "==" { eq } else { eq.complement() }
        }
        "contains" => {
            let (Some(set), Some(item)) = (body.get("left"), body.get("right")) else {
                return RoleSet::all();
            };
            let literals = set
                .get("Set")
                .and_then(Value::as_array)
                .and_then(|items| items.iter().map(string_literal).collect::<Option<Vec<_>>>());
            match literals {
                Some(literals) if is_resource_role(item) => {
                    RoleSet::Only(literals.into_iter().map(str::to_owned).collect())
                }
                _ => return RoleSet::all(),
            }
        }
        _ => return RoleSet::all(),
    };
    if negated { result.complement() } else { result }
}

/// The one `(key, value)` of a JSON expression node like `{"==": {...}}`.
fn single(expr: &Value) -> Option<(&str, &Value)> {
    let map = expr.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn is_resource_role(expr: &Value) -> bool {
    let Some((".", body)) = single(expr) else {
        return false;
    };
    body.get("attr").and_then(Value::as_str) == Some("role")
        && body
            .get("left")
            .and_then(|l| l.get("Var"))
            .and_then(Value::as_str)
            == Some("resource")
}

fn string_literal(expr: &Value) -> Option<&str> {
    expr.get("Value")?.as_str()
}

/// The statics and templates of a bundle as one policy set, for tools that need both.
pub fn policies_with_templates(bundle: &Bundle) -> PolicySet {
    let mut all = bundle.statics.clone();
    for role in bundle.roles.values() {
        // The bundle keeps ids apart, so this cannot clash; if it did, the template
        // would only be missing from the set.
        let _ = all.add_template(role.template.clone());
    }
    all
}

#[cfg(test)]
mod tests;
