//! The decision: `decide(&Snapshot, &Query, now) -> Outcome`. Pure: no I/O, no clock,
//! no logging; it returns facts for the caller to log and count.
//!
//! Cost does not grow with the number of grants or with policies for other actions:
//! the static policies are pre-sliced by action and by principal type (a policy whose
//! scope cannot match the request contributes neither a reason nor an error, so
//! leaving it out changes nothing), and grants are looked up by principal, filtered to those in
//! force at `now`, and evaluated as their role's condition with the grant's principal
//! and scope in the slots. Every condition is built once per snapshot and evaluated
//! with one Cedar evaluator per request (`conditions`); no policy set is built or
//! linked per request. The statics and the grants are combined with Cedar's own rule:
//! any satisfied forbid denies, otherwise any satisfied permit allows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Decision, Entities, EntityTypeName, EntityUid, PolicyId, PolicySet,
    PrincipalConstraint, SlotId,
};
use cedar_policy_core::ast::Effect as CoreEffect;
use jiff::Timestamp;

use crate::feed::Grant;
use crate::policy::{Bundle, action_constraint_matches};
use crate::request::Query;
use crate::snapshot::Snapshot;

mod conditions;

use conditions::{Condition, Run, SetResult, Tally, Verdict};

/// Static policies sliced by action, and every static policy's and role template's
/// condition prebuilt; built per snapshot from the bundle and the action hierarchy in
/// the entity store.
#[derive(Debug)]
pub struct Slices {
    by_action: HashMap<EntityUid, Slice>,
    /// Every static policy, for actions the hierarchy does not know.
    all: Cut,
    /// Each role template's condition, by template id.
    roles: HashMap<PolicyId, Condition>,
}

/// A set of static policies, and the same policies' conditions prebuilt for `decide`.
#[derive(Debug, Default)]
struct Cut {
    policies: PolicySet,
    /// Shared between the cuts: each policy's condition is built once per snapshot.
    conditions: Vec<Arc<Condition>>,
}

impl Cut {
    fn add(&mut self, policy: &cedar_policy::Policy, condition: &Arc<Condition>) {
        // Ids are unique in `statics`, so adding to a fresh set cannot fail.
        let _ = self.policies.add(policy.clone());
        self.conditions.push(Arc::clone(condition));
    }
}

/// The policies one action can match, and the action's ancestors they were chosen
/// with: the slice holds only while the request sees the same ancestors.
#[derive(Debug)]
struct Slice {
    ancestors: HashSet<EntityUid>,
    policies: PolicySet,
    /// `policies` cut again by the principal's type, for every type a principal scope
    /// names (`is T`, `== T::".."`): a policy whose scope needs another type cannot
    /// match, so it contributes nothing.
    by_principal: HashMap<EntityTypeName, Cut>,
    /// The policies whose principal scope names no type: all a principal of any other
    /// type can match.
    untyped: Cut,
}

/// The principal type a policy's scope requires, if any.
fn principal_type(policy: &cedar_policy::Policy) -> Option<EntityTypeName> {
    match policy.principal_constraint() {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => None,
        PrincipalConstraint::Eq(uid) => Some(uid.type_name().clone()),
        PrincipalConstraint::Is(ty) | PrincipalConstraint::IsIn(ty, _) => Some(ty),
    }
}

impl Slice {
    /// Whether `action` has exactly this slice's ancestors in `entities`.
    fn holds_in(&self, action: &EntityUid, entities: &Entities) -> bool {
        let mut seen = 0;
        let known = entities.ancestors(action).into_iter().flatten().all(|a| {
            seen += 1;
            self.ancestors.contains(a)
        });
        known && seen == self.ancestors.len()
    }
}

