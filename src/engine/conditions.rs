//! Policy conditions built once per snapshot and evaluated with one Cedar evaluator per
//! request, with the rules of Cedar's own authorizer.
//!
//! Cedar's `Authorizer` rebuilds every policy's condition expression on each call
//! (`Policy::condition` assembles scope and body into a fresh `Expr`) and needs the
//! grants linked into a `PolicySet` first. Here each static policy's and each role
//! template's condition is built when the snapshot is, and a grant is evaluated as
//! its role's condition with `?principal` and `?resource` bound to the grant's
//! principal and scope: what evaluating the link would do, without making it.
//!
//! What counts as satisfied, what an error is, and how a set of results becomes a
//! decision and its reasons follow `cedar-policy-core`'s `is_authorized_core_internal`
//! and `Response::from(PartialResponse)`. Anything those rules do not cover here (a
//! condition that yields a non-boolean, which Cedar's `&&` cannot produce) is reported
//! as [`Verdict::Unmirrored`] so the caller asks Cedar itself.

use std::collections::HashMap;

use cedar_policy::{Decision, PolicyId};
use cedar_policy_core::ast::{
    self, Effect, EntityUID, Expr, Literal, PartialValue, SlotEnv, ValueKind,
};
use cedar_policy_core::authorizer::AuthorizationError as CoreAuthorizationError;
use cedar_policy_core::evaluator::{EvaluationError, Evaluator};
use cedar_policy_core::extensions::Extensions;

use super::EvalError;
use crate::feed::Grant;
use crate::request::Query;

/// One policy's condition, as Cedar's authorizer evaluates it.
#[derive(Debug)]
pub(super) struct Condition {
    /// The policy id for a static policy, the template id for a role.
    pub(super) id: PolicyId,
    pub(super) effect: Effect,
    /// Scope and body as one expression (`TemplateBody::condition`).
    expr: Expr,
}

impl Condition {
    pub(super) fn of_policy(policy: &cedar_policy::Policy) -> Self {
        let ast: &ast::Policy = policy.as_ref();
        Self {
            id: policy.id().clone(),
            effect: ast.effect(),
            expr: ast.condition(),
        }
    }

    pub(super) fn of_template(template: &cedar_policy::Template) -> Self {
        let ast: &ast::Template = template.as_ref();
        Self {
            id: template.id().clone(),
            effect: ast.effect(),
            expr: ast.condition(),
        }
    }
}

/// How one policy came out for one request.
#[expect(
    clippy::large_enum_variant,
    reason = "a verdict moves once, from `verdict` to its consumer; boxing the error would add an allocation for each erring policy"
)]
pub(super) enum Verdict {
    Satisfied,
    NotSatisfied,
    /// Partial evaluation left an expression: Cedar counts it neither satisfied nor
    /// an error, but a residual forbid changes which policies are named as reasons.
    Residual,
    Error(EvaluationError),
    /// A result Cedar's authorizer would treat in a way not mirrored here.
    Unmirrored,
}

/// One evaluator for one request: the request and its entities converted once.
pub(super) struct Run<'e> {
    evaluator: Evaluator<'e>,
    /// Reused for every grant so that binding the slots allocates at most once.
    slots: SlotEnv,
}

impl<'e> Run<'e> {
    pub(super) fn new(query: &'e Query) -> Self {
        let request: &ast::Request = query.request.as_ref();
        let entities: &cedar_policy::Entities = &query.entities;
        Self {
            evaluator: Evaluator::new(
                request.clone(),
                entities.as_ref(),
                Extensions::all_available(),
            ),
            slots: HashMap::new(),
        }
    }

    /// A static policy's verdict.
    pub(super) fn statics(&self, condition: &Condition) -> Verdict {
        verdict(&self.evaluator, &condition.expr, &HashMap::new())
    }

    /// The verdict of `grant` as a link of `role`.
    pub(super) fn grant(&mut self, role: &Condition, grant: &Grant) -> Verdict {
        self.slots
            .insert(ast::SlotId::principal(), core_uid(&grant.principal));
        self.slots
            .insert(ast::SlotId::resource(), core_uid(&grant.scope));
        verdict(&self.evaluator, &role.expr, &self.slots)
    }
}

