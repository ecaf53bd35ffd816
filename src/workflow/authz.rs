//! Asking Cedar about a workflow command: the `ElevationRequest` resource as a
//! request entity, decided by [`engine::decide`] on the workflow's snapshot, so the
//! workflow's rules are policies like every other (`policies/workflow.cedar`).

use std::str::FromStr;

use cedar_policy::{Decision, EntityUid};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::engine;
use crate::request::{Body, RequestError, build_query};
use crate::snapshot::Snapshot;

/// The entity type of the resource of every workflow action.
pub const RESOURCE_TYPE: &str = "ElevationRequest";

/// The attributes policies can test, as of the decision asked about.
#[derive(Debug)]
pub(super) struct Resource<'a> {
    pub id: &'a str,
    /// The requester, who gets the grant.
    pub principal: &'a EntityUid,
    pub role: &'a str,
    pub scope: &'a EntityUid,
    pub duration_seconds: i64,
    pub max_duration_seconds: i64,
    pub approvals_required: u32,
    pub approvals: Vec<&'a EntityUid>,
    pub reason: &'a str,
    pub ticket: Option<&'a str>,
    pub on_behalf_of: Option<&'a str>,
    pub extends: Option<&'a str>,
}

/// Cedar's answer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Allow,
    /// Denied by these forbids.
    Forbidden(Vec<String>),
    /// Denied because nothing permits it; evaluation errors, if any, say why.
    NotPermitted(Vec<String>),
}

fn uid_json(uid: &EntityUid) -> Value {
    json!({"__entity": {"type": uid.type_name().to_string(), "id": uid.id().unescaped()}})
}

impl Resource<'_> {
    /// The resource as Cedar entity JSON: its parent is the scope.
    fn entity(&self, snapshot: &Snapshot) -> Value {
        let mut attrs = serde_json::Map::new();
        let requester = if self.principal.type_name().basename() == "ApiKey" {
            "requester_key"
        } else {
            "requester"
        };
        attrs.insert(requester.into(), uid_json(self.principal));
        attrs.insert("role".into(), json!(self.role));
        attrs.insert("duration_seconds".into(), json!(self.duration_seconds));
        attrs.insert(
            "max_duration_seconds".into(),
            json!(self.max_duration_seconds),
        );
        attrs.insert("approvals_required".into(), json!(self.approvals_required));
        attrs.insert(
            "approvals".into(),
            Value::Array(self.approvals.iter().map(|u| uid_json(u)).collect()),
        );
        attrs.insert("reason".into(), json!(self.reason));
        if let Some(ticket) = self.ticket {
            attrs.insert("ticket".into(), json!(ticket));
        }
        if let Some(on_behalf_of) = self.on_behalf_of {
            attrs.insert("on_behalf_of".into(), json!(on_behalf_of));
            if let Some(user) = known_user(on_behalf_of, snapshot) {
                attrs.insert("on_behalf_of_user".into(), uid_json(&user));
            }
        }
        if let Some(extends) = self.extends {
            attrs.insert("extends".into(), json!(extends));
        }
        json!([{
            "uid": {"type": RESOURCE_TYPE, "id": self.id},
            "attrs": attrs,
            "parents": [{"type": self.scope.type_name().to_string(), "id": self.scope.id().unescaped()}],
        }])
    }
}

/// `text` as a `User` of the entity data, when it is one.
fn known_user(text: &str, snapshot: &Snapshot) -> Option<EntityUid> {
    let uid = EntityUid::from_str(text.trim()).ok()?;
    (uid.type_name().basename() == "User" && snapshot.store.contains(&uid)).then_some(uid)
}

/// Decides `actor` doing `action` on `resource`, as the decision API would.
///
/// # Errors
/// Cedar refuses the request itself (an actor of a type the schema does not allow).
pub(super) fn decide(
    snapshot: &Snapshot,
    actor: &EntityUid,
    action: &str,
    resource: &Resource<'_>,
    now: Timestamp,
) -> Result<Verdict, RequestError> {
    let body = Body {
        principal: Value::String(actor.to_string()),
        action: Value::String(format!("Action::\"{action}\"")),
        resource: json!({"type": RESOURCE_TYPE, "id": resource.id}),
        context: None,
        entities: Some(resource.entity(snapshot)),
    };
    let query = build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)?;
    let outcome = engine::decide(snapshot, &query, now);
    let reasons = outcome
        .reasons
        .iter()
        .map(|r| crate::feed::raw_id(r).to_owned())
        .collect();
    Ok(match outcome.decision {
        Decision::Allow => Verdict::Allow,
        Decision::Deny if !outcome.reasons.is_empty() => Verdict::Forbidden(reasons),
        Decision::Deny => Verdict::NotPermitted(
            outcome
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.policy_id, e.message))
                .collect(),
        ),
    })
}