impl Slices {
    /// Slices the bundle's static policies for every action the schema or entities know.
    pub fn build(bundle: &Bundle, entities: &Entities) -> Self {
        let mut actions: HashSet<EntityUid> = entities
            .iter()
            .map(cedar_policy::Entity::uid)
            .filter(|uid| uid.type_name().basename() == "Action")
            .collect();
        if let Some(schema) = &bundle.schema {
            actions.extend(schema.actions().cloned());
        }
        let typed: HashSet<EntityTypeName> = bundle
            .statics
            .policies()
            .filter_map(principal_type)
            .collect();
        let conditions: HashMap<&PolicyId, Arc<Condition>> = bundle
            .statics
            .policies()
            .map(|policy| (policy.id(), Arc::new(Condition::of_policy(policy))))
            .collect();
        let mut all = Cut::default();
        for policy in bundle.statics.policies() {
            if let Some(condition) = conditions.get(policy.id()) {
                all.add(policy, condition);
            }
        }
        let by_action = actions
            .into_iter()
            .map(|action| {
                let mut policies = PolicySet::new();
                let mut untyped = Cut::default();
                let mut by_principal: HashMap<EntityTypeName, Cut> = typed
                    .iter()
                    .map(|ty| (ty.clone(), Cut::default()))
                    .collect();
                for policy in bundle.statics.policies() {
                    let Some(condition) = conditions.get(policy.id()) else {
                        continue;
                    };
                    if action_constraint_matches(&policy.action_constraint(), &action, entities) {
                        // Ids are unique in `statics`, so adding to a fresh set cannot fail.
                        let _ = policies.add(policy.clone());
                        match principal_type(policy) {
                            Some(ty) => {
                                if let Some(cut) = by_principal.get_mut(&ty) {
                                    cut.add(policy, condition);
                                }
                            }
                            None => {
                                untyped.add(policy, condition);
                                for cut in by_principal.values_mut() {
                                    cut.add(policy, condition);
                                }
                            }
                        }
                    }
                }
                let ancestors = entities
                    .ancestors(&action)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                (
                    action,
                    Slice {
                        ancestors,
                        policies,
                        by_principal,
                        untyped,
                    },
                )
            })
            .collect();
        let roles = bundle
            .roles
            .iter()
            .map(|(id, role)| (id.clone(), Condition::of_template(&role.template)))
            .collect();
        Self {
            by_action,
            all,
            roles,
        }
    }

    /// The static policies that can match `action` with the store's action hierarchy.
    pub fn for_action(&self, action: &EntityUid) -> &PolicySet {
        self.by_action
            .get(action)
            .map_or(&self.all.policies, |slice| &slice.policies)
    }

    /// The static policies that can match `query`: its action's, cut again by the
    /// principal's type. Entities in the request body can put a stored action under
    /// more groups (a stored action may name a parent the store does not hold, and the
    /// body may define it); the slice cut with the store's hierarchy would then miss
    /// policies on those groups, so such a request gets every policy.
    pub fn for_query(&self, query: &Query) -> &PolicySet {
        &self.cut_for(query).policies
    }

    fn cut_for(&self, query: &Query) -> &Cut {
        match self.by_action.get(&query.action) {
            Some(slice) if !query.merged || slice.holds_in(&query.action, &query.entities) => slice
                .by_principal
                .get(query.principal.type_name())
                .unwrap_or(&slice.untyped),
            _ => &self.all,
        }
    }

    /// Every static policy, unsliced: the reference the slices are proved against.
    pub fn unsliced(&self) -> &PolicySet {
        &self.all.policies
    }
}

/// An evaluation error of one policy; not an API error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EvalError {
    pub policy_id: String,
    pub message: String,
}

/// What the engine decided and why.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub decision: Decision,
    /// Determining policy ids (grant ids for grants), sorted.
    pub reasons: Vec<PolicyId>,
    /// Sorted by policy id.
    pub errors: Vec<EvalError>,
    /// The grants among the reasons of an Allow.
    pub grants: Vec<Arc<Grant>>,
    /// For an Allow that rests only on grants: when the last of them expires.
    pub valid_until: Option<Timestamp>,
    /// Grants were not considered because the feed is stale (fail closed).
    pub grants_suspended: bool,
}