fn core_uid(uid: &cedar_policy::EntityUid) -> EntityUID {
    AsRef::<EntityUID>::as_ref(uid).clone()
}

/// `Evaluator::partial_evaluate` on a prebuilt condition.
fn verdict(evaluator: &Evaluator<'_>, expr: &Expr, slots: &SlotEnv) -> Verdict {
    match evaluator.partial_interpret(expr, slots) {
        Ok(PartialValue::Value(value)) => match value.value {
            ValueKind::Lit(Literal::Bool(true)) => Verdict::Satisfied,
            ValueKind::Lit(Literal::Bool(false)) => Verdict::NotSatisfied,
            // Cedar would report a type error built by a crate-private constructor.
            _ => Verdict::Unmirrored,
        },
        Ok(PartialValue::Residual(_)) => Verdict::Residual,
        Err(error) => Verdict::Error(error),
    }
}

/// The error entry Cedar's `Response` would carry for `id`, converted the way
/// `cedar_policy::Authorizer` converts it, so id and message match byte for byte.
fn eval_error(id: &PolicyId, error: EvaluationError) -> EvalError {
    let core = CoreAuthorizationError::PolicyEvaluationError {
        id: AsRef::<ast::PolicyID>::as_ref(id).clone(),
        error,
    };
    let public = cedar_policy::AuthorizationError::from(core);
    let cedar_policy::AuthorizationError::PolicyEvaluationError(inner) = &public;
    EvalError {
        policy_id: inner.policy_id().to_string(),
        message: public.to_string(),
    }
}

/// The results of one policy set, kept as Cedar's `PartialResponse` keeps them.
#[derive(Default)]
pub(super) struct Tally {
    permits: Vec<PolicyId>,
    forbids: Vec<PolicyId>,
    residual_forbid: bool,
    errors: Vec<EvalError>,
}

/// What Cedar's `Response` for one policy set says.
pub(super) struct SetResult {
    pub(super) decision: Decision,
    pub(super) reasons: Vec<PolicyId>,
    pub(super) errors: Vec<EvalError>,
}

impl Tally {
    /// Records the verdict of the policy (or link) `id`. `None` for a verdict this
    /// module does not mirror.
    pub(super) fn record(&mut self, id: &PolicyId, effect: Effect, verdict: Verdict) -> Option<()> {
        match verdict {
            Verdict::Satisfied => match effect {
                Effect::Permit => self.permits.push(id.clone()),
                Effect::Forbid => self.forbids.push(id.clone()),
            },
            Verdict::NotSatisfied => {}
            Verdict::Residual => self.residual_forbid |= effect == Effect::Forbid,
            // Cedar skips an erroring policy: not satisfied, and named among the errors.
            Verdict::Error(error) => self.errors.push(eval_error(id, error)),
            Verdict::Unmirrored => return None,
        }
        Some(())
    }

    /// Cedar's `Response::from(PartialResponse)`: Allow iff a permit holds and no
    /// forbid does; the reasons are the satisfied permits unless a forbid holds or
    /// may hold, and then the satisfied forbids.
    pub(super) fn finish(self) -> SetResult {
        let decision = if !self.permits.is_empty() && self.forbids.is_empty() {
            Decision::Allow
        } else {
            Decision::Deny
        };
        let reasons = if self.forbids.is_empty() && !self.residual_forbid {
            self.permits
        } else {
            self.forbids
        };
        SetResult {
            decision,
            reasons,
            errors: self.errors,
        }
    }
}

impl SetResult {
    /// The same facts read from a Response of Cedar's own.
    pub(super) fn of_response(response: &cedar_policy::Response) -> Self {
        Self {
            decision: response.decision(),
            reasons: response.diagnostics().reason().cloned().collect(),
            errors: response
                .diagnostics()
                .errors()
                .map(|e| {
                    let cedar_policy::AuthorizationError::PolicyEvaluationError(inner) = e;
                    EvalError {
                        policy_id: inner.policy_id().to_string(),
                        message: e.to_string(),
                    }
                })
                .collect(),
        }
    }
}