impl Outcome {
    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// Decides `query` against `snapshot` as of `now`.
pub fn decide(snapshot: &Snapshot, query: &Query, now: Timestamp) -> Outcome {
    let grants_suspended = snapshot.grants_suspended(now);
    let active = in_force_grants(snapshot, query, now);
    let mut outcome = decide_prebuilt(snapshot, query, &active)
        .unwrap_or_else(|| decide_with_cedar(snapshot, query, &active));
    outcome.grants_suspended = grants_suspended;
    outcome
}

/// The decision from the snapshot's prebuilt conditions; `None` when a result is not
/// one `conditions` mirrors, and then Cedar's authorizer has to answer.
fn decide_prebuilt(snapshot: &Snapshot, query: &Query, active: &[Arc<Grant>]) -> Option<Outcome> {
    let mut run = Run::new(query);
    let statics = static_tally(&run, snapshot.slices.cut_for(query))?.finish();
    if active.is_empty() {
        return Some(combine(statics, None, &[]));
    }
    let grants = grant_tally(&mut run, snapshot, active)?.finish();
    Some(combine(statics, Some(grants), active))
}

/// `decide` asked of Cedar's authorizer instead of the prebuilt conditions: the sliced
/// statics, and the in-force grants linked into a per-request policy set. The
/// reference `decide` must equal in every field, error messages included; tests and
/// benchmarks only.
pub fn decide_linked(snapshot: &Snapshot, query: &Query, now: Timestamp) -> Outcome {
    let grants_suspended = snapshot.grants_suspended(now);
    let active = in_force_grants(snapshot, query, now);
    let mut outcome = decide_with_cedar(snapshot, query, &active);
    outcome.grants_suspended = grants_suspended;
    outcome
}

/// The same decision from Cedar's authorizer: the statics, and the grants linked
/// into a per-request policy set.
fn decide_with_cedar(snapshot: &Snapshot, query: &Query, active: &[Arc<Grant>]) -> Outcome {
    let entities = &query.entities;
    let authorizer = Authorizer::new();
    let statics =
        authorizer.is_authorized(&query.request, snapshot.slices.for_query(query), entities);
    let statics = SetResult::of_response(&statics);
    if active.is_empty() {
        return combine(statics, None, &[]);
    }
    let (set, link_errors) = link_grants(&snapshot.bundle, active);
    let grants = SetResult::of_response(&authorizer.is_authorized(&query.request, &set, entities));
    let mut outcome = combine(statics, Some(grants), active);
    if !link_errors.is_empty() {
        outcome.errors.extend(link_errors);
        outcome.errors.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    }
    outcome
}

fn static_tally(run: &Run<'_>, cut: &Cut) -> Option<Tally> {
    let mut tally = Tally::default();
    for condition in &cut.conditions {
        tally.record(&condition.id, condition.effect, run.statics(condition))?;
    }
    Some(tally)
}

/// The grants evaluated as links of their roles, as `link_grants` and Cedar's
/// authorizer would: a grant of a role the bundle does not hold is left out.
fn grant_tally(run: &mut Run<'_>, snapshot: &Snapshot, grants: &[Arc<Grant>]) -> Option<Tally> {
    let roles = &snapshot.slices.roles;
    if !links_cleanly(roles, grants) {
        return None;
    }
    let mut tally = Tally::default();
    for grant in grants {
        let Some(role) = roles.get(&grant.role) else {
            if snapshot.bundle.roles.contains_key(&grant.role) {
                return None;
            }
            continue;
        };
        let verdict = run.grant(role, grant);
        tally.record(&grant.id, role.effect, verdict)?;
    }
    Some(tally)
}

/// Whether linking `grants` into a fresh policy set succeeds for every one: no id
/// repeats and none is a role's id. The feed rejects both, so this holds for grants
/// from the index; if it ever does not, Cedar's own linking reports what fails.
fn links_cleanly(roles: &HashMap<PolicyId, Condition>, grants: &[Arc<Grant>]) -> bool {
    if let [grant] = grants {
        return !roles.contains_key(&grant.id);
    }
    let mut seen: HashSet<&PolicyId> = HashSet::with_capacity(grants.len());
    grants
        .iter()
        .all(|g| !roles.contains_key(&g.id) && seen.insert(&g.id))
}

fn link_grants(bundle: &Bundle, grants: &[Arc<Grant>]) -> (PolicySet, Vec<EvalError>) {
    let mut set = PolicySet::new();
    let mut errors = Vec::new();
    let mut added: HashSet<&PolicyId> = HashSet::new();
    for grant in grants {
        let Some(role) = bundle.roles.get(&grant.role) else {
            continue;
        };
        if added.insert(&grant.role)
            && let Err(err) = set.add_template(role.template.clone())
        {
            errors.push(EvalError {
                policy_id: crate::feed::raw_id(&grant.id).to_owned(),
                message: err.to_string(),
            });
            continue;
        }
        let slots = HashMap::from([
            (SlotId::principal(), grant.principal.clone()),
            (SlotId::resource(), grant.scope.clone()),
        ]);
        if let Err(err) = set.link(grant.role.clone(), grant.id.clone(), slots) {
            // Cannot happen for a grant the feed accepted; if it does, the grant
            // simply does not apply (fail closed) and the answer says why.
            errors.push(EvalError {
                policy_id: crate::feed::raw_id(&grant.id).to_owned(),
                message: err.to_string(),
            });
        }
    }
    (set, errors)
}

/// One outcome from the statics' and the grants' results, with the rule Cedar applies
/// to one set holding both: any satisfied forbid denies, otherwise any satisfied
/// permit allows.
fn combine(statics: SetResult, grants: Option<SetResult>, active: &[Arc<Grant>]) -> Outcome {
    let mut forbids: Vec<PolicyId> = Vec::new();
    let mut permits: Vec<PolicyId> = Vec::new();
    let mut errors: Vec<EvalError> = Vec::new();
    for result in std::iter::once(statics).chain(grants) {
        // Cedar reports satisfied permits for an Allow and satisfied forbids for a Deny.
        match result.decision {
            Decision::Allow => permits.extend(result.reasons),
            Decision::Deny => forbids.extend(result.reasons),
        }
        errors.extend(result.errors);
    }
    let (decision, mut reasons) = if !forbids.is_empty() {
        (Decision::Deny, forbids)
    } else if !permits.is_empty() {
        (Decision::Allow, permits)
    } else {
        (Decision::Deny, Vec::new())
    };
    reasons.sort_unstable_by(|a, b| AsRef::<str>::as_ref(a).cmp(AsRef::<str>::as_ref(b)));
    errors.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));

    let mut grants = Vec::new();
    let mut valid_until = None;
    if decision == Decision::Allow && !active.is_empty() {
        let by_id: HashMap<&PolicyId, &Arc<Grant>> = active.iter().map(|g| (&g.id, g)).collect();
        grants = reasons
            .iter()
            .filter_map(|r| by_id.get(r).map(|g| Arc::clone(g)))
            .collect();
        if !grants.is_empty() && grants.len() == reasons.len() {
            valid_until = grants.iter().map(|g| g.expires_at).max();
        }
    }
    Outcome {
        decision,
        reasons,
        errors,
        grants,
        valid_until,
        grants_suspended: false,
    }
}

/// The grants `decide` would take into account at `now`: the principal's own and
/// its groups' (for `principal in ?principal` roles), in force, whose role can match
/// the action; none while grants are suspended.
pub fn in_force_grants(snapshot: &Snapshot, query: &Query, now: Timestamp) -> Vec<Arc<Grant>> {
    if snapshot.grants_suspended(now) {
        return Vec::new();
    }
    principal_grants(snapshot, query, |g| g.in_force(now))
}

/// The grants `decide` looks up for `query` (the principal's own and its groups',
/// whose role can match the action) that `keep` selects, whatever their window.
/// Explanations use it to find grants that would have applied at another instant.
pub fn principal_grants(
    snapshot: &Snapshot,
    query: &Query,
    mut keep: impl FnMut(&Grant) -> bool,
) -> Vec<Arc<Grant>> {
    let index = &snapshot.grants;
    if index.is_empty() {
        return Vec::new();
    }
    let entities = &query.entities;
    let bundle = &snapshot.bundle;
    let mut found: Vec<Arc<Grant>> = Vec::new();
    let mut take = |grants: &[Arc<Grant>]| {
        for grant in grants {
            if keep(grant)
                && bundle
                    .roles
                    .get(&grant.role)
                    .is_some_and(|role| role.may_match_action(&query.action, entities))
            {
                found.push(Arc::clone(grant));
            }
        }
    };
    take(index.of(&query.principal));
    if bundle.any_role_principal_in
        && let Some(ancestors) = entities.ancestors(&query.principal)
    {
        for group in ancestors {
            take(index.of(group));
        }
    }
    found
}

/// Which of `grants` `query` satisfies when each is taken as in force, whatever its
/// window: their ids, sorted, and the evaluation errors. Roles are permits, so a
/// satisfied grant allows unless a forbid is satisfied too.
pub fn satisfied_grants(
    snapshot: &Snapshot,
    query: &Query,
    grants: &[Arc<Grant>],
) -> (Vec<PolicyId>, Vec<EvalError>) {
    if grants.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut run = Run::new(query);
    let (result, mut errors) = match grant_tally(&mut run, snapshot, grants) {
        Some(tally) => (tally.finish(), Vec::new()),
        None => {
            let (set, errors) = link_grants(&snapshot.bundle, grants);
            let response = Authorizer::new().is_authorized(&query.request, &set, &query.entities);
            (SetResult::of_response(&response), errors)
        }
    };
    let outcome = combine(result, None, &[]);
    let satisfied = if outcome.is_allow() {
        outcome.reasons
    } else {
        Vec::new()
    };
    errors.extend(outcome.errors);
    errors.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
    (satisfied, errors)
}

/// The static permits `query` satisfies, sorted. Cedar names only the satisfied
/// forbids of a Deny, so this asks the permits of the action's slice alone.
pub fn satisfied_static_permits(snapshot: &Snapshot, query: &Query) -> Vec<PolicyId> {
    let run = Run::new(query);
    let mut reasons: Vec<PolicyId> = Vec::new();
    for condition in &snapshot.slices.cut_for(query).conditions {
        if condition.effect != CoreEffect::Permit {
            continue;
        }
        match run.statics(condition) {
            Verdict::Satisfied => reasons.push(condition.id.clone()),
            // A permits-only set allows iff a permit holds, and then names them all.
            Verdict::NotSatisfied | Verdict::Residual | Verdict::Error(_) => {}
            Verdict::Unmirrored => return satisfied_static_permits_with_cedar(snapshot, query),
        }
    }
    reasons.sort_unstable_by(|a, b| AsRef::<str>::as_ref(a).cmp(AsRef::<str>::as_ref(b)));
    reasons
}

fn satisfied_static_permits_with_cedar(snapshot: &Snapshot, query: &Query) -> Vec<PolicyId> {
    let entities = &query.entities;
    let mut permits = PolicySet::new();
    for policy in snapshot.slices.for_query(query).policies() {
        if policy.effect() == cedar_policy::Effect::Permit {
            // The ids come from one policy set, so they are unique here too.
            let _ = permits.add(policy.clone());
        }
    }
    let response = Authorizer::new().is_authorized(&query.request, &permits, entities);
    let mut reasons: Vec<PolicyId> = match response.decision() {
        Decision::Allow => response.diagnostics().reason().cloned().collect(),
        Decision::Deny => Vec::new(),
    };
    reasons.sort_unstable_by(|a, b| AsRef::<str>::as_ref(a).cmp(AsRef::<str>::as_ref(b)));
    reasons
}

/// The same question asked of Cedar with every policy and every in-force grant in
/// one set, against `entities` (Cedar's own store of every entity, with the request's
/// merged in): the reference the sliced evaluation must equal. Tests and benchmarks only.
pub fn decide_unsliced(
    snapshot: &Snapshot,
    query: &Query,
    entities: &Entities,
    now: Timestamp,
) -> (Decision, Vec<String>, Vec<String>) {
    let mut set = snapshot.slices.unsliced().clone();
    let grants: Vec<Arc<Grant>> = snapshot
        .grants
        .iter()
        .filter(|g| g.in_force(now) && !snapshot.grants_suspended(now))
        .cloned()
        .collect();
    let (linked, _) = link_grants(&snapshot.bundle, &grants);
    for template in linked.templates() {
        let _ = set.add_template(template.clone());
    }
    for policy in linked.policies() {
        if let (Some(template), Some(slots)) = (policy.template_id(), policy.template_links()) {
            let _ = set.link(template.clone(), policy.id().clone(), slots);
        }
    }
    let response = Authorizer::new().is_authorized(&query.request, &set, entities);
    let mut reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    reasons.sort();
    let mut errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(inner) = e;
            inner.policy_id().to_string()
        })
        .collect();
    errors.sort();
    (response.decision(), reasons, errors)
}

#[cfg(test)]
mod tests;
